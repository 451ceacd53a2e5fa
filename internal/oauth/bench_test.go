package oauth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddy-moserver/caddy-moserver/internal/tokens"
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

// discardWriter is a reusable ResponseWriter, so that the benchmark below
// counts the handler's allocations and not the test harness's.
type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(code int)        { d.code = code }

// rewindBody is a request body that can be reused without allocating.
type rewindBody struct{ bytes.Reader }

func (*rewindBody) Close() error { return nil }

// BenchmarkTokenByAlgorithm: one client_credentials request through Handle
// per signing algorithm, reusing the request, body and writer objects, so
// allocs/op is what the module itself allocates (ES256's include those of
// Go's crypto/ecdsa signing, see BenchmarkStdlibES256Sign; RS256's 2 inside
// crypto/rsa).
func BenchmarkTokenByAlgorithm(b *testing.B) {
	for _, alg := range []string{"ES256", "EdDSA", "HS256", "RS256"} {
		b.Run(alg, func(b *testing.B) {
			key, _, err := tokens.GenerateKey(alg)
			if err != nil {
				b.Fatal(err)
			}
			signer, err := tokens.NewSigner([]*tokens.Key{key})
			if err != nil {
				b.Fatal(err)
			}
			f := newFixture(b, nil, func(c *Config) { c.Signer = signer })
			body := []byte("grant_type=client_credentials&client_id=" + noRefreshID + "&client_secret=" + noRefreshSec)
			req := httptest.NewRequest(http.MethodPost, DefaultTokenPath, nil)
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			rd := &rewindBody{}
			req.Body = rd
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				rd.Reset(body)
				req.ContentLength = int64(len(body))
				clear(w.h)
				if !f.srv.Handle(w, req) || w.code != http.StatusOK {
					b.Fatalf("status %d", w.code)
				}
			}
		})
	}
}

// BenchmarkStdlibES256Sign is what every ES256 token costs inside Go's
// standard library alone: one deterministic (RFC 6979) ecdsa signature over a
// SHA-256 digest with a P-256 key, as tokens.Signer.Mint makes it.
// BenchmarkTokenByAlgorithm/ES256 minus this is the module's own share.
func BenchmarkStdlibES256Sign(b *testing.B) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("header.claims"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := key.Sign(nil, digest[:], crypto.SHA256); err != nil {
			b.Fatal(err)
		}
	}
}
