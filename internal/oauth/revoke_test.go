package oauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/caddy-moserver/caddy-moserver/internal/store"
	"github.com/caddy-moserver/caddy-moserver/internal/store/storetest"
)

func revokeForm(token string) url.Values {
	return url.Values{"token": {token}, "client_id": {ccID}, "client_secret": {ccSecret}}
}

func TestRevokeRefreshToken(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		for name, path := range map[string]string{"revoke_path": DefaultRevokePath, "token endpoint": DefaultTokenPath,
			"plain permalinks": "/?rest_route=/moserver/revoke"} {
			t.Run(name, func(t *testing.T) {
				f := newFixture(t, st, nil)
				rt1 := f.issueRefresh()
				rt2 := wantToken(t, f.post(refreshForm(rt1))).str("refresh_token")
				r := f.do(formRequest(path, revokeForm(rt2)))
				if r.status != 200 || r.body != "" {
					t.Fatalf("revoke: %d %q", r.status, r.body)
				}
				wantError(t, f.post(refreshForm(rt2)), 400, "invalid_grant")
			})
		}
	})
}

func TestRevokeForeignOrUnknownChangesNothing(t *testing.T) {
	f := newFixture(t, nil, nil)
	rt := f.issueRefresh()
	other := url.Values{"token": {rt}, "client_id": {otherID}, "client_secret": {otherSecret}}
	if r := f.do(formRequest(DefaultRevokePath, other)); r.status != 200 {
		t.Fatalf("foreign token: %d %s", r.status, r.body)
	}
	for _, tok := range []string{"unknown", "0123456789abcdef0123456789abcdef", "a.b.c"} {
		if r := f.do(formRequest(DefaultRevokePath, revokeForm(tok))); r.status != 200 {
			t.Fatalf("unknown token %q: %d %s", tok, r.status, r.body)
		}
	}
	wantToken(t, f.post(refreshForm(rt))) // still alive
}

func TestRevokeNeedsClientAuth(t *testing.T) {
	f := newFixture(t, nil, nil)
	rt := f.issueRefresh()
	wantError(t, f.do(formRequest(DefaultRevokePath, url.Values{"token": {rt}})), 401, "invalid_client")
	wantError(t, f.do(formRequest(DefaultRevokePath, url.Values{"token": {rt}, "client_id": {ccID}, "client_secret": {"x"}})), 401, "invalid_client")
	wantError(t, f.do(formRequest(DefaultRevokePath, url.Values{"client_id": {ccID}, "client_secret": {ccSecret}})), 400, "invalid_request")
	wantError(t, f.do(httptest.NewRequest(http.MethodGet, DefaultRevokePath, nil)), 405, "invalid_request")
	wantToken(t, f.post(refreshForm(rt)))
}

func TestRevokeAccessToken(t *testing.T) {
	f := newFixture(t, nil, nil)
	at := wantToken(t, f.post(ccForm())).str("access_token")
	claims, err := f.signer.Verify(at, f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Another client cannot revoke it.
	f.do(formRequest(DefaultRevokePath, url.Values{"token": {at}, "client_id": {otherID}, "client_secret": {otherSecret}}))
	if revoked, _ := storetest.JTIRevoked(context.Background(), f.store, claims.JTI); revoked {
		t.Fatal("another client revoked the access token")
	}
	if r := f.do(formRequest(DefaultRevokePath, revokeForm(at))); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if revoked, err := storetest.JTIRevoked(context.Background(), f.store, claims.JTI); err != nil || !revoked {
		t.Fatalf("access token not recorded as revoked (%v)", err)
	}
}
