// Package bearer checks OAuth 2.0 bearer access tokens (RFC 6750) at the
// edge: signature, issuer, audience, lifetime, scopes and revocation (the
// token's jti, its refresh family and its client's "revoked before" time,
// read from the store in one round trip). It knows nothing of Caddy.
package bearer

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-moserver/caddy-moserver/internal/store"
	"github.com/caddy-moserver/caddy-moserver/internal/tokens"
)

// DefaultLeeway is the clock skew allowed on exp and iat.
const DefaultLeeway = 30 * time.Second

// Config configures a Verifier.
type Config struct {
	Signer *tokens.Signer      // required: the keys tokens are signed with
	Store  store.AccessChecker // required: where revocations are
	Issuer string              // required: the expected iss
	// Audiences are the accepted aud values; any when empty.
	Audiences []string
	// Leeway is the allowed clock skew (default DefaultLeeway).
	Leeway time.Duration
	// StoreTimeout bounds the revocation check (default 1s).
	StoreTimeout time.Duration
	// FailOpenFor, when > 0, lets a token whose revocation state was read
	// successfully within this time through while the store cannot be
	// reached. 0 fails closed: 503.
	FailOpenFor time.Duration
	Logger      *zap.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Verifier checks bearer tokens.
type Verifier struct {
	cfg Config
	log *zap.Logger

	// verified caches the claims of tokens whose signature was checked, so a
	// client reusing its token pays the signature check once. Revocation is
	// still read from the store on every request.
	verifiedMu sync.RWMutex
	verified   map[string]*tokens.AccessClaims

	mu        sync.Mutex
	lastClean time.Time
	// recent maps a jti to when its check last said "not revoked", for
	// fail_open_for.
	recent map[string]time.Time
}

// New returns a Verifier.
func New(cfg Config) (*Verifier, error) {
	if cfg.Signer == nil || cfg.Store == nil || cfg.Issuer == "" {
		return nil, errors.New("bearer: signer, store and issuer are required")
	}
	if cfg.Leeway <= 0 {
		cfg.Leeway = DefaultLeeway
	}
	if cfg.StoreTimeout <= 0 {
		cfg.StoreTimeout = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	return &Verifier{cfg: cfg, log: log, recent: map[string]time.Time{}, verified: map[string]*tokens.AccessClaims{}}, nil
}

// Failure is why a request was refused; Write sends it.
type Failure struct {
	Status      int    // 401, 403 or 503
	Code        string // RFC 6750 error code; "" when no token was sent
	Description string
	Scope       string // the scope needed, for insufficient_scope
}

// Write answers the request with the failure and its WWW-Authenticate
// challenge (RFC 6750 §3).
func (f *Failure) Write(w http.ResponseWriter) {
	h := w.Header()
	challenge := `Bearer realm="moserver"`
	if f.Code != "" {
		challenge += `, error="` + f.Code + `", error_description="` + f.Description + `"`
	}
	if f.Scope != "" {
		challenge += `, scope="` + f.Scope + `"`
	}
	if f.Status != http.StatusServiceUnavailable {
		h.Set("WWW-Authenticate", challenge)
	} else {
		h.Set("Retry-After", "1")
	}
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(f.Status)
	code := f.Code
	if code == "" {
		code = "invalid_request"
	}
	_, _ = w.Write([]byte(`{"error":"` + code + `","error_description":"` + f.Description + `"}`))
}

func invalidToken(desc string) *Failure {
	return &Failure{Status: http.StatusUnauthorized, Code: "invalid_token", Description: desc}
}

// Token returns the bearer token of a request's Authorization header.
func Token(r *http.Request) (string, *Failure) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", &Failure{Status: http.StatusUnauthorized, Description: "An access token is required"}
	}
	scheme, token, ok := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", &Failure{Status: http.StatusBadRequest, Code: "invalid_request", Description: "The Authorization header must be Bearer <token>"}
	}
	return token, nil
}

// Check verifies the request's bearer token and that it carries every scope
// in required, and returns its claims.
func (v *Verifier) Check(r *http.Request, required []string) (*tokens.AccessClaims, *Failure) {
	token, f := Token(r)
	if f != nil {
		return nil, f
	}
	return v.CheckToken(r.Context(), token, required)
}

// CheckToken verifies a token string; see Check.
func (v *Verifier) CheckToken(ctx context.Context, token string, required []string) (*tokens.AccessClaims, *Failure) {
	now := v.cfg.Now()
	claims, err := v.verify(token, now)
	switch {
	case errors.Is(err, tokens.ErrExpired):
		return nil, invalidToken("The access token expired")
	case err != nil:
		return nil, invalidToken("The access token is invalid")
	case claims.Issuer != v.cfg.Issuer:
		return nil, invalidToken("The access token was issued by another issuer")
	case len(v.cfg.Audiences) > 0 && !slices.Contains(v.cfg.Audiences, claims.Audience):
		return nil, invalidToken("The access token is meant for another audience")
	case claims.IssuedAt.After(now.Add(v.cfg.Leeway)):
		return nil, invalidToken("The access token is not valid yet")
	}
	if f := v.checkRevoked(ctx, claims, now); f != nil {
		return nil, f
	}
	if missing := missingScopes(claims.Scope, required); missing != "" {
		return claims, &Failure{Status: http.StatusForbidden, Code: "insufficient_scope",
			Description: "The access token lacks a required scope", Scope: strings.Join(required, " ")}
	}
	return claims, nil
}

// maxVerified bounds the signature cache; it is emptied when full.
const maxVerified = 10_000

// verify checks the token's signature and claims, once per token while it
// is cached; an expired token is never served from the cache.
func (v *Verifier) verify(token string, now time.Time) (*tokens.AccessClaims, error) {
	v.verifiedMu.RLock()
	c := v.verified[token]
	v.verifiedMu.RUnlock()
	if c != nil && c.ExpiresAt.After(now.Add(-v.cfg.Leeway)) {
		return c, nil
	}
	c, err := v.cfg.Signer.Verify(token, now.Add(-v.cfg.Leeway))
	if err != nil {
		return c, err
	}
	v.verifiedMu.Lock()
	if len(v.verified) >= maxVerified {
		clear(v.verified)
	}
	v.verified[token] = c
	v.verifiedMu.Unlock()
	return c, nil
}

// missingScopes returns the first required scope the granted scope lacks.
func missingScopes(granted string, required []string) string {
	have := strings.Fields(granted)
	for _, s := range required {
		if !slices.Contains(have, s) {
			return s
		}
	}
	return ""
}

// checkRevoked asks the store, once, whether the token, its family or its
// client were revoked.
func (v *Verifier) checkRevoked(ctx context.Context, c *tokens.AccessClaims, now time.Time) *Failure {
	ctx, cancel := context.WithTimeout(ctx, v.cfg.StoreTimeout)
	defer cancel()
	st, err := v.cfg.Store.CheckAccess(ctx, c.JTI, c.FamilyID, c.ClientID)
	if err != nil {
		if v.recentlyGood(c.JTI, now) {
			return nil
		}
		v.log.Error("cannot check access-token revocation", zap.String("client_id", c.ClientID), zap.Error(err))
		return &Failure{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable",
			Description: "Token revocation cannot be checked right now"}
	}
	switch {
	case st.JTIRevoked:
		return invalidToken("The access token was revoked")
	case st.FamilyRevoked:
		return invalidToken("The access token's grant was revoked")
	case !st.ClientRevokedBefore.IsZero() && c.IssuedAt.Before(st.ClientRevokedBefore):
		return invalidToken("The client's tokens were revoked")
	}
	v.rememberGood(c.JTI, now)
	return nil
}

// rememberGood notes a successful check, for fail_open_for.
func (v *Verifier) rememberGood(jti string, now time.Time) {
	if v.cfg.FailOpenFor <= 0 {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.recent[jti] = now
	if now.Sub(v.lastClean) > v.cfg.FailOpenFor {
		for k, t := range v.recent {
			if now.Sub(t) > v.cfg.FailOpenFor {
				delete(v.recent, k)
			}
		}
		v.lastClean = now
	}
}

// recentlyGood reports whether the jti was checked good within FailOpenFor.
func (v *Verifier) recentlyGood(jti string, now time.Time) bool {
	if v.cfg.FailOpenFor <= 0 {
		return false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	t, ok := v.recent[jti]
	return ok && now.Sub(t) <= v.cfg.FailOpenFor
}
