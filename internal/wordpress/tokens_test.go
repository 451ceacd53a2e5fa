package wordpress

import (
	"strings"
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // for Asia/Tokyo

	"github.com/go-sql-driver/mysql"

	"github.com/caddy-moserver/caddy-moserver/internal/testutil/mariadbtest"
)

func TestLookupRefresh(t *testing.T) {
	_, raw, db := setup(t, testPrefix)
	ctx := ctxT(t)
	tok := mariadbtest.RandomToken(t)
	exp := time.Date(2026, 12, 8, 12, 15, 50, 0, time.UTC)
	mariadbtest.InsertRefreshToken(t, raw, testPrefix, tok, fixtureID, 1, exp, "openid offline_access")
	mariadbtest.Exec(t, raw, "INSERT INTO wp_moos_oauth_refresh_tokens (refresh_token) VALUES ('nulls')")

	got, err := db.LookupRefresh(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	want := RefreshRow{Token: tok, ClientID: fixtureID, UserID: 1, Expires: exp, Scope: "openid offline_access"}
	if got == nil || *got != want {
		t.Fatalf("LookupRefresh = %+v, want %+v", got, want)
	}
	if got.Expires.Location() != time.UTC {
		t.Fatalf("Expires in %v, want UTC", got.Expires.Location())
	}

	// Exact match only: the column's collation would ignore case and
	// trailing spaces.
	for _, other := range []string{strings.ToUpper(tok), tok + " ", tok[:31], "", "absent"} {
		if r, err := db.LookupRefresh(ctx, other); err != nil || r != nil {
			t.Errorf("LookupRefresh(%q) = %+v, %v; want nil, nil", other, r, err)
		}
	}

	// NULL columns.
	r, err := db.LookupRefresh(ctx, "nulls")
	if err != nil || r == nil {
		t.Fatalf("NULL row: %+v, %v", r, err)
	}
	if !r.Expires.IsZero() || r.UserID != 0 || r.ClientID != "" || r.Scope != "" {
		t.Fatalf("NULL row = %+v", r)
	}
}

func TestTakeRefresh(t *testing.T) {
	_, raw, db := setup(t, testPrefix)
	ctx := ctxT(t)
	tok := mariadbtest.RandomToken(t)
	exp := time.Now().Add(time.Hour)
	mariadbtest.InsertRefreshToken(t, raw, testPrefix, tok, fixtureID, 1, exp, "profile")
	other := mariadbtest.RandomToken(t)
	mariadbtest.InsertRefreshToken(t, raw, testPrefix, other, fixtureID, 1, exp, "profile")

	row, err := db.LookupRefresh(ctx, tok)
	if err != nil || row == nil {
		t.Fatalf("LookupRefresh: %+v, %v", row, err)
	}
	// Wrong client or different case: nothing taken.
	for _, r := range []RefreshRow{
		{Token: tok, ClientID: "someone-else"},
		{Token: tok, ClientID: strings.ToLower(fixtureID)},
		{Token: strings.ToUpper(tok), ClientID: fixtureID},
	} {
		if ok, err := db.TakeRefresh(ctx, &r); err != nil || ok {
			t.Fatalf("TakeRefresh(%+v) = %v, %v; want false", r, ok, err)
		}
	}
	if ok, err := db.TakeRefresh(ctx, row); err != nil || !ok {
		t.Fatalf("first TakeRefresh = %v, %v; want true", ok, err)
	}
	if ok, err := db.TakeRefresh(ctx, row); err != nil || ok {
		t.Fatalf("second TakeRefresh = %v, %v; want false", ok, err)
	}
	if r, err := db.LookupRefresh(ctx, tok); err != nil || r != nil {
		t.Fatalf("token still there: %+v, %v", r, err)
	}
	if r, err := db.LookupRefresh(ctx, other); err != nil || r == nil {
		t.Fatalf("other token gone: %+v, %v", r, err)
	}
	if _, err := db.TakeRefresh(ctx, nil); err == nil {
		t.Fatal("TakeRefresh(nil) did not fail")
	}
}

// TestTakeRefreshConcurrent races 20 takers of one token, spread over two
// pools (two Caddy instances): exactly one wins.
func TestTakeRefreshConcurrent(t *testing.T) {
	dsn, raw, db1 := setup(t, testPrefix)
	db2, err := Open(dsn, testPrefix, Options{MaxOpenConns: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	ctx := ctxT(t)
	for round := 0; round < 5; round++ {
		// Some noise rows so the DELETE scans.
		for i := 0; i < 10; i++ {
			mariadbtest.InsertRefreshToken(t, raw, testPrefix, mariadbtest.RandomToken(t), fixtureID, 1, time.Now().Add(time.Hour), "profile")
		}
		tok := mariadbtest.RandomToken(t)
		mariadbtest.InsertRefreshToken(t, raw, testPrefix, tok, fixtureID, 1, time.Now().Add(time.Hour), "profile")
		row := &RefreshRow{Token: tok, ClientID: fixtureID}

		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			wins  int
			errs  []error
			start = make(chan struct{})
		)
		for i := 0; i < 20; i++ {
			db := db1
			if i%2 == 1 {
				db = db2
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ok, err := db.TakeRefresh(ctx, row)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				}
				if ok {
					wins++
				}
			}()
		}
		close(start)
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("round %d: errors: %v", round, errs)
		}
		if wins != 1 {
			t.Fatalf("round %d: %d winners, want exactly 1", round, wins)
		}
	}
}

func TestInsertAccessTokenUTC(t *testing.T) {
	dsn, raw, _ := setup(t, testPrefix)
	// The DSN asks for another location and no time parsing: both are
	// overridden.
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Loc, err = time.LoadLocation("Asia/Tokyo"); err != nil {
		t.Fatal(err)
	}
	cfg.ParseTime = false
	db, err := Open(cfg.FormatDSN(), testPrefix, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := ctxT(t)
	tok := mariadbtest.RandomToken(t)
	expires := time.Date(2030, 1, 2, 3, 4, 5, 900_000_000, time.FixedZone("UTC+5", 5*3600))
	if err := db.InsertAccessToken(ctx, tok, fixtureID, 7, expires, "openid profile email"); err != nil {
		t.Fatal(err)
	}
	var (
		client, scope, asText string
		user                  int64
		back                  time.Time
	)
	if err := raw.QueryRowContext(ctx,
		"SELECT client_id, user_id, scope, CAST(expires AS CHAR), expires FROM wp_moos_oauth_access_tokens WHERE access_token = ?", tok).
		Scan(&client, &user, &scope, &asText, &back); err != nil {
		t.Fatal(err)
	}
	// The stored string is the UTC time, as the plugin writes it.
	if asText != "2030-01-01 22:04:05" {
		t.Fatalf("stored expires = %q, want the UTC string 2030-01-01 22:04:05", asText)
	}
	if !back.Equal(expires.Truncate(time.Second)) || client != fixtureID || user != 7 || scope != "openid profile email" {
		t.Fatalf("read back %v %q %d %q", back, client, user, scope)
	}

	// And reading goes through UTC as well.
	mariadbtest.Exec(t, raw, "INSERT INTO wp_moos_oauth_refresh_tokens (refresh_token, client_id, user_id, expires, scope) VALUES ('r1', 'c', 1, '2026-12-08 12:15:50', 's')")
	r, err := db.LookupRefresh(ctx, "r1")
	if err != nil || r == nil {
		t.Fatalf("LookupRefresh: %+v, %v", r, err)
	}
	if want := time.Date(2026, 12, 8, 12, 15, 50, 0, time.UTC); !r.Expires.Equal(want) {
		t.Fatalf("Expires = %v, want %v", r.Expires, want)
	}
}

func TestLookupAccessToken(t *testing.T) {
	_, raw, db := setup(t, testPrefix)
	ctx := ctxT(t)
	tok := mariadbtest.RandomToken(t)
	exp := time.Date(2026, 12, 8, 12, 15, 50, 0, time.UTC)
	if err := db.InsertAccessToken(ctx, tok, fixtureID, 3, exp, "openid email"); err != nil {
		t.Fatal(err)
	}
	mariadbtest.Exec(t, raw, "INSERT INTO wp_moos_oauth_access_tokens (access_token) VALUES ('nulls')")

	got, err := db.LookupAccessToken(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	want := AccessRow{Token: tok, ClientID: fixtureID, UserID: 3, Expires: exp, Scope: "openid email"}
	if got == nil || *got != want || got.Expires.Location() != time.UTC {
		t.Fatalf("LookupAccessToken = %+v, want %+v in UTC", got, want)
	}
	// Exact match only: the column's collation would ignore case and
	// trailing spaces.
	for _, other := range []string{strings.ToUpper(tok), tok + " ", tok[:31], "", "absent"} {
		if r, err := db.LookupAccessToken(ctx, other); err != nil || r != nil {
			t.Errorf("LookupAccessToken(%q) = %+v, %v; want nil, nil", other, r, err)
		}
	}
	r, err := db.LookupAccessToken(ctx, "nulls")
	if err != nil || r == nil || !r.Expires.IsZero() || r.UserID != 0 || r.ClientID != "" || r.Scope != "" {
		t.Fatalf("NULL row = %+v, %v", r, err)
	}
	// A deleted token is gone.
	if err := db.DeleteAccessToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if r, err := db.LookupAccessToken(ctx, tok); err != nil || r != nil {
		t.Fatalf("after DeleteAccessToken: %+v, %v", r, err)
	}
}
