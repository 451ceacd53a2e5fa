package store

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The kinds of Redis deployment a storage URL names.
const (
	KindRedis    = "redis"          // one server (and its replicas)
	KindSentinel = "redis_sentinel" // the primary that Redis Sentinel names
	KindCluster  = "redis_cluster"  // a Redis Cluster
)

// NewRedisClient makes the go-redis client of a storage URL of the given
// kind, with the fail-fast settings below for whatever the URL leaves unset;
// it does not connect. where describes the servers for logs (no
// credentials). No error shows the URL's credentials.
func NewRedisClient(kind, rawURL string, ack RedisOptions) (client redis.UniversalClient, where string, err error) {
	switch kind {
	case KindRedis:
		return newSingleClient(rawURL, ack)
	case KindSentinel:
		return newSentinelClient(rawURL, ack)
	case KindCluster:
		return newClusterClient(rawURL)
	}
	return nil, "", fmt.Errorf("storage: %q is not a kind of Redis (%s, %s or %s)", kind, KindRedis, KindSentinel, KindCluster)
}

// Fail-fast client settings: when Redis is down, each request has its own
// time budget and answers 503 rather than waiting on retries.
//
// Commands are never sent again (go-redis MaxRetries -1): a command whose
// reply was lost to a timeout or a dropped connection may have run, and a
// rotation script run twice spends the token it just rotated, which reads
// as a replay and revokes the family. The request answers 503 instead; the
// client's retry with the same token is a grace retry within
// refresh_grace. Stale pooled connections (e.g. after a Redis restart) are
// found by go-redis's health check when taken from the pool, before use.
const (
	redisDialTimeout   = 500 * time.Millisecond
	redisDialerRetries = 1
	redisMaxRetries    = -1
	redisIOTimeout     = time.Second // read and write timeouts
)

// readTimeout is the read timeout of a client of a store with these
// options: the fail-fast one plus the longest a WAIT may block.
func readTimeout(ack RedisOptions) time.Duration {
	return redisIOTimeout + ack.AckTimeout
}

// failFast fills in the fail-fast settings a URL left unset (zero). The
// clients also honour the deadline of each request's context
// (ContextTimeoutEnabled): a request spends one store_timeout in total.
func failFast(dial *time.Duration, dialerRetries, maxRetries *int, read, write *time.Duration, readTimeout time.Duration) {
	setIfZero(dial, redisDialTimeout)
	setIfZero(dialerRetries, redisDialerRetries)
	setIfZero(maxRetries, redisMaxRetries)
	setIfZero(read, readTimeout)
	setIfZero(write, redisIOTimeout)
}

func setIfZero[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

// newSingleClient makes the client of a single Redis server named by a
// redis:// or rediss:// URL.
func newSingleClient(rawURL string, ack RedisOptions) (redis.UniversalClient, string, error) {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, "", fmt.Errorf("storage redis: %w", withoutCredentials(err, rawURL, func(u string) error {
			_, err := redis.ParseURL(u)
			return err
		}))
	}
	client := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:         []string{opts.Addr},
		DB:            opts.DB,
		Username:      opts.Username,
		Password:      opts.Password,
		TLSConfig:     opts.TLSConfig,
		DialTimeout:   redisDialTimeout,
		DialerRetries: redisDialerRetries,
		MaxRetries:    redisMaxRetries,
		ReadTimeout:   readTimeout(ack),
		WriteTimeout:  redisIOTimeout,
		// A request's store_timeout deadline bounds its commands' reads and
		// writes, not only the fixed timeouts.
		ContextTimeoutEnabled: true,
	})
	return client, "addr " + opts.Addr, nil
}

// newClusterClient makes the client of a Redis Cluster named by go-redis's
// cluster URL, redis://[user:pass@]host1:port?addr=host2:port&addr=host3:port
// (rediss:// for TLS): the seed nodes the client discovers the cluster from.
// The fail-fast settings of the single-node client apply to every option
// the URL leaves unset (dial_timeout, dialer_retries, max_retries,
// read_timeout, write_timeout); other URL options are kept as parsed.
func newClusterClient(rawURL string) (redis.UniversalClient, string, error) {
	opts, err := clusterOptions(rawURL)
	if err != nil {
		return nil, "", err
	}
	return redis.NewClusterClient(opts), "seed nodes " + strings.Join(opts.Addrs, ","), nil
}

// clusterOptions parses a cluster URL and fills in the fail-fast settings
// it leaves unset.
func clusterOptions(rawURL string) (*redis.ClusterOptions, error) {
	opts, err := redis.ParseClusterURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("storage redis_cluster: %w", withoutCredentials(err, rawURL, func(u string) error {
			_, err := redis.ParseClusterURL(u)
			return err
		}))
	}
	failFast(&opts.DialTimeout, &opts.DialerRetries, &opts.MaxRetries, &opts.ReadTimeout, &opts.WriteTimeout, redisIOTimeout)
	opts.ContextTimeoutEnabled = true
	return opts, nil
}

// newSentinelClient makes the client of the primary the Sentinels name
// (see sentinelOptions for the URL). It asks a Sentinel for the primary's
// address whenever it dials and drops its connections to a demoted primary
// when Sentinel announces a failover.
func newSentinelClient(rawURL string, ack RedisOptions) (redis.UniversalClient, string, error) {
	opts, err := sentinelOptions(rawURL, readTimeout(ack))
	if err != nil {
		return nil, "", err
	}
	return redis.NewFailoverClient(opts), "sentinels " + strings.Join(opts.SentinelAddrs, ",") + ", master " + opts.MasterName, nil
}

// defaultSentinelPort is the port of a Sentinel address given without one.
const defaultSentinelPort = "26379"

// sentinelOptions parses a redis_sentinel URL:
//
//	redis[s]://[[user]:password@]host[:port][,host[:port]...][/db]?master_name=<name>[&option=value...]
//
// The hosts are Sentinels (port 26379 if omitted); more can be given as
// addr=host:port query parameters. master_name is the name the Sentinels
// monitor the primary under. The user and password are those of the Redis
// servers (primary and replicas), as in a redis URL; Sentinels that require
// a password of their own get it from sentinel_password (and
// sentinel_username). Other query parameters are go-redis client options
// (dial_timeout=1s, pool_size=20, ...); the fail-fast settings of the
// single-server client fill those left unset, the read timeout being
// readTimeout. Options that would send writes to replicas (replica_only,
// route_by_latency, route_randomly) are refused, and so are username and
// password, which belong in the user info. rediss:// uses TLS to the
// Sentinels and the servers, each checked against the host it is dialed at.
func sentinelOptions(rawURL string, readTimeout time.Duration) (*redis.FailoverOptions, error) {
	opts, err := parseSentinelURL(rawURL, readTimeout)
	if err != nil {
		return nil, fmt.Errorf("storage redis_sentinel: %w", withoutCredentials(err, rawURL, func(u string) error {
			_, err := parseSentinelURL(u, readTimeout)
			return err
		}))
	}
	return opts, nil
}

// parseSentinelURL is sentinelOptions without the name of the option in its
// errors, which may show the URL's credentials.
func parseSentinelURL(rawURL string, readTimeout time.Duration) (*redis.FailoverOptions, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf(format, args...)
	}
	// The host list is split here: url.Parse accepts "h1:1,h2:2" as one
	// host but not "h1:1,h2" (it reads ":1,h2" as the port).
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, fail("the URL must start with redis:// or rediss://")
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	userinfo, hostList := "", rest[:end]
	if at := strings.LastIndex(hostList, "@"); at >= 0 {
		userinfo, hostList = hostList[:at+1], hostList[at+1:]
	}
	u, err := url.Parse(scheme + "://" + userinfo + "sentinels" + rest[end:])
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // url.Error repeats the URL, password included
		}
		return nil, fail("invalid URL: %v", err)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, fail("the URL must start with redis:// or rediss://")
	}
	if hostList == "" {
		return nil, fail("the URL names no Sentinel")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fail("invalid URL query: %v", err)
	}
	for _, k := range []string{"username", "password", "replica_only", "route_by_latency", "route_randomly", "use_disconnected_replicas"} {
		if q.Has(k) {
			return nil, fail("the URL option %s is not supported", k)
		}
	}
	if q.Get("master_name") == "" {
		return nil, fail("the URL needs master_name=<name>, the name the Sentinels monitor the primary under")
	}
	var addrs []string
	for _, h := range strings.Split(hostList, ",") {
		if h != "" && !strings.Contains(h, ":") || strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
			h = net.JoinHostPort(strings.Trim(h, "[]"), defaultSentinelPort) // no port
		}
		host, port, err := net.SplitHostPort(h)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			return nil, fail("invalid Sentinel address %q", h)
		}
		addrs = append(addrs, net.JoinHostPort(host, port))
	}
	// Hand go-redis its own form: the first Sentinel as the host, the others
	// as addr=, Sentinel credentials as the user info, server credentials as
	// username= and password=.
	v := url.URL{Scheme: u.Scheme, Host: addrs[0], Path: u.Path}
	if su, sp := q.Get("sentinel_username"), q.Get("sentinel_password"); su != "" || sp != "" {
		v.User = url.UserPassword(su, sp)
	}
	q.Del("sentinel_username")
	q.Del("sentinel_password")
	for _, a := range addrs[1:] {
		q.Add("addr", a)
	}
	if u.User != nil {
		if name := u.User.Username(); name != "" {
			q.Set("username", name)
		}
		if pw, ok := u.User.Password(); ok {
			q.Set("password", pw)
		}
	}
	v.RawQuery = q.Encode()
	opts, err := redis.ParseFailoverURL(v.String())
	if err != nil {
		return nil, fail("%v", err)
	}
	if opts.TLSConfig != nil {
		// go-redis names the first Sentinel as the server of every TLS
		// connection; an empty name makes crypto/tls check each against the
		// host it dials.
		opts.TLSConfig.ServerName = ""
	}
	failFast(&opts.DialTimeout, &opts.DialerRetries, &opts.MaxRetries, &opts.ReadTimeout, &opts.WriteTimeout, readTimeout)
	opts.ContextTimeoutEnabled = true
	return opts, nil
}

// redactedText is what a hidden password shows as, as in url.URL.Redacted.
const redactedText = "xxxxx"

// redactURL returns a storage URL with its password, and the value of every
// query parameter whose name contains "password" (sentinel_password),
// replaced by xxxxx. It works on the text without parsing it, so that it
// hides the password of a URL that does not parse too: the user info runs
// from "://" to the last "@" (the password may hold an unescaped "/", "?" or
// "#"), and the password from the first ":" in it.
func redactURL(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	userinfo, hostAndMore := "", rest
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		userinfo, hostAndMore = rest[:at+1], rest[at+1:]
		if user, _, hasPassword := strings.Cut(userinfo, ":"); hasPassword {
			userinfo = user + ":" + redactedText + "@"
		}
	}
	if hostPath, query, ok := strings.Cut(hostAndMore, "?"); ok {
		pairs := strings.Split(query, "&")
		for i, pair := range pairs {
			if name, _, ok := strings.Cut(pair, "="); ok && strings.Contains(strings.ToLower(name), "password") {
				pairs[i] = name + "=" + redactedText
			}
		}
		hostAndMore = hostPath + "?" + strings.Join(pairs, "&")
	}
	return scheme + "://" + userinfo + hostAndMore
}

// withoutCredentials turns the error parse gave for rawURL into one that can
// be shown and logged: url.Parse's errors quote the whole URL, and other
// messages quote the pieces a password with an unescaped "/" was cut into.
// It is the error parse gives for the URL with its credentials redacted
// (redactURL) or, when that one parses, one that points at the user info.
func withoutCredentials(err error, rawURL string, parse func(string) error) error {
	redacted := redactURL(rawURL)
	if redacted == rawURL {
		return err
	}
	if rerr := parse(redacted); rerr != nil {
		return rerr
	}
	return errors.New("the URL's user name or password does not parse (percent-encode every character other than letters, digits and - . _ ~ in them)")
}
