package oauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// jsonCases are strings that exercise every escaping rule of encoding/json.
var jsonCases = []string{
	"",
	"plain",
	"eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln",
	`quote " backslash \ slash /`,
	"<script> & 'x'",
	"\x00\x01\b\t\n\f\r\x1f\x7f",
	"é 日本 🙂 \u2028 \u2029",
	"invalid \xff\xfe \xc3",
}

func TestTokenResponseJSONMatchesMarshal(t *testing.T) {
	for _, s := range jsonCases {
		for _, r := range []tokenResponse{
			{AccessToken: s, ExpiresIn: 3600, TokenType: "Bearer"},
			{AccessToken: "a", ExpiresIn: -1, TokenType: s, Scope: s},
			{AccessToken: "a", ExpiresIn: 0, TokenType: "Bearer", Scope: "x", RefreshToken: s},
			{AccessToken: s, ExpiresIn: 1 << 40, TokenType: s, Scope: s, RefreshToken: s, IDToken: s},
			{IDToken: s},
		} {
			want, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.appendJSON([]byte("prefix")); string(got) != "prefix"+string(want) {
				t.Errorf("appendJSON(%+v) = %s, want %s", r, got, want)
			}
		}
	}
}

func TestErrorBodyJSONMatchesMarshal(t *testing.T) {
	for _, s := range jsonCases {
		for _, e := range []errorBody{{Error: s}, {Error: "invalid_request", Description: s}, {Error: s, Description: s}} {
			want, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			if got := e.appendJSON(nil); string(got) != string(want) {
				t.Errorf("appendJSON(%+v) = %s, want %s", e, got, want)
			}
		}
	}
}

// The header values of a response are its own: a later handler that edits
// them in place (Caddy's header replacements do) must not change another
// response's.
func TestResponseHeadersAreNotShared(t *testing.T) {
	f := newFixture(t, nil, nil)
	do := func(v url.Values) http.Header {
		rec := httptest.NewRecorder()
		f.srv.Handle(rec, formRequest(DefaultTokenPath, v))
		return rec.Header()
	}
	good := ccForm()
	bad := ccForm("client_secret", "wrong")
	for _, first := range []url.Values{good, bad} {
		h := do(first)
		for _, vs := range h {
			for i := range vs {
				vs[i] = "changed"
			}
		}
		for _, next := range []url.Values{good, bad} {
			h := do(next)
			if h.Get("Content-Type") != "application/json; charset=UTF-8" || h.Get("Cache-Control") != "no-store" ||
				h.Get("Pragma") != "no-cache" || strings.Trim(h.Get("Content-Length"), "0123456789") != "" {
				t.Fatalf("headers after an in-place edit of another response's: %v", h)
			}
		}
	}
}

// setJSONHeaders sets what h.Set would.
func TestSetJSONHeaders(t *testing.T) {
	for _, n := range []int{0, 7, 99, 100, 577, 65536, 1 << 40} {
		got, want := http.Header{"Content-Type": {"text/plain"}, "X-Other": {"x"}}, http.Header{"Content-Type": {"text/plain"}, "X-Other": {"x"}}
		setJSONHeaders(got, n)
		want.Set("Content-Type", "application/json; charset=UTF-8")
		want.Set("Cache-Control", "no-store")
		want.Set("Pragma", "no-cache")
		want.Set("Content-Length", strconv.Itoa(n))
		if len(got) != len(want) {
			t.Fatalf("%d: %v, want %v", n, got, want)
		}
		for k, v := range want {
			if len(got[k]) != 1 || got[k][0] != v[0] {
				t.Fatalf("%d: %v, want %v", n, got, want)
			}
		}
	}
}
