// Package wordpress reads and writes the MariaDB/MySQL tables of a WordPress
// site running the "WP OAuth Server" (miniOrange) plugin: its OAuth clients,
// scopes, refresh and access tokens, per-client signing keys, and the
// WordPress users the tokens belong to.
//
// All queries are parameterised; table names are built from a validated
// prefix. Every query runs under a context timeout. The plugin's TIMESTAMP
// columns hold UTC time strings, so the connection is always opened with
// loc=UTC and parseTime=true and times are written in UTC. The session
// time_zone is left as the server's default, as it is for WordPress itself,
// so this package reads and writes the same strings the plugin does.
package wordpress

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"go.uber.org/zap"

	"github.com/caddy-moserver/caddy-moserver/internal/ttlcache"
)

// Defaults for Options.
const (
	DefaultQueryTimeout    = 2 * time.Second
	DefaultMaxOpenConns    = 8
	DefaultMaxIdleConns    = 4
	DefaultConnMaxLifetime = 5 * time.Minute
	defaultConnMaxIdleTime = time.Minute
	// maxTableName is MySQL's limit on identifier length.
	maxTableName = 64
)

// Options tune a DB. Zero values select the defaults.
type Options struct {
	// QueryTimeout bounds every operation (one query, or the few queries of
	// one method call). Default DefaultQueryTimeout.
	QueryTimeout time.Duration
	// MaxOpenConns bounds the connection pool. Default DefaultMaxOpenConns.
	MaxOpenConns int
	// MaxIdleConns bounds the idle connections kept. Default
	// DefaultMaxIdleConns, never more than MaxOpenConns.
	MaxIdleConns int
	// ConnMaxLifetime recycles connections. Default DefaultConnMaxLifetime.
	ConnMaxLifetime time.Duration
	// Logger receives, at Debug level, the messages the MySQL driver would
	// otherwise print to stderr (one per broken connection). Errors are
	// returned to callers in any case. Default: discarded.
	Logger *zap.Logger
}

// DB is a connection pool to the WordPress database. It is safe for
// concurrent use.
type DB struct {
	sql     *sql.DB
	prefix  string
	timeout time.Duration
	t       tables
	// signingKeys keeps each client's parsed id_token key for a minute (a
	// parse of an RSA key costs as much as a signature, and a query), as
	// the plugin's keys change only when an administrator changes them.
	signingKeys *ttlcache.Cache[string, signingKey]
	// idUsers keeps the users id_tokens are minted for, a few seconds.
	idUsers *ttlcache.Cache[int64, *User]
}

// signingKey is a client's id_token key, ready to sign with.
type signingKey struct {
	alg jwa.SignatureAlgorithm
	key any
}

// signingKeyTTL is how long a client's parsed id_token key is kept;
// idUserTTL how long a user's claims are (a profile change shows in new
// id_tokens within it).
const (
	signingKeyTTL = time.Minute
	idUserTTL     = 5 * time.Second
)

// tables holds the quoted names of the tables this package uses.
type tables struct {
	clients, scopes, refresh, access, codes, keys, options, users, usermeta string
}

// Table name suffixes, appended to the prefix.
const (
	tblClients  = "moos_oauth_clients"
	tblScopes   = "moos_oauth_scopes"
	tblRefresh  = "moos_oauth_refresh_tokens"
	tblAccess   = "moos_oauth_access_tokens"
	tblCodes    = "moos_oauth_authorization_codes"
	tblKeys     = "moos_oauth_public_keys"
	tblOptions  = "options"
	tblUsers    = "users"
	tblUsermeta = "usermeta"
	// longestSuffix is the longest table suffix the plugin uses.
	longestSuffix = "moos_oauth_authorization_codes"
)

// ValidatePrefix checks a WordPress table prefix: only ASCII letters, digits
// and underscores (the rule WordPress itself enforces), short enough that
// every plugin table name fits MySQL's 64-character limit. An empty prefix
// is valid.
func ValidatePrefix(prefix string) error {
	if len(prefix)+len(longestSuffix) > maxTableName {
		return fmt.Errorf("wordpress: table prefix %q is too long (at most %d characters)", prefix, maxTableName-len(longestSuffix))
	}
	for i := 0; i < len(prefix); i++ {
		c := prefix[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return fmt.Errorf("wordpress: table prefix %q may contain only letters, digits and underscores", prefix)
		}
	}
	return nil
}

// table quotes prefix+suffix as an identifier. prefix must be validated.
func table(prefix, suffix string) string {
	return "`" + prefix + suffix + "`"
}

// Open prepares a connection pool to the database named by dsn (the
// go-sql-driver/mysql format, e.g. "user:pass@tcp(host:3306)/wordpress"),
// whose WordPress tables start with tablePrefix (usually "wp_"; the
// plugin uses WordPress's base_prefix). loc=UTC and parseTime=true are
// forced, interpolateParams=true is the default; every other DSN parameter
// is kept. The DSN must name a database.
// Do not set time_zone in it: the plugin's TIMESTAMP columns are read and
// written in the server's default session time zone, as WordPress does.
//
// Open does not connect: it fails only for a malformed DSN or prefix, so a
// database that is down at start is not an error (see Ping).
func Open(dsn, tablePrefix string, opts Options) (*DB, error) {
	if err := ValidatePrefix(tablePrefix); err != nil {
		return nil, err
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("wordpress: malformed MySQL DSN: %s (want user:password@tcp(host:port)/database?params)", dsnError(dsn))
	}
	if cfg.DBName == "" {
		return nil, errors.New("wordpress: the MySQL DSN names no database (want user:password@tcp(host:port)/database)")
	}
	if opts.QueryTimeout <= 0 {
		opts.QueryTimeout = DefaultQueryTimeout
	}
	if opts.MaxOpenConns <= 0 {
		opts.MaxOpenConns = DefaultMaxOpenConns
	}
	if opts.MaxIdleConns <= 0 {
		opts.MaxIdleConns = DefaultMaxIdleConns
	}
	opts.MaxIdleConns = min(opts.MaxIdleConns, opts.MaxOpenConns)
	if opts.ConnMaxLifetime <= 0 {
		opts.ConnMaxLifetime = DefaultConnMaxLifetime
	}
	cfg.Loc = time.UTC
	cfg.ParseTime = true
	if !strings.Contains(dsn, "interpolateParams=") {
		// One round trip per query instead of prepare, execute and close
		// (WordPress's utf8mb4 is a character set the driver can escape).
		cfg.InterpolateParams = true
	}
	cfg.Logger = driverLogger{opts.Logger}
	if cfg.Timeout <= 0 {
		cfg.Timeout = opts.QueryTimeout
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("wordpress: MySQL DSN: %w", err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(opts.MaxOpenConns)
	db.SetMaxIdleConns(opts.MaxIdleConns)
	db.SetConnMaxLifetime(opts.ConnMaxLifetime)
	db.SetConnMaxIdleTime(defaultConnMaxIdleTime)
	return &DB{
		sql:         db,
		prefix:      tablePrefix,
		timeout:     opts.QueryTimeout,
		signingKeys: ttlcache.New[string, signingKey](signingKeyTTL, 10_000),
		idUsers:     ttlcache.New[int64, *User](idUserTTL, 10_000),
		t: tables{
			clients:  table(tablePrefix, tblClients),
			scopes:   table(tablePrefix, tblScopes),
			refresh:  table(tablePrefix, tblRefresh),
			codes:    table(tablePrefix, tblCodes),
			access:   table(tablePrefix, tblAccess),
			keys:     table(tablePrefix, tblKeys),
			options:  table(tablePrefix, tblOptions),
			users:    table(tablePrefix, tblUsers),
			usermeta: table(tablePrefix, tblUsermeta),
		},
	}, nil
}

// dsnError says why the driver refuses dsn without showing its password.
// The driver's messages quote parts of the DSN (the network, the database
// name), and in a malformed DSN those may hold the password, or pieces of
// it cut off at an unescaped "/". So it is the message for a copy of the DSN
// whose password is replaced by xxxxx (redactDSN), or, when that copy
// parses, one that points at the user name and password.
func dsnError(dsn string) string {
	if _, err := mysql.ParseDSN(redactDSN(dsn)); err != nil {
		return err.Error()
	}
	return "its user name or password does not parse"
}

// redactDSN returns a MySQL DSN with the password replaced by xxxxx. It works
// on the text without parsing it, so that it hides the password of a DSN
// the driver refuses too: the user info runs to the last "@" (the driver
// takes the last one before the database name) and the password from the
// first ":" in it. A DSN without "@" whose part before the address or the
// database holds a ":" is taken as one whose "@" was forgotten, and what
// follows that ":" is hidden.
func redactDSN(dsn string) string {
	end := strings.LastIndex(dsn, "@")
	if end < 0 {
		end = strings.IndexAny(dsn, "(/")
		if end < 0 {
			end = len(dsn)
		}
	}
	user, _, hasPassword := strings.Cut(dsn[:end], ":")
	if !hasPassword {
		return dsn
	}
	return user + ":xxxxx" + dsn[end:]
}

// Prefix returns the table prefix the DB was opened with.
func (d *DB) Prefix() string { return d.prefix }

// Close closes the connection pool. A Registry built on the DB keeps
// serving the clients it has cached.
func (d *DB) Close() error {
	if err := d.sql.Close(); err != nil {
		return fmt.Errorf("wordpress: close: %w", err)
	}
	return nil
}

// Ping checks that the database answers, within the query timeout.
func (d *DB) Ping(ctx context.Context) error {
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	if err := d.sql.PingContext(ctx); err != nil {
		return fmt.Errorf("wordpress: ping: %w", err)
	}
	return nil
}

// withTimeout bounds ctx by the query timeout.
func (d *DB) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d.timeout)
}

// isNoSuchTable reports whether err is MySQL's "table doesn't exist".
func isNoSuchTable(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1146
}

// driverLogger sends the MySQL driver's messages to a zap logger at Debug
// level, or nowhere.
type driverLogger struct{ l *zap.Logger }

// Print implements mysql.Logger.
func (d driverLogger) Print(v ...any) {
	if d.l != nil {
		d.l.Debug("mysql driver: " + fmt.Sprint(v...))
	}
}
