package oauth

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"
)

// MaxBodyBytes is the largest request body the token endpoint reads (413 above).
const MaxBodyBytes = 64 << 10

// maxMultipartParts bounds the work a multipart body can ask for.
const maxMultipartParts = 64

// params holds the parameters of a token or revocation request. The first
// few are kept inline, so a usual request (four or five parameters) costs no
// allocation; beyond that they go to a map, so many parameters still cost
// constant time each. Names are unique: a repeated name keeps its first value.
type params struct {
	n      int
	inline [inlineParams]param
	more   map[string]string // nil until inline is full
	// duplicate names the first parameter that was sent more than once.
	duplicate string
}

// inlineParams is how many parameters params holds without allocating.
const inlineParams = 8

type param struct{ name, value string }

func (p *params) lookup(name string) (string, bool) {
	for i := range p.n {
		if p.inline[i].name == name {
			return p.inline[i].value, true
		}
	}
	v, ok := p.more[name]
	return v, ok
}

func (p *params) get(name string) string {
	v, _ := p.lookup(name)
	return v
}

func (p *params) has(name string) bool {
	_, ok := p.lookup(name)
	return ok
}

var errBodyTooLarge = errors.New("request body too large")

// readBody reads the whole request body, up to MaxBodyBytes, into a pooled
// buffer and returns it as a string: one allocation, at its final size.
//
// The buffer grows with what has arrived, never ahead of it on the word of
// Content-Length: a client that announces 64 KiB and sends one byte holds a
// small buffer while it waits, not 64 KiB. The announced length only caps
// each step, so a body that arrives as announced fills its buffer exactly
// (with the one spare byte that sees EOF without growing).
func readBody(r *http.Request) (string, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return "", nil
	}
	if r.ContentLength > MaxBodyBytes {
		return "", errBodyTooLarge
	}
	body, whole, err := readUpTo(r.Body, r.ContentLength)
	switch {
	case err != nil:
		return "", err
	case !whole:
		return "", errBodyTooLarge
	}
	return body, nil
}

// readUpTo reads a body, its buffer growing as above, until its end or
// until it is larger than MaxBodyBytes. It returns what it read, and
// whether that was the whole body.
func readUpTo(body io.Reader, announced int64) (read string, whole bool, err error) {
	scratch := getBody()
	buf := (*scratch)[:0]
	defer func() {
		*scratch = buf // a grown buffer goes back to the pool (up to its bound)
		putBody(scratch)
	}()
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, nextBodyCap(len(buf), announced)-len(buf))
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		switch {
		case len(buf) > MaxBodyBytes:
			return string(buf), false, nil
		case err == io.EOF:
			return string(buf), true, nil
		case err != nil:
			return string(buf), false, err
		}
	}
}

// firstBodyRead is the buffer a body's first read gets when the pooled one
// has none: most token requests fit in it.
const firstBodyRead = 512

// nextBodyCap is the capacity a full body buffer of n bytes grows to: twice
// what has arrived (firstBodyRead at first), no more than the announced
// length (when there is one and it has not been passed) plus the byte that
// sees EOF, and no more than MaxBodyBytes+1, the byte that tells "too large".
func nextBodyCap(n int, announced int64) int {
	c := max(2*n, firstBodyRead)
	if announced > 0 && announced >= int64(n) {
		c = min(c, int(announced)+1)
	}
	return min(c, MaxBodyBytes+1)
}

// parseParams decodes a body by its Content-Type: form-urlencoded (also when
// the type is missing), JSON, or multipart/form-data. A body of another type
// is read as JSON when it looks like a JSON object and as a form otherwise,
// as lenient clients expect. The values may be substrings of body.
func parseParams(contentType, body string) (params, *Error) {
	if isFormType(contentType) {
		return parseForm(body)
	}
	mediaType, mtParams, _ := mime.ParseMediaType(contentType)
	switch {
	case mediaType == "multipart/form-data":
		return parseMultipart(body, mtParams["boundary"])
	case mediaType == "application/json" || strings.HasSuffix(mediaType, "+json"):
		return parseJSON(body)
	case mediaType == "application/x-www-form-urlencoded" || mediaType == "":
		return parseForm(body)
	case len(strings.TrimSpace(body)) > 0 && strings.TrimSpace(body)[0] == '{':
		return parseJSON(body)
	default:
		return parseForm(body)
	}
}

// isFormType is the allocation-free shortcut of parseParams for the usual
// case: it reports whether the media type (before any ';') is missing or is
// application/x-www-form-urlencoded in ASCII letters of any case. Both mean
// a form whatever the parameters say: for such a type mime.ParseMediaType
// returns either that media type or, when the parameters are malformed,
// none. Anything else is left to mime.ParseMediaType.
func isFormType(contentType string) bool {
	const form = "application/x-www-form-urlencoded"
	base, _, _ := strings.Cut(contentType, ";")
	base = strings.TrimSpace(base)
	if base == "" {
		return true
	}
	if len(base) != len(form) {
		return false
	}
	for i := range len(form) {
		c := base[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != form[i] {
			return false
		}
	}
	return true
}

func (p *params) add(name, value string) *Error {
	if !utf8.ValidString(name) || !utf8.ValidString(value) {
		return errInvalidRequest("The request body is not valid UTF-8")
	}
	if p.has(name) {
		if p.duplicate == "" {
			p.duplicate = name
		}
		return nil
	}
	if p.n < inlineParams {
		p.inline[p.n] = param{name, value}
		p.n++
		return nil
	}
	if p.more == nil {
		p.more = make(map[string]string)
	}
	p.more[name] = value
	return nil
}

func parseForm(s string) (params, *Error) {
	var p params
	for s != "" {
		var pair string
		pair, s, _ = strings.Cut(s, "&")
		if pair == "" {
			continue
		}
		name, value, _ := strings.Cut(pair, "=")
		var err error
		if name, err = url.QueryUnescape(name); err != nil {
			return p, errInvalidRequest("The request body is not valid form data")
		}
		if value, err = url.QueryUnescape(value); err != nil {
			return p, errInvalidRequest("The request body is not valid form data")
		}
		if e := p.add(name, value); e != nil {
			return p, e
		}
	}
	return p, nil
}

func parseJSON(body string) (params, *Error) {
	var p params
	bad := func(desc string) (params, *Error) { return p, errInvalidRequest(desc) }
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return bad("The request body must be a JSON object")
	}
	for dec.More() {
		tok, err = dec.Token()
		if err != nil {
			return bad("The request body is not valid JSON")
		}
		name, _ := tok.(string)
		tok, err = dec.Token()
		if err != nil {
			return bad("The request body is not valid JSON")
		}
		value, ok := tok.(string)
		if !ok {
			return bad("Parameter " + quoteName(name) + " must be a JSON string")
		}
		if e := p.add(name, value); e != nil {
			return p, e
		}
	}
	if tok, err = dec.Token(); err != nil || tok != json.Delim('}') {
		return bad("The request body is not valid JSON")
	}
	if _, err = dec.Token(); err != io.EOF {
		return bad("The request body must hold exactly one JSON object")
	}
	return p, nil
}

func parseMultipart(body, boundary string) (params, *Error) {
	var p params
	if boundary == "" {
		return p, errInvalidRequest("The multipart body has no boundary")
	}
	mr := multipart.NewReader(strings.NewReader(body), boundary)
	for i := 0; ; i++ {
		part, err := mr.NextPart()
		if err == io.EOF {
			return p, nil
		}
		if err != nil || i >= maxMultipartParts {
			return p, errInvalidRequest("The request body is not valid multipart/form-data")
		}
		value, err := io.ReadAll(io.LimitReader(part, MaxBodyBytes))
		if err != nil {
			return p, errInvalidRequest("The request body is not valid multipart/form-data")
		}
		if name := part.FormName(); name != "" {
			if e := p.add(name, string(value)); e != nil {
				return p, e
			}
		}
	}
}

// quoteName renders a parameter name for an error description, cut short
// and stripped of anything that is not printable.
func quoteName(name string) string {
	if len(name) > 40 {
		name = name[:40] + "..."
	}
	return `"` + strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '"' || r == utf8.RuneError {
			return -1
		}
		return r
	}, name) + `"`
}
