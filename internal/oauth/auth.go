package oauth

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddy-moserver/caddy-moserver/internal/clients"
)

// credentials are the client credentials found in a request.
type credentials struct {
	id     string
	secret string
	// rawID and rawSecret are the Basic values before form-decoding; the
	// plugin does not decode them, RFC 6749 §2.3.1 does, so both are tried.
	rawID, rawSecret string
	basic            bool // sent with HTTP Basic
	hasSecret        bool
}

// basicCredentials parses an "Authorization: Basic" header. ok is false when
// the header is absent or uses another scheme; err is set when it is Basic
// but malformed.
func basicCredentials(r *http.Request) (c credentials, ok bool, err *Error) {
	h := r.Header.Get("Authorization")
	if len(h) < 6 || !strings.EqualFold(h[:6], "Basic ") {
		return c, false, nil
	}
	enc := strings.TrimSpace(h[6:])
	var buf [192]byte // decodes the usual header without allocating
	raw := buf[:0]
	if n := base64.StdEncoding.DecodedLen(len(enc)); n > len(buf) {
		raw = make([]byte, 0, n)
	}
	raw, decErr := base64.StdEncoding.AppendDecode(raw, []byte(enc))
	if decErr != nil {
		return c, true, errMalformedBasic()
	}
	id, secret, found := strings.Cut(string(raw), ":")
	if !found || id == "" {
		return c, true, errMalformedBasic()
	}
	c = credentials{rawID: id, rawSecret: secret, basic: true, hasSecret: true}
	c.id = formDecode(id)
	c.secret = formDecode(secret)
	return c, true, nil
}

// errMalformedBasic answers an Authorization: Basic header that does not
// decode to "id:secret".
func errMalformedBasic() *Error {
	return errInvalidClient("The Authorization header is not valid HTTP Basic", true)
}

// formDecode undoes application/x-www-form-urlencoded encoding, or returns
// s unchanged when it is not valid encoding.
func formDecode(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	d, err := url.QueryUnescape(s)
	if err != nil {
		return s
	}
	return d
}

// findCredentials collects the client credentials of a request: HTTP Basic,
// or client_id and client_secret in the body. Basic wins, as in the plugin;
// a body client_id beside it must name the same client.
func findCredentials(r *http.Request, p params) (credentials, *Error) {
	c, isBasic, err := basicCredentials(r)
	if err != nil {
		return c, err
	}
	if isBasic {
		if bodyID := p.get("client_id"); bodyID != "" && bodyID != c.id && bodyID != c.rawID {
			return c, errInvalidRequest("The client_id in the body does not match the Authorization header")
		}
		return c, nil
	}
	c = credentials{id: p.get("client_id"), secret: p.get("client_secret"), hasSecret: p.has("client_secret")}
	if c.id == "" {
		return c, errInvalidClient(descNoCredentials, false)
	}
	return c, nil // without a secret, only a public client authenticates
}

// dummyClient is compared against when the client id is unknown, so an
// unknown id costs the same time as a wrong secret.
var dummyClient = clients.Client{SecretDigest: clients.SecretDigest("no such client")}

// authenticate finds and checks the client of a request. The failure
// budget is decided on the incremented count of every failure (exact under
// bursts), and the right secret is refused only where the request's own
// (client id, address) pair or address is over budget, so failures from
// elsewhere never lock a client out.
func (s *Server) authenticate(b *requestBudget, r *http.Request, p params) (*clients.Client, *Error) {
	creds, e := findCredentials(r, p)
	if e != nil {
		return nil, e
	}
	keys := s.failureKeys(r, creds.id)
	now := time.Now()
	if e := s.limiter.early(&keys, now); e != nil {
		return nil, s.rateLimited(e)
	}
	client, err := s.lookupClient(b, creds)
	if err != nil {
		s.log.Error("client registry unavailable", errField(err))
		return nil, errUnavailable()
	}
	if !creds.hasSecret {
		// A public client identifies itself by its id alone (RFC 6749
		// §2.1); any other client must send its secret.
		if client == nil || !client.Public {
			return nil, errInvalidClient(descMustAuthenticate, false)
		}
		return client, nil
	}
	ok := false
	if client == nil {
		dummyClient.CheckSecret(creds.secret)
	} else {
		ok = client.CheckSecret(creds.secret)
		if creds.basic && creds.rawSecret != creds.secret {
			ok = client.CheckSecret(creds.rawSecret) || ok
		}
	}
	if !ok {
		if e := s.limiter.fail(b, &keys, now); e != nil {
			return nil, s.rateLimited(e)
		}
		return nil, errInvalidClient(descBadCredentials, creds.basic)
	}
	if e := s.limiter.admit(b, &keys, now); e != nil {
		return nil, s.rateLimited(e)
	}
	return client, nil
}

// rateLimited counts a refusal for the failure budget.
func (s *Server) rateLimited(e *Error) *Error {
	s.cfg.Events.RateLimited()
	return e
}

func (s *Server) lookupClient(ctx context.Context, creds credentials) (*clients.Client, error) {
	client, err := s.cfg.Clients.Lookup(ctx, creds.id)
	if err != nil || client != nil || !creds.basic || creds.rawID == creds.id {
		return client, err
	}
	return s.cfg.Clients.Lookup(ctx, creds.rawID)
}

// authenticatedClient is how every authenticated request starts: no
// parameter sent twice, then the client authenticated and CORS allowed for
// its origins.
func (s *Server) authenticatedClient(b *requestBudget, w http.ResponseWriter, r *http.Request, p params) (*clients.Client, *Error) {
	if p.duplicate != "" {
		return nil, errDuplicate(p.duplicate)
	}
	client, e := s.authenticate(b, r, p)
	if e != nil {
		return nil, e
	}
	allowCORS(w, r, client)
	return client, nil
}

// authenticatedToken is how revocation and introspection start:
// authenticatedClient and a non-empty token parameter, which it returns.
func (s *Server) authenticatedToken(b *requestBudget, w http.ResponseWriter, r *http.Request, p params) (*clients.Client, string, *Error) {
	client, e := s.authenticatedClient(b, w, r, p)
	if e != nil {
		return nil, "", e
	}
	token := p.get("token")
	if token == "" {
		return client, "", errInvalidRequest(descMissingToken)
	}
	return client, token, nil
}
