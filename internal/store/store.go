// Package store keeps refresh-token families and access-token revocations.
//
// Only digests of refresh tokens are ever stored. Every token of one family
// shares the family id, which implementations use to keep a family's keys
// together (one Redis Cluster hash slot). All state changes that must be
// atomic (rotation, replay detection, family revocation) are single
// operations of the Store interface.
package store

import (
	"context"
	"errors"
	"time"
)

// ErrUnavailable wraps every error that means the store could not be reached
// or could not durably record a change; callers answer 503 on it.
var ErrUnavailable = errors.New("store unavailable")

// NewFamily describes the first refresh token of a new family.
type NewFamily struct {
	FamilyID string // random, URL-safe id shared by every token of the family
	Digest   string // digest of the refresh token (never the token itself)
	ClientID string // the client the family belongs to
	Subject  string // the token subject (client id for client_credentials)
	Scope    string // space-separated granted scope
	// IssuedAt is when the token was issued. It is stored as the family's
	// creation time, which RotateRequest.NotBefore and RefreshInfo.IssuedAt
	// refer to.
	IssuedAt  time.Time
	ExpiresAt time.Time // when the refresh token expires
	// FamilyExpiresAt is how long the family record must be kept: at least as
	// long as any token or access token minted from it can be valid.
	FamilyExpiresAt time.Time
}

// RotateRequest asks to spend one refresh token and store its successor.
type RotateRequest struct {
	FamilyID  string // family id parsed from the presented token
	OldDigest string // digest of the presented token
	NewDigest string // digest of the successor token
	ClientID  string // the authenticated client
	// Scope is the space-separated scope the client asks for; empty keeps the
	// scope of the presented token. It may narrow, never widen.
	Scope string
	// Sealed is the successor token encrypted with a key only the presenter of
	// the old token can derive; it is handed back on a grace retry.
	Sealed          []byte
	Now             time.Time
	ExpiresAt       time.Time     // expiry of the successor token
	FamilyExpiresAt time.Time     // see NewFamily.FamilyExpiresAt
	Grace           time.Duration // refresh_grace; 0 means strict
	// NotBefore, when non-zero, refuses families created before it (their
	// NewFamily.IssuedAt; a family stored without a creation time counts as
	// created at the Unix epoch): Rotate answers FamilyRevoked. Rotate
	// applies the client's revoked-before time (RevokeClient) the same way
	// by itself, in the same round trip; NotBefore is for an additional
	// bound the caller knows of.
	NotBefore time.Time
}

// Outcome is the result of a rotation attempt.
type Outcome int

// The outcomes of Rotate.
const (
	// Rotated: the old token is spent and the successor stored.
	Rotated Outcome = iota + 1
	// GraceRetry: the old token was the immediate predecessor of the family's
	// current token and was rotated within the grace period; Result.Sealed
	// carries the existing successor. Nothing changed.
	GraceRetry
	// NotFound: no such token (unknown, expired and gone, or malformed).
	NotFound
	// WrongClient: the token belongs to another client. Nothing changed.
	WrongClient
	// Expired: the token exists but has expired. Nothing changed.
	Expired
	// ScopeWidened: the requested scope is not a subset of the token's scope.
	// Nothing changed.
	ScopeWidened
	// Replayed: the token was already rotated; the whole family is now revoked.
	Replayed
	// FamilyRevoked: the family had been revoked before, or was created
	// before RotateRequest.NotBefore or the client's revoked-before time.
	// No token was handed out; the family stays unusable (a store may
	// have marked it revoked).
	FamilyRevoked
)

// String names the outcome for logs.
func (o Outcome) String() string {
	switch o {
	case Rotated:
		return "rotated"
	case GraceRetry:
		return "grace_retry"
	case NotFound:
		return "not_found"
	case WrongClient:
		return "wrong_client"
	case Expired:
		return "expired"
	case ScopeWidened:
		return "scope_widened"
	case Replayed:
		return "replayed"
	case FamilyRevoked:
		return "family_revoked"
	}
	return "unknown"
}

// RotateResult reports what Rotate did.
type RotateResult struct {
	Outcome Outcome
	// For Rotated and GraceRetry: the successor's subject, scope and expiry.
	Subject   string
	Scope     string
	ExpiresAt time.Time
	// For GraceRetry: the sealed successor stored by the original rotation.
	Sealed []byte
}

// RevokeOutcome is the result of revoking a refresh token's family.
type RevokeOutcome int

// The outcomes of RevokeRefresh.
const (
	// FamilyRevokedNow: the family of the token is revoked (or already was).
	FamilyRevokedNow RevokeOutcome = iota + 1
	// RevokeNotFound: no such token; nothing changed.
	RevokeNotFound
	// RevokeWrongClient: the token belongs to another client; nothing changed.
	RevokeWrongClient
)

// The store's contract comes in roles; each caller takes the role it uses
// (the edge takes AccessChecker alone). Implementations must be safe for
// concurrent use, and every method must either complete atomically or
// change nothing. Errors that mean "could not reach or write the store" wrap
// ErrUnavailable.

// Families keeps refresh-token families.
type Families interface {
	// CreateFamily stores the first refresh token of a new family.
	CreateFamily(ctx context.Context, f NewFamily) error
	// Rotate spends a refresh token and stores its successor, detecting
	// replays. It refuses families created before the client's
	// revoked-before time (see Revocations.RevokeClient) without a separate
	// call.
	Rotate(ctx context.Context, r RotateRequest) (RotateResult, error)
	// RevokeRefresh revokes the family of the token with the given digest if
	// it belongs to clientID.
	RevokeRefresh(ctx context.Context, familyID, digest, clientID string) (RevokeOutcome, error)
	// RevokeFamily revokes a whole family by id, whoever owns it.
	RevokeFamily(ctx context.Context, familyID string) error
	// FamilyRevoked reports whether a family is revoked (false for an unknown family).
	FamilyRevoked(ctx context.Context, familyID string) (bool, error)
	// RefreshInfo describes the refresh token with the given digest for
	// introspection; false when the token (or its family) is unknown or
	// expired. On Redis it is one round trip.
	RefreshInfo(ctx context.Context, familyID, digest string) (RefreshInfo, bool, error)
	// ListFamilies returns one page of the client's live families (not
	// expired; revoked ones, including those created before the client's
	// revoked-before time, only with FamilyQuery.IncludeRevoked), oldest
	// first, without any token or digest. Families are indexed per client
	// when created, so the page costs what its size does, not what the
	// store holds; an index entry whose family expired is dropped when a
	// listing meets it.
	ListFamilies(ctx context.Context, clientID string, q FamilyQuery) (FamilyPage, error)
}

// AccessChecker is the edge's check of an access token: one round trip.
type AccessChecker interface {
	// CheckAccess reports everything that can revoke one access token: its
	// jti (RevokeAccessToken), its refresh family (familyID may be empty for
	// a token without a family: then no family is read and FamilyRevoked is
	// false; an unknown family is not revoked either) and its client's
	// revoked-before time (RevokeClient). On Redis it is one pipelined round
	// trip.
	CheckAccess(ctx context.Context, jti, familyID, clientID string) (AccessState, error)
}

// Revocations keeps what revokes access tokens: their jtis and clients'
// revoked-before times.
type Revocations interface {
	AccessChecker
	// RevokeAccessToken denies the access token with this jti until exp.
	RevokeAccessToken(ctx context.Context, jti string, exp time.Time) error
	// RevokeClient revokes every token of the client issued before before:
	// access tokens through CheckAccess, refresh tokens of families created
	// before it through Rotate. The time only ever moves forward (a call
	// with an earlier before keeps the later one) and is kept for at least
	// keep from now (the longest lifetime of any token the client holds; a
	// later call with a shorter keep never shortens it). keep must be
	// positive; a zero before revokes nothing.
	RevokeClient(ctx context.Context, clientID string, before time.Time, keep time.Duration) error
}

// FailureCounter counts failed client authentications.
type FailureCounter interface {
	// AuthFailures returns the failed client authentications counted for
	// each key in its current window, and when that window ends.
	AuthFailures(ctx context.Context, keys []string) ([]FailureCount, error)
	// RecordAuthFailure counts one failed authentication for each key and
	// returns each key's count including it, in one atomic step per key (a
	// burst of concurrent failures gets counts 1, 2, 3, ... and no two the
	// same); a key's window starts with its first failure and lasts window.
	RecordAuthFailure(ctx context.Context, keys []string, window time.Duration) ([]FailureCount, error)
}

// Store is every role: what the token endpoint uses.
type Store interface {
	Families
	Revocations
	FailureCounter
	CodeRecords
	// Close releases the store's resources.
	Close() error
}

// AccessState is what the store knows that can revoke one access token.
type AccessState struct {
	JTIRevoked    bool // the token's jti was revoked (RevokeAccessToken)
	FamilyRevoked bool // the token's refresh family is revoked (false for none or unknown)
	// ClientRevokedBefore: the client's tokens issued before it are revoked;
	// zero when none (see RevokeClient).
	ClientRevokedBefore time.Time
}

// RefreshInfo describes a stored refresh token for RFC 7662 introspection.
type RefreshInfo struct {
	ClientID string
	Subject  string
	Scope    string // the token's own scope (narrowed by rotation)
	// IssuedAt is the creation time of the token's family (the first token's
	// NewFamily.IssuedAt), not of this token: per-token issue times are not
	// stored. It is the time RotateRequest.NotBefore and a client's
	// revoked-before time are compared with. Zero for a family stored
	// without a creation time.
	IssuedAt  time.Time
	ExpiresAt time.Time
	// Active: the token has not been rotated and its family is not revoked
	// (expired tokens are not found at all). The caller still compares
	// IssuedAt with the client's revoked-before time.
	Active bool
}

// FailureCount is the failed-authentication count of one key.
type FailureCount struct {
	Count int64
	// ResetIn is how long until the window ends (0 when Count is 0).
	ResetIn time.Duration
}

// MaxFamilyPage is the largest FamilyQuery.Limit.
const MaxFamilyPage = 1000

// FamilyQuery selects one page of ListFamilies.
type FamilyQuery struct {
	// After is FamilyPage.Next of the previous page; "" starts at the
	// oldest family. It is opaque: the order is creation time, then id.
	After string
	// Limit is how many index entries the page covers, 1 to MaxFamilyPage.
	// A page can hold fewer families (expired or, without IncludeRevoked,
	// revoked ones are skipped) and still have a Next.
	Limit int
	// IncludeRevoked lists revoked families too (Revoked set).
	IncludeRevoked bool
}

// FamilyPage is one page of ListFamilies.
type FamilyPage struct {
	Families []FamilySummary
	// Next is the FamilyQuery.After of the following page; "" when this
	// page reached the end of the index.
	Next string
	// ClientRevokedBefore is the client's revoked-before time (see
	// RevokeClient), read with the page; zero when none is kept.
	ClientRevokedBefore time.Time
}

// FamilySummary describes one refresh family without any token or digest.
type FamilySummary struct {
	FamilyID string
	// Subject and Scope are those of the family's current token; both are
	// empty when that token has expired (the family record outlives it).
	Subject   string
	Scope     string
	CreatedAt time.Time // NewFamily.IssuedAt
	ExpiresAt time.Time // when the family record expires
	// Revoked: the family was revoked, or was created before the client's
	// revoked-before time (Rotate refuses it).
	Revoked bool
}
