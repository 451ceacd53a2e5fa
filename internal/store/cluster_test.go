package store_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-moserver/caddy-moserver/internal/store"
	"github.com/caddy-moserver/caddy-moserver/internal/store/storetest"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/redistest"
)

// startCluster starts a private three-master Redis Cluster and returns a
// cluster client for it, closed in t.Cleanup.
func startCluster(t *testing.T) *redis.ClusterClient {
	t.Helper()
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: redistest.StartCluster(t)})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestRedisCluster runs the whole conformance suite, concurrent rotation
// included, against a real three-master Redis Cluster. Every subtest has its
// own prefix and creates random family ids, so its families spread over all
// three masters.
func TestRedisCluster(t *testing.T) {
	c := startCluster(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		return store.NewRedis(c, redistest.Prefix(t))
	})
}

// TestRedisClusterSlots checks on a real cluster that every key a family
// owns (its record and all its tokens) is in one hash slot, served by the
// node that owns that slot, and that families whose slots are on different
// masters rotate, replay and revoke independently, also concurrently.
func TestRedisClusterSlots(t *testing.T) {
	ctx := context.Background()
	c := startCluster(t)
	prefix := redistest.Prefix(t)
	s := store.NewRedis(c, prefix)
	famKey := func(id string) string { return prefix + "{" + id + "}:fam" }

	owner := slotOwners(t, c)
	slotOf := func(key string) int64 {
		t.Helper()
		slot, err := c.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			t.Fatalf("CLUSTER KEYSLOT %s: %v", key, err)
		}
		return slot
	}

	// Two families on each master.
	const perNode = 2
	type fam struct {
		id, digest string
		slot       int64
		node       string
		tokens     int // token keys written
	}
	var fams []*fam
	count := map[string]int{}
	for tries := 0; len(fams) < perNode*len(owner.nodes); tries++ {
		if tries > 10000 {
			t.Fatalf("could not place %d families on each of %v", perNode, owner.nodes)
		}
		id := randomHex()
		slot := slotOf(famKey(id))
		node := owner.node(t, slot)
		if count[node] == perNode {
			continue
		}
		count[node]++
		fams = append(fams, &fam{id: id, digest: randomHex(), slot: slot, node: node})
	}

	now := time.Now().Truncate(time.Millisecond)
	req := func(f *fam) store.RotateRequest {
		return store.RotateRequest{
			FamilyID: f.id, OldDigest: f.digest, NewDigest: randomHex(), ClientID: "c1",
			Sealed: []byte("sealed"), Now: now, ExpiresAt: now.Add(time.Hour),
			FamilyExpiresAt: now.Add(2 * time.Hour),
		}
	}
	rotate := func(f *fam, want store.Outcome) {
		t.Helper()
		r := req(f)
		res, err := s.Rotate(ctx, r)
		if err != nil {
			t.Fatalf("Rotate family %s (slot %d on %s): %v", f.id, f.slot, f.node, err)
		}
		if res.Outcome != want {
			t.Fatalf("Rotate family %s (slot %d on %s) = %v, want %v", f.id, f.slot, f.node, res.Outcome, want)
		}
		if want == store.Rotated {
			f.digest = r.NewDigest
			f.tokens++
		}
	}

	for _, f := range fams {
		err := s.CreateFamily(ctx, store.NewFamily{
			FamilyID: f.id, Digest: f.digest, ClientID: "c1", Subject: "alice", Scope: "read",
			IssuedAt: now, ExpiresAt: now.Add(time.Hour), FamilyExpiresAt: now.Add(2 * time.Hour),
		})
		if err != nil {
			t.Fatalf("CreateFamily (slot %d on %s): %v", f.slot, f.node, err)
		}
		f.tokens = 1
	}
	// Interleaved: consecutive rotations go to different masters.
	for range 3 {
		for _, f := range fams {
			rotate(f, store.Rotated)
		}
	}
	// Concurrently, every family at once.
	var wg sync.WaitGroup
	errs := make([]error, len(fams))
	for i, f := range fams {
		wg.Go(func() {
			for range 5 {
				r := req(f)
				res, err := s.Rotate(ctx, r)
				if err == nil && res.Outcome != store.Rotated {
					err = errors.New("outcome " + res.Outcome.String())
				}
				if err != nil {
					errs[i] = err
					return
				}
				f.digest = r.NewDigest
				f.tokens++
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent rotation of families on different masters: %v", err)
	}

	// A replay in the first family revokes it alone, not the families on
	// the other masters (nor the other one on its own master).
	replayed := fams[0]
	stale := *replayed
	rotate(replayed, store.Rotated)
	rotate(&stale, store.Replayed)
	rotate(replayed, store.FamilyRevoked)
	// RevokeRefresh and RevokeFamily on families on two other masters.
	var byNode []*fam
	for _, f := range fams[1:] {
		if len(byNode) < 2 && f.node != replayed.node && (len(byNode) == 0 || f.node != byNode[0].node) {
			byNode = append(byNode, f)
		}
	}
	if len(byNode) != 2 {
		t.Fatalf("want families on two other masters, got %d", len(byNode))
	}
	if out, err := s.RevokeRefresh(ctx, byNode[0].id, byNode[0].digest, "c1"); err != nil || out != store.FamilyRevokedNow {
		t.Fatalf("RevokeRefresh = %v, %v", out, err)
	}
	if err := s.RevokeFamily(ctx, byNode[1].id); err != nil {
		t.Fatalf("RevokeFamily: %v", err)
	}
	revoked := map[string]bool{replayed.id: true, byNode[0].id: true, byNode[1].id: true}
	for _, f := range fams {
		got, err := s.FamilyRevoked(ctx, f.id)
		if err != nil || got != revoked[f.id] {
			t.Fatalf("FamilyRevoked(family on %s) = %v, %v; want %v", f.node, got, err, revoked[f.id])
		}
		if !revoked[f.id] {
			rotate(f, store.Rotated)
		}
	}
	// Access-token revocations spread over the masters too.
	jtis := make([]string, 12)
	for i := range jtis {
		jtis[i] = randomHex()
		if err := s.RevokeAccessToken(ctx, jtis[i], now.Add(time.Hour)); err != nil {
			t.Fatalf("RevokeAccessToken: %v", err)
		}
		if ok, err := storetest.JTIRevoked(ctx, s, jtis[i]); err != nil || !ok {
			t.Fatalf("AccessTokenRevoked = %v, %v; want true", ok, err)
		}
	}

	// Every key written, found on the master that holds it.
	keys := map[string]string{} // key -> address of the master holding it
	var mu sync.Mutex
	err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		iter := m.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			keys[iter.Val()] = m.Options().Addr
			mu.Unlock()
		}
		return iter.Err()
	})
	if err != nil {
		t.Fatalf("SCAN the masters: %v", err)
	}
	byID := map[string]*fam{}
	for _, f := range fams {
		byID[f.id] = f
	}
	tokenKeys := map[string]int{}
	jtiKeys, indexKeys := 0, 0
	for key, node := range keys {
		slot := slotOf(key)
		if want := owner.node(t, slot); node != want {
			t.Errorf("key %s (slot %d) found on %s, but the slot is served by %s", key, slot, node, want)
		}
		rest := strings.TrimPrefix(key, prefix)
		if jti, ok := strings.CutPrefix(rest, "jti:"); ok {
			jtiKeys++
			if want := slotOf(strings.Trim(jti, "{}")); slot != want {
				t.Errorf("jti key %s in slot %d, want the slot of its jti, %d", key, slot, want)
			}
			continue
		}
		if client, ok := strings.CutPrefix(rest, "client:"); ok {
			indexKeys++
			if client != "{c1}:fams" {
				t.Errorf("unexpected client key %s", key)
			}
			if want := slotOf("c1"); slot != want {
				t.Errorf("client key %s in slot %d, want the slot of its client, %d", key, slot, want)
			}
			continue
		}
		id, suffix, ok := strings.Cut(strings.TrimPrefix(rest, "{"), "}")
		f := byID[id]
		if !strings.HasPrefix(rest, "{") || !ok || f == nil {
			t.Errorf("unexpected key %s", key)
			continue
		}
		if slot != f.slot || node != f.node {
			t.Errorf("key %s in slot %d on %s; its family's record is in slot %d on %s", key, slot, node, f.slot, f.node)
		}
		switch {
		case suffix == ":fam":
		case strings.HasPrefix(suffix, ":rt:"):
			tokenKeys[id]++
		default:
			t.Errorf("unexpected key %s", key)
		}
	}
	for _, f := range fams {
		if _, ok := keys[famKey(f.id)]; !ok {
			t.Errorf("family record %s not found on any master", famKey(f.id))
		}
		if tokenKeys[f.id] != f.tokens {
			t.Errorf("family on %s has %d token keys, want %d", f.node, tokenKeys[f.id], f.tokens)
		}
	}
	if jtiKeys != len(jtis) {
		t.Errorf("found %d jti keys, want %d", jtiKeys, len(jtis))
	}
	if indexKeys != 1 {
		t.Errorf("found %d family index keys, want 1 (client c1)", indexKeys)
	}
	// The index, on its own slot, lists the families of every slot.
	page, err := s.ListFamilies(ctx, "c1", store.FamilyQuery{Limit: store.MaxFamilyPage, IncludeRevoked: true})
	if err != nil || len(page.Families) != len(fams) || page.Next != "" {
		t.Errorf("ListFamilies = %d families, next %q, %v; want %d", len(page.Families), page.Next, err, len(fams))
	}
	nodesWithKeys := map[string]bool{}
	for _, node := range keys {
		nodesWithKeys[node] = true
	}
	if len(nodesWithKeys) != len(owner.nodes) {
		t.Errorf("keys are on %d masters, want all %d", len(nodesWithKeys), len(owner.nodes))
	}
}

// slots maps hash slots to the address of the master serving them.
type slots struct {
	ranges []redis.ClusterSlot
	nodes  []string
}

// slotOwners reads the slot map with CLUSTER SLOTS.
func slotOwners(t *testing.T, c *redis.ClusterClient) slots {
	t.Helper()
	rs, err := c.ClusterSlots(context.Background()).Result()
	if err != nil {
		t.Fatalf("CLUSTER SLOTS: %v", err)
	}
	seen := map[string]bool{}
	var s slots
	for _, r := range rs {
		if len(r.Nodes) == 0 {
			t.Fatalf("CLUSTER SLOTS: range %d-%d has no node", r.Start, r.End)
		}
		s.ranges = append(s.ranges, r)
		if a := r.Nodes[0].Addr; !seen[a] {
			seen[a] = true
			s.nodes = append(s.nodes, a)
		}
	}
	if len(s.nodes) < 3 {
		t.Fatalf("CLUSTER SLOTS: %d masters, want 3", len(s.nodes))
	}
	return s
}

// node returns the address of the master serving slot.
func (s slots) node(t *testing.T, slot int64) string {
	t.Helper()
	for _, r := range s.ranges {
		if int64(r.Start) <= slot && slot <= int64(r.End) {
			return r.Nodes[0].Addr
		}
	}
	t.Fatalf("slot %d is served by no master", slot)
	return ""
}

// randomHex returns 128 random bits in hex.
func randomHex() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// TestRedisClusterAccess checks on a real cluster that CheckAccess reads
// keys on three different masters in one pipeline (one exchange per master,
// sent concurrently by the cluster client), that RefreshInfo is one
// exchange with the family's master, and that legacy families (no creation
// time) behave as on a single server.
func TestRedisClusterAccess(t *testing.T) {
	ctx := context.Background()
	c := startCluster(t)
	testLegacyFamily(t, c, redistest.Prefix(t))

	// A client of its own that logs what every node is sent.
	var log cmdLog
	lc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Options().Addrs})
	t.Cleanup(func() { _ = lc.Close() })
	lc.OnNewNode(func(n *redis.Client) { n.AddHook(log.hook(n.Options().Addr)) })
	prefix := redistest.Prefix(t)
	s := store.NewRedis(lc, prefix)
	owner := slotOwners(t, c)
	nodeOf := func(key string) string {
		t.Helper()
		slot, err := c.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return owner.node(t, slot)
	}

	// A jti, a family and a client whose keys are on three different masters.
	var jti, fid, client string
	var nodes []string
	for tries := 0; ; tries++ {
		if tries > 10000 {
			t.Fatal("could not place the keys on three masters")
		}
		jti, fid, client = randomHex(), randomHex(), randomHex()
		nodes = []string{
			nodeOf(prefix + "jti:{" + jti + "}"),
			nodeOf(prefix + "{" + fid + "}:fam"),
			nodeOf(prefix + "client:{" + client + "}:rb"),
		}
		if nodes[0] != nodes[1] && nodes[1] != nodes[2] && nodes[0] != nodes[2] {
			break
		}
	}
	now := time.Now().Truncate(time.Millisecond)
	digest := randomHex()
	err := s.CreateFamily(ctx, store.NewFamily{FamilyID: fid, Digest: digest, ClientID: client, Subject: "alice",
		Scope: "read", IssuedAt: now, ExpiresAt: now.Add(time.Hour), FamilyExpiresAt: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	check := func(want store.AccessState) {
		t.Helper()
		log.take()
		got, err := s.CheckAccess(ctx, jti, fid, client)
		if err != nil {
			t.Fatalf("CheckAccess: %v", err)
		}
		if got.JTIRevoked != want.JTIRevoked || got.FamilyRevoked != want.FamilyRevoked ||
			!got.ClientRevokedBefore.Equal(want.ClientRevokedBefore) {
			t.Fatalf("CheckAccess = %+v, want %+v", got, want)
		}
		wantLog := []string{nodes[0] + " exists", nodes[1] + " hget", nodes[2] + " get"}
		slices.Sort(wantLog)
		if got := log.take(); !slices.Equal(got, wantLog) {
			t.Fatalf("CheckAccess sent %q, want %q", got, wantLog)
		}
	}
	check(store.AccessState{})
	if err := s.RevokeAccessToken(ctx, jti, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	check(store.AccessState{JTIRevoked: true})
	if err := s.RevokeClient(ctx, client, now, time.Hour); err != nil {
		t.Fatal(err)
	}
	check(store.AccessState{JTIRevoked: true, ClientRevokedBefore: now})
	if err := s.RevokeFamily(ctx, fid); err != nil {
		t.Fatal(err)
	}
	check(store.AccessState{JTIRevoked: true, FamilyRevoked: true, ClientRevokedBefore: now})

	log.take()
	info, ok, err := s.RefreshInfo(ctx, fid, digest)
	if err != nil || !ok || info.Active || info.ClientID != client || !info.IssuedAt.Equal(now) {
		t.Fatalf("RefreshInfo = %+v, %v, %v", info, ok, err)
	}
	if got, want := log.take(), []string{nodes[1] + " multi hmget hmget exec"}; !slices.Equal(got, want) {
		t.Fatalf("RefreshInfo sent %q, want %q", got, want)
	}
}
