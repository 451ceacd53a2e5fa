package oauth

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-moserver/caddy-moserver/internal/store"
)

func (f *fixture) postFrom(addr string, v url.Values) response {
	f.t.Helper()
	req := formRequest(DefaultTokenPath, v)
	req.RemoteAddr = net.JoinHostPort(addr, "40000")
	return f.do(req)
}

var noRefreshCC = url.Values{"grant_type": {"client_credentials"}, "client_id": {noRefreshID}, "client_secret": {noRefreshSec}}

// An attacker who burns the budget of a client id from one address locks
// out that address (even with the right secret), not the client: the real
// client gets its token from another address.
func TestFailedAuthenticationBudget(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		f := newFixture(t, st, func(c *Config) { c.AuthFailureLimit = 5; c.AuthFailureWindow = 2 * time.Second })
		wrong := ccForm("client_secret", "wrong")
		// Successes never count.
		for range 10 {
			wantToken(t, f.postFrom("203.0.113.9", noRefreshCC))
		}
		for range 5 {
			wantError(t, f.postFrom("203.0.113.1", wrong), 401, "invalid_client")
		}
		r := f.postFrom("203.0.113.1", wrong)
		wantError(t, r, 429, "temporarily_unavailable")
		if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 || s > 2 {
			t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
		}
		// The attacker's address is refused even with the right secret, and
		// for every client.
		wantError(t, f.postFrom("203.0.113.1", ccForm()), 429, "temporarily_unavailable")
		wantError(t, f.postFrom("203.0.113.1", noRefreshCC), 429, "temporarily_unavailable")
		// The real client, from an address that has not failed, gets its token.
		wantToken(t, f.postFrom("203.0.113.2", ccForm()))
		// Revocation authenticates the same way.
		wantError(t, f.do(withAddr(formRequest(DefaultRevokePath, revokeForm("x")), "203.0.113.1")), 429, "temporarily_unavailable")
		time.Sleep(2100 * time.Millisecond)
		wantToken(t, f.postFrom("203.0.113.1", ccForm()))
	})
}

// Failures for one client id from many addresses never lock out the right
// secret from an address that has not failed; past the client id's
// ceiling, an address that has failed is refused even with the right one.
func TestClientIDCeiling(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		f := newFixture(t, st, func(c *Config) { c.AuthFailureLimit = 1 })
		wrong := ccForm("client_secret", "wrong")
		attackers := clientIDCeilingFactor + 1
		for i := range attackers {
			r := f.postFrom(fmt.Sprintf("198.51.%d.%d", i/200, 1+i%200), wrong)
			if i < clientIDCeilingFactor {
				wantError(t, r, 401, "invalid_client")
			} else {
				wantError(t, r, 429, "temporarily_unavailable")
			}
		}
		wantToken(t, f.postFrom("203.0.113.7", ccForm()))
		// Within its own budget, but the client id is past its ceiling.
		wantError(t, f.postFrom("198.51.0.1", ccForm()), 429, "temporarily_unavailable")
	})
}

// An IPv6 address counts per /64: an attacker holds all of it.
func TestBudgetPerIPv6Prefix(t *testing.T) {
	f := newFixture(t, nil, func(c *Config) { c.AuthFailureLimit = 3 })
	wrong := ccForm("client_secret", "wrong")
	for i := range 3 {
		wantError(t, f.postFrom(fmt.Sprintf("2001:db8:1:2::%x", i+1), wrong), 401, "invalid_client")
	}
	wantError(t, f.postFrom("2001:db8:1:2:ffff::9", wrong), 429, "temporarily_unavailable")
	wantError(t, f.postFrom("2001:db8:1:2::77", ccForm()), 429, "temporarily_unavailable")
	wantToken(t, f.postFrom("2001:db8:1:3::1", ccForm()))
	wantToken(t, f.postFrom("::ffff:203.0.113.40", ccForm()))
}

func TestAddressKey(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.5":            "203.0.113.5",
		"::ffff:203.0.113.5":     "203.0.113.5",
		"2001:db8:1:2:3:4:5:6":   "2001:db8:1:2::/64",
		"2001:DB8:1:2::1":        "2001:db8:1:2::/64",
		"fe80::1%eth0":           "fe80::/64",
		"not an address":         "not an address",
		"2001:db8:1:2:ffff::abc": "2001:db8:1:2::/64",
	} {
		if got := addressKey(in); got != want {
			t.Errorf("addressKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// A burst of simultaneous wrong secrets gets at most the budget of 401s:
// the decision is made on the atomically incremented counts. (It may get
// fewer: the pair's and the address's counters are incremented separately,
// so two requests can each get one of them past the budget.)
func TestBudgetExactUnderBurst(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		const limit, burst = 10, 400
		f := newFixture(t, st, func(c *Config) { c.AuthFailureLimit = limit })
		wrong := ccForm("client_secret", "wrong")
		var unauthorized, limited atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range burst {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				switch r := f.postFrom("203.0.113.50", wrong); r.status {
				case 401:
					unauthorized.Add(1)
				case 429:
					limited.Add(1)
				default:
					t.Errorf("status %d: %s", r.status, r.body)
				}
			}()
		}
		close(start)
		wg.Wait()
		if u := unauthorized.Load(); u < 1 || u > limit || u+limited.Load() != burst {
			t.Fatalf("%d answered 401 and %d 429 of %d simultaneous wrong secrets; want at most %d 401s",
				u, limited.Load(), burst, limit)
		}
	})
}

// flakyStore is a real store whose failure counters can be made to fail,
// as a store that does not answer does.
type flakyStore struct {
	store.Store
	down                atomic.Bool
	reads, records      atomic.Int32
	recordedWhileUp     atomic.Int32
	failuresWhileDown   atomic.Int32
	errStoreUnavailable error
}

func newFlakyStore(t *testing.T) *flakyStore {
	mem := store.NewMemory()
	t.Cleanup(func() { _ = mem.Close() })
	return &flakyStore{Store: mem, errStoreUnavailable: fmt.Errorf("%w: test outage", store.ErrUnavailable)}
}

func (s *flakyStore) AuthFailures(ctx context.Context, keys []string) ([]store.FailureCount, error) {
	s.reads.Add(1)
	if s.down.Load() {
		return nil, s.errStoreUnavailable
	}
	return s.Store.AuthFailures(ctx, keys)
}

func (s *flakyStore) RecordAuthFailure(ctx context.Context, keys []string, window time.Duration) ([]store.FailureCount, error) {
	s.records.Add(1)
	if s.down.Load() {
		s.failuresWhileDown.Add(1)
		return nil, s.errStoreUnavailable
	}
	s.recordedWhileUp.Add(1)
	return s.Store.RecordAuthFailure(ctx, keys, window)
}

// While the store cannot answer, failures are counted on the instance with
// the same budget (no window without a limit), the right secret still
// passes from a clean address, and the store is used again once it answers.
func TestBudgetWithoutStore(t *testing.T) {
	fs := newFlakyStore(t)
	f := newFixture(t, fs, func(c *Config) { c.AuthFailureLimit = 3 })
	f.srv.limiter.localFor = 300 * time.Millisecond
	fs.down.Store(true)
	wrong := ccForm("client_secret", "wrong")
	for range 3 {
		wantError(t, f.postFrom("203.0.113.60", wrong), 401, "invalid_client")
	}
	for range 20 {
		wantError(t, f.postFrom("203.0.113.60", wrong), 429, "temporarily_unavailable")
	}
	wantError(t, f.postFrom("203.0.113.60", ccForm()), 429, "temporarily_unavailable")
	wantToken(t, f.postFrom("203.0.113.61", noRefreshCC))
	// The store was asked once, then left alone while it is down.
	if n := fs.failuresWhileDown.Load(); n != 1 {
		t.Errorf("the store was asked to count %d failures while down, want 1 (then the instance counts)", n)
	}

	fs.down.Store(false)
	time.Sleep(350 * time.Millisecond)
	wantError(t, f.postFrom("203.0.113.62", wrong), 401, "invalid_client")
	if fs.recordedWhileUp.Load() != 1 {
		t.Fatalf("after the store came back, %d failures were counted in it, want 1", fs.recordedWhileUp.Load())
	}
	counts, err := fs.Store.AuthFailures(context.Background(), []string{ipKeyPrefix + "203.0.113.62"})
	if err != nil || counts[0].Count != 1 {
		t.Fatalf("the store's count for the address: %+v, %v", counts, err)
	}
}

// A full instance table refuses failures it cannot count instead of
// letting them through unlimited; the right secret still passes.
func TestBudgetLocalTableFull(t *testing.T) {
	fs := newFlakyStore(t)
	fs.down.Store(true)
	f := newFixture(t, fs, func(c *Config) { c.AuthFailureLimit = 3 })
	f.srv.limiter.local.max = 6 // two failures' keys
	wrong := ccForm("client_secret", "wrong")
	wantError(t, f.postFrom("203.0.113.70", wrong), 401, "invalid_client")
	wantError(t, f.postFrom("203.0.113.71", wrong), 401, "invalid_client")
	wantError(t, f.postFrom("203.0.113.72", wrong), 429, "temporarily_unavailable")
	wantToken(t, f.postFrom("203.0.113.72", noRefreshCC))
}

// Well-behaved clients do not pay a store round trip per request for the
// budget; an address this instance knows to be over budget is refused
// without asking the store.
func TestBudgetReadsAreCached(t *testing.T) {
	fs := newFlakyStore(t)
	f := newFixture(t, fs, func(c *Config) { c.AuthFailureLimit = 2 })
	for range 20 {
		wantToken(t, f.postFrom("203.0.113.5", noRefreshCC))
	}
	if n := fs.reads.Load(); n != 1 {
		t.Fatalf("%d budget reads for 20 good requests, want 1", n)
	}
	wrong := ccForm("client_id", noRefreshID, "client_secret", "x")
	wantError(t, f.postFrom("203.0.113.5", wrong), 401, "invalid_client")
	wantError(t, f.postFrom("203.0.113.5", wrong), 401, "invalid_client")
	for range 5 {
		wantError(t, f.postFrom("203.0.113.5", noRefreshCC), 429, "temporarily_unavailable")
		wantError(t, f.postFrom("203.0.113.5", wrong), 429, "temporarily_unavailable")
	}
	if r, w := fs.reads.Load(), fs.records.Load(); r != 1 || w != 2 {
		t.Fatalf("%d budget reads and %d counted failures; want 1 and 2", r, w)
	}
}
