// Package moserver is caddy-moserver: a Caddy v2 module that answers the
// OAuth 2.0 token endpoint of a WordPress site running the "WP OAuth Server"
// plugin (/wp-json/moserver/token) in Go — client credentials, refresh tokens
// with rotation and replay detection, RFC 7009 revocation, a JWKS — keeping
// refresh tokens in Redis and passing every other request on to PHP.
//
// Build it into Caddy with:
//
//	xcaddy build --with github.com/caddy-moserver/caddy-moserver
//
// and add a moserver block to the site in the Caddyfile.
package moserver

import (
	// Registers the http.handlers.moserver module and its Caddyfile directive.
	_ "github.com/caddy-moserver/caddy-moserver/caddymodule"
)
