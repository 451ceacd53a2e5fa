package caddymodule

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-moserver/caddy-moserver/internal/oauth"
	"github.com/caddy-moserver/caddy-moserver/internal/store"
	"github.com/caddy-moserver/caddy-moserver/internal/tokens"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// Interface guards.
var (
	_ caddy.Module      = (*AdminAPI)(nil)
	_ caddy.Provisioner = (*AdminAPI)(nil)
	_ caddy.AdminRouter = (*AdminAPI)(nil)
)

// maxAdminBody bounds the JSON body of an admin request.
const maxAdminBody = 64 << 10

// AdminAPI is the admin.api.moserver module: routes under /moserver/ on
// Caddy's admin endpoint to list a client's refresh-token families, revoke
// one family, revoke every token of a client, and show the signing keys of
// a moserver block. Like every admin.api module it is mounted
// automatically; it acts on the moserver blocks of the running
// configuration, found by issuer.
type AdminAPI struct {
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.moserver",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Provision sets up logging.
func (a *AdminAPI) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger(a)
	return nil
}

// Routes returns the /moserver/ routes.
func (a *AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/moserver/revoke-family", Handler: caddy.AdminHandlerFunc(a.handleRevokeFamily)},
		{Pattern: "/moserver/revoke-client", Handler: caddy.AdminHandlerFunc(a.handleRevokeClient)},
		{Pattern: "/moserver/keys", Handler: caddy.AdminHandlerFunc(a.handleKeys)},
		{Pattern: "/moserver/families", Handler: caddy.AdminHandlerFunc(a.handleFamilies)},
		{Pattern: "/moserver/", Handler: caddy.AdminHandlerFunc(a.handleUnknown)},
	}
}

func (a *AdminAPI) log() *zap.Logger {
	if a.logger == nil {
		return zap.NewNop()
	}
	return a.logger
}

// revokeFamilyRequest is the body of POST /moserver/revoke-family.
type revokeFamilyRequest struct {
	Issuer   string `json:"issuer,omitempty"`
	FamilyID string `json:"family_id"`
}

// revokeClientRequest is the body of POST /moserver/revoke-client.
type revokeClientRequest struct {
	Issuer   string `json:"issuer,omitempty"`
	ClientID string `json:"client_id"`
	// Keep is a Caddy duration ("336h", "14d"); default: the block's longest
	// token lifetime.
	Keep string `json:"keep,omitempty"`
}

func (a *AdminAPI) handleRevokeFamily(w http.ResponseWriter, r *http.Request) error {
	if err := adminOnlyMethod(w, r, http.MethodPost); err != nil {
		return err
	}
	var req revokeFamilyRequest
	if err := decodeAdminJSON(r, &req); err != nil {
		return err
	}
	if req.FamilyID == "" {
		return adminError(http.StatusBadRequest, "family_id is required")
	}
	if !isFamilyID(req.FamilyID) {
		return adminError(http.StatusBadRequest, "family_id must be the %d-character family id of a refresh token (the fid claim of its access tokens)", tokens.FamilyIDLen)
	}
	b, err := adminLookupBlock(req.Issuer)
	if err != nil {
		return err
	}
	ctx, cancel := b.storeContext(r.Context())
	defer cancel()
	if err := b.shared.store.RevokeFamily(ctx, req.FamilyID); err != nil {
		return adminStoreError("revoking the family", err)
	}
	// RevokeFamily is a no-op for an unknown family; tell the operator.
	revoked, err := b.shared.store.FamilyRevoked(ctx, req.FamilyID)
	if err != nil {
		return adminStoreError("reading the family back", err)
	}
	if !revoked {
		return adminError(http.StatusNotFound, "no live family %q (unknown, or already expired)", req.FamilyID)
	}
	a.log().Info("refresh family revoked through the admin API",
		zap.String("issuer", b.shared.issuer), zap.String("family", req.FamilyID))
	return writeAdminJSON(w, http.StatusOK, map[string]any{
		"issuer":    b.shared.issuer,
		"family_id": req.FamilyID,
		"revoked":   true,
	})
}

func (a *AdminAPI) handleRevokeClient(w http.ResponseWriter, r *http.Request) error {
	if err := adminOnlyMethod(w, r, http.MethodPost); err != nil {
		return err
	}
	var req revokeClientRequest
	if err := decodeAdminJSON(r, &req); err != nil {
		return err
	}
	if strings.TrimSpace(req.ClientID) == "" {
		return adminError(http.StatusBadRequest, "client_id is required")
	}
	b, err := adminLookupBlock(req.Issuer)
	if err != nil {
		return err
	}
	keep := b.ops.keep
	if req.Keep != "" {
		d, err := caddy.ParseDuration(req.Keep)
		if err != nil || d <= 0 {
			return adminError(http.StatusBadRequest, "keep %q is not a positive duration (e.g. 336h or 14d)", req.Keep)
		}
		keep = d
	}
	// The stores compare creation times in whole milliseconds: the current
	// millisecond counts as before, so a token issued just now is revoked too.
	before := time.Now().Truncate(time.Millisecond).Add(time.Millisecond)
	ctx, cancel := b.storeContext(r.Context())
	defer cancel()
	if err := b.shared.store.RevokeClient(ctx, req.ClientID, before, keep); err != nil {
		return adminStoreError("revoking the client's tokens", err)
	}
	a.log().Info("client's tokens revoked through the admin API",
		zap.String("issuer", b.shared.issuer), zap.String("client_id", req.ClientID),
		zap.Time("revoked_before", before), zap.Duration("keep", keep))
	return writeAdminJSON(w, http.StatusOK, map[string]any{
		"issuer":         b.shared.issuer,
		"client_id":      req.ClientID,
		"revoked_before": before.UTC().Format(time.RFC3339Nano),
		"keep":           keep.String(),
	})
}

// keysResponse is the answer of GET /moserver/keys.
type keysResponse struct {
	Issuer     string `json:"issuer"`
	SigningKID string `json:"signing_kid"`
	SigningAlg string `json:"signing_alg"`
	// SigningKeyPublished is false for an HS256 signing key, which is never
	// published in the JWKS.
	SigningKeyPublished bool              `json:"signing_key_published"`
	Algorithms          []string          `json:"algorithms"`
	Keys                []json.RawMessage `json:"keys"`
}

func (a *AdminAPI) handleKeys(w http.ResponseWriter, r *http.Request) error {
	if err := adminOnlyMethod(w, r, http.MethodGet); err != nil {
		return err
	}
	b, err := adminLookupBlock(r.URL.Query().Get("issuer"))
	if err != nil {
		return err
	}
	signer := b.shared.signer
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(signer.JWKS(), &set); err != nil {
		return adminError(http.StatusInternalServerError, "decoding the JWK set: %v", err)
	}
	sk := signer.SigningKey()
	resp := keysResponse{
		Issuer:     b.shared.issuer,
		SigningKID: sk.KID,
		SigningAlg: string(sk.Alg),
		Algorithms: signer.Algorithms(),
		Keys:       set.Keys,
	}
	if resp.Keys == nil {
		resp.Keys = []json.RawMessage{}
	}
	for _, k := range set.Keys {
		var jwk struct {
			KID string `json:"kid"`
		}
		if json.Unmarshal(k, &jwk) == nil && jwk.KID == sk.KID {
			resp.SigningKeyPublished = true
		}
	}
	return writeAdminJSON(w, http.StatusOK, resp)
}

// defaultFamilyPage is the page size of GET /moserver/families without limit.
const defaultFamilyPage = 100

// familiesParams are the query parameters GET /moserver/families accepts.
var familiesParams = []string{"issuer", "client_id", "limit", "after", "include_revoked"}

// familiesResponse is the answer of GET /moserver/families.
type familiesResponse struct {
	Issuer   string `json:"issuer"`
	ClientID string `json:"client_id"`
	// RevokedBefore is the client's revoked-before time (POST
	// /moserver/revoke-client), when one is kept: families created before
	// it are revoked.
	RevokedBefore string `json:"revoked_before,omitempty"`
	// Families is never null: [] when the page holds none.
	Families []familyJSON `json:"families"`
	// Next is the after of the following page; left out at the end.
	Next string `json:"next,omitempty"`
}

// familyJSON is one family of GET /moserver/families. It holds no token
// and no digest.
type familyJSON struct {
	FamilyID string `json:"family_id"`
	// Subject and Scope are those of the family's current refresh token;
	// both are empty once that token has expired.
	Subject string `json:"subject"`
	Scope   string `json:"scope"`
	// CreatedAt and ExpiresAt are RFC 3339 UTC times, "" when unknown.
	CreatedAt string `json:"created_at"`
	ExpiresAt string `json:"expires_at"`
	Revoked   bool   `json:"revoked"`
}

// familiesQuery reads and checks the query of GET /moserver/families. Its
// errors are 400 APIErrors; a misspelt or repeated parameter is an error
// rather than silently ignored.
func familiesQuery(r *http.Request) (issuer, clientID string, q store.FamilyQuery, err error) {
	values := r.URL.Query()
	for k, v := range values {
		if !slices.Contains(familiesParams, k) {
			return "", "", q, adminError(http.StatusBadRequest, "unknown query parameter %q; use %s", k, strings.Join(familiesParams, ", "))
		}
		if len(v) > 1 {
			return "", "", q, adminError(http.StatusBadRequest, "query parameter %s is given %d times", k, len(v))
		}
	}
	clientID = values.Get("client_id")
	if strings.TrimSpace(clientID) == "" {
		return "", "", q, adminError(http.StatusBadRequest, "client_id is required")
	}
	q.Limit = defaultFamilyPage
	if values.Has("limit") {
		n, err := strconv.Atoi(values.Get("limit"))
		if err != nil || n < 1 || n > store.MaxFamilyPage {
			return "", "", q, adminError(http.StatusBadRequest, "limit %q is not a whole number from 1 to %d", values.Get("limit"), store.MaxFamilyPage)
		}
		q.Limit = n
	}
	if values.Has("include_revoked") {
		b, err := strconv.ParseBool(values.Get("include_revoked"))
		if err != nil {
			return "", "", q, adminError(http.StatusBadRequest, "include_revoked %q is not true or false", values.Get("include_revoked"))
		}
		q.IncludeRevoked = b
	}
	q.After = values.Get("after")
	return values.Get("issuer"), clientID, q, nil
}

// handleFamilies lists one page of a client's live refresh families, oldest
// first, from the store's per-client index. A family created before the
// client's revoked-before time (revoke-client) counts as revoked, as
// refreshing refuses it. It does not consult the block's client list: the
// families of a client removed from the configuration live on until they
// expire or are revoked, and an id that never had a family gets an empty
// list.
func (a *AdminAPI) handleFamilies(w http.ResponseWriter, r *http.Request) error {
	if err := adminOnlyMethod(w, r, http.MethodGet); err != nil {
		return err
	}
	issuer, clientID, q, err := familiesQuery(r)
	if err != nil {
		return err
	}
	b, err := adminLookupBlock(issuer)
	if err != nil {
		return err
	}
	ctx, cancel := b.storeContext(r.Context())
	defer cancel()
	page, err := b.shared.store.ListFamilies(ctx, clientID, q)
	if errors.Is(err, store.ErrBadCursor) {
		return adminError(http.StatusBadRequest, "after %q is not a cursor a previous page answered as next", q.After)
	}
	if err != nil {
		return adminStoreError("listing the client's families", err)
	}
	resp := familiesResponse{
		Issuer:        b.shared.issuer,
		ClientID:      clientID,
		RevokedBefore: adminTime(page.ClientRevokedBefore),
		Families:      make([]familyJSON, 0, len(page.Families)),
		Next:          page.Next,
	}
	for _, f := range page.Families {
		resp.Families = append(resp.Families, familyJSON{
			FamilyID:  f.FamilyID,
			Subject:   f.Subject,
			Scope:     f.Scope,
			CreatedAt: adminTime(f.CreatedAt),
			ExpiresAt: adminTime(f.ExpiresAt),
			Revoked:   f.Revoked,
		})
	}
	a.log().Info("client's refresh families listed through the admin API",
		zap.String("issuer", b.shared.issuer), zap.String("client_id", clientID),
		zap.Bool("include_revoked", q.IncludeRevoked), zap.Int("families", len(resp.Families)),
		zap.Bool("more", page.Next != ""))
	return writeAdminJSON(w, http.StatusOK, resp)
}

// adminTime formats t as an RFC 3339 UTC time, "" for the zero time.
func adminTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func (a *AdminAPI) handleUnknown(http.ResponseWriter, *http.Request) error {
	return adminError(http.StatusNotFound, "unknown moserver admin endpoint; see GET /moserver/keys, "+
		"GET /moserver/families, POST /moserver/revoke-family, POST /moserver/revoke-client")
}

// adminBlock is a provisioned moserver block as the admin API sees it.
type adminBlock struct {
	shared *sharedServer
	ops    opsInfo
}

func (b adminBlock) storeContext(parent context.Context) (context.Context, context.CancelFunc) {
	t := b.shared.storeTimeout
	if t <= 0 {
		t = oauth.DefaultStoreTimeout
	}
	return context.WithTimeout(parent, t)
}

// opsInfo is what the admin API needs of a moserver block beyond what the
// shared registry (auth.go) holds.
type opsInfo struct {
	// keep is the block's longest token lifetime: the default time a
	// client's revocation is kept.
	keep time.Duration
}

// opsByShared holds the opsInfo of each provisioned block, keyed like the
// shared registry and added and removed with it.
var opsByShared = struct {
	sync.Mutex
	m map[*sharedServer]opsInfo
}{m: map[*sharedServer]opsInfo{}}

// shareOps records a provisioned block's opsInfo; call before share, so a
// block found in the shared registry always has its opsInfo.
func shareOps(s *sharedServer, info opsInfo) {
	opsByShared.Lock()
	defer opsByShared.Unlock()
	opsByShared.m[s] = info
}

// unshareOps forgets a block's opsInfo; call with unshare.
func unshareOps(s *sharedServer) {
	opsByShared.Lock()
	defer opsByShared.Unlock()
	delete(opsByShared.m, s)
}

// adminLookupBlock finds the moserver block of an issuer in the shared registry
// (the newest, during a reload), or the only one when issuer is empty. Its
// errors are APIErrors: 404 for an unknown issuer or no block at all, 400
// when the issuer is needed to choose.
func adminLookupBlock(issuer string) (adminBlock, error) {
	shared.Lock()
	if issuer == "" {
		switch len(shared.byIssuer) {
		case 0:
			shared.Unlock()
			return adminBlock{}, adminError(http.StatusNotFound, "no moserver block is configured")
		case 1:
			for k := range shared.byIssuer {
				issuer = k
			}
		default:
			names := make([]string, 0, len(shared.byIssuer))
			for k := range shared.byIssuer {
				names = append(names, k)
			}
			shared.Unlock()
			slices.Sort(names)
			return adminBlock{}, adminError(http.StatusBadRequest, "%d moserver blocks are configured; name one with issuer (one of %s)",
				len(names), strings.Join(names, ", "))
		}
	}
	list := shared.byIssuer[issuer]
	var s *sharedServer
	if len(list) > 0 {
		s = list[len(list)-1]
	}
	shared.Unlock()
	if s == nil {
		return adminBlock{}, adminError(http.StatusNotFound, "no moserver block has issuer %q", issuer)
	}
	opsByShared.Lock()
	info, ok := opsByShared.m[s]
	opsByShared.Unlock()
	if !ok || info.keep <= 0 {
		info.keep = oauth.DefaultRefreshTokenTTL
	}
	return adminBlock{shared: s, ops: info}, nil
}

// isFamilyID reports whether id has the form of a refresh-token family
// id: tokens.FamilyIDLen unpadded base64url characters.
func isFamilyID(id string) bool {
	if len(id) != tokens.FamilyIDLen {
		return false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(id)
	return err == nil && len(b) == tokens.FamilyIDBytes
}

// adminError is an error answered as {"error": "..."} with status.
func adminError(status int, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	return caddy.APIError{HTTPStatus: status, Err: errors.New(msg), Message: msg}
}

// adminStoreError answers 503 for an unreachable store, 500 otherwise.
func adminStoreError(what string, err error) error {
	status := http.StatusInternalServerError
	if errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		status = http.StatusServiceUnavailable
	}
	return adminError(status, "%s failed: %v", what, err)
}

// adminOnlyMethod answers 405 (with Allow) for any other method.
func adminOnlyMethod(w http.ResponseWriter, r *http.Request, method string) error {
	if r.Method == method {
		return nil
	}
	w.Header().Set("Allow", method)
	return adminError(http.StatusMethodNotAllowed, "method %s not allowed; use %s", r.Method, method)
}

// decodeAdminJSON reads one JSON object into v, refusing unknown fields so a
// misspelt field is an error rather than silently ignored.
func decodeAdminJSON(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxAdminBody+1))
	if err != nil {
		return adminError(http.StatusBadRequest, "reading the request body: %v", err)
	}
	if len(body) > maxAdminBody {
		return adminError(http.StatusRequestEntityTooLarge, "the request body is larger than %d bytes", maxAdminBody)
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return adminError(http.StatusBadRequest, "the request body must be a JSON object")
		}
		return adminError(http.StatusBadRequest, "the request body is not valid JSON for this endpoint: %v", err)
	}
	if dec.More() {
		return adminError(http.StatusBadRequest, "the request body must hold one JSON object")
	}
	return nil
}

func writeAdminJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return adminError(http.StatusInternalServerError, "encoding the response: %v", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
	return nil
}

// longestTokenLifetime is the longest lifetime of any token the block
// issues: refresh tokens and access tokens, with per-client overrides. A
// client's revocation is kept this long by default, after which every token
// it covers has expired.
func (h *Handler) longestTokenLifetime() time.Duration {
	longest := time.Duration(h.RefreshTokenTTL)
	if longest <= 0 {
		longest = oauth.DefaultRefreshTokenTTL
	}
	access := time.Duration(h.AccessTokenTTL)
	if access <= 0 {
		access = oauth.DefaultAccessTokenTTL
	}
	longest = max(longest, access)
	for _, c := range h.Clients {
		longest = max(longest, time.Duration(c.AccessTokenTTL))
	}
	return longest
}
