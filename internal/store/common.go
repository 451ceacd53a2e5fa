package store

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Helpers shared by the memory and Redis stores, so that both compute times,
// scopes and input checks the same way. The Redis Lua scripts mirror
// scopeSubset and the decision order of (*Memory).Rotate.

// errInvalidFamilyID is returned by CreateFamily for an id no token can carry.
var errInvalidFamilyID = errors.New("store: invalid family id")

// maxMillis is 9999-12-31T23:59:59.999Z in Unix milliseconds: later times
// are clamped to it so every value fits exactly in a Lua number and in a
// Redis PEXPIREAT argument.
const maxMillis = 253402300799999

// millis converts t to Unix milliseconds clamped to [0, maxMillis]. Both
// stores compare and return times at this precision, so they agree exactly.
func millis(t time.Time) int64 {
	if t.Before(time.UnixMilli(0)) {
		return 0
	}
	if t.After(time.UnixMilli(maxMillis)) {
		return maxMillis
	}
	return t.UnixMilli()
}

// graceMillis converts a grace period to milliseconds; any positive grace is
// at least 1 ms, zero or negative means strict.
func graceMillis(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return max(d.Milliseconds(), 1)
}

// validFamilyID reports whether id can name a family: non-empty and free of
// braces, so that "{<id>}" is always a non-empty Redis Cluster hash tag that
// every key of the family shares.
func validFamilyID(id string) bool {
	return id != "" && !strings.ContainsAny(id, "{}")
}

// isScopeSpace matches the characters Lua's %s class matches in the C
// locale, so Go and the Redis scripts split scopes identically.
func isScopeSpace(r rune) bool {
	switch r {
	case ' ', '\t', '\n', '\v', '\f', '\r':
		return true
	}
	return false
}

// normalizeScope returns the words of a space-separated scope, each once, in
// their first order, joined by single spaces; "" for a blank scope.
func normalizeScope(s string) string {
	words := strings.FieldsFunc(s, isScopeSpace)
	seen := make(map[string]bool, len(words))
	out := words[:0]
	for _, w := range words {
		if !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	return strings.Join(out, " ")
}

// scopeSubset reports whether every word of requested is a word of granted.
func scopeSubset(requested, granted string) bool {
	have := make(map[string]bool)
	for _, w := range strings.FieldsFunc(granted, isScopeSpace) {
		have[w] = true
	}
	for _, w := range strings.FieldsFunc(requested, isScopeSpace) {
		if !have[w] {
			return false
		}
	}
	return true
}

// checkRotate rejects requests that are programming errors rather than
// outcomes: a successor digest that is empty or equal to the spent one.
func checkRotate(r RotateRequest) error {
	if r.NewDigest == "" {
		return errors.New("store: rotate: empty successor digest")
	}
	if r.NewDigest == r.OldDigest {
		return errors.New("store: rotate: successor digest equals the presented one")
	}
	return nil
}

// errFamilyExists is returned by CreateFamily for a family id already in use.
var errFamilyExists = errors.New("store: create family: family id already in use")

// fromMillis converts Unix milliseconds back to a time; 0 (or less) is the
// zero time, "none".
func fromMillis(ms int64) time.Time {
	if ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// errInvalidKeep is returned by RevokeClient for a keep that is not positive.
var errInvalidKeep = errors.New("store: revoke client: keep must be positive")

// keepMillis converts RevokeClient's keep to whole milliseconds, rounded up
// (so a positive keep is at least 1 ms) and clamped to maxMillis.
func keepMillis(keep time.Duration) int64 {
	ms := keep.Milliseconds()
	if keep%time.Millisecond != 0 {
		ms++
	}
	return min(ms, maxMillis)
}

// ErrBadCursor is returned by ListFamilies for a FamilyQuery.After that no
// page handed out, and errBadLimit for a Limit out of range.
var (
	ErrBadCursor = errors.New("store: list families: malformed cursor")
	errBadLimit  = fmt.Errorf("store: list families: limit must be 1 to %d", MaxFamilyPage)
)

// familyIndexMember is a family's entry in its client's index: the creation
// time as 15 zero-padded digits (maxMillis has 15), a colon and the id, so
// that byte order is creation order, then id. Pages are cut after the last
// member they cover, which FamilyPage.Next carries.
func familyIndexMember(created int64, familyID string) string {
	return fmt.Sprintf("%015d:%s", created, familyID)
}

// parseFamilyIndexMember splits an index member into creation time and id.
func parseFamilyIndexMember(m string) (created int64, familyID string, ok bool) {
	const digits = 15
	if len(m) < digits+2 || m[digits] != ':' {
		return 0, "", false
	}
	created, err := strconv.ParseInt(m[:digits], 10, 64)
	if err != nil || created < 0 {
		return 0, "", false
	}
	familyID = m[digits+1:]
	return created, familyID, validFamilyID(familyID)
}

// checkFamilyQuery validates a ListFamilies query.
func checkFamilyQuery(q FamilyQuery) error {
	if q.Limit < 1 || q.Limit > MaxFamilyPage {
		return errBadLimit
	}
	if q.After != "" {
		if _, _, ok := parseFamilyIndexMember(q.After); !ok {
			return ErrBadCursor
		}
	}
	return nil
}
