package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// What the store keeps of an authorization code, keyed by a digest of the
// code (never the code): its binding, written when the authorize answer
// carried it, and what each exchange of it issued, so that a second
// exchange can revoke what the first one issued (RFC 6749 §4.1.2).

// CodeBinding is what the authorize request that produced a code carried,
// bound to the code at the edge: the exchange checks PKCE against it and
// puts its nonce in the id_token.
type CodeBinding struct {
	ClientID            string `json:"client_id"`
	RedirectURI         string `json:"redirect_uri,omitempty"`
	Nonce               string `json:"nonce,omitempty"`
	CodeChallenge       string `json:"code_challenge,omitempty"`
	CodeChallengeMethod string `json:"code_challenge_method,omitempty"`
}

// Redemption is what one exchange of an authorization code issued.
type Redemption struct {
	FamilyID string `json:"family_id,omitempty"` // the refresh family, if one was issued
	// AccessJTI and AccessExpiresAt identify a JWT access token.
	AccessJTI       string    `json:"jti,omitempty"`
	AccessExpiresAt time.Time `json:"exp,omitempty"`
	// SealedAccess is an opaque access token sealed with the code
	// (tokens.Seal), so only a presenter of the code can recover it to
	// delete it.
	SealedAccess []byte `json:"sealed_access,omitempty"`
}

// CodeRecords is the part of the store that keeps authorization-code
// bindings and redemptions.
type CodeRecords interface {
	// PutCodeBinding stores the binding of a code for ttl (the code's
	// lifetime); a second binding of the same code replaces the first.
	PutCodeBinding(ctx context.Context, codeDigest string, b CodeBinding, ttl time.Duration) error
	// CodeBinding returns the binding of a code, or nil and no error.
	CodeBinding(ctx context.Context, codeDigest string) (*CodeBinding, error)
	// AddRedemption records what an exchange of a code issued, kept for ttl.
	AddRedemption(ctx context.Context, codeDigest string, r Redemption, ttl time.Duration) error
	// Redemptions returns every redemption recorded for a code.
	Redemptions(ctx context.Context, codeDigest string) ([]Redemption, error)
}

// memCode is a code's records in the memory store.
type memCode struct {
	binding     *CodeBinding
	bindingExp  int64 // Unix ms
	redemptions []Redemption
	redeemExp   int64 // Unix ms
}

// PutCodeBinding implements CodeRecords.
func (m *Memory) PutCodeBinding(_ context.Context, codeDigest string, b CodeBinding, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.code(codeDigest)
	c.binding, c.bindingExp = &b, millis(m.clock())+max(ttl.Milliseconds(), 1)
	return nil
}

// CodeBinding implements CodeRecords.
func (m *Memory) CodeBinding(_ context.Context, codeDigest string) (*CodeBinding, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.codes[codeDigest]
	if c == nil || c.binding == nil || c.bindingExp <= millis(m.clock()) {
		return nil, nil
	}
	b := *c.binding
	return &b, nil
}

// AddRedemption implements CodeRecords.
func (m *Memory) AddRedemption(_ context.Context, codeDigest string, r Redemption, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.code(codeDigest)
	now := millis(m.clock())
	if c.redeemExp <= now {
		c.redemptions = nil
	}
	c.redemptions = append(c.redemptions, r)
	c.redeemExp = max(c.redeemExp, now+max(ttl.Milliseconds(), 1))
	return nil
}

// Redemptions implements CodeRecords.
func (m *Memory) Redemptions(_ context.Context, codeDigest string) ([]Redemption, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.codes[codeDigest]
	if c == nil || c.redeemExp <= millis(m.clock()) {
		return nil, nil
	}
	return append([]Redemption(nil), c.redemptions...), nil
}

// code returns the records of a code, creating them; m.mu must be held.
func (m *Memory) code(digest string) *memCode {
	c := m.codes[digest]
	if c == nil {
		c = &memCode{}
		m.codes[digest] = c
	}
	return c
}

// sweepCodes drops expired code records; m.mu must be held.
func (m *Memory) sweepCodes(now int64) {
	for d, c := range m.codes {
		if c.bindingExp <= now && c.redeemExp <= now {
			delete(m.codes, d)
		}
	}
}

// codeKey is where a code's records live: both keys of a code share its
// hash slot.
func (s *Redis) codeKey(codeDigest, kind string) string {
	return s.prefix + "code:{" + codeDigest + "}:" + kind
}

// bindScript stores a code's binding with its expiry. KEYS binding key;
// ARGV value, ttl ms.
var bindScript = newScript(`redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1`)

// PutCodeBinding implements CodeRecords.
func (s *Redis) PutCodeBinding(ctx context.Context, codeDigest string, b CodeBinding, ttl time.Duration) error {
	v, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("store: code binding: %w", err)
	}
	cmd, wait := s.change(ctx, bindScript, []string{s.codeKey(codeDigest, "b")}, v, max(ttl.Milliseconds(), 1))
	if err := cmd.Err(); err != nil {
		return unavailable("bind code", err)
	}
	return s.acked("bind code", wait)
}

// CodeBinding implements CodeRecords. Its GET goes through the
// autopipeliner, as the writes of an exchange do.
func (s *Redis) CodeBinding(ctx context.Context, codeDigest string) (*CodeBinding, error) {
	get := redis.NewStringCmd(ctx, "get", s.codeKey(codeDigest, "b"))
	err := s.roundTrip(ctx, []redis.Cmder{get})
	if err == nil {
		err = get.Err()
	}
	if err == redis.Nil {
		return nil, nil
	}
	if err != nil {
		return nil, unavailable("read code binding", err)
	}
	v, _ := get.Bytes()
	var b CodeBinding
	if err := json.Unmarshal(v, &b); err != nil {
		return nil, fmt.Errorf("store: code binding: %w", err)
	}
	return &b, nil
}

// redeemScript appends a redemption and sets the list's expiry in one
// atomic step, so a list never outlives it. KEYS list; ARGV value, ttl ms.
var redeemScript = newScript(`
redis.call('RPUSH', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1`)

// AddRedemption implements CodeRecords.
func (s *Redis) AddRedemption(ctx context.Context, codeDigest string, r Redemption, ttl time.Duration) error {
	v, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("store: redemption: %w", err)
	}
	cmd, wait := s.change(ctx, redeemScript, []string{s.codeKey(codeDigest, "r")}, v, max(ttl.Milliseconds(), 1))
	if err := cmd.Err(); err != nil {
		return unavailable("record redemption", err)
	}
	return s.acked("record redemption", wait)
}

// Redemptions implements CodeRecords.
func (s *Redis) Redemptions(ctx context.Context, codeDigest string) ([]Redemption, error) {
	vals, err := s.c.LRange(ctx, s.codeKey(codeDigest, "r"), 0, -1).Result()
	if err != nil {
		return nil, unavailable("read redemptions", err)
	}
	out := make([]Redemption, 0, len(vals))
	for _, v := range vals {
		var r Redemption
		if err := json.Unmarshal([]byte(v), &r); err != nil {
			return nil, fmt.Errorf("store: redemption: %w", err)
		}
		out = append(out, r)
	}
	return out, nil
}
