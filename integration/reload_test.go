package integration

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestReloadKeepsTokens: a config reload that changes the client list keeps
// the memory store's refresh tokens (the store is shared across reloads) and
// applies the new clients.
func TestReloadKeepsTokens(t *testing.T) {
	up := newUpstream(t)
	s := startSite(t, "storage memory", up.URL)
	rt := mustToken(t, s.form(t, tokenPath, ccValues())).str("refresh_token")
	newClient := url.Values{"grant_type": {"client_credentials"}, "client_id": {"added"}, "client_secret": {"added-secret"}}
	mustError(t, s.form(t, tokenPath, newClient), 401, "invalid_client")

	port := strings.TrimPrefix(s.base, "http://127.0.0.1:")
	var p int
	if _, err := fmt.Sscan(port, &p); err != nil {
		t.Fatal(err)
	}
	cfg := siteConfig(p, "storage memory\n\t\tclient added {\n\t\t\tsecret added-secret\n\t\t}", up.URL)
	s.Reload(t, cfg)
	// Caddy closes the idle connections of the replaced server; a POST sent
	// on one of those at that moment sees EOF (Go does not retry POSTs).
	http.DefaultClient.CloseIdleConnections()

	mustToken(t, s.form(t, tokenPath, newClient))
	mustToken(t, s.form(t, tokenPath, refreshValues(rt)))
}
