package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/caddy-moserver/caddy-moserver/internal/testutil/redistest"
	"github.com/caddy-moserver/caddy-moserver/internal/tokens"
)

const tokenPath = "/wp-json/moserver/token"

func kids(t *testing.T, s *site) []string {
	t.Helper()
	set, err := jwk.Fetch(context.Background(), s.base+"/wp-json/moserver/jwks")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for i := 0; i < set.Len(); i++ {
		k, _ := set.Key(i)
		out = append(out, k.KeyID())
	}
	return out
}

// TestTwoInstancesShareRedis: two Caddy processes with one Redis and one
// Caddy storage act as one server, and survive a restart.
func TestTwoInstancesShareRedis(t *testing.T) {
	opt := redisOptionFor(redisURL(t), redistest.Prefix(t))
	storage := "XDG_DATA_HOME=" + t.TempDir()
	a := startSite(t, opt, newUpstream(t).URL, storage)
	b := startSite(t, opt, newUpstream(t).URL, storage)

	ka, kb := kids(t, a), kids(t, b)
	if len(ka) != 1 || fmt.Sprint(ka) != fmt.Sprint(kb) {
		t.Fatalf("instances publish different keys: %v %v", ka, kb)
	}

	// Issued at A, refreshed at B, then at A again.
	rt1 := mustToken(t, a.form(t, tokenPath, ccValues())).str("refresh_token")
	rt2 := mustToken(t, b.form(t, tokenPath, refreshValues(rt1))).str("refresh_token")
	// A retry at A of what B just rotated gets B's successor.
	if got := mustToken(t, a.form(t, tokenPath, refreshValues(rt1))).str("refresh_token"); got != rt2 {
		t.Fatal("a retry at A did not get the successor B issued")
	}
	rt3 := mustToken(t, a.form(t, tokenPath, refreshValues(rt2))).str("refresh_token")
	// A replay at B of what A spent (whose successor was used) revokes the
	// family everywhere.
	mustError(t, b.form(t, tokenPath, refreshValues(rt1)), 400, "invalid_grant")
	mustError(t, a.form(t, tokenPath, refreshValues(rt3)), 400, "invalid_grant")

	// A revocation at B is seen at A.
	rt3 = mustToken(t, a.form(t, tokenPath, ccValues())).str("refresh_token")
	rt4 := mustToken(t, a.form(t, tokenPath, refreshValues(rt3))).str("refresh_token")
	rev := b.form(t, "/wp-json/moserver/revoke", map[string][]string{"token": {rt4}, "client_id": {clientID}, "client_secret": {clientSecret}})
	if rev.status != 200 {
		t.Fatalf("revoke: %d %s", rev.status, rev.body)
	}
	mustError(t, a.form(t, tokenPath, refreshValues(rt4)), 400, "invalid_grant")

	// An access token minted by A verifies with B's JWKS.
	at := mustToken(t, a.form(t, tokenPath, ccValues())).str("access_token")
	set, err := jwk.Fetch(context.Background(), b.base+"/wp-json/moserver/jwks")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jwt.Parse([]byte(at), jwt.WithKeySet(set)); err != nil {
		t.Fatalf("A's token does not verify with B's keys: %v", err)
	}

	// Tokens and the key survive a restart.
	rt5 := mustToken(t, a.form(t, tokenPath, ccValues())).str("refresh_token")
	a.Restart()
	mustToken(t, a.form(t, tokenPath, refreshValues(rt5)))
	if fmt.Sprint(kids(t, a)) != fmt.Sprint(ka) {
		t.Fatalf("kid changed across a restart: %v -> %v", ka, kids(t, a))
	}
}

// TestConfiguredSigningKeys: every algorithm loads from its file, the first
// key signs and all are published.
func TestConfiguredSigningKeys(t *testing.T) {
	dir := t.TempDir()
	var opts string
	var first string
	for i, alg := range []string{"RS256", "ES256", "EdDSA", "HS256"} {
		_, data, err := tokens.GenerateKey(alg)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, alg+".key")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		opts += fmt.Sprintf("signing_key %s kid-%s\n\t\t", path, alg)
		if i == 0 {
			first = "kid-" + alg
		}
	}
	s := startSite(t, opts, newUpstream(t).URL)
	published := kids(t, s)
	if fmt.Sprint(published) != "[kid-RS256 kid-ES256 kid-EdDSA]" {
		t.Fatalf("JWKS kids %v (HS256 must not be published)", published)
	}
	at := mustToken(t, s.form(t, tokenPath, ccValues())).str("access_token")
	set, err := jwk.Fetch(context.Background(), s.base+"/wp-json/moserver/jwks")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jwt.ParseString(at, jwt.WithKeySet(set)); err != nil {
		t.Fatal(err)
	}
	if hdrKid := headerKid(t, at); hdrKid != first {
		t.Fatalf("signed with %q, want the first key %q", hdrKid, first)
	}
}
