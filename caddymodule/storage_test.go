package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-moserver/caddy-moserver/internal/store"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/redistest"
)

const clusterURL = "redis://app:s3cret@10.0.0.1:7000?addr=10.0.0.2:7000&addr=10.0.0.3:7000"

func TestCaddyfileStorageRedisCluster(t *testing.T) {
	block := `moserver {
	issuer  https://example.com/wp-json/moserver
	storage redis_cluster "` + clusterURL + `"
	client a {
		secret s
	}
}`
	var h Handler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(block)); err != nil {
		t.Fatal(err)
	}
	want := StorageConfig{Type: "redis_cluster", URL: clusterURL}
	if !sameJSON(h.StorageRaw, want.raw()) {
		t.Fatalf("storage %s, want %s", h.StorageRaw, want.raw())
	}
	if err := h.Validate(); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}

	// As `caddy adapt` shows it.
	out, _, err := caddyfileAdapter().Adapt([]byte(":8080 {\n"+block+"\n}"), nil)
	if err != nil {
		t.Fatal(err)
	}
	storage, _ := json.Marshal(clusterURL) // the URL's "&" is escaped
	if w := `"storage":{"type":"redis_cluster","url":` + string(storage) + `}`; !strings.Contains(string(out), w) {
		t.Fatalf("adapted JSON lacks %s:\n%s", w, out)
	}

	for _, in := range []string{"storage redis_cluster", "storage redis_cluster a b", "storage cluster " + clusterURL} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("moserver {\n " + in + "\n}"))
		if err == nil || !strings.Contains(err.Error(), "wrong argument count") && !strings.Contains(err.Error(), "moserver.storage.cluster") {
			t.Errorf("%q: got %v, want a storage error", in, err)
		}
	}
}

func TestValidateStorageRedisCluster(t *testing.T) {
	for _, tc := range []struct {
		url, prefix, want string
	}{
		{url: clusterURL},
		{url: clusterURL, prefix: "site1:"},
		{url: "{env.REDIS_CLUSTER_URL}"},
		{url: "", want: "storage redis_cluster needs a URL"},
		{url: clusterURL, prefix: "{site1}:", want: "key_prefix must not contain braces"},
		{url: clusterURL, prefix: "a{}", want: "key_prefix must not contain braces"},
	} {
		_, err := loadStorage(testContext(t), &StorageConfig{Type: "redis_cluster", URL: tc.url, KeyPrefix: tc.prefix})
		if tc.want == "" && err != nil {
			t.Errorf("url %q, prefix %q rejected: %v", tc.url, tc.prefix, err)
		}
		if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("url %q, prefix %q: got %v, want an error containing %q", tc.url, tc.prefix, err, tc.want)
		}
	}
}

// TestRedisClusterStoreShared provisions the store of a redis_cluster
// configuration against a real three-master cluster: configurations with the
// same URL and prefix share one store and client, the client is built with
// the fail-fast settings, and the last release closes it.
func TestRedisClusterStoreShared(t *testing.T) {
	addrs := redistest.StartCluster(t)
	// One seed through a placeholder: the client discovers the other masters.
	t.Setenv("MOSERVER_TEST_CLUSTER_SEED", addrs[1])
	cfg := &StorageConfig{Type: "redis_cluster", URL: "redis://{env.MOSERVER_TEST_CLUSTER_SEED}"}
	prefix := redistest.Prefix(t)
	repl, log := caddy.NewReplacer(), zap.NewNop()

	s1, key1, err := acquireStore(cfg, prefix, repl, log)
	if err != nil {
		t.Fatal(err)
	}
	released := false
	t.Cleanup(func() {
		if !released {
			_ = releaseStore(key1)
		}
	})
	s2, key2, err := acquireStore(cfg, prefix, repl, log)
	if err != nil {
		t.Fatal(err)
	}
	if s1 != s2 || key1 != key2 {
		t.Fatalf("same configuration, different stores (%q, %q)", key1, key2)
	}
	if key1 != "redis_cluster|redis://"+addrs[1]+"|"+prefix {
		t.Errorf("pool key %q: placeholder not expanded", key1)
	}

	var client *redis.ClusterClient
	stores.Range(func(k, v any) bool {
		if k == key1 {
			client, _ = v.(pooledStore).client.(*redis.ClusterClient)
		}
		return true
	})
	if client == nil {
		t.Fatal("the pooled store holds no cluster client")
	}
	o := client.Options()
	if o.DialTimeout != 500*time.Millisecond || o.DialerRetries != 1 || o.MaxRetries != -1 ||
		o.ReadTimeout != time.Second || o.WriteTimeout != time.Second {
		t.Errorf("not the fail-fast settings: %+v", o)
	}

	// Families on every master rotate through the shared store.
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	rotateNew := func(s store.Store, id string) error {
		err := s.CreateFamily(ctx, store.NewFamily{FamilyID: id, Digest: "d0", ClientID: "c", ExpiresAt: now.Add(time.Hour)})
		if err != nil {
			return err
		}
		res, err := s.Rotate(ctx, store.RotateRequest{FamilyID: id, OldDigest: "d0", NewDigest: "d1", ClientID: "c",
			Now: now, ExpiresAt: now.Add(time.Hour)})
		if err == nil && res.Outcome != store.Rotated {
			err = errors.New("outcome " + res.Outcome.String())
		}
		return err
	}
	for _, id := range []string{"a", "b", "c", "d", "e", "f"} { // slots 15495, 3300, 7365, 11298, 15363, 3168: all three masters
		if err := rotateNew(s1, id); err != nil {
			t.Fatalf("family %s: %v", id, err)
		}
	}

	// The first release keeps the client open for the other user.
	if err := releaseStore(key2); err != nil {
		t.Fatal(err)
	}
	if err := rotateNew(s1, "g"); err != nil {
		t.Fatalf("after the first release: %v", err)
	}
	// The last one closes it.
	released = true
	if err := releaseStore(key1); err != nil {
		t.Fatal(err)
	}
	if err := client.Ping(ctx).Err(); !errors.Is(err, redis.ErrClosed) {
		t.Fatalf("Ping after the last release = %v, want %v", err, redis.ErrClosed)
	}
}

// TestRedisClusterStoreUnreachable: provisioning against a cluster that is
// not up does not fail or hang, and store calls fail fast with
// ErrUnavailable.
func TestRedisClusterStoreUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now

	start := time.Now()
	s, key, err := acquireStore(&StorageConfig{Type: "redis_cluster", URL: "redis://" + addr}, redistest.Prefix(t),
		caddy.NewReplacer(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = releaseStore(key) }()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("provisioning took %v", d)
	}
	start = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = s.FamilyRevoked(ctx, "f")
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("FamilyRevoked = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("failing call took %v", d)
	}
}
