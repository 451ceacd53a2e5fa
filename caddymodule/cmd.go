package caddymodule

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"
	"unicode"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddy-moserver/caddy-moserver/internal/tokens"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "moserver",
		Usage: "client new | keygen | token decode",
		Short: "Tools for the moserver OAuth module: new clients, signing keys, token decoding",
		Long: `
Tools for operating the moserver module (github.com/caddy-moserver/caddy-moserver).

  caddy moserver client new [--name <name>]
      a new client: random id and secret, the secret's SHA-256 and a Caddyfile
      client block that holds only the hash

  caddy moserver keygen [--alg ES256|ES384|RS256|EdDSA] [--out <file>]
      a new signing key (PKCS#8 PEM), its RFC 7638 thumbprint kid and the
      signing_key line for the Caddyfile

  caddy moserver token decode <jwt>|-
      the header and claims of a JWT, pretty-printed, WITHOUT verifying it

They print secrets to standard output only, because you asked for them; they
never log them.`,
		CobraFunc: moserverCobra,
	})
}

// moserverCobra builds the subcommands of "caddy moserver".
func moserverCobra(cmd *cobra.Command) {
	clientCmd := &cobra.Command{
		Use:   "client",
		Short: "Manage OAuth clients",
	}
	clientNew := &cobra.Command{
		Use:   "new [--name <name>]",
		Short: "Prints a new client: random id and secret, its SHA-256 and a Caddyfile client block",
		Long: `
Prints a new client: a random 32-letter client_id (like the plugin's), a random
high-entropy client_secret, the hex SHA-256 of the secret, and a client block for
the moserver block of your Caddyfile that holds only that hash (secret_sha256), so
the Caddyfile never holds the secret. Give the secret to the client's operator;
it is shown once and kept nowhere.`,
		Example: `  caddy moserver client new --name "Reporting app"`,
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			name, _ := c.Flags().GetString("name")
			return runClientNew(c.OutOrStdout(), name)
		},
	}
	clientNew.Flags().StringP("name", "n", "", "display name of the client")
	clientCmd.AddCommand(clientNew)

	keygen := &cobra.Command{
		Use:   "keygen [--alg ES256|ES384|RS256|EdDSA] [--out <file>]",
		Short: "Generates a signing key (PKCS#8 PEM) and prints its kid and signing_key line",
		Long: `
Generates a signing key for access tokens: ES256 (default), ES384, RS256 (2048
bits) or EdDSA (Ed25519), as PKCS#8 PEM. Its kid is the RFC 7638 JWK thumbprint,
which is also what the module derives from the file, so no kid needs configuring.

With --out the key is written to that file (mode 0600; an existing file is never
overwritten) and the kid and the signing_key line are printed. Without it the PEM
goes to standard output and the kid and signing_key line to standard error, so
"caddy moserver keygen > key.pem" works.`,
		Example: `  caddy moserver keygen --alg ES256 --out /etc/caddy/moserver-es256.pem
  caddy moserver keygen --alg EdDSA > key.pem`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			alg, _ := c.Flags().GetString("alg")
			out, _ := c.Flags().GetString("out")
			return runKeygen(c.OutOrStdout(), c.ErrOrStderr(), alg, out)
		},
	}
	keygen.Flags().StringP("alg", "a", "ES256", "algorithm: ES256, ES384, RS256 or EdDSA")
	keygen.Flags().StringP("out", "o", "", "write the PEM to this file (mode 0600) instead of standard output")

	tokenCmd := &cobra.Command{
		Use:   "token",
		Short: "Inspect tokens",
	}
	decode := &cobra.Command{
		Use:   "decode <jwt>|-",
		Short: "Pretty-prints a JWT's header and claims WITHOUT verifying it",
		Long: `
Pretty-prints the header and the claims of a JWT (e.g. an access token) and shows
its time claims (exp, iat, nbf, auth_time) as dates. It does NOT verify the
signature, the issuer or the expiry: use it for debugging, never to decide whether
to trust a token. With - the token is read from standard input.`,
		Example: `  caddy moserver token decode eyJhbGciOiJFUzI1NiIs...
  pbpaste | caddy moserver token decode -`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return runTokenDecode(c.OutOrStdout(), c.InOrStdin(), args[0], time.Now())
		},
	}
	tokenCmd.AddCommand(decode)

	cmd.AddCommand(clientCmd, keygen, tokenCmd)
}

// Client id and secret alphabets: the plugin's client ids are 32 ASCII
// letters; secrets add digits (40 characters: about 238 bits), and neither
// needs escaping in a form body, a Basic header or a Caddyfile.
const (
	clientIDAlphabet     = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	clientSecretAlphabet = clientIDAlphabet + "0123456789"
	clientIDLen          = 32
	clientSecretLen      = 40
)

// cliRandomString returns n characters drawn uniformly from alphabet with
// crypto/rand (rejection sampling, no modulo bias).
func cliRandomString(n int, alphabet string) string {
	limit := byte(256 - 256%len(alphabet))
	out := make([]byte, 0, n)
	var buf [64]byte
	for len(out) < n {
		_, _ = rand.Read(buf[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
		for _, b := range buf {
			if b < limit && len(out) < n {
				out = append(out, alphabet[int(b)%len(alphabet)])
			}
		}
	}
	return string(out)
}

// cliNewClient is what "client new" prints.
type cliNewClient struct {
	ID, Secret, SecretSHA256, Name string
}

func cliGenerateClient(name string) cliNewClient {
	c := cliNewClient{ID: cliRandomString(clientIDLen, clientIDAlphabet), Secret: cliRandomString(clientSecretLen, clientSecretAlphabet), Name: name}
	sum := sha256.Sum256([]byte(c.Secret))
	c.SecretSHA256 = hex.EncodeToString(sum[:])
	return c
}

// caddyfileBlock is the client block for a moserver block.
func (c cliNewClient) caddyfileBlock() string {
	var b strings.Builder
	fmt.Fprintf(&b, "client %s {\n", c.ID)
	fmt.Fprintf(&b, "\tsecret_sha256 %s\n", c.SecretSHA256)
	if c.Name != "" {
		fmt.Fprintf(&b, "\tname %s\n", caddyfileQuote(c.Name))
	}
	b.WriteString("\tscopes profile email\n")
	b.WriteString("}\n")
	return b.String()
}

// caddyfileQuote quotes s as one Caddyfile token. The Caddyfile lexer knows
// only the \" escape inside quotes; callers keep backslashes out of s.
func caddyfileQuote(s string) string {
	r := strings.NewReplacer(`"`, `\"`, "\n", " ", "\r", " ")
	return `"` + r.Replace(s) + `"`
}

func runClientNew(w io.Writer, name string) error {
	name = strings.TrimSpace(name)
	if strings.ContainsAny(name, "{}\\") || strings.ContainsFunc(name, unicode.IsControl) {
		return errors.New("--name must not contain braces (Caddyfile placeholders), backslashes or control characters")
	}
	c := cliGenerateClient(name)
	var b strings.Builder
	if c.Name != "" {
		fmt.Fprintf(&b, "name:          %s\n", c.Name)
	}
	fmt.Fprintf(&b, "client_id:     %s\n", c.ID)
	fmt.Fprintf(&b, "client_secret: %s\n", c.Secret)
	fmt.Fprintf(&b, "secret_sha256: %s\n", c.SecretSHA256)
	b.WriteString("\nGive client_id and client_secret to the client; the secret is shown only now and kept nowhere.\n")
	b.WriteString("Add this to the moserver block of your Caddyfile (it holds only the hash):\n\n")
	for line := range strings.SplitSeq(strings.TrimSuffix(c.caddyfileBlock(), "\n"), "\n") {
		b.WriteString("\t" + line + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// cliKeygenAlgs are the algorithms keygen accepts (HS256 has no PEM form and
// would be a shared secret: not offered here).
var cliKeygenAlgs = []string{string(tokens.ES256), string(tokens.ES384), string(tokens.RS256), string(tokens.EdDSA)}

func runKeygen(stdout, stderr io.Writer, alg, out string) error {
	canon := ""
	for _, a := range cliKeygenAlgs {
		if strings.EqualFold(a, alg) {
			canon = a
		}
	}
	if canon == "" {
		return fmt.Errorf("--alg %q is not supported; use one of %s", alg, strings.Join(cliKeygenAlgs, ", "))
	}
	key, pemBytes, err := tokens.GenerateKey(canon)
	if err != nil {
		return err
	}
	info := stderr
	if out != "" {
		f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("writing the key: %w", err)
		}
		if _, err := f.Write(pemBytes); err != nil {
			f.Close()
			return fmt.Errorf("writing the key: %w", err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("writing the key: %w", err)
		}
		info = stdout
	} else if _, err := stdout.Write(pemBytes); err != nil {
		return err
	}
	file := out
	if file == "" {
		file = "<file holding this PEM>"
	}
	var b strings.Builder
	if out != "" {
		fmt.Fprintf(&b, "wrote %s (PKCS#8 PEM, mode 0600)\n", out)
	}
	fmt.Fprintf(&b, "alg: %s\n", key.Alg)
	fmt.Fprintf(&b, "kid: %s\n", key.KID)
	b.WriteString("Caddyfile (first signing_key signs; keep the old one listed after it while its tokens live):\n")
	fmt.Fprintf(&b, "\tsigning_key %s\n", caddyfileToken(file))
	_, err = io.WriteString(info, b.String())
	return err
}

// caddyfileToken quotes s when it is not a plain Caddyfile token.
func caddyfileToken(s string) string {
	if s == "" || strings.ContainsAny(s, " \t\"'`{}#\\") {
		return caddyfileQuote(s)
	}
	return s
}

// cliTimeClaims are shown as dates by token decode.
var cliTimeClaims = []string{"iat", "nbf", "exp", "auth_time"}

func runTokenDecode(w io.Writer, stdin io.Reader, arg string, now time.Time) error {
	token := arg
	if arg == "-" {
		b, err := io.ReadAll(io.LimitReader(stdin, 1<<20))
		if err != nil {
			return fmt.Errorf("reading standard input: %w", err)
		}
		token = string(b)
	}
	token = strings.TrimSpace(token)
	if t, ok := strings.CutPrefix(token, "Bearer "); ok {
		token = strings.TrimSpace(t)
	}
	parts := strings.Split(token, ".")
	switch {
	case token == "":
		return errors.New("no token given")
	case len(parts) == 5:
		return errors.New("this is an encrypted JWT (JWE, 5 parts): its claims cannot be read without the key")
	case len(parts) != 3:
		return fmt.Errorf("not a JWT: want 3 dot-separated parts, got %d", len(parts))
	}
	header, err := cliDecodeSegment("header", parts[0])
	if err != nil {
		return err
	}
	claims, err := cliDecodeSegment("claims", parts[1])
	if err != nil {
		return err
	}
	sig, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[2], "="))
	if err != nil {
		return fmt.Errorf("signature: not base64url: %v", err)
	}

	var b strings.Builder
	b.WriteString("NOT VERIFIED: the signature, issuer and expiry were not checked; do not trust these claims.\n\n")
	b.WriteString("Header:\n")
	b.Write(header)
	b.WriteString("\n\nClaims:\n")
	b.Write(claims)
	b.WriteString("\n")

	var m map[string]json.RawMessage
	if json.Unmarshal(claims, &m) == nil {
		var lines []string
		for _, name := range cliTimeClaims {
			raw, ok := m[name]
			if !ok {
				continue
			}
			var f float64
			if json.Unmarshal(raw, &f) != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e12 {
				lines = append(lines, fmt.Sprintf("  %-9s %s (not a NumericDate)", name, raw))
				continue
			}
			t := time.Unix(int64(f), 0).UTC()
			lines = append(lines, fmt.Sprintf("  %-9s %s  (%s)", name, t.Format(time.RFC3339), cliRelativeTime(t, now, name)))
		}
		if len(lines) > 0 {
			b.WriteString("\nTimes (UTC):\n")
			b.WriteString(strings.Join(lines, "\n"))
			b.WriteString("\n")
		}
	}
	fmt.Fprintf(&b, "\nSignature: %d bytes (not verified)\n", len(sig))
	_, err = io.WriteString(w, b.String())
	return err
}

// cliDecodeSegment base64url-decodes one JWT segment and pretty-prints its JSON
// object, keeping the claims' order.
func cliDecodeSegment(what, seg string) ([]byte, error) {
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(seg, "="))
	if err != nil {
		return nil, fmt.Errorf("%s: not base64url: %v", what, err)
	}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(trimmed) {
		return nil, fmt.Errorf("%s: not a JSON object", what)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, trimmed, "", "  "); err != nil {
		return nil, fmt.Errorf("%s: %v", what, err)
	}
	return out.Bytes(), nil
}

// cliRelativeTime describes t against now: "in 59m0s", "expired 3m0s ago".
func cliRelativeTime(t, now time.Time, claim string) string {
	d := t.Sub(now).Round(time.Second)
	switch {
	case d > 0:
		return "in " + d.String()
	case d == 0:
		return "now"
	case claim == "exp":
		return "expired " + (-d).String() + " ago"
	default:
		return (-d).String() + " ago"
	}
}
