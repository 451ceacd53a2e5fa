package tokens

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func TestRefreshTokens(t *testing.T) {
	tok, fam := NewFamilyToken()
	if len(tok) != 64 || len(fam) != 22 || !isBase64URL(tok) || !isBase64URL(fam) {
		t.Fatalf("NewFamilyToken = %q, %q", tok, fam)
	}
	got, ok := ParseRefresh(tok)
	if !ok || got != fam {
		t.Fatalf("ParseRefresh = %q, %v; want %q", got, ok, fam)
	}
	next, err := NewToken(fam)
	if err != nil {
		t.Fatal(err)
	}
	if next == tok || len(next) != 64 {
		t.Fatalf("NewToken = %q", next)
	}
	if got, ok := ParseRefresh(next); !ok || got != fam {
		t.Fatalf("successor family = %q, %v", got, ok)
	}
	tok2, fam2 := NewFamilyToken()
	if tok2 == tok || fam2 == fam {
		t.Fatal("NewFamilyToken repeats itself")
	}
	// The raw layout is familyID || secret.
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	if base64.RawURLEncoding.EncodeToString(raw[:16]) != fam {
		t.Error("family id is not the first 16 bytes")
	}
}

func TestParseRefreshRejects(t *testing.T) {
	tok, _ := NewFamilyToken()
	for name, bad := range map[string]string{
		"empty":       "",
		"short":       tok[:63],
		"long":        tok + "A",
		"padding":     tok[:63] + "=",
		"std plus":    "+" + tok[1:],
		"std slash":   tok[:10] + "/" + tok[11:],
		"newline":     tok[:30] + "\n" + tok[31:],
		"CRLF inside": tok[:30] + "\r\n" + tok[32:],
		"space":       " " + tok[1:],
		"non-ASCII":   "é" + tok[2:],
		"dot":         tok[:63] + ".",
		"JWT-ish":     strings.Repeat("e", 30) + "." + strings.Repeat("e", 33),
	} {
		if fam, ok := ParseRefresh(bad); ok {
			t.Errorf("%s: accepted, family %q", name, fam)
		}
	}
}

func TestNewTokenRejectsBadFamily(t *testing.T) {
	_, fam := NewFamilyToken()
	for _, bad := range []string{"", fam[:21], fam + "A", fam[:21] + "=", "AAAAAAAAAAAAAAAAAAAAAB" /* non-zero trailing bits */, "AAAAAAAAAAAAAAAAAAAA\nA"} {
		if tok, err := NewToken(bad); err == nil {
			t.Errorf("NewToken(%q) = %q", bad, tok)
		}
	}
}

func TestDigest(t *testing.T) {
	tok, _ := NewFamilyToken()
	sum := sha256.Sum256([]byte(tok))
	if got, want := Digest(tok), base64.RawURLEncoding.EncodeToString(sum[:]); got != want || len(got) != 43 {
		t.Errorf("Digest = %q, want %q", got, want)
	}
	other, _ := NewFamilyToken()
	if Digest(tok) == Digest(other) {
		t.Error("digests collide")
	}
	// The sealing key is domain-separated from the digest.
	aeadKey := sha256.Sum256([]byte(sealLabel + tok))
	if base64.RawURLEncoding.EncodeToString(aeadKey[:]) == Digest(tok) {
		t.Error("sealing key equals digest")
	}
}

func TestSealOpen(t *testing.T) {
	pred, fam := NewFamilyToken()
	succ, _ := NewToken(fam)
	sealed, err := Seal(pred, succ)
	if err != nil {
		t.Fatal(err)
	}
	if len(sealed) != 12+len(succ)+16 {
		t.Errorf("sealed length %d", len(sealed))
	}
	if strings.Contains(string(sealed), succ) {
		t.Error("successor in clear")
	}
	got, err := Open(pred, sealed)
	if err != nil || got != succ {
		t.Fatalf("Open = %q, %v", got, err)
	}
	again, _ := Seal(pred, succ)
	if string(again) == string(sealed) {
		t.Error("Seal is deterministic (nonce reused)")
	}

	wrong, _ := NewToken(fam)
	if _, err := Open(wrong, sealed); !errors.Is(err, ErrOpen) {
		t.Errorf("wrong predecessor: %v", err)
	}
	if _, err := Open(succ, sealed); !errors.Is(err, ErrOpen) {
		t.Errorf("successor as predecessor: %v", err)
	}
	for i := range sealed {
		mod := append([]byte(nil), sealed...)
		mod[i] ^= 1
		if _, err := Open(pred, mod); !errors.Is(err, ErrOpen) {
			t.Fatalf("tampered byte %d accepted", i)
		}
	}
	for _, n := range []int{0, 1, 12, 27, len(sealed) - 1} {
		if _, err := Open(pred, sealed[:n]); !errors.Is(err, ErrOpen) {
			t.Errorf("truncated to %d: %v", n, err)
		}
	}
	if _, err := Open(pred, nil); !errors.Is(err, ErrOpen) {
		t.Errorf("nil: %v", err)
	}
}

func FuzzParseRefresh(f *testing.F) {
	tok, _ := NewFamilyToken()
	f.Add(tok)
	f.Add("")
	f.Add(strings.Repeat("A", 64))
	f.Add(strings.Repeat("_", 64))
	f.Add(strings.Repeat("=", 64))
	f.Add(tok[:32] + "\n" + tok[33:])
	f.Fuzz(func(t *testing.T, s string) {
		fam, ok := ParseRefresh(s)
		if !ok {
			if fam != "" {
				t.Fatal("family id without ok")
			}
			return
		}
		if len(s) != RefreshTokenLen || len(fam) != FamilyIDLen || !isBase64URL(s) {
			t.Fatalf("accepted %q (family %q)", s, fam)
		}
		raw, err := base64.RawURLEncoding.Strict().DecodeString(s)
		if err != nil || base64.RawURLEncoding.EncodeToString(raw[:FamilyIDBytes]) != fam {
			t.Fatalf("family %q does not match token %q", fam, s)
		}
		next, err := NewToken(fam)
		if err != nil {
			t.Fatalf("NewToken(%q): %v", fam, err)
		}
		if f2, ok := ParseRefresh(next); !ok || f2 != fam {
			t.Fatalf("successor family %q, %v", f2, ok)
		}
	})
}
