package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-moserver/caddy-moserver/internal/store"
)

// Defaults of the failed-authentication budget.
const (
	DefaultAuthFailureLimit  = 10
	DefaultAuthFailureWindow = time.Minute
)

// limiterPause is how long the budget is not checked after the store failed
// to answer, so that client credentials stay fast during a store outage.
const limiterPause = 5 * time.Second

// cleanFor is how long a counter the store reported at zero is trusted
// without asking again, on this instance, until this instance sees a failure
// for it. It keeps the store off the path of well-behaved clients; across N
// instances it lets an attacker at most about N attempts past the budget.
const cleanFor = time.Second

// cleanKeys remembers failure counters that were at zero a moment ago.
type cleanKeys struct {
	mu    sync.Mutex
	until map[string]int64 // key -> Unix ns until which it is trusted
}

// maxCleanKeys bounds the memory of cleanKeys; expired entries are dropped
// when it is reached.
const maxCleanKeys = 100_000

// allClean reports whether both keys were seen at zero within cleanFor.
func (c *cleanKeys) allClean(keys *failureKeys, now int64) bool {
	var buf [64]byte // the usual "ip:" key fits
	ipKey := append(append(buf[:0], ipKeyPrefix...), keys.ip...)
	c.mu.Lock()
	defer c.mu.Unlock()
	// Indexing with string(bytes) does not allocate.
	return c.until[string(keys.id[:])] > now && c.until[string(ipKey)] > now
}

// remember notes the keys whose count is zero.
func (c *cleanKeys) remember(keys []string, counts []store.FailureCount, now int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.until == nil {
		c.until = make(map[string]int64)
	}
	if len(c.until) >= maxCleanKeys {
		for k, t := range c.until {
			if t <= now {
				delete(c.until, k)
			}
		}
		if len(c.until) >= maxCleanKeys {
			clear(c.until)
		}
	}
	for i, k := range keys {
		if i < len(counts) && counts[i].Count == 0 {
			c.until[k] = now + int64(cleanFor)
		}
	}
}

// forget drops keys, after a failure.
func (c *cleanKeys) forget(keys []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		delete(c.until, k)
	}
}

// failureKeys name the counters a failed authentication of a client id
// from a request's address goes to: one per client id (hashed, so an
// attacker's long ids cost nothing) and one per client address. They stay
// bytes until the store has to be asked (list), so a well-behaved client's
// request allocates nothing for them.
type failureKeys struct {
	id [len(idKeyPrefix) + 2*idKeyHashBytes]byte // idKeyPrefix + hex
	ip string                                    // the address, without ipKeyPrefix
}

const (
	idKeyPrefix    = "id:"
	ipKeyPrefix    = "ip:"
	idKeyHashBytes = 16 // of the client id's SHA-256
)

// failureKeys returns the keys of an authentication of clientID by r.
func (s *Server) failureKeys(r *http.Request, clientID string) failureKeys {
	var k failureKeys
	var buf [128]byte // keeps the usual id off the heap
	sum := sha256.Sum256(append(buf[:0], clientID...))
	copy(k.id[:], idKeyPrefix)
	hex.Encode(k.id[len(idKeyPrefix):], sum[:idKeyHashBytes])
	k.ip = s.cfg.ClientIP(r)
	return k
}

// list returns the keys as the store knows them.
func (k *failureKeys) list() []string {
	return []string{string(k.id[:]), ipKeyPrefix + k.ip}
}

// throttled answers 429 when the client id or address has used up its
// failure budget. It is asked before any secret is compared. A store that
// cannot answer does not block authentication: the budget is a defence,
// not a dependency.
func (s *Server) throttled(ctx context.Context, fk *failureKeys) *Error {
	if s.cfg.AuthFailureLimit < 0 {
		return nil
	}
	now := time.Now().UnixNano()
	if now < s.limiterPausedUntil.Load() || s.clean.allClean(fk, now) {
		return nil
	}
	keys := fk.list()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	counts, err := s.cfg.Store.AuthFailures(ctx, keys)
	if err != nil {
		// Do not make every authentication wait for a store that is down.
		s.limiterPausedUntil.Store(time.Now().Add(limiterPause).UnixNano())
		s.log.Warn("failed-authentication counters unavailable; not limiting for a while",
			zap.Duration("pause", limiterPause), errField(err))
		return nil
	}
	s.clean.remember(keys, counts, now)
	var wait time.Duration
	for _, c := range counts {
		if c.Count >= int64(s.cfg.AuthFailureLimit) {
			wait = max(wait, c.ResetIn)
		}
	}
	if wait == 0 {
		return nil
	}
	s.cfg.Events.RateLimited()
	secs := int((wait + time.Second - 1) / time.Second)
	return &Error{Status: http.StatusTooManyRequests, Code: "temporarily_unavailable", RetryAfter: secs,
		Description: "Too many failed client authentications; retry after " + strconv.Itoa(secs) + " seconds"}
}

// recordFailure counts a failed authentication.
func (s *Server) recordFailure(ctx context.Context, fk *failureKeys) {
	if s.cfg.AuthFailureLimit < 0 {
		return
	}
	keys := fk.list()
	s.clean.forget(keys)
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	if time.Now().UnixNano() < s.limiterPausedUntil.Load() {
		return
	}
	if err := s.cfg.Store.RecordAuthFailure(ctx, keys, s.cfg.AuthFailureWindow); err != nil {
		s.log.Warn("could not count a failed authentication", errField(err))
	}
}

// remoteIP is the default ClientIP: the host of the connection's address.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
