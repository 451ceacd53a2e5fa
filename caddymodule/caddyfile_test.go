package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

const fullBlock = `moserver {
	issuer            https://example.com/wp-json/moserver
	token_path        /oauth/token
	revoke_path       /oauth/revoke
	jwks_path         /oauth/jwks
	storage           redis redis://127.0.0.1:6379/0
	key_prefix        site1:
	signing_key       /etc/caddy/a.pem kid-a
	signing_key       /etc/caddy/b.jwk
	access_token_ttl  10m
	refresh_token_ttl 14d
	refresh_grace     5s
	store_timeout     750ms
	audience          https://api.example.com
	unknown_grants    reject
	auth_failure_limit 20 5m
	wordpress "wp:{env.WP_DB_PASSWORD}@tcp(127.0.0.1:3306)/wordpress" {
		table_prefix       wp2_
		refresh_interval   1m
		user_access_tokens jwt
		refresh_tokens
	}
	client demo {
		secret         {env.DEMO_SECRET}
		name           "Demo app"
		scopes         profile email
		grants         client_credentials
		refresh_tokens
		audience       https://other.example.com
		access_token_ttl 5m
		cors_origins   https://app.example.com https://b.example.com
	}
	client hashed {
		secret_sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
	}
}`

func TestUnmarshalCaddyfileEveryOption(t *testing.T) {
	var h Handler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(fullBlock)); err != nil {
		t.Fatal(err)
	}
	want := Handler{
		Issuer: "https://example.com/wp-json/moserver", TokenPath: "/oauth/token", RevokePath: "/oauth/revoke",
		JWKSPath: "/oauth/jwks",
		StorageRaw: (&StorageConfig{Type: "redis", URL: "redis://127.0.0.1:6379/0", KeyPrefix: "site1:",
			StoreTimeout: caddy.Duration(750 * time.Millisecond)}).raw(),
		SigningKeys:    []SigningKeyConfig{{File: "/etc/caddy/a.pem", KID: "kid-a"}, {File: "/etc/caddy/b.jwk"}},
		AccessTokenTTL: caddy.Duration(10 * time.Minute), RefreshTokenTTL: caddy.Duration(14 * 24 * time.Hour),
		RefreshGrace: durationPtr(5 * time.Second), Audience: "https://api.example.com", UnknownGrants: "reject",
		Clients: []ClientConfig{{
			ID: "demo", Secret: "{env.DEMO_SECRET}", Name: "Demo app", Scopes: []string{"profile", "email"},
			Grants: []string{"client_credentials"}, RefreshTokens: true, Audience: "https://other.example.com",
			AccessTokenTTL: caddy.Duration(5 * time.Minute), CORSOrigins: []string{"https://app.example.com", "https://b.example.com"},
		}, {ID: "hashed", SecretSHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}},
		AuthFailureLimit: 20, AuthFailureWindow: caddy.Duration(5 * time.Minute),
		WordPress: &WordPressConfig{DSN: "wp:{env.WP_DB_PASSWORD}@tcp(127.0.0.1:3306)/wordpress", TablePrefix: "wp2_",
			RefreshInterval: caddy.Duration(time.Minute), UserAccessTokens: "jwt", RefreshTokens: true},
	}
	got, _ := json.Marshal(h)
	exp, _ := json.Marshal(want)
	if string(got) != string(exp) {
		t.Fatalf("parsed\n%s\nwant\n%s", got, exp)
	}
	if err := h.Validate(); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"moserver extra", "wrong argument count"},
		{"moserver {\n bogus x\n}", `unrecognized moserver option "bogus"`},
		{"moserver {\n issuer\n}", "issuer takes exactly one argument"},
		{"moserver {\n storage postgres x\n}", "moserver.storage.postgres"},
		{"moserver {\n storage\n}", "storage takes"},
		{"moserver {\n storage memory\n storage memory\n}", "storage is given twice"},
		{"moserver {\n storage memory\n min_replicas_ack 1\n}", "not memory"},
		{"moserver {\n storage redis r://h {\n colour red\n }\n}", `unrecognized storage option "colour"`},
		{"moserver {\n access_token_ttl soon\n}", "access_token_ttl"},
		{"moserver {\n client {\n }\n}", "client needs a client_id"},
		{"moserver {\n client a {\n colour red\n }\n}", `unrecognized option "colour" in client "a"`},
		{"moserver {\n signing_key\n}", "signing_key takes"},
		{"moserver {\n wordpress\n}", "wordpress needs an argument"},
		{"moserver {\n auth_failure_limit 0\n}", "not a positive count"},
		{"moserver {\n auth_failure_limit 5 soon\n}", "not a positive duration"},
		{"moserver {\n wordpress dsn {\n prefix x\n }\n}", `unrecognized option "prefix" in wordpress`},
	} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}

func TestValidateNamesTheOption(t *testing.T) {
	base := func() Handler {
		return Handler{Issuer: "https://x.example/wp-json/moserver", Clients: []ClientConfig{{ID: "a", Secret: "s"}}}
	}
	for _, tc := range []struct {
		mod  func(*Handler)
		want string
	}{
		{func(h *Handler) { h.Issuer = "" }, "issuer"},
		{func(h *Handler) { h.TokenPath = "token" }, "token_path"},
		{func(h *Handler) { h.UnknownGrants = "drop" }, "unknown_grants"},
		{func(h *Handler) { h.RefreshGrace = durationPtr(-1) }, "refresh_grace"},
		{func(h *Handler) { h.Clients[0].Secret = "" }, "secret"},
		{func(h *Handler) { h.Clients[0].SecretSHA256 = "ab" }, "secret_sha256"},
		{func(h *Handler) { h.Clients[0].Grants = []string{"password"} }, "grants"},
		{func(h *Handler) { h.Clients[0].Scopes = []string{`a"b`} }, "scopes"},
		{func(h *Handler) { h.Clients = append(h.Clients, h.Clients[0]) }, "declared twice"},
		{func(h *Handler) { h.SigningKeys = []SigningKeyConfig{{}} }, "signing_key"},
		{func(h *Handler) { h.Clients[0].ID = "wp-user:1" }, "reserved"},
		{func(h *Handler) { h.WordPress = &WordPressConfig{} }, "wordpress needs a DSN"},
		{func(h *Handler) { h.WordPress = &WordPressConfig{DSN: "x", TablePrefix: "wp-; DROP"} }, "table_prefix"},
		{func(h *Handler) { h.WordPress = &WordPressConfig{DSN: "x", UserAccessTokens: "paseto"} }, "user_access_tokens"},
	} {
		h := base()
		tc.mod(&h)
		err := h.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want an error naming %q", err, tc.want)
		}
	}
}

// The directive adapts to JSON (as `caddy adapt` shows it) and orders itself
// before php_fastcgi without a global order line.
func TestAdaptOrdersBeforePHP(t *testing.T) {
	input := `:8080 {
	php_fastcgi 127.0.0.1:9000
	respond /x "x"
	` + fullBlock + `
}`
	adapter := caddyfileAdapter()
	out, warnings, err := adapter.Adapt([]byte(input), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) > 0 {
		t.Logf("warnings: %v", warnings)
	}
	s := string(out)
	mo := strings.Index(s, `"handler":"moserver"`)
	php := strings.Index(s, `"handler":"reverse_proxy"`)
	respond := strings.Index(s, `"handler":"static_response"`)
	if mo < 0 || php < 0 || respond < 0 || mo > php || mo > respond {
		t.Fatalf("moserver is not ordered first: %s", s)
	}
	for _, want := range []string{`"issuer":"https://example.com/wp-json/moserver"`, `"refresh_token_ttl":1209600000000000`,
		`"storage":{"key_prefix":"site1:","store_timeout":750000000,"type":"redis","url":"redis://127.0.0.1:6379/0"}`, `"secret":"{env.DEMO_SECRET}"`} {
		if !strings.Contains(s, want) {
			t.Errorf("adapted JSON lacks %s", want)
		}
	}
}

func caddyfileAdapter() caddyfile.Adapter {
	return caddyfile.Adapter{ServerType: httpcaddyfile.ServerType{}}
}

func TestCaddyfileLogRequests(t *testing.T) {
	var h Handler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("moserver {\n issuer https://x.example\n log_requests\n}")); err != nil {
		t.Fatal(err)
	}
	if !h.LogRequests {
		t.Fatal("log_requests not set")
	}
	if b, _ := json.Marshal(h); !strings.Contains(string(b), `"log_requests":true`) {
		t.Errorf("JSON: %s", b)
	}
	var off Handler
	if err := off.UnmarshalCaddyfile(caddyfile.NewTestDispenser("moserver {\n issuer https://x.example\n}")); err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(off); off.LogRequests || strings.Contains(string(b), "log_requests") {
		t.Errorf("log_requests is on by default: %s", b)
	}
	err := new(Handler).UnmarshalCaddyfile(caddyfile.NewTestDispenser("moserver {\n log_requests yes\n}"))
	if err == nil || !strings.Contains(err.Error(), "wrong argument count") {
		t.Errorf("log_requests with an argument: %v", err)
	}
}

func durationPtr(d time.Duration) *caddy.Duration {
	v := caddy.Duration(d)
	return &v
}
