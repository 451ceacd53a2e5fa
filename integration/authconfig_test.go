package integration

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-moserver/caddy-moserver/internal/testutil/caddyproc"
)

// authBlockSite is a site with a moserver block of its own issuer, and
// extra directives after it.
func authBlockSite(port int, issuer, extra string) string {
	return fmt.Sprintf(`http://127.0.0.1:%d {
	moserver {
		issuer %s
		client %s {
			secret %s
			scopes profile email
		}
	}
	%s
}
`, port, issuer, clientID, clientSecret, extra)
}

// TestAuthConfigErrorsFailAtLoad checks that a moserver_auth handler whose
// moserver block cannot be found stops Caddy from loading the
// configuration, with a message that says why, instead of answering 500
// to the requests it should protect.
func TestAuthConfigErrorsFailAtLoad(t *testing.T) {
	const (
		issuerA = "https://a.example/wp-json/moserver"
		issuerB = "https://b.example/wp-json/moserver"
	)
	protect := func(opts string) string {
		return "moserver_auth /api/* {\n\t\t" + opts + "\n\t}\n\trespond /api/* \"ok\" 200"
	}
	p1, p2 := caddyproc.FreePort(t), caddyproc.FreePort(t)
	cases := map[string]struct {
		sites string
		want  string
	}{
		"unknown issuer": {
			authBlockSite(p1, issuerA, protect("issuer https://nope.example/wp-json/moserver")),
			`moserver_auth: no moserver block has issuer "https://nope.example/wp-json/moserver" (the configured issuers: ` + issuerA + `)`,
		},
		"two blocks, none named": {
			authBlockSite(p1, issuerA, protect("scope profile")) + authBlockSite(p2, issuerB, ""),
			"moserver_auth: moserver blocks of 2 issuers are configured (" + issuerA + ", " + issuerB + "); name one with issuer",
		},
		"no block": {
			fmt.Sprintf("http://127.0.0.1:%d {\n\t%s\n}\n", p1, protect("scope profile")),
			"moserver_auth: the configuration has no moserver block",
		},
	}
	bin := caddyproc.Binary(t)
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "Caddyfile")
			global := "{\n\tadmin off\n\tpersist_config off\n\tauto_https off\n}\n\n"
			if err := os.WriteFile(cfg, []byte(global+tc.sites), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "run", "--config", cfg, "--adapter", "caddyfile")
			cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			if ctx.Err() != nil {
				t.Fatalf("caddy run kept running with the configuration; output:\n%s", out.String())
			}
			if err == nil {
				t.Fatalf("caddy run exited 0; output:\n%s", out.String())
			}
			if !strings.Contains(unescaped(out.String()), tc.want) {
				t.Errorf("the error does not say %q; output:\n%s", tc.want, out.String())
			}
		})
	}
}

// TestAuthSharedIssuerNeedsNoName: two sites with blocks of the same issuer
// (and so the same stored signing key) are one issuer to moserver_auth,
// which needs no issuer option then and accepts the tokens of either.
func TestAuthSharedIssuerNeedsNoName(t *testing.T) {
	const issuer = "https://shared.example/wp-json/moserver"
	portA, portB := caddyproc.FreePort(t), caddyproc.FreePort(t)
	cfg := authBlockSite(portA, issuer, "") +
		authBlockSite(portB, issuer, "moserver_auth /api/* {\n\t\tscope profile\n\t}\n\trespond /api/* \"ok\" 200")
	baseA, baseB := fmt.Sprintf("http://127.0.0.1:%d", portA), fmt.Sprintf("http://127.0.0.1:%d", portB)
	inst := caddyproc.Start(t, cfg, baseB+"/")
	defer inst.Stop()
	for _, s := range []*site{{Instance: inst, base: baseA}, {Instance: inst, base: baseB}} {
		r := s.form(t, "/wp-json/moserver/token", ccValues())
		if r.status != 200 || r.str("access_token") == "" {
			t.Fatalf("token from %s: %d %s", s.base, r.status, r.body)
		}
		req, _ := http.NewRequest(http.MethodGet, baseB+"/api/x", nil)
		req.Header.Set("Authorization", "Bearer "+r.str("access_token"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("a token of %s's block: %d, want 200", s.base, resp.StatusCode)
		}
	}
}

// TestAuthNamesAnotherSitesBlock protects a site with the moserver block of
// another site (named by its issuer): that block's tokens pass, the
// site's own block's tokens do not.
func TestAuthNamesAnotherSitesBlock(t *testing.T) {
	const (
		issuerA = "https://a.example/wp-json/moserver"
		issuerB = "https://b.example/wp-json/moserver"
	)
	portA, portB := caddyproc.FreePort(t), caddyproc.FreePort(t)
	cfg := authBlockSite(portA, issuerA, "") +
		authBlockSite(portB, issuerB, "moserver_auth /api/* {\n\t\tissuer "+issuerA+"\n\t}\n\trespond /api/* \"ok\" 200")
	baseA, baseB := fmt.Sprintf("http://127.0.0.1:%d", portA), fmt.Sprintf("http://127.0.0.1:%d", portB)
	inst := caddyproc.Start(t, cfg, baseB+"/")
	defer inst.Stop()
	a, b := &site{Instance: inst, base: baseA}, &site{Instance: inst, base: baseB}
	call := func(token string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, baseB+"/api/x", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	tokenOf := func(s *site) string {
		t.Helper()
		r := s.form(t, "/wp-json/moserver/token", ccValues())
		if r.status != 200 || r.str("access_token") == "" {
			t.Fatalf("token from %s: %d %s", s.base, r.status, r.body)
		}
		return r.str("access_token")
	}
	if got := call(tokenOf(a)); got != 200 {
		t.Errorf("a token of the named block (%s): %d, want 200", issuerA, got)
	}
	if got := call(tokenOf(b)); got != 401 {
		t.Errorf("a token of the site's own block (%s): %d, want 401", issuerB, got)
	}

	// A reload that names a block no site has is refused with the reason,
	// and the running configuration goes on protecting the site.
	bad := strings.Replace(cfg, "issuer "+issuerA+"\n\t}", "issuer https://gone.example/wp-json/moserver\n\t}", 1)
	if bad == cfg {
		t.Fatal("the test's bad configuration is the good one")
	}
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte("{\n\tadmin "+inst.AdminAddr+"\n\tauto_https off\n}\n\n"+bad), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(caddyproc.Binary(t), "reload", "--config", path, "--adapter", "caddyfile", "--address", inst.AdminAddr).CombinedOutput()
	if err == nil {
		t.Fatalf("caddy reload accepted a moserver_auth naming no block:\n%s", out)
	}
	if want := `no moserver block has issuer "https://gone.example/wp-json/moserver"`; !strings.Contains(unescaped(string(out)), want) {
		t.Errorf("caddy reload does not say %q:\n%s", want, out)
	}
	if got := call(tokenOf(a)); got != 200 {
		t.Errorf("after the refused reload, a token of the named block: %d, want 200", got)
	}
	if got := call(tokenOf(b)); got != 401 {
		t.Errorf("after the refused reload, a token of the site's own block: %d, want 401", got)
	}
}

// unescaped drops the backslashes of Caddy's JSON logs, in which an error's
// quotes come escaped once or, in a reload's error, twice.
func unescaped(log string) string { return strings.ReplaceAll(log, `\`, "") }
