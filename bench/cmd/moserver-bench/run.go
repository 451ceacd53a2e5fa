package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-moserver/caddy-moserver/internal/loadtest"
	"github.com/caddy-moserver/caddy-moserver/internal/store"
	"github.com/caddy-moserver/caddy-moserver/internal/tokens"
)

// revokeVsIssue is the assumed ratio of revocations/s to client_credentials
// issuances/s (with a refresh token), used to size the pre-issued supply of
// the revocation row. Revocation signs nothing, so it is faster; a row whose
// supply runs out anyway reports the rate over the time it had.
const revokeVsIssue = 1.5

// logf prints one progress line.
func logf(format string, args ...any) {
	fmt.Printf("==> "+format+"\n", args...)
}

// bench holds the state of one run.
type bench struct {
	cfg   config
	rep   *Report
	gen   *generator
	caddy *loadtest.Proc
	redis *loadtest.Redis
	// fillRedis and twinRedis are the row-5 pair (with BENCH_FAMILIES > 0):
	// two more redis-servers like redis, the first filled with the
	// families, the second left empty; siteFill and siteTwin are identical
	// ES256 sites on them.
	fillRedis, twinRedis *loadtest.Redis
	siteFill, siteTwin   site
	sites                map[string]site
	// wp is the WordPress site of the authorization_code rows; nil when it
	// could not be set up. wpErr says why there are no such rows.
	wp    *wpSite
	wpErr error
	// ceilingPort is the port of the static ceiling site.
	ceilingPort int
	// adminPort is Caddy's admin endpoint (profiles come from its
	// /debug/pprof).
	adminPort int
	// ceiling is the ceiling's request stream, set once the first ceiling
	// row ran: from then on every other row alternates with it.
	ceiling *stream
}

// alternations is how many slices each row is measured in, alternating
// with as many slices of the ceiling (generator.runAlternating): the speed
// of the cores of a shared virtual machine swings by 10–20% within
// seconds, more than the margins of the targets, and a row and its
// ceiling measured in alternation see the same swings.
const alternations = 10

// run performs the whole benchmark; see the package comment.
func run(ctx context.Context, cfg config) (err error) {
	b := &bench{cfg: cfg, rep: &Report{Started: time.Now(), Command: "./xcaddy.sh bench"}}
	rep := b.rep
	rep.Cores = runtime.NumCPU()
	rep.CPU = cpuModel()
	rep.GoVersion = runtime.Version()
	rep.UptimeStart = uptime()
	rep.Settings.Concurrency = cfg.concurrency
	rep.Settings.WarmupS = cfg.warmup.Seconds()
	rep.Settings.DurationS = cfg.duration.Seconds()
	rep.Settings.Families = cfg.families
	rep.Settings.Codes = cfg.codes
	rep.Settings.Generator = "Go load generator (net/http keep-alive HTTP/1.1, closed loop, in-process, sharing the cores with Caddy and Redis)"
	rep.ResponseBytes = map[string]int{}
	if out, err := exec.Command(cfg.caddyBin, "version").Output(); err == nil {
		rep.CaddyVersion = strings.Fields(string(out) + " ?")[0]
	}

	fmt.Printf("moserver end-to-end benchmark — %s\n", rep.Started.Format(time.RFC3339))
	fmt.Printf("uptime: %s\n", rep.UptimeStart)
	fmt.Printf("cpu: %s, %d cores; %s; caddy %s (%s)\n", rep.CPU, rep.Cores, rep.GoVersion, rep.CaddyVersion, cfg.caddyBin)
	fmt.Printf("concurrency %d, warm-up %s + %s per row, %d Redis families\n", cfg.concurrency, cfg.warmup, cfg.duration, cfg.families)

	if cfg.coreBench {
		rep.Core = runCoreBench(ctx, cfg.repo)
		logf("core benchmark: %s", rep.Core.Command)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if rep.Core.Error != "" {
			logf("core benchmark failed: %s", rep.Core.Error)
		} else {
			for _, k := range append(slices.Clone(coreAlgs), coreSignRow) {
				row := rep.Core.Rows[k]
				logf("core benchmark %s: %.1f µs/op, %d B/op, %d allocs/op", k, row.NsPerOp/1e3, row.BytesPerOp, row.AllocsPerOp)
			}
		}
	}

	// How busy the machine is without us: one second of /proc/stat.
	busy0, self0, t0 := loadtest.MachineBusy(), selfCPU(), time.Now()
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
		return ctx.Err()
	}
	rep.OtherCPUPctStart = max(0, 100*float64(loadtest.MachineBusy()-busy0-(selfCPU()-self0))/(float64(time.Since(t0))*float64(rep.Cores)))
	fmt.Printf("CPU used by other processes before the run: %.0f%% of %d cores\n", rep.OtherCPUPctStart, rep.Cores)
	if rep.OtherCPUPctStart > 10 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("Other processes used %.0f%% of the %d cores just before the run; the rows share the machine with them (see the column \"others' CPU\").", rep.OtherCPUPctStart, rep.Cores))
	}

	tmp, err := os.MkdirTemp("", "moserver-bench-")
	if err != nil {
		return err
	}
	defer func() {
		if cfg.keep {
			fmt.Printf("kept the temporary directory %s (Caddyfile, keys, logs)\n", tmp)
			return
		}
		os.RemoveAll(tmp)
	}()
	// Stop the children in every case, Caddy first (it holds Redis
	// connections), and say so.
	defer func() {
		if b.caddy != nil {
			b.caddy.Stop(syscall.SIGINT, 5*time.Second)
		}
		for _, r := range b.redisServers() {
			r.Close()
		}
		if b.caddy != nil || b.redis != nil {
			logf("stopped caddy and redis-server")
		}
		if b.wp != nil {
			b.wp.close()
			logf("dropped the MariaDB database %s", b.wp.database.Name)
		}
		if err != nil && ctx.Err() == nil && b.caddy != nil {
			fmt.Fprintf(os.Stderr, "--- caddy log (tail) ---\n%s\n", b.caddy.LogTail(30))
		}
	}()

	if err := b.start(ctx, tmp); err != nil {
		return err
	}
	if err := b.rows(ctx); err != nil {
		return err
	}

	// Memory at the end of the run, before anything stops.
	if m, err := procStatusKB(b.caddy.PID(), "VmRSS", "VmHWM"); err == nil {
		rep.Memory.CaddyRSSKB, rep.Memory.CaddyHWMKB = m["VmRSS"], m["VmHWM"]
	}
	if info, err := b.redis.Client.InfoMap(ctx, "memory").Result(); err == nil {
		rep.Memory.RedisUsedMem = info["Memory"]["used_memory_human"]
	}
	rep.UptimeEnd = uptime()
	rep.Finished = time.Now()
	rep.evaluate()

	fmt.Println()
	fmt.Printf("uptime at the end: %s\n", rep.UptimeEnd)
	fmt.Printf("ceiling (mean of the ceiling rows; ratios use the ceiling measured alongside each row): %.0f req/s, p99 %.2f ms\n\n", rep.Ceiling.RPS, rep.Ceiling.P99Ms)
	rep.printTable(os.Stdout)
	fmt.Println()
	for _, c := range rep.Checks {
		if strings.HasPrefix(c.Name, "Caddy resident") || strings.HasPrefix(c.Name, "allocations") {
			fmt.Printf("%s: %s (target %s): %s\n", c.Name, c.Measured, c.Target, strings.ReplaceAll(yesNo(c), "**", ""))
		}
	}
	if rep.RSA != nil {
		fmt.Printf("RSA-signing bound: %d cores ÷ %.0f µs of CPU per signature = %.0f signatures/s\n", rep.RSA.Cores, rep.RSA.CPUPerSignUs, rep.RSA.PerSecond)
	}
	met, total := rep.met()
	fmt.Printf("targets met: %d of %d\n", met, total)

	return writeResults(rep, cfg.outDir)
}

// writeResults writes the chart, results.md and results.json of rep into
// dir and lists them.
func writeResults(rep *Report, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files, err := writeChart(rep, dir)
	chartName := ""
	if err != nil {
		logf("chart failed: %v", err)
		rep.Notes = append(rep.Notes, "The chart could not be written: "+err.Error())
	} else {
		chartName = "results.svg"
	}
	more, err := rep.writeFiles(dir, chartName)
	if err != nil {
		return err
	}
	files = append(more, files...)
	fmt.Println("\nwrote:")
	for _, f := range files {
		fmt.Println("  " + f)
	}
	return nil
}

// render re-evaluates a results.json written by an earlier run and writes
// its chart, results.md and results.json again into dir (after a change of
// the report's wording or checks; nothing is measured).
func render(path, dir string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	rep := &Report{}
	if err := json.Unmarshal(data, rep); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	rep.evaluate()
	return writeResults(rep, dir)
}

// start generates the keys and the Caddyfile and starts Redis and Caddy.
func (b *bench) start(ctx context.Context, tmp string) error {
	rep := b.rep
	logf("generating signing keys with tokens.GenerateKey (ES256, EdDSA, HS256, RS256)")
	algs := []string{"ES256", "EdDSA", "HS256", "RS256"}
	ports, err := loadtest.FreePorts(2 + len(algs) + 3)
	if err != nil {
		return err
	}
	adminPort, ceilingPort := ports[0], ports[1]
	b.ceilingPort, b.adminPort = ceilingPort, adminPort
	b.sites = map[string]site{}
	var sites []site
	var esKey *tokens.Key
	for i, alg := range algs {
		path, key, err := writeKey(tmp, alg)
		if err != nil {
			return err
		}
		if alg == "ES256" {
			esKey = key
		}
		s := site{alg: alg, port: ports[2+i], keyPath: path, prefix: "bench-" + strings.ToLower(alg) + ":"}
		sites = append(sites, s)
	}

	logf("starting redis-server (no persistence)")
	if b.redis, err = startRedis(ctx, tmp, "redis"); err != nil {
		return err
	}
	for i := range sites {
		sites[i].redisURL = "redis://" + b.redis.Addr + "/0"
		b.sites[sites[i].alg] = sites[i]
	}
	if b.cfg.families > 0 {
		// Row 5's pair: the ES256 site twice more, identical but for
		// their Redis, one to be filled and one left empty.
		logf("starting two more redis-servers for row 5: one to hold the %d families, one left empty", b.cfg.families)
		if b.fillRedis, err = startRedis(ctx, tmp, "redis-fill"); err != nil {
			return err
		}
		if b.twinRedis, err = startRedis(ctx, tmp, "redis-empty"); err != nil {
			return err
		}
		es := b.sites["ES256"]
		b.siteFill, b.siteTwin = es, es
		b.siteFill.port, b.siteFill.redisURL = ports[2+len(algs)], "redis://"+b.fillRedis.Addr+"/0"
		b.siteFill.comment = fmt.Sprintf("ES256 on the Redis filled with %s families (row 5)", humanCount(b.cfg.families))
		b.siteTwin.port, b.siteTwin.redisURL = ports[3+len(algs)], "redis://"+b.twinRedis.Addr+"/0"
		b.siteTwin.comment = "ES256 on an empty Redis: row 5's twin"
		sites = append(sites, b.siteFill, b.siteTwin)
	}

	logf("creating the WordPress database of the authorization_code rows on MariaDB (%s)", redactedServer())
	if b.wp, b.wpErr = setupWordPress(ctx); b.wpErr != nil {
		logf("no authorization_code rows: %v", b.wpErr)
	} else {
		b.wp.port = ports[4+len(algs)]
		logf("database %s: the plugin's tables, client %s, user %d, the client's RSA-2048 key; mariadbd pid %d", b.wp.database.Name, wpClientID, b.wp.userID, b.wp.dbPID)
	}

	body, err := ceilingBody(esKey, b.sites["ES256"].issuer())
	if err != nil {
		return err
	}
	cf := buildCaddyfile(adminPort, ceilingPort, body, filepath.Join(tmp, "storage"), sites)
	if b.wp != nil {
		cf += b.wp.caddyfile("redis://"+b.redis.Addr+"/0", b.sites["ES256"].keyPath)
	}
	cfPath := filepath.Join(tmp, "Caddyfile")
	if err := os.WriteFile(cfPath, []byte(cf), 0o600); err != nil {
		return err
	}
	ccHeader := formHeader(ccClient, ccSecret)
	ready := []readyCheck{{url: fmt.Sprintf("http://127.0.0.1:%d/", ceilingPort)}}
	for _, s := range sites {
		ready = append(ready, readyCheck{url: s.tokenURL(), header: ccHeader, body: ccBody})
	}
	if b.wp != nil {
		// The plugin's client gets client_credentials once its clients are read.
		ready = append(ready, readyCheck{url: b.wp.tokenURL(), header: formHeader(wpClientID, wpSecret), body: ccBody})
	}
	logf("starting caddy: %s run --config %s", b.cfg.caddyBin, cfPath)
	if b.caddy, err = startCaddy(ctx, b.cfg.caddyBin, tmp, cfPath, ready); err != nil {
		return err
	}
	logf("caddy pid %d: ceiling on :%d, ES256 :%d, EdDSA :%d, HS256 :%d, RS256 :%d, admin :%d",
		b.caddy.PID(), ceilingPort, b.sites["ES256"].port, b.sites["EdDSA"].port, b.sites["HS256"].port, b.sites["RS256"].port, adminPort)

	// One request each: the sizes of the bodies, to show the ceiling's body
	// is token-sized.
	c := &http.Client{Transport: newTransport(1), Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	ceilResp, err := readyCheck{url: fmt.Sprintf("http://127.0.0.1:%d/", ceilingPort), header: ccHeader, body: ccBody}.do(ctx, c)
	if err != nil {
		return fmt.Errorf("ceiling: %w", err)
	}
	rep.ResponseBytes["ceiling"] = len(ceilResp)
	for _, s := range sites {
		resp, err := readyCheck{url: s.tokenURL(), header: ccHeader, body: ccBody}.do(ctx, c)
		name := cmp.Or(s.comment, s.alg)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if jsonString(resp, "access_token") == "" {
			return fmt.Errorf("%s: no access_token in %q", name, resp)
		}
		if s.comment == "" {
			rep.ResponseBytes[s.alg] = len(resp)
		}
	}
	logf("response body bytes: ceiling %d, ES256 %d, EdDSA %d, HS256 %d, RS256 %d",
		rep.ResponseBytes["ceiling"], rep.ResponseBytes["ES256"], rep.ResponseBytes["EdDSA"], rep.ResponseBytes["HS256"], rep.ResponseBytes["RS256"])
	if b.wp != nil {
		if err := b.wp.waitIndexed(ctx); err != nil {
			b.wpErr = err
			logf("no authorization_code rows: %v", err)
		}
	}
	if b.wp != nil && b.wpErr == nil {
		for _, x := range []struct{ key, scope string }{{"authorization_code", codeScope}, {"authorization_code openid", openIDScope}} {
			n, err := b.wp.checkExchange(ctx, x.scope)
			if err != nil {
				b.wpErr = fmt.Errorf("the exchange of a code (scope %q) is not the plugin's: %w", x.scope, err)
				logf("no authorization_code rows: %v", b.wpErr)
				break
			}
			rep.ResponseBytes[x.key] = n
		}
		if b.wpErr == nil {
			logf("authorization_code exchanged through the WordPress site: the access token is a row of the plugin's table, "+
				"the id_token verifies with the client's key, a second exchange is invalid_grant (bodies %d and %d bytes)",
				rep.ResponseBytes["authorization_code"], rep.ResponseBytes["authorization_code openid"])
		}
	}

	b.gen = &generator{concurrency: b.cfg.concurrency, cpu: func() cpuSnap {
		s := cpuSnap{self: selfCPU(), machine: loadtest.MachineBusy(), at: time.Now()}
		s.caddy, _ = loadtest.ProcCPU(b.caddy.PID())
		for _, r := range b.redisServers() {
			t, _ := loadtest.ProcCPU(r.PID())
			s.redis += t
		}
		if b.wp != nil && b.wp.dbPID > 0 {
			s.db, _ = loadtest.ProcCPU(b.wp.dbPID)
		}
		return s
	}}
	return nil
}

// startRedis starts a private redis-server (no persistence) in its own
// directory name under tmp.
func startRedis(ctx context.Context, tmp, name string) (*loadtest.Redis, error) {
	dir := filepath.Join(tmp, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	r, err := loadtest.StartRedis(ctx, dir, 16)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	logf("%s: redis-server pid %d on %s", name, r.PID(), r.Addr)
	return r, nil
}

// redisServers are the redis-servers started so far.
func (b *bench) redisServers() []*loadtest.Redis {
	var rs []*loadtest.Redis
	for _, r := range []*loadtest.Redis{b.redis, b.fillRedis, b.twinRedis} {
		if r != nil {
			rs = append(rs, r)
		}
	}
	return rs
}

// measure runs one row, records it in the report and prints it. A row that
// cannot be measured is recorded as failed; only an interruption, or Caddy
// or Redis dying, stops the run.
func (b *bench) measure(ctx context.Context, key, name, label string, extra bool, s *stream, warm, dur time.Duration) (*Row, *loadResult, error) {
	row := &Row{Key: key, Name: name, Label: label, Extra: extra}
	b.rep.Rows = append(b.rep.Rows, row)
	var res, ceil, twin *loadResult
	var err error
	if b.ceiling != nil && !strings.HasPrefix(key, "ceiling") {
		s.onSlice = b.sliceProfiler(ctx, key)
		res, ceil, twin, err = b.gen.runAlternating(ctx, s, b.ceiling, warm, dur, alternations)
	} else {
		profiled := b.profile(ctx, key, warm, dur)
		res, err = b.gen.run(ctx, s, warm, dur)
		profiled()
	}
	if ctx.Err() != nil {
		return row, nil, ctx.Err()
	}
	row.Load1 = loadAvg()
	if !b.caddy.Running() {
		return row, nil, fmt.Errorf("caddy exited during %q: %v", name, b.caddy.Err())
	}
	for _, r := range b.redisServers() {
		if !r.Running() {
			return row, nil, fmt.Errorf("redis-server %s exited during %q: %v", r.Addr, name, r.Err())
		}
	}
	if res != nil {
		row.ErrorKinds = describeErrors(res.ErrorKinds)
	}
	if err != nil {
		row.Failed = err.Error()
		logf("%-44s FAILED: %v %s", name, err, strings.Join(row.ErrorKinds, "; "))
		return row, res, nil
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	row.RPS, row.OK, row.Errors, row.WarmupErrors = res.RPS, res.OK, res.Errors, res.WarmErrors
	row.P50Ms, row.P90Ms, row.P99Ms, row.MaxMs = ms(res.P50), ms(res.P90), ms(res.P99), ms(res.Max)
	row.WindowS, row.Exhausted = res.Window.Seconds(), res.Exhausted
	if n := res.OK + res.Errors; n > 0 && res.hasCPUSnaps {
		per := func(a, b time.Duration) float64 { return float64(b-a) / float64(time.Microsecond) / float64(n) }
		row.CaddyCPUUs = per(res.CPU0.caddy, res.CPU1.caddy)
		row.RedisCPUUs = per(res.CPU0.redis, res.CPU1.redis)
		row.GenCPUUs = per(res.CPU0.self, res.CPU1.self)
		ours := (res.CPU1.caddy - res.CPU0.caddy) + (res.CPU1.redis - res.CPU0.redis) + (res.CPU1.self - res.CPU0.self)
		if s.db && b.wp != nil && b.wp.dbPID > 0 {
			// The row's MariaDB work is ours too (with whatever else
			// the shared server did meanwhile).
			row.DBCPUUs = per(res.CPU0.db, res.CPU1.db)
			ours += res.CPU1.db - res.CPU0.db
		}
		avail := float64(res.CPU1.at.Sub(res.CPU0.at)) * float64(runtime.NumCPU())
		if avail > 0 {
			row.OtherCPUPct = max(0, 100*float64(res.CPU1.machine-res.CPU0.machine-ours)/avail)
		}
	}
	if res.OK == 0 {
		row.Failed = "no successful response"
	}
	if ceil != nil && ceil.Errors == 0 {
		row.CeilingAlongsideRPS, row.CeilingAlongsideP99Ms = ceil.RPS, ms(ceil.P99)
	}
	if twin != nil {
		row.TwinAlongsideRPS, row.TwinAlongsideP99Ms, row.TwinErrors = twin.RPS, ms(twin.P99), twin.Errors
	}
	errs := ""
	if len(row.ErrorKinds) > 0 {
		errs = " [" + strings.Join(row.ErrorKinds, "; ") + "]"
	}
	exh := ""
	if res.Exhausted {
		exh = fmt.Sprintf(" (supply ran out: %.1f s window)", row.WindowS)
	}
	local := ""
	if row.CeilingAlongsideRPS > 0 {
		local = fmt.Sprintf("  ceiling alongside %.0f req/s (%.2f×)", row.CeilingAlongsideRPS, row.RPS/row.CeilingAlongsideRPS)
	}
	if row.TwinAlongsideRPS > 0 {
		local += fmt.Sprintf("  twin alongside %.0f req/s (%.2f×)", row.TwinAlongsideRPS, row.RPS/row.TwinAlongsideRPS)
	}
	if row.DBCPUUs > 0 {
		local += fmt.Sprintf("  MariaDB %.0f µs/req", row.DBCPUUs)
	}
	logf("%-44s %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms  errors %d  Caddy %4.0f µs/req  Redis %3.0f µs/req  gen %3.0f µs/req  others %2.0f%% CPU%s%s%s",
		name, row.RPS, row.P50Ms, row.P99Ms, row.Errors, row.CaddyCPUUs, row.RedisCPUUs, row.GenCPUUs, row.OtherCPUPct, exh, errs, local)
	return row, res, nil
}

// profile, with BENCH_PROFILE set, fetches a CPU profile of Caddy over the
// row's measured window (from its admin endpoint's /debug/pprof) into
// <BENCH_PROFILE>/<key>.pprof, and writes the load generator's own to
// <key>.generator.pprof, for `go tool pprof`; the returned function waits
// for them. Without BENCH_PROFILE it does nothing.
func (b *bench) profile(ctx context.Context, key string, warm, dur time.Duration) (wait func()) {
	if b.cfg.profileDir == "" || dur < 2*time.Second {
		return func() {}
	}
	secs := int((dur - time.Second) / time.Second)
	path := filepath.Join(b.cfg.profileDir, key+".pprof")
	return b.profileAfter(ctx, warm, secs, path, func(err error) {
		if err != nil {
			logf("profile of %s: %v", key, err)
			return
		}
		logf("profile of %s (Caddy, %d s): %s", key, secs, path)
	})
}

// sliceProfiler, with BENCH_PROFILE set, is the onSlice of a row measured
// in alternation with the ceiling: it fetches a CPU profile of Caddy over
// each of the row's slices (not the ceiling's in between) into
// <BENCH_PROFILE>/<key>/slice-<i>.pprof, and the generator's own into
// slice-<i>.generator.pprof; `go tool pprof caddy <key>/slice-*[0-9].pprof`
// reads them as one. Without BENCH_PROFILE, or with slices under a
// second (the shortest profile Caddy serves), it returns nil.
func (b *bench) sliceProfiler(ctx context.Context, key string) func(i int, warm, d time.Duration) func() {
	if b.cfg.profileDir == "" || b.cfg.duration/alternations < time.Second {
		return nil
	}
	dir := filepath.Join(b.cfg.profileDir, key)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		logf("profiles of %s: %v", key, err)
		return nil
	}
	logf("profiles of %s (Caddy, each slice of the row): %s/slice-*.pprof", key, dir)
	return func(i int, warm, d time.Duration) func() {
		path := filepath.Join(dir, fmt.Sprintf("slice-%d.pprof", i))
		return b.profileAfter(ctx, warm, int(d/time.Second), path, func(err error) {
			if err != nil {
				logf("profile of %s, slice %d: %v", key, i, err)
			}
		})
	}
}

// profileAfter waits warm, then profiles Caddy for secs seconds into path
// and the generator itself over the same time into path with
// ".generator.pprof" for ".pprof", and reports the outcome to done; it
// runs in its own goroutine, and the returned function waits for it.
func (b *bench) profileAfter(ctx context.Context, warm time.Duration, secs int, path string, done func(error)) (wait func()) {
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		select {
		case <-time.After(warm):
		case <-ctx.Done():
			return
		}
		genPath := strings.TrimSuffix(path, ".pprof") + ".generator.pprof"
		if f, err := os.Create(genPath); err == nil {
			started := pprof.StartCPUProfile(f) == nil
			defer func() {
				if started {
					pprof.StopCPUProfile()
				}
				f.Close()
			}()
		}
		url := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", b.adminPort, secs)
		done(download(ctx, url, path))
	}()
	return func() { <-finished }
}

// download writes the body of a GET of url to path.
func download(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// rows runs every row in order.
func (b *bench) rows(ctx context.Context) error {
	cfg := b.cfg
	warm, dur := cfg.warmup, cfg.duration
	es := b.sites["ES256"]
	ccHeader := formHeader(ccClient, ccSecret)
	rtHeader := formHeader(rtClient, rtSecret)
	ceilingURL := fmt.Sprintf("http://127.0.0.1:%d/", b.ceilingPort)

	cc := func(s site) *stream { return &stream{url: s.tokenURL(), header: ccHeader, body: ccBody} }
	// The ceiling gets the very same request as the client_credentials rows.
	if _, _, err := b.measure(ctx, "ceiling", "ceiling: static respond (start)", "ceiling", false,
		&stream{url: ceilingURL, header: ccHeader, body: ccBody}, warm, dur); err != nil {
		return err
	}
	b.ceiling = &stream{url: ceilingURL, header: ccHeader, body: ccBody}
	// The ceiling measured in alternation with itself: how far from 1.00 a
	// ratio of this run can be off because of the method alone.
	if _, _, err := b.measure(ctx, "calibration", "ceiling alternating with itself (calibration)", "calibration", true,
		&stream{url: ceilingURL, header: ccHeader, body: ccBody}, warm, dur); err != nil {
		return err
	}
	if cfg.codesOnly {
		if err := b.codeRows(ctx); err != nil {
			return err
		}
		return b.ceilingEnd(ctx)
	}
	for _, r := range []struct{ key, alg string }{{"es256", "ES256"}, {"eddsa", "EdDSA"}, {"hs256", "HS256"}} {
		if _, _, err := b.measure(ctx, r.key, "client_credentials "+r.alg, "cc "+r.alg, false, cc(b.sites[r.alg]), warm, dur); err != nil {
			return err
		}
	}

	// The edge: a static respond behind moserver_auth, with one valid token
	// (signature, claims, scope and the one-round-trip revocation check).
	tc := &http.Client{Transport: newTransport(1), Timeout: 5 * time.Second}
	resp, err := readyCheck{url: es.tokenURL(), header: ccHeader, body: ccBody}.do(ctx, tc)
	tc.CloseIdleConnections()
	if at := jsonString(resp, "access_token"); err == nil && at != "" {
		edgeHeader := http.Header{"Authorization": {"Bearer " + at}, "User-Agent": {"moserver-bench"}}
		if _, _, err := b.measure(ctx, "edge", "moserver_auth-protected respond (ES256 token, Redis check)", "edge", false,
			&stream{method: http.MethodGet, url: es.base() + "/protected", header: edgeHeader}, warm, dur); err != nil {
			return err
		}
	} else {
		b.rep.Rows = append(b.rep.Rows, &Row{Key: "edge", Name: "moserver_auth-protected respond", Label: "edge", Failed: fmt.Sprintf("no access token: %v", err)})
	}

	logf("measuring the RSA-signing bound (RSA-2048 PKCS#1 v1.5 SHA-256, one goroutine, ~1 s)")
	bound, err := measureRSA(b.sites["RS256"].keyPath, time.Second)
	if err != nil {
		b.rep.Notes = append(b.rep.Notes, "RSA bound not measured: "+err.Error())
	} else {
		b.rep.RSA = bound
		logf("RSA bound: %d cores ÷ %.0f µs of CPU per signature = %.0f signatures/s (%.0f µs by the wall clock)", bound.Cores, bound.CPUPerSignUs, bound.PerSecond, bound.PerSignUs)
	}
	// The bound is measured again after each slice of the row, for as
	// long as a slice, so that it sees the same swings of the cores' speed
	// as the row (as the ceiling does for the other rows), and once more
	// after the row; it is the mean over all the signatures.
	rs := cc(b.sites["RS256"])
	rs.afterSlice = func(int) {
		if b.rep.RSA == nil {
			return
		}
		if m, err := measureRSA(b.sites["RS256"].keyPath, dur/alternations); err == nil {
			b.rep.RSA = b.rep.RSA.mean(m)
		}
	}
	if _, _, err := b.measure(ctx, "rs256", "client_credentials RS256", "cc RS256", false, rs, warm, dur); err != nil {
		return err
	}
	if b.rep.RSA != nil {
		if after, err := measureRSA(b.sites["RS256"].keyPath, time.Second); err == nil {
			b.rep.RSA = b.rep.RSA.mean(after)
			logf("RSA bound after the row: %.0f µs of CPU per signature; mean of %d measurements: %.0f µs, bound %.0f signatures/s",
				after.CPUPerSignUs, b.rep.RSA.measurements(), b.rep.RSA.CPUPerSignUs, b.rep.RSA.PerSecond)
		}
	}

	// client_credentials issuing refresh tokens: a row of its own (the
	// baseline of the stricter 1M row) that also pre-issues the tokens of
	// the refresh and revocation rows.
	var mu sync.Mutex
	var issued []string
	collect := func(_ int, body []byte) {
		if t := jsonString(body, "refresh_token"); t != "" {
			mu.Lock()
			issued = append(issued, t)
			mu.Unlock()
		}
	}
	issueRow, _, err := b.measure(ctx, "es256rt", "client_credentials ES256 + refresh token", "cc+RT ES256", true,
		&stream{url: es.tokenURL(), header: rtHeader, body: ccBody, onOK: collect}, warm, dur)
	if err != nil {
		return err
	}
	need := cfg.tokens
	if need == 0 && issueRow.Failed == "" {
		// Enough for a whole refresh row and a whole revocation row: the
		// revocation row revokes the refresh row's successors plus the
		// tokens the refresh row left.
		rate := issueRow.RPS
		revoke := rate * revokeVsIssue
		if c := b.ceilingRPS(); c > 0 {
			revoke = math.Min(revoke, c)
		}
		spent := warm + dur + sliceWarm*(alternations-1) // a row's slices and their warm-ups
		need = int(math.Ceil(spent.Seconds() * math.Max(rate*1.25, revoke*1.1)))
	}
	if len(issued) < need {
		logf("pre-issuing %d more refresh tokens through the endpoint (not timed)", need-len(issued))
		start := time.Now()
		_, err := b.gen.run(ctx, &stream{url: es.tokenURL(), header: rtHeader, body: ccBody, limit: need - len(issued), onOK: collect}, 0, 90*time.Second)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			return fmt.Errorf("pre-issuing refresh tokens: %w", err)
		}
		logf("pre-issued in %.1f s", time.Since(start).Seconds())
	}
	b.rep.PreIssued = len(issued)
	logf("%d refresh tokens pre-issued", len(issued))
	if len(issued) == 0 {
		b.rep.Rows = append(b.rep.Rows,
			&Row{Key: "refresh", Name: "refresh with rotation (Redis)", Label: "refresh", Failed: "no refresh token could be issued"},
			&Row{Key: "revoke", Name: "revocation (Redis)", Label: "revoke", Failed: "no refresh token could be issued"})
	} else {
		// Refresh with rotation: each pre-issued token used once; the
		// successors are kept for the revocation row.
		bodies := make([][]byte, len(issued))
		for i, t := range issued {
			bodies[i] = refreshBody(t)
		}
		successors := make([]string, len(issued))
		_, res, err := b.measure(ctx, "refresh", "refresh with rotation (Redis)", "refresh", false,
			&stream{url: es.tokenURL(), header: rtHeader, bodies: bodies, onOK: func(i int, body []byte) {
				successors[i] = jsonString(body, "refresh_token")
			}}, warm, dur)
		if err != nil {
			return err
		}
		used := len(issued)
		if res != nil {
			used = res.Attempted
		}
		// Revocation: every token revoked once, successors first.
		var pool [][]byte
		for _, t := range successors {
			if t != "" {
				pool = append(pool, revokeBody(t))
			}
		}
		for _, t := range issued[used:] {
			pool = append(pool, revokeBody(t))
		}
		logf("revocation supply: %d tokens (%d successors, %d unused)", len(pool), len(pool)-(len(issued)-used), len(issued)-used)
		if _, _, err := b.measure(ctx, "revoke", "revocation (Redis)", "revoke", false,
			&stream{url: es.revokeURL(), header: rtHeader, bodies: pool}, warm, dur); err != nil {
			return err
		}
	}

	if err := b.codeRows(ctx); err != nil {
		return err
	}

	if cfg.families > 0 {
		// Row 5: the ES256 site on a Redis holding the families, measured
		// in alternation with its twin, the same site on an empty Redis
		// (and with the ceiling): same requests, same moments of the
		// machine, only the stored families differ.
		fs := b.siteFill
		logf("writing %d live refresh families into the row-5 Redis %s (prefix %s)", cfg.families, b.fillRedis.Addr, fs.prefix)
		fill, err := fillFamilies(ctx, b.fillRedis.Client, fs.prefix, rtClient, cfg.families)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			return fmt.Errorf("filling Redis: %w", err)
		}
		b.rep.Fill, b.rep.FillSeconds = fill, fill.Took.Seconds()
		logf("wrote %d families in %.1f s: %d keys, %s", fill.Families, fill.Took.Seconds(), fill.Keys, fill.UsedMem)
		// Redeem one written token: proof that the data is the store's own.
		c := &http.Client{Transport: newTransport(1), Timeout: 5 * time.Second}
		resp, err := readyCheck{url: fs.tokenURL(), header: rtHeader, body: refreshBody(fill.Sample)}.do(ctx, c)
		c.CloseIdleConnections()
		if err != nil || jsonString(resp, "refresh_token") == "" {
			return fmt.Errorf("a refresh token written into Redis is not accepted by the endpoint: %v", err)
		}
		logf("a written family's refresh token is accepted by the endpoint (rotated)")
		// And the client's family index is the store's own: ListFamilies
		// reads a page of it.
		page, err := store.NewRedis(b.fillRedis.Client, fs.prefix).ListFamilies(ctx, rtClient, store.FamilyQuery{Limit: 10})
		if err != nil || len(page.Families) != 10 || page.Next == "" {
			return fmt.Errorf("the written families cannot be listed through the store: %d listed, %v", len(page.Families), err)
		}
		logf("the written families are listed by the store's ListFamilies")
		if err := b.settle(ctx); err != nil {
			return err
		}
		row := cc(fs)
		row.twin = cc(b.siteTwin)
		name := fmt.Sprintf("client_credentials ES256, %s families in Redis", humanCount(cfg.families))
		if _, _, err := b.measure(ctx, "es256_1m", name, "cc ES256 "+humanCount(cfg.families), false, row, warm, dur); err != nil {
			return err
		}
		row = &stream{url: fs.tokenURL(), header: rtHeader, body: ccBody}
		row.twin = &stream{url: b.siteTwin.tokenURL(), header: rtHeader, body: ccBody}
		name = fmt.Sprintf("client_credentials ES256 + refresh token, %s families", humanCount(cfg.families))
		fill0, twin0 := b.fillRedis.Client.DBSize(ctx).Val(), b.twinRedis.Client.DBSize(ctx).Val()
		if _, _, err := b.measure(ctx, "es256rt_1m", name, "cc+RT "+humanCount(cfg.families), true, row, warm, dur); err != nil {
			return err
		}
		for _, r := range []struct {
			name   string
			c      *redis.Client
			before int64
		}{{"the filled Redis", b.fillRedis.Client, fill0}, {"the twin's empty Redis", b.twinRedis.Client, twin0}} {
			if note := doublingNote(r.name, r.before, r.c.DBSize(ctx).Val()); note != "" {
				b.rep.Notes = append(b.rep.Notes, "During \""+name+"\": "+note)
			}
		}
	}

	return b.ceilingEnd(ctx)
}

// ceilingEnd measures the ceiling again, at the end of the run.
func (b *bench) ceilingEnd(ctx context.Context) error {
	_, _, err := b.measure(ctx, "ceiling_end", "ceiling: static respond (end)", "ceiling (end)", false,
		b.ceiling, b.cfg.warmup, b.cfg.duration)
	return err
}

// doublingNote says, when the keys of a Redis grew past a power of two
// (from before to after), that Redis resized its keyspace meanwhile: it then
// rehashes its main and expires tables a step per command and 1 ms per cron
// tick, so every write costs it more until that is done (each new key
// hits both the old and the new table). It is "" otherwise.
func doublingNote(name string, before, after int64) string {
	if before <= 0 || after <= before {
		return ""
	}
	p := int64(1)
	for p <= before {
		p <<= 1
	}
	if p > after {
		return ""
	}
	return fmt.Sprintf("the keys of %s grew from %d to %d, past 2^%d = %d, where Redis doubles its key tables and rehashes them "+
		"incrementally: until that is done every write costs Redis more (see its CPU per request); it happens at every "+
		"doubling, whatever the size, and stops when the rehash is over", name, before, after, bits.Len64(uint64(p))-1, p)
}

// settlePause is the idle pause between the fill and row 5.
const settlePause = 5 * time.Second

// settle waits settlePause with nothing running.
func (b *bench) settle(ctx context.Context) error {
	select {
	case <-time.After(settlePause):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ceilingRPS is the first ceiling row's rate (0 if none).
func (b *bench) ceilingRPS() float64 {
	if r := b.rep.row("ceiling"); r != nil {
		return r.RPS
	}
	return 0
}

// humanCount writes 1000000 as 1M and 250000 as 250k.
func humanCount(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

// uptime returns the output of uptime(1), or /proc/loadavg without it.
func uptime() string {
	if out, err := exec.Command("uptime").Output(); err == nil {
		return strings.TrimSpace(string(out))
	}
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		return "loadavg " + strings.TrimSpace(string(data))
	}
	return "unknown"
}

// cpuModel returns the "model name" of /proc/cpuinfo.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}
