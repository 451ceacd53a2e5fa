package oauth

import (
	"context"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/caddy-moserver/caddy-moserver/internal/clients"
)

// fakeWordPress is a WordPress database with plugin refresh tokens and
// nothing else.
type fakeWordPress struct {
	mu      sync.Mutex
	refresh map[string]*PluginRefresh
}

func (w *fakeWordPress) LookupPluginRefresh(_ context.Context, token string) (*PluginRefresh, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.refresh[token], nil
}

func (w *fakeWordPress) TakePluginRefresh(_ context.Context, r *PluginRefresh) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.refresh[r.Token]
	delete(w.refresh, r.Token)
	return ok, nil
}

func (*fakeWordPress) InsertAccessToken(context.Context, string, string, int64, time.Time, string) error {
	return nil
}

func (*fakeWordPress) IDToken(context.Context, string, int64, time.Time, time.Time, string) (string, error) {
	return "", nil
}

func (*fakeWordPress) LookupAuthCode(context.Context, string) (*AuthCode, error) { return nil, nil }

func (*fakeWordPress) TakeAuthCode(context.Context, string) (bool, error) { return false, nil }

func (*fakeWordPress) DeleteAccessToken(context.Context, string) error { return nil }

func (*fakeWordPress) LookupAccessToken(context.Context, string) (*AccessToken, error) {
	return nil, nil
}

func (*fakeWordPress) User(context.Context, int64) (*User, error) { return nil, nil }

func (*fakeWordPress) IDTokenKey(context.Context, string) (*IDTokenKey, error) { return nil, nil }

// A client whose id looks like a WordPress user id never gets the subject
// of that user: a client's tokens say "client:<client_id>", a WordPress
// user's JWT access tokens the user id, as the plugin's id_token does. Both
// forms last through refreshes and are what introspection reports.
func TestClientAndUserSubjectsDiffer(t *testing.T) {
	const (
		digitsID     = "1"
		digitsSecret = "secret-of-client-one"
		pluginToken  = "0123456789abcdef0123456789abcdef"
	)
	f := newFixture(t, nil, func(c *Config) {
		cs := testClients()
		cs[digitsID] = &clients.Client{ID: digitsID, SecretDigest: clients.SecretDigest(digitsSecret),
			Scopes: clients.DefaultScopes, Grants: clients.DefaultGrants, RefreshTokens: true}
		c.Clients = cs
		c.WordPress = &fakeWordPress{refresh: map[string]*PluginRefresh{pluginToken: {
			Token: pluginToken, ClientID: digitsID, UserID: 1, Expires: time.Now().Add(time.Hour), Scope: "profile"}}}
		c.UserAccessTokens = UserAccessJWT
	})
	creds := func(v url.Values) url.Values {
		v.Set("client_id", digitsID)
		v.Set("client_secret", digitsSecret)
		return v
	}
	sub := func(r response) string { return f.verifyAccess(r.str("access_token")).Subject() }
	introspected := func(token string) string {
		r := f.do(formRequest(DefaultIntrospectPath, creds(url.Values{"token": {token}})))
		if r.status != 200 || r.json["active"] != true {
			t.Fatalf("introspection: %d %s", r.status, r.body)
		}
		return r.str("sub")
	}

	client := wantToken(t, f.post(creds(url.Values{"grant_type": {"client_credentials"}})))
	user := wantToken(t, f.post(creds(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {pluginToken}})))
	if got := sub(client); got != "client:1" {
		t.Errorf("client_credentials of client %q: sub %q, want %q", digitsID, got, "client:1")
	}
	if got := sub(user); got != "1" {
		t.Errorf("WordPress user 1: sub %q, want %q", got, "1")
	}
	if sub(client) == sub(user) {
		t.Fatalf("client %q and WordPress user 1 share the subject %q", digitsID, sub(client))
	}
	for name, c := range map[string]struct {
		r    response
		want string
	}{"client": {client, "client:1"}, "user": {user, "1"}} {
		if got := introspected(c.r.str("access_token")); got != c.want {
			t.Errorf("%s: introspected access token sub %q, want %q", name, got, c.want)
		}
		if got := introspected(c.r.str("refresh_token")); got != c.want {
			t.Errorf("%s: introspected refresh token sub %q, want %q", name, got, c.want)
		}
		next := wantToken(t, f.post(creds(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {c.r.str("refresh_token")}})))
		if got := sub(next); got != c.want {
			t.Errorf("%s: refreshed access token sub %q, want %q", name, got, c.want)
		}
	}
}
