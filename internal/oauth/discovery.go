package oauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"go.uber.org/zap"

	"github.com/caddy-moserver/caddy-moserver/internal/clients"
)

// A client's id_token key is read from WordPress at most this often: it
// rarely changes.
const (
	clientKeyCacheTTL = time.Minute
	maxCachedKeys     = 1_000
)

// descUnknownClient is the plugin's answer for the documents of a client it
// does not know (fixture 47).
const descUnknownClient = "Client does not exist."

// clientKeys is what a client's id_token key means for its documents.
type clientKeys struct {
	// alg is the algorithm its id_tokens are signed with: "RS256" or
	// "HS256", "" when they cannot be signed (no key, or one that cannot
	// be used).
	alg string
	// jwks is its JWK Set for a usable RS256 key; nil otherwise, and
	// problem says why.
	jwks    []byte
	problem string
}

// discoveryDoc is a client's OpenID Provider metadata: the plugin's members
// in its order, then what the module adds.
type discoveryDoc struct {
	RequestParameterSupported bool     `json:"request_parameter_supported"`
	ClaimsParameterSupported  bool     `json:"claims_parameter_supported"`
	Issuer                    string   `json:"issuer"`
	AuthorizationEndpoint     string   `json:"authorization_endpoint"`
	TokenEndpoint             string   `json:"token_endpoint"`
	UserInfoEndpoint          string   `json:"userinfo_endpoint"`
	Scopes                    []string `json:"scopes_supported"`
	IDTokenSigningAlgs        []string `json:"id_token_signing_alg_values_supported"`
	ResponseTypes             []string `json:"response_types_supported"`
	JWKSURI                   string   `json:"jwks_uri"`
	GrantTypes                []string `json:"grant_types_supported"`
	SubjectTypes              []string `json:"subject_types_supported"`
	TokenAuthMethods          []string `json:"token_endpoint_auth_methods_supported"`
	CodeChallengeMethods      []string `json:"code_challenge_methods_supported"`
	RevocationEndpoint        string   `json:"revocation_endpoint"`
	IntrospectionEndpoint     string   `json:"introspection_endpoint"`
}

// serveClientWellKnown answers the plugin's per-client documents, for
// clients the registry knows: the OpenID discovery document (what the
// module and the plugin really do for that client, its issuer the iss of
// the client's id_tokens) and the client's JWK Set (its RS256 public key;
// 400 for an HS256 client or one without a usable key, as the plugin).
func (s *Server) serveClientWellKnown(w http.ResponseWriter, r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions:
		return !s.passOn(w, r, epClientWellKnown, "")
	default:
		writeError(w, errMethod("GET, HEAD"))
		return true
	}
	id, doc := clientWellKnownOf(r)
	if doc == 0 { // named only where a GET has nothing (a form body)
		return false
	}
	b := s.budget(r.Context())
	defer b.release()
	c, err := s.cfg.Clients.Lookup(&b, id)
	if err != nil {
		s.log.Error("looking up the client of a discovery request failed", zap.String("client_id", id), errField(err))
		s.writeError(w, errUnavailable())
		return true
	}
	if c == nil {
		writeError(w, &Error{Status: http.StatusBadRequest, Code: "invalid_client", Description: descUnknownClient})
		return true
	}
	keys, e := s.clientKeys(&b, c.ID)
	if e != nil {
		s.writeError(w, e)
		return true
	}
	var body []byte
	if doc == docKeys {
		if keys.jwks == nil {
			writeError(w, errInvalidRequest(keys.problem))
			return true
		}
		body = keys.jwks
	} else {
		body = s.discovery(c, keys.alg)
	}
	// Public documents, which browser apps read (WordPress's REST API
	// allows every origin too).
	writePublicJSON(w, r, body, true)
	return true
}

// clientKeys reads what a client's id_token key is, through a short-lived
// cache.
func (s *Server) clientKeys(ctx context.Context, clientID string) (*clientKeys, *Error) {
	now := s.cfg.Now()
	if k, ok := s.keys.Get(clientID, now); ok {
		return k, nil
	}
	key, err := s.cfg.WordPress.IDTokenKey(ctx, clientID)
	if err != nil {
		s.log.Error("reading a client's id_token key failed", zap.String("client_id", clientID), errField(err))
		return nil, errUnavailable()
	}
	k := &clientKeys{problem: "This client has no id_token signing key"}
	switch {
	case key == nil:
	case key.Algorithm == "HS256":
		k.alg, k.problem = "HS256", "This client signs its id_tokens with HS256 (its secret): it has no public key"
	case key.Public == nil:
		s.log.Warn("a client's id_token key cannot be used", zap.String("client_id", clientID), errField(key.Unusable))
	default:
		jwks, err := jwksOf(key.Public)
		if err != nil {
			s.log.Warn("a client's id_token key cannot be published", zap.String("client_id", clientID), errField(err))
			break
		}
		k.alg, k.jwks, k.problem = "RS256", jwks, ""
	}
	s.keys.Put(clientID, k, now)
	return k, nil
}

// jwksOf is the JWK Set of one RSA public key, its members in the plugin's
// order.
func jwksOf(k jwk.Key) ([]byte, error) {
	rk, ok := k.(jwk.RSAPublicKey)
	if !ok {
		return nil, errors.New("oauth: the id_token key is not an RSA public key")
	}
	alg := ""
	if a := rk.Algorithm(); a != nil {
		alg = a.String()
	}
	type rsaJWK struct {
		Kty string `json:"kty"`
		N   string `json:"n"`
		E   string `json:"e"`
		Use string `json:"use"`
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	enc := base64.RawURLEncoding
	return json.Marshal(struct {
		Keys []rsaJWK `json:"keys"`
	}{[]rsaJWK{{Kty: "RSA", N: enc.EncodeToString(rk.N()), E: enc.EncodeToString(rk.E()),
		Use: rk.KeyUsage(), Alg: alg, Kid: rk.KeyID()}}})
}

// discovery is the OpenID discovery document of a client whose id_tokens
// are signed with alg ("" when they cannot be).
func (s *Server) discovery(c *clients.Client, alg string) []byte {
	issuer := s.clientIssuer(c.ID)
	origin := s.issuerOrigin()
	algs := []string{}
	if alg != "" {
		algs = append(algs, alg)
	}
	grants := []string{}
	for _, g := range clients.Grants {
		if c.AllowsGrant(g) && !(c.Public && g == clients.GrantClientCredentials) {
			grants = append(grants, g)
		}
	}
	scopes := []string{"openid"}
	for _, sc := range c.Scopes {
		if !slices.Contains(scopes, sc) {
			scopes = append(scopes, sc)
		}
	}
	if c.AllowsGrant(clients.GrantRefreshToken) && !slices.Contains(scopes, "offline_access") {
		scopes = append(scopes, "offline_access")
	}
	methods := []string{"client_secret_basic", "client_secret_post"}
	if c.Public {
		methods = append(methods, "none")
	}
	body, _ := json.Marshal(discoveryDoc{
		Issuer:                issuer,
		AuthorizationEndpoint: s.pluginEndpoint(DefaultAuthorizePath),
		TokenEndpoint:         origin + s.cfg.TokenPath,
		UserInfoEndpoint:      s.pluginEndpoint(DefaultUserInfoPath),
		Scopes:                scopes,
		IDTokenSigningAlgs:    algs,
		ResponseTypes:         []string{"code"},
		JWKSURI:               issuer + "/.well-known/keys",
		GrantTypes:            grants,
		SubjectTypes:          []string{"public"},
		TokenAuthMethods:      methods,
		CodeChallengeMethods:  []string{"S256"},
		RevocationEndpoint:    origin + s.cfg.RevokePath,
		IntrospectionEndpoint: origin + s.cfg.IntrospectPath,
	})
	return body
}

// clientIssuer is the issuer of a client's id_tokens, as WordPress mints
// them: the server's issuer and "/<client_id>".
func (s *Server) clientIssuer(clientID string) string {
	return strings.TrimRight(s.cfg.Issuer, "/") + "/" + clientID
}

// pluginEndpoint is the URL of one of the plugin's own routes (its default
// path): under the issuer when the issuer is the plugin's REST base
// (<rest>/moserver, which keeps a WordPress home path), else on the
// issuer's origin.
func (s *Server) pluginEndpoint(path string) string {
	const base = "/wp-json/moserver"
	if issuer := strings.TrimRight(s.cfg.Issuer, "/"); strings.HasSuffix(issuer, "/moserver") {
		return issuer + strings.TrimPrefix(path, base)
	}
	return s.issuerOrigin() + path
}
