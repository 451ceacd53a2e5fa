package oauth

import (
	"context"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/caddy-moserver/caddy-moserver/internal/store"
)

func (f *fixture) postFrom(addr string, v url.Values) response {
	f.t.Helper()
	req := formRequest(DefaultTokenPath, v)
	req.RemoteAddr = addr + ":40000"
	return f.do(req)
}

func TestFailedAuthenticationBudget(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		f := newFixture(t, st, func(c *Config) { c.AuthFailureLimit = 5; c.AuthFailureWindow = 2 * time.Second })
		wrong := ccForm("client_secret", "wrong")
		other := url.Values{"grant_type": {"client_credentials"}, "client_id": {noRefreshID}, "client_secret": {noRefreshSec}}
		// Successes never count.
		for range 10 {
			wantToken(t, f.postFrom("203.0.113.9", other))
		}
		for range 5 {
			wantError(t, f.postFrom("203.0.113.1", wrong), 401, "invalid_client")
		}
		r := f.postFrom("203.0.113.1", ccForm())
		wantError(t, r, 429, "temporarily_unavailable")
		if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 || s > 2 {
			t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
		}
		// The client id is blocked from every address, the address for every client.
		wantError(t, f.postFrom("203.0.113.2", ccForm()), 429, "temporarily_unavailable")
		wantError(t, f.postFrom("203.0.113.1", other), 429, "temporarily_unavailable")
		wantToken(t, f.postFrom("203.0.113.3", other))
		// Revocation authenticates the same way.
		wantError(t, f.do(withAddr(formRequest(DefaultRevokePath, revokeForm("x")), "203.0.113.1")), 429, "temporarily_unavailable")
		time.Sleep(2100 * time.Millisecond)
		wantToken(t, f.postFrom("203.0.113.1", ccForm()))
	})
}

// countingStore counts the failure-budget reads of a real store.
type countingStore struct {
	store.Store
	mu    sync.Mutex
	reads int
}

func (c *countingStore) AuthFailures(ctx context.Context, keys []string) ([]store.FailureCount, error) {
	c.mu.Lock()
	c.reads++
	c.mu.Unlock()
	return c.Store.AuthFailures(ctx, keys)
}

// Well-behaved clients do not pay a store round trip per request for the
// budget; a failure makes the next attempt read the store again.
func TestBudgetReadsAreCached(t *testing.T) {
	mem := store.NewMemory()
	t.Cleanup(func() { _ = mem.Close() })
	cs := &countingStore{Store: mem}
	f := newFixture(t, cs, func(c *Config) { c.AuthFailureLimit = 2 })
	other := url.Values{"grant_type": {"client_credentials"}, "client_id": {noRefreshID}, "client_secret": {noRefreshSec}}
	for range 20 {
		wantToken(t, f.postFrom("203.0.113.5", other))
	}
	if cs.reads != 1 {
		t.Fatalf("%d budget reads for 20 good requests, want 1", cs.reads)
	}
	wrong := url.Values{"grant_type": {"client_credentials"}, "client_id": {noRefreshID}, "client_secret": {"x"}}
	wantError(t, f.postFrom("203.0.113.5", wrong), 401, "invalid_client")
	wantError(t, f.postFrom("203.0.113.5", wrong), 401, "invalid_client")
	wantError(t, f.postFrom("203.0.113.5", other), 429, "temporarily_unavailable")
	// The first wrong attempt was inside the trusted second; each attempt
	// after a failure reads the store again.
	if cs.reads != 3 {
		t.Fatalf("%d budget reads, want 3", cs.reads)
	}
}
