package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-moserver/caddy-moserver/internal/store"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/admintest"
	"github.com/caddy-moserver/caddy-moserver/internal/tokens"
)

const (
	opsClientID     = "ops-client"
	opsClientSecret = "ops-secret"
)

// opsProvisionHandler provisions a moserver block with a memory store, a
// signing key from a file and one client with refresh tokens, in a fresh
// Caddy context; it is cleaned up with the test.
func opsProvisionHandler(t *testing.T, issuer string, mod func(*Handler)) (*Handler, caddy.Context) {
	t.Helper()
	_, pemBytes, err := tokens.GenerateKey("ES256")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(keyFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	h := &Handler{
		Issuer:      issuer,
		StorageRaw:  (&StorageConfig{Type: "memory", KeyPrefix: "ops-test-" + tokens.NewID(6) + ":"}).raw(),
		SigningKeys: []SigningKeyConfig{{File: keyFile}},
		Clients:     []ClientConfig{{ID: opsClientID, Secret: opsClientSecret, RefreshTokens: true}},
	}
	if mod != nil {
		mod(h)
	}
	// A configuration's context, as Caddy gives its modules: the handler
	// joins the configuration's moserver app.
	base, err := caddy.ProvisionContext(&caddy.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(base)
	t.Cleanup(cancel)
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Cleanup(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return h, ctx
}

type opsTokenReply struct {
	status  int
	body    string
	access  string
	refresh string
}

// opsTokenRequest posts form to the block's token endpoint; the next handler
// answers 418.
func opsTokenRequest(t *testing.T, h *Handler, form url.Values) opsTokenReply {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/wp-json/moserver/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		w.WriteHeader(http.StatusTeapot)
		return nil
	})
	if err := h.ServeHTTP(rec, req, next); err != nil {
		t.Fatal(err)
	}
	r := opsTokenReply{status: rec.Code, body: rec.Body.String()}
	var m struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &m)
	r.access, r.refresh = m.AccessToken, m.RefreshToken
	return r
}

func opsCCForm() url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "client_id": {opsClientID}, "client_secret": {opsClientSecret}}
}

func opsRefreshForm(rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "client_id": {opsClientID}, "client_secret": {opsClientSecret}, "refresh_token": {rt}}
}

func opsMustRefresh(t *testing.T, h *Handler) string {
	t.Helper()
	r := opsTokenRequest(t, h, opsCCForm())
	if r.status != 200 || r.refresh == "" {
		t.Fatalf("client_credentials: %d %s", r.status, r.body)
	}
	return r.refresh
}

type opsAdminReply struct {
	status int
	header http.Header
	body   string
	json   map[string]any
}

func (r opsAdminReply) str(k string) string { s, _ := r.json[k].(string); return s }

// opsGetAdmin sends GETs with opsCallAdmin, for admintest.
func opsGetAdmin(t *testing.T) admintest.Get {
	return func(path string) (int, string) {
		r := opsCallAdmin(t, "GET", path, "")
		return r.status, r.body
	}
}

// opsCallAdmin routes a request through the module's routes as Caddy's admin
// endpoint does, answering a returned error as Caddy does ({"error": ...}).
func opsCallAdmin(t *testing.T, method, path, body string) opsAdminReply {
	t.Helper()
	a := &AdminAPI{}
	mux := http.NewServeMux()
	for _, rt := range a.Routes() {
		mux.HandleFunc(rt.Pattern, func(w http.ResponseWriter, r *http.Request) {
			err := rt.Handler.ServeHTTP(w, r)
			if err == nil {
				return
			}
			var apiErr caddy.APIError
			if !errors.As(err, &apiErr) {
				t.Errorf("%s %s: error is not a caddy.APIError: %v", method, path, err)
				apiErr = caddy.APIError{HTTPStatus: 500, Message: err.Error()}
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(apiErr.HTTPStatus)
			_ = json.NewEncoder(w).Encode(apiErr)
		})
	}
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	rep := opsAdminReply{status: rec.Code, header: rec.Header(), body: rec.Body.String()}
	if err := json.Unmarshal(rec.Body.Bytes(), &rep.json); err != nil {
		t.Fatalf("%s %s: answer is not JSON: %q", method, path, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return rep
}

func opsWantAdminError(t *testing.T, r opsAdminReply, status int, contains string) {
	t.Helper()
	if r.status != status || !strings.Contains(r.str("error"), contains) {
		t.Errorf("got %d %v, want %d with an error containing %q", r.status, r.json, status, contains)
	}
}

func TestAdminRevokeClient(t *testing.T) {
	h, _ := opsProvisionHandler(t, "https://admin.example/wp-json/moserver", nil)
	rt := opsMustRefresh(t, h)

	r := opsCallAdmin(t, "POST", "/moserver/revoke-client", `{"client_id":"`+opsClientID+`"}`)
	if r.status != 200 || r.str("client_id") != opsClientID || r.str("issuer") != h.Issuer {
		t.Fatalf("revoke-client: %d %v", r.status, r.json)
	}
	if r.str("keep") != (14 * 24 * time.Hour).String() {
		t.Errorf("default keep = %q, want the refresh-token lifetime", r.str("keep"))
	}
	if _, err := time.Parse(time.RFC3339Nano, r.str("revoked_before")); err != nil {
		t.Errorf("revoked_before: %v", err)
	}
	if got := opsTokenRequest(t, h, opsRefreshForm(rt)); got.status != http.StatusBadRequest || !strings.Contains(got.body, "invalid_grant") {
		t.Fatalf("refresh after revoke-client: %d %s", got.status, got.body)
	}

	// A later token is not affected.
	time.Sleep(5 * time.Millisecond)
	rt2 := opsMustRefresh(t, h)
	if got := opsTokenRequest(t, h, opsRefreshForm(rt2)); got.status != 200 {
		t.Fatalf("refresh of a token issued after the revocation: %d %s", got.status, got.body)
	}

	r = opsCallAdmin(t, "POST", "/moserver/revoke-client", `{"issuer":"`+h.Issuer+`","client_id":"x","keep":"1h"}`)
	if r.status != 200 || r.str("keep") != "1h0m0s" {
		t.Fatalf("revoke-client with keep: %d %v", r.status, r.json)
	}
	for _, tc := range []struct {
		body, want string
		status     int
	}{
		{`{}`, "client_id is required", 400},
		{`{"client_id":"  "}`, "client_id is required", 400},
		{`{"client_id":"x","keep":"soon"}`, "keep", 400},
		{`{"client_id":"x","keep":"-1h"}`, "keep", 400},
		{`{"clientid":"x"}`, "unknown field", 400},
		{`not json`, "not valid JSON", 400},
		{``, "must be a JSON object", 400},
		{`{"client_id":"x"} {}`, "one JSON object", 400},
		{`{"client_id":"x","issuer":"https://other.example"}`, "no moserver block has issuer", 404},
		{`{"client_id":"` + strings.Repeat("x", maxAdminBody) + `"}`, "larger than", 413},
	} {
		opsWantAdminError(t, opsCallAdmin(t, "POST", "/moserver/revoke-client", tc.body), tc.status, tc.want)
	}
	r = opsCallAdmin(t, "GET", "/moserver/revoke-client", "")
	opsWantAdminError(t, r, 405, "use POST")
	if r.header.Get("Allow") != "POST" {
		t.Errorf("Allow = %q", r.header.Get("Allow"))
	}
}

func TestAdminRevokeFamily(t *testing.T) {
	h, _ := opsProvisionHandler(t, "https://admin.example/wp-json/moserver", nil)
	rt := opsMustRefresh(t, h)
	other := opsMustRefresh(t, h)
	fid, ok := tokens.ParseRefresh(rt)
	if !ok {
		t.Fatal("refresh token does not parse")
	}
	r := opsCallAdmin(t, "POST", "/moserver/revoke-family", `{"family_id":"`+fid+`"}`)
	if r.status != 200 || r.str("family_id") != fid || r.json["revoked"] != true {
		t.Fatalf("revoke-family: %d %v", r.status, r.json)
	}
	if got := opsTokenRequest(t, h, opsRefreshForm(rt)); got.status != http.StatusBadRequest {
		t.Fatalf("refresh of a revoked family: %d %s", got.status, got.body)
	}
	if got := opsTokenRequest(t, h, opsRefreshForm(other)); got.status != 200 {
		t.Fatalf("another family was affected: %d %s", got.status, got.body)
	}
	// Idempotent.
	if r := opsCallAdmin(t, "POST", "/moserver/revoke-family", `{"family_id":"`+fid+`"}`); r.status != 200 {
		t.Fatalf("second revoke-family: %d %v", r.status, r.json)
	}
	_, unknown := tokens.NewFamilyToken()
	opsWantAdminError(t, opsCallAdmin(t, "POST", "/moserver/revoke-family", `{"family_id":"`+unknown+`"}`), 404, "no live family")
	opsWantAdminError(t, opsCallAdmin(t, "POST", "/moserver/revoke-family", `{"family_id":"{abc}"}`), 400, "family_id must be")
	opsWantAdminError(t, opsCallAdmin(t, "POST", "/moserver/revoke-family", `{}`), 400, "family_id is required")
	opsWantAdminError(t, opsCallAdmin(t, "PUT", "/moserver/revoke-family", `{}`), 405, "use POST")
}

func TestAdminKeys(t *testing.T) {
	h, _ := opsProvisionHandler(t, "https://keys.example/wp-json/moserver", nil)
	r := opsCallAdmin(t, "GET", "/moserver/keys", "")
	kid := h.shared.signer.SigningKey().KID
	if r.status != 200 || r.str("signing_kid") != kid || r.str("signing_alg") != "ES256" || r.json["signing_key_published"] != true {
		t.Fatalf("keys: %d %v", r.status, r.json)
	}
	keys, _ := r.json["keys"].([]any)
	if len(keys) != 1 {
		t.Fatalf("keys: %v", r.json["keys"])
	}
	k, _ := keys[0].(map[string]any)
	if k["kid"] != kid || k["kty"] != "EC" || k["d"] != nil {
		t.Errorf("published key: %v", k)
	}
	// The kid of an issued token.
	at := opsTokenRequest(t, h, opsCCForm()).access
	claims, err := h.shared.signer.Verify(at, time.Now())
	if err != nil || claims.ClientID != opsClientID {
		t.Fatalf("verify: %v", err)
	}
	if r := opsCallAdmin(t, "GET", "/moserver/keys?issuer="+url.QueryEscape(h.Issuer), ""); r.status != 200 {
		t.Fatalf("keys with issuer: %d %v", r.status, r.json)
	}
	opsWantAdminError(t, opsCallAdmin(t, "GET", "/moserver/keys?issuer=https://nope.example", ""), 404, "no moserver block")
	opsWantAdminError(t, opsCallAdmin(t, "POST", "/moserver/keys", ""), 405, "use GET")
}

func TestAdminIssuerChoice(t *testing.T) {
	opsWantAdminError(t, opsCallAdmin(t, "GET", "/moserver/keys", ""), 404, "no moserver block is configured")
	a, _ := opsProvisionHandler(t, "https://a.example/wp-json/moserver", func(h *Handler) { h.RefreshTokenTTL = caddy.Duration(time.Hour) })
	b, _ := opsProvisionHandler(t, "https://b.example/wp-json/moserver", func(h *Handler) {
		h.RefreshTokenTTL = caddy.Duration(time.Hour)
		h.Clients[0].AccessTokenTTL = caddy.Duration(3 * time.Hour)
	})
	opsWantAdminError(t, opsCallAdmin(t, "GET", "/moserver/keys", ""), 400, "name one with issuer (one of https://a.example/wp-json/moserver, https://b.example")
	for _, h := range []*Handler{a, b} {
		r := opsCallAdmin(t, "GET", "/moserver/keys?issuer="+url.QueryEscape(h.Issuer), "")
		if r.status != 200 || r.str("signing_kid") != h.shared.signer.SigningKey().KID {
			t.Errorf("%s: %d %v", h.Issuer, r.status, r.json)
		}
	}
	// keep defaults to each block's longest token lifetime.
	for h, want := range map[*Handler]time.Duration{a: time.Hour, b: 3 * time.Hour} {
		r := opsCallAdmin(t, "POST", "/moserver/revoke-client", `{"issuer":"`+h.Issuer+`","client_id":"c"}`)
		if r.status != 200 || r.str("keep") != want.String() {
			t.Errorf("%s: %d %v, want keep %s", h.Issuer, r.status, r.json, want)
		}
	}
	// A block cleaned up (reload, stop) is gone from the registry.
	if err := b.Cleanup(); err != nil {
		t.Fatal(err)
	}
	b.shared = nil // the test's own cleanup must not unshare it again
	if r := opsCallAdmin(t, "GET", "/moserver/keys", ""); r.status != 200 || r.str("issuer") != a.Issuer {
		t.Fatalf("after cleanup: %d %v", r.status, r.json)
	}
}

func TestAdminFamilies(t *testing.T) {
	h, _ := opsProvisionHandler(t, "https://fam.example/wp-json/moserver", func(h *Handler) {
		h.Clients = append(h.Clients, ClientConfig{ID: "other-client", Secret: "other-secret", RefreshTokens: true})
	})
	query := "client_id=" + opsClientID

	r := opsCallAdmin(t, "GET", "/moserver/families?"+query, "")
	if r.status != 200 || r.str("client_id") != opsClientID || r.str("issuer") != h.Issuer ||
		!strings.Contains(r.body, `"families": []`) || r.json["next"] != nil {
		t.Fatalf("no families yet: %d %s", r.status, r.body)
	}

	// Seven families, each in a millisecond of its own so that creation
	// order is issuance order; another client's family is not listed.
	var ids, refreshes, secrets []string
	var scope string
	for range 7 {
		rep := opsTokenRequest(t, h, opsCCForm())
		if rep.status != 200 || rep.refresh == "" {
			t.Fatalf("client_credentials: %d %s", rep.status, rep.body)
		}
		fid, ok := tokens.ParseRefresh(rep.refresh)
		if !ok {
			t.Fatal("refresh token does not parse")
		}
		var m struct {
			Scope string `json:"scope"`
		}
		_ = json.Unmarshal([]byte(rep.body), &m)
		ids, refreshes, scope = append(ids, fid), append(refreshes, rep.refresh), m.Scope
		secrets = append(secrets, rep.refresh, rep.access)
		time.Sleep(3 * time.Millisecond)
	}
	foreign := opsTokenRequest(t, h, url.Values{"grant_type": {"client_credentials"}, "client_id": {"other-client"}, "client_secret": {"other-secret"}})
	if foreign.status != 200 || foreign.refresh == "" {
		t.Fatalf("other client: %d %s", foreign.status, foreign.body)
	}
	// A rotation keeps the family (and its place).
	rotated := opsTokenRequest(t, h, opsRefreshForm(refreshes[2]))
	if rotated.status != 200 || rotated.refresh == "" {
		t.Fatalf("refresh: %d %s", rotated.status, rotated.body)
	}
	secrets = append(secrets, rotated.refresh, rotated.access, foreign.refresh, foreign.access)

	admintest.CheckPages(t, opsGetAdmin(t), query, ids, []int{1, 3, 7, 1000}, secrets, func(f admintest.Family) bool {
		expires, _ := time.Parse(time.RFC3339Nano, f.ExpiresAt)
		if time.Until(expires) > 14*24*time.Hour+time.Minute || time.Until(expires) < 13*24*time.Hour {
			t.Errorf("family expires at %s, want in about the refresh-token lifetime", f.ExpiresAt)
		}
		return f.Subject == opsClientID && f.Scope == scope && !f.Revoked
	})
	if got, _ := admintest.ListFamilies(t, opsGetAdmin(t), "client_id=other-client", 10, nil); len(got) != 1 || got[0].Subject != "other-client" {
		t.Errorf("other client's families: %+v", got)
	}
	opsWantAdminError(t, opsCallAdmin(t, "GET", "/moserver/families?"+query+"&after=nonsense", ""), 400, "is not a cursor")
	// A client the block does not know is answered, with no families.
	if got, _ := admintest.ListFamilies(t, opsGetAdmin(t), "client_id=removed-client&issuer="+url.QueryEscape(h.Issuer), 10, nil); len(got) != 0 {
		t.Errorf("unknown client's families: %+v", got)
	}

	// A family revoked through the admin API leaves the default listing and
	// shows as revoked with include_revoked; so does one revoked by a replay.
	if r := opsCallAdmin(t, "POST", "/moserver/revoke-family", `{"family_id":"`+ids[4]+`"}`); r.status != 200 {
		t.Fatalf("revoke-family: %d %s", r.status, r.body)
	}
	// A replay: the spent token again after its successor was used.
	if r := opsTokenRequest(t, h, opsRefreshForm(rotated.refresh)); r.status != 200 {
		t.Fatalf("second rotation: %d %s", r.status, r.body)
	}
	if rep := opsTokenRequest(t, h, opsRefreshForm(refreshes[2])); rep.status != http.StatusBadRequest {
		t.Fatalf("replay: %d %s", rep.status, rep.body)
	}
	live := []string{ids[0], ids[1], ids[3], ids[5], ids[6]}
	if got, _ := admintest.ListFamilies(t, opsGetAdmin(t), query, 2, secrets); strings.Join(admintest.IDs(got), ",") != strings.Join(live, ",") {
		t.Errorf("after revocations: %v, want %v", admintest.IDs(got), live)
	}
	for _, v := range []string{"false", "0"} {
		if got, _ := admintest.ListFamilies(t, opsGetAdmin(t), query+"&include_revoked="+v, 2, secrets); len(got) != len(live) {
			t.Errorf("include_revoked=%s: %v, want %v", v, admintest.IDs(got), live)
		}
	}
	got, _ := admintest.ListFamilies(t, opsGetAdmin(t), query+"&include_revoked=true", 2, secrets)
	if strings.Join(admintest.IDs(got), ",") != strings.Join(ids, ",") {
		t.Fatalf("include_revoked: %v, want %v", admintest.IDs(got), ids)
	}
	for i, f := range got {
		if want := i == 2 || i == 4; f.Revoked != want {
			t.Errorf("family %d: revoked %v, want %v", i, f.Revoked, want)
		}
	}

	// After revoke-client the client's families count as revoked (refreshing
	// refuses them) whether or not the store marked them; a family created
	// afterwards is live.
	if r := opsCallAdmin(t, "POST", "/moserver/revoke-client", `{"client_id":"`+opsClientID+`"}`); r.status != 200 {
		t.Fatalf("revoke-client: %d %s", r.status, r.body)
	}
	time.Sleep(3 * time.Millisecond)
	later := opsMustRefresh(t, h)
	laterID, _ := tokens.ParseRefresh(later)
	secrets = append(secrets, later)
	r = opsCallAdmin(t, "GET", "/moserver/families?"+query, "")
	if _, err := time.Parse(time.RFC3339Nano, r.str("revoked_before")); err != nil || r.status != 200 {
		t.Errorf("revoked_before after revoke-client: %d %s", r.status, r.body)
	}
	if got, _ := admintest.ListFamilies(t, opsGetAdmin(t), query, 3, secrets); strings.Join(admintest.IDs(got), ",") != laterID {
		t.Errorf("after revoke-client: %v, want only %s", admintest.IDs(got), laterID)
	}
	got, _ = admintest.ListFamilies(t, opsGetAdmin(t), query+"&include_revoked=1", 3, secrets)
	if strings.Join(admintest.IDs(got), ",") != strings.Join(append(ids, laterID), ",") {
		t.Fatalf("include_revoked after revoke-client: %v", admintest.IDs(got))
	}
	for i, f := range got {
		if want := i < len(ids); f.Revoked != want {
			t.Errorf("family %d after revoke-client: revoked %v, want %v", i, f.Revoked, want)
		}
	}
	if r := opsCallAdmin(t, "GET", "/moserver/families?client_id=other-client", ""); r.json["revoked_before"] != nil {
		t.Errorf("another client has a revoked_before: %s", r.body)
	}
}

// opsSpyStore records the ListFamilies query and answers it with page or
// err.
type opsSpyStore struct {
	blockStore
	clientID string
	q        store.FamilyQuery
	calls    int
	page     store.FamilyPage
	err      error
}

func (s *opsSpyStore) ListFamilies(_ context.Context, clientID string, q store.FamilyQuery) (store.FamilyPage, error) {
	s.clientID, s.q, s.calls = clientID, q, s.calls+1
	return s.page, s.err
}

func TestAdminFamiliesQuery(t *testing.T) {
	h, _ := opsProvisionHandler(t, "https://famq.example/wp-json/moserver", nil)
	created := time.Date(2026, 11, 26, 2, 31, 41, 771e6, time.FixedZone("CET", 3600))
	spy := &opsSpyStore{blockStore: h.shared.store, page: store.FamilyPage{
		Families: []store.FamilySummary{{FamilyID: "f1", Subject: "s", Scope: "a b", CreatedAt: created, ExpiresAt: created.Add(time.Hour)}, {FamilyID: "f2"}},
		Next:     "cursor/2",
	}}
	h.shared.store = spy

	r := opsCallAdmin(t, "GET", "/moserver/families?client_id=c%20x", "")
	if r.status != 200 || spy.clientID != "c x" || spy.q != (store.FamilyQuery{Limit: 100}) {
		t.Fatalf("defaults: %d %s, store asked %q %+v", r.status, r.body, spy.clientID, spy.q)
	}
	want := `{
  "issuer": "https://famq.example/wp-json/moserver",
  "client_id": "c x",
  "families": [
    {
      "family_id": "f1",
      "subject": "s",
      "scope": "a b",
      "created_at": "2026-11-26T01:31:41.771Z",
      "expires_at": "2026-11-26T02:31:41.771Z",
      "revoked": false
    },
    {
      "family_id": "f2",
      "subject": "",
      "scope": "",
      "created_at": "",
      "expires_at": "",
      "revoked": false
    }
  ],
  "next": "cursor/2"
}
`
	if r.body != want {
		t.Errorf("answer:\n%s\nwant:\n%s", r.body, want)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", r.header.Get("Cache-Control"))
	}
	path := "/moserver/families?issuer=" + url.QueryEscape(h.Issuer) + "&client_id=c&limit=1000&after=" + url.QueryEscape("cursor/2") + "&include_revoked=true"
	if r := opsCallAdmin(t, "GET", path, ""); r.status != 200 || spy.q != (store.FamilyQuery{After: "cursor/2", Limit: 1000, IncludeRevoked: true}) {
		t.Fatalf("all parameters: %d %s, store asked %+v", r.status, r.body, spy.q)
	}
	spy.page = store.FamilyPage{}
	if r := opsCallAdmin(t, "GET", "/moserver/families?client_id=c&limit=1", ""); r.status != 200 || spy.q.Limit != 1 ||
		!strings.Contains(r.body, `"families": []`) || strings.Contains(r.body, "next") {
		t.Fatalf("empty page: %d %s", r.status, r.body)
	}

	calls := spy.calls
	for _, tc := range []struct {
		query, want string
		status      int
	}{
		{"", "client_id is required", 400},
		{"client_id=", "client_id is required", 400},
		{"client_id=%20", "client_id is required", 400},
		{"client_id=c&limit=0", "limit \"0\" is not a whole number from 1 to 1000", 400},
		{"client_id=c&limit=1001", "from 1 to 1000", 400},
		{"client_id=c&limit=-5", "from 1 to 1000", 400},
		{"client_id=c&limit=ten", "from 1 to 1000", 400},
		{"client_id=c&limit=", "from 1 to 1000", 400},
		{"client_id=c&include_revoked=yes", "include_revoked \"yes\" is not true or false", 400},
		{"client_id=c&include_revoked", "include_revoked", 400},
		{"client_id=c&limt=5", "unknown query parameter \"limt\"", 400},
		{"client_id=c&client_id=d", "client_id is given 2 times", 400},
		{"client_id=c&issuer=https://nope.example", "no moserver block has issuer", 404},
	} {
		opsWantAdminError(t, opsCallAdmin(t, "GET", "/moserver/families?"+tc.query, ""), tc.status, tc.want)
	}
	if spy.calls != calls {
		t.Errorf("the store was asked for a refused query")
	}

	spy.err = fmt.Errorf("listing: %w", store.ErrUnavailable)
	opsWantAdminError(t, opsCallAdmin(t, "GET", "/moserver/families?client_id=c", ""), 503, "listing the client's families failed")
	// The client's revoked-before time and each family's revoked flag are
	// the store's, answered as they are.
	spy.err = nil
	spy.page = store.FamilyPage{ClientRevokedBefore: created.Add(time.Millisecond), Families: []store.FamilySummary{
		{FamilyID: "old", CreatedAt: created, Revoked: true},
		{FamilyID: "new", CreatedAt: created.Add(time.Millisecond)},
	}}
	r = opsCallAdmin(t, "GET", "/moserver/families?client_id=c&include_revoked=true", "")
	var page struct{ Families []admintest.Family }
	_ = json.Unmarshal([]byte(r.body), &page)
	if r.status != 200 || r.str("revoked_before") != "2026-11-26T01:31:41.772Z" ||
		len(page.Families) != 2 || !page.Families[0].Revoked || page.Families[1].Revoked || !spy.q.IncludeRevoked {
		t.Errorf("revoked_before with include_revoked: %d %s", r.status, r.body)
	}

	spy.err = fmt.Errorf("listing: %w", store.ErrBadCursor)
	opsWantAdminError(t, opsCallAdmin(t, "GET", "/moserver/families?client_id=c&after=x", ""), 400, `after "x" is not a cursor`)
	spy.err = errors.New("something broke")
	opsWantAdminError(t, opsCallAdmin(t, "GET", "/moserver/families?client_id=c", ""), 500, "listing the client's families failed: something broke")

	for _, m := range []string{"POST", "PUT", "DELETE"} {
		r := opsCallAdmin(t, m, "/moserver/families?client_id=c", "")
		opsWantAdminError(t, r, 405, "use GET")
		if r.header.Get("Allow") != "GET" {
			t.Errorf("%s: Allow = %q", m, r.header.Get("Allow"))
		}
	}
	opsWantAdminError(t, opsCallAdmin(t, "GET", "/moserver/nope", ""), 404, "GET /moserver/families")
}

func TestLongestTokenLifetime(t *testing.T) {
	for _, tc := range []struct {
		h    Handler
		want time.Duration
	}{
		{Handler{}, 14 * 24 * time.Hour},
		{Handler{RefreshTokenTTL: caddy.Duration(time.Hour)}, time.Hour},
		{Handler{RefreshTokenTTL: caddy.Duration(time.Minute)}, time.Hour}, // the default access-token lifetime
		{Handler{RefreshTokenTTL: caddy.Duration(time.Minute), AccessTokenTTL: caddy.Duration(2 * time.Minute)}, 2 * time.Minute},
		{Handler{Clients: []ClientConfig{{AccessTokenTTL: caddy.Duration(30 * 24 * time.Hour)}}}, 30 * 24 * time.Hour},
	} {
		if got := tc.h.longestTokenLifetime(); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.h, got, tc.want)
		}
	}
}

func TestValidFamilyID(t *testing.T) {
	_, fid := tokens.NewFamilyToken()
	for id, want := range map[string]bool{
		fid: true, "": false, fid[:21]: false, fid + "A": false, strings.Repeat("{", 22): false,
		strings.Repeat("A", 21) + "B": false, // non-zero padding bits: not a canonical encoding
	} {
		if got := isFamilyID(id); got != want {
			t.Errorf("isFamilyID(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestAdminModuleRegistered(t *testing.T) {
	m, err := caddy.GetModule("admin.api.moserver")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.New().(caddy.AdminRouter); !ok {
		t.Fatal("admin.api.moserver is not an AdminRouter")
	}
}
