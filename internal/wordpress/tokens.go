package wordpress

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// RefreshRow is one row of <prefix>moos_oauth_refresh_tokens.
type RefreshRow struct {
	// Token is the plaintext refresh token (32 hex characters when the
	// plugin issued it).
	Token    string
	ClientID string
	// UserID is the WordPress user; 0 when the column is NULL.
	UserID int64
	// Expires is in UTC; the zero time when the column is NULL, which
	// callers should treat as expired.
	Expires time.Time
	// Scope is the space-separated scope; "" when NULL.
	Scope string
}

// exactly is the condition that column holds a value byte for byte, for
// two arguments, both the value. The plugin's columns are
// utf8mb4_general_ci, which compares case-insensitively and ignores trailing
// spaces, so the value is compared as bytes too; the comparison in the
// column's own collation comes first, so that an index on the column (see
// EnsureIndexes) finds the candidates, and without one it is no dearer than
// comparing bytes alone.
func exactly(column string) string {
	return column + " = ? AND " + column + " = BINARY ?"
}

// LookupRefresh returns the refresh-token row for token, or nil and no error
// when there is none. Rows are not unique; the first one found is returned.
func (d *DB) LookupRefresh(ctx context.Context, token string) (*RefreshRow, error) {
	r, err := d.lookupToken(ctx, d.t.refresh, "refresh_token", token)
	if r == nil {
		return nil, err
	}
	row := RefreshRow(*r)
	return &row, nil
}

// tokenRow is a row of the plugin's refresh-token or access-token table,
// whose columns are the same but for the token's name.
type tokenRow struct {
	Token, ClientID string
	UserID          int64
	Expires         time.Time
	Scope           string
}

// lookupTokenSQL is lookupToken's query, for the token twice.
func lookupTokenSQL(table, column string) string {
	return "SELECT " + column + ", client_id, user_id, expires, scope FROM " + table +
		" WHERE " + exactly(column) + " LIMIT 1"
}

// lookupToken reads the row of token from table, whose token column is
// column, compared byte for byte; nil and no error when there is none.
func (d *DB) lookupToken(ctx context.Context, table, column, token string) (*tokenRow, error) {
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	var (
		r                  tokenRow
		tok, client, scope sql.NullString
		user               sql.NullInt64
		expires            sql.NullTime
	)
	err := d.sql.QueryRowContext(ctx, lookupTokenSQL(table, column), token, token).
		Scan(&tok, &client, &user, &expires, &scope)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("wordpress: look up %s: %w", strings.ReplaceAll(column, "_", " "), err)
	}
	r.Token, r.ClientID, r.UserID, r.Scope = tok.String, client.String, user.Int64, scope.String
	if expires.Valid {
		r.Expires = expires.Time.UTC()
	}
	return &r, nil
}

// TakeRefresh atomically deletes one row holding row.Token for
// row.ClientID and reports whether this call deleted it. Of any number of
// concurrent callers, in this process or others sharing the database,
// exactly one gets true for a given row; the others get false and no error.
// (Should the plugin's table hold the same token twice, each copy can be
// taken once.)
func (d *DB) TakeRefresh(ctx context.Context, row *RefreshRow) (bool, error) {
	if row == nil {
		return false, errors.New("wordpress: take refresh token: nil row")
	}
	return d.takeOne(ctx, "take refresh token", "DELETE FROM "+d.t.refresh+
		" WHERE "+exactly("refresh_token")+" AND client_id = BINARY ? LIMIT 1",
		row.Token, row.Token, row.ClientID)
}

// takeOne runs a DELETE of at most one row and reports whether it deleted
// one: the database decides between concurrent callers.
func (d *DB) takeOne(ctx context.Context, what, query string, args ...any) (bool, error) {
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	res, err := d.sql.ExecContext(ctx, query, args...)
	if err != nil {
		return false, fmt.Errorf("wordpress: %s: %w", what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("wordpress: %s: rows affected: %w", what, err)
	}
	return n == 1, nil
}

// AccessRow is one row of <prefix>moos_oauth_access_tokens.
type AccessRow struct {
	Token    string
	ClientID string
	// UserID is the WordPress user; 0 when the column is NULL.
	UserID int64
	// Expires is in UTC; the zero time when the column is NULL, which
	// callers should treat as expired.
	Expires time.Time
	// Scope is the space-separated scope; "" when NULL.
	Scope string
}

// LookupAccessToken returns the access-token row for token, compared byte
// for byte, or nil and no error when there is none. Rows are not unique;
// the first one found is returned.
func (d *DB) LookupAccessToken(ctx context.Context, token string) (*AccessRow, error) {
	r, err := d.lookupToken(ctx, d.t.access, "access_token", token)
	if r == nil {
		return nil, err
	}
	row := AccessRow(*r)
	return &row, nil
}

// InsertAccessToken stores an access token in
// <prefix>moos_oauth_access_tokens, where the plugin's resource endpoint
// (GET moserver/resource) finds it. expires is written as a UTC time string,
// truncated to the second.
func (d *DB) InsertAccessToken(ctx context.Context, token, clientID string, userID int64, expires time.Time, scope string) error {
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	_, err := d.sql.ExecContext(ctx,
		"INSERT INTO "+d.t.access+" (access_token, client_id, user_id, expires, scope) VALUES (?, ?, ?, ?, ?)",
		token, clientID, userID, expires.UTC().Truncate(time.Second), scope)
	if err != nil {
		return fmt.Errorf("wordpress: insert access token: %w", err)
	}
	return nil
}
