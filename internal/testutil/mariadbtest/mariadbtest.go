// Package mariadbtest gives tests a fresh database on a real MariaDB/MySQL
// server, the plugin's tables (as the WP OAuth Server plugin creates them)
// and helpers to fill them.
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
	"encoding/base64"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// DefaultServerDSN is the server used when MYSQL_DSN is unset.
const DefaultServerDSN = "root@tcp(127.0.0.1:3306)/"

// connectTimeout bounds reaching the server.
const connectTimeout = 5 * time.Second

// ServerDSN returns the DSN of the test server, without a database.
func ServerDSN() string {
	if dsn := os.Getenv("MYSQL_DSN"); dsn != "" {
		return dsn
	}
	return DefaultServerDSN
}

// Start creates a fresh database named mstest_<random> on the test server,
// drops it in t.Cleanup and returns a DSN for it. It fails the test, saying
// how to install and start MariaDB, when the server cannot be reached.
func Start(t testing.TB) (dsn string) {
	t.Helper()
	cfg, err := mysql.ParseDSN(ServerDSN())
	if err != nil {
		t.Fatalf("mariadbtest: MYSQL_DSN is not a go-sql-driver/mysql DSN: %v", err)
	}
	cfg.DBName = ""
	cfg.Timeout = connectTimeout
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatalf("mariadbtest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		_ = admin.Close()
		t.Fatalf("mariadbtest: cannot reach the MySQL/MariaDB server at %s (%v).\n"+
			"These tests need a real server: set MYSQL_DSN (e.g. root@tcp(127.0.0.1:3306)/), or install and start MariaDB:\n"+
			"\tapt-get install -y mariadb-server\n"+
			"\tstart-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
			cfg.Addr, err)
	}
	name := "mstest_" + randomHex(t, 8)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE `"+name+"` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"); err != nil {
		_ = admin.Close()
		t.Fatalf("mariadbtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+name+"`"); err != nil {
			t.Errorf("mariadbtest: drop database %s: %v", name, err)
		}
		_ = admin.Close()
	})
	cfg.DBName = name
	cfg.Timeout = 0
	return cfg.FormatDSN()
}

// OpenDB opens a *sql.DB on dsn with parseTime=true and loc=UTC, closed in
// t.Cleanup, for preparing and inspecting test data.
func OpenDB(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("mariadbtest: %v", err)
	}
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	db, err := sql.Open("mysql", cfg.FormatDSN())
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

// pluginTables is the DDL of the plugin's tables as SHOW CREATE TABLE
// prints them on a site running it (compat fixture 92), with %s for the
// prefix.
var pluginTables = []string{
	"CREATE TABLE `%smoos_oauth_clients` (\n" +
		"  `client_name` varchar(255) DEFAULT NULL,\n" +
		"  `client_id` varchar(255) DEFAULT NULL,\n" +
		"  `client_secret` varchar(255) DEFAULT NULL,\n" +
		"  `redirect_uri` varchar(255) DEFAULT NULL,\n" +
		"  `active_oauth_server_id` int(11) DEFAULT NULL\n" +
		") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
	"CREATE TABLE `%smoos_oauth_access_tokens` (\n" +
		"  `access_token` varchar(255) DEFAULT NULL,\n" +
		"  `client_id` varchar(255) DEFAULT NULL,\n" +
		"  `user_id` int(11) DEFAULT NULL,\n" +
		"  `expires` timestamp NULL DEFAULT NULL,\n" +
		"  `scope` varchar(255) DEFAULT NULL\n" +
		") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
	"CREATE TABLE `%smoos_oauth_refresh_tokens` (\n" +
		"  `refresh_token` varchar(255) DEFAULT NULL,\n" +
		"  `client_id` varchar(255) DEFAULT NULL,\n" +
		"  `user_id` int(11) DEFAULT NULL,\n" +
		"  `expires` timestamp NULL DEFAULT NULL,\n" +
		"  `scope` varchar(255) DEFAULT NULL\n" +
		") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
	"CREATE TABLE `%smoos_oauth_authorization_codes` (\n" +
		"  `authorization_code` varchar(255) DEFAULT NULL,\n" +
		"  `client_id` varchar(255) DEFAULT NULL,\n" +
		"  `user_id` int(11) DEFAULT NULL,\n" +
		"  `redirect_uri` varchar(255) DEFAULT NULL,\n" +
		"  `expires` timestamp NULL DEFAULT NULL,\n" +
		"  `scope` varchar(255) DEFAULT NULL,\n" +
		"  `id_token` varchar(255) DEFAULT NULL\n" +
		") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
	"CREATE TABLE `%smoos_oauth_public_keys` (\n" +
		"  `client_id` varchar(80) DEFAULT NULL,\n" +
		"  `public_key` varchar(8000) DEFAULT NULL,\n" +
		"  `private_key` varchar(8000) DEFAULT NULL,\n" +
		"  `encryption_algorithm` varchar(80) DEFAULT 'RS256'\n" +
		") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
	"CREATE TABLE `%smoos_oauth_scopes` (\n" +
		"  `scope` varchar(100) DEFAULT NULL,\n" +
		"  `is_default` tinyint(1) DEFAULT NULL,\n" +
		"  UNIQUE KEY `scope` (`scope`)\n" +
		") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
	"CREATE TABLE `%smoos_oauth_authorized_apps` (\n" +
		"  `client_id` text DEFAULT NULL,\n" +
		"  `user_id` int(11) DEFAULT NULL\n" +
		") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
	"CREATE TABLE `%smoos_oauth_users` (\n" +
		"  `username` varchar(100) NOT NULL,\n" +
		"  `password` varchar(2000) DEFAULT NULL,\n" +
		"  `first_name` varchar(255) DEFAULT NULL,\n" +
		"  `last_name` varchar(255) DEFAULT NULL,\n" +
		"  PRIMARY KEY (`username`)\n" +
		") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
}

// wordpressTables is the DDL of the WordPress core tables this project
// reads, as wp-admin/includes/schema.php creates them, with %s for the
// prefix.
var wordpressTables = []string{
	"CREATE TABLE `%susers` (\n" +
		"  ID bigint(20) unsigned NOT NULL auto_increment,\n" +
		"  user_login varchar(60) NOT NULL default '',\n" +
		"  user_pass varchar(255) NOT NULL default '',\n" +
		"  user_nicename varchar(50) NOT NULL default '',\n" +
		"  user_email varchar(100) NOT NULL default '',\n" +
		"  user_url varchar(100) NOT NULL default '',\n" +
		"  user_registered datetime NOT NULL default '0000-00-00 00:00:00',\n" +
		"  user_activation_key varchar(255) NOT NULL default '',\n" +
		"  user_status int(11) NOT NULL default '0',\n" +
		"  display_name varchar(250) NOT NULL default '',\n" +
		"  PRIMARY KEY  (ID),\n" +
		"  KEY user_login_key (user_login),\n" +
		"  KEY user_nicename (user_nicename),\n" +
		"  KEY user_email (user_email)\n" +
		") DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci",
	"CREATE TABLE `%susermeta` (\n" +
		"  umeta_id bigint(20) unsigned NOT NULL auto_increment,\n" +
		"  user_id bigint(20) unsigned NOT NULL default '0',\n" +
		"  meta_key varchar(255) default NULL,\n" +
		"  meta_value longtext,\n" +
		"  PRIMARY KEY  (umeta_id),\n" +
		"  KEY user_id (user_id),\n" +
		"  KEY meta_key (meta_key(191))\n" +
		") DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci",
	"CREATE TABLE `%soptions` (\n" +
		"  option_id bigint(20) unsigned NOT NULL auto_increment,\n" +
		"  option_name varchar(191) NOT NULL default '',\n" +
		"  option_value longtext NOT NULL,\n" +
		"  autoload varchar(20) NOT NULL default 'yes',\n" +
		"  PRIMARY KEY  (option_id),\n" +
		"  UNIQUE KEY option_name (option_name),\n" +
		"  KEY autoload (autoload)\n" +
		") DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci",
}

// OptSecretEncrypted is the plugin option saying client secrets are stored
// obfuscated.
const OptSecretEncrypted = "mo_oauth_server_is_client_secret_encrypted"

// CreatePluginTables creates, with the prefix, the tables the plugin creates
// (exactly as in fixture 92: no indexes on the token tables), the WordPress
// users, usermeta and options tables, seeds the scopes table as the plugin
// does (email default, profile) and sets the option
// mo_oauth_server_is_client_secret_encrypted to 1, as the plugin does when
// a client is created.
func CreatePluginTables(t testing.TB, db *sql.DB, prefix string) {
	t.Helper()
	for _, ddl := range append(append([]string{}, pluginTables...), wordpressTables...) {
		Exec(t, db, strings.Replace(ddl, "%s", prefix, 1))
	}
	Exec(t, db, "INSERT INTO `"+prefix+"moos_oauth_scopes` (scope, is_default) VALUES ('email', 1), ('profile', 0)")
	SetOption(t, db, prefix, OptSecretEncrypted, "1")
}

// SetOption sets a WordPress option in <prefix>options.
func SetOption(t testing.TB, db *sql.DB, prefix, name, value string) {
	t.Helper()
	Exec(t, db, "INSERT INTO `"+prefix+"options` (option_name, option_value, autoload) VALUES (?, ?, 'no') "+
		"ON DUPLICATE KEY UPDATE option_value = VALUES(option_value)", name, value)
}

// DeleteOption deletes a WordPress option from <prefix>options.
func DeleteOption(t testing.TB, db *sql.DB, prefix, name string) {
	t.Helper()
	Exec(t, db, "DELETE FROM `"+prefix+"options` WHERE option_name = ?", name)
}

// Obfuscate stores a client secret as the plugin does (an implementation
// independent of package wordpress): base64 of the bytes
// (secret[i] + name[i mod len(name)]) mod 256.
func Obfuscate(secret, clientName string) string {
	if clientName == "" {
		return "false" // what the plugin stores
	}
	out := make([]byte, len(secret))
	for i := 0; i < len(secret); i++ {
		out[i] = byte((int(secret[i]) + int(clientName[i%len(clientName)])) % 256)
	}
	return base64.StdEncoding.EncodeToString(out)
}

// Client is a row of moos_oauth_clients to insert.
type Client struct {
	Name        string
	ID          string
	Secret      string
	RedirectURI string // space-separated when several
	// ServerID is active_oauth_server_id (the WordPress blog id); 0 means 1.
	ServerID int
	// Plain stores Secret as it is (the plugin's format before version 5),
	// instead of obfuscated with Name.
	Plain bool
}

// InsertClient inserts a client row.
func InsertClient(t testing.TB, db *sql.DB, prefix string, c Client) {
	t.Helper()
	stored := c.Secret
	if !c.Plain {
		stored = Obfuscate(c.Secret, c.Name)
	}
	if c.ServerID == 0 {
		c.ServerID = 1
	}
	Exec(t, db, "INSERT INTO `"+prefix+"moos_oauth_clients` (client_name, client_id, client_secret, redirect_uri, active_oauth_server_id) VALUES (?, ?, ?, ?, ?)",
		c.Name, c.ID, stored, c.RedirectURI, c.ServerID)
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
	Exec(t, db, "INSERT INTO `"+prefix+"moos_oauth_authorization_codes` (authorization_code, client_id, user_id, redirect_uri, expires, scope, id_token) VALUES (?, ?, ?, ?, ?, ?, '')",
		code, clientID, userID, redirectURI, expires.UTC().Truncate(time.Second), scope)
}

// InsertPublicKey inserts a moos_oauth_public_keys row.
func InsertPublicKey(t testing.TB, db *sql.DB, prefix, clientID, algorithm, publicPEM, privatePEM string) {
	t.Helper()
	Exec(t, db, "INSERT INTO `"+prefix+"moos_oauth_public_keys` (client_id, public_key, private_key, encryption_algorithm) VALUES (?, ?, ?, ?)",
		clientID, publicPEM, privatePEM, algorithm)
}

// User is a WordPress user to insert.
type User struct {
	ID          int64 // 0: auto-increment
	Login       string
	Email       string
	Nicename    string
	DisplayName string
	Registered  time.Time // written in UTC
	// Meta entries go to usermeta (e.g. first_name, last_name, nickname).
	Meta map[string]string
}

// InsertUser inserts a user and its meta entries and returns its ID.
func InsertUser(t testing.TB, db *sql.DB, prefix string, u User) int64 {
	t.Helper()
	res := Exec(t, db, "INSERT INTO `"+prefix+"users` (ID, user_login, user_pass, user_nicename, user_email, user_registered, display_name) VALUES (?, ?, '', ?, ?, ?, ?)",
		u.ID, u.Login, u.Nicename, u.Email, u.Registered.UTC().Truncate(time.Second), u.DisplayName)
	id, err := res.LastInsertId()
	if err != nil {
		t.Fatalf("mariadbtest: insert user: %v", err)
	}
	if u.ID != 0 {
		id = u.ID
	}
	for k, v := range u.Meta {
		Exec(t, db, "INSERT INTO `"+prefix+"usermeta` (user_id, meta_key, meta_value) VALUES (?, ?, ?)", id, k, v)
	}
	return id
}
