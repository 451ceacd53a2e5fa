package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-moserver/caddy-moserver/internal/store"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/redistest"
)

const sentinelURL = "redis://app:s3cret@10.0.0.1:26379,10.0.0.2:26380?master_name=mymaster"

func TestCaddyfileStorageSentinelAndMinReplicasAck(t *testing.T) {
	for _, tc := range []struct {
		name, lines string
		want        StorageConfig
	}{
		{"storage first", "storage redis_sentinel \"" + sentinelURL + "\"\n min_replicas_ack 1",
			StorageConfig{Type: "redis_sentinel", URL: sentinelURL, MinReplicasAck: 1}},
		{"ack first, with timeout", "min_replicas_ack 2 250ms\n storage redis redis://127.0.0.1:6379/0",
			StorageConfig{Type: "redis", URL: "redis://127.0.0.1:6379/0", MinReplicasAck: 2,
				MinReplicasAckTimeout: caddy.Duration(250 * time.Millisecond)}},
		{"sentinel alone", "storage redis_sentinel \"" + sentinelURL + "\"",
			StorageConfig{Type: "redis_sentinel", URL: sentinelURL}},
		{"ack 0", "storage redis redis://h:1\n min_replicas_ack 0", StorageConfig{Type: "redis", URL: "redis://h:1"}},
	} {
		block := "moserver {\n issuer https://example.com/wp-json/moserver\n " + tc.lines + "\n client a {\n  secret s\n }\n}"
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(block)); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !sameJSON(h.StorageRaw, tc.want.raw()) {
			t.Errorf("%s: storage %s, want %s", tc.name, h.StorageRaw, tc.want.raw())
		}
		if err := h.Validate(); err != nil {
			t.Errorf("%s: valid config rejected: %v", tc.name, err)
		}
	}

	// As `caddy adapt` shows it.
	block := "moserver {\n issuer https://example.com/wp-json/moserver\n storage redis_sentinel \"" + sentinelURL +
		"\"\n min_replicas_ack 1 300ms\n client a {\n  secret s\n }\n}"
	out, _, err := caddyfileAdapter().Adapt([]byte(":8080 {\n"+block+"\n}"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []struct {
						Handle []struct {
							Storage json.RawMessage `json:"storage"`
						} `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	raw := cfg.Apps.HTTP.Servers["srv0"].Routes[0].Handle[0].Storage
	want := StorageConfig{Type: "redis_sentinel", URL: sentinelURL, MinReplicasAck: 1,
		MinReplicasAckTimeout: caddy.Duration(300 * time.Millisecond)}
	if !sameJSON(raw, want.raw()) || !strings.Contains(string(raw), `"min_replicas_ack":1`) ||
		!strings.Contains(string(raw), `"min_replicas_ack_timeout":300000000`) {
		t.Errorf("adapted storage %s, want %+v", raw, want)
	}

	for in, wantErr := range map[string]string{
		"storage redis_sentinel":                                    "wrong argument count",
		"storage redis_sentinel a b":                                "wrong argument count",
		"storage sentinel " + sentinelURL:                           "moserver.storage.sentinel",
		"min_replicas_ack":                                          "min_replicas_ack takes",
		"min_replicas_ack 1 2s 3":                                   "min_replicas_ack takes",
		"min_replicas_ack one":                                      "not a count",
		"min_replicas_ack -1":                                       "not a count",
		"min_replicas_ack 1 soon":                                   "not a positive duration",
		"min_replicas_ack 1 0s":                                     "not a positive duration",
		"min_replicas_ack 1 -1s":                                    "not a positive duration",
		"min_replicas_ack 1\n storage memory":                       "not memory",
		"storage redis_cluster redis://h:1 x":                       "wrong argument count",
		"min_replicas_ack 1 1s\n storage redis_cluster redis://h:1": "not redis_cluster",
	} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("moserver {\n " + in + "\n}"))
		if wantErr == "" {
			if err != nil {
				t.Errorf("%q: %v", in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%q: got %v, want an error containing %q", in, err, wantErr)
		}
	}
}

func TestValidateMinReplicasAck(t *testing.T) {
	ms := func(n int) caddy.Duration { return caddy.Duration(time.Duration(n) * time.Millisecond) }
	for _, tc := range []struct {
		name    string
		storage StorageConfig
		timeout caddy.Duration // store_timeout
		want    string
	}{
		{"redis", StorageConfig{Type: "redis", URL: "redis://h:1", MinReplicasAck: 1}, 0, ""},
		{"sentinel", StorageConfig{Type: "redis_sentinel", URL: sentinelURL, MinReplicasAck: 2, MinReplicasAckTimeout: ms(900)}, 0, ""},
		{"longer store timeout", StorageConfig{Type: "redis", URL: "redis://h:1", MinReplicasAck: 1, MinReplicasAckTimeout: ms(1500)}, ms(2000), ""},
		{"sentinel without URL", StorageConfig{Type: "redis_sentinel"}, 0, "storage redis_sentinel needs a URL"},
		{"memory", StorageConfig{Type: "memory", MinReplicasAck: 1}, 0, `unknown field "min_replicas_ack"`},
		{"default storage", StorageConfig{MinReplicasAck: 1}, 0, `unknown field "min_replicas_ack"`},
		{"cluster", StorageConfig{Type: "redis_cluster", URL: clusterURL, MinReplicasAck: 1}, 0, `unknown field "min_replicas_ack"`},
		{"negative", StorageConfig{Type: "redis", URL: "redis://h:1", MinReplicasAck: -1}, 0, "must not be negative"},
		{"negative timeout", StorageConfig{Type: "redis", URL: "redis://h:1", MinReplicasAck: 1, MinReplicasAckTimeout: -1}, 0, "must not be negative"},
		{"timeout without count", StorageConfig{Type: "redis", URL: "redis://h:1", MinReplicasAckTimeout: ms(100)}, 0, "needs min_replicas_ack"},
		{"timeout = store timeout", StorageConfig{Type: "redis", URL: "redis://h:1", MinReplicasAck: 1, MinReplicasAckTimeout: ms(1000)}, 0, "shorter than store_timeout"},
		{"default timeout, short store timeout", StorageConfig{Type: "redis", URL: "redis://h:1", MinReplicasAck: 1}, ms(400), "shorter than store_timeout"},
		{"unknown type", StorageConfig{Type: "sentinel", URL: sentinelURL}, 0, "moserver.storage.sentinel"},
	} {
		st := tc.storage
		st.StoreTimeout = tc.timeout
		_, err := loadStorage(testContext(t), &st)
		if tc.want == "" && err != nil {
			t.Errorf("%s: rejected: %v", tc.name, err)
		}
		if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

// TestStorePoolKeyAck: configurations that differ only in min_replicas_ack
// get different stores; a redis_cluster store refuses it at provisioning.
func TestStorePoolKeyAck(t *testing.T) {
	srv := redistest.StartServer(t)
	repl, log := caddy.NewReplacer(), zap.NewNop()
	prefix := redistest.Prefix(t)
	plain := &StorageConfig{Type: "redis", URL: "redis://" + srv.Addr}
	acked := &StorageConfig{Type: "redis", URL: "redis://" + srv.Addr, MinReplicasAck: 1}
	s1, k1, err := acquireStore(plain, prefix, repl, log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = releaseStore(k1) }()
	s2, k2, err := acquireStore(acked, prefix, repl, log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = releaseStore(k2) }()
	if s1 == s2 || k2 != "redis|redis://"+srv.Addr+"|"+prefix+"|ack=1/500ms" {
		t.Errorf("keys %q and %q: same store %v", k1, k2, s1 == s2)
	}
	var client *redis.Client
	stores.Range(func(k, v any) bool {
		if k == k2 {
			client, _ = v.(pooledStore).client.(*redis.Client)
		}
		return true
	})
	if client == nil || client.Options().ReadTimeout != 1500*time.Millisecond {
		t.Errorf("the read timeout does not cover the WAIT: %v", client)
	}
	// No replica: a change is refused, with ErrUnavailable.
	ctx := context.Background()
	start := time.Now()
	err = s2.RevokeFamily(ctx, "f")
	if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, store.ErrNotReplicated) {
		t.Errorf("RevokeFamily without a replica = %v, want ErrUnavailable and ErrNotReplicated", err)
	}
	if d := time.Since(start); d < 400*time.Millisecond || d > 1500*time.Millisecond {
		t.Errorf("refusal took %v, want about the 500ms ack timeout", d)
	}
	if err := s1.RevokeFamily(ctx, "f"); err != nil {
		t.Errorf("without min_replicas_ack: %v", err)
	}

	if _, _, err := acquireStore(&StorageConfig{Type: "redis_cluster", URL: "redis://127.0.0.1:1", MinReplicasAck: 1},
		prefix, repl, log); err == nil || !strings.Contains(err.Error(), "redis_cluster") {
		t.Errorf("redis_cluster with min_replicas_ack provisioned: %v", err)
	}
}

// durabilityHandler provisions a moserver block on storage, with one
// client that gets refresh tokens and refresh_grace 1m.
func durabilityHandler(t *testing.T, storage *StorageConfig) *Handler {
	t.Helper()
	h, _ := opsProvisionHandler(t, "https://example.com/wp-json/moserver", func(h *Handler) {
		s := *storage
		s.KeyPrefix = redistest.Prefix(t)
		h.StorageRaw = s.raw()
		h.RefreshGrace = durationPtr(time.Minute)
		h.Clients = []ClientConfig{{ID: "app", Secret: "app-secret", RefreshTokens: true}}
	})
	return h
}

// durabilityToken posts a token request; it returns the status, the
// Retry-After header, the refresh token and the body.
func durabilityToken(t *testing.T, h *Handler, form url.Values) (int, string, string, string) {
	t.Helper()
	form.Set("client_id", "app")
	form.Set("client_secret", "app-secret")
	req := httptest.NewRequest(http.MethodPost, "/wp-json/moserver/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		w.WriteHeader(http.StatusTeapot)
		return nil
	})
	if err := h.ServeHTTP(rec, req, next); err != nil {
		t.Fatal(err)
	}
	var m struct {
		RefreshToken string `json:"refresh_token"`
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &m)
	return rec.Code, rec.Header().Get("Retry-After"), m.RefreshToken, rec.Body.String()
}

// TestSentinelStoreMinReplicasAck runs the token endpoint on storage
// redis_sentinel with min_replicas_ack 1 and refresh_grace 1m against a
// real Sentinel deployment: a refresh the replica does not acknowledge is
// answered 503 temporarily_unavailable with no token; the client's retry
// with the same refresh token, once the replica is back, gets 200 (a grace
// retry of the rotation the primary made). After the primary is killed and
// Sentinel promotes the replica, the token the client holds still works,
// through the same store, once the old primary is back as a replica.
func TestSentinelStoreMinReplicasAck(t *testing.T) {
	s := redistest.StartSentinel(t)
	u := url.URL{Scheme: "redis", User: url.UserPassword("", s.Password), Host: strings.Join(s.Sentinels, ","),
		RawQuery: "master_name=" + s.MasterName}
	h := durabilityHandler(t, &StorageConfig{Type: "redis_sentinel", URL: u.String(), MinReplicasAck: 1,
		MinReplicasAckTimeout: caddy.Duration(300 * time.Millisecond)})

	code, _, rt, body := durabilityToken(t, h, url.Values{"grant_type": {"client_credentials"}})
	if code != http.StatusOK || rt == "" {
		t.Fatalf("client_credentials: %d %s", code, body)
	}
	code, _, rt, body = durabilityToken(t, h, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	if code != http.StatusOK || rt == "" {
		t.Fatalf("refresh: %d %s", code, body)
	}

	s.PauseReplica()
	code, retry, got, body := durabilityToken(t, h, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	s.ResumeReplica()
	if code != http.StatusServiceUnavailable || retry == "" || got != "" || !strings.Contains(body, "temporarily_unavailable") {
		t.Fatalf("refresh with the replica stopped: %d, Retry-After %q, token %q, %s; want 503 without a token", code, retry, got, body)
	}
	// The client retries with the token it holds: within refresh_grace it
	// gets the successor the primary stored.
	code, _, rt2, body := durabilityToken(t, h, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	if code != http.StatusOK || rt2 == "" {
		t.Fatalf("retry after the replica is back: %d %s", code, body)
	}

	s.KillPrimary()
	s.WaitFailover(20 * time.Second)
	// Alone, the new primary acknowledges nothing: 503, and the token stays
	// valid. Then the old primary rejoins as a replica.
	if code, _, _, body := durabilityToken(t, h, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt2}}); code != http.StatusServiceUnavailable {
		t.Errorf("refresh with no replica left: %d %s, want 503", code, body)
	}
	s.Rejoin()
	code, _, rt3, body := durabilityToken(t, h, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt2}})
	if code != http.StatusOK || rt3 == "" {
		t.Fatalf("refresh after the failover: %d %s", code, body)
	}
	if code, _, _, _ := durabilityToken(t, h, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt3}}); code != http.StatusOK {
		t.Errorf("the successor after the failover: %d", code)
	}
}
