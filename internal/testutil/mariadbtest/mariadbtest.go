// Package mariadbtest gives tests a fresh database on a real MariaDB/MySQL
// server, the plugin's tables (as the WP OAuth Server plugin creates them)
// and helpers to fill them: package wpfixture's, failing the test instead
// of returning an error, and a few only tests need.
//
// The server is the one named by the MYSQL_DSN environment variable (any
// database name in it is ignored) or, when it is unset, DefaultServerDSN:
// the machine's MariaDB as root with an empty password. Nothing is
// installed or started from Go; on a machine without it:
//
//	apt-get install -y mariadb-server
//	start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
package mariadbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"testing"
	"time"

	"github.com/caddy-moserver/caddy-moserver/internal/testutil/wpfixture"
)

// DefaultServerDSN is the server used when MYSQL_DSN is unset.
const DefaultServerDSN = wpfixture.DefaultServerDSN

// connectTimeout bounds reaching the server and each statement.
const connectTimeout = 5 * time.Second

// ServerDSN returns the DSN of the test server, without a database.
func ServerDSN() string { return wpfixture.ServerDSN() }

// Start creates a fresh database named mstest_<random> on the test server,
// drops it in t.Cleanup and returns a DSN for it. It fails the test, saying
// how to install and start MariaDB, when the server cannot be reached.
func Start(t testing.TB) (dsn string) {
	t.Helper()
	d, err := wpfixture.CreateDatabase(context.Background(), ServerDSN(), "mstest_")
	if err != nil {
		t.Fatalf("mariadbtest: %v.\n"+
			"These tests need a real server: set MYSQL_DSN (e.g. root@tcp(127.0.0.1:3306)/), or install and start MariaDB:\n"+
			"\tapt-get install -y mariadb-server\n"+
			"\tstart-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd", err)
	}
	t.Cleanup(func() {
		if err := d.Drop(context.Background()); err != nil {
			t.Errorf("mariadbtest: %v", err)
		}
	})
	return d.DSN
}

// OpenDB opens a *sql.DB on dsn with parseTime=true and loc=UTC, closed in
// t.Cleanup, for preparing and inspecting test data.
func OpenDB(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	db, err := wpfixture.Open(dsn)
	if err != nil {
		t.Fatalf("mariadbtest: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("mariadbtest: random: %v", err)
	}
	return hex.EncodeToString(b)
}

// RandomToken returns 32 random lowercase hex characters, the shape of the
// plugin's access and refresh tokens.
func RandomToken(t testing.TB) string {
	t.Helper()
	return randomHex(t, 16)
}

// Exec runs one statement and fails the test on error.
func Exec(t testing.TB, db *sql.DB, query string, args ...any) sql.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	res, err := db.ExecContext(ctx, query, args...)
	if err != nil {
		t.Fatalf("mariadbtest: %s: %v", query, err)
	}
	return res
}

// OptSecretEncrypted is the plugin option saying client secrets are stored
// obfuscated.
const OptSecretEncrypted = wpfixture.OptSecretEncrypted

// must fails the test when f, given a context bounded by connectTimeout,
// returns an error.
func must(t testing.TB, f func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	if err := f(ctx); err != nil {
		t.Fatalf("mariadbtest: %v", err)
	}
}

// CreatePluginTables creates the plugin's tables with the prefix, as
// wpfixture.CreatePluginTables does.
func CreatePluginTables(t testing.TB, db *sql.DB, prefix string) {
	t.Helper()
	must(t, func(ctx context.Context) error { return wpfixture.CreatePluginTables(ctx, db, prefix) })
}

// SetOption sets a WordPress option in <prefix>options.
func SetOption(t testing.TB, db *sql.DB, prefix, name, value string) {
	t.Helper()
	must(t, func(ctx context.Context) error { return wpfixture.SetOption(ctx, db, prefix, name, value) })
}

// DeleteOption deletes a WordPress option from <prefix>options.
func DeleteOption(t testing.TB, db *sql.DB, prefix, name string) {
	t.Helper()
	Exec(t, db, "DELETE FROM `"+prefix+"options` WHERE option_name = ?", name)
}

// Obfuscate stores a client secret as the plugin does (see
// wpfixture.Obfuscate).
func Obfuscate(secret, clientName string) string { return wpfixture.Obfuscate(secret, clientName) }

// Client is a row of moos_oauth_clients to insert.
type Client = wpfixture.Client

// InsertClient inserts a client row.
func InsertClient(t testing.TB, db *sql.DB, prefix string, c Client) {
	t.Helper()
	must(t, func(ctx context.Context) error { return wpfixture.InsertClient(ctx, db, prefix, c) })
}

// InsertClientRaw inserts a client row with client_secret exactly as given.
func InsertClientRaw(t testing.TB, db *sql.DB, prefix, name, id, storedSecret, redirectURI string) {
	t.Helper()
	Exec(t, db, "INSERT INTO `"+prefix+"moos_oauth_clients` (client_name, client_id, client_secret, redirect_uri, active_oauth_server_id) VALUES (?, ?, ?, ?, 1)",
		name, id, storedSecret, redirectURI)
}

// DeleteClient deletes the rows of a client id.
func DeleteClient(t testing.TB, db *sql.DB, prefix, id string) {
	t.Helper()
	Exec(t, db, "DELETE FROM `"+prefix+"moos_oauth_clients` WHERE client_id = ?", id)
}

// InsertRefreshToken inserts a refresh-token row; expires is written in UTC.
func InsertRefreshToken(t testing.TB, db *sql.DB, prefix, token, clientID string, userID int64, expires time.Time, scope string) {
	t.Helper()
	Exec(t, db, "INSERT INTO `"+prefix+"moos_oauth_refresh_tokens` (refresh_token, client_id, user_id, expires, scope) VALUES (?, ?, ?, ?, ?)",
		token, clientID, userID, expires.UTC().Truncate(time.Second), scope)
}

// InsertAccessToken inserts an access-token row as the plugin writes it;
// expires is written in UTC.
func InsertAccessToken(t testing.TB, db *sql.DB, prefix, token, clientID string, userID int64, expires time.Time, scope string) {
	t.Helper()
	Exec(t, db, "INSERT INTO `"+prefix+"moos_oauth_access_tokens` (access_token, client_id, user_id, expires, scope) VALUES (?, ?, ?, ?, ?)",
		token, clientID, userID, expires.UTC().Truncate(time.Second), scope)
}

// InsertAuthCode inserts an authorization-code row as the plugin writes it
// at authorize; expires is written in UTC.
func InsertAuthCode(t testing.TB, db *sql.DB, prefix, code, clientID string, userID int64, redirectURI string, expires time.Time, scope string) {
	t.Helper()
	must(t, func(ctx context.Context) error {
		return wpfixture.InsertAuthCodes(ctx, db, prefix, []wpfixture.AuthCode{{Code: code, ClientID: clientID, UserID: userID, RedirectURI: redirectURI, Expires: expires, Scope: scope}})
	})
}

// InsertPublicKey inserts a moos_oauth_public_keys row.
func InsertPublicKey(t testing.TB, db *sql.DB, prefix, clientID, algorithm, publicPEM, privatePEM string) {
	t.Helper()
	must(t, func(ctx context.Context) error {
		return wpfixture.InsertPublicKey(ctx, db, prefix, clientID, algorithm, publicPEM, privatePEM)
	})
}

// User is a WordPress user to insert.
type User = wpfixture.User

// InsertUser inserts a user and its meta entries and returns its ID.
func InsertUser(t testing.TB, db *sql.DB, prefix string, u User) int64 {
	t.Helper()
	var id int64
	must(t, func(ctx context.Context) (err error) {
		id, err = wpfixture.InsertUser(ctx, db, prefix, u)
		return err
	})
	return id
}
