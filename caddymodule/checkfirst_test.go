package caddymodule

import (
	"encoding/json"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// countingListener accepts TCP connections on loopback, counts them and
// closes them: a Redis or MySQL that sees whether anything connected.
func countingListener(t *testing.T) (addr string, accepted *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	accepted = new(atomic.Int32)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			_ = c.Close()
		}
	}()
	return ln.Addr().String(), accepted
}

// A configuration mistake is reported by the option's name before any
// connection is opened: Caddy provisions a module before it validates it,
// so Provision checks first. Each JSON config below names a Redis and a
// MySQL that count connections; none may see one.
func TestConfigCheckedBeforeConnecting(t *testing.T) {
	addr, accepted := countingListener(t)
	store := `"storage": {"type": "redis", "url": "redis://` + addr + `/0"}`
	wp := `"wordpress": {"dsn": "wp:pw@tcp(` + addr + `)/wordpress"}`
	for _, c := range []struct{ json, want string }{
		{`{` + store + `, ` + wp + `, "clients": [{"id": "c", "secret": "s"}]}`, "issuer is required"},
		{`{"issuer": "https://wp.example/wp-json/moserver", "token_path": "token", ` + store + `}`, "token_path"},
		{`{"issuer": "https://wp.example/wp-json/moserver", "unknown_grants": "drop", ` + store + `, ` + wp + `}`, "unknown_grants"},
		{`{"issuer": "https://wp.example/wp-json/moserver", "storage": {"type": "redis", "url": "redis://` + addr + `/0", "store_timeout": -1}}`, "store_timeout"},
		{`{"issuer": "https://wp.example/wp-json/moserver", "refresh_grace": -1, ` + store + `}`, "refresh_grace"},
		{`{"issuer": "https://wp.example/wp-json/moserver", "storage": {"type": "redis"}, ` + wp + `}`, "storage redis needs a URL"},
		{`{"issuer": "https://wp.example/wp-json/moserver", ` + store + `, "clients": [{"id": "c"}]}`, "secret"},
		{`{"issuer": "https://wp.example/wp-json/moserver", ` + store + `, "wordpress": {"table_prefix": "wp_"}}`, "wordpress needs a DSN"},
		{`{"issuer": "https://wp.example/wp-json/moserver", ` + store + `, ` + wp + `, "auth_failure_limit": -5}`, "auth_failure_limit"},
	} {
		var h Handler
		if err := json.Unmarshal([]byte(c.json), &h); err != nil {
			t.Fatalf("%s: %v", c.json, err)
		}
		base, err := caddy.ProvisionContext(&caddy.Config{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := caddy.NewContext(base)
		err = h.Provision(ctx)
		if err == nil {
			_ = h.Cleanup()
			cancel()
			t.Fatalf("%s: provisioned without an error", c.json)
		}
		cancel()
		if !strings.Contains(err.Error(), c.want) || strings.HasPrefix(err.Error(), "moserver: ") {
			t.Errorf("%s: error %q; want it to name %q, without a module prefix of its own", c.json, err, c.want)
		}
	}
	if n := accepted.Load(); n != 0 {
		t.Fatalf("%d connections were opened by configurations that are wrong", n)
	}
}
