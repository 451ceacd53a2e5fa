package bearer

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-moserver/caddy-moserver/internal/store"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/redistest"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/tcpproxy"
	"github.com/caddy-moserver/caddy-moserver/internal/tokens"
)

const iss = "https://wp.example/wp-json/moserver"

type env struct {
	t      *testing.T
	v      *Verifier
	signer *tokens.Signer
	store  store.Store
	now    time.Time
}

func newEnv(t *testing.T, st store.Store, mod func(*Config)) *env {
	key, _, err := tokens.GenerateES256()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := tokens.NewSigner([]*tokens.Key{key})
	if err != nil {
		t.Fatal(err)
	}
	if st == nil {
		st = store.NewMemory()
		t.Cleanup(func() { _ = st.Close() })
	}
	e := &env{t: t, signer: signer, store: st, now: time.Now().Truncate(time.Second)}
	cfg := Config{Signer: signer, Store: st, Issuer: iss, Audiences: []string{iss}, Now: func() time.Time { return e.now }}
	if mod != nil {
		mod(&cfg)
	}
	if e.v, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) mint(mod func(*tokens.AccessClaims)) (string, tokens.AccessClaims) {
	c := tokens.AccessClaims{Issuer: iss, Subject: "client", Audience: iss, ClientID: "client", IssuedAt: e.now,
		ExpiresAt: e.now.Add(time.Hour), JTI: tokens.NewID(16), Scope: "read write", FamilyID: "fam-" + tokens.NewID(8)}
	if mod != nil {
		mod(&c)
	}
	tok, err := e.signer.Mint(c)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok, c
}

func (e *env) check(token string, scopes ...string) *Failure {
	r := httptest.NewRequest(http.MethodGet, "/wp-json/wp/v2/posts", nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	_, f := e.v.Check(r, scopes)
	return f
}

func wantFailure(t *testing.T, f *Failure, status int, code string) {
	t.Helper()
	if f == nil || f.Status != status || f.Code != code {
		t.Fatalf("got %+v, want %d %q", f, status, code)
	}
	rec := httptest.NewRecorder()
	f.Write(rec)
	if rec.Code != status {
		t.Fatalf("written status %d", rec.Code)
	}
	wa := rec.Header().Get("WWW-Authenticate")
	if status != 503 && (!strings.HasPrefix(wa, `Bearer realm="moserver"`) || (code != "" && !strings.Contains(wa, `error="`+code+`"`))) {
		t.Fatalf("WWW-Authenticate %q", wa)
	}
}

func TestCheck(t *testing.T) {
	e := newEnv(t, nil, nil)
	good, claims := e.mint(nil)
	if f := e.check(good, "read"); f != nil {
		t.Fatalf("good token refused: %+v", f)
	}
	wantFailure(t, e.check(""), 401, "")
	wantFailure(t, e.check(good, "admin"), 403, "insufficient_scope")
	wantFailure(t, e.check(good+"x"), 401, "invalid_token")
	wantFailure(t, e.check("not-a-jwt"), 401, "invalid_token")
	expired, _ := e.mint(func(c *tokens.AccessClaims) {
		c.IssuedAt = e.now.Add(-2 * time.Hour)
		c.ExpiresAt = e.now.Add(-time.Minute)
	})
	wantFailure(t, e.check(expired), 401, "invalid_token")
	skewed, _ := e.mint(func(c *tokens.AccessClaims) {
		c.IssuedAt = e.now.Add(-2 * time.Hour)
		c.ExpiresAt = e.now.Add(-10 * time.Second)
	})
	if f := e.check(skewed); f != nil {
		t.Fatalf("a token expired within the leeway was refused: %+v", f)
	}
	other, _ := e.mint(func(c *tokens.AccessClaims) { c.Issuer = "https://evil.example" })
	wantFailure(t, e.check(other), 401, "invalid_token")
	aud, _ := e.mint(func(c *tokens.AccessClaims) { c.Audience = "https://other-api.example" })
	wantFailure(t, e.check(aud), 401, "invalid_token")

	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Authorization", "Basic abc")
	if _, f := e.v.Check(r, nil); f == nil || f.Status != 400 {
		t.Fatalf("non-Bearer scheme: %+v", f)
	}

	ctx := context.Background()
	if err := e.store.RevokeAccessToken(ctx, claims.JTI, claims.ExpiresAt); err != nil {
		t.Fatal(err)
	}
	wantFailure(t, e.check(good), 401, "invalid_token")
}

func TestRevokedFamilyAndClient(t *testing.T) {
	e := newEnv(t, nil, nil)
	ctx := context.Background()
	fam := tokens.NewID(16)
	err := e.store.CreateFamily(ctx, store.NewFamily{FamilyID: fam, Digest: "d1", ClientID: "client", Subject: "client",
		Scope: "read", IssuedAt: e.now, ExpiresAt: e.now.Add(time.Hour), FamilyExpiresAt: e.now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	inFamily, _ := e.mint(func(c *tokens.AccessClaims) { c.FamilyID = fam })
	if f := e.check(inFamily); f != nil {
		t.Fatalf("refused: %+v", f)
	}
	if err := e.store.RevokeFamily(ctx, fam); err != nil {
		t.Fatal(err)
	}
	wantFailure(t, e.check(inFamily), 401, "invalid_token")

	old, _ := e.mint(func(c *tokens.AccessClaims) { c.IssuedAt = e.now.Add(-time.Minute) })
	if err := e.store.RevokeClient(ctx, "client", e.now, time.Hour); err != nil {
		t.Fatal(err)
	}
	wantFailure(t, e.check(old), 401, "invalid_token")
	newer, _ := e.mint(func(c *tokens.AccessClaims) { c.IssuedAt = e.now.Add(time.Second) })
	if f := e.check(newer); f != nil {
		t.Fatalf("a token issued after the client revocation was refused: %+v", f)
	}
}

func TestStoreOutage(t *testing.T) {
	proxy := tcpproxy.Start(t, "tcp", redistest.StartServer(t).Addr)
	client := redis.NewClient(&redis.Options{Addr: proxy.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = client.Close() })
	st := store.NewRedis(client, redistest.Prefix(t))
	closed := newEnv(t, st, func(c *Config) { c.StoreTimeout = 300 * time.Millisecond })
	open := newEnv(t, st, func(c *Config) { c.StoreTimeout = 300 * time.Millisecond; c.FailOpenFor = 5 * time.Second })
	open.signer, open.v.cfg.Signer = closed.signer, closed.signer
	tok, _ := closed.mint(nil)
	unseen, _ := closed.mint(nil)
	if f := open.check(tok); f != nil {
		t.Fatalf("refused: %+v", f)
	}
	proxy.SetDown(true)
	wantFailure(t, closed.check(tok), 503, "temporarily_unavailable")
	if f := open.check(tok); f != nil {
		t.Fatalf("fail_open_for: a token checked a moment ago was refused: %+v", f)
	}
	wantFailure(t, open.check(unseen), 503, "temporarily_unavailable")
	open.now = open.now.Add(6 * time.Second)
	wantFailure(t, open.check(tok), 503, "temporarily_unavailable")
	proxy.SetDown(false)
	if f := closed.check(tok); f != nil {
		t.Fatalf("after the outage: %+v", f)
	}
}

// A token verified once is served from the signature cache until it
// expires, and its revocation is still read every time.
func TestVerifiedCache(t *testing.T) {
	e := newEnv(t, nil, nil)
	tok, claims := e.mint(nil)
	for range 3 {
		if f := e.check(tok); f != nil {
			t.Fatalf("refused: %+v", f)
		}
	}
	if len(e.v.verified) != 1 {
		t.Fatalf("%d cached tokens, want 1", len(e.v.verified))
	}
	if err := e.store.RevokeAccessToken(context.Background(), claims.JTI, claims.ExpiresAt); err != nil {
		t.Fatal(err)
	}
	wantFailure(t, e.check(tok), 401, "invalid_token")
	other, _ := e.mint(nil)
	if f := e.check(other); f != nil {
		t.Fatalf("refused: %+v", f)
	}
	e.now = e.now.Add(time.Hour + time.Minute)
	wantFailure(t, e.check(other), 401, "invalid_token")
}
