package caddymodule

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-moserver/caddy-moserver/internal/store"
)

// StorageConfig is a test's storage object of a moserver block, in the
// fields of the storage modules.
type StorageConfig struct {
	Type                  string
	URL                   string
	MinReplicasAck        int
	MinReplicasAckTimeout caddy.Duration
	KeyPrefix             string
	StoreTimeout          caddy.Duration
}

// fields are the module's own JSON fields (without "type").
func (c *StorageConfig) fields() map[string]any {
	m := map[string]any{}
	for k, v := range map[string]any{"url": c.URL, "min_replicas_ack": c.MinReplicasAck,
		"min_replicas_ack_timeout": c.MinReplicasAckTimeout, "key_prefix": c.KeyPrefix, "store_timeout": c.StoreTimeout} {
		switch v {
		case "", 0, caddy.Duration(0):
		default:
			m[k] = v
		}
	}
	return m
}

// raw is the storage object as a moserver block's JSON holds it.
func (c *StorageConfig) raw() json.RawMessage {
	m := c.fields()
	m["type"] = c.Type
	b, _ := json.Marshal(m)
	return b
}

// testContext is a configuration's context, as Caddy gives its modules.
func testContext(t *testing.T) caddy.Context {
	t.Helper()
	base, err := caddy.ProvisionContext(&caddy.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(base)
	t.Cleanup(cancel)
	return ctx
}

// loadStorage provisions and validates the storage module of cfg, as a
// moserver block loads it.
func loadStorage(ctx caddy.Context, cfg *StorageConfig) (StorageBackend, error) {
	kind := cfg.Type
	if kind == "" {
		kind = "memory"
	}
	b, _ := json.Marshal(cfg.fields())
	mod, err := ctx.LoadModuleByID("moserver.storage."+kind, b)
	if err != nil {
		return nil, err
	}
	return mod.(StorageBackend), nil
}

// acquireStore opens the store of cfg with the key prefix, as a moserver
// block does, and returns it with its key in the store pool.
func acquireStore(cfg *StorageConfig, prefix string, _ *caddy.Replacer, _ *zap.Logger) (store.Store, string, error) {
	c := *cfg
	c.KeyPrefix = prefix
	base, err := caddy.ProvisionContext(&caddy.Config{})
	if err != nil {
		return nil, "", err
	}
	ctx, _ := caddy.NewContext(base) // released through releaseStore
	b, err := loadStorage(ctx, &c)
	if err != nil {
		return nil, "", err
	}
	st, err := b.OpenStore(ctx)
	if err != nil {
		return nil, "", err
	}
	return st, b.(interface{ poolKey() string }).poolKey(), nil
}

// releaseStore gives back a store acquireStore opened.
func releaseStore(key string) error {
	_, err := stores.Delete(key)
	return err
}

// sameJSON reports whether two JSON objects hold the same members.
func sameJSON(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
