// Package clients holds the OAuth clients the token endpoint knows and
// authenticates them.
package clients

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// The grant types a client may be allowed.
const (
	GrantClientCredentials = "client_credentials"
	GrantRefreshToken      = "refresh_token"
	// GrantAuthorizationCode redeems the WordPress plugin's authorization
	// codes; the plugin's own clients have it.
	GrantAuthorizationCode = "authorization_code"
)

// DefaultScopes are the scopes a client gets when none are configured: the
// two the plugin seeds its scope table with.
var DefaultScopes = []string{"profile", "email"}

// Grants are every grant type the module knows, in the order metadata
// lists them: client validation, the token endpoint and the metadata all
// take them from here.
var Grants = []string{GrantAuthorizationCode, GrantClientCredentials, GrantRefreshToken}

// DefaultGrants are the grants a client gets when none are configured.
var DefaultGrants = []string{GrantClientCredentials, GrantRefreshToken}

// Client is one registered OAuth client.
type Client struct {
	ID   string
	Name string
	// SecretDigest is the SHA-256 of the client secret. Secrets are compared
	// only through it, in constant time.
	SecretDigest [sha256.Size]byte
	Scopes       []string
	// ScopeText is Scopes joined by spaces: the scope granted when a request
	// names none. Registries set it when they build a client, so that no
	// request has to join them; when it is empty, DefaultScope joins them.
	ScopeText string
	Grants    []string
	// RefreshTokens makes client_credentials issue a refresh token too.
	RefreshTokens bool
	// Audience overrides the server's access-token audience when set.
	Audience string
	// AccessTokenTTL overrides the server's access-token lifetime when > 0.
	AccessTokenTTL time.Duration
	// CORSOrigins are the browser origins ("scheme://host[:port]") allowed to
	// call the token endpoint as this client.
	CORSOrigins []string
	// RedirectURIs are the client's registered redirect URIs (the plugin's
	// redirect_uri column), where an authorize request may be sent back.
	RedirectURIs []string
	// RequirePKCE refuses authorize requests without a PKCE challenge, and
	// authorization codes not bound to one.
	RequirePKCE bool
	// Public clients have no secret (single-page and mobile apps): they
	// authenticate with client_id alone, only for the authorization code
	// (always with PKCE) and refresh token grants.
	Public bool
}

// DefaultScope is the scope granted when a request names none: the client's
// scopes, space-separated.
func (c *Client) DefaultScope() string {
	if c.ScopeText != "" {
		return c.ScopeText
	}
	return strings.Join(c.Scopes, " ")
}

// RegisteredRedirect returns the redirect URI an authorize request goes back
// to: the one it names when that is registered (byte for byte), the first
// registered one when it names none, and ok false otherwise.
func (c *Client) RegisteredRedirect(requested string) (string, bool) {
	if requested == "" {
		if len(c.RedirectURIs) == 0 {
			return "", false
		}
		return c.RedirectURIs[0], true
	}
	return requested, slices.Contains(c.RedirectURIs, requested)
}

// SecretDigest returns the SHA-256 digest of a client secret.
func SecretDigest(secret string) [sha256.Size]byte {
	return sha256.Sum256([]byte(secret))
}

// ParseSecretDigest decodes a hex SHA-256 digest as written in configuration.
// The digest of the empty string is refused, as an empty secret is.
func ParseSecretDigest(hexDigest string) ([sha256.Size]byte, error) {
	var d [sha256.Size]byte
	b, err := hex.DecodeString(strings.TrimSpace(hexDigest))
	if err != nil {
		return d, fmt.Errorf("secret_sha256 is not hex: %w", err)
	}
	if len(b) != sha256.Size {
		return d, fmt.Errorf("secret_sha256 must be %d hex characters, got %d", 2*sha256.Size, len(hexDigest))
	}
	copy(d[:], b)
	if empty := SecretDigest(""); subtle.ConstantTimeCompare(d[:], empty[:]) == 1 {
		return d, errors.New("secret_sha256 is the SHA-256 of the empty string: a client's secret must not be empty")
	}
	return d, nil
}

// CheckSecret reports, in constant time, whether secret is the client's secret.
func (c *Client) CheckSecret(secret string) bool {
	var buf [128]byte // keeps the usual secret off the heap
	d := sha256.Sum256(append(buf[:0], secret...))
	return subtle.ConstantTimeCompare(d[:], c.SecretDigest[:]) == 1
}

// AllowsGrant reports whether the client may use the grant type.
func (c *Client) AllowsGrant(grant string) bool {
	return slices.Contains(c.Grants, grant)
}

// AllowedOrigin reports whether a browser Origin header value matches one of
// the client's CORS origins.
func (c *Client) AllowedOrigin(origin string) bool {
	if origin == "" {
		return false
	}
	for _, o := range c.CORSOrigins {
		if strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

// NormalizeOrigin reduces a URL or origin to its "scheme://host[:port]" form.
func NormalizeOrigin(raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "", fmt.Errorf("origin %q: %w", raw, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("origin %q: want scheme://host[:port] with http or https", raw)
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

// Registry finds clients by id.
type Registry interface {
	// Lookup returns the client with the id, or nil and no error when there
	// is none. An error means the registry could not be consulted.
	Lookup(ctx context.Context, id string) (*Client, error)
}

// Static is a fixed set of clients, as declared in the Caddyfile.
type Static map[string]*Client

// Lookup implements Registry.
func (s Static) Lookup(_ context.Context, id string) (*Client, error) {
	return s[id], nil
}

// Chain looks clients up in each registry in turn; the first that knows the
// id wins, so configured clients take precedence over WordPress ones.
type Chain []Registry

// Lookup implements Registry. An error of one registry is returned only if
// no later registry knows the client.
func (c Chain) Lookup(ctx context.Context, id string) (*Client, error) {
	var firstErr error
	for _, r := range c {
		client, err := r.Lookup(ctx, id)
		if client != nil {
			return client, nil
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}
