package caddymodule

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-moserver/caddy-moserver/internal/clients"
	"github.com/caddy-moserver/caddy-moserver/internal/oauth"
	"github.com/caddy-moserver/caddy-moserver/internal/wordpress"
)

// WordPressConfig points the module at the WordPress database, so the
// plugin's clients and outstanding refresh tokens work unchanged.
type WordPressConfig struct {
	// DSN is the MySQL/MariaDB data source name, e.g.
	// wp:{env.WP_DB_PASSWORD}@tcp(127.0.0.1:3306)/wordpress.
	DSN string `json:"dsn,omitempty"`
	// TablePrefix is WordPress's base prefix (default wp_).
	TablePrefix string `json:"table_prefix,omitempty"`
	// RefreshInterval is how often the clients are re-read (default 30s).
	RefreshInterval caddy.Duration `json:"refresh_interval,omitempty"`
	// UserAccessTokens is "opaque" (default: rows in the plugin's access-token
	// table, which its resource endpoint reads) or "jwt".
	UserAccessTokens string `json:"user_access_tokens,omitempty"`
	// RefreshTokens makes client_credentials issue refresh tokens to
	// WordPress clients too.
	RefreshTokens bool `json:"refresh_tokens,omitempty"`
	// PublicClients are the ids of the plugin's clients that are public
	// (single-page and mobile apps): no secret, PKCE required.
	PublicClients []string `json:"public_clients,omitempty"`
	// IndexTables adds, in the background at start, an index to each of
	// the plugin's code and token tables that has none (the plugin creates
	// them without any, so every exchange of a code scans its table). It
	// needs the ALTER privilege; without it the module works as before and
	// logs why.
	IndexTables bool `json:"index_tables,omitempty"`
}

// validate checks the wordpress block, if there is one.
func (cfg *WordPressConfig) validate() error {
	if cfg == nil {
		return nil
	}
	if cfg.DSN == "" {
		return fmt.Errorf("wordpress needs a DSN")
	}
	if cfg.TablePrefix != "" {
		if err := wordpress.ValidatePrefix(cfg.TablePrefix); err != nil {
			return fmt.Errorf("wordpress table_prefix: %w", err)
		}
	}
	switch cfg.UserAccessTokens {
	case "", oauth.UserAccessOpaque, oauth.UserAccessJWT:
	default:
		return fmt.Errorf("wordpress user_access_tokens must be opaque or jwt, not %q", cfg.UserAccessTokens)
	}
	if cfg.RefreshInterval < 0 {
		return fmt.Errorf("wordpress refresh_interval must not be negative")
	}
	return nil
}

// wpConn is a WordPress database pool shared across config reloads, and
// the background indexing of its tables, which outlives a reload (an index
// on a large table takes minutes to build) and ends with the pool.
type wpConn struct {
	*wordpress.DB
	ctx  context.Context // done when the pool is destructed
	stop context.CancelFunc

	mu       sync.Mutex
	indexing bool // an indexing of the tables is running
}

// Destruct implements caddy.Destructor.
func (c *wpConn) Destruct() error {
	c.stop()
	return c.Close()
}

var wpConns = caddy.NewUsagePool()

// wordpressSite is the WordPress side of the module for one configuration.
type wordpressSite struct {
	db       *wordpress.DB
	registry *wordpress.Registry
	issuer   string
	poolKey  string
}

// indexingTimeout bounds the background indexing of the plugin's tables:
// an index on a table of millions of tokens takes minutes to build.
const indexingTimeout = 30 * time.Minute

func openWordPress(cfg *WordPressConfig, issuer string, repl *caddy.Replacer, log *zap.Logger) (*wordpressSite, error) {
	dsn := repl.ReplaceKnown(cfg.DSN, "")
	prefix := cfg.TablePrefix
	if prefix == "" {
		prefix = "wp_"
	}
	key := dsn + "|" + prefix
	v, loaded, err := wpConns.LoadOrNew(key, func() (caddy.Destructor, error) {
		db, err := wordpress.Open(dsn, prefix, wordpress.Options{})
		if err != nil {
			return nil, err
		}
		ctx, stop := context.WithCancel(context.Background())
		return &wpConn{DB: db, ctx: ctx, stop: stop}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("wordpress: %w", err)
	}
	conn := v.(*wpConn)
	reg := wordpress.NewRegistry(conn.DB, wordpress.RegistryOptions{
		RefreshInterval: time.Duration(cfg.RefreshInterval),
		Logger:          log.Named("wordpress"),
		RefreshTokens:   cfg.RefreshTokens,
		PublicClients:   cfg.PublicClients,
	})
	if cfg.IndexTables || !loaded {
		conn.checkIndexes(cfg.IndexTables, log.Named("wordpress"))
	}
	return &wordpressSite{db: conn.DB, registry: reg, issuer: issuer, poolKey: key}, nil
}

// checkIndexes, in the background, adds the indexes the plugin's tables
// lack when add is set (unless an indexing is running already), or warns
// that they are missing.
func (c *wpConn) checkIndexes(add bool, log *zap.Logger) {
	if !add {
		go func() {
			ctx, cancel := context.WithTimeout(c.ctx, wordpress.DefaultQueryTimeout)
			defer cancel()
			missing, err := c.MissingIndexes(ctx)
			if err == nil && len(missing) > 0 {
				log.Warn("the plugin's tables have no index on the codes and tokens they are searched by: every code exchange, and every lookup of one of the plugin's tokens, reads the whole table; index_tables adds the indexes",
					zap.Strings("columns", missing))
			}
		}()
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.indexing {
		return
	}
	c.indexing = true
	go func() {
		defer func() {
			c.mu.Lock()
			c.indexing = false
			c.mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(c.ctx, indexingTimeout)
		defer cancel()
		start := time.Now()
		added, err := c.EnsureIndexes(ctx)
		if len(added) > 0 {
			log.Info("indexed the plugin's tables", zap.Strings("columns", added), zap.Duration("took", time.Since(start)))
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("could not index the plugin's tables; every code exchange reads the whole table", zap.Error(err))
		}
	}()
}

func (w *wordpressSite) close() error {
	w.registry.Close()
	_, err := wpConns.Delete(w.poolKey)
	return err
}

// chain puts the configured clients before WordPress's.
func (w *wordpressSite) chain(static clients.Static) clients.Registry {
	return clients.Chain{static, w.registry}
}

// The oauth.WordPress implementation.
var _ oauth.WordPress = (*wordpressSite)(nil)

// LookupPluginRefresh implements oauth.WordPress.
func (w *wordpressSite) LookupPluginRefresh(ctx context.Context, token string) (*oauth.PluginRefresh, error) {
	row, err := w.db.LookupRefresh(ctx, token)
	if err != nil || row == nil {
		return nil, err
	}
	return &oauth.PluginRefresh{Token: row.Token, ClientID: row.ClientID, UserID: row.UserID, Expires: row.Expires, Scope: row.Scope}, nil
}

// TakePluginRefresh implements oauth.WordPress.
func (w *wordpressSite) TakePluginRefresh(ctx context.Context, r *oauth.PluginRefresh) (bool, error) {
	return w.db.TakeRefresh(ctx, &wordpress.RefreshRow{Token: r.Token, ClientID: r.ClientID, UserID: r.UserID, Expires: r.Expires, Scope: r.Scope})
}

// InsertAccessToken implements oauth.WordPress.
func (w *wordpressSite) InsertAccessToken(ctx context.Context, token, clientID string, userID int64, expires time.Time, scope string) error {
	return w.db.InsertAccessToken(ctx, token, clientID, userID, expires, scope)
}

// IDToken implements oauth.WordPress.
func (w *wordpressSite) IDToken(ctx context.Context, clientID string, userID int64, issuedAt, expires time.Time, nonce string) (string, error) {
	return w.db.IDToken(ctx, w.issuer, clientID, userID, issuedAt, expires, nonce)
}

// LookupAuthCode implements oauth.WordPress.
func (w *wordpressSite) LookupAuthCode(ctx context.Context, code string) (*oauth.AuthCode, error) {
	row, err := w.db.LookupAuthCode(ctx, code)
	if err != nil || row == nil {
		return nil, err
	}
	return &oauth.AuthCode{ClientID: row.ClientID, UserID: row.UserID, RedirectURI: row.RedirectURI, Expires: row.Expires, Scope: row.Scope}, nil
}

// TakeAuthCode implements oauth.WordPress.
func (w *wordpressSite) TakeAuthCode(ctx context.Context, code string) (bool, error) {
	return w.db.TakeAuthCode(ctx, code)
}

// DeleteAccessToken implements oauth.WordPress.
func (w *wordpressSite) DeleteAccessToken(ctx context.Context, token string) error {
	return w.db.DeleteAccessToken(ctx, token)
}

// LookupAccessToken implements oauth.WordPress.
func (w *wordpressSite) LookupAccessToken(ctx context.Context, token string) (*oauth.AccessToken, error) {
	row, err := w.db.LookupAccessToken(ctx, token)
	if err != nil || row == nil {
		return nil, err
	}
	return &oauth.AccessToken{ClientID: row.ClientID, UserID: row.UserID, Expires: row.Expires, Scope: row.Scope}, nil
}

// User implements oauth.WordPress.
func (w *wordpressSite) User(ctx context.Context, userID int64) (*oauth.User, error) {
	u, err := w.db.User(ctx, userID)
	if err != nil || u == nil {
		return nil, err
	}
	return &oauth.User{ID: u.ID, Login: u.Login, Email: u.Email, FirstName: u.FirstName, LastName: u.LastName,
		Nickname: u.Nickname, DisplayName: u.DisplayName}, nil
}

// IDTokenKey implements oauth.WordPress: HS256 as stored, any other
// algorithm is RS256, which is what IDToken signs with.
func (w *wordpressSite) IDTokenKey(ctx context.Context, clientID string) (*oauth.IDTokenKey, error) {
	k, err := w.db.ClientKey(ctx, clientID)
	if err != nil || k == nil {
		return nil, err
	}
	if k.Algorithm == wordpress.AlgHS256 {
		return &oauth.IDTokenKey{Algorithm: wordpress.AlgHS256}, nil
	}
	pub, err := wordpress.PublicJWK(k)
	return &oauth.IDTokenKey{Algorithm: wordpress.AlgRS256, Public: pub, Unusable: err}, nil
}
