package store_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-moserver/caddy-moserver/internal/store"
	"github.com/caddy-moserver/caddy-moserver/internal/store/storetest"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/redistest"
)

// Replica acknowledgements (RedisOptions.MinReplicasAck, Redis WAIT) and
// what they keep through a Sentinel failover. Each test runs its own
// primary, replica and Sentinel (redistest.StartSentinel).

// testAckTimeout is the WAIT timeout of these tests; shorter than the
// default so that refused changes do not slow the tests down.
const testAckTimeout = 300 * time.Millisecond

// failoverClient returns a client of the Sentinel's primary with the
// fail-fast settings of the Caddy module (see caddymodule/pool.go) and a
// read timeout that covers the WAIT. It is closed in t.Cleanup.
func failoverClient(t *testing.T, s *redistest.Sentinel) *redis.Client {
	o := s.FailoverOptions()
	o.DialTimeout = 500 * time.Millisecond
	o.DialerRetries = 1
	o.MaxRetries = 1
	o.ReadTimeout = time.Second + testAckTimeout
	o.WriteTimeout = time.Second
	c := redis.NewFailoverClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// ackStore returns a store on c that waits for one replica.
func ackStore(t *testing.T, c redis.UniversalClient, prefix string) *store.Redis {
	t.Helper()
	s, err := store.NewRedisWithOptions(c, prefix, store.RedisOptions{MinReplicasAck: 1, AckTimeout: testAckTimeout})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestNewRedisWithOptions: what NewRedisWithOptions refuses.
func TestNewRedisWithOptions(t *testing.T) {
	single := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ReadTimeout: time.Second})
	defer single.Close()
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	defer cluster.Close()
	for _, tc := range []struct {
		name string
		c    redis.UniversalClient
		o    store.RedisOptions
		ok   bool
	}{
		{"zero", single, store.RedisOptions{}, true},
		{"zero on a cluster", cluster, store.RedisOptions{}, true},
		{"ack", single, store.RedisOptions{MinReplicasAck: 1}, true},
		{"ack with timeout", single, store.RedisOptions{MinReplicasAck: 2, AckTimeout: 750 * time.Millisecond}, true},
		{"negative", single, store.RedisOptions{MinReplicasAck: -1}, false},
		{"negative timeout", single, store.RedisOptions{MinReplicasAck: 1, AckTimeout: -time.Second}, false},
		// WAIT would reach a random master, not the one that wrote.
		{"cluster", cluster, store.RedisOptions{MinReplicasAck: 1}, false},
		// The reply of a WAIT that times out would not be read in time.
		{"read timeout too short", single, store.RedisOptions{MinReplicasAck: 1, AckTimeout: 900 * time.Millisecond}, false},
	} {
		_, err := store.NewRedisWithOptions(tc.c, "p:", tc.o)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

// TestRedisSentinelConformance runs the whole conformance suite on a
// Sentinel-managed primary through a failover client, with every change
// acknowledged by the replica: waiting changes no outcome.
func TestRedisSentinelConformance(t *testing.T) {
	t.Parallel()
	c := failoverClient(t, redistest.StartSentinel(t))
	storetest.Run(t, func(t *testing.T) store.Store {
		return ackStore(t, c, redistest.Prefix(t))
	})
}

// TestRedisReplicaAck: with a replica that acknowledges nothing (stopped
// with SIGSTOP, still connected), every change fails with ErrUnavailable
// and ErrNotReplicated although the primary made it, reads and outcomes
// that change nothing still answer, and once the replica is back a grace
// retry hands out the successor of the refused rotation, while a strict
// retry is a replay. A grace retry and a repeated client revocation write
// even though they change nothing, so that their WAIT covers the original
// change also on another connection (here: another client).
func TestRedisReplicaAck(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := redistest.StartSentinel(t)
	prefix := redistest.Prefix(t)
	ca, cb := failoverClient(t, s), failoverClient(t, s)
	a, b := ackStore(t, ca, prefix), ackStore(t, cb, prefix)
	now := time.Now().Truncate(time.Millisecond)
	create := func(id string) {
		t.Helper()
		if err := a.CreateFamily(ctx, store.NewFamily{FamilyID: id, Digest: id + "-0", ClientID: "c", IssuedAt: now,
			ExpiresAt: now.Add(time.Hour), FamilyExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatalf("CreateFamily %s: %v", id, err)
		}
	}
	rotate := func(st *store.Redis, id, from, to string, grace time.Duration) (store.RotateResult, error) {
		return st.Rotate(ctx, store.RotateRequest{FamilyID: id, OldDigest: from, NewDigest: to, ClientID: "c",
			Sealed: []byte("sealed " + to), Now: now, ExpiresAt: now.Add(time.Hour), FamilyExpiresAt: now.Add(time.Hour),
			Grace: grace})
	}
	for _, id := range []string{"warm", "f", "e", "r", "k", "h"} {
		create(id)
	}
	if res, err := rotate(a, "r", "r-0", "r-1", 0); err != nil || res.Outcome != store.Rotated {
		t.Fatalf("Rotate r = %v, %v", res.Outcome, err)
	}

	// Healthy: each change is one exchange, its script (or SET) and WAIT.
	var log cmdLog
	ca.AddHook(log.hook("primary"))
	changes := []struct {
		name string
		call func() error
		want string
	}{
		{"CreateFamily", func() error {
			return a.CreateFamily(ctx, store.NewFamily{FamilyID: "n", Digest: "n-0", ClientID: "c", ExpiresAt: now.Add(time.Hour)})
		}, "primary evalsha wait"},
		{"Rotate", func() error { _, err := rotate(a, "warm", "warm-0", "warm-1", 0); return err }, "primary evalsha wait"},
		{"RevokeRefresh", func() error { _, err := a.RevokeRefresh(ctx, "n", "n-0", "c"); return err }, "primary evalsha wait"},
		{"RevokeFamily", func() error { return a.RevokeFamily(ctx, "warm") }, "primary evalsha wait"},
		{"RevokeClient", func() error { return a.RevokeClient(ctx, "rc", now, time.Hour) }, "primary evalsha wait"},
		{"RevokeAccessToken", func() error { return a.RevokeAccessToken(ctx, "j", now.Add(time.Hour)) }, "primary set wait"},
	}
	for _, ch := range changes {
		if err := ch.call(); err != nil { // the first call may load the script
			t.Fatalf("%s: %v", ch.name, err)
		}
	}
	log.take()
	if err := changes[4].call(); err != nil {
		t.Fatal(err)
	}
	if got := log.take(); !slices.Equal(got, []string{changes[4].want}) {
		t.Errorf("RevokeClient sent %q, want %q", got, changes[4].want)
	}
	if err := changes[5].call(); err != nil {
		t.Fatal(err)
	}
	if got := log.take(); !slices.Equal(got, []string{changes[5].want}) {
		t.Errorf("RevokeAccessToken sent %q, want %q", got, changes[5].want)
	}

	s.PauseReplica()
	paused := true
	defer func() {
		if paused {
			s.ResumeReplica()
		}
	}()
	refused := func(name string, call func() error) {
		t.Helper()
		start := time.Now()
		err := call()
		if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, store.ErrNotReplicated) {
			t.Errorf("%s with the replica stopped: err = %v, want ErrUnavailable and ErrNotReplicated", name, err)
		}
		if d := time.Since(start); d > testAckTimeout+time.Second {
			t.Errorf("%s took %v", name, d)
		}
	}
	refused("CreateFamily", func() error {
		return a.CreateFamily(ctx, store.NewFamily{FamilyID: "g", Digest: "g-0", ClientID: "c", ExpiresAt: now.Add(time.Hour)})
	})
	refused("Rotate", func() error { _, err := rotate(a, "f", "f-0", "f-1", time.Minute); return err })
	refused("Rotate strict", func() error { _, err := rotate(a, "e", "e-0", "e-1", 0); return err })
	refused("Rotate replayed", func() error { _, err := rotate(a, "r", "r-0", "r-x", 0); return err })
	refused("RevokeRefresh", func() error { _, err := a.RevokeRefresh(ctx, "h", "h-0", "c"); return err })
	refused("RevokeFamily", func() error { return a.RevokeFamily(ctx, "k") })
	refused("RevokeAccessToken", func() error { return a.RevokeAccessToken(ctx, "j2", now.Add(time.Hour)) })
	refused("RevokeClient", func() error { return a.RevokeClient(ctx, "rc", now.Add(time.Second), time.Hour) })
	// The same calls through b, whose connections never wrote (a WAIT
	// there alone would count the stopped replica at once): they change
	// nothing, yet must not confirm what a did.
	refused("grace retry on another connection", func() error { _, err := rotate(b, "f", "f-0", "f-2", time.Minute); return err })
	refused("repeated RevokeClient on another connection", func() error {
		return b.RevokeClient(ctx, "rc", now.Add(time.Second), time.Hour)
	})

	// The primary did make the refused changes.
	if info, ok, err := b.RefreshInfo(ctx, "f", "f-1"); err != nil || !ok || !info.Active {
		t.Errorf("the refused rotation's successor on the primary: %+v, %v, %v", info, ok, err)
	}
	// Reads, and outcomes that change nothing, answer.
	for name, call := range map[string]func() error{
		"FamilyRevoked": func() error {
			if r, err := b.FamilyRevoked(ctx, "k"); err != nil || !r {
				return errors.Join(err, errors.New("family k not revoked"))
			}
			return nil
		},
		"CheckAccess": func() error { _, err := b.CheckAccess(ctx, "j2", "k", "c"); return err },
		"RefreshInfo": func() error { _, _, err := b.RefreshInfo(ctx, "e", "e-0"); return err },
		"Rotate unknown": func() error {
			res, err := rotate(b, "nope", "nope-0", "nope-1", 0)
			if err == nil && res.Outcome != store.NotFound {
				err = errors.New(res.Outcome.String())
			}
			return err
		},
		"Rotate revoked": func() error {
			res, err := rotate(b, "k", "k-0", "k-1", 0)
			if err == nil && res.Outcome != store.FamilyRevoked {
				err = errors.New(res.Outcome.String())
			}
			return err
		},
		"RevokeRefresh unknown": func() error { _, err := b.RevokeRefresh(ctx, "nope", "nope-0", "c"); return err },
	} {
		if err := call(); err != nil {
			t.Errorf("%s with the replica stopped: %v", name, err)
		}
	}

	s.ResumeReplica()
	paused = false
	// The client that got 503 retries with the same token: within the
	// grace period it gets the successor the refused rotation stored, now
	// acknowledged; without grace the retry is a replay.
	res, err := rotate(b, "f", "f-0", "f-3", time.Minute)
	if err != nil || res.Outcome != store.GraceRetry || string(res.Sealed) != "sealed f-1" {
		t.Errorf("grace retry after the replica is back = %v %q, %v; want grace_retry with the refused successor",
			res.Outcome, res.Sealed, err)
	}
	if res, err := rotate(b, "e", "e-0", "e-2", 0); err != nil || res.Outcome != store.Replayed {
		t.Errorf("strict retry after the replica is back = %v, %v; want replayed", res.Outcome, err)
	}
	if err := b.RevokeClient(ctx, "rc", now.Add(time.Second), time.Hour); err != nil {
		t.Errorf("repeated RevokeClient after the replica is back: %v", err)
	}
}

// family is what the load of TestRedisFailoverKeepsAcknowledged knows
// about one family.
type family struct {
	id        string
	prev, cur string // acknowledged: the spent predecessor ("" if none) and the current token
	revoked   bool   // a revocation was acknowledged
	// pending names a change that failed, after which the family is left
	// alone: "create", "rotate" (to tried) or "revoke". The primary may or
	// may not have made it, and may or may not have replicated it.
	pending, tried string
}

// workerModel is what one load worker had acknowledged.
type workerModel struct {
	fams         []*family
	jtis         []string  // revoked access tokens
	client       string    // the client RevokeClient was called for
	clientBefore time.Time // its last acknowledged revoked-before time
	rotations    int
	revocations  int
	failures     int
}

// runWorker changes random families through st until stop, recording every
// acknowledged result and leaving alone what a failed call touched.
func runWorker(t *testing.T, st store.Store, w int, rng *rand.Rand, stop *atomic.Bool) *workerModel {
	m := &workerModel{client: "rc" + randomHex()}
	var live []*family // acknowledged, not revoked, nothing pending
	failed := func(err error) bool {
		if err == nil {
			return false
		}
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("worker %d: %v does not wrap ErrUnavailable", w, err)
		}
		m.failures++
		time.Sleep(10 * time.Millisecond)
		return true
	}
	drop := func(i int) { live[i] = live[len(live)-1]; live = live[:len(live)-1] }
	for !stop.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		now := time.Now()
		p := rng.IntN(100)
		switch {
		case len(live) < 40 && p < 20 || len(live) == 0:
			f := &family{id: randomHex(), cur: randomHex()}
			m.fams = append(m.fams, f)
			err := st.CreateFamily(ctx, store.NewFamily{FamilyID: f.id, Digest: f.cur, ClientID: "c", IssuedAt: now,
				ExpiresAt: now.Add(time.Hour), FamilyExpiresAt: now.Add(2 * time.Hour)})
			if failed(err) {
				f.pending = "create"
			} else {
				live = append(live, f)
			}
		case p < 86:
			i := rng.IntN(len(live))
			f, next := live[i], randomHex()
			res, err := st.Rotate(ctx, store.RotateRequest{FamilyID: f.id, OldDigest: f.cur, NewDigest: next, ClientID: "c",
				Now: now, ExpiresAt: now.Add(time.Hour), FamilyExpiresAt: now.Add(2 * time.Hour)})
			switch {
			case failed(err):
				f.pending, f.tried = "rotate", next
				drop(i)
			case res.Outcome != store.Rotated:
				t.Errorf("worker %d: Rotate = %v, want rotated", w, res.Outcome)
				drop(i)
			default:
				f.prev, f.cur = f.cur, next
				m.rotations++
			}
		case p < 92:
			i := rng.IntN(len(live))
			f := live[i]
			var err error
			if p%2 == 0 {
				err = st.RevokeFamily(ctx, f.id)
			} else {
				var out store.RevokeOutcome
				if out, err = st.RevokeRefresh(ctx, f.id, f.cur, "c"); err == nil && out != store.FamilyRevokedNow {
					t.Errorf("worker %d: RevokeRefresh = %v", w, out)
				}
			}
			if failed(err) {
				f.pending = "revoke"
			} else {
				f.revoked = true
				m.revocations++
			}
			drop(i)
		case p < 96:
			jti := randomHex()
			if !failed(st.RevokeAccessToken(ctx, jti, now.Add(time.Hour))) {
				m.jtis = append(m.jtis, jti)
			}
		default:
			if !failed(st.RevokeClient(ctx, m.client, now, time.Hour)) {
				m.clientBefore = now
			}
		}
		cancel()
	}
	return m
}

// TestRedisFailoverKeepsAcknowledged: with min_replicas_ack 1, concurrent
// rotations and revocations run until the primary is killed (SIGKILL, in
// the middle of the load); once Sentinel has promoted the replica, every
// acknowledged change is there: each family's acknowledged token rotates,
// its spent predecessor is a replay, acknowledged revocations of families,
// access tokens and clients hold. Changes whose call failed may or may not
// have been made, but only as a whole. The promoted primary has no replica
// until the old one rejoins, so changes are refused until then.
func TestRedisFailoverKeepsAcknowledged(t *testing.T) {
	t.Parallel()
	s := redistest.StartSentinel(t)
	prefix := redistest.Prefix(t)
	st := ackStore(t, failoverClient(t, s), prefix)

	const workers = 4
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	var stop atomic.Bool
	models := make([]*workerModel, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			models[w] = runWorker(t, st, w, rand.New(rand.NewPCG(seed, uint64(w))), &stop)
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	s.KillPrimary() // while the workers run
	stop.Store(true)
	wg.Wait()
	loadTime := time.Since(start)
	s.WaitFailover(20 * time.Second)

	// Check through a fresh client, as a restarted Caddy would, with a store
	// that does not wait: the promoted primary has no replica yet.
	ctx := context.Background()
	c := failoverClient(t, s)
	check := store.NewRedis(c, prefix)
	now := time.Now()
	rotate := func(id, from string) store.Outcome {
		t.Helper()
		res, err := check.Rotate(ctx, store.RotateRequest{FamilyID: id, OldDigest: from, NewDigest: randomHex(), ClientID: "c",
			Now: now, ExpiresAt: now.Add(time.Hour), FamilyExpiresAt: now.Add(2 * time.Hour)})
		if err != nil {
			t.Fatalf("Rotate after the failover: %v", err)
		}
		return res.Outcome
	}
	info := func(id, digest string) (store.RefreshInfo, bool) {
		t.Helper()
		i, ok, err := check.RefreshInfo(ctx, id, digest)
		if err != nil {
			t.Fatalf("RefreshInfo after the failover: %v", err)
		}
		return i, ok
	}
	var rotations, revocations, jtis, failures, madeUnacked int
	for w, m := range models {
		rotations += m.rotations
		revocations += m.revocations
		jtis += len(m.jtis)
		failures += m.failures
		for _, f := range m.fams {
			switch f.pending {
			case "create":
				continue
			case "rotate": // either not made, or made as a whole
				cur, ok := info(f.id, f.cur)
				if !ok {
					t.Errorf("family %s: acknowledged token lost", f.id)
				} else if !cur.Active {
					if next, ok := info(f.id, f.tried); !ok || !next.Active {
						t.Errorf("family %s: token spent, but the successor of the failed rotation is %+v, %v", f.id, next, ok)
					}
					madeUnacked++
				}
				continue
			case "revoke":
				if _, ok := info(f.id, f.cur); !ok {
					t.Errorf("family %s: acknowledged token lost", f.id)
				}
				continue
			}
			if f.revoked {
				if r, err := check.FamilyRevoked(ctx, f.id); err != nil || !r {
					t.Errorf("family %s: acknowledged revocation lost (%v)", f.id, err)
				}
				if o := rotate(f.id, f.cur); o != store.FamilyRevoked {
					t.Errorf("family %s (revoked): Rotate = %v, want family_revoked", f.id, o)
				}
				continue
			}
			if cur, ok := info(f.id, f.cur); !ok || !cur.Active {
				t.Errorf("family %s: acknowledged current token %+v, found %v; want active", f.id, cur, ok)
				continue
			}
			if f.prev != "" {
				if prev, ok := info(f.id, f.prev); !ok || prev.Active {
					t.Errorf("family %s: spent predecessor %+v, found %v; want rotated", f.id, prev, ok)
				}
			}
			if o := rotate(f.id, f.cur); o != store.Rotated {
				t.Errorf("family %s: the acknowledged token rotates to %v, want rotated", f.id, o)
			}
			if f.prev != "" {
				if o := rotate(f.id, f.prev); o != store.Replayed {
					t.Errorf("family %s: the spent predecessor rotates to %v, want replayed", f.id, o)
				}
			}
		}
		for _, j := range m.jtis {
			if r, err := storetest.JTIRevoked(ctx, check, j); err != nil || !r {
				t.Errorf("worker %d: acknowledged access-token revocation lost (%v)", w, err)
			}
		}
		if !m.clientBefore.IsZero() {
			b, err := storetest.ClientRevokedBefore(ctx, check, m.client)
			if err != nil || b.UnixMilli() < m.clientBefore.UnixMilli() {
				t.Errorf("worker %d: client revoked before %v, want at least %v (%v)", w, b, m.clientBefore, err)
			}
		}
	}
	t.Logf("load %v: %d acknowledged rotations, %d family revocations, %d access-token revocations; %d calls failed, %d of them made on the primary anyway",
		loadTime.Round(time.Millisecond), rotations, revocations, jtis, failures, madeUnacked)
	if rotations < 100 {
		t.Errorf("only %d acknowledged rotations: the load proves little", rotations)
	}

	// Alone, the promoted primary acknowledges nothing.
	f := models[0].fams[0]
	err := st.RevokeFamily(ctx, f.id)
	if !errors.Is(err, store.ErrNotReplicated) {
		t.Errorf("RevokeFamily with no replica = %v, want ErrNotReplicated", err)
	}
	// The old primary rejoins as a replica: changes are acknowledged again.
	s.Rejoin()
	if err := st.RevokeFamily(ctx, f.id); err != nil {
		t.Errorf("RevokeFamily after the old primary rejoined: %v", err)
	}
}

// TestRedisFailoverWithoutAck shows what min_replicas_ack 0 risks, and
// deterministically: the replica is cut off (it cannot reconnect, see
// PartitionReplica), the primary acknowledges changes it alone holds, and
// is killed. After the failover an acknowledged rotation is gone: the
// client's new token is unknown and the spent one works again, with no
// replay detected; an acknowledged revocation is gone too. With
// min_replicas_ack 1 the same changes are refused (503), so nothing the
// client was told is lost: it retries with the token it still holds.
func TestRedisFailoverWithoutAck(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := redistest.StartSentinel(t)
	prefix := redistest.Prefix(t)
	c := failoverClient(t, s)
	acked, plain := ackStore(t, c, prefix), store.NewRedis(c, prefix)
	now := time.Now().Truncate(time.Millisecond)
	rotate := func(st store.Store, id, from, to string) (store.Outcome, error) {
		res, err := st.Rotate(ctx, store.RotateRequest{FamilyID: id, OldDigest: from, NewDigest: to, ClientID: "c",
			Now: now, ExpiresAt: now.Add(time.Hour), FamilyExpiresAt: now.Add(time.Hour)})
		return res.Outcome, err
	}
	for _, id := range []string{"a", "b", "c", "d"} {
		if err := acked.CreateFamily(ctx, store.NewFamily{FamilyID: id, Digest: id + "0", ClientID: "c", IssuedAt: now,
			ExpiresAt: now.Add(time.Hour), FamilyExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}

	s.PartitionReplica()
	// min_replicas_ack 0: acknowledged by the primary alone.
	if o, err := rotate(plain, "a", "a0", "a1"); err != nil || o != store.Rotated {
		t.Fatalf("Rotate a without ack = %v, %v", o, err)
	}
	if err := plain.RevokeFamily(ctx, "c"); err != nil {
		t.Fatalf("RevokeFamily c without ack: %v", err)
	}
	// min_replicas_ack 1: refused, though the primary made them.
	if _, err := rotate(acked, "b", "b0", "b1"); !errors.Is(err, store.ErrNotReplicated) {
		t.Fatalf("Rotate b with ack = %v, want ErrNotReplicated", err)
	}
	if err := acked.RevokeFamily(ctx, "d"); !errors.Is(err, store.ErrNotReplicated) {
		t.Fatalf("RevokeFamily d with ack = %v, want ErrNotReplicated", err)
	}

	s.KillPrimary()
	s.WaitFailover(20 * time.Second)
	check := store.NewRedis(failoverClient(t, s), prefix)

	// Without ack: the acknowledged rotation and revocation are lost.
	if _, ok, err := check.RefreshInfo(ctx, "a", "a1"); err != nil || ok {
		t.Errorf("a1, handed to the client, after the failover: found %v, %v; want lost (this is the risk)", ok, err)
	}
	if o, err := rotate(check, "a", "a0", "a2"); err != nil || o != store.Rotated {
		t.Errorf("spent a0 after the failover = %v, %v; want rotated again, no replay detected", o, err)
	}
	if r, err := check.FamilyRevoked(ctx, "c"); err != nil || r {
		t.Errorf("family c, revoked with 200, after the failover: revoked %v, %v; want lost", r, err)
	}
	// With ack: the client was told nothing, and its token still works.
	if o, err := rotate(check, "b", "b0", "b2"); err != nil || o != store.Rotated {
		t.Errorf("retry of b0 after the failover = %v, %v; want rotated", o, err)
	}
	if r, err := check.FamilyRevoked(ctx, "d"); err != nil || r {
		t.Errorf("family d after the failover: revoked %v, %v; want not (its revocation got 503)", r, err)
	}
	if err := check.RevokeFamily(ctx, "d"); err != nil {
		t.Errorf("retried revocation of d: %v", err)
	}
}
