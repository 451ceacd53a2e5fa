// Command moserver-soak is the soak. On one machine and
// over loopback only, it
//
//   - starts a private redis-server (no persistence) and the built Caddy
//     (a Caddy with the module, e.g. from go build ./cmd/caddy; this program builds nothing)
//     with a generated Caddyfile in a temporary directory: one moserver site
//     with `storage redis`, the admin endpoint on a free port;
//   - measures capacity, closed loop at SOAK_CONCURRENCY (64): first
//     client_credentials alone, then the soak's own mix, each for
//     SOAK_CAPACITY_DURATION (3s) after a 1 s warm-up;
//   - runs the mix for SOAK_DURATION (2m), open loop at SOAK_LOAD (0.8) of
//     the mix's capacity: operation i is due at start + i/rate whether or not
//     earlier ones are done, on up to SOAK_WORKERS (64, the concurrency the
//     capacity was measured at) at once; an operation due while all are busy
//     and the queue is full is shed (counted, reported);
//   - rotates every remaining chain once more at the end;
//   - checks: zero 5xx; every answer as expected; every successful refresh's
//     new token used exactly once afterwards and working (a 2xx refresh whose
//     successor is refused although the soak never revoked or replayed its
//     family is LOST; two successes from one token, or one token value
//     issued twice, is DUPLICATED); every replay refused and its family
//     revoked (the family's latest token is refused next); every revocation
//     effective; Caddy's RSS, sampled every SOAK_SAMPLE (5s), not more than
//     20% higher in the last quarter than in the first; the module's own
//     request counters (Caddy's admin /metrics) equal to the answers
//     received, so no answer was lost; Caddy alive with no panic logged;
//   - prints a summary table, writes <out>/results.md and exits 1 when a
//     guarantee fails (2: bad settings, 3: could not run, 130: interrupted);
//   - stops everything it started, also on Ctrl-C or failure.
//
// The mix, of every 20 operations: 8 client_credentials, 8 refreshes of a
// chain, 2 revocations (+ a check), 1 replay of a spent token (+ a check), 1
// double spend of a current token (+ a check). A chain is a refresh-token
// family held by one operation at a time.
//
// Run it through `./xcaddy.sh soak`. Other knobs: SOAK_RATE (ops/s: skip the
// capacity phases), SOAK_KEEP=1 (keep the temporary directory with the
// Caddyfile and the logs).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/caddy-moserver/caddy-moserver/internal/loadtest"
)

// config is what one run does.
type config struct {
	caddyBin    string
	outDir      string
	duration    time.Duration
	capacity    time.Duration
	load        float64
	rate        float64 // ops/s; 0: 80% of the measured capacity
	concurrency int
	workers     int
	sample      time.Duration
	keep        bool
	machine     string
}

func loadConfig(args []string) (config, error) {
	cfg := config{
		duration:    2 * time.Minute,
		capacity:    3 * time.Second,
		load:        0.8,
		concurrency: 64,
		workers:     64,
		sample:      5 * time.Second,
	}
	fs := flag.NewFlagSet("moserver-soak", flag.ContinueOnError)
	fs.StringVar(&cfg.caddyBin, "caddy", "./caddy", "the Caddy binary built with the moserver module")
	fs.StringVar(&cfg.outDir, "out", "soak", "directory for results.md")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	var err error
	if cfg.duration, err = loadtest.EnvDuration("SOAK_DURATION", cfg.duration); err != nil {
		return cfg, err
	}
	if cfg.capacity, err = loadtest.EnvDuration("SOAK_CAPACITY_DURATION", cfg.capacity); err != nil {
		return cfg, err
	}
	if cfg.sample, err = loadtest.EnvDuration("SOAK_SAMPLE", cfg.sample); err != nil {
		return cfg, err
	}
	if cfg.load, err = loadtest.EnvFloat("SOAK_LOAD", cfg.load); err != nil {
		return cfg, err
	}
	if cfg.rate, err = loadtest.EnvFloat("SOAK_RATE", 0); err != nil {
		return cfg, err
	}
	if cfg.concurrency, err = loadtest.EnvInt("SOAK_CONCURRENCY", cfg.concurrency); err != nil {
		return cfg, err
	}
	if cfg.workers, err = loadtest.EnvInt("SOAK_WORKERS", cfg.workers); err != nil {
		return cfg, err
	}
	cfg.keep = os.Getenv("SOAK_KEEP") == "1"
	switch {
	case cfg.duration < 10*time.Second || cfg.duration > 24*time.Hour:
		return cfg, errors.New("SOAK_DURATION must be between 10s and 24h")
	case cfg.capacity < time.Second || cfg.capacity > time.Minute:
		return cfg, errors.New("SOAK_CAPACITY_DURATION must be between 1s and 1m")
	case cfg.sample < time.Second || cfg.sample > cfg.duration/4:
		return cfg, errors.New("SOAK_SAMPLE must be between 1s and a quarter of SOAK_DURATION")
	case cfg.load <= 0 || cfg.load > 2:
		return cfg, errors.New("SOAK_LOAD must be in (0, 2]")
	case cfg.rate < 0 || cfg.rate > 1e6:
		return cfg, errors.New("SOAK_RATE must be in [0, 1e6]")
	case cfg.concurrency < 1 || cfg.concurrency > 4096:
		return cfg, errors.New("SOAK_CONCURRENCY must be in 1..4096")
	case cfg.workers < 1 || cfg.workers > 4096:
		return cfg, errors.New("SOAK_WORKERS must be in 1..4096")
	}
	for _, p := range []*string{&cfg.caddyBin, &cfg.outDir} {
		if *p, err = filepath.Abs(*p); err != nil {
			return cfg, err
		}
	}
	cfg.machine = fmt.Sprintf("%s/%s, %d CPUs", runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	return cfg, nil
}

// errGuarantee means the soak ran and a guarantee failed.
var errGuarantee = errors.New("a guarantee failed")

func main() {
	cfg, err := loadConfig(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "moserver-soak:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, cfg)
	interrupted := ctx.Err() != nil
	stop()
	switch {
	case interrupted:
		fmt.Fprintln(os.Stderr, "moserver-soak: interrupted; every process it started is stopped")
		os.Exit(130)
	case errors.Is(err, errGuarantee):
		os.Exit(1)
	case err != nil:
		fmt.Fprintln(os.Stderr, "moserver-soak:", err)
		os.Exit(3)
	}
}

func logf(format string, a ...any) {
	fmt.Printf("==> "+format+"\n", a...)
}

// requestTimeout bounds every request of the soak.
const requestTimeout = 30 * time.Second

func run(ctx context.Context, cfg config) (err error) {
	rep := &report{started: time.Now(), cfg: cfg, loadBefore: loadAvg()}
	if st, err := os.Stat(cfg.caddyBin); err != nil || st.IsDir() {
		return fmt.Errorf("%s: not a file (build it with go build ./cmd/caddy)", cfg.caddyBin)
	}
	if out, err := exec.CommandContext(ctx, cfg.caddyBin, "version").Output(); err == nil {
		rep.caddyVersion = "Caddy " + strings.Fields(string(out) + " ?")[0]
	}

	dir, err := os.MkdirTemp("", "moserver-soak-")
	if err != nil {
		return err
	}
	defer func() {
		if cfg.keep {
			logf("kept %s (Caddyfile, caddy.log, redis.log)", dir)
			return
		}
		os.RemoveAll(dir)
	}()

	rds, err := loadtest.StartRedis(ctx, dir, 2)
	if err != nil {
		return err
	}
	defer rds.Close()
	caddy, err := startCaddy(ctx, cfg.caddyBin, dir, rds.Addr)
	if err != nil {
		return err
	}
	defer caddy.Stop(syscall.SIGINT, 10*time.Second)
	logf("redis-server on %s, caddy (pid %d) on %s, admin %s; load average %s", rds.Addr, caddy.PID(), caddy.base, caddy.admin, rep.loadBefore)

	client := newHTTPClient(max(cfg.workers, cfg.concurrency)+8, requestTimeout)
	defer client.CloseIdleConnections()
	tl := &tally{}

	// Capacity.
	rep.target = cfg.rate
	if cfg.rate == 0 {
		capRun := newRunner(caddy.base, client, tl, cfg.concurrency+64)
		rep.capRun = capRun
		logf("capacity 1: client_credentials, closed loop, %d concurrent, %s (+1s warm-up)", cfg.concurrency, cfg.capacity)
		rep.ccCapacity, _ = capRun.closedLoop(ctx, cfg.concurrency, time.Second, cfg.capacity, true)
		logf("  %.0f req/s", rep.ccCapacity)
		logf("capacity 2: the soak's mix, closed loop, %d concurrent, %s (+1s warm-up)", cfg.concurrency, cfg.capacity)
		rep.mixOpsCap, rep.mixReqCap = capRun.closedLoop(ctx, cfg.concurrency, time.Second, cfg.capacity, false)
		logf("  %.0f ops/s (%.0f req/s)", rep.mixOpsCap, rep.mixReqCap)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rep.capacityPhaseIssues = capRun.failureCounts()
		if rep.mixOpsCap < 1 {
			return fmt.Errorf("the measured capacity is %.2f ops/s; is Caddy working? caddy log:\n%s", rep.mixOpsCap, caddy.LogTail(30))
		}
		rep.target = cfg.load * rep.mixOpsCap
	}

	// The soak.
	run := newRunner(caddy.base, client, tl, cfg.workers+256)
	rep.run = run
	logf("soak: the mix at %.0f ops/s for %s (open loop, up to %d in flight); Caddy's memory every %s",
		rep.target, cfg.duration, cfg.workers, cfg.sample)
	cpu0 := takeCPU(caddy.PID(), rds.PID())
	sampler := startSampler(ctx, caddy, rds, cfg.sample)
	var lastOps, lastReqs int64
	var lastAt time.Duration
	rep.open = run.openLoop(ctx, rep.target, cfg.duration, cfg.workers, func(el time.Duration) {
		if el-lastAt < 10*time.Second {
			return
		}
		ops, reqs := run.ops.Load(), run.requests.Load()
		f := run.failureCounts()
		var bad int64
		for _, n := range f {
			bad += n
		}
		rss, _ := procStatusKB(caddy.PID(), "VmRSS")
		logf("  %3.0fs: %.0f ops/s, %.0f req/s over the last %s; %d failures; Caddy RSS %s",
			el.Seconds(), float64(ops-lastOps)/(el-lastAt).Seconds(), float64(reqs-lastReqs)/(el-lastAt).Seconds(),
			(el - lastAt).Round(time.Second), bad, mib(rss))
		lastOps, lastReqs, lastAt = ops, reqs, el
	})
	rep.samples = sampler.stop()
	rep.cpu = takeCPU(caddy.PID(), rds.PID()).sub(cpu0)
	rep.soakOps, rep.soakReqs = run.ops.Load(), run.requests.Load()
	if ctx.Err() != nil {
		return ctx.Err()
	}

	logf("final check: rotating every chain once more")
	rep.finalChains = run.finalCheck(ctx, 32)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	rep.answers = tl.snapshot()
	rep.counters, rep.countersErr = moserverCounters(ctx, caddy.admin)
	rep.caddyAlive = caddy.Running()
	if data, err := os.ReadFile(caddy.LogPath); err == nil {
		rep.panics = strings.Contains(string(data), "panic")
	}
	rep.loadAfter = loadAvg()
	rep.trend = trend(rep.samples, rep.open.elapsed)
	rep.evaluate()

	md := rep.markdown()
	if err := os.MkdirAll(cfg.outDir, 0o755); err != nil {
		return err
	}
	out := filepath.Join(cfg.outDir, "results.md")
	if err := os.WriteFile(out, []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Print(rep.terminal())
	logf("wrote %s", out)
	if rep.failed {
		if !cfg.keep {
			fmt.Printf("--- caddy log (tail) ---\n%s\n", caddy.LogTail(20))
		}
		return errGuarantee
	}
	return nil
}

// sampler samples Caddy's and Redis's memory every interval.
type sampler struct {
	cancel  context.CancelFunc
	done    chan struct{}
	mu      sync.Mutex
	samples []memSample
}

func startSampler(ctx context.Context, caddy *caddyServer, rds *loadtest.Redis, every time.Duration) *sampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &sampler{cancel: cancel, done: make(chan struct{})}
	start := time.Now()
	hc := newHTTPClient(1, 5*time.Second)
	take := func(at time.Duration) {
		rss, err := procStatusKB(caddy.PID(), "VmRSS")
		if err != nil {
			return
		}
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ccancel()
		h := caddy.goHeap(cctx, hc)
		m := memSample{at: at, rssKB: rss, heapInuse: h.heapInuse, goroutines: h.goroutines, redisUsed: usedMemory(cctx, rds)}
		s.mu.Lock()
		s.samples = append(s.samples, m)
		s.mu.Unlock()
	}
	go func() {
		defer close(s.done)
		defer hc.CloseIdleConnections()
		take(0)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				s.mu.Lock()
				last := -every
				if n := len(s.samples); n > 0 {
					last = s.samples[n-1].at
				}
				s.mu.Unlock()
				if at := time.Since(start); at-last >= every/2 {
					take(at) // the end of the soak
				}
				return
			case <-t.C:
				take(time.Since(start))
			}
		}
	}()
	return s
}

// stop takes a last sample and returns them all.
func (s *sampler) stop() []memSample {
	s.cancel()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples
}
