package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
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
		Storage:     &StorageConfig{Type: "memory"},
		KeyPrefix:   "ops-test-" + tokens.NewID(6) + ":",
		SigningKeys: []SigningKeyConfig{{File: keyFile}},
		Clients:     []ClientConfig{{ID: opsClientID, Secret: opsClientSecret, RefreshTokens: true}},
	}
	if mod != nil {
		mod(h)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
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
	json   map[string]any
}

func (r opsAdminReply) str(k string) string { s, _ := r.json[k].(string); return s }

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
	rep := opsAdminReply{status: rec.Code, header: rec.Header()}
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
	b.shared, b.storeKey = nil, "" // the test's own cleanup must not release them again
	if r := opsCallAdmin(t, "GET", "/moserver/keys", ""); r.status != 200 || r.str("issuer") != a.Issuer {
		t.Fatalf("after cleanup: %d %v", r.status, r.json)
	}
}

func TestAdminFamiliesNotImplemented(t *testing.T) {
	opsProvisionHandler(t, "https://fam.example/wp-json/moserver", nil)
	opsWantAdminError(t, opsCallAdmin(t, "GET", "/moserver/families?client_id=x", ""), 501, "per-client index")
	opsWantAdminError(t, opsCallAdmin(t, "POST", "/moserver/families", ""), 405, "use GET")
	opsWantAdminError(t, opsCallAdmin(t, "GET", "/moserver/nope", ""), 404, "unknown moserver admin endpoint")
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
