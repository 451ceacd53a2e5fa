package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// stream is the request stream of one row: POSTs of form bodies to one URL.
type stream struct {
	// method is the request method (POST when empty).
	method string
	url    string
	header http.Header // shared read-only by every request of the row
	// body is sent by every request when bodies is nil.
	body []byte
	// bodies, when non-nil, makes request i send bodies[i]; the row ends
	// early when they run out (each body is sent at most once).
	bodies [][]byte
	// perWorker, with bodies, hands each worker its own contiguous block of
	// them (worker w of n sends bodies[w·B], bodies[w·B+1], … with B =
	// len(bodies)/n) instead of the next body any worker has not sent: the
	// codes of an authorization_code row, spread over the table the way
	// concurrent users' codes are. The window ends when the first worker
	// has sent its block.
	perWorker bool
	// limit, when > 0 and bodies is nil, caps the number of requests.
	limit int
	// onOK, if set, is called from the worker goroutines with the index and
	// the body of every 2xx response (the body is only valid during the call).
	onOK func(i int, body []byte)

	// cursor counts the requests started over all runs of the stream, so
	// that runs in slices (runAlternating) go on through bodies.
	cursor atomic.Int64
	// sent is, with perWorker, how many bodies of its block each worker
	// has sent over all runs of the stream (indexed by worker; a run's
	// workers use it one at a time).
	sent []int
	// beforeSlice, if set, is called by runAlternating before each slice i
	// of this stream (before its warm-up of length warm and its window of
	// length d) with the result of the slice before (nil for the first);
	// it may give the stream new bodies (setBodies). An error ends the
	// row. A stream refilled this way does not end the row when its
	// supply runs out in a slice: that slice's window ends there.
	beforeSlice func(i int, prev *loadResult, warm, d time.Duration) error
	// tr, when set, is the transport every run uses (its keep-alive
	// connections outlive a run); otherwise each run has its own.
	tr *http.Transport
	// onSlice, if set, is called by runAlternating as each slice i of this
	// stream starts (warm-up of length warm, then the measured window of
	// length d); the function it returns is called when the slice is over.
	onSlice func(i int, warm, d time.Duration) (done func())
	// afterSlice, if set, is called by runAlternating right after each
	// slice i of this stream, before the next stream's slice starts.
	afterSlice func(i int)
	// db marks the rows that use MariaDB: its CPU time is theirs.
	db bool
	// twin, if set, is the same requests sent to a site identical but for
	// one thing (row 5: an empty Redis instead of the filled one);
	// runAlternating measures it in turns with the stream.
	twin *stream
}

// supply is how many requests the stream allows (0: unlimited).
func (s *stream) supply() int {
	if s.bodies != nil {
		return len(s.bodies)
	}
	return s.limit
}

// setBodies gives the stream new bodies, sent from the first on (each
// worker from the start of its block, with perWorker).
func (s *stream) setBodies(bodies [][]byte) {
	s.bodies = bodies
	s.cursor.Store(0)
	s.sent = nil
}

// next returns the index of the body worker w of n sends next, and false
// when the supply has run out for it. With perWorker, s.sent must have n
// entries (run sees to it).
func (s *stream) next(w, n int) (int, bool) {
	supply := s.supply()
	if s.perWorker && s.bodies != nil {
		block := supply / n
		if s.sent[w] >= block {
			return 0, false
		}
		i := w*block + s.sent[w]
		s.sent[w]++
		return i, true
	}
	i := int(s.cursor.Add(1) - 1)
	return i, supply == 0 || i < supply
}

// taken is how many bodies the stream's runs have taken so far (capped by
// the supply).
func (s *stream) taken() int {
	if s.perWorker && s.bodies != nil {
		n := 0
		for _, k := range s.sent {
			n += k
		}
		return n
	}
	if supply := s.supply(); supply > 0 {
		return min(int(s.cursor.Load()), supply)
	}
	return int(s.cursor.Load())
}

func (s *stream) bodyFor(i int) []byte {
	if s.bodies != nil {
		return s.bodies[i]
	}
	return s.body
}

// sample is one completed request.
type sample struct {
	end    time.Duration // completion, since the start of the row
	lat    time.Duration
	status int // 0 for a transport error
}

// cpuSnap is the CPU time used so far by the processes a row watches.
type cpuSnap struct {
	caddy, redis, self time.Duration
	db                 time.Duration // mariadbd, for the rows that use it
	machine            time.Duration // busy time of all cores
	at                 time.Time
}

// loadResult is what one run of a stream measured inside its window.
type loadResult struct {
	OK        int           // 2xx responses completed in the window
	Errors    int           // non-2xx responses and transport errors in the window
	Window    time.Duration // length of the measurement window
	Attempted int           // requests started overall (warm-up included)
	Exhausted bool          // the stream's supply ran out before the deadline
	Took      time.Duration // the run's wall-clock time, warm-up included, to its last answer
	RPS       float64       // OK / Window
	P50, P90  time.Duration // over the 2xx responses of the window
	P99, Max  time.Duration
	// ErrorKinds counts errors (warm-up included) by a short description.
	ErrorKinds  map[string]int
	WarmErrors  int
	CPU0, CPU1  cpuSnap // at the start and the end of the window
	hasCPUSnaps bool
	// lats are the sorted latencies of the window's 2xx responses.
	lats []time.Duration
}

// add merges r, the result of a later window of the same stream, into res
// as if the windows were one: counts and windows add up, percentiles are
// over every latency, and the CPU snapshots span the sum of the windows'
// CPU times (CPU0 zero, CPU1 the sums).
func (res *loadResult) add(r *loadResult) {
	res.OK += r.OK
	res.Errors += r.Errors
	res.Window += r.Window
	res.Attempted += r.Attempted
	res.Took += r.Took
	res.Exhausted = res.Exhausted || r.Exhausted
	res.WarmErrors += r.WarmErrors
	if res.ErrorKinds == nil {
		res.ErrorKinds = map[string]int{}
	}
	for k, n := range r.ErrorKinds {
		res.ErrorKinds[k] += n
	}
	if r.hasCPUSnaps {
		d := func(a, b time.Duration) time.Duration { return b - a }
		res.CPU1.caddy += d(r.CPU0.caddy, r.CPU1.caddy)
		res.CPU1.redis += d(r.CPU0.redis, r.CPU1.redis)
		res.CPU1.self += d(r.CPU0.self, r.CPU1.self)
		res.CPU1.db += d(r.CPU0.db, r.CPU1.db)
		res.CPU1.machine += d(r.CPU0.machine, r.CPU1.machine)
		res.CPU1.at = res.CPU1.at.Add(r.CPU1.at.Sub(r.CPU0.at))
		res.hasCPUSnaps = true
	}
	res.lats = append(res.lats, r.lats...)
	slices.Sort(res.lats)
	res.summarize()
}

// summarize sets RPS and the percentiles from OK, Window and lats.
func (res *loadResult) summarize() {
	if res.Window > 0 {
		res.RPS = float64(res.OK) / res.Window.Seconds()
	}
	res.P50 = percentile(res.lats, 0.50)
	res.P90 = percentile(res.lats, 0.90)
	res.P99 = percentile(res.lats, 0.99)
	res.Max = 0
	if len(res.lats) > 0 {
		res.Max = res.lats[len(res.lats)-1]
	}
}

// generator runs streams with a fixed number of keep-alive HTTP/1.1 workers
// (a closed loop: each worker sends its next request when the previous one
// is answered).
type generator struct {
	concurrency int
	// cpu, if set, is sampled at the start and end of each window.
	cpu func() cpuSnap
}

// newTransport returns an HTTP/1.1 keep-alive transport that holds one
// connection per worker and never proxies or compresses.
func newTransport(concurrency int) *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          0, // no global limit
		MaxIdleConnsPerHost:   concurrency,
		MaxConnsPerHost:       concurrency,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
		WriteBufferSize:       8 << 10,
		ReadBufferSize:        8 << 10,
	}
}

// errSupplyInWarmup means a stream's bodies ran out before its window began.
var errSupplyInWarmup = errors.New("the pre-issued supply ran out during the warm-up")

// run sends s for warm (not measured) and then for dur (measured), or until
// its supply runs out, and returns what it measured. Requests are never cut
// off: at the deadline the workers stop starting new ones. Only requests
// completed inside the window count; when the supply runs out the window ends
// at that moment.
func (g *generator) run(ctx context.Context, s *stream, warm, dur time.Duration) (*loadResult, error) {
	tr := s.tr
	if tr == nil {
		tr = newTransport(g.concurrency)
		defer tr.CloseIdleConnections()
	}

	if s.perWorker && len(s.sent) != g.concurrency {
		s.sent = make([]int, g.concurrency)
	}
	taken0 := s.taken()
	start := time.Now()
	measureAt := warm
	deadline := warm + dur

	var (
		exhaustedAt atomic.Int64 // since start, 0 if never
		exhausted   = make(chan struct{})
		stop        atomic.Bool // the supply ran out: no worker starts another request
		exhaustOnce sync.Once
		mu          sync.Mutex
		kinds       = map[string]int{}
		perWorker   = make([][]sample, g.concurrency)
		wg          sync.WaitGroup
	)
	markExhausted := func() {
		exhaustOnce.Do(func() {
			exhaustedAt.Store(int64(time.Since(start)))
			stop.Store(true)
			close(exhausted)
		})
	}

	// The CPU sampler snapshots at the start and the end of the window.
	res := &loadResult{ErrorKinds: kinds}
	cpuDone := make(chan struct{})
	if g.cpu != nil {
		go func() {
			defer close(cpuDone)
			select {
			case <-time.After(time.Until(start.Add(measureAt))):
			case <-ctx.Done():
				return
			case <-exhausted:
				return
			}
			res.CPU0 = g.cpu()
			select {
			case <-time.After(time.Until(start.Add(deadline))):
			case <-ctx.Done():
				return
			case <-exhausted:
			}
			res.CPU1 = g.cpu()
			res.hasCPUSnaps = true
		}()
	} else {
		close(cpuDone)
	}

	for w := range g.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			samples := make([]sample, 0, 4096)
			var buf bytes.Buffer
			buf.Grow(4 << 10)
			for ctx.Err() == nil && !stop.Load() && time.Since(start) < deadline {
				i, ok := s.next(w, g.concurrency)
				if !ok {
					markExhausted()
					break
				}
				method := s.method
				if method == "" {
					method = http.MethodPost
				}
				req, err := http.NewRequestWithContext(ctx, method, s.url, bytes.NewReader(s.bodyFor(i)))
				if err != nil {
					mu.Lock()
					kinds["building the request: "+err.Error()]++
					mu.Unlock()
					break
				}
				req.Header = s.header
				t0 := time.Now()
				resp, err := tr.RoundTrip(req)
				status := 0
				buf.Reset()
				if err == nil {
					status = resp.StatusCode
					_, err = buf.ReadFrom(resp.Body)
					resp.Body.Close()
				}
				t1 := time.Now()
				if ctx.Err() != nil {
					break // interrupted: this request does not count
				}
				if err != nil {
					status = 0
				}
				samples = append(samples, sample{end: t1.Sub(start), lat: t1.Sub(t0), status: status})
				switch {
				case err != nil:
					mu.Lock()
					kinds["transport: "+shortErr(err)]++
					mu.Unlock()
				case status < 200 || status > 299:
					mu.Lock()
					kinds[fmt.Sprintf("HTTP %d %s", status, errorCode(buf.Bytes()))]++
					mu.Unlock()
				case s.onOK != nil:
					s.onOK(i, buf.Bytes())
				}
			}
			perWorker[w] = samples
		}()
	}
	wg.Wait()
	res.Took = time.Since(start)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	<-cpuDone

	windowEnd := deadline
	if at := time.Duration(exhaustedAt.Load()); at > 0 && at < deadline {
		res.Exhausted = true
		windowEnd = at
	}
	res.Attempted = s.taken() - taken0
	if windowEnd <= measureAt {
		return res, errSupplyInWarmup
	}
	res.Window = windowEnd - measureAt

	var lats []time.Duration
	for _, ws := range perWorker {
		for _, sm := range ws {
			bad := sm.status < 200 || sm.status > 299
			if sm.end <= measureAt {
				if bad {
					res.WarmErrors++
				}
				continue
			}
			if sm.end > windowEnd {
				continue
			}
			if bad {
				res.Errors++
				continue
			}
			res.OK++
			lats = append(lats, sm.lat)
		}
	}
	slices.Sort(lats)
	res.lats = lats
	res.summarize()
	return res, nil
}

// runAlternating measures row and ref (the ceiling) in alternating slices
// of dur/slices each, row first, so that both see the same drift of the
// machine's speed and their ratio does not depend on when the row ran.
// With row.twin set, every slice of row is paired with one of the twin, in
// turns first and second, before ref's. The first slice of each is
// preceded by warm, the others by sliceWarm; each stream keeps its
// keep-alive connections across its slices. It stops early when row's
// supply runs out (after one more ref slice), unless row.beforeSlice
// refills it before each slice (a slice whose refill does not outlast its
// warm-up is skipped). The results are each
// stream's slices merged (see loadResult.add); twinRes is nil without a
// twin.
func (g *generator) runAlternating(ctx context.Context, row, ref *stream, warm, dur time.Duration, n int) (rowRes, refRes, twinRes *loadResult, err error) {
	streams := []*stream{row, ref}
	if row.twin != nil {
		streams = append(streams, row.twin)
		twinRes = &loadResult{}
	}
	for _, s := range streams {
		s.tr = newTransport(g.concurrency)
		defer func() {
			s.tr.CloseIdleConnections()
			s.tr = nil
		}()
	}
	slice := dur / time.Duration(n)
	rowRes, refRes = &loadResult{}, &loadResult{}
	var prev *loadResult
	runTwin := func(w time.Duration) error {
		if row.twin == nil {
			return nil
		}
		r, err := g.run(ctx, row.twin, w, slice)
		if err != nil {
			return fmt.Errorf("twin slice: %w", err)
		}
		twinRes.add(r)
		return nil
	}
	for i := range n {
		w := sliceWarm
		if i == 0 {
			w = warm
		}
		twinFirst := i%2 == 1
		if twinFirst {
			if err := runTwin(w); err != nil {
				return nil, nil, nil, err
			}
		}
		if row.beforeSlice != nil {
			if err := row.beforeSlice(i, prev, w, slice); err != nil {
				return nil, nil, nil, fmt.Errorf("before slice %d: %w", i, err)
			}
		}
		done := func() {}
		if row.onSlice != nil {
			done = row.onSlice(i, w, slice)
		}
		r, err := g.run(ctx, row, w, slice)
		done()
		prev = r
		if row.afterSlice != nil && ctx.Err() == nil {
			row.afterSlice(i)
		}
		if errors.Is(err, errSupplyInWarmup) && row.beforeSlice != nil {
			// Refilled too little for the warm-up: this slice measured
			// nothing; the next one is refilled knowing the rate.
			rowRes.Exhausted = true
			continue
		}
		if errors.Is(err, errSupplyInWarmup) && i > 0 {
			rowRes.Exhausted = true
			break
		}
		if err != nil {
			return nil, nil, nil, err
		}
		rowRes.add(r)
		if !twinFirst {
			if err := runTwin(w); err != nil {
				return nil, nil, nil, err
			}
		}
		c, err := g.run(ctx, ref, w, slice)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("reference slice: %w", err)
		}
		refRes.add(c)
		if r.Exhausted && row.beforeSlice == nil {
			break
		}
	}
	return rowRes, refRes, twinRes, nil
}

// sliceWarm is the warm-up before every slice of runAlternating but the
// first: the connections are open already; it only refills the pipeline.
const sliceWarm = 250 * time.Millisecond

// percentile returns the nearest-rank p-quantile of sorted (0 if empty).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// errorCode extracts the OAuth "error" member of a JSON error body, or the
// first bytes of any other body.
func errorCode(body []byte) string {
	if v := jsonString(body, "error"); v != "" {
		return v
	}
	b := strings.TrimSpace(string(body))
	if len(b) > 60 {
		b = b[:60] + "…"
	}
	return b
}

// jsonString finds "name":"value" in a flat JSON object and returns value
// (without unescaping: the values looked up here never need it).
func jsonString(body []byte, name string) string {
	key := `"` + name + `":"`
	i := bytes.Index(body, []byte(key))
	if i < 0 {
		return ""
	}
	rest := body[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}

// shortErr keeps transport errors groupable: the innermost message only.
func shortErr(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			break
		}
		err = u
	}
	if errors.Is(err, io.EOF) {
		return "EOF"
	}
	return err.Error()
}

// describeErrors renders error kinds, most frequent first.
func describeErrors(kinds map[string]int) []string {
	type kv struct {
		k string
		n int
	}
	var all []kv
	for k, n := range kinds {
		all = append(all, kv{k, n})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].n > all[j].n || all[i].n == all[j].n && all[i].k < all[j].k })
	out := make([]string, 0, len(all))
	for _, e := range all {
		out = append(out, fmt.Sprintf("%d× %s", e.n, e.k))
	}
	return out
}
