package oauth

import (
	"errors"
	"io"
	"net/http"
	"strings"
)

// How PHP reads parameters, as far as routing needs: which bodies become
// $_POST, how a parameter's name is read, and where a rest_route is in a
// form body. Checked against PHP 8.2 (main/php_variables.c, main/rfc1867.c)
// and through the real WordPress (integration/wordpress_routes_test.go).

// formKind is how PHP parses a request body into $_POST.
type formKind uint8

const (
	formNone formKind = iota
	formURLEncoded
	formMultipart
)

// phpFormKind is the formKind of a request: PHP fills $_POST for a POST
// only, and only for these two media types, compared case-insensitively up
// to the first ';', ',' or space of the Content-Type.
func phpFormKind(method, contentType string) formKind {
	if method != http.MethodPost {
		return formNone
	}
	if i := strings.IndexAny(contentType, ";, "); i >= 0 {
		contentType = contentType[:i]
	}
	switch {
	case strings.EqualFold(contentType, "application/x-www-form-urlencoded"):
		return formURLEncoded
	case strings.EqualFold(contentType, "multipart/form-data"):
		return formMultipart
	}
	return formNone
}

// phpName follows, a byte at a time, whether a parameter name is want once
// PHP has registered it: PHP drops leading spaces, reads '.' and ' ' (and a
// '[' that no ']' closes) as '_', and ends a name at a NUL. A '[' where want
// has '_' counts even when a ']' follows (PHP then makes an array): over-
// matching is harmless.
type phpName struct {
	want string
	n    int  // bytes of want matched; -1 once it cannot match
	nul  bool // a NUL right after the whole of want: the rest is cut off
}

func (m *phpName) reset(want string) { *m = phpName{want: want} }

func (m *phpName) add(c byte) {
	switch {
	case m.n < 0 || m.nul:
	case m.n == 0 && c == ' ':
	case m.n == len(m.want):
		if c == 0 {
			m.nul = true
		} else {
			m.n = -1
		}
	case c == m.want[m.n] || m.want[m.n] == '_' && (c == '.' || c == ' ' || c == '['):
		m.n++
	default:
		m.n = -1
	}
}

func (m *phpName) matched() bool { return m.nul || m.n == len(m.want) }

// isPHPName reports whether the raw (still %-encoded) name of a query or
// form parameter is want once PHP has decoded and registered it.
func isPHPName(raw, want string) bool {
	var u urlName
	u.name.reset(want)
	for i := 0; i < len(raw); i++ {
		u.add(raw[i])
	}
	u.flush()
	return u.name.matched()
}

// urlName feeds a %-encoded name to a phpName as PHP's urldecode decodes
// it: '+' is a space, '%' and two hex digits a byte, any other '%' itself.
type urlName struct {
	name phpName
	pct  uint8 // 1: after a '%'; 2: after a '%' and the hex digit hex
	hex  byte
}

func (u *urlName) add(c byte) {
	switch u.pct {
	case 1:
		if isHex(c) {
			u.hex, u.pct = c, 2
			return
		}
		u.pct = 0
		u.name.add('%')
	case 2:
		u.pct = 0
		if isHex(c) {
			u.name.add(unhex(u.hex)<<4 | unhex(c))
			return
		}
		u.name.add('%')
		u.name.add(u.hex)
	}
	switch c {
	case '%':
		u.pct = 1
	case '+':
		u.name.add(' ')
	default:
		u.name.add(c)
	}
}

// flush ends the name: an escape left open is literal.
func (u *urlName) flush() {
	switch u.pct {
	case 1:
		u.name.add('%')
	case 2:
		u.name.add('%')
		u.name.add(u.hex)
	}
	u.pct = 0
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// phpUnescape decodes s as PHP's urldecode does (see urlName); it returns s
// itself when there is nothing to decode.
func phpUnescape(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b.WriteByte(' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// formScan finds, a chunk at a time, where a form body carries a parameter
// PHP reads as rest_route: the byte that completes it, which is
//
//   - urlencoded: the '=' after its name (so a body cut before that byte
//     gives PHP at most an empty rest_route);
//   - multipart: the byte after a name="..." parameter of a part's headers
//     (closing quote, space, ';' or a line end), found wherever "name=" is
//     (also in filename=, or in a value: over-matching), and read as PHP
//     reads header values, where a line without ':' or starting with a
//     space continues the one before (CR and LF are skipped). A body cut
//     before that byte leaves PHP a part whose headers never end, which it
//     drops.
type formScan struct {
	kind formKind
	// urlencoded
	inValue bool
	key     urlName
	// multipart
	last4 uint32 // the last four bytes, lower-cased, CR and LF left out
	state uint8  // one of the mp* states below
	quote byte
	name  phpName
}

const (
	mpNone     = iota // not in a name parameter
	mpStart           // after "name=", before its value
	mpQuoted          // in a quoted value
	mpUnquoted        // in an unquoted value
)

func newFormScan(kind formKind) *formScan {
	s := &formScan{kind: kind}
	s.key.name.reset("rest_route")
	return s
}

// scan consumes b up to and including the first byte that completes a
// rest_route and returns its index, or consumes all of b and returns -1.
func scan[T string | []byte](s *formScan, b T) int {
	for i := 0; i < len(b); i++ {
		if s.step(b[i]) {
			return i
		}
	}
	return -1
}

func (s *formScan) step(c byte) bool {
	if s.kind == formMultipart {
		return s.stepMultipart(c)
	}
	switch {
	case c == '&' || c == ';':
		s.inValue = false
		s.key.pct = 0
		s.key.name.reset("rest_route")
	case s.inValue:
	case c == '=':
		s.key.flush()
		s.inValue = true
		return s.key.name.matched()
	default:
		s.key.add(c)
	}
	return false
}

func (s *formScan) stepMultipart(c byte) (found bool) {
	nameEq := c == '=' && s.last4 == 'n'<<24|'a'<<16|'m'<<8|'e'
	if c != '\r' && c != '\n' {
		s.last4 = s.last4<<8 | uint32(lower(c))
	}
	switch s.state {
	case mpStart:
		switch {
		case isSpace(c):
		case c == '"' || c == '\'':
			s.quote, s.state = c, mpQuoted
		default:
			s.state = mpUnquoted
			found = s.unquoted(c)
		}
	case mpQuoted:
		switch c {
		case '\r', '\n':
			found = s.name.matched()
		case s.quote:
			found = s.name.matched()
			s.state = mpNone
		default:
			s.name.add(c)
		}
	case mpUnquoted:
		found = s.unquoted(c)
	}
	if found {
		s.state = mpNone
	}
	if nameEq {
		s.state = mpStart
		s.name.reset("rest_route")
	}
	return found
}

func (s *formScan) unquoted(c byte) bool {
	switch {
	case c == '\r' || c == '\n':
		return s.name.matched()
	case isSpace(c) || c == ';':
		s.state = mpNone
		return s.name.matched()
	}
	s.name.add(c)
	return false
}

func isSpace(c byte) bool { return c == ' ' || '\t' <= c && c <= '\r' }

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// inForm returns the endpoints a whole form body names in rest_route.
func (rt *router) inForm(kind formKind, body string) endpoint {
	if kind == formNone {
		return 0
	}
	var named endpoint
	s := newFormScan(kind)
	for off := 0; ; {
		i := scan(s, body[off:])
		if i < 0 {
			return named
		}
		off += i + 1
		if kind == formURLEncoded {
			value, _ := nextPair(body[off:])
			named |= rt.route(phpUnescape(value))
		} else {
			named |= rt.route(multipartValue(body[off-1:]))
		}
	}
}

// multipartValue is the value of the part in whose headers rest starts (at
// the byte that completed its name): from the first empty line to the line
// starting "--" (the boundary: PHP ends a value at "\n--<boundary>", which
// is never before the first "\n--"), without the line end before it.
func multipartValue(rest string) string {
	end := strings.Index(rest, "\n\n")
	start := end + 2
	if i := strings.Index(rest, "\n\r\n"); i >= 0 && (end < 0 || i < end) {
		end, start = i, i+3
	}
	if end < 0 {
		return ""
	}
	v := rest[start:]
	if i := strings.Index(v, "\n--"); i >= 0 {
		v = v[:i]
	}
	return strings.TrimRight(v, "\r\n")
}

// peekBody reads up to MaxBodyBytes of the form body of r (its buffer
// growing with what arrives, as readBody's) and puts back what it read,
// byte for byte; whole reports whether that was all of it.
// When it was not, the body goes on through a formGuard.
func peekBody(r *http.Request, kind formKind) (body string, whole bool) {
	if r.Body == nil || r.Body == http.NoBody {
		return "", true
	}
	orig := r.Body
	if r.ContentLength > MaxBodyBytes {
		r.Body = &formGuard{r: orig, c: orig, scan: newFormScan(kind)}
		return "", false
	}
	body, whole, _ = readUpTo(orig, r.ContentLength) // a read error recurs to the next handler
	if whole {
		r.Body = io.NopCloser(strings.NewReader(body))
		return body, true
	}
	r.Body = &formGuard{r: io.MultiReader(strings.NewReader(body), orig), c: orig, scan: newFormScan(kind)}
	return "", false
}

// errFormRoute ends a form body that formGuard cut off.
var errFormRoute = errors.New("moserver: a form body too large for the module to read carries a rest_route parameter: cut off before it")

// formGuard passes on a form body the module did not read whole (over
// MaxBodyBytes) and ends it with errFormRoute just before the byte that
// would complete a rest_route parameter, so that PHP can never route the
// request by one (WordPress prefers $_POST's rest_route to the URL's). Any
// rest_route is cut, whatever it names: the module cannot answer such a
// body (it would be 413 at its endpoints), and none of WordPress's own
// requests carry one.
type formGuard struct {
	r    io.Reader
	c    io.Closer
	scan *formScan
	cut  bool
}

func (g *formGuard) Read(p []byte) (int, error) {
	if g.cut {
		return 0, errFormRoute
	}
	n, err := g.r.Read(p)
	if i := scan(g.scan, p[:n]); i >= 0 {
		g.cut = true
		return i, errFormRoute
	}
	return n, err
}

func (g *formGuard) Close() error { return g.c.Close() }
