package oauth

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/caddy-moserver/caddy-moserver/internal/clients"
)

// DefaultIntrospectPath is the RFC 7662 endpoint.
const DefaultIntrospectPath = "/wp-json/moserver/introspect"

// metadata is the RFC 8414 authorization server metadata of what this
// server answers.
type metadata struct {
	Issuer                   string   `json:"issuer"`
	AuthorizationEndpoint    string   `json:"authorization_endpoint,omitempty"`
	TokenEndpoint            string   `json:"token_endpoint"`
	UserInfoEndpoint         string   `json:"userinfo_endpoint,omitempty"`
	JWKSURI                  string   `json:"jwks_uri"`
	RevocationEndpoint       string   `json:"revocation_endpoint"`
	IntrospectionEndpoint    string   `json:"introspection_endpoint"`
	GrantTypes               []string `json:"grant_types_supported"`
	TokenAuthMethods         []string `json:"token_endpoint_auth_methods_supported"`
	RevocationAuthMethods    []string `json:"revocation_endpoint_auth_methods_supported"`
	IntrospectionAuthMethods []string `json:"introspection_endpoint_auth_methods_supported"`
	AccessTokenSigningAlgs   []string `json:"access_token_signing_alg_values_supported"`
	ResponseTypes            []string `json:"response_types_supported"`
	CodeChallengeMethods     []string `json:"code_challenge_methods_supported,omitempty"`
}

// metadataPath is where RFC 8414 §3 puts the metadata of an issuer with a
// path: /.well-known/oauth-authorization-server inserted before the path.
func metadataPath(issuer string) string {
	u, err := url.Parse(issuer)
	if err != nil {
		return "/.well-known/oauth-authorization-server"
	}
	return "/.well-known/oauth-authorization-server" + strings.TrimSuffix(u.Path, "/")
}

// issuerOrigin is the scheme and host of the issuer, where the configured
// paths are.
func (s *Server) issuerOrigin() string {
	if u, err := url.Parse(s.cfg.Issuer); err == nil {
		return u.Scheme + "://" + u.Host
	}
	return s.cfg.Issuer
}

// buildMetadata serialises the metadata once. With WordPress, the module
// also redeems the plugin's authorization codes (PKCE S256) and answers its
// userinfo endpoint, and the plugin's authorize endpoint issues the codes.
func (s *Server) buildMetadata() []byte {
	origin := s.issuerOrigin()
	methods := []string{"client_secret_basic", "client_secret_post"}
	md := metadata{
		Issuer:                   s.cfg.Issuer,
		TokenEndpoint:            origin + s.cfg.TokenPath,
		JWKSURI:                  origin + s.cfg.JWKSPath,
		RevocationEndpoint:       origin + s.cfg.RevokePath,
		IntrospectionEndpoint:    origin + s.cfg.IntrospectPath,
		GrantTypes:               slices.DeleteFunc(slices.Clone(clients.Grants), func(g string) bool { return !s.ownsGrant(g) }),
		TokenAuthMethods:         methods,
		RevocationAuthMethods:    methods,
		IntrospectionAuthMethods: methods,
		AccessTokenSigningAlgs:   s.cfg.Signer.Algorithms(),
		ResponseTypes:            []string{},
	}
	if s.cfg.WordPress != nil {
		md.AuthorizationEndpoint = s.pluginEndpoint(DefaultAuthorizePath)
		md.UserInfoEndpoint = s.pluginEndpoint(DefaultUserInfoPath)
		md.ResponseTypes = []string{"code"}
		md.CodeChallengeMethods = []string{"S256"}
	}
	body, _ := json.Marshal(md)
	return body
}

func (s *Server) serveMetadata(w http.ResponseWriter, r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions:
		return !s.passOn(w, r, 0, "")
	default:
		writeError(w, errMethod("GET, HEAD"))
		return true
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=UTF-8")
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("Content-Length", strconv.Itoa(len(s.metadata)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(s.metadata)
	}
	return true
}
