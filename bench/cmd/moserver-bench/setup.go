package main

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddy-moserver/caddy-moserver/internal/tokens"
)

// The clients of every moserver site. bench-cc gets no refresh token (the
// client_credentials rows); bench-rt gets one with each client_credentials
// token (it pre-issues the refresh tokens of the refresh and revocation rows).
const (
	ccClient   = "bench-cc"
	ccSecret   = "bench-cc-secret"
	rtClient   = "bench-rt"
	rtSecret   = "bench-rt-secret"
	scopes     = "profile email"
	tokenPath  = "/wp-json/moserver/token"
	revokePath = "/wp-json/moserver/revoke"
	// refreshTTL is the module's default refresh_token_ttl (14d), used for
	// the expiry of the families written straight into Redis.
	refreshTTL = 14 * 24 * time.Hour
)

// Form bodies of the requests.
var (
	ccBody = []byte("grant_type=client_credentials")
)

func refreshBody(token string) []byte {
	return []byte("grant_type=refresh_token&refresh_token=" + token)
}

func revokeBody(token string) []byte {
	return []byte("token=" + token + "&token_type_hint=refresh_token")
}

// formHeader is the header of a form POST authenticated with HTTP Basic.
func formHeader(id, secret string) http.Header {
	return http.Header{
		"Content-Type":  {"application/x-www-form-urlencoded"},
		"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret))},
		"User-Agent":    {"moserver-bench"},
	}
}

// site is one moserver site of the generated Caddyfile: one signing
// algorithm on its own port, with its own Redis and key prefix.
type site struct {
	alg      string // ES256, EdDSA, HS256 or RS256
	port     int
	keyPath  string
	prefix   string
	redisURL string
	// comment names the site in the Caddyfile (alg when empty).
	comment string
}

// base is the site's origin.
func (s site) base() string { return fmt.Sprintf("http://127.0.0.1:%d", s.port) }

// issuer is the site's issuer (and default audience).
func (s site) issuer() string { return s.base() + "/wp-json/moserver" }

// tokenURL is the site's token endpoint.
func (s site) tokenURL() string { return s.base() + tokenPath }

// revokeURL is the site's revocation endpoint.
func (s site) revokeURL() string { return s.base() + revokePath }

// writeKey generates a key for alg with the module's own tokens.GenerateKey
// and writes its encoding (PKCS#8 PEM, or a JWK for HS256) to dir.
func writeKey(dir, alg string) (path string, key *tokens.Key, err error) {
	key, enc, err := tokens.GenerateKey(alg)
	if err != nil {
		return "", nil, fmt.Errorf("generating the %s key: %w", alg, err)
	}
	ext := ".pem"
	if alg == "HS256" {
		ext = ".jwk"
	}
	path = filepath.Join(dir, "signing-"+strings.ToLower(alg)+ext)
	if err := os.WriteFile(path, enc, 0o600); err != nil {
		return "", nil, err
	}
	return path, key, nil
}

// ceilingBody is the static body of the ceiling site: a real token response
// as the ES256 site would send it to bench-cc, with an access token minted by
// the module's own signer from the same claims, so it has the size of one.
func ceilingBody(key *tokens.Key, issuer string) (string, error) {
	signer, err := tokens.NewSigner([]*tokens.Key{key})
	if err != nil {
		return "", err
	}
	now := time.Now()
	at, err := signer.Mint(tokens.AccessClaims{
		Issuer:    issuer,
		Subject:   ccClient,
		Audience:  issuer,
		ClientID:  ccClient,
		IssuedAt:  now,
		ExpiresAt: now.Add(time.Hour),
		JTI:       tokens.NewID(16),
		Scope:     scopes,
	})
	if err != nil {
		return "", err
	}
	body, err := json.Marshal(struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
		TokenType   string `json:"token_type"`
		Scope       string `json:"scope"`
	}{at, 3600, "Bearer", scopes})
	return string(body), err
}

// buildCaddyfile renders the Caddyfile of the run: the ceiling (a static
// respond of a token-sized JSON body with the token endpoint's headers) and
// one moserver site per entry of sites, all on loopback ports, each with
// its Redis and key prefix.
func buildCaddyfile(adminPort, ceilingPort int, ceiling, storageDir string, sites []site) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{
	admin 127.0.0.1:%d
	persist_config off
	auto_https off
	skip_install_trust
	storage file_system %q
	grace_period 2s
}

# The ceiling: Caddy answering a static token response.
http://127.0.0.1:%d {
	header Content-Type "application/json; charset=UTF-8"
	header Cache-Control no-store
	header Pragma no-cache
	respond `+"`%s`"+` 200
}
`, adminPort, storageDir, ceilingPort, ceiling)
	for _, s := range sites {
		fmt.Fprintf(&b, `
# %[1]s
http://127.0.0.1:%[2]d {
	moserver {
		issuer %[3]s
		storage redis %[4]s
		key_prefix %[5]s
		signing_key %[6]q
		client %[7]s {
			secret %[8]s
			scopes %[11]s
		}
		client %[9]s {
			secret %[10]s
			scopes %[11]s
			refresh_tokens
		}
	}
	# The edge row: a protected static response.
	moserver_auth /protected {
		issuer %[3]s
		scope profile
	}
	respond /protected "protected ok" 200
	respond "not the token endpoint" 404
}
`, cmp.Or(s.comment, s.alg), s.port, s.issuer(), s.redisURL, s.prefix, s.keyPath, ccClient, ccSecret, rtClient, rtSecret, scopes)
	}
	return b.String()
}
