package integration

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/caddy-moserver/caddy-moserver/internal/testutil/caddyproc"
)

// identitySite runs a site whose every request goes through the moserver
// block and, under /protected/, through moserver_auth too, before a respond
// that echoes the identity headers it was handed. With authFirst the two
// handlers run in the other order (moserver_auth first, in a route).
func identitySite(t *testing.T, authFirst bool) *site {
	t.Helper()
	port := caddyproc.FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	block := fmt.Sprintf(`moserver {
			issuer https://wp.example/wp-json/moserver
			client %s {
				secret %s
			}
		}`, clientID, clientSecret)
	auth := `moserver_auth /protected/*`
	echo := `respond "sub=[{http.request.header.X-Moserver-Sub}] client_id=[{http.request.header.X-Moserver-Client-Id}] scope=[{http.request.header.X-Moserver-Scope}] role=[{http.request.header.X-Moserver-Role}] other=[{http.request.header.X-Other}]" 200`
	handlers := block + "\n\t\t" + auth
	if authFirst {
		handlers = auth + "\n\t\t" + block
	}
	cfg := fmt.Sprintf("http://127.0.0.1:%d {\n\troute {\n\t\t%s\n\t\t%s\n\t}\n}\n", port, handlers, echo)
	return &site{Instance: caddyproc.Start(t, cfg, base+"/", "XDG_DATA_HOME="+t.TempDir()), base: base}
}

// X-Moserver-* request headers reach the next handler only as moserver_auth
// set them: a client's own, in any letter case, are removed by the moserver
// handler on every path, protected or not, whichever of the two runs first.
func TestIdentityHeadersCannotBeForged(t *testing.T) {
	for _, authFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("moserver_auth first %v", authFirst), func(t *testing.T) {
			s := identitySite(t, authFirst)
			get := func(path, token string) reply {
				req, _ := http.NewRequest(http.MethodGet, s.base+path, nil)
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				req.Header["X-Moserver-Sub"] = []string{"1"}
				req.Header["x-moserver-client-id"] = []string{"admin"}
				req.Header["X-MOSERVER-SCOPE"] = []string{"manage_options"}
				req.Header["X-Moserver-Role"] = []string{"administrator"}
				req.Header.Set("X-Other", "kept")
				return send(t, req)
			}
			if r := get("/wp-admin/", ""); r.status != 200 ||
				r.body != "sub=[] client_id=[] scope=[] role=[] other=[kept]" {
				t.Errorf("unprotected path: %d %q, want the X-Moserver-* headers removed", r.status, r.body)
			}
			at := mustToken(t, s.form(t, tokenPath, ccValues())).str("access_token")
			want := fmt.Sprintf("sub=[client:%s] client_id=[%s] scope=[profile email] role=[] other=[kept]", clientID, clientID)
			if r := get("/protected/page", at); r.status != 200 || r.body != want {
				t.Errorf("protected path: %d %q, want %q", r.status, r.body, want)
			}
		})
	}
}
