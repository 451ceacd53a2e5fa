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
	if ok, _ := m.AccessTokenRevoked(ctx, "j1"); ok {
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
