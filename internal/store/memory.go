package store

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"
)

// janitorInterval is how often the memory store drops expired entries that
// nobody touched since they expired.
const janitorInterval = time.Minute

// Memory is an in-process Store for a single instance: its state is lost on
// restart and not shared. It has the same semantics as the Redis store,
// including entries that disappear at their expiry (checked lazily on access
// and by a janitor goroutine that Close stops). Create it with NewMemory.
type Memory struct {
	mu       sync.Mutex
	families map[string]*memFamily
	tokens   map[memTokenKey]*memToken
	jtis     map[string]int64 // jti -> expiry in Unix ms
	clients  map[string]memClient
	fails    map[string]memFail
	codes    map[string]*memCode // code digest -> its binding and redemptions
	// index: client id -> familyIndexMember of each of its families, as
	// the Redis per-client sorted set.
	index map[string]map[string]struct{}

	clock     func() time.Time // wall clock for entry expiry (tests replace it)
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// memFamily mirrors the Redis family hash.
type memFamily struct {
	client  string
	revoked bool
	current string // digest of the family's active token
	created int64  // Unix ms, NewFamily.IssuedAt
	exp     int64  // Unix ms when the record disappears
}

// memClient mirrors the Redis client revoked-before key.
type memClient struct {
	before int64 // Unix ms: the client's tokens issued before it are revoked
	exp    int64 // Unix ms when the record disappears
}

type memTokenKey struct{ family, digest string }

// memToken mirrors the Redis token hash.
type memToken struct {
	client, subject, scope string
	exp                    int64 // Unix ms
	rotated                bool
	// Set when rotated: the successor and what a grace retry returns.
	next      string
	nextScope string
	nextExp   int64
	rotatedAt int64
	sealed    []byte
}

// NewMemory returns an empty memory store and starts its janitor; call Close
// to stop it.
func NewMemory() *Memory {
	m := &Memory{
		families: make(map[string]*memFamily),
		tokens:   make(map[memTokenKey]*memToken),
		jtis:     make(map[string]int64),
		clients:  make(map[string]memClient),
		fails:    make(map[string]memFail),
		codes:    make(map[string]*memCode),
		index:    make(map[string]map[string]struct{}),
		clock:    time.Now,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go m.janitor()
	return m
}

func (m *Memory) janitor() {
	defer close(m.done)
	t := time.NewTicker(janitorInterval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.sweep()
		}
	}
}

// sweep drops every expired entry.
func (m *Memory) sweep() {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := millis(m.clock())
	for id, f := range m.families {
		if f.exp <= now {
			m.dropFamily(id, f)
		}
	}
	for k, t := range m.tokens {
		if t.exp <= now {
			delete(m.tokens, k)
		}
	}
	for jti, exp := range m.jtis {
		if exp <= now {
			delete(m.jtis, jti)
		}
	}
	for id, c := range m.clients {
		if c.exp <= now {
			delete(m.clients, id)
		}
	}
	for k, f := range m.fails {
		if f.exp <= now {
			delete(m.fails, k)
		}
	}
	m.sweepCodes(now)
}

// family returns the live family record or nil; m.mu must be held.
func (m *Memory) family(id string) *memFamily {
	f := m.families[id]
	if f != nil && f.exp <= millis(m.clock()) {
		m.dropFamily(id, f)
		return nil
	}
	return f
}

// dropFamily deletes a family record and its client's index entry; m.mu
// must be held.
func (m *Memory) dropFamily(id string, f *memFamily) {
	delete(m.families, id)
	if idx := m.index[f.client]; idx != nil {
		delete(idx, familyIndexMember(f.created, id))
		if len(idx) == 0 {
			delete(m.index, f.client)
		}
	}
}

// token returns the live token record or nil; m.mu must be held.
func (m *Memory) token(family, digest string) *memToken {
	k := memTokenKey{family, digest}
	t := m.tokens[k]
	if t != nil && t.exp <= millis(m.clock()) {
		delete(m.tokens, k)
		return nil
	}
	return t
}

// CreateFamily stores the first refresh token of a new family. It fails if
// the family id is empty, contains braces, or is already in use.
func (m *Memory) CreateFamily(_ context.Context, f NewFamily) error {
	if !validFamilyID(f.FamilyID) {
		return errInvalidFamilyID
	}
	if f.Digest == "" {
		return errors.New("store: create family: empty digest")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.family(f.FamilyID) != nil {
		return errFamilyExists
	}
	exp := millis(f.ExpiresAt)
	created := millis(f.IssuedAt)
	m.families[f.FamilyID] = &memFamily{
		client:  f.ClientID,
		current: f.Digest,
		created: created,
		exp:     max(millis(f.FamilyExpiresAt), exp),
	}
	idx := m.index[f.ClientID]
	if idx == nil {
		idx = make(map[string]struct{})
		m.index[f.ClientID] = idx
	}
	idx[familyIndexMember(created, f.FamilyID)] = struct{}{}
	m.tokens[memTokenKey{f.FamilyID, f.Digest}] = &memToken{
		client:  f.ClientID,
		subject: strings.Clone(f.Subject),
		scope:   strings.Clone(f.Scope),
		exp:     exp,
	}
	return nil
}

// Rotate spends a refresh token and stores its successor, detecting replays;
// see RotateRequest and Outcome for the rules.
func (m *Memory) Rotate(_ context.Context, r RotateRequest) (RotateResult, error) {
	if err := checkRotate(r); err != nil {
		return RotateResult{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.family(r.FamilyID)
	if f == nil {
		return RotateResult{Outcome: NotFound}, nil
	}
	t := m.token(r.FamilyID, r.OldDigest)
	notBefore := max(millis(r.NotBefore), m.clientBefore(r.ClientID))
	switch {
	case t == nil:
		return RotateResult{Outcome: NotFound}, nil
	case t.client != r.ClientID:
		return RotateResult{Outcome: WrongClient}, nil
	case notBefore > 0 && f.created < notBefore:
		return RotateResult{Outcome: FamilyRevoked}, nil
	case f.revoked:
		return RotateResult{Outcome: FamilyRevoked}, nil
	}
	now := millis(r.Now)
	if t.exp <= now {
		return RotateResult{Outcome: Expired}, nil
	}
	scope := normalizeScope(r.Scope)
	widened := scope != "" && !scopeSubset(scope, t.scope)
	if t.rotated {
		grace := graceMillis(r.Grace)
		if grace > 0 && now-t.rotatedAt <= grace && f.current == t.next && t.nextExp > now {
			if widened {
				return RotateResult{Outcome: ScopeWidened}, nil
			}
			return RotateResult{
				Outcome:   GraceRetry,
				Subject:   t.subject,
				Scope:     t.nextScope,
				ExpiresAt: time.UnixMilli(t.nextExp),
				Sealed:    bytes.Clone(t.sealed),
			}, nil
		}
		f.revoked = true
		return RotateResult{Outcome: Replayed}, nil
	}
	if widened {
		return RotateResult{Outcome: ScopeWidened}, nil
	}
	if scope == "" {
		scope = t.scope
	}
	exp := millis(r.ExpiresAt)
	t.rotated = true
	// Strings from a request may be substrings of its whole body: keep
	// copies, not the bodies.
	scope = strings.Clone(scope)
	t.next, t.nextScope, t.nextExp = r.NewDigest, scope, exp
	t.rotatedAt = now
	t.sealed = bytes.Clone(r.Sealed)
	m.tokens[memTokenKey{strings.Clone(r.FamilyID), r.NewDigest}] = &memToken{
		client:  t.client,
		subject: t.subject,
		scope:   scope,
		exp:     exp,
	}
	f.current = r.NewDigest
	f.exp = max(f.exp, millis(r.FamilyExpiresAt), exp)
	return RotateResult{
		Outcome:   Rotated,
		Subject:   t.subject,
		Scope:     scope,
		ExpiresAt: time.UnixMilli(exp),
	}, nil
}

// RevokeRefresh revokes the family of the token with the given digest if it
// belongs to clientID.
func (m *Memory) RevokeRefresh(_ context.Context, familyID, digest, clientID string) (RevokeOutcome, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.token(familyID, digest)
	switch {
	case t == nil:
		return RevokeNotFound, nil
	case t.client != clientID:
		return RevokeWrongClient, nil
	}
	if f := m.family(familyID); f != nil {
		f.revoked = true
	}
	return FamilyRevokedNow, nil
}

// RevokeFamily revokes a whole family by id; an unknown family is a no-op.
func (m *Memory) RevokeFamily(_ context.Context, familyID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if f := m.family(familyID); f != nil {
		f.revoked = true
	}
	return nil
}

// FamilyRevoked reports whether a family is revoked (false if unknown).
func (m *Memory) FamilyRevoked(_ context.Context, familyID string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.family(familyID)
	return f != nil && f.revoked, nil
}

// RevokeAccessToken denies the access token with this jti until exp; an exp
// already past stores nothing.
func (m *Memory) RevokeAccessToken(_ context.Context, jti string, exp time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := millis(exp); e > millis(m.clock()) {
		m.jtis[strings.Clone(jti)] = e
	}
	return nil
}

// jtiRevoked reports whether a live revocation of jti exists; m.mu must be
// held.
func (m *Memory) jtiRevoked(jti string) bool {
	exp, ok := m.jtis[jti]
	if ok && exp <= millis(m.clock()) {
		delete(m.jtis, jti)
		ok = false
	}
	return ok
}

// clientBefore returns the client's live revoked-before time in Unix ms, 0
// if none; m.mu must be held.
func (m *Memory) clientBefore(clientID string) int64 {
	c, ok := m.clients[clientID]
	if ok && c.exp <= millis(m.clock()) {
		delete(m.clients, clientID)
		return 0
	}
	return c.before
}

// CheckAccess reports the revocation state of one access token; see Store.
func (m *Memory) CheckAccess(_ context.Context, jti, familyID, clientID string) (AccessState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var st AccessState
	st.JTIRevoked = m.jtiRevoked(jti)
	if familyID != "" {
		f := m.family(familyID)
		st.FamilyRevoked = f != nil && f.revoked
	}
	st.ClientRevokedBefore = fromMillis(m.clientBefore(clientID))
	return st, nil
}

// RevokeClient records that the client's tokens issued before before are
// revoked, keeping the latest such time for at least keep; see Store.
func (m *Memory) RevokeClient(_ context.Context, clientID string, before time.Time, keep time.Duration) error {
	if keep <= 0 {
		return errInvalidKeep
	}
	b := millis(before)
	if b <= 0 {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.clientBefore(clientID) // drops an expired record
	c := m.clients[clientID]
	m.clients[clientID] = memClient{
		before: max(cur, b),
		exp:    max(c.exp, millis(m.clock())+keepMillis(keep)),
	}
	return nil
}

// RefreshInfo describes the refresh token with the given digest; false when
// it or its family is unknown or expired.
func (m *Memory) RefreshInfo(_ context.Context, familyID, digest string) (RefreshInfo, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.family(familyID)
	if f == nil {
		return RefreshInfo{}, false, nil
	}
	t := m.token(familyID, digest)
	if t == nil {
		return RefreshInfo{}, false, nil
	}
	return RefreshInfo{
		ClientID:  t.client,
		Subject:   t.subject,
		Scope:     t.scope,
		IssuedAt:  fromMillis(f.created),
		ExpiresAt: time.UnixMilli(t.exp),
		Active:    !t.rotated && !f.revoked,
	}, true, nil
}

// ListFamilies returns one page of the client's families; see Store.
func (m *Memory) ListFamilies(_ context.Context, clientID string, q FamilyQuery) (FamilyPage, error) {
	if err := checkFamilyQuery(q); err != nil {
		return FamilyPage{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	members := make([]string, 0, len(m.index[clientID]))
	for member := range m.index[clientID] {
		if member > q.After {
			members = append(members, member)
		}
	}
	slices.Sort(members)
	before := m.clientBefore(clientID)
	page := FamilyPage{ClientRevokedBefore: fromMillis(before)}
	if len(members) > q.Limit {
		members = members[:q.Limit]
		page.Next = members[len(members)-1]
	}
	page.Families = make([]FamilySummary, 0, len(members))
	for _, member := range members {
		_, id, _ := parseFamilyIndexMember(member)
		f := m.family(id) // drops an expired family and its index entry
		if f == nil {
			continue
		}
		revoked := f.revoked || f.created < before
		if revoked && !q.IncludeRevoked {
			continue
		}
		sum := FamilySummary{
			FamilyID:  id,
			CreatedAt: fromMillis(f.created),
			ExpiresAt: time.UnixMilli(f.exp),
			Revoked:   revoked,
		}
		if t := m.token(id, f.current); t != nil {
			sum.Subject, sum.Scope = t.subject, t.scope
		}
		page.Families = append(page.Families, sum)
	}
	return page, nil
}

// Close stops the janitor. It is safe to call more than once; the store
// still answers afterwards but no longer sweeps.
func (m *Memory) Close() error {
	m.closeOnce.Do(func() {
		close(m.stop)
		<-m.done
	})
	return nil
}

var _ Store = (*Memory)(nil)
