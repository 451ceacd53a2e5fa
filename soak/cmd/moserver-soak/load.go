package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The two clients of the soak's Caddyfile: soak-cc gets access tokens only;
// soak-rt also gets a refresh token with each client_credentials token (the
// seed of a chain).
const (
	ccClient   = "soak-cc"
	ccSecret   = "soak-cc-secret-0123456789"
	rtClient   = "soak-rt"
	rtSecret   = "soak-rt-secret-0123456789"
	tokenPath  = "/wp-json/moserver/token"
	revokePath = "/wp-json/moserver/revoke"
)

// Request kinds, the rows of the request table.
const (
	reqCC      = "client_credentials"
	reqSeed    = "client_credentials + refresh token"
	reqRefresh = "refresh"
	reqRevoke  = "revoke"
	reqRevoked = "refresh of a revoked token"
	reqReplay  = "replay of a spent token"
	reqDouble  = "double spend (2 concurrent)"
	reqAfter   = "refresh after a replay"
	reqFinal   = "final check of a chain"
)

// requestKinds is the order of the request table.
var requestKinds = []string{reqCC, reqSeed, reqRefresh, reqRevoke, reqRevoked, reqReplay, reqDouble, reqAfter, reqFinal}

// Operation kinds: what the open-loop limiter schedules (see opKind).
const (
	opCC      = "client_credentials"
	opRefresh = "refresh (chain)"
	opRevoke  = "revoke + check"
	opReplay  = "replay + check"
	opDouble  = "double spend + check"
)

var opKinds = []string{opCC, opRefresh, opRevoke, opReplay, opDouble}

// opKind is the mix: of every 20 operations, 8 client_credentials, 8 chain
// refreshes, 2 revocations, 1 sequential replay and 1 concurrent double spend.
func opKind(i int64) string {
	switch i % 20 {
	case 0, 2, 4, 6, 10, 12, 14, 16:
		return opCC
	case 1, 3, 5, 7, 11, 13, 15, 17:
		return opRefresh
	case 8, 18:
		return opRevoke
	case 9:
		return opReplay
	default: // 19
		return opDouble
	}
}

// answer is one response, or the transport error in its place.
type answer struct {
	status  int
	code    string // OAuth "error"
	access  string
	refresh string
	err     error
	body    string
}

func (a answer) String() string {
	if a.err != nil {
		return "transport error: " + a.err.Error()
	}
	b := a.body
	if len(b) > 160 {
		b = b[:160] + "…"
	}
	return fmt.Sprintf("HTTP %d %s", a.status, b)
}

func (a answer) token() bool { return a.err == nil && a.status == 200 && a.access != "" }
func (a answer) invalidGrant() bool {
	return a.err == nil && a.status == 400 && a.code == "invalid_grant"
}

// reqStats is the book of one request kind.
type reqStats struct {
	n, ok2xx, n4xx, n5xx, transport int64
	lat                             []time.Duration
}

// tally counts the answers received under the moserver metric sample the
// module counts each request in, across every phase (the module's counters
// are process-wide), to compare with Caddy's /metrics at the end.
type tally struct {
	mu sync.Mutex
	m  map[string]int64
}

func (t *tally) add(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]int64{}
	}
	t.m[key]++
}

func (t *tally) snapshot() map[string]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]int64, len(t.m))
	for k, v := range t.m {
		out[k] = v
	}
	return out
}

// ledger is the rotation book: every successful refresh issues a successor,
// and every successor ends in exactly one of the other buckets.
type ledger struct {
	issued     atomic.Int64 // 2xx refreshes: successors issued
	worked     atomic.Int64 // successor presented once afterwards and rotated
	finalOK    atomic.Int64 // successor rotated in the final check
	endedBy    atomic.Int64 // the soak revoked or replayed its family before or while using it (its refusal expected)
	lost       atomic.Int64 // refused with invalid_grant although the soak never revoked or replayed its family
	unverified atomic.Int64 // its use got a 5xx or no answer (counted as failures too)
	pending    atomic.Int64 // still unused when the soak ended (should be 0)

	duplicated     atomic.Int64 // two successes from one token
	issuedTwice    atomic.Int64 // a refresh token value handed out twice
	seedRefused    atomic.Int64 // a fresh client_credentials refresh token refused
	replays        atomic.Int64 // sequential replays of a spent token
	replayRejected atomic.Int64
	replayAccepted atomic.Int64 // a replay answered other than 400 invalid_grant, 5xx aside
	doubles        atomic.Int64 // concurrent double spends
	doubleOneWin   atomic.Int64 // ... with exactly one success
	doubleNoWin    atomic.Int64 // ... with none
	familyRevoked  atomic.Int64 // after a replay or double spend, the family's latest token was refused
	replayKept     atomic.Int64 // ... or was not: the replay did not revoke the family
	revocations    atomic.Int64 // revocations answered 200
	revokeHeld     atomic.Int64 // ... whose token was refused afterwards
	revokeIgnored  atomic.Int64 // ... whose token still rotated
}

// chain is one refresh-token family the soak rotates. Only the goroutine
// that took it from the pool touches it.
type chain struct {
	cur       string // latest token, not used yet
	prev      string // the token spent to get cur ("" if cur is the seed)
	curIsSucc bool   // cur came from a 2xx refresh (a successor to account for)
	dead      bool   // ended: revoked, replayed, or its state is unknown
	rotations int
}

// runner runs operations against one Caddy and keeps the books of a phase.
type runner struct {
	base   string
	client *http.Client
	tally  *tally
	ccHdr  http.Header
	rtHdr  http.Header
	ledger ledger

	requests atomic.Int64 // requests answered or failed
	ops      atomic.Int64 // operations completed

	mu       sync.Mutex
	reqs     map[string]*reqStats
	opLat    map[string][]time.Duration // scheduled start to completion
	failures map[string]int64           // failure category -> count
	examples []string                   // the first failure messages
	issued   map[[32]byte]struct{}      // every refresh token handed out (SHA-256)

	pool     chan *chain
	overflow []*chain // chains put back when the pool was full
}

func newRunner(base string, client *http.Client, t *tally, poolSize int) *runner {
	basic := func(id, secret string) http.Header {
		return http.Header{
			"Content-Type":  {"application/x-www-form-urlencoded"},
			"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret))},
			"User-Agent":    {"moserver-soak"},
		}
	}
	return &runner{
		base:     base,
		client:   client,
		tally:    t,
		ccHdr:    basic(ccClient, ccSecret),
		rtHdr:    basic(rtClient, rtSecret),
		reqs:     map[string]*reqStats{},
		opLat:    map[string][]time.Duration{},
		failures: map[string]int64{},
		issued:   map[[32]byte]struct{}{},
		pool:     make(chan *chain, poolSize),
	}
}

// newHTTPClient is a keep-alive HTTP/1.1 client holding up to conns idle
// connections, never proxied or compressed.
func newHTTPClient(conns int, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}}
}

// fail records a failure of a category with an example message.
func (r *runner) fail(category, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures[category]++
	if len(r.examples) < 30 {
		r.examples = append(r.examples, fmt.Sprintf("%s %s: %s", time.Now().Format("15:04:05.000"), category, msg))
	}
}

// post sends one form POST and books its answer: latency, status class, the
// tally, and (as failures) any 5xx or transport error.
func (r *runner) post(ctx context.Context, kind, path string, hdr http.Header, body string) answer {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.base+path, strings.NewReader(body))
	var a answer
	t0 := time.Now()
	if err == nil {
		req.Header = hdr
		var res *http.Response
		if res, err = r.client.Do(req); err == nil {
			var b []byte
			b, err = io.ReadAll(res.Body)
			res.Body.Close()
			a.status, a.body = res.StatusCode, string(b)
			if err == nil && len(b) > 0 {
				var j struct {
					Error        string `json:"error"`
					AccessToken  string `json:"access_token"`
					RefreshToken string `json:"refresh_token"`
				}
				if json.Unmarshal(b, &j) == nil {
					a.code, a.access, a.refresh = j.Error, j.AccessToken, j.RefreshToken
				}
			}
		}
	}
	lat := time.Since(t0)
	if ctx.Err() != nil && err != nil {
		return answer{err: ctx.Err()} // interrupted: not booked
	}
	a.err = err
	r.requests.Add(1)

	r.mu.Lock()
	st := r.reqs[kind]
	if st == nil {
		st = &reqStats{}
		r.reqs[kind] = st
	}
	st.n++
	switch {
	case err != nil:
		st.transport++
	case a.status >= 500:
		st.n5xx++
	case a.status >= 400:
		st.n4xx++
	case a.status >= 200 && a.status < 300:
		st.ok2xx++
	}
	if err == nil {
		st.lat = append(st.lat, lat)
	}
	r.mu.Unlock()

	switch {
	case err != nil:
		r.fail("transport error", fmt.Sprintf("%s: %v", kind, err))
	case a.status >= 500:
		r.fail("5xx", fmt.Sprintf("%s: %s", kind, a))
	}
	if err == nil && r.tally != nil {
		r.tally.add(metricKey(path, body, a))
	}
	if a.refresh != "" {
		r.noteIssued(a.refresh)
	}
	return a
}

// metricKey is the moserver metric sample the module counts a request in.
func metricKey(path, body string, a answer) string {
	form, _ := url.ParseQuery(body)
	if grant := form.Get("grant_type"); grant != "" && path == tokenPath {
		outcome := a.code
		if a.status == 200 {
			outcome = "issued"
		}
		return fmt.Sprintf(`moserver_token_requests_total{grant=%q,outcome=%q}`, grant, outcome)
	}
	outcome := a.code
	if a.status == 200 {
		outcome = "revoked"
	}
	return fmt.Sprintf(`moserver_revocations_total{outcome=%q}`, outcome)
}

// noteIssued remembers every refresh token handed out; one handed out twice
// is a duplicated rotation.
func (r *runner) noteIssued(token string) {
	sum := sha256.Sum256([]byte(token))
	r.mu.Lock()
	_, seen := r.issued[sum]
	r.issued[sum] = struct{}{}
	r.mu.Unlock()
	if seen {
		r.ledger.issuedTwice.Add(1)
		r.fail("DUPLICATED", "a refresh token value was handed out twice")
	}
}

// unexpected records an answer that is neither the expected one nor already
// a failure (5xx and transport errors are booked by post).
func (r *runner) unexpected(what string, a answer, want string) {
	if a.err != nil || a.status >= 500 {
		return
	}
	r.fail("unexpected answer", fmt.Sprintf("%s: want %s, got %s", what, want, a))
}

func refreshBody(token string) string {
	return "grant_type=refresh_token&refresh_token=" + url.QueryEscape(token)
}

// cc is one client_credentials request of soak-cc.
func (r *runner) cc(ctx context.Context) {
	a := r.post(ctx, reqCC, tokenPath, r.ccHdr, "grant_type=client_credentials")
	if ctx.Err() == nil && !(a.token() && a.refresh == "") {
		r.unexpected(reqCC, a, "200 with an access token")
	}
}

// take returns a chain from the pool, or seeds a new one (nil if that failed).
func (r *runner) take(ctx context.Context) *chain {
	select {
	case c := <-r.pool:
		return c
	default:
	}
	a := r.post(ctx, reqSeed, tokenPath, r.rtHdr, "grant_type=client_credentials")
	if ctx.Err() != nil {
		return nil
	}
	if !a.token() || a.refresh == "" {
		r.unexpected(reqSeed, a, "200 with a refresh token")
		return nil
	}
	return &chain{cur: a.refresh}
}

// put returns a live chain to the pool.
func (r *runner) put(c *chain) {
	if c == nil || c.dead {
		return
	}
	select {
	case r.pool <- c:
	default:
		r.mu.Lock()
		r.overflow = append(r.overflow, c)
		r.mu.Unlock()
	}
}

// rotate presents the chain's current token and books the outcome; it
// reports whether the chain rotated.
func (r *runner) rotate(ctx context.Context, c *chain, kind string) bool {
	a := r.post(ctx, kind, tokenPath, r.rtHdr, refreshBody(c.cur))
	if ctx.Err() != nil {
		c.dead = true // interrupted: its state is unknown
		return false
	}
	switch {
	case a.token() && a.refresh != "":
		if c.curIsSucc {
			if kind == reqFinal {
				r.ledger.finalOK.Add(1)
			} else {
				r.ledger.worked.Add(1)
			}
		}
		if kind != reqFinal { // the final check's successors are not followed up
			r.ledger.issued.Add(1)
		}
		c.prev, c.cur, c.curIsSucc = c.cur, a.refresh, true
		c.rotations++
		return true
	case a.invalidGrant():
		if c.curIsSucc {
			r.ledger.lost.Add(1)
			r.fail("LOST", fmt.Sprintf("%s: the successor of a 2xx refresh (rotation %d of its chain) was refused: %s", kind, c.rotations, a))
		} else {
			r.ledger.seedRefused.Add(1)
			r.fail("unexpected answer", fmt.Sprintf("%s: a fresh client_credentials refresh token was refused: %s", kind, a))
		}
	default:
		if c.curIsSucc {
			r.ledger.unverified.Add(1)
		}
		r.unexpected(kind, a, "200 with a refresh token")
	}
	c.dead = true
	return false
}

// refresh rotates a chain once.
func (r *runner) refresh(ctx context.Context) {
	c := r.take(ctx)
	if c == nil {
		return
	}
	r.rotate(ctx, c, reqRefresh)
	r.put(c)
}

// revoke revokes a chain's current token (at either revocation URL) and
// checks that it is refused afterwards; the chain ends.
func (r *runner) revoke(ctx context.Context, i int64) {
	c := r.take(ctx)
	if c == nil {
		return
	}
	c.dead = true
	path := revokePath
	if i%40 >= 20 { // the plugin's way: token= at the token endpoint
		path = tokenPath
	}
	a := r.post(ctx, reqRevoke, path, r.rtHdr, "token="+url.QueryEscape(c.cur)+"&token_type_hint=refresh_token")
	if ctx.Err() != nil {
		return
	}
	if a.err != nil || a.status != 200 {
		r.unexpected(reqRevoke, a, "200")
		if c.curIsSucc {
			r.ledger.unverified.Add(1)
		}
		return
	}
	r.ledger.revocations.Add(1)
	b := r.post(ctx, reqRevoked, tokenPath, r.rtHdr, refreshBody(c.cur))
	if ctx.Err() != nil {
		return
	}
	if c.curIsSucc {
		r.ledger.endedBy.Add(1)
	}
	switch {
	case b.invalidGrant():
		r.ledger.revokeHeld.Add(1)
	case b.token():
		r.ledger.revokeIgnored.Add(1)
		r.fail("revocation not effective", "a revoked refresh token still rotated")
	default:
		r.unexpected(reqRevoked, b, "400 invalid_grant")
	}
}

// replay presents a chain's spent token again: it must be refused and must
// revoke the family, so the chain's current token is refused next.
func (r *runner) replay(ctx context.Context) {
	c := r.take(ctx)
	if c == nil {
		return
	}
	if c.prev == "" && !r.rotate(ctx, c, reqRefresh) {
		return
	}
	c.dead = true
	r.ledger.replays.Add(1)
	a := r.post(ctx, reqReplay, tokenPath, r.rtHdr, refreshBody(c.prev))
	if ctx.Err() != nil {
		return
	}
	switch {
	case a.invalidGrant():
		r.ledger.replayRejected.Add(1)
		r.checkRevoked(ctx, c.cur)
		r.ledger.endedBy.Add(1) // c.cur: a successor whose family the soak replayed
		return
	case a.token():
		r.ledger.duplicated.Add(1)
		r.ledger.replayAccepted.Add(1)
		r.fail("DUPLICATED", "a spent refresh token rotated a second time")
		r.ledger.endedBy.Add(1)
		return
	case a.err == nil && a.status < 500:
		r.ledger.replayAccepted.Add(1)
		r.unexpected(reqReplay, a, "400 invalid_grant")
	}
	// A 5xx or no answer (failures already): whether the replay was seen,
	// and so whether c.cur still works, is unknown.
	r.ledger.unverified.Add(1)
}

// double presents a chain's current token twice at once: exactly one must
// rotate, the other is a replay that revokes the family, so the winner's
// successor is refused next.
func (r *runner) double(ctx context.Context) {
	c := r.take(ctx)
	if c == nil {
		return
	}
	c.dead = true
	r.ledger.doubles.Add(1)
	var as [2]answer
	var wg sync.WaitGroup
	for k := range as {
		wg.Add(1)
		go func() {
			defer wg.Done()
			as[k] = r.post(ctx, reqDouble, tokenPath, r.rtHdr, refreshBody(c.cur))
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	var wins []answer
	refused := 0
	for _, a := range as {
		switch {
		case a.token() && a.refresh != "":
			wins = append(wins, a)
		case a.invalidGrant():
			refused++
		default:
			r.unexpected(reqDouble, a, "one 200 and one 400 invalid_grant")
		}
	}
	r.ledger.issued.Add(int64(len(wins)))
	if len(wins) > 0 && c.curIsSucc {
		r.ledger.worked.Add(1) // c.cur was used, and worked, once
	}
	switch {
	case len(wins) == 1 && refused == 1:
		r.ledger.doubleOneWin.Add(1)
		r.checkRevoked(ctx, wins[0].refresh)
		r.ledger.endedBy.Add(1) // the winner's successor: its family was replayed
	case len(wins) == 2:
		r.ledger.duplicated.Add(1)
		r.ledger.endedBy.Add(2)
		r.fail("DUPLICATED", "two concurrent refreshes with one token both succeeded")
	case len(wins) == 1:
		// The other got a 5xx or no answer (a failure already): whether it
		// was seen as a replay, and so whether the winner's successor still
		// works, is unknown.
		r.ledger.unverified.Add(1)
	case refused == 2:
		r.ledger.doubleNoWin.Add(1)
		r.fail("LOST", "two concurrent refreshes with one token: neither succeeded")
		if c.curIsSucc {
			r.ledger.lost.Add(1)
		}
	default:
		if c.curIsSucc {
			r.ledger.unverified.Add(1)
		}
	}
}

// checkRevoked presents the latest token of a family the soak just replayed:
// it must be refused.
func (r *runner) checkRevoked(ctx context.Context, token string) {
	a := r.post(ctx, reqAfter, tokenPath, r.rtHdr, refreshBody(token))
	if ctx.Err() != nil {
		return
	}
	switch {
	case a.invalidGrant():
		r.ledger.familyRevoked.Add(1)
	case a.token():
		r.ledger.replayKept.Add(1)
		r.fail("replay did not revoke the family", "the family's latest token still rotated after a replay")
	default:
		r.unexpected(reqAfter, a, "400 invalid_grant")
	}
}

// op runs operation i of the mix (or client_credentials only).
func (r *runner) op(ctx context.Context, i int64, ccOnly bool) string {
	kind := opCC
	if !ccOnly {
		kind = opKind(i)
	}
	switch kind {
	case opCC:
		r.cc(ctx)
	case opRefresh:
		r.refresh(ctx)
	case opRevoke:
		r.revoke(ctx, i)
	case opReplay:
		r.replay(ctx)
	case opDouble:
		r.double(ctx)
	}
	return kind
}

// closedLoop runs the mix (or client_credentials only) with n goroutines for
// warm + window and returns the operations and requests per second completed
// in the window.
func (r *runner) closedLoop(ctx context.Context, n int, warm, window time.Duration, ccOnly bool) (opsPerSec, reqPerSec float64) {
	start := time.Now()
	end := start.Add(warm + window)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(end) {
				r.op(ctx, next.Add(1)-1, ccOnly)
				r.ops.Add(1)
			}
		}()
	}
	select {
	case <-ctx.Done():
	case <-time.After(warm):
	}
	ops0, req0, t0 := r.ops.Load(), r.requests.Load(), time.Now()
	select {
	case <-ctx.Done():
	case <-time.After(time.Until(end)):
	}
	ops1, req1, t1 := r.ops.Load(), r.requests.Load(), time.Now()
	wg.Wait()
	secs := t1.Sub(t0).Seconds()
	if secs <= 0 {
		return 0, 0
	}
	return float64(ops1-ops0) / secs, float64(req1-req0) / secs
}

// openResult is what the open-loop limiter did.
type openResult struct {
	scheduled int64 // operations due
	shed      int64 // due while every worker was busy and the queue full: not run
	elapsed   time.Duration
}

// openLoop schedules operations at rate per second for dur (open loop: each
// one is due at start + i/rate, whether or not earlier ones are done) and
// runs them on up to workers goroutines. An operation's latency runs from
// when it was due. It returns when every started operation is done.
func (r *runner) openLoop(ctx context.Context, rate float64, dur time.Duration, workers int, tick func(elapsed time.Duration)) openResult {
	type job struct {
		i  int64
		at time.Time
	}
	jobs := make(chan job, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if ctx.Err() != nil {
					continue // drain
				}
				kind := r.op(ctx, j.i, false)
				if ctx.Err() == nil {
					d := time.Since(j.at)
					r.mu.Lock()
					r.opLat[kind] = append(r.opLat[kind], d)
					r.mu.Unlock()
					r.ops.Add(1)
				}
			}
		}()
	}
	var res openResult
	start := time.Now()
	ticker := time.NewTicker(time.Millisecond)
	defer ticker.Stop()
	maxOps := int64(rate*dur.Seconds()) + 1
	nextTick := time.Second
	for ctx.Err() == nil {
		elapsed := time.Since(start)
		if elapsed >= dur {
			break
		}
		due := min(int64(elapsed.Seconds()*rate), maxOps)
		for ; res.scheduled < due; res.scheduled++ {
			at := start.Add(time.Duration(float64(res.scheduled) / rate * float64(time.Second)))
			select {
			case jobs <- job{i: res.scheduled, at: at}:
			default:
				res.shed++
			}
		}
		if tick != nil && elapsed >= nextTick {
			tick(elapsed)
			nextTick += time.Second
		}
		select {
		case <-ctx.Done():
		case <-ticker.C:
		}
	}
	res.elapsed = time.Since(start)
	close(jobs)
	wg.Wait()
	return res
}

// finalCheck rotates every chain still in the pool once: each current token,
// a successor of a 2xx refresh or a seed, must still work.
func (r *runner) finalCheck(ctx context.Context, workers int) int {
	var chains []*chain
	for {
		select {
		case c := <-r.pool:
			chains = append(chains, c)
			continue
		default:
		}
		break
	}
	r.mu.Lock()
	chains = append(chains, r.overflow...)
	r.overflow = nil
	r.mu.Unlock()
	work := make(chan *chain)
	var wg sync.WaitGroup
	for range max(1, min(workers, len(chains))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				if ctx.Err() != nil {
					if c.curIsSucc {
						r.ledger.pending.Add(1)
					}
					continue
				}
				r.rotate(ctx, c, reqFinal)
			}
		}()
	}
	for _, c := range chains {
		work <- c
	}
	close(work)
	wg.Wait()
	return len(chains)
}

// failureCounts returns a copy of the failure counts.
func (r *runner) failureCounts() map[string]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int64, len(r.failures))
	for k, v := range r.failures {
		out[k] = v
	}
	return out
}

// percentile returns the nearest-rank p-quantile of d (sorted in place).
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	i := int(p*float64(len(d))+0.999999) - 1
	return d[min(max(i, 0), len(d)-1)]
}
