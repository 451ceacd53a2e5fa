package integration

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/caddy-moserver/caddy-moserver/internal/testutil/caddyproc"
)

// exampleSecretEnv is what ./xcaddy.sh run puts in the environment of
// Caddyfile.example when MOSERVER_DEMO_SECRET is unset.
const exampleSecretEnv = "MOSERVER_DEMO_SECRET=demo-secret"

// TestExampleCaddyfile runs Caddyfile.example as shipped (on free ports), in
// the environment ./xcaddy.sh run gives it, and gets a token the way its
// comment says. The demo secret is read when the configuration loads, so it
// is not in the configuration Caddy saves.
func TestExampleCaddyfile(t *testing.T) {
	root, err := caddyproc.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile(filepath.Join(root, "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	port := caddyproc.FreePort(t)
	cfg := strings.NewReplacer(":8080", fmt.Sprintf(":%d", port),
		"admin localhost:2019", fmt.Sprintf("admin localhost:%d", caddyproc.FreePort(t))).Replace(string(example))
	base := fmt.Sprintf("http://localhost:%d", port)
	inst := caddyproc.Start(t, cfg, base+"/", exampleSecretEnv)
	s := &site{base: base}
	r := mustToken(t, s.post(t, "/wp-json/moserver/token", "application/x-www-form-urlencoded",
		"grant_type=client_credentials", "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("demo-client:demo-secret"))))
	mustToken(t, s.form(t, "/wp-json/moserver/token", url.Values{"grant_type": {"refresh_token"},
		"client_id": {"demo-client"}, "client_secret": {"demo-secret"}, "refresh_token": {r.str("refresh_token")}}))
	if other := send(t, mustGet(t, base+"/some/page")); !strings.Contains(other.body, "WordPress would answer here") {
		t.Fatalf("other URLs do not reach the next handler: %d %s", other.status, other.body)
	}
	saved, err := os.ReadFile(filepath.Join(inst.Dir(), "xdg-config", "caddy", "autosave.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(saved), "demo-secret") || !strings.Contains(string(saved), "{env.MOSERVER_DEMO_SECRET}") {
		t.Errorf("Caddy's autosaved configuration holds the demo secret, not its placeholder:\n%s", saved)
	}
}

// TestAdaptExampleHoldsNoSecret: caddy adapt of Caddyfile.example leaves the
// demo secret's placeholder for run time, whatever the environment says,
// and without the environment variable the example names it when it fails
// to load rather than starting with an empty secret.
func TestAdaptExampleHoldsNoSecret(t *testing.T) {
	root, err := caddyproc.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	const secret = "adapt-time-secret-4c1e"
	adapt := exec.Command(caddyproc.Binary(t), "adapt", "--config", filepath.Join(root, "Caddyfile.example"), "--adapter", "caddyfile")
	adapt.Env = append(os.Environ(), "MOSERVER_DEMO_SECRET="+secret)
	out, err := adapt.Output()
	if err != nil {
		t.Fatalf("caddy adapt: %v\n%s", err, out)
	}
	for _, leaked := range []string{secret, "demo-secret"} {
		if strings.Contains(string(out), leaked) {
			t.Errorf("the adapted configuration holds %q:\n%s", leaked, out)
		}
	}
	if !strings.Contains(string(out), `"secret":"{env.MOSERVER_DEMO_SECRET}"`) {
		t.Errorf("the adapted configuration lacks the secret's placeholder:\n%s", out)
	}

	validate := exec.Command(caddyproc.Binary(t), "validate", "--config", filepath.Join(root, "Caddyfile.example"), "--adapter", "caddyfile")
	validate.Env = append(os.Environ(), "MOSERVER_DEMO_SECRET=")
	out, err = validate.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "demo-client") || !strings.Contains(string(out), "secret is empty") {
		t.Errorf("caddy validate without MOSERVER_DEMO_SECRET: %v, want the empty secret named:\n%s", err, out)
	}
}

func mustGet(t *testing.T, u string) *http.Request {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestDocumentedSamples sends the plugin documentation's requests to a real
// Caddy with Redis.
func TestDocumentedSamples(t *testing.T) {
	up := newUpstream(t)
	s := startSite(t, redisOption(t), up.URL)
	form := "grant_type=client_credentials&client_id=" + clientID + "&client_secret=" + clientSecret
	basicAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte(clientID+":"+clientSecret))
	const token = "/wp-json/moserver/token"

	var rts []string
	t.Run("curl", func(t *testing.T) {
		rts = append(rts, mustToken(t, s.post(t, token, "application/x-www-form-urlencoded", form)).str("refresh_token"))
	})
	t.Run("C# JSON", func(t *testing.T) {
		mustToken(t, s.post(t, token, "application/json",
			`{"grant_type":"client_credentials","client_id":"`+clientID+`","client_secret":"`+clientSecret+`"}`))
	})
	t.Run("Java Basic and body", func(t *testing.T) {
		mustToken(t, s.post(t, token, "application/x-www-form-urlencoded", form, "Authorization", basicAuth, "Accept", "application/json"))
	})
	t.Run("PHP Python Basic", func(t *testing.T) {
		mustToken(t, s.post(t, token, "application/x-www-form-urlencoded", "grant_type=client_credentials", "Authorization", basicAuth))
	})
	t.Run("plain permalinks", func(t *testing.T) {
		mustToken(t, s.post(t, "/?rest_route=/moserver/token", "application/x-www-form-urlencoded", form))
	})
	t.Run("golang.org/x/oauth2", func(t *testing.T) {
		for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInParams, oauth2.AuthStyleInHeader} {
			cfg := clientcredentials.Config{ClientID: clientID, ClientSecret: clientSecret, TokenURL: s.base + token,
				AuthStyle: style, Scopes: []string{"email"}}
			tok, err := cfg.Token(context.Background())
			if err != nil {
				t.Fatalf("style %d: %v", style, err)
			}
			if tok.Extra("scope") != "email" {
				t.Errorf("scope %v", tok.Extra("scope"))
			}
		}
	})
	t.Run("refresh curl, C#, Java, Python", func(t *testing.T) {
		rt := rts[0]
		rt = mustToken(t, s.post(t, token, "application/x-www-form-urlencoded",
			"grant_type=refresh_token&client_id="+clientID+"&client_secret="+clientSecret+"&refresh_token="+rt)).str("refresh_token")
		rt = mustToken(t, s.post(t, token, "application/json",
			`{"grant_type":"refresh_token","client_id":"`+clientID+`","client_secret":"`+clientSecret+`","refresh_token":"`+rt+`"}`)).str("refresh_token")
		rt = mustToken(t, s.post(t, token, "application/x-www-form-urlencoded",
			"grant_type=refresh_token&username=u&password=p&refresh_token="+rt, "Authorization", basicAuth)).str("refresh_token")
		mustToken(t, s.form(t, token, url.Values{"grant_type": {"refresh_token"}, "username": {"u"}, "password": {"p"},
			"client_id": {clientID}, "client_secret": {clientSecret}, "refresh_token": {rt}}))
	})
	t.Run("access token verifies against the JWKS", func(t *testing.T) {
		at := mustToken(t, s.form(t, token, ccValues())).str("access_token")
		set, err := jwk.Fetch(context.Background(), s.base+"/wp-json/moserver/jwks")
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jwt.Parse([]byte(at), jwt.WithKeySet(set), jwt.WithIssuer(s.base+"/wp-json/moserver"))
		if err != nil {
			t.Fatal(err)
		}
		if cid, _ := tok.Get("client_id"); cid != clientID || tok.Subject() != "client:"+clientID {
			t.Errorf("client_id %v sub %v", cid, tok.Subject())
		}
	})
	t.Run("errors", func(t *testing.T) {
		mustError(t, s.form(t, token, url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {"WRONG"}}), 401, "invalid_client")
		r := send(t, mustGet(t, s.base+token+"?grant_type=client_credentials"))
		mustError(t, r, 405, "invalid_request")
		if r.header.Get("Allow") != "POST" {
			t.Errorf("Allow %q", r.header.Get("Allow"))
		}
		mustError(t, s.post(t, token, "application/x-www-form-urlencoded", "grant_type=client_credentials&x="+strings.Repeat("a", 70000)), 413, "invalid_request")
		mustError(t, s.post(t, token, "application/json", `{"grant_type":"client_credentials","client_id":1}`), 400, "invalid_request")
	})
	if n := len(up.requests()); n != 0 {
		t.Fatalf("%d token requests reached the upstream", n)
	}
}

// TestPassThroughIsByteIdentical checks what PHP receives for requests the
// module does not own.
func TestPassThroughIsByteIdentical(t *testing.T) {
	up := newUpstream(t)
	s := startSite(t, "", up.URL)
	authCode := `{"grant_type":"authorization_code","code":"b3df8b6de22c6a87c78a434ee3dd2e9105609236","redirect_uri":"http://127.0.0.1:18099/callback","client_id":"` + clientID + `","client_secret":"` + clientSecret + `"}`
	r := s.post(t, "/wp-json/moserver/token", "application/json", authCode, "X-Custom", "kept", "Authorization", "Basic Zm9vOmJhcg==")
	if r.status != 200 || r.body != "from upstream" {
		t.Fatalf("authorization_code not passed on: %d %s", r.status, r.body)
	}
	password := "grant_type=password&username=admin&password=p%40ss%26w0rd"
	s.post(t, "/?rest_route=/moserver/token", "application/x-www-form-urlencoded", password)
	s.post(t, "/wp-json/wp/v2/posts", "text/plain", "hello")
	send(t, &http.Request{Method: http.MethodOptions, URL: mustURL(t, s.base+"/wp-json/moserver/token"), Header: http.Header{"Origin": {"https://app.example"}}})
	got := up.requests()
	if len(got) != 4 {
		t.Fatalf("upstream saw %d requests: %+v", len(got), got)
	}
	if got[0].Method != "POST" || got[0].URI != "/wp-json/moserver/token" || got[0].Body != authCode ||
		got[0].Header.Get("X-Custom") != "kept" || got[0].Header.Get("Authorization") != "Basic Zm9vOmJhcg==" ||
		got[0].Header.Get("Content-Type") != "application/json" || got[0].Header.Get("Content-Length") != fmt.Sprint(len(authCode)) {
		t.Errorf("authorization_code arrived changed: %+v", got[0])
	}
	if got[1].URI != "/?rest_route=/moserver/token" || got[1].Body != password {
		t.Errorf("password grant arrived changed: %+v", got[1])
	}
	if got[2].URI != "/wp-json/wp/v2/posts" || got[2].Body != "hello" {
		t.Errorf("other URL arrived changed: %+v", got[2])
	}
	if got[3].Method != http.MethodOptions {
		t.Errorf("OPTIONS not passed on: %+v", got[3])
	}
}

func mustURL(t *testing.T, raw string) *url.URL {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestConcurrentRefreshThroughCaddy: 50 concurrent refreshes of one token
// through the real server yield one successor: by default every one of them
// gets it (the others are retries within refresh_grace); strict
// (refresh_grace 0), one success and 49 invalid_grant. No 5xx.
func TestConcurrentRefreshThroughCaddy(t *testing.T) {
	for _, storage := range []string{"memory", "redis", "redis strict"} {
		t.Run(storage, func(t *testing.T) {
			opt := "storage memory"
			if storage != "memory" {
				opt = redisOption(t)
			}
			strict := storage == "redis strict"
			if strict {
				opt += "\n\t\trefresh_grace 0"
			}
			s := startSite(t, opt, newUpstream(t).URL)
			rt := mustToken(t, s.form(t, "/wp-json/moserver/token", ccValues())).str("refresh_token")
			var wg sync.WaitGroup
			var mu sync.Mutex
			counts := map[string]int{}
			successors := map[string]bool{}
			for range 50 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := s.form(t, "/wp-json/moserver/token", refreshValues(rt))
					mu.Lock()
					counts[fmt.Sprintf("%d %s", r.status, r.str("error"))]++
					successors[r.str("refresh_token")] = true
					mu.Unlock()
				}()
			}
			wg.Wait()
			delete(successors, "")
			if len(successors) != 1 || (strict && (counts["200 "] != 1 || counts["400 invalid_grant"] != 49)) || (!strict && counts["200 "] != 50) {
				t.Fatalf("outcomes %v with %d successors; want one successor (strict: 1 success and 49 invalid_grant)", counts, len(successors))
			}
		})
	}
}

func TestAdapt(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(siteConfig(8443, "refresh_token_ttl 14d", "127.0.0.1:9000")), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(caddyproc.Binary(t), "adapt", "--config", cfg, "--adapter", "caddyfile").CombinedOutput()
	if err != nil {
		t.Fatalf("caddy adapt: %v\n%s", err, out)
	}
	for _, want := range []string{`"handler":"moserver"`, `"refresh_token_ttl":1209600000000000`, `"refresh_tokens":true`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("adapted config lacks %s:\n%s", want, out)
		}
	}
}
