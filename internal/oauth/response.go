package oauth

import (
	"net/http"
	"strconv"
	"sync"
	"unsafe"

	"github.com/caddy-moserver/caddy-moserver/internal/jsonenc"
)

// jsonHeaderValues holds the header values of one JSON response in a single
// allocation. Each header gets its own one-element slice of vals, shared with
// no other response, so a later handler that edits a value in place (as
// Caddy's header replacements do) changes only this response.
type jsonHeaderValues struct {
	vals   [4]string
	length [20]byte // the digits of Content-Length; vals[3] points here
}

// setJSONHeaders sets the headers of every JSON response of the token
// endpoints (Content-Type, Cache-Control: no-store, Pragma: no-cache) and
// Content-Length: the same as h.Set for each, in one allocation instead of
// five.
func setJSONHeaders(h http.Header, contentLength int) {
	v := new(jsonHeaderValues)
	digits := strconv.AppendInt(v.length[:0], int64(contentLength), 10)
	v.vals = [4]string{
		"application/json; charset=UTF-8",
		"no-store",
		"no-cache",
		// v.length is never written again, so it can back the string.
		unsafe.String(unsafe.SliceData(digits), len(digits)),
	}
	h["Content-Type"] = v.vals[0:1:1]
	h["Cache-Control"] = v.vals[1:2:2]
	h["Pragma"] = v.vals[2:3:3]
	h["Content-Length"] = v.vals[3:4:4]
}

// writeJSON answers with status and a JSON body, with the headers of
// setJSONHeaders.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	setJSONHeaders(w.Header(), len(body))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// bodyPool recycles the buffers response bodies are encoded into. A buffer
// is free again once written: a Writer must not retain what it is given.
var bodyPool = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBody bounds the buffers kept in bodyPool.
const maxPooledBody = 4 << 10

func getBody() *[]byte { return bodyPool.Get().(*[]byte) }

func putBody(b *[]byte) {
	if cap(*b) <= maxPooledBody {
		bodyPool.Put(b)
	}
}

// appendJSON appends the response exactly as json.Marshal encodes it: the
// members in field order, the empty omitempty ones left out, strings
// HTML-escaped.
func (t *tokenResponse) appendJSON(b []byte) []byte {
	b = append(b, `{"access_token":`...)
	b = jsonenc.AppendString(b, t.AccessToken, true)
	b = append(b, `,"expires_in":`...)
	b = strconv.AppendInt(b, t.ExpiresIn, 10)
	b = append(b, `,"token_type":`...)
	b = jsonenc.AppendString(b, t.TokenType, true)
	if t.Scope != "" {
		b = append(b, `,"scope":`...)
		b = jsonenc.AppendString(b, t.Scope, true)
	}
	if t.RefreshToken != "" {
		b = append(b, `,"refresh_token":`...)
		b = jsonenc.AppendString(b, t.RefreshToken, true)
	}
	if t.IDToken != "" {
		b = append(b, `,"id_token":`...)
		b = jsonenc.AppendString(b, t.IDToken, true)
	}
	return append(b, '}')
}

// appendJSON appends the error body exactly as json.Marshal encodes it.
func (e *errorBody) appendJSON(b []byte) []byte {
	b = append(b, `{"error":`...)
	b = jsonenc.AppendString(b, e.Error, true)
	if e.Description != "" {
		b = append(b, `,"error_description":`...)
		b = jsonenc.AppendString(b, e.Description, true)
	}
	return append(b, '}')
}
