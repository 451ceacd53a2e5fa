package mariadbtest

import (
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/caddy-moserver/caddy-moserver/internal/testutil/tcpproxy"
)

// StartProxy starts a TCP proxy to the server of dsn, stopped in t.Cleanup,
// and returns it with dsn rewritten to connect through it: SetDown(true)
// makes the server unreachable, SetDown(false) brings it back.
func StartProxy(t testing.TB, dsn string) (*tcpproxy.Proxy, string) {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("mariadbtest: proxy: %v", err)
	}
	p := tcpproxy.Start(t, cfg.Net, cfg.Addr)
	cfg.Net = "tcp"
	cfg.Addr = p.Addr()
	return p, cfg.FormatDSN()
}
