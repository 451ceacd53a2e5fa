package oauth

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/caddy-moserver/caddy-moserver/internal/clients"
	"github.com/caddy-moserver/caddy-moserver/internal/tokens"
)

const (
	wpClientID = "wOZLNQLgeSUfDTnJqTiXrRatmTXXPPkO" // the fixtures' (96, 97)
	hsClientID = "HSClientHSClientHSClientHSClient"
	spaID      = "spa-client"
)

// discoveryFixture is a server with WordPress clients: an RS256 one, an
// HS256 one, a public one without a key, and the test clients.
func discoveryFixture(t *testing.T) (*fixture, *memWordPress, *rsa.PrivateKey) {
	t.Helper()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	k, err := tokens.ParseKey(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), wpClientID)
	if err != nil {
		t.Fatal(err)
	}
	wpGrants := []string{clients.GrantClientCredentials, clients.GrantRefreshToken, clients.GrantAuthorizationCode}
	reg := testClients()
	reg[wpClientID] = &clients.Client{ID: wpClientID, Scopes: []string{"email", "profile"}, Grants: wpGrants}
	reg[hsClientID] = &clients.Client{ID: hsClientID, Scopes: []string{"email"}, Grants: wpGrants}
	reg[spaID] = &clients.Client{ID: spaID, Scopes: []string{"profile"}, Grants: wpGrants, Public: true}
	f, wp := wpFixture(t, nil, func(c *Config) { c.Clients = reg })
	wp.keys[wpClientID] = &IDTokenKey{Algorithm: "RS256", Public: k.Public}
	wp.keys[hsClientID] = &IDTokenKey{Algorithm: "HS256"}
	return f, wp, rsaKey
}

func wellKnown(clientID, doc string) *http.Request {
	return httptest.NewRequest(http.MethodGet, "http://wp.example/wp-json/moserver/"+clientID+"/.well-known/"+doc, nil)
}

// memberOrder returns the names of a JSON object's members in order.
func memberOrder(t *testing.T, body string) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(body))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	var names []string
	for dec.More() {
		name, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, name.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return names
}

func TestDiscovery(t *testing.T) {
	f, _, _ := discoveryFixture(t)
	r := f.do(wellKnown(wpClientID, "openid-configuration"))
	if r.status != 200 || r.header.Get("Content-Type") != "application/json; charset=UTF-8" ||
		r.header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("%d %v %s", r.status, r.header, r.body)
	}
	// The plugin's members in its order (fixtures 45, 96), then the module's.
	wantOrder := []string{"request_parameter_supported", "claims_parameter_supported", "issuer", "authorization_endpoint",
		"token_endpoint", "userinfo_endpoint", "scopes_supported", "id_token_signing_alg_values_supported",
		"response_types_supported", "jwks_uri", "grant_types_supported", "subject_types_supported",
		"token_endpoint_auth_methods_supported", "code_challenge_methods_supported", "revocation_endpoint", "introspection_endpoint"}
	if got := memberOrder(t, r.body); !reflect.DeepEqual(got, wantOrder) {
		t.Errorf("members %v\nwant %v", got, wantOrder)
	}
	iss := issuer + "/" + wpClientID
	want := map[string]any{
		"request_parameter_supported":           false, // request objects are ignored
		"claims_parameter_supported":            false,
		"issuer":                                iss,
		"authorization_endpoint":                "https://wp.example/wp-json/moserver/authorize",
		"token_endpoint":                        "https://wp.example/wp-json/moserver/token",
		"userinfo_endpoint":                     "https://wp.example/wp-json/moserver/resource",
		"scopes_supported":                      []any{"openid", "email", "profile", "offline_access"},
		"id_token_signing_alg_values_supported": []any{"RS256"},
		"response_types_supported":              []any{"code"},
		"jwks_uri":                              iss + "/.well-known/keys",
		"grant_types_supported":                 []any{"authorization_code", "client_credentials", "refresh_token"},
		"subject_types_supported":               []any{"public"},
		"token_endpoint_auth_methods_supported": []any{"client_secret_basic", "client_secret_post"},
		"code_challenge_methods_supported":      []any{"S256"},
		"revocation_endpoint":                   "https://wp.example/wp-json/moserver/revoke",
		"introspection_endpoint":                "https://wp.example/wp-json/moserver/introspect",
	}
	for k, v := range want {
		if !reflect.DeepEqual(r.json[k], v) {
			t.Errorf("%s = %v, want %v", k, r.json[k], v)
		}
	}

	// An HS256 client, a public client without a key.
	if r := f.do(wellKnown(hsClientID, "openid-configuration")); !reflect.DeepEqual(r.json["id_token_signing_alg_values_supported"], []any{"HS256"}) {
		t.Errorf("HS256 client: %s", r.body)
	}
	spa := f.do(wellKnown(spaID, "openid-configuration"))
	if !reflect.DeepEqual(spa.json["id_token_signing_alg_values_supported"], []any{}) ||
		!reflect.DeepEqual(spa.json["grant_types_supported"], []any{"authorization_code", "refresh_token"}) ||
		!reflect.DeepEqual(spa.json["token_endpoint_auth_methods_supported"], []any{"client_secret_basic", "client_secret_post", "none"}) {
		t.Errorf("public client without a key: %s", spa.body)
	}

	// Unknown client: the plugin's 400 (fixture 47).
	u := f.do(wellKnown("NoSuchClient", "openid-configuration"))
	if u.status != 400 || u.body != `{"error":"invalid_client","error_description":"Client does not exist."}` {
		t.Errorf("unknown client: %d %s", u.status, u.body)
	}
	wantError(t, f.do(wellKnown("NoSuchClient", "keys")), 400, "invalid_client")
}

func TestDiscoveryIssuerUnderHomePath(t *testing.T) {
	f, _ := wpFixture(t, nil, func(c *Config) {
		c.Issuer = "https://wp.example/blog/wp-json/moserver/"
		c.Clients = clients.Static{wpClientID: {ID: wpClientID, Grants: []string{clients.GrantAuthorizationCode}}}
	})
	r := f.do(httptest.NewRequest(http.MethodGet, "/blog/wp-json/moserver/"+wpClientID+"/.well-known/openid-configuration", nil))
	for k, v := range map[string]string{
		"issuer":                 "https://wp.example/blog/wp-json/moserver/" + wpClientID,
		"authorization_endpoint": "https://wp.example/blog/wp-json/moserver/authorize",
		"userinfo_endpoint":      "https://wp.example/blog/wp-json/moserver/resource",
		"token_endpoint":         "https://wp.example/wp-json/moserver/token", // the configured path
	} {
		if r.str(k) != v {
			t.Errorf("%s = %q, want %q", k, r.str(k), v)
		}
	}
}

func TestClientKeys(t *testing.T) {
	f, wp, rsaKey := discoveryFixture(t)
	r := f.do(wellKnown(wpClientID, "keys"))
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	// The plugin's members in its order (fixtures 46, 97).
	if !strings.HasPrefix(r.body, `{"keys":[{"kty":"RSA","n":"`) || !strings.HasSuffix(r.body, `","e":"AQAB","use":"sig","alg":"RS256","kid":"`+wpClientID+`"}]}`) {
		t.Errorf("body %s", r.body)
	}
	set, err := jwk.Parse([]byte(r.body))
	if err != nil || set.Len() != 1 {
		t.Fatalf("not a JWK Set: %v", err)
	}
	k, _ := set.Key(0)
	var pub rsa.PublicKey
	if err := k.Raw(&pub); err != nil || !pub.Equal(&rsaKey.PublicKey) {
		t.Errorf("not the client's key (%v)", err)
	}

	// HS256, no key, an unusable one: 400, as the plugin.
	wp.keys[spaID] = nil
	for _, id := range []string{hsClientID, spaID, ccID} {
		wantError(t, f.do(wellKnown(id, "keys")), 400, "invalid_request")
	}
	wp.keys[ccID] = &IDTokenKey{Algorithm: "RS256", Unusable: errors.New("broken")}
	f.clock.Add(clientKeyCacheTTL) // the cached "no key" expires
	wantError(t, f.do(wellKnown(ccID, "keys")), 400, "invalid_request")
	if r := f.do(wellKnown(ccID, "openid-configuration")); !reflect.DeepEqual(r.json["id_token_signing_alg_values_supported"], []any{}) {
		t.Errorf("unusable key: %s", r.body)
	}

	// The key is read once a minute per client; a database that cannot
	// answer is a 503 once it must be read.
	f.do(wellKnown(wpClientID, "keys"))
	_, before := wp.reads()
	for range 3 {
		f.do(wellKnown(wpClientID, "keys"))
		f.do(wellKnown(wpClientID, "openid-configuration"))
	}
	if _, after := wp.reads(); after != before {
		t.Errorf("%d reads of a cached key", after-before)
	}
	wp.down(true)
	if r := f.do(wellKnown(wpClientID, "keys")); r.status != 200 {
		t.Errorf("cached key while the database is down: %d", r.status)
	}
	f.clock.Add(clientKeyCacheTTL)
	wantError(t, f.do(wellKnown(wpClientID, "keys")), 503, "temporarily_unavailable")
}

// TestClientWellKnownRoutes: the documents are answered in the forms
// WordPress routes to them, with WordPress configured; PHP's otherwise.
func TestClientWellKnownRoutes(t *testing.T) {
	f, _, _ := discoveryFixture(t)
	bare := newFixture(t, nil, nil)
	for _, target := range []string{
		"/wp-json/moserver/" + wpClientID + "/.well-known/keys",
		"/wp-json/MOSERVER/" + wpClientID + "/.Well-Known/Keys/",
		"/index.php/wp-json/moserver/" + wpClientID + "/.well-known/keys",
		"/?rest_route=/moserver/" + wpClientID + "/.well-known/keys",
		"/?rest.route=%2Fmoserver%2F" + wpClientID + "%2F.well-known%2Fkeys%2F",
		"/wp-json/wp/v2/posts?rest_route=/moserver/" + wpClientID + "/.well-known/keys",
		// WordPress prefers the query to the path.
		"/wp-json/moserver/NoSuchClient/.well-known/keys?rest_route=/moserver/" + wpClientID + "/.well-known/keys",
	} {
		if r := f.do(httptest.NewRequest(http.MethodGet, target, nil)); r.status != 200 || r.json["keys"] == nil {
			t.Errorf("GET %s: %d %s", target, r.status, r.body)
		}
		if got := answeredAs(bare, httptest.NewRequest(http.MethodGet, target, nil)); got != "passed" {
			t.Errorf("without WordPress, GET %s: %s", target, got)
		}
	}
	for _, target := range []string{
		"/wp-json/moserver/" + wpClientID + "/.well-known/key",
		"/wp-json/moserver/" + wpClientID + "/.well-known/keys/x",
		"/wp-json/moserver//.well-known/keys",
		"/wp-json/moserver/.well-known/openid-configuration",
		"/wp-json/moserver/" + wpClientID + "/well-known/keys",
		"/.well-known/openid-configuration",
	} {
		if got := answeredAs(f, httptest.NewRequest(http.MethodGet, target, nil)); got != "passed" {
			t.Errorf("GET %s: %s, want it passed on", target, got)
		}
	}
	// Methods: GET and HEAD; OPTIONS is WordPress's.
	post := wellKnown(wpClientID, "keys")
	post.Method = http.MethodPost
	if r := f.do(post); r.status != 405 || r.header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d %v", r.status, r.header)
	}
	head := wellKnown(wpClientID, "openid-configuration")
	head.Method = http.MethodHead
	if r := f.do(head); r.status != 200 || r.body != "" || r.header.Get("Content-Length") == "" {
		t.Errorf("HEAD: %d %v", r.status, r.header)
	}
	opt := wellKnown(wpClientID, "keys")
	opt.Method = http.MethodOptions
	if got := answeredAs(f, opt); got != "passed" {
		t.Errorf("OPTIONS: %s", got)
	}
}

// TestMetadataWithWordPress: the RFC 8414 metadata names what WordPress
// adds: the plugin's authorize and userinfo endpoints, the code grant, PKCE.
func TestMetadataWithWordPress(t *testing.T) {
	f, _ := wpFixture(t, nil, nil)
	r := f.do(httptest.NewRequest(http.MethodGet, "/.well-known/oauth-authorization-server/wp-json/moserver", nil))
	for k, v := range map[string]any{
		"authorization_endpoint":           "https://wp.example/wp-json/moserver/authorize",
		"userinfo_endpoint":                "https://wp.example/wp-json/moserver/resource",
		"grant_types_supported":            []any{"authorization_code", "client_credentials", "refresh_token"},
		"response_types_supported":         []any{"code"},
		"code_challenge_methods_supported": []any{"S256"},
	} {
		if !reflect.DeepEqual(r.json[k], v) {
			t.Errorf("%s = %v, want %v", k, r.json[k], v)
		}
	}
	bare := newFixture(t, nil, nil)
	r = bare.do(httptest.NewRequest(http.MethodGet, "/.well-known/oauth-authorization-server/wp-json/moserver", nil))
	for _, k := range []string{"authorization_endpoint", "userinfo_endpoint", "code_challenge_methods_supported"} {
		if _, ok := r.json[k]; ok {
			t.Errorf("without WordPress: %s = %v", k, r.json[k])
		}
	}
}
