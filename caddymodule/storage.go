package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/caddy-moserver/caddy-moserver/internal/oauth"
	"github.com/caddy-moserver/caddy-moserver/internal/store"
)

// Storage backends are Caddy guest modules in the moserver.storage
// namespace, chosen in a moserver block's "storage" object by its "type"
// (memory, redis, redis_sentinel, redis_cluster). A third party adds one by
// registering a module moserver.storage.<name> that implements
// StorageBackend (and caddyfile.Unmarshaler for `storage <name> ...`).

// StorageBackend opens the store of a moserver block.
type StorageBackend interface {
	// OpenStore returns the block's store. It is called once per
	// provisioning, after every configuration check; the backend releases
	// what it opened in its Cleanup.
	OpenStore(ctx caddy.Context) (store.Store, error)
	// Settings returns the settings every backend has.
	Settings() *StorageSettings
}

// StorageSettings are the settings every storage backend has.
type StorageSettings struct {
	// KeyPrefix prefixes every key of the store (default "moserver:"), so
	// several sites can share one Redis.
	KeyPrefix string `json:"key_prefix,omitempty"`
	// StoreTimeout is the time one request may spend on the store (and the
	// WordPress database), all its calls together (default 1s).
	StoreTimeout caddy.Duration `json:"store_timeout,omitempty"`
}

// Settings implements StorageBackend for the backends that embed it.
func (s *StorageSettings) Settings() *StorageSettings { return s }

func (s *StorageSettings) prefix() string {
	if s.KeyPrefix == "" {
		return "moserver:"
	}
	return s.KeyPrefix
}

func (s *StorageSettings) validate() error {
	if s.StoreTimeout < 0 {
		return fmt.Errorf("store_timeout must not be negative")
	}
	return nil
}

// unmarshalSetting reads one of the settings every backend has; ok is
// false when the option is not one of them.
func (s *StorageSettings) unmarshalSetting(d *caddyfile.Dispenser) (ok bool, err error) {
	switch d.Val() {
	case "key_prefix":
		return true, oneArg(d, &s.KeyPrefix)
	case "store_timeout":
		return true, durationArg(d, &s.StoreTimeout)
	}
	return false, nil
}

// stores holds the stores in use, shared across config reloads: a reload
// reuses the Redis connection pool (and the memory store's tokens) of the
// configuration it replaces.
var stores = caddy.NewUsagePool()

// pooledStore lets the usage pool close a store, and the Redis client it
// was built on, when its last user goes.
type pooledStore struct {
	store.Store
	client io.Closer // the store's Redis client, which Store.Close leaves open; nil for memory
}

// Destruct implements caddy.Destructor.
func (p pooledStore) Destruct() error {
	err := p.Close()
	if p.client != nil {
		err = errors.Join(err, p.client.Close())
	}
	return err
}

// pooled is the part of a backend that holds its store in the pool.
type pooled struct{ key string }

// acquire returns the pooled store under key, making it with open.
func (p *pooled) acquire(key string, log *zap.Logger, kind string, open func() (pooledStore, error)) (store.Store, error) {
	v, loaded, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) { return open() })
	if err != nil {
		return nil, err
	}
	p.key = key
	if !loaded {
		log.Info("moserver store ready", zap.String("storage", kind))
	}
	return v.(pooledStore).Store, nil
}

// poolKey is the key of the backend's store in the pool ("" before it is open).
func (p *pooled) poolKey() string { return p.key }

// Cleanup releases the backend's store.
func (p *pooled) Cleanup() error {
	if p.key == "" {
		return nil
	}
	_, err := stores.Delete(p.key)
	p.key = ""
	return err
}

// MemoryStorage keeps refresh tokens and revocations in the Caddy process:
// for one instance and for trying the module out. They survive a config
// reload, not a restart. Module moserver.storage.memory.
type MemoryStorage struct {
	StorageSettings
	pooled
}

// RedisStorage keeps them in one Redis server (and its replicas). Module
// moserver.storage.redis.
type RedisStorage struct {
	StorageSettings
	// URL is redis://[user:pass@]host:port/db (rediss:// for TLS);
	// placeholders such as {env.REDIS_URL} are expanded.
	URL string `json:"url,omitempty"`
	// MinReplicasAck makes every change wait until this many replicas
	// acknowledge it (Redis WAIT); 503 otherwise. See docs/durability.md.
	MinReplicasAck int `json:"min_replicas_ack,omitempty"`
	// MinReplicasAckTimeout bounds that wait (default 500ms); it must be
	// shorter than store_timeout.
	MinReplicasAckTimeout caddy.Duration `json:"min_replicas_ack_timeout,omitempty"`
	pooled
}

// RedisSentinelStorage keeps them in the primary a Redis Sentinel
// deployment names. URL: the Sentinels and the name they monitor the
// primary under,
// redis://[user:pass@]sentinel1:port[,sentinel2:port...][/db]?master_name=mymaster
// (rediss:// for TLS; port 26379 if omitted; the user and password are the
// Redis servers', a Sentinel's own goes in sentinel_password=). Module
// moserver.storage.redis_sentinel.
type RedisSentinelStorage struct {
	RedisStorage
}

// RedisClusterStorage keeps them in a Redis Cluster. URL: go-redis's
// cluster URL naming seed nodes,
// redis://[user:pass@]host1:port?addr=host2:port&addr=host3:port. The key
// prefix must not contain braces (they would change the hash tags that keep
// each token family in one slot). Module moserver.storage.redis_cluster.
type RedisClusterStorage struct {
	StorageSettings
	URL string `json:"url,omitempty"`
	pooled
}

func init() {
	for _, m := range []caddy.Module{new(MemoryStorage), new(RedisStorage), new(RedisSentinelStorage), new(RedisClusterStorage)} {
		caddy.RegisterModule(m)
	}
}

// Interface guards.
var (
	_ StorageBackend        = (*MemoryStorage)(nil)
	_ StorageBackend        = (*RedisStorage)(nil)
	_ StorageBackend        = (*RedisSentinelStorage)(nil)
	_ StorageBackend        = (*RedisClusterStorage)(nil)
	_ caddy.Validator       = (*RedisStorage)(nil)
	_ caddy.Validator       = (*RedisClusterStorage)(nil)
	_ caddy.CleanerUpper    = (*MemoryStorage)(nil)
	_ caddyfile.Unmarshaler = (*MemoryStorage)(nil)
	_ caddyfile.Unmarshaler = (*RedisStorage)(nil)
	_ caddyfile.Unmarshaler = (*RedisClusterStorage)(nil)
)

// CaddyModule returns the Caddy module information.
func (*MemoryStorage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "moserver.storage.memory", New: func() caddy.Module { return new(MemoryStorage) }}
}

// CaddyModule returns the Caddy module information.
func (*RedisStorage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "moserver.storage.redis", New: func() caddy.Module { return new(RedisStorage) }}
}

// CaddyModule returns the Caddy module information.
func (*RedisSentinelStorage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "moserver.storage.redis_sentinel", New: func() caddy.Module { return new(RedisSentinelStorage) }}
}

// CaddyModule returns the Caddy module information.
func (*RedisClusterStorage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "moserver.storage.redis_cluster", New: func() caddy.Module { return new(RedisClusterStorage) }}
}

// OpenStore implements StorageBackend.
func (m *MemoryStorage) OpenStore(ctx caddy.Context) (store.Store, error) {
	log := ctx.Logger()
	return m.acquire("memory||"+m.prefix(), log, "memory", func() (pooledStore, error) {
		log.Warn("moserver is using the in-memory store: refresh tokens and revocations do not survive a restart and are not shared between instances; use storage redis in production")
		return pooledStore{Store: store.NewMemory()}, nil
	})
}

// UnmarshalCaddyfile reads `storage memory [{ key_prefix ...; store_timeout ... }]`.
func (m *MemoryStorage) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the backend's name
	if d.NextArg() {
		return d.ArgErr()
	}
	return unmarshalSettings(d, &m.StorageSettings, nil)
}

// unmarshalSettings reads a storage block of settings, with more for the
// options a backend adds (nil: none).
func unmarshalSettings(d *caddyfile.Dispenser, s *StorageSettings, more func(*caddyfile.Dispenser) (bool, error)) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		ok, err := s.unmarshalSetting(d)
		if !ok && err == nil && more != nil {
			ok, err = more(d)
		}
		if err != nil {
			return err
		}
		if !ok {
			return d.Errf("unrecognized storage option %q", d.Val())
		}
	}
	return nil
}

// Validate implements caddy.Validator.
func (m *MemoryStorage) Validate() error { return m.validate() }

// ackOptions are the store options of min_replicas_ack, with the default
// timeout.
func (r *RedisStorage) ackOptions() store.RedisOptions {
	o := store.RedisOptions{MinReplicasAck: r.MinReplicasAck, AckTimeout: time.Duration(r.MinReplicasAckTimeout)}
	if o.MinReplicasAck > 0 && o.AckTimeout == 0 {
		o.AckTimeout = store.DefaultAckTimeout
	}
	return o
}

// Validate implements caddy.Validator.
func (r *RedisStorage) Validate() error { return r.validateKind(store.KindRedis) }

// Validate implements caddy.Validator.
func (r *RedisSentinelStorage) Validate() error { return r.validateKind(store.KindSentinel) }

func (r *RedisStorage) validateKind(kind string) error {
	if r.URL == "" {
		return fmt.Errorf("storage %s needs a URL", kind)
	}
	if err := r.validate(); err != nil {
		return err
	}
	if r.MinReplicasAck < 0 {
		return fmt.Errorf("min_replicas_ack must not be negative")
	}
	if r.MinReplicasAckTimeout < 0 {
		return fmt.Errorf("min_replicas_ack timeout must not be negative")
	}
	if r.MinReplicasAck == 0 {
		if r.MinReplicasAckTimeout != 0 {
			return fmt.Errorf("a min_replicas_ack timeout needs min_replicas_ack")
		}
		return nil
	}
	timeout := time.Duration(r.StoreTimeout)
	if timeout == 0 {
		timeout = oauth.DefaultStoreTimeout
	}
	if wait := r.ackOptions().AckTimeout; wait >= timeout {
		return fmt.Errorf("the min_replicas_ack timeout (%v) must be shorter than store_timeout (%v)", wait, timeout)
	}
	return nil
}

// OpenStore implements StorageBackend.
func (r *RedisStorage) OpenStore(ctx caddy.Context) (store.Store, error) {
	return r.open(ctx, store.KindRedis)
}

// OpenStore implements StorageBackend.
func (r *RedisSentinelStorage) OpenStore(ctx caddy.Context) (store.Store, error) {
	return r.open(ctx, store.KindSentinel)
}

func (r *RedisStorage) open(ctx caddy.Context, kind string) (store.Store, error) {
	return openRedis(ctx, &r.pooled, kind, r.URL, r.prefix(), r.ackOptions())
}

// UnmarshalCaddyfile reads `storage redis <url> [{ key_prefix ...;
// store_timeout ...; min_replicas_ack <n> [<timeout>] }]` (redis_sentinel
// alike).
func (r *RedisStorage) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the backend's name
	if !d.NextArg() {
		return d.ArgErr()
	}
	r.URL = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return unmarshalSettings(d, &r.StorageSettings, func(d *caddyfile.Dispenser) (bool, error) {
		if d.Val() != "min_replicas_ack" {
			return false, nil
		}
		return true, r.unmarshalAck(d)
	})
}

// unmarshalAck reads "min_replicas_ack <n> [<timeout>]".
func (r *RedisStorage) unmarshalAck(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) < 1 || len(args) > 2 {
		return d.Errf("min_replicas_ack takes a number of replicas and an optional timeout")
	}
	n, err := parsePositiveInt(args[0])
	if err != nil {
		return d.Errf("min_replicas_ack: %v", err)
	}
	r.MinReplicasAck = n
	if len(args) == 2 {
		t, err := caddy.ParseDuration(args[1])
		if err != nil || t <= 0 {
			return d.Errf("min_replicas_ack: %q is not a positive duration", args[1])
		}
		r.MinReplicasAckTimeout = caddy.Duration(t)
	}
	return nil
}

// Validate implements caddy.Validator.
func (c *RedisClusterStorage) Validate() error {
	if c.URL == "" {
		return fmt.Errorf("storage redis_cluster needs a URL")
	}
	// A brace in the prefix would change the hash tag of every key, and
	// "{}" would split a family's keys over several slots.
	if strings.ContainsAny(c.prefix(), "{}") {
		return fmt.Errorf("with storage redis_cluster, key_prefix must not contain braces, got %q", c.prefix())
	}
	return c.validate()
}

// OpenStore implements StorageBackend.
func (c *RedisClusterStorage) OpenStore(ctx caddy.Context) (store.Store, error) {
	return openRedis(ctx, &c.pooled, store.KindCluster, c.URL, c.prefix(), store.RedisOptions{})
}

// UnmarshalCaddyfile reads `storage redis_cluster <url> [{ key_prefix ...; store_timeout ... }]`.
func (c *RedisClusterStorage) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the backend's name
	if !d.NextArg() {
		return d.ArgErr()
	}
	c.URL = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return unmarshalSettings(d, &c.StorageSettings, func(d *caddyfile.Dispenser) (bool, error) {
		if d.Val() == "min_replicas_ack" {
			// WAIT counts the replicas of the server it runs on, and a cluster
			// client sends it to any master, not to the one that wrote.
			return true, d.Errf("min_replicas_ack works with storage redis and redis_sentinel, not redis_cluster")
		}
		return false, nil
	})
}

// openRedis returns the pooled store of a Redis URL. A first ping only
// informs: Redis may come up after Caddy, and the requests that need it
// answer 503 until it does.
func openRedis(ctx caddy.Context, p *pooled, kind, rawURL, prefix string, ack store.RedisOptions) (store.Store, error) {
	rawURL = caddy.NewReplacer().ReplaceKnown(rawURL, "")
	key := kind + "|" + rawURL + "|" + prefix
	if ack.MinReplicasAck != 0 {
		// Stores that wait differently are different stores.
		key += fmt.Sprintf("|ack=%d/%v", ack.MinReplicasAck, ack.AckTimeout)
	}
	log := ctx.Logger()
	return p.acquire(key, log, kind, func() (pooledStore, error) {
		client, where, err := store.NewRedisClient(kind, rawURL, ack)
		if err != nil {
			return pooledStore{}, err
		}
		st, err := store.NewRedisWithOptions(client, prefix, ack)
		if err != nil {
			_ = client.Close()
			return pooledStore{}, fmt.Errorf("storage %s: %w", kind, err)
		}
		pctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := client.Ping(pctx).Err(); err != nil {
			log.Warn("the "+kind+" store is not reachable yet", zap.String("where", where), zap.Error(err))
		}
		return pooledStore{Store: st, client: client}, nil
	})
}
