package integration

import (
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/caddy-moserver/caddy-moserver/internal/testutil/mariadbtest"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/redistest"
)

const callback = "http://127.0.0.1:18099/callback"

// newCode inserts a code row for the fixture's client and user, as the
// plugin does at authorize, and returns the code.
func (wp *wpFixture) newCode(t *testing.T, redirectURI, scope string, expires time.Time) string {
	t.Helper()
	code := mariadbtest.RandomToken(t) + "0123abcd"
	mariadbtest.InsertAuthCode(t, wp.db, "wp_", code, clientID, wp.user, redirectURI, expires, scope)
	return code
}

func exchangeValues(code string, extra ...string) url.Values {
	v := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {callback},
		"client_id": {clientID}, "client_secret": {clientSecret}}
	for i := 0; i+1 < len(extra); i += 2 {
		v.Set(extra[i], extra[i+1])
	}
	return v
}

// accessRows counts the plugin's access-token rows holding token.
func (wp *wpFixture) accessRows(t *testing.T, token string) int {
	t.Helper()
	var n int
	if err := wp.db.QueryRow("SELECT COUNT(*) FROM wp_moos_oauth_access_tokens WHERE access_token = ?", token).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestAuthCodeExchange: the plugin's codes are redeemed by the module, with
// real statuses, the id_token of the code's own user signed with the
// client's key, once: a second exchange is invalid_grant and revokes what
// the first one issued.
func TestAuthCodeExchange(t *testing.T) {
	wp := newWordPress(t)
	redisOpt := redisOptionFor(redisURL(t), redistest.Prefix(t))
	s := startWordPressSite(t, wp, redisOpt, "")
	soon := time.Now().Add(30 * time.Second)

	t.Run("openid", func(t *testing.T) {
		code := wp.newCode(t, callback, "openid profile email", soon)
		r := mustToken(t, s.form(t, tokenPath, exchangeValues(code)))
		if r.str("refresh_token") != "" {
			t.Errorf("a refresh token for openid without offline_access: %s", r.body)
		}
		if r.str("scope") != "openid profile email" || r.json["expires_in"] != float64(3600) {
			t.Errorf("scope or expires_in: %s", r.body)
		}
		at := r.str("access_token")
		if !hex32.MatchString(at) || wp.accessRows(t, at) != 1 {
			t.Fatalf("access token %q is not a row of the plugin's table", at)
		}
		idt, err := jwt.Parse([]byte(r.str("id_token")), jwt.WithKey(jwa.RS256, &wp.key.PublicKey),
			jwt.WithIssuer(s.base+"/wp-json/moserver/"+clientID), jwt.WithAudience(clientID))
		if err != nil {
			t.Fatalf("id_token: %v", err)
		}
		if idt.Subject() != fmt.Sprint(wp.user) {
			t.Errorf("id_token sub %q, want the code's user %d", idt.Subject(), wp.user)
		}
		if _, ok := idt.Get("nonce"); ok {
			t.Errorf("a nonce in the id_token of a code bound to none")
		}
		if headerKid(t, r.str("id_token")) != clientID {
			t.Errorf("id_token kid %q", headerKid(t, r.str("id_token")))
		}

		// A second exchange: invalid_grant, and the access token is gone.
		mustError(t, s.form(t, tokenPath, exchangeValues(code)), 400, "invalid_grant")
		if wp.accessRows(t, at) != 0 {
			t.Error("the first exchange's access token survived a second exchange of its code")
		}
	})

	t.Run("refresh family revoked by a second exchange", func(t *testing.T) {
		code := wp.newCode(t, callback, "profile email", soon)
		r := mustToken(t, s.form(t, tokenPath, exchangeValues(code)))
		rt := r.str("refresh_token")
		if rt == "" || r.str("id_token") != "" {
			t.Fatalf("want a refresh token and no id_token: %s", r.body)
		}
		rt = mustToken(t, s.form(t, tokenPath, refreshValues(rt))).str("refresh_token") // one of ours: it rotates
		mustError(t, s.form(t, tokenPath, exchangeValues(code)), 400, "invalid_grant")
		mustError(t, s.form(t, tokenPath, refreshValues(rt)), 400, "invalid_grant")
	})

	t.Run("openid offline_access gets a refresh token", func(t *testing.T) {
		code := wp.newCode(t, callback, "openid offline_access profile", soon)
		r := mustToken(t, s.form(t, tokenPath, exchangeValues(code, "scope", "openid offline_access")))
		if r.str("refresh_token") == "" || r.str("id_token") == "" || r.str("scope") != "openid offline_access" {
			t.Fatalf("want a narrowed scope, a refresh token and an id_token: %s", r.body)
		}
	})

	t.Run("errors", func(t *testing.T) {
		code := wp.newCode(t, callback, "profile email", soon)
		mustError(t, s.form(t, tokenPath, exchangeValues("")), 400, "invalid_request")
		mustError(t, s.form(t, tokenPath, exchangeValues(code, "client_secret", "wrong")), 401, "invalid_client")
		mustError(t, s.form(t, tokenPath, exchangeValues(strings.ToUpper(code))), 400, "invalid_grant")
		mustError(t, s.form(t, tokenPath, exchangeValues("nonsense")), 400, "invalid_grant")
		mustError(t, s.form(t, tokenPath, exchangeValues(code, "redirect_uri", callback+"x")), 400, "invalid_grant")
		mustError(t, s.form(t, tokenPath, exchangeValues(code, "scope", "profile email openid")), 400, "invalid_scope")
		expired := wp.newCode(t, callback, "profile", time.Now().Add(-2*time.Second))
		mustError(t, s.form(t, tokenPath, exchangeValues(expired)), 400, "invalid_grant")
		// Failed attempts leave the code usable.
		mustToken(t, s.form(t, tokenPath, exchangeValues(code)))
	})

	t.Run("another client's code", func(t *testing.T) {
		mariadbtest.InsertClient(t, wp.db, "wp_", mariadbtest.Client{Name: "Other", ID: "OtherClientIdOtherClientIdOtherC",
			Secret: "OtherSecretOtherSecretOtherSecre", RedirectURI: callback})
		code := wp.newCode(t, callback, "profile", soon)
		other := exchangeValues(code, "client_id", "OtherClientIdOtherClientIdOtherC", "client_secret", "OtherSecretOtherSecretOtherSecre")
		deadline := time.Now().Add(5 * time.Second) // the registry re-reads its clients every second
		for {
			r := s.form(t, tokenPath, other)
			if r.status != 401 || time.Now().After(deadline) {
				mustError(t, r, 400, "invalid_grant")
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		mustToken(t, s.form(t, tokenPath, exchangeValues(code)))
	})

	t.Run("no redirect_uri in the row", func(t *testing.T) {
		code := wp.newCode(t, "", "profile", soon)
		v := exchangeValues(code)
		v.Del("redirect_uri")
		mustToken(t, s.form(t, tokenPath, v))
	})
}

// TestAuthCodeExactlyOnce: 50 concurrent exchanges of one code on two
// instances give exactly one 200; the others are invalid_grant.
func TestAuthCodeExactlyOnce(t *testing.T) {
	wp := newWordPress(t)
	redisOpt := redisOptionFor(redisURL(t), redistest.Prefix(t))
	sites := []*site{startWordPressSite(t, wp, redisOpt, ""), startWordPressSite(t, wp, redisOpt, "")}
	for round := range 3 {
		code := wp.newCode(t, callback, "openid profile email", time.Now().Add(30*time.Second))
		var wg sync.WaitGroup
		var mu sync.Mutex
		counts := map[string]int{}
		start := make(chan struct{})
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				r := sites[i%2].form(t, tokenPath, exchangeValues(code))
				mu.Lock()
				counts[fmt.Sprintf("%d %s", r.status, r.str("error"))]++
				mu.Unlock()
			}()
		}
		close(start)
		wg.Wait()
		if counts["200 "] != 1 || counts["400 invalid_grant"] != 49 {
			t.Fatalf("round %d: %v; want exactly one 200 and 49 invalid_grant", round, counts)
		}
	}
}
