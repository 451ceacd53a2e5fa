package store_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
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
	check(famKey, map[string]string{"client": "client-a", "revoked": "0", "current": d[0], "exp": ms(2 * time.Hour),
		"created": ms(0)}, 2*time.Hour)
	check(rtKey(0), map[string]string{"client": "client-a", "subject": "alice", "scope": "read write",
		"exp": ms(time.Hour), "state": "active"}, time.Hour)
	// The client's family index: one member per family, "<15-digit
	// created ms>:<id>", score 0, expiring with its latest family.
	indexKey := prefix + "client:{client-a}:fams"
	checkIndex := func(ttl time.Duration) {
		t.Helper()
		want := []redis.Z{{Score: 0, Member: fmt.Sprintf("%015d:%s", now.UnixMilli(), fid)}}
		if got := c.ZRangeWithScores(ctx, indexKey, 0, -1).Val(); !slices.Equal(got, want) {
			t.Fatalf("ZRANGE %s = %v, want %v", indexKey, got, want)
		}
		if pttl := c.PTTL(ctx, indexKey).Val(); pttl <= 0 || pttl > ttl || pttl < ttl-time.Minute {
			t.Fatalf("PTTL %s = %v, want just under %v", indexKey, pttl, ttl)
		}
	}
	checkIndex(2 * time.Hour)

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
	rotate(0, 1, 3*time.Hour) // extends the family and its index
	checkIndex(3 * time.Hour)
	check(famKey, map[string]string{"client": "client-a", "revoked": "0", "current": d[1], "exp": ms(3 * time.Hour),
		"created": ms(0)}, 3*time.Hour)
	check(rtKey(0), map[string]string{"client": "client-a", "subject": "alice", "scope": "read write",
		"exp": ms(time.Hour), "state": "rotated", "next": d[1], "rotated_at": ms(0), "sealed": sealed,
		"next_scope": "read", "next_exp": ms(time.Hour)}, time.Hour)
	check(rtKey(1), map[string]string{"client": "client-a", "subject": "alice", "scope": "read",
		"exp": ms(time.Hour), "state": "active"}, time.Hour)
	rotate(1, 2, 90*time.Minute) // must not shorten the family or the index
	checkIndex(3 * time.Hour)
	check(famKey, map[string]string{"client": "client-a", "revoked": "0", "current": d[2], "exp": ms(3 * time.Hour),
		"created": ms(0)}, 3*time.Hour)

	if out, err := s.RevokeRefresh(ctx, fid, d[2], "client-a"); err != nil || out != store.FamilyRevokedNow {
		t.Fatalf("RevokeRefresh = %v, %v", out, err)
	}
	check(famKey, map[string]string{"client": "client-a", "revoked": "1", "current": d[2], "exp": ms(3 * time.Hour),
		"created": ms(0)}, 3*time.Hour)

	if err := s.RevokeAccessToken(ctx, "jti-1", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	jtiKey := prefix + "jti:{jti-1}"
	if pttl := c.PTTL(ctx, jtiKey).Val(); pttl <= 0 || pttl > time.Hour {
		t.Fatalf("PTTL %s = %v", jtiKey, pttl)
	}

	// A client's revoked-before time: a string of Unix ms, kept for the
	// longest keep asked for, never moved back.
	clientKey := prefix + "client:{client-a}:rb"
	checkClient := func(want string, ttl time.Duration) {
		t.Helper()
		if v := c.Get(ctx, clientKey).Val(); v != want {
			t.Fatalf("GET %s = %q, want %q", clientKey, v, want)
		}
		if pttl := c.PTTL(ctx, clientKey).Val(); pttl <= 0 || pttl > ttl || pttl < ttl-time.Minute {
			t.Fatalf("PTTL %s = %v, want just under %v", clientKey, pttl, ttl)
		}
	}
	revokeClient := func(before time.Time, keep time.Duration) {
		t.Helper()
		if err := s.RevokeClient(ctx, "client-a", before, keep); err != nil {
			t.Fatal(err)
		}
	}
	revokeClient(now, time.Hour)
	checkClient(ms(0), time.Hour)
	revokeClient(now.Add(-time.Minute), 2*time.Hour) // extends, keeps the time
	checkClient(ms(0), 2*time.Hour)
	revokeClient(now.Add(time.Minute), 10*time.Minute) // moves the time, keeps the TTL
	checkClient(ms(time.Minute), 2*time.Hour)

	keys := []string{famKey, rtKey(0), rtKey(1), rtKey(2), jtiKey, clientKey, indexKey}
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
		"CheckAccess": func(ctx context.Context) error {
			_, err := s.CheckAccess(ctx, "j", "f", "c")
			return err
		},
		"CheckAccessNoFamily": func(ctx context.Context) error {
			_, err := s.CheckAccess(ctx, "j", "", "c")
			return err
		},
		"RevokeClient": func(ctx context.Context) error { return s.RevokeClient(ctx, "c", now, time.Hour) },
		"RefreshInfo": func(ctx context.Context) error {
			_, _, err := s.RefreshInfo(ctx, "f", "d0")
			return err
		},
		"CodeBinding": func(ctx context.Context) error { _, err := s.CodeBinding(ctx, "d"); return err },
		"PutCodeBinding": func(ctx context.Context) error {
			return s.PutCodeBinding(ctx, "d", store.CodeBinding{ClientID: "c"}, time.Minute)
		},
		"Redemptions": func(ctx context.Context) error { _, err := s.Redemptions(ctx, "d"); return err },
		"AddRedemption": func(ctx context.Context) error {
			return s.AddRedemption(ctx, "d", store.Redemption{FamilyID: "f"}, time.Minute)
		},
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

// TestRedisLegacyFamily: families written before the creation time was
// stored (no created field) count as created at 0.
func TestRedisLegacyFamily(t *testing.T) {
	c, prefix := redistest.Start(t)
	testLegacyFamily(t, c, prefix)
}

func testLegacyFamily(t *testing.T, c redis.UniversalClient, prefix string) {
	ctx := context.Background()
	s := store.NewRedis(c, prefix)
	now := time.Now().Truncate(time.Millisecond)
	id, d0, d1 := randomHex(), randomHex(), randomHex()
	err := s.CreateFamily(ctx, store.NewFamily{
		FamilyID: id, Digest: d0, ClientID: "c1", Subject: "alice", Scope: "read",
		IssuedAt: now, ExpiresAt: now.Add(time.Hour), FamilyExpiresAt: now.Add(2 * time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	famKey := prefix + "{" + id + "}:fam"
	if n := c.HDel(ctx, famKey, "created").Val(); n != 1 {
		t.Fatalf("HDEL created = %d, want 1", n)
	}
	before := c.HGetAll(ctx, famKey).Val()

	info, ok, err := s.RefreshInfo(ctx, id, d0)
	if err != nil || !ok || !info.IssuedAt.IsZero() || !info.Active || info.Subject != "alice" {
		t.Fatalf("RefreshInfo(legacy) = %+v, %v, %v; want found, active, zero IssuedAt", info, ok, err)
	}
	req := store.RotateRequest{FamilyID: id, OldDigest: d0, NewDigest: d1, ClientID: "c1",
		Now: now, ExpiresAt: now.Add(time.Hour), FamilyExpiresAt: now.Add(2 * time.Hour),
		NotBefore: time.UnixMilli(1)}
	if res, err := s.Rotate(ctx, req); err != nil || res.Outcome != store.FamilyRevoked {
		t.Fatalf("Rotate(legacy, NotBefore) = %v, %v; want family_revoked", res.Outcome, err)
	}
	if after := c.HGetAll(ctx, famKey).Val(); !maps.Equal(after, before) {
		t.Fatalf("family record changed by a refused rotation: %q, was %q", after, before)
	}
	req.NotBefore = time.Time{}
	if res, err := s.Rotate(ctx, req); err != nil || res.Outcome != store.Rotated {
		t.Fatalf("Rotate(legacy) = %v, %v; want rotated", res.Outcome, err)
	}
	if info, ok, err := s.RefreshInfo(ctx, id, d1); err != nil || !ok || !info.IssuedAt.IsZero() || !info.Active {
		t.Fatalf("RefreshInfo(legacy successor) = %+v, %v, %v", info, ok, err)
	}
	if c.HExists(ctx, famKey, "created").Val() {
		t.Fatal("rotation added a creation time to a legacy family")
	}
}

// cmdLog records, through a go-redis hook, the commands this store sends
// (not connection setup nor cluster topology queries): one entry per
// exchange with a server, single command or pipeline.
type cmdLog struct {
	mu        sync.Mutex
	exchanges []string // "<addr> <cmd> <cmd> ..."
}

// ours reports whether a command is one the store sends.
func ours(cmd redis.Cmder) bool {
	switch cmd.Name() {
	case "hello", "auth", "client", "select", "cluster", "readonly", "ping", "command":
		return false
	}
	return true
}

func (l *cmdLog) record(addr string, cmds []redis.Cmder) {
	var names []string
	for _, c := range cmds {
		if ours(c) {
			names = append(names, c.Name())
		}
	}
	if len(names) > 0 {
		l.mu.Lock()
		l.exchanges = append(l.exchanges, addr+" "+strings.Join(names, " "))
		l.mu.Unlock()
	}
}

// take returns the exchanges recorded since the last take, sorted.
func (l *cmdLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	ex := l.exchanges
	l.exchanges = nil
	slices.Sort(ex)
	return ex
}

// hook returns a hook recording into l as the server at addr.
func (l *cmdLog) hook(addr string) redis.Hook { return logHook{l, addr} }

type logHook struct {
	l    *cmdLog
	addr string
}

func (h logHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h logHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.l.record(h.addr, []redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}

func (h logHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.l.record(h.addr, cmds)
		return next(ctx, cmds)
	}
}

// TestRedisRoundTrips checks that CheckAccess and RefreshInfo are each one
// exchange with the server.
func TestRedisRoundTrips(t *testing.T) {
	ctx := context.Background()
	c, prefix := redistest.Start(t)
	s := store.NewRedis(c, prefix)
	var log cmdLog
	c.AddHook(log.hook("redis"))
	now := time.Now().Truncate(time.Millisecond)
	id, d := randomHex(), randomHex()
	err := s.CreateFamily(ctx, store.NewFamily{FamilyID: id, Digest: d, ClientID: "c1", IssuedAt: now,
		ExpiresAt: now.Add(time.Hour), FamilyExpiresAt: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	log.take()
	for _, tc := range []struct {
		name string
		call func() error
		want []string
	}{
		{"CheckAccess", func() error { _, err := s.CheckAccess(ctx, "j", id, "c1"); return err },
			[]string{"redis exists hget get"}},
		{"CheckAccess without family", func() error { _, err := s.CheckAccess(ctx, "j", "", "c1"); return err },
			[]string{"redis exists get"}},
		{"RefreshInfo", func() error { _, _, err := s.RefreshInfo(ctx, id, d); return err },
			[]string{"redis multi hmget hmget exec"}},
	} {
		// The autopipeliner's worker may wake between two submissions of
		// one call and flush the first alone when the machine is busy: the
		// commands must always be the call's, and one exchange must be
		// what a call takes when nothing delays it.
		var sent [][]string
		for range 10 {
			if err := tc.call(); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			got := log.take()
			if strings.Join(got, " ") != strings.Join(tc.want, " ") && strings.ReplaceAll(strings.Join(got, " "), " redis", "") != strings.Join(tc.want, " ") {
				t.Fatalf("%s sent %q, want the commands %q", tc.name, got, tc.want)
			}
			if sent = append(sent, got); slices.Equal(got, tc.want) {
				break
			}
		}
		if !slices.Equal(sent[len(sent)-1], tc.want) {
			t.Errorf("%s sent %q in 10 tries, want %q (one exchange)", tc.name, sent, tc.want)
		}
	}
}

// TestRedisConcurrentRotationsShareRoundTrips checks that rotations made at
// the same time share their exchanges with the server (the autopipeliner),
// each still rotating its own family once, and that a call on its own is
// still one exchange of its own commands.
func TestRedisConcurrentRotationsShareRoundTrips(t *testing.T) {
	ctx := context.Background()
	c, prefix := redistest.Start(t)
	s := store.NewRedis(c, prefix)
	const n = 200
	now := time.Now().Truncate(time.Millisecond)
	ids, digests := make([]string, n), make([]string, n)
	for i := range n {
		ids[i], digests[i] = randomHex(), randomHex()
		err := s.CreateFamily(ctx, store.NewFamily{FamilyID: ids[i], Digest: digests[i], ClientID: "c1",
			IssuedAt: now, ExpiresAt: now.Add(time.Hour), FamilyExpiresAt: now.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
	}
	rotate := func(i int) (store.RotateResult, error) {
		return s.Rotate(ctx, store.RotateRequest{FamilyID: ids[i], OldDigest: digests[i], NewDigest: digests[i] + "n",
			ClientID: "c1", Sealed: []byte("sealed"), Now: now, ExpiresAt: now.Add(time.Hour),
			FamilyExpiresAt: now.Add(time.Hour)})
	}
	// The first rotation on a server sends the script itself (NOSCRIPT).
	if res, err := rotate(0); err != nil || res.Outcome != store.Rotated {
		t.Fatalf("first rotation: %v, %v", res.Outcome, err)
	}
	var log cmdLog
	c.AddHook(log.hook("redis"))
	if res, err := rotate(1); err != nil || res.Outcome != store.Rotated {
		t.Fatalf("lone rotation: %v, %v", res.Outcome, err)
	}
	if got, want := log.take(), []string{"redis evalsha get pexpireat"}; !slices.Equal(got, want) {
		t.Fatalf("a lone rotation sent %q, want %q", got, want)
	}

	start := make(chan struct{})
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := 2; i < n; i++ {
		wg.Go(func() {
			<-start
			res, err := rotate(i)
			if err == nil && res.Outcome != store.Rotated {
				err = fmt.Errorf("family %d: %v", i, res.Outcome)
			}
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	exchanges := log.take()
	commands := 0
	for _, ex := range exchanges {
		commands += len(strings.Fields(ex)) - 1
	}
	if commands != 3*(n-2) {
		t.Fatalf("%d rotations sent %d commands, want %d", n-2, commands, 3*(n-2))
	}
	if len(exchanges) >= n-2 {
		t.Errorf("%d concurrent rotations took %d exchanges with Redis; want them to share exchanges", n-2, len(exchanges))
	}
	t.Logf("%d concurrent rotations: %d exchanges", n-2, len(exchanges))
}
