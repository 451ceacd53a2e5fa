package wordpress

import (
	"context"
	"database/sql"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/caddy-moserver/caddy-moserver/internal/testutil/mariadbtest"
)

const testPrefix = "wp_"

// setup gives a test a fresh database with the plugin's tables, a raw pool
// to prepare data and a DB opened on it.
func setup(t *testing.T, prefix string) (dsn string, raw *sql.DB, db *DB) {
	t.Helper()
	dsn = mariadbtest.Start(t)
	raw = mariadbtest.OpenDB(t, dsn)
	mariadbtest.CreatePluginTables(t, raw, prefix)
	db, err := Open(dsn, prefix, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return dsn, raw, db
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestValidatePrefix(t *testing.T) {
	for _, ok := range []string{"wp_", "", "WP_2_", "a1"} {
		if err := ValidatePrefix(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"wp-", "wp_`", "wp_;DROP", "wp ", "wé_", strings.Repeat("a", 35)} {
		if err := ValidatePrefix(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open("root@tcp(127.0.0.1:3306)/wp", "wp-", Options{}); err == nil {
		t.Error("bad prefix accepted")
	}
	if _, err := Open("root@tcp(127.0.0.1:3306)/", "wp_", Options{}); err == nil {
		t.Error("DSN without database accepted")
	}
	_, err := Open("root:hunter2SECRET@tcp(127.0.0.1:3306/wp", "wp_", Options{})
	if err == nil {
		t.Fatal("malformed DSN accepted")
	}
	if strings.Contains(err.Error(), "hunter2SECRET") {
		t.Fatalf("error leaks the password: %v", err)
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func TestOpenWhileServerDown(t *testing.T) {
	db, err := Open("root@tcp("+closedAddr(t)+")/wordpress", "wp_", Options{QueryTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open failed with the server down: %v", err)
	}
	defer db.Close()
	start := time.Now()
	if err := db.Ping(context.Background()); err == nil {
		t.Fatal("Ping succeeded against a closed port")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Ping took %v", d)
	}
}

func TestPing(t *testing.T) {
	_, _, db := setup(t, testPrefix)
	if err := db.Ping(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}
