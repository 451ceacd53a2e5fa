package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/caddy-moserver/caddy-moserver/internal/testutil/wpfixture"
)

// The WordPress site of the authorization_code rows: a database of its own
// (msbench_<random>, dropped at the end) on the MariaDB the tests use
// (MYSQL_DSN, or root on 127.0.0.1:3306), with the plugin's tables as the
// tests create them, one client, one user and the client's RSA-2048 key in
// moos_oauth_public_keys.
const (
	wpPrefix     = "wp_"
	wpClientName = "Bench Client"
	wpClientID   = "BenchClientIdBenchClientIdBenchC" // 32 characters, as the plugin makes them
	wpSecret     = "BenchSecretBenchSecretBenchSecre"
	wpRedirect   = "http://127.0.0.1:9/callback"
	// codeScope is the scope of the exchange without openid: an opaque
	// access-token row and a refresh family; openIDScope adds an RS256
	// id_token and no refresh token (openid without offline_access).
	codeScope   = "profile email"
	openIDScope = "openid profile email"
	// codeLife is how far ahead the codes' expires is written: the
	// exchange checks it, and no code may expire during a run.
	codeLife = time.Hour
	// codeMargin is how many more codes than the expected rate needs are
	// inserted before a slice.
	codeMargin = 2.0
)

// wpSite is the WordPress database and the Caddy site on it.
type wpSite struct {
	database *wpfixture.Database
	db       *sql.DB
	userID   int64
	key      *rsa.PrivateKey // the client's id_token key
	port     int
	// dbPID is mariadbd's process id, for its CPU time (0 when unknown).
	dbPID int
}

// setupWordPress creates the database and fills it.
func setupWordPress(ctx context.Context) (w *wpSite, err error) {
	server := wpfixture.ServerDSN()
	d, err := wpfixture.CreateDatabase(ctx, server, "msbench_")
	if err != nil {
		return nil, err
	}
	w = &wpSite{database: d}
	defer func() {
		if err != nil {
			w.close()
		}
	}()
	if w.db, err = wpfixture.Open(d.DSN); err != nil {
		return nil, err
	}
	if err := wpfixture.CreatePluginTables(ctx, w.db, wpPrefix); err != nil {
		return nil, err
	}
	if err := wpfixture.InsertClient(ctx, w.db, wpPrefix, wpfixture.Client{Name: wpClientName, ID: wpClientID, Secret: wpSecret, RedirectURI: wpRedirect}); err != nil {
		return nil, err
	}
	w.userID, err = wpfixture.InsertUser(ctx, w.db, wpPrefix, wpfixture.User{Login: "bench", Email: "bench@example.com",
		Nicename: "bench", DisplayName: "Bench User", Registered: time.Now(),
		Meta: map[string]string{"first_name": "Ada", "last_name": "Lovelace", "nickname": "bench"}})
	if err != nil {
		return nil, err
	}
	if w.key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&w.key.PublicKey)
	if err != nil {
		return nil, err
	}
	err = wpfixture.InsertPublicKey(ctx, w.db, wpPrefix, wpClientID, "RS256",
		string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})),
		string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(w.key)})))
	if err != nil {
		return nil, err
	}
	w.dbPID = mariadbPID(ctx, w.db, server)
	return w, nil
}

// close drops the database.
func (w *wpSite) close() {
	if w.db != nil {
		_ = w.db.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.database.Drop(ctx); err != nil {
		logf("%v", err)
	}
}

// mariadbPID finds the process of the server when it runs on this machine:
// the pid in its @@pid_file, if that process is a mariadbd or mysqld; 0
// otherwise.
func mariadbPID(ctx context.Context, db *sql.DB, serverDSN string) int {
	cfg, err := mysql.ParseDSN(serverDSN)
	if err != nil {
		return 0
	}
	if host, _, err := net.SplitHostPort(cfg.Addr); cfg.Net == "tcp" && (err != nil || !(host == "localhost" || net.ParseIP(host).IsLoopback())) {
		return 0
	}
	var path string
	if err := db.QueryRowContext(ctx, "SELECT @@pid_file").Scan(&path); err != nil {
		return 0
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if c := strings.TrimSpace(string(comm)); err != nil || c != "mariadbd" && c != "mysqld" {
		return 0
	}
	return pid
}

// base is the site's origin.
func (w *wpSite) base() string { return fmt.Sprintf("http://127.0.0.1:%d", w.port) }

// tokenURL is the site's token endpoint.
func (w *wpSite) tokenURL() string { return w.base() + tokenPath }

// caddyfile is the site's block: a moserver on the WordPress database,
// its opaque access tokens written to the plugin's table (the default),
// its refresh families in Redis.
func (w *wpSite) caddyfile(redisURL, keyPath string) string {
	return fmt.Sprintf(`
# WordPress: the plugin's tables in the MariaDB database %[1]s (authorization_code rows)
http://127.0.0.1:%[2]d {
	moserver {
		issuer %[3]s/wp-json/moserver
		storage redis %[4]s
		key_prefix bench-wp:
		signing_key %[5]q
		wordpress %[6]q {
			table_prefix %[7]s
			index_tables
		}
	}
	respond "not the token endpoint" 404
}
`, w.database.Name, w.port, w.base(), redisURL, keyPath, w.database.DSN, wpPrefix)
}

// newCode returns a fresh code: 40 hex characters, as the plugin's.
func newCode() string {
	b := make([]byte, 20)
	_, _ = rand.Read(b) // never fails
	return hex.EncodeToString(b)
}

// exchangeBody is the form of one exchange (the client authenticates with
// HTTP Basic, formHeader).
func exchangeBody(code string) []byte {
	return []byte("grant_type=authorization_code&code=" + code + "&redirect_uri=" + url.QueryEscape(wpRedirect))
}

// insertCodes makes n fresh codes of the client and user with scope,
// inserts them (expiring codeLife ahead) with up to parallel connections,
// and returns their exchange bodies in the order they were made.
func (w *wpSite) insertCodes(ctx context.Context, n int, scope string, parallel int) ([][]byte, error) {
	rows := make([]wpfixture.AuthCode, n)
	bodies := make([][]byte, n)
	expires := time.Now().Add(codeLife)
	for i := range rows {
		code := newCode()
		rows[i] = wpfixture.AuthCode{Code: code, ClientID: wpClientID, UserID: w.userID, RedirectURI: wpRedirect, Expires: expires, Scope: scope}
		bodies[i] = exchangeBody(code)
	}
	per := (n + parallel - 1) / parallel
	var wg sync.WaitGroup
	errs := make([]error, parallel)
	for p := range parallel {
		lo, hi := p*per, min((p+1)*per, n)
		if lo >= hi {
			break
		}
		wg.Go(func() { errs[p] = wpfixture.InsertAuthCodes(ctx, w.db, wpPrefix, rows[lo:hi]) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("inserting %d codes: %w", n, err)
	}
	return bodies, nil
}

// clearCodes deletes every code left in the table.
func (w *wpSite) clearCodes(ctx context.Context) error {
	_, err := w.db.ExecContext(ctx, "DELETE FROM `"+wpPrefix+"moos_oauth_authorization_codes`")
	return err
}

// codesFor is how many codes a slice of span needs at rate exchanges per
// second, with codeMargin to spare, as a whole number of blocks of the
// workers (each worker has its own, stream.perWorker), at least 16 each.
func codesFor(rate float64, span time.Duration, workers int) int {
	per := int(math.Ceil(rate * span.Seconds() * codeMargin / float64(workers)))
	return max(per, 16) * workers
}

// codeRow supplies the codes of an authorization_code row measured in
// slices: before each slice the codes the last one left are deleted and
// codeMargin times as many fresh ones as the slice needs at the rate of
// the last one are inserted, so the table holds a few seconds of
// exchanges, as a live site's table does (a code lives 30 s, and the
// plugin deletes it when it is redeemed), instead of every code of the
// row at once.
type codeRow struct {
	w       *wpSite
	scope   string
	workers int
	// rate is the exchanges per second of the last slice (or the
	// estimate before the first).
	rate float64
	// inserted counts the codes inserted for the row's slices; largest
	// is the most the table held at the start of one.
	inserted, largest int
}

// refill is the stream's beforeSlice.
func (c *codeRow) refill(ctx context.Context, s *stream) func(i int, prev *loadResult, warm, d time.Duration) error {
	return func(i int, prev *loadResult, warm, d time.Duration) error {
		if prev != nil && prev.Took > 0 && prev.Attempted > 0 {
			c.rate = float64(prev.Attempted) / prev.Took.Seconds()
		}
		if err := c.w.clearCodes(ctx); err != nil {
			return err
		}
		bodies, err := c.w.insertCodes(ctx, codesFor(c.rate, warm+d, c.workers), c.scope, 1)
		if err != nil {
			return err
		}
		c.inserted += len(bodies)
		c.largest = max(c.largest, len(bodies))
		s.setBodies(bodies)
		return nil
	}
}

// estimate sets rate from a few short unmeasured runs of s, each with the
// codes a second needs at the rate of the one before (starting from a
// guess), so that the first slice is refilled with enough codes.
func (c *codeRow) estimate(ctx context.Context, g *generator, s *stream) error {
	c.rate = 500
	for range 3 {
		if err := c.w.clearCodes(ctx); err != nil {
			return err
		}
		bodies, err := c.w.insertCodes(ctx, codesFor(c.rate, time.Second, c.workers), c.scope, 1)
		if err != nil {
			return err
		}
		s.setBodies(bodies)
		res, err := g.run(ctx, s, 0, time.Second)
		if err != nil {
			return err
		}
		if res.OK == 0 {
			return fmt.Errorf("no exchange succeeded: %s", strings.Join(describeErrors(res.ErrorKinds), "; "))
		}
		c.rate = float64(res.Attempted) / res.Took.Seconds()
	}
	return c.w.clearCodes(ctx)
}

// checkExchange redeems one code of scope through the site and checks the
// answer is the plugin's: an access token that is a row of its table, a
// refresh token unless openid comes without offline_access, an id_token
// signed with the client's key when openid is asked for, and a second
// exchange of the code refused.
func (w *wpSite) checkExchange(ctx context.Context, scope string) (int, error) {
	bodies, err := w.insertCodes(ctx, 1, scope, 1)
	if err != nil {
		return 0, err
	}
	c := &http.Client{Transport: newTransport(1), Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	rc := readyCheck{url: w.tokenURL(), header: formHeader(wpClientID, wpSecret), body: bodies[0]}
	resp, err := rc.do(ctx, c)
	if err != nil {
		return 0, fmt.Errorf("exchange: %w", err)
	}
	at := jsonString(resp, "access_token")
	var rows int
	if err := w.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM `"+wpPrefix+"moos_oauth_access_tokens` WHERE access_token = ?", at).Scan(&rows); err != nil {
		return 0, err
	}
	openid := strings.Contains(" "+scope+" ", " openid ")
	switch {
	case len(at) != 32 || rows != 1:
		return 0, fmt.Errorf("the access token %q is not one row of the plugin's table (%d): %s", at, rows, resp)
	case openid == (jsonString(resp, "refresh_token") != ""):
		return 0, fmt.Errorf("scope %q: a refresh token where none is due, or none where one is: %s", scope, resp)
	case openid:
		if err := verifyRS256(jsonString(resp, "id_token"), &w.key.PublicKey); err != nil {
			return 0, fmt.Errorf("id_token: %w", err)
		}
	}
	if _, err := rc.do(ctx, c); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		return 0, fmt.Errorf("a second exchange of the code: %v, want invalid_grant", err)
	}
	return len(resp), nil
}

// verifyRS256 checks a JWT's RS256 signature with pub.
func verifyRS256(token string, pub *rsa.PublicKey) error {
	i := strings.LastIndexByte(token, '.')
	if i < 0 || strings.Count(token, ".") != 2 {
		return fmt.Errorf("not a JWT: %q", token)
	}
	sig, err := base64.RawURLEncoding.DecodeString(token[i+1:])
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(token[:i]))
	return rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig)
}

// dbCounters are the server's status counters recorded over an
// authorization_code row, per request of the row (they are the whole
// server's: other users of it count too).
var dbCounters = []string{"Questions", "Handler_read_rnd_next", "Innodb_row_lock_waits", "Innodb_row_lock_time", "Innodb_data_fsyncs"}

// status reads dbCounters.
func (w *wpSite) status(ctx context.Context) (map[string]float64, error) {
	rows, err := w.db.QueryContext(ctx, "SHOW GLOBAL STATUS WHERE Variable_name IN ('"+strings.Join(dbCounters, "', '")+"')")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	m := map[string]float64{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, err
		}
		m[k], _ = strconv.ParseFloat(v, 64)
	}
	return m, rows.Err()
}

// perRequest divides the growth of each counter from before to after by n.
func perRequest(before, after map[string]float64, n int) map[string]float64 {
	if n <= 0 || before == nil || after == nil {
		return nil
	}
	m := map[string]float64{}
	for k, a := range after {
		if b, ok := before[k]; ok {
			m[k] = (a - b) / float64(n)
		}
	}
	return m
}

// redactedServer names the MariaDB server of the rows without a password.
func redactedServer() string {
	cfg, err := mysql.ParseDSN(wpfixture.ServerDSN())
	if err != nil {
		return "a malformed MYSQL_DSN"
	}
	return cfg.User + "@" + cfg.Net + "(" + cfg.Addr + ")"
}

// codeSupply says how the codes of an authorization_code row were supplied.
type codeSupply struct {
	// Inserted is how many codes were inserted for the row (not counting
	// the unmeasured runs that estimate the rate before it).
	Inserted int `json:"inserted"`
	// LargestTable is the most codes the table held at the start of a
	// slice (refilled rows), or the codes inserted before the row.
	LargestTable int `json:"largest_table"`
	// Prefilled marks the row whose codes were all inserted before it;
	// FillSeconds is how long that took.
	Prefilled   bool    `json:"prefilled,omitempty"`
	FillSeconds float64 `json:"fill_seconds,omitempty"`
}

// oneClient is the pre-filled row measured with one client first.
type oneClient struct {
	RPS    float64 `json:"requests_per_second"`
	P50Ms  float64 `json:"p50_ms"`
	MaxMs  float64 `json:"max_ms"`
	OK     int     `json:"ok"`
	Errors int     `json:"errors"`
}

// The pre-filled row's one-client run: how long, and on which codes.
const (
	oneClientFor    = 3 * time.Second
	oneClientStride = 150 // 2,000 of 300,000 codes, evenly spread
)

// The authorization_code rows.
const (
	codeKey      = "authcode"
	openIDKey    = "authcode_openid"
	prefilledKey = "authcode_prefilled"
	unindexedKey = "authcode_unindexed"
)

// codeIndex is the index index_tables adds to the plugin's code table.
const codeIndex = "moserver_authorization_code"

// waitIndexed waits until the module has indexed the code table
// (index_tables), for at most a minute.
func (w *wpSite) waitIndexed(ctx context.Context) error {
	deadline := time.Now().Add(time.Minute)
	for {
		var n int
		err := w.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE()"+
			" AND TABLE_NAME = ? AND INDEX_NAME = ?", wpPrefix+"moos_oauth_authorization_codes", codeIndex).Scan(&n)
		switch {
		case err != nil:
			return err
		case n > 0:
			return nil
		case time.Now().After(deadline):
			return errors.New("index_tables did not index the code table within a minute")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// codeRows measures the exchange of the plugin's codes on the site with
// index_tables: without openid and with it (an RS256 id_token per request,
// against the RSA-signing bound measured with the client's key alongside),
// each with its codes inserted right before each slice; then, with
// BENCH_CODES > 0, without openid from a table holding BENCH_CODES codes
// inserted before the row; and last without openid again, on the plugin's
// own schema (the index dropped).
func (b *bench) codeRows(ctx context.Context) error {
	rows := []struct{ key, name, label, scope string }{
		{codeKey, "authorization_code (MariaDB + Redis)", "authcode", codeScope},
		{openIDKey, "authorization_code with openid (RS256 id_token)", "authcode openid", openIDScope},
	}
	if b.wpErr != nil {
		for _, r := range rows {
			b.rep.Rows = append(b.rep.Rows, &Row{Key: r.key, Name: r.name, Label: r.label, Extra: true, Failed: "no WordPress database: " + b.wpErr.Error()})
		}
		b.rep.Rows = append(b.rep.Rows, &Row{Key: unindexedKey, Name: "authorization_code, the plugin's unindexed table", Label: "authcode no index", Extra: true, Failed: "no WordPress database: " + b.wpErr.Error()})
		return nil
	}
	for _, r := range rows {
		if err := b.codeRow(ctx, r.key, r.name, r.label, r.scope); err != nil {
			return err
		}
	}
	if err := b.prefilledRow(ctx); err != nil {
		return err
	}
	// The plugin's own schema: the same row once the index is dropped.
	if _, err := b.wp.db.ExecContext(ctx, "ALTER TABLE `"+wpPrefix+"moos_oauth_authorization_codes` DROP INDEX "+codeIndex); err != nil {
		return fmt.Errorf("dropping the code table's index: %w", err)
	}
	logf("dropped the code table's index: the plugin's own schema, every lookup a scan")
	return b.codeRow(ctx, unindexedKey, "authorization_code, the plugin's unindexed table", "authcode no index", codeScope)
}

// codeRow measures the exchange of codes of scope, inserted right before
// each slice, as the row key.
func (b *bench) codeRow(ctx context.Context, key, name, label, scope string) error {
	warm, dur := b.cfg.warmup, b.cfg.duration
	header := formHeader(wpClientID, wpSecret)
	r := struct{ key, name, label, scope string }{key, name, label, scope}
	{
		c := &codeRow{w: b.wp, scope: r.scope, workers: b.cfg.concurrency}
		s := &stream{url: b.wp.tokenURL(), header: header, perWorker: true, db: true}
		logf("%s: estimating the rate from three unmeasured 1 s runs", r.name)
		if err := c.estimate(ctx, b.gen, s); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			b.rep.Rows = append(b.rep.Rows, &Row{Key: r.key, Name: r.name, Label: r.label, Extra: true, Failed: err.Error()})
			return nil
		}
		logf("%s: ~%.0f exchanges/s; before each slice the codes left are deleted and %.1f× the codes the slice needs at the last slice's rate are inserted", r.name, c.rate, codeMargin)
		s.beforeSlice = c.refill(ctx, s)
		var bound *rsaBound
		if r.scope == openIDScope {
			// The bound with the client's own key, measured before the
			// row, after each of its slices and after it, as for RS256.
			var err error
			if bound, err = measureRSAKey(b.wp.key, time.Second); err != nil {
				return err
			}
			s.afterSlice = func(int) {
				if m, err := measureRSAKey(b.wp.key, dur/alternations); err == nil {
					bound = bound.mean(m)
				}
			}
		}
		st0, _ := b.wp.status(ctx)
		row, res, err := b.measure(ctx, r.key, r.name, r.label, true, s, warm, dur)
		if err != nil {
			return err
		}
		st1, _ := b.wp.status(ctx)
		if bound != nil {
			if m, err := measureRSAKey(b.wp.key, time.Second); err == nil {
				bound = bound.mean(m)
			}
			row.RSA = bound
			logf("RSA bound with the client's key: %.0f µs of CPU per signature, %.0f signatures/s (%d measurements)", bound.CPUPerSignUs, bound.PerSecond, bound.measurements())
		}
		row.Codes = &codeSupply{Inserted: c.inserted, LargestTable: c.largest}
		if res != nil {
			row.DB = perRequest(st0, st1, res.Attempted)
		}
		if err := b.wp.clearCodes(ctx); err != nil {
			return err
		}
	}
	return nil
}

// prefilledRow, with BENCH_CODES > 0, measures the exchange from a table
// holding BENCH_CODES codes inserted before the row.
func (b *bench) prefilledRow(ctx context.Context) error {
	warm, dur := b.cfg.warmup, b.cfg.duration
	header := formHeader(wpClientID, wpSecret)
	if b.cfg.codes <= 0 {
		return nil
	}
	n := b.cfg.codes
	name := fmt.Sprintf("authorization_code, %s codes in the table", humanCount(n))
	logf("%s: inserting %d codes in multi-row INSERTs over 4 connections (not timed)", name, n)
	start := time.Now()
	bodies, err := b.wp.insertCodes(ctx, n, codeScope, 4)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.rep.Rows = append(b.rep.Rows, &Row{Key: prefilledKey, Name: name, Label: "authcode " + humanCount(n) + " table", Extra: true, Failed: err.Error()})
		return nil
	}
	fill := time.Since(start)
	logf("inserted %d codes in %.1f s", n, fill.Seconds())
	// One client first, on every oneClientStride-th code (spread over the
	// table): what an exchange costs when nothing waits for anything else.
	var spread, rest [][]byte
	for i, body := range bodies {
		if i%oneClientStride == 0 {
			spread = append(spread, body)
		} else {
			rest = append(rest, body)
		}
	}
	one, err := (&generator{concurrency: 1}).run(ctx, &stream{url: b.wp.tokenURL(), header: header, bodies: spread, db: true}, 0, oneClientFor)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var single *oneClient
	if err == nil {
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		single = &oneClient{RPS: one.RPS, P50Ms: ms(one.P50), MaxMs: ms(one.Max), OK: one.OK, Errors: one.Errors}
		logf("one client at a time: %.1f exchanges/s, p50 %.0f ms, %d errors", single.RPS, single.P50Ms, single.Errors)
	}
	logf("%d clients, each redeeming its own block of the other codes", b.cfg.concurrency)
	st0, _ := b.wp.status(ctx)
	row, res, err := b.measure(ctx, prefilledKey, name, "authcode "+humanCount(n)+" table", true,
		&stream{url: b.wp.tokenURL(), header: header, bodies: rest, perWorker: true, db: true}, warm, dur)
	if err != nil {
		return err
	}
	st1, _ := b.wp.status(ctx)
	row.Codes = &codeSupply{Inserted: n, LargestTable: n, Prefilled: true, FillSeconds: fill.Seconds()}
	row.OneClient = single
	if res != nil {
		row.DB = perRequest(st0, st1, res.Attempted)
	}
	_, err = b.wp.db.ExecContext(ctx, "TRUNCATE TABLE `"+wpPrefix+"moos_oauth_authorization_codes`")
	return err
}
