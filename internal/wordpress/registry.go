package wordpress

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-moserver/caddy-moserver/internal/clients"
)

// Defaults for RegistryOptions.
const (
	DefaultRefreshInterval = 30 * time.Second
	DefaultNegativeTTL     = 5 * time.Second
)

// optEncrypted is the plugin option that says client secrets are stored
// obfuscated (see EncodeSecret) rather than in plaintext.
const optEncrypted = "mo_oauth_server_is_client_secret_encrypted"

// ErrUnavailable is wrapped by the error Registry.Lookup returns while the
// clients have never been loaded because the database cannot be reached.
var ErrUnavailable = errors.New("wordpress: client registry unavailable")

// RegistryOptions configure a Registry. Zero values select the defaults.
// WordPress stores only a client's name, id, secret and redirect URIs; the
// fields below Logger supply what it does not, for every client alike.
type RegistryOptions struct {
	// RefreshInterval is how often all clients are re-read.
	// Default DefaultRefreshInterval.
	RefreshInterval time.Duration
	// NegativeTTL is how long a lookup miss is trusted: a miss re-reads the
	// clients only when no read started within NegativeTTL, so unknown ids
	// cause at most one read per NegativeTTL overall. Default
	// DefaultNegativeTTL.
	NegativeTTL time.Duration
	// Logger receives load failures (at most once per RefreshInterval)
	// and skipped rows. Default: no logging.
	Logger *zap.Logger

	// Grants are the grant types every client may use. Default
	// clients.DefaultGrants and the plugin's own authorization_code.
	Grants []string
	// RefreshTokens makes client_credentials issue refresh tokens too.
	RefreshTokens bool
	// PublicClients are the ids of clients that are public (single-page and
	// mobile apps): they authenticate with their id alone and must use PKCE
	// (S256); their stored secret, if any, is not accepted.
	PublicClients []string
	// AccessTokenTTL overrides the server's access-token lifetime when > 0.
	AccessTokenTTL time.Duration
	// Audience overrides the server's access-token audience when set.
	Audience string
}

// Registry is the clients.Registry of the plugin's moos_oauth_clients table.
// It keeps every client in memory and re-reads them all, with the scopes of
// moos_oauth_scopes, every RefreshInterval in the background, and on a
// lookup miss (see RegistryOptions.NegativeTTL). Only the first load and
// misses wait for the database.
//
// When the database is down, clients already loaded keep working, an
// unknown id yields nil and no error, and the failure is logged at most once
// per RefreshInterval. Only while no load has ever succeeded does Lookup
// return an error, wrapping ErrUnavailable.
//
// Every client gets:
//   - Scopes: all rows of moos_oauth_scopes (the plugin seeds email and
//     profile), sorted;
//   - SecretDigest of the secret decoded with DecodeSecret, or taken as
//     stored when the option mo_oauth_server_is_client_secret_encrypted is
//     absent or false in <prefix>options (as the plugin does before it
//     migrates a plaintext secret; an absent options table counts as
//     obfuscated);
//   - CORSOrigins: the origins of its space-separated redirect_uri values
//     (invalid ones skipped);
//   - Grants, RefreshTokens, AccessTokenTTL and Audience from the options.
//
// Rows with an empty client_id or an empty or undecodable secret are
// skipped (logged without the secret); with duplicate client_ids the first
// row wins. Ids are matched exactly (the plugin's SQL ignores case).
type Registry struct {
	db          *DB
	opts        RegistryOptions
	log         *zap.Logger
	snap        atomic.Pointer[snapshot]
	loads       atomic.Int64 // loads started, for tests
	stop        chan struct{}
	baseCtx     context.Context // canceled by Close
	cancelLoads context.CancelFunc
	wg          sync.WaitGroup
	closeOnce   sync.Once

	mu          sync.Mutex // guards the fields below
	inflight    *loadCall
	lastAttempt time.Time // start of the latest load
	lastErr     error     // error of the latest load, nil after a success
	failures    int       // consecutive failed loads
	lastFailLog time.Time
	lastSkipped string // the skipped rows last logged
	closed      bool
}

// snapshot is one immutable load of the clients.
type snapshot struct {
	clients map[string]*clients.Client
	loaded  time.Time
}

// loadCall is one load in flight; done is closed when err is set.
type loadCall struct {
	done chan struct{}
	err  error
}

// Compile-time check.
var _ clients.Registry = (*Registry)(nil)

// NewRegistry returns a Registry over db and starts its background loader,
// which loads the clients at once and then every RefreshInterval. Call
// Close to stop it; Close does not close db.
func NewRegistry(db *DB, opts RegistryOptions) *Registry {
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = DefaultRefreshInterval
	}
	if opts.NegativeTTL <= 0 {
		opts.NegativeTTL = DefaultNegativeTTL
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Grants == nil {
		opts.Grants = append(slices.Clone(clients.DefaultGrants), clients.GrantAuthorizationCode)
	}
	opts.Grants = slices.Clone(opts.Grants)
	ctx, cancel := context.WithCancel(context.Background())
	r := &Registry{
		db:          db,
		opts:        opts,
		log:         opts.Logger,
		stop:        make(chan struct{}),
		baseCtx:     ctx,
		cancelLoads: cancel,
	}
	r.wg.Add(1)
	go r.loop()
	return r
}

// Close stops the background loader and waits for it. Lookups keep
// answering from the cached clients but no longer read the database.
func (r *Registry) Close() {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		close(r.stop)
		r.cancelLoads()
		r.wg.Wait()
	})
}

// Lookup implements clients.Registry. The returned client is shared and
// must not be modified.
func (r *Registry) Lookup(ctx context.Context, id string) (*clients.Client, error) {
	snap := r.snap.Load()
	if snap != nil {
		if c, ok := snap.clients[id]; ok || id == "" {
			return c, nil
		}
	}
	call, lastErr := r.startLoad(false)
	if call == nil { // a load started within NegativeTTL answers this miss
		if snap = r.snap.Load(); snap != nil {
			return snap.clients[id], nil
		}
		return nil, unavailable(lastErr)
	}
	select {
	case <-call.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("wordpress: waiting for the client registry: %w", ctx.Err())
	}
	if snap = r.snap.Load(); snap == nil {
		return nil, unavailable(call.err)
	}
	return snap.clients[id], nil
}

// unavailable wraps the latest load error in ErrUnavailable.
func unavailable(err error) error {
	if err == nil {
		return ErrUnavailable
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// startLoad returns the load in flight, or starts one. Unless force is set
// it starts none, and returns nil and the latest load's error, when a load
// started within NegativeTTL. It starts none once the registry is closed.
func (r *Registry) startLoad(force bool) (*loadCall, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inflight != nil {
		return r.inflight, nil
	}
	if r.closed {
		return nil, errors.Join(errors.New("wordpress: client registry closed"), r.lastErr)
	}
	now := time.Now()
	if !force && !r.lastAttempt.IsZero() && now.Sub(r.lastAttempt) < r.opts.NegativeTTL {
		return nil, r.lastErr
	}
	call := &loadCall{done: make(chan struct{})}
	r.inflight = call
	r.lastAttempt = now
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		err := r.load()
		r.mu.Lock()
		r.inflight = nil
		r.lastErr = err
		call.err = err
		r.mu.Unlock()
		close(call.done)
	}()
	return call, nil
}

// loop loads the clients at once and then every RefreshInterval.
func (r *Registry) loop() {
	defer r.wg.Done()
	t := time.NewTicker(r.opts.RefreshInterval)
	defer t.Stop()
	for {
		if call, _ := r.startLoad(true); call != nil {
			select {
			case <-call.done:
			case <-r.stop:
				return
			}
		}
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
	}
}

// load reads all clients and scopes and replaces the snapshot.
func (r *Registry) load() error {
	r.loads.Add(1)
	data, err := r.db.loadClients(r.baseCtx)
	if err != nil {
		if r.baseCtx.Err() == nil { // not a load cut short by Close
			r.noteFailure(err)
		}
		return err
	}
	snap, skipped := r.build(data)
	r.snap.Store(snap)
	r.noteSuccess(len(snap.clients), skipped)
	return nil
}

// skippedRow is a client row that could not be used.
type skippedRow struct{ id, reason string }

// build turns the rows into clients.
func (r *Registry) build(data *clientData) (*snapshot, []skippedRow) {
	scopes := slices.Clone(data.scopes)
	slices.Sort(scopes)
	snap := &snapshot{clients: make(map[string]*clients.Client, len(data.rows)), loaded: time.Now()}
	var skipped []skippedRow
	for _, row := range data.rows {
		if row.id == "" {
			skipped = append(skipped, skippedRow{"", "empty client_id"})
			continue
		}
		if _, dup := snap.clients[row.id]; dup {
			skipped = append(skipped, skippedRow{row.id, "duplicate client_id, first row used"})
			continue
		}
		secret := row.secret
		if data.encrypted {
			var err error
			if secret, err = DecodeSecret(row.secret, row.name); err != nil {
				skipped = append(skipped, skippedRow{row.id, err.Error()})
				continue
			}
		}
		public := slices.Contains(r.opts.PublicClients, row.id)
		if secret == "" && !public {
			skipped = append(skipped, skippedRow{row.id, "empty client secret (name it in public_clients to make it a public client)"})
			continue
		}
		var origins []string
		for _, u := range strings.Fields(row.redirectURI) {
			if o, err := clients.NormalizeOrigin(u); err == nil && !slices.Contains(origins, o) {
				origins = append(origins, o)
			}
		}
		snap.clients[row.id] = &clients.Client{
			ID:             row.id,
			Name:           row.name,
			SecretDigest:   clients.SecretDigest(secret),
			Scopes:         slices.Clone(scopes),
			ScopeText:      strings.Join(scopes, " "),
			Grants:         slices.Clone(r.opts.Grants),
			RefreshTokens:  r.opts.RefreshTokens,
			Audience:       r.opts.Audience,
			AccessTokenTTL: r.opts.AccessTokenTTL,
			CORSOrigins:    origins,
			RedirectURIs:   strings.Fields(row.redirectURI),
			Public:         public,
			RequirePKCE:    public,
		}
		if public {
			snap.clients[row.id].SecretDigest = [32]byte{} // no secret authenticates it
		}
	}
	return snap, skipped
}

// noteFailure logs a failed load, at most once per RefreshInterval.
func (r *Registry) noteFailure(err error) {
	r.mu.Lock()
	r.failures++
	n := r.failures
	logIt := r.lastFailLog.IsZero() || time.Since(r.lastFailLog) >= r.opts.RefreshInterval
	if logIt {
		r.lastFailLog = time.Now()
	}
	r.mu.Unlock()
	if !logIt {
		return
	}
	if snap := r.snap.Load(); snap != nil {
		r.log.Warn("wordpress: cannot reload OAuth clients; serving the cached ones",
			zap.Error(err), zap.Int("consecutive_failures", n),
			zap.Int("cached_clients", len(snap.clients)), zap.Time("cached_at", snap.loaded))
	} else {
		r.log.Error("wordpress: cannot load OAuth clients; client authentication is unavailable",
			zap.Error(err), zap.Int("consecutive_failures", n))
	}
}

// noteSuccess logs a recovery and skipped rows when they change.
func (r *Registry) noteSuccess(count int, skipped []skippedRow) {
	var sb strings.Builder
	for _, s := range skipped {
		sb.WriteString(s.id + "\x00" + s.reason + "\x00")
	}
	r.mu.Lock()
	failures := r.failures
	r.failures = 0
	r.lastFailLog = time.Time{}
	skippedChanged := sb.String() != r.lastSkipped
	r.lastSkipped = sb.String()
	r.mu.Unlock()
	if failures > 0 {
		r.log.Info("wordpress: OAuth clients loaded again",
			zap.Int("failed_attempts", failures), zap.Int("clients", count))
	}
	if skippedChanged {
		for _, s := range skipped {
			r.log.Warn("wordpress: skipping OAuth client row",
				zap.String("client_id", s.id), zap.String("reason", s.reason))
		}
	}
}

// clientRow is one row of moos_oauth_clients.
type clientRow struct {
	name, id, secret, redirectURI string
}

// clientData is everything a registry load reads.
type clientData struct {
	rows      []clientRow
	scopes    []string
	encrypted bool
}

// loadClients reads all clients, all scopes and the secret-encryption
// option, under one query timeout.
func (d *DB) loadClients(ctx context.Context) (*clientData, error) {
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	data := &clientData{encrypted: true}

	var opt sql.NullString
	err := d.sql.QueryRowContext(ctx,
		"SELECT option_value FROM "+d.t.options+" WHERE option_name = ? LIMIT 1", optEncrypted).Scan(&opt)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		data.encrypted = false
	case isNoSuchTable(err):
		// No options table (not a full WordPress schema): current plugin
		// versions always obfuscate.
	case err != nil:
		return nil, fmt.Errorf("wordpress: read option %s: %w", optEncrypted, err)
	default:
		data.encrypted = phpTruthy(opt.String)
	}

	rows, err := d.sql.QueryContext(ctx,
		"SELECT client_name, client_id, client_secret, redirect_uri FROM "+d.t.clients)
	if err != nil {
		return nil, fmt.Errorf("wordpress: read OAuth clients: %w", err)
	}
	for rows.Next() {
		var name, id, secret, uri sql.NullString
		if err := rows.Scan(&name, &id, &secret, &uri); err != nil {
			rows.Close()
			return nil, fmt.Errorf("wordpress: read OAuth clients: %w", err)
		}
		data.rows = append(data.rows, clientRow{name.String, id.String, secret.String, uri.String})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("wordpress: read OAuth clients: %w", err)
	}

	rows, err = d.sql.QueryContext(ctx, "SELECT scope FROM "+d.t.scopes)
	if err != nil {
		return nil, fmt.Errorf("wordpress: read OAuth scopes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var s sql.NullString
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("wordpress: read OAuth scopes: %w", err)
		}
		if v := strings.TrimSpace(s.String); v != "" && !slices.Contains(data.scopes, v) {
			data.scopes = append(data.scopes, v)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("wordpress: read OAuth scopes: %w", err)
	}
	return data, nil
}

// phpTruthy reports whether PHP would take the option value as true.
func phpTruthy(v string) bool {
	return v != "" && v != "0"
}
