// Package ttlcache keeps values read from WordPress for a short time (a
// user's profile, a client's key): data that may be a little stale, never
// anything that decides whether a token is revoked.
package ttlcache

import (
	"sync"
	"time"
)

// Cache keeps values for a while, up to a number of entries; when full it
// drops the expired ones, then everything. Safe for concurrent use.
type Cache[K comparable, V any] struct {
	ttl time.Duration
	max int

	mu      sync.Mutex
	entries map[K]ttlEntry[V]
}

type ttlEntry[V any] struct {
	v   V
	exp time.Time
}

// New returns a cache that keeps a value for ttl, at most max of them.
func New[K comparable, V any](ttl time.Duration, max int) *Cache[K, V] {
	return &Cache[K, V]{ttl: ttl, max: max, entries: make(map[K]ttlEntry[V])}
}

// Get returns the value of k, if it is there and fresh.
func (c *Cache[K, V]) Get(k K, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok || !now.Before(e.exp) {
		var zero V
		return zero, false
	}
	return e.v, true
}

// Put keeps v for k for the cache's time.
func (c *Cache[K, V]) Put(k K, v V, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for key, e := range c.entries {
			if !now.Before(e.exp) {
				delete(c.entries, key)
			}
		}
		if len(c.entries) >= c.max {
			clear(c.entries)
		}
	}
	c.entries[k] = ttlEntry[V]{v: v, exp: now.Add(c.ttl)}
}

// Len returns how many entries are kept (expired ones included).
func (c *Cache[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
