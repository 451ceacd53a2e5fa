package caddymodule

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/spf13/cobra"

	"github.com/caddy-moserver/caddy-moserver/internal/clients"
	"github.com/caddy-moserver/caddy-moserver/internal/tokens"
)

// opsRunCLI runs "caddy moserver <args>" on the same cobra tree Caddy builds.
func opsRunCLI(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := &cobra.Command{Use: "moserver", SilenceUsage: true, SilenceErrors: true}
	moserverCobra(root)
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err = root.Execute()
	return out.String(), errOut.String(), err
}

var (
	opsReClientID = regexp.MustCompile(`(?m)^client_id:\s+(\S+)$`)
	opsReSecret   = regexp.MustCompile(`(?m)^client_secret:\s+(\S+)$`)
	opsReSHA      = regexp.MustCompile(`(?m)^secret_sha256:\s+(\S+)$`)
	opsReKID      = regexp.MustCompile(`(?m)^kid:\s+(\S+)$`)
)

func opsMatch(t *testing.T, re *regexp.Regexp, s string) string {
	t.Helper()
	m := re.FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("%s not found in:\n%s", re, s)
	}
	return m[1]
}

func TestCLIClientNew(t *testing.T) {
	out, _, err := opsRunCLI(t, "", "client", "new", "--name", `Reporting "app"`)
	if err != nil {
		t.Fatal(err)
	}
	id, secret, sha := opsMatch(t, opsReClientID, out), opsMatch(t, opsReSecret, out), opsMatch(t, opsReSHA, out)
	if !regexp.MustCompile(`^[A-Za-z]{32}$`).MatchString(id) {
		t.Errorf("client_id %q is not 32 letters", id)
	}
	if !regexp.MustCompile(`^[A-Za-z0-9]{40}$`).MatchString(secret) {
		t.Errorf("client_secret %q is not 40 letters and digits", secret)
	}
	sum := sha256.Sum256([]byte(secret))
	if sha != hex.EncodeToString(sum[:]) {
		t.Errorf("secret_sha256 %s is not the SHA-256 of the secret", sha)
	}

	// The printed block, pasted into a moserver block, is a valid client
	// that authenticates with the secret and holds only its hash.
	i := strings.Index(out, "\tclient ")
	if i < 0 {
		t.Fatalf("no client block in:\n%s", out)
	}
	blockText := out[i:]
	if strings.Contains(blockText, secret) {
		t.Fatal("the Caddyfile block holds the secret")
	}
	var h Handler
	src := "moserver {\n\tissuer https://x.example/wp-json/moserver\n" + blockText + "}\n"
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(src)); err != nil {
		t.Fatalf("%v in:\n%s", err, src)
	}
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(h.Clients) != 1 || h.Clients[0].ID != id || h.Clients[0].SecretSHA256 != sha || h.Clients[0].Name != `Reporting "app"` {
		t.Fatalf("parsed %+v", h.Clients)
	}
	reg, err := h.buildClients(caddy.NewReplacer())
	if err != nil {
		t.Fatal(err)
	}
	if reg[id].SecretDigest != clients.SecretDigest(secret) {
		t.Error("the secret does not opsMatch the configured digest")
	}
	if reg[id].ScopeText != "profile email" {
		t.Errorf("the client's scope text is %q, want its default scopes", reg[id].ScopeText)
	}

	// Two runs differ.
	out2, _, _ := opsRunCLI(t, "", "client", "new")
	if opsMatch(t, opsReClientID, out2) == id || opsMatch(t, opsReSecret, out2) == secret {
		t.Error("two clients share an id or a secret")
	}
	if strings.Contains(out2, "name:") || strings.Contains(out2, "\tname ") {
		t.Errorf("a client without --name has a name:\n%s", out2)
	}
	for _, bad := range []string{"{env.X}", `a\b`, "tab\there"} {
		if _, _, err := opsRunCLI(t, "", "client", "new", "--name", bad); err == nil {
			t.Errorf("name %q was accepted", bad)
		}
	}
	if _, _, err := opsRunCLI(t, "", "client", "new", "extra"); err == nil {
		t.Error("an extra argument was accepted")
	}
}

func TestRandomString(t *testing.T) {
	seen := map[byte]bool{}
	for range 200 {
		s := cliRandomString(clientIDLen, clientIDAlphabet)
		if len(s) != clientIDLen {
			t.Fatalf("length %d", len(s))
		}
		for i := range len(s) {
			if !strings.ContainsRune(clientIDAlphabet, rune(s[i])) {
				t.Fatalf("%q outside the alphabet", s[i])
			}
			seen[s[i]] = true
		}
	}
	if len(seen) != len(clientIDAlphabet) {
		t.Errorf("only %d of %d letters in 6400 draws", len(seen), len(clientIDAlphabet))
	}
}

func TestCLIKeygen(t *testing.T) {
	dir := t.TempDir()
	for _, alg := range []string{"ES256", "ES384", "RS256", "EdDSA", "eddsa"} {
		file := filepath.Join(dir, alg+".pem")
		out, errOut, err := opsRunCLI(t, "", "keygen", "--alg", alg, "--out", file)
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		if errOut != "" {
			t.Errorf("%s: stderr %q", alg, errOut)
		}
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(data, []byte("-----BEGIN PRIVATE KEY-----\n")) {
			t.Errorf("%s: not PKCS#8 PEM:\n%s", alg, data)
		}
		if st, _ := os.Stat(file); st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v", alg, st.Mode().Perm())
		}
		key, err := tokens.ParseKey(data, "")
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		if !strings.EqualFold(string(key.Alg), alg) {
			t.Errorf("alg %s, want %s", key.Alg, alg)
		}
		if kid := opsMatch(t, opsReKID, out); kid != key.KID {
			t.Errorf("%s: printed kid %s, the key's is %s", alg, kid, key.KID)
		}
		if !strings.Contains(out, "signing_key "+file+"\n") {
			t.Errorf("%s: no signing_key line:\n%s", alg, out)
		}
		if strings.Contains(out, "PRIVATE KEY") {
			t.Errorf("%s: the key went to stdout with --out", alg)
		}
		// Never overwrites.
		if _, _, err := opsRunCLI(t, "", "keygen", "--alg", alg, "--out", file); err == nil {
			t.Errorf("%s: an existing file was overwritten", alg)
		}
	}

	// Without --out: the PEM alone on stdout, the rest on stderr.
	out, errOut, err := opsRunCLI(t, "", "keygen")
	if err != nil {
		t.Fatal(err)
	}
	key, err := tokens.ParseKey([]byte(out), "")
	if err != nil {
		t.Fatal(err)
	}
	if key.Alg != tokens.ES256 || strings.TrimSpace(out) != strings.TrimSpace(string(opsPEMOnly(out))) {
		t.Errorf("stdout is not one ES256 PEM:\n%s", out)
	}
	if opsMatch(t, opsReKID, errOut) != key.KID || !strings.Contains(errOut, "signing_key") {
		t.Errorf("stderr:\n%s", errOut)
	}

	for _, bad := range []string{"HS256", "PS256", "none", ""} {
		if _, _, err := opsRunCLI(t, "", "keygen", "--alg", bad); err == nil || !strings.Contains(err.Error(), "not supported") {
			t.Errorf("--alg %q: %v", bad, err)
		}
	}
}

func opsPEMOnly(s string) string {
	i := strings.Index(s, "-----BEGIN")
	j := strings.LastIndex(s, "-----\n")
	if i < 0 || j < 0 {
		return ""
	}
	return s[i : j+6]
}

func opsMintToken(t *testing.T, now time.Time) (string, *tokens.Key) {
	t.Helper()
	key, _, err := tokens.GenerateKey("ES256")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := tokens.NewSigner([]*tokens.Key{key})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := signer.Mint(tokens.AccessClaims{
		Issuer: "https://x.example/wp-json/moserver", Subject: "c1", Audience: "https://api.example", ClientID: "c1",
		IssuedAt: now.Add(-10 * time.Minute), ExpiresAt: now.Add(50 * time.Minute), JTI: "jti-1", Scope: "profile email",
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok, key
}

func TestCLITokenDecode(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	tok, key := opsMintToken(t, now)
	out, _, err := opsRunCLI(t, "", "token", "decode", tok)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"NOT VERIFIED",
		`"alg": "ES256"`,
		`"kid": "` + key.KID + `"`,
		`"client_id": "c1"`,
		`"scope": "profile email"`,
		"exp       " + now.Add(50*time.Minute).UTC().Format(time.RFC3339) + "  (in ",
		"iat       " + now.Add(-10*time.Minute).UTC().Format(time.RFC3339) + "  (10m",
		"Signature: 64 bytes (not verified)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	if !regexp.MustCompile(`\(in (49m5\ds|50m0s)\)`).MatchString(out) {
		t.Errorf("exp is not shown as in about 50m:\n%s", out)
	}

	// From stdin, with surrounding space and a Bearer prefix.
	out2, _, err := opsRunCLI(t, "  Bearer "+tok+"\n", "token", "decode", "-")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out2, `"client_id": "c1"`) {
		t.Errorf("stdin:\n%s", out2)
	}

	// An expired token says so.
	var b strings.Builder
	if err := runTokenDecode(&b, nil, tok, now.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "(expired 1h10m0s ago)") {
		t.Errorf("expired:\n%s", b.String())
	}

	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct{ in, want string }{
		{"", "no token"},
		{"abc", "not a JWT"},
		{"a.b.c.d.e", "encrypted JWT"},
		{"!!!." + enc(`{}`) + ".", "header: not base64url"},
		{enc(`[1]`) + "." + enc(`{}`) + ".", "header: not a JSON object"},
		{enc(`{"alg":"none"}`) + "." + enc(`{"a":`) + ".", "claims: not a JSON object"},
	} {
		if _, _, err := opsRunCLI(t, "", "token", "decode", tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.in, err, tc.want)
		}
	}
	// Odd time claims are shown, not fatal.
	var odd strings.Builder
	if err := runTokenDecode(&odd, nil, enc(`{"alg":"none"}`)+"."+enc(`{"exp":"tomorrow","nbf":1e300}`)+".", now); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(odd.String(), `exp       "tomorrow" (not a NumericDate)`) || !strings.Contains(odd.String(), "Signature: 0 bytes") {
		t.Errorf("odd claims:\n%s", odd.String())
	}
	if _, _, err := opsRunCLI(t, "", "token", "decode"); err == nil {
		t.Error("decode without an argument succeeded")
	}
}

func TestCaddyfileQuote(t *testing.T) {
	for _, name := range []string{"plain", "two words", `quo"te`, `"`, "new\nline"} {
		src := "moserver {\n client id {\n  secret s\n  name " + caddyfileQuote(name) + "\n }\n}"
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(src)); err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		want := strings.ReplaceAll(name, "\n", " ")
		if h.Clients[0].Name != want {
			t.Errorf("%q came back as %q", name, h.Clients[0].Name)
		}
	}
}
