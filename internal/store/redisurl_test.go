package store

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-moserver/caddy-moserver/internal/testutil/redistest"
)

const (
	sentinelURL = "redis://app:s3cret@10.0.0.1:26379,10.0.0.2:26380?master_name=mymaster"
	clusterURL  = "redis://app:s3cret@10.0.0.1:7000?addr=10.0.0.2:7000&addr=10.0.0.3:7000"
)

func TestSentinelOptions(t *testing.T) {
	o, err := sentinelOptions(sentinelURL, 1500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(o.SentinelAddrs, " "); got != "10.0.0.1:26379 10.0.0.2:26380" || o.MasterName != "mymaster" {
		t.Errorf("Sentinels %s, master %q", got, o.MasterName)
	}
	if o.Username != "app" || o.Password != "s3cret" || o.SentinelUsername != "" || o.SentinelPassword != "" || o.DB != 0 {
		t.Errorf("credentials: server %q/%q, Sentinel %q/%q, db %d", o.Username, o.Password, o.SentinelUsername, o.SentinelPassword, o.DB)
	}
	if o.TLSConfig != nil {
		t.Errorf("TLS without rediss")
	}
	if o.DialTimeout != 500*time.Millisecond || o.DialerRetries != 1 || o.MaxRetries != -1 ||
		o.ReadTimeout != 1500*time.Millisecond || o.WriteTimeout != time.Second {
		t.Errorf("not the fail-fast settings: dial %v, dialer retries %d, retries %d, read %v, write %v",
			o.DialTimeout, o.DialerRetries, o.MaxRetries, o.ReadTimeout, o.WriteTimeout)
	}

	// Default port, more Sentinels as addr=, Sentinel password, db, TLS,
	// options the URL sets.
	o, err = sentinelOptions("rediss://:pw@s1,[::1],s3:5000/2?master_name=m&addr=s4:26381&sentinel_password=spw&dial_timeout=2s&read_timeout=3s", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(slices.Sorted(slices.Values(o.SentinelAddrs)), " "); got != "[::1]:26379 s1:26379 s3:5000 s4:26381" {
		t.Errorf("Sentinels %s", got)
	}
	if o.Username != "" || o.Password != "pw" || o.SentinelPassword != "spw" || o.DB != 2 || o.MasterName != "m" {
		t.Errorf("server %q/%q, Sentinel password %q, db %d, master %q", o.Username, o.Password, o.SentinelPassword, o.DB, o.MasterName)
	}
	if o.TLSConfig == nil || o.TLSConfig.ServerName != "" {
		t.Errorf("rediss: TLS config %+v, want one checking each host it dials", o.TLSConfig)
	}
	if o.DialTimeout != 2*time.Second || o.ReadTimeout != 3*time.Second || o.WriteTimeout != time.Second {
		t.Errorf("URL options lost: dial %v, read %v, write %v", o.DialTimeout, o.ReadTimeout, o.WriteTimeout)
	}

	// An unescaped @ in the password: the last @ ends the user info.
	if o, err := sentinelOptions("redis://:p@ss@s1?master_name=m", time.Second); err != nil || o.Password != "p@ss" ||
		o.SentinelAddrs[0] != "s1:26379" {
		t.Errorf("password with @: %+v, %v", o, err)
	}

	for bad, want := range map[string]string{
		"redis://s1:26379":                                         "master_name",
		"http://s1:26379?master_name=m":                            "redis:// or rediss://",
		"redis://?master_name=m":                                   "names no Sentinel",
		"redis://s1:x?master_name=m":                               "invalid Sentinel address",
		"redis://s1:1,s2?master_name=m&dial_timeout=%zz":           "invalid URL query",
		"redis://s1:26379,,s2?master_name=m":                       "invalid Sentinel address",
		"redis://s1:0?master_name=m":                               "invalid Sentinel address",
		"redis://s1?master_name=m&replica_only=true":               "replica_only",
		"redis://s1?master_name=m&route_randomly=true":             "route_randomly",
		"redis://s1?master_name=m&password=x":                      "password",
		"redis://s1?master_name=m&colour=red":                      "unexpected option",
		"redis://s1?master_name=m&dial_timeout=soon":               "dial_timeout",
		"redis://s1/x?master_name=m":                               "database",
		"redis://:hunter2@s1:99999?master_name=m":                  "invalid",
		"redis://:hunter2@s1:1?master_name=m&dial_timeout=soon%zz": "invalid",
	} {
		_, err := sentinelOptions(bad, time.Second)
		if err == nil || !strings.Contains(err.Error(), "storage redis_sentinel") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want a storage redis_sentinel error containing %q", bad, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error shows the password: %v", bad, err)
		}
	}
}

func TestClusterOptions(t *testing.T) {
	o, err := clusterOptions(clusterURL)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(o.Addrs, " "); got != "10.0.0.1:7000 10.0.0.2:7000 10.0.0.3:7000" {
		t.Errorf("Addrs = %s", got)
	}
	if o.Username != "app" || o.Password != "s3cret" || o.TLSConfig != nil {
		t.Errorf("credentials %q/%q, TLS %v", o.Username, o.Password, o.TLSConfig)
	}
	if o.DialTimeout != 500*time.Millisecond || o.DialerRetries != 1 || o.MaxRetries != -1 ||
		o.ReadTimeout != time.Second || o.WriteTimeout != time.Second {
		t.Errorf("not the fail-fast settings: dial %v, dialer retries %d, retries %d, read %v, write %v",
			o.DialTimeout, o.DialerRetries, o.MaxRetries, o.ReadTimeout, o.WriteTimeout)
	}

	// Options the URL sets win; TLS with rediss.
	o, err = clusterOptions("rediss://h1:7000?addr=h2:7001&dial_timeout=2s&max_retries=2&read_timeout=3s")
	if err != nil {
		t.Fatal(err)
	}
	if o.TLSConfig == nil || o.TLSConfig.ServerName != "h1" {
		t.Errorf("rediss: TLS config %v", o.TLSConfig)
	}
	if o.DialTimeout != 2*time.Second || o.MaxRetries != 2 || o.ReadTimeout != 3*time.Second ||
		o.WriteTimeout != time.Second || o.DialerRetries != 1 {
		t.Errorf("URL options lost: dial %v, retries %d, read %v, write %v, dialer retries %d",
			o.DialTimeout, o.MaxRetries, o.ReadTimeout, o.WriteTimeout, o.DialerRetries)
	}

	for _, bad := range []string{"http://h1:7000", "redis://h1:7000?addr=nohost", "redis://h1:7000?colour=red", "redis://h1:7000?dial_timeout=soon"} {
		if _, err := clusterOptions(bad); err == nil || !strings.Contains(err.Error(), "storage redis_cluster") {
			t.Errorf("%s: got %v, want a storage redis_cluster error", bad, err)
		}
	}
}

// A client NewRedisClient makes gives up at the caller's deadline, not only
// at its fixed read timeout (1 s): a request's store_timeout bounds every
// call it makes. Redis is stalled (SIGSTOP) so that nothing answers.
func TestRedisClientHonoursDeadlines(t *testing.T) {
	srv := redistest.StartServer(t)
	client, _, err := NewRedisClient(KindRedis, "redis://"+srv.Addr+"/0", RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	st := NewRedis(client, redistest.Prefix(t))
	t.Cleanup(func() { _ = st.Close() })
	if _, err := st.CheckAccess(context.Background(), "j", "", "c"); err != nil {
		t.Fatal(err) // connected before the stall
	}
	srv.Pause()
	t.Cleanup(srv.Resume)
	for name, call := range map[string]func(context.Context) error{
		"read": func(ctx context.Context) error { _, err := st.CheckAccess(ctx, "j", "", "c"); return err },
		"write": func(ctx context.Context) error {
			_, err := st.RecordAuthFailure(ctx, []string{"ip:x"}, time.Minute)
			return err
		},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		begin := time.Now()
		err := call(ctx)
		took := time.Since(begin)
		cancel()
		if err == nil {
			t.Fatalf("%s: answered by a stalled server", name)
		}
		if took > 700*time.Millisecond {
			t.Errorf("%s: gave up after %v with a 200ms deadline; the client ignores deadlines (read timeout 1s)", name, took)
		}
	}
}
