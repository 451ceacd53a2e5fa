package oauth

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-moserver/caddy-moserver/internal/clients"
	"github.com/caddy-moserver/caddy-moserver/internal/store"
	"github.com/caddy-moserver/caddy-moserver/internal/tokens"
	"github.com/caddy-moserver/caddy-moserver/internal/ttlcache"
)

// The admin user of the compat fixtures (40, 41, 93).
var fixtureAdmin = &User{ID: 1, Login: "admin", Email: "admin@example.com", Nickname: "admin", DisplayName: "admin"}

// The plugin's answers to the fixtures' tokens, byte for byte.
const (
	fixture40Body = `{"id":1,"ID":1,"sub":1,"email":"admin@example.com","username":"admin","first_name":"","last_name":"","nickname":"admin","display_name":"admin"}`
	fixture41Body = `{"id":1,"ID":1,"email":"admin@example.com","username":"admin","first_name":"","last_name":"","nickname":"admin","display_name":"admin"}`
)

// wpFixture is a server with a fake WordPress holding the fixtures' admin.
func wpFixture(t *testing.T, st store.Store, mod func(*Config)) (*fixture, *memWordPress) {
	t.Helper()
	wp := newMemWordPress()
	wp.users[1] = fixtureAdmin
	f := newFixture(t, st, func(c *Config) {
		c.WordPress = wp
		if mod != nil {
			mod(c)
		}
	})
	return f, wp
}

// addToken records an opaque access token of the admin, as the plugin does.
func (f *fixture) addToken(wp *memWordPress, scope string, expires time.Time) string {
	f.t.Helper()
	at := newPluginToken()
	if err := wp.InsertAccessToken(context.Background(), at, ccID, 1, expires, scope); err != nil {
		f.t.Fatal(err)
	}
	return at
}

func userInfo(token string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, DefaultUserInfoPath, nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return r
}

// wantChallenge checks a userinfo error: status, error code, and the
// WWW-Authenticate challenge (with that code, or none for 401 without a token).
func wantChallenge(t *testing.T, r response, status int, code string) {
	t.Helper()
	wantError(t, r, status, code)
	challenge := r.header.Get("WWW-Authenticate")
	if code == "" || status == http.StatusUnauthorized && r.str("error") == "invalid_request" {
		if challenge != `Bearer realm="moserver"` {
			t.Errorf("WWW-Authenticate %q, want a challenge without an error code", challenge)
		}
		return
	}
	if !strings.HasPrefix(challenge, `Bearer realm="moserver", error="`+code+`", error_description="`) {
		t.Errorf("WWW-Authenticate %q, want a Bearer challenge with error %s", challenge, code)
	}
}

func TestUserInfoPluginTokens(t *testing.T) {
	f, wp := wpFixture(t, nil, nil)
	hour := f.clock.Now().Add(time.Hour)
	for scope, want := range map[string]string{
		"openid profile email": fixture40Body,
		"profile email":        fixture41Body,
		"":                     fixture40Body, // the plugin: everything
		"openid":               `{"id":1,"ID":1,"sub":1}`,
		"email offline_access": `{"id":1,"ID":1,"email":"admin@example.com"}`,
		"openid profile":       `{"id":1,"ID":1,"sub":1,"username":"admin","first_name":"","last_name":"","nickname":"admin","display_name":"admin"}`,
		"emails profiles x":    `{"id":1,"ID":1}`, // words, not substrings
	} {
		at := f.addToken(wp, scope, hour)
		r := f.do(userInfo(at))
		if r.status != 200 || r.body != want {
			t.Errorf("scope %q: %d %s\nwant %s", scope, r.status, r.body, want)
		}
		wantNoStore(t, r)
		if ct := r.header.Get("Content-Type"); ct != "application/json; charset=UTF-8" {
			t.Errorf("Content-Type %q", ct)
		}
		// The query form of fixture 93.
		if q := f.do(httptest.NewRequest(http.MethodGet, DefaultUserInfoPath+"?access_token="+at, nil)); q.status != 200 || q.body != want {
			t.Errorf("scope %q, ?access_token=: %d %s", scope, q.status, q.body)
		}
	}

	// Escaping: the body is JSON whatever the user's names hold.
	wp.users[2] = &User{ID: 2, Login: `a"b`, Email: "x@example.com", FirstName: "<Zoë>", DisplayName: `back\slash`}
	at := newPluginToken()
	_ = wp.InsertAccessToken(context.Background(), at, ccID, 2, hour, "profile")
	if r := f.do(userInfo(at)); r.status != 200 || r.json["username"] != `a"b` || r.json["first_name"] != "<Zoë>" ||
		r.json["display_name"] != `back\slash` || r.json["sub"] != nil {
		t.Errorf("user 2: %d %s", r.status, r.body)
	}

	// HEAD: the headers of the GET.
	head := userInfo(f.addToken(wp, "openid", hour))
	head.Method = http.MethodHead
	if r := f.do(head); r.status != 200 || r.body != "" || r.header.Get("Content-Length") != "23" {
		t.Errorf("HEAD: %d %v %q", r.status, r.header, r.body)
	}
}

func TestUserInfoErrors(t *testing.T) {
	f, wp := wpFixture(t, nil, nil)
	now := f.clock.Now()
	good := f.addToken(wp, "openid", now.Add(time.Hour))

	// No token, or another scheme: 401 with a challenge without an error.
	wantChallenge(t, f.do(userInfo("")), 401, "invalid_request")
	basic := userInfo("")
	basic.Header.Set("Authorization", basic64("admin:pw"))
	wantChallenge(t, f.do(basic), 401, "invalid_request")
	empty := httptest.NewRequest(http.MethodGet, DefaultUserInfoPath+"?access_token=", nil)
	wantChallenge(t, f.do(empty), 401, "invalid_request")

	// Malformed or twice.
	for _, r := range []*http.Request{
		userInfo(good + " x"),
		func() *http.Request { r := userInfo(""); r.Header.Set("Authorization", "Bearer "); return r }(),
		func() *http.Request {
			r := userInfo(good)
			r.Header.Add("Authorization", "Bearer "+good)
			return r
		}(),
		// Both the header and the query: the plugin's invalid_request.
		func() *http.Request { r := userInfo(good); r.URL.RawQuery = "access_token=" + good; return r }(),
		httptest.NewRequest(http.MethodGet, DefaultUserInfoPath+"?access_token="+good+"&access.token="+good, nil),
	} {
		wantChallenge(t, f.do(r), 400, "invalid_request")
	}

	// Unknown, too long, another case, expired (the plugin: now > expires).
	expired := f.addToken(wp, "openid", now.Add(-time.Second))
	edge := f.addToken(wp, "openid", now)
	for _, tok := range []string{"0123456789abcdef0123456789abcdef", strings.ToUpper(good), strings.Repeat("a", 300), expired} {
		wantChallenge(t, f.do(userInfo(tok)), 401, "invalid_token")
	}
	if r := f.do(userInfo(edge)); r.status != 200 {
		t.Errorf("a token in its expiry second: %d %s", r.status, r.body)
	}
	if r := f.do(userInfo(expired)); !strings.Contains(r.body, descExpiredToken) {
		t.Errorf("expired: %s", r.body)
	}

	// Its row deleted (as a second exchange of its code does): invalid.
	if err := wp.DeleteAccessToken(context.Background(), good); err != nil {
		t.Fatal(err)
	}
	wantChallenge(t, f.do(userInfo(good)), 401, "invalid_token")

	// Its user deleted: invalid.
	orphan := newPluginToken()
	_ = wp.InsertAccessToken(context.Background(), orphan, ccID, 99, now.Add(time.Hour), "openid")
	wantChallenge(t, f.do(userInfo(orphan)), 401, "invalid_token")

	// The database down: 503, Retry-After, no challenge.
	ok := f.addToken(wp, "openid", now.Add(time.Hour))
	wp.down(true)
	r := f.do(userInfo(ok))
	wantError(t, r, 503, "temporarily_unavailable")
	if r.header.Get("Retry-After") == "" || r.header.Get("WWW-Authenticate") != "" {
		t.Errorf("503 headers: %v", r.header)
	}
	wp.down(false)

	// Methods: GET and HEAD; OPTIONS is WordPress's.
	post := httptest.NewRequest(http.MethodPost, DefaultUserInfoPath, strings.NewReader("access_token="+ok))
	post.Header.Set("Content-Type", formType)
	if r := f.do(post); r.status != 405 || r.header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d %v", r.status, r.header)
	}
	if got := answeredAs(f, httptest.NewRequest(http.MethodOptions, DefaultUserInfoPath, nil)); got != "passed" {
		t.Errorf("OPTIONS: %s", got)
	}
}

func basic64(userpass string) string {
	id, secret, _ := strings.Cut(userpass, ":")
	return basic(id, secret)
}

// TestUserInfoUserCache: a user is read from WordPress once per few seconds;
// the token's row every time.
func TestUserInfoUserCache(t *testing.T) {
	f, wp := wpFixture(t, nil, nil)
	at := f.addToken(wp, "openid email", f.clock.Now().Add(time.Hour))
	for range 5 {
		if r := f.do(userInfo(at)); r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
	}
	if users, _ := wp.reads(); users != 1 {
		t.Errorf("%d reads of the user for 5 requests, want 1", users)
	}
	wp.mu.Lock()
	wp.users[1] = &User{ID: 1, Email: "new@example.com"}
	wp.mu.Unlock()
	f.clock.Add(userCacheTTL)
	if r := f.do(userInfo(at)); r.str("email") != "new@example.com" {
		t.Errorf("after %v: %s, want the user read again", userCacheTTL, r.body)
	}
	_ = wp.DeleteAccessToken(context.Background(), at)
	wantChallenge(t, f.do(userInfo(at)), 401, "invalid_token")

	c := ttlcache.New[int, int](time.Minute, 3)
	now := time.Now()
	for i := range 10 {
		c.Put(i, i, now)
		if c.Len() > 3 {
			t.Fatalf("%d entries, want at most 3", c.Len())
		}
	}
	if v, ok := c.Get(9, now.Add(59*time.Second)); !ok || v != 9 {
		t.Errorf("get = %d, %v", v, ok)
	}
	if _, ok := c.Get(9, now.Add(time.Minute)); ok {
		t.Error("an entry outlived its ttl")
	}
}

// downCheckStore is a store whose revocation check cannot answer when down.
type downCheckStore struct {
	store.Store
	down atomic.Bool
}

func (s *downCheckStore) CheckAccess(ctx context.Context, jti, familyID, clientID string) (store.AccessState, error) {
	if s.down.Load() {
		return store.AccessState{}, fmt.Errorf("%w: test outage", store.ErrUnavailable)
	}
	return s.Store.CheckAccess(ctx, jti, familyID, clientID)
}

func TestUserInfoJWT(t *testing.T) {
	mem := store.NewMemory()
	t.Cleanup(func() { _ = mem.Close() })
	st := &downCheckStore{Store: mem}
	f, wp := wpFixture(t, st, func(c *Config) { c.UserAccessTokens = UserAccessJWT })
	wp.users[7] = &User{ID: 7, Login: "alice", Email: "alice@example.com"}
	now := f.clock.Now()
	ctx := context.Background()
	if err := mem.CreateFamily(ctx, store.NewFamily{FamilyID: "fam1", Digest: "d1", ClientID: ccID, Subject: UserSubject(7),
		Scope: "openid email", IssuedAt: now, ExpiresAt: now.Add(time.Hour), FamilyExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	mint := func(sub, fid, scope string, iat time.Time) string {
		t.Helper()
		at, err := f.signer.Mint(tokens.AccessClaims{Issuer: issuer, Subject: sub, Audience: issuer, ClientID: ccID,
			IssuedAt: iat, ExpiresAt: iat.Add(time.Hour), JTI: tokens.NewID(16), Scope: scope, FamilyID: fid})
		if err != nil {
			t.Fatal(err)
		}
		return at
	}

	at := mint("7", "fam1", "openid email", now)
	if r := f.do(userInfo(at)); r.status != 200 || r.body != `{"id":7,"ID":7,"sub":7,"email":"alice@example.com"}` {
		t.Fatalf("JWT of user 7: %d %s", r.status, r.body)
	}
	noFamily := mint("7", "", "profile", now)
	if r := f.do(userInfo(noFamily)); r.status != 200 || r.str("username") != "alice" {
		t.Fatalf("JWT without a family: %d %s", r.status, r.body)
	}

	// Not a user's token: a client's own, a sub that is no user id,
	// another issuer's, expired.
	for name, tok := range map[string]string{
		"client's": wantToken(t, f.post(ccForm())).str("access_token"),
		"sub +7":   mint("+7", "", "openid", now),
		"sub 0":    mint("0", "", "openid", now),
		"expired":  mint("7", "", "openid", now.Add(-2*time.Hour)),
		"tampered": otherLastChar(at),
		"other issuer": func() string {
			tok, _ := f.signer.Mint(tokens.AccessClaims{Issuer: "https://other.example", Subject: "7", Audience: issuer,
				ClientID: ccID, IssuedAt: now, ExpiresAt: now.Add(time.Hour), JTI: tokens.NewID(16)})
			return tok
		}(),
	} {
		r := f.do(userInfo(tok))
		if r.status != 401 || r.str("error") != "invalid_token" {
			t.Errorf("%s token: %d %s", name, r.status, r.body)
		}
	}

	// The store cannot answer: 503, nothing cached.
	st.down.Store(true)
	wantError(t, f.do(userInfo(at)), 503, "temporarily_unavailable")
	st.down.Store(false)

	// Revoked: its jti, its family, its client's tokens.
	jti := mint("7", "", "openid", now)
	claims, _ := f.signer.Verify(jti, now)
	if err := mem.RevokeAccessToken(ctx, claims.JTI, claims.ExpiresAt); err != nil {
		t.Fatal(err)
	}
	wantChallenge(t, f.do(userInfo(jti)), 401, "invalid_token")
	if err := mem.RevokeFamily(ctx, "fam1"); err != nil {
		t.Fatal(err)
	}
	wantChallenge(t, f.do(userInfo(at)), 401, "invalid_token")
	if r := f.do(userInfo(noFamily)); r.status != 200 {
		t.Fatalf("another token of the user: %d %s", r.status, r.body)
	}
	if err := mem.RevokeClient(ctx, ccID, now.Add(time.Second), time.Hour); err != nil {
		t.Fatal(err)
	}
	wantChallenge(t, f.do(userInfo(noFamily)), 401, "invalid_token")
	if r := f.do(userInfo(mint("7", "", "openid", now.Add(2*time.Second)))); r.status != 200 {
		t.Errorf("a token issued after the client's revocation: %d %s", r.status, r.body)
	}
}

// TestUserInfoRoutes: every form WordPress routes to the resource route is
// the module's with WordPress, and PHP's without.
func TestUserInfoRoutes(t *testing.T) {
	f, _ := wpFixture(t, nil, nil)
	bare := newFixture(t, nil, nil)
	for _, c := range routeCases("resource") {
		if c.method != http.MethodPost || c.body != routeBody() {
			// Named in a form body: a POST, which the module answers 405.
			if got := f.do(c.request()); got.status != 405 && !c.unreadable {
				t.Errorf("POST %s %.60q: %d %s, want 405", c.target, c.body, got.status, got.body)
			}
			continue
		}
		r := httptest.NewRequest(http.MethodGet, "http://wp.example"+c.target, nil)
		res := f.do(r)
		if res.status != 401 || res.header.Get("WWW-Authenticate") != `Bearer realm="moserver"` {
			t.Errorf("GET %s = %d %v %s, want the userinfo endpoint's 401", c.target, res.status, res.header, res.body)
		}
		r = httptest.NewRequest(http.MethodGet, "http://wp.example"+c.target, nil)
		if got := answeredAs(bare, r); got != "passed" {
			t.Errorf("without WordPress, GET %s: answered by %s, want it passed on", c.target, got)
		}
	}
	for _, c := range routeNearMisses("resource") {
		r := c.request()
		r.Method, r.Body = http.MethodGet, http.NoBody
		if got := answeredAs(f, r); got != "passed" {
			t.Errorf("GET %s: answered by %s, want it passed on", c.target, got)
		}
	}
	// Naming it and another endpoint: refused, as for the others.
	wantError(t, f.do(httptest.NewRequest(http.MethodGet, "/wp-json/moserver/Resource?rest_route=/moserver/jwks", nil)),
		400, "invalid_request")
	// A configured path may not take its route, with WordPress.
	cfg := Config{Issuer: issuer, Clients: testClients(), Store: f.store, Signer: f.signer, TokenPath: "/wp-json/moserver/Resource/"}
	if _, err := New(cfg); err != nil {
		t.Errorf("without WordPress: %v", err)
	}
	cfg.WordPress = newMemWordPress()
	if _, err := New(cfg); err == nil {
		t.Error("token_path on the userinfo route: no error")
	}
}

// TestUserInfoDigitsClient: a client whose id looks like a user id gets no
// user's claims for its own tokens, and its users' tokens are theirs.
func TestUserInfoDigitsClient(t *testing.T) {
	const digitsID, digitsSecret = "1", "secret-of-client-one"
	f, wp := wpFixture(t, nil, func(c *Config) {
		cs := testClients()
		cs[digitsID] = &clients.Client{ID: digitsID, SecretDigest: clients.SecretDigest(digitsSecret),
			Scopes: clients.DefaultScopes, Grants: clients.DefaultGrants}
		c.Clients = cs
		c.UserAccessTokens = UserAccessJWT
	})
	wp.users[2] = &User{ID: 2, Login: "bob"}
	own := wantToken(t, f.post(url.Values{"grant_type": {"client_credentials"}, "client_id": {digitsID}, "client_secret": {digitsSecret}}))
	wantChallenge(t, f.do(userInfo(own.str("access_token"))), 401, "invalid_token")
	now := f.clock.Now()
	for _, user := range []string{"1", "2"} {
		at, err := f.signer.Mint(tokens.AccessClaims{Issuer: issuer, Subject: user, Audience: issuer, ClientID: digitsID,
			IssuedAt: now, ExpiresAt: now.Add(time.Hour), JTI: tokens.NewID(16), Scope: "openid"})
		if err != nil {
			t.Fatal(err)
		}
		if r := f.do(userInfo(at)); r.status != 200 || r.body != `{"id":`+user+`,"ID":`+user+`,"sub":`+user+`}` {
			t.Errorf("user %s's token of client %q: %d %s", user, digitsID, r.status, r.body)
		}
	}
}

// Unknown opaque tokens (each a scan of the plugin's unindexed table) are
// counted per address with the failure budget: past it that address gets
// 429 without a lookup, while its client authentication, other addresses
// and the right token from elsewhere are untouched.
func TestUserInfoUnknownTokensBudget(t *testing.T) {
	f, wp := wpFixture(t, nil, func(c *Config) { c.AuthFailureLimit = 3 })
	good := f.addToken(wp, "profile", time.Now().Add(time.Hour))
	from := func(addr, token string) response {
		return f.do(withAddr(userInfo(token), addr))
	}
	for range 3 {
		wantChallenge(t, from("203.0.113.80", newPluginToken()), 401, "invalid_token")
	}
	lookups := wp.accessLookups()
	for range 5 {
		if r := from("203.0.113.80", newPluginToken()); r.status != 429 {
			t.Fatalf("unknown token past the budget: %d %s, want 429", r.status, r.body)
		}
	}
	if n := wp.accessLookups() - lookups; n > 1 {
		t.Errorf("%d table lookups for 5 tokens past the budget, want at most 1", n)
	}
	wantToken(t, f.postFrom("203.0.113.80", noRefreshCC)) // client authentication counts apart
	wantChallenge(t, from("203.0.113.81", newPluginToken()), 401, "invalid_token")
	if r := from("203.0.113.81", good); r.status != 200 {
		t.Fatalf("the right token from another address: %d %s", r.status, r.body)
	}
}
