package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-moserver/caddy-moserver/internal/tokens"
)

// fillResult reports how the live refresh families were written.
type fillResult struct {
	Families int           `json:"families"`
	Took     time.Duration `json:"-"`
	Keys     int64         `json:"redis_keys_after"`
	UsedMem  string        `json:"redis_used_memory"`
	// Sample is the first refresh token written, so the caller can redeem it
	// through the endpoint to prove the layout is the store's.
	Sample string `json:"-"`
}

// fillFamilies writes n live refresh-token families of client straight into
// Redis under prefix, exactly as (*store.Redis).CreateFamily lays them out:
//
//	<prefix>{<family>}:fam          client, revoked=0, current=<digest>, exp, created
//	<prefix>{<family>}:rt:<digest>  client, subject, scope, exp, state=active
//	<prefix>client:{<client>}:fams  sorted set member "<created ms, 15 digits>:<family>", score 0
//
// each with PEXPIREAT at its exp (refreshTTL from now). Tokens and family ids
// come from tokens.NewFamilyToken and digests from tokens.Digest, so every
// family is one the server would accept (the caller redeems one and lists
// the index through the endpoint's store to prove it). The commands are
// pipelined over several connections.
func fillFamilies(ctx context.Context, c *redis.Client, prefix, client string, n int) (*fillResult, error) {
	const (
		workers = 4
		batch   = 1000 // families per pipeline round trip (5 commands each)
	)
	start := time.Now()
	exp := start.Add(refreshTTL)
	expMs := strconv.FormatInt(exp.UnixMilli(), 10)
	created := start.UnixMilli()
	createdMs := strconv.FormatInt(created, 10)
	index := prefix + "client:{" + client + "}:fams"
	res := &fillResult{Families: n}
	var once sync.Once

	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	per := (n + workers - 1) / workers
	for w := range workers {
		lo, hi := w*per, min((w+1)*per, n)
		if lo >= hi {
			continue
		}
		wg.Go(func() {
			for i := lo; i < hi; i += batch {
				pipe := c.Pipeline()
				for j := i; j < min(i+batch, hi); j++ {
					token, family := tokens.NewFamilyToken()
					digest := tokens.Digest(token)
					once.Do(func() { res.Sample = token })
					fam := prefix + "{" + family + "}:fam"
					rt := prefix + "{" + family + "}:rt:" + digest
					pipe.HSet(gctx, fam, "client", client, "revoked", "0", "current", digest, "exp", expMs, "created", createdMs)
					pipe.PExpireAt(gctx, fam, exp)
					pipe.ZAdd(gctx, index, redis.Z{Member: fmt.Sprintf("%015d:%s", created, family)})
					pipe.HSet(gctx, rt, "client", client, "subject", client, "scope", scopes, "exp", expMs, "state", "active")
					pipe.PExpireAt(gctx, rt, exp)
				}
				if _, err := pipe.Exec(gctx); err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := c.PExpireAt(ctx, index, exp).Err(); err != nil {
		return nil, err
	}
	res.Took = time.Since(start)
	var err error
	if res.Keys, err = c.DBSize(ctx).Result(); err != nil {
		return nil, err
	}
	info, err := c.InfoMap(ctx, "memory").Result()
	if err == nil {
		res.UsedMem = info["Memory"]["used_memory_human"]
	}
	return res, nil
}
