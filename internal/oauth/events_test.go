package oauth

import (
	"fmt"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// countingEvents records every event as a string.
type countingEvents struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *countingEvents) add(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts[s]++
}

func (c *countingEvents) TokenRequest(grant, outcome string, _ time.Duration) {
	c.add(fmt.Sprintf("token %s %s", grant, outcome))
}
func (c *countingEvents) Revocation(outcome string) { c.add("revocation " + outcome) }
func (c *countingEvents) ReplayDetected()           { c.add("replay") }
func (c *countingEvents) FamilyRevoked()            { c.add("family revoked") }
func (c *countingEvents) RateLimited()              { c.add("rate limited") }
func (c *countingEvents) PassedThrough()            { c.add("passthrough") }
func (c *countingEvents) StoreUnavailable()         { c.add("store unavailable") }

func TestEvents(t *testing.T) {
	ev := &countingEvents{counts: map[string]int{}}
	f := newFixture(t, nil, func(c *Config) { c.Events = ev; c.AuthFailureLimit = 1 })
	rt := f.issueRefresh()
	rt2 := wantToken(t, f.post(refreshForm(rt))).str("refresh_token")
	rt3 := wantToken(t, f.post(refreshForm(rt2))).str("refresh_token")
	f.post(refreshForm(rt)) // replay: its successor was used
	f.do(formRequest(DefaultRevokePath, revokeForm(rt3)))
	f.do(httptest.NewRequest("POST", DefaultTokenPath, strings.NewReader("grant_type=authorization_code&code=x")))
	f.post(ccForm("client_secret", "wrong"))
	f.post(ccForm())
	f.post(url.Values{"grant_type": {"client_credentials"}})
	want := map[string]int{
		"token client_credentials issued":         1,
		"token refresh_token issued":              2,
		"token refresh_token invalid_grant":       1,
		"replay":                                  1,
		"family revoked":                          2,
		"revocation revoked":                      1,
		"passthrough":                             1,
		"token client_credentials invalid_client": 2,
		"token client_credentials rate_limited":   1,
		"rate limited":                            1,
		"store unavailable":                       0,
	}
	for k, n := range want {
		if ev.counts[k] != n {
			t.Errorf("%q: %d, want %d (all: %v)", k, ev.counts[k], n, ev.counts)
		}
	}
}
