package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-moserver/caddy-moserver/internal/loadtest"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/caddyproc"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/redistest"
)

// Shape of TestReloadUnderLoad: about 18 s of load from 8 workers with a
// reload every 3 s (5 reloads); about 25 s in all with Caddy's start.
const (
	reloadLoadWorkers  = 8
	reloadLoadDuration = 18 * time.Second
	reloadEvery        = 3 * time.Second
	reloadCount        = 5
	// reloadWindowAfter is how long after `caddy reload` returned a request
	// that got no response at all may still be put down to the reload.
	reloadWindowAfter = time.Second
	// reloadMaxAttempts bounds the attempts of one request.
	reloadMaxAttempts = 4
	// reloadRequestTimeout bounds every attempt.
	reloadRequestTimeout = 10 * time.Second
	// reloadMaxWorkerOps bounds each worker's loop in count as well as in time.
	reloadMaxWorkerOps = 200_000
)

// TestReloadUnderLoad: `caddy reload` with a changed client
// list, five times, while 8 workers run a mixed load on a Redis-backed site:
// client credentials; a refresh chain per worker, rotated on every use; fresh
// refresh tokens issued, revoked (at both revocation URLs) and checked to be
// refused afterwards. It asserts that
//
//   - every request gets the expected answer, and none is lost: no 5xx, no
//     unexpected 4xx, no connection error outside a reload, and (below) no
//     request the module handled without its answer reaching the client;
//   - every refresh chain is valid to the end: its last token rotates;
//   - each reload applied the new client list (the added client gets a
//     token, the removed one is refused);
//   - the Redis pool is shared across the reloads: the store is created once
//     (one "moserver store ready" log line), the connections opened before
//     the first reload still serve after the last, and their number does not
//     grow with each reload.
//
// Connections across a reload. Caddy's replaced server shuts down: it drops
// any request it reads after its shutdown began (net/http's conn.serve
// returns without handling it), closes its idle keep-alive connections, and
// closes its listening socket, which on Linux is a separate SO_REUSEPORT
// socket per configuration, so connections still in that socket's accept
// queue are reset. A client therefore sees, for a few requests around each
// reload, no response at all: EOF, "connection reset by peer", or
// "server closed idle connection". Only some of these prove on their own that
// the server never read the request (net/http retries a POST by itself only
// when nothing at all was written, its internal nothingWrittenError); EOF or a
// reset after the request was written do not. And no transport avoids them:
// one that opens a new connection for every request around the reload, so
// that no keep-alive connection crosses it, still had about two resets per
// reload here (the accept-queue reset and the dropped reads hit fresh
// connections too). So this test:
//
//   - retries a request that got no response at all, at most twice, and only
//     when that happened during a reload (from just before `caddy reload` to
//     reloadWindowAfter after it returned); anywhere else it is a failure, as
//     is any response that is not the expected one (never retried);
//   - then proves that no retried attempt reached the module, so that nothing
//     is masked: the module's own counters (moserver_token_requests_total and
//     moserver_revocations_total on Caddy's admin /metrics, process-wide, so
//     they span the reloads) must equal, label by label, the answers the
//     clients received. An attempt the module handled whose answer was lost
//     would make the server's count higher. For a refresh the retry is a
//     proof by itself too: refresh_grace is 0, so had the first attempt
//     rotated, the retry would be a replay, refused, and the chain revoked;
//   - fails on any "panic" in Caddy's log (a handler panic closes the
//     connection before the module counts the request).
func TestReloadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("reload under load takes about 25 s")
	}
	// A private Redis (never REDIS_URL), so CLIENT LIST sees only this test.
	rds := redistest.StartServer(t)
	redisURL := "redis://" + rds.Addr + "/0"
	prefix := redistest.Prefix(t)
	up := newUpstream(t)
	port := caddyproc.FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	config := func(extra int) string {
		// extra-N is the client that changes on every reload; the clients the
		// load uses (clientID with refresh tokens, "second" without) stay.
		opts := redisOptionFor(redisURL, prefix) +
			fmt.Sprintf("\n\t\tclient extra-%d {\n\t\t\tsecret extra-%d-secret\n\t\t}", extra, extra)
		// Loopback only: the site listens on 127.0.0.1, not on every interface.
		return strings.Replace(siteConfig(port, opts, up.URL), " {\n", " {\n\tbind 127.0.0.1\n", 1)
	}
	inst := caddyproc.Start(t, config(0), base+"/", "TEST_CLIENT_SECRET="+clientSecret)
	if inst.AdminAddr == "" {
		t.Fatal("no admin address")
	}

	obs := redis.NewClient(&redis.Options{Addr: rds.Addr, ClientName: "reload-test-observer", PoolSize: 1})
	t.Cleanup(func() { _ = obs.Close() })

	lc := newLoadClient(base)
	t.Cleanup(lc.client.CloseIdleConnections)

	// One refresh chain per worker.
	chains := make([]string, reloadLoadWorkers)
	for w := range chains {
		r, ok := lc.send("seeding a chain", tokenPath, ccValues(), "token+refresh")
		if !ok {
			t.Fatalf("seeding chain %d: %s", w, r)
		}
		chains[w] = r.refresh
	}

	ctx, cancel := context.WithTimeout(context.Background(), reloadLoadDuration)
	defer cancel()
	var wg sync.WaitGroup
	for w := range reloadLoadWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			chains[w] = lc.worker(ctx, w, chains[w])
		}()
	}
	// However the test ends, the workers stop before Caddy and Redis do.
	stopWorkers := sync.OnceFunc(func() { cancel(); wg.Wait() })
	t.Cleanup(stopWorkers)

	// Let the pool warm up under load, then take the "before" snapshot.
	sleepCtx(ctx, reloadEvery)
	before, err := redisClients(obs)
	if err != nil {
		t.Fatalf("CLIENT LIST before the reloads: %v", err)
	}
	conns := []int{len(before)}
	reloads := 0
	for n := 1; n <= reloadCount && ctx.Err() == nil; n++ {
		lc.openWindow()
		began := time.Now()
		inst.Reload(t, config(n))
		took := time.Since(began)
		lc.closeWindow(reloadWindowAfter)
		reloads++

		if _, ok := lc.send(fmt.Sprintf("reload %d: the added client extra-%d", n, n), tokenPath, url.Values{
			"grant_type": {"client_credentials"}, "client_id": {fmt.Sprintf("extra-%d", n)}, "client_secret": {fmt.Sprintf("extra-%d-secret", n)},
		}, "token"); !ok {
			t.Errorf("reload %d did not add client extra-%d", n, n)
		}
		// One failed authentication per reload: far below the default budget
		// of 10 per minute per address, which would otherwise stop the load.
		if _, ok := lc.send(fmt.Sprintf("reload %d: the removed client extra-%d", n, n-1), tokenPath, url.Values{
			"grant_type": {"client_credentials"}, "client_id": {fmt.Sprintf("extra-%d", n-1)}, "client_secret": {fmt.Sprintf("extra-%d-secret", n-1)},
		}, "401 invalid_client"); !ok {
			t.Errorf("reload %d did not remove client extra-%d", n, n-1)
		}
		cs, err := redisClients(obs)
		if err != nil {
			t.Fatalf("CLIENT LIST after reload %d: %v", n, err)
		}
		conns = append(conns, len(cs))
		t.Logf("reload %d at %s took %v; Caddy's Redis connections: %d; answers so far: %d",
			n, began.Format("15:04:05.000"), took.Round(time.Millisecond), len(cs), lc.answers.Load())
		sleepCtx(ctx, reloadEvery-time.Since(began))
	}
	if reloads < reloadCount {
		t.Errorf("only %d of %d reloads ran within the %v of load (slow machine?)", reloads, reloadCount, reloadLoadDuration)
	}
	<-ctx.Done()
	stopWorkers()

	// Every chain is still valid: its last token rotates.
	for w, rt := range chains {
		if rt != "" { // "" when a failure, already reported, broke the chain
			lc.send(fmt.Sprintf("worker %d: the last token of its chain", w), tokenPath, refreshValues(rt), "token+refresh")
		}
	}
	if !inst.Running() {
		t.Fatal("caddy is not running any more")
	}

	// The Redis pool.
	after, err := redisClients(obs)
	if err != nil {
		t.Fatalf("CLIENT LIST after the load: %v", err)
	}
	survivors := 0
	for id := range before {
		if after[id] {
			survivors++
		}
	}
	t.Logf("Caddy's Redis connections before the reloads, after each, at the end: %v %d; "+
		"%d of the %d from before the first reload still open", conns, len(after), survivors, len(before))
	if n := strings.Count(inst.Logs(), "moserver store ready"); n != 1 {
		t.Errorf(`"moserver store ready" logged %d times, want once: a reload made a new store`, n)
	}
	if survivors < len(before)-2 {
		t.Errorf("only %d of the %d Redis connections opened before the first reload are still open: the pool was replaced", survivors, len(before))
	}
	// A pool per configuration left open would keep its connections at
	// every reload: past one go-redis pool's size (10 per GOMAXPROCS, which
	// is at most the CPU count) after a few reloads. (The count itself moves
	// a little: the shared pool grows while load bursts warm it up.)
	if limit := 10 * runtime.NumCPU(); slices.Max(conns) > limit || len(after) > limit {
		t.Errorf("Caddy holds more Redis connections (%v, then %d) than one pool of %d can: a pool per configuration?", conns, len(after), limit)
	}

	// The load and its failures.
	t.Logf("%d answers as expected: %d client_credentials, %d chain rotations, %d fresh tokens issued, revoked and refused; "+
		"%d attempts got no response during a reload and were retried%s",
		lc.answers.Load(), lc.cc.Load(), lc.rotations.Load(), lc.revoked.Load(), lc.retried.Load(), lc.retryKinds())
	if lc.rotations.Load() == 0 || lc.cc.Load() == 0 || lc.revoked.Load() == 0 {
		t.Errorf("the load did not run every kind of request")
	}
	if n := lc.failures.Load(); n > 0 {
		lc.mu.Lock()
		t.Errorf("%d failed requests; the first ones:\n%s", n, strings.Join(lc.msgs, "\n"))
		lc.mu.Unlock()
	}
	if limit := int64(3 * reloadLoadWorkers * reloadCount); lc.retried.Load() > limit {
		t.Errorf("%d attempts got no response, more than %d for %d reloads", lc.retried.Load(), limit, reloadCount)
	}
	if strings.Contains(inst.Logs(), "panic") {
		t.Error(`Caddy's log mentions "panic"`)
	}

	// No attempt the module handled went unanswered: its counters equal the
	// answers the clients received, label by label.
	server, err := moserverCounters(inst.AdminAddr)
	if err != nil {
		t.Fatal(err)
	}
	client := lc.tallies()
	keys := map[string]bool{}
	for k := range server {
		keys[k] = true
	}
	for k := range client {
		keys[k] = true
	}
	var rows []string
	for k := range keys {
		rows = append(rows, fmt.Sprintf("%s server %d client %d", k, server[k], client[k]))
		if server[k] != client[k] {
			t.Errorf("%s: the module counted %d, the clients received %d answers: %s", k, server[k], client[k],
				"an attempt the module handled was not answered")
		}
	}
	sort.Strings(rows)
	t.Logf("the module's counters against the answers received:\n  %s", strings.Join(rows, "\n  "))
}

// worker runs the mixed load until ctx ends, starting with its chain's token
// rt, and returns the chain's last token ("" if a failure broke the chain).
func (lc *loadClient) worker(ctx context.Context, w int, rt string) string {
	second := url.Values{"grant_type": {"client_credentials"}, "client_id": {"second"}, "client_secret": {"second-secret"}}
	for i := 0; i < reloadMaxWorkerOps && ctx.Err() == nil; i++ {
		switch (i + w) % 4 {
		case 0: // client credentials, no refresh token
			if _, ok := lc.send(fmt.Sprintf("worker %d: client_credentials", w), tokenPath, second, "token"); ok {
				lc.cc.Add(1)
			}
		case 1, 3: // the worker's refresh chain
			r, ok := lc.send(fmt.Sprintf("worker %d: rotating its chain", w), tokenPath, refreshValues(rt), "token+refresh")
			if !ok {
				return "" // whether it rotated is unknown: the chain ends here
			}
			rt = r.refresh
			lc.rotations.Add(1)
		case 2: // a fresh refresh token, revoked, then refused
			r, ok := lc.send(fmt.Sprintf("worker %d: issuing a token to revoke", w), tokenPath, ccValues(), "token+refresh")
			if !ok {
				continue
			}
			// Both revocation URLs: RFC 7009's and the plugin's token= at the token endpoint.
			path := "/wp-json/moserver/revoke"
			if i%8 >= 4 {
				path = tokenPath
			}
			rev := url.Values{"token": {r.refresh}, "token_type_hint": {"refresh_token"}, "client_id": {clientID}, "client_secret": {clientSecret}}
			if _, ok := lc.send(fmt.Sprintf("worker %d: revoking a fresh token at %s", w, path), path, rev, "200"); !ok {
				continue
			}
			if _, ok := lc.send(fmt.Sprintf("worker %d: refreshing the revoked token", w), tokenPath, refreshValues(r.refresh), "400 invalid_grant"); ok {
				lc.revoked.Add(1)
			}
		}
	}
	return rt
}

// loadClient sends the test's requests over one keep-alive transport,
// retries as the test's comment says, and keeps the books: expected answers,
// failures, retries, and the answers received by metric label.
type loadClient struct {
	base   string
	client *http.Client

	answers, cc, rotations, revoked atomic.Int64
	failures, retried               atomic.Int64

	mu       sync.Mutex
	msgs     []string         // the first failures
	kinds    map[string]int   // retried attempts by error
	tally    map[string]int64 // answers received, by moserver metric sample
	windowAt time.Time        // start of the current or last reload window
	windowTo time.Time        // its end; zero while it is open
}

func newLoadClient(base string) *loadClient {
	return &loadClient{
		base: base,
		client: &http.Client{Timeout: reloadRequestTimeout, Transport: &http.Transport{
			Proxy:               nil, // never through $HTTP_PROXY
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConnsPerHost: reloadLoadWorkers + 1,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		}},
		kinds: map[string]int{},
		tally: map[string]int64{},
	}
}

// openWindow starts a reload window; closeWindow ends it after grace.
func (lc *loadClient) openWindow() {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.windowAt, lc.windowTo = time.Now(), time.Time{}
}

func (lc *loadClient) closeWindow(grace time.Duration) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.windowTo = time.Now().Add(grace)
}

// inWindow reports whether a reload window covers the attempt that began at
// began and ended at ended.
func (lc *loadClient) inWindow(began, ended time.Time) bool {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.windowAt.IsZero() || ended.Before(lc.windowAt) {
		return false
	}
	return lc.windowTo.IsZero() || began.Before(lc.windowTo)
}

// result is one answer, or the transport error that took its place.
type result struct {
	status     int
	err        error
	noResponse bool // err came before any response: nothing was received
	code       string
	access     string
	refresh    string
	body       string
}

func (r result) String() string {
	if r.err != nil {
		return "transport error: " + r.err.Error()
	}
	b := r.body
	if len(b) > 200 {
		b = b[:200] + "…"
	}
	return fmt.Sprintf("HTTP %d %s", r.status, b)
}

// is reports whether r is the expected answer: "token" (200 with an access
// token and no refresh token), "token+refresh", "200", or "<status> <error>".
func (r result) is(want string) bool {
	if r.err != nil {
		return false
	}
	switch want {
	case "token":
		return r.status == 200 && r.access != "" && r.refresh == ""
	case "token+refresh":
		return r.status == 200 && r.access != "" && r.refresh != ""
	case "200":
		return r.status == 200
	}
	status, code, _ := strings.Cut(want, " ")
	return strconv.Itoa(r.status) == status && r.code == code
}

// send POSTs the form until it gets an answer (at most reloadMaxAttempts
// attempts, retrying only an attempt that got no response during a reload),
// records it and reports whether it is want.
func (lc *loadClient) send(what, path string, form url.Values, want string) (result, bool) {
	var r result
	for attempt := 1; ; attempt++ {
		began := time.Now()
		r = lc.do(path, form)
		if r.err == nil {
			lc.count(path, form, r)
			break
		}
		if !r.noResponse || attempt == reloadMaxAttempts || !lc.inWindow(began, time.Now()) {
			break
		}
		lc.retried.Add(1)
		lc.mu.Lock()
		lc.kinds[errorKind(r.err)]++
		lc.mu.Unlock()
		// The pool may hold more connections of the replaced server, which
		// would fail the retry the same way: dial a fresh one.
		lc.client.CloseIdleConnections()
	}
	if !r.is(want) {
		lc.failures.Add(1)
		lc.mu.Lock()
		if len(lc.msgs) < 20 {
			lc.msgs = append(lc.msgs, fmt.Sprintf("  %s %s: want %s, got %s", time.Now().Format("15:04:05.000"), what, want, r))
		}
		lc.mu.Unlock()
		return r, false
	}
	lc.answers.Add(1)
	return r, true
}

// count adds an answer to the tally under the moserver metric sample the
// module counts it in.
func (lc *loadClient) count(path string, form url.Values, r result) {
	outcome := r.code
	var key string
	if grant := form.Get("grant_type"); grant != "" && path == tokenPath {
		if r.status == 200 {
			outcome = "issued"
		}
		key = fmt.Sprintf(`moserver_token_requests_total{grant=%q,outcome=%q}`, grant, outcome)
	} else {
		if r.status == 200 {
			outcome = "revoked"
		}
		key = fmt.Sprintf(`moserver_revocations_total{outcome=%q}`, outcome)
	}
	lc.mu.Lock()
	lc.tally[key]++
	lc.mu.Unlock()
}

func (lc *loadClient) tallies() map[string]int64 {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	out := make(map[string]int64, len(lc.tally))
	for k, v := range lc.tally {
		out[k] = v
	}
	return out
}

func (lc *loadClient) retryKinds() string {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	var out []string
	for k, n := range lc.kinds {
		out = append(out, fmt.Sprintf("%d× %s", n, k))
	}
	sort.Strings(out)
	if len(out) == 0 {
		return ""
	}
	return " (" + strings.Join(out, ", ") + ")"
}

// errorKind shortens a transport error for the report.
func errorKind(err error) string {
	switch s := err.Error(); {
	case errors.Is(err, io.EOF) || strings.HasSuffix(strings.SplitN(s, " [", 2)[0], ": EOF"):
		return "EOF"
	case strings.Contains(s, "server closed idle connection"):
		return "server closed idle connection"
	case strings.Contains(s, "connection reset by peer"):
		if strings.Contains(s, "dial tcp") {
			return "reset while connecting"
		}
		return "connection reset"
	default:
		return s
	}
}

// do POSTs the form once and reads the whole answer.
func (lc *loadClient) do(path string, form url.Values) result {
	req, err := http.NewRequest(http.MethodPost, lc.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		return result{err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	// Which connection carried it, for the failure messages.
	var conn string
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) {
			conn = fmt.Sprintf(" [connection %s, reused %v]", i.Conn.LocalAddr(), i.Reused)
		},
	}))
	res, err := lc.client.Do(req)
	if err != nil {
		return result{err: fmt.Errorf("%w%s", err, conn), noResponse: true}
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return result{status: res.StatusCode, err: fmt.Errorf("reading the body of an HTTP %d: %w", res.StatusCode, err)}
	}
	r := result{status: res.StatusCode, body: string(body)}
	var j struct {
		Error        string `json:"error"`
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if len(body) > 0 && json.Unmarshal(body, &j) == nil {
		r.code, r.access, r.refresh = j.Error, j.AccessToken, j.RefreshToken
	}
	return r
}

// moserverCounters scrapes Caddy's admin /metrics for the module's request
// counters, keyed like loadClient.count's tally.
func moserverCounters(adminAddr string) (map[string]int64, error) {
	samples, err := loadtest.ScrapeMetrics(context.Background(), "http://"+adminAddr+"/metrics")
	if err != nil {
		return nil, err
	}
	return loadtest.ModuleCounters(samples), nil
}

// redisClients returns the ids of the Redis connections other than the
// test's own observer (so Caddy's) from CLIENT LIST.
func redisClients(obs *redis.Client) (map[string]bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list, err := obs.ClientList(ctx).Result()
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		var id, name string
		for _, f := range strings.Fields(line) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "id":
				id = v
			case "name":
				name = v
			}
		}
		if id != "" && name != "reload-test-observer" {
			ids[id] = true
		}
	}
	return ids, nil
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
