package oauth

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"
)

func TestPHPNames(t *testing.T) {
	// As PHP 8.2 registers $_GET: php -S with var_dump($_GET) on ?<name>=1.
	for raw, want := range map[string]bool{
		"rest_route":                     true,
		"rest.route":                     true,
		"rest+route":                     true,
		"rest%20route":                   true,
		"rest[route":                     true, // '[' without ']' is '_'
		"rest%5Broute":                   true,
		"rest%5Froute":                   true,
		"%72est_route":                   true,
		"%72%65%73%74%2e%72%6F%75%74%65": true,
		"+rest_route":                    true, // leading spaces are dropped
		"%20%20rest_route":               true,
		"rest_route%00x":                 true, // a NUL ends the name
		"rest_route%00":                  true,
		"rest[route]":                    false, // an array, rest
		"REST_ROUTE":                     false,
		"rest_route[]":                   false, // an array
		"rest_route[":                    false, // rest_route_
		"rest_route.":                    false,
		"rest_route+":                    false,
		"rest__route":                    false,
		"rest_routes":                    false,
		"xrest_route":                    false,
		"_rest_route":                    false,
		"rest_rout":                      false,
		"rest%00_route":                  false,
		"rest%_route":                    false,
		"rest%5_route":                   false,
		"rest_route%":                    false,
		"rest_route%2":                   false,
		"rest_route%zz":                  false,
		"":                               false,
	} {
		if got := isPHPName(raw, "rest_route"); got != want {
			t.Errorf("isPHPName(%q, rest_route) = %v, want %v", raw, got, want)
		}
	}
	for raw, want := range map[string]bool{"_method": true, ".method": true, "%5Fmethod": true, "+_method": true,
		"method": false, "+method": false, "_METHOD": false, "_method_": false} {
		if got := isPHPName(raw, "_method"); got != want {
			t.Errorf("isPHPName(%q, _method) = %v, want %v", raw, got, want)
		}
	}
}

func TestPHPUnescape(t *testing.T) {
	for in, want := range map[string]string{
		"/moserver/token": "/moserver/token",
		"%2Fa%2fb+c":      "/a/b c",
		"%zz%4":           "%zz%4",
		"%%41":            "%A",
		"%":               "%",
		"a%0A":            "a\n",
	} {
		if got := phpUnescape(in); got != want {
			t.Errorf("phpUnescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPHPFormKind(t *testing.T) {
	for _, c := range []struct {
		method, contentType string
		want                formKind
	}{
		{"POST", "application/x-www-form-urlencoded", formURLEncoded},
		{"POST", "Application/X-WWW-Form-URLEncoded; charset=UTF-8", formURLEncoded},
		{"POST", "application/x-www-form-urlencoded,x", formURLEncoded},
		{"POST", "application/x-www-form-urlencoded x", formURLEncoded},
		{"POST", "multipart/form-data; boundary=x", formMultipart},
		{"POST", "MULTIPART/FORM-DATA;boundary=x", formMultipart},
		{"POST", "", formNone},
		{"POST", "application/json", formNone},
		{"POST", "application/x-www-form-urlencoded2", formNone},
		{"POST", "text/plain; application/x-www-form-urlencoded", formNone},
		{"PUT", "application/x-www-form-urlencoded", formNone},
		{"post", "application/x-www-form-urlencoded", formNone},
		{"OPTIONS", "multipart/form-data; boundary=x", formNone},
	} {
		if got := phpFormKind(c.method, c.contentType); got != c.want {
			t.Errorf("phpFormKind(%s, %q) = %d, want %d", c.method, c.contentType, got, c.want)
		}
	}
}

func TestFormRoutes(t *testing.T) {
	rt, err := newRouter([numPaths]string{DefaultTokenPath, DefaultRevokePath, DefaultJWKSPath, DefaultIntrospectPath, DefaultUserInfoPath}, true)
	if err != nil {
		t.Fatal(err)
	}
	part := func(headers, value string) string { return "--B\r\n" + headers + "\r\n\r\n" + value + "\r\n" }
	for _, c := range []struct {
		kind formKind
		body string
		want endpoint
	}{
		{formURLEncoded, "rest_route=/moserver/token", epToken},
		{formURLEncoded, "a=1&rest_route=%2Fmoserver%2FRevoke%2F&b=2", epRevoke},
		{formURLEncoded, "rest_route=/moserver/token&rest.route=/moserver/jwks", epToken | epJWKS},
		{formURLEncoded, "a=rest_route=/moserver/token", 0},
		{formURLEncoded, "rest_route", 0},
		{formURLEncoded, "rest_route=", 0},
		{formURLEncoded, "rest_route=/moserver/tokens", 0},
		{formMultipart, part(`Content-Disposition: form-data; name="rest_route"`, "/moserver/token") + "--B--\r\n", epToken},
		{formMultipart, part(`content-disposition: form-data; NAME='rest.route'`, "/moserver/introspect/") + "--B--", epIntrospect},
		{formMultipart, part(`Content-Disposition: form-data; name= rest_route ;x=y`, "/moserver/jwks"), epJWKS},
		{formMultipart, "--B\nContent-Disposition: form-data; name=\"rest_route\"\n\n/moserver/token\n--B--\n", epToken},
		{formMultipart, part("Content-Disposition: form-data; name=\"rest\r\n route\"", "/moserver/token"), epToken},
		{formMultipart, part("Content-Disposition: form-data; name=\"rest\r\n_route\"", "/moserver/token"), epToken},
		{formMultipart, part("Content-Disposition: form-data; name=\"rest\r\n\t route\"", "/moserver/token"), 0}, // rest\t_route
		{formMultipart, part("Content-Disposition: form-data; na\r\nme=\"rest_route\"", "/moserver/token"), epToken},
		{formMultipart, part("Content-Disposition: form-data; name=\"rest_route", "/moserver/token"), epToken},
		{formMultipart, part(`Content-Disposition: form-data; name="a"`, "x") +
			part(`Content-Disposition: form-data; name="rest_route"`, "/moserver/revoke") + "--B--", epRevoke},
		{formMultipart, "--B\r\nContent-Disposition: form-data; name=\"rest_route\"\r\n\r\n/moserver/token", epToken},
		{formMultipart, part(`Content-Disposition: form-data; name="rest_routes"`, "/moserver/token"), 0},
		{formMultipart, part(`Content-Disposition: form-data; name="rest_route"`, "/moserver/token/x"), 0},
		{formMultipart, part(`Content-Disposition: form-data; name="a"`, "/moserver/token"), 0},
		{formMultipart, part(`Content-Disposition: form-data; name="rest_route"`, ""), 0},
	} {
		if got := rt.inForm(c.kind, c.body); got != c.want {
			t.Errorf("inForm(%d, %q) = %b, want %b", c.kind, c.body, got, c.want)
		}
		// A formGuard cuts the body just before the byte that completes the
		// first rest_route, however it is read.
		whole := scan(newFormScan(c.kind), c.body)
		want := c.body
		if whole >= 0 {
			want = c.body[:whole]
		}
		for _, r := range []io.Reader{strings.NewReader(c.body), iotest.OneByteReader(strings.NewReader(c.body)),
			iotest.HalfReader(strings.NewReader(c.body))} {
			got, err := io.ReadAll(&formGuard{r: r, c: io.NopCloser(nil), scan: newFormScan(c.kind)})
			if string(got) != want || (whole >= 0) != (err == errFormRoute) {
				t.Errorf("formGuard(%q) read %q (%v), want %q", c.body, got, err, want)
			}
		}
	}
}

// FuzzFormRoutes: reading a form body in any form never panics, and a
// formGuard cuts it at the same byte however it is read.
func FuzzFormRoutes(f *testing.F) {
	f.Add(true, "a=b&rest_route=/moserver/token&c=d", uint8(3))
	f.Add(false, "--B\r\nContent-Disposition: form-data; name=\"rest\r\n route\"\r\n\r\n/moserver/token\r\n--B--", uint8(7))
	f.Add(true, "rest%5froute%=%2fmoserver%2Ftoken%0A", uint8(1))
	rt, err := newRouter([numPaths]string{DefaultTokenPath, DefaultRevokePath, DefaultJWKSPath, DefaultIntrospectPath, DefaultUserInfoPath}, true)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, urlencoded bool, body string, chunk uint8) {
		kind := formMultipart
		if urlencoded {
			kind = formURLEncoded
		}
		rt.inForm(kind, body)
		whole := scan(newFormScan(kind), body)
		var got []byte
		g := &formGuard{r: strings.NewReader(body), c: io.NopCloser(nil), scan: newFormScan(kind)}
		buf := make([]byte, int(chunk)%16+1)
		for {
			n, err := g.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				break
			}
		}
		if whole >= 0 && len(got) != whole || whole < 0 && len(got) != len(body) {
			t.Fatalf("guard passed %d bytes, scanning the whole body found %d", len(got), whole)
		}
	})
}

func TestPeekBodyPutsItBack(t *testing.T) {
	for _, n := range []int{0, 1, 4 << 10, MaxBodyBytes, MaxBodyBytes + 1, 3 * MaxBodyBytes} {
		body := strings.Repeat("a=b&", n/4) + strings.Repeat("x", n%4)
		for _, known := range []bool{true, false} {
			r, _ := http.NewRequest(http.MethodPost, "/", strings.NewReader(body))
			if !known {
				r.ContentLength = -1
				r.Body = io.NopCloser(iotest.HalfReader(strings.NewReader(body)))
			}
			got, whole := peekBody(r, formURLEncoded)
			if whole != (len(body) <= MaxBodyBytes) || whole && got != body {
				t.Errorf("%d bytes (length known %v): peeked %d bytes, whole %v", len(body), known, len(got), whole)
			}
			if rest, err := io.ReadAll(r.Body); err != nil || string(rest) != body {
				t.Errorf("%d bytes (length known %v): the body read afterwards is %d bytes (%v)", len(body), known, len(rest), err)
			}
		}
	}
}
