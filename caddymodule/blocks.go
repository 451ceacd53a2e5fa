package caddymodule

import (
	"fmt"
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

// find returns the block of issuer, or the only block when issuer is "".
func (b *Blocks) find(issuer string) (*sharedServer, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case len(b.blocks) == 0:
		return nil, fmt.Errorf("moserver_auth: the configuration has no moserver block, whose tokens it would check")
	case issuer == "" && len(b.blocks) > 1:
		return nil, fmt.Errorf("moserver_auth: %d moserver blocks are configured (issuers %s); name one with issuer", len(b.blocks), b.issuersLocked())
	case issuer == "":
		return b.blocks[0], nil
	}
	for _, s := range b.blocks {
		if s.issuer == issuer {
			return s, nil
		}
	}
	return nil, fmt.Errorf("moserver_auth: no moserver block has issuer %q (the configured issuers: %s)", issuer, b.issuersLocked())
}

// issuersLocked lists the issuers of the blocks; b.mu must be held.
func (b *Blocks) issuersLocked() string {
	s := ""
	for i, x := range b.blocks {
		if i > 0 {
			s += ", "
		}
		s += x.issuer
	}
	return s
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
