package oauth

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	"go.uber.org/zap"

	"github.com/caddy-moserver/caddy-moserver/internal/clients"
	"github.com/caddy-moserver/caddy-moserver/internal/tokens"
)

// introspection is an RFC 7662 response.
type introspection struct {
	Active    bool   `json:"active"`
	Scope     string `json:"scope,omitempty"`
	ClientID  string `json:"client_id,omitempty"`
	Subject   string `json:"sub,omitempty"`
	Audience  string `json:"aud,omitempty"`
	Issuer    string `json:"iss,omitempty"`
	ExpiresAt int64  `json:"exp,omitempty"`
	IssuedAt  int64  `json:"iat,omitempty"`
	JTI       string `json:"jti,omitempty"`
	TokenType string `json:"token_type,omitempty"`
}

// serveIntrospect answers RFC 7662 introspection for the calling client's
// own tokens: anything revoked, expired, another client's or unknown is
// {"active":false}.
func (s *Server) serveIntrospect(w http.ResponseWriter, r *http.Request) bool {
	if answered, post := s.onlyPost(w, r, epIntrospect); !post {
		return answered
	}
	p, _, ok := s.readParams(w, r)
	if !ok {
		return true
	}
	b := s.budget(r.Context())
	defer b.release()
	client, token, e := s.authenticatedToken(&b, w, r, p)
	if e != nil {
		s.writeError(w, e)
		return true
	}
	res, err := s.introspect(&b, client, token)
	if err != nil {
		s.log.Error("introspection could not read the store", zap.String("client_id", client.ID), errField(err))
		s.writeError(w, errUnavailable())
		return true
	}
	body, _ := json.Marshal(res)
	writeJSON(w, http.StatusOK, body)
	return true
}

func (s *Server) introspect(ctx context.Context, c *clients.Client, token string) (introspection, error) {
	now := s.cfg.Now()
	inactive := introspection{}
	if familyID, ok := tokens.ParseRefresh(token); ok {
		info, found, err := s.cfg.Store.RefreshInfo(ctx, familyID, tokens.Digest(token))
		if err != nil || !found || !info.Active || info.ClientID != c.ID || !info.ExpiresAt.After(now) {
			return inactive, err
		}
		return introspection{Active: true, Scope: info.Scope, ClientID: info.ClientID, Subject: publicSubject(info.Subject),
			Issuer: s.cfg.Issuer, ExpiresAt: info.ExpiresAt.Unix(), IssuedAt: info.IssuedAt.Unix(), TokenType: "refresh_token"}, nil
	}
	claims, err := s.cfg.Signer.Verify(token, now)
	if err != nil || claims.ClientID != c.ID || claims.Issuer != s.cfg.Issuer {
		return inactive, nil
	}
	st, err := s.cfg.Store.CheckAccess(ctx, claims.JTI, claims.FamilyID, claims.ClientID)
	if err != nil {
		return inactive, err
	}
	if st.JTIRevoked || st.FamilyRevoked || (!st.ClientRevokedBefore.IsZero() && claims.IssuedAt.Before(st.ClientRevokedBefore)) {
		return inactive, nil
	}
	return introspection{Active: true, Scope: claims.Scope, ClientID: claims.ClientID, Subject: claims.Subject,
		Audience: claims.Audience, Issuer: claims.Issuer, ExpiresAt: claims.ExpiresAt.Unix(), IssuedAt: claims.IssuedAt.Unix(),
		JTI: claims.JTI, TokenType: "Bearer"}, nil
}

// publicSubject is a store subject as tokens carry it (see
// clientSubjectPrefix): a WordPress user's id, or "client:" and the client
// id.
func publicSubject(subject string) string {
	if id, ok := userOf(subject); ok {
		return strconv.FormatInt(id, 10)
	}
	return clientSubjectPrefix + subject
}
