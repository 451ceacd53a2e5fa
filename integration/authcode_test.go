package integration

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/caddy-moserver/caddy-moserver/internal/testutil/caddyproc"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/mariadbtest"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/redistest"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/tcpproxy"
)

const callback = "http://127.0.0.1:18099/callback"

// newCode inserts a code row for the fixture's client and user, as the
// plugin does at authorize, and returns the code.
func (wp *wpFixture) newCode(t *testing.T, redirectURI, scope string, expires time.Time) string {
	t.Helper()
	code := mariadbtest.RandomToken(t) + "0123abcd"
	mariadbtest.InsertAuthCode(t, wp.db, "wp_", code, clientID, wp.user, redirectURI, expires, scope)
	return code
}

func exchangeValues(code string, extra ...string) url.Values {
	v := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {callback},
		"client_id": {clientID}, "client_secret": {clientSecret}}
	for i := 0; i+1 < len(extra); i += 2 {
		v.Set(extra[i], extra[i+1])
	}
	return v
}

// accessRows counts the plugin's access-token rows holding token.
func (wp *wpFixture) accessRows(t *testing.T, token string) int {
	t.Helper()
	var n int
	if err := wp.db.QueryRow("SELECT COUNT(*) FROM wp_moos_oauth_access_tokens WHERE access_token = ?", token).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestAuthCodeExchange: the plugin's codes are redeemed by the module, with
// real statuses, the id_token of the code's own user signed with the
// client's key, once: a second exchange is invalid_grant and revokes what
// the first one issued.
func TestAuthCodeExchange(t *testing.T) {
	wp := newWordPress(t)
	redisOpt := redisOptionFor(redisURL(t), redistest.Prefix(t))
	s := startWordPressSite(t, wp, redisOpt, "")
	soon := time.Now().Add(30 * time.Second)

	t.Run("openid", func(t *testing.T) {
		code := wp.newCode(t, callback, "openid profile email", soon)
		r := mustToken(t, s.form(t, tokenPath, exchangeValues(code)))
		if r.str("refresh_token") != "" {
			t.Errorf("a refresh token for openid without offline_access: %s", r.body)
		}
		if r.str("scope") != "openid profile email" || r.json["expires_in"] != float64(3600) {
			t.Errorf("scope or expires_in: %s", r.body)
		}
		at := r.str("access_token")
		if !hex32.MatchString(at) || wp.accessRows(t, at) != 1 {
			t.Fatalf("access token %q is not a row of the plugin's table", at)
		}
		idt, err := jwt.Parse([]byte(r.str("id_token")), jwt.WithKey(jwa.RS256, &wp.key.PublicKey),
			jwt.WithIssuer(s.base+"/wp-json/moserver/"+clientID), jwt.WithAudience(clientID))
		if err != nil {
			t.Fatalf("id_token: %v", err)
		}
		if idt.Subject() != fmt.Sprint(wp.user) {
			t.Errorf("id_token sub %q, want the code's user %d", idt.Subject(), wp.user)
		}
		if _, ok := idt.Get("nonce"); ok {
			t.Errorf("a nonce in the id_token of a code bound to none")
		}
		if headerKid(t, r.str("id_token")) != clientID {
			t.Errorf("id_token kid %q", headerKid(t, r.str("id_token")))
		}

		// A second exchange: invalid_grant, and the access token is gone.
		mustError(t, s.form(t, tokenPath, exchangeValues(code)), 400, "invalid_grant")
		if wp.accessRows(t, at) != 0 {
			t.Error("the first exchange's access token survived a second exchange of its code")
		}
	})

	t.Run("opaque access token revoked (RFC 7009)", func(t *testing.T) {
		code := wp.newCode(t, callback, "openid profile", soon)
		at := mustToken(t, s.form(t, tokenPath, exchangeValues(code))).str("access_token")
		rev := s.form(t, "/wp-json/moserver/revoke", url.Values{"token": {at}, "client_id": {clientID}, "client_secret": {clientSecret}})
		if rev.status != 200 || wp.accessRows(t, at) != 0 {
			t.Fatalf("revocation of an opaque access token: %d, %d rows left", rev.status, wp.accessRows(t, at))
		}
		req, _ := http.NewRequest(http.MethodGet, s.base+"/wp-json/moserver/resource", nil)
		req.Header.Set("Authorization", "Bearer "+at)
		if r := send(t, req); r.status != 401 {
			t.Fatalf("userinfo with a revoked token: %d %s", r.status, r.body)
		}
	})

	t.Run("refresh family revoked by a second exchange", func(t *testing.T) {
		code := wp.newCode(t, callback, "profile email", soon)
		r := mustToken(t, s.form(t, tokenPath, exchangeValues(code)))
		rt := r.str("refresh_token")
		if rt == "" || r.str("id_token") != "" {
			t.Fatalf("want a refresh token and no id_token: %s", r.body)
		}
		rt = mustToken(t, s.form(t, tokenPath, refreshValues(rt))).str("refresh_token") // one of ours: it rotates
		mustError(t, s.form(t, tokenPath, exchangeValues(code)), 400, "invalid_grant")
		mustError(t, s.form(t, tokenPath, refreshValues(rt)), 400, "invalid_grant")
	})

	t.Run("openid offline_access gets a refresh token", func(t *testing.T) {
		code := wp.newCode(t, callback, "openid offline_access profile", soon)
		r := mustToken(t, s.form(t, tokenPath, exchangeValues(code, "scope", "openid offline_access")))
		if r.str("refresh_token") == "" || r.str("id_token") == "" || r.str("scope") != "openid offline_access" {
			t.Fatalf("want a narrowed scope, a refresh token and an id_token: %s", r.body)
		}
	})

	t.Run("errors", func(t *testing.T) {
		code := wp.newCode(t, callback, "profile email", soon)
		mustError(t, s.form(t, tokenPath, exchangeValues("")), 400, "invalid_request")
		mustError(t, s.form(t, tokenPath, exchangeValues(code, "client_secret", "wrong")), 401, "invalid_client")
		mustError(t, s.form(t, tokenPath, exchangeValues(strings.ToUpper(code))), 400, "invalid_grant")
		mustError(t, s.form(t, tokenPath, exchangeValues("nonsense")), 400, "invalid_grant")
		mustError(t, s.form(t, tokenPath, exchangeValues(code, "redirect_uri", callback+"x")), 400, "invalid_grant")
		mustError(t, s.form(t, tokenPath, exchangeValues(code, "scope", "profile email openid")), 400, "invalid_scope")
		expired := wp.newCode(t, callback, "profile", time.Now().Add(-2*time.Second))
		mustError(t, s.form(t, tokenPath, exchangeValues(expired)), 400, "invalid_grant")
		// Failed attempts leave the code usable.
		mustToken(t, s.form(t, tokenPath, exchangeValues(code)))
	})

	t.Run("another client's code", func(t *testing.T) {
		mariadbtest.InsertClient(t, wp.db, "wp_", mariadbtest.Client{Name: "Other", ID: "OtherClientIdOtherClientIdOtherC",
			Secret: "OtherSecretOtherSecretOtherSecre", RedirectURI: callback})
		code := wp.newCode(t, callback, "profile", soon)
		other := exchangeValues(code, "client_id", "OtherClientIdOtherClientIdOtherC", "client_secret", "OtherSecretOtherSecretOtherSecre")
		deadline := time.Now().Add(5 * time.Second) // the registry re-reads its clients every second
		for {
			r := s.form(t, tokenPath, other)
			if r.status != 401 || time.Now().After(deadline) {
				mustError(t, r, 400, "invalid_grant")
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		mustToken(t, s.form(t, tokenPath, exchangeValues(code)))
	})

	t.Run("no redirect_uri in the row", func(t *testing.T) {
		code := wp.newCode(t, "", "profile", soon)
		v := exchangeValues(code)
		v.Del("redirect_uri")
		mustToken(t, s.form(t, tokenPath, v))
	})
}

// TestAuthCodeExactlyOnce: 50 concurrent exchanges of one code on two
// instances give exactly one 200; the others are invalid_grant.
func TestAuthCodeExactlyOnce(t *testing.T) {
	wp := newWordPress(t)
	redisOpt := redisOptionFor(redisURL(t), redistest.Prefix(t))
	sites := []*site{startWordPressSite(t, wp, redisOpt, ""), startWordPressSite(t, wp, redisOpt, "")}
	for round := range 3 {
		code := wp.newCode(t, callback, "openid profile email", time.Now().Add(30*time.Second))
		var wg sync.WaitGroup
		var mu sync.Mutex
		counts := map[string]int{}
		start := make(chan struct{})
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				r := sites[i%2].form(t, tokenPath, exchangeValues(code))
				mu.Lock()
				counts[fmt.Sprintf("%d %s", r.status, r.str("error"))]++
				mu.Unlock()
			}()
		}
		close(start)
		wg.Wait()
		if counts["200 "] != 1 || counts["400 invalid_grant"] != 49 {
			t.Fatalf("round %d: %v; want exactly one 200 and 49 invalid_grant", round, counts)
		}
	}
}

// pluginAuthorize stands in for the plugin's authorize answer after login
// and consent: a code row for the user named by X-Test-User (the login
// cookie, for the plugin), and a 302 to the redirect URI with the code.
type pluginAuthorize struct {
	t    *testing.T
	wp   *wpFixture
	mu   sync.Mutex
	seen int
}

func (p *pluginAuthorize) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.seen++
	p.mu.Unlock()
	if r.URL.Path != "/wp-json/moserver/authorize" {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	user, _ := strconv.ParseInt(r.Header.Get("X-Test-User"), 10, 64)
	code := mariadbtest.RandomToken(p.t) + "fedc9876"
	scope := q.Get("scope")
	if scope == "" {
		scope = "profile email"
	}
	mariadbtest.InsertAuthCode(p.t, p.wp.db, "wp_", code, q.Get("client_id"), user, q.Get("redirect_uri"), time.Now().Add(30*time.Second), scope)
	to := q.Get("redirect_uri")
	if to == "" {
		to = callback
	}
	v := url.Values{"code": {code}}
	if st := q.Get("state"); st != "" {
		v.Set("state", st)
	}
	w.Header().Set("Location", to+"?"+v.Encode())
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusFound)
}

func (p *pluginAuthorize) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen
}

// startPluginSite runs Caddy with the module in front of the stand-in.
func startPluginSite(t *testing.T, wp *wpFixture, redisOpt, moserverExtra, wordpressExtra string) (*site, *pluginAuthorize) {
	t.Helper()
	plugin := &pluginAuthorize{t: t, wp: wp}
	up := httptest.NewServer(plugin)
	t.Cleanup(up.Close)
	port := caddyproc.FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cfg := fmt.Sprintf(`http://127.0.0.1:%d {
	moserver {
		issuer http://127.0.0.1:%d/wp-json/moserver
		%s
		%s
		wordpress "%s" {
			table_prefix wp_
			refresh_interval 1s
			%s
		}
	}
	reverse_proxy %s
}
`, port, port, redisOpt, moserverExtra, wp.dsn, wordpressExtra, up.URL)
	return &site{Instance: caddyproc.Start(t, cfg, base+"/", ""), base: base}, plugin
}

// authorize sends an authorize request as user's browser and returns the
// redirect's query.
func (s *site) authorize(t *testing.T, user int64, q url.Values) (int, url.Values) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.base+"/wp-json/moserver/authorize?"+q.Encode(), nil)
	req.Header.Set("X-Test-User", strconv.FormatInt(user, 10))
	res, err := noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	loc, err := url.Parse(res.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, loc.Query()
}

var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func authorizeQuery(extra ...string) url.Values {
	q := url.Values{"client_id": {clientID}, "redirect_uri": {callback}, "response_type": {"code"},
		"scope": {"openid profile email"}, "state": {"st-" + fmt.Sprint(time.Now().UnixNano())}}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	return q
}

// pkcePair is a verifier and its S256 challenge.
func pkcePair(seed string) (verifier, challenge string) {
	verifier = strings.Repeat(seed, 64)[:64]
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

// TestAuthorizeBindsNonceAndPKCE: the module binds what an authorize request
// carried to the code PHP answers it with; each user's id_token carries
// their own nonce, however the logins interleave; PKCE is checked at the
// exchange; a plain challenge never reaches PHP.
func TestAuthorizeBindsNonceAndPKCE(t *testing.T) {
	wp := newWordPress(t)
	other := mariadbtest.InsertUser(t, wp.db, "wp_", mariadbtest.User{Login: "bob", Email: "bob@example.com",
		Nicename: "bob", DisplayName: "Bob", Registered: time.Now()})
	s, plugin := startPluginSite(t, wp, redisOptionFor(redisURL(t), redistest.Prefix(t)), "", "")

	t.Run("interleaved users get their own id_token and nonce", func(t *testing.T) {
		nonceA, nonceB := `n-a'"\x`, "n-b"
		_, a := s.authorize(t, wp.user, authorizeQuery("nonce", nonceA))
		_, b := s.authorize(t, other, authorizeQuery("nonce", nonceB))
		for _, c := range []struct {
			code, nonce string
			user        int64
		}{{b.Get("code"), nonceB, other}, {a.Get("code"), nonceA, wp.user}} {
			r := mustToken(t, s.form(t, tokenPath, exchangeValues(c.code)))
			idt, err := jwt.Parse([]byte(r.str("id_token")), jwt.WithKey(jwa.RS256, &wp.key.PublicKey))
			if err != nil {
				t.Fatal(err)
			}
			nonce, _ := idt.Get("nonce")
			if idt.Subject() != fmt.Sprint(c.user) || nonce != c.nonce {
				t.Errorf("id_token sub %q nonce %v; want %d and %q", idt.Subject(), nonce, c.user, c.nonce)
			}
		}
	})

	t.Run("PKCE", func(t *testing.T) {
		verifier, challenge := pkcePair("abcdefghij-._~0123456789")
		status, q := s.authorize(t, wp.user, authorizeQuery("code_challenge", challenge, "code_challenge_method", "S256"))
		code := q.Get("code")
		if status != http.StatusFound || code == "" {
			t.Fatalf("authorize: %d %v", status, q)
		}
		mustError(t, s.form(t, tokenPath, exchangeValues(code)), 400, "invalid_grant")
		wrong, _ := pkcePair("zyxwvutsrq")
		mustError(t, s.form(t, tokenPath, exchangeValues(code, "code_verifier", wrong)), 400, "invalid_grant")
		mustToken(t, s.form(t, tokenPath, exchangeValues(code, "code_verifier", verifier)))
	})

	t.Run("plain is refused before PHP", func(t *testing.T) {
		before := plugin.count()
		q := authorizeQuery("code_challenge", strings.Repeat("a", 43), "code_challenge_method", "plain")
		status, back := s.authorize(t, wp.user, q)
		if status != http.StatusFound || back.Get("error") != "invalid_request" || back.Get("state") != q.Get("state") || back.Get("code") != "" {
			t.Fatalf("plain challenge: %d %v", status, back)
		}
		if plugin.count() != before {
			t.Fatal("the refused authorize request reached PHP")
		}
	})
}

// TestRequirePKCE: with require_pkce, an authorize request without a
// challenge is refused at the edge (to a registered redirect URI, or with
// a 400), and a code minted without one is not redeemed; a public client
// logs in with PKCE and no secret.
func TestRequirePKCE(t *testing.T) {
	wp := newWordPress(t)
	s, plugin := startPluginSite(t, wp, redisOptionFor(redisURL(t), redistest.Prefix(t)), "require_pkce", "public_clients "+clientID)

	before := plugin.count()
	status, back := s.authorize(t, wp.user, authorizeQuery())
	if status != http.StatusFound || back.Get("error") != "invalid_request" || plugin.count() != before {
		t.Fatalf("authorize without a challenge: %d %v (reached PHP: %v)", status, back, plugin.count() != before)
	}
	req, _ := http.NewRequest(http.MethodGet, s.base+"/wp-json/moserver/authorize?"+authorizeQuery("redirect_uri", "https://evil.example/cb").Encode(), nil)
	res, err := noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest || res.Header.Get("Location") != "" {
		t.Fatalf("an unregistered redirect URI: %d, Location %q; want a 400", res.StatusCode, res.Header.Get("Location"))
	}
	unbound := wp.newCode(t, callback, "profile", time.Now().Add(30*time.Second))
	public := exchangeValues(unbound)
	public.Del("client_secret")
	mustError(t, s.form(t, tokenPath, public), 400, "invalid_grant")

	verifier, challenge := pkcePair("0123456789abcdef")
	_, q := s.authorize(t, wp.user, authorizeQuery("code_challenge", challenge, "code_challenge_method", "S256", "scope", "profile email"))
	v := exchangeValues(q.Get("code"), "code_verifier", verifier)
	v.Del("client_secret")
	r := mustToken(t, s.form(t, tokenPath, v))
	// A public client refreshes without a secret, and never gets client credentials.
	rv := refreshValues(r.str("refresh_token"))
	rv.Del("client_secret")
	mustToken(t, s.form(t, tokenPath, rv))
	cc := ccValues()
	cc.Del("client_secret")
	if r := s.form(t, tokenPath, cc); r.status == 200 {
		t.Fatalf("a public client got client credentials: %s", r.body)
	}
}

// TestAuthorizeBindingOutage: a code whose binding cannot be stored never
// goes out (temporarily_unavailable, with the state); an exchange whose
// binding cannot be read is a 503 that leaves the code usable.
func TestAuthorizeBindingOutage(t *testing.T) {
	wp := newWordPress(t)
	proxy := tcpproxy.Start(t, "tcp", redistest.StartServer(t).Addr)
	s, _ := startPluginSite(t, wp, redisOptionFor("redis://"+proxy.Addr()+"/0", redistest.Prefix(t))+"\n\t\tstore_timeout 500ms", "", "")
	_, q := s.authorize(t, wp.user, authorizeQuery("nonce", "n1"))
	code := q.Get("code")

	proxy.SetDown(true)
	st := authorizeQuery("nonce", "n2")
	status, back := s.authorize(t, wp.user, st)
	if status != http.StatusFound || back.Get("error") != "temporarily_unavailable" || back.Get("code") != "" || back.Get("state") != st.Get("state") {
		t.Fatalf("authorize while the store is down: %d %v", status, back)
	}
	mustError(t, s.form(t, tokenPath, exchangeValues(code)), 503, "temporarily_unavailable")
	proxy.SetDown(false)
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := s.form(t, tokenPath, exchangeValues(code))
		if r.status == 200 {
			break
		}
		if r.status != 503 || time.Now().After(deadline) {
			t.Fatalf("after the store came back: %d %s", r.status, r.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// codeIndexes counts the indexes on the code column of the plugin's table.
func (wp *wpFixture) codeIndexes(t *testing.T) int {
	t.Helper()
	var n int
	if err := wp.db.QueryRow("SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE()" +
		" AND TABLE_NAME = 'wp_moos_oauth_authorization_codes' AND COLUMN_NAME = 'authorization_code'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestIndexTables: with index_tables the module indexes the plugin's code
// table at start and exchanges keep working; without it the tables are
// left as they are and the log says what that costs.
func TestIndexTables(t *testing.T) {
	redisOpt := redisOptionFor(redisURL(t), redistest.Prefix(t))

	plain := newWordPress(t)
	s := startWordPressSite(t, plain, redisOpt, "")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.Logs(), "index_tables adds the indexes") {
		if time.Now().After(deadline) {
			t.Fatalf("no warning about the unindexed tables in the log:\n%s", s.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := plain.codeIndexes(t); n != 0 {
		t.Fatalf("without index_tables the code table got %d indexes", n)
	}

	wp := newWordPress(t)
	s = startWordPressSite(t, wp, redisOpt, "index_tables")
	deadline = time.Now().Add(10 * time.Second)
	for wp.codeIndexes(t) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("index_tables: the code table has no index after 10 s; log:\n%s", s.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	code := wp.newCode(t, callback, "profile email", time.Now().Add(30*time.Second))
	mustToken(t, s.form(t, tokenPath, exchangeValues(code)))
	mustError(t, s.form(t, tokenPath, exchangeValues(code)), 400, "invalid_grant")
	mustError(t, s.form(t, tokenPath, exchangeValues(strings.ToUpper(code))), 400, "invalid_grant")
}
