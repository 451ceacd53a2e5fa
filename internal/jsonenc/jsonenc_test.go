package jsonenc

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// escapeCases are strings every escaping rule applies to.
var escapeCases = []string{
	"",
	"plain",
	`quote " and backslash \ and slash /`,
	"\x00\x01\x07\b\t\n\v\f\r\x1b\x1f\x7f",
	"<html> & 'apos'",
	"unicode: é ß 日本 🙂",
	"separators \u2028 \u2029",
	"invalid \xff\xfe utf-8 \xc3",
	"truncated \xe6\x97",
	`\u0000 literal`,
}

// stdJSON encodes s with encoding/json, HTML escaping off.
func stdJSON(t testing.TB, s string) string {
	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetEscapeHTML(false)
	if err := e.Encode(s); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

// marshalJSON is what encoding/json makes of s (HTML escaped).
func marshalJSON(t testing.TB, s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range escapeCases {
		if got, want := string(AppendString(nil, s, false)), stdJSON(t, s); got != want {
			t.Errorf("AppendString(%q, false) = %s, want %s", s, got, want)
		}
		if got, want := string(AppendString([]byte("x"), s, true)), "x"+marshalJSON(t, s); got != want {
			t.Errorf("AppendString(%q, true) = %s, want %s", s, got, want)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range escapeCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := string(AppendString(nil, s, false)), stdJSON(t, s); got != want {
			t.Fatalf("AppendString(%q, false) = %s, want %s", s, got, want)
		}
		if got, want := string(AppendString(nil, s, true)), marshalJSON(t, s); got != want {
			t.Fatalf("AppendString(%q, true) = %s, want %s", s, got, want)
		}
	})
}
