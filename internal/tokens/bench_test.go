package tokens

import (
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// benchClaims are typical claims of a client_credentials token.
func benchClaims() AccessClaims {
	now := time.Now()
	return AccessClaims{
		Issuer:    "https://www.example.com",
		Subject:   "Ab3dEf9hIjKlMnOpQrStUvWxYz012345",
		Audience:  "https://www.example.com",
		ClientID:  "Ab3dEf9hIjKlMnOpQrStUvWxYz012345",
		IssuedAt:  now,
		ExpiresAt: now.Add(time.Hour),
		JTI:       NewID(16),
		Scope:     "basic",
		FamilyID:  "AAAAAAAAAAAAAAAAAAAAAA",
	}
}

func BenchmarkMint(b *testing.B) {
	for _, alg := range allAlgs {
		b.Run(string(alg), func(b *testing.B) {
			s := testSigner(b, alg)
			c := benchClaims()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Mint(c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMintParallel measures throughput on all CPUs (GOMAXPROCS).
func BenchmarkMintParallel(b *testing.B) {
	for _, alg := range allAlgs {
		b.Run(string(alg), func(b *testing.B) {
			s := testSigner(b, alg)
			c := benchClaims()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.Mint(c); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkJWXSign is the generic jwx path, for comparison with Mint.
func BenchmarkJWXSign(b *testing.B) {
	for _, alg := range []jwa.SignatureAlgorithm{ES256, HS256} {
		b.Run(string(alg), func(b *testing.B) {
			k := testKey(b, alg)
			c := benchClaims()
			hdr := jws.NewHeaders()
			_ = hdr.Set(jws.TypeKey, "at+jwt")
			b.ReportAllocs()
			for b.Loop() {
				tok := jwt.New()
				_ = tok.Set("iss", c.Issuer)
				_ = tok.Set("sub", c.Subject)
				_ = tok.Set("aud", c.Audience)
				_ = tok.Set("client_id", c.ClientID)
				_ = tok.Set("iat", c.IssuedAt)
				_ = tok.Set("exp", c.ExpiresAt)
				_ = tok.Set("jti", c.JTI)
				_ = tok.Set("scope", c.Scope)
				if _, err := jwt.Sign(tok, jwt.WithKey(alg, k.Private, jws.WithProtectedHeaders(hdr))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	for _, alg := range allAlgs {
		b.Run(string(alg), func(b *testing.B) {
			s := testSigner(b, alg)
			tok, err := s.Mint(benchClaims())
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Verify(tok, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkNewID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = NewID(16)
	}
}

func BenchmarkRefresh(b *testing.B) {
	pred, fam := NewFamilyToken()
	succ, _ := NewToken(fam)
	sealed, _ := Seal(pred, succ)
	b.Run("NewFamilyToken", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = NewFamilyToken()
		}
	})
	b.Run("ParseRefresh", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = ParseRefresh(pred)
		}
	})
	b.Run("Digest", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = Digest(pred)
		}
	})
	b.Run("Seal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = Seal(pred, succ)
		}
	})
	b.Run("Open", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = Open(pred, sealed)
		}
	})
}
