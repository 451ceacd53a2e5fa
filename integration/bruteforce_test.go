package integration

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-moserver/caddy-moserver/internal/testutil/caddyproc"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/redistest"
)

// TestBruteForceBudgetIsShared: failed authentications counted at one
// instance are seen at another (through Redis), per client id and per client
// address, the address taken from X-Forwarded-For of a trusted proxy.
func TestBruteForceBudgetIsShared(t *testing.T) {
	opt := redisOptionFor(redisURL(t), redistest.Prefix(t)) + "\n\t\tauth_failure_limit 3 1m"
	start := func() *site {
		port := caddyproc.FreePort(t)
		base := fmt.Sprintf("http://127.0.0.1:%d", port)
		cfg := "{\n\tservers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}\n}\n" + siteConfig(port, opt, newUpstream(t).URL)
		return &site{Instance: caddyproc.Start(t, cfg, base+"/", "TEST_CLIENT_SECRET="+clientSecret), base: base}
	}
	a, b := start(), start()
	from := func(s *site, ip string, v url.Values) reply {
		return s.post(t, tokenPath, "application/x-www-form-urlencoded", v.Encode(), "X-Forwarded-For", ip)
	}
	wrong := ccValues()
	wrong.Set("client_secret", "wrong")
	second := url.Values{"grant_type": {"client_credentials"}, "client_id": {"second"}, "client_secret": {"second-secret"}}

	for i := range 3 {
		s := a
		if i == 1 {
			s = b
		}
		mustError(t, from(s, "198.51.100.7", wrong), 401, "invalid_client")
	}
	r := from(b, "198.51.100.8", ccValues()) // right secret, other address: the id is spent
	mustError(t, r, 429, "temporarily_unavailable")
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	mustError(t, from(a, "198.51.100.7", second), 429, "temporarily_unavailable") // the address is spent
	mustToken(t, from(a, "198.51.100.9", second))
	// An untrusted X-Forwarded-For would not count: the connection address does.
	req, _ := http.NewRequest(http.MethodPost, a.base+tokenPath, strings.NewReader(second.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	mustToken(t, send(t, req))
}
