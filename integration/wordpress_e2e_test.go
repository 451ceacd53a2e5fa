//go:build linux

package integration

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/caddy-moserver/caddy-moserver/internal/testutil/caddyproc"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/mariadbtest"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/redistest"
)

// TestWordPressE2E runs a real WordPress (Debian's wordpress package, PHP-FPM,
// MariaDB) behind the built Caddy: php_fastcgi after moserver, as in the
// README. The plugin's PHP is not installed (it is not in Debian), only its
// tables and a stand-in for its authorize step (testdata/wordpress/mu-plugins,
// see TestWordPressLogin), so whatever else reaches PHP at /wp-json/moserver/...
// is answered by WordPress itself with 404 rest_no_route.
//
// Needs, besides MariaDB and redis-server: the Debian packages wordpress,
// php-fpm and php-mysql (./xcaddy.sh test installs them when missing). The test
// fails, not skips, without them.
//
// The WordPress tree is private to the test (see newWordPressTree); the
// machine's /etc/wordpress, Apache and php-fpm service are never used.
func TestWordPressE2E(t *testing.T) {
	wp := startWordPress(t)
	base, title, db, admin := wp.base, wp.title, wp.db, wp.admin

	const clientName = "E2E Client"
	mariadbtest.InsertClient(t, db, "wp_", mariadbtest.Client{Name: clientName, ID: clientID, Secret: clientSecret,
		RedirectURI: base + "/callback"})
	refresh := mariadbtest.RandomToken(t)
	mariadbtest.InsertRefreshToken(t, db, "wp_", refresh, clientID, admin, time.Now().Add(14*24*time.Hour), "profile email")

	caddyproc.Start(t, wp.caddyfile(t, ""), base+"/")
	c := &e2eClient{t: t, base: base}

	t.Run("WordPress pages come through", func(t *testing.T) {
		c := c.with(t)
		home := c.get("/")
		if home.status != 200 || !strings.Contains(home.body, `<h1 class="site-title">`+title+`</h1>`) ||
			!strings.Contains(home.body, "<title>"+title) {
			t.Fatalf("GET / = %d, want 200 with the site title %q:\n%.2000s", home.status, title, home.body)
		}
		if !strings.Contains(home.header.Get("Link"), `rel="https://api.w.org/"`) {
			t.Errorf("GET / has no WordPress REST discovery link: %v", home.header)
		}
		login := c.get("/wp-login.php")
		if login.status != 200 || !strings.Contains(login.body, `name="log"`) {
			t.Errorf("GET /wp-login.php = %d, want WordPress's login form:\n%.2000s", login.status, login.body)
		}
		for _, path := range []string{"/wp-json/", "/?rest_route=/"} {
			r := c.get(path)
			if r.status != 200 || r.json == nil {
				t.Fatalf("GET %s = %d %q, want 200 JSON:\n%.2000s", path, r.status, r.header.Get("Content-Type"), r.body)
			}
			ns, ok := r.json["namespaces"].([]any)
			if !ok || !containsAny(ns, "wp/v2") || containsAny(ns, "moserver") {
				t.Errorf("GET %s: namespaces %v, want wp/v2 and no moserver (the plugin is not installed)", path, r.json["namespaces"])
			}
			if r.str("name") != title {
				t.Errorf("GET %s: name %q, want %q", path, r.str("name"), title)
			}
		}
	})

	t.Run("the WordPress client gets client credentials", func(t *testing.T) {
		c := c.with(t)
		for _, path := range []string{tokenPath, "/?rest_route=/moserver/token"} {
			r := mustToken(t, c.form(path, ccValues()))
			if s := r.str("scope"); s != "email profile" && s != "profile email" {
				t.Errorf("POST %s: scope %q, want the plugin's scopes table", path, s)
			}
		}
		mustError(t, c.form(tokenPath, url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {"WRONG"}}), 401, "invalid_client")
	})

	t.Run("the plugin's refresh token is redeemed exactly once", func(t *testing.T) {
		c := c.with(t)
		const n = 10
		var wg sync.WaitGroup
		var mu sync.Mutex
		var wins []reply
		losses := 0
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := c.do(http.MethodPost, tokenPath, "application/x-www-form-urlencoded", refreshValues(refresh).Encode())
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					t.Errorf("refresh: %v", err)
				case r.status == 200:
					wins = append(wins, r)
				case r.status == 400 && r.str("error") == "invalid_grant":
					losses++
				default:
					t.Errorf("unexpected answer %d %s", r.status, r.body)
				}
			}()
		}
		wg.Wait()
		if len(wins) != 1 || losses != n-1 {
			t.Fatalf("%d successes, %d invalid_grant; want 1 and %d", len(wins), losses, n-1)
		}
		var left int
		if err := db.QueryRow("SELECT COUNT(*) FROM wp_moos_oauth_refresh_tokens WHERE refresh_token = ?", refresh).Scan(&left); err != nil || left != 0 {
			t.Errorf("the plugin's refresh-token row is still there (%d, %v)", left, err)
		}
		won := mustToken(t, wins[0])
		at := won.str("access_token")
		if !hex32.MatchString(at) {
			t.Fatalf("access token %q is not the plugin's opaque format", at)
		}
		var client, scope string
		var user int64
		var expires time.Time
		err := db.QueryRow("SELECT client_id, user_id, expires, scope FROM wp_moos_oauth_access_tokens WHERE access_token = ?", at).
			Scan(&client, &user, &expires, &scope)
		if err != nil {
			t.Fatalf("access token not recorded in wp_moos_oauth_access_tokens: %v", err)
		}
		if client != clientID || user != admin || scope != "profile email" {
			t.Errorf("access-token row: client %q user %d scope %q; want %q %d %q", client, user, scope, clientID, admin, "profile email")
		}
		if d := time.Until(expires); d < 55*time.Minute || d > 65*time.Minute {
			t.Errorf("access-token row expires %v, want about an hour from now (UTC)", expires)
		}
	})

	t.Run("authorization_code is answered by the module", func(t *testing.T) {
		c := c.with(t)
		v := url.Values{"grant_type": {"authorization_code"}, "code": {mariadbtest.RandomToken(t)},
			"redirect_uri": {base + "/callback"}, "client_id": {clientID}, "client_secret": {clientSecret}}
		for _, path := range []string{tokenPath, "/?rest_route=/moserver/token"} {
			r := c.form(path, v)
			// An unknown code: the module's RFC 6749 error, not WordPress's 404.
			if r.status != 400 || r.str("error") != "invalid_grant" {
				t.Errorf("POST %s authorization_code = %d %s, want the module's 400 invalid_grant", path, r.status, r.body)
			}
		}
	})
}

// wordpressSite is a private WordPress (Debian's package, php-fpm, MariaDB)
// ready to be served by Caddy on port at base.
type wordpressSite struct {
	port        int
	base, title string
	dsn, tree   string
	fpm         string // php-fpm's socket
	php         string // the php CLI
	db          *sql.DB
	admin       int64 // the admin user's id
	// adminPassword logs the admin user in at wp-login.php.
	adminPassword string
}

// startWordPress installs WordPress with pretty permalinks and the plugin's
// tables on a fresh database and starts php-fpm for it; the caller starts Caddy.
func startWordPress(t *testing.T) *wordpressSite {
	t.Helper()
	fpmBin, phpBin := requireWordPressPackages(t)

	port := caddyproc.FreePort(t)
	wp := &wordpressSite{port: port, base: fmt.Sprintf("http://127.0.0.1:%d", port),
		title: "moserver e2e " + mariadbtest.RandomToken(t)[:8]}

	wp.dsn = mariadbtest.Start(t)
	wp.db = mariadbtest.OpenDB(t, wp.dsn)
	// The plugin's tables. CreatePluginTables also makes minimal wp_users,
	// wp_usermeta and wp_options for the tests without WordPress; here WordPress
	// makes its own (it refuses to install while any of its tables exists), and
	// the plugin's option is set again once it has.
	mariadbtest.CreatePluginTables(t, wp.db, "wp_")
	for _, table := range []string{"wp_users", "wp_usermeta", "wp_options"} {
		mariadbtest.Exec(t, wp.db, "DROP TABLE `"+table+"`")
	}

	wp.tree = newWordPressTree(t, wp.dsn, wp.base)
	wp.php, wp.adminPassword = phpBin, mariadbtest.RandomToken(t)
	wp.admin = installWordPress(t, phpBin, wp.tree, wp.title, wp.adminPassword)
	mariadbtest.SetOption(t, wp.db, "wp_", mariadbtest.OptSecretEncrypted, "1")
	var dbAdmin int64
	if err := wp.db.QueryRow("SELECT ID FROM wp_users WHERE user_login = 'admin'").Scan(&dbAdmin); err != nil || dbAdmin != wp.admin {
		t.Fatalf("admin user: install said %d, wp_users has %d (%v)", wp.admin, dbAdmin, err)
	}
	wp.fpm = startPHPFPM(t, fpmBin)
	return wp
}

// caddyfile is the site as the README has it: moserver (reading this
// WordPress's clients and refresh tokens, on its own Redis keys) before
// php_fastcgi. extra is appended (more site blocks).
func (wp *wordpressSite) caddyfile(t *testing.T, extra string) string {
	t.Helper()
	return fmt.Sprintf(`http://127.0.0.1:%d {
	root * %s
	moserver {
		issuer %s/wp-json/moserver
		storage redis %s
		key_prefix %s
		wordpress "%s" {
			table_prefix wp_
		}
	}
	php_fastcgi unix/%s
	file_server
}
%s`, wp.port, wp.tree, wp.base, redisURL(t), redistest.Prefix(t), wp.dsn, wp.fpm, extra)
}

// requireWordPressPackages fails the test, saying what to install, unless
// Debian's wordpress, php-fpm and php-mysql are there; it returns the
// php-fpm and php CLI binaries.
func requireWordPressPackages(t *testing.T) (fpm, php string) {
	t.Helper()
	const hint = "install them with: apt-get install --no-install-recommends wordpress php-fpm php-mysql " +
		"(./xcaddy.sh test does it when they are missing)"
	if _, err := os.Stat(filepath.Join(wordpressDir, "wp-load.php")); err != nil {
		t.Fatalf("Debian's WordPress is not installed (%v); %s", err, hint)
	}
	fpms, _ := filepath.Glob("/usr/sbin/php-fpm*")
	if len(fpms) == 0 {
		t.Fatalf("no php-fpm binary (/usr/sbin/php-fpm*); %s", hint)
	}
	sort.Strings(fpms) // php-fpm8.2 < php-fpm8.3; the newest last
	fpm = fpms[len(fpms)-1]
	php, err := exec.LookPath("php")
	if err != nil {
		t.Fatalf("no php CLI on PATH (%v); %s", err, hint)
	}
	if mysqli, _ := filepath.Glob("/usr/lib/php/*/mysqli.so"); len(mysqli) == 0 {
		t.Fatalf("PHP has no mysqli extension; %s", hint)
	}
	return fpm, php
}

// wordpressDir is where Debian's wordpress package puts WordPress.
const wordpressDir = "/usr/share/wordpress"

// entryDirs are the directories of wordpressDir whose PHP files are entry
// points (requested by URL) and are copied rather than symlinked.
var entryDirs = map[string]bool{".": true, "wp-admin": true, "wp-admin/network": true, "wp-admin/user": true}

// newWordPressTree makes a private WordPress document root for the site base
// on the database of dsn and returns its path.
//
// Debian's /usr/share/wordpress/wp-config.php loads /etc/wordpress/config-<Host>.php;
// a test must not write there. PHP resolves symlinks in __DIR__, so a tree of
// symlinks alone would lead every entry point (index.php -> wp-blog-header.php ->
// wp-load.php) back to /usr/share/wordpress and that wp-config.php. So the
// tree is: a copy of the PHP entry points (the top level, wp-admin,
// wp-admin/network, wp-admin/user: ~145 small files; wp-load.php among them
// makes the tree ABSPATH), symlinks for everything else (wp-includes,
// wp-admin/includes, assets), our own wp-config.php and our own wp-content
// holding the minimal theme of testdata/wordpress/theme (Debian ships no
// theme in the wordpress package).
func newWordPressTree(t *testing.T, dsn, base string) string {
	t.Helper()
	tree := filepath.Join(t.TempDir(), "wordpress")
	mirrorWordPress(t, tree, ".")

	theme, err := filepath.Abs(filepath.Join("testdata", "wordpress", "theme"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"plugins", "themes", "uploads"} {
		if err := os.MkdirAll(filepath.Join(tree, "wp-content", d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(theme, filepath.Join(tree, "wp-content", "themes", e2eTheme)); err != nil {
		t.Fatal(err)
	}
	// The must-use plugins: a route probe that routes nothing unless a test
	// asks, and the stand-in for the plugin's authorize step (see the files).
	muPlugins, err := filepath.Glob(filepath.Join("testdata", "wordpress", "mu-plugins", "*.php"))
	if err != nil || len(muPlugins) == 0 {
		t.Fatalf("no must-use plugins in testdata/wordpress/mu-plugins (%v)", err)
	}
	if err := os.MkdirAll(filepath.Join(tree, "wp-content", "mu-plugins"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range muPlugins {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(abs, filepath.Join(tree, "wp-content", "mu-plugins", filepath.Base(p))); err != nil {
			t.Fatal(err)
		}
	}

	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("DSN %q: %v", dsn, err)
	}
	host := cfg.Addr // host:port, as DB_HOST takes it
	if cfg.Net == "unix" {
		host = "localhost:" + cfg.Addr
	}
	var b strings.Builder
	b.WriteString("<?php\n// Written by TestWordPressE2E (integration/wordpress_e2e_test.go).\n")
	for _, c := range [][2]string{
		{"DB_NAME", cfg.DBName}, {"DB_USER", cfg.User}, {"DB_PASSWORD", cfg.Passwd}, {"DB_HOST", host},
		{"DB_CHARSET", "utf8mb4"}, {"DB_COLLATE", ""},
		{"WP_HOME", base}, {"WP_SITEURL", base},
		{"WP_CONTENT_DIR", filepath.Join(tree, "wp-content")}, {"WP_DEFAULT_THEME", e2eTheme},
	} {
		fmt.Fprintf(&b, "define( %s, %s );\n", phpString(c[0]), phpString(c[1]))
	}
	b.WriteString(`// No background requests: no WP-Cron, no update checks, no HTTP to other hosts.
define( 'DISABLE_WP_CRON', true );
define( 'AUTOMATIC_UPDATER_DISABLED', true );
define( 'WP_AUTO_UPDATE_CORE', false );
define( 'WP_HTTP_BLOCK_EXTERNAL', true );
define( 'WP_DEBUG', false );
$table_prefix = 'wp_';
if ( ! defined( 'ABSPATH' ) ) {
	define( 'ABSPATH', __DIR__ . '/' );
}
require_once ABSPATH . 'wp-settings.php';
`)
	if err := os.WriteFile(filepath.Join(tree, "wp-config.php"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return tree
}

const e2eTheme = "moserver-e2e"

// mirrorWordPress fills dst/rel from wordpressDir/rel as newWordPressTree says.
func mirrorWordPress(t *testing.T, dst, rel string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dst, rel), 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(wordpressDir, rel))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		r := filepath.Join(rel, e.Name())
		src, to := filepath.Join(wordpressDir, r), filepath.Join(dst, r)
		switch {
		case r == "wp-config.php" || r == "wp-content":
			// ours
		case e.IsDir() && entryDirs[r]:
			mirrorWordPress(t, dst, r)
		case entryDirs[rel] && e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".php"):
			data, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(to, data, 0o644); err != nil {
				t.Fatal(err)
			}
		default:
			if err := os.Symlink(src, to); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// phpString is s as a single-quoted PHP string literal.
func phpString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

var installedLine = regexp.MustCompile(`(?m)^moserver-e2e: installed user_id=(\d+)$`)

// installWordPress runs testdata/wordpress/install.php with the php CLI and
// returns the id of the admin user it created, whose password is password.
func installWordPress(t *testing.T, php, tree, title, password string) int64 {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("testdata", "wordpress", "install.php"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, php, script, tree, title, "admin", "admin@example.com", password)
	cmd.Dir = tree
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	m := installedLine.FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("installing WordPress (php %s %s ...) failed after %v: %v\n%.4000s", script, tree, time.Since(start).Round(time.Millisecond), err, out)
	}
	id, _ := strconv.ParseInt(string(m[1]), 10, 64)
	t.Logf("WordPress installed in %v (admin user id %d)", time.Since(start).Round(time.Millisecond), id)
	return id
}

// startPHPFPM runs a private php-fpm in the foreground, listening on a unix
// socket in a temp dir, stopped in t.Cleanup, and returns the socket path.
// Its own log and PHP's error log are shown when the test fails.
func startPHPFPM(t *testing.T, bin string) string {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "php-fpm.sock")
	fpmLog, phpLog := filepath.Join(dir, "php-fpm.log"), filepath.Join(dir, "php-errors.log")
	args := []string{"--nodaemonize", "--fpm-config", filepath.Join(dir, "php-fpm.conf")}
	user := ""
	if os.Geteuid() == 0 {
		// php-fpm refuses to run workers as root without -R (and a user line).
		args = append(args, "--allow-to-run-as-root")
		user = "user = root\ngroup = root\n"
	}
	conf := fmt.Sprintf(`[global]
pid = %s
error_log = %s
daemonize = no

[moserver-e2e]
%slisten = %s
pm = static
pm.max_children = 4
catch_workers_output = yes
php_admin_flag[log_errors] = on
php_admin_value[error_log] = %s
`, filepath.Join(dir, "php-fpm.pid"), fpmLog, user, sock, phpLog)
	if err := os.WriteFile(filepath.Join(dir, "php-fpm.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	logs := func() string {
		var s strings.Builder
		for _, f := range []string{fpmLog, phpLog} {
			data, _ := os.ReadFile(f)
			fmt.Fprintf(&s, "--- %s ---\n%s", f, tail(data, 4000))
		}
		return s.String()
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("php-fpm (%s):\n%s", bin, logs())
		}
	})

	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("%s exited before listening: %v\n%s\n%s", bin, err, out.String(), logs())
		default:
		}
		if conn, err := net.DialTimeout("unix", sock, time.Second); err == nil {
			conn.Close()
			return sock
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening on %s within 10s", bin, sock)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func containsAny(list []any, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// e2eClient talks to the site with a timeout on every request and without
// following redirects (a WordPress canonical redirect would be a failure).
type e2eClient struct {
	t    *testing.T
	base string
}

var e2eHTTP = &http.Client{
	Timeout:       15 * time.Second,
	Transport:     &http.Transport{MaxIdleConnsPerHost: 16},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func (c *e2eClient) with(t *testing.T) *e2eClient { return &e2eClient{t: t, base: c.base} }

// do may be called from any goroutine: it reports errors instead of failing.
func (c *e2eClient) do(method, path, contentType, body string) (reply, error) {
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		return reply{}, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := e2eHTTP.Do(req)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: reading the body: %w", method, path, err)
	}
	r := reply{status: res.StatusCode, header: res.Header, body: string(b)}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") && len(b) > 0 {
		_ = json.Unmarshal(b, &r.json) // r.json stays nil unless it is a JSON object
	}
	return r, nil
}

func (c *e2eClient) must(r reply, err error) reply {
	c.t.Helper()
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

func (c *e2eClient) get(path string) reply {
	c.t.Helper()
	return c.must(c.do(http.MethodGet, path, "", ""))
}

func (c *e2eClient) form(path string, v url.Values) reply {
	c.t.Helper()
	return c.must(c.do(http.MethodPost, path, "application/x-www-form-urlencoded", v.Encode()))
}
