package oauth

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-moserver/caddy-moserver/internal/clients"
	"github.com/caddy-moserver/caddy-moserver/internal/store"
	"github.com/caddy-moserver/caddy-moserver/internal/tokens"
)

// tokenResponse is a successful token response, its members in the order the
// plugin sends them.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	ExpiresIn    int64  `json:"expires_in"`
	TokenType    string `json:"token_type"`
	Scope        string `json:"scope,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	IDToken      string `json:"id_token,omitempty"`
}

// serveToken answers the token endpoint, or leaves the request to the next
// handler (returning false) when the grant is not one the server owns.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) bool {
	if answered, post := s.onlyPost(w, r, epToken); !post {
		return answered
	}
	p, body, ok := s.readParams(w, r)
	if !ok {
		return true
	}
	if p.duplicate == "grant_type" {
		writeError(w, errDuplicate(p.duplicate))
		return true
	}
	grant := p.get("grant_type")
	switch {
	case s.ownsGrant(grant):
	case grant == "":
		if p.has("token") {
			s.revoke(w, r, p)
		} else {
			writeError(w, errInvalidRequest(descNoGrantType))
		}
		return true
	case grant == clients.GrantAuthorizationCode: // without WordPress the codes are PHP's
		return s.passGrant(w, r, body)
	default:
		if s.cfg.RejectUnknownGrants {
			writeError(w, &Error{Status: http.StatusBadRequest, Code: "unsupported_grant_type", Description: descUnsupportedGrant})
			return true
		}
		return s.passGrant(w, r, body)
	}

	start := time.Now()
	b := s.budget(r.Context())
	client, e := s.grant(&b, w, r, grant, p)
	b.release()
	outcome := "issued"
	if e != nil {
		outcome = e.outcome()
		s.writeError(w, e)
	}
	elapsed := time.Since(start)
	s.cfg.Events.TokenRequest(grant, outcome, elapsed)
	level := zap.DebugLevel
	if s.cfg.LogRequests {
		level = zap.InfoLevel
	}
	if ce := s.log.Check(level, "token request"); ce != nil {
		clientID := ""
		if client != nil {
			clientID = client.ID
		}
		ce.Write(zap.String("client_id", clientID), zap.String("grant_type", grant),
			zap.String("outcome", outcome), zap.Duration("duration", elapsed))
	}
	return true
}

// passGrant leaves a token request for a grant the server does not own to
// the next handler, with its body as it arrived, unless WordPress would route
// it to another of the endpoints (passOn), and reports whether it answered.
func (s *Server) passGrant(w http.ResponseWriter, r *http.Request, body string) bool {
	if !s.passOn(w, r, epToken, body) {
		return true
	}
	restoreBody(r, body)
	s.cfg.Events.PassedThrough()
	return false
}

// ownsGrant reports whether the server answers a grant type: every one of
// clients.Grants, authorization_code only with WordPress (the plugin's
// codes).
func (s *Server) ownsGrant(grant string) bool {
	if grant == clients.GrantAuthorizationCode && s.cfg.WordPress == nil {
		return false
	}
	return slices.Contains(clients.Grants, grant)
}

// grant authenticates the client and runs the grant; on success it has
// written the response.
func (s *Server) grant(b *requestBudget, w http.ResponseWriter, r *http.Request, grant string, p params) (*clients.Client, *Error) {
	client, e := s.authenticatedClient(b, w, r, p)
	if e != nil {
		return nil, e
	}
	if !client.AllowsGrant(grant) || (client.Public && grant == clients.GrantClientCredentials) {
		return client, &Error{Status: http.StatusBadRequest, Code: "unauthorized_client", Description: descUnauthorizedGrant}
	}
	var (
		cc   tokenResponse // on the stack: nothing keeps it
		resp *tokenResponse
	)
	switch grant {
	case clients.GrantClientCredentials:
		resp, e = &cc, s.clientCredentials(b, &cc, client, p)
	case clients.GrantAuthorizationCode:
		resp, e = s.exchangeCode(b, client, p)
	default:
		resp, e = s.refresh(b, client, p)
	}
	if e != nil {
		return client, e
	}
	writeTokenResponse(w, resp)
	return client, nil
}

func errDuplicate(name string) *Error {
	return errInvalidRequest("Parameter " + quoteName(name) + " was sent more than once")
}

// clientCredentials runs the client credentials grant, filling resp.
func (s *Server) clientCredentials(ctx context.Context, resp *tokenResponse, c *clients.Client, p params) *Error {
	scope, e := grantedScope(p.get("scope"), c)
	if e != nil {
		return e
	}
	now := s.cfg.Now()
	*resp = tokenResponse{Scope: scope}
	familyID := ""
	if c.RefreshTokens {
		var refresh string
		refresh, familyID = tokens.NewFamilyToken()
		err := s.cfg.Store.CreateFamily(ctx, store.NewFamily{
			FamilyID:        familyID,
			Digest:          tokens.Digest(refresh),
			ClientID:        c.ID,
			Subject:         c.ID,
			Scope:           scope,
			IssuedAt:        now,
			ExpiresAt:       now.Add(s.cfg.RefreshTokenTTL),
			FamilyExpiresAt: s.familyExpiry(c, now),
		})
		if err != nil {
			s.log.Error("storing a new refresh token failed", zap.String("client_id", c.ID), errField(err))
			return errUnavailable()
		}
		resp.RefreshToken = refresh
	}
	return s.mintAccess(resp, c, clientSubjectPrefix, c.ID, familyID, now)
}

func (s *Server) refresh(ctx context.Context, c *clients.Client, p params) (*tokenResponse, *Error) {
	presented := p.get("refresh_token")
	if presented == "" {
		return nil, errInvalidRequest(descMissingRefresh)
	}
	scope, ok := normalizeScope(p.get("scope"))
	if !ok {
		return nil, errInvalidScope()
	}
	familyID, ok := tokens.ParseRefresh(presented)
	if !ok {
		if s.cfg.WordPress != nil && isPluginToken(presented) {
			return s.redeemPluginRefresh(ctx, c, presented, scope)
		}
		return nil, errInvalidGrant(descInvalidRefresh)
	}
	successor, err := tokens.NewToken(familyID)
	if err != nil {
		return nil, errInvalidGrant(descInvalidRefresh)
	}
	sealed, err := tokens.Seal(presented, successor)
	if err != nil {
		s.log.Error("sealing a refresh token failed", errField(err))
		return nil, errUnavailable()
	}
	now := s.cfg.Now()
	// Rotate itself refuses families created before the client's
	// revoked-before time (RevokeClient), in the same round trip.
	res, err := s.cfg.Store.Rotate(ctx, store.RotateRequest{
		FamilyID:        familyID,
		OldDigest:       tokens.Digest(presented),
		NewDigest:       tokens.Digest(successor),
		ClientID:        c.ID,
		Scope:           scope,
		Sealed:          sealed,
		Now:             now,
		ExpiresAt:       now.Add(s.cfg.RefreshTokenTTL),
		FamilyExpiresAt: s.familyExpiry(c, now),
		Grace:           s.cfg.RefreshGrace,
	})
	if err != nil {
		s.log.Error("refresh token rotation failed", zap.String("client_id", c.ID), errField(err))
		return nil, errUnavailable()
	}
	switch res.Outcome {
	case store.Rotated:
	case store.GraceRetry:
		if successor, err = tokens.Open(presented, res.Sealed); err != nil {
			s.log.Error("opening a sealed successor failed", zap.String("client_id", c.ID), errField(err))
			return nil, errInvalidGrant(descInvalidRefresh)
		}
	case store.Replayed:
		s.cfg.Events.ReplayDetected()
		s.cfg.Events.FamilyRevoked()
		s.log.Warn("refresh token replay: family revoked",
			zap.String("client_id", c.ID), zap.String("family", familyID))
		return nil, errInvalidGrant(descInvalidRefresh)
	case store.Expired:
		return nil, errInvalidGrant(descExpiredRefresh)
	case store.WrongClient:
		return nil, errInvalidGrant(descForeignRefresh)
	case store.ScopeWidened:
		return nil, errInvalidScope()
	default: // NotFound, FamilyRevoked
		return nil, errInvalidGrant(descInvalidRefresh)
	}
	resp := &tokenResponse{Scope: res.Scope, RefreshToken: successor}
	if e := s.issue(ctx, resp, c, res.Subject, familyID, now); e != nil {
		return nil, e
	}
	return resp, nil
}

// accessTTL is the lifetime of the client's access tokens.
func (s *Server) accessTTL(c *clients.Client) time.Duration {
	if c.AccessTokenTTL > 0 {
		return c.AccessTokenTTL
	}
	return s.cfg.AccessTokenTTL
}

// familyExpiry is how long a family must be remembered after a token of it
// is issued now: as long as that token or an access token from it lives.
func (s *Server) familyExpiry(c *clients.Client, now time.Time) time.Time {
	return now.Add(max(s.cfg.RefreshTokenTTL, s.accessTTL(c)))
}

// issue fills resp with the access token (and id_token) for a family's
// store subject: a WordPress user's tokens when the subject is a user, else
// a JWT of the client's own.
func (s *Server) issue(ctx context.Context, resp *tokenResponse, c *clients.Client, subject, familyID string, now time.Time) *Error {
	if userID, ok := userOf(subject); ok {
		_, e := s.issueForUser(ctx, resp, c, userID, familyID, "", now)
		return e
	}
	return s.mintAccess(resp, c, clientSubjectPrefix, subject, familyID, now)
}

// mintAccess signs the access token of resp, whose "sub" is subjectPrefix
// followed by subject (see clientSubjectPrefix).
func (s *Server) mintAccess(resp *tokenResponse, c *clients.Client, subjectPrefix, subject, familyID string, now time.Time) *Error {
	return s.mintAccessID(resp, c, subjectPrefix, subject, familyID, tokens.NewID(16), now)
}

// mintAccessID is mintAccess with the token's jti chosen by the caller.
func (s *Server) mintAccessID(resp *tokenResponse, c *clients.Client, subjectPrefix, subject, familyID, jti string, now time.Time) *Error {
	ttl := s.accessTTL(c)
	aud := c.Audience
	if aud == "" {
		aud = s.cfg.Audience
	}
	at, err := s.cfg.Signer.Mint(tokens.AccessClaims{
		Issuer:        s.cfg.Issuer,
		SubjectPrefix: subjectPrefix,
		Subject:       subject,
		Audience:      aud,
		ClientID:      c.ID,
		IssuedAt:      now,
		ExpiresAt:     now.Add(ttl),
		JTI:           jti,
		Scope:         resp.Scope,
		FamilyID:      familyID,
	})
	if err != nil {
		s.log.Error("signing an access token failed", zap.String("client_id", c.ID), errField(err))
		return &Error{Status: http.StatusInternalServerError, Code: "server_error", Description: "The access token could not be signed"}
	}
	resp.AccessToken = at
	resp.ExpiresIn = int64(ttl / time.Second)
	resp.TokenType = "Bearer"
	return nil
}

func writeTokenResponse(w http.ResponseWriter, resp *tokenResponse) {
	body := getBody()
	*body = resp.appendJSON((*body)[:0])
	writeJSON(w, http.StatusOK, *body)
	putBody(body)
}

// normalizeScope checks a requested scope (RFC 6749 §3.3 syntax) and returns
// its words, de-duplicated, joined by single spaces.
// manyScopeWords is how many distinct words normalizeScope checks for
// duplicates by scanning; beyond it a map keeps the check linear, so a
// 64 KiB scope of tiny words costs milliseconds, not seconds.
const manyScopeWords = 32

func normalizeScope(raw string) (string, bool) {
	var buf [8]string // the words of a usual scope, on the stack
	out := buf[:0]
	size := 0                // of the words in out
	var seen map[string]bool // the words in out, once there are many
	for w := range strings.FieldsSeq(raw) {
		for i := 0; i < len(w); i++ {
			if c := w[i]; c < 0x21 || c == '"' || c == '\\' || c > 0x7e {
				return "", false
			}
		}
		if len(out) == manyScopeWords && seen == nil {
			seen = make(map[string]bool, 2*manyScopeWords)
			for _, o := range out {
				seen[o] = true
			}
		}
		if seen != nil {
			if seen[w] {
				continue
			}
			seen[w] = true
		} else if slices.Contains(out, w) {
			continue
		}
		out = append(out, w)
		size += len(w)
	}
	// Usually raw is normalised already: its length then leaves room for no
	// duplicate and for exactly one byte between words, and that byte (words
	// hold no space) is a space each time.
	if len(out) > 0 && size+len(out)-1 == len(raw) && strings.Count(raw, " ") == len(out)-1 {
		return raw, true
	}
	return strings.Join(out, " "), true
}

// grantedScope is the scope a client gets for a request: all of its scopes
// when it asks for none, else what it asks for if every word is allowed.
func grantedScope(requested string, c *clients.Client) (string, *Error) {
	scope, ok := normalizeScope(requested)
	if !ok {
		return "", errInvalidScope()
	}
	if scope == "" {
		return c.DefaultScope(), nil
	}
	for w := range strings.FieldsSeq(scope) {
		if !slices.Contains(c.Scopes, w) {
			return "", errInvalidScope()
		}
	}
	return scope, nil
}
