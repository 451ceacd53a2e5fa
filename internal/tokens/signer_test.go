package tokens

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

func testSigner(t testing.TB, algs ...jwa.SignatureAlgorithm) *Signer {
	t.Helper()
	var keys []*Key
	for _, a := range algs {
		keys = append(keys, testKey(t, a))
	}
	s, err := NewSigner(keys)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sampleClaims(now time.Time) AccessClaims {
	return AccessClaims{
		Issuer:    "https://example.com",
		Subject:   "client-1",
		Audience:  "https://api.example.com",
		ClientID:  "client-1",
		IssuedAt:  now,
		ExpiresAt: now.Add(time.Hour),
		JTI:       NewID(16),
		Scope:     "basic profile",
		FamilyID:  "AAAAAAAAAAAAAAAAAAAAAA",
	}
}

// segment decodes part i of a compact JWS.
func segment(t testing.TB, token string, i int) []byte {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatalf("part %d: %v", i, err)
	}
	return b
}

func TestMintVerifiesWithJWX(t *testing.T) {
	for _, alg := range allAlgs {
		t.Run(string(alg), func(t *testing.T) {
			// Put another key second, so the signer has to use the first.
			other := ES256
			if alg == ES256 {
				other = EdDSA
			}
			s := testSigner(t, alg, other)
			k := s.SigningKey()
			now := time.Now().Truncate(time.Second)
			c := sampleClaims(now)
			tok, err := s.Mint(c)
			if err != nil {
				t.Fatal(err)
			}

			wantHdr := `{"alg":"` + string(alg) + `","kid":"` + k.KID + `","typ":"at+jwt"}`
			if got := string(segment(t, tok, 0)); got != wantHdr {
				t.Errorf("header = %s, want %s", got, wantHdr)
			}

			var opt jwt.ParseOption
			if alg == HS256 {
				opt = jwt.WithKey(jwa.HS256, rawOct)
			} else {
				set, err := jwk.Parse(s.JWKS())
				if err != nil {
					t.Fatal(err)
				}
				opt = jwt.WithKeySet(set)
			}
			parsed, err := jwt.Parse([]byte(tok), opt, jwt.WithValidate(true), jwt.WithIssuer(c.Issuer), jwt.WithAudience(c.Audience))
			if err != nil {
				t.Fatalf("jwx rejects our token: %v", err)
			}
			if parsed.Issuer() != c.Issuer || parsed.Subject() != c.Subject || parsed.JwtID() != c.JTI ||
				len(parsed.Audience()) != 1 || parsed.Audience()[0] != c.Audience ||
				!parsed.IssuedAt().Equal(now) || !parsed.Expiration().Equal(c.ExpiresAt) {
				t.Errorf("registered claims differ: %+v", parsed)
			}
			priv := parsed.PrivateClaims()
			if priv["client_id"] != c.ClientID || priv["scope"] != c.Scope || priv["fid"] != c.FamilyID || len(priv) != 3 {
				t.Errorf("private claims = %v", priv)
			}
			// aud must be a plain string in the JSON, not an array.
			var payload map[string]any
			if err := json.Unmarshal(segment(t, tok, 1), &payload); err != nil {
				t.Fatal(err)
			}
			if _, ok := payload["aud"].(string); !ok || len(payload) != 9 {
				t.Errorf("payload = %v", payload)
			}

			msg, err := jws.Parse([]byte(tok))
			if err != nil {
				t.Fatal(err)
			}
			h := msg.Signatures()[0].ProtectedHeaders()
			if h.Type() != "at+jwt" || h.KeyID() != k.KID || h.Algorithm() != alg {
				t.Errorf("jws headers: typ %q kid %q alg %q", h.Type(), h.KeyID(), h.Algorithm())
			}
			if len(msg.Signatures()[0].Signature()) != k.sigSize {
				t.Errorf("signature is %d bytes, want %d", len(msg.Signatures()[0].Signature()), k.sigSize)
			}

			got, err := s.Verify(tok, now)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if *got != c {
				t.Errorf("Verify claims = %+v, want %+v", *got, c)
			}
		})
	}
}

// TestVerifyJWXSigned checks our verifier against tokens signed by jwx, so
// that signer and verifier cannot agree on a private mistake.
func TestVerifyJWXSigned(t *testing.T) {
	for _, alg := range allAlgs {
		t.Run(string(alg), func(t *testing.T) {
			s := testSigner(t, alg)
			k := s.SigningKey()
			now := time.Now().Truncate(time.Second)
			tok := jwt.New()
			for n, v := range map[string]any{"iss": "i", "sub": "s", "aud": "a", "client_id": "c", "iat": now, "exp": now.Add(time.Minute), "jti": "j", "scope": "x y"} {
				if err := tok.Set(n, v); err != nil {
					t.Fatal(err)
				}
			}
			hdr := jws.NewHeaders()
			_ = hdr.Set(jws.TypeKey, "at+jwt")
			signed, err := jwt.Sign(tok, jwt.WithKey(alg, k.Private, jws.WithProtectedHeaders(hdr)))
			if err != nil {
				t.Fatal(err)
			}
			c, err := s.Verify(string(signed), now)
			if err != nil {
				t.Fatalf("Verify(jwx token): %v", err)
			}
			if c.Issuer != "i" || c.Subject != "s" || c.Audience != "a" || c.ClientID != "c" || c.JTI != "j" || c.Scope != "x y" || c.FamilyID != "" || !c.ExpiresAt.Equal(now.Add(time.Minute)) {
				t.Errorf("claims = %+v", c)
			}
		})
	}
}

func TestMintOmitsEmptyOptionalClaims(t *testing.T) {
	s := testSigner(t, ES256)
	c := sampleClaims(time.Now())
	c.Scope, c.FamilyID = "", ""
	tok, err := s.Mint(c)
	if err != nil {
		t.Fatal(err)
	}
	p := string(segment(t, tok, 1))
	if strings.Contains(p, "scope") || strings.Contains(p, "fid") {
		t.Errorf("payload %s has empty optional claims", p)
	}
}

func TestMintRejectsIncompleteClaims(t *testing.T) {
	s := testSigner(t, ES256)
	now := time.Now()
	for name, mod := range map[string]func(*AccessClaims){
		"iss":       func(c *AccessClaims) { c.Issuer = "" },
		"sub":       func(c *AccessClaims) { c.Subject = "" },
		"aud":       func(c *AccessClaims) { c.Audience = "" },
		"client_id": func(c *AccessClaims) { c.ClientID = "" },
		"jti":       func(c *AccessClaims) { c.JTI = "" },
		"exp":       func(c *AccessClaims) { c.ExpiresAt = c.IssuedAt },
		"zero":      func(c *AccessClaims) { *c = AccessClaims{} },
	} {
		c := sampleClaims(now)
		mod(&c)
		if tok, err := s.Mint(c); err == nil {
			t.Errorf("%s: Mint succeeded: %s", name, tok)
		}
	}
}

var escapeCases = []string{
	"",
	"plain",
	`quote " and backslash \ and slash /`,
	"\x00\x01\x07\b\t\n\v\f\r\x1b\x1f\x7f",
	"<html> & 'apos'",
	"unicode: é ß 日本 🙂",
	"separators \u2028 \u2029",
	"invalid \xff\xfe utf-8 \xc3",
	"truncated \xe6\x97",
	`\u0000 literal`,
}

// stdJSON encodes s with encoding/json, HTML escaping off.
func stdJSON(t testing.TB, s string) string {
	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetEscapeHTML(false)
	if err := e.Encode(s); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

func TestClaimsEscapingRoundTrip(t *testing.T) {
	s := testSigner(t, HS256)
	now := time.Now().Truncate(time.Second)
	for _, v := range escapeCases {
		if v == "" {
			continue
		}
		c := AccessClaims{Issuer: v, Subject: v + "s", Audience: v + "a", ClientID: v + "c", IssuedAt: now, ExpiresAt: now.Add(time.Hour), JTI: v + "j", Scope: v + "x", FamilyID: v + "f"}
		tok, err := s.Mint(c)
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(segment(t, tok, 1)) {
			t.Fatalf("invalid JSON for %q: %s", v, segment(t, tok, 1))
		}
		got, err := s.Verify(tok, now)
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		want := c
		if !utf8.ValidString(v) {
			fix := func(s string) string { var out string; _ = json.Unmarshal([]byte(stdJSON(t, s)), &out); return out }
			want.Issuer, want.Subject, want.Audience, want.ClientID, want.JTI, want.Scope, want.FamilyID =
				fix(c.Issuer), fix(c.Subject), fix(c.Audience), fix(c.ClientID), fix(c.JTI), fix(c.Scope), fix(c.FamilyID)
		}
		if *got != want {
			t.Errorf("round trip of %q: got %+v", v, *got)
		}
		parsed, err := jwt.Parse([]byte(tok), jwt.WithKey(jwa.HS256, rawOct))
		if err != nil {
			t.Errorf("jwx: %q: %v", v, err)
		} else if parsed.Issuer() != want.Issuer {
			t.Errorf("jwx: iss %q, want %q", parsed.Issuer(), want.Issuer)
		}
	}
}

func TestNewSigner(t *testing.T) {
	if _, err := NewSigner(nil); err == nil {
		t.Error("no keys accepted")
	}
	if _, err := NewSigner([]*Key{nil}); err == nil {
		t.Error("nil key accepted")
	}
	if _, err := NewSigner([]*Key{{}}); err == nil {
		t.Error("zero Key accepted")
	}
	k := testKey(t, ES256)
	if _, err := NewSigner([]*Key{k, k}); err == nil || !strings.Contains(err.Error(), "duplicate kid") {
		t.Errorf("duplicate kid: %v", err)
	}
	same, err := ParseKey(octJWK(rawOct, ""), k.KID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewSigner([]*Key{k, same}); err == nil {
		t.Error("duplicate kid across algorithms accepted")
	}

	s := testSigner(t, EdDSA, HS256, ES256, RS256, ES384)
	if got := strings.Join(s.Algorithms(), ","); got != "EdDSA,HS256,ES256,RS256,ES384" {
		t.Errorf("Algorithms = %s", got)
	}
	set, err := jwk.Parse(s.JWKS())
	if err != nil {
		t.Fatalf("JWKS does not parse: %v\n%s", err, s.JWKS())
	}
	if set.Len() != 4 {
		t.Errorf("JWKS has %d keys, want 4 (no HS256)", set.Len())
	}
	for _, alg := range []jwa.SignatureAlgorithm{EdDSA, ES256, RS256, ES384} {
		want := testKey(t, alg)
		got, ok := set.LookupKeyID(want.KID)
		if !ok || got.Algorithm() != alg || got.KeyUsage() != "sig" {
			t.Errorf("%s missing or incomplete in JWKS", alg)
		}
	}
	var doc struct{ Keys []map[string]any }
	if err := json.Unmarshal(s.JWKS(), &doc); err != nil {
		t.Fatal(err)
	}
	for _, m := range doc.Keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := m[private]; ok {
				t.Errorf("JWKS leaks private member %q", private)
			}
		}
	}
	hs := testSigner(t, HS256)
	if string(hs.JWKS()) != `{"keys":[]}` {
		t.Errorf("HS256-only JWKS = %s", hs.JWKS())
	}
}

func TestVerifyRotation(t *testing.T) {
	old := testSigner(t, RS256)
	tok, err := old.Mint(sampleClaims(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	rotated := testSigner(t, ES256, RS256)
	if _, err := rotated.Verify(tok, time.Now()); err != nil {
		t.Errorf("token of the retired key rejected: %v", err)
	}
	if _, err := testSigner(t, ES256).Verify(tok, time.Now()); !errors.Is(err, ErrInvalid) {
		t.Errorf("token of an unknown key: %v", err)
	}
}

func TestVerifyExpiry(t *testing.T) {
	s := testSigner(t, ES256)
	now := time.Now().Truncate(time.Second)
	c := sampleClaims(now)
	tok, _ := s.Mint(c)
	got, err := s.Verify(tok, c.ExpiresAt)
	if !errors.Is(err, ErrExpired) || got == nil || got.JTI != c.JTI {
		t.Errorf("at exp: %v %v", got, err)
	}
	if got, err := s.Verify(tok, c.ExpiresAt.Add(-time.Second)); err != nil || got == nil {
		t.Errorf("just before exp: %v", err)
	}
	if got, err := s.Verify(tok, time.Time{}); err != nil || got == nil {
		t.Errorf("zero now must skip expiry: %v", err)
	}
}

// forge builds a token from header and payload JSON and a signature.
func forge(hdr, payload string, sig []byte) string {
	e := base64.RawURLEncoding
	return e.EncodeToString([]byte(hdr)) + "." + e.EncodeToString([]byte(payload)) + "." + e.EncodeToString(sig)
}

func hs256(key []byte, input string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(input))
	return m.Sum(nil)
}

func TestVerifyRejects(t *testing.T) {
	s := testSigner(t, ES256, HS256, EdDSA)
	es, hs := testKey(t, ES256), testKey(t, HS256)
	now := time.Now().Truncate(time.Second)
	good, err := s.Mint(sampleClaims(now))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	payload := string(segment(t, good, 1))
	e := base64.RawURLEncoding

	// A valid HS256 token under a header of our choosing.
	hsWith := func(hdr string) string {
		in := e.EncodeToString([]byte(hdr)) + "." + parts[1]
		return in + "." + e.EncodeToString(hs256(rawOct, in))
	}
	// HS256 keyed with the ES256 public key, in the forms an attacker might try.
	pubDER, _ := x509.MarshalPKIXPublicKey(&rawP256.PublicKey)
	confusion := func(key []byte) string {
		in := e.EncodeToString([]byte(`{"alg":"HS256","kid":"`+es.KID+`","typ":"at+jwt"}`)) + "." + parts[1]
		return in + "." + e.EncodeToString(hs256(key, in))
	}
	pubJWK, _ := json.Marshal(es.Public)
	otherES, _, err := GenerateKey("ES256")
	if err != nil {
		t.Fatal(err)
	}
	impostor, err := ParseKey(mustPEM(t, otherES), es.KID) // same kid, different key
	if err != nil {
		t.Fatal(err)
	}
	is, _ := NewSigner([]*Key{impostor})
	impostorTok, _ := is.Mint(sampleClaims(now))

	tampered := strings.Replace(payload, `"sub":"client-1"`, `"sub":"client-2"`, 1)

	cases := map[string]string{
		"empty":                        "",
		"one part":                     "abc",
		"two parts":                    parts[0] + "." + parts[1],
		"four parts":                   good + ".x",
		"empty signature":              parts[0] + "." + parts[1] + ".",
		"empty header":                 "." + parts[1] + "." + parts[2],
		"padding":                      good + "=",
		"newline in signature":         parts[0] + "." + parts[1] + "." + parts[2][:10] + "\n" + parts[2][10:],
		"std base64 chars":             parts[0] + "." + parts[1] + "." + strings.ReplaceAll(strings.ReplaceAll(parts[2], "-", "+"), "_", "/") + "+/",
		"oversized":                    good + strings.Repeat("A", MaxTokenLen),
		"tampered payload":             parts[0] + "." + e.EncodeToString([]byte(tampered)) + "." + parts[2],
		"tampered signature":           parts[0] + "." + parts[1] + "." + flipLast(parts[2]),
		"impostor with our kid":        impostorTok,
		"unknown kid":                  hsWith(`{"alg":"HS256","kid":"nope","typ":"at+jwt"}`),
		"no kid":                       hsWith(`{"alg":"HS256","typ":"at+jwt"}`),
		"alg none":                     parts[0][:0] + e.EncodeToString([]byte(`{"alg":"none","kid":"`+hs.KID+`","typ":"at+jwt"}`)) + "." + parts[1] + ".",
		"alg none with sig":            forge(`{"alg":"none","kid":"`+hs.KID+`","typ":"at+jwt"}`, payload, []byte("x")),
		"alg NONE":                     forge(`{"alg":"NONE","kid":"`+es.KID+`","typ":"at+jwt"}`, payload, []byte("x")),
		"no alg":                       hsWith(`{"kid":"` + hs.KID + `","typ":"at+jwt"}`),
		"HS256 alg on HS key, typ JWT": hsWith(`{"alg":"HS256","kid":"` + hs.KID + `","typ":"JWT"}`),
		"no typ":                       hsWith(`{"alg":"HS256","kid":"` + hs.KID + `"}`),
		"crit":                         hsWith(`{"alg":"HS256","kid":"` + hs.KID + `","typ":"at+jwt","crit":["exp"]}`),
		"HS384 on HS256 key":           hsWith(`{"alg":"HS384","kid":"` + hs.KID + `","typ":"at+jwt"}`),
		"confusion: public DER":        confusion(pubDER),
		"confusion: public PEM":        confusion(pemBytes("PUBLIC KEY", pubDER)),
		"confusion: public JWK":        confusion(pubJWK),
		"confusion: ES256 on Ed":       strings.Replace(good, parts[0], e.EncodeToString([]byte(`{"alg":"ES256","kid":"`+testKey(t, EdDSA).KID+`","typ":"at+jwt"}`)), 1),
		"header not object":            hsWith(`["alg"]`),
		"header not JSON":              hsWith(`{"alg":`),
		"kid not string":               hsWith(`{"alg":"HS256","kid":1,"typ":"at+jwt"}`),
		"payload not object": func() string {
			in := e.EncodeToString([]byte(`{"alg":"HS256","kid":"`+hs.KID+`","typ":"at+jwt"}`)) + "." + e.EncodeToString([]byte(`"x"`))
			return in + "." + e.EncodeToString(hs256(rawOct, in))
		}(),
	}
	// Signed (valid HS256) tokens whose claims are unusable.
	for name, p := range map[string]string{
		"missing exp":      `{"iss":"i","sub":"s","aud":"a","client_id":"c","iat":1,"jti":"j"}`,
		"missing jti":      `{"iss":"i","sub":"s","aud":"a","client_id":"c","iat":1,"exp":2}`,
		"missing aud":      `{"iss":"i","sub":"s","client_id":"c","iat":1,"exp":2,"jti":"j"}`,
		"two audiences":    `{"iss":"i","sub":"s","aud":["a","b"],"client_id":"c","iat":1,"exp":2,"jti":"j"}`,
		"aud null":         `{"iss":"i","sub":"s","aud":null,"client_id":"c","iat":1,"exp":2,"jti":"j"}`,
		"exp null":         `{"iss":"i","sub":"s","aud":"a","client_id":"c","iat":1,"exp":null,"jti":"j"}`,
		"exp string":       `{"iss":"i","sub":"s","aud":"a","client_id":"c","iat":1,"exp":"2","jti":"j"}`,
		"exp negative":     `{"iss":"i","sub":"s","aud":"a","client_id":"c","iat":1,"exp":-2,"jti":"j"}`,
		"exp huge":         `{"iss":"i","sub":"s","aud":"a","client_id":"c","iat":1,"exp":1e300,"jti":"j"}`,
		"iss not string":   `{"iss":1,"sub":"s","aud":"a","client_id":"c","iat":1,"exp":2,"jti":"j"}`,
		"trailing garbage": `{"iss":"i","sub":"s","aud":"a","client_id":"c","iat":1,"exp":2,"jti":"j"}x`,
	} {
		in := e.EncodeToString([]byte(`{"alg":"HS256","kid":"`+hs.KID+`","typ":"at+jwt"}`)) + "." + e.EncodeToString([]byte(p))
		cases[name] = in + "." + e.EncodeToString(hs256(rawOct, in))
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := s.Verify(tok, now)
			if err == nil || c != nil {
				t.Fatalf("accepted: %+v", c)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if len(tok) > 20 && strings.Contains(err.Error(), tok[len(tok)-20:]) {
				t.Errorf("error echoes the token: %v", err)
			}
		})
	}

	// Sanity: the same construction with good inputs is accepted.
	for name, tok := range map[string]string{
		"good": good,
		"HS256 with aud array": func() string {
			p := `{"iss":"i","sub":"s","aud":["a"],"client_id":"c","iat":1,"exp":2,"jti":"j"}`
			in := e.EncodeToString([]byte(`{"alg":"HS256","kid":"`+hs.KID+`","typ":"application/AT+JWT"}`)) + "." + e.EncodeToString([]byte(p))
			return in + "." + e.EncodeToString(hs256(rawOct, in))
		}(),
	} {
		if _, err := s.Verify(tok, time.Time{}); err != nil {
			t.Errorf("%s rejected: %v", name, err)
		}
	}
}

func mustPEM(t testing.TB, k *Key) []byte {
	t.Helper()
	var raw any
	if err := k.Private.Raw(&raw); err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return pemBytes("PRIVATE KEY", der)
}

func flipLast(s string) string {
	b := []byte(s)
	// Flip a bit in the first character so the decoded bytes change.
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return string(b)
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	for _, n := range []int{1, 16, 32, 64, 65, 100} {
		id := NewID(n)
		if len(id) != base64.RawURLEncoding.EncodedLen(n) || !isBase64URL(id) || seen[id] {
			t.Errorf("NewID(%d) = %q", n, id)
		}
		seen[id] = true
	}
	defer func() {
		if recover() == nil {
			t.Error("NewID(0) did not panic")
		}
	}()
	NewID(0)
}

func FuzzVerify(f *testing.F) {
	s := testSigner(f, ES256, HS256, EdDSA, RS256)
	now := time.Unix(1700000000, 0)
	for _, alg := range allAlgs[:4] {
		one := testSigner(f, alg)
		tok, err := one.Mint(sampleClaims(now))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
	}
	f.Add("")
	f.Add("..")
	f.Add("a.b.c")
	f.Add(forge(`{"alg":"none"}`, `{}`, nil))
	f.Add(forge(`{"alg":"ES256","kid":"`+testKey(f, ES256).KID+`","typ":"at+jwt"}`, `{}`, make([]byte, 64)))
	f.Add(forge(`{"alg":"RS256","kid":"`+testKey(f, RS256).KID+`","typ":"at+jwt"}`, `{}`, make([]byte, 3)))
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := s.Verify(tok, now)
		switch {
		case err == nil && c == nil:
			t.Fatal("nil claims without error")
		case errors.Is(err, ErrExpired) && c == nil:
			t.Fatal("ErrExpired without claims")
		case err != nil && !errors.Is(err, ErrExpired) && c != nil:
			t.Fatal("claims with a non-expiry error")
		case err != nil && !errors.Is(err, ErrExpired) && !errors.Is(err, ErrInvalid):
			t.Fatalf("unclassified error %v", err)
		}
	})
}

// FuzzVerifySigned drives the header and claims parsers behind a valid
// HS256 signature, which random mutation of whole tokens rarely gets past.
func FuzzVerifySigned(f *testing.F) {
	s := testSigner(f, HS256)
	kid := testKey(f, HS256).KID
	f.Add(`{"alg":"HS256","kid":"`+kid+`","typ":"at+jwt"}`, `{"iss":"i","sub":"s","aud":"a","client_id":"c","iat":1,"exp":2,"jti":"j"}`)
	f.Add(`{"alg":"HS256","kid":"`+kid+`","typ":"at+jwt"}`, `{"iss":"i","sub":"s","aud":["a"],"client_id":"c","iat":1.5,"exp":2e9,"jti":"j","scope":"x","fid":"f"}`)
	f.Add(`{"alg":"HS256","kid":"`+kid+`","typ":"at+jwt","crit":[]}`, `{}`)
	f.Add(`{"alg":"HS256","kid":"`+kid+`","typ":"AT+JWT"}`, `{"exp":null,"aud":{}}`)
	f.Fuzz(func(t *testing.T, hdr, payload string) {
		e := base64.RawURLEncoding
		in := e.EncodeToString([]byte(hdr)) + "." + e.EncodeToString([]byte(payload))
		tok := in + "." + e.EncodeToString(hs256(rawOct, in))
		c, err := s.Verify(tok, time.Unix(1, 0))
		if err != nil && !errors.Is(err, ErrExpired) {
			if c != nil || !errors.Is(err, ErrInvalid) {
				t.Fatalf("claims %v with error %v", c, err)
			}
			return
		}
		// Whatever verifies must survive a Mint/Verify round trip.
		if c.Issuer == "" || c.Subject == "" || c.Audience == "" || c.ClientID == "" || c.JTI == "" || c.ExpiresAt.Unix() <= c.IssuedAt.Unix() {
			return // Mint would refuse these claims.
		}
		tok2, err := s.Mint(*c)
		if err != nil {
			t.Fatalf("re-Mint: %v", err)
		}
		c2, err := s.Verify(tok2, time.Time{})
		if err != nil || c2.Issuer != c.Issuer || c2.Scope != c.Scope || c2.FamilyID != c.FamilyID || !c2.ExpiresAt.Equal(c.ExpiresAt) {
			t.Fatalf("round trip: %+v vs %+v (%v)", c2, c, err)
		}
	})
}

func TestKIDEscaping(t *testing.T) {
	for _, kid := range []string{`we"ird\kid`, "tab\there", "ünï", "\u2028"} {
		k, err := ParseKey(octJWK(rawOct, ""), kid)
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewSigner([]*Key{k})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := s.Mint(sampleClaims(time.Now()))
		if err != nil {
			t.Fatal(err)
		}
		var hdr map[string]string
		if err := json.Unmarshal(segment(t, tok, 0), &hdr); err != nil || hdr["kid"] != kid {
			t.Errorf("kid %q: header %s (%v)", kid, segment(t, tok, 0), err)
		}
		if _, err := s.Verify(tok, time.Now()); err != nil {
			t.Errorf("kid %q: %v", kid, err)
		}
		if _, err := jwt.Parse([]byte(tok), jwt.WithKey(jwa.HS256, rawOct)); err != nil {
			t.Errorf("kid %q: jwx: %v", kid, err)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	s := testSigner(t, allAlgs...)
	signers := map[jwa.SignatureAlgorithm]*Signer{}
	for _, alg := range allAlgs {
		signers[alg] = testSigner(t, alg)
	}
	done := make(chan error)
	for _, alg := range allAlgs {
		for range 2 {
			go func() {
				var err error
				for i := 0; i < 20 && err == nil; i++ {
					var tok string
					if tok, err = signers[alg].Mint(sampleClaims(time.Now())); err == nil {
						_, err = s.Verify(tok, time.Now())
					}
				}
				done <- err
			}()
		}
	}
	for range 2 * len(allAlgs) {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// SubjectPrefix and Subject make one "sub", escaped as one JSON string.
func TestMintSubjectPrefix(t *testing.T) {
	s := testSigner(t, jwa.ES256)
	now := time.Now()
	for _, tc := range []struct{ prefix, subject, want string }{
		{"client:", "1", "client:1"},
		{"client:", `odd "id"</script>` + "\u2028\xff", "client:" + `odd "id"</script>` + "\u2028\ufffd"},
		{"client:", "", "client:"},
		{"", "42", "42"},
	} {
		c := sampleClaims(now)
		c.SubjectPrefix, c.Subject = tc.prefix, tc.subject
		tok, err := s.Mint(c)
		if err != nil {
			t.Fatalf("%q+%q: %v", tc.prefix, tc.subject, err)
		}
		var claims map[string]any
		if err := json.Unmarshal(segment(t, tok, 1), &claims); err != nil {
			t.Fatalf("%q+%q: claims are not JSON: %v", tc.prefix, tc.subject, err)
		}
		got, err := s.Verify(tok, now)
		if err != nil || got.Subject != tc.want || claims["sub"] != tc.want {
			t.Errorf("%q+%q: sub %q (JSON %q), %v; want %q", tc.prefix, tc.subject, got.Subject, claims["sub"], err, tc.want)
		}
	}
	c := sampleClaims(now)
	c.SubjectPrefix, c.Subject = "", ""
	if _, err := s.Mint(c); err == nil {
		t.Error("a token without sub was minted")
	}
}
