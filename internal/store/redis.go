package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a Store kept in Redis (single node, Sentinel or Cluster through a
// go-redis UniversalClient). Create it with NewRedis.
//
// Keys, where {<family>} is the Cluster hash tag shared by a whole family:
//
//	<prefix>{<family>}:fam          hash: client, revoked (0|1), current (digest
//	                                of the active token), exp (Unix ms of the
//	                                key's expiry)
//	<prefix>{<family>}:rt:<digest>  hash: client, subject, scope, exp (Unix ms),
//	                                state (active|rotated); once rotated also
//	                                next (successor digest), rotated_at (Unix ms),
//	                                sealed (sealed successor), next_scope, next_exp
//	<prefix>jti:{<jti>}             string "1": a revoked access token
//
// Every key expires (PEXPIREAT/PX): a token at its own expiry, a family at
// its FamilyExpiresAt (never earlier than its tokens, extended by rotation,
// never shortened), a jti at the access token's exp. Rotation, refresh-token
// revocation and family revocation are each one Lua script, and nothing is
// ever scanned. Times are taken from the requests, not from Redis, except
// that Redis drops expired keys by its own clock.
type Redis struct {
	c      redis.UniversalClient
	prefix string
}

// NewRedis returns a store that keeps its keys under prefix in c. The prefix
// should not contain braces (they would change the Cluster hash tag). The
// store does not own c: Close leaves it open.
func NewRedis(c redis.UniversalClient, prefix string) *Redis {
	return &Redis{c: c, prefix: prefix}
}

func (s *Redis) famKey(family string) string {
	return s.prefix + "{" + family + "}:fam"
}

func (s *Redis) tokenKey(family, digest string) string {
	return s.prefix + "{" + family + "}:rt:" + digest
}

func (s *Redis) jtiKey(jti string) string {
	return s.prefix + "jti:{" + jti + "}"
}

// unavailable wraps a go-redis error so that errors.Is finds both
// ErrUnavailable and the cause.
func unavailable(op string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}

// createScript: KEYS fam, token; ARGV client, digest, subject, scope, exp,
// family exp. Returns 0 if the family exists already.
var createScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'client', ARGV[1], 'revoked', '0', 'current', ARGV[2], 'exp', ARGV[6])
redis.call('PEXPIREAT', KEYS[1], ARGV[6])
redis.call('HSET', KEYS[2], 'client', ARGV[1], 'subject', ARGV[3], 'scope', ARGV[4], 'exp', ARGV[5], 'state', 'active')
redis.call('PEXPIREAT', KEYS[2], ARGV[5])
return 1
`)

// rotateScript mirrors (*Memory).Rotate. KEYS fam, old token, new token;
// ARGV client, normalized scope, now, exp, family exp, grace (ms), sealed,
// new digest. Replies {outcome name, subject, scope, exp, sealed}.
var rotateScript = redis.NewScript(`
local function num(x) return tonumber(x) or 0 end
local function subset(req, granted)
  local have = {}
  for w in string.gmatch(granted, '%S+') do have[w] = true end
  for w in string.gmatch(req, '%S+') do
    if not have[w] then return false end
  end
  return true
end
local fam = redis.call('HMGET', KEYS[1], 'client', 'revoked', 'current', 'exp')
if not fam[1] then return {'not_found'} end
local t = redis.call('HMGET', KEYS[2], 'client', 'subject', 'scope', 'exp', 'state',
  'next', 'rotated_at', 'sealed', 'next_scope', 'next_exp')
if not t[1] then return {'not_found'} end
if t[1] ~= ARGV[1] then return {'wrong_client'} end
if fam[2] == '1' then return {'family_revoked'} end
local now = num(ARGV[3])
if num(t[4]) <= now then return {'expired'} end
local widened = ARGV[2] ~= '' and not subset(ARGV[2], t[3] or '')
if t[5] == 'rotated' then
  local grace = num(ARGV[6])
  if grace > 0 and now - num(t[7]) <= grace and fam[3] == t[6] and num(t[10]) > now then
    if widened then return {'scope_widened'} end
    return {'grace_retry', t[2] or '', t[9] or '', t[10], t[8] or ''}
  end
  redis.call('HSET', KEYS[1], 'revoked', '1')
  return {'replayed'}
end
if widened then return {'scope_widened'} end
local scope = ARGV[2]
if scope == '' then scope = t[3] or '' end
redis.call('HSET', KEYS[2], 'state', 'rotated', 'next', ARGV[8], 'rotated_at', ARGV[3],
  'sealed', ARGV[7], 'next_scope', scope, 'next_exp', ARGV[4])
redis.call('HSET', KEYS[3], 'client', t[1], 'subject', t[2] or '', 'scope', scope,
  'exp', ARGV[4], 'state', 'active')
redis.call('PEXPIREAT', KEYS[3], ARGV[4])
redis.call('HSET', KEYS[1], 'current', ARGV[8])
if num(ARGV[5]) > num(fam[4]) then
  redis.call('HSET', KEYS[1], 'exp', ARGV[5])
  redis.call('PEXPIREAT', KEYS[1], ARGV[5])
end
return {'rotated', t[2] or '', scope, ARGV[4]}
`)

// revokeRefreshScript: KEYS fam, token; ARGV client.
var revokeRefreshScript = redis.NewScript(`
local c = redis.call('HGET', KEYS[2], 'client')
if not c then return 'not_found' end
if c ~= ARGV[1] then return 'wrong_client' end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'revoked', '1') end
return 'revoked'
`)

// revokeFamilyScript: KEYS fam.
var revokeFamilyScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'revoked', '1') end
return 1
`)

// outcomeByName maps the names the rotate script replies with (the
// Outcome.String values) to outcomes.
var outcomeByName = func() map[string]Outcome {
	m := make(map[string]Outcome)
	for o := Rotated; o <= FamilyRevoked; o++ {
		m[o.String()] = o
	}
	return m
}()

// CreateFamily stores the family record and its first token atomically. It
// fails if the family id is empty, contains braces, or is already in use.
func (s *Redis) CreateFamily(ctx context.Context, f NewFamily) error {
	if !validFamilyID(f.FamilyID) {
		return errInvalidFamilyID
	}
	if f.Digest == "" {
		return errors.New("store: create family: empty digest")
	}
	exp := millis(f.ExpiresAt)
	famExp := max(millis(f.FamilyExpiresAt), exp)
	n, err := createScript.Run(ctx, s.c,
		[]string{s.famKey(f.FamilyID), s.tokenKey(f.FamilyID, f.Digest)},
		f.ClientID, f.Digest, f.Subject, f.Scope, exp, famExp).Int()
	if err != nil {
		return unavailable("create family", err)
	}
	if n == 0 {
		return errFamilyExists
	}
	return nil
}

// Rotate spends a refresh token and stores its successor in one script; see
// RotateRequest and Outcome for the rules.
func (s *Redis) Rotate(ctx context.Context, r RotateRequest) (RotateResult, error) {
	if err := checkRotate(r); err != nil {
		return RotateResult{}, err
	}
	if !validFamilyID(r.FamilyID) {
		return RotateResult{Outcome: NotFound}, nil
	}
	exp := millis(r.ExpiresAt)
	famExp := max(millis(r.FamilyExpiresAt), exp)
	reply, err := rotateScript.Run(ctx, s.c,
		[]string{
			s.famKey(r.FamilyID),
			s.tokenKey(r.FamilyID, r.OldDigest),
			s.tokenKey(r.FamilyID, r.NewDigest),
		},
		r.ClientID, normalizeScope(r.Scope), millis(r.Now), exp, famExp,
		graceMillis(r.Grace), r.Sealed, r.NewDigest).Slice()
	if err != nil {
		return RotateResult{}, unavailable("rotate", err)
	}
	return parseRotateReply(reply)
}

// parseRotateReply decodes {outcome name, subject, scope, exp, sealed}.
func parseRotateReply(reply []any) (RotateResult, error) {
	field := func(i int) string {
		if i < len(reply) {
			if s, ok := reply[i].(string); ok {
				return s
			}
		}
		return ""
	}
	o, ok := outcomeByName[field(0)]
	if !ok {
		return RotateResult{}, fmt.Errorf("%w: rotate: unexpected script reply %q", ErrUnavailable, field(0))
	}
	res := RotateResult{Outcome: o}
	if o != Rotated && o != GraceRetry {
		return res, nil
	}
	ms, err := strconv.ParseInt(field(3), 10, 64)
	if err != nil {
		return RotateResult{}, fmt.Errorf("%w: rotate: bad expiry in script reply: %w", ErrUnavailable, err)
	}
	res.Subject, res.Scope, res.ExpiresAt = field(1), field(2), time.UnixMilli(ms)
	if o == GraceRetry {
		res.Sealed = []byte(field(4))
	}
	return res, nil
}

// RevokeRefresh revokes the family of the token with the given digest if it
// belongs to clientID, in one script.
func (s *Redis) RevokeRefresh(ctx context.Context, familyID, digest, clientID string) (RevokeOutcome, error) {
	if !validFamilyID(familyID) {
		return RevokeNotFound, nil
	}
	res, err := revokeRefreshScript.Run(ctx, s.c,
		[]string{s.famKey(familyID), s.tokenKey(familyID, digest)}, clientID).Text()
	if err != nil {
		return 0, unavailable("revoke refresh token", err)
	}
	switch res {
	case "revoked":
		return FamilyRevokedNow, nil
	case "not_found":
		return RevokeNotFound, nil
	case "wrong_client":
		return RevokeWrongClient, nil
	}
	return 0, fmt.Errorf("%w: revoke refresh token: unexpected script reply %q", ErrUnavailable, res)
}

// RevokeFamily revokes a whole family by id; an unknown family is a no-op.
func (s *Redis) RevokeFamily(ctx context.Context, familyID string) error {
	if !validFamilyID(familyID) {
		return nil
	}
	if err := revokeFamilyScript.Run(ctx, s.c, []string{s.famKey(familyID)}).Err(); err != nil {
		return unavailable("revoke family", err)
	}
	return nil
}

// FamilyRevoked reports whether a family is revoked (false if unknown).
func (s *Redis) FamilyRevoked(ctx context.Context, familyID string) (bool, error) {
	if !validFamilyID(familyID) {
		return false, nil
	}
	v, err := s.c.HGet(ctx, s.famKey(familyID), "revoked").Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, unavailable("family revoked", err)
	}
	return v == "1", nil
}

// RevokeAccessToken denies the access token with this jti until exp; an exp
// already past stores nothing.
func (s *Redis) RevokeAccessToken(ctx context.Context, jti string, exp time.Time) error {
	ttl := time.Until(exp)
	if ttl <= 0 {
		return nil
	}
	// Round up to whole milliseconds: go-redis would send PX then.
	ttl = (ttl + time.Millisecond - 1).Truncate(time.Millisecond)
	if err := s.c.Set(ctx, s.jtiKey(jti), "1", ttl).Err(); err != nil {
		return unavailable("revoke access token", err)
	}
	return nil
}

// AccessTokenRevoked reports whether the jti was revoked and has not expired.
func (s *Redis) AccessTokenRevoked(ctx context.Context, jti string) (bool, error) {
	n, err := s.c.Exists(ctx, s.jtiKey(jti)).Result()
	if err != nil {
		return false, unavailable("access token revoked", err)
	}
	return n == 1, nil
}

// Close does nothing: the client belongs to the caller, who may share it.
func (s *Redis) Close() error { return nil }

var _ Store = (*Redis)(nil)
