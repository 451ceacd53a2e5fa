package caddymodule

import (
	"context"
	"fmt"
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

// pooledStore lets the usage pool close a store when its last user goes.
type pooledStore struct{ store.Store }

// Destruct implements caddy.Destructor.
func (p pooledStore) Destruct() error { return p.Close() }

// acquireStore returns the store the configuration names and the pool key to
// release it with.
func acquireStore(cfg *StorageConfig, prefix string, repl *caddy.Replacer, log *zap.Logger) (store.Store, string, error) {
	kind, rawURL := "memory", ""
	if cfg != nil && cfg.Type != "" {
		kind = cfg.Type
	}
	if kind == "redis" {
		rawURL = repl.ReplaceKnown(cfg.URL, "")
	}
	key := kind + "|" + rawURL + "|" + prefix
	v, loaded, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) {
		if kind == "memory" {
			log.Warn("moserver is using the in-memory store: refresh tokens and revocations do not survive a restart and are not shared between instances; use storage redis in production")
			return pooledStore{store.NewMemory()}, nil
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

func newRedisStore(rawURL, prefix string) (caddy.Destructor, error) {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("moserver: storage redis: %w", err)
	}
	client := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:     []string{opts.Addr},
		DB:        opts.DB,
		Username:  opts.Username,
		Password:  opts.Password,
		TLSConfig: opts.TLSConfig,
		// Fail fast when Redis is down: each request has its own time
		// budget and answers 503 rather than waiting on retries.
		DialTimeout:   500 * time.Millisecond,
		DialerRetries: 1,
		MaxRetries:    1,
		ReadTimeout:   time.Second,
		WriteTimeout:  time.Second,
	})
	// A first ping only informs: Redis may come up after Caddy, and requests
	// that need it answer 503 until it does.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		caddy.Log().Warn("moserver: Redis is not reachable yet", zap.String("addr", opts.Addr), zap.Error(err))
	}
	return pooledStore{store.NewRedis(client, prefix)}, nil
}

func releaseStore(key string) error {
	_, err := stores.Delete(key)
	return err
}
