package caddymodule

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(new(Blocks))
}

// Interface guards.
var (
	_ caddy.Module = (*Blocks)(nil)
	_ caddy.App    = (*Blocks)(nil)
)

// Blocks is the app "moserver": the moserver blocks of one configuration
// and the moserver_auth handlers that rely on them. It has nothing to
// configure; the handlers of a configuration load it (caddy.Context.App)
// as they are provisioned, and when Caddy starts the configuration's apps,
// after every module is provisioned, Start finds each moserver_auth
// handler's block, so that a handler naming no block, or a missing one,
// fails the configuration when it is loaded, not its first request.
type Blocks struct {
	mu     sync.Mutex
	blocks []*sharedServer
	auths  []*AuthHandler
}

// CaddyModule returns the Caddy module information.
func (*Blocks) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "moserver",
		New: func() caddy.Module { return new(Blocks) },
	}
}

// blocksOf returns the Blocks app of ctx's configuration.
func blocksOf(ctx caddy.Context) (*Blocks, error) {
	app, err := ctx.App("moserver")
	if err != nil {
		return nil, fmt.Errorf("loading the moserver app: %w", err)
	}
	b, ok := app.(*Blocks)
	if !ok {
		return nil, fmt.Errorf("the moserver app is a %T", app)
	}
	return b, nil
}

// addBlock records a provisioned moserver block.
func (b *Blocks) addBlock(s *sharedServer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.blocks = append(b.blocks, s)
}

// addAuth records a provisioned moserver_auth handler.
func (b *Blocks) addAuth(a *AuthHandler) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.auths = append(b.auths, a)
}

// find returns the first block of issuer or, when issuer is "", of the
// configuration's only issuer (several sites may share one issuer).
func (b *Blocks) find(issuer string) (*sharedServer, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var issuers []string
	for _, s := range b.blocks {
		if !slices.Contains(issuers, s.issuer) {
			issuers = append(issuers, s.issuer)
		}
	}
	slices.Sort(issuers) // servers are provisioned in no set order
	switch {
	case len(issuers) == 0:
		return nil, fmt.Errorf("moserver_auth: the configuration has no moserver block, whose tokens it would check")
	case issuer == "" && len(issuers) > 1:
		return nil, fmt.Errorf("moserver_auth: moserver blocks of %d issuers are configured (%s); name one with issuer", len(issuers), strings.Join(issuers, ", "))
	case issuer == "":
		issuer = issuers[0]
	}
	for _, s := range b.blocks {
		if s.issuer == issuer {
			return s, nil
		}
	}
	return nil, fmt.Errorf("moserver_auth: no moserver block has issuer %q (the configured issuers: %s)", issuer, strings.Join(issuers, ", "))
}

// Start builds the verifier of every moserver_auth handler of the
// configuration, failing it when a handler's block cannot be found.
func (b *Blocks) Start() error {
	b.mu.Lock()
	auths := append([]*AuthHandler(nil), b.auths...)
	b.mu.Unlock()
	for _, a := range auths {
		if _, err := a.resolve(); err != nil {
			return err
		}
	}
	return nil
}

// Stop does nothing: the blocks release their resources in their Cleanup.
func (b *Blocks) Stop() error { return nil }
