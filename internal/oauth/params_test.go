package oauth

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

var contentTypes = []string{
	"", " ", ";", "; charset=UTF-8",
	"application/x-www-form-urlencoded",
	"application/x-www-form-urlencoded; charset=UTF-8",
	"Application/X-WWW-Form-Urlencoded",
	"  application/x-www-form-urlencoded  ;a=1;a=2",
	"application/x-www-form-urlencoded;;",
	"application/x-www-form-urlencoded; =",
	"application/x-www-form-urlencoded\u00a0",
	"application/x-www-form-urlencodeď",
	"application/x-www-form-urlencoded+json",
	"application/x-www-form-urlencode",
	"application/json", "multipart/form-data; boundary=x", "text/plain", "x-www-form-urlencoded",
}

// isFormType never says "form" where mime.ParseMediaType would not lead to
// the form parser.
func TestIsFormTypeAgreesWithMime(t *testing.T) {
	for _, ct := range contentTypes {
		checkFormType(t, ct)
	}
	for _, ct := range []string{"", "application/x-www-form-urlencoded", "APPLICATION/X-WWW-FORM-URLENCODED; charset=x"} {
		if !isFormType(ct) {
			t.Errorf("isFormType(%q) = false", ct)
		}
	}
}

func checkFormType(t *testing.T, ct string) {
	if !isFormType(ct) {
		return
	}
	if mt, _, _ := mime.ParseMediaType(ct); mt != "" && mt != "application/x-www-form-urlencoded" {
		t.Fatalf("isFormType(%q) = true, but its media type is %q", ct, mt)
	}
}

func FuzzIsFormType(f *testing.F) {
	for _, ct := range contentTypes {
		f.Add(ct)
	}
	f.Fuzz(checkFormType)
}

// Past the inline ones, parameters go to a map and behave the same.
func TestManyParams(t *testing.T) {
	var names []string
	for i := range 3 * inlineParams {
		names = append(names, fmt.Sprintf("p%d", i))
	}
	form := func(extra ...string) string {
		var b strings.Builder
		for _, n := range append(slices.Clone(names), extra...) {
			fmt.Fprintf(&b, "%s=v-%s&", n, n)
		}
		return b.String()
	}
	p, e := parseForm(form())
	if e != nil || p.duplicate != "" {
		t.Fatalf("parseForm: %v, duplicate %q", e, p.duplicate)
	}
	for _, n := range names {
		if !p.has(n) || p.get(n) != "v-"+n {
			t.Errorf("%s = %q", n, p.get(n))
		}
	}
	if p.has("p99") || p.get("p99") != "" {
		t.Error("has a parameter that was not sent")
	}
	for _, dup := range []string{"p0", names[inlineParams-1], names[inlineParams], names[len(names)-1]} {
		p, _ := parseForm(form(dup, "p0"))
		if p.duplicate != dup || p.get(dup) != "v-"+dup {
			t.Errorf("repeated %s: duplicate %q, value %q", dup, p.duplicate, p.get(dup))
		}
	}
}

// readBody returns the whole body however it arrives, and 413s past the
// limit however the length was announced.
func TestReadBody(t *testing.T) {
	body := strings.Repeat("grant_type=client_credentials&", 40)
	readers := map[string]func() io.Reader{
		"plain":      func() io.Reader { return strings.NewReader(body) },
		"one byte":   func() io.Reader { return iotest.OneByteReader(strings.NewReader(body)) },
		"data + EOF": func() io.Reader { return iotest.DataErrReader(strings.NewReader(body)) },
		"half":       func() io.Reader { return iotest.HalfReader(strings.NewReader(body)) },
	}
	for name, rd := range readers {
		for _, cl := range []int64{-1, 0, 10, int64(len(body)), int64(len(body)) + 5} {
			req := httptest.NewRequest(http.MethodPost, "/", nil)
			req.Body, req.ContentLength = io.NopCloser(rd()), cl
			got, err := readBody(req)
			if err != nil || string(got) != body {
				t.Errorf("%s, length %d: %v, %d bytes", name, cl, err, len(got))
			}
		}
	}
	for _, n := range []int{MaxBodyBytes, MaxBodyBytes + 1, 3 * MaxBodyBytes} {
		for _, cl := range []int64{-1, 0, int64(n)} {
			req := httptest.NewRequest(http.MethodPost, "/", nil)
			req.Body, req.ContentLength = io.NopCloser(iotest.HalfReader(bytes.NewReader(make([]byte, n)))), cl
			got, err := readBody(req)
			if n > MaxBodyBytes && !errors.Is(err, errBodyTooLarge) || n <= MaxBodyBytes && (err != nil || len(got) != n) {
				t.Errorf("%d bytes, length %d: %v, %d bytes", n, cl, err, len(got))
			}
		}
	}
	failing := errors.New("connection reset")
	req := httptest.NewRequest(http.MethodPost, "/", nil)
	req.Body = io.NopCloser(io.MultiReader(strings.NewReader("grant_type="), iotest.ErrReader(failing)))
	if _, err := readBody(req); !errors.Is(err, failing) {
		t.Errorf("read error: %v", err)
	}
}

// normalizeScopeReference is normalizeScope as it was first written.
func normalizeScopeReference(raw string) (string, bool) {
	words := strings.Fields(raw)
	out := words[:0]
	for _, w := range words {
		for i := 0; i < len(w); i++ {
			if c := w[i]; c < 0x21 || c == '"' || c == '\\' || c > 0x7e {
				return "", false
			}
		}
		if !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	return strings.Join(out, " "), true
}

var scopeCases = []string{
	"", " ", "email", "email profile", " email", "email ", "email  profile", "email\tprofile", "email\u00a0profile",
	"email email", "a b a", "a b c d e f g h i j k l", "a\"b", "é", "a\\b", "a\x7fb", "email profile\n",
}

func TestNormalizeScope(t *testing.T) {
	for _, s := range scopeCases {
		checkScope(t, s)
	}
	// Past manyScopeWords distinct words duplicates are found by a map:
	// duplicates before and after that point, of early and late words.
	var words []string
	for i := range 3 * manyScopeWords {
		words = append(words, "w"+strconv.Itoa(i%(manyScopeWords+5)), "w"+strconv.Itoa(i/2))
	}
	checkScope(t, strings.Join(words, " "))
	checkScope(t, strings.Join(words[:2*manyScopeWords], "  "))
}

func checkScope(t *testing.T, raw string) {
	got, ok := normalizeScope(raw)
	want, wantOK := normalizeScopeReference(raw)
	if got != want || ok != wantOK {
		t.Fatalf("normalizeScope(%q) = %q, %v; want %q, %v", raw, got, ok, want, wantOK)
	}
}

func FuzzNormalizeScope(f *testing.F) {
	for _, s := range scopeCases {
		f.Add(s)
	}
	f.Fuzz(checkScope)
}
