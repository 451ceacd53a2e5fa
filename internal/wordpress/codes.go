package wordpress

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// AuthCode is one row of <prefix>moos_oauth_authorization_codes, as the
// plugin writes it when it redirects a user back with a code.
type AuthCode struct {
	Code     string
	ClientID string
	UserID   int64 // 0 when NULL
	// RedirectURI is the redirect_uri of the authorize request, or "" when
	// it sent none.
	RedirectURI string
	// Expires is in UTC; the zero time when NULL (callers treat it as expired).
	Expires time.Time
	Scope   string // space-separated, in the requested order
}

// LookupAuthCode returns the row of a code, compared byte for byte (the
// column's collation would match another case), or nil and no error when
// there is none.
func (d *DB) LookupAuthCode(ctx context.Context, code string) (*AuthCode, error) {
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	var (
		c                            AuthCode
		tok, client, redirect, scope sql.NullString
		user                         sql.NullInt64
		expires                      sql.NullTime
	)
	err := d.sql.QueryRowContext(ctx, d.lookupCodeSQL(), code, code).
		Scan(&tok, &client, &user, &redirect, &expires, &scope)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("wordpress: look up authorization code: %w", err)
	}
	c.Code, c.ClientID, c.UserID, c.RedirectURI, c.Scope = tok.String, client.String, user.Int64, redirect.String, scope.String
	if expires.Valid {
		c.Expires = expires.Time.UTC()
	}
	return &c, nil
}

// lookupCodeSQL is LookupAuthCode's query, for the code twice.
func (d *DB) lookupCodeSQL() string {
	return "SELECT authorization_code, client_id, user_id, redirect_uri, expires, scope FROM " + d.t.codes +
		" WHERE " + exactly("authorization_code") + " LIMIT 1"
}

// takeCodeSQL is TakeAuthCode's statement, for the code twice.
func (d *DB) takeCodeSQL() string {
	return "DELETE FROM " + d.t.codes + " WHERE " + exactly("authorization_code") + " LIMIT 1"
}

// TakeAuthCode atomically deletes the row of a code and reports whether
// this call deleted it: of any number of concurrent callers, in any number
// of processes sharing the database, exactly one gets true.
func (d *DB) TakeAuthCode(ctx context.Context, code string) (bool, error) {
	return d.takeOne(ctx, "take authorization code",
		d.takeCodeSQL(), code, code)
}

// DeleteAccessToken removes an access token from
// <prefix>moos_oauth_access_tokens, so the plugin's resource endpoint no
// longer accepts it. Deleting a token that is not there is not an error.
func (d *DB) DeleteAccessToken(ctx context.Context, token string) error {
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	if _, err := d.sql.ExecContext(ctx,
		"DELETE FROM "+d.t.access+" WHERE "+exactly("access_token"), token, token); err != nil {
		return fmt.Errorf("wordpress: delete access token: %w", err)
	}
	return nil
}
