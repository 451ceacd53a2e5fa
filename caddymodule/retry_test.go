package caddymodule

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/caddy-moserver/caddy-moserver/internal/store"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/redistest"
	"github.com/redis/go-redis/v9"
)

// TestRedisStoreNeverResends: a rotation whose reply is lost to the read
// timeout (the server is busy for longer) is not sent again by the store's
// client: the caller gets ErrUnavailable (a 503), and the rotation runs
// once when the server is free. A resent rotation could run twice (when
// the first send reached the server and only its reply was lost), and the
// second run, finding its token spent, would revoke the family as a replay.
// With go-redis retries on, this test fails: the resend answers Rotated.
// A caller with a shorter deadline is answered at it, and its abandoned
// rotation is never run as a replay either.
func TestRedisStoreNeverResends(t *testing.T) {
	if os.Getenv("REDIS_URL") != "" {
		t.Skip("blocks the Redis server for 2.5 s: only on a private one")
	}
	c, prefix := redistest.Start(t)
	addr := c.(*redis.Client).Options().Addr
	st := newModuleRedisStore(t, "redis://"+addr+"/0", prefix)
	// A second instance, for a caller with a short deadline.
	st2 := newModuleRedisStore(t, "redis://"+addr+"/0", prefix)
	ctx := context.Background()
	now := time.Now()
	rotateIn := func(ctx context.Context, st store.Store, family string) error {
		_, err := st.Rotate(ctx, store.RotateRequest{FamilyID: family, OldDigest: "d0", NewDigest: "d1", ClientID: "c",
			Sealed: []byte("s"), Now: now, ExpiresAt: now.Add(time.Hour), FamilyExpiresAt: now.Add(time.Hour)})
		return err
	}
	rotate := func(family string) error { return rotateIn(ctx, st, family) }
	for _, family := range []string{"warm", "fam", "short"} {
		if err := st.CreateFamily(ctx, store.NewFamily{FamilyID: family, Digest: "d0", ClientID: "c",
			IssuedAt: now, ExpiresAt: now.Add(time.Hour), FamilyExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	// Load the rotation script on the server first, so that the rotation
	// below is the script itself, not a NOSCRIPT answer.
	if err := rotate("warm"); err != nil {
		t.Fatal(err)
	}

	// Keep the server busy for 2.5 s, well beyond the client's 1 s read
	// timeout.
	busy := make(chan error, 1)
	go func() {
		busy <- c.Eval(ctx, `local t = redis.call('TIME') local s = t[1] * 1000000 + t[2]
while true do t = redis.call('TIME') if t[1] * 1000000 + t[2] - s > 2500000 then return 1 end end`, nil).Err()
	}()
	time.Sleep(100 * time.Millisecond)
	// A caller whose own deadline comes first is answered then, at the
	// other instance, while its commands are still in flight.
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err := rotateIn(short, st2, "short")
	cancel()
	if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("rotation with a 200 ms deadline during the busy script: %v, want ErrUnavailable (deadline exceeded)", err)
	}
	if err := rotate("fam"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("rotation during the busy script: %v, want ErrUnavailable (read timeout)", err)
	}
	if err := <-busy; err != nil {
		t.Fatal(err)
	}

	// The abandoned rotation ran at most once: never as a replay.
	if revoked, err := st.FamilyRevoked(ctx, "short"); err != nil || revoked {
		t.Fatalf("family of the abandoned rotation revoked = %v, %v; want false", revoked, err)
	}
	if info, ok, err := st.RefreshInfo(ctx, "short", "d1"); err != nil || ok && !info.Active {
		t.Fatalf("successor of the abandoned rotation: %+v, %v, %v; want absent or active", info, ok, err)
	}

	// The rotation ran once, after the script: its successor is active and
	// the family is not revoked.
	deadline := time.Now().Add(5 * time.Second)
	for {
		info, ok, err := st.RefreshInfo(ctx, "fam", "d1")
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			if !info.Active {
				t.Fatalf("the successor is not active (%+v): the rotation ran twice and revoked its family", info)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the rotation never ran")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if revoked, err := st.FamilyRevoked(ctx, "fam"); err != nil || revoked {
		t.Fatalf("family revoked = %v, %v; want false", revoked, err)
	}
}

// newModuleRedisStore is a store with the client the redis storage module
// makes (its fail-fast settings), not shared with any other.
func newModuleRedisStore(t *testing.T, rawURL, prefix string) store.Store {
	t.Helper()
	client, _, err := store.NewRedisClient(store.KindRedis, rawURL, store.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	st, err := store.NewRedisWithOptions(client, prefix, store.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}
