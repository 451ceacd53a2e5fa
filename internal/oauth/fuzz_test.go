package oauth

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzTokenEndpoint sends arbitrary bodies, content types and Authorization
// headers to the token endpoint: no panic, and never a 5xx (the memory store
// cannot fail).
func FuzzTokenEndpoint(f *testing.F) {
	fx := newFixture(f, nil, nil)
	seeds := []struct{ ct, auth, body string }{
		{"application/x-www-form-urlencoded", "", "grant_type=client_credentials&client_id=" + ccID + "&client_secret=" + ccSecret},
		{"application/json", "", `{"grant_type":"refresh_token","refresh_token":"x","client_id":"a","client_secret":"b"}`},
		{"multipart/form-data; boundary=XX", "", "--XX\r\nContent-Disposition: form-data; name=\"grant_type\"\r\n\r\nclient_credentials\r\n--XX--\r\n"},
		{"", basic(ccID, ccSecret), "grant_type=client_credentials&scope=email"},
		{"text/plain", "Basic %%%", "token=abc"},
		{"application/json", "", `{"a":[[[[[[[[[[]]]]]]]]]]}`},
		{"application/x-www-form-urlencoded", "", "grant_type=refresh_token&refresh_token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
		{"application/x-www-form-urlencoded", "", "grant_type=client_credentials&grant_type=x;y=%00"},
	}
	for _, s := range seeds {
		f.Add(s.ct, s.auth, s.body)
	}
	f.Fuzz(func(t *testing.T, contentType, auth, body string) {
		for _, path := range []string{DefaultTokenPath, DefaultRevokePath} {
			req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
			req.Header.Set("Content-Type", contentType)
			req.Header.Set("Authorization", auth)
			rec := httptest.NewRecorder()
			fx.srv.Handle(rec, req)
			if rec.Code >= 500 {
				t.Fatalf("%s answered %d: %s", path, rec.Code, rec.Body)
			}
		}
	})
}
