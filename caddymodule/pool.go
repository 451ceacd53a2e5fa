package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-moserver/caddy-moserver/internal/store"
)

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

// acquireStore returns the store the configuration names and the pool key to
// release it with.
func acquireStore(cfg *StorageConfig, prefix string, repl *caddy.Replacer, log *zap.Logger) (store.Store, string, error) {
	kind, rawURL := "memory", ""
	if cfg != nil && cfg.Type != "" {
		kind = cfg.Type
	}
	if kind == "redis" || kind == "redis_cluster" {
		rawURL = repl.ReplaceKnown(cfg.URL, "")
	}
	key := kind + "|" + rawURL + "|" + prefix
	v, loaded, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) {
		if kind == "memory" {
			log.Warn("moserver is using the in-memory store: refresh tokens and revocations do not survive a restart and are not shared between instances; use storage redis in production")
			return pooledStore{Store: store.NewMemory()}, nil
		}
		if kind == "redis_cluster" {
			return newRedisClusterStore(rawURL, prefix)
		}
		return newRedisStore(rawURL, prefix)
	})
	if err != nil {
		return nil, "", err
	}
	if !loaded {
		log.Info("moserver store ready", zap.String("storage", kind))
	}
	return v.(pooledStore).Store, key, nil
}

// Fail-fast client settings: when Redis is down, each request has its own
// time budget and answers 503 rather than waiting on retries.
const (
	redisDialTimeout   = 500 * time.Millisecond
	redisDialerRetries = 1
	redisMaxRetries    = 1
	redisIOTimeout     = time.Second // read and write timeouts
)

// newRedisStore connects to a single Redis server named by a redis:// or
// rediss:// URL.
func newRedisStore(rawURL, prefix string) (caddy.Destructor, error) {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("moserver: storage redis: %w", err)
	}
	client := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:         []string{opts.Addr},
		DB:            opts.DB,
		Username:      opts.Username,
		Password:      opts.Password,
		TLSConfig:     opts.TLSConfig,
		DialTimeout:   redisDialTimeout,
		DialerRetries: redisDialerRetries,
		MaxRetries:    redisMaxRetries,
		ReadTimeout:   redisIOTimeout,
		WriteTimeout:  redisIOTimeout,
	})
	// A first ping only informs: Redis may come up after Caddy, and requests
	// that need it answer 503 until it does.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		caddy.Log().Warn("moserver: Redis is not reachable yet", zap.String("addr", opts.Addr), zap.Error(err))
	}
	return pooledStore{Store: store.NewRedis(client, prefix), client: client}, nil
}

// newRedisClusterStore connects to a Redis Cluster named by go-redis's
// cluster URL, redis://[user:pass@]host1:port?addr=host2:port&addr=host3:port
// (rediss:// for TLS): the seed nodes the client discovers the cluster from.
// The fail-fast settings of the single-node client apply to every option
// the URL leaves unset (dial_timeout, dialer_retries, max_retries,
// read_timeout, write_timeout); other URL options are kept as parsed.
func newRedisClusterStore(rawURL, prefix string) (caddy.Destructor, error) {
	opts, err := clusterOptions(rawURL)
	if err != nil {
		return nil, err
	}
	client := redis.NewClusterClient(opts)
	// As for a single node, a first ping only informs.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		caddy.Log().Warn("moserver: Redis Cluster is not reachable yet", zap.Strings("addrs", opts.Addrs), zap.Error(err))
	}
	return pooledStore{Store: store.NewRedis(client, prefix), client: client}, nil
}

// clusterOptions parses a cluster URL and fills in the fail-fast settings
// it leaves unset.
func clusterOptions(rawURL string) (*redis.ClusterOptions, error) {
	opts, err := redis.ParseClusterURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("moserver: storage redis_cluster: %w", err)
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = redisDialTimeout
	}
	if opts.DialerRetries == 0 {
		opts.DialerRetries = redisDialerRetries
	}
	if opts.MaxRetries == 0 {
		opts.MaxRetries = redisMaxRetries
	}
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = redisIOTimeout
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = redisIOTimeout
	}
	return opts, nil
}

func releaseStore(key string) error {
	_, err := stores.Delete(key)
	return err
}
