package oauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/caddy-moserver/caddy-moserver/internal/store"
)

func introspectForm(token, id, secret string) url.Values {
	return url.Values{"token": {token}, "client_id": {id}, "client_secret": {secret}}
}

func TestIntrospection(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		f := newFixture(t, st, nil)
		issued := wantToken(t, f.post(ccForm("scope", "email")))
		at, rt := issued.str("access_token"), issued.str("refresh_token")
		ask := func(token, id, secret string) response {
			t.Helper()
			r := f.do(formRequest(DefaultIntrospectPath, introspectForm(token, id, secret)))
			if r.status != 200 {
				t.Fatalf("introspect: %d %s", r.status, r.body)
			}
			wantNoStore(t, r)
			return r
		}
		r := ask(at, ccID, ccSecret)
		if r.json["active"] != true || r.str("client_id") != ccID || r.str("scope") != "email" || r.str("sub") != "client:"+ccID ||
			r.str("iss") != issuer || r.str("token_type") != "Bearer" || r.json["exp"] == nil || r.str("jti") == "" {
			t.Errorf("access token: %s", r.body)
		}
		r = ask(rt, ccID, ccSecret)
		if r.json["active"] != true || r.str("token_type") != "refresh_token" || r.str("scope") != "email" {
			t.Errorf("refresh token: %s", r.body)
		}
		inactive := func(r response) {
			t.Helper()
			if r.body != `{"active":false}` {
				t.Errorf("want {\"active\":false}, got %s", r.body)
			}
		}
		inactive(ask(at, otherID, otherSecret)) // foreign
		inactive(ask(rt, otherID, otherSecret))
		inactive(ask("garbage", ccID, ccSecret))         // unknown
		inactive(ask(otherLastChar(rt), ccID, ccSecret)) // well-formed, never issued
		// Rotated and revoked tokens are inactive.
		rt2 := wantToken(t, f.post(refreshForm(rt))).str("refresh_token")
		inactive(ask(rt, ccID, ccSecret))
		if r := ask(rt2, ccID, ccSecret); r.json["active"] != true {
			t.Errorf("successor: %s", r.body)
		}
		f.do(formRequest(DefaultRevokePath, revokeForm(at)))
		inactive(ask(at, ccID, ccSecret))
		f.do(formRequest(DefaultRevokePath, revokeForm(rt2)))
		inactive(ask(rt2, ccID, ccSecret))
		// Expired access tokens are inactive.
		at2 := wantToken(t, f.post(ccForm())).str("access_token")
		f.clock.Add(2 * time.Hour)
		inactive(ask(at2, ccID, ccSecret))
		wantError(t, f.do(formRequest(DefaultIntrospectPath, introspectForm(at2, ccID, "wrong"))), 401, "invalid_client")
	})
}

func TestClientRevokedBefore(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		f := newFixture(t, st, nil)
		issued := wantToken(t, f.post(ccForm()))
		f.clock.Add(time.Second)
		if err := st.RevokeClient(context.Background(), ccID, f.clock.Now(), time.Hour); err != nil {
			t.Fatal(err)
		}
		wantError(t, f.post(refreshForm(issued.str("refresh_token"))), 400, "invalid_grant")
		r := f.do(formRequest(DefaultIntrospectPath, introspectForm(issued.str("access_token"), ccID, ccSecret)))
		if r.body != `{"active":false}` {
			t.Errorf("access token of a revoked client: %s", r.body)
		}
		f.clock.Add(time.Second)
		fresh := wantToken(t, f.post(ccForm()))
		wantToken(t, f.post(refreshForm(fresh.str("refresh_token"))))
	})
}

func TestMetadata(t *testing.T) {
	f := newFixture(t, nil, nil)
	r := f.do(httptest.NewRequest(http.MethodGet, "/.well-known/oauth-authorization-server/wp-json/moserver", nil))
	if r.status != 200 || r.header.Get("Cache-Control") != "public, max-age=300" {
		t.Fatalf("metadata: %d %v %s", r.status, r.header, r.body)
	}
	want := map[string]string{
		"issuer":                 issuer,
		"token_endpoint":         "https://wp.example/wp-json/moserver/token",
		"revocation_endpoint":    "https://wp.example/wp-json/moserver/revoke",
		"introspection_endpoint": "https://wp.example/wp-json/moserver/introspect",
		"jwks_uri":               "https://wp.example/wp-json/moserver/jwks",
	}
	for k, v := range want {
		if r.str(k) != v {
			t.Errorf("%s = %q, want %q", k, r.str(k), v)
		}
	}
	if algs, _ := r.json["access_token_signing_alg_values_supported"].([]any); len(algs) != 1 || algs[0] != "ES256" {
		t.Errorf("algorithms %v", r.json["access_token_signing_alg_values_supported"])
	}
	if grants, _ := r.json["grant_types_supported"].([]any); len(grants) != 2 {
		t.Errorf("grants %v", grants)
	}
	if jr := f.do(httptest.NewRequest(http.MethodGet, DefaultJWKSPath, nil)); jr.header.Get("Cache-Control") == "" {
		t.Error("JWKS without Cache-Control")
	}
}

// otherLastChar returns token with its last character replaced by a different
// base64url character, so the result is well-formed but never the same token.
func otherLastChar(token string) string {
	last := byte('A')
	if token[len(token)-1] == last {
		last = 'B'
	}
	return token[:len(token)-1] + string(last)
}
