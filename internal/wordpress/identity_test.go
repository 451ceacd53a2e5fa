package wordpress

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/caddy-moserver/caddy-moserver/internal/testutil/mariadbtest"
)

const (
	testPublicPEM  = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----\n"
	testPrivatePEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"
)

func TestClientKey(t *testing.T) {
	_, raw, db := setup(t, testPrefix)
	ctx := ctxT(t)
	mariadbtest.InsertPublicKey(t, raw, testPrefix, fixtureID, "RS256", testPublicPEM, testPrivatePEM)
	mariadbtest.InsertPublicKey(t, raw, testPrefix, "hsclient", "HS256", "", "")
	mariadbtest.Exec(t, raw, "INSERT INTO wp_moos_oauth_public_keys (client_id, public_key) VALUES ('nullalg', 'p')")
	mariadbtest.Exec(t, raw, "UPDATE wp_moos_oauth_public_keys SET encryption_algorithm = NULL WHERE client_id = 'nullalg'")

	k, err := db.ClientKey(ctx, fixtureID)
	if err != nil {
		t.Fatal(err)
	}
	want := ClientKey{ClientID: fixtureID, Algorithm: AlgRS256, PublicKeyPEM: testPublicPEM, PrivateKeyPEM: testPrivatePEM}
	if k == nil || *k != want {
		t.Fatalf("ClientKey = %+v, want %+v", k, want)
	}
	if k, err := db.ClientKey(ctx, "hsclient"); err != nil || k == nil || k.Algorithm != AlgHS256 {
		t.Fatalf("HS256 client: %+v, %v", k, err)
	}
	if k, err := db.ClientKey(ctx, "nullalg"); err != nil || k == nil || k.Algorithm != AlgRS256 || k.PrivateKeyPEM != "" {
		t.Fatalf("NULL algorithm: %+v, %v", k, err)
	}
	if k, err := db.ClientKey(ctx, "absent"); err != nil || k != nil {
		t.Fatalf("absent: %+v, %v", k, err)
	}
}

func TestUser(t *testing.T) {
	_, raw, db := setup(t, testPrefix)
	ctx := ctxT(t)
	reg := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	id := mariadbtest.InsertUser(t, raw, testPrefix, mariadbtest.User{
		Login: "alice", Email: "alice@example.test", Nicename: "alice-n", DisplayName: "Alice A",
		Registered: reg,
		Meta:       map[string]string{"first_name": "Alice", "last_name": "Anders", "nickname": "ally", "wp_capabilities": "x"},
	})
	// A second first_name entry: WordPress's single get_user_meta takes the first.
	mariadbtest.Exec(t, raw, "INSERT INTO wp_usermeta (user_id, meta_key, meta_value) VALUES (?, 'first_name', 'Later')", id)
	bare := mariadbtest.InsertUser(t, raw, testPrefix, mariadbtest.User{ID: 42, Login: "bob"})

	u, err := db.User(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	want := User{ID: id, Login: "alice", Email: "alice@example.test", Nicename: "alice-n", DisplayName: "Alice A",
		Registered: reg, FirstName: "Alice", LastName: "Anders", Nickname: "ally"}
	if u == nil || *u != want {
		t.Fatalf("User = %+v\nwant %+v", u, want)
	}
	b, err := db.User(ctx, bare)
	if err != nil || b == nil || b.ID != 42 || b.Login != "bob" || b.FirstName != "" {
		t.Fatalf("bare user: %+v, %v", b, err)
	}
	if u, err := db.User(ctx, 999); err != nil || u != nil {
		t.Fatalf("absent user: %+v, %v", u, err)
	}
}

func TestPublicJWK(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	private := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	pub, err := PublicJWK(&ClientKey{ClientID: fixtureID, Algorithm: AlgRS256, PrivateKeyPEM: private})
	if err != nil {
		t.Fatal(err)
	}
	rk, ok := pub.(jwk.RSAPublicKey)
	if !ok {
		t.Fatalf("%T is not an RSA public JWK", pub)
	}
	if rk.KeyID() != fixtureID || rk.Algorithm().String() != "RS256" || rk.KeyUsage() != "sig" {
		t.Errorf("kid %q alg %v use %q", rk.KeyID(), rk.Algorithm(), rk.KeyUsage())
	}
	var raw rsa.PublicKey
	if err := rk.Raw(&raw); err != nil || !raw.Equal(&key.PublicKey) {
		t.Errorf("not the public half of the private key (%v)", err)
	}

	for name, k := range map[string]*ClientKey{
		"HS256":          {ClientID: fixtureID, Algorithm: AlgHS256, PrivateKeyPEM: private},
		"no private key": {ClientID: fixtureID, Algorithm: AlgRS256, PublicKeyPEM: testPublicPEM},
		"broken":         {ClientID: fixtureID, Algorithm: AlgRS256, PrivateKeyPEM: testPrivatePEM},
	} {
		if pub, err := PublicJWK(k); err == nil || pub != nil {
			t.Errorf("%s: %v, %v; want an error", name, pub, err)
		} else if strings.Contains(err.Error(), "MII") {
			t.Errorf("%s: the error shows key material: %v", name, err)
		}
	}
}

// The cached id_token key signs as cheaply as a key fresh from x509, whose
// CRT values are precomputed: a key left without them makes every
// signature rebuild and check them first (an eighth of an id_token's CPU).
func TestIDTokenKeyIsPrecomputed(t *testing.T) {
	_, raw, db := setup(t, testPrefix)
	ctx := ctxT(t)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der := x509.MarshalPKCS1PrivateKey(key)
	privPEM := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}))
	mariadbtest.InsertPublicKey(t, raw, testPrefix, fixtureID, "RS256", testPublicPEM, privPEM)

	_, cached, err := db.idTokenKey(ctx, fixtureID)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := x509.ParsePKCS1PrivateKey(der)
	if err != nil {
		t.Fatal(err)
	}
	digest := make([]byte, 32)
	signAllocs := func(k *rsa.PrivateKey) float64 {
		return testing.AllocsPerRun(3, func() {
			if _, err := rsa.SignPKCS1v15(nil, k, crypto.SHA256, digest); err != nil {
				t.Fatal(err)
			}
		})
	}
	rk, ok := cached.(*rsa.PrivateKey)
	if !ok {
		t.Fatalf("the cached key is a %T", cached)
	}
	if got, want := signAllocs(rk), signAllocs(fresh); got > want {
		t.Fatalf("a signature with the cached key allocates %v times, with a precomputed key %v", got, want)
	}
}
