package integration

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-moserver/caddy-moserver/internal/testutil/redistest"
)

// TestStoreStallAnswersWithinTimeout stalls Redis (SIGSTOP: connected, but
// silent): every request answers within 1.2 × store_timeout, however many
// store calls it would make (the failure budget, then the rotation share one
// deadline), and a wrong secret is still answered 401.
func TestStoreStallAnswersWithinTimeout(t *testing.T) {
	const storeTimeout = time.Second
	srv := redistest.StartServer(t)
	s := startSite(t, redisOptionFor("redis://"+srv.Addr+"/0", redistest.Prefix(t))+"\n\t\tstore_timeout 1s", newUpstream(t).URL)
	first := mustToken(t, s.form(t, tokenPath, ccValues()))
	rt, at := first.str("refresh_token"), first.str("access_token")
	wrong := ccValues()
	wrong.Set("client_secret", "wrong")

	srv.Pause()
	t.Cleanup(srv.Resume)
	requests := []struct {
		name   string
		path   string
		values url.Values
		status int
	}{
		{"refresh", tokenPath, refreshValues(rt), 503},
		{"client credentials with a refresh token", tokenPath, ccValues(), 503},
		{"wrong secret", tokenPath, wrong, 401},
		{"revocation", "/wp-json/moserver/revoke", url.Values{"token": {rt}, "client_id": {clientID}, "client_secret": {clientSecret}}, 503},
		{"introspection", "/wp-json/moserver/introspect", url.Values{"token": {at}, "client_id": {clientID}, "client_secret": {clientSecret}}, 503},
	}
	for round := range 2 { // the first asks the failure budget too, the second not
		for _, req := range requests {
			begin := time.Now()
			r := s.form(t, req.path, req.values)
			took := time.Since(begin)
			if r.status != req.status {
				t.Errorf("round %d, %s: %d %s; want %d", round, req.name, r.status, r.body, req.status)
			}
			if took > storeTimeout*12/10 {
				t.Errorf("round %d, %s: answered after %v; want at most 1.2 × store_timeout (%v)", round, req.name, took, storeTimeout)
			}
		}
	}
}

// TestStoreStallLosesNoChain: clients refresh in a loop and retry the same
// token after a 503 or a lost answer, as clients do; Redis stalls for 3 s
// under that load and resumes. Under default settings no chain is lost and
// no family revoked (a rotation Redis ran after the client gave up is found
// by the retry, which gets its successor), while a real replay afterwards,
// of a token whose successor was used, still revokes the family.
func TestStoreStallLosesNoChain(t *testing.T) {
	srv := redistest.StartServer(t)
	s := startSite(t, redisOptionFor("redis://"+srv.Addr+"/0", redistest.Prefix(t)), newUpstream(t).URL)
	const chains = 16
	client := &http.Client{Timeout: 5 * time.Second}
	refresh := func(rt string) (status int, next string) {
		req, _ := http.NewRequest(http.MethodPost, s.base+tokenPath, strings.NewReader(refreshValues(rt).Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		res, err := client.Do(req)
		if err != nil {
			return 0, "" // a lost answer: retry
		}
		defer res.Body.Close()
		var body struct {
			RefreshToken string `json:"refresh_token"`
		}
		if res.StatusCode == 200 {
			if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
				return 0, "" // a lost answer: retry
			}
		}
		return res.StatusCode, body.RefreshToken
	}

	type chain struct {
		history  []string // every token the chain held, oldest first
		lost     string
		rotated  int
		retried  int
		statuses map[int]int
	}
	all := make([]*chain, chains)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for i := range all {
		c := &chain{history: []string{mustToken(t, s.form(t, tokenPath, ccValues())).str("refresh_token")}, statuses: map[int]int{}}
		all[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				status, next := refresh(c.history[len(c.history)-1])
				c.statuses[status]++
				switch status {
				case 200:
					c.history = append(c.history, next)
					c.rotated++
				case 0, 503:
					c.retried++
					time.Sleep(50 * time.Millisecond)
				default:
					c.lost = "status " + http.StatusText(status)
					return
				}
			}
		}()
	}
	time.Sleep(time.Second)
	srv.Pause()
	time.Sleep(3 * time.Second)
	srv.Resume()
	time.Sleep(2 * time.Second)
	stop.Store(true)
	wg.Wait()

	retries := 0
	for i, c := range all {
		retries += c.retried
		if c.lost != "" {
			t.Errorf("chain %d lost (%s) after %d rotations; statuses %v", i, c.lost, c.rotated, c.statuses)
		}
	}
	if retries == 0 {
		t.Fatal("no request failed during the stall: the test did not stall Redis")
	}
	// Every chain still works: no family was revoked.
	for i, c := range all {
		status, next := refresh(c.history[len(c.history)-1])
		if status != 200 {
			t.Fatalf("chain %d: after the stall its token is refused (%d)", i, status)
		}
		c.history = append(c.history, next)
	}
	// A real replay: the token before the last, whose successor was used.
	c := all[0]
	if status, _ := refresh(c.history[len(c.history)-3]); status != 400 {
		t.Fatalf("replay of a token whose successor was used: %d, want 400", status)
	}
	if status, _ := refresh(c.history[len(c.history)-1]); status != 400 {
		t.Fatalf("after the replay the family still works (%d); it must be revoked", status)
	}
	t.Logf("%d chains, %d failed attempts retried during the stall", chains, retries)
}
