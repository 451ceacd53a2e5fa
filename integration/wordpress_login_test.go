//go:build linux

package integration

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/caddy-moserver/caddy-moserver/internal/testutil/caddyproc"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/mariadbtest"
)

// TestWordPressLogin logs users in through the real WordPress (see
// TestWordPressE2E) behind the built Caddy, as a browser does: authorize,
// wp-login.php, the consent page, its allow form, the follow-up authorize
// that answers with the code, then the code's exchange at the module. The
// plugin's authorize step is played by a must-use plugin
// (testdata/wordpress/mu-plugins/moserver-e2e-authorize.php) that does what
// the plugin does there: the login redirect, the consent page and its user
// meta, the code row, the 302 with code and state. Everything between the
// browser and PHP goes through the module, which binds the nonce and the PKCE
// challenge of the request PHP answers with a code.
func TestWordPressLogin(t *testing.T) {
	wp := startWordPress(t)
	callbackURI := wp.base + "/callback"
	mariadbtest.InsertClient(t, wp.db, "wp_", mariadbtest.Client{Name: "Login Client", ID: clientID, Secret: clientSecret,
		RedirectURI: callbackURI})
	key := insertClientKey(t, wp)
	bob, bobPassword := wp.addUser(t, "bob", "bob@example.com")
	caddyproc.Start(t, wp.caddyfile(t, ""), wp.base+"/")

	admin := wpUser{id: wp.admin, login: "admin", password: wp.adminPassword, email: "admin@example.com"}
	bobUser := wpUser{id: bob, login: "bob", password: bobPassword, email: "bob@example.com"}

	// exchange redeems a code at the module's token endpoint.
	exchange := func(t *testing.T, code, verifier string) reply {
		t.Helper()
		v := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {callbackURI},
			"client_id": {clientID}, "client_secret": {clientSecret}}
		if verifier != "" {
			v.Set("code_verifier", verifier)
		}
		return (&e2eClient{t: t, base: wp.base}).form(tokenPath, v)
	}
	// checkTokens checks a successful exchange of a code of user's, whose
	// authorize request carried nonce, and returns its access token.
	checkTokens := func(t *testing.T, r reply, user wpUser, nonce string) string {
		t.Helper()
		r = mustToken(t, r)
		if r.str("scope") != "openid profile email" || r.json["expires_in"] != float64(3600) {
			t.Errorf("scope %q, expires_in %v; want the code's scope and 3600", r.str("scope"), r.json["expires_in"])
		}
		if _, ok := r.json["refresh_token"]; ok {
			t.Errorf("a refresh token for openid without offline_access: %s", r.body)
		}
		at := r.str("access_token")
		var client, scope string
		var rowUser int64
		err := wp.db.QueryRow("SELECT client_id, user_id, scope FROM wp_moos_oauth_access_tokens WHERE access_token = ?", at).
			Scan(&client, &rowUser, &scope)
		if err != nil {
			t.Fatalf("access token %q is not a row of wp_moos_oauth_access_tokens: %v", at, err)
		}
		if client != clientID || rowUser != user.id || scope != "openid profile email" {
			t.Errorf("access-token row: client %q user %d scope %q; want %q %d %q", client, rowUser, scope, clientID, user.id, "openid profile email")
		}
		idt, err := jwt.Parse([]byte(r.str("id_token")), jwt.WithKey(jwa.RS256, &key.PublicKey),
			jwt.WithIssuer(wp.base+"/wp-json/moserver/"+clientID), jwt.WithAudience(clientID))
		if err != nil {
			t.Fatalf("id_token does not verify with the client's key (issuer, audience, expiry): %v\n%s", err, r.str("id_token"))
		}
		if idt.Subject() != strconv.FormatInt(user.id, 10) {
			t.Errorf("id_token sub %q, want %s's user id %d", idt.Subject(), user.login, user.id)
		}
		if got, _ := idt.Get("nonce"); got != nonce {
			t.Errorf("id_token nonce %q, want the one %s's authorize request carried, %q", got, user.login, nonce)
		}
		if got, _ := idt.Get("email"); got != user.email {
			t.Errorf("id_token email %q, want %s's, %q", got, user.login, user.email)
		}
		return at
	}

	t.Run("login, consent, code, exchange", func(t *testing.T) {
		verifier, challenge := pkcePair("login-verifier_0123456789.~")
		// No ' " or \ in the nonce: the plugin's consent round trip sends
		// the follow-up request, whose nonce the module binds, with them
		// backslash-escaped (84).
		nonce := "n-" + mariadbtest.RandomToken(t)
		// WordPress slashes $_GET; the plugin unslashes state, which comes
		// back byte for byte (85).
		state := `s p'q"r&t=u~v\w ` + mariadbtest.RandomToken(t)
		f := newAuthFlow(t, wp, admin, url.Values{"response_type": {"code"}, "client_id": {clientID},
			"redirect_uri": {callbackURI}, "scope": {"openid profile email"}, "state": {state}, "nonce": {nonce},
			"code_challenge": {challenge}, "code_challenge_method": {"S256"}})
		code := f.run()
		wp.checkCodeRow(t, code, admin.id, callbackURI, "openid profile email")

		mustError(t, exchange(t, code, ""), 400, "invalid_grant")
		wrong, _ := pkcePair("another-verifier-0123456789")
		mustError(t, exchange(t, code, wrong), 400, "invalid_grant")
		at := checkTokens(t, exchange(t, code, verifier), admin, nonce)

		mustError(t, exchange(t, code, verifier), 400, "invalid_grant")
		var left int
		if err := wp.db.QueryRow("SELECT COUNT(*) FROM wp_moos_oauth_access_tokens WHERE access_token = ?", at).Scan(&left); err != nil || left != 0 {
			t.Errorf("the first exchange's access-token row survived a second exchange of its code (%d rows, %v)", left, err)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		// An unknown client or an unregistered redirect URI: the plugin's
		// error, before the login redirect (73, 74), and no redirect at all.
		c := &e2eClient{t: t, base: wp.base}
		for _, bad := range []struct{ name, value, error string }{
			{"client_id", "NoSuchClientNoSuchClientNoSuchCl", "invalid_client"},
			{"redirect_uri", "https://evil.example/cb", "redirect_uri_mismatch"},
		} {
			q := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {callbackURI},
				"scope": {"openid"}, "state": {"st"}}
			q.Set(bad.name, bad.value)
			r := c.get("/wp-json/moserver/authorize?" + q.Encode())
			if r.status != 200 || r.str("error") != bad.error || r.header.Get("Location") != "" {
				t.Errorf("authorize with %s=%s: %d %s, Location %q; want 200 %s and no redirect",
					bad.name, bad.value, r.status, r.body, r.header.Get("Location"), bad.error)
			}
		}
		// Deny at the consent page: the client hears so (82), and no code.
		f := newAuthFlow(t, wp, admin, url.Values{"response_type": {"code"}, "client_id": {clientID},
			"redirect_uri": {callbackURI}, "scope": {"openid profile email"}, "state": {"st-deny"}, "nonce": {"n-deny"}})
		f.toLogin()
		f.logIn()
		f.toConsent()
		_, fields := formFields(t, f.page, `name="mo_oauth_server_authorize" value="deny"`)
		res, body := f.do(http.MethodPost, f.next, fields)
		if loc := f.redirect("denying", res, body); loc != callbackURI+"?error=Authorization+was+denied+by+the+user." {
			t.Errorf("deny redirects to %q, want the plugin's error at the registered redirect URI", loc)
		}
	})

	t.Run("two users interleaved", func(t *testing.T) {
		type login struct {
			flow            *authFlow
			user            wpUser
			nonce, verifier string
		}
		var logins []*login
		for _, u := range []wpUser{admin, bobUser} {
			verifier, challenge := pkcePair(u.login + "-" + mariadbtest.RandomToken(t))
			nonce := u.login + "-nonce-" + mariadbtest.RandomToken(t)
			q := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {callbackURI},
				"scope": {"openid profile email"}, "state": {u.login + "-state"}, "nonce": {nonce},
				"code_challenge": {challenge}, "code_challenge_method": {"S256"}}
			logins = append(logins, &login{flow: newAuthFlow(t, wp, u, q), user: u, nonce: nonce, verifier: verifier})
		}
		// Each step for admin, then for bob, so that every request of one
		// login falls between two of the other's.
		for _, step := range []func(*authFlow){(*authFlow).toLogin, (*authFlow).logIn, (*authFlow).toConsent, (*authFlow).allow} {
			for _, l := range logins {
				step(l.flow)
			}
		}
		codes := make([]string, len(logins))
		for i, l := range logins {
			codes[i] = l.flow.toCode()
			wp.checkCodeRow(t, codes[i], l.user.id, callbackURI, "openid profile email")
		}
		// Exchanged in the other order.
		for i := len(logins) - 1; i >= 0; i-- {
			l := logins[i]
			checkTokens(t, exchange(t, codes[i], l.verifier), l.user, l.nonce)
		}
	})
}

// wpUser is a WordPress user who logs in at wp-login.php.
type wpUser struct {
	id                     int64
	login, password, email string
}

// insertClientKey gives the client an RS256 key pair, as the plugin does
// when the client is created, and returns it.
func insertClientKey(t *testing.T, wp *wordpressSite) *rsa.PrivateKey {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	mariadbtest.InsertPublicKey(t, wp.db, "wp_", clientID, "RS256",
		string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})),
		string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})))
	return key
}

var addedUserLine = regexp.MustCompile(`(?m)^moserver-e2e: user_id=(\d+)$`)

// addUser creates a WordPress user (a subscriber) with WordPress's own
// wp_insert_user, run by the php CLI on the site's tree, and returns its id
// and password.
func (wp *wordpressSite) addUser(t *testing.T, login, email string) (int64, string) {
	t.Helper()
	password := mariadbtest.RandomToken(t)
	const script = `require $argv[1] . '/wp-load.php';
$id = wp_insert_user( array( 'user_login' => $argv[2], 'user_email' => $argv[3], 'user_pass' => $argv[4], 'display_name' => $argv[2] ) );
if ( is_wp_error( $id ) ) {
	fwrite( STDERR, $id->get_error_message() . "\n" );
	exit( 1 );
}
echo 'moserver-e2e: user_id=' . $id . "\n";`
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, wp.php, "-r", script, "--", wp.tree, login, email, password)
	cmd.Dir = wp.tree
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	m := addedUserLine.FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("creating the WordPress user %s: %v\n%.4000s", login, err, out)
	}
	id, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return id, password
}

// checkCodeRow checks the plugin's code row PHP wrote for code (fixtures 64,
// 81): its shape, the logged-in user, the redirect URI and scope as sent, an
// expiry 30 s ahead and no id_token.
func (wp *wordpressSite) checkCodeRow(t *testing.T, code string, user int64, redirectURI, scope string) {
	t.Helper()
	if !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(code) {
		t.Errorf("code %q is not 40 lowercase hex characters", code)
	}
	var client, rowRedirect, rowScope, idToken string
	var rowUser int64
	var expires time.Time
	err := wp.db.QueryRow("SELECT client_id, user_id, redirect_uri, expires, scope, id_token FROM wp_moos_oauth_authorization_codes WHERE authorization_code = ?", code).
		Scan(&client, &rowUser, &rowRedirect, &expires, &rowScope, &idToken)
	if err != nil {
		t.Fatalf("no code row for %q: %v", code, err)
	}
	if client != clientID || rowUser != user || rowRedirect != redirectURI || rowScope != scope || idToken != "" {
		t.Errorf("code row: client %q user %d redirect_uri %q scope %q id_token %q; want %q %d %q %q %q",
			client, rowUser, rowRedirect, rowScope, idToken, clientID, user, redirectURI, scope, "")
	}
	if d := time.Until(expires); d < 20*time.Second || d > 31*time.Second {
		t.Errorf("code row expires %v (in %v), want 30 s after issue (UTC)", expires, d.Round(time.Second))
	}
}

// authFlow is one browser (its own cookie jar, no automatic redirects)
// going through an authorize request step by step; each step checks what
// the browser got and remembers where it goes next.
type authFlow struct {
	t      *testing.T
	wp     *wordpressSite
	user   wpUser
	q      url.Values // the authorize request's query
	client *http.Client
	next   string // the URL the browser goes to next
	page   string // the last page's body
}

func newAuthFlow(t *testing.T, wp *wordpressSite, user wpUser, q url.Values) *authFlow {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &authFlow{t: t, wp: wp, user: user, q: q,
		client: &http.Client{Jar: jar, Timeout: 15 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		next: wp.base + "/wp-json/moserver/authorize?" + q.Encode()}
}

// run goes through every step and returns the code.
func (f *authFlow) run() string {
	f.toLogin()
	f.logIn()
	f.toConsent()
	f.allow()
	return f.toCode()
}

func (f *authFlow) do(method, to string, form url.Values) (*http.Response, string) {
	f.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, to, body)
	if err != nil {
		f.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	res, err := f.client.Do(req)
	if err != nil {
		f.t.Fatalf("%s: %s %s: %v", f.user.login, method, to, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		f.t.Fatalf("%s: %s %s: reading the body: %v", f.user.login, method, to, err)
	}
	return res, string(b)
}

// redirect checks that res is a 302 and returns its Location.
func (f *authFlow) redirect(what string, res *http.Response, body string) string {
	f.t.Helper()
	loc := res.Header.Get("Location")
	if res.StatusCode != http.StatusFound || loc == "" {
		f.t.Fatalf("%s: %s: %d, Location %q, want a redirect:\n%.2000s", f.user.login, what, res.StatusCode, loc, body)
	}
	return loc
}

// toLogin: the authorize request without a login cookie is sent to
// wp-login.php, with the whole authorize URL to come back to (60).
func (f *authFlow) toLogin() {
	f.t.Helper()
	authorizeURL := f.next
	res, body := f.do(http.MethodGet, authorizeURL, nil)
	loc := f.redirect("authorize before login", res, body)
	to, err := url.Parse(loc)
	if err != nil || to.Scheme+"://"+to.Host+to.Path != f.wp.base+"/wp-login.php" || to.Query().Get("redirect_to") != authorizeURL {
		f.t.Fatalf("%s: authorize before login redirects to %q, want wp-login.php with redirect_to=%q", f.user.login, loc, authorizeURL)
	}
	res, f.page = f.do(http.MethodGet, loc, nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(f.page, `name="log"`) {
		f.t.Fatalf("%s: GET %s: %d, want WordPress's login form:\n%.2000s", f.user.login, loc, res.StatusCode, f.page)
	}
	f.next = authorizeURL
}

// logIn posts the login form with the user's credentials; WordPress sends
// the browser back to the authorize URL.
func (f *authFlow) logIn() {
	f.t.Helper()
	action, fields := formFields(f.t, f.page, `id="loginform"`)
	if fields.Get("redirect_to") != f.next {
		f.t.Errorf("%s: the login form's redirect_to is %q, want the authorize URL %q", f.user.login, fields.Get("redirect_to"), f.next)
	}
	fields.Set("log", f.user.login)
	fields.Set("pwd", f.user.password)
	res, body := f.do(http.MethodPost, action, fields)
	loc := f.redirect("logging in", res, body)
	if loc != f.next {
		f.t.Fatalf("%s: after logging in, redirected to %q, want the authorize URL %q", f.user.login, loc, f.next)
	}
}

// toConsent: the logged-in user's authorize request gets the consent page.
func (f *authFlow) toConsent() {
	f.t.Helper()
	var res *http.Response
	res, f.page = f.do(http.MethodGet, f.next, nil)
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(f.page, `name="mo_oauth_server_authorize" value="allow"`) {
		f.t.Fatalf("%s: authorize after login: %d %q, want the consent page:\n%.2000s", f.user.login, res.StatusCode,
			res.Header.Get("Content-Type"), f.page)
	}
}

// allow posts the consent page's allow form to the page's own URL (its
// action is ""), and is sent back to authorize with prompt=allow (62).
func (f *authFlow) allow() {
	f.t.Helper()
	_, fields := formFields(f.t, f.page, `name="mo_oauth_server_authorize" value="allow"`)
	res, body := f.do(http.MethodPost, f.next, fields)
	loc := f.redirect("allowing", res, body)
	to, err := url.Parse(loc)
	if err != nil {
		f.t.Fatal(err)
	}
	want := url.Values{"prompt": {"allow"}}
	for k, v := range f.q {
		want[k] = v
	}
	if got := to.Query(); to.Scheme+"://"+to.Host+to.Path != f.wp.base+"/wp-json/moserver/authorize" || got.Encode() != want.Encode() {
		f.t.Fatalf("%s: the allow form redirects to %q, want authorize with the request's parameters and prompt=allow", f.user.login, loc)
	}
	f.next = loc
}

// toCode: the follow-up authorize request is answered with the plugin's
// code redirect (63): to the redirect URI, with the code and the state sent.
func (f *authFlow) toCode() string {
	f.t.Helper()
	res, body := f.do(http.MethodGet, f.next, nil)
	loc := f.redirect("authorize after consent", res, body)
	if res.Header.Get("Content-Type") != "application/json" || body != "" {
		f.t.Errorf("%s: the code redirect has Content-Type %q and body %q, want application/json and none",
			f.user.login, res.Header.Get("Content-Type"), body)
	}
	redirectURI, query, _ := strings.Cut(loc, "?")
	back, err := url.ParseQuery(query)
	if err != nil || redirectURI != f.q.Get("redirect_uri") || back.Get("code") == "" || back.Get("error") != "" {
		f.t.Fatalf("%s: authorize after consent redirects to %q, want %s with a code", f.user.login, loc, f.q.Get("redirect_uri"))
	}
	if back.Get("state") != f.q.Get("state") {
		f.t.Errorf("%s: state %q came back, want %q", f.user.login, back.Get("state"), f.q.Get("state"))
	}
	return back.Get("code")
}

var (
	formPattern  = regexp.MustCompile(`(?s)<form\b([^>]*)>(.*?)</form>`)
	inputPattern = regexp.MustCompile(`<input\b[^>]*>`)
	attrPattern  = regexp.MustCompile(`([a-zA-Z_:-]+)\s*=\s*"([^"]*)"`)
)

// formFields finds the first form of page that contains marker and returns
// its action and what a browser submits of it without the user typing:
// hidden fields and the submit button.
func formFields(t *testing.T, page, marker string) (string, url.Values) {
	t.Helper()
	for _, m := range formPattern.FindAllStringSubmatch(page, -1) {
		if !strings.Contains(m[0], marker) {
			continue
		}
		attrs := func(tag string) map[string]string {
			a := map[string]string{}
			for _, kv := range attrPattern.FindAllStringSubmatch(tag, -1) {
				a[strings.ToLower(kv[1])] = html.UnescapeString(kv[2])
			}
			return a
		}
		fields := url.Values{}
		for _, tag := range inputPattern.FindAllString(m[2], -1) {
			a := attrs(tag)
			if name := a["name"]; name != "" && (a["type"] == "hidden" || a["type"] == "submit") {
				fields.Add(name, a["value"])
			}
		}
		return attrs("<form" + m[1] + ">")["action"], fields
	}
	t.Fatalf("no form with %s in the page:\n%.3000s", marker, page)
	return "", nil
}
