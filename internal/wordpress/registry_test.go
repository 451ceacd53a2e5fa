package wordpress

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-moserver/caddy-moserver/internal/clients"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/mariadbtest"
)

// observed returns a logger recording Info and above.
func observed() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.InfoLevel)
	return zap.New(core), logs
}

// newRegistry builds a registry closed in t.Cleanup.
func newRegistry(t *testing.T, db *DB, opts RegistryOptions) *Registry {
	t.Helper()
	r := NewRegistry(db, opts)
	t.Cleanup(r.Close)
	return r
}

// mustLookup looks an id up and fails the test on error.
func mustLookup(t *testing.T, r *Registry, id string) *clients.Client {
	t.Helper()
	c, err := r.Lookup(ctxT(t), id)
	if err != nil {
		t.Fatalf("Lookup(%q): %v", id, err)
	}
	return c
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// assertNoSecrets fails if a logged message or field holds a secret.
func assertNoSecrets(t *testing.T, logs *observer.ObservedLogs, secrets ...string) {
	t.Helper()
	for _, e := range logs.All() {
		text := e.Message + fmt.Sprint(e.ContextMap())
		for _, s := range secrets {
			if s != "" && strings.Contains(text, s) {
				t.Fatalf("log entry %q leaks a secret", text)
			}
		}
	}
}

func TestRegistryLoad(t *testing.T) {
	_, raw, db := setup(t, testPrefix)
	// The fixture row, exactly as stored by the plugin.
	mariadbtest.InsertClientRaw(t, raw, testPrefix, fixtureName, fixtureID, fixtureStored, "http://127.0.0.1:18099/callback")
	mariadbtest.InsertClient(t, raw, testPrefix, mariadbtest.Client{
		Name: "Second App", ID: "second", Secret: "s3cret-two",
		RedirectURI: "https://App.example.com/cb  https://app.example.com/other http://localhost:8080/x not-a-url ftp://files.example/x",
	})
	// Unusable rows are skipped.
	mariadbtest.InsertClientRaw(t, raw, testPrefix, "", "noname", "false", "https://x.example/")
	mariadbtest.InsertClientRaw(t, raw, testPrefix, "Bad", "badsecret", "***", "https://x.example/")
	mariadbtest.InsertClientRaw(t, raw, testPrefix, "Empty", "emptysecret", "", "https://x.example/")
	mariadbtest.InsertClientRaw(t, raw, testPrefix, "NoID", "", mariadbtest.Obfuscate("x", "NoID"), "https://x.example/")
	mariadbtest.InsertClient(t, raw, testPrefix, mariadbtest.Client{Name: "Dup", ID: "second", Secret: "other", RedirectURI: "https://dup.example/"})

	logger, logs := observed()
	r := newRegistry(t, db, RegistryOptions{
		Logger: logger, RefreshTokens: true, AccessTokenTTL: 10 * time.Minute, Audience: "api://wp",
	})

	c := mustLookup(t, r, fixtureID)
	if c == nil {
		t.Fatal("fixture client not found")
	}
	if !c.CheckSecret(fixtureSecret) {
		t.Fatal("fixture secret rejected")
	}
	if c.CheckSecret(fixtureStored) || c.CheckSecret("") {
		t.Fatal("a wrong secret was accepted")
	}
	if c.Name != fixtureName || c.ID != fixtureID {
		t.Fatalf("client = %+v", c)
	}
	if !slices.Equal(c.Scopes, []string{"email", "profile"}) || c.ScopeText != "email profile" {
		t.Fatalf("scopes = %v, %q", c.Scopes, c.ScopeText)
	}
	if !slices.Equal(c.Grants, append(slices.Clone(clients.DefaultGrants), clients.GrantAuthorizationCode)) || !c.RefreshTokens || c.AccessTokenTTL != 10*time.Minute || c.Audience != "api://wp" {
		t.Fatalf("template fields not applied: %+v", c)
	}
	if !slices.Equal(c.CORSOrigins, []string{"http://127.0.0.1:18099"}) {
		t.Fatalf("CORS origins = %v", c.CORSOrigins)
	}

	s := mustLookup(t, r, "second")
	if s == nil || !s.CheckSecret("s3cret-two") || s.CheckSecret("other") {
		t.Fatalf("second client wrong (duplicate row must not win): %+v", s)
	}
	if want := []string{"https://app.example.com", "http://localhost:8080"}; !slices.Equal(s.CORSOrigins, want) {
		t.Fatalf("CORS origins = %v, want %v", s.CORSOrigins, want)
	}
	if !s.AllowedOrigin("https://app.example.com") || s.AllowedOrigin("https://evil.example") {
		t.Fatal("AllowedOrigin wrong")
	}

	for _, id := range []string{"noname", "badsecret", "emptysecret", "", "unknown", strings.ToLower(fixtureID)} {
		if c := mustLookup(t, r, id); c != nil {
			t.Errorf("Lookup(%q) = %+v, want nil", id, c)
		}
	}
	if n := logs.FilterMessage("wordpress: skipping OAuth client row").Len(); n != 5 {
		t.Errorf("%d skipped-row warnings, want 5: %v", n, logs.All())
	}
	assertNoSecrets(t, logs, fixtureSecret, fixtureStored, "s3cret-two", "***")
}

func TestRegistryPlaintextSecrets(t *testing.T) {
	_, raw, db := setup(t, testPrefix)
	mariadbtest.InsertClient(t, raw, testPrefix, mariadbtest.Client{Name: "Old", ID: "old", Secret: "plain-secret", Plain: true})
	for _, tc := range []struct {
		name   string
		option func()
	}{
		{"option absent", func() { mariadbtest.DeleteOption(t, raw, testPrefix, mariadbtest.OptSecretEncrypted) }},
		{"option 0", func() { mariadbtest.SetOption(t, raw, testPrefix, mariadbtest.OptSecretEncrypted, "0") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.option()
			r := newRegistry(t, db, RegistryOptions{})
			c := mustLookup(t, r, "old")
			if c == nil || !c.CheckSecret("plain-secret") {
				t.Fatalf("plaintext secret not accepted: %+v", c)
			}
		})
	}
	// Once the plugin has migrated (option 1), the same row is taken as
	// obfuscated.
	mariadbtest.SetOption(t, raw, testPrefix, mariadbtest.OptSecretEncrypted, "1")
	r := newRegistry(t, db, RegistryOptions{})
	if c := mustLookup(t, r, "old"); c != nil && c.CheckSecret("plain-secret") {
		t.Fatal("plaintext accepted with the option set")
	}
}

func TestRegistryOtherPrefixNoOptionsTable(t *testing.T) {
	_, raw, db := setup(t, "site2_")
	mariadbtest.Exec(t, raw, "DROP TABLE site2_options")
	mariadbtest.InsertClient(t, raw, "site2_", mariadbtest.Client{Name: "N", ID: "id2", Secret: "sec"})
	r := newRegistry(t, db, RegistryOptions{})
	if c := mustLookup(t, r, "id2"); c == nil || !c.CheckSecret("sec") {
		t.Fatalf("client = %+v", c)
	}
}

func TestRegistryReload(t *testing.T) {
	_, raw, db := setup(t, testPrefix)
	mariadbtest.InsertClient(t, raw, testPrefix, mariadbtest.Client{Name: "A", ID: "a", Secret: "sa", RedirectURI: "https://a.example/cb"})
	mariadbtest.InsertClient(t, raw, testPrefix, mariadbtest.Client{Name: "B", ID: "b", Secret: "sb"})
	// Misses never reload here: only the periodic reload can show changes.
	r := newRegistry(t, db, RegistryOptions{RefreshInterval: 100 * time.Millisecond, NegativeTTL: time.Hour})
	if mustLookup(t, r, "a") == nil || mustLookup(t, r, "b") == nil {
		t.Fatal("clients not loaded")
	}

	mariadbtest.DeleteClient(t, raw, testPrefix, "a")
	mariadbtest.InsertClient(t, raw, testPrefix, mariadbtest.Client{Name: "C", ID: "c", Secret: "sc"})
	mariadbtest.Exec(t, raw, "INSERT INTO wp_moos_oauth_scopes (scope, is_default) VALUES ('orders', 0)")
	mariadbtest.Exec(t, raw, "UPDATE wp_moos_oauth_clients SET redirect_uri = 'https://b.example/cb' WHERE client_id = 'b'")

	eventually(t, "deleted client to disappear", 3*time.Second, func() bool { return mustLookup(t, r, "a") == nil })
	eventually(t, "new client to appear", 3*time.Second, func() bool { return mustLookup(t, r, "c") != nil })
	b := mustLookup(t, r, "b")
	if !slices.Equal(b.Scopes, []string{"email", "orders", "profile"}) || !slices.Equal(b.CORSOrigins, []string{"https://b.example"}) {
		t.Fatalf("b after reload = %+v", b)
	}
}

// TestRegistrySingleFlight: 100 concurrent lookups of an unknown id cause
// one load.
func TestRegistrySingleFlight(t *testing.T) {
	_, raw, db := setup(t, testPrefix)
	mariadbtest.InsertClient(t, raw, testPrefix, mariadbtest.Client{Name: "A", ID: "a", Secret: "sa"})
	const ttl = 200 * time.Millisecond
	r := newRegistry(t, db, RegistryOptions{RefreshInterval: time.Hour, NegativeTTL: ttl})
	if mustLookup(t, r, "a") == nil {
		t.Fatal("not loaded")
	}
	time.Sleep(ttl + 50*time.Millisecond) // let a miss reload again
	before := r.LoadCount()

	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, 100)
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c, err := r.Lookup(context.Background(), "unknown-id")
			if err != nil || c != nil {
				errs <- fmt.Errorf("Lookup = %+v, %v", c, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := r.LoadCount() - before; n < 1 || n > 2 {
		t.Fatalf("%d loads for 100 concurrent misses, want 1 (at most 2)", n)
	}
}

// TestRegistryNegativeCache: a miss is trusted for NegativeTTL; then a new
// client is found by a miss-triggered load.
func TestRegistryNegativeCache(t *testing.T) {
	_, raw, db := setup(t, testPrefix)
	const ttl = 300 * time.Millisecond
	r := newRegistry(t, db, RegistryOptions{RefreshInterval: time.Hour, NegativeTTL: ttl})
	if c := mustLookup(t, r, "late"); c != nil { // first load
		t.Fatal("found before insertion")
	}
	time.Sleep(ttl + 50*time.Millisecond)
	before := r.LoadCount()
	if mustLookup(t, r, "late") != nil {
		t.Fatal("found before insertion")
	}
	if n := r.LoadCount() - before; n != 1 {
		t.Fatalf("miss after TTL: %d loads, want 1", n)
	}
	mariadbtest.InsertClient(t, raw, testPrefix, mariadbtest.Client{Name: "L", ID: "late", Secret: "sl"})
	for i := 0; i < 50; i++ {
		for _, id := range []string{"late", fmt.Sprintf("flood-%d", i)} {
			if c := mustLookup(t, r, id); c != nil {
				t.Fatalf("%s found within the negative TTL", id)
			}
		}
	}
	if n := r.LoadCount() - before; n != 1 {
		t.Fatalf("misses within TTL: %d loads, want 1", n)
	}
	time.Sleep(ttl + 50*time.Millisecond)
	if c := mustLookup(t, r, "late"); c == nil || !c.CheckSecret("sl") {
		t.Fatalf("new client not found after the TTL: %+v", c)
	}
	if n := r.LoadCount() - before; n != 2 {
		t.Fatalf("%d loads, want 2", n)
	}
}

// TestRegistryDatabaseDown cuts the database off through a TCP proxy after a
// successful load: known clients keep working, unknown ones are nil, the
// failure is logged once per RefreshInterval, and recovery is noticed.
func TestRegistryDatabaseDown(t *testing.T) {
	dsn, raw, _ := setup(t, testPrefix)
	mariadbtest.InsertClient(t, raw, testPrefix, mariadbtest.Client{Name: "A", ID: "a", Secret: "sa"})
	proxy, proxied := mariadbtest.StartProxy(t, dsn)
	db, err := Open(proxied, testPrefix, Options{QueryTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	logger, logs := observed()
	const ttl = 20 * time.Millisecond
	r := newRegistry(t, db, RegistryOptions{Logger: logger, RefreshInterval: time.Hour, NegativeTTL: ttl})
	if mustLookup(t, r, "a") == nil {
		t.Fatal("not loaded")
	}
	before := r.LoadCount()

	proxy.SetDown(true)
	mariadbtest.InsertClient(t, raw, testPrefix, mariadbtest.Client{Name: "B", ID: "b", Secret: "sb"})
	deadline := time.Now().Add(400 * time.Millisecond)
	requests := 0
	for time.Now().Before(deadline) {
		if c := mustLookup(t, r, "a"); c == nil || !c.CheckSecret("sa") {
			t.Fatal("known client lost while the database is down")
		}
		if c := mustLookup(t, r, "b"); c != nil {
			t.Fatal("b found while the database is down")
		}
		requests++
	}
	loads := r.LoadCount() - before
	if loads < 2 {
		t.Fatalf("only %d loads attempted while down; the test proves nothing", loads)
	}
	if loads > int64(400*time.Millisecond/ttl)+2 {
		t.Fatalf("%d loads in 400ms with NegativeTTL %v: misses hammer the database", loads, ttl)
	}
	if n := logs.FilterLevelExact(zapcore.WarnLevel).Len(); n != 1 {
		t.Fatalf("%d warnings for %d failed loads (%d requests), want 1: %v", n, loads, requests, logs.All())
	}

	proxy.SetDown(false)
	time.Sleep(ttl)
	eventually(t, "b after recovery", 5*time.Second, func() bool { return mustLookup(t, r, "b") != nil })
	if n := logs.FilterMessage("wordpress: OAuth clients loaded again").Len(); n != 1 {
		t.Fatalf("%d recovery messages, want 1", n)
	}
}

// TestRegistryDownLogsOncePerInterval: with a short interval, a long outage
// logs about once per interval, not per request or per load.
func TestRegistryDownLogsOncePerInterval(t *testing.T) {
	dsn, raw, _ := setup(t, testPrefix)
	mariadbtest.InsertClient(t, raw, testPrefix, mariadbtest.Client{Name: "A", ID: "a", Secret: "sa"})
	proxy, proxied := mariadbtest.StartProxy(t, dsn)
	db, err := Open(proxied, testPrefix, Options{QueryTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	logger, logs := observed()
	const interval = 200 * time.Millisecond
	r := newRegistry(t, db, RegistryOptions{Logger: logger, RefreshInterval: interval, NegativeTTL: 10 * time.Millisecond})
	if mustLookup(t, r, "a") == nil {
		t.Fatal("not loaded")
	}
	proxy.SetDown(true)
	start := time.Now()
	for time.Since(start) < 5*interval/2 {
		mustLookup(t, r, "a")
		mustLookup(t, r, "unknown")
	}
	elapsed := time.Since(start)
	warns := logs.FilterLevelExact(zapcore.WarnLevel).Len()
	if max := int(elapsed/interval) + 1; warns < 1 || warns > max {
		t.Fatalf("%d warnings in %v with interval %v, want 1..%d", warns, elapsed, interval, max)
	}
}

// TestRegistryClosedPool: closing the *sql.DB under a loaded registry (the
// other way a database goes away) keeps known clients working.
func TestRegistryClosedPool(t *testing.T) {
	_, raw, db := setup(t, testPrefix)
	mariadbtest.InsertClient(t, raw, testPrefix, mariadbtest.Client{Name: "A", ID: "a", Secret: "sa"})
	logger, logs := observed()
	r := newRegistry(t, db, RegistryOptions{Logger: logger, NegativeTTL: 10 * time.Millisecond})
	if mustLookup(t, r, "a") == nil {
		t.Fatal("not loaded")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if mustLookup(t, r, "a") == nil {
			t.Fatal("known client lost")
		}
		if mustLookup(t, r, "b") != nil {
			t.Fatal("unknown client found")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := logs.FilterLevelExact(zapcore.WarnLevel).Len(); n != 1 {
		t.Fatalf("%d warnings, want 1", n)
	}
}

// TestRegistryNeverLoaded: with the database down from the start, lookups
// fail with ErrUnavailable, without a load per request.
func TestRegistryNeverLoaded(t *testing.T) {
	db, err := Open("root@tcp("+closedAddr(t)+")/wordpress", testPrefix, Options{QueryTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	logger, logs := observed()
	r := newRegistry(t, db, RegistryOptions{Logger: logger, NegativeTTL: time.Hour})
	for i := 0; i < 50; i++ {
		c, err := r.Lookup(context.Background(), "a")
		if c != nil || !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Lookup = %+v, %v; want ErrUnavailable", c, err)
		}
	}
	if n := r.LoadCount(); n != 1 {
		t.Fatalf("%d loads, want 1", n)
	}
	if n := logs.FilterLevelExact(zapcore.ErrorLevel).Len(); n != 1 {
		t.Fatalf("%d error logs, want 1", n)
	}
}

// TestRegistryConcurrent reads while reloading fast, for the race detector.
func TestRegistryConcurrent(t *testing.T) {
	_, raw, db := setup(t, testPrefix)
	for i := 0; i < 5; i++ {
		mariadbtest.InsertClient(t, raw, testPrefix, mariadbtest.Client{Name: fmt.Sprint("N", i), ID: fmt.Sprint("id", i), Secret: fmt.Sprint("s", i)})
	}
	r := newRegistry(t, db, RegistryOptions{RefreshInterval: 5 * time.Millisecond, NegativeTTL: time.Millisecond})
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				id := fmt.Sprint("id", i%7) // id5, id6 unknown
				c, err := r.Lookup(context.Background(), id)
				if err != nil {
					t.Error(err)
					return
				}
				if (c != nil) != (i%7 < 5) {
					t.Errorf("Lookup(%s) = %+v", id, c)
					return
				}
				if c != nil && !c.CheckSecret(fmt.Sprint("s", i%7)) {
					t.Errorf("secret of %s rejected", id)
					return
				}
			}
		}()
	}
	wg.Wait()
	r.Close()
	n := r.LoadCount()
	time.Sleep(30 * time.Millisecond)
	if r.LoadCount() != n {
		t.Fatal("loads continue after Close")
	}
	if c := mustLookup(t, r, "id1"); c == nil {
		t.Fatal("cache not served after Close")
	}
}
