package clients

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

func TestCheckSecret(t *testing.T) {
	c := Client{SecretDigest: SecretDigest("s3cret")}
	if !c.CheckSecret("s3cret") || c.CheckSecret("s3cre") || c.CheckSecret("") || c.CheckSecret("s3cret ") {
		t.Fatal("CheckSecret accepts the wrong secrets or refuses the right one")
	}
	sum := sha256.Sum256([]byte("from config"))
	d, err := ParseSecretDigest(hex.EncodeToString(sum[:]))
	if err != nil {
		t.Fatal(err)
	}
	if c := (Client{SecretDigest: d}); !c.CheckSecret("from config") {
		t.Fatal("secret_sha256 digest does not match its secret")
	}
	for _, bad := range []string{"", "zz", "abcd", hex.EncodeToString(sum[:31])} {
		if _, err := ParseSecretDigest(bad); err == nil {
			t.Errorf("ParseSecretDigest(%q) accepted", bad)
		}
	}
}

func TestOriginsAndGrants(t *testing.T) {
	for in, want := range map[string]string{
		"https://App.example.com/callback?x=1": "https://app.example.com",
		"http://127.0.0.1:18099/callback":      "http://127.0.0.1:18099",
	} {
		if got, err := NormalizeOrigin(in); err != nil || got != want {
			t.Errorf("NormalizeOrigin(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "app.example.com", "ftp://x", "https://"} {
		if _, err := NormalizeOrigin(bad); err == nil {
			t.Errorf("NormalizeOrigin(%q) accepted", bad)
		}
	}
	c := Client{Grants: []string{GrantClientCredentials}, CORSOrigins: []string{"https://app.example.com"}}
	if !c.AllowsGrant(GrantClientCredentials) || c.AllowsGrant(GrantRefreshToken) {
		t.Error("AllowsGrant")
	}
	if !c.AllowedOrigin("https://app.example.com") || c.AllowedOrigin("https://evil.example.com") || c.AllowedOrigin("") {
		t.Error("AllowedOrigin")
	}
	reg := Static{"a": &c}
	if got, err := reg.Lookup(context.Background(), "a"); err != nil || got != &c {
		t.Error("Static.Lookup of a known id")
	}
	if got, err := reg.Lookup(context.Background(), "b"); err != nil || got != nil {
		t.Error("Static.Lookup of an unknown id")
	}
}

func TestChainFirstWins(t *testing.T) {
	a := &Client{ID: "x", Name: "configured"}
	b := &Client{ID: "x", Name: "wordpress"}
	chain := Chain{Static{"x": a}, Static{"x": b, "y": b}}
	if got, _ := chain.Lookup(context.Background(), "x"); got != a {
		t.Errorf("clash: got %v, want the first registry's client", got)
	}
	if got, _ := chain.Lookup(context.Background(), "y"); got != b {
		t.Errorf("second registry not consulted")
	}
	if got, err := chain.Lookup(context.Background(), "z"); got != nil || err != nil {
		t.Errorf("unknown id: %v %v", got, err)
	}
}

// The SHA-256 of the empty string is refused like an empty secret: with
// it, a client would authenticate with client_secret= and nothing else.
func TestParseSecretDigestRefusesTheEmptySecret(t *testing.T) {
	const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	for _, h := range []string{emptySHA256, strings.ToUpper(emptySHA256), " " + emptySHA256 + "\n"} {
		_, err := ParseSecretDigest(h)
		if err == nil || !strings.Contains(err.Error(), "empty") {
			t.Errorf("ParseSecretDigest(%q): %v, want an error about the empty secret", h, err)
		}
	}
}

func TestDefaultScope(t *testing.T) {
	c := &Client{Scopes: []string{"profile", "email", "write"}}
	if got := c.DefaultScope(); got != "profile email write" {
		t.Fatalf("DefaultScope = %q", got)
	}
	c.ScopeText = "profile email write"
	if got := c.DefaultScope(); got != "profile email write" {
		t.Fatalf("DefaultScope with ScopeText = %q", got)
	}
	if n := testing.AllocsPerRun(100, func() { _ = c.DefaultScope() }); n != 0 {
		t.Fatalf("DefaultScope with ScopeText allocates %v times", n)
	}
}
