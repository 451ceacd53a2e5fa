package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-moserver/caddy-moserver/internal/tokens"
)

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 50}, {0.99, 99}, {1, 100}, {0, 1}} {
		if got := percentile(d, c.p); got != c.want {
			t.Errorf("percentile(%v) = %v, want %v", c.p, got, c.want)
		}
	}
	if percentile(nil, 0.5) != 0 {
		t.Error("percentile of nothing should be 0")
	}
}

func TestJSONString(t *testing.T) {
	body := []byte(`{"access_token":"a.b.c","expires_in":3600,"refresh_token":"xyz"}`)
	if got := jsonString(body, "refresh_token"); got != "xyz" {
		t.Errorf("refresh_token = %q", got)
	}
	if got := jsonString(body, "missing"); got != "" {
		t.Errorf("missing = %q", got)
	}
	if got := errorCode([]byte(`{"error":"invalid_grant","error_description":"x"}`)); got != "invalid_grant" {
		t.Errorf("errorCode = %q", got)
	}
}

// TestGenerator checks the closed loop against a local server: every request
// is counted once, non-2xx responses are errors, a limited supply ends the
// row early and each body is sent at most once.
func TestGenerator(t *testing.T) {
	var seen bodyLog
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen.add(string(b))
		if r.Header.Get("Authorization") != "Basic eA==" {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		if strings.HasPrefix(string(b), "bad") {
			http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"refresh_token":"r-%s"}`, b)
	}))
	defer srv.Close()
	hdr := http.Header{"Authorization": {"Basic eA=="}}
	g := &generator{concurrency: 4}

	t.Run("duration", func(t *testing.T) {
		res, err := g.run(context.Background(), &stream{url: srv.URL, header: hdr, body: []byte("ok")}, 50*time.Millisecond, 200*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if res.OK == 0 || res.Errors != 0 || res.Exhausted || res.RPS <= 0 || res.P50 <= 0 || res.P99 < res.P50 {
			t.Fatalf("unexpected result %+v", res)
		}
		if res.Window != 200*time.Millisecond {
			t.Errorf("window %v", res.Window)
		}
	})

	t.Run("supply", func(t *testing.T) {
		seen.reset()
		bodies := make([][]byte, 300)
		for i := range bodies {
			bodies[i] = fmt.Appendf(nil, "t%d", i)
			if i%10 == 0 {
				bodies[i] = fmt.Appendf(nil, "bad%d", i)
			}
		}
		got := make([]string, len(bodies))
		res, err := g.run(context.Background(), &stream{url: srv.URL, header: hdr, bodies: bodies, onOK: func(i int, b []byte) {
			got[i] = jsonString(b, "refresh_token")
		}}, 0, 10*time.Second) // no warm-up: 300 bodies may not outlast one
		if err != nil {
			t.Fatal(err)
		}
		if !res.Exhausted || res.Window >= 10*time.Second || res.Attempted != len(bodies) {
			t.Fatalf("supply should run out: %+v", res)
		}
		if seen.total() != len(bodies) || seen.dups() != 0 {
			t.Fatalf("server saw %d bodies (%d duplicates), want %d once each", seen.total(), seen.dups(), len(bodies))
		}
		for i, v := range got {
			if i%10 != 0 && v != fmt.Sprintf("r-t%d", i) {
				t.Fatalf("onOK[%d] = %q", i, v)
			}
		}
		if res.ErrorKinds["HTTP 400 invalid_grant"] != 30 {
			t.Errorf("error kinds %v, want 30× HTTP 400 invalid_grant", res.ErrorKinds)
		}
	})

	t.Run("alternating", func(t *testing.T) {
		seen.reset()
		bodies := numbered("a", 5000)
		row := &stream{url: srv.URL, header: hdr, bodies: bodies}
		ref := &stream{url: srv.URL, header: hdr, bodies: numbered("ref", 100000)} // distinct, so that the log tells them apart
		res, refRes, twinRes, err := g.runAlternating(context.Background(), row, ref, 0, 400*time.Millisecond, 4)
		if err != nil {
			t.Fatal(err)
		}
		if twinRes != nil {
			t.Errorf("a twin result without a twin: %+v", twinRes)
		}
		// Each body at most once across the slices, the reference sent in
		// between, and the merged windows add up.
		if seen.dups() != 0 {
			t.Fatalf("%d bodies sent twice across slices", seen.dups())
		}
		if res.OK == 0 || refRes.OK == 0 || res.Errors != 0 || refRes.Errors != 0 {
			t.Fatalf("row %+v, reference %+v", res, refRes)
		}
		if !res.Exhausted && (res.Window != 400*time.Millisecond || refRes.Window != 400*time.Millisecond) {
			t.Errorf("windows %v and %v, want 4 × 100ms each", res.Window, refRes.Window)
		}
		if res.Attempted > len(bodies) || res.OK > res.Attempted || len(res.lats) != res.OK || res.P99 < res.P50 {
			t.Errorf("merged row result %+v", res)
		}
		if row.tr != nil || ref.tr != nil {
			t.Error("the streams keep their transports after the run")
		}
	})

	t.Run("alternating with a twin", func(t *testing.T) {
		// The kind of stream of every request, in the order they came.
		var mu sync.Mutex
		var order []byte
		log := func(kind byte) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				mu.Lock()
				if len(order) == 0 || order[len(order)-1] != kind {
					order = append(order, kind)
				}
				mu.Unlock()
			}
		}
		mux := http.NewServeMux()
		mux.Handle("/row", log('r'))
		mux.Handle("/twin", log('t'))
		mux.Handle("/ceiling", log('c'))
		s := httptest.NewServer(mux)
		defer s.Close()
		row := &stream{url: s.URL + "/row", header: hdr, twin: &stream{url: s.URL + "/twin", header: hdr}}
		row.afterSlice = func(int) {
			mu.Lock()
			order = append(order, 'a')
			mu.Unlock()
		}
		ref := &stream{url: s.URL + "/ceiling", header: hdr}
		res, refRes, twinRes, err := g.runAlternating(context.Background(), row, ref, 0, 400*time.Millisecond, 4)
		if err != nil {
			t.Fatal(err)
		}
		// Each slice of the row is paired with one of the twin, in turns
		// first and second, and the ceiling's follows the pair; afterSlice
		// runs right after each of the row's.
		if got, want := string(order), "ratctracratctrac"; got != want {
			t.Errorf("order of the slices %q, want %q", got, want)
		}
		for name, r := range map[string]*loadResult{"row": res, "ceiling": refRes, "twin": twinRes} {
			if r == nil || r.OK == 0 || r.Errors != 0 || r.Window != 400*time.Millisecond {
				t.Errorf("%s: %+v", name, r)
			}
		}
		if row.twin.tr != nil {
			t.Error("the twin keeps its transport after the run")
		}
	})

	t.Run("each worker its own block", func(t *testing.T) {
		seen.reset()
		bodies := numbered("w", 402) // 4 blocks of 100; the last 2 are never sent
		s := &stream{url: srv.URL, header: hdr, bodies: bodies, perWorker: true}
		res, err := g.run(context.Background(), s, 0, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Exhausted || res.Attempted > 400 || res.OK+res.Errors > res.Attempted {
			t.Fatalf("the blocks should run out: %+v", res)
		}
		if seen.dups() != 0 || seen.total() != res.Attempted || seen.has("w400") || seen.has("w401") {
			t.Fatalf("server saw %d bodies (%d duplicates) of %d taken, or one outside the blocks", seen.total(), seen.dups(), res.Attempted)
		}
		// Worker w takes its block in order, whoever else runs.
		s = &stream{bodies: bodies[:10], perWorker: true, sent: make([]int, 3)}
		var got []int
		for _, w := range []int{1, 0, 1, 2, 1, 1, 0, 0, 2, 2, 0, 2} {
			if i, ok := s.next(w, 3); ok {
				got = append(got, i)
			}
		}
		if want := []int{3, 0, 4, 6, 5, 1, 2, 7, 8}; !slices.Equal(got, want) {
			t.Errorf("indices %v, want %v (blocks 0-2, 3-5, 6-8; 9 left over)", got, want)
		}
		if s.taken() != 9 {
			t.Errorf("taken %d, want 9", s.taken())
		}
	})

	t.Run("refilled before each slice", func(t *testing.T) {
		seen.reset()
		row := &stream{url: srv.URL, header: hdr, perWorker: true}
		var calls []string
		row.beforeSlice = func(i int, prev *loadResult, warm, d time.Duration) error {
			calls = append(calls, fmt.Sprintf("%d:%v:%v", i, prev != nil, d))
			// Far fewer than a slice takes: the first slice (no warm-up)
			// ends early, the others run out in their warm-up and are
			// skipped, and the row goes on.
			row.setBodies(numbered(fmt.Sprintf("s%d-", i), 40))
			return nil
		}
		ref := &stream{url: srv.URL, header: hdr, bodies: numbered("ref", 100000)}
		res, refRes, _, err := g.runAlternating(context.Background(), row, ref, 0, 400*time.Millisecond, 4)
		if err != nil {
			t.Fatal(err)
		}
		if want := "0:false:100ms 1:true:100ms 2:true:100ms 3:true:100ms"; strings.Join(calls, " ") != want {
			t.Errorf("beforeSlice calls %q, want %q", strings.Join(calls, " "), want)
		}
		if seen.dups() != 0 {
			t.Fatalf("%d bodies sent twice", seen.dups())
		}
		for i := range 4 {
			// Which of its bodies depends on the workers' start: the
			// first to run out of its block stops the others.
			sent := false
			for k := range 40 {
				sent = sent || seen.has(fmt.Sprintf("s%d-%d", i, k))
			}
			if !sent {
				t.Errorf("slice %d sent none of its bodies", i)
			}
		}
		if !res.Exhausted || res.OK == 0 || res.OK > 40 || res.Window >= 100*time.Millisecond || refRes.Window != 100*time.Millisecond {
			t.Errorf("row %+v (the first slice ends when its bodies run out, the others are skipped), ceiling %+v", res, refRes)
		}
		row.beforeSlice = func(int, *loadResult, time.Duration, time.Duration) error { return fmt.Errorf("no codes") }
		if _, _, _, err := g.runAlternating(context.Background(), row, ref, 0, 400*time.Millisecond, 4); err == nil || !strings.Contains(err.Error(), "no codes") {
			t.Errorf("a failed refill: err = %v", err)
		}
	})

	t.Run("warm-up eats the supply", func(t *testing.T) {
		_, err := g.run(context.Background(), &stream{url: srv.URL, header: hdr, body: []byte("ok"), limit: 5}, time.Second, time.Second)
		if err != errSupplyInWarmup {
			t.Fatalf("err = %v, want errSupplyInWarmup", err)
		}
	})

	t.Run("interrupted", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		if _, err := g.run(ctx, &stream{url: srv.URL, header: hdr, body: []byte("ok")}, 0, time.Minute); err == nil {
			t.Fatal("no error after the context ended")
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("the run did not stop with its context")
		}
	})
}

// numbered returns n bodies: prefix followed by 0 … n-1.
func numbered(prefix string, n int) [][]byte {
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = fmt.Appendf(nil, "%s%d", prefix, i)
	}
	return bodies
}

// bodyLog records the bodies a test server saw.
type bodyLog struct {
	mu   sync.Mutex
	n    int
	dup  int
	seen map[string]bool
}

func (l *bodyLog) add(b string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = map[string]bool{}
	}
	l.n++
	if l.seen[b] {
		l.dup++
	}
	l.seen[b] = true
}

func (l *bodyLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n, l.dup, l.seen = 0, 0, nil
}

func (l *bodyLog) has(b string) bool { l.mu.Lock(); defer l.mu.Unlock(); return l.seen[b] }
func (l *bodyLog) total() int        { l.mu.Lock(); defer l.mu.Unlock(); return l.n }
func (l *bodyLog) dups() int         { l.mu.Lock(); defer l.mu.Unlock(); return l.dup }

// TestCaddyfile checks the generated Caddyfile names what the run relies on.
func TestCaddyfile(t *testing.T) {
	dir := t.TempDir()
	path, key, err := writeKey(dir, "ES256")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	s := site{alg: "ES256", port: 1234, keyPath: path, prefix: "bench-es256:", redisURL: "redis://127.0.0.1:3/0"}
	twin := s
	twin.port, twin.redisURL, twin.comment = 1235, "redis://127.0.0.1:4/0", "the twin"
	body, err := ceilingBody(key, s.issuer())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(body, `{"access_token":"eyJ`) || !strings.Contains(body, `"token_type":"Bearer"`) || strings.Contains(body, "`") {
		t.Fatalf("ceiling body %s", body)
	}
	cf := buildCaddyfile(1, 2, body, filepath.Join(dir, "st"), []site{s, twin})
	for _, want := range []string{
		"admin 127.0.0.1:1", "http://127.0.0.1:2 {", "respond `" + body + "` 200",
		"header Cache-Control no-store", `header Content-Type "application/json; charset=UTF-8"`,
		"http://127.0.0.1:1234 {", "issuer http://127.0.0.1:1234/wp-json/moserver",
		"storage redis redis://127.0.0.1:3/0", "key_prefix bench-es256:", fmt.Sprintf("signing_key %q", path),
		"client bench-cc {", "client bench-rt {", "refresh_tokens",
		"# the twin\nhttp://127.0.0.1:1235 {", "storage redis redis://127.0.0.1:4/0",
	} {
		if !strings.Contains(cf, want) {
			t.Errorf("Caddyfile lacks %q:\n%s", want, cf)
		}
	}
	// bench-cc must not get refresh tokens.
	cc := cf[strings.Index(cf, "client bench-cc {"):strings.Index(cf, "client bench-rt {")]
	if strings.Contains(cc, "refresh_tokens") {
		t.Error("bench-cc has refresh_tokens")
	}
	// The key is the module's own: it parses back with the same kid.
	data, _ := os.ReadFile(path)
	k2, err := tokens.ParseKey(data, "")
	if err != nil || k2.KID != key.KID {
		t.Fatalf("ParseKey: %v", err)
	}
}

// TestEvaluate checks ratios and targets against the ceiling mean.
func TestEvaluate(t *testing.T) {
	r := &Report{}
	r.Rows = []*Row{
		{Key: "ceiling", RPS: 10000, P99Ms: 10},
		{Key: "es256", Name: "cc ES256", RPS: 5000, P99Ms: 15},
		{Key: "hs256", Name: "cc HS256", RPS: 5000, P99Ms: 25},
		{Key: "rs256", Name: "cc RS256", RPS: 900, P99Ms: 200},
		{Key: "es256_1m", Name: "cc ES256 1M", RPS: 4400, P99Ms: 15, Errors: 1},
		{Key: "ceiling_end", RPS: 12000, P99Ms: 14},
	}
	r.RSA = &rsaBound{PerSecond: 1000}
	r.Memory.CaddyRSSKB = 100 * 1024
	r.evaluate()
	if r.Ceiling.RPS != 11000 || r.Ceiling.P99Ms != 12 {
		t.Fatalf("ceiling %+v", r.Ceiling)
	}
	es, hs, rs, m := r.Rows[1], r.Rows[2], r.Rows[3], r.Rows[4]
	if !es.Target.Met || !es.P99.Met {
		t.Errorf("es256 %+v %+v", es.Target, es.P99)
	}
	if hs.Target.Met || hs.P99.Met { // 0.45 < 0.60; 25 > 24
		t.Errorf("hs256 %+v %+v", hs.Target, hs.P99)
	}
	if !rs.Target.Met || rs.P99 != nil || rs.VsRSA != 0.9 {
		t.Errorf("rs256 %+v", rs)
	}
	if m.Target.Met { // 0.88 < 0.90, and an error
		t.Errorf("1M row %+v", m.Target)
	}
	met, total := r.met()
	if total != 8 || met != 5 { // of 4 targets, 3 p99 checks and memory: es256, rs256, 2 p99, memory
		t.Errorf("met %d of %d", met, total)
	}
	// With a row measured right before the fill, the 1M row is compared
	// with that one instead.
	m.Errors = 0
	r.Rows = append(r.Rows, &Row{Key: "es256_pre", Label: "cc ES256 (pre-fill)", RPS: 4800, P99Ms: 15, Extra: true})
	r.Checks = nil
	r.evaluate()
	if !m.Target.Met || math.Abs(m.Target.Value-4400.0/4800) > 1e-9 || !strings.Contains(m.Target.Target, "pre-fill") {
		t.Errorf("1M row against the pre-fill row: %+v", m.Target)
	}
	// A row measured alongside the ceiling is compared with that one, and
	// the 1M comparison uses each row's own ratio.
	es.CeilingAlongsideRPS = 15000
	m.CeilingAlongsideRPS = 8400
	r.evaluate()
	if es.LocalCeilingRPS != 15000 || math.Abs(es.VsCeiling-5000.0/15000) > 1e-9 || es.Target.Met { // 0.33 < 0.45
		t.Errorf("es256 with probes: local %v, ratio %v, %+v", es.LocalCeilingRPS, es.VsCeiling, es.Target)
	}
	if want := (4400.0 / 8400) / (4800.0 / 11000); math.Abs(m.Target.Value-want) > 1e-9 || !m.Target.Met {
		t.Errorf("1M row with probes: %+v, want value %v", m.Target, want)
	}
	// A row measured alongside its twin (the same requests on an empty
	// Redis) is compared with the twin directly.
	m.TwinAlongsideRPS = 4600
	r.evaluate()
	if want := 4400.0 / 4600; math.Abs(m.Target.Value-want) > 1e-9 || !m.Target.Met || !strings.Contains(m.Target.Target, "empty Redis") {
		t.Errorf("1M row with a twin: %+v, want value %v", m.Target, want)
	}
	m.TwinAlongsideRPS, m.TwinErrors = 5000, 0 // 0.88
	r.evaluate()
	if m.Target.Met {
		t.Errorf("1M row at 0.88 of its twin: %+v", m.Target)
	}
	m.TwinAlongsideRPS, m.TwinErrors = 4600, 3
	r.evaluate()
	if m.Target.Met || !strings.Contains(m.Target.Measured, "3 errors of the twin") {
		t.Errorf("1M row whose twin failed requests: %+v", m.Target)
	}
}

// TestParseCoreBench reads go test -bench output into the core rows, and
// says which row is missing.
func TestParseCoreBench(t *testing.T) {
	out := `goos: linux
BenchmarkTokenByAlgorithm/ES256-2         	    2000	     35372 ns/op	    6922 B/op	      66 allocs/op
BenchmarkTokenByAlgorithm/EdDSA-2         	    2000	     26493 ns/op	     856 B/op	       7 allocs/op
BenchmarkTokenByAlgorithm/HS256-2         	    2000	      3283 ns/op	     824 B/op	       7 allocs/op
BenchmarkTokenByAlgorithm/RS256-2         	    2000	    976959 ns/op	    1626 B/op	       9 allocs/op
BenchmarkStdlibES256Sign-2                	    2000	     30910 ns/op	    6064 B/op	      59 allocs/op
PASS`
	cb := &coreBench{Rows: map[string]coreRow{}}
	parseCoreBench(cb, out)
	if cb.Error != "" {
		t.Fatal(cb.Error)
	}
	if got := cb.Rows["ES256"]; got != (coreRow{NsPerOp: 35372, AllocsPerOp: 66, BytesPerOp: 6922}) {
		t.Errorf("ES256 = %+v", got)
	}
	if got := cb.Rows[coreSignRow].AllocsPerOp; got != 59 {
		t.Errorf("stdlib signature allocs = %d", got)
	}
	cb = &coreBench{Rows: map[string]coreRow{}}
	parseCoreBench(cb, strings.Replace(out, "BenchmarkTokenByAlgorithm/HS256", "BenchmarkOther", 1))
	if !strings.Contains(cb.Error, "HS256") {
		t.Errorf("missing HS256: error %q", cb.Error)
	}
}

// TestDoublingNote names the power of two a Redis's keys grew past, and
// nothing when they did not.
func TestDoublingNote(t *testing.T) {
	if n := doublingNote("r", 2_000_001, 2_400_000); !strings.Contains(n, "past 2^21 = 2097152") || !strings.Contains(n, "from 2000001 to 2400000") {
		t.Errorf("2,000,001 → 2,400,000: %q", n)
	}
	if n := doublingNote("r", 1024, 1024); n != "" {
		t.Errorf("no growth: %q", n)
	}
	if n := doublingNote("r", 2_100_000, 2_400_000); n != "" {
		t.Errorf("no power of two crossed: %q", n)
	}
	if n := doublingNote("r", 100, 4096); !strings.Contains(n, "past 2^7 = 128") {
		t.Errorf("several crossed, the first named: %q", n)
	}
}

// TestEvaluateCodeRows: the authorization_code rows are extra, with targets
// of their own (0.05 × the ceiling alongside; 0.80 × their own RSA bound
// with openid), no p99 check, and a description of what bounds them.
func TestEvaluateCodeRows(t *testing.T) {
	r := &Report{Cores: 2}
	r.RSA = &rsaBound{PerSecond: 1000} // RS256's, not the openid row's
	code := &Row{Key: codeKey, Name: "authorization_code", Extra: true, RPS: 600, P99Ms: 400, CeilingAlongsideRPS: 10000,
		CaddyCPUUs: 1000, DBCPUUs: 1000, RedisCPUUs: 200, GenCPUUs: 300,
		DB:    map[string]float64{"Questions": 3, "Handler_read_rnd_next": 900, "Innodb_row_lock_waits": 0.5, "Innodb_row_lock_time": 2, "Innodb_data_fsyncs": 1.5},
		Codes: &codeSupply{Inserted: 12000, LargestTable: 1800}}
	openid := &Row{Key: openIDKey, Name: "authorization_code openid", Extra: true, RPS: 900, P99Ms: 800, CeilingAlongsideRPS: 10000,
		CaddyCPUUs: 1500, DBCPUUs: 500, RSA: &rsaBound{PerSecond: 2000, CPUPerSignUs: 1000}}
	prefilled := &Row{Key: prefilledKey, Name: "authorization_code, 300k codes", Extra: true, RPS: 0.5, Errors: 700, CeilingAlongsideRPS: 10000,
		ErrorKinds: []string{"700× HTTP 503 temporarily_unavailable"}, Codes: &codeSupply{Inserted: 300000, LargestTable: 300000, Prefilled: true, FillSeconds: 4},
		OneClient: &oneClient{RPS: 32, P50Ms: 30, OK: 96}}
	r.Rows = []*Row{{Key: "ceiling", RPS: 10000, P99Ms: 10}, code, openid, prefilled}
	r.evaluate()

	if code.Target == nil || !code.Target.Met || math.Abs(code.Target.Value-0.06) > 1e-9 || !strings.Contains(code.Target.Target, "0.05 × ceiling") {
		t.Errorf("authcode at 0.06 of its ceiling: %+v", code.Target)
	}
	code.RPS = 500
	r.evaluate()
	if !code.Target.Met {
		t.Errorf("0.05 of the ceiling is not ≥ 0.05: %+v", code.Target)
	}
	code.RPS = 499
	r.evaluate()
	if code.Target.Met {
		t.Errorf("0.0499 of the ceiling met the target: %+v", code.Target)
	}
	if openid.VsRSA != 0.45 || openid.Target == nil || openid.Target.Met || !strings.Contains(openid.Target.Target, "0.80 × RSA bound (2000/s)") {
		t.Errorf("openid against its own bound: ratio %v, %+v", openid.VsRSA, openid.Target)
	}
	openid.RPS = 1600
	r.evaluate()
	if !openid.Target.Met {
		t.Errorf("openid at 0.80 of its bound: %+v", openid.Target)
	}
	for _, x := range []*Row{code, openid, prefilled} {
		if x.P99 != nil {
			t.Errorf("%s has a p99 check: %+v", x.Key, x.P99)
		}
		if x.Target != nil && !x.Target.Extra {
			t.Errorf("%s: its target counts among the main targets", x.Key)
		}
	}
	if prefilled.Target != nil {
		t.Errorf("the pre-filled row has a target: %+v", prefilled.Target)
	}
	if met, total := r.met(); total != 0 || met != 0 {
		t.Errorf("the main targets: %d of %d, want none", met, total)
	}
	// The MariaDB column counts in the CPU cost.
	if got := code.cpuUs(); got != 2500 {
		t.Errorf("cpuUs %v, want 2500", got)
	}

	lines := r.codeBounds()
	if len(lines) != 3 {
		t.Fatalf("codeBounds: %d lines, want 3:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for i, want := range [][]string{
		{"499 exchanges/s", "0.05 × the ceiling alongside", "target ≥ 0.05 × ceiling: no", "12000 codes", "at most 1800",
			"Caddy 1000 µs, MariaDB 1000 µs, Redis 200 µs, the load generator 300 µs: 2500 µs", "allow 800 times a second", "reached 0.62",
			"3.0 statements, 900 rows read by table scans, 0.50 row-lock waits (2.0 ms waited), 1.50 fsyncs"},
		{"0.80 × the RSA-signing bound", "target ≥ 0.80 × RSA bound (2000/s): yes", "2000 µs", "signature is 1000 µs of it (50%)", "at most 0.50 of the RSA bound"},
		{"700 errors in the window (700× HTTP 503 temporarily_unavailable, warm-ups included)", "All 300000 codes were inserted before the row (in 4.0 s)", "32.0 exchanges/s, p50 30 ms (96 exchanges, 0 errors)"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("line %d lacks %q:\n%s", i, w, lines[i])
			}
		}
	}
	if md := r.markdown(""); !strings.Contains(md, "## The authorization_code exchange") || !strings.Contains(md, lines[0]) {
		t.Errorf("results.md lacks the authorization_code section")
	}
	// The chart's target ticks: the ceiling's share, and the row's own bound.
	if got := targetRPS(r, code); got != 500 {
		t.Errorf("authcode target tick at %v, want 500", got)
	}
	if got := targetRPS(r, openid); got != 1600 {
		t.Errorf("openid target tick at %v, want 1600", got)
	}
	// A row where every request failed is described too (not one that
	// could not be measured at all).
	prefilled.OK, prefilled.RPS, prefilled.Failed, prefilled.CaddyCPUUs, prefilled.DBCPUUs = 0, 0, "no successful response", 600, 10000
	openid.Failed, openid.OK, openid.Errors = "no WordPress database", 0, 0
	r.evaluate()
	lines = r.codeBounds()
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "**authorization_code, 300k codes**: no exchange succeeded, 700 errors") ||
		!strings.Contains(lines[1], "CPU per request: Caddy 600 µs, MariaDB 10000 µs") || strings.Contains(lines[1], "times a second") {
		t.Errorf("codeBounds with a row without successes and one not measured:\n%s", strings.Join(lines, "\n"))
	}
}

// TestCodeSupply checks the sizing of a slice's codes, the counters per
// request, the exchange's form and the id_token check.
func TestCodeSupply(t *testing.T) {
	for _, c := range []struct {
		rate    float64
		span    time.Duration
		workers int
		want    int
	}{
		{1000, 1250 * time.Millisecond, 64, 2560}, // 2 × 1250 = 2500, rounded up to 64 blocks of 40
		{500, 3 * time.Second, 64, 3008},          // 3000 → 47 each
		{1, time.Second, 64, 1024},                // at least 16 each
		{0, time.Second, 4, 64},
	} {
		if got := codesFor(c.rate, c.span, c.workers); got != c.want || got%c.workers != 0 {
			t.Errorf("codesFor(%v, %v, %d) = %d, want %d", c.rate, c.span, c.workers, got, c.want)
		}
	}
	got := perRequest(map[string]float64{"a": 10, "b": 5}, map[string]float64{"a": 40, "b": 5, "c": 7}, 10)
	if len(got) != 2 || got["a"] != 3 || got["b"] != 0 {
		t.Errorf("perRequest = %v", got)
	}
	if perRequest(nil, map[string]float64{"a": 1}, 1) != nil || perRequest(map[string]float64{}, map[string]float64{}, 0) != nil {
		t.Error("perRequest without counters or requests should be nil")
	}
	code := newCode()
	if len(code) != 40 || strings.Trim(code, "0123456789abcdef") != "" || newCode() == code {
		t.Errorf("code %q: want 40 fresh hex characters", code)
	}
	if got, want := string(exchangeBody(code)), "grant_type=authorization_code&code="+code+"&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback"; got != want {
		t.Errorf("exchange body %q, want %q", got, want)
	}

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	input := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0"
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	token := input + "." + base64.RawURLEncoding.EncodeToString(sig)
	if err := verifyRS256(token, &key.PublicKey); err != nil {
		t.Errorf("a good signature: %v", err)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	for name, bad := range map[string]string{"another key": token, "not a JWT": "abc", "altered": strings.Replace(token, "eyJzdWIiOiIxIn0", "eyJzdWIiOiIyIn0", 1)} {
		pub := &key.PublicKey
		if name == "another key" {
			pub = &other.PublicKey
		}
		if verifyRS256(bad, pub) == nil {
			t.Errorf("%s: verified", name)
		}
	}
}
