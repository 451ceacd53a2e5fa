package oauth

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/caddy-moserver/caddy-moserver/internal/clients"
	"github.com/caddy-moserver/caddy-moserver/internal/store"
	"github.com/caddy-moserver/caddy-moserver/internal/tokens"
)

const (
	issuer       = "https://wp.example/wp-json/moserver"
	ccID         = "LyiDhXKOJitbjnzUVOrFhHNxttLbYatF"
	ccSecret     = "lTZBHZKuIUEyrwpzpBzhEJWfHmNNGLuw"
	otherID      = "other-client"
	otherSecret  = "other secret+with%odd=chars"
	noRefreshID  = "no-refresh"
	noRefreshSec = "no-refresh-secret"
)

// clock is a settable time source for tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// fixture is a Server with three clients over a chosen store.
type fixture struct {
	t      testing.TB
	srv    *Server
	store  store.Store
	clock  *clock
	signer *tokens.Signer
	// passed records requests Handle left to the next handler.
	passed []*http.Request
	bodies []string
}

// testClients are the clients of the fixtures, with ScopeText set as the
// registries set it.
func testClients() clients.Static {
	cs := clients.Static{
		ccID: {ID: ccID, SecretDigest: clients.SecretDigest(ccSecret), Scopes: []string{"profile", "email"},
			Grants: clients.DefaultGrants, RefreshTokens: true, CORSOrigins: []string{"https://app.example"}},
		otherID: {ID: otherID, SecretDigest: clients.SecretDigest(otherSecret), Scopes: []string{"profile", "email", "write"},
			Grants: clients.DefaultGrants, RefreshTokens: true, Audience: "https://api.example", AccessTokenTTL: 10 * time.Minute},
		noRefreshID: {ID: noRefreshID, SecretDigest: clients.SecretDigest(noRefreshSec), Scopes: clients.DefaultScopes,
			Grants: []string{clients.GrantClientCredentials}},
	}
	for _, c := range cs {
		c.ScopeText = strings.Join(c.Scopes, " ")
	}
	return cs
}

func newFixture(t testing.TB, st store.Store, mod func(*Config)) *fixture {
	t.Helper()
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
	clk := &clock{now: time.Now().Truncate(time.Second)}
	cfg := Config{Issuer: issuer, Clients: testClients(), Store: st, Signer: signer, Now: clk.Now}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, srv: srv, store: st, clock: clk, signer: signer}
}

// ServeHTTP runs Handle and records what it passed on, as the next handler.
func (f *fixture) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.srv.Handle(w, r) {
		return
	}
	body, _ := io.ReadAll(r.Body)
	f.passed = append(f.passed, r)
	f.bodies = append(f.bodies, string(body))
	w.WriteHeader(http.StatusTeapot)
}

// response is a recorded answer.
type response struct {
	status int
	header http.Header
	body   string
	json   map[string]any
}

func (f *fixture) do(r *http.Request) response {
	f.t.Helper()
	rec := httptest.NewRecorder()
	f.ServeHTTP(rec, r)
	res := response{status: rec.Code, header: rec.Header(), body: rec.Body.String()}
	if strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") && res.body != "" {
		if err := json.Unmarshal(rec.Body.Bytes(), &res.json); err != nil {
			f.t.Fatalf("response is not JSON: %v: %q", err, res.body)
		}
	}
	return res
}

func formRequest(path string, v url.Values) *http.Request {
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(v.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}

func (f *fixture) post(v url.Values) response {
	f.t.Helper()
	return f.do(formRequest(DefaultTokenPath, v))
}

func basic(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret))
}

func (r response) str(name string) string {
	s, _ := r.json[name].(string)
	return s
}

// wantError checks an OAuth error response.
func wantError(t testing.TB, r response, status int, code string) {
	t.Helper()
	if r.status != status || r.str("error") != code {
		t.Fatalf("want %d %s, got %d %s", status, code, r.status, r.body)
	}
	wantNoStore(t, r)
}

func wantNoStore(t testing.TB, r response) {
	t.Helper()
	if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Pragma") != "no-cache" {
		t.Errorf("missing no-store headers: %v", r.header)
	}
}

// wantToken checks a successful token response and returns it.
func wantToken(t testing.TB, r response) response {
	t.Helper()
	if r.status != http.StatusOK || r.str("access_token") == "" {
		t.Fatalf("want a token, got %d %s", r.status, r.body)
	}
	if r.str("token_type") != "Bearer" {
		t.Errorf("token_type = %q", r.str("token_type"))
	}
	if _, ok := r.json["expires_in"].(float64); !ok {
		t.Errorf("expires_in is not a number: %s", r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json; charset=UTF-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	wantNoStore(t, r)
	return r
}

// verifyAccess parses an access token against the server's own JWKS.
func (f *fixture) verifyAccess(token string) jwt.Token {
	f.t.Helper()
	res := f.do(httptest.NewRequest(http.MethodGet, DefaultJWKSPath, nil))
	set, err := jwk.Parse([]byte(res.body))
	if err != nil {
		f.t.Fatalf("JWKS: %v: %s", err, res.body)
	}
	tok, err := jwt.Parse([]byte(token), jwt.WithKeySet(set), jwt.WithClock(jwt.ClockFunc(f.clock.Now)))
	if err != nil {
		f.t.Fatalf("access token does not verify against the JWKS: %v", err)
	}
	return tok
}

func ccForm(extra ...string) url.Values {
	v := url.Values{"grant_type": {"client_credentials"}, "client_id": {ccID}, "client_secret": {ccSecret}}
	for i := 0; i+1 < len(extra); i += 2 {
		v.Set(extra[i], extra[i+1])
	}
	return v
}

func refreshForm(token string, extra ...string) url.Values {
	v := url.Values{"grant_type": {"refresh_token"}, "client_id": {ccID}, "client_secret": {ccSecret}, "refresh_token": {token}}
	for i := 0; i+1 < len(extra); i += 2 {
		v.Set(extra[i], extra[i+1])
	}
	return v
}

// issueRefresh gets a first refresh token for the cc client.
func (f *fixture) issueRefresh() string {
	f.t.Helper()
	r := wantToken(f.t, f.post(ccForm()))
	rt := r.str("refresh_token")
	if rt == "" {
		f.t.Fatalf("no refresh token: %s", r.body)
	}
	return rt
}

func withAddr(r *http.Request, addr string) *http.Request {
	r.RemoteAddr = addr + ":40000"
	return r
}
