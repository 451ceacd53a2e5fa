package wordpress

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

// The client row of compat fixture 92.
const (
	fixtureName   = "PeerClient"
	fixtureID     = "LyiDhXKOJitbjnzUVOrFhHNxttLbYatF"
	fixtureStored = "vLm/tIvGtNq3yZXe1+mz5tmn6NyVr7zYi9m3s7XAxdw="
	fixtureSecret = "lTZBHZKuIUEyrwpzpBzhEJWfHmNNGLuw"
)

func TestDecodeSecretFixture(t *testing.T) {
	got, err := DecodeSecret(fixtureStored, fixtureName)
	if err != nil {
		t.Fatal(err)
	}
	if got != fixtureSecret {
		t.Fatalf("DecodeSecret = %q, want %q", got, fixtureSecret)
	}
	if enc := EncodeSecret(fixtureSecret, fixtureName); enc != fixtureStored {
		t.Fatalf("EncodeSecret = %q, want %q", enc, fixtureStored)
	}
}

func TestSecretRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	randBytes := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return string(b)
	}
	for i := 0; i < 2000; i++ {
		secret := randBytes(r.IntN(80))
		name := randBytes(1 + r.IntN(40))
		stored := EncodeSecret(secret, name)
		got, err := DecodeSecret(stored, name)
		if err != nil {
			t.Fatalf("#%d: %v", i, err)
		}
		if got != secret {
			t.Fatalf("#%d: round trip %q -> %q -> %q (name %q)", i, secret, stored, got, name)
		}
	}
}

func TestDecodeSecretErrors(t *testing.T) {
	if _, err := DecodeSecret(fixtureStored, ""); !errors.Is(err, ErrEmptyClientName) {
		t.Fatalf("empty name: err = %v, want ErrEmptyClientName", err)
	}
	if got := EncodeSecret("x", ""); got != "false" {
		t.Fatalf("EncodeSecret with empty name = %q, want the plugin's \"false\"", got)
	}
	const bad = "not*base64*SECRETVALUE"
	_, err := DecodeSecret(bad, fixtureName)
	if err == nil {
		t.Fatal("invalid base64 decoded")
	}
	if strings.Contains(err.Error(), "SECRETVALUE") {
		t.Fatalf("error leaks the stored value: %v", err)
	}
	// PHP's base64_decode accepts missing padding; so do we.
	if got, err := DecodeSecret(strings.TrimRight(EncodeSecret("ab", "n"), "="), "n"); err != nil || got != "ab" {
		t.Fatalf("unpadded: %q, %v", got, err)
	}
}
