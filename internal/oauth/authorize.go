package oauth

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-moserver/caddy-moserver/internal/clients"
	"github.com/caddy-moserver/caddy-moserver/internal/store"
	"github.com/caddy-moserver/caddy-moserver/internal/tokens"
)

// DefaultAuthorizePath is the plugin's authorize endpoint (login and
// consent, answered by PHP).
const DefaultAuthorizePath = "/wp-json/moserver/authorize"

// bindingTTL is how long a code's binding is kept: the plugin's codes live
// 30 s.
const bindingTTL = time.Minute

// Authorize prepares an authorize request for the next handler (PHP, which
// logs the user in and asks for consent). It reports answered when it
// refused the request itself: a PKCE challenge with a method other than
// S256, or none where PKCE is required, goes back to the client's
// registered redirect URI as an RFC 6749 error (or is a 400 when the URI is
// not registered). Otherwise it returns the writer to pass PHP's answer
// through: when that answer redirects with a code, the writer first stores
// what the request carried (nonce, PKCE challenge, client, redirect URI)
// bound to the code; if that cannot be stored, the redirect becomes a
// temporarily_unavailable error, so a code never goes out unbound.
// Requests that are not authorize requests get w back unchanged.
func (s *Server) Authorize(w http.ResponseWriter, r *http.Request) (http.ResponseWriter, bool) {
	if s.cfg.WordPress == nil || !s.isAuthorize(r) {
		return w, false
	}
	if r.Method == http.MethodPost {
		return &consentWriter{ResponseWriter: w, query: r.URL.RawQuery}, false
	}
	if r.Method != http.MethodGet {
		return w, false
	}
	q := r.URL.Query()
	clientID := q.Get("client_id")
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	if challenge != "" && method == "" {
		method = "plain" // RFC 7636 §4.3
	}
	var refuse string
	switch {
	case challenge != "" && method != "S256":
		refuse = "PKCE code_challenge_method " + method + " is not allowed; use S256"
	case challenge != "" && !validChallenge(challenge):
		refuse = "code_challenge must be 43 base64url characters (S256)"
	case challenge == "" && s.pkceRequired(r.Context(), clientID):
		refuse = "This client must use PKCE: code_challenge with code_challenge_method S256 is required"
	}
	if refuse != "" {
		s.refuseAuthorize(w, r, q, clientID, refuse)
		return w, true
	}
	b := store.CodeBinding{ClientID: clientID, RedirectURI: q.Get("redirect_uri"), Nonce: q.Get("nonce"),
		CodeChallenge: challenge, CodeChallengeMethod: method}
	return &bindingWriter{ResponseWriter: w, srv: s, ctx: r.Context(), binding: b, state: q.Get("state")}, false
}

// isAuthorize reports whether r addresses the authorize endpoint. The
// plugin's own test is strict (its authorize handler compares the whole URL
// with <home>/wp-json/moserver/authorize; the rest_route form only counts on
// the site root), so this one is too. A code whose request this misses is
// simply unbound: it redeems without nonce, and not at all where PKCE is
// required.
func (s *Server) isAuthorize(r *http.Request) bool {
	if r.URL.Path == DefaultAuthorizePath {
		return true
	}
	return (r.URL.Path == "/" || r.URL.Path == "/index.php") &&
		strings.Contains(r.URL.RawQuery, "rest_route=") &&
		r.URL.Query().Get("rest_route") == strings.TrimPrefix(DefaultAuthorizePath, "/wp-json")
}

// pkceRequired reports whether the client named by an authorize request
// must use PKCE.
func (s *Server) pkceRequired(ctx context.Context, clientID string) bool {
	if s.cfg.RequirePKCE || slices.Contains(s.cfg.RequirePKCEFor, clientID) {
		return true
	}
	if clientID == "" {
		return false
	}
	c, err := s.cfg.Clients.Lookup(ctx, clientID)
	return err == nil && c != nil && s.clientNeedsPKCE(c)
}

// clientNeedsPKCE reports whether a client must use PKCE: the policy names
// it (or every client), or it is a public client.
func (s *Server) clientNeedsPKCE(c *clients.Client) bool {
	return s.cfg.RequirePKCE || c.RequirePKCE || c.Public || slices.Contains(s.cfg.RequirePKCEFor, c.ID)
}

// validChallenge checks an S256 challenge: 43 base64url characters.
func validChallenge(c string) bool {
	if len(c) != 43 {
		return false
	}
	for i := range len(c) {
		switch ch := c[i]; {
		case ch >= 'A' && ch <= 'Z', ch >= 'a' && ch <= 'z', ch >= '0' && ch <= '9', ch == '-', ch == '_':
		default:
			return false
		}
	}
	return true
}

// refuseAuthorize answers an authorize request the edge refuses: a
// redirect with error=invalid_request to the client's registered redirect
// URI, or a 400 when there is no such URI (never a redirect to an
// unregistered one).
func (s *Server) refuseAuthorize(w http.ResponseWriter, r *http.Request, q url.Values, clientID, desc string) {
	var c *clients.Client
	if clientID != "" {
		c, _ = s.cfg.Clients.Lookup(r.Context(), clientID)
	}
	if c != nil {
		if to, ok := c.RegisteredRedirect(q.Get("redirect_uri")); ok {
			redirectError(w, to, "invalid_request", desc, q.Get("state"))
			return
		}
	}
	writeError(w, errInvalidRequest(desc))
}

// redirectError answers with a 302 to redirectURI carrying an RFC 6749
// §4.1.2.1 error and the request's state.
func redirectError(w http.ResponseWriter, redirectURI, code, desc, state string) {
	w.Header().Set("Location", withErrorQuery(redirectURI, code, desc, state))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusFound)
}

// withErrorQuery appends error, error_description and state to a URI.
func withErrorQuery(uri, code, desc, state string) string {
	v := url.Values{"error": {code}, "error_description": {desc}}
	if state != "" {
		v.Set("state", state)
	}
	sep := "?"
	if strings.Contains(uri, "?") {
		sep = "&"
	}
	return uri + sep + v.Encode()
}

// consentWriter passes on PHP's answer to the consent form, which is posted
// to the authorize URL with the authorize request's query intact. When the
// user allowed, PHP redirects to the authorize URL again with the query
// rebuilt from WordPress's backslash-escaped copy of it (a nonce with ' " or
// \ would come back escaped) and prompt=allow: the module puts the query the
// browser sent back in its place, with prompt=allow, so the request that
// gets the code carries what the client sent.
type consentWriter struct {
	http.ResponseWriter
	query string
	done  bool
}

// WriteHeader rewrites the redirect of an allowed consent.
func (cw *consentWriter) WriteHeader(status int) {
	if !cw.done && status >= 300 && status < 400 {
		h := cw.ResponseWriter.Header()
		if loc, err := url.Parse(h.Get("Location")); err == nil && loc.Path == DefaultAuthorizePath &&
			loc.Query().Get("prompt") == "allow" {
			q, err := url.ParseQuery(cw.query)
			if err == nil {
				q.Set("prompt", "allow")
				loc.RawQuery = q.Encode()
				h.Set("Location", loc.String())
			}
		}
	}
	cw.done = true
	cw.ResponseWriter.WriteHeader(status)
}

// Write implements http.ResponseWriter.
func (cw *consentWriter) Write(p []byte) (int, error) {
	cw.done = true
	return cw.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (cw *consentWriter) Unwrap() http.ResponseWriter { return cw.ResponseWriter }

// bindingWriter passes PHP's answer to an authorize request on, binding
// the code of a code redirect first.
type bindingWriter struct {
	http.ResponseWriter
	srv     *Server
	ctx     context.Context
	binding store.CodeBinding
	state   string
	done    bool
}

// WriteHeader binds the code of a redirect before it goes out.
func (bw *bindingWriter) WriteHeader(status int) {
	if !bw.done && status >= 300 && status < 400 {
		bw.done = true
		bw.bind()
	}
	bw.ResponseWriter.WriteHeader(status)
}

// Write implements http.ResponseWriter (a body without WriteHeader is a 200).
func (bw *bindingWriter) Write(p []byte) (int, error) {
	bw.done = true
	return bw.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (bw *bindingWriter) Unwrap() http.ResponseWriter { return bw.ResponseWriter }

// bind stores the binding of the code in the Location, if there is one;
// when it cannot, the Location becomes a temporarily_unavailable error.
func (bw *bindingWriter) bind() {
	h := bw.ResponseWriter.Header()
	loc, err := url.Parse(h.Get("Location"))
	if err != nil {
		return
	}
	code := loc.Query().Get("code")
	if code == "" {
		return
	}
	s := bw.srv
	ctx, cancel := context.WithTimeout(bw.ctx, s.cfg.StoreTimeout)
	defer cancel()
	if err := s.cfg.Store.PutCodeBinding(ctx, tokens.Digest(code), bw.binding, bindingTTL); err != nil {
		s.log.Error("binding an authorization code failed; the client gets temporarily_unavailable",
			zap.String("client_id", bw.binding.ClientID), errField(err))
		s.cfg.Events.StoreUnavailable()
		back := *loc
		q := back.Query()
		q.Del("code")
		q.Del("state")
		back.RawQuery, back.Fragment = q.Encode(), ""
		h.Set("Location", withErrorQuery(strings.TrimSuffix(back.String(), "?"), "temporarily_unavailable",
			"The authorization server could not record the authorization; try again", bw.state))
	}
}
