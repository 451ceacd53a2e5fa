package oauth

import (
	"context"
	"net/http"

	"go.uber.org/zap"

	"github.com/caddy-moserver/caddy-moserver/internal/store"
	"github.com/caddy-moserver/caddy-moserver/internal/tokens"
)

// serveRevoke answers the RFC 7009 revocation endpoint.
func (s *Server) serveRevoke(w http.ResponseWriter, r *http.Request) bool {
	if answered, post := s.onlyPost(w, r, epRevoke); !post {
		return answered
	}
	p, _, ok := s.readParams(w, r)
	if ok {
		s.revoke(w, r, p)
	}
	return true
}

// revoke authenticates the client and revokes the token it names (RFC 7009):
// a refresh token of ours revokes its family, an access token of ours is
// denied until it expires. A token that is unknown, malformed or another
// client's is answered 200 and changes nothing. A revocation the store could
// not record is a 503, never a 200.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request, p params) {
	b := s.budget(r.Context())
	defer b.release()
	client, token, e := s.authenticatedToken(&b, w, r, p)
	if e != nil {
		s.cfg.Events.Revocation(e.outcome())
		s.writeError(w, e)
		return
	}
	ctx := &b
	var err error
	if familyID, ok := tokens.ParseRefresh(token); ok {
		var out store.RevokeOutcome
		if out, err = s.cfg.Store.RevokeRefresh(ctx, familyID, tokens.Digest(token), client.ID); out == store.FamilyRevokedNow {
			s.cfg.Events.FamilyRevoked()
		}
	} else if s.cfg.WordPress != nil && isPluginToken(token) {
		err = s.revokePluginToken(ctx, client.ID, token)
	} else if claims, verr := s.cfg.Signer.Verify(token, s.cfg.Now()); verr == nil && claims.ClientID == client.ID {
		err = s.cfg.Store.RevokeAccessToken(ctx, claims.JTI, claims.ExpiresAt)
	}
	if err != nil {
		s.log.Error("revocation could not be stored", zap.String("client_id", client.ID), errField(err))
		s.cfg.Events.Revocation("temporarily_unavailable")
		s.writeError(w, errUnavailable())
		return
	}
	s.cfg.Events.Revocation("revoked")
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

// revokePluginRefresh deletes a refresh token the plugin issued, if it is
// the client's own, and reports whether it found one.
func (s *Server) revokePluginRefresh(ctx context.Context, clientID, token string) (found bool, err error) {
	row, err := s.cfg.WordPress.LookupPluginRefresh(ctx, token)
	if err != nil || row == nil || row.ClientID != clientID {
		return false, err
	}
	_, err = s.cfg.WordPress.TakePluginRefresh(ctx, row)
	return true, err
}

// revokePluginToken revokes a token in the plugin's format: a refresh token
// the plugin issued, or an opaque access token (the plugin's or one the
// module recorded for a WordPress user), if it is the client's own. An
// access token's row is deleted, so userinfo no longer accepts it.
func (s *Server) revokePluginToken(ctx context.Context, clientID, token string) error {
	if found, err := s.revokePluginRefresh(ctx, clientID, token); found || err != nil {
		return err
	}
	at, err := s.cfg.WordPress.LookupAccessToken(ctx, token)
	if err != nil || at == nil || at.ClientID != clientID {
		return err
	}
	return s.cfg.WordPress.DeleteAccessToken(ctx, token)
}
