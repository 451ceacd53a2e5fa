package oauth

import (
	"fmt"
	"net/http"
	"strings"
)

// Which of the server's endpoints a request addresses, found the way
// WordPress routes a request to its REST API, so that no form of an
// endpoint's URL reaches PHP (wp-includes/class-wp.php parse_request,
// rest-api.php rest_api_loaded, rest-api/class-wp-rest-server.php):
//
//   - The configured path itself: a plain string compare (the hot path).
//   - The path: WordPress's rewrite rule "^wp-json/(.*)" is tried on the
//     request path with the home path and slashes trimmed, then on it
//     urldecoded, and on PATH_INFO (/index.php/wp-json/..., any script that
//     runs WordPress's query parsing); the part after "wp-json/" up to a
//     newline is the route, taken as it is (WordPress urlencodes it into the
//     rule's query, whose parsing decodes it back). Here: every "wp-json/"
//     in the decoded path (Go's r.URL.Path, which is what php_fastcgi's
//     PATH_INFO and PHP's urldecode give). The prefix stays case-sensitive,
//     as the rewrite rule is.
//   - rest_route in the query string, on any path: $_GET is read on every
//     URL that reaches index.php. PHP keeps the last of repeated names and
//     reads rest.route, rest+route, rest[route, %72est_route and
//     " rest_route" as rest_route (phpName).
//   - rest_route in the form body of a POST (urlencoded or multipart):
//     $_POST wins over $_GET and the path (phpform.go).
//   - The route is compared as the REST server compares it: without every
//     trailing / and \ (untrailingslashit), case-insensitively ("@i"), and
//     with a final newline allowed (PCRE's "$").
//
// Over-matching is harmless, under-matching is the bug: every rest_route of
// a request counts (not only the one PHP keeps), ';' separates parameters
// too (arg_separator.input may say so), "wp-json/" counts anywhere in the
// decoded path (also where WordPress, matching the path as sent, keeps an
// escape such as /wp-json/moserver/%74oken), a route's leading slashes and
// anything after a newline are ignored.

// endpoint is a set of the server's endpoints, one bit each.
type endpoint uint8

const (
	epToken endpoint = 1 << iota
	epRevoke
	epJWKS
	epIntrospect
	epUserInfo
	// epClientWellKnown is a client's OpenID discovery document or keys,
	// the plugin's routes moserver/<client_id>/.well-known/openid-configuration
	// and moserver/<client_id>/.well-known/keys: routes with a client id in
	// them, not a path of their own.
	epClientWellKnown

	// numPaths is how many endpoints have a path (token to userinfo).
	numPaths = 5
)

// restPrefix is what WordPress's rewrite rule puts before a REST route.
const restPrefix = "wp-json/"

// router recognises the server's endpoints in requests.
type router struct {
	// paths are the configured paths, one per endpoint in bit order; ""
	// for an endpoint the server does not answer.
	paths [numPaths]string
	// routes are their REST routes without the leading slash
	// ("moserver/token"), "" for a path not under /wp-json/.
	routes [numPaths]string
	// clientWellKnown: the clients' discovery and keys routes are answered.
	clientWellKnown bool
}

// newRouter makes the router for the configured paths (token, revoke, JWKS,
// introspection, userinfo), which must not name one route twice; an empty
// path is an endpoint not answered. clientWellKnown adds the clients'
// discovery and keys routes.
func newRouter(paths [numPaths]string, clientWellKnown bool) (router, error) {
	rt := router{paths: paths, clientWellKnown: clientWellKnown}
	for i, p := range paths {
		if p == "" {
			continue
		}
		if _, after, ok := strings.Cut(p, "/"+restPrefix); ok {
			rt.routes[i] = strings.Trim(after, `/\`)
		}
		for j := range i {
			if paths[j] == "" {
				continue
			}
			if p == paths[j] || rt.routes[i] != "" && strings.EqualFold(rt.routes[i], rt.routes[j]) {
				return router{}, fmt.Errorf("oauth: paths %q and %q name the same WordPress route", paths[j], p)
			}
		}
	}
	return rt, nil
}

// exact returns the endpoint whose configured path is path, if any.
func (rt *router) exact(path string) endpoint {
	for i, p := range rt.paths {
		if path == p && p != "" {
			return 1 << i
		}
	}
	return 0
}

// inPath returns the endpoints path names after a "wp-json/".
func (rt *router) inPath(path string) endpoint {
	var named endpoint
	for {
		i := strings.Index(path, restPrefix)
		if i < 0 {
			return named
		}
		path = path[i+len(restPrefix):]
		named |= rt.route(path)
	}
}

// inQuery returns the endpoints a raw query string names in rest_route.
func (rt *router) inQuery(query string) endpoint {
	var named endpoint
	for query != "" {
		var pair string
		pair, query = nextPair(query)
		if key, value, _ := strings.Cut(pair, "="); isPHPName(key, "rest_route") {
			named |= rt.route(phpUnescape(value))
		}
	}
	return named
}

// route returns the endpoint a REST route names, as WordPress compares
// routes (see above).
func (rt *router) route(v string) endpoint {
	v = trimRoute(v)
	if v == "" {
		return 0
	}
	for i, r := range rt.routes {
		if r != "" && strings.EqualFold(v, r) {
			return 1 << i
		}
	}
	if rt.clientWellKnown {
		if _, doc := parseClientWellKnown(v); doc != 0 {
			return epClientWellKnown
		}
	}
	return 0
}

// trimRoute is a REST route as WordPress compares it: up to a newline,
// without trailing / and \ and without leading slashes.
func trimRoute(v string) string {
	if i := strings.IndexByte(v, '\n'); i >= 0 {
		v = v[:i]
	}
	return strings.TrimLeft(strings.TrimRight(v, `/\`), "/")
}

// wellKnownDoc is one of a client's documents.
type wellKnownDoc uint8

const (
	docDiscovery wellKnownDoc = 1 + iota // .well-known/openid-configuration
	docKeys                              // .well-known/keys
)

// parseClientWellKnown returns the client id and document of a trimmed
// route moserver/<client_id>/.well-known/openid-configuration or
// moserver/<client_id>/.well-known/keys (compared case-insensitively, as
// WordPress compares routes; the client id as it is), or 0.
func parseClientWellKnown(v string) (string, wellKnownDoc) {
	const ns, wk = "moserver/", ".well-known/"
	if len(v) < len(ns) || !strings.EqualFold(v[:len(ns)], ns) {
		return "", 0
	}
	id, name, ok := strings.Cut(v[len(ns):], "/")
	if !ok || id == "" || len(name) < len(wk) || !strings.EqualFold(name[:len(wk)], wk) {
		return "", 0
	}
	switch name = name[len(wk):]; {
	case strings.EqualFold(name, "openid-configuration"):
		return id, docDiscovery
	case strings.EqualFold(name, "keys"):
		return id, docKeys
	}
	return "", 0
}

// clientWellKnownOf returns the client id and document a request names in
// rest_route of its query (the last that names one: WordPress prefers the
// query to the path), else after a "wp-json/" of its path; 0 when none.
func clientWellKnownOf(r *http.Request) (string, wellKnownDoc) {
	var (
		id  string
		doc wellKnownDoc
	)
	for q := r.URL.RawQuery; q != ""; {
		var pair string
		pair, q = nextPair(q)
		if key, value, _ := strings.Cut(pair, "="); isPHPName(key, "rest_route") {
			if i, d := parseClientWellKnown(trimRoute(phpUnescape(value))); d != 0 {
				id, doc = i, d
			}
		}
	}
	if doc != 0 {
		return id, doc
	}
	for path := r.URL.Path; ; {
		i := strings.Index(path, restPrefix)
		if i < 0 {
			return "", 0
		}
		path = path[i+len(restPrefix):]
		if id, doc := parseClientWellKnown(trimRoute(path)); doc != 0 {
			return id, doc
		}
	}
}

// nextPair splits a query string at its first '&' or ';'.
func nextPair(q string) (pair, rest string) {
	if i := strings.IndexAny(q, "&;"); i >= 0 {
		return q[:i], q[i+1:]
	}
	return q, ""
}

// methodOverride reports whether WordPress's REST server would run the
// request as another method: _method in the query (any name PHP reads as
// _method) or an X-HTTP-Method-Override header (php_fastcgi passes a header
// spelt with '_' as the same variable).
func methodOverride(r *http.Request) bool {
	for q := r.URL.RawQuery; q != ""; {
		var pair string
		pair, q = nextPair(q)
		if key, _, _ := strings.Cut(pair, "="); isPHPName(key, "_method") {
			return true
		}
	}
	for name := range r.Header {
		if len(name) == len("X-Http-Method-Override") &&
			strings.EqualFold(strings.ReplaceAll(name, "_", "-"), "X-Http-Method-Override") {
			return true
		}
	}
	return false
}

// Descriptions of the answers to requests PHP must not see.
const (
	descAmbiguous = "The request names more than one endpoint"
	descOverride  = "A method override (_method or X-HTTP-Method-Override) is not accepted on an OPTIONS request"
)

// routed finds the endpoint a request addresses in a form other than its
// configured path. It returns 0 when there is none and the request is the
// next handler's (its body, if read, put back; a form body too large to
// read whole is cut off before any rest_route, see formGuard), and answers
// 400 (returning 0, true) a request that names several endpoints.
func (s *Server) routed(w http.ResponseWriter, r *http.Request) (ep endpoint, answered bool) {
	named := s.routes.inPath(r.URL.Path) | s.routes.inQuery(r.URL.RawQuery)
	if named == 0 {
		if kind := phpFormKind(r.Method, r.Header.Get("Content-Type")); kind != formNone {
			if body, whole := peekBody(r, kind); whole {
				named = s.routes.inForm(kind, body)
			}
		}
	}
	if named&(named-1) != 0 {
		writeError(w, errInvalidRequest(descAmbiguous))
		return 0, true
	}
	return named, false
}

// passOn reports whether a request endpoint ep leaves to the next handler
// (a CORS preflight, a grant PHP answers) may go there; body is its form
// body when it was read. If WordPress would run it as something else, it is
// answered 400 invalid_request instead and passOn returns false:
//
//   - an OPTIONS with a method override. WordPress would run the overridden
//     method's handler (the plugin's token endpoint for _method=POST)
//     instead of answering a preflight. A browser's preflight never carries
//     one (it names the headers it will send, it does not send them), so
//     such an OPTIONS is no preflight: it is refused rather than taken for
//     the method it names, which would make the module read a grant from
//     the body of an OPTIONS.
//   - a request that also names another of the endpoints (rest_route in the
//     query or form body, which WordPress prefers to the path).
func (s *Server) passOn(w http.ResponseWriter, r *http.Request, ep endpoint, body string) bool {
	if r.Method == http.MethodOptions && methodOverride(r) {
		writeError(w, errInvalidRequest(descOverride))
		return false
	}
	named := s.routes.inPath(r.URL.Path) | s.routes.inQuery(r.URL.RawQuery)
	if kind := phpFormKind(r.Method, r.Header.Get("Content-Type")); kind != formNone {
		named |= s.routes.inForm(kind, body)
	}
	if named&^ep != 0 {
		writeError(w, errInvalidRequest(descAmbiguous))
		return false
	}
	return true
}
