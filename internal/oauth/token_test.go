package oauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// The client samples of the plugin's documentation, as raw requests.
func TestClientCredentialsAsDocumented(t *testing.T) {
	f := newFixture(t, nil, nil)
	form := "grant_type=client_credentials&client_id=" + ccID + "&client_secret=" + ccSecret
	cases := map[string]func() *http.Request{
		"curl form body": func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, DefaultTokenPath, strings.NewReader(form))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		},
		"C# JSON body": func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, DefaultTokenPath, strings.NewReader(
				`{"grant_type":"client_credentials","client_id":"`+ccID+`","client_secret":"`+ccSecret+`"}`))
			r.Header.Set("Content-Type", "application/json")
			return r
		},
		"Java Basic plus id and secret in body": func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, DefaultTokenPath, strings.NewReader(form))
			r.Header.Set("Authorization", basic(ccID, ccSecret))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.Header.Set("Accept", "application/json")
			return r
		},
		"PHP and Python Basic": func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, DefaultTokenPath, strings.NewReader("grant_type=client_credentials"))
			r.Header.Set("Authorization", basic(ccID, ccSecret))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		},
		"no Content-Type": func() *http.Request {
			return httptest.NewRequest(http.MethodPost, DefaultTokenPath, strings.NewReader(form))
		},
		"plain permalinks": func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/?rest_route=/moserver/token", strings.NewReader(form))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		},
		"multipart": func() *http.Request {
			body := "--XX\r\nContent-Disposition: form-data; name=\"grant_type\"\r\n\r\nclient_credentials\r\n" +
				"--XX\r\nContent-Disposition: form-data; name=\"client_id\"\r\n\r\n" + ccID + "\r\n" +
				"--XX\r\nContent-Disposition: form-data; name=\"client_secret\"\r\n\r\n" + ccSecret + "\r\n--XX--\r\n"
			r := httptest.NewRequest(http.MethodPost, DefaultTokenPath, strings.NewReader(body))
			r.Header.Set("Content-Type", "multipart/form-data; boundary=XX")
			return r
		},
	}
	for name, req := range cases {
		t.Run(name, func(t *testing.T) {
			r := wantToken(t, f.do(req()))
			if r.str("scope") != "profile email" {
				t.Errorf("scope = %q, want the client's scopes", r.str("scope"))
			}
			if r.json["expires_in"] != float64(3600) {
				t.Errorf("expires_in = %v", r.json["expires_in"])
			}
			if r.str("refresh_token") == "" {
				t.Errorf("client with refresh_tokens got none")
			}
			// The Java sample extracts the token with this pattern.
			if !strings.Contains(r.body, `"access_token":"`) {
				t.Errorf("body does not match the Java sample's pattern: %s", r.body)
			}
		})
	}
	if len(f.passed) != 0 {
		t.Fatalf("%d requests were passed on", len(f.passed))
	}
}

func TestAccessTokenIsRFC9068JWT(t *testing.T) {
	f := newFixture(t, nil, nil)
	r := wantToken(t, f.post(ccForm("scope", "email")))
	tok := f.verifyAccess(r.str("access_token"))
	if tok.Issuer() != issuer || tok.Subject() != "client:"+ccID || len(tok.Audience()) != 1 || tok.Audience()[0] != issuer {
		t.Errorf("iss/sub/aud = %q %q %v", tok.Issuer(), tok.Subject(), tok.Audience())
	}
	if tok.JwtID() == "" || tok.IssuedAt().IsZero() || !tok.Expiration().Equal(tok.IssuedAt().Add(time.Hour)) {
		t.Errorf("jti/iat/exp = %q %v %v", tok.JwtID(), tok.IssuedAt(), tok.Expiration())
	}
	if v, _ := tok.Get("client_id"); v != ccID {
		t.Errorf("client_id = %v", v)
	}
	if v, _ := tok.Get("scope"); v != "email" {
		t.Errorf("scope = %v", v)
	}
	claims, err := f.signer.Verify(r.str("access_token"), f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if claims.FamilyID == "" {
		t.Error("an access token issued with a refresh token carries no family id")
	}
	// A second token has another jti.
	r2 := wantToken(t, f.post(ccForm()))
	if f.verifyAccess(r2.str("access_token")).JwtID() == tok.JwtID() {
		t.Error("two tokens share a jti")
	}
}

func TestClientOverridesAudienceAndTTL(t *testing.T) {
	f := newFixture(t, nil, nil)
	r := wantToken(t, f.post(url.Values{"grant_type": {"client_credentials"}, "client_id": {otherID}, "client_secret": {otherSecret}}))
	if r.json["expires_in"] != float64(600) {
		t.Errorf("expires_in = %v, want 600", r.json["expires_in"])
	}
	if aud := f.verifyAccess(r.str("access_token")).Audience(); len(aud) != 1 || aud[0] != "https://api.example" {
		t.Errorf("aud = %v", aud)
	}
}

func TestNoRefreshTokenUnlessConfigured(t *testing.T) {
	f := newFixture(t, nil, nil)
	r := wantToken(t, f.post(url.Values{"grant_type": {"client_credentials"}, "client_id": {noRefreshID}, "client_secret": {noRefreshSec}}))
	if _, ok := r.json["refresh_token"]; ok {
		t.Fatalf("refresh token issued to a client without refresh_tokens: %s", r.body)
	}
	claims, err := f.signer.Verify(r.str("access_token"), f.clock.Now())
	if err != nil || claims.FamilyID != "" {
		t.Fatalf("claims %+v, err %v", claims, err)
	}
}

func TestGoOAuth2ClientCredentials(t *testing.T) {
	f := newFixture(t, nil, nil)
	ts := httptest.NewServer(f)
	defer ts.Close()
	for name, style := range map[string]oauth2.AuthStyle{"header": oauth2.AuthStyleInHeader, "params": oauth2.AuthStyleInParams} {
		t.Run(name, func(t *testing.T) {
			cfg := clientcredentials.Config{ClientID: otherID, ClientSecret: otherSecret, TokenURL: ts.URL + DefaultTokenPath,
				Scopes: []string{"write"}, AuthStyle: style}
			tok, err := cfg.Token(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if tok.AccessToken == "" || tok.TokenType != "Bearer" || tok.Extra("scope") != "write" {
				t.Fatalf("token %+v scope %v", tok, tok.Extra("scope"))
			}
		})
	}
}

func TestScope(t *testing.T) {
	f := newFixture(t, nil, nil)
	if r := wantToken(t, f.post(ccForm("scope", "email  email profile"))); r.str("scope") != "email profile" {
		t.Errorf("scope = %q", r.str("scope"))
	}
	wantError(t, f.post(ccForm("scope", "email admin")), 400, "invalid_scope")
	wantError(t, f.post(ccForm("scope", `a"b`)), 400, "invalid_scope")
}

func TestClientAuthenticationErrors(t *testing.T) {
	f := newFixture(t, nil, nil)
	t.Run("wrong secret in body", func(t *testing.T) {
		r := f.post(ccForm("client_secret", "WRONGSECRETWRONGSECRETWRONGSECRE"))
		wantError(t, r, 401, "invalid_client")
		if r.str("error_description") != descBadCredentials {
			t.Errorf("description %q", r.str("error_description"))
		}
		if r.header.Get("WWW-Authenticate") != "" {
			t.Error("WWW-Authenticate without Basic")
		}
	})
	t.Run("unknown client", func(t *testing.T) {
		wantError(t, f.post(ccForm("client_id", "NoSuchClientNoSuchClientNoSuchCl")), 401, "invalid_client")
	})
	t.Run("wrong secret with Basic", func(t *testing.T) {
		req := formRequest(DefaultTokenPath, url.Values{"grant_type": {"client_credentials"}})
		req.Header.Set("Authorization", basic(ccID, "nope"))
		r := f.do(req)
		wantError(t, r, 401, "invalid_client")
		if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("WWW-Authenticate = %q", r.header.Get("WWW-Authenticate"))
		}
	})
	t.Run("malformed Basic", func(t *testing.T) {
		req := formRequest(DefaultTokenPath, url.Values{"grant_type": {"client_credentials"}})
		req.Header.Set("Authorization", "Basic !!!")
		wantError(t, f.do(req), 401, "invalid_client")
	})
	t.Run("no credentials", func(t *testing.T) {
		r := f.post(url.Values{"grant_type": {"client_credentials"}})
		wantError(t, r, 401, "invalid_client")
		if r.str("error_description") != descNoCredentials {
			t.Errorf("description %q", r.str("error_description"))
		}
	})
	t.Run("id without secret", func(t *testing.T) {
		wantError(t, f.post(url.Values{"grant_type": {"client_credentials"}, "client_id": {ccID}}), 401, "invalid_client")
	})
	t.Run("Basic and another body client_id", func(t *testing.T) {
		req := formRequest(DefaultTokenPath, url.Values{"grant_type": {"client_credentials"}, "client_id": {otherID}})
		req.Header.Set("Authorization", basic(ccID, ccSecret))
		wantError(t, f.do(req), 400, "invalid_request")
	})
	t.Run("Basic form-encoded per RFC 6749 2.3.1", func(t *testing.T) {
		req := formRequest(DefaultTokenPath, url.Values{"grant_type": {"client_credentials"}})
		req.Header.Set("Authorization", basic(url.QueryEscape(otherID), url.QueryEscape(otherSecret)))
		wantToken(t, f.do(req))
	})
	t.Run("Basic not encoded, as the plugin's PHP sample sends it", func(t *testing.T) {
		req := formRequest(DefaultTokenPath, url.Values{"grant_type": {"client_credentials"}})
		req.Header.Set("Authorization", basic(otherID, otherSecret))
		wantToken(t, f.do(req))
	})
	t.Run("grant not allowed", func(t *testing.T) {
		wantError(t, f.post(url.Values{"grant_type": {"refresh_token"}, "client_id": {noRefreshID},
			"client_secret": {noRefreshSec}, "refresh_token": {"x"}}), 400, "unauthorized_client")
	})
}

func TestRequestErrors(t *testing.T) {
	f := newFixture(t, nil, nil)
	t.Run("GET is 405", func(t *testing.T) {
		r := f.do(httptest.NewRequest(http.MethodGet, DefaultTokenPath+"?grant_type=client_credentials", nil))
		wantError(t, r, 405, "invalid_request")
		if r.header.Get("Allow") != "POST" {
			t.Errorf("Allow = %q", r.header.Get("Allow"))
		}
	})
	t.Run("OPTIONS passes through", func(t *testing.T) {
		if r := f.do(httptest.NewRequest(http.MethodOptions, DefaultTokenPath, nil)); r.status != http.StatusTeapot {
			t.Errorf("status %d", r.status)
		}
	})
	t.Run("body over 64 KiB is 413", func(t *testing.T) {
		body := "grant_type=client_credentials&x=" + strings.Repeat("a", MaxBodyBytes)
		wantError(t, f.do(httptest.NewRequest(http.MethodPost, DefaultTokenPath, strings.NewReader(body))), 413, "invalid_request")
	})
	t.Run("chunked body over 64 KiB is 413", func(t *testing.T) {
		req := httptest.NewRequest(http.MethodPost, DefaultTokenPath, strings.NewReader(strings.Repeat("a", MaxBodyBytes+10)))
		req.ContentLength = -1
		wantError(t, f.do(req), 413, "invalid_request")
	})
	t.Run("repeated parameter", func(t *testing.T) {
		r := f.do(formRequest(DefaultTokenPath, url.Values{"grant_type": {"client_credentials"}, "client_id": {ccID},
			"client_secret": {ccSecret}, "scope": {"email", "profile"}}))
		wantError(t, r, 400, "invalid_request")
	})
	t.Run("repeated grant_type", func(t *testing.T) {
		wantError(t, f.post(url.Values{"grant_type": {"client_credentials", "authorization_code"}}), 400, "invalid_request")
	})
	t.Run("JSON non-string value", func(t *testing.T) {
		for _, body := range []string{
			`{"grant_type":"client_credentials","client_id":"` + ccID + `","client_secret":123}`,
			`{"grant_type":["client_credentials"]}`,
			`{"grant_type":{"a":{"b":{}}}}`,
			`{"grant_type":null}`,
			`["grant_type"]`,
			`{"grant_type":"client_credentials"} {}`,
			`{"grant_type":"client_credentials"`,
			`{"grant_type":"client_credentials","grant_type":"client_credentials"}`,
		} {
			req := httptest.NewRequest(http.MethodPost, DefaultTokenPath, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			wantError(t, f.do(req), 400, "invalid_request")
		}
	})
	t.Run("bad form encoding", func(t *testing.T) {
		wantError(t, f.do(httptest.NewRequest(http.MethodPost, DefaultTokenPath, strings.NewReader("grant_type=%zz"))), 400, "invalid_request")
	})
	t.Run("invalid UTF-8", func(t *testing.T) {
		wantError(t, f.do(httptest.NewRequest(http.MethodPost, DefaultTokenPath,
			strings.NewReader("grant_type=client_credentials&client_id=%ff%fe"))), 400, "invalid_request")
	})
	t.Run("missing grant_type", func(t *testing.T) {
		r := f.post(url.Values{"client_id": {ccID}, "client_secret": {ccSecret}})
		wantError(t, r, 400, "invalid_request")
		if r.str("error_description") != descNoGrantType {
			t.Errorf("description %q", r.str("error_description"))
		}
	})
}

func TestPassThrough(t *testing.T) {
	f := newFixture(t, nil, nil)
	body := `{"grant_type":"authorization_code","code":"b3df8b6de22c6a87c78a434ee3dd2e9105609236","redirect_uri":"http://127.0.0.1:18099/callback"}`
	req := httptest.NewRequest(http.MethodPost, DefaultTokenPath, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", basic(ccID, ccSecret))
	if r := f.do(req); r.status != http.StatusTeapot {
		t.Fatalf("authorization_code answered: %d %s", r.status, r.body)
	}
	form := "grant_type=password&username=admin&password=p%40ss&client_id=x"
	if r := f.do(httptest.NewRequest(http.MethodPost, "/?rest_route=/moserver/token", strings.NewReader(form))); r.status != http.StatusTeapot {
		t.Fatalf("password grant answered: %d %s", r.status, r.body)
	}
	if r := f.do(httptest.NewRequest(http.MethodPost, "/wp-json/wp/v2/posts", strings.NewReader("x=1"))); r.status != http.StatusTeapot {
		t.Fatalf("other URL answered: %d", r.status)
	}
	if len(f.passed) != 3 || f.bodies[0] != body || f.bodies[1] != form || f.bodies[2] != "x=1" {
		t.Fatalf("passed on %d requests, bodies %q", len(f.passed), f.bodies)
	}
	if f.passed[0].Header.Get("Authorization") != basic(ccID, ccSecret) {
		t.Error("Authorization header not passed on")
	}

	strict := newFixture(t, nil, func(c *Config) { c.RejectUnknownGrants = true })
	wantError(t, strict.do(httptest.NewRequest(http.MethodPost, DefaultTokenPath, strings.NewReader(form))), 400, "unsupported_grant_type")
	if r := strict.do(httptest.NewRequest(http.MethodPost, DefaultTokenPath, strings.NewReader("grant_type=authorization_code&code=x"))); r.status != http.StatusTeapot {
		t.Fatalf("authorization_code not passed on with reject: %d", r.status)
	}
}

func TestCORS(t *testing.T) {
	f := newFixture(t, nil, nil)
	req := formRequest(DefaultTokenPath, ccForm())
	req.Header.Set("Origin", "https://app.example")
	r := wantToken(t, f.do(req))
	if r.header.Get("Access-Control-Allow-Origin") != "https://app.example" || r.header.Get("Vary") != "Origin" {
		t.Errorf("CORS headers: %v", r.header)
	}
	req = formRequest(DefaultTokenPath, ccForm())
	req.Header.Set("Origin", "https://evil.example")
	if r := wantToken(t, f.do(req)); r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Error("CORS allowed for a foreign origin")
	}
}

func TestJWKS(t *testing.T) {
	f := newFixture(t, nil, nil)
	r := f.do(httptest.NewRequest(http.MethodGet, "/?rest_route=/moserver/jwks", nil))
	keys, _ := r.json["keys"].([]any)
	if r.status != 200 || len(keys) != 1 {
		t.Fatalf("JWKS %d %s", r.status, r.body)
	}
	if strings.Contains(r.body, `"d"`) {
		t.Fatal("JWKS leaks the private key")
	}
	wantError(t, f.do(httptest.NewRequest(http.MethodPost, DefaultJWKSPath, nil)), 405, "invalid_request")
}
