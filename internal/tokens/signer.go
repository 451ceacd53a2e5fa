package tokens

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/caddy-moserver/caddy-moserver/internal/jsonenc"
)

// Errors returned by Verify. Every failure wraps exactly one of them.
var (
	// ErrInvalid means the token is not a well-formed access token signed by
	// one of our keys (malformed, unknown kid, wrong alg or typ, bad signature,
	// missing claims).
	ErrInvalid = errors.New("tokens: invalid access token")
	// ErrExpired means the token is ours and intact but expired; Verify then
	// still returns its claims.
	ErrExpired = errors.New("tokens: access token expired")
)

// MaxTokenLen is the longest token Verify looks at; longer input is invalid.
const MaxTokenLen = 8 << 10

// AccessClaims are the claims of an RFC 9068 access token. Mint requires
// Issuer, Subject (or SubjectPrefix), Audience, ClientID and JTI to be
// non-empty and ExpiresAt
// to be later than IssuedAt (in whole seconds). Scope ("scope") and FamilyID
// ("fid", the refresh-token family the token was minted from) are omitted
// from the token when empty. Times are encoded as NumericDate seconds.
type AccessClaims struct {
	Issuer string // iss
	// SubjectPrefix, when set, is written before Subject in "sub", so that a
	// caller can give "client:" and an id without building the string; it
	// must be ASCII. Verify returns the whole "sub" as Subject.
	SubjectPrefix string
	Subject       string    // sub
	Audience      string    // aud (a single string)
	ClientID      string    // client_id
	IssuedAt      time.Time // iat
	ExpiresAt     time.Time // exp
	JTI           string    // jti
	Scope         string    // scope, space-separated
	FamilyID      string    // fid
}

// Signer mints and verifies access tokens. The first key signs; every key
// verifies, so a retired key can stay listed while its tokens live out. A
// Signer is immutable and safe for concurrent use.
type Signer struct {
	keys  []*Key
	byKID map[string]*Key
	jwks  []byte
	algs  []string
}

// NewSigner builds a Signer. keys[0] signs; all keys verify and every
// non-HS256 key is published in the JWK Set. Keys must be non-nil (as built by
// ParseKey or GenerateKey) with distinct kids.
func NewSigner(keys []*Key) (*Signer, error) {
	if len(keys) == 0 {
		return nil, errors.New("tokens: no signing key")
	}
	s := &Signer{
		keys:  append([]*Key(nil), keys...),
		byKID: make(map[string]*Key, len(keys)),
	}
	jwks := []byte(`{"keys":[`)
	first := true
	for i, k := range keys {
		if k == nil || k.prefix == "" {
			return nil, fmt.Errorf("tokens: key %d is not initialised (use ParseKey or GenerateKey)", i)
		}
		if _, dup := s.byKID[k.KID]; dup {
			return nil, fmt.Errorf("tokens: duplicate kid %q (key %d)", k.KID, i)
		}
		s.byKID[k.KID] = k
		alg := string(k.Alg)
		seen := false
		for _, a := range s.algs {
			seen = seen || a == alg
		}
		if !seen {
			s.algs = append(s.algs, alg)
		}
		if k.Public == nil {
			continue
		}
		b, err := json.Marshal(k.Public)
		if err != nil {
			return nil, fmt.Errorf("tokens: encoding public JWK %q: %w", k.KID, err)
		}
		if !first {
			jwks = append(jwks, ',')
		}
		first = false
		jwks = append(jwks, b...)
	}
	s.jwks = append(jwks, "]}"...)
	return s, nil
}

// SigningKey returns the key that Mint signs with.
func (s *Signer) SigningKey() *Key { return s.keys[0] }

// JWKS returns the public JWK Set ({"keys":[...]}) holding every non-HS256
// key with kid, alg and "use":"sig". It is computed once; callers must not
// modify the returned slice.
func (s *Signer) JWKS() []byte { return s.jwks }

// Algorithms returns the distinct algorithms of the keys, signing key's first.
func (s *Signer) Algorithms() []string { return append([]string(nil), s.algs...) }

// Mint returns a signed RFC 9068 access token for c. The protected header is
// exactly {"alg":…,"kid":…,"typ":"at+jwt"}; see AccessClaims for the claims.
func (s *Signer) Mint(c AccessClaims) (string, error) {
	if err := c.check(); err != nil {
		return "", err
	}
	k := s.keys[0]
	var cbuf [1024]byte
	claims := appendClaims(cbuf[:0], &c)
	enc := base64.RawURLEncoding
	n := len(k.prefix) + enc.EncodedLen(len(claims)) + 1 + enc.EncodedLen(k.sigSize)
	out := make([]byte, 0, n)
	out = append(out, k.prefix...)
	out = enc.AppendEncode(out, claims)
	var sbuf [maxSigSize]byte
	sig, err := k.sign(sbuf[:0], out)
	if err != nil {
		return "", fmt.Errorf("tokens: signing with %s key %q: %w", k.Alg, k.KID, err)
	}
	out = append(out, '.')
	out = enc.AppendEncode(out, sig)
	// out is never written again, so it can back the string directly.
	return unsafe.String(unsafe.SliceData(out), len(out)), nil
}

// check validates the claims Mint requires.
func (c *AccessClaims) check() error {
	var missing []string
	for _, f := range [...]struct{ name, v string }{
		{"iss", c.Issuer}, {"sub", cmp.Or(c.Subject, c.SubjectPrefix)}, {"aud", c.Audience}, {"client_id", c.ClientID}, {"jti", c.JTI},
	} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if missing != nil {
		return fmt.Errorf("tokens: access token claims missing: %s", strings.Join(missing, ", "))
	}
	if c.ExpiresAt.Unix() <= c.IssuedAt.Unix() {
		return errors.New("tokens: access token exp must be later than iat")
	}
	return nil
}

// appendClaims appends the JSON claims object of c.
func appendClaims(b []byte, c *AccessClaims) []byte {
	b = append(b, `{"iss":`...)
	b = appendJSONString(b, c.Issuer)
	b = append(b, `,"sub":`...)
	b = appendJSONString(b, c.SubjectPrefix)
	if c.Subject != "" {
		// Reopen the string after the prefix and append Subject to it.
		b = b[:len(b)-1]
		n := len(b)
		b = appendJSONString(b, c.Subject)
		b = append(b[:n], b[n+1:]...)
	}
	b = append(b, `,"aud":`...)
	b = appendJSONString(b, c.Audience)
	b = append(b, `,"client_id":`...)
	b = appendJSONString(b, c.ClientID)
	b = append(b, `,"iat":`...)
	b = strconv.AppendInt(b, c.IssuedAt.Unix(), 10)
	b = append(b, `,"exp":`...)
	b = strconv.AppendInt(b, c.ExpiresAt.Unix(), 10)
	b = append(b, `,"jti":`...)
	b = appendJSONString(b, c.JTI)
	if c.Scope != "" {
		b = append(b, `,"scope":`...)
		b = appendJSONString(b, c.Scope)
	}
	if c.FamilyID != "" {
		b = append(b, `,"fid":`...)
		b = appendJSONString(b, c.FamilyID)
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string exactly as encoding/json does
// with HTML escaping off (the claims and header of a token).
func appendJSONString(b []byte, s string) []byte { return jsonenc.AppendString(b, s, false) }

// Verify checks that token is an access token signed by one of the Signer's
// keys and returns its claims. The key is chosen by the header's kid; the
// header's alg must equal that key's algorithm (so "none" and alg confusion
// such as HS256 keyed with a public key are rejected), typ must be "at+jwt"
// (or "application/at+jwt"), and iss, sub, aud, client_id, iat, exp and jti
// must be present.
//
// Expiry: if now is the zero time, expiry is not checked. Otherwise a token
// whose exp is not after now yields BOTH its claims and an error wrapping
// ErrExpired, so a revocation endpoint can still recognise its own expired
// tokens. Any other failure returns nil claims and an error wrapping
// ErrInvalid. nbf is not checked (Mint never sets it). Verify never panics on
// malformed input, and its errors never echo the token.
func (s *Signer) Verify(token string, now time.Time) (*AccessClaims, error) {
	if len(token) > MaxTokenLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrInvalid, MaxTokenLen)
	}
	dot1 := strings.IndexByte(token, '.')
	dot2 := strings.LastIndexByte(token, '.')
	if dot1 <= 0 || dot2 <= dot1+1 || dot2 == len(token)-1 {
		return nil, fmt.Errorf("%w: not a compact JWS with three non-empty parts", ErrInvalid)
	}
	if !isBase64URL(token[:dot1]) || !isBase64URL(token[dot1+1:dot2]) || !isBase64URL(token[dot2+1:]) {
		return nil, fmt.Errorf("%w: not base64url (or more than three parts)", ErrInvalid)
	}
	enc := base64.RawURLEncoding.Strict()

	hdrJSON, err := enc.DecodeString(token[:dot1])
	if err != nil {
		return nil, fmt.Errorf("%w: header is not base64url", ErrInvalid)
	}
	var hdr struct {
		Alg  *string         `json:"alg"`
		Kid  *string         `json:"kid"`
		Typ  *string         `json:"typ"`
		Crit json.RawMessage `json:"crit"`
	}
	if err := unmarshalObject(hdrJSON, &hdr); err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrInvalid, err)
	}
	switch {
	case hdr.Alg == nil || *hdr.Alg == "":
		return nil, fmt.Errorf("%w: header has no alg", ErrInvalid)
	case strings.EqualFold(*hdr.Alg, "none"):
		return nil, fmt.Errorf("%w: alg none is not accepted", ErrInvalid)
	case hdr.Kid == nil:
		return nil, fmt.Errorf("%w: header has no kid", ErrInvalid)
	case hdr.Crit != nil:
		return nil, fmt.Errorf("%w: header has crit", ErrInvalid)
	case hdr.Typ == nil || !(strings.EqualFold(*hdr.Typ, "at+jwt") || strings.EqualFold(*hdr.Typ, "application/at+jwt")):
		return nil, fmt.Errorf("%w: typ is not at+jwt", ErrInvalid)
	}
	k, ok := s.byKID[*hdr.Kid]
	if !ok {
		return nil, fmt.Errorf("%w: unknown kid", ErrInvalid)
	}
	if *hdr.Alg != string(k.Alg) {
		return nil, fmt.Errorf("%w: alg does not match the key's algorithm %s", ErrInvalid, k.Alg)
	}
	sig, err := enc.DecodeString(token[dot2+1:])
	if err != nil {
		return nil, fmt.Errorf("%w: signature is not base64url", ErrInvalid)
	}
	if !k.verify([]byte(token[:dot2]), sig) {
		return nil, fmt.Errorf("%w: bad signature", ErrInvalid)
	}

	payload, err := enc.DecodeString(token[dot1+1 : dot2])
	if err != nil {
		return nil, fmt.Errorf("%w: payload is not base64url", ErrInvalid)
	}
	var raw struct {
		Iss      *string         `json:"iss"`
		Sub      *string         `json:"sub"`
		Aud      json.RawMessage `json:"aud"`
		ClientID *string         `json:"client_id"`
		Iat      json.RawMessage `json:"iat"`
		Exp      json.RawMessage `json:"exp"`
		JTI      *string         `json:"jti"`
		Scope    string          `json:"scope"`
		FID      string          `json:"fid"`
	}
	if err := unmarshalObject(payload, &raw); err != nil {
		return nil, fmt.Errorf("%w: claims: %w", ErrInvalid, err)
	}
	if raw.Iss == nil || raw.Sub == nil || raw.ClientID == nil || raw.JTI == nil || raw.Aud == nil {
		return nil, fmt.Errorf("%w: a required claim (iss, sub, aud, client_id, jti) is missing", ErrInvalid)
	}
	aud, err := parseAudience(raw.Aud)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	iat, err := parseNumericDate(raw.Iat)
	if err != nil {
		return nil, fmt.Errorf("%w: iat: %w", ErrInvalid, err)
	}
	exp, err := parseNumericDate(raw.Exp)
	if err != nil {
		return nil, fmt.Errorf("%w: exp: %w", ErrInvalid, err)
	}
	c := &AccessClaims{
		Issuer:    *raw.Iss,
		Subject:   *raw.Sub,
		Audience:  aud,
		ClientID:  *raw.ClientID,
		IssuedAt:  iat,
		ExpiresAt: exp,
		JTI:       *raw.JTI,
		Scope:     raw.Scope,
		FamilyID:  raw.FID,
	}
	if !now.IsZero() && !now.Before(exp) {
		return c, ErrExpired
	}
	return c, nil
}

// isBase64URL reports whether s uses only the base64url alphabet. The base64
// decoder silently skips CR and LF, so this check keeps parsing strict.
func isBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// unmarshalObject decodes a JSON object, rejecting anything else.
func unmarshalObject(data []byte, v any) error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return errors.New("not a JSON object")
	}
	if err := json.Unmarshal(data, v); err != nil {
		return errors.New("malformed JSON")
	}
	return nil
}

// parseAudience accepts a string or an array of exactly one string.
func parseAudience(m json.RawMessage) (string, error) {
	if len(m) == 0 || m[0] != '"' && m[0] != '[' {
		return "", errors.New("aud is not a string or a one-element array")
	}
	var one string
	if err := json.Unmarshal(m, &one); err == nil {
		return one, nil
	}
	var many []string
	if err := json.Unmarshal(m, &many); err == nil && len(many) == 1 {
		return many[0], nil
	}
	return "", errors.New("aud is not a string or a one-element array")
}

// maxNumericDate is 9999-12-31T23:59:59Z.
const maxNumericDate = 253402300799

// parseNumericDate parses a present, non-negative NumericDate: a JSON number
// of seconds (fractions truncated), not a string.
func parseNumericDate(m json.RawMessage) (time.Time, error) {
	if m == nil {
		return time.Time{}, errors.New("missing")
	}
	// m is valid JSON, so a leading digit or '-' means a JSON number.
	if c := m[0]; !('0' <= c && c <= '9' || c == '-') {
		return time.Time{}, errors.New("not a NumericDate")
	}
	f, err := strconv.ParseFloat(string(m), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, errors.New("not a NumericDate")
	}
	return time.Unix(int64(f), 0), nil
}

// NewID returns n random bytes as unpadded base64url, for ids such as jti
// (use n ≥ 16 for at least 128 bits). It panics if n < 1.
func NewID(n int) string {
	if n < 1 {
		panic("tokens: NewID needs n ≥ 1")
	}
	var small [64]byte
	var b []byte
	if n <= len(small) {
		b = small[:n]
	} else {
		b = make([]byte, n)
	}
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go ≥ 1.24)
	return b64(b)
}

// b64 returns the unpadded base64url encoding of src with one allocation.
func b64(src []byte) string {
	out := base64.RawURLEncoding.AppendEncode(make([]byte, 0, base64.RawURLEncoding.EncodedLen(len(src))), src)
	return unsafe.String(unsafe.SliceData(out), len(out))
}
