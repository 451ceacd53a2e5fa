package integration

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-moserver/caddy-moserver/internal/testutil/caddyproc"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/redistest"
)

// edgeSite (one issuer for every instance: they act as one server) protects /wp-json/wp/v2/* with moserver_auth in front of the
// recording upstream.
func edgeSite(t *testing.T, opt, upstreamAddr, dataDir string) *site {
	t.Helper()
	port := caddyproc.FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cfg := fmt.Sprintf(`http://127.0.0.1:%d {
	moserver {
		issuer https://wp.example/wp-json/moserver
		%s
		client %s {
			secret %s
			scopes profile email write
			refresh_tokens
		}
	}
	moserver_auth /wp-json/wp/v2/* {
		scope profile
	}
	reverse_proxy %s {
		header_up X-Who {moserver.client_id}
	}
}
`, port, opt, clientID, clientSecret, upstreamAddr)
	return &site{Instance: caddyproc.Start(t, cfg, base+"/", "XDG_DATA_HOME="+dataDir), base: base}
}

func TestEdgeProtection(t *testing.T) {
	opt := redisOptionFor(redisURL(t), redistest.Prefix(t))
	up := newUpstream(t)
	data := t.TempDir() // shared Caddy storage: one signing key
	a, b := edgeSite(t, opt, up.URL, data), edgeSite(t, opt, up.URL, data)

	get := func(s *site, token string, spoof bool) reply {
		req, _ := http.NewRequest(http.MethodGet, s.base+"/wp-json/wp/v2/posts", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if spoof {
			req.Header.Set("X-Moserver-Client-Id", "admin")
		}
		return send(t, req)
	}
	before := len(up.requests())
	r := get(a, "", false)
	if r.status != 401 || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("no token: %d %v", r.status, r.header)
	}
	r = get(a, "garbage", false)
	if r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("bad token: %d %v", r.status, r.header)
	}
	narrow := mustToken(t, a.form(t, tokenPath, url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID},
		"client_secret": {clientSecret}, "scope": {"email"}})).str("access_token")
	r = get(a, narrow, false)
	if r.status != 403 || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
		t.Fatalf("narrow token: %d %v", r.status, r.header)
	}
	if n := len(up.requests()); n != before {
		t.Fatalf("refused requests reached the upstream (%d)", n-before)
	}

	issued := mustToken(t, a.form(t, tokenPath, ccValues()))
	at := issued.str("access_token")
	r = get(b, at, true) // a token from A is good at B
	if r.status != 200 || r.body != "from upstream" {
		t.Fatalf("good token: %d %s", r.status, r.body)
	}
	seen := up.requests()
	last := seen[len(seen)-1]
	if last.Header.Get("X-Moserver-Client-Id") != clientID || last.Header.Get("X-Who") != clientID ||
		last.Header.Get("X-Moserver-Scope") != "profile email write" {
		t.Errorf("upstream headers: %v", last.Header)
	}
	if vals := last.Header.Values("X-Moserver-Client-Id"); len(vals) != 1 {
		t.Errorf("a spoofed identity header survived: %v", vals)
	}
	// Unprotected paths are not checked.
	if r := send(t, mustGet(t, a.base+"/about")); r.status != 200 {
		t.Fatalf("unprotected path: %d", r.status)
	}

	// Revoking at A is enforced at B on the next request.
	if r := a.form(t, "/wp-json/moserver/revoke", url.Values{"token": {at}, "client_id": {clientID}, "client_secret": {clientSecret}}); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if r := get(b, at, false); r.status != 401 {
		t.Fatalf("revoked access token accepted at B: %d", r.status)
	}
	// Revoking the refresh token kills the access tokens of its family.
	at2 := mustToken(t, b.form(t, tokenPath, refreshValues(issued.str("refresh_token"))))
	if r := get(a, at2.str("access_token"), false); r.status != 200 {
		t.Fatalf("refreshed access token: %d", r.status)
	}
	b.form(t, "/wp-json/moserver/revoke", url.Values{"token": {at2.str("refresh_token")}, "client_id": {clientID}, "client_secret": {clientSecret}})
	if r := get(a, at2.str("access_token"), false); r.status != 401 {
		t.Fatalf("access token of a revoked family accepted: %d", r.status)
	}

	// Introspection and metadata through Caddy.
	r = a.form(t, "/wp-json/moserver/introspect", url.Values{"token": {at}, "client_id": {clientID}, "client_secret": {clientSecret}})
	if r.body != `{"active":false}` {
		t.Errorf("introspection of a revoked token: %s", r.body)
	}
	md := send(t, mustGet(t, a.base+"/.well-known/oauth-authorization-server/wp-json/moserver"))
	if md.status != 200 || md.str("introspection_endpoint") != "https://wp.example/wp-json/moserver/introspect" {
		t.Errorf("metadata: %d %s", md.status, md.body)
	}
}
