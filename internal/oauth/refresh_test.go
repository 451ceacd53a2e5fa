package oauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-moserver/caddy-moserver/internal/store"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/redistest"
)

// forEachStore runs a test against the memory store and a real Redis.
func forEachStore(t *testing.T, test func(t *testing.T, st store.Store)) {
	t.Run("memory", func(t *testing.T) {
		st := store.NewMemory()
		t.Cleanup(func() { _ = st.Close() })
		test(t, st)
	})
	t.Run("redis", func(t *testing.T) {
		client, prefix := redistest.Start(t)
		test(t, store.NewRedis(client, prefix))
	})
}

func TestRefreshRotates(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		f := newFixture(t, st, nil)
		rt1 := f.issueRefresh()
		r := wantToken(t, f.post(refreshForm(rt1)))
		rt2 := r.str("refresh_token")
		if rt2 == "" || rt2 == rt1 {
			t.Fatalf("no new refresh token: %s", r.body)
		}
		if r.str("scope") != "profile email" {
			t.Errorf("scope = %q", r.str("scope"))
		}
		c1, _ := f.signer.Verify(r.str("access_token"), f.clock.Now())
		if c1 == nil || c1.Subject != "client:"+ccID || c1.FamilyID == "" {
			t.Errorf("claims %+v", c1)
		}
		// JSON body with the Java/Python samples' extra username and password.
		req := httptest.NewRequest(http.MethodPost, DefaultTokenPath, strings.NewReader(
			`{"grant_type":"refresh_token","username":"u","password":"p","client_id":"`+ccID+`","client_secret":"`+ccSecret+`","refresh_token":"`+rt2+`"}`))
		req.Header.Set("Content-Type", "application/json")
		r3 := wantToken(t, f.do(req))
		// Basic auth with the refresh token in a form body (Java/PHP samples).
		req = formRequest(DefaultTokenPath, url.Values{"grant_type": {"refresh_token"}, "username": {"u"}, "password": {"p"},
			"refresh_token": {r3.str("refresh_token")}})
		req.Header.Set("Authorization", basic(ccID, ccSecret))
		wantToken(t, f.do(req))
	})
}

// Under the default settings, a token presented again after its successor
// was used is a replay: the family is revoked.
func TestRefreshReplayRevokesFamily(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		f := newFixture(t, st, nil)
		rt1 := f.issueRefresh()
		rt2 := wantToken(t, f.post(refreshForm(rt1))).str("refresh_token")
		rt3 := wantToken(t, f.post(refreshForm(rt2))).str("refresh_token")
		r := f.post(refreshForm(rt1)) // replay of a spent token
		wantError(t, r, 400, "invalid_grant")
		wantError(t, f.post(refreshForm(rt3)), 400, "invalid_grant") // the newest died with the family
	})
	t.Run("strict", func(t *testing.T) {
		f := newFixture(t, nil, func(c *Config) { c.RefreshGrace = -1 })
		rt1 := f.issueRefresh()
		rt2 := wantToken(t, f.post(refreshForm(rt1))).str("refresh_token")
		wantError(t, f.post(refreshForm(rt1)), 400, "invalid_grant")
		wantError(t, f.post(refreshForm(rt2)), 400, "invalid_grant")
	})
}

// Under the default settings, a client that lost the answer to a refresh
// (a 503 while the store stalled, a dropped connection) and retries the same
// token gets the successor the store kept, not a replay alarm.
func TestRefreshRetryByDefault(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		f := newFixture(t, st, nil)
		rt1 := f.issueRefresh()
		rt2 := wantToken(t, f.post(refreshForm(rt1))).str("refresh_token")
		f.clock.Add(90 * time.Second)
		if got := wantToken(t, f.post(refreshForm(rt1))).str("refresh_token"); got != rt2 {
			t.Fatal("a retry of the last refresh did not get its successor")
		}
		wantToken(t, f.post(refreshForm(rt2)))
	})
}

func TestRefreshGraceRetry(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		f := newFixture(t, st, func(c *Config) { c.RefreshGrace = 30 * time.Second })
		rt1 := f.issueRefresh()
		rt2 := wantToken(t, f.post(refreshForm(rt1))).str("refresh_token")
		f.clock.Add(10 * time.Second)
		retry := wantToken(t, f.post(refreshForm(rt1)))
		if retry.str("refresh_token") != rt2 {
			t.Fatal("a retry inside the grace period did not get the same successor")
		}
		rt3 := wantToken(t, f.post(refreshForm(rt2))).str("refresh_token")
		// rt1 is now two steps back: a replay, even inside the grace period.
		wantError(t, f.post(refreshForm(rt1)), 400, "invalid_grant")
		wantError(t, f.post(refreshForm(rt3)), 400, "invalid_grant")
	})
	t.Run("outside grace", func(t *testing.T) {
		f := newFixture(t, nil, func(c *Config) { c.RefreshGrace = 30 * time.Second })
		rt1 := f.issueRefresh()
		rt2 := wantToken(t, f.post(refreshForm(rt1))).str("refresh_token")
		f.clock.Add(31 * time.Second)
		wantError(t, f.post(refreshForm(rt1)), 400, "invalid_grant")
		wantError(t, f.post(refreshForm(rt2)), 400, "invalid_grant")
	})
}

func TestRefreshScopeAndClient(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		f := newFixture(t, st, nil)
		rt := f.issueRefresh()
		wantError(t, f.post(refreshForm(rt, "scope", "email write")), 400, "invalid_scope")
		// Another client's attempt fails and does not spend the token.
		other := refreshForm(rt)
		other.Set("client_id", otherID)
		other.Set("client_secret", otherSecret)
		r := f.post(other)
		wantError(t, r, 400, "invalid_grant")
		if r.str("error_description") != descForeignRefresh {
			t.Errorf("description %q", r.str("error_description"))
		}
		narrowed := wantToken(t, f.post(refreshForm(rt, "scope", "email")))
		if narrowed.str("scope") != "email" {
			t.Errorf("scope = %q", narrowed.str("scope"))
		}
		// Narrowed stays narrowed: profile can't come back.
		wantError(t, f.post(refreshForm(narrowed.str("refresh_token"), "scope", "profile")), 400, "invalid_scope")
	})
}

func TestRefreshErrors(t *testing.T) {
	f := newFixture(t, nil, func(c *Config) { c.RefreshTokenTTL = time.Hour })
	r := f.post(refreshForm(""))
	wantError(t, r, 400, "invalid_request")
	if r.str("error_description") != descMissingRefresh {
		t.Errorf("description %q", r.str("error_description"))
	}
	wantError(t, f.post(refreshForm("0123456789abcdef0123456789abcdef")), 400, "invalid_grant")
	rt := f.issueRefresh()
	f.clock.Add(2 * time.Hour)
	r = f.post(refreshForm(rt))
	wantError(t, r, 400, "invalid_grant")
	if r.str("error_description") != descExpiredRefresh {
		t.Errorf("description %q", r.str("error_description"))
	}
}

// Concurrent refreshes of one token yield one successor: strict, one of
// them gets it and the others are replays; by default (a grace period) the
// others are retries and get that same successor.
func TestConcurrentRefreshOneWinner(t *testing.T) {
	for _, grace := range []time.Duration{-1, 0} {
		forEachStore(t, func(t *testing.T, st store.Store) {
			f := newFixture(t, st, func(c *Config) { c.RefreshGrace = grace })
			rt := f.issueRefresh()
			const n = 50
			var wg sync.WaitGroup
			statuses := make([]int, n)
			bodies := make([]string, n)
			start := make(chan struct{})
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					rec := httptest.NewRecorder()
					f.srv.Handle(rec, formRequest(DefaultTokenPath, refreshForm(rt)))
					statuses[i] = rec.Code
					bodies[i] = rec.Body.String()
				}()
			}
			close(start)
			wg.Wait()
			ok := 0
			successors := map[string]bool{}
			for i, s := range statuses {
				switch {
				case s == 200:
					ok++
					var body struct {
						RefreshToken string `json:"refresh_token"`
					}
					_ = json.Unmarshal([]byte(bodies[i]), &body)
					successors[body.RefreshToken] = true
				case s == 400 && strings.Contains(bodies[i], `"invalid_grant"`) && grace < 0:
				default:
					t.Errorf("grace %v, request %d: %d %s", grace, i, s, bodies[i])
				}
			}
			if len(successors) != 1 || (grace < 0 && ok != 1) {
				t.Fatalf("grace %v: %d refreshes succeeded with %d different successors; want one successor (strict: one success)",
					grace, ok, len(successors))
			}
		})
	}
}

func TestStoreOutageIs503(t *testing.T) {
	srv := redistest.StartServer(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	t.Cleanup(func() { _ = client.Close() })
	ev := &countingEvents{counts: map[string]int{}}
	f := newFixture(t, store.NewRedis(client, "outage:"), func(c *Config) { c.StoreTimeout = 500 * time.Millisecond; c.Events = ev })
	rt := f.issueRefresh()
	srv.Stop()
	r := f.post(refreshForm(rt))
	wantError(t, r, 503, "temporarily_unavailable")
	if r.header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	wantError(t, f.post(url.Values{"token": {rt}, "client_id": {ccID}, "client_secret": {ccSecret}}), 503, "temporarily_unavailable")
	wantError(t, f.post(ccForm()), 503, "temporarily_unavailable") // it would issue a refresh token
	wantError(t, f.do(formRequest(DefaultIntrospectPath, introspectForm(rt, ccID, ccSecret))), 503, "temporarily_unavailable")
	// Every 503, whatever the endpoint, is a store error for metrics.
	if n := ev.counts["store unavailable"]; n != 4 {
		t.Errorf("%d store errors reported for 4 answers 503 (all: %v)", n, ev.counts)
	}
	// Client credentials without a refresh token do not need the store.
	wantToken(t, f.post(url.Values{"grant_type": {"client_credentials"}, "client_id": {noRefreshID}, "client_secret": {noRefreshSec}}))
	srv.Restart()
	// The store works again without a new Server; the test Redis keeps
	// nothing on disk, so a new family is started.
	wantToken(t, f.post(refreshForm(f.issueRefresh())))
}
