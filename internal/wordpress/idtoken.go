package wordpress

import (
	"context"
	"crypto/md5"
	"crypto/rsa"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/caddy-moserver/caddy-moserver/internal/tokens"
)

// idTokenClaims are the claims the plugin puts in an id_token, in its order.
type idTokenClaims struct {
	Issuer      string `json:"iss"`
	Subject     string `json:"sub"`
	Audience    string `json:"aud"`
	IDUpper     int64  `json:"ID"`
	ID          int64  `json:"id"`
	IssuedAt    int64  `json:"iat"`
	Expires     int64  `json:"exp"`
	AuthTime    int64  `json:"auth_time"`
	Email       string `json:"email"`
	Username    string `json:"username"`
	FirstName   string `json:"first_name"`
	LastName    string `json:"last_name"`
	Nickname    string `json:"nickname"`
	DisplayName string `json:"display_name"`
	Avatar      string `json:"avatar"`
	Nonce       string `json:"nonce,omitempty"`
}

// IDToken mints an OpenID Connect id_token for a user the way the plugin
// does: header {"typ":"JWT","alg":...,"kid":<client_id>}, signed with the
// client's RSA key from <prefix>moos_oauth_public_keys (RS256), or with the
// client secret (HS256); iss is issuer + "/" + client_id. It is minted for
// this one request and user; nothing is shared between requests. nonce,
// when not empty, is the last claim, as the plugin puts it.
func (d *DB) IDToken(ctx context.Context, issuer, clientID string, userID int64, issuedAt, expires time.Time, nonce string) (string, error) {
	user, cached := d.idUsers.Get(userID, time.Now())
	if !cached {
		var err error
		if user, err = d.User(ctx, userID); err != nil {
			return "", err
		}
		if user != nil {
			d.idUsers.Put(userID, user, time.Now())
		}
	}
	if user == nil {
		return "", fmt.Errorf("wordpress: id_token: user %d does not exist", userID)
	}
	alg, key, err := d.idTokenKey(ctx, clientID)
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(idTokenClaims{
		Issuer: strings.TrimRight(issuer, "/") + "/" + clientID, Subject: strconv.FormatInt(user.ID, 10),
		Audience: clientID, IDUpper: user.ID, ID: user.ID,
		IssuedAt: issuedAt.Unix(), Expires: expires.Unix(), AuthTime: issuedAt.Unix(),
		Email: user.Email, Username: user.Login, FirstName: user.FirstName, LastName: user.LastName,
		Nickname: user.Nickname, DisplayName: user.DisplayName, Avatar: avatar(user.Email, issuer), Nonce: nonce,
	})
	if err != nil {
		return "", fmt.Errorf("wordpress: id_token claims: %w", err)
	}
	hdr := jws.NewHeaders()
	for k, v := range map[string]any{"typ": "JWT", "kid": clientID} {
		if err := hdr.Set(k, v); err != nil {
			return "", fmt.Errorf("wordpress: id_token header: %w", err)
		}
	}
	signed, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", fmt.Errorf("wordpress: signing an id_token for client %q: %w", clientID, err)
	}
	return string(signed), nil
}

// idTokenKey returns the algorithm and key a client's id_tokens are signed
// with, from the cache when a recent one is there.
func (d *DB) idTokenKey(ctx context.Context, clientID string) (jwa.SignatureAlgorithm, any, error) {
	if k, ok := d.signingKeys.Get(clientID, time.Now()); ok {
		return k.alg, k.key, nil
	}
	alg, key, err := d.readIDTokenKey(ctx, clientID)
	if err == nil {
		d.signingKeys.Put(clientID, signingKey{alg: alg, key: key}, time.Now())
	}
	return alg, key, err
}

// readIDTokenKey reads and parses a client's id_token key.
func (d *DB) readIDTokenKey(ctx context.Context, clientID string) (jwa.SignatureAlgorithm, any, error) {
	ck, err := d.ClientKey(ctx, clientID)
	if err != nil {
		return "", nil, err
	}
	if ck == nil {
		return "", nil, fmt.Errorf("wordpress: client %q has no id_token key", clientID)
	}
	if ck.Algorithm == AlgHS256 {
		secret, err := d.clientSecret(ctx, clientID)
		if err != nil {
			return "", nil, err
		}
		return jwa.HS256, []byte(secret), nil
	}
	k, err := tokens.ParseKey([]byte(ck.PrivateKeyPEM), clientID)
	if err != nil {
		return "", nil, fmt.Errorf("wordpress: the id_token key of client %q: %w", clientID, err)
	}
	if k.Alg != jwa.RS256 {
		return "", nil, fmt.Errorf("wordpress: the id_token key of client %q is %s, want RS256", clientID, k.Alg)
	}
	var raw rsa.PrivateKey
	if err := k.Private.Raw(&raw); err != nil {
		return "", nil, fmt.Errorf("wordpress: the id_token key of client %q: %w", clientID, err)
	}
	// The key leaves the JWK without the values its signatures need
	// precomputed; without them every signature would rebuild and check
	// them first.
	raw.Precompute()
	return jwa.RS256, &raw, nil
}

// PublicJWK returns the public half of the RSA key a client's RS256
// id_tokens are signed with (the stored private key, which is what signs),
// with kid = the client id, alg RS256 and use sig, for the client's JWK Set.
// It fails for an HS256 client (the secret is never published) and for a
// missing or unusable private key; errors never contain key material.
func PublicJWK(k *ClientKey) (jwk.Key, error) {
	if k.Algorithm == AlgHS256 {
		return nil, fmt.Errorf("wordpress: client %q signs its id_tokens with HS256: no public key", k.ClientID)
	}
	if strings.TrimSpace(k.PrivateKeyPEM) == "" {
		return nil, fmt.Errorf("wordpress: client %q has no id_token private key", k.ClientID)
	}
	key, err := tokens.ParseKey([]byte(k.PrivateKeyPEM), k.ClientID)
	if err != nil {
		return nil, fmt.Errorf("wordpress: the id_token key of client %q: %w", k.ClientID, err)
	}
	if key.Alg != jwa.RS256 || key.Public == nil {
		return nil, fmt.Errorf("wordpress: the id_token key of client %q is %s, want RS256", k.ClientID, key.Alg)
	}
	return key.Public, nil
}

// clientSecret reads and decodes one client's secret.
func (d *DB) clientSecret(ctx context.Context, clientID string) (string, error) {
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	var name, stored sql.NullString
	err := d.sql.QueryRowContext(ctx, "SELECT client_name, client_secret FROM "+d.t.clients+
		" WHERE "+exactly("client_id")+" LIMIT 1", clientID, clientID).Scan(&name, &stored)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("wordpress: client %q does not exist", clientID)
	}
	if err != nil {
		return "", fmt.Errorf("wordpress: read client secret: %w", err)
	}
	return DecodeSecret(stored.String, name.String)
}

// avatar is the plugin's "avatar" claim: the user's Gravatar URL without its
// scheme, form-encoded ("2.gravatar.com%2Favatar%2F<md5>%3Fs%3D96%26d%3Dmm%26r%3Dg"),
// with WordPress's choice of Gravatar host.
func avatar(email, issuer string) string {
	sum := md5.Sum([]byte(strings.ToLower(strings.TrimSpace(email))))
	hash := hex.EncodeToString(sum[:])
	host := "secure.gravatar.com"
	if !strings.HasPrefix(issuer, "https:") {
		n, _ := strconv.ParseUint(hash[:1], 16, 8)
		host = strconv.FormatUint(n%3, 10) + ".gravatar.com"
	}
	return url.QueryEscape(host + "/avatar/" + hash + "?s=96&d=mm&r=g")
}
