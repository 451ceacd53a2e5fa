package oauth

import (
	"net/http"
	"strconv"
)

// The error descriptions of the plugin's OAuth library, reused where the case
// is the same so existing clients see familiar messages.
const (
	descNoGrantType       = "The grant type was not specified in the request"
	descUnsupportedGrant  = `The "grant_type" requested is unsupported or invalid`
	descNoCredentials     = "Client credentials were not found in the headers or body"
	descMustAuthenticate  = "This client is invalid or must authenticate using a client secret"
	descBadCredentials    = "The client credentials are invalid"
	descUnauthorizedGrant = "The grant type is unauthorized for this client_id"
	descMissingRefresh    = `Missing parameter: "refresh_token" is required`
	descMissingToken      = `Missing parameter: "token" is required`
	descInvalidRefresh    = "Invalid refresh token"
	descExpiredRefresh    = "Refresh token has expired"
	descForeignRefresh    = "refresh_token doesn't exist or is invalid for the client"
	descInvalidScope      = "The scope requested is invalid for this request"
	descStoreDown         = "The token store is temporarily unavailable, retry later"
)

// Error is an OAuth 2.0 error response (RFC 6749 §5.2).
type Error struct {
	Status      int    // HTTP status
	Code        string // the "error" member
	Description string // the "error_description" member
	// RetryAfter, when > 0, is sent as the Retry-After header (seconds).
	RetryAfter int
	// Allow, when set, is sent as the Allow header (405).
	Allow string
	// basicChallenge adds WWW-Authenticate: Basic (the client used Basic auth).
	basicChallenge bool
	// challenge, when set, is sent as WWW-Authenticate (a Bearer challenge
	// of the userinfo endpoint, RFC 6750 §3).
	challenge string
	// rateLimited marks the 429 of the failed-authentication budget.
	rateLimited bool
}

// outcomeRateLimited is the metrics outcome of a request refused for the
// failed-authentication budget (its error code is temporarily_unavailable,
// like a store outage's, which metrics must not confuse it with).
const outcomeRateLimited = "rate_limited"

// outcome is what metrics count the error as: its code, or rate_limited.
func (e *Error) outcome() string {
	if e.rateLimited {
		return outcomeRateLimited
	}
	return e.Code
}

// writeError answers e and reports a 503 (a store, registry or database that
// could not answer) as a store error, whatever the endpoint.
func (s *Server) writeError(w http.ResponseWriter, e *Error) {
	if e.Status == http.StatusServiceUnavailable {
		s.cfg.Events.StoreUnavailable()
	}
	writeError(w, e)
}

// Error implements error.
func (e *Error) Error() string { return e.Code + ": " + e.Description }

func errInvalidRequest(desc string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_request", Description: desc}
}

func errInvalidGrant(desc string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_grant", Description: desc}
}

func errInvalidScope() *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_scope", Description: descInvalidScope}
}

func errInvalidClient(desc string, basic bool) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: "invalid_client", Description: desc, basicChallenge: basic}
}

func errUnavailable() *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable", Description: descStoreDown, RetryAfter: 1}
}

func errMethod(allow string) *Error {
	return &Error{Status: http.StatusMethodNotAllowed, Code: "invalid_request",
		Description: "The request method must be " + allow, Allow: allow}
}

type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// writeError sends e as an RFC 6749 JSON error.
func writeError(w http.ResponseWriter, e *Error) {
	h := w.Header()
	if e.basicChallenge {
		h.Set("WWW-Authenticate", `Basic realm="moserver", charset="UTF-8"`)
	}
	if e.challenge != "" {
		h.Set("WWW-Authenticate", e.challenge)
	}
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	if e.Allow != "" {
		h.Set("Allow", e.Allow)
	}
	body := getBody()
	*body = (&errorBody{Error: e.Code, Description: e.Description}).appendJSON((*body)[:0])
	writeJSON(w, e.Status, *body)
	putBody(body)
}
