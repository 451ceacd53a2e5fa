package oauth

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-moserver/caddy-moserver/internal/store"
)

// Defaults of the failed-authentication budget.
const (
	DefaultAuthFailureLimit  = 10
	DefaultAuthFailureWindow = time.Minute
)

// clientIDCeilingFactor sets the client-id-wide count's ceiling, as a
// multiple of the budget of one (client id, address) pair. Past it, an
// address that has failed for that client id is refused even with the right
// secret (guessing from many addresses slows down), while an address that
// has not failed still gets its token: nobody can lock a client out.
const clientIDCeilingFactor = 100

// localModeFor is how long the budget is counted only on this instance
// after the store failed to answer; then the store is asked again.
const localModeFor = 5 * time.Second

// cleanFor is how long a counter the store reported at zero is trusted
// without asking again, on this instance, until this instance sees a failure
// for it. It keeps the store off the path of well-behaved clients. It only
// ever lets the right secret through: a wrong one is always counted.
const cleanFor = time.Second

// The counters a failed authentication goes to: one per (client id,
// address) pair, one per address, one per client id. Ids are hashed, so an
// attacker's long ids cost nothing; an IPv6 address counts per /64.
const (
	pairKeyPrefix = "pair:"
	ipKeyPrefix   = "ip:"
	// userInfoIPPrefix counts an address's unknown userinfo tokens apart
	// from its failed client authentications, so that one never refuses
	// the other.
	userInfoIPPrefix = "ui:"
	idKeyPrefix      = "id:"
	keyHashBytes     = 16 // of a SHA-256
)

// failureKeys name the counters of one authentication. They stay bytes
// until the store has to be asked (list), so a well-behaved client's request
// allocates nothing for them.
type failureKeys struct {
	pair [len(pairKeyPrefix) + 2*keyHashBytes]byte
	id   [len(idKeyPrefix) + 2*keyHashBytes]byte
	ip   string // the address (or IPv6 /64), without its prefix
	// ipPrefix is the address counter's prefix: ipKeyPrefix for client
	// authentication, userInfoIPPrefix for userinfo's unknown tokens.
	ipPrefix string
}

// The order of failureKeys.list and of the counts the store returns.
const (
	keyPair = iota
	keyIP
	keyID
)

// failureKeys returns the keys of an authentication of clientID by r.
func (s *Server) failureKeys(r *http.Request, clientID string) failureKeys {
	var k failureKeys
	k.ip, k.ipPrefix = addressKey(s.cfg.ClientIP(r)), ipKeyPrefix
	var buf [192]byte // keeps the usual id and address off the heap
	b := append(buf[:0], clientID...)
	sum := sha256.Sum256(b)
	copy(k.id[:], idKeyPrefix)
	hex.Encode(k.id[len(idKeyPrefix):], sum[:keyHashBytes])
	b = append(append(b, 0), k.ip...) // the NUL keeps ("a", "b1") from ("a1"...)
	sum = sha256.Sum256(b)
	copy(k.pair[:], pairKeyPrefix)
	hex.Encode(k.pair[len(pairKeyPrefix):], sum[:keyHashBytes])
	return k
}

// addressKey is what an address is counted as: IPv4 addresses (also when
// written as IPv4-mapped IPv6) as they are, IPv6 addresses by their /64,
// since one holder gets a whole /64. Anything else is used as given.
func addressKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	switch {
	case err != nil:
		return ip
	case a.Is4():
		return ip // the usual case, without an allocation
	case a.Is4In6():
		return a.Unmap().String()
	}
	p, _ := a.WithZone("").Prefix(64)
	return p.String()
}

// list returns the keys as the store knows them, in keyPair, keyIP, keyID order.
func (k *failureKeys) list() []string {
	return []string{string(k.pair[:]), k.ipPrefix + k.ip, string(k.id[:])}
}

// limiter keeps the failed-authentication budget: limit failures per
// (client id, address) pair and per address in each window, and a ceiling
// of clientIDCeilingFactor × limit per client id. Every failure is counted
// in the store with one atomic increment per key, and the decision is made
// on the incremented counts, so a burst gets exactly the budget. While the
// store cannot answer, failures are counted in a bounded table of this
// instance with the same budget (the table also caches the latest counts
// the store returned, which lets this instance refuse an address it knows
// to be over budget without asking anything).
type limiter struct {
	limit, ceiling int64
	window         time.Duration
	localFor       time.Duration // localModeFor; tests shorten it
	store          store.FailureCounter
	log            *zap.Logger

	local local
	clean cleanKeys
	// localUntil (Unix ns): the store failed; count on this instance only.
	localUntil atomic.Int64
}

func newLimiter(cfg *Config, log *zap.Logger) *limiter {
	return &limiter{
		limit:    int64(cfg.AuthFailureLimit),
		ceiling:  int64(cfg.AuthFailureLimit) * clientIDCeilingFactor,
		window:   cfg.AuthFailureWindow,
		localFor: localModeFor,
		store:    cfg.Store,
		log:      log,
		local:    local{max: maxLocalKeys},
	}
}

// off reports whether the budget is turned off.
func (l *limiter) off() bool { return l.limit < 0 }

// refused is the decision for the right secret, also made before any secret
// is compared: the pair or the address is over budget, or the client id is
// over its ceiling and this pair or address has failed for it.
func (l *limiter) refused(c [3]store.FailureCount) bool {
	return c[keyPair].Count >= l.limit || c[keyIP].Count >= l.limit ||
		(c[keyID].Count >= l.ceiling && (c[keyPair].Count > 0 || c[keyIP].Count > 0))
}

// failedOver is the decision for a failure, on the counts that include it.
func (l *limiter) failedOver(c [3]store.FailureCount) bool {
	return c[keyPair].Count > l.limit || c[keyIP].Count > l.limit || c[keyID].Count > l.ceiling
}

// early refuses, before the client is looked up or a secret compared, what
// this instance already knows to be over budget. It asks nothing.
func (l *limiter) early(fk *failureKeys, now time.Time) *Error {
	if l.off() {
		return nil
	}
	var buf [64]byte
	c, found := l.local.get(fk, buf[:0], now)
	if !found || !l.refused(c) {
		return nil
	}
	return l.tooMany(c)
}

// admit decides for a request with the right secret: 429 when its pair or
// address is over budget (so a guess past the budget learns nothing from
// the answer, right or wrong), nil otherwise.
func (l *limiter) admit(b *requestBudget, fk *failureKeys, now time.Time) *Error {
	if l.off() || l.clean.allClean(fk, now.UnixNano()) {
		return nil
	}
	if !l.inLocalMode(now) {
		keys := fk.list()
		counts, err := l.store.AuthFailures(b, keys)
		if err == nil {
			c := asCounts(counts)
			l.local.raise(keys, c, now)
			l.clean.remember(keys, c, now.UnixNano())
			if l.refused(c) {
				return l.tooMany(c)
			}
			return nil
		}
		l.storeFailed(now, err)
	}
	var buf [64]byte
	c, _ := l.local.get(fk, buf[:0], now)
	if l.refused(c) {
		return l.tooMany(c)
	}
	return nil
}

// fail counts a failed authentication and decides on the counts that
// include it: 429 past the budget, nil (the caller answers 401) within it.
func (l *limiter) fail(b *requestBudget, fk *failureKeys, now time.Time) *Error {
	if l.off() {
		return nil
	}
	keys := fk.list()
	l.clean.forget(keys)
	localCounts, full := l.local.incr(keys, l.window, now)
	if !l.inLocalMode(now) {
		counts, err := l.store.RecordAuthFailure(b, keys, l.window)
		if err == nil {
			c := asCounts(counts)
			l.local.raise(keys, c, now)
			if l.failedOver(c) {
				return l.tooMany(c)
			}
			return nil
		}
		l.storeFailed(now, err)
	}
	if full || l.failedOver(localCounts) {
		// A full table cannot count: refusing the failure keeps the budget
		// (the right secret is still admitted from a clean address).
		return l.tooMany(localCounts)
	}
	return nil
}

func (l *limiter) inLocalMode(now time.Time) bool { return now.UnixNano() < l.localUntil.Load() }

// storeFailed switches to counting on this instance for localModeFor.
func (l *limiter) storeFailed(now time.Time, err error) {
	l.localUntil.Store(now.Add(l.localFor).UnixNano())
	l.log.Warn("failed-authentication counters unavailable in the store; counting on this instance for a while",
		zap.Duration("for", l.localFor), errField(err))
}

// tooMany is the 429 answer, with the time until the counting windows
// have ended (the longest of them).
func (l *limiter) tooMany(c [3]store.FailureCount) *Error {
	wait := time.Second
	for i := range c {
		wait = max(wait, c[i].ResetIn)
	}
	secs := int((wait + time.Second - 1) / time.Second)
	return &Error{Status: http.StatusTooManyRequests, Code: "temporarily_unavailable", RetryAfter: secs, rateLimited: true,
		Description: "Too many failed client authentications; retry after " + strconv.Itoa(secs) + " seconds"}
}

// asCounts takes the three counts of failureKeys.list from a store answer.
func asCounts(counts []store.FailureCount) (c [3]store.FailureCount) {
	copy(c[:], counts)
	return c
}

// maxLocalKeys bounds the memory of the instance's own failure table
// (about 100 bytes a key).
const maxLocalKeys = 100_000

// local is the instance's own table of failure counts: what this instance
// counted, raised to what the store last reported.
type local struct {
	mu        sync.Mutex
	max       int
	counts    map[string]localCount
	lastSweep int64 // Unix ns
}

type localCount struct {
	n   int64
	exp int64 // Unix ns when the window ends
}

// get reads the counts of fk's keys; found is false when none is counted.
func (t *local) get(fk *failureKeys, buf []byte, now time.Time) (c [3]store.FailureCount, found bool) {
	ipKey := append(append(buf, fk.ipPrefix...), fk.ip...)
	ns := now.UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.counts) == 0 {
		return c, false
	}
	// Indexing with string(bytes) does not allocate.
	for i, k := range [3][]byte{fk.pair[:], ipKey, fk.id[:]} {
		if e, ok := t.counts[string(k)]; ok && e.exp > ns {
			c[i] = store.FailureCount{Count: e.n, ResetIn: time.Duration(e.exp - ns)}
			found = true
		}
	}
	return c, found
}

// incr counts one failure for each key. full reports that a key could not
// be counted because the table is full of live windows.
func (t *local) incr(keys []string, window time.Duration, now time.Time) (c [3]store.FailureCount, full bool) {
	ns := now.UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, k := range keys {
		e, ok := t.counts[k]
		if !ok || e.exp <= ns {
			if !ok && !t.makeRoom(ns) {
				full = true
				continue
			}
			e = localCount{exp: ns + int64(window)}
		}
		e.n++
		t.counts[k] = e
		if i < len(c) {
			c[i] = store.FailureCount{Count: e.n, ResetIn: time.Duration(e.exp - ns)}
		}
	}
	return c, full
}

// raise takes counts the store reported where they are higher than the
// table's, so that this instance knows what every instance counted.
func (t *local) raise(keys []string, c [3]store.FailureCount, now time.Time) {
	ns := now.UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, k := range keys {
		if i >= len(c) || c[i].Count == 0 {
			continue
		}
		e, ok := t.counts[k]
		if ok && e.exp > ns && e.n >= c[i].Count {
			continue
		}
		if !ok && !t.makeRoom(ns) {
			continue
		}
		t.counts[k] = localCount{n: c[i].Count, exp: ns + int64(c[i].ResetIn)}
	}
}

// makeRoom reports whether one more key fits, dropping ended windows when
// the table is full (at most once a second, so a full table costs little).
func (t *local) makeRoom(ns int64) bool {
	if t.counts == nil {
		t.counts = make(map[string]localCount)
	}
	if len(t.counts) < t.max {
		return true
	}
	if ns-t.lastSweep < int64(time.Second) {
		return false
	}
	t.lastSweep = ns
	for k, e := range t.counts {
		if e.exp <= ns {
			delete(t.counts, k)
		}
	}
	return len(t.counts) < t.max
}

// cleanKeys remembers pair and address counters that were at zero a moment ago.
type cleanKeys struct {
	mu    sync.Mutex
	until map[string]int64 // key -> Unix ns until which it is trusted
}

// maxCleanKeys bounds the memory of cleanKeys; expired entries are dropped
// when it is reached.
const maxCleanKeys = 100_000

// allClean reports whether the pair and the address were seen at zero
// within cleanFor.
func (c *cleanKeys) allClean(keys *failureKeys, now int64) bool {
	var buf [64]byte // the usual "ip:" key fits
	ipKey := append(append(buf[:0], keys.ipPrefix...), keys.ip...)
	c.mu.Lock()
	defer c.mu.Unlock()
	// Indexing with string(bytes) does not allocate.
	return c.until[string(keys.pair[:])] > now && c.until[string(ipKey)] > now
}

// remember notes the pair and address keys whose count is zero.
func (c *cleanKeys) remember(keys []string, counts [3]store.FailureCount, now int64) {
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
	for _, i := range []int{keyPair, keyIP} {
		if counts[i].Count == 0 {
			c.until[keys[i]] = now + int64(cleanFor)
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

// remoteIP is the default ClientIP: the host of the connection's address.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
