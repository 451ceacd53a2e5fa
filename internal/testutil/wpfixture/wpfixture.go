// Package wpfixture creates a WordPress database with the tables of the WP
// OAuth Server (miniOrange) plugin on a real MariaDB/MySQL server, and fills
// them as the plugin does. Its functions return errors, so that both the
// tests (through package mariadbtest, which fails the test instead) and the
// load benchmark (bench/cmd/moserver-bench) can use them.
package wpfixture

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// DefaultServerDSN is the server used when MYSQL_DSN is unset: the
// machine's MariaDB as root with an empty password.
const DefaultServerDSN = "root@tcp(127.0.0.1:3306)/"

// connectTimeout bounds reaching the server.
const connectTimeout = 5 * time.Second

// ServerDSN returns the DSN of the server named by the MYSQL_DSN environment
// variable, or DefaultServerDSN when it is unset (any database name in it is
// ignored by CreateDatabase).
func ServerDSN() string {
	if dsn := os.Getenv("MYSQL_DSN"); dsn != "" {
		return dsn
	}
	return DefaultServerDSN
}

// Database is a database CreateDatabase made; Drop removes it.
type Database struct {
	Name string
	// DSN connects to the database (go-sql-driver/mysql format).
	DSN   string
	admin *sql.DB
}

// CreateDatabase creates a database named prefix followed by 16 random hex
// characters on the server of serverDSN (utf8mb4, as WordPress creates its
// own) and keeps a connection to drop it.
func CreateDatabase(ctx context.Context, serverDSN, prefix string) (*Database, error) {
	cfg, err := mysql.ParseDSN(serverDSN)
	if err != nil {
		return nil, fmt.Errorf("the server DSN is not a go-sql-driver/mysql DSN: %w", err)
	}
	cfg.DBName = ""
	cfg.Timeout = connectTimeout
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		_ = admin.Close()
		return nil, fmt.Errorf("cannot reach the MySQL/MariaDB server at %s: %w", cfg.Addr, err)
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails
	name := prefix + hex.EncodeToString(b)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE `"+name+"` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"); err != nil {
		_ = admin.Close()
		return nil, fmt.Errorf("create database %s: %w", name, err)
	}
	cfg.DBName = name
	cfg.Timeout = 0
	return &Database{Name: name, DSN: cfg.FormatDSN(), admin: admin}, nil
}

// Drop drops the database and closes the connection kept for it.
func (d *Database) Drop(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	_, err := d.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+d.Name+"`")
	_ = d.admin.Close()
	if err != nil {
		return fmt.Errorf("drop database %s: %w", d.Name, err)
	}
	return nil
}

// Open opens a *sql.DB on dsn with parseTime=true and loc=UTC, for preparing
// and inspecting data.
func Open(dsn string) (*sql.DB, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	return sql.Open("mysql", cfg.FormatDSN())
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

// exec runs one statement, naming it in the error.
func exec(ctx context.Context, db *sql.DB, query string, args ...any) (sql.Result, error) {
	res, err := db.ExecContext(ctx, query, args...)
	if err != nil {
		if len(query) > 200 {
			query = query[:200] + "…"
		}
		return nil, fmt.Errorf("%s: %w", query, err)
	}
	return res, nil
}

// CreatePluginTables creates, with the prefix, the tables the plugin creates
// (exactly as in fixture 92: no indexes on the token and code tables), the
// WordPress users, usermeta and options tables, seeds the scopes table as
// the plugin does (email default, profile) and sets the option
// mo_oauth_server_is_client_secret_encrypted to 1, as the plugin does when
// a client is created.
func CreatePluginTables(ctx context.Context, db *sql.DB, prefix string) error {
	for _, ddl := range append(append([]string{}, pluginTables...), wordpressTables...) {
		if _, err := exec(ctx, db, strings.Replace(ddl, "%s", prefix, 1)); err != nil {
			return err
		}
	}
	if _, err := exec(ctx, db, "INSERT INTO `"+prefix+"moos_oauth_scopes` (scope, is_default) VALUES ('email', 1), ('profile', 0)"); err != nil {
		return err
	}
	return SetOption(ctx, db, prefix, OptSecretEncrypted, "1")
}

// SetOption sets a WordPress option in <prefix>options.
func SetOption(ctx context.Context, db *sql.DB, prefix, name, value string) error {
	_, err := exec(ctx, db, "INSERT INTO `"+prefix+"options` (option_name, option_value, autoload) VALUES (?, ?, 'no') "+
		"ON DUPLICATE KEY UPDATE option_value = VALUES(option_value)", name, value)
	return err
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
func InsertClient(ctx context.Context, db *sql.DB, prefix string, c Client) error {
	stored := c.Secret
	if !c.Plain {
		stored = Obfuscate(c.Secret, c.Name)
	}
	if c.ServerID == 0 {
		c.ServerID = 1
	}
	_, err := exec(ctx, db, "INSERT INTO `"+prefix+"moos_oauth_clients` (client_name, client_id, client_secret, redirect_uri, active_oauth_server_id) VALUES (?, ?, ?, ?, ?)",
		c.Name, c.ID, stored, c.RedirectURI, c.ServerID)
	return err
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
func InsertUser(ctx context.Context, db *sql.DB, prefix string, u User) (int64, error) {
	res, err := exec(ctx, db, "INSERT INTO `"+prefix+"users` (ID, user_login, user_pass, user_nicename, user_email, user_registered, display_name) VALUES (?, ?, '', ?, ?, ?, ?)",
		u.ID, u.Login, u.Nicename, u.Email, u.Registered.UTC().Truncate(time.Second), u.DisplayName)
	if err != nil {
		return 0, err
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("insert user: %w", err)
	}
	if u.ID != 0 {
		id = u.ID
	}
	for k, v := range u.Meta {
		if _, err := exec(ctx, db, "INSERT INTO `"+prefix+"usermeta` (user_id, meta_key, meta_value) VALUES (?, ?, ?)", id, k, v); err != nil {
			return 0, err
		}
	}
	return id, nil
}

// InsertPublicKey inserts a moos_oauth_public_keys row.
func InsertPublicKey(ctx context.Context, db *sql.DB, prefix, clientID, algorithm, publicPEM, privatePEM string) error {
	_, err := exec(ctx, db, "INSERT INTO `"+prefix+"moos_oauth_public_keys` (client_id, public_key, private_key, encryption_algorithm) VALUES (?, ?, ?, ?)",
		clientID, publicPEM, privatePEM, algorithm)
	return err
}

// AuthCode is an authorization-code row as the plugin writes it at
// authorize (with an empty id_token column).
type AuthCode struct {
	Code        string
	ClientID    string
	UserID      int64
	RedirectURI string
	Expires     time.Time // written in UTC, truncated to the second
	Scope       string
}

// codesPerInsert is how many rows one INSERT of InsertAuthCodes writes (6
// placeholders each; MySQL allows 65,535 per statement).
const codesPerInsert = 1000

// InsertAuthCodes inserts authorization-code rows, in multi-row INSERTs of
// up to codesPerInsert rows, in order.
func InsertAuthCodes(ctx context.Context, db *sql.DB, prefix string, codes []AuthCode) error {
	const head = "INSERT INTO `%smoos_oauth_authorization_codes` (authorization_code, client_id, user_id, redirect_uri, expires, scope, id_token) VALUES "
	args := make([]any, 0, 6*min(len(codes), codesPerInsert))
	var q strings.Builder
	for lo := 0; lo < len(codes); lo += codesPerInsert {
		batch := codes[lo:min(lo+codesPerInsert, len(codes))]
		q.Reset()
		fmt.Fprintf(&q, head, prefix)
		args = args[:0]
		for i, c := range batch {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?, ?, ?, ?, ?, '')")
			args = append(args, c.Code, c.ClientID, c.UserID, c.RedirectURI, c.Expires.UTC().Truncate(time.Second), c.Scope)
		}
		if _, err := exec(ctx, db, q.String(), args...); err != nil {
			return err
		}
	}
	return nil
}
