package integration

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"database/sql"
	"encoding/pem"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/caddy-moserver/caddy-moserver/internal/testutil/caddyproc"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/mariadbtest"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/redistest"
)

// wpFixture is a WordPress database with the plugin's tables, one client
// (the fixtures' own id and secret), one user and that user's RSA key.
type wpFixture struct {
	dsn  string
	db   *sql.DB
	user int64
	key  *rsa.PrivateKey
}

const wpClientName = "PeerClient"

func newWordPress(t *testing.T) *wpFixture {
	t.Helper()
	dsn := mariadbtest.Start(t)
	db := mariadbtest.OpenDB(t, dsn)
	mariadbtest.CreatePluginTables(t, db, "wp_")
	mariadbtest.InsertClient(t, db, "wp_", mariadbtest.Client{Name: wpClientName, ID: clientID, Secret: clientSecret,
		RedirectURI: "http://127.0.0.1:18099/callback"})
	user := mariadbtest.InsertUser(t, db, "wp_", mariadbtest.User{Login: "admin", Email: "admin@example.com",
		Nicename: "admin", DisplayName: "admin", Registered: time.Now(),
		Meta: map[string]string{"first_name": "Ada", "last_name": "Lovelace", "nickname": "admin"}})
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	mariadbtest.InsertPublicKey(t, db, "wp_", clientID, "RS256",
		string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})),
		string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})))
	return &wpFixture{dsn: dsn, db: db, user: user, key: key}
}

// startWordPressSite runs Caddy with only the WordPress clients (the site
// config's own client uses another id here) and a Redis store.
func startWordPressSite(t *testing.T, wp *wpFixture, redisOpt, extra string, env ...string) *site {
	t.Helper()
	port := caddyproc.FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cfg := fmt.Sprintf(`http://127.0.0.1:%d {
	moserver {
		issuer http://127.0.0.1:%d/wp-json/moserver
		%s
		wordpress "%s" {
			table_prefix wp_
			refresh_interval 1s
			%s
		}
		client caddyfile-client {
			secret caddyfile-secret
		}
	}
	respond "wordpress"
}
`, port, port, redisOpt, wp.dsn, extra)
	return &site{Instance: caddyproc.Start(t, cfg, base+"/", env...), base: base}
}

var hex32 = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestWordPressDropIn(t *testing.T) {
	wp := newWordPress(t)
	redisOpt := redisOptionFor(redisURL(t), redistest.Prefix(t))
	a := startWordPressSite(t, wp, redisOpt, "")
	b := startWordPressSite(t, wp, redisOpt, "")

	t.Run("WordPress client gets client credentials", func(t *testing.T) {
		r := mustToken(t, a.form(t, tokenPath, ccValues()))
		if r.str("scope") != "email profile" && r.str("scope") != "profile email" {
			t.Errorf("scope %q, want the plugin's scopes table", r.str("scope"))
		}
		mustToken(t, a.form(t, tokenPath, url.Values{"grant_type": {"client_credentials"}, "client_id": {"caddyfile-client"}, "client_secret": {"caddyfile-secret"}}))
		mustError(t, a.form(t, tokenPath, url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {"WRONG"}}), 401, "invalid_client")
	})

	t.Run("plugin refresh token redeemed exactly once across instances", func(t *testing.T) {
		token := mariadbtest.RandomToken(t)
		mariadbtest.InsertRefreshToken(t, wp.db, "wp_", token, clientID, wp.user, time.Now().Add(24*time.Hour), "profile email")
		var wg sync.WaitGroup
		var mu sync.Mutex
		var wins []reply
		losses := 0
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := a
				if i%2 == 1 {
					s = b
				}
				r := s.form(t, tokenPath, refreshValues(token))
				mu.Lock()
				defer mu.Unlock()
				switch {
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
		if len(wins) != 1 || losses != 19 {
			t.Fatalf("%d successes, %d invalid_grant; want 1 and 19", len(wins), losses)
		}
		var left int
		if err := wp.db.QueryRow("SELECT COUNT(*) FROM wp_moos_oauth_refresh_tokens WHERE refresh_token = ?", token).Scan(&left); err != nil || left != 0 {
			t.Fatalf("the plugin's row is still there (%d, %v)", left, err)
		}
		won := wins[0]
		at := won.str("access_token")
		if !hex32.MatchString(at) {
			t.Fatalf("user access token %q is not the plugin's opaque format", at)
		}
		var client string
		var user int64
		var expires time.Time
		var scope string
		err := wp.db.QueryRow("SELECT client_id, user_id, expires, scope FROM wp_moos_oauth_access_tokens WHERE access_token = ?", at).
			Scan(&client, &user, &expires, &scope)
		if err != nil {
			t.Fatalf("access token not recorded for the plugin's resource endpoint: %v", err)
		}
		if client != clientID || user != wp.user || scope != "profile email" {
			t.Errorf("row %s %d %q", client, user, scope)
		}
		if d := time.Until(expires); d < 55*time.Minute || d > 65*time.Minute {
			t.Errorf("expires %v is not a UTC time an hour from now", expires)
		}
		// From now on it is one of ours: it rotates, at either instance.
		next := mustToken(t, b.form(t, tokenPath, refreshValues(won.str("refresh_token"))))
		if !hex32.MatchString(next.str("access_token")) {
			t.Errorf("rotated user token is not opaque: %q", next.str("access_token"))
		}
		mustToken(t, a.form(t, tokenPath, refreshValues(next.str("refresh_token"))))
		// Its successor was used: presenting it again is a replay.
		mustError(t, a.form(t, tokenPath, refreshValues(won.str("refresh_token"))), 400, "invalid_grant")
	})

	t.Run("openid scope gets an id_token signed with the client's key", func(t *testing.T) {
		token := mariadbtest.RandomToken(t)
		mariadbtest.InsertRefreshToken(t, wp.db, "wp_", token, clientID, wp.user, time.Now().Add(time.Hour), "openid offline_access profile email")
		r := mustToken(t, a.form(t, tokenPath, refreshValues(token)))
		idt := r.str("id_token")
		if idt == "" {
			t.Fatalf("no id_token: %s", r.body)
		}
		tok, err := jwt.ParseString(idt, jwt.WithKey(jwa.RS256, &wp.key.PublicKey), jwt.WithAudience(clientID),
			jwt.WithIssuer(a.base+"/wp-json/moserver/"+clientID))
		if err != nil {
			t.Fatalf("id_token does not verify with the client's key: %v", err)
		}
		if tok.Subject() != fmt.Sprint(wp.user) {
			t.Errorf("sub %q", tok.Subject())
		}
		for claim, want := range map[string]any{"email": "admin@example.com", "username": "admin", "first_name": "Ada", "last_name": "Lovelace"} {
			if got, _ := tok.Get(claim); got != want {
				t.Errorf("%s = %v, want %v", claim, got, want)
			}
		}
		if headerKid(t, idt) != clientID {
			t.Errorf("kid %q, want the client id", headerKid(t, idt))
		}
	})

	t.Run("a foreign or expired plugin token is refused and not spent", func(t *testing.T) {
		expired := mariadbtest.RandomToken(t)
		mariadbtest.InsertRefreshToken(t, wp.db, "wp_", expired, clientID, wp.user, time.Now().Add(-time.Minute), "profile")
		mustError(t, a.form(t, tokenPath, refreshValues(expired)), 400, "invalid_grant")
		foreign := mariadbtest.RandomToken(t)
		mariadbtest.InsertRefreshToken(t, wp.db, "wp_", foreign, clientID, wp.user, time.Now().Add(time.Hour), "profile")
		r := a.form(t, tokenPath, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {foreign},
			"client_id": {"caddyfile-client"}, "client_secret": {"caddyfile-secret"}})
		mustError(t, r, 400, "invalid_grant")
		mustToken(t, a.form(t, tokenPath, refreshValues(foreign))) // still redeemable by its owner
	})

	t.Run("revoking a plugin refresh token deletes it", func(t *testing.T) {
		token := mariadbtest.RandomToken(t)
		mariadbtest.InsertRefreshToken(t, wp.db, "wp_", token, clientID, wp.user, time.Now().Add(time.Hour), "profile")
		foreign := url.Values{"token": {token}, "client_id": {"caddyfile-client"}, "client_secret": {"caddyfile-secret"}}
		if r := b.form(t, "/wp-json/moserver/revoke", foreign); r.status != 200 {
			t.Fatalf("foreign revoke: %d %s", r.status, r.body)
		}
		var n int
		if err := wp.db.QueryRow("SELECT COUNT(*) FROM wp_moos_oauth_refresh_tokens WHERE refresh_token = ?", token).Scan(&n); err != nil || n != 1 {
			t.Fatalf("another client's revocation removed the token (%d rows, %v)", n, err)
		}
		revoke := url.Values{"token": {token}, "client_id": {clientID}, "client_secret": {clientSecret}}
		if r := b.form(t, "/wp-json/moserver/revoke", revoke); r.status != 200 {
			t.Fatalf("revoke: %d %s", r.status, r.body)
		}
		mustError(t, a.form(t, tokenPath, refreshValues(token)), 400, "invalid_grant")
	})

	t.Run("a client deleted in WordPress stops working", func(t *testing.T) {
		mariadbtest.DeleteClient(t, wp.db, "wp_", clientID)
		deadline := time.Now().Add(10 * time.Second)
		for {
			r := a.form(t, tokenPath, ccValues())
			if r.status == 401 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("deleted client still gets tokens: %d %s", r.status, r.body)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
}

// TestWordPressUserJWT: with user_access_tokens jwt, a WordPress user's
// access token is one of our JWTs (sub = the user id), and no row is written.
func TestWordPressUserJWT(t *testing.T) {
	wp := newWordPress(t)
	s := startWordPressSite(t, wp, redisOptionFor(redisURL(t), redistest.Prefix(t)), "user_access_tokens jwt")
	token := mariadbtest.RandomToken(t)
	mariadbtest.InsertRefreshToken(t, wp.db, "wp_", token, clientID, wp.user, time.Now().Add(time.Hour), "profile")
	at := mustToken(t, s.form(t, tokenPath, refreshValues(token))).str("access_token")
	if hex32.MatchString(at) || strings.Count(at, ".") != 2 {
		t.Fatalf("want a JWT, got %q", at)
	}
	tok, err := jwt.ParseString(at, jwt.WithVerify(false))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Subject() != fmt.Sprint(wp.user) {
		t.Errorf("sub %q, want the user id", tok.Subject())
	}
	var rows int
	if err := wp.db.QueryRow("SELECT COUNT(*) FROM wp_moos_oauth_access_tokens").Scan(&rows); err != nil || rows != 0 {
		t.Errorf("%d access-token rows written (%v)", rows, err)
	}
}
