package oauth

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-moserver/caddy-moserver/internal/jsonenc"
	"github.com/caddy-moserver/caddy-moserver/internal/tokens"
)

// DefaultUserInfoPath is the plugin's userinfo endpoint (its "resource"
// route), answered when WordPress is configured.
const DefaultUserInfoPath = "/wp-json/moserver/resource"

// The users read for the userinfo endpoint are kept this long, so that a
// client calling it often does not read MySQL every time. Whether the token
// is still valid is read on every request.
const (
	userCacheTTL   = 5 * time.Second
	maxCachedUsers = 10_000
)

// maxPluginTokenLen is the width of the plugin's access_token column.
const maxPluginTokenLen = 255

// bearerRealm is the realm of the userinfo endpoint's challenges.
const bearerRealm = `Bearer realm="moserver"`

// The descriptions of the userinfo endpoint's errors; the plugin's OAuth
// library's where the case is the same.
const (
	descNoAccessToken  = "An access token is required"
	descTwoTokens      = "Only one method may be used to authenticate at a time (Auth header, GET or POST)"
	descMalformedAuth  = "Malformed auth header"
	descTwoAuthHeaders = "The Authorization header was sent more than once"
	descInvalidToken   = "The access token provided is invalid"
	descExpiredToken   = "The access token provided has expired"
	descRevokedToken   = "The access token provided has been revoked"
	descUnknownUser    = "The user of the access token does not exist"
)

// errBearer is an error of the userinfo endpoint with its RFC 6750 §3
// challenge.
func errBearer(status int, code, desc string) *Error {
	return &Error{Status: status, Code: code, Description: desc,
		challenge: bearerRealm + `, error="` + code + `", error_description="` + desc + `"`}
}

func errInvalidToken(desc string) *Error {
	return errBearer(http.StatusUnauthorized, "invalid_token", desc)
}

// errNoToken answers a request without a bearer token: 401 with a challenge
// that has no error code (RFC 6750 §3.1).
func errNoToken() *Error {
	return &Error{Status: http.StatusUnauthorized, Code: "invalid_request", Description: descNoAccessToken,
		challenge: bearerRealm}
}

// serveUserInfo answers the userinfo endpoint as the plugin's resource
// endpoint does, with real statuses: the claims of the token's WordPress
// user that the token's scope allows, for the plugin's opaque access tokens
// (a row of its table, not expired) and for the server's own JWT access
// tokens of WordPress users (not revoked: token, family or client).
func (s *Server) serveUserInfo(w http.ResponseWriter, r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions:
		return !s.passOn(w, r, epUserInfo, "")
	default:
		writeError(w, errMethod("GET, HEAD"))
		return true
	}
	token, e := bearerToken(r)
	if e != nil {
		writeError(w, e)
		return true
	}
	b := s.budget(r.Context())
	defer b.release()
	ctx := &b
	grant, e := s.userOfToken(ctx, r, token)
	var user *User
	if e == nil {
		user, e = s.wpUser(ctx, grant.userID)
	}
	if e == nil && r.Header.Get("Origin") != "" {
		if c, err := s.cfg.Clients.Lookup(ctx, grant.clientID); err == nil {
			allowCORS(w, r, c)
		}
	}
	if e != nil {
		s.writeError(w, e)
		return true
	}
	body := getBody()
	*body = appendUserInfo((*body)[:0], user, grant.scope)
	if r.Method == http.MethodHead {
		setJSONHeaders(w.Header(), len(*body))
		w.WriteHeader(http.StatusOK)
	} else {
		writeJSON(w, http.StatusOK, *body)
	}
	putBody(body)
	return true
}

// bearerToken returns the access token of a userinfo request, from an
// Authorization: Bearer header or an access_token query parameter (as the
// plugin reads it), never from both.
func bearerToken(r *http.Request) (string, *Error) {
	var token string
	methods := 0
	switch auth := r.Header.Values("Authorization"); len(auth) {
	case 0:
	case 1:
		// Another scheme is no bearer token: the request has none (RFC
		// 6750 §3.1: no error code for an unsupported method).
		if scheme, rest, _ := strings.Cut(auth[0], " "); strings.EqualFold(scheme, "Bearer") {
			token = strings.Trim(rest, " \t")
			if token == "" || strings.ContainsAny(token, " \t") {
				return "", errBearer(http.StatusBadRequest, "invalid_request", descMalformedAuth)
			}
			methods++
		}
	default:
		return "", errBearer(http.StatusBadRequest, "invalid_request", descTwoAuthHeaders)
	}
	found := 0
	var inQuery string
	for q := r.URL.RawQuery; q != ""; {
		var pair string
		pair, q = nextPair(q)
		if key, value, _ := strings.Cut(pair, "="); isPHPName(key, "access_token") {
			found++
			inQuery = phpUnescape(value)
		}
	}
	if found > 1 {
		return "", errBearer(http.StatusBadRequest, "invalid_request", `Parameter "access_token" was sent more than once`)
	}
	if inQuery != "" { // an empty one does not count, as for the plugin
		token = inQuery
		methods++
	}
	switch methods {
	case 0:
		return "", errNoToken()
	case 1:
		return token, nil
	}
	return "", errBearer(http.StatusBadRequest, "invalid_request", descTwoTokens)
}

// tokenGrant is what a valid access token grants at the userinfo endpoint.
type tokenGrant struct {
	userID   int64
	clientID string
	scope    string
}

// userOfToken checks an access token for the userinfo endpoint: a JWT of
// the server's (for a WordPress user, not revoked) or a row of the plugin's
// access-token table (not expired). Revocation is read on every call.
func (s *Server) userOfToken(ctx *requestBudget, r *http.Request, token string) (tokenGrant, *Error) {
	if strings.IndexByte(token, '.') >= 0 {
		return s.userOfJWT(ctx, token)
	}
	if len(token) > maxPluginTokenLen {
		return tokenGrant{}, errInvalidToken(descInvalidToken)
	}
	// The plugin's table has no index unless index_tables added one, and
	// then each lookup scans it. Unknown tokens are counted per address,
	// with the failure budget, so that nobody can make MySQL scan it at
	// will.
	keys := s.failureKeys(r, "")
	keys.ipPrefix = userInfoIPPrefix
	now := time.Now()
	if e := s.limiter.early(&keys, now); e != nil {
		return tokenGrant{}, s.rateLimited(e)
	}
	row, err := s.cfg.WordPress.LookupAccessToken(ctx, token)
	if err != nil {
		s.log.Error("looking up an access token in WordPress failed", errField(err))
		return tokenGrant{}, errUnavailable()
	}
	switch {
	case row == nil:
		if e := s.limiter.fail(ctx, &keys, now); e != nil {
			return tokenGrant{}, s.rateLimited(e)
		}
		return tokenGrant{}, errInvalidToken(descInvalidToken)
	case row.UserID <= 0:
		return tokenGrant{}, errInvalidToken(descInvalidToken)
	case row.Expires.IsZero() || s.cfg.Now().Unix() > row.Expires.Unix(): // the plugin's now > expires
		return tokenGrant{}, errInvalidToken(descExpiredToken)
	}
	return tokenGrant{userID: row.UserID, clientID: row.ClientID, scope: row.Scope}, nil
}

// userOfJWT checks one of the server's JWT access tokens of a WordPress
// user (sub the user id in digits; a client's own says "client:<id>", see
// clientSubjectPrefix) and asks the store whether it, its refresh family or
// its client's tokens were revoked.
func (s *Server) userOfJWT(ctx context.Context, token string) (tokenGrant, *Error) {
	claims, err := s.cfg.Signer.Verify(token, s.cfg.Now())
	switch {
	case errors.Is(err, tokens.ErrExpired):
		return tokenGrant{}, errInvalidToken(descExpiredToken)
	case err != nil || claims.Issuer != s.cfg.Issuer:
		return tokenGrant{}, errInvalidToken(descInvalidToken)
	}
	userID, ok := userIDOf(claims.Subject)
	if !ok {
		return tokenGrant{}, errInvalidToken(descInvalidToken) // a client's own token
	}
	st, err := s.cfg.Store.CheckAccess(ctx, claims.JTI, claims.FamilyID, claims.ClientID)
	if err != nil {
		s.log.Error("userinfo could not read the store", zap.String("client_id", claims.ClientID), errField(err))
		return tokenGrant{}, errUnavailable()
	}
	if st.JTIRevoked || st.FamilyRevoked || (!st.ClientRevokedBefore.IsZero() && claims.IssuedAt.Before(st.ClientRevokedBefore)) {
		return tokenGrant{}, errInvalidToken(descRevokedToken)
	}
	return tokenGrant{userID: userID, clientID: claims.ClientID, scope: claims.Scope}, nil
}

// userIDOf parses the sub of a WordPress user's JWT: a user id in decimal
// digits.
func userIDOf(sub string) (int64, bool) {
	if sub == "" || len(sub) > 19 {
		return 0, false
	}
	for i := range len(sub) {
		if sub[i] < '0' || sub[i] > '9' {
			return 0, false
		}
	}
	id, err := strconv.ParseInt(sub, 10, 64)
	return id, err == nil && id > 0
}

// wpUser reads a WordPress user, through the short-lived cache. A user
// that no longer exists makes the token invalid.
func (s *Server) wpUser(ctx context.Context, id int64) (*User, *Error) {
	now := s.cfg.Now()
	if u, ok := s.users.Get(id, now); ok {
		return u, nil
	}
	u, err := s.cfg.WordPress.User(ctx, id)
	if err != nil {
		s.log.Error("reading a WordPress user failed", zap.Int64("user_id", id), errField(err))
		return nil, errUnavailable()
	}
	if u == nil {
		return nil, errInvalidToken(descUnknownUser)
	}
	s.users.Put(id, u, now)
	return u, nil
}

// appendUserInfo appends the plugin's userinfo claims of u for scope, in its
// order: id and ID always, sub with openid, email with email, the profile
// fields with profile, everything for an empty scope.
func appendUserInfo(b []byte, u *User, scope string) []byte {
	all := strings.TrimSpace(scope) == ""
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, u.ID, 10)
	b = append(b, `,"ID":`...)
	b = strconv.AppendInt(b, u.ID, 10)
	if all || scopeHas(scope, "openid") {
		b = append(b, `,"sub":`...)
		b = strconv.AppendInt(b, u.ID, 10)
	}
	if all || scopeHas(scope, "email") {
		b = append(b, `,"email":`...)
		b = jsonenc.AppendString(b, u.Email, true)
	}
	if all || scopeHas(scope, "profile") {
		for _, f := range [...]struct{ name, v string }{
			{`,"username":`, u.Login}, {`,"first_name":`, u.FirstName}, {`,"last_name":`, u.LastName},
			{`,"nickname":`, u.Nickname}, {`,"display_name":`, u.DisplayName},
		} {
			b = append(b, f.name...)
			b = jsonenc.AppendString(b, f.v, true)
		}
	}
	return append(b, '}')
}

// scopeHas reports whether the space-separated scope has the word w.
func scopeHas(scope, w string) bool {
	for scope != "" {
		var word string
		word, scope, _ = strings.Cut(scope, " ")
		if word == w {
			return true
		}
	}
	return false
}
