// Package caddymodule is the Caddy glue of caddy-moserver: it registers the
// http.handlers.moserver module and the moserver Caddyfile directive, turns
// configuration into an oauth.Server, and hands every request to it, passing
// on what it does not answer.
package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-moserver/caddy-moserver/internal/clients"
	"github.com/caddy-moserver/caddy-moserver/internal/oauth"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Interface guards.
var (
	_ caddy.Module                = (*Handler)(nil)
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)

// Handler answers the OAuth 2.0 token endpoint of a WordPress site running
// the "WP OAuth Server" plugin (client credentials, refresh with rotation,
// RFC 7009 revocation, JWKS) and passes every other request on unchanged.
type Handler struct {
	// Issuer is the "iss" of access tokens, e.g.
	// https://example.com/wp-json/moserver. Required.
	Issuer string `json:"issuer,omitempty"`
	// TokenPath is the token endpoint (default /wp-json/moserver/token).
	TokenPath string `json:"token_path,omitempty"`
	// RevokePath is the RFC 7009 endpoint (default /wp-json/moserver/revoke).
	RevokePath string `json:"revoke_path,omitempty"`
	// JWKSPath serves the public keys (default /wp-json/moserver/jwks).
	JWKSPath string `json:"jwks_path,omitempty"`
	// IntrospectPath is the RFC 7662 endpoint (default
	// /wp-json/moserver/introspect).
	IntrospectPath string `json:"introspect_path,omitempty"`
	// StorageRaw is the storage backend: a moserver.storage module named by
	// "type" (memory, the default; redis; redis_sentinel; redis_cluster; or
	// another backend built in), with its key_prefix and store_timeout.
	StorageRaw json.RawMessage `json:"storage,omitempty" caddy:"namespace=moserver.storage inline_key=type"`
	// SigningKeys are PEM or JWK key files; the first signs, all are
	// published. Without any, an ES256 key is generated once and kept in
	// Caddy's storage.
	SigningKeys []SigningKeyConfig `json:"signing_keys,omitempty"`
	// AccessTokenTTL is the access-token lifetime (default 1h).
	AccessTokenTTL caddy.Duration `json:"access_token_ttl,omitempty"`
	// RefreshTokenTTL is the refresh-token lifetime (default 14 days).
	RefreshTokenTTL caddy.Duration `json:"refresh_token_ttl,omitempty"`
	// RefreshGrace lets a client that lost a refresh response (a 503, a
	// timeout) retry the predecessor for this long, as long as the successor
	// has not been used, and get the same successor; presenting it after the
	// successor was used is a replay. Absent: 2m; 0 is strict (every second
	// presentation is a replay).
	RefreshGrace *caddy.Duration `json:"refresh_grace,omitempty"`
	// Audience is the default "aud" of access tokens (default: the issuer).
	Audience string `json:"audience,omitempty"`
	// UnknownGrants is "passthrough" (default: grants the module does not own
	// go to the next handler) or "reject" (answered unsupported_grant_type).
	UnknownGrants string `json:"unknown_grants,omitempty"`
	// RequirePKCE makes every client use PKCE (S256) with the plugin's
	// authorization codes: an authorize request without code_challenge is
	// refused before PHP, and a code not bound to one is not redeemed.
	RequirePKCE bool `json:"require_pkce,omitempty"`
	// RequirePKCEClients names the clients that must use PKCE, when not all.
	RequirePKCEClients []string `json:"require_pkce_clients,omitempty"`
	// Clients are the OAuth clients declared in the configuration.
	Clients []ClientConfig `json:"clients,omitempty"`
	// AuthFailureLimit is how many failed client authentications a client id
	// or a client address may have within AuthFailureWindow before it is
	// answered 429 (default 10; -1 turns the limit off).
	AuthFailureLimit int `json:"auth_failure_limit,omitempty"`
	// AuthFailureWindow is the counting window (default 1m).
	AuthFailureWindow caddy.Duration `json:"auth_failure_window,omitempty"`
	// WordPress, when set, reads clients and the plugin's refresh tokens from
	// the WordPress database.
	WordPress *WordPressConfig `json:"wordpress,omitempty"`
	// LogRequests logs one line per token request at INFO (client id, grant,
	// outcome, duration; never a secret or token); DEBUG otherwise.
	LogRequests bool `json:"log_requests,omitempty"`

	server  *oauth.Server
	shared  *sharedServer
	storage StorageBackend
	wp      *wordpressSite
	logger  *zap.Logger
}

// SigningKeyConfig names a signing key file.
type SigningKeyConfig struct {
	// File holds the key: PEM (PKCS#1, PKCS#8, SEC1) or a JWK.
	File string `json:"file,omitempty"`
	// KID overrides the key id (default: the JWK's kid or its thumbprint).
	KID string `json:"kid,omitempty"`
}

// ClientConfig declares one OAuth client.
type ClientConfig struct {
	// ID is the client_id.
	ID string `json:"id,omitempty"`
	// Secret is the client secret; placeholders such as {env.X} are expanded.
	Secret string `json:"secret,omitempty"`
	// SecretSHA256 is the hex SHA-256 of the secret, instead of Secret.
	SecretSHA256 string `json:"secret_sha256,omitempty"`
	// Name is a display name.
	Name string `json:"name,omitempty"`
	// Scopes the client may be granted (default: profile email).
	Scopes []string `json:"scopes,omitempty"`
	// Grants the client may use (default: client_credentials refresh_token).
	Grants []string `json:"grants,omitempty"`
	// RefreshTokens makes client_credentials also issue a refresh token.
	RefreshTokens bool `json:"refresh_tokens,omitempty"`
	// Audience overrides the access-token "aud" for this client.
	Audience string `json:"audience,omitempty"`
	// AccessTokenTTL overrides the access-token lifetime for this client.
	AccessTokenTTL caddy.Duration `json:"access_token_ttl,omitempty"`
	// CORSOrigins are browser origins allowed to call the endpoints as this client.
	CORSOrigins []string `json:"cors_origins,omitempty"`
	// RedirectURIs are where an authorize request the module refuses may be
	// sent back (the plugin's clients have theirs in WordPress).
	RedirectURIs []string `json:"redirect_uris,omitempty"`
	// Public marks a client without a secret (single-page and mobile apps):
	// it authenticates with its id alone, must use PKCE, and may use only
	// authorization_code and refresh_token.
	Public bool `json:"public,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.moserver",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision builds the token endpoint: clients, signing keys and store.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	// Caddy runs Validate after Provision; checking first means a mistake
	// is reported by the option's name and opens no connection.
	if err := h.Validate(); err != nil {
		return err
	}
	if h.StorageRaw == nil {
		h.StorageRaw = json.RawMessage(`{"type":"memory"}`)
	}
	mod, err := ctx.LoadModule(h, "StorageRaw") // provisions and validates the backend; no I/O yet
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	var ok bool
	if h.storage, ok = mod.(StorageBackend); !ok {
		return fmt.Errorf("storage: %T is not a moserver storage backend", mod)
	}
	settings := h.storage.Settings()
	repl := caddy.NewReplacer()
	issuer := repl.ReplaceKnown(h.Issuer, "")
	if err := checkAbsoluteURL("issuer", issuer); err != nil {
		return err
	}
	registry, err := h.buildClients(repl)
	if err != nil {
		return err
	}
	signer, err := loadSigner(ctx, h.SigningKeys, repl, h.logger)
	if err != nil {
		return err
	}
	events, err := newMetricsEvents(ctx.GetMetricsRegistry())
	if err != nil {
		return err
	}
	st, err := h.storage.OpenStore(ctx)
	if err != nil {
		return err
	}
	var reg clients.Registry = registry
	var wp oauth.WordPress
	userTokens := ""
	if h.WordPress != nil {
		if h.wp, err = openWordPress(h.WordPress, issuer, repl, h.logger); err != nil {
			return err
		}
		reg, wp, userTokens = h.wp.chain(registry), h.wp, h.WordPress.UserAccessTokens
	}
	h.server, err = oauth.New(oauth.Config{
		Issuer:              issuer,
		Audience:            repl.ReplaceKnown(h.Audience, ""),
		TokenPath:           h.TokenPath,
		RevokePath:          h.RevokePath,
		JWKSPath:            h.JWKSPath,
		IntrospectPath:      h.IntrospectPath,
		AccessTokenTTL:      time.Duration(h.AccessTokenTTL),
		RefreshTokenTTL:     time.Duration(h.RefreshTokenTTL),
		RefreshGrace:        h.refreshGrace(),
		RejectUnknownGrants: h.UnknownGrants == "reject",
		RequirePKCE:         h.RequirePKCE,
		RequirePKCEFor:      h.RequirePKCEClients,
		Clients:             reg,
		WordPress:           wp,
		UserAccessTokens:    userTokens,
		StoreTimeout:        time.Duration(settings.StoreTimeout),
		AuthFailureLimit:    h.AuthFailureLimit,
		AuthFailureWindow:   time.Duration(h.AuthFailureWindow),
		ClientIP:            caddyClientIP,
		Store:               st,
		Signer:              signer,
		Logger:              h.logger,
		LogRequests:         h.LogRequests,
		Events:              events,
	})
	if err != nil {
		return err
	}
	h.shared = &sharedServer{issuer: issuer, audiences: h.audiences(issuer, repl), signer: signer, store: st,
		storeTimeout: time.Duration(settings.StoreTimeout)}
	blocks, err := blocksOf(ctx)
	if err != nil {
		return err
	}
	blocks.addBlock(h.shared)
	shareOps(h.shared, opsInfo{keep: h.longestTokenLifetime()})
	share(h.shared)
	return nil
}

// audiences are every "aud" this block's access tokens can carry.
func (h *Handler) audiences(issuer string, repl *caddy.Replacer) []string {
	def := repl.ReplaceKnown(h.Audience, "")
	if def == "" {
		def = issuer
	}
	auds := []string{def}
	for _, c := range h.Clients {
		if a := repl.ReplaceKnown(c.Audience, ""); a != "" && !slices.Contains(auds, a) {
			auds = append(auds, a)
		}
	}
	return auds
}

// buildClients turns the configured clients into a registry.
func (h *Handler) buildClients(repl *caddy.Replacer) (clients.Static, error) {
	reg := make(clients.Static, len(h.Clients))
	for _, cc := range h.Clients {
		scopes := orDefault(cc.Scopes, clients.DefaultScopes)
		c := &clients.Client{
			ID:             cc.ID,
			Name:           cc.Name,
			Scopes:         scopes,
			ScopeText:      strings.Join(scopes, " "),
			Grants:         orDefault(cc.Grants, clients.DefaultGrants),
			RefreshTokens:  cc.RefreshTokens,
			Audience:       repl.ReplaceKnown(cc.Audience, ""),
			AccessTokenTTL: time.Duration(cc.AccessTokenTTL),
			RedirectURIs:   cc.RedirectURIs,
			Public:         cc.Public,
			RequirePKCE:    cc.Public,
		}
		if cc.Public {
			c.Grants = orDefault(cc.Grants, []string{clients.GrantAuthorizationCode, clients.GrantRefreshToken})
		} else if cc.SecretSHA256 != "" {
			d, err := clients.ParseSecretDigest(repl.ReplaceKnown(cc.SecretSHA256, ""))
			if err != nil {
				return nil, fmt.Errorf("client %q: %w", cc.ID, err)
			}
			c.SecretDigest = d
		} else {
			secret := repl.ReplaceKnown(cc.Secret, "")
			if secret == "" {
				return nil, fmt.Errorf("client %q: secret is empty (is its environment variable set?)", cc.ID)
			}
			c.SecretDigest = clients.SecretDigest(secret)
		}
		for _, o := range cc.CORSOrigins {
			origin, err := clients.NormalizeOrigin(o)
			if err != nil {
				return nil, fmt.Errorf("client %q: cors_origins: %w", cc.ID, err)
			}
			c.CORSOrigins = append(c.CORSOrigins, origin)
		}
		reg[c.ID] = c
	}
	return reg, nil
}

func orDefault(v, def []string) []string {
	if len(v) == 0 {
		return append([]string(nil), def...)
	}
	return v
}

// Validate checks the configuration and names the option at fault.
func (h *Handler) Validate() error {
	if h.Issuer == "" {
		return fmt.Errorf("issuer is required")
	}
	for name, p := range map[string]string{"token_path": h.TokenPath, "revoke_path": h.RevokePath, "jwks_path": h.JWKSPath, "introspect_path": h.IntrospectPath} {
		if p != "" && !strings.HasPrefix(p, "/") {
			return fmt.Errorf("%s %q must start with /", name, p)
		}
	}
	if h.RefreshGrace != nil && *h.RefreshGrace < 0 {
		return fmt.Errorf("refresh_grace must not be negative")
	}
	for name, d := range map[string]caddy.Duration{"access_token_ttl": h.AccessTokenTTL, "refresh_token_ttl": h.RefreshTokenTTL} {
		if d < 0 {
			return fmt.Errorf("%s must not be negative", name)
		}
	}
	switch h.UnknownGrants {
	case "", "passthrough", "reject":
	default:
		return fmt.Errorf("unknown_grants must be passthrough or reject, not %q", h.UnknownGrants)
	}
	for i, k := range h.SigningKeys {
		if k.File == "" {
			return fmt.Errorf("signing_key #%d has no file", i+1)
		}
	}
	if h.AuthFailureLimit < -1 {
		return fmt.Errorf("auth_failure_limit must be a positive number or off")
	}
	if h.AuthFailureWindow < 0 {
		return fmt.Errorf("auth_failure_limit window must not be negative")
	}
	if err := h.WordPress.validate(); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, c := range h.Clients {
		if err := validateClient(c); err != nil {
			return err
		}
		if seen[c.ID] {
			return fmt.Errorf("client %q is declared twice", c.ID)
		}
		seen[c.ID] = true
	}
	return nil
}

func validateClient(c ClientConfig) error {
	if c.ID == "" {
		return fmt.Errorf("a client has no id")
	}
	if strings.HasPrefix(c.ID, "wp-user:") {
		return fmt.Errorf("client %q: ids starting with wp-user: are reserved", c.ID)
	}
	if c.Public && (c.Secret != "" || c.SecretSHA256 != "") {
		return fmt.Errorf("client %q: a public client has no secret", c.ID)
	}
	if !c.Public && (c.Secret == "") == (c.SecretSHA256 == "") {
		return fmt.Errorf("client %q needs exactly one of secret or secret_sha256 (or is public)", c.ID)
	}
	for _, g := range c.Grants {
		switch {
		case g == clients.GrantClientCredentials && c.Public:
			return fmt.Errorf("client %q: a public client cannot use client_credentials", c.ID)
		case !slices.Contains(clients.Grants, g):
			return fmt.Errorf("client %q: grants: %q is not one of %s", c.ID, g, strings.Join(clients.Grants, ", "))
		}
	}
	for _, s := range c.Scopes {
		if strings.ContainsAny(s, "\"\\ ") || s == "" {
			return fmt.Errorf("client %q: scopes: %q is not a valid scope", c.ID, s)
		}
	}
	if c.AccessTokenTTL < 0 {
		return fmt.Errorf("client %q: access_token_ttl must not be negative", c.ID)
	}
	return nil
}

func checkAbsoluteURL(option, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%s %q must be an absolute http(s) URL", option, raw)
	}
	return nil
}

// refreshGrace is the core's RefreshGrace: 0 (its default) when the option
// is absent, negative (strict) for an explicit 0.
func (h *Handler) refreshGrace() time.Duration {
	switch {
	case h.RefreshGrace == nil:
		return 0
	case *h.RefreshGrace == 0:
		return -1
	}
	return time.Duration(*h.RefreshGrace)
}

// caddyClientIP is the client address as Caddy determined it, honouring the
// server's trusted_proxies.
func caddyClientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	return r.RemoteAddr
}

// Cleanup releases this configuration's hold on the shared store and
// WordPress database.
func (h *Handler) Cleanup() error {
	var errs []error
	if h.shared != nil {
		unshare(h.shared)
		unshareOps(h.shared)
	}
	if h.wp != nil {
		errs = append(errs, h.wp.close())
	}
	return errors.Join(errs...)
}

// ServeHTTP answers the token, revocation and JWKS endpoints and passes
// every other request to next, without the X-Moserver-* headers a client
// sent (see removeForgedIdentity).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	removeForgedIdentity(r)
	if h.server.Handle(w, r) {
		return nil
	}
	w, answered := h.server.Authorize(w, r)
	if answered {
		return nil
	}
	return next.ServeHTTP(w, r)
}
