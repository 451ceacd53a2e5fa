// Command caddy is Caddy with its standard modules and this repository's
// moserver module: the same binary `xcaddy build --with
// github.com/caddy-moserver/caddy-moserver` makes, built here with plain
// `go build ./cmd/caddy`, so that tests and scripts get Go's build cache.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// Caddy's standard modules, as in Caddy's own main.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// The moserver module.
	_ "github.com/caddy-moserver/caddy-moserver"
)

func main() {
	caddycmd.Main()
}
