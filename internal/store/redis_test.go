package store_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"maps"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-moserver/caddy-moserver/internal/store"
	"github.com/caddy-moserver/caddy-moserver/internal/store/storetest"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/redistest"
)

func TestRedis(t *testing.T) {
	client, _ := redistest.Start(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		return store.NewRedis(client, redistest.Prefix(t))
	})
}

// TestRedisKeys checks the stored layout: key names, hash fields, that only
// digests are stored, and that every key expires.
func TestRedisKeys(t *testing.T) {
	ctx := context.Background()
	c, prefix := redistest.Start(t)
	s := store.NewRedis(c, prefix)
	now := time.Now().Truncate(time.Millisecond)
	ms := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).UnixMilli(), 10) }

	// Raw tokens exist only here; the store gets their digests.
	raw := []string{"rt_RAW0-never-stored", "rt_RAW1-never-stored", "rt_RAW2-never-stored"}
	var d []string
	for _, r := range raw {
		sum := sha256.Sum256([]byte(r))
		d = append(d, hex.EncodeToString(sum[:]))
	}
	const fid = "Fam-1_x"
	err := s.CreateFamily(ctx, store.NewFamily{
		FamilyID: fid, Digest: d[0], ClientID: "client-a", Subject: "alice", Scope: "read write",
		IssuedAt: now, ExpiresAt: now.Add(time.Hour), FamilyExpiresAt: now.Add(2 * time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	famKey := prefix + "{" + fid + "}:fam"
	rtKey := func(i int) string { return prefix + "{" + fid + "}:rt:" + d[i] }
	check := func(key string, want map[string]string, ttl time.Duration) {
		t.Helper()
		got, err := c.HGetAll(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(got, want) {
			t.Fatalf("HGETALL %s = %q, want %q", key, got, want)
		}
		pttl, err := c.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		// Expiries are absolute (PEXPIREAT from the request times), so the
		// remaining TTL is a bit below the lifetime.
		if pttl <= 0 || pttl > ttl || pttl < ttl-time.Minute {
			t.Fatalf("PTTL %s = %v, want just under %v", key, pttl, ttl)
		}
	}
	check(famKey, map[string]string{"client": "client-a", "revoked": "0", "current": d[0], "exp": ms(2 * time.Hour)}, 2*time.Hour)
	check(rtKey(0), map[string]string{"client": "client-a", "subject": "alice", "scope": "read write",
		"exp": ms(time.Hour), "state": "active"}, time.Hour)

	sealed := "\x00\xffsealed\r\n"
	rotate := func(old, new int, famLife time.Duration) {
		t.Helper()
		res, err := s.Rotate(ctx, store.RotateRequest{
			FamilyID: fid, OldDigest: d[old], NewDigest: d[new], ClientID: "client-a", Scope: "read",
			Sealed: []byte(sealed), Now: now, ExpiresAt: now.Add(time.Hour), FamilyExpiresAt: now.Add(famLife),
		})
		if err != nil || res.Outcome != store.Rotated {
			t.Fatalf("Rotate = %v, %v", res.Outcome, err)
		}
	}
	rotate(0, 1, 3*time.Hour) // extends the family
	check(famKey, map[string]string{"client": "client-a", "revoked": "0", "current": d[1], "exp": ms(3 * time.Hour)}, 3*time.Hour)
	check(rtKey(0), map[string]string{"client": "client-a", "subject": "alice", "scope": "read write",
		"exp": ms(time.Hour), "state": "rotated", "next": d[1], "rotated_at": ms(0), "sealed": sealed,
		"next_scope": "read", "next_exp": ms(time.Hour)}, time.Hour)
	check(rtKey(1), map[string]string{"client": "client-a", "subject": "alice", "scope": "read",
		"exp": ms(time.Hour), "state": "active"}, time.Hour)
	rotate(1, 2, 90*time.Minute) // must not shorten the family
	check(famKey, map[string]string{"client": "client-a", "revoked": "0", "current": d[2], "exp": ms(3 * time.Hour)}, 3*time.Hour)

	if out, err := s.RevokeRefresh(ctx, fid, d[2], "client-a"); err != nil || out != store.FamilyRevokedNow {
		t.Fatalf("RevokeRefresh = %v, %v", out, err)
	}
	check(famKey, map[string]string{"client": "client-a", "revoked": "1", "current": d[2], "exp": ms(3 * time.Hour)}, 3*time.Hour)

	if err := s.RevokeAccessToken(ctx, "jti-1", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	jtiKey := prefix + "jti:{jti-1}"
	if pttl := c.PTTL(ctx, jtiKey).Val(); pttl <= 0 || pttl > time.Hour {
		t.Fatalf("PTTL %s = %v", jtiKey, pttl)
	}

	keys := []string{famKey, rtKey(0), rtKey(1), rtKey(2), jtiKey}
	var stored strings.Builder
	for _, k := range keys {
		stored.WriteString(k)
		for f, v := range c.HGetAll(ctx, k).Val() {
			stored.WriteString(f + v)
		}
	}
	for _, r := range raw {
		if strings.Contains(stored.String(), r) || strings.Contains(stored.String(), "RAW") {
			t.Fatalf("raw token %q found in stored keys or values", r)
		}
	}
	// On a private server these are all the keys there are.
	if os.Getenv("REDIS_URL") == "" {
		if n := c.DBSize(ctx).Val(); n != int64(len(keys)) {
			t.Fatalf("DBSIZE = %d, want %d", n, len(keys))
		}
	}
}

// TestRedisUnavailable checks that an unreachable server or a cancelled
// context yields ErrUnavailable with its cause, and that the store works
// again once the server is back (with an empty script cache).
func TestRedisUnavailable(t *testing.T) {
	srv := redistest.StartServer(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialerRetries: 1,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond})
	defer c.Close()
	s := store.NewRedis(c, "p:")
	now := time.Now()
	nf := store.NewFamily{FamilyID: "f", Digest: "d0", ClientID: "c", ExpiresAt: now.Add(time.Hour), FamilyExpiresAt: now.Add(time.Hour)}
	rr := store.RotateRequest{FamilyID: "f", OldDigest: "d0", NewDigest: "d1", ClientID: "c", Now: now, ExpiresAt: now.Add(time.Hour)}
	calls := map[string]func(ctx context.Context) error{
		"CreateFamily": func(ctx context.Context) error { return s.CreateFamily(ctx, nf) },
		"Rotate":       func(ctx context.Context) error { _, err := s.Rotate(ctx, rr); return err },
		"RevokeRefresh": func(ctx context.Context) error {
			_, err := s.RevokeRefresh(ctx, "f", "d0", "c")
			return err
		},
		"RevokeFamily":  func(ctx context.Context) error { return s.RevokeFamily(ctx, "f") },
		"FamilyRevoked": func(ctx context.Context) error { _, err := s.FamilyRevoked(ctx, "f"); return err },
		"RevokeAccessToken": func(ctx context.Context) error {
			return s.RevokeAccessToken(ctx, "j", now.Add(time.Hour))
		},
		"AccessTokenRevoked": func(ctx context.Context) error { _, err := s.AccessTokenRevoked(ctx, "j"); return err },
	}

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for name, call := range calls {
		if err := call(cancelled); !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: err = %v, want ErrUnavailable wrapping context.Canceled", name, err)
		}
	}

	srv.Stop()
	for name, call := range calls {
		err := call(context.Background())
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s with the server down: err = %v, want ErrUnavailable", name, err)
		} else if !strings.Contains(err.Error(), ": ") || err.Error() == store.ErrUnavailable.Error() {
			t.Errorf("%s: err = %q hides its cause", name, err)
		}
	}

	srv.Restart()
	if err := s.CreateFamily(context.Background(), nf); err != nil {
		t.Fatalf("CreateFamily after restart: %v", err)
	}
	if res, err := s.Rotate(context.Background(), rr); err != nil || res.Outcome != store.Rotated {
		t.Fatalf("Rotate after restart = %v, %v", res.Outcome, err)
	}
}
