//go:build !race

package oauth

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddy-moserver/caddy-moserver/internal/tokens"
)

// maxRequestAllocs bounds what one client_credentials request allocates in
// the module itself, signing with HS256 (whose standard library code
// allocates nothing). It is 6 today: the body, the header values, the
// token, its jti, the joined default scope and the request's store budget
// (the context every store call of the request shares); 7 with HTTP Basic
// credentials and a form-encoded scope, which are decoded into new strings.
const maxRequestAllocs = 7

func TestClientCredentialsAllocations(t *testing.T) {
	key, _, err := tokens.GenerateKey("HS256")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := tokens.NewSigner([]*tokens.Key{key})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, nil, func(c *Config) { c.Signer = signer })
	for name, set := range map[string]func(*http.Request) []byte{
		"form body": func(r *http.Request) []byte {
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return []byte("grant_type=client_credentials&client_id=" + noRefreshID + "&client_secret=" + noRefreshSec)
		},
		"Basic and scope": func(r *http.Request) []byte {
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8")
			r.Header.Set("Authorization", basic(noRefreshID, noRefreshSec))
			return []byte("grant_type=client_credentials&scope=email+profile")
		},
	} {
		req := httptest.NewRequest(http.MethodPost, DefaultTokenPath, nil)
		body := set(req)
		rb := &rewindBody{}
		req.Body, req.ContentLength = rb, int64(len(body))
		w := &discardWriter{h: http.Header{}}
		allocs := testing.AllocsPerRun(200, func() {
			rb.Reset(body)
			clear(w.h)
			if !f.srv.Handle(w, req) || w.code != http.StatusOK {
				t.Fatalf("%s: status %d", name, w.code)
			}
		})
		if allocs > maxRequestAllocs {
			t.Errorf("%s: %.0f allocations per request, want at most %d", name, allocs, maxRequestAllocs)
		}
		t.Logf("%s: %.0f allocations", name, allocs)
	}
}

// TestPassOnAllocations: sorting out a request that is WordPress's (not one
// of the endpoints in any form) allocates nothing, form bodies aside, with
// or without WordPress configured (which adds the userinfo endpoint and the
// clients' discovery routes).
func TestPassOnAllocations(t *testing.T) {
	wp, _ := wpFixture(t, nil, nil)
	for name, f := range map[string]*fixture{"without WordPress": newFixture(t, nil, nil), "with WordPress": wp} {
		for _, target := range []string{"/", "/sample-page/", "/wp-content/themes/x/style.css?ver=6.1",
			"/wp-json/wp/v2/posts?per_page=10&_embed", "/?rest_route=/wp/v2/posts&page=2", "/index.php/wp-json/",
			"/wp-admin/admin-ajax.php?action=heartbeat", "/wp-json/moserver/x/.well-known/other"} {
			req := httptest.NewRequest(http.MethodGet, target, nil)
			w := &discardWriter{h: http.Header{}}
			allocs := testing.AllocsPerRun(100, func() {
				if f.srv.Handle(w, req) {
					t.Fatalf("%s: GET %s answered", name, target)
				}
			})
			if allocs > 0 {
				t.Errorf("%s: GET %s: %.0f allocations, want none", name, target, allocs)
			}
		}
	}
}
