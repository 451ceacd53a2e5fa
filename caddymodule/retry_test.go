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
func TestRedisStoreNeverResends(t *testing.T) {
	if os.Getenv("REDIS_URL") != "" {
		t.Skip("blocks the Redis server for 1.5 s: only on a private one")
	}
	c, prefix := redistest.Start(t)
	addr := c.(*redis.Client).Options().Addr
	d, err := newRedisStore("redis://"+addr+"/0", prefix, store.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Destruct() })
	st := d.(pooledStore).Store
	ctx := context.Background()
	now := time.Now()
	rotate := func(family string) error {
		_, err := st.Rotate(ctx, store.RotateRequest{FamilyID: family, OldDigest: "d0", NewDigest: "d1", ClientID: "c",
			Sealed: []byte("s"), Now: now, ExpiresAt: now.Add(time.Hour), FamilyExpiresAt: now.Add(time.Hour)})
		return err
	}
	for _, family := range []string{"warm", "fam"} {
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

	// Keep the server busy for 1.5 s, beyond the client's 1 s read timeout.
	busy := make(chan error, 1)
	go func() {
		busy <- c.Eval(ctx, `local t = redis.call('TIME') local s = t[1] * 1000000 + t[2]
while true do t = redis.call('TIME') if t[1] * 1000000 + t[2] - s > 1500000 then return 1 end end`, nil).Err()
	}()
	time.Sleep(100 * time.Millisecond)
	if err := rotate("fam"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("rotation during the busy script: %v, want ErrUnavailable (read timeout)", err)
	}
	if err := <-busy; err != nil {
		t.Fatal(err)
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
