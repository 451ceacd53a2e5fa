package oauth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"go.uber.org/zap"

	"github.com/caddy-moserver/caddy-moserver/internal/clients"
	"github.com/caddy-moserver/caddy-moserver/internal/store"
	"github.com/caddy-moserver/caddy-moserver/internal/tokens"
)

// PluginRefresh is a refresh token that the WordPress plugin issued and
// stored in its own table.
type PluginRefresh struct {
	Token    string
	ClientID string
	UserID   int64
	Expires  time.Time
	Scope    string
}

// WordPress is the site's database, for the tokens of WordPress users: the
// plugin's outstanding refresh tokens, its access-token table (which its
// resource endpoint reads) and its per-client id_token keys.
type WordPress interface {
	// LookupPluginRefresh finds a refresh token the plugin issued; nil, nil
	// when there is none.
	LookupPluginRefresh(ctx context.Context, token string) (*PluginRefresh, error)
	// TakePluginRefresh removes the token from the plugin's table and reports
	// whether this call removed it: of any number of concurrent callers, in
	// any number of processes, exactly one gets true.
	TakePluginRefresh(ctx context.Context, r *PluginRefresh) (bool, error)
	// InsertAccessToken records an opaque access token the way the plugin
	// does, so its resource endpoint accepts it.
	InsertAccessToken(ctx context.Context, token, clientID string, userID int64, expires time.Time, scope string) error
	// IDToken mints an OpenID Connect id_token for the user, signed with the
	// client's own key and carrying the plugin's claims, and nonce when it
	// is not empty.
	IDToken(ctx context.Context, clientID string, userID int64, issuedAt, expires time.Time, nonce string) (string, error)
	// LookupAuthCode finds the plugin's row of an authorization code, byte
	// for byte; nil, nil when there is none.
	LookupAuthCode(ctx context.Context, code string) (*AuthCode, error)
	// TakeAuthCode deletes the row of a code and reports whether this call
	// deleted it: of any number of concurrent callers, in any number of
	// processes, exactly one gets true.
	TakeAuthCode(ctx context.Context, code string) (bool, error)
	// DeleteAccessToken removes an opaque access token from the plugin's
	// table, so its resource endpoint no longer accepts it.
	DeleteAccessToken(ctx context.Context, token string) error
	// LookupAccessToken finds the plugin's row of an opaque access token,
	// byte for byte; nil, nil when there is none.
	LookupAccessToken(ctx context.Context, token string) (*AccessToken, error)
	// User returns a WordPress user; nil, nil when there is none.
	User(ctx context.Context, userID int64) (*User, error)
	// IDTokenKey describes the key a client's id_tokens are signed with;
	// nil, nil when the client has none.
	IDTokenKey(ctx context.Context, clientID string) (*IDTokenKey, error)
}

// AccessToken is the plugin's row of an opaque access token.
type AccessToken struct {
	ClientID string
	UserID   int64     // 0 when NULL
	Expires  time.Time // the zero time when NULL
	Scope    string
}

// User is what the userinfo endpoint tells of a WordPress user.
type User struct {
	ID          int64
	Login       string // user_login, the plugin's "username"
	Email       string
	FirstName   string
	LastName    string
	Nickname    string
	DisplayName string
}

// IDTokenKey is the key a client's id_tokens are signed with.
type IDTokenKey struct {
	// Algorithm is "RS256" or "HS256" (the client secret is the key).
	Algorithm string
	// Public is the RS256 public key (kid = the client id, alg, use "sig"):
	// the public half of the private key that signs. Nil for HS256, or
	// when the stored key cannot be used (Unusable says why).
	Public   jwk.Key
	Unusable error
}

// AuthCode is the plugin's row of an authorization code.
type AuthCode struct {
	ClientID    string
	UserID      int64
	RedirectURI string // "" when the authorize request sent none
	Expires     time.Time
	Scope       string
}

// A token's subject ("sub", X-Moserver-Sub, {moserver.sub}) takes one of
// two forms, which no value can have both of:
//
//   - a WordPress user's: the user id, digits only, as the plugin's
//     id_token and userinfo say;
//   - a client's own (client_credentials and its refreshes):
//     clientSubjectPrefix and the client id, so that a client whose id
//     looks like a user id ("1") is not taken for that user.
//
// The client_id claim is always the bare client id. In the store a family's
// subject is the client id for a client's own, or userSubjectPrefix and the
// user id for a user's (publicSubject turns it into the token's form).
const clientSubjectPrefix = "client:"

// userSubjectPrefix marks the store subject of a family that belongs to a
// WordPress user rather than to a client.
const userSubjectPrefix = "wp-user:"

// UserSubject is the store subject of a WordPress user's token family.
func UserSubject(userID int64) string { return userSubjectPrefix + strconv.FormatInt(userID, 10) }

// userOf returns the WordPress user of a store subject, if it is one.
func userOf(subject string) (int64, bool) {
	s, ok := strings.CutPrefix(subject, userSubjectPrefix)
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseInt(s, 10, 64)
	return id, err == nil && id > 0
}

// isPluginToken reports whether a refresh token has the plugin's shape:
// at least 32 lowercase hex characters.
func isPluginToken(t string) bool {
	if len(t) < 32 || len(t) > 128 || len(t)%2 != 0 {
		return false
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// redeemPluginRefresh exchanges a refresh token the plugin issued. It starts
// a family in the store first and only then takes the token out of MySQL, so
// a failure on either side loses nothing: if MySQL's delete is won by another
// request (or instance), or fails, the new family is revoked at once.
func (s *Server) redeemPluginRefresh(ctx context.Context, c *clients.Client, presented, scope string) (*tokenResponse, *Error) {
	wp := s.cfg.WordPress
	row, err := wp.LookupPluginRefresh(ctx, presented)
	if err != nil {
		s.log.Error("looking up a plugin refresh token failed", zap.String("client_id", c.ID), errField(err))
		return nil, errUnavailable()
	}
	now := s.cfg.Now()
	switch {
	case row == nil:
		return nil, errInvalidGrant(descInvalidRefresh)
	case row.ClientID != c.ID:
		return nil, errInvalidGrant(descForeignRefresh)
	case !row.Expires.After(now):
		return nil, errInvalidGrant(descExpiredRefresh)
	}
	granted, ok := normalizeScope(row.Scope)
	if !ok {
		granted = ""
	}
	if scope == "" {
		scope = granted
	} else if !subsetOf(scope, granted) {
		return nil, errInvalidScope()
	}
	refresh, familyID := tokens.NewFamilyToken()
	subject := UserSubject(row.UserID)
	err = s.cfg.Store.CreateFamily(ctx, store.NewFamily{
		FamilyID: familyID, Digest: tokens.Digest(refresh), ClientID: c.ID, Subject: subject, Scope: scope,
		IssuedAt: now, ExpiresAt: now.Add(s.cfg.RefreshTokenTTL), FamilyExpiresAt: s.familyExpiry(c, now),
	})
	if err != nil {
		s.log.Error("storing a migrated refresh token failed", zap.String("client_id", c.ID), errField(err))
		return nil, errUnavailable()
	}
	won, err := wp.TakePluginRefresh(ctx, row)
	if err != nil || !won {
		if rerr := s.cfg.Store.RevokeFamily(ctx, familyID); rerr != nil {
			s.log.Error("revoking an unused migrated family failed", zap.String("family", familyID), errField(rerr))
		}
		if err != nil {
			s.log.Error("taking a plugin refresh token failed", zap.String("client_id", c.ID), errField(err))
			return nil, errUnavailable()
		}
		return nil, errInvalidGrant(descInvalidRefresh)
	}
	s.log.Info("plugin refresh token migrated to the store", zap.String("client_id", c.ID), zap.String("family", familyID))
	resp := &tokenResponse{Scope: scope, RefreshToken: refresh}
	if e := s.issue(ctx, resp, c, subject, familyID, now); e != nil {
		return nil, e
	}
	return resp, nil
}

// subsetOf reports whether every word of scope is in granted.
func subsetOf(scope, granted string) bool {
	have := strings.Fields(granted)
	for _, w := range strings.Fields(scope) {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// issuedAccess is the access token issued to a WordPress user: a JWT's
// jti, or an opaque token (a row of the plugin's table).
type issuedAccess struct {
	jti     string
	opaque  string
	expires time.Time
}

// userAccessIssuer issues the access token of a WordPress user into resp.
// New chooses it once, from UserAccessTokens.
type userAccessIssuer func(s *Server, ctx context.Context, resp *tokenResponse, c *clients.Client, userID int64, familyID string, now time.Time) (issuedAccess, *Error)

// jwtUserAccess issues one of our JWTs, whose sub is the user id.
func jwtUserAccess(s *Server, _ context.Context, resp *tokenResponse, c *clients.Client, userID int64, familyID string, now time.Time) (issuedAccess, *Error) {
	a := issuedAccess{jti: tokens.NewID(16), expires: now.Add(s.accessTTL(c))}
	return a, s.mintAccessID(resp, c, "", userJWTSubject(userID), familyID, a.jti, now)
}

// opaqueUserAccess records an opaque token in the plugin's access-token
// table, where userinfo (the module's, or the plugin's) finds it.
func opaqueUserAccess(s *Server, ctx context.Context, resp *tokenResponse, c *clients.Client, userID int64, _ string, now time.Time) (issuedAccess, *Error) {
	ttl := s.accessTTL(c)
	a := issuedAccess{opaque: newPluginToken(), expires: now.Add(ttl)}
	if err := s.cfg.WordPress.InsertAccessToken(ctx, a.opaque, c.ID, userID, a.expires, resp.Scope); err != nil {
		s.log.Error("recording an access token in WordPress failed", zap.String("client_id", c.ID), errField(err))
		return issuedAccess{}, errUnavailable()
	}
	resp.AccessToken, resp.ExpiresIn, resp.TokenType = a.opaque, int64(ttl/time.Second), "Bearer"
	return a, nil
}

// issueForUser fills resp with the tokens of a WordPress user: the access
// token as UserAccessTokens says and, with openid in scope, an id_token
// signed with the client's key, carrying nonce when it is not empty. It
// returns what it issued, also on an error after the access token (so that
// a caller can revoke it).
func (s *Server) issueForUser(ctx context.Context, resp *tokenResponse, c *clients.Client, userID int64, familyID, nonce string, now time.Time) (issuedAccess, *Error) {
	a, e := s.userAccess(s, ctx, resp, c, userID, familyID, now)
	if e != nil || s.cfg.WordPress == nil || !hasWord(resp.Scope, "openid") {
		return a, e
	}
	idt, err := s.cfg.WordPress.IDToken(ctx, c.ID, userID, now, now.Add(s.accessTTL(c)), nonce)
	if err != nil {
		s.log.Error("minting an id_token failed", zap.String("client_id", c.ID), errField(err))
		return a, errUnavailable()
	}
	resp.IDToken = idt
	return a, nil
}

// newPluginToken makes an access token in the plugin's format: 32 hex chars.
func newPluginToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

func hasWord(s, w string) bool { return slices.Contains(strings.Fields(s), w) }
