package caddymodule

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("moserver", parseCaddyfile)
	// Before every routing and responding directive, so the token endpoint
	// is answered before php_fastcgi, reverse_proxy, respond or a handle
	// block sees it, with no global "order" line.
	httpcaddyfile.RegisterDirectiveOrder("moserver", httpcaddyfile.Before, "invoke")
	// Right after moserver (so the token endpoint is never behind it) and
	// before anything that answers or proxies.
	httpcaddyfile.RegisterHandlerDirective("moserver_auth", parseAuthCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("moserver_auth", httpcaddyfile.Before, "invoke")
}

var _ caddyfile.Unmarshaler = (*Handler)(nil)

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	moserver {
//		issuer            <url>
//		token_path        <path>
//		revoke_path       <path>
//		jwks_path         <path>
//		introspect_path   <path>
//		storage           memory | redis <url> | redis_cluster <url> | redis_sentinel <url> [{
//			key_prefix       <prefix>
//			store_timeout    <duration>
//			min_replicas_ack <n> [<timeout>]
//		}]
//		key_prefix        <prefix>             (the same, outside the storage block)
//		store_timeout     <duration>
//		min_replicas_ack  <n> [<timeout>]
//		signing_key       <file> [<kid>]
//		access_token_ttl  <duration>
//		refresh_token_ttl <duration>
//		refresh_grace     <duration>
//		audience          <aud>
//		unknown_grants    passthrough | reject
//		auth_failure_limit <count> [<window>] | off
//		log_requests
//		wordpress <dsn> {
//			table_prefix       <prefix>
//			refresh_interval   <duration>
//			user_access_tokens opaque | jwt
//			refresh_tokens
//			public_clients     <client_id...>
//			index_tables
//		}
//		client <client_id> {
//			secret           <secret>
//			secret_sha256    <hex>
//			name             <name>
//			scopes           <scope...>
//			grants           <grant...>
//			refresh_tokens
//			audience         <aud>
//			access_token_ttl <duration>
//			cors_origins     <origin...>
//		}
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	var storage storageLines
	for d.NextBlock(0) {
		var err error
		switch opt := d.Val(); opt {
		case "issuer":
			err = oneArg(d, &h.Issuer)
		case "token_path":
			err = oneArg(d, &h.TokenPath)
		case "revoke_path":
			err = oneArg(d, &h.RevokePath)
		case "jwks_path":
			err = oneArg(d, &h.JWKSPath)
		case "introspect_path":
			err = oneArg(d, &h.IntrospectPath)
		case "key_prefix", "store_timeout", "min_replicas_ack":
			err = storage.setting(d)
		case "audience":
			err = oneArg(d, &h.Audience)
		case "unknown_grants":
			err = oneArg(d, &h.UnknownGrants)
		case "access_token_ttl":
			err = durationArg(d, &h.AccessTokenTTL)
		case "refresh_token_ttl":
			err = durationArg(d, &h.RefreshTokenTTL)
		case "refresh_grace":
			var grace caddy.Duration
			if err = durationArg(d, &grace); err == nil {
				h.RefreshGrace = &grace
			}
		case "storage":
			err = storage.unmarshal(d)
		case "signing_key":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.Errf("signing_key takes a file and an optional kid")
			}
			k := SigningKeyConfig{File: args[0]}
			if len(args) == 2 {
				k.KID = args[1]
			}
			h.SigningKeys = append(h.SigningKeys, k)
		case "auth_failure_limit":
			err = h.unmarshalAuthFailureLimit(d)
		case "require_pkce":
			if args := d.RemainingArgs(); len(args) == 0 {
				h.RequirePKCE = true
			} else {
				h.RequirePKCEClients = append(h.RequirePKCEClients, args...)
			}
		case "log_requests":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.LogRequests = true
		case "wordpress":
			err = h.unmarshalWordPress(d)
		case "client":
			var c ClientConfig
			if err = c.unmarshal(d); err == nil {
				h.Clients = append(h.Clients, c)
			}
		default:
			return d.Errf("unrecognized moserver option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	raw, err := storage.finish(d)
	h.StorageRaw = raw
	return err
}

// unmarshalAuthFailureLimit reads "auth_failure_limit <n> [<window>]" or
// "auth_failure_limit off".
func (h *Handler) unmarshalAuthFailureLimit(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) == 1 && args[0] == "off" {
		h.AuthFailureLimit = -1
		return nil
	}
	if len(args) < 1 || len(args) > 2 {
		return d.Errf("auth_failure_limit takes a count and an optional window, or off")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 {
		return d.Errf("auth_failure_limit: %q is not a positive count", args[0])
	}
	h.AuthFailureLimit = n
	if len(args) == 2 {
		w, err := caddy.ParseDuration(args[1])
		if err != nil || w <= 0 {
			return d.Errf("auth_failure_limit: %q is not a positive duration", args[1])
		}
		h.AuthFailureWindow = caddy.Duration(w)
	}
	return nil
}

func (h *Handler) unmarshalWordPress(d *caddyfile.Dispenser) error {
	wp := &WordPressConfig{}
	if err := oneArgThenBlock(d, &wp.DSN); err != nil {
		return err
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch opt := d.Val(); opt {
		case "table_prefix":
			err = oneArg(d, &wp.TablePrefix)
		case "refresh_interval":
			err = durationArg(d, &wp.RefreshInterval)
		case "user_access_tokens":
			err = oneArg(d, &wp.UserAccessTokens)
		case "refresh_tokens":
			if d.NextArg() {
				return d.ArgErr()
			}
			wp.RefreshTokens = true
		case "public_clients":
			err = someArgs(d, &wp.PublicClients)
		case "index_tables":
			if d.NextArg() {
				return d.ArgErr()
			}
			wp.IndexTables = true
		default:
			return d.Errf("unrecognized option %q in wordpress", opt)
		}
		if err != nil {
			return err
		}
	}
	h.WordPress = wp
	return nil
}

// oneArgThenBlock reads the single argument of an option that may have a block.
func oneArgThenBlock(d *caddyfile.Dispenser, dst *string) error {
	opt := d.Val()
	if !d.NextArg() {
		return d.Errf("%s needs an argument", opt)
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// storageLines collects the storage lines of a moserver block: the
// storage backend, and the settings that may also stand in the moserver
// block itself (key_prefix, store_timeout, min_replicas_ack), which go into
// the backend's settings.
type storageLines struct {
	backend      StorageBackend
	kind         string
	keyPrefix    *string
	storeTimeout *caddy.Duration
	ack          *RedisStorage // carries a min_replicas_ack line
}

// unmarshal reads `storage <kind> [<args>] [{ ... }]`: the module
// moserver.storage.<kind> reads its own tokens.
func (sl *storageLines) unmarshal(d *caddyfile.Dispenser) error {
	if sl.backend != nil {
		return d.Err("storage is given twice")
	}
	if !d.NextArg() {
		return d.Errf("storage takes 'memory', 'redis <url>', 'redis_sentinel <url>' or 'redis_cluster <url>' (or another moserver.storage module)")
	}
	sl.kind = d.Val()
	unm, err := caddyfile.UnmarshalModule(d, "moserver.storage."+sl.kind)
	if err != nil {
		return err
	}
	b, ok := unm.(StorageBackend)
	if !ok {
		return d.Errf("moserver.storage.%s is not a storage backend", sl.kind)
	}
	sl.backend = b
	return nil
}

// setting reads key_prefix, store_timeout or min_replicas_ack standing in
// the moserver block.
func (sl *storageLines) setting(d *caddyfile.Dispenser) error {
	switch d.Val() {
	case "key_prefix":
		sl.keyPrefix = new(string)
		return oneArg(d, sl.keyPrefix)
	case "store_timeout":
		sl.storeTimeout = new(caddy.Duration)
		return durationArg(d, sl.storeTimeout)
	}
	sl.ack = new(RedisStorage)
	return sl.ack.unmarshalAck(d)
}

// finish applies the settings of the moserver block to the backend (memory
// when none was named) and returns the backend's JSON.
func (sl *storageLines) finish(d *caddyfile.Dispenser) (json.RawMessage, error) {
	if sl.backend == nil {
		if sl.keyPrefix == nil && sl.storeTimeout == nil && sl.ack == nil {
			return nil, nil
		}
		sl.backend, sl.kind = new(MemoryStorage), "memory"
	}
	s := sl.backend.Settings()
	if sl.keyPrefix != nil {
		s.KeyPrefix = *sl.keyPrefix
	}
	if sl.storeTimeout != nil {
		s.StoreTimeout = *sl.storeTimeout
	}
	if sl.ack != nil {
		var r *RedisStorage
		switch b := sl.backend.(type) {
		case *RedisStorage:
			r = b
		case *RedisSentinelStorage:
			r = &b.RedisStorage
		default:
			return nil, d.Errf("min_replicas_ack works with storage redis and redis_sentinel, not %s", sl.kind)
		}
		r.MinReplicasAck, r.MinReplicasAckTimeout = sl.ack.MinReplicasAck, sl.ack.MinReplicasAckTimeout
	}
	return caddyconfig.JSONModuleObject(sl.backend, "type", sl.kind, nil), nil
}

// parsePositiveInt reads a count of at least 0.
func parsePositiveInt(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a count", s)
	}
	return n, nil
}

func (c *ClientConfig) unmarshal(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.Errf("client needs a client_id")
	}
	c.ID = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch opt := d.Val(); opt {
		case "secret":
			err = oneArg(d, &c.Secret)
		case "secret_sha256":
			err = oneArg(d, &c.SecretSHA256)
		case "name":
			err = oneArg(d, &c.Name)
		case "audience":
			err = oneArg(d, &c.Audience)
		case "access_token_ttl":
			err = durationArg(d, &c.AccessTokenTTL)
		case "scopes":
			err = someArgs(d, &c.Scopes)
		case "grants":
			err = someArgs(d, &c.Grants)
		case "cors_origins":
			err = someArgs(d, &c.CORSOrigins)
		case "refresh_tokens":
			if d.NextArg() {
				return d.ArgErr()
			}
			c.RefreshTokens = true
		case "public":
			if d.NextArg() {
				return d.ArgErr()
			}
			c.Public = true
		case "redirect_uris":
			err = someArgs(d, &c.RedirectURIs)
		default:
			return d.Errf("unrecognized option %q in client %q", opt, c.ID)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func oneArg(d *caddyfile.Dispenser, dst *string) error {
	opt := d.Val()
	args := d.RemainingArgs()
	if len(args) != 1 {
		return d.Errf("%s takes exactly one argument", opt)
	}
	*dst = args[0]
	return nil
}

func someArgs(d *caddyfile.Dispenser, dst *[]string) error {
	opt := d.Val()
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.Errf("%s takes at least one argument", opt)
	}
	*dst = append(*dst, args...)
	return nil
}

func durationArg(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	opt := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	v, err := caddy.ParseDuration(s)
	if err != nil {
		return d.Errf("%s: %v", opt, err)
	}
	*dst = caddy.Duration(v)
	return nil
}
