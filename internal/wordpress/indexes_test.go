package wordpress

import (
	"database/sql"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-moserver/caddy-moserver/internal/testutil/mariadbtest"
)

// explainKey returns the index MariaDB chooses for query on args ("" for a
// table scan).
func explainKey(t *testing.T, raw *sql.DB, query string, args ...any) string {
	t.Helper()
	rows, err := raw.Query("EXPLAIN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	if !rows.Next() {
		t.Fatalf("EXPLAIN %s: no row", query)
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		t.Fatal(err)
	}
	return vals[slices.Index(cols, "key")].String
}

func TestEnsureIndexes(t *testing.T) {
	_, raw, db := setup(t, testPrefix)
	ctx := ctxT(t)
	code := mariadbtest.RandomToken(t) + "abcdefgh"
	mariadbtest.InsertAuthCode(t, raw, testPrefix, code, fixtureID, 1, "https://client.example/cb", time.Now().Add(30*time.Second), "profile")

	all := []string{"wp_moos_oauth_authorization_codes.authorization_code", "wp_moos_oauth_access_tokens.access_token", "wp_moos_oauth_refresh_tokens.refresh_token"}
	missing, err := db.MissingIndexes(ctx)
	if err != nil || !slices.Equal(missing, all) {
		t.Fatalf("MissingIndexes on the plugin's tables = %v, %v; want %v", missing, err, all)
	}
	if key := explainKey(t, raw, db.lookupCodeSQL(), code, code); key != "" {
		t.Fatalf("without an index the code lookup uses %q", key)
	}

	added, err := db.EnsureIndexes(ctx)
	if err != nil || !slices.Equal(added, all) {
		t.Fatalf("EnsureIndexes = %v, %v; want %v", added, err, all)
	}
	if missing, err := db.MissingIndexes(ctx); err != nil || len(missing) != 0 {
		t.Fatalf("MissingIndexes after EnsureIndexes = %v, %v", missing, err)
	}
	if added, err := db.EnsureIndexes(ctx); err != nil || len(added) != 0 {
		t.Fatalf("EnsureIndexes again = %v, %v; want nothing added", added, err)
	}
	// The lookups and the code's delete use the indexes, and still match
	// byte for byte.
	for _, q := range []struct{ what, sql, index string }{
		{"code lookup", db.lookupCodeSQL(), "moserver_authorization_code"},
		{"code delete", db.takeCodeSQL(), "moserver_authorization_code"},
		{"access-token lookup", lookupTokenSQL(db.t.access, "access_token"), "moserver_access_token"},
		{"refresh-token lookup", lookupTokenSQL(db.t.refresh, "refresh_token"), "moserver_refresh_token"},
	} {
		if key := explainKey(t, raw, q.sql, code, code); key != q.index {
			t.Fatalf("the %s uses index %q, want %s", q.what, key, q.index)
		}
	}
	for _, other := range []string{strings.ToUpper(code), code + " ", code[:len(code)-1], code + "\xff", "\xff\xfe\x00'"} {
		if row, err := db.LookupAuthCode(ctx, other); err != nil || row != nil {
			t.Fatalf("LookupAuthCode(%q) = %+v, %v; want no row", other, row, err)
		}
		if took, err := db.TakeAuthCode(ctx, other); err != nil || took {
			t.Fatalf("TakeAuthCode(%q) = %v, %v; want false", other, took, err)
		}
	}
	if row, err := db.LookupAuthCode(ctx, code); err != nil || row == nil || row.Code != code {
		t.Fatalf("LookupAuthCode = %+v, %v", row, err)
	}
	if took, err := db.TakeAuthCode(ctx, code); err != nil || !took {
		t.Fatalf("TakeAuthCode = %v, %v; want true", took, err)
	}
}

func TestEnsureIndexesSkipsMissingTables(t *testing.T) {
	dsn := mariadbtest.Start(t)
	db, err := Open(dsn, testPrefix, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	ctx := ctxT(t)
	if missing, err := db.MissingIndexes(ctx); err != nil || len(missing) != 0 {
		t.Fatalf("MissingIndexes without the plugin's tables = %v, %v", missing, err)
	}
	if added, err := db.EnsureIndexes(ctx); err != nil || len(added) != 0 {
		t.Fatalf("EnsureIndexes without the plugin's tables = %v, %v", added, err)
	}
}
