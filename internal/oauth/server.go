// Package oauth is the token endpoint on plain net/http: it parses token and
// revocation requests, authenticates clients, runs the client credentials
// and refresh token grants, revokes tokens (RFC 7009) and serves the JWKS;
// with WordPress, it also redeems the plugin's authorization codes and
// answers its userinfo endpoint and its clients' discovery documents and keys.
// It knows nothing of Caddy; Handle reports whether it answered a request so
// the caller can pass everything else on.
package oauth

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-moserver/caddy-moserver/internal/clients"
	"github.com/caddy-moserver/caddy-moserver/internal/store"
	"github.com/caddy-moserver/caddy-moserver/internal/tokens"
	"github.com/caddy-moserver/caddy-moserver/internal/ttlcache"
)

// Default paths and lifetimes.
const (
	DefaultTokenPath       = "/wp-json/moserver/token"
	DefaultRevokePath      = "/wp-json/moserver/revoke"
	DefaultJWKSPath        = "/wp-json/moserver/jwks"
	DefaultAccessTokenTTL  = time.Hour
	DefaultRefreshTokenTTL = 14 * 24 * time.Hour
	DefaultStoreTimeout    = time.Second
	// DefaultRefreshGrace is long enough for a client's retries after a
	// lost answer or a 503 (a store stall) to get the successor the store
	// kept, and short enough that a token leaked later is a replay anyway.
	DefaultRefreshGrace = 2 * time.Minute
)

// Config configures a Server.
type Config struct {
	Issuer   string // "iss" of access tokens; required
	Audience string // default "aud"; the issuer when empty

	TokenPath  string // default DefaultTokenPath
	RevokePath string // default DefaultRevokePath
	JWKSPath   string // default DefaultJWKSPath
	// IntrospectPath is the RFC 7662 endpoint (default DefaultIntrospectPath).
	IntrospectPath string

	AccessTokenTTL  time.Duration // default DefaultAccessTokenTTL
	RefreshTokenTTL time.Duration // default DefaultRefreshTokenTTL
	// RefreshGrace lets the immediate predecessor of a family's current
	// refresh token (one whose successor has not been used) be retried for
	// this long after its rotation and get that successor again; 0 means
	// DefaultRefreshGrace, negative is strict (no retry: a replay).
	RefreshGrace time.Duration
	// RejectUnknownGrants answers grants the server does not own (other than
	// authorization_code) with unsupported_grant_type instead of passing them on.
	RejectUnknownGrants bool
	// StoreTimeout bounds the time one request spends on the store and the
	// client registry, all its calls together; default DefaultStoreTimeout.
	StoreTimeout time.Duration
	// AuthFailureLimit is how many failed client authentications a (client
	// id, client address) pair or a client address may have in
	// AuthFailureWindow before it is answered 429 (a client id as a whole
	// may have 100 times as many); 0 means DefaultAuthFailureLimit, negative
	// turns it off.
	AuthFailureLimit int
	// AuthFailureWindow defaults to DefaultAuthFailureWindow.
	AuthFailureWindow time.Duration
	// ClientIP returns the client's address (Caddy's, honouring
	// trusted_proxies); the connection's remote address when nil.
	ClientIP func(*http.Request) string

	// WordPress, when set, makes the plugin's refresh tokens redeemable and
	// issues WordPress users' tokens the way the plugin's endpoints expect.
	WordPress WordPress
	// RequirePKCE makes every client use PKCE (S256) for authorization
	// codes; RequirePKCEFor names the clients that must, when not all.
	RequirePKCE    bool
	RequirePKCEFor []string
	// UserAccessTokens is UserAccessOpaque (default: rows in the plugin's
	// access-token table) or UserAccessJWT, for tokens of WordPress users.
	UserAccessTokens string

	Clients clients.Registry // required
	Store   store.Store      // required
	Signer  *tokens.Signer   // required
	Logger  *zap.Logger      // optional
	// LogRequests logs every token request at INFO (DEBUG otherwise).
	LogRequests bool
	// Events receives counters for metrics (optional).
	Events Events
	// Now returns the current time; time.Now when nil (tests set it).
	Now func() time.Time
}

// The kinds of access token a WordPress user can get.
const (
	UserAccessOpaque = "opaque"
	UserAccessJWT    = "jwt"
)

// Server answers the token, revocation and JWKS endpoints.
type Server struct {
	cfg Config
	log *zap.Logger

	routes       router // the endpoints' paths and WordPress routes
	metadataPath string // RFC 8414 location
	metadata     []byte // serialised once

	limiter *limiter // the failed-authentication budget
	// userAccess issues a WordPress user's access token (opaque or JWT).
	userAccess userAccessIssuer

	users *ttlcache.Cache[int64, *User]        // WordPress users, for userinfo
	keys  *ttlcache.Cache[string, *clientKeys] // clients' id_token keys
}

// New checks cfg, fills in defaults and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("oauth: issuer is required")
	}
	if cfg.Clients == nil || cfg.Store == nil || cfg.Signer == nil {
		return nil, errors.New("oauth: clients, store and signer are required")
	}
	setDefault(&cfg.TokenPath, DefaultTokenPath)
	setDefault(&cfg.RevokePath, DefaultRevokePath)
	setDefault(&cfg.JWKSPath, DefaultJWKSPath)
	setDefault(&cfg.IntrospectPath, DefaultIntrospectPath)
	setDefault(&cfg.Audience, cfg.Issuer)
	for _, p := range []string{cfg.TokenPath, cfg.RevokePath, cfg.JWKSPath, cfg.IntrospectPath} {
		if !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("oauth: path %q must start with /", p)
		}
	}
	if cfg.AccessTokenTTL <= 0 {
		cfg.AccessTokenTTL = DefaultAccessTokenTTL
	}
	if cfg.RefreshTokenTTL <= 0 {
		cfg.RefreshTokenTTL = DefaultRefreshTokenTTL
	}
	if cfg.StoreTimeout <= 0 {
		cfg.StoreTimeout = DefaultStoreTimeout
	}
	if cfg.AuthFailureLimit == 0 {
		cfg.AuthFailureLimit = DefaultAuthFailureLimit
	}
	if cfg.AuthFailureWindow <= 0 {
		cfg.AuthFailureWindow = DefaultAuthFailureWindow
	}
	if cfg.ClientIP == nil {
		cfg.ClientIP = remoteIP
	}
	switch {
	case cfg.RefreshGrace == 0:
		cfg.RefreshGrace = DefaultRefreshGrace
	case cfg.RefreshGrace < 0:
		cfg.RefreshGrace = 0 // strict, as the store takes it
	}
	switch cfg.UserAccessTokens {
	case "":
		cfg.UserAccessTokens = UserAccessOpaque
	case UserAccessOpaque, UserAccessJWT:
	default:
		return nil, fmt.Errorf("oauth: user access tokens must be %s or %s", UserAccessOpaque, UserAccessJWT)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Events == nil {
		cfg.Events = noEvents{}
	}
	// The plugin's userinfo endpoint and its clients' documents are the
	// module's when WordPress is configured, PHP's otherwise.
	userInfoPath := ""
	if cfg.WordPress != nil {
		userInfoPath = DefaultUserInfoPath
	}
	routes, err := newRouter([numPaths]string{cfg.TokenPath, cfg.RevokePath, cfg.JWKSPath, cfg.IntrospectPath, userInfoPath},
		cfg.WordPress != nil)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	s := &Server{
		cfg:          cfg,
		log:          log,
		routes:       routes,
		metadataPath: metadataPath(cfg.Issuer),
		users:        ttlcache.New[int64, *User](userCacheTTL, maxCachedUsers),
		keys:         ttlcache.New[string, *clientKeys](clientKeyCacheTTL, maxCachedKeys),
	}
	s.limiter = newLimiter(&s.cfg, log)
	s.userAccess = opaqueUserAccess
	if cfg.UserAccessTokens == UserAccessJWT || cfg.WordPress == nil {
		s.userAccess = jwtUserAccess
	}
	s.metadata = s.buildMetadata()
	return s, nil
}

func setDefault(s *string, def string) {
	if *s == "" {
		*s = def
	}
}

// Handle answers the request if it is one of the server's own and reports
// whether it did: a request to one of the endpoints in any form WordPress
// would route to it (route.go). When it returns false the request belongs
// to the next handler, body included as it arrived (a form body too large
// to read is cut off before a rest_route parameter; see formGuard).
func (s *Server) Handle(w http.ResponseWriter, r *http.Request) bool {
	ep := s.routes.exact(r.URL.Path)
	if ep == 0 {
		if r.URL.Path == s.metadataPath {
			return s.serveMetadata(w, r)
		}
		var answered bool
		if ep, answered = s.routed(w, r); ep == 0 {
			return answered
		}
	}
	switch ep {
	case epToken:
		return s.serveToken(w, r)
	case epRevoke:
		return s.serveRevoke(w, r)
	case epJWKS:
		return s.serveJWKS(w, r)
	case epUserInfo:
		return s.serveUserInfo(w, r)
	case epClientWellKnown:
		return s.serveClientWellKnown(w, r)
	default:
		return s.serveIntrospect(w, r)
	}
}

// onlyPost sorts a request to the POST-only endpoint ep: post is true for a
// POST; otherwise answered reports whether it was answered (405), or left to
// the next handler (OPTIONS: WordPress answers CORS preflights; see passOn).
func (s *Server) onlyPost(w http.ResponseWriter, r *http.Request, ep endpoint) (answered, post bool) {
	switch r.Method {
	case http.MethodPost:
		return false, true
	case http.MethodOptions:
		return !s.passOn(w, r, ep, ""), false
	default:
		writeError(w, errMethod(http.MethodPost))
		return true, false
	}
}

// readParams reads and parses the body of a POST. On failure it has answered.
// The body it read is returned so the request can be passed on unchanged.
func (s *Server) readParams(w http.ResponseWriter, r *http.Request) (params, string, bool) {
	body, err := readBody(r)
	if errors.Is(err, errBodyTooLarge) {
		writeError(w, &Error{Status: http.StatusRequestEntityTooLarge, Code: "invalid_request",
			Description: fmt.Sprintf("The request body is larger than %d bytes", MaxBodyBytes)})
		return params{}, "", false
	}
	if err != nil {
		writeError(w, errInvalidRequest("The request body could not be read"))
		return params{}, "", false
	}
	// The parameters are substrings of the body, which may also go on to
	// the next handler (restoreBody).
	p, e := parseParams(r.Header.Get("Content-Type"), body)
	if e != nil {
		writeError(w, e)
		return params{}, "", false
	}
	return p, body, true
}

// restoreBody puts a body that was read back on the request, byte for byte.
func restoreBody(r *http.Request, body string) {
	r.Body = io.NopCloser(strings.NewReader(body))
}

func (s *Server) serveJWKS(w http.ResponseWriter, r *http.Request) bool {
	switch r.Method {
	case http.MethodOptions:
		return !s.passOn(w, r, epJWKS, "")
	case http.MethodGet, http.MethodHead:
	default:
		writeError(w, errMethod("GET, HEAD"))
		return true
	}
	writePublicJSON(w, r, s.cfg.Signer.JWKS(), false)
	return true
}

// writePublicJSON answers a GET or HEAD with a public JSON document that
// may be cached for five minutes; anyOrigin lets every browser origin read
// it.
func writePublicJSON(w http.ResponseWriter, r *http.Request, body []byte, anyOrigin bool) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=UTF-8")
	h.Set("Cache-Control", "public, max-age=300")
	if anyOrigin {
		h.Set("Access-Control-Allow-Origin", "*")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}

// allowCORS adds the CORS response headers when the request's Origin is one
// the client allows.
func allowCORS(w http.ResponseWriter, r *http.Request, c *clients.Client) {
	origin := r.Header.Get("Origin")
	if c == nil || !c.AllowedOrigin(origin) {
		return
	}
	w.Header().Set("Access-Control-Allow-Origin", origin)
	w.Header().Add("Vary", "Origin")
}

func errField(err error) zap.Field { return zap.Error(err) }
