package oauth

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"
)

// The endpoints' names in their default paths, /wp-json/moserver/<name>.
var endpointNames = []string{"token", "revoke", "jwks", "introspect"}

// routeBody is a form body every POST endpoint answers in its own way: the
// token endpoint issues a token, revocation answers 200 with no body,
// introspection {"active":false}; the JWKS answers a POST 405.
func routeBody(extra ...string) string {
	return strings.Join(append([]string{"grant_type=client_credentials", "token=x",
		"client_id=" + noRefreshID, "client_secret=" + noRefreshSec}, extra...), "&")
}

// multipartRouteBody is routeBody as multipart/form-data with boundary XX,
// after the given raw parts.
func multipartRouteBody(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		b.WriteString("--XX\r\n" + p + "\r\n")
	}
	for _, kv := range [][2]string{{"grant_type", "client_credentials"}, {"token", "x"},
		{"client_id", noRefreshID}, {"client_secret", noRefreshSec}} {
		fmt.Fprintf(&b, "--XX\r\nContent-Disposition: form-data; name=%q\r\n\r\n%s\r\n", kv[0], kv[1])
	}
	b.WriteString("--XX--\r\n")
	return b.String()
}

// answeredAs sends r through Handle and names what answered it: one of the
// endpointNames, "passed" (left to the next handler) or the status and error.
func answeredAs(f *fixture, r *http.Request) string {
	f.t.Helper()
	res := f.do(r)
	switch {
	case res.status == http.StatusTeapot:
		return "passed"
	case res.status == http.StatusOK && res.str("access_token") != "":
		return "token"
	case res.status == http.StatusOK && res.body == "":
		return "revoke"
	case res.status == http.StatusOK && res.json["active"] == false:
		return "introspect"
	case res.status == http.StatusOK && res.json["keys"] != nil,
		res.status == http.StatusMethodNotAllowed && res.header.Get("Allow") == "GET, HEAD":
		return "jwks"
	}
	return fmt.Sprintf("%d %s", res.status, res.str("error"))
}

type routeCase struct {
	method, target, contentType, body string
	// unreadable: the module's own parser refuses the body (400
	// invalid_request) of this request WordPress would route.
	unreadable bool
}

func rc(method, target, contentType, body string) routeCase {
	return routeCase{method: method, target: target, contentType: contentType, body: body}
}

func (c routeCase) request() *http.Request {
	r := httptest.NewRequest(c.method, "http://wp.example"+c.target, strings.NewReader(c.body))
	if c.contentType != "" {
		r.Header.Set("Content-Type", c.contentType)
	}
	return r
}

const formType = "application/x-www-form-urlencoded"

// routeCases are the forms of the URL of endpoint e (a name of
// endpointNames) that WordPress routes to it, as POSTs; the comments say
// what WordPress does (each was checked against the real WordPress by
// integration/wordpress_routes_test.go).
func routeCases(e string) []routeCase {
	title := strings.ToUpper(e[:1]) + e[1:]
	post := func(target string) routeCase {
		return rc(http.MethodPost, target, formType, routeBody())
	}
	inBody := func(target, contentType, body string) routeCase {
		return rc(http.MethodPost, target, contentType, body)
	}
	return []routeCase{
		// The path: WordPress's REST routes are case-insensitive and
		// untrailingslashit drops every trailing / and \.
		post("/wp-json/moserver/" + e),
		post("/wp-json/moserver/" + title),
		post("/wp-json/MOSERVER/" + strings.ToUpper(e) + "//"),
		post("/wp-json/moserver/" + e + "/"),
		// WordPress matches its rewrite rule on the path as sent, then on it
		// urldecoded (what follows wp-json/ is then taken as it is).
		post("/wp-j%73on/moserver/" + e),
		post("/wp-j%73on/moserver/" + e + "%0Ajunk"),
		post("/wp-j%73on/moserver/" + e + "%2F%5C"),
		// PATH_INFO of index.php (and of the other scripts that parse the
		// query: wp-blog-header.php, wp-trackback.php), decoded by the web
		// server; the rewrite rule's route ends at a newline.
		post("/index.php/wp-json/moserver/" + e),
		post("/index.php/wp-json/moserver/" + title + "/"),
		post("/index.php/wp-json/moserver%2F" + e + "%2F%5C"),
		post("/index.php/wp-json/moserver/" + e + "%0Ajunk"),
		post("/wp-blog-header.php/wp-json/moserver/" + e),
		post("/wp-trackback.php/wp-json/moserver/" + e),
		post("//wp-json/moserver/" + e),
		// A WordPress in a subdirectory (home path /blog).
		post("/blog/wp-json/moserver/" + e),
		// rest_route in the query, on any path that reaches index.php.
		post("/?rest_route=/moserver/" + e),
		post("/?rest_route=/moserver/" + e + "/"),
		post("/?rest_route=/Moserver/" + title),
		post("/?rest_route=%2Fmoserver%2F" + e),
		post("/?rest_route=/moserver/" + e + "%5C/%2F"),
		post("/?rest_route=/moserver/" + e + "%0A"),
		post("/index.php?rest_route=/moserver/" + e),
		post("/sample-page/?rest_route=/moserver/" + e),
		post("/no/such/page?rest_route=/moserver/" + e),
		post("/wp-json/wp/v2/posts?rest_route=/moserver/" + e),
		post("/wp-blog-header.php?rest_route=/moserver/" + e),
		post("/wp-trackback.php?rest_route=/moserver/" + e),
		// PHP's names: '.', ' ' and a lone '[' are '_', leading spaces go,
		// a NUL ends the name, the last of repeated names wins.
		post("/?rest.route=/moserver/" + e),
		post("/?rest+route=/moserver/" + e),
		post("/?rest%20route=/moserver/" + e),
		post("/?rest[route=/moserver/" + e),
		post("/?rest%5Broute=/moserver/" + e),
		post("/?%72est_route=/moserver/" + e),
		post("/?rest%5Froute=/moserver/" + e),
		post("/?+rest_route=/moserver/" + e),
		post("/?rest_route%00x=/moserver/" + e),
		post("/?rest_route=/wp/v2&rest_route=/moserver/" + e),
		// rest_route in a POST's form body, which WordPress prefers to the
		// query and the path.
		inBody("/", formType, routeBody("rest_route=/moserver/"+e)),
		inBody("/", formType, routeBody("rest.route=%2FMoserver%2F"+title+"%2F")),
		inBody("/", "Application/X-WWW-Form-Urlencoded ;charset=UTF-8", routeBody("rest_route=/moserver/"+e)),
		inBody("/wp-json/wp/v2/posts", formType, routeBody("rest_route=/moserver/"+e)),
		inBody("/sample-page/", formType, routeBody("rest_route=/moserver/"+e)),
		inBody("/", "multipart/form-data; boundary=XX",
			multipartRouteBody("Content-Disposition: form-data; name=\"rest_route\"\r\n\r\n/moserver/"+e)),
		inBody("/", "multipart/form-data; boundary=XX",
			multipartRouteBody("Content-Disposition: form-data; name=rest.route\r\n\r\n/moserver/"+e+"/")),
		// PHP joins a header line that starts with a space, or has no ':',
		// to the one before.
		inBody("/", "multipart/form-data; boundary=XX",
			multipartRouteBody("Content-Disposition: form-data; name=\"rest\r\n route\"\r\n\r\n/moserver/"+e)),
		{method: http.MethodPost, target: "/", contentType: "multipart/form-data; boundary=XX", unreadable: true,
			body: multipartRouteBody("Content-Disposition: form-data; name=\"rest\r\n_route\"\r\n\r\n/moserver/" + e)},
		// Over-matching, harmless: WordPress would not route these to the
		// endpoint. After wp-json/ in the path as sent, it keeps escapes and
		// a backslash (which the web server passes escaped) as they are;
		// ';' separates no parameters; a route has one leading slash; /x/ is
		// no home path here; wp-login.php does not parse the query.
		post(fmt.Sprintf("/wp-json/moserver/%%%x%s", e[0], e[1:])),
		post("/wp-json/moserver%2F" + e),
		post("/wp-json/moserver/" + e + "%2F%5C"),
		post("/wp-json/moserver/" + e + `/\`),
		post("/x/wp-json/moserver/" + e),
		post("/wp-json//moserver/" + e),
		post("/?rest_route=/moserver/" + e + ";x"),
		post("/?x=1;rest_route=/moserver/" + e),
		post("/wp-login.php?rest_route=/moserver/" + e),
	}
}

func TestRoutesWordPressForms(t *testing.T) {
	f := newFixture(t, nil, nil)
	for _, e := range endpointNames {
		for _, c := range routeCases(e) {
			want := e
			if c.unreadable && e != "jwks" {
				want = "400 invalid_request"
			}
			if got := answeredAs(f, c.request()); got != want {
				t.Errorf("%s %s %q %.60q: answered by %s, want %s", c.method, c.target, c.contentType, c.body, got, want)
			}
		}
	}
	// A GET of the JWKS in those forms (but the body's) is answered with the keys.
	for _, c := range routeCases("jwks") {
		if c.method != http.MethodPost || c.body != routeBody() {
			continue
		}
		r := httptest.NewRequest(http.MethodGet, "http://wp.example"+c.target, nil)
		if res := f.do(r); res.status != http.StatusOK || res.json["keys"] == nil {
			t.Errorf("GET %s = %d %s, want the JWKS", c.target, res.status, res.body)
		}
	}
}

// routeNearMisses are URLs close to endpoint e's that WordPress does not
// route to it: they stay the next handler's.
func routeNearMisses(e string) []routeCase {
	post := func(target string) routeCase {
		return rc(http.MethodPost, target, formType, routeBody())
	}
	return []routeCase{
		post("/WP-JSON/moserver/" + e), // the rewrite rule is case-sensitive
		post("/wp-json/moserver/" + e + "s"),
		post("/wp-json/moserver/x" + e),
		post("/wp-json/moserver/" + e + "/x"),
		post("/wp-json/moserver/" + e + "+"),
		post(fmt.Sprintf("/wp-json/moserver/%%25%x%s", e[0], e[1:])), // decoded once only
		post("/wp-json/" + e),
		post("/moserver/" + e),
		post("/wp-json/moserver/" + e + ".json"),
		post("/?rest_route=/moserver/" + e + "x"),
		post("/?rest_route=/moserver/" + e + "%2Bx"),
		post("/?rest_route=%252Fmoserver%252F" + e), // decoded once only
		post("/?REST_ROUTE=/moserver/" + e),         // names are case-sensitive
		post("/?rest_routes=/moserver/" + e),
		post("/?xrest_route=/moserver/" + e),
		post("/?rest_route_=/moserver/" + e),
		post("/?rest_route.=/moserver/" + e),
		post("/?rest_route[]=/moserver/" + e), // an array: not a route
		post("/?rest_route[=/moserver/" + e),  // rest_route_
		post("/?rest__route=/moserver/" + e),
		post("/?route=/moserver/" + e),
		post("/?x=/moserver/" + e),
		// $_POST is read for a POST of a form only.
		rc(http.MethodPut, "/", formType, routeBody("rest_route=/moserver/"+e)),
		rc(http.MethodPost, "/", "text/plain", routeBody("rest_route=/moserver/"+e)),
		rc(http.MethodPost, "/", "application/x-www-form-urlencodedx", routeBody("rest_route=/moserver/"+e)),
		rc(http.MethodPost, "/", "application/json", `{"rest_route":"/moserver/`+e+`"}`),
		rc(http.MethodPost, "/", formType, routeBody("rest_routes=/moserver/"+e)),
		rc(http.MethodPost, "/", formType, routeBody("rest_route=/moserver/"+e+"x")),
		rc(http.MethodPost, "/", "multipart/form-data; boundary=XX",
			multipartRouteBody("Content-Disposition: form-data; name=\"rest_routes\"\r\n\r\n/moserver/"+e)),
		rc(http.MethodPost, "/", "multipart/form-data; boundary=XX",
			multipartRouteBody("Content-Disposition: form-data; name=\"x\"\r\n\r\n/moserver/"+e)),
	}
}

func TestRoutesNearMissesPassOn(t *testing.T) {
	f := newFixture(t, nil, nil)
	for _, e := range endpointNames {
		for _, c := range routeNearMisses(e) {
			f.passed, f.bodies = nil, nil
			if got := answeredAs(f, c.request()); got != "passed" {
				t.Errorf("%s %s %q %.60q: answered by %s, want it passed on", c.method, c.target, c.contentType, c.body, got)
				continue
			}
			if len(f.bodies) != 1 || f.bodies[0] != c.body {
				t.Errorf("%s %s: the body passed on is %.60q, want it as sent", c.method, c.target, f.bodies)
			}
		}
	}
}

func TestRoutesOfOtherPaths(t *testing.T) {
	// A configured path outside /wp-json/ is only matched exactly; one
	// under a home path gets the WordPress forms.
	f := newFixture(t, nil, func(c *Config) {
		c.TokenPath = "/oauth/token"
		c.RevokePath = "/blog/wp-json/moserver/revoke"
	})
	for target, want := range map[string]string{
		"/oauth/token":                   "token",
		"/oauth/Token":                   "passed",
		"/oauth/token/":                  "passed",
		"/?rest_route=/oauth/token":      "passed",
		"/wp-json/moserver/token":        "passed",
		"/blog/wp-json/moserver/revoke":  "revoke",
		"/BLOG/wp-json/moserver/Revoke/": "revoke",
		"/wp-json/moserver/revoke":       "revoke",
		"/?rest_route=/moserver/revoke":  "revoke",
	} {
		r := rc(http.MethodPost, target, formType, routeBody()).request()
		if got := answeredAs(f, r); got != want {
			t.Errorf("POST %s: answered by %s, want %s", target, got, want)
		}
	}
	for _, paths := range [][2]string{
		{"/wp-json/moserver/token", "/wp-json/moserver/token"},
		{"/wp-json/moserver/token", "/wp-json/Moserver/Token/"},
		{"/wp-json/moserver/token", "/blog/wp-json/moserver/token"},
	} {
		_, err := New(Config{Issuer: issuer, Clients: testClients(), Store: f.store, Signer: f.signer,
			TokenPath: paths[0], RevokePath: paths[1]})
		if err == nil {
			t.Errorf("token_path %s and revoke_path %s: no error", paths[0], paths[1])
		}
	}
}

func TestRoutesPreflights(t *testing.T) {
	f := newFixture(t, nil, nil)
	for _, e := range endpointNames {
		for _, target := range []string{"/wp-json/moserver/" + e, "/wp-json/moserver/" + e + "/", "/?rest_route=/moserver/" + e} {
			// A CORS preflight is WordPress's to answer.
			r := httptest.NewRequest(http.MethodOptions, "http://wp.example"+target, nil)
			r.Header.Set("Origin", "https://app.example")
			r.Header.Set("Access-Control-Request-Method", "POST")
			if got := answeredAs(f, r); got != "passed" {
				t.Errorf("OPTIONS %s: answered by %s, want it passed on", target, got)
			}
			// With a method override, WordPress would run the overridden
			// method's handler instead: refused.
			sep := "?"
			if strings.Contains(target, "?") {
				sep = "&"
			}
			for _, q := range []string{"_method=POST", ".method=post", "%5Fmethod=GET", "_method"} {
				r := httptest.NewRequest(http.MethodOptions, "http://wp.example"+target+sep+q, nil)
				wantError(t, f.do(r), http.StatusBadRequest, "invalid_request")
			}
			for _, h := range []string{"X-HTTP-Method-Override", "X_HTTP_METHOD_OVERRIDE", "x-http-method_override"} {
				r := httptest.NewRequest(http.MethodOptions, "http://wp.example"+target, nil)
				r.Header[h] = []string{"POST"}
				wantError(t, f.do(r), http.StatusBadRequest, "invalid_request")
			}
		}
	}
	// Also on the metadata path, which WordPress routes by rest_route.
	meta := "http://wp.example" + f.srv.metadataPath
	wantError(t, f.do(httptest.NewRequest(http.MethodOptions, meta+"?rest_route=/moserver/token&_method=POST", nil)),
		http.StatusBadRequest, "invalid_request")
	if got := answeredAs(f, httptest.NewRequest(http.MethodOptions, meta, nil)); got != "passed" {
		t.Errorf("OPTIONS %s: answered by %s, want it passed on", meta, got)
	}
	// Other methods are the module's anyway (405 or answered).
	r := httptest.NewRequest(http.MethodGet, "http://wp.example/wp-json/moserver/Token?_method=POST", nil)
	if res := f.do(r); res.status != http.StatusMethodNotAllowed {
		t.Errorf("GET with _method=POST: %d, want 405", res.status)
	}
}

func TestRoutesNamingTwoEndpoints(t *testing.T) {
	f := newFixture(t, nil, nil)
	authCode := "grant_type=authorization_code&code=c&client_id=" + ccID + "&client_secret=" + ccSecret
	for _, c := range []routeCase{
		rc(http.MethodPost, "/wp-json/moserver/Token?rest_route=/moserver/revoke", formType, routeBody()),
		rc(http.MethodPost, "/?rest_route=/moserver/token&rest.route=/moserver/introspect", formType, routeBody()),
		// The module would pass these grants on to WordPress, which would
		// route them by rest_route to another endpoint.
		rc(http.MethodPost, "/wp-json/moserver/token?rest_route=/moserver/revoke", formType, authCode),
		rc(http.MethodPost, "/wp-json/moserver/token", formType, authCode+"&rest_route=/moserver/introspect"),
		rc(http.MethodPost, "/?rest_route=/moserver/token", formType, authCode+"&rest_route=/moserver/revoke"),
		rc(http.MethodOptions, "/wp-json/moserver/token?rest_route=/moserver/jwks", "", ""),
	} {
		f.passed = nil
		wantError(t, f.do(c.request()), http.StatusBadRequest, "invalid_request")
		if len(f.passed) != 0 {
			t.Errorf("%s %s %q: passed on", c.method, c.target, c.body)
		}
	}
	// Naming the token endpoint twice is no conflict: the grant goes on.
	for _, c := range []routeCase{
		rc(http.MethodPost, "/wp-json/moserver/token?rest_route=/moserver/Token/", formType, authCode),
		rc(http.MethodPost, "/?rest_route=/moserver/token", formType, authCode+"&rest_route=/moserver/token"),
		rc(http.MethodPost, "/", formType, authCode+"&rest_route=/moserver/token"),
	} {
		f.passed, f.bodies = nil, nil
		if got := answeredAs(f, c.request()); got != "passed" || f.bodies[0] != c.body {
			t.Errorf("%s %s %q: %s with body %q, want it passed on as sent", c.method, c.target, c.body, got, f.bodies)
		}
	}
}

func TestRoutesLargeFormBodies(t *testing.T) {
	f := newFixture(t, nil, nil)
	pad := strings.Repeat("p=", MaxBodyBytes/2+8) // over MaxBodyBytes
	mpad := "--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\n" +
		strings.Repeat("name=x ", MaxBodyBytes/7+8) + "\r\n"
	for _, c := range []struct {
		contentType, body, passed string // passed: what the next handler reads before the cut
	}{
		{formType, pad + "&rest_route=/moserver/token&x=y", pad + "&rest_route"},
		{formType, pad + "&rest.route=/anything", pad + "&rest.route"},
		{formType, "rest_route=/moserver/token&" + pad, "rest_route"},
		{"multipart/form-data; boundary=XX", mpad + "--XX\r\nContent-Disposition: form-data; name=\"rest_route\"\r\n\r\n/moserver/token\r\n--XX--\r\n",
			mpad + "--XX\r\nContent-Disposition: form-data; name=\"rest_route"},
	} {
		for _, known := range []bool{true, false} {
			r := rc(http.MethodPost, "/", c.contentType, c.body).request()
			if !known {
				r.ContentLength = -1
				r.Body = io.NopCloser(iotest.HalfReader(strings.NewReader(c.body)))
			}
			rec := httptest.NewRecorder()
			if f.srv.Handle(rec, r) {
				t.Fatalf("%.40q: answered %d %s, want it passed on", c.body, rec.Code, rec.Body)
			}
			got, err := io.ReadAll(r.Body)
			if !errors.Is(err, errFormRoute) || string(got) != c.passed {
				t.Errorf("%.40q (length known %v): the next handler read %d bytes ending %q (%v), want %d ending %q and errFormRoute",
					c.body, known, len(got), tail(string(got), 30), err, len(c.passed), tail(c.passed, 30))
			}
		}
	}
	// Without rest_route, a large form body goes on whole.
	for _, body := range []string{pad + "&rest_routes=x", mpad + "--XX--\r\n"} {
		r := rc(http.MethodPost, "/", "multipart/form-data; boundary=XX", body).request()
		if strings.HasPrefix(body, "p=") {
			r.Header.Set("Content-Type", formType)
		}
		if f.srv.Handle(httptest.NewRecorder(), r) {
			t.Fatal("answered")
		}
		if got, err := io.ReadAll(r.Body); err != nil || string(got) != body {
			t.Errorf("%.40q: the next handler read %d bytes (%v), want all %d", body, len(got), err, len(body))
		}
	}
}

func tail(s string, n int) string { return s[max(0, len(s)-n):] }
