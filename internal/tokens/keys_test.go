package tokens

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// Raw test keys, generated once (RSA generation is slow under -race).
var (
	rawOnce  sync.Once
	rawRSA   *rsa.PrivateKey
	rawP256  *ecdsa.PrivateKey
	rawP384  *ecdsa.PrivateKey
	rawEd    ed25519.PrivateKey
	rawOct   []byte
	testKeys map[jwa.SignatureAlgorithm]*Key
)

// allAlgs lists every supported algorithm, in test order.
var allAlgs = []jwa.SignatureAlgorithm{ES256, ES384, RS256, EdDSA, HS256}

func rawKeys(t testing.TB) {
	t.Helper()
	rawOnce.Do(func() {
		var err error
		if rawRSA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if rawP256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if rawP384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
			panic(err)
		}
		if _, rawEd, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
		rawOct = make([]byte, 32)
		rand.Read(rawOct)
		testKeys = map[jwa.SignatureAlgorithm]*Key{}
		for alg, raw := range map[jwa.SignatureAlgorithm]any{ES256: rawP256, ES384: rawP384, RS256: rawRSA, EdDSA: rawEd} {
			der, err := x509.MarshalPKCS8PrivateKey(raw)
			if err != nil {
				panic(err)
			}
			k, err := ParseKey(pemBytes("PRIVATE KEY", der), "")
			if err != nil {
				panic(err)
			}
			testKeys[alg] = k
		}
		k, err := ParseKey(octJWK(rawOct, ""), "")
		if err != nil {
			panic(err)
		}
		testKeys[HS256] = k
	})
}

// testKey returns the shared test key for alg.
func testKey(t testing.TB, alg jwa.SignatureAlgorithm) *Key {
	rawKeys(t)
	return testKeys[alg]
}

func pemBytes(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func octJWK(secret []byte, extra string) []byte {
	return []byte(`{"kty":"oct",` + extra + `"k":"` + base64.RawURLEncoding.EncodeToString(secret) + `"}`)
}

func mustDER(t testing.TB, f func() ([]byte, error)) []byte {
	t.Helper()
	b, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// thumbprint is the RFC 7638 SHA-256 thumbprint of a raw key, via jwx.
func thumbprint(t testing.TB, raw any) string {
	t.Helper()
	k, err := jwk.FromRaw(raw)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

func TestParseKeyPEM(t *testing.T) {
	rawKeys(t)
	p256params := mustDER(t, func() ([]byte, error) { return x509.MarshalECPrivateKey(rawP256) })
	cases := []struct {
		name string
		data []byte
		alg  jwa.SignatureAlgorithm
		pub  any
	}{
		{"PKCS1 RSA", pemBytes("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rawRSA)), RS256, &rawRSA.PublicKey},
		{"PKCS8 RSA", pemBytes("PRIVATE KEY", mustDER(t, func() ([]byte, error) { return x509.MarshalPKCS8PrivateKey(rawRSA) })), RS256, &rawRSA.PublicKey},
		{"PKCS8 P-256", pemBytes("PRIVATE KEY", mustDER(t, func() ([]byte, error) { return x509.MarshalPKCS8PrivateKey(rawP256) })), ES256, &rawP256.PublicKey},
		{"PKCS8 P-384", pemBytes("PRIVATE KEY", mustDER(t, func() ([]byte, error) { return x509.MarshalPKCS8PrivateKey(rawP384) })), ES384, &rawP384.PublicKey},
		{"SEC1 P-256", pemBytes("EC PRIVATE KEY", p256params), ES256, &rawP256.PublicKey},
		{"SEC1 P-384", pemBytes("EC PRIVATE KEY", mustDER(t, func() ([]byte, error) { return x509.MarshalECPrivateKey(rawP384) })), ES384, &rawP384.PublicKey},
		// openssl ecparam -genkey writes an EC PARAMETERS block first.
		{"SEC1 after EC PARAMETERS", append(pemBytes("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}), pemBytes("EC PRIVATE KEY", p256params)...), ES256, &rawP256.PublicKey},
		{"PKCS8 Ed25519", pemBytes("PRIVATE KEY", mustDER(t, func() ([]byte, error) { return x509.MarshalPKCS8PrivateKey(rawEd) })), EdDSA, rawEd.Public()},
		{"surrounding whitespace and text", []byte("  \nsome comment\n" + string(pemBytes("PRIVATE KEY", mustDER(t, func() ([]byte, error) { return x509.MarshalPKCS8PrivateKey(rawP256) }))) + "\n\n"), ES256, &rawP256.PublicKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseKey(tc.data, "")
			if err != nil {
				t.Fatalf("ParseKey: %v", err)
			}
			if k.Alg != tc.alg {
				t.Errorf("Alg = %s, want %s", k.Alg, tc.alg)
			}
			if want := thumbprint(t, tc.pub); k.KID != want {
				t.Errorf("KID = %q, want thumbprint %q", k.KID, want)
			}
			if k.Public == nil || k.Public.KeyID() != k.KID || k.Public.Algorithm().String() != string(tc.alg) || k.Public.KeyUsage() != "sig" {
				t.Errorf("Public JWK lacks kid/alg/use: %v", k.Public)
			}
			if k.Private.KeyID() != k.KID {
				t.Errorf("Private JWK kid = %q", k.Private.KeyID())
			}
			var raw any
			if err := k.Public.Raw(&raw); err != nil {
				t.Fatal(err)
			}
			if eq, ok := raw.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(tc.pub) {
				t.Errorf("public key differs from the input's")
			}
			k2, err := ParseKey(tc.data, "my-kid")
			if err != nil || k2.KID != "my-kid" || k2.Public.KeyID() != "my-kid" {
				t.Errorf("explicit kid: %v, %v", k2, err)
			}
		})
	}
}

func TestParseKeyJWK(t *testing.T) {
	rawKeys(t)
	privJWK := func(raw any, set map[string]any) []byte {
		k, err := jwk.FromRaw(raw)
		if err != nil {
			t.Fatal(err)
		}
		for n, v := range set {
			if err := k.Set(n, v); err != nil {
				t.Fatal(err)
			}
		}
		b, err := json.Marshal(k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name    string
		data    []byte
		alg     jwa.SignatureAlgorithm
		wantKID string
	}{
		{"EC with kid", privJWK(rawP256, map[string]any{"kid": "ec-1"}), ES256, "ec-1"},
		{"EC with alg and use", privJWK(rawP256, map[string]any{"alg": "ES256", "use": "sig"}), ES256, thumbprint(t, &rawP256.PublicKey)},
		{"P-384", privJWK(rawP384, nil), ES384, thumbprint(t, &rawP384.PublicKey)},
		{"RSA", privJWK(rawRSA, map[string]any{"kid": "rsa-1"}), RS256, "rsa-1"},
		{"Ed25519", privJWK(rawEd, nil), EdDSA, thumbprint(t, rawEd.Public())},
		{"oct", octJWK(rawOct, ""), HS256, thumbprint(t, rawOct)},
		{"oct with kid and alg", octJWK(rawOct, `"kid":"hs","alg":"HS256",`), HS256, "hs"},
		{"JWK Set with one key", []byte(`{"keys":[` + string(privJWK(rawEd, map[string]any{"kid": "in-set"})) + `]}`), EdDSA, "in-set"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseKey(tc.data, "")
			if err != nil {
				t.Fatalf("ParseKey: %v", err)
			}
			if k.Alg != tc.alg || k.KID != tc.wantKID {
				t.Errorf("got %s %q, want %s %q", k.Alg, k.KID, tc.alg, tc.wantKID)
			}
			if (tc.alg == HS256) != (k.Public == nil) {
				t.Errorf("Public = %v", k.Public)
			}
			k2, err := ParseKey(tc.data, "override")
			if err != nil || k2.KID != "override" {
				t.Errorf("explicit kid must win over the JWK's: %v %v", k2, err)
			}
		})
	}
}

// TestThumbprintIsPublic checks the default kid is the thumbprint of the
// public JWK, as a client computing it from the JWKS would get.
func TestThumbprintIsPublic(t *testing.T) {
	for _, alg := range allAlgs {
		k := testKey(t, alg)
		if k.Public == nil {
			continue
		}
		tp, err := k.Public.Thumbprint(crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if got := base64.RawURLEncoding.EncodeToString(tp); got != k.KID {
			t.Errorf("%s: kid %q != public thumbprint %q", alg, k.KID, got)
		}
	}
}

func TestParseKeyErrors(t *testing.T) {
	rawKeys(t)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	x25519, _ := ecdh.X25519().GenerateKey(rand.Reader)
	pubJWK, _ := jwk.FromRaw(&rawP256.PublicKey)
	pubJWKBytes, _ := json.Marshal(pubJWK)
	ecJWK, _ := jwk.FromRaw(rawP256)
	_ = ecJWK.Set("alg", "RS256")
	ecJWKWrongAlg, _ := json.Marshal(ecJWK)
	_ = ecJWK.Set("alg", "ES256")
	_ = ecJWK.Set("use", "enc")
	ecJWKEnc, _ := json.Marshal(ecJWK)
	// A JWK whose public point does not belong to its private scalar.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mismatched := *rawP256
	mismatched.PublicKey = other.PublicKey
	mmJWK, _ := jwk.FromRaw(&mismatched)
	mmJWKBytes, _ := json.Marshal(mmJWK)
	shortSecret := []byte("0123456789abcdef0123456789abcde") // 31 bytes
	twoKeys := `{"keys":[` + string(octJWK(rawOct, "")) + `,` + string(octJWK(rawOct, "")) + `]}`
	pkcs8 := func(raw any) []byte {
		return pemBytes("PRIVATE KEY", mustDER(t, func() ([]byte, error) { return x509.MarshalPKCS8PrivateKey(raw) }))
	}
	encryptedBlock := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00"}, Bytes: []byte{1, 2, 3}})

	cases := []struct {
		name   string
		data   []byte
		want   string
		secret string // must not appear in the error
	}{
		{"empty", nil, "no PEM block or JWK found", ""},
		{"whitespace", []byte(" \n\t"), "no PEM block or JWK found", ""},
		{"garbage", []byte("hello world"), "no PEM block or JWK found", ""},
		{"public key PEM", pemBytes("PUBLIC KEY", mustDER(t, func() ([]byte, error) { return x509.MarshalPKIXPublicKey(&rawP256.PublicKey) })), "found PUBLIC KEY", ""},
		{"certificate only", pemBytes("CERTIFICATE", []byte{0x30, 0x00}), "found CERTIFICATE", ""},
		{"P-521", pkcs8(p521), "unsupported curve P-521", ""},
		{"P-224 SEC1", pemBytes("EC PRIVATE KEY", mustDER(t, func() ([]byte, error) { return x509.MarshalECPrivateKey(p224) })), "unsupported curve P-224", ""},
		{"RSA 1024", pemBytes("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsa1024)), "RSA key has 1024 bits", ""},
		{"X25519", pkcs8(x25519), "key type", ""},
		{"corrupt PKCS8", pemBytes("PRIVATE KEY", []byte("not der at all")), `invalid PEM "PRIVATE KEY" block`, ""},
		{"corrupt SEC1", pemBytes("EC PRIVATE KEY", []byte{0x30, 0x01, 0x00}), `invalid PEM "EC PRIVATE KEY" block`, ""},
		{"encrypted PKCS8", pemBytes("ENCRYPTED PRIVATE KEY", []byte{0x30, 0x00}), "encrypted", ""},
		{"legacy encrypted PEM", encryptedBlock, "encrypted", ""},
		{"short oct", octJWK(shortSecret, ""), "HS256 secret has 31 bytes", base64.RawURLEncoding.EncodeToString(shortSecret)},
		{"public JWK", pubJWKBytes, "private key is required", ""},
		{"JWK alg mismatch", ecJWKWrongAlg, `JWK alg "RS256"`, ""},
		{"JWK use enc", ecJWKEnc, `JWK use "enc"`, ""},
		{"JWK mismatched pair", mmJWKBytes, "self-test", ""},
		{"JWK Set with two keys", []byte(twoKeys), "holds 2 keys", ""},
		{"bad JSON", []byte(`{"kty":`), "invalid JWK", ""},
		{"unknown kty", []byte(`{"kty":"XYZ"}`), "invalid JWK", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseKey(tc.data, "")
			if err == nil {
				t.Fatalf("ParseKey succeeded: %v", k)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if tc.secret != "" && strings.Contains(err.Error(), tc.secret) {
				t.Errorf("error leaks the secret: %q", err)
			}
		})
	}
	if _, err := ParseKey(pkcs8(p521), ""); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("P-521 error does not wrap ErrUnsupportedKey: %v", err)
	}
	if _, err := ParseKey([]byte("x"), ""); !errors.Is(err, ErrNoKey) {
		t.Errorf("garbage error does not wrap ErrNoKey: %v", err)
	}
}

func TestGenerateKey(t *testing.T) {
	for _, alg := range append(allAlgs, "XX256") {
		t.Run(string(alg), func(t *testing.T) {
			k, enc, err := GenerateKey(string(alg))
			if alg == "XX256" {
				if err == nil {
					t.Fatal("unsupported alg accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.Alg != alg {
				t.Errorf("Alg = %s", k.Alg)
			}
			want := "-----BEGIN PRIVATE KEY-----"
			if alg == HS256 {
				want = `{"kty":"oct","k":"`
			}
			if !strings.HasPrefix(string(enc), want) {
				t.Errorf("encoding starts %.30q, want %q", enc, want)
			}
			k2, err := ParseKey(enc, "")
			if err != nil {
				t.Fatal(err)
			}
			if k2.KID != k.KID || k2.Alg != k.Alg {
				t.Errorf("re-parsed key differs: %s %s", k2.Alg, k2.KID)
			}
		})
	}
	k, pemData, err := GenerateES256()
	if err != nil || k.Alg != ES256 || !strings.Contains(string(pemData), "BEGIN PRIVATE KEY") {
		t.Fatalf("GenerateES256: %v %v", k, err)
	}
}

func TestECDSASignatureConversion(t *testing.T) {
	// Values with leading zeros and high bits exercise padding both ways.
	for _, size := range []int{32, 48} {
		for _, first := range []byte{0x00, 0x01, 0x7f, 0x80, 0xff} {
			raw := make([]byte, 2*size)
			rand.Read(raw)
			raw[0], raw[size] = first, first
			if first == 0 {
				raw[1], raw[size+1] = 0, 0x80
			}
			der, ok := rawToDER(nil, raw)
			if !ok {
				t.Fatalf("rawToDER failed for %x", raw)
			}
			back, err := appendRawECDSA(nil, der, size)
			if err != nil || string(back) != string(raw) {
				t.Fatalf("round trip: %x -> %x -> %x (%v)", raw, der, back, err)
			}
		}
	}
	for _, bad := range [][]byte{nil, {0x30}, {0x31, 0}, {0x30, 0x02, 0x02, 0x00}, {0x30, 0x84, 0, 0, 0, 0}, {0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01}} {
		if _, err := appendRawECDSA(nil, bad, 32); err == nil {
			t.Errorf("appendRawECDSA accepted %x", bad)
		}
	}
	if _, ok := rawToDER(nil, make([]byte, 63)); ok {
		t.Error("rawToDER accepted odd length")
	}
}

// TestECDSASignsDeterministically checks ES256 signatures against the P-256,
// SHA-256, "sample" vector of RFC 6979 §A.2.5: the nonce comes from the key
// and the digest, not from a random source.
func TestECDSASignsDeterministically(t *testing.T) {
	d, _ := hex.DecodeString("C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721")
	priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d)
	if err != nil {
		t.Fatal(err)
	}
	k, err := newKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := hex.DecodeString("EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716" +
		"F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8")
	for range 2 {
		sig, err := k.sign(nil, []byte("sample"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sig, want) {
			t.Fatalf("ES256 signature of \"sample\" = %X, want RFC 6979's %X", sig, want)
		}
		if !k.verify([]byte("sample"), sig) {
			t.Fatal("the signature does not verify")
		}
	}
}
