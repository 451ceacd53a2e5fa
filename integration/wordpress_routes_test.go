//go:build linux

package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-moserver/caddy-moserver/internal/testutil/caddyproc"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/mariadbtest"
)

// TestWordPressRoutes sends every form of the module's endpoints' URLs that
// WordPress routes to them to two sites over one real WordPress (see
// TestWordPressE2E): the README's site, moserver before php_fastcgi, and a
// site without moserver, straight to PHP. On the second, a must-use plugin
// (testdata/wordpress/mu-plugins) registers moserver/token, revoke, jwks,
// introspect and resource and answers which of them WordPress routed the
// request to: the proof that WordPress does route that form there. On the
// first, the module's own answer (a token, its revocation and introspection
// answers, its JWKS, the userinfo endpoint's 401 without a token) shows that
// the request never reached PHP. Near misses go to PHP
// on both sites alike.
func TestWordPressRoutes(t *testing.T) {
	wp := startWordPress(t)
	mariadbtest.InsertClient(t, wp.db, "wp_", mariadbtest.Client{Name: "Routes Client", ID: clientID, Secret: clientSecret,
		RedirectURI: wp.base + "/callback"})
	module := strings.TrimPrefix(wp.base, "http://")
	direct := fmt.Sprintf("127.0.0.1:%d", caddyproc.FreePort(t))
	caddyproc.Start(t, wp.caddyfile(t, fmt.Sprintf(`http://%s {
	root * %s
	php_fastcgi unix/%s
	file_server
}
`, direct, wp.tree, wp.fpm)), wp.base+"/")

	const form = "application/x-www-form-urlencoded"
	// body is a form every endpoint of the module answers in its own way: a
	// token, revocation's empty 200, introspection's {"active":false}, and
	// the 405 of the JWKS and the userinfo endpoint to a POST.
	body := url.Values{"grant_type": {"client_credentials"}, "token": {"not-a-token"},
		"client_id": {clientID}, "client_secret": {clientSecret}}.Encode()
	multipart := func(part string) string {
		var b strings.Builder
		b.WriteString("--XX\r\n" + part + "\r\n")
		for _, kv := range [][2]string{{"grant_type", "client_credentials"}, {"token", "not-a-token"},
			{"client_id", clientID}, {"client_secret", clientSecret}} {
			fmt.Fprintf(&b, "--XX\r\nContent-Disposition: form-data; name=%q\r\n\r\n%s\r\n", kv[0], kv[1])
		}
		return b.String() + "--XX--\r\n"
	}
	type variant struct {
		method, target, contentType, body string
		header                            []string
	}
	post := func(target string) variant { return variant{http.MethodPost, target, form, body, nil} }
	inBody := func(target, contentType, b string) variant {
		return variant{http.MethodPost, target, contentType, b, nil}
	}
	// expand fills in an endpoint's name: {e} as it is, {E} capitalised, {EE}
	// in capitals.
	expand := func(v variant, e string) variant {
		r := strings.NewReplacer("{e}", e, "{E}", strings.ToUpper(e[:1])+e[1:], "{EE}", strings.ToUpper(e))
		v.target, v.body = r.Replace(v.target), r.Replace(v.body)
		return v
	}
	// send sends v to a site with the probe's header and reads the answer.
	send := func(t *testing.T, site string, v variant) reply {
		t.Helper()
		r := rawRequest(t, site, v.method, v.target, v.contentType, v.body,
			append([]string{"X-E2E-Route-Probe", "1"}, v.header...)...)
		if strings.HasPrefix(r.header.Get("Content-Type"), "application/json") && r.body != "" {
			_ = json.Unmarshal([]byte(r.body), &r.json)
		}
		return r
	}
	// fromPHP reports whether WordPress wrote an answer: its REST API's
	// headers, or a page.
	fromPHP := func(r reply) bool {
		return r.header.Get("X-Robots-Tag") != "" || strings.HasPrefix(r.header.Get("Content-Type"), "text/html") ||
			strings.Contains(r.body, "moserver_e2e_probe")
	}
	// routedBy checks that WordPress itself routes v to endpoint e.
	routedBy := func(t *testing.T, v variant, e string) {
		t.Helper()
		r := send(t, direct, v)
		if r.status != 200 || r.str("moserver_e2e_probe") != e {
			t.Errorf("straight to PHP, %s %q is not routed to %s: %d %.300s", v.method, v.target, e, r.status, r.body)
		}
	}
	// answeredByModule checks that the module answered v as endpoint e.
	answeredByModule := func(t *testing.T, v variant, e string) {
		t.Helper()
		r := send(t, module, v)
		ok := !fromPHP(r)
		switch {
		case e == "jwks" && v.method == http.MethodGet:
			ok = ok && r.status == 200 && r.json["keys"] != nil
		case e == "resource" && v.method == http.MethodGet:
			ok = ok && r.status == 401 && r.header.Get("Www-Authenticate") == `Bearer realm="moserver"`
		case e == "jwks", e == "resource":
			ok = ok && r.status == 405 && r.header.Get("Allow") == "GET, HEAD"
		case e == "token":
			ok = ok && r.status == 200 && r.str("access_token") != "" && r.header.Get("Cache-Control") == "no-store"
		case e == "revoke":
			ok = ok && r.status == 200 && r.body == "" && r.header.Get("Cache-Control") == "no-store"
		case e == "introspect":
			ok = ok && r.status == 200 && r.json["active"] == false
		default: // an error of the module's
			ok = ok && fmt.Sprintf("%d %s", r.status, r.str("error")) == e
		}
		if !ok {
			t.Errorf("through moserver, %s %q was not answered by the module as %s: %d %v %.300s",
				v.method, v.target, e, r.status, r.header, r.body)
		}
	}

	// Forms WordPress routes to an endpoint.
	routed := []variant{
		post("/wp-json/moserver/{e}"),
		// REST routes are case-insensitive; untrailingslashit drops every / and \ at the end.
		post("/wp-json/moserver/{E}"),
		post("/wp-json/MOSERVER/{EE}//"),
		post("/wp-json/moserver/{e}/"),
		// The rewrite rule is tried on the path as sent, then urldecoded.
		post("/wp-j%73on/moserver/{e}"),
		post("/wp-j%73on/moserver/{e}%2F%5C"),
		post("/wp-j%73on/moserver/{e}%0Ajunk"), // the rule's route ends at a newline
		// PATH_INFO, of index.php and of the two other scripts that parse the query.
		post("/index.php/wp-json/moserver/{e}"),
		post("/index.php/wp-json/moserver/{E}/"),
		post("/index.php/wp-json/moserver%2F{e}%2F%5C"),
		post("/index.php/wp-json/moserver/{e}%0Ajunk"),
		post("/wp-blog-header.php/wp-json/moserver/{e}"),
		post("/wp-trackback.php/wp-json/moserver/{e}"),
		post("//wp-json/moserver/{e}"),
		// rest_route in the query, on any path that reaches those scripts.
		post("/?rest_route=/moserver/{e}"),
		post("/?rest_route=/moserver/{e}/"),
		post("/?rest_route=/Moserver/{E}"),
		post("/?rest_route=%2Fmoserver%2F{e}"),
		post("/?rest_route=/moserver/{e}%5C/%2F"),
		post("/?rest_route=/moserver/{e}%0A"), // PCRE's $ allows a final newline
		post("/index.php?rest_route=/moserver/{e}"),
		post("/sample-page/?rest_route=/moserver/{e}"),
		post("/no/such/page?rest_route=/moserver/{e}"),
		post("/wp-json/wp/v2/posts?rest_route=/moserver/{e}"),
		post("/wp-blog-header.php?rest_route=/moserver/{e}"),
		post("/wp-trackback.php?rest_route=/moserver/{e}"),
		// PHP's reading of names; the last of repeated names wins.
		post("/?rest.route=/moserver/{e}"),
		post("/?rest+route=/moserver/{e}"),
		post("/?rest%20route=/moserver/{e}"),
		post("/?rest[route=/moserver/{e}"),
		post("/?%72est_route=/moserver/{e}"),
		post("/?rest%5Froute=/moserver/{e}"),
		post("/?+rest_route=/moserver/{e}"),
		post("/?rest_route%00x=/moserver/{e}"),
		post("/?rest_route=/wp/v2&rest_route=/moserver/{e}"),
		// rest_route in a POST's form body, which beats the query and the path.
		inBody("/", form, body+"&rest_route=/moserver/{e}"),
		inBody("/", form, body+"&rest.route=%2FMoserver%2F{E}%2F"),
		inBody("/", "Application/X-WWW-Form-Urlencoded ;charset=UTF-8", body+"&rest_route=/moserver/{e}"),
		inBody("/wp-json/wp/v2/posts", form, body+"&rest_route=/moserver/{e}"),
		inBody("/sample-page/", form, body+"&rest_route=/moserver/{e}"),
		inBody("/", "multipart/form-data; boundary=XX", multipart("Content-Disposition: form-data; name=\"rest_route\"\r\n\r\n/moserver/{e}")),
		inBody("/", "multipart/form-data; boundary=XX", multipart("Content-Disposition: form-data; name=rest.route\r\n\r\n/moserver/{E}/")),
		// PHP joins a header line starting with a space to the one before.
		inBody("/", "multipart/form-data; boundary=XX", multipart("Content-Disposition: form-data; name=\"rest\r\n route\"\r\n\r\n/moserver/{e}")),
	}
	// The module routes this one too but cannot read its body (a header line
	// without ':', which PHP joins to the one before): its own 400.
	unreadable := inBody("/", "multipart/form-data; boundary=XX", multipart("Content-Disposition: form-data; name=\"rest\r\n_route\"\r\n\r\n/moserver/{e}"))

	for _, e := range []string{"token", "revoke", "jwks", "introspect", "resource"} {
		t.Run(e, func(t *testing.T) {
			for _, v := range routed {
				v := expand(v, e)
				routedBy(t, v, e)
				answeredByModule(t, v, e)
				if (e == "jwks" || e == "resource") && v.body == body {
					v.method, v.contentType, v.body = http.MethodGet, "", ""
					routedBy(t, v, e)
					answeredByModule(t, v, e)
				}
			}
			v := expand(unreadable, e)
			routedBy(t, v, e)
			if e == "jwks" || e == "resource" {
				answeredByModule(t, v, e)
			} else {
				answeredByModule(t, v, "400 invalid_request")
			}

			// A preflight is WordPress's to answer; with a method override
			// WordPress runs the overridden method's handler instead, so the
			// module refuses it.
			preflight := variant{http.MethodOptions, "/wp-json/moserver/{e}", "", "",
				[]string{"Origin", "https://app.example", "Access-Control-Request-Method", "POST"}}
			for _, target := range []string{"/wp-json/moserver/{e}", "/?rest_route=/moserver/{E}/"} {
				preflight.target = target
				v := expand(preflight, e)
				for site, name := range map[string]string{direct: "straight to PHP", module: "through moserver"} {
					r := send(t, site, v)
					if r.status != 200 || r.str("namespace") != "moserver" || strings.Contains(r.body, "moserver_e2e_probe") {
						t.Errorf("%s, OPTIONS %s: %d %.300s %v, want WordPress's answer to a preflight", name, v.target, r.status, r.body, r.header)
					}
				}
			}
			for _, override := range []variant{
				{target: "/wp-json/moserver/{e}?_method=POST"},
				{target: "/?rest_route=/moserver/{e}&.method=post"},
				{target: "/wp-json/moserver/{E}/", header: []string{"X-HTTP-Method-Override", "POST"}},
			} {
				v := expand(override, e)
				v.method = http.MethodOptions
				r := send(t, direct, v)
				if r.str("moserver_e2e_probe") != e || r.str("method") != "POST" {
					t.Errorf("straight to PHP, OPTIONS %s %v: %d %.300s, want the POST handler of %s run",
						v.target, v.header, r.status, r.body, e)
				}
				answeredByModule(t, v, "400 invalid_request")
			}

			// Near misses: WordPress does not route them to the endpoint, and
			// the module leaves them to it.
			for _, v := range []variant{
				post("/WP-JSON/moserver/{e}"), // the rewrite rule is case-sensitive
				post("/wp-json/moserver/{e}s"),
				post("/wp-json/moserver/{e}+"),
				post("/wp-json/moserver/{e}/x"),
				post("/?rest_route=/moserver/{e}x"),
				post("/?rest_route=%252Fmoserver%252F{e}"), // decoded once
				post("/?REST_ROUTE=/moserver/{e}"),
				post("/?rest_route_=/moserver/{e}"),
				{http.MethodPut, "/", form, body + "&rest_route=/moserver/{e}", nil}, // no $_POST for a PUT
				inBody("/", "text/plain", body+"&rest_route=/moserver/{e}"),
				inBody("/", form, body+"&rest_routes=/moserver/{e}"),
			} {
				v := expand(v, e)
				d, m := send(t, direct, v), send(t, module, v)
				if d.str("moserver_e2e_probe") == e || !fromPHP(d) {
					t.Errorf("straight to PHP, %s %q: %d %.300s, want WordPress not to route it to %s", v.method, v.target, d.status, d.body, e)
				}
				if !fromPHP(m) || m.status != d.status || m.header.Get("Content-Type") != d.header.Get("Content-Type") {
					t.Errorf("through moserver, %s %q: %d %.300s, want it left to WordPress (%d %s)",
						v.method, v.target, m.status, m.body, d.status, d.header.Get("Content-Type"))
				}
			}
		})
	}

	t.Run("over-matching", func(t *testing.T) {
		// The module answers these, which WordPress does not route to the
		// endpoint: harmless.
		for _, v := range []variant{
			post("/wp-json/moserver/%74oken"), // escapes after wp-json/ are kept as sent
			post("/x/wp-json/moserver/token"), // no home path /x here
			post("/wp-json//moserver/token"),
			post("/?rest_route=/moserver/token;x"),
			post("/wp-login.php?rest_route=/moserver/token"), // does not parse the query
		} {
			if r := send(t, direct, v); r.str("moserver_e2e_probe") == "token" {
				t.Errorf("straight to PHP, %s is routed to the token endpoint: move it to the routed forms", v.target)
			}
			answeredByModule(t, v, "token")
		}
	})

	t.Run("form bodies over 64 KiB", func(t *testing.T) {
		pad := strings.Repeat("p=", 40<<10)
		v := inBody("/", form, pad+"&"+body+"&rest_route=/moserver/token")
		routedBy(t, v, "token")
		// The module cannot read it whole: it cuts the body off before the
		// rest_route, and the request fails (Caddy's 502 for a body it could
		// not read to the end) instead of reaching the plugin.
		if r := send(t, module, v); fromPHP(r) || r.status != http.StatusBadGateway {
			t.Errorf("through moserver: %d %v %.300s, want the request cut off", r.status, r.header, r.body)
		}
		// Without rest_route, it goes to WordPress whole.
		v = inBody("/", form, pad+"&rest_routes=/moserver/token")
		d, m := send(t, direct, v), send(t, module, v)
		if m.status != d.status || !strings.Contains(m.body, "<title>"+wp.title) {
			t.Errorf("through moserver: %d %.300s, want WordPress's home page as straight to PHP (%d)", m.status, m.body, d.status)
		}
	})
}

// rawRequest sends one HTTP/1.1 request whose request-target is target byte
// for byte (no client normalises it) and reads the answer. header holds
// name, value pairs.
func rawRequest(t *testing.T, addr, method, target, contentType, body string, header ...string) reply {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, target, addr)
	if contentType != "" {
		fmt.Fprintf(&b, "Content-Type: %s\r\n", contentType)
	}
	if body != "" || method == http.MethodPost || method == http.MethodPut {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	for i := 0; i+1 < len(header); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", header[i], header[i+1])
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	// A server may answer before it has read the whole body (and close):
	// the answer is what counts.
	_, werr := io.WriteString(conn, b.String())
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s %q: %v (writing: %v)", method, target, err, werr)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %q: reading the answer: %v", method, target, err)
	}
	return reply{status: res.StatusCode, header: res.Header, body: string(data)}
}
