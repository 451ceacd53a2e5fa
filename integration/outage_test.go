package integration

import (
	"net/url"
	"testing"
	"time"

	"github.com/caddy-moserver/caddy-moserver/internal/testutil/redistest"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/tcpproxy"
)

// TestRedisOutage cuts the network between Caddy and Redis: refresh and
// revocation answer 503 with Retry-After within the store_timeout budget,
// client credentials without refresh tokens keep working, and when Redis is
// reachable again everything works without a restart, nothing lost.
func TestRedisOutage(t *testing.T) {
	proxy := tcpproxy.Start(t, "tcp", redistest.StartServer(t).Addr)
	s := startSite(t, redisOptionFor("redis://"+proxy.Addr()+"/0", redistest.Prefix(t))+"\n\t\tstore_timeout 500ms", newUpstream(t).URL)
	rt := mustToken(t, s.form(t, tokenPath, ccValues())).str("refresh_token")

	proxy.SetDown(true)
	for _, req := range []url.Values{refreshValues(rt), {"token": {rt}, "client_id": {clientID}, "client_secret": {clientSecret}}} {
		begin := time.Now()
		r := s.form(t, tokenPath, req)
		took := time.Since(begin)
		mustError(t, r, 503, "temporarily_unavailable")
		if r.header.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
		if took > 3*time.Second {
			t.Errorf("answered after %v; the budget is 500ms per store call", took)
		}
	}
	// No refresh token is issued that the store did not accept.
	mustError(t, s.form(t, tokenPath, ccValues()), 503, "temporarily_unavailable")
	second := url.Values{"grant_type": {"client_credentials"}, "client_id": {"second"}, "client_secret": {"second-secret"}}
	for range 3 {
		mustToken(t, s.form(t, tokenPath, second))
	}

	proxy.SetDown(false)
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := s.form(t, tokenPath, refreshValues(rt))
		if r.status == 200 {
			break
		}
		if r.status != 503 || time.Now().After(deadline) {
			t.Fatalf("after Redis came back: %d %s", r.status, r.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
