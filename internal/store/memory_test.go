package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/caddy-moserver/caddy-moserver/internal/store"
	"github.com/caddy-moserver/caddy-moserver/internal/store/storetest"
)

func TestMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return store.NewMemory() })
}

// fakeClock is a settable wall clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

// TestMemoryExpiry checks that entries disappear at their expiry by the
// wall clock, like Redis keys, and that rotation extends the family's life
// but never shortens it.
func TestMemoryExpiry(t *testing.T) {
	ctx := context.Background()
	m := store.NewMemory()
	defer m.Close()
	t0 := time.Now().Truncate(time.Millisecond)
	clock := &fakeClock{t: t0}
	store.SetClock(m, clock.now)

	err := m.CreateFamily(ctx, store.NewFamily{
		FamilyID: "f1", Digest: "d0", ClientID: "c1", Scope: "read",
		ExpiresAt: t0.Add(time.Hour), FamilyExpiresAt: t0.Add(2 * time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	rotate := func(old, new string, famExp time.Duration) store.Outcome {
		t.Helper()
		res, err := m.Rotate(ctx, store.RotateRequest{
			FamilyID: "f1", OldDigest: old, NewDigest: new, ClientID: "c1", Now: t0,
			ExpiresAt: t0.Add(time.Hour), FamilyExpiresAt: t0.Add(famExp),
		})
		if err != nil {
			t.Fatal(err)
		}
		return res.Outcome
	}
	if o := rotate("d0", "d1", 3*time.Hour); o != store.Rotated {
		t.Fatalf("rotate d0 = %v", o)
	}
	if o := rotate("d1", "d2", time.Hour); o != store.Rotated { // must not shorten
		t.Fatalf("rotate d1 = %v", o)
	}
	if err := m.RevokeAccessToken(ctx, "j1", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}

	// At the tokens' expiry they are gone, whatever Now the request carries.
	clock.set(t0.Add(time.Hour))
	if o := rotate("d2", "d3", 3*time.Hour); o != store.NotFound {
		t.Fatalf("rotate after expiry = %v, want not_found", o)
	}
	if ok, _ := storetest.JTIRevoked(ctx, m, "j1"); ok {
		t.Fatal("jti still revoked after its exp")
	}
	// The family lives until its extended expiry (3h), not the 2h it was
	// created with nor the 1h of the last rotation.
	clock.set(t0.Add(150 * time.Minute))
	if err := m.RevokeFamily(ctx, "f1"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := m.FamilyRevoked(ctx, "f1"); !ok {
		t.Fatal("family gone before its extended expiry")
	}
	store.Sweep(m)
	if f, tk, j := store.Sizes(m); f != 1 || tk != 0 || j != 0 {
		t.Fatalf("after sweep at 2h30: %d families, %d tokens, %d jtis; want 1, 0, 0", f, tk, j)
	}
	clock.set(t0.Add(3 * time.Hour))
	store.Sweep(m)
	if f, tk, j := store.Sizes(m); f+tk+j != 0 {
		t.Fatalf("after sweep at 3h: %d families, %d tokens, %d jtis; want none", f, tk, j)
	}
	if ok, _ := m.FamilyRevoked(ctx, "f1"); ok {
		t.Fatal("expired family still reported revoked")
	}
}

func TestMemoryClose(t *testing.T) {
	m := store.NewMemory()
	for range 2 {
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.RevokeFamily(context.Background(), "x"); err != nil {
		t.Fatal(err)
	}
}

// TestMemoryClientExpiry checks by the store's clock that a client's
// revoked-before time is kept for the longest keep asked for, measured from
// each call, and then disappears (also from the janitor's sweep).
func TestMemoryClientExpiry(t *testing.T) {
	ctx := context.Background()
	m := store.NewMemory()
	defer m.Close()
	t0 := time.Now().Truncate(time.Millisecond)
	clock := &fakeClock{t: t0}
	store.SetClock(m, clock.now)
	revoke := func(before time.Time, keep time.Duration) {
		t.Helper()
		if err := m.RevokeClient(ctx, "c1", before, keep); err != nil {
			t.Fatal(err)
		}
	}
	want := func(w time.Time) {
		t.Helper()
		got, err := storetest.ClientRevokedBefore(ctx, m, "c1")
		if err != nil || !got.Equal(w) || got.IsZero() != w.IsZero() {
			t.Fatalf("ClientRevokedBefore at %v = %v, %v; want %v", clock.now().Sub(t0), got, err, w)
		}
		st, err := m.CheckAccess(ctx, "j", "", "c1")
		if err != nil || !st.ClientRevokedBefore.Equal(w) {
			t.Fatalf("CheckAccess at %v = %+v, %v; want revoked before %v", clock.now().Sub(t0), st, err, w)
		}
	}
	revoke(t0, time.Hour) // kept until t0+1h
	clock.set(t0.Add(30 * time.Minute))
	revoke(t0.Add(-time.Hour), 10*time.Minute) // does not shorten
	clock.set(t0.Add(59 * time.Minute))
	want(t0)
	revoke(t0.Add(time.Minute), 30*time.Minute) // moves forward, kept until t0+1h29
	clock.set(t0.Add(88 * time.Minute))
	store.Sweep(m)
	want(t0.Add(time.Minute))
	if n := store.ClientRevocations(m); n != 1 {
		t.Fatalf("%d client records, want 1", n)
	}
	clock.set(t0.Add(89 * time.Minute))
	store.Sweep(m)
	if n := store.ClientRevocations(m); n != 0 {
		t.Fatalf("after the sweep at its expiry: %d client records, want 0", n)
	}
	want(time.Time{})
	// Expired records are also ignored before any sweep, and a new
	// revocation after expiry starts afresh rather than keeping the old time.
	revoke(t0.Add(2*time.Minute), time.Minute)
	clock.set(t0.Add(90 * time.Minute))
	want(time.Time{})
	revoke(t0, time.Minute)
	want(t0)
}

// TestMemoryRefreshInfoExpiry: a refresh token is not found once the
// store's clock reaches its expiry.
func TestMemoryRefreshInfoExpiry(t *testing.T) {
	ctx := context.Background()
	m := store.NewMemory()
	defer m.Close()
	t0 := time.Now().Truncate(time.Millisecond)
	clock := &fakeClock{t: t0}
	store.SetClock(m, clock.now)
	err := m.CreateFamily(ctx, store.NewFamily{FamilyID: "f1", Digest: "d0", ClientID: "c1", IssuedAt: t0,
		ExpiresAt: t0.Add(time.Hour), FamilyExpiresAt: t0.Add(2 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	clock.set(t0.Add(time.Hour - time.Millisecond))
	if info, ok, err := m.RefreshInfo(ctx, "f1", "d0"); err != nil || !ok || !info.Active || !info.IssuedAt.Equal(t0) {
		t.Fatalf("RefreshInfo just before expiry = %+v, %v, %v", info, ok, err)
	}
	clock.set(t0.Add(time.Hour))
	if info, ok, err := m.RefreshInfo(ctx, "f1", "d0"); err != nil || ok {
		t.Fatalf("RefreshInfo at expiry = %+v, %v, %v; want not found", info, ok, err)
	}
}
