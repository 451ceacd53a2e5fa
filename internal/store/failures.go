package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Failed client authentications are counted in fixed windows per key (the
// caller's keys are e.g. "id:<client_id>" and "ip:<address>"): the first
// failure starts a window of the given length, and the count disappears
// with it.

// memFail is one key's failure window in the memory store.
type memFail struct {
	count int64
	exp   int64 // Unix ms when the window ends
}

// AuthFailures implements Store.
func (m *Memory) AuthFailures(_ context.Context, keys []string) ([]FailureCount, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := millis(m.clock())
	out := make([]FailureCount, len(keys))
	for i, k := range keys {
		if f, ok := m.fails[k]; ok && f.exp > now {
			out[i] = FailureCount{Count: f.count, ResetIn: time.Duration(f.exp-now) * time.Millisecond}
		}
	}
	return out, nil
}

// RecordAuthFailure implements Store.
func (m *Memory) RecordAuthFailure(_ context.Context, keys []string, window time.Duration) ([]FailureCount, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := millis(m.clock())
	out := make([]FailureCount, len(keys))
	for i, k := range keys {
		f := m.fails[k]
		if f.exp <= now {
			f = memFail{exp: now + max(window.Milliseconds(), 1)}
		}
		f.count++
		m.fails[k] = f
		out[i] = FailureCount{Count: f.count, ResetIn: time.Duration(f.exp-now) * time.Millisecond}
	}
	return out, nil
}

// failKey is where a failure count lives; each its own hash slot.
func (s *Redis) failKey(key string) string {
	return s.prefix + "fail:{" + key + "}"
}

// AuthFailures implements Store with one pipelined round trip.
func (s *Redis) AuthFailures(ctx context.Context, keys []string) ([]FailureCount, error) {
	pipe := s.c.Pipeline()
	gets := make([]*redis.StringCmd, len(keys))
	ttls := make([]*redis.DurationCmd, len(keys))
	for i, k := range keys {
		gets[i] = pipe.Get(ctx, s.failKey(k))
		ttls[i] = pipe.PTTL(ctx, s.failKey(k))
	}
	cmds, err := pipe.Exec(ctx)
	if err == nil || errors.Is(err, redis.Nil) {
		// Exec reports the first error of any command: an absent key can
		// hide a failed node of a Cluster behind it.
		err = firstErr(cmds)
	}
	if err != nil {
		return nil, unavailable("read auth failures", err)
	}
	out := make([]FailureCount, len(keys))
	for i := range keys {
		n, err := gets[i].Int64()
		if err != nil || n <= 0 {
			continue // absent (redis.Nil) or not a count
		}
		out[i] = FailureCount{Count: n, ResetIn: max(ttls[i].Val(), 0)}
	}
	return out, nil
}

// failScript counts one failure on one key and starts its window with the
// first: INCR and the expiry are one atomic step, so a dropped connection
// can never leave a count without an expiry. It returns the count including
// this failure and the window's remaining milliseconds.
// KEYS fail key; ARGV window ms.
var failScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if n == 1 or ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}`)

// RecordAuthFailure implements Store: one single-key script per key (the
// keys are in different Cluster slots), pipelined into one round trip.
func (s *Redis) RecordAuthFailure(ctx context.Context, keys []string, window time.Duration) ([]FailureCount, error) {
	ms := max(window.Milliseconds(), 1)
	pipe := s.c.Pipeline()
	cmds := make([]*redis.Cmd, len(keys))
	for i, k := range keys {
		cmds[i] = failScript.EvalSha(ctx, pipe, []string{s.failKey(k)}, ms)
	}
	_, _ = pipe.Exec(ctx) // errors are read per command below
	out := make([]FailureCount, len(keys))
	for i, cmd := range cmds {
		err := cmd.Err()
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			// First use on that node: Run loads the script. Only this key is
			// sent again, so no failure is counted twice.
			cmd = failScript.Run(ctx, s.c, []string{s.failKey(keys[i])}, ms)
			err = cmd.Err()
		}
		if err != nil {
			return nil, unavailable("record auth failure", err)
		}
		vals, err := cmd.Int64Slice()
		if err != nil || len(vals) != 2 {
			return nil, unavailable("record auth failure", fmt.Errorf("unexpected reply %v: %w", cmd.Val(), err))
		}
		out[i] = FailureCount{Count: vals[0], ResetIn: time.Duration(max(vals[1], 0)) * time.Millisecond}
	}
	return out, nil
}
