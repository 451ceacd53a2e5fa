package oauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"
)

// MaxBodyBytes is the largest request body the token endpoint reads (413 above).
const MaxBodyBytes = 64 << 10

// maxMultipartParts bounds the work a multipart body can ask for.
const maxMultipartParts = 64

// params holds the parameters of a token or revocation request.
type params struct {
	values map[string]string
	// duplicate names the first parameter that was sent more than once.
	duplicate string
}

func (p params) get(name string) string { return p.values[name] }

func (p params) has(name string) bool {
	_, ok := p.values[name]
	return ok
}

var errBodyTooLarge = errors.New("request body too large")

// readBody reads the whole request body, up to MaxBodyBytes.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > MaxBodyBytes {
		return nil, errBodyTooLarge
	}
	size := 512
	if r.ContentLength > 0 {
		size = int(r.ContentLength) + 1
	}
	buf := bytes.NewBuffer(make([]byte, 0, size))
	n, err := buf.ReadFrom(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return nil, err
	}
	if n > MaxBodyBytes {
		return nil, errBodyTooLarge
	}
	return buf.Bytes(), nil
}

// parseParams decodes a body by its Content-Type: form-urlencoded (also when
// the type is missing), JSON, or multipart/form-data. A body of another type
// is read as JSON when it looks like a JSON object and as a form otherwise,
// as lenient clients expect.
func parseParams(contentType string, body []byte) (params, *Error) {
	mediaType, mtParams, _ := mime.ParseMediaType(contentType)
	switch {
	case mediaType == "multipart/form-data":
		return parseMultipart(body, mtParams["boundary"])
	case mediaType == "application/json" || strings.HasSuffix(mediaType, "+json"):
		return parseJSON(body)
	case mediaType == "application/x-www-form-urlencoded" || mediaType == "":
		return parseForm(body)
	case len(bytes.TrimSpace(body)) > 0 && bytes.TrimSpace(body)[0] == '{':
		return parseJSON(body)
	default:
		return parseForm(body)
	}
}

func newParams() params { return params{values: make(map[string]string, 8)} }

func (p *params) add(name, value string) *Error {
	if !utf8.ValidString(name) || !utf8.ValidString(value) {
		return errInvalidRequest("The request body is not valid UTF-8")
	}
	if _, dup := p.values[name]; dup {
		if p.duplicate == "" {
			p.duplicate = name
		}
		return nil
	}
	p.values[name] = value
	return nil
}

func parseForm(body []byte) (params, *Error) {
	p := newParams()
	s := string(body)
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

func parseJSON(body []byte) (params, *Error) {
	p := newParams()
	bad := func(desc string) (params, *Error) { return p, errInvalidRequest(desc) }
	dec := json.NewDecoder(bytes.NewReader(body))
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

func parseMultipart(body []byte, boundary string) (params, *Error) {
	p := newParams()
	if boundary == "" {
		return p, errInvalidRequest("The multipart body has no boundary")
	}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
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
