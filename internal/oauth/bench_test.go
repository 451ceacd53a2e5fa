package oauth

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkClientCredentials measures one whole client_credentials request
// through Handle (parse, authenticate, mint ES256, respond).
func BenchmarkClientCredentials(b *testing.B) {
	f := newFixture(b, nil, nil)
	body := "grant_type=client_credentials&client_id=" + noRefreshID + "&client_secret=" + noRefreshSec
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, DefaultTokenPath, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			rec := httptest.NewRecorder()
			if !f.srv.Handle(rec, req) || rec.Code != http.StatusOK {
				b.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
		}
	})
}

// BenchmarkRefreshMemory measures a refresh with rotation on the memory store.
func BenchmarkRefreshMemory(b *testing.B) {
	f := newFixture(b, nil, nil)
	rt := f.issueRefresh()
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		f.srv.Handle(rec, formRequest(DefaultTokenPath, refreshForm(rt)))
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		rt = jsonField(rec.Body.String(), "refresh_token")
	}
}

func jsonField(body, name string) string {
	_, rest, _ := strings.Cut(body, `"`+name+`":"`)
	v, _, _ := strings.Cut(rest, `"`)
	return v
}
