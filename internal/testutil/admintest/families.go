// Package admintest reads answers of the moserver admin API in tests: the
// unit tests of caddymodule and the integration tests against the built
// binary walk GET /moserver/families the same way.
package admintest

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Family is one family of a GET /moserver/families answer.
type Family struct {
	FamilyID  string `json:"family_id"`
	Subject   string `json:"subject"`
	Scope     string `json:"scope"`
	CreatedAt string `json:"created_at"`
	ExpiresAt string `json:"expires_at"`
	Revoked   bool   `json:"revoked"`
}

// Get sends GET path to the admin API and returns the status and body.
type Get func(path string) (status int, body string)

// ListFamilies follows next from the first page to the end with pages of
// limit (query holds the other parameters, e.g. "client_id=x"), failing
// the test if an answer is not a 200 page or holds any of secrets. It
// returns every family in the order listed and the number of pages.
func ListFamilies(t testing.TB, get Get, query string, limit int, secrets []string) ([]Family, int) {
	t.Helper()
	var all []Family
	after := ""
	for pages := 1; ; pages++ {
		if pages > 100 {
			t.Fatalf("%s: more than 100 pages", query)
		}
		path := "/moserver/families?" + query + "&limit=" + strconv.Itoa(limit)
		if after != "" {
			path += "&after=" + url.QueryEscape(after)
		}
		status, body := get(path)
		if status != 200 {
			t.Fatalf("GET %s: %d %s", path, status, body)
		}
		for _, s := range secrets {
			if strings.Contains(body, s) {
				t.Fatalf("GET %s: the answer holds a token or secret (%.8s...)", path, s)
			}
		}
		var page struct {
			Families *[]Family `json:"families"`
			Next     string    `json:"next"`
		}
		if err := json.Unmarshal([]byte(body), &page); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		if page.Families == nil {
			t.Fatalf("GET %s: families is null or missing: %s", path, body)
		}
		if len(*page.Families) > limit {
			t.Fatalf("GET %s: %d families in a page of %d", path, len(*page.Families), limit)
		}
		all = append(all, *page.Families...)
		if page.Next == "" {
			return all, pages
		}
		after = page.Next
	}
}

// IDs returns the family ids of fs in order.
func IDs(fs []Family) []string {
	ids := make([]string, len(fs))
	for i, f := range fs {
		ids[i] = f.FamilyID
	}
	return ids
}

// CheckPages lists query's families with pages of each of limits and fails
// the test unless every listing is want, in that order, each page walk
// takes at least the pages its limit needs, creation times never
// decrease, both times are RFC 3339 with the expiry after the creation,
// and ok accepts each family (ok may report its own error and return
// false).
func CheckPages(t testing.TB, get Get, query string, want []string, limits []int, secrets []string, ok func(Family) bool) {
	t.Helper()
	for _, limit := range limits {
		got, pages := ListFamilies(t, get, query, limit, secrets)
		if strings.Join(IDs(got), ",") != strings.Join(want, ",") {
			t.Fatalf("limit %d: listed %v, want %v (oldest first, each once)", limit, IDs(got), want)
		}
		if least := (len(want) + limit - 1) / limit; pages < least {
			t.Errorf("limit %d: %d pages, want at least %d", limit, pages, least)
		}
		var prev time.Time
		for _, f := range got {
			created, err1 := time.Parse(time.RFC3339Nano, f.CreatedAt)
			expires, err2 := time.Parse(time.RFC3339Nano, f.ExpiresAt)
			if err1 != nil || err2 != nil || created.Before(prev) || !expires.After(created) || !ok(f) {
				t.Errorf("limit %d: family %+v", limit, f)
			}
			prev = created
		}
	}
}
