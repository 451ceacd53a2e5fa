package integration

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/caddy-moserver/caddy-moserver/internal/testutil/caddyproc"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/redistest"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/tcpproxy"
)

// startBehindProxy starts a site that takes the client address from
// X-Forwarded-For of a trusted proxy (the test itself), with a budget of 3.
func startBehindProxy(t *testing.T, redisAddr, prefix string) *site {
	t.Helper()
	opt := redisOptionFor("redis://"+redisAddr+"/0", prefix) + "\n\t\tauth_failure_limit 3 1m"
	port := caddyproc.FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cfg := "{\n\tservers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}\n}\n" + siteConfig(port, opt, newUpstream(t).URL)
	return &site{Instance: caddyproc.Start(t, cfg, base+"/", "TEST_CLIENT_SECRET="+clientSecret), base: base}
}

func (s *site) from(t *testing.T, ip string, v url.Values) reply {
	t.Helper()
	return s.post(t, tokenPath, "application/x-www-form-urlencoded", v.Encode(), "X-Forwarded-For", ip)
}

func wrongSecret() url.Values {
	v := ccValues()
	v.Set("client_secret", "wrong")
	return v
}

var secondClient = url.Values{"grant_type": {"client_credentials"}, "client_id": {"second"}, "client_secret": {"second-secret"}}

// TestBruteForceLocksOutNoClient: an attacker who spends the budget for a
// client id from one address (counted at two instances, through Redis) is
// refused there even with the right secret, and for every client; the real
// client, from an address that has not failed, still gets its token. An
// IPv6 attacker counts per /64.
func TestBruteForceLocksOutNoClient(t *testing.T) {
	srv := redistest.StartServer(t)
	prefix := redistest.Prefix(t)
	a, b := startBehindProxy(t, srv.Addr, prefix), startBehindProxy(t, srv.Addr, prefix)

	for i := range 3 {
		s := a
		if i == 1 {
			s = b
		}
		mustError(t, s.from(t, "198.51.100.7", wrongSecret()), 401, "invalid_client")
	}
	r := b.from(t, "198.51.100.7", ccValues()) // right secret, the attacker's address
	mustError(t, r, 429, "temporarily_unavailable")
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	mustError(t, a.from(t, "198.51.100.7", secondClient), 429, "temporarily_unavailable") // the address is spent
	mustToken(t, a.from(t, "198.51.100.8", ccValues()))                                   // the real client is not locked out
	mustToken(t, b.from(t, "198.51.100.9", secondClient))

	for i := range 3 {
		mustError(t, a.from(t, fmt.Sprintf("2001:db8:7:7::%x", i+1), wrongSecret()), 401, "invalid_client")
	}
	mustError(t, b.from(t, "2001:db8:7:7:abcd::1", ccValues()), 429, "temporarily_unavailable")
	mustToken(t, b.from(t, "2001:db8:7:8::1", ccValues()))

	// An untrusted X-Forwarded-For would not count: the connection address does.
	req, _ := http.NewRequest(http.MethodPost, a.base+tokenPath, strings.NewReader(secondClient.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	mustToken(t, send(t, req))
}

// TestBruteForceBurstGetsTheBudget: 400 simultaneous wrong secrets from one
// address, spread over two instances, get at most the budget of 401s (each
// counter is incremented atomically and decided on; a request whose address
// counter and pair counter interleave with another's may be refused one
// early, never one late).
func TestBruteForceBurstGetsTheBudget(t *testing.T) {
	srv := redistest.StartServer(t)
	prefix := redistest.Prefix(t)
	sites := []*site{startBehindProxy(t, srv.Addr, prefix), startBehindProxy(t, srv.Addr, prefix)}
	const burst = 400
	statuses := make([]int, burst)
	var wg sync.WaitGroup
	start := make(chan struct{})
	body := wrongSecret().Encode()
	for i := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodPost, sites[i%2].base+tokenPath, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("X-Forwarded-For", "198.51.100.20")
			<-start
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			statuses[i] = res.StatusCode
		}()
	}
	close(start)
	wg.Wait()
	count := map[int]int{}
	for _, s := range statuses {
		count[s]++
	}
	if count[401] < 1 || count[401] > 3 || count[401]+count[429] != burst {
		t.Fatalf("answers to %d simultaneous wrong secrets: %v; want at most the budget (3) of 401s, the rest 429", burst, count)
	}
}

// TestBruteForceBudgetWithoutRedis: while Redis cannot be reached, failures
// are still limited (counted by the instance), and the right secret from an
// address that has not failed still gets its token.
func TestBruteForceBudgetWithoutRedis(t *testing.T) {
	proxy := tcpproxy.Start(t, "tcp", redistest.StartServer(t).Addr)
	s := startBehindProxy(t, proxy.Addr(), redistest.Prefix(t))
	mustToken(t, s.from(t, "198.51.100.30", secondClient))
	proxy.SetDown(true)
	for range 3 {
		mustError(t, s.from(t, "198.51.100.31", wrongSecret()), 401, "invalid_client")
	}
	for range 10 {
		mustError(t, s.from(t, "198.51.100.31", wrongSecret()), 429, "temporarily_unavailable")
	}
	mustError(t, s.from(t, "198.51.100.31", secondClient), 429, "temporarily_unavailable")
	mustToken(t, s.from(t, "198.51.100.32", secondClient))
}
