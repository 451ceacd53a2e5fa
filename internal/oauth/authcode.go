package oauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-moserver/caddy-moserver/internal/clients"
	"github.com/caddy-moserver/caddy-moserver/internal/store"
	"github.com/caddy-moserver/caddy-moserver/internal/tokens"
)

// The plugin's descriptions of a failed code exchange (its OAuth library's).
const (
	descMissingCode      = `Missing parameter: "code" is required`
	descBadCode          = "Authorization code doesn't exist or is invalid for the client"
	descExpiredCode      = "The authorization code has expired"
	descRedirectMismatch = "The redirect URI provided does not match the one used in the authorization request"
	descBadVerifier      = "The code_verifier does not match the code_challenge of the authorization request"
	descMissingVerifier  = `Missing parameter: "code_verifier" is required`
	descPKCERequired     = "This client must use PKCE (code_challenge with S256) in the authorization request"
)

// redemptionTTL is how long what an exchange issued is remembered, so that
// a second exchange of the code revokes it (RFC 6749 §4.1.2). Codes live 30
// s; an hour covers any replay of one that still matters.
const redemptionTTL = time.Hour

// maxCodeLen bounds a code: the plugin's column holds 255 characters.
const maxCodeLen = 255

// exchangeCode runs the authorization code grant for the plugin's codes
// (RFC 6749 §4.1.3): the code's row is checked, everything the exchange
// issues is prepared and recorded, and only then is the row deleted; the
// deletion decides. Of any number of concurrent exchanges of one code, on
// any number of instances, one deletes it; every other one, and every later
// one, is invalid_grant and revokes what was issued for the code. A store or
// database failure before the deletion leaves the code usable; after a lost
// race, what this exchange prepared is revoked with the rest.
func (s *Server) exchangeCode(ctx context.Context, c *clients.Client, p params) (*tokenResponse, *Error) {
	code := p.get("code")
	if code == "" {
		return nil, errInvalidRequest(descMissingCode)
	}
	if len(code) > maxCodeLen {
		return nil, errInvalidGrant(descBadCode)
	}
	scope, ok := normalizeScope(p.get("scope"))
	if !ok {
		return nil, errInvalidScope()
	}
	wp := s.cfg.WordPress
	digest := tokens.Digest(code)
	binding, err := s.cfg.Store.CodeBinding(ctx, digest)
	if err != nil {
		s.log.Error("reading a code binding failed", zap.String("client_id", c.ID), errField(err))
		return nil, errUnavailable()
	}
	row, err := wp.LookupAuthCode(ctx, code)
	if err != nil {
		s.log.Error("reading an authorization code failed", zap.String("client_id", c.ID), errField(err))
		return nil, errUnavailable()
	}
	if row == nil {
		// Unknown, or redeemed already: a second exchange revokes what the
		// first one issued.
		s.revokeRedeemed(ctx, code, digest)
		return nil, errInvalidGrant(descBadCode)
	}
	now := s.cfg.Now()
	if row.Expires.IsZero() || now.Unix() > row.Expires.Unix() { // valid through its expiry second
		return nil, errInvalidGrant(descExpiredCode)
	}
	if row.RedirectURI != "" && p.get("redirect_uri") != row.RedirectURI {
		return nil, errInvalidGrant(descRedirectMismatch)
	}
	if row.ClientID != c.ID || (binding != nil && binding.ClientID != c.ID) {
		return nil, errInvalidGrant(descBadCode)
	}
	if e := checkVerifier(binding, p, s.clientNeedsPKCE(c)); e != nil {
		return nil, e
	}
	granted := row.Scope
	if granted == "" {
		granted = "profile email" // the plugin's default scope
	}
	if scope != "" {
		if !subsetOf(scope, granted) {
			return nil, errInvalidScope()
		}
		granted = scope
	}
	nonce := ""
	if binding != nil {
		nonce = binding.Nonce
	}
	return s.redeemCode(ctx, c, code, digest, row.UserID, granted, nonce, now)
}

// checkVerifier checks PKCE (RFC 7636, S256 only): a code bound to a
// challenge needs the matching code_verifier; a code without one is refused
// when the client must use PKCE.
func checkVerifier(b *store.CodeBinding, p params, needsPKCE bool) *Error {
	if b == nil || b.CodeChallenge == "" {
		if needsPKCE {
			return errInvalidGrant(descPKCERequired)
		}
		return nil
	}
	verifier := p.get("code_verifier")
	if verifier == "" {
		return errInvalidGrant(descMissingVerifier)
	}
	if b.CodeChallengeMethod != "S256" || !validVerifier(verifier) {
		return errInvalidGrant(descBadVerifier)
	}
	sum := sha256.Sum256([]byte(verifier))
	want := base64.RawURLEncoding.EncodeToString(sum[:])
	if subtle.ConstantTimeCompare([]byte(want), []byte(b.CodeChallenge)) != 1 {
		return errInvalidGrant(descBadVerifier)
	}
	return nil
}

// validVerifier checks RFC 7636 §4.1: 43 to 128 unreserved characters.
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := range len(v) {
		switch ch := v[i]; {
		case ch >= 'A' && ch <= 'Z', ch >= 'a' && ch <= 'z', ch >= '0' && ch <= '9',
			ch == '-', ch == '.', ch == '_', ch == '~':
		default:
			return false
		}
	}
	return true
}

// redeemCode issues the tokens of a code for its user, records them for the
// code, then takes the code's row: the deletion decides.
func (s *Server) redeemCode(ctx context.Context, c *clients.Client, code, digest string, userID int64, scope, nonce string, now time.Time) (*tokenResponse, *Error) {
	wp := s.cfg.WordPress
	resp := &tokenResponse{Scope: scope}
	var red store.Redemption
	fail := func(what string, err error) (*tokenResponse, *Error) {
		s.log.Error(what, zap.String("client_id", c.ID), errField(err))
		s.undoRedemption(ctx, code, red)
		return nil, errUnavailable()
	}
	// The plugin's rule: a refresh token unless openid comes without
	// offline_access.
	if !hasWord(scope, "openid") || hasWord(scope, "offline_access") {
		refresh, familyID := tokens.NewFamilyToken()
		err := s.cfg.Store.CreateFamily(ctx, store.NewFamily{
			FamilyID: familyID, Digest: tokens.Digest(refresh), ClientID: c.ID, Subject: UserSubject(userID),
			Scope: scope, IssuedAt: now, ExpiresAt: now.Add(s.cfg.RefreshTokenTTL), FamilyExpiresAt: s.familyExpiry(c, now),
		})
		if err != nil {
			return fail("storing the refresh token of a code failed", err)
		}
		red.FamilyID, resp.RefreshToken = familyID, refresh
	}
	a, e := s.issueForUser(ctx, resp, c, userID, red.FamilyID, nonce, now)
	red.AccessJTI, red.AccessExpiresAt = a.jti, a.expires
	if a.opaque != "" {
		sealed, err := tokens.Seal(code, a.opaque)
		if err != nil {
			_ = wp.DeleteAccessToken(ctx, a.opaque)
			return fail("sealing an access token failed", err)
		}
		red.SealedAccess = sealed
	}
	if e != nil {
		s.undoRedemption(ctx, code, red)
		return nil, e
	}
	if err := s.cfg.Store.AddRedemption(ctx, digest, red, redemptionTTL); err != nil {
		return fail("recording a code redemption failed", err)
	}
	won, err := wp.TakeAuthCode(ctx, code)
	if err != nil {
		return fail("taking an authorization code failed", err)
	}
	if !won {
		// Another exchange took it first: this one is the second use.
		s.revokeRedeemed(ctx, code, digest)
		return nil, errInvalidGrant(descBadCode)
	}
	return resp, nil
}

// userJWTSubject is the sub of a WordPress user's JWT access token.
func userJWTSubject(userID int64) string { return strconv.FormatInt(userID, 10) }

// revokeRedeemed revokes everything issued for a code that is presented
// again (RFC 6749 §4.1.2): its refresh families, its JWT access tokens and
// its opaque access tokens.
func (s *Server) revokeRedeemed(ctx context.Context, code, digest string) {
	reds, err := s.cfg.Store.Redemptions(ctx, digest)
	if err != nil {
		s.log.Error("reading the redemptions of a code failed", errField(err))
		return
	}
	for _, red := range reds {
		s.undoRedemption(ctx, code, red)
	}
	if len(reds) > 0 {
		s.log.Warn("authorization code used again: what it issued is revoked", zap.Int("redemptions", len(reds)))
	}
}

// undoRedemption revokes what one exchange of code issued.
func (s *Server) undoRedemption(ctx context.Context, code string, red store.Redemption) {
	if red.FamilyID != "" {
		if err := s.cfg.Store.RevokeFamily(ctx, red.FamilyID); err != nil {
			s.log.Error("revoking the family of a code failed", zap.String("family", red.FamilyID), errField(err))
		} else {
			s.cfg.Events.FamilyRevoked()
		}
	}
	if red.AccessJTI != "" {
		if err := s.cfg.Store.RevokeAccessToken(ctx, red.AccessJTI, red.AccessExpiresAt); err != nil {
			s.log.Error("revoking the access token of a code failed", errField(err))
		}
	}
	if len(red.SealedAccess) > 0 {
		at, err := tokens.Open(code, red.SealedAccess)
		if err == nil {
			err = s.cfg.WordPress.DeleteAccessToken(ctx, at)
		}
		if err != nil {
			s.log.Error("deleting the access token of a code failed", errField(err))
		}
	}
}
