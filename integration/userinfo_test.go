package integration

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/caddy-moserver/caddy-moserver/internal/testutil/mariadbtest"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/redistest"
)

const resourcePath = "/wp-json/moserver/resource"

// userInfo sends GET target with the token as a Bearer header (none when
// empty).
func (s *site) userInfo(t *testing.T, target, token string) reply {
	t.Helper()
	req := mustGet(t, s.base+target)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return send(t, req)
}

// wantUserInfoError checks an error of the userinfo endpoint and its
// WWW-Authenticate challenge: with the error code, or none at all.
func wantUserInfoError(t *testing.T, r reply, status int, code string, challengeCode bool) {
	t.Helper()
	mustError(t, r, status, code)
	challenge := r.header.Get("Www-Authenticate")
	if challengeCode && !strings.HasPrefix(challenge, `Bearer realm="moserver", error="`+code+`", error_description="`) ||
		!challengeCode && challenge != `Bearer realm="moserver"` {
		t.Errorf("WWW-Authenticate %q (error code in it: %v)", challenge, challengeCode)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", r.header.Get("Cache-Control"))
	}
}

// TestUserInfo: the plugin's userinfo endpoint answered by the module for
// the opaque access tokens of exchanged codes, with the plugin's claims
// (compat fixtures 40, 41, 93) and real statuses.
func TestUserInfo(t *testing.T) {
	wp := newWordPress(t)
	s := startWordPressSite(t, wp, redisOptionFor(redisURL(t), redistest.Prefix(t)), "")
	soon := time.Now().Add(30 * time.Second)
	id := wp.user
	profile := `"username":"admin","first_name":"Ada","last_name":"Lovelace","nickname":"admin","display_name":"admin"`
	exchange := func(t *testing.T, scope string) string {
		t.Helper()
		at := mustToken(t, s.form(t, tokenPath, exchangeValues(wp.newCode(t, callback, scope, soon)))).str("access_token")
		if !hex32.MatchString(at) {
			t.Fatalf("not an opaque token: %q", at)
		}
		return at
	}

	t.Run("claims per scope", func(t *testing.T) {
		for scope, want := range map[string]string{
			"openid profile email":          fmt.Sprintf(`{"id":%d,"ID":%d,"sub":%d,"email":"admin@example.com",%s}`, id, id, id, profile),
			"profile email":                 fmt.Sprintf(`{"id":%d,"ID":%d,"email":"admin@example.com",%s}`, id, id, profile),
			"openid":                        fmt.Sprintf(`{"id":%d,"ID":%d,"sub":%d}`, id, id, id),
			"email":                         fmt.Sprintf(`{"id":%d,"ID":%d,"email":"admin@example.com"}`, id, id),
			"openid offline_access profile": fmt.Sprintf(`{"id":%d,"ID":%d,"sub":%d,%s}`, id, id, id, profile),
		} {
			at := exchange(t, scope)
			r := s.userInfo(t, resourcePath, at)
			if r.status != 200 || r.body != want {
				t.Errorf("scope %q: %d %s\nwant %s", scope, r.status, r.body, want)
			}
			if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Content-Type") != "application/json; charset=UTF-8" {
				t.Errorf("scope %q: headers %v", scope, r.header)
			}
			// Fixture 93's form, and the plain-permalink one.
			if q := s.userInfo(t, resourcePath+"?access_token="+at, ""); q.status != 200 || q.body != want {
				t.Errorf("scope %q, ?access_token=: %d %s", scope, q.status, q.body)
			}
			if q := s.userInfo(t, "/?rest_route=/moserver/resource", at); q.status != 200 || q.body != want {
				t.Errorf("scope %q, ?rest_route=: %d %s", scope, q.status, q.body)
			}
		}
	})

	t.Run("no token, both forms, unknown, expired", func(t *testing.T) {
		at := exchange(t, "openid")
		wantUserInfoError(t, s.userInfo(t, resourcePath, ""), 401, "invalid_request", false)
		wantUserInfoError(t, s.userInfo(t, resourcePath+"?access_token="+at, at), 400, "invalid_request", true)
		wantUserInfoError(t, s.userInfo(t, resourcePath, "0123456789abcdef0123456789abcdef"), 401, "invalid_token", true)
		wantUserInfoError(t, s.userInfo(t, resourcePath, strings.ToUpper(at)), 401, "invalid_token", true)
		expired := mariadbtest.RandomToken(t)
		mariadbtest.InsertAccessToken(t, wp.db, "wp_", expired, clientID, wp.user, time.Now().Add(-2*time.Second), "openid")
		r := s.userInfo(t, resourcePath, expired)
		wantUserInfoError(t, r, 401, "invalid_token", true)
		if !strings.Contains(r.header.Get("Www-Authenticate"), "expired") {
			t.Errorf("expired: %q", r.header.Get("Www-Authenticate"))
		}
		// Other methods are not the plugin's route.
		req, _ := http.NewRequest(http.MethodPost, s.base+resourcePath, strings.NewReader("access_token="+at))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if r := send(t, req); r.status != 405 || r.header.Get("Allow") != "GET, HEAD" {
			t.Errorf("POST: %d %v", r.status, r.header)
		}
	})

	t.Run("revoked by a second exchange of its code", func(t *testing.T) {
		code := wp.newCode(t, callback, "openid email", soon)
		at := mustToken(t, s.form(t, tokenPath, exchangeValues(code))).str("access_token")
		if r := s.userInfo(t, resourcePath, at); r.status != 200 {
			t.Fatalf("before: %d %s", r.status, r.body)
		}
		mustError(t, s.form(t, tokenPath, exchangeValues(code)), 400, "invalid_grant")
		wantUserInfoError(t, s.userInfo(t, resourcePath, at), 401, "invalid_token", true)
	})

	t.Run("a deleted user", func(t *testing.T) {
		bob := mariadbtest.InsertUser(t, wp.db, "wp_", mariadbtest.User{Login: "bob", Email: "bob@example.com", Registered: time.Now()})
		at := mariadbtest.RandomToken(t)
		mariadbtest.InsertAccessToken(t, wp.db, "wp_", at, clientID, bob, time.Now().Add(time.Hour), "email")
		mariadbtest.Exec(t, wp.db, "DELETE FROM wp_users WHERE ID = ?", bob)
		wantUserInfoError(t, s.userInfo(t, resourcePath, at), 401, "invalid_token", true)
	})
}

// TestUserInfoJWT: with user_access_tokens jwt, the module's JWT access
// tokens of WordPress users get the user's claims until they are revoked:
// an RFC 7009 revocation of their refresh family, or of the token itself.
func TestUserInfoJWT(t *testing.T) {
	wp := newWordPress(t)
	redisOpt := redisOptionFor(redisURL(t), redistest.Prefix(t))
	a := startWordPressSite(t, wp, redisOpt, "user_access_tokens jwt")
	soon := time.Now().Add(30 * time.Second)
	revoke := func(t *testing.T, token string) {
		t.Helper()
		v := url.Values{"token": {token}, "client_id": {clientID}, "client_secret": {clientSecret}}
		if r := a.form(t, "/wp-json/moserver/revoke", v); r.status != 200 {
			t.Fatalf("revoke: %d %s", r.status, r.body)
		}
	}

	t.Run("family revoked", func(t *testing.T) {
		r := mustToken(t, a.form(t, tokenPath, exchangeValues(wp.newCode(t, callback, "profile email", soon))))
		at := r.str("access_token")
		if hex32.MatchString(at) || strings.Count(at, ".") != 2 || r.str("refresh_token") == "" {
			t.Fatalf("want a JWT and a refresh token: %s", r.body)
		}
		want := fmt.Sprintf(`{"id":%d,"ID":%d,"email":"admin@example.com","username":"admin","first_name":"Ada","last_name":"Lovelace","nickname":"admin","display_name":"admin"}`, wp.user, wp.user)
		if got := a.userInfo(t, resourcePath, at); got.status != 200 || got.body != want {
			t.Fatalf("JWT: %d %s\nwant %s", got.status, got.body, want)
		}
		revoke(t, r.str("refresh_token"))
		wantUserInfoError(t, a.userInfo(t, resourcePath, at), 401, "invalid_token", true)
	})

	t.Run("token revoked", func(t *testing.T) {
		r := mustToken(t, a.form(t, tokenPath, exchangeValues(wp.newCode(t, callback, "openid", soon))))
		at := r.str("access_token")
		if got := a.userInfo(t, "/?rest_route=/moserver/resource", at); got.status != 200 || got.json["sub"] != float64(wp.user) {
			t.Fatalf("JWT: %d %s", got.status, got.body)
		}
		revoke(t, at)
		wantUserInfoError(t, a.userInfo(t, resourcePath, at), 401, "invalid_token", true)
	})

	t.Run("a client's own token is no user's", func(t *testing.T) {
		at := mustToken(t, a.form(t, tokenPath, ccValues())).str("access_token")
		wantUserInfoError(t, a.userInfo(t, resourcePath, at), 401, "invalid_token", true)
	})
}

// TestDiscoveryAndKeys: a client's discovery document and keys answered by
// the module: the plugin's shape (compat fixtures 45–47, 96, 97), its issuer
// the iss of the client's id_tokens, its keys verifying them.
func TestDiscoveryAndKeys(t *testing.T) {
	wp := newWordPress(t)
	s := startWordPressSite(t, wp, redisOptionFor(redisURL(t), redistest.Prefix(t)), "")
	base := s.base + "/wp-json/moserver"

	r := send(t, mustGet(t, base+"/"+clientID+"/.well-known/openid-configuration"))
	if r.status != 200 || r.json == nil {
		t.Fatalf("discovery: %d %s", r.status, r.body)
	}
	issuer := base + "/" + clientID
	for k, v := range map[string]string{
		"issuer":                 issuer,
		"authorization_endpoint": base + "/authorize",
		"token_endpoint":         base + "/token",
		"userinfo_endpoint":      base + "/resource",
		"jwks_uri":               issuer + "/.well-known/keys",
		"revocation_endpoint":    base + "/revoke",
		"introspection_endpoint": base + "/introspect",
	} {
		if r.str(k) != v {
			t.Errorf("%s = %q, want %q", k, r.str(k), v)
		}
	}
	for k, v := range map[string]string{
		"id_token_signing_alg_values_supported": "[RS256]",
		"response_types_supported":              "[code]",
		"grant_types_supported":                 "[authorization_code client_credentials refresh_token]",
		"subject_types_supported":               "[public]",
		"token_endpoint_auth_methods_supported": "[client_secret_basic client_secret_post]",
		"code_challenge_methods_supported":      "[S256]",
	} {
		if got := fmt.Sprint(r.json[k]); got != v {
			t.Errorf("%s = %s, want %s", k, got, v)
		}
	}
	if scopes := fmt.Sprint(r.json["scopes_supported"]); !strings.HasPrefix(scopes, "[openid ") || !strings.Contains(scopes, "email") ||
		!strings.Contains(scopes, "profile") || !strings.HasSuffix(scopes, " offline_access]") {
		t.Errorf("scopes_supported %s", scopes)
	}

	// An id_token of the client: its iss is the discovery's issuer, and
	// the keys at jwks_uri verify it.
	idt := mustToken(t, s.form(t, tokenPath, exchangeValues(wp.newCode(t, callback, "openid email", time.Now().Add(30*time.Second))))).str("id_token")
	keys := send(t, mustGet(t, r.str("jwks_uri")))
	if keys.status != 200 || !strings.HasPrefix(keys.body, `{"keys":[{"kty":"RSA","n":"`) ||
		!strings.HasSuffix(keys.body, `"e":"AQAB","use":"sig","alg":"RS256","kid":"`+clientID+`"}]}`) {
		t.Fatalf("keys: %d %s", keys.status, keys.body)
	}
	set, err := jwk.Parse([]byte(keys.body))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.ParseString(idt, jwt.WithKeySet(set), jwt.WithIssuer(r.str("issuer")), jwt.WithAudience(clientID))
	if err != nil {
		t.Fatalf("the client's keys do not verify its id_token with the discovery's issuer: %v", err)
	}
	if tok.Subject() != fmt.Sprint(wp.user) {
		t.Errorf("sub %q", tok.Subject())
	}

	// The plain-permalink form, and the module's answers where the plugin
	// has 400s: an unknown client (fixture 47), a client without a key.
	if q := send(t, mustGet(t, s.base+"/?rest_route=/moserver/"+clientID+"/.well-known/keys")); q.body != keys.body {
		t.Errorf("?rest_route= keys: %d %s", q.status, q.body)
	}
	for _, doc := range []string{"openid-configuration", "keys"} {
		u := send(t, mustGet(t, base+"/NoSuchClient/.well-known/"+doc))
		if u.status != 400 || u.body != `{"error":"invalid_client","error_description":"Client does not exist."}` {
			t.Errorf("unknown client, %s: %d %s", doc, u.status, u.body)
		}
	}
	other := send(t, mustGet(t, base+"/caddyfile-client/.well-known/keys"))
	mustError(t, other, 400, "invalid_request")
	if d := send(t, mustGet(t, base+"/caddyfile-client/.well-known/openid-configuration")); fmt.Sprint(d.json["id_token_signing_alg_values_supported"]) != "[]" {
		t.Errorf("a client without a key: %s", d.body)
	}
}
