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
//	                                key's expiry), created (Unix ms,
//	                                NewFamily.IssuedAt; absent in families
//	                                written before it was stored: read as 0)
//	<prefix>{<family>}:rt:<digest>  hash: client, subject, scope, exp (Unix ms),
//	                                state (active|rotated); once rotated also
//	                                next (successor digest), rotated_at (Unix ms),
//	                                sealed (sealed successor), next_scope, next_exp
//	<prefix>jti:{<jti>}             string "1": a revoked access token
//	<prefix>client:{<client>}:rb    string: Unix ms; the client's tokens issued
//	                                before it are revoked (RevokeClient)
//	<prefix>client:{<client>}:fams  sorted set, all scores 0: the client's
//	                                families as familyIndexMember
//	                                (creation time, id), for ListFamilies
//
// Every key expires (PEXPIREAT/PX/PEXPIRE): a token at its own expiry, a
// family at its FamilyExpiresAt (never earlier than its tokens, extended by
// rotation, never shortened), a jti at the access token's exp, a client's
// revoked-before time after the longest keep it was given (extended, never
// shortened), a client's family index with its latest family (extended by
// creation and rotation: PEXPIREAT NX, then GT). Rotation, refresh-token revocation, family revocation and
// client revocation are each one Lua script. CreateFamily sends its index
// entry, and Rotate its read of the client's revoked-before time and the
// index's new expiry, in the same round trip as the script (other slots: a
// Cluster client splits a pipeline by node); CheckAccess is one pipeline;
// concurrent calls share their round trips (see NewRedis);
// RefreshInfo is one MULTI/EXEC of two reads in the family's slot. Nothing is
// ever scanned. Times are taken from the requests, not from Redis, except
// that Redis drops expired keys by its own clock.
//
// With RedisOptions.MinReplicasAck (NewRedisWithOptions), every call that
// changes state is one pipeline of its script (or SET) and a WAIT on the
// same connection, and fails with ErrUnavailable unless enough replicas
// acknowledged the change; see RedisOptions.
type Redis struct {
	c          redis.UniversalClient
	ap         *redis.AutoPipeliner // see roundTrip; nil with MinReplicasAck
	prefix     string
	ack        int           // RedisOptions.MinReplicasAck; 0: no WAIT
	ackTimeout time.Duration // RedisOptions.AckTimeout with its default
}

// NewRedis returns a store that keeps its keys under prefix in c. The prefix
// should not contain braces (they would change the Cluster hash tag). The
// store does not own c: Close leaves it open.
//
// The store sends the commands of its per-request calls (CreateFamily,
// Rotate, CheckAccess and the revocation scripts) through c's autopipeliner
// (go-redis AsyncAutoPipeline, which c owns and closes), so that concurrent
// requests share writes to and reads from Redis: under load that saves
// about a third of the CPU a refresh costs Redis, and syscalls in Caddy.
// Should c not offer one, they go as plain pipelines.
func NewRedis(c redis.UniversalClient, prefix string) *Redis {
	s := &Redis{c: c, prefix: prefix}
	if ap, err := c.AsyncAutoPipeline(); err == nil {
		s.ap = ap
	}
	return s
}

// DefaultAckTimeout is the RedisOptions.AckTimeout used when it is zero.
const DefaultAckTimeout = 500 * time.Millisecond

// ackReadMargin is how much longer than AckTimeout the client's read
// timeout must be, so that the reply of a WAIT that ran into its timeout is
// still read rather than timed out (go-redis would then send the whole
// pipeline again, and a rotation run twice is a replay).
const ackReadMargin = 250 * time.Millisecond

// ErrNotReplicated is wrapped, together with ErrUnavailable, by the error of
// a call whose change fewer than RedisOptions.MinReplicasAck replicas
// acknowledged in time.
var ErrNotReplicated = errors.New("change not acknowledged by enough replicas")

// RedisOptions tunes a Redis store. The zero value is NewRedis.
type RedisOptions struct {
	// MinReplicasAck, when positive, is how many replicas must acknowledge
	// every change before a call reports it done: CreateFamily, Rotate
	// (when it rotated, revoked a replayed family or answers a grace
	// retry), RevokeRefresh, RevokeFamily, RevokeClient and
	// RevokeAccessToken each send their script (or SET) and
	// `WAIT MinReplicasAck AckTimeout` in one pipeline on one connection.
	// When fewer replicas acknowledge within AckTimeout, the call returns
	// an error wrapping ErrUnavailable and ErrNotReplicated, although the
	// primary has made the change: callers answer 503, never hand out a
	// token that is not on a replica, and never acknowledge a revocation
	// that is not. A rotation that failed so is spent on the primary: the
	// client's retry with the same token is a grace retry within
	// RotateRequest.Grace (which then returns the same successor once it is
	// replicated) and a replay otherwise, so use a grace period with it.
	// Reads and RecordAuthFailure do not wait.
	//
	// It needs a client that talks to one primary, a *redis.Client (single
	// server, or Sentinel through redis.NewFailoverClient): WAIT counts the
	// writes of its own connection on its own server, and a Cluster client
	// routes the keyless WAIT to any master, so NewRedisWithOptions refuses
	// a ClusterClient. It also needs the client's read timeout to exceed
	// AckTimeout by 250 ms.
	MinReplicasAck int
	// AckTimeout bounds each WAIT; zero means DefaultAckTimeout.
	AckTimeout time.Duration
}

// NewRedisWithOptions is NewRedis with options; see RedisOptions for what
// it refuses.
func NewRedisWithOptions(c redis.UniversalClient, prefix string, o RedisOptions) (*Redis, error) {
	if o.MinReplicasAck < 0 || o.AckTimeout < 0 {
		return nil, errors.New("store: min replicas ack and its timeout must not be negative")
	}
	if o.MinReplicasAck == 0 {
		return NewRedis(c, prefix), nil
	}
	// No autopipeliner: a WAIT must follow its change on the same connection.
	s := &Redis{c: c, prefix: prefix}
	client, ok := c.(*redis.Client)
	if !ok {
		return nil, fmt.Errorf("store: min replicas ack needs a single-server or Sentinel client (*redis.Client), not %T: WAIT must reach the primary that made the change", c)
	}
	s.ack, s.ackTimeout = o.MinReplicasAck, o.AckTimeout
	if s.ackTimeout == 0 {
		s.ackTimeout = DefaultAckTimeout
	}
	// WAIT takes whole milliseconds, and 0 would mean "wait forever".
	s.ackTimeout = max(s.ackTimeout.Round(time.Millisecond), time.Millisecond)
	if rt := client.Options().ReadTimeout; rt > 0 && rt < s.ackTimeout+ackReadMargin {
		return nil, fmt.Errorf("store: the client's read timeout %v must exceed the replica ack timeout %v by at least %v",
			rt, s.ackTimeout, ackReadMargin)
	}
	return s, nil
}

// waitFlag tells a script whether a WAIT follows it ("1") or not ("0").
func (s *Redis) waitFlag() string {
	if s.ack > 0 {
		return "1"
	}
	return "0"
}

// change runs a script that may change state, in one round trip (see
// roundTrip). Without MinReplicasAck wait is nil. With it, the script and a
// WAIT are one pipeline, so that they share one connection of one server and WAIT
// covers what the script wrote (WAIT counts the replicas that have
// acknowledged the replication offset of the connection's last write).
// The caller checks wait with acked when the script changed something.
func (s *Redis) change(ctx context.Context, script luaScript, keys []string, args ...any) (cmd, wait *redis.Cmd) {
	return s.changeWith(ctx, nil, script, keys, args...)
}

// changeWith is change with more commands in the same round trip: extra
// are plain commands sent after the script, whose replies the caller
// reads, but only when cmd has no error (cmd carries the round trip's
// error). The script goes first so that it is always in the first batch
// the call's commands are split into (see roundTrip): its reply is the
// one a timeout loses, never one delayed behind the others. They are sent
// once; when the server does not have the script yet, only the script
// (and the WAIT) is sent again. The WAIT follows them all.
func (s *Redis) changeWith(ctx context.Context, extra []redis.Cmder, script luaScript, keys []string, args ...any) (cmd, wait *redis.Cmd) {
	send := func(extra []redis.Cmder, load bool) (*redis.Cmd, *redis.Cmd) {
		name, first := "evalsha", script.hash
		if load {
			name, first = "eval", script.src
		}
		full := make([]any, 0, 3+len(keys)+len(args))
		full = append(full, name, first, len(keys))
		for _, k := range keys {
			full = append(full, k)
		}
		full = append(full, args...)
		cmd := redis.NewCmd(ctx, full...)
		cmds := append([]redis.Cmder{cmd}, extra...)
		var wait *redis.Cmd
		if s.ack > 0 {
			wait = s.waitCmd(ctx)
			cmds = append(cmds, wait)
		}
		if err := s.roundTrip(ctx, cmds); err != nil {
			failed := redis.NewCmd(ctx)
			failed.SetErr(err)
			return failed, nil
		}
		return cmd, wait
	}
	cmd, wait = send(extra, false)
	if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
		// First use on this server (scripts are not replicated: also the
		// first use after a failover): send the script itself. The WAIT of
		// the first pipeline ran for nothing, which costs up to AckTimeout
		// once per script when replicas lag.
		cmd, wait = send(nil, true)
	}
	return cmd, wait
}

// roundTrip sends cmds in one round trip and returns nil once each has its
// reply or error, or ctx's error when ctx ends first: then no command of
// cmds may be read, as a batch still in flight may fill them in, and each
// may or may not run (as with a reply lost to a timeout; nothing is ever
// sent twice).
//
// Through the autopipeliner, cmds join the commands of concurrent calls in
// batches (one write, one read, one wake-up of Redis for each batch); they
// keep their order but may be split over consecutive batches, so cmds must
// not depend on running back to back. Without it (MinReplicasAck: a WAIT must
// be on the connection of the change it waits for) they are a pipeline of
// their own.
func (s *Redis) roundTrip(ctx context.Context, cmds []redis.Cmder) error {
	if s.ap == nil {
		pipe := s.c.Pipeline()
		for _, c := range cmds {
			_ = pipe.Process(ctx, c)
		}
		_, _ = pipe.Exec(ctx) // each command carries its own error
		return nil
	}
	var buf [4]redis.AutoFuture
	futures := buf[:0]
	for _, c := range cmds {
		futures = append(futures, s.ap.Submit(ctx, c))
	}
	for _, f := range futures {
		if err := f.WaitContext(ctx); err != nil && err == ctx.Err() {
			return err
		}
	}
	return nil
}

// luaScript is a Lua script and its SHA-1, for EVALSHA and EVAL.
type luaScript struct{ src, hash string }

func newScript(src string) luaScript {
	return luaScript{src: src, hash: redis.NewScript(src).Hash()}
}

// waitCmd is `WAIT MinReplicasAck AckTimeout`, to follow a change.
func (s *Redis) waitCmd(ctx context.Context) *redis.Cmd {
	return redis.NewCmd(ctx, "wait", s.ack, s.ackTimeout.Milliseconds())
}

// acked checks the WAIT that followed a change (nil: none was asked for).
func (s *Redis) acked(op string, wait *redis.Cmd) error {
	if wait == nil {
		return nil
	}
	n, err := wait.Int64()
	if err != nil {
		return unavailable(op, fmt.Errorf("wait for replicas: %w", err))
	}
	if n < int64(s.ack) {
		return unavailable(op, fmt.Errorf("%w: %d of %d within %v", ErrNotReplicated, n, s.ack, s.ackTimeout))
	}
	return nil
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

func (s *Redis) clientKey(clientID string) string {
	return s.prefix + "client:{" + clientID + "}:rb"
}

func (s *Redis) familyIndexKey(clientID string) string {
	return s.prefix + "client:{" + clientID + "}:fams"
}

// unavailable wraps a go-redis error so that errors.Is finds both
// ErrUnavailable and the cause.
func unavailable(op string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}

// createScript: KEYS fam, token; ARGV client, digest, subject, scope, exp,
// family exp, created. Returns 0 if the family exists already.
var createScript = newScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'client', ARGV[1], 'revoked', '0', 'current', ARGV[2], 'exp', ARGV[6],
  'created', ARGV[7])
redis.call('PEXPIREAT', KEYS[1], ARGV[6])
redis.call('HSET', KEYS[2], 'client', ARGV[1], 'subject', ARGV[3], 'scope', ARGV[4], 'exp', ARGV[5], 'state', 'active')
redis.call('PEXPIREAT', KEYS[2], ARGV[5])
return 1
`)

// rotateScript mirrors (*Memory).Rotate. KEYS fam, old token, new token;
// ARGV client, normalized scope, now, exp, family exp, grace (ms), sealed,
// new digest, not before (Unix ms, 0 for none), wait flag. Replies
// {outcome name, subject, scope, exp, sealed, family created (Unix ms)};
// not_found and wrong_client reply the name only. With the wait flag "1", a
// grace retry rewrites the family's current digest unchanged: a write, so
// that the WAIT after the script covers the original rotation (made on
// another connection, whose WAIT may have failed) before its successor is
// handed out again.
var rotateScript = newScript(`
local function num(x) return tonumber(x) or 0 end
local function subset(req, granted)
  local have = {}
  for w in string.gmatch(granted, '%S+') do have[w] = true end
  for w in string.gmatch(req, '%S+') do
    if not have[w] then return false end
  end
  return true
end
local fam = redis.call('HMGET', KEYS[1], 'client', 'revoked', 'current', 'exp', 'created')
if not fam[1] then return {'not_found'} end
local t = redis.call('HMGET', KEYS[2], 'client', 'subject', 'scope', 'exp', 'state')
if not t[1] then return {'not_found'} end
if t[1] ~= ARGV[1] then return {'wrong_client'} end
local function out(o, sub, sc, exp, sealed)
  return {o, sub or '', sc or '', exp or '', sealed or '', fam[5] or '0'}
end
local notbefore = num(ARGV[9])
if notbefore > 0 and num(fam[5]) < notbefore then return out('family_revoked') end
if fam[2] == '1' then return out('family_revoked') end
local now = num(ARGV[3])
if num(t[4]) <= now then return out('expired') end
local widened = ARGV[2] ~= '' and not subset(ARGV[2], t[3] or '')
if t[5] == 'rotated' then
  local r = redis.call('HMGET', KEYS[2], 'next', 'rotated_at', 'sealed', 'next_scope', 'next_exp')
  t[6], t[7], t[8], t[9], t[10] = r[1], r[2], r[3], r[4], r[5]
  local grace = num(ARGV[6])
  if grace > 0 and now - num(t[7]) <= grace and fam[3] == t[6] and num(t[10]) > now then
    if widened then return out('scope_widened') end
    if ARGV[10] == '1' then redis.call('HSET', KEYS[1], 'current', fam[3]) end
    return out('grace_retry', t[2], t[9], t[10], t[8])
  end
  redis.call('HSET', KEYS[1], 'revoked', '1')
  return out('replayed')
end
if widened then return out('scope_widened') end
local scope = ARGV[2]
if scope == '' then scope = t[3] or '' end
redis.call('HSET', KEYS[2], 'state', 'rotated', 'next', ARGV[8], 'rotated_at', ARGV[3],
  'sealed', ARGV[7], 'next_scope', scope, 'next_exp', ARGV[4])
redis.call('HSET', KEYS[3], 'client', t[1], 'subject', t[2] or '', 'scope', scope,
  'exp', ARGV[4], 'state', 'active')
redis.call('PEXPIREAT', KEYS[3], ARGV[4])
if num(ARGV[5]) > num(fam[4]) then
  redis.call('HSET', KEYS[1], 'current', ARGV[8], 'exp', ARGV[5])
  redis.call('PEXPIREAT', KEYS[1], ARGV[5])
else
  redis.call('HSET', KEYS[1], 'current', ARGV[8])
end
return out('rotated', t[2], scope, ARGV[4])
`)

// revokeRefreshScript: KEYS fam, token; ARGV client.
var revokeRefreshScript = newScript(`
local c = redis.call('HGET', KEYS[2], 'client')
if not c then return 'not_found' end
if c ~= ARGV[1] then return 'wrong_client' end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'revoked', '1') end
return 'revoked'
`)

// revokeFamilyScript: KEYS fam.
var revokeFamilyScript = newScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'revoked', '1') end
return 1
`)

// revokeClientScript: KEYS client; ARGV before (Unix ms), keep (ms), wait
// flag. Keeps the later of the stored and the given time, and a TTL of at
// least keep (a key without TTL, never written by this store, keeps none).
// With the wait flag "1" a call that changes nothing rewrites the stored
// time unchanged, so that the WAIT after it covers the earlier change.
var revokeClientScript = newScript(`
local ttl = redis.call('PTTL', KEYS[1])
local raw = redis.call('GET', KEYS[1])
local cur = tonumber(raw)
local wrote = false
if not cur or cur < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
  wrote = true
end
if ttl ~= -1 and ttl < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  wrote = true
end
if not wrote and ARGV[3] == '1' then
  redis.call('SET', KEYS[1], raw, 'KEEPTTL')
end
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

// CreateFamily stores the family record and its first token atomically,
// and, in the same pipeline, the family's entry in its client's index. It
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
	created := millis(f.IssuedAt)
	key := s.familyIndexKey(f.ClientID)
	index := []redis.Cmder{
		redis.NewIntCmd(ctx, "zadd", key, 0, familyIndexMember(created, f.FamilyID)),
		redis.NewCmd(ctx, "pexpireat", key, famExp, "nx"),
		redis.NewCmd(ctx, "pexpireat", key, famExp, "gt"),
	}
	cmd, wait := s.changeWith(ctx, index, createScript,
		[]string{s.famKey(f.FamilyID), s.tokenKey(f.FamilyID, f.Digest)},
		f.ClientID, f.Digest, f.Subject, f.Scope, exp, famExp, created)
	n, err := cmd.Int()
	if err != nil {
		return unavailable("create family", err)
	}
	if err := firstErr(index); err != nil {
		// The family exists but is not listed; the caller hands out no
		// token (503), and the family expires unused.
		return unavailable("create family: index", err)
	}
	if n == 0 {
		return errFamilyExists
	}
	return s.acked("create family", wait)
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
	before := redis.NewStringCmd(ctx, "get", s.clientKey(r.ClientID))
	index := redis.NewCmd(ctx, "pexpireat", s.familyIndexKey(r.ClientID), famExp, "gt")
	cmd, wait := s.changeWith(ctx, []redis.Cmder{before, index}, rotateScript,
		[]string{
			s.famKey(r.FamilyID),
			s.tokenKey(r.FamilyID, r.OldDigest),
			s.tokenKey(r.FamilyID, r.NewDigest),
		},
		r.ClientID, normalizeScope(r.Scope), millis(r.Now), exp, famExp,
		graceMillis(r.Grace), r.Sealed, r.NewDigest, millis(r.NotBefore), s.waitFlag())
	reply, err := cmd.Slice()
	if err != nil {
		return RotateResult{}, unavailable("rotate", err)
	}
	res, created, err := parseRotateReply(reply)
	if err != nil {
		return res, err
	}
	// index's error is ignored: a rotation that happened must be answered,
	// and an index that expires too early only shortens ListFamilies.
	_ = index
	if res.Outcome != NotFound && res.Outcome != WrongClient {
		revokedBefore, err := s.rotatedClientBefore(ctx, r.ClientID, before)
		if err != nil {
			return RotateResult{}, err
		}
		if created < revokedBefore {
			// The client was revoked after this family was created. The
			// script may have stored a successor; it is never handed out,
			// and marking the family revoked also stops its access tokens
			// at the edge once the client's revoked-before time expires.
			// Should that write fail, every later rotation is still
			// refused by the revoked-before time.
			if res.Outcome == Rotated {
				_ = s.RevokeFamily(ctx, r.FamilyID)
			}
			return RotateResult{Outcome: FamilyRevoked}, nil
		}
	}
	switch res.Outcome {
	case Rotated, GraceRetry, Replayed: // the script wrote
		if err := s.acked("rotate", wait); err != nil {
			return RotateResult{}, err
		}
	}
	return res, nil
}

// rotatedClientBefore returns the client's revoked-before time (Unix ms, 0
// for none) read in Rotate's pipeline, reading it once more if that read
// failed: in a Cluster the client's key lives on another node than the
// family, and a rotation that happened must not be answered 503 (its
// token is spent) only because the other node did not answer once.
func (s *Redis) rotatedClientBefore(ctx context.Context, clientID string, cmd *redis.StringCmd) (int64, error) {
	v, err := cmd.Result()
	if err == nil || errors.Is(err, redis.Nil) {
		return parseMillis("rotate: client revoked before", v)
	}
	t, err := s.clientRevokedBefore(ctx, clientID)
	if err != nil {
		return 0, err
	}
	return millis(t), nil
}

// parseRotateReply decodes {outcome name, subject, scope, exp, sealed,
// family created}; created is 0 when the reply has none.
func parseRotateReply(reply []any) (res RotateResult, created int64, err error) {
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
		return RotateResult{}, 0, fmt.Errorf("%w: rotate: unexpected script reply %q", ErrUnavailable, field(0))
	}
	if created, err = parseMillis("rotate", field(5)); err != nil {
		return RotateResult{}, 0, err
	}
	res = RotateResult{Outcome: o}
	if o != Rotated && o != GraceRetry {
		return res, created, nil
	}
	ms, err := strconv.ParseInt(field(3), 10, 64)
	if err != nil {
		return RotateResult{}, 0, fmt.Errorf("%w: rotate: bad expiry in script reply: %w", ErrUnavailable, err)
	}
	res.Subject, res.Scope, res.ExpiresAt = field(1), field(2), time.UnixMilli(ms)
	if o == GraceRetry {
		res.Sealed = []byte(field(4))
	}
	return res, created, nil
}

// RevokeRefresh revokes the family of the token with the given digest if it
// belongs to clientID, in one script.
func (s *Redis) RevokeRefresh(ctx context.Context, familyID, digest, clientID string) (RevokeOutcome, error) {
	if !validFamilyID(familyID) {
		return RevokeNotFound, nil
	}
	cmd, wait := s.change(ctx, revokeRefreshScript,
		[]string{s.famKey(familyID), s.tokenKey(familyID, digest)}, clientID)
	res, err := cmd.Text()
	if err != nil {
		return 0, unavailable("revoke refresh token", err)
	}
	switch res {
	case "revoked":
		if err := s.acked("revoke refresh token", wait); err != nil {
			return 0, err
		}
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
	cmd, wait := s.change(ctx, revokeFamilyScript, []string{s.famKey(familyID)})
	if err := cmd.Err(); err != nil {
		return unavailable("revoke family", err)
	}
	return s.acked("revoke family", wait)
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
	if s.ack > 0 {
		set := redis.NewStatusCmd(ctx, "set", s.jtiKey(jti), "1", "px", ttl.Milliseconds())
		wait := s.waitCmd(ctx)
		err := s.roundTrip(ctx, []redis.Cmder{set, wait})
		if err == nil {
			err = set.Err()
		}
		if err != nil {
			return unavailable("revoke access token", err)
		}
		return s.acked("revoke access token", wait)
	}
	if err := s.c.Set(ctx, s.jtiKey(jti), "1", ttl).Err(); err != nil {
		return unavailable("revoke access token", err)
	}
	return nil
}

// firstErr returns the first error of cmds other than redis.Nil (which only
// means "no such key or field"), so that a real failure of one command of a
// pipeline is never hidden behind an earlier absent key.
func firstErr(cmds []redis.Cmder) error {
	for _, c := range cmds {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
	}
	return nil
}

// parseMillis reads a stored Unix ms time; "" (absent) is 0.
func parseMillis(op, v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: bad stored time %q", ErrUnavailable, op, v)
	}
	return ms, nil
}

// CheckAccess reports the revocation state of one access token in one
// pipelined round trip: EXISTS on the jti key, HGET revoked on the family
// record (only for a family id that can exist), GET on the client key.
func (s *Redis) CheckAccess(ctx context.Context, jti, familyID, clientID string) (AccessState, error) {
	jtiCmd := redis.NewIntCmd(ctx, "exists", s.jtiKey(jti))
	cmds := []redis.Cmder{jtiCmd}
	var famCmd *redis.StringCmd
	if validFamilyID(familyID) {
		famCmd = redis.NewStringCmd(ctx, "hget", s.famKey(familyID), "revoked")
		cmds = append(cmds, famCmd)
	}
	clientCmd := redis.NewStringCmd(ctx, "get", s.clientKey(clientID))
	cmds = append(cmds, clientCmd)
	err := s.roundTrip(ctx, cmds)
	if err == nil {
		err = firstErr(cmds) // absent keys are fine, failed nodes are not
	}
	if err != nil {
		return AccessState{}, unavailable("check access", err)
	}
	before, err := parseMillis("check access", clientCmd.Val())
	if err != nil {
		return AccessState{}, err
	}
	return AccessState{
		JTIRevoked:          jtiCmd.Val() == 1,
		FamilyRevoked:       famCmd != nil && famCmd.Val() == "1",
		ClientRevokedBefore: fromMillis(before),
	}, nil
}

// RevokeClient records that the client's tokens issued before before are
// revoked, in one script on the client's key; see Store.
func (s *Redis) RevokeClient(ctx context.Context, clientID string, before time.Time, keep time.Duration) error {
	if keep <= 0 {
		return errInvalidKeep
	}
	b := millis(before)
	if b <= 0 {
		return nil
	}
	cmd, wait := s.change(ctx, revokeClientScript, []string{s.clientKey(clientID)}, b, keepMillis(keep), s.waitFlag())
	if err := cmd.Err(); err != nil {
		return unavailable("revoke client", err)
	}
	return s.acked("revoke client", wait)
}

// clientRevokedBefore returns the client's revoked-before time, zero if none.
func (s *Redis) clientRevokedBefore(ctx context.Context, clientID string) (time.Time, error) {
	v, err := s.c.Get(ctx, s.clientKey(clientID)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return time.Time{}, unavailable("client revoked before", err)
	}
	ms, err := parseMillis("client revoked before", v)
	if err != nil {
		return time.Time{}, err
	}
	return fromMillis(ms), nil
}

// RefreshInfo describes the refresh token with the given digest; false when
// it or its family is unknown or expired. One MULTI/EXEC round trip reads
// both hashes (same slot) atomically.
func (s *Redis) RefreshInfo(ctx context.Context, familyID, digest string) (RefreshInfo, bool, error) {
	if !validFamilyID(familyID) {
		return RefreshInfo{}, false, nil
	}
	var fam, tok *redis.SliceCmd
	_, err := s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		fam = p.HMGet(ctx, s.famKey(familyID), "revoked", "created")
		tok = p.HMGet(ctx, s.tokenKey(familyID, digest), "client", "subject", "scope", "exp", "state")
		return nil
	})
	if err != nil {
		return RefreshInfo{}, false, unavailable("refresh info", err)
	}
	str := func(vals []any, i int) (string, bool) {
		if i < len(vals) {
			v, ok := vals[i].(string)
			return v, ok
		}
		return "", false
	}
	f, t := fam.Val(), tok.Val()
	revoked, famOK := str(f, 0)
	client, tokOK := str(t, 0)
	if !famOK || !tokOK {
		return RefreshInfo{}, false, nil
	}
	created, _ := str(f, 1)
	createdMs, err := parseMillis("refresh info", created)
	if err != nil {
		return RefreshInfo{}, false, err
	}
	exp, _ := str(t, 3)
	expMs, err := parseMillis("refresh info", exp)
	if err != nil {
		return RefreshInfo{}, false, err
	}
	// Redis hides keys past their expiry by its own clock; this also hides
	// a token that is expired by ours (as the memory store's would be).
	if expMs <= millis(time.Now()) {
		return RefreshInfo{}, false, nil
	}
	subject, _ := str(t, 1)
	scope, _ := str(t, 2)
	state, _ := str(t, 4)
	return RefreshInfo{
		ClientID:  client,
		Subject:   subject,
		Scope:     scope,
		IssuedAt:  fromMillis(createdMs),
		ExpiresAt: time.UnixMilli(expMs),
		Active:    state == "active" && revoked != "1",
	}, true, nil
}

// ListFamilies returns one page of the client's families: one ZRANGE BYLEX
// on the client's index pipelined with the GET of its revoked-before time
// (both in the client's slot), then one pipeline reading the page's family
// records and one reading their current tokens (and dropping index entries
// whose family expired); see Store.
func (s *Redis) ListFamilies(ctx context.Context, clientID string, q FamilyQuery) (FamilyPage, error) {
	if err := checkFamilyQuery(q); err != nil {
		return FamilyPage{}, err
	}
	index := s.familyIndexKey(clientID)
	start := "-"
	if q.After != "" {
		start = "(" + q.After
	}
	pipe := s.c.Pipeline()
	rangeCmd := pipe.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: index, Start: start, Stop: "+", ByLex: true, Count: int64(q.Limit) + 1,
	})
	beforeCmd := pipe.Get(ctx, s.clientKey(clientID))
	cmds, err := pipe.Exec(ctx)
	if err == nil || errors.Is(err, redis.Nil) {
		err = firstErr(cmds)
	}
	if err != nil {
		return FamilyPage{}, unavailable("list families", err)
	}
	before, err := parseMillis("list families", beforeCmd.Val())
	if err != nil {
		return FamilyPage{}, err
	}
	members := rangeCmd.Val()
	page := FamilyPage{
		Families:            make([]FamilySummary, 0, min(len(members), q.Limit)),
		ClientRevokedBefore: fromMillis(before),
	}
	if len(members) > q.Limit {
		members = members[:q.Limit]
		page.Next = members[len(members)-1]
	}
	if len(members) == 0 {
		return page, nil
	}
	ids := make([]string, len(members))
	pipe = s.c.Pipeline()
	fams := make([]*redis.SliceCmd, len(members))
	for i, m := range members {
		_, id, ok := parseFamilyIndexMember(m)
		if !ok {
			id = "" // not written by this store: dropped below
		}
		ids[i] = id
		fams[i] = pipe.HMGet(ctx, s.famKey(id), "client", "revoked", "current", "exp", "created")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return FamilyPage{}, unavailable("list families", err)
	}
	pipe = s.c.Pipeline()
	var stale []any
	toks := make([]*redis.SliceCmd, len(members))
	for i, cmd := range fams {
		v := cmd.Val()
		client, _ := v[0].(string)
		if ids[i] == "" || client != clientID {
			stale = append(stale, members[i]) // expired (or foreign)
			continue
		}
		revoked, _ := v[1].(string)
		current, _ := v[2].(string)
		exp, _ := v[3].(string)
		created, _ := v[4].(string)
		expMs, err := parseMillis("list families", exp)
		if err != nil {
			return FamilyPage{}, err
		}
		createdMs, err := parseMillis("list families", created)
		if err != nil {
			return FamilyPage{}, err
		}
		isRevoked := revoked == "1" || createdMs < before
		if isRevoked && !q.IncludeRevoked {
			continue
		}
		page.Families = append(page.Families, FamilySummary{
			FamilyID:  ids[i],
			CreatedAt: fromMillis(createdMs),
			ExpiresAt: time.UnixMilli(expMs),
			Revoked:   isRevoked,
		})
		toks[len(page.Families)-1] = pipe.HMGet(ctx, s.tokenKey(ids[i], current), "subject", "scope")
	}
	if len(stale) > 0 {
		pipe.ZRem(ctx, index, stale...)
	}
	if pipe.Len() == 0 {
		return page, nil
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return FamilyPage{}, unavailable("list families", err)
	}
	for i := range page.Families {
		v := toks[i].Val()
		if len(v) == 2 {
			page.Families[i].Subject, _ = v[0].(string)
			page.Families[i].Scope, _ = v[1].(string)
		}
	}
	return page, nil
}

// Close does nothing: the client belongs to the caller, who may share it.
func (s *Redis) Close() error { return nil }

var _ Store = (*Redis)(nil)
