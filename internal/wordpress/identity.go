package wordpress

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Signing algorithms of moos_oauth_public_keys.encryption_algorithm.
const (
	AlgRS256 = "RS256"
	AlgHS256 = "HS256"
)

// ClientKey is a client's id_token signing material from
// <prefix>moos_oauth_public_keys.
type ClientKey struct {
	ClientID string
	// Algorithm is "RS256" or "HS256" as stored; "RS256" (the column's
	// default) when NULL or empty. For HS256 the client secret is the key.
	Algorithm string
	// PublicKeyPEM and PrivateKeyPEM are the stored PEM blocks. The private
	// key is secret: never log it.
	PublicKeyPEM  string
	PrivateKeyPEM string
}

// ClientKey returns the signing material of a client, or nil and no error
// when it has none.
func (d *DB) ClientKey(ctx context.Context, clientID string) (*ClientKey, error) {
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	var id, pub, priv, alg sql.NullString
	err := d.sql.QueryRowContext(ctx,
		"SELECT client_id, public_key, private_key, encryption_algorithm FROM "+d.t.keys+
			" WHERE "+exactly("client_id")+" LIMIT 1", clientID, clientID).
		Scan(&id, &pub, &priv, &alg)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("wordpress: look up client key: %w", err)
	}
	k := &ClientKey{
		ClientID:      id.String,
		Algorithm:     strings.TrimSpace(alg.String),
		PublicKeyPEM:  pub.String,
		PrivateKeyPEM: priv.String,
	}
	if k.Algorithm == "" {
		k.Algorithm = AlgRS256
	}
	return k, nil
}

// User is a WordPress user: the <prefix>users row and the first_name,
// last_name and nickname entries of <prefix>usermeta.
type User struct {
	ID          int64
	Login       string // user_login
	Email       string // user_email
	Nicename    string // user_nicename
	DisplayName string // display_name
	// Registered is user_registered, which WordPress stores in UTC; the
	// zero time for WordPress's "0000-00-00 00:00:00".
	Registered time.Time
	FirstName  string
	LastName   string
	Nickname   string
}

// User returns the WordPress user with the id, or nil and no error when
// there is none.
func (d *DB) User(ctx context.Context, userID int64) (*User, error) {
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	u := &User{}
	var registered sql.NullTime
	err := d.sql.QueryRowContext(ctx,
		"SELECT ID, user_login, user_email, user_nicename, display_name, user_registered FROM "+d.t.users+
			" WHERE ID = ?", userID).
		Scan(&u.ID, &u.Login, &u.Email, &u.Nicename, &u.DisplayName, &registered)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("wordpress: look up user: %w", err)
	}
	if registered.Valid {
		u.Registered = registered.Time.UTC()
	}
	rows, err := d.sql.QueryContext(ctx,
		"SELECT meta_key, meta_value FROM "+d.t.usermeta+
			" WHERE user_id = ? AND meta_key IN ('first_name', 'last_name', 'nickname') ORDER BY umeta_id", userID)
	if err != nil {
		return nil, fmt.Errorf("wordpress: look up user meta: %w", err)
	}
	defer rows.Close()
	seen := map[string]bool{}
	for rows.Next() {
		var key, value sql.NullString
		if err := rows.Scan(&key, &value); err != nil {
			return nil, fmt.Errorf("wordpress: read user meta: %w", err)
		}
		if seen[key.String] { // WordPress's get_user_meta(..., true) takes the first
			continue
		}
		seen[key.String] = true
		switch key.String {
		case "first_name":
			u.FirstName = value.String
		case "last_name":
			u.LastName = value.String
		case "nickname":
			u.Nickname = value.String
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("wordpress: read user meta: %w", err)
	}
	return u, nil
}
