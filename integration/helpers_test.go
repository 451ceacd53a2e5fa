// Package integration runs the real Caddy binary, built with the module by
// go build ./cmd/caddy (or $MOSERVER_CADDY_BIN), against a real Redis and a recording upstream.
package integration

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/caddy-moserver/caddy-moserver/internal/testutil/caddyproc"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/redistest"
)

const (
	clientID     = "LyiDhXKOJitbjnzUVOrFhHNxttLbYatF"
	clientSecret = "lTZBHZKuIUEyrwpzpBzhEJWfHmNNGLuw"
)

// upstream stands in for PHP: it records every request it is handed.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	seen []recorded
}

type recorded struct {
	Method, URI string
	Header      http.Header
	Body        string
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.seen = append(u.seen, recorded{r.Method, r.RequestURI, r.Header.Clone(), string(body)})
		u.mu.Unlock()
		w.Header().Set("X-Upstream", "php")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "from upstream")
	}))
	t.Cleanup(u.Close)
	return u
}

// requests returns what the upstream saw, less the readiness probes (GET /).
func (u *upstream) requests() []recorded {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []recorded
	for _, r := range u.seen {
		if r.Method != http.MethodGet || r.URI != "/" {
			out = append(out, r)
		}
	}
	return out
}

// site is one running Caddy with the module.
type site struct {
	*caddyproc.Instance
	base string
}

// siteConfig is a Caddyfile with the module in front of the upstream.
func siteConfig(port int, moserverOptions, upstreamAddr string) string {
	return fmt.Sprintf(`http://127.0.0.1:%d {
	moserver {
		issuer http://127.0.0.1:%d/wp-json/moserver
		%s
		client %s {
			secret {env.TEST_CLIENT_SECRET}
			scopes profile email
			refresh_tokens
		}
		client second {
			secret second-secret
		}
	}
	reverse_proxy %s
}
`, port, port, moserverOptions, clientID, upstreamAddr)
}

func startSite(t *testing.T, moserverOptions, upstreamAddr string, env ...string) *site {
	t.Helper()
	port := caddyproc.FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	env = append(env, "TEST_CLIENT_SECRET="+clientSecret)
	inst := caddyproc.Start(t, siteConfig(port, moserverOptions, upstreamAddr), base+"/", env...)
	return &site{Instance: inst, base: base}
}

type reply struct {
	status int
	header http.Header
	body   string
	json   map[string]any
}

func (r reply) str(k string) string { s, _ := r.json[k].(string); return s }

func send(t *testing.T, req *http.Request) reply {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	rep := reply{status: res.StatusCode, header: res.Header, body: string(b)}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") && len(b) > 0 {
		_ = json.Unmarshal(b, &rep.json)
	}
	return rep
}

func (s *site) post(t *testing.T, path, contentType, body string, header ...string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return send(t, req)
}

func (s *site) form(t *testing.T, path string, v url.Values) reply {
	t.Helper()
	return s.post(t, path, "application/x-www-form-urlencoded", v.Encode())
}

func ccValues() url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {clientSecret}}
}

func refreshValues(rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "client_id": {clientID}, "client_secret": {clientSecret}, "refresh_token": {rt}}
}

func mustToken(t *testing.T, r reply) reply {
	t.Helper()
	if r.status != 200 || r.str("access_token") == "" || r.str("token_type") != "Bearer" {
		t.Fatalf("want a token, got %d %s", r.status, r.body)
	}
	if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Pragma") != "no-cache" {
		t.Errorf("missing no-store headers: %v", r.header)
	}
	return r
}

func mustError(t *testing.T, r reply, status int, code string) {
	t.Helper()
	if r.status != status || r.str("error") != code {
		t.Fatalf("want %d %s, got %d %s", status, code, r.status, r.body)
	}
}

// redisURL is REDIS_URL, or the URL of a private redis-server for this test.
func redisURL(t *testing.T) string {
	if u := os.Getenv("REDIS_URL"); u != "" {
		return u
	}
	return "redis://" + redistest.StartServer(t).Addr + "/0"
}

// redisOption is the moserver options for a Redis store with a key prefix
// of this test's own.
func redisOption(t *testing.T) string {
	return redisOptionFor(redisURL(t), redistest.Prefix(t))
}

func redisOptionFor(url, prefix string) string {
	return "storage redis " + url + "\n\t\tkey_prefix " + prefix
}

// headerKid returns the kid of a JWT's protected header.
func headerKid(t *testing.T, token string) string {
	t.Helper()
	head, _, _ := strings.Cut(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}
