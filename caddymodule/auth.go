package caddymodule

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-moserver/caddy-moserver/internal/bearer"
	"github.com/caddy-moserver/caddy-moserver/internal/store"
	"github.com/caddy-moserver/caddy-moserver/internal/tokens"
)

func init() {
	caddy.RegisterModule(AuthHandler{})
}

// Interface guards.
var (
	_ caddy.Module                = (*AuthHandler)(nil)
	_ caddy.Provisioner           = (*AuthHandler)(nil)
	_ caddy.Validator             = (*AuthHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*AuthHandler)(nil)
	_ caddyfile.Unmarshaler       = (*AuthHandler)(nil)
)

// The request headers the upstream gets about the token's holder. Any a
// client sent itself are removed first, with every other header whose name
// starts with IdentityHeaderPrefix: by moserver_auth, and by the moserver
// handler on every request it passes on, so that no route of a site with a
// moserver block hands the next handler an identity the client made up.
const (
	HeaderClientID = "X-Moserver-Client-Id"
	HeaderSubject  = "X-Moserver-Sub"
	HeaderScope    = "X-Moserver-Scope"

	IdentityHeaderPrefix = "X-Moserver-"
)

// identityVar is the request variable moserver_auth sets once it has put
// the identity headers on a request, so that a moserver handler that runs
// after it leaves them.
const identityVar = "moserver.identity"

// removeIdentityHeaders deletes every request header whose name starts
// with IdentityHeaderPrefix, in any letter case (the server canonicalises
// the names it parses, but a name it cannot keeps its case).
func removeIdentityHeaders(h http.Header) {
	for name := range h {
		if len(name) >= len(IdentityHeaderPrefix) && strings.EqualFold(name[:len(IdentityHeaderPrefix)], IdentityHeaderPrefix) {
			delete(h, name)
		}
	}
}

// removeForgedIdentity removes the identity headers of a request unless
// moserver_auth set them.
func removeForgedIdentity(r *http.Request) {
	if caddyhttp.GetVar(r.Context(), identityVar) == nil {
		removeIdentityHeaders(r.Header)
	}
}

// AuthHandler lets through only requests with a valid, unrevoked bearer
// access token of a moserver block (RFC 6750) carrying the required scopes.
// It shares the keys and store of that block.
type AuthHandler struct {
	// Issuer names the moserver block whose tokens are accepted; it may be
	// left out when the configuration has one moserver block.
	Issuer string `json:"issuer,omitempty"`
	// Scopes the token must all carry.
	Scopes []string `json:"scopes,omitempty"`
	// Audiences accepted in "aud" (default: the moserver block's audience
	// and its clients' audiences).
	Audiences []string `json:"audiences,omitempty"`
	// FailOpenFor lets a token checked good within this time through while
	// the store is unreachable; 0 (default) answers 503 instead.
	FailOpenFor caddy.Duration `json:"fail_open_for,omitempty"`

	verifier *atomic.Pointer[bearer.Verifier] // set when the configuration starts
	blocks   *Blocks                          // the configuration's moserver blocks
	logger   *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (AuthHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.moserver_auth",
		New: func() caddy.Module { return new(AuthHandler) },
	}
}

// Provision sets up logging and joins the configuration's moserver app,
// which finds the handler's moserver block when the configuration starts
// (the block may be provisioned after this handler).
func (a *AuthHandler) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.verifier = new(atomic.Pointer[bearer.Verifier])
	blocks, err := blocksOf(ctx)
	if err != nil {
		return err
	}
	a.blocks = blocks
	blocks.addAuth(a)
	return nil
}

// Validate checks the configuration.
func (a *AuthHandler) Validate() error {
	for _, s := range a.Scopes {
		if s == "" || strings.ContainsAny(s, "\" \\") {
			return fmt.Errorf("scope %q is not a valid scope", s)
		}
	}
	if a.FailOpenFor < 0 {
		return fmt.Errorf("fail_open_for must not be negative")
	}
	return nil
}

// ServeHTTP checks the bearer token and passes the request on with the
// token holder's identity, or answers 401/403/503.
func (a *AuthHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	removeIdentityHeaders(r.Header)
	v, err := a.resolve()
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	claims, f := v.Check(r, a.Scopes)
	if f != nil {
		f.Write(w)
		return nil
	}
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if repl != nil {
		repl.Set("moserver.client_id", claims.ClientID)
		repl.Set("moserver.sub", claims.Subject)
		repl.Set("moserver.scope", claims.Scope)
	}
	r.Header.Set(HeaderClientID, claims.ClientID)
	r.Header.Set(HeaderSubject, claims.Subject)
	r.Header.Set(HeaderScope, claims.Scope)
	caddyhttp.SetVar(r.Context(), identityVar, true)
	return next.ServeHTTP(w, r)
}

// resolve finds the moserver block and builds the verifier once: when the
// configuration starts (Blocks.Start), or at the first request should one
// come before that.
func (a *AuthHandler) resolve() (*bearer.Verifier, error) {
	if v := a.verifier.Load(); v != nil {
		return v, nil
	}
	sh, err := a.blocks.find(a.Issuer)
	if err != nil {
		return nil, err
	}
	auds := a.Audiences
	if len(auds) == 0 {
		auds = sh.audiences
	}
	v, err := bearer.New(bearer.Config{Signer: sh.signer, Store: sh.store, Issuer: sh.issuer, Audiences: auds,
		StoreTimeout: sh.storeTimeout, FailOpenFor: time.Duration(a.FailOpenFor), Logger: a.logger})
	if err != nil {
		return nil, err
	}
	a.verifier.CompareAndSwap(nil, v)
	return a.verifier.Load(), nil
}

func parseAuthCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	a := new(AuthHandler)
	err := a.UnmarshalCaddyfile(h.Dispenser)
	return a, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	moserver_auth [<matcher>] {
//		scope         <scope...>
//		issuer        <url>
//		audience      <aud...>
//		fail_open_for <duration>
//	}
func (a *AuthHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var err error
		switch opt := d.Val(); opt {
		case "scope", "scopes":
			err = someArgs(d, &a.Scopes)
		case "issuer":
			err = oneArg(d, &a.Issuer)
		case "audience", "audiences":
			err = someArgs(d, &a.Audiences)
		case "fail_open_for":
			err = durationArg(d, &a.FailOpenFor)
		default:
			return d.Errf("unrecognized moserver_auth option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// sharedServer is what a moserver block lends to moserver_auth handlers.
type sharedServer struct {
	issuer       string
	audiences    []string
	signer       *tokens.Signer
	store        store.Store
	storeTimeout time.Duration
}

// shared holds the provisioned moserver blocks of every loaded
// configuration by issuer, newest last, so that the admin API (which
// outlives configurations) finds the new configuration's block during a
// reload; moserver_auth handlers use their own configuration's (Blocks).
var shared = struct {
	sync.Mutex
	byIssuer map[string][]*sharedServer
}{byIssuer: map[string][]*sharedServer{}}

func share(s *sharedServer) {
	shared.Lock()
	defer shared.Unlock()
	shared.byIssuer[s.issuer] = append(shared.byIssuer[s.issuer], s)
}

func unshare(s *sharedServer) {
	shared.Lock()
	defer shared.Unlock()
	list := slices.DeleteFunc(shared.byIssuer[s.issuer], func(x *sharedServer) bool { return x == s })
	if len(list) == 0 {
		delete(shared.byIssuer, s.issuer)
	} else {
		shared.byIssuer[s.issuer] = list
	}
}
