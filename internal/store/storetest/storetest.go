// Package storetest is the conformance suite every store.Store must pass.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-moserver/caddy-moserver/internal/store"
)

// Run runs the conformance suite. newStore must return a new, empty store
// for each subtest (for a shared Redis: a fresh key prefix); Run closes it.
// Subtests run in parallel. Times are chosen near the real clock, with
// lifetimes of hours, so that no entry expires by TTL while a subtest runs
// unless the subtest means it to.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h *harness)
	}{
		{"CreateAndRotate", testCreateAndRotate},
		{"NotFound", testNotFound},
		{"WeirdIDs", testWeirdIDs},
		{"CreateFamilyInvalid", testCreateFamilyInvalid},
		{"RotateInvalid", testRotateInvalid},
		{"WrongClient", testWrongClient},
		{"WrongClientOnRevokedFamily", testWrongClientOnRevokedFamily},
		{"FamilyRevoked", testFamilyRevoked},
		{"ExpiryFollowsNow", testExpiryFollowsNow},
		{"ScopeNarrowing", testScopeNarrowing},
		{"ScopeWidened", testScopeWidened},
		{"GraceRetry", testGraceRetry},
		{"GraceRetryWidenedScope", testGraceRetryWidenedScope},
		{"GraceElapsed", testGraceElapsed},
		{"GraceTwoStepsBack", testGraceTwoStepsBack},
		{"ReplayRevokesFamily", testReplayRevokesFamily},
		{"SealedRoundTrip", testSealedRoundTrip},
		{"RevokeRefresh", testRevokeRefresh},
		{"RevokeFamilyUnknown", testRevokeFamilyUnknown},
		{"AccessTokens", testAccessTokens},
		{"ConcurrentSameToken", testConcurrentSameToken},
		{"ConcurrentSameTokenGrace", testConcurrentSameTokenGrace},
		{"ConcurrentFamilies", testConcurrentFamilies},
		{"AuthFailures", testAuthFailures},
		{"AuthFailureBurst", testAuthFailureBurst},
		{"CodeRecords", testCodeRecords},
		{"CheckAccess", testCheckAccess},
		{"RevokeClient", testRevokeClient},
		{"RevokeClientKeep", testRevokeClientKeep},
		{"RotateNotBefore", testRotateNotBefore},
		{"RevokeClientThenRotate", testRevokeClientThenRotate},
		{"RefreshInfo", testRefreshInfo},
		{"RefreshInfoExpiry", testRefreshInfoExpiry},
		{"ListFamilies", testListFamilies},
		{"ListFamiliesInvalid", testListFamiliesInvalid},
		{"ListFamiliesExpiry", testListFamiliesExpiry},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, &harness{t: t, s: s, now: time.Now().Truncate(time.Millisecond)})
		})
	}
}

const (
	tokenLife  = time.Hour
	familyLife = 2 * time.Hour
)

// harness holds one subtest's store and base time.
type harness struct {
	t   *testing.T
	s   store.Store
	now time.Time // base time, whole milliseconds
}

// family is a created family and its current token.
type family struct {
	id, digest, client string
}

// random returns 128 random bits in hex: ids, jtis and test tokens.
func random() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand since Go 1.24)
	return hex.EncodeToString(b)
}

// digest returns the digest of a fresh random token, as the caller would
// compute it; the store never sees the token itself.
func digest() string {
	sum := sha256.Sum256([]byte("rt_" + random()))
	return hex.EncodeToString(sum[:])
}

func (h *harness) create(client, subject, scope string) family {
	h.t.Helper()
	f := family{id: random(), digest: digest(), client: client}
	err := h.s.CreateFamily(context.Background(), store.NewFamily{
		FamilyID:        f.id,
		Digest:          f.digest,
		ClientID:        client,
		Subject:         subject,
		Scope:           scope,
		IssuedAt:        h.now,
		ExpiresAt:       h.now.Add(tokenLife),
		FamilyExpiresAt: h.now.Add(familyLife),
	})
	if err != nil {
		h.t.Fatalf("CreateFamily: %v", err)
	}
	return f
}

// req returns a request to rotate f's current token as f's client at the
// base time, strict, with a fresh successor digest and sealed bytes.
func (h *harness) req(f family) store.RotateRequest {
	return store.RotateRequest{
		FamilyID:        f.id,
		OldDigest:       f.digest,
		NewDigest:       digest(),
		ClientID:        f.client,
		Sealed:          []byte("sealed:" + random()),
		Now:             h.now,
		ExpiresAt:       h.now.Add(tokenLife),
		FamilyExpiresAt: h.now.Add(familyLife),
	}
}

func (h *harness) rotate(r store.RotateRequest) store.RotateResult {
	h.t.Helper()
	res, err := h.s.Rotate(context.Background(), r)
	if err != nil {
		h.t.Fatalf("Rotate: %v", err)
	}
	return res
}

// expect rotates and checks the outcome.
func (h *harness) expect(r store.RotateRequest, want store.Outcome) store.RotateResult {
	h.t.Helper()
	res := h.rotate(r)
	if res.Outcome != want {
		h.t.Fatalf("Rotate outcome = %v, want %v", res.Outcome, want)
	}
	return res
}

// next rotates f's current token successfully and returns the family
// positioned on the successor.
func (h *harness) next(f family) family {
	h.t.Helper()
	r := h.req(f)
	h.expect(r, store.Rotated)
	f.digest = r.NewDigest
	return f
}

func (h *harness) revoked(id string) bool {
	h.t.Helper()
	v, err := h.s.FamilyRevoked(context.Background(), id)
	if err != nil {
		h.t.Fatalf("FamilyRevoked: %v", err)
	}
	return v
}

func (h *harness) wantRevoked(id string, want bool) {
	h.t.Helper()
	if got := h.revoked(id); got != want {
		h.t.Fatalf("FamilyRevoked = %v, want %v", got, want)
	}
}

// sameWords compares space-separated word sets.
func sameWords(a, b string) bool {
	wa, wb := strings.Fields(a), strings.Fields(b)
	slices.Sort(wa)
	slices.Sort(wb)
	return slices.Equal(slices.Compact(wa), slices.Compact(wb))
}

func testCreateAndRotate(t *testing.T, h *harness) {
	f := h.create("c1", "alice", "read write")
	r := h.req(f)
	r.ExpiresAt = h.now.Add(30 * time.Minute)
	res := h.expect(r, store.Rotated)
	if res.Subject != "alice" || res.Scope != "read write" || !res.ExpiresAt.Equal(r.ExpiresAt) {
		t.Fatalf("Rotated result = %+v, want subject alice, scope %q, expiry %v", res, "read write", r.ExpiresAt)
	}
	f.digest = r.NewDigest
	h.next(h.next(f))
	h.wantRevoked(f.id, false)
}

func testNotFound(t *testing.T, h *harness) {
	f := h.create("c1", "alice", "read")
	r := h.req(f)
	r.FamilyID = random()
	h.expect(r, store.NotFound)
	r = h.req(f)
	r.OldDigest = digest()
	h.expect(r, store.NotFound)
	// A digest of another family is not found in this one.
	g := h.create("c1", "alice", "read")
	r = h.req(f)
	r.OldDigest = g.digest
	h.expect(r, store.NotFound)
	h.next(f)
	h.next(g)
}

func testWeirdIDs(t *testing.T, h *harness) {
	ctx := context.Background()
	f := h.create("c1", "alice", "read")
	weird := []string{"", " ", "{", "}", "{}", "a}b", "{" + f.id + "}", f.id + "}", "ü\x00\n\r\t",
		strings.Repeat("x", 10000), "*", "?", "[a-z]", "\xff\xfe"}
	for _, w := range weird {
		for _, r := range []store.RotateRequest{
			{FamilyID: w, OldDigest: f.digest},
			{FamilyID: f.id, OldDigest: w},
			{FamilyID: w, OldDigest: w},
		} {
			r.ClientID, r.NewDigest, r.Now = "c1", digest(), h.now
			r.ExpiresAt, r.FamilyExpiresAt = h.now.Add(tokenLife), h.now.Add(familyLife)
			if res := h.rotate(r); res.Outcome != store.NotFound {
				t.Fatalf("Rotate(family %q, digest %q) = %v, want not_found", r.FamilyID, r.OldDigest, res.Outcome)
			}
			out, err := h.s.RevokeRefresh(ctx, r.FamilyID, r.OldDigest, "c1")
			if err != nil || out != store.RevokeNotFound {
				t.Fatalf("RevokeRefresh(%q, %q) = %v, %v; want RevokeNotFound", r.FamilyID, r.OldDigest, out, err)
			}
		}
		if err := h.s.RevokeFamily(ctx, w); err != nil {
			t.Fatalf("RevokeFamily(%q): %v", w, err)
		}
		h.wantRevoked(w, false)
		if ok, err := JTIRevoked(ctx, h.s, w); err != nil || ok {
			t.Fatalf("AccessTokenRevoked(%q) = %v, %v; want false", w, ok, err)
		}
		if err := h.s.RevokeAccessToken(ctx, w, h.now.Add(time.Hour)); err != nil {
			t.Fatalf("RevokeAccessToken(%q): %v", w, err)
		}
		if ok, err := JTIRevoked(ctx, h.s, w); err != nil || !ok {
			t.Fatalf("AccessTokenRevoked(%q) after revoking = %v, %v; want true", w, ok, err)
		}
	}
	// Nothing above touched the real family.
	h.wantRevoked(f.id, false)
	h.next(f)
}

func testCreateFamilyInvalid(t *testing.T, h *harness) {
	ctx := context.Background()
	f := h.create("c1", "alice", "read")
	for _, nf := range []store.NewFamily{
		{FamilyID: "", Digest: digest()},
		{FamilyID: "a{b", Digest: digest()},
		{FamilyID: "a}b", Digest: digest()},
		{FamilyID: random(), Digest: ""},
		{FamilyID: f.id, Digest: digest()}, // already in use
	} {
		nf.ClientID, nf.ExpiresAt, nf.FamilyExpiresAt = "c2", h.now.Add(tokenLife), h.now.Add(familyLife)
		err := h.s.CreateFamily(ctx, nf)
		if err == nil {
			t.Fatalf("CreateFamily(%q, %q) succeeded", nf.FamilyID, nf.Digest)
		}
		if errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("CreateFamily(%q, %q) = %v, must not wrap ErrUnavailable", nf.FamilyID, nf.Digest, err)
		}
	}
	// The family whose id was reused is untouched.
	h.next(f)
}

func testRotateInvalid(t *testing.T, h *harness) {
	f := h.create("c1", "alice", "read")
	for _, nd := range []string{f.digest, ""} {
		r := h.req(f)
		r.NewDigest = nd
		_, err := h.s.Rotate(context.Background(), r)
		if err == nil || errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("Rotate with successor digest %q: err = %v, want a non-ErrUnavailable error", nd, err)
		}
	}
	h.next(f)
}

func testWrongClient(t *testing.T, h *harness) {
	f := h.create("c1", "alice", "read")
	r := h.req(f)
	r.ClientID = "c2"
	h.expect(r, store.WrongClient)
	r.ClientID = ""
	h.expect(r, store.WrongClient)
	out, err := h.s.RevokeRefresh(context.Background(), f.id, f.digest, "c2")
	if err != nil || out != store.RevokeWrongClient {
		t.Fatalf("RevokeRefresh by another client = %v, %v; want RevokeWrongClient", out, err)
	}
	h.wantRevoked(f.id, false)
	// The token was not spent: its owner rotates it normally, twice over.
	h.next(h.next(f))
}

func testWrongClientOnRevokedFamily(t *testing.T, h *harness) {
	f := h.create("c1", "alice", "read")
	if err := h.s.RevokeFamily(context.Background(), f.id); err != nil {
		t.Fatal(err)
	}
	r := h.req(f)
	r.ClientID = "c2"
	h.expect(r, store.WrongClient)
	h.expect(h.req(f), store.FamilyRevoked)
}

func testFamilyRevoked(t *testing.T, h *harness) {
	ctx := context.Background()
	f := h.create("c1", "alice", "read")
	g := h.create("c1", "alice", "read")
	f = h.next(f)
	for range 2 { // idempotent
		if err := h.s.RevokeFamily(ctx, f.id); err != nil {
			t.Fatal(err)
		}
		h.wantRevoked(f.id, true)
		h.expect(h.req(f), store.FamilyRevoked)
	}
	// Other families are unaffected.
	h.wantRevoked(g.id, false)
	h.next(g)
}

func testExpiryFollowsNow(t *testing.T, h *harness) {
	f := h.create("c1", "alice", "read")
	exp := h.now.Add(tokenLife)
	for _, now := range []time.Time{exp, exp.Add(time.Millisecond), exp.Add(24 * time.Hour)} {
		r := h.req(f)
		r.Now = now
		h.expect(r, store.Expired)
	}
	h.wantRevoked(f.id, false)
	// Nothing changed, and only Now decides: a Now long before the real
	// clock still finds the token valid.
	r := h.req(f)
	r.Now = exp.Add(-time.Millisecond)
	h.expect(r, store.Rotated)
	r = h.req(family{id: f.id, digest: r.NewDigest, client: "c1"})
	r.Now = h.now.Add(-48 * time.Hour)
	h.expect(r, store.Rotated)
	// The successor expires at its own ExpiresAt.
	f.digest = r.NewDigest
	r = h.req(f)
	r.Now = h.now.Add(tokenLife)
	h.expect(r, store.Expired)
}

func testScopeNarrowing(t *testing.T, h *harness) {
	f := h.create("c1", "alice", "read write admin")
	r := h.req(f)
	r.Scope = " write  read read\t"
	res := h.expect(r, store.Rotated)
	if !sameWords(res.Scope, "read write") {
		t.Fatalf("narrowed scope = %q, want read write", res.Scope)
	}
	f.digest = r.NewDigest
	// Empty and blank scopes keep the narrowed scope.
	for _, s := range []string{"", "  "} {
		r = h.req(f)
		r.Scope = s
		res = h.expect(r, store.Rotated)
		if !sameWords(res.Scope, "read write") {
			t.Fatalf("kept scope = %q, want read write", res.Scope)
		}
		f.digest = r.NewDigest
	}
	// The dropped word cannot come back.
	r = h.req(f)
	r.Scope = "admin"
	h.expect(r, store.ScopeWidened)
	r.Scope = "read"
	res = h.expect(r, store.Rotated)
	if res.Scope != "read" {
		t.Fatalf("scope = %q, want read", res.Scope)
	}
}

func testScopeWidened(t *testing.T, h *harness) {
	f := h.create("c1", "alice", "read")
	for _, s := range []string{"read write", "write", "rea", "READ"} {
		r := h.req(f)
		r.Scope = s
		h.expect(r, store.ScopeWidened)
	}
	h.wantRevoked(f.id, false)
	res := h.expect(h.req(f), store.Rotated) // not spent
	if res.Scope != "read" {
		t.Fatalf("scope = %q, want read", res.Scope)
	}
	// A token without scope cannot gain one.
	g := h.create("c1", "alice", "")
	r := h.req(g)
	r.Scope = "read"
	h.expect(r, store.ScopeWidened)
	r.Scope = ""
	if res := h.expect(r, store.Rotated); res.Scope != "" {
		t.Fatalf("scope = %q, want empty", res.Scope)
	}
}

func testGraceRetry(t *testing.T, h *harness) {
	const grace = 5 * time.Second
	f := h.create("c1", "alice", "read write")
	first := h.req(f)
	first.Scope = "read"
	first.ExpiresAt = h.now.Add(40 * time.Minute)
	first.Grace = grace
	h.expect(first, store.Rotated)

	for _, after := range []time.Duration{0, time.Second, grace} {
		retry := h.req(f)
		retry.Now = h.now.Add(after)
		retry.Grace = grace
		res := h.expect(retry, store.GraceRetry)
		if res.Subject != "alice" || res.Scope != "read" || !res.ExpiresAt.Equal(first.ExpiresAt) ||
			!bytes.Equal(res.Sealed, first.Sealed) {
			t.Fatalf("grace retry after %v = %+v, want the first rotation's successor", after, res)
		}
		// The retry stored nothing.
		r := h.req(family{id: f.id, digest: retry.NewDigest, client: "c1"})
		h.expect(r, store.NotFound)
	}
	h.wantRevoked(f.id, false)
	// The successor handed out is still the family's current token.
	h.next(family{id: f.id, digest: first.NewDigest, client: "c1"})
}

func testGraceRetryWidenedScope(t *testing.T, h *harness) {
	f := h.create("c1", "alice", "read")
	r := h.req(f)
	r.Grace = time.Minute
	h.expect(r, store.Rotated)
	retry := h.req(f)
	retry.Grace = time.Minute
	retry.Scope = "read write"
	h.expect(retry, store.ScopeWidened)
	h.wantRevoked(f.id, false)
	retry.Scope = ""
	h.expect(retry, store.GraceRetry)
}

func testGraceElapsed(t *testing.T, h *harness) {
	const grace = 5 * time.Second
	f := h.create("c1", "alice", "read")
	r := h.req(f)
	r.Grace = grace
	h.expect(r, store.Rotated)
	retry := h.req(f)
	retry.Now = h.now.Add(grace + time.Millisecond)
	retry.Grace = grace
	h.expect(retry, store.Replayed)
	h.wantRevoked(f.id, true)
	h.expect(h.req(family{id: f.id, digest: r.NewDigest, client: "c1"}), store.FamilyRevoked)
}

func testGraceTwoStepsBack(t *testing.T, h *harness) {
	f0 := h.create("c1", "alice", "read")
	r := h.req(f0)
	r.Grace = time.Minute
	h.expect(r, store.Rotated)
	f1 := family{id: f0.id, digest: r.NewDigest, client: "c1"}
	f2 := h.next(f1)
	retry := h.req(f0)
	retry.Grace = time.Minute
	h.expect(retry, store.Replayed)
	h.wantRevoked(f0.id, true)
	h.expect(h.req(f2), store.FamilyRevoked)
}

func testReplayRevokesFamily(t *testing.T, h *harness) {
	f0 := h.create("c1", "alice", "read")
	g := h.create("c1", "alice", "read")
	f1 := h.next(f0)
	h.expect(h.req(f0), store.Replayed) // strict: no grace
	h.wantRevoked(f0.id, true)
	h.expect(h.req(f1), store.FamilyRevoked)
	h.expect(h.req(f0), store.FamilyRevoked)
	// Replay of the wrong client's kind is still WrongClient first.
	r := h.req(f0)
	r.ClientID = "c2"
	h.expect(r, store.WrongClient)
	h.wantRevoked(g.id, false)
	h.next(g)
}

func testSealedRoundTrip(t *testing.T, h *harness) {
	all := make([]byte, 0, 512)
	for i := range 256 {
		all = append(all, byte(i))
	}
	all = append(all, 0, 0, 0xff, 0xc3, 0x28, '\r', '\n')
	for _, sealed := range [][]byte{all, {0}, nil} {
		f := h.create("c1", "alice", "read")
		r := h.req(f)
		r.Sealed = bytes.Clone(sealed)
		r.Grace = time.Minute
		h.expect(r, store.Rotated)
		retry := h.req(f)
		retry.Grace = time.Minute
		res := h.expect(retry, store.GraceRetry)
		if !bytes.Equal(res.Sealed, sealed) {
			t.Fatalf("sealed = %x, want %x", res.Sealed, sealed)
		}
	}
}

func testRevokeRefresh(t *testing.T, h *harness) {
	ctx := context.Background()
	f0 := h.create("c1", "alice", "read")
	f1 := h.next(f0)
	if out, err := h.s.RevokeRefresh(ctx, f0.id, digest(), "c1"); err != nil || out != store.RevokeNotFound {
		t.Fatalf("RevokeRefresh(unknown digest) = %v, %v; want RevokeNotFound", out, err)
	}
	if out, err := h.s.RevokeRefresh(ctx, random(), f1.digest, "c1"); err != nil || out != store.RevokeNotFound {
		t.Fatalf("RevokeRefresh(unknown family) = %v, %v; want RevokeNotFound", out, err)
	}
	if out, err := h.s.RevokeRefresh(ctx, f1.id, f1.digest, "c2"); err != nil || out != store.RevokeWrongClient {
		t.Fatalf("RevokeRefresh(other client) = %v, %v; want RevokeWrongClient", out, err)
	}
	h.wantRevoked(f1.id, false)
	for range 2 { // idempotent
		if out, err := h.s.RevokeRefresh(ctx, f1.id, f1.digest, "c1"); err != nil || out != store.FamilyRevokedNow {
			t.Fatalf("RevokeRefresh = %v, %v; want FamilyRevokedNow", out, err)
		}
		h.wantRevoked(f1.id, true)
	}
	h.expect(h.req(f1), store.FamilyRevoked)

	// A rotated (older) token of the family revokes it too.
	g0 := h.create("c1", "alice", "read")
	g1 := h.next(g0)
	if out, err := h.s.RevokeRefresh(ctx, g0.id, g0.digest, "c1"); err != nil || out != store.FamilyRevokedNow {
		t.Fatalf("RevokeRefresh(rotated token) = %v, %v; want FamilyRevokedNow", out, err)
	}
	h.expect(h.req(g1), store.FamilyRevoked)
}

func testRevokeFamilyUnknown(t *testing.T, h *harness) {
	ctx := context.Background()
	id := random()
	if err := h.s.RevokeFamily(ctx, id); err != nil {
		t.Fatalf("RevokeFamily(unknown): %v", err)
	}
	h.wantRevoked(id, false)
	// No record was created: the id is still free and the family is live.
	err := h.s.CreateFamily(ctx, store.NewFamily{
		FamilyID: id, Digest: digest(), ClientID: "c1",
		ExpiresAt: h.now.Add(tokenLife), FamilyExpiresAt: h.now.Add(familyLife),
	})
	if err != nil {
		t.Fatalf("CreateFamily after revoking the unknown id: %v", err)
	}
	h.wantRevoked(id, false)
}

func testAccessTokens(t *testing.T, h *harness) {
	ctx := context.Background()
	check := func(jti string, want bool) {
		t.Helper()
		got, err := JTIRevoked(ctx, h.s, jti)
		if err != nil || got != want {
			t.Fatalf("AccessTokenRevoked(%q) = %v, %v; want %v", jti, got, err, want)
		}
	}
	a, b, past := random(), random(), random()
	check(a, false)
	for range 2 {
		if err := h.s.RevokeAccessToken(ctx, a, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		check(a, true)
	}
	check(b, false)
	if err := h.s.RevokeAccessToken(ctx, past, time.Now().Add(-time.Second)); err != nil {
		t.Fatalf("RevokeAccessToken(expired): %v", err)
	}
	check(past, false)

	// An entry disappears at exp (by the real clock, as the token itself).
	short := random()
	if err := h.s.RevokeAccessToken(ctx, short, time.Now().Add(100*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		got, err := JTIRevoked(ctx, h.s, short)
		if err != nil {
			t.Fatal(err)
		}
		if !got {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("revoked jti still present 5s after its exp")
		}
	}
}

const goroutines = 50

// rotateConcurrently presents the same request shape from many goroutines
// at once, each with its own successor digest and sealed bytes.
func (h *harness) rotateConcurrently(f family, grace time.Duration) ([]store.RotateRequest, []store.RotateResult) {
	h.t.Helper()
	reqs := make([]store.RotateRequest, goroutines)
	for i := range reqs {
		reqs[i] = h.req(f)
		reqs[i].Grace = grace
	}
	results := make([]store.RotateResult, goroutines)
	errs := make([]error, goroutines)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range reqs {
		wg.Go(func() {
			<-start
			results[i], errs[i] = h.s.Rotate(context.Background(), reqs[i])
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		h.t.Fatalf("concurrent Rotate: %v", err)
	}
	return reqs, results
}

func testConcurrentSameToken(t *testing.T, h *harness) {
	f := h.create("c1", "alice", "read")
	reqs, results := h.rotateConcurrently(f, 0)
	count := map[store.Outcome]int{}
	winner := -1
	for i, res := range results {
		count[res.Outcome]++
		if res.Outcome == store.Rotated {
			winner = i
		}
	}
	// Rotation is atomic, so the first loser sees the rotated token in a live
	// family (a replay) and every later one sees the family revoked.
	if count[store.Rotated] != 1 || count[store.Replayed] != 1 || count[store.FamilyRevoked] != goroutines-2 {
		t.Fatalf("outcomes = %v, want 1 rotated, 1 replayed, %d family_revoked", count, goroutines-2)
	}
	h.wantRevoked(f.id, true)
	h.expect(h.req(family{id: f.id, digest: reqs[winner].NewDigest, client: "c1"}), store.FamilyRevoked)
}

func testConcurrentSameTokenGrace(t *testing.T, h *harness) {
	f := h.create("c1", "alice", "read")
	reqs, results := h.rotateConcurrently(f, time.Minute)
	winner := slices.IndexFunc(results, func(r store.RotateResult) bool { return r.Outcome == store.Rotated })
	if winner < 0 {
		t.Fatal("no rotation succeeded")
	}
	for i, res := range results {
		if i == winner {
			continue
		}
		if res.Outcome != store.GraceRetry || !bytes.Equal(res.Sealed, reqs[winner].Sealed) {
			t.Fatalf("result %d = %v with sealed %q, want grace_retry with the winner's %q",
				i, res.Outcome, res.Sealed, reqs[winner].Sealed)
		}
	}
	h.wantRevoked(f.id, false)
	h.next(family{id: f.id, digest: reqs[winner].NewDigest, client: "c1"})
}

func testConcurrentFamilies(t *testing.T, h *harness) {
	const families, steps = 20, 10
	fams := make([]family, families)
	for i := range fams {
		fams[i] = h.create("c1", "alice", "read")
	}
	errs := make([]error, families)
	var wg sync.WaitGroup
	for i, f := range fams {
		wg.Go(func() {
			for range steps {
				r := h.req(f)
				res, err := h.s.Rotate(context.Background(), r)
				if err == nil && res.Outcome != store.Rotated {
					err = errors.New("outcome " + res.Outcome.String())
				}
				if err != nil {
					errs[i] = err
					return
				}
				f.digest = r.NewDigest
			}
			fams[i] = f
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent rotation of distinct families: %v", err)
	}
	for _, f := range fams {
		h.wantRevoked(f.id, false)
		h.next(f)
	}
}

// testAuthFailures: failures count per key within a window that starts with
// the first failure and then disappears.
func testAuthFailures(t *testing.T, h *harness) {
	ctx := context.Background()
	id, ip := "id:"+random(), "ip:"+random()
	counts, err := h.s.AuthFailures(ctx, []string{id, ip})
	if err != nil || len(counts) != 2 || counts[0].Count != 0 || counts[1].Count != 0 {
		t.Fatalf("fresh keys: %+v, %v", counts, err)
	}
	const window = 400 * time.Millisecond
	for i := range 3 {
		got, err := h.s.RecordAuthFailure(ctx, []string{id}, window)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Count != int64(i+1) || got[0].ResetIn <= 0 || got[0].ResetIn > window {
			t.Fatalf("failure %d: RecordAuthFailure returned %+v; want count %d within the window", i+1, got, i+1)
		}
	}
	got, err := h.s.RecordAuthFailure(ctx, []string{id, ip}, window)
	if err != nil || len(got) != 2 || got[0].Count != 4 || got[1].Count != 1 {
		t.Fatalf("RecordAuthFailure returned %+v, %v; want 4 and 1", got, err)
	}
	counts, err = h.s.AuthFailures(ctx, []string{id, ip})
	if err != nil || counts[0].Count != 4 || counts[1].Count != 1 {
		t.Fatalf("counts %+v, %v; want 4 and 1", counts, err)
	}
	for _, c := range counts {
		if c.ResetIn <= 0 || c.ResetIn > window {
			t.Errorf("ResetIn %v outside (0, %v]", c.ResetIn, window)
		}
	}
	time.Sleep(window + 150*time.Millisecond)
	counts, err = h.s.AuthFailures(ctx, []string{id, ip})
	if err != nil || counts[0].Count != 0 || counts[1].Count != 0 {
		t.Fatalf("after the window: %+v, %v", counts, err)
	}
	// A new failure starts a new window from one.
	if got, err := h.s.RecordAuthFailure(ctx, []string{id}, window); err != nil || got[0].Count != 1 {
		t.Fatalf("new window: %+v, %v", got, err)
	}
	if counts, _ = h.s.AuthFailures(ctx, []string{id}); counts[0].Count != 1 {
		t.Fatalf("new window: %+v", counts)
	}
}

// testAuthFailureBurst: concurrent failures on one key each get their own
// count, 1 to n, so a limiter deciding on the returned count lets exactly
// its budget through, however many arrive at once.
func testAuthFailureBurst(t *testing.T, h *harness) {
	ctx := context.Background()
	key := "ip:" + random()
	const n = 200
	counts := make([]int64, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := h.s.RecordAuthFailure(ctx, []string{key}, time.Minute)
			if err != nil {
				errs <- err
				return
			}
			counts[i] = got[0].Count
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	slices.Sort(counts)
	for i, c := range counts {
		if c != int64(i+1) {
			t.Fatalf("the %d concurrent failures got counts %v; want each of 1..%d once", n, counts, n)
		}
	}
}

// testCodeRecords: a code's binding and its redemptions are kept for their
// time and apart from every other code's.
func testCodeRecords(t *testing.T, h *harness) {
	ctx := context.Background()
	code, other := random(), random()
	if b, err := h.s.CodeBinding(ctx, code); err != nil || b != nil {
		t.Fatalf("unbound code: %+v, %v", b, err)
	}
	want := store.CodeBinding{ClientID: "app", RedirectURI: "https://app.example/cb", Nonce: `n"'\\ü`,
		CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", CodeChallengeMethod: "S256"}
	if err := h.s.PutCodeBinding(ctx, code, want, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if b, err := h.s.CodeBinding(ctx, code); err != nil || b == nil || *b != want {
		t.Fatalf("binding %+v, %v; want %+v", b, err, want)
	}
	if b, _ := h.s.CodeBinding(ctx, other); b != nil {
		t.Fatalf("another code has a binding: %+v", b)
	}

	if rs, err := h.s.Redemptions(ctx, code); err != nil || len(rs) != 0 {
		t.Fatalf("redemptions of a fresh code: %+v, %v", rs, err)
	}
	exp := time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	first := store.Redemption{FamilyID: "fam1", AccessJTI: "jti1", AccessExpiresAt: exp}
	second := store.Redemption{SealedAccess: []byte{0, 1, 2, 255}}
	for _, r := range []store.Redemption{first, second} {
		if err := h.s.AddRedemption(ctx, code, r, 300*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	rs, err := h.s.Redemptions(ctx, code)
	if err != nil || len(rs) != 2 || rs[0].FamilyID != "fam1" || rs[0].AccessJTI != "jti1" ||
		!rs[0].AccessExpiresAt.Equal(exp) || !bytes.Equal(rs[1].SealedAccess, second.SealedAccess) {
		t.Fatalf("redemptions %+v, %v", rs, err)
	}
	time.Sleep(450 * time.Millisecond)
	if b, _ := h.s.CodeBinding(ctx, code); b != nil {
		t.Errorf("binding outlived its time: %+v", b)
	}
	if rs, _ := h.s.Redemptions(ctx, code); len(rs) != 0 {
		t.Errorf("redemptions outlived their time: %+v", rs)
	}
}

// JTIRevoked reports, through CheckAccess, whether the jti was revoked.
func JTIRevoked(ctx context.Context, s store.AccessChecker, jti string) (bool, error) {
	st, err := s.CheckAccess(ctx, jti, "", "")
	return st.JTIRevoked, err
}

// ClientRevokedBefore returns, through CheckAccess, the client's
// revoked-before time (zero when none).
func ClientRevokedBefore(ctx context.Context, s store.AccessChecker, clientID string) (time.Time, error) {
	st, err := s.CheckAccess(ctx, "none", "", clientID)
	return st.ClientRevokedBefore, err
}

// weirdIDs are ids no real token carries, which must still neither fail nor
// collide with one another or with real ids.
var weirdIDs = []string{"", " ", "{", "}", "{}", "a}b", "a}:rb", "}:rb", "ü\x00\n\r\t",
	strings.Repeat("x", 10000), "*", "?", "[a-z]", "\xff\xfe"}

// clientBefore returns ClientRevokedBefore, failing the test on an error.
func (h *harness) clientBefore(client string) time.Time {
	h.t.Helper()
	v, err := ClientRevokedBefore(context.Background(), h.s, client)
	if err != nil {
		h.t.Fatalf("ClientRevokedBefore(%q): %v", client, err)
	}
	return v
}

func (h *harness) wantClientBefore(client string, want time.Time) {
	h.t.Helper()
	if got := h.clientBefore(client); !got.Equal(want) || got.IsZero() != want.IsZero() {
		h.t.Fatalf("ClientRevokedBefore(%q) = %v, want %v", client, got, want)
	}
}

func (h *harness) revokeClient(client string, before time.Time, keep time.Duration) {
	h.t.Helper()
	if err := h.s.RevokeClient(context.Background(), client, before, keep); err != nil {
		h.t.Fatalf("RevokeClient(%q, %v, %v): %v", client, before, keep, err)
	}
}

// wantAccess checks CheckAccess, and that each of its fields agrees with
// the single-purpose method.
func (h *harness) wantAccess(jti, familyID, client string, want store.AccessState) {
	h.t.Helper()
	ctx := context.Background()
	got, err := h.s.CheckAccess(ctx, jti, familyID, client)
	if err != nil {
		h.t.Fatalf("CheckAccess(%q, %q, %q): %v", jti, familyID, client, err)
	}
	if got.JTIRevoked != want.JTIRevoked || got.FamilyRevoked != want.FamilyRevoked ||
		!got.ClientRevokedBefore.Equal(want.ClientRevokedBefore) ||
		got.ClientRevokedBefore.IsZero() != want.ClientRevokedBefore.IsZero() {
		h.t.Fatalf("CheckAccess(%q, %q, %q) = %+v, want %+v", jti, familyID, client, got, want)
	}
	if v, err := JTIRevoked(ctx, h.s, jti); err != nil || v != got.JTIRevoked {
		h.t.Fatalf("AccessTokenRevoked(%q) = %v, %v; CheckAccess says %v", jti, v, err, got.JTIRevoked)
	}
	if familyID != "" {
		if v := h.revoked(familyID); v != got.FamilyRevoked {
			h.t.Fatalf("FamilyRevoked(%q) = %v; CheckAccess says %v", familyID, v, got.FamilyRevoked)
		}
	}
	if v := h.clientBefore(client); !v.Equal(got.ClientRevokedBefore) {
		h.t.Fatalf("ClientRevokedBefore(%q) = %v; CheckAccess says %v", client, v, got.ClientRevokedBefore)
	}
}

func testCheckAccess(t *testing.T, h *harness) {
	ctx := context.Background()
	jti, otherJTI := random(), random()
	client, otherClient := "c-"+random(), "c-"+random()
	f := h.create(client, "alice", "read")
	g := h.create(client, "alice", "read")
	none := store.AccessState{}

	// Nothing revoked: a live family, no family, an unknown family, ids no
	// family can have.
	for _, fam := range append([]string{f.id, random()}, weirdIDs...) {
		h.wantAccess(jti, fam, client, none)
	}

	if err := h.s.RevokeAccessToken(ctx, jti, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	h.wantAccess(jti, f.id, client, store.AccessState{JTIRevoked: true})
	h.wantAccess(otherJTI, f.id, client, none)

	if err := h.s.RevokeFamily(ctx, f.id); err != nil {
		t.Fatal(err)
	}
	h.wantAccess(otherJTI, f.id, client, store.AccessState{FamilyRevoked: true})
	// A token without a family, or of another family, is not affected.
	h.wantAccess(otherJTI, "", client, none)
	h.wantAccess(otherJTI, g.id, client, none)

	before := h.now.Add(-time.Minute)
	h.revokeClient(client, before, time.Hour)
	h.wantAccess(otherJTI, g.id, client, store.AccessState{ClientRevokedBefore: before})
	h.wantAccess(otherJTI, g.id, otherClient, none)

	// Everything at once, in one call.
	h.wantAccess(jti, f.id, client, store.AccessState{JTIRevoked: true, FamilyRevoked: true, ClientRevokedBefore: before})
	h.wantAccess(jti, "", client, store.AccessState{JTIRevoked: true, ClientRevokedBefore: before})

	// Weird jtis and client ids answer too, each for itself only.
	for i, w := range weirdIDs {
		h.wantAccess(w, "", w, none)
		if err := h.s.RevokeAccessToken(ctx, w, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		at := h.now.Add(time.Duration(i+1) * time.Second)
		h.revokeClient(w, at, time.Hour)
		h.wantAccess(w, g.id, w, store.AccessState{JTIRevoked: true, ClientRevokedBefore: at})
	}
	h.wantAccess(otherJTI, g.id, otherClient, none)
	// The families themselves are unchanged by all of this.
	h.expect(h.req(f), store.FamilyRevoked)
	h.next(g)
}

func testRevokeClient(t *testing.T, h *harness) {
	ctx := context.Background()
	c, other := "c-"+random(), "c-"+random()
	h.wantClientBefore(c, time.Time{})

	t0 := h.now
	h.revokeClient(c, t0, time.Hour)
	h.wantClientBefore(c, t0)
	// An earlier time does not move it back, however long it asks to keep.
	h.revokeClient(c, t0.Add(-time.Minute), 2*time.Hour)
	h.wantClientBefore(c, t0)
	h.revokeClient(c, t0, time.Hour) // idempotent
	h.wantClientBefore(c, t0)
	// A later one moves it forward.
	t1 := t0.Add(time.Minute)
	h.revokeClient(c, t1, time.Hour)
	h.wantClientBefore(c, t1)
	// A zero time revokes nothing, and changes nothing.
	h.revokeClient(c, time.Time{}, time.Hour)
	h.wantClientBefore(c, t1)
	h.revokeClient(other, time.Time{}, time.Hour)
	h.wantClientBefore(other, time.Time{})
	// keep must be positive: a programming error, not an outage.
	for _, keep := range []time.Duration{0, -time.Second} {
		err := h.s.RevokeClient(ctx, c, t1.Add(time.Hour), keep)
		if err == nil || errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("RevokeClient with keep %v: err = %v, want a non-ErrUnavailable error", keep, err)
		}
	}
	h.wantClientBefore(c, t1)
	// A keep below a millisecond still keeps it.
	h.revokeClient(other, t0, time.Microsecond)
	if got := h.clientBefore(other); !got.Equal(t0) && !got.IsZero() {
		t.Fatalf("ClientRevokedBefore after a 1µs keep = %v, want %v or (expired) zero", got, t0)
	}

	// Weird client ids: each its own record, none colliding.
	for i, w := range weirdIDs {
		h.wantClientBefore(w, time.Time{})
		h.revokeClient(w, t0.Add(time.Duration(i+1)*time.Second), time.Hour)
	}
	for i, w := range weirdIDs {
		h.wantClientBefore(w, t0.Add(time.Duration(i+1)*time.Second))
	}
	h.wantClientBefore(c, t1)
	h.wantClientBefore("a", time.Time{})
}

// testRevokeClientKeep: a revoked-before time disappears after keep (by
// the real clock), and a later call extends but never shortens how long it
// is kept.
func testRevokeClientKeep(t *testing.T, h *harness) {
	const short = 300 * time.Millisecond
	shortOnly, shortened, extended := "c-"+random(), "c-"+random(), "c-"+random()
	t0 := h.now
	h.revokeClient(shortOnly, t0, short)
	h.revokeClient(shortened, t0, time.Hour)
	h.revokeClient(shortened, t0.Add(-time.Second), short) // neither moves back nor shortens
	h.revokeClient(extended, t0, short)
	h.revokeClient(extended, t0.Add(-time.Second), time.Hour) // extends, keeps t0
	for _, c := range []string{shortOnly, shortened, extended} {
		h.wantClientBefore(c, t0)
	}
	for deadline := time.Now().Add(5 * time.Second); !h.clientBefore(shortOnly).IsZero(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("revoked-before time still kept 5s after its keep")
		}
	}
	time.Sleep(100 * time.Millisecond) // past the short keep of the others too
	h.wantClientBefore(shortened, t0)
	h.wantClientBefore(extended, t0)
	h.wantAccess(random(), "", extended, store.AccessState{ClientRevokedBefore: t0})
	h.wantAccess(random(), "", shortOnly, store.AccessState{})
}

// testRotateNotBefore: a family created before RotateRequest.NotBefore is
// refused as revoked, checked right after the client and before anything
// else, and nothing changes.
func testRotateNotBefore(t *testing.T, h *harness) {
	f0 := h.create("c1", "alice", "read") // created at h.now
	after := h.now.Add(time.Millisecond)

	r := h.req(f0)
	r.NotBefore = after
	h.expect(r, store.FamilyRevoked)
	// The client check comes first.
	r.ClientID = "c2"
	h.expect(r, store.WrongClient)
	// Before expiry and scope.
	r = h.req(f0)
	r.NotBefore = after
	r.Now = h.now.Add(2 * tokenLife)
	h.expect(r, store.FamilyRevoked)
	r = h.req(f0)
	r.NotBefore = after
	r.Scope = "read write"
	h.expect(r, store.FamilyRevoked)
	// Nothing changed: the family is not revoked, the token not spent.
	h.wantRevoked(f0.id, false)

	// Created at NotBefore or later is fine; so is a zero NotBefore.
	r = h.req(f0)
	r.NotBefore = h.now
	h.expect(r, store.Rotated)
	f1 := family{id: f0.id, digest: r.NewDigest, client: "c1"}
	r = h.req(f1)
	r.NotBefore = h.now.Add(-time.Hour)
	h.expect(r, store.Rotated)
	f2 := family{id: f0.id, digest: r.NewDigest, client: "c1"}

	// Successors count from the family's creation, not their own issue.
	r = h.req(f2)
	r.Now = h.now.Add(time.Minute)
	r.NotBefore = h.now.Add(time.Second)
	h.expect(r, store.FamilyRevoked)
	// A spent token is refused as revoked too, not as a replay.
	r = h.req(f0)
	r.NotBefore = after
	h.expect(r, store.FamilyRevoked)
	h.wantRevoked(f0.id, false)
	h.next(f2)

	// A family created without an issue time is older than any NotBefore.
	g := family{id: random(), digest: digest(), client: "c1"}
	err := h.s.CreateFamily(context.Background(), store.NewFamily{
		FamilyID: g.id, Digest: g.digest, ClientID: "c1",
		ExpiresAt: h.now.Add(tokenLife), FamilyExpiresAt: h.now.Add(familyLife),
	})
	if err != nil {
		t.Fatal(err)
	}
	r = h.req(g)
	r.NotBefore = time.UnixMilli(1)
	h.expect(r, store.FamilyRevoked)
	h.next(g)
}

// testRevokeClientThenRotate: Rotate applies the client's revoked-before
// time by itself (no NotBefore passed): the client's older families are
// refused, whatever else is wrong with the request, and stay refused; its
// younger ones and other clients' families rotate.
func testRevokeClientThenRotate(t *testing.T, h *harness) {
	old := h.create("c1", "alice", "read")
	spent := h.create("c1", "alice", "read")
	h.next(spent) // spent.digest is now a rotated token
	other := h.create("c2", "alice", "read")
	h.revokeClient("c1", h.now.Add(time.Second), time.Hour)
	h.now = h.now.Add(2 * time.Second)
	young := h.create("c1", "alice", "read")

	h.expect(h.req(old), store.FamilyRevoked)
	h.expect(h.req(old), store.FamilyRevoked) // and again: nothing handed out
	r := h.req(old)
	r.Scope = "read write"
	h.expect(r, store.FamilyRevoked)
	r = h.req(old)
	r.Now = h.now.Add(2 * tokenLife)
	h.expect(r, store.FamilyRevoked)
	h.expect(h.req(spent), store.FamilyRevoked) // not counted as a replay
	r = h.req(old)
	r.ClientID = "c2"
	h.expect(r, store.WrongClient) // the client check still comes first
	h.next(young)
	h.next(other)
	// The refused family's access tokens stay refused at the edge through
	// the client's time.
	h.wantAccess(random(), old.id, "c1", store.AccessState{
		FamilyRevoked: h.revoked(old.id), ClientRevokedBefore: h.now.Add(-time.Second)})
}

func (h *harness) info(familyID, digest string) (store.RefreshInfo, bool) {
	h.t.Helper()
	info, ok, err := h.s.RefreshInfo(context.Background(), familyID, digest)
	if err != nil {
		h.t.Fatalf("RefreshInfo(%q, %q): %v", familyID, digest, err)
	}
	if !ok && info != (store.RefreshInfo{}) {
		h.t.Fatalf("RefreshInfo(%q, %q) = %+v with false, want the zero value", familyID, digest, info)
	}
	return info, ok
}

func (h *harness) wantInfo(familyID, digest string, want store.RefreshInfo) {
	h.t.Helper()
	got, ok := h.info(familyID, digest)
	if !ok {
		h.t.Fatalf("RefreshInfo(%q, %q) not found, want %+v", familyID, digest, want)
	}
	if got.ClientID != want.ClientID || got.Subject != want.Subject || got.Scope != want.Scope ||
		!got.IssuedAt.Equal(want.IssuedAt) || got.IssuedAt.IsZero() != want.IssuedAt.IsZero() ||
		!got.ExpiresAt.Equal(want.ExpiresAt) || got.Active != want.Active {
		h.t.Fatalf("RefreshInfo(%q, %q) = %+v, want %+v", familyID, digest, got, want)
	}
}

func (h *harness) wantNoInfo(familyID, digest string) {
	h.t.Helper()
	if got, ok := h.info(familyID, digest); ok {
		h.t.Fatalf("RefreshInfo(%q, %q) = %+v, want not found", familyID, digest, got)
	}
}

func testRefreshInfo(t *testing.T, h *harness) {
	ctx := context.Background()
	f0 := h.create("c1", "alice", "read write")
	want0 := store.RefreshInfo{ClientID: "c1", Subject: "alice", Scope: "read write",
		IssuedAt: h.now, ExpiresAt: h.now.Add(tokenLife), Active: true}
	h.wantInfo(f0.id, f0.digest, want0)

	// Rotation: the spent token is inactive, its successor active with its
	// own scope and expiry and the family's creation time.
	r := h.req(f0)
	r.Scope = "read"
	r.Now = h.now.Add(time.Minute)
	r.ExpiresAt = h.now.Add(30 * time.Minute)
	h.expect(r, store.Rotated)
	f1 := family{id: f0.id, digest: r.NewDigest, client: "c1"}
	want0.Active = false
	h.wantInfo(f0.id, f0.digest, want0)
	want1 := store.RefreshInfo{ClientID: "c1", Subject: "alice", Scope: "read",
		IssuedAt: h.now, ExpiresAt: r.ExpiresAt, Active: true}
	h.wantInfo(f1.id, f1.digest, want1)

	// Unknown tokens, families and ids.
	g := h.create("c2", "bob", "")
	h.wantInfo(g.id, g.digest, store.RefreshInfo{ClientID: "c2", Subject: "bob",
		IssuedAt: h.now, ExpiresAt: h.now.Add(tokenLife), Active: true})
	h.wantNoInfo(f0.id, digest())
	h.wantNoInfo(random(), f1.digest)
	h.wantNoInfo(f0.id, g.digest)
	h.wantNoInfo(g.id, f1.digest)
	for _, w := range weirdIDs {
		h.wantNoInfo(w, f1.digest)
		h.wantNoInfo(f1.id, w)
		h.wantNoInfo(w, w)
	}

	// A revoked family: found, inactive.
	if err := h.s.RevokeFamily(ctx, f0.id); err != nil {
		t.Fatal(err)
	}
	want1.Active = false
	h.wantInfo(f1.id, f1.digest, want1)
	h.wantInfo(f0.id, f0.digest, want0)
	// Reading changed nothing elsewhere.
	h.wantInfo(g.id, g.digest, store.RefreshInfo{ClientID: "c2", Subject: "bob",
		IssuedAt: h.now, ExpiresAt: h.now.Add(tokenLife), Active: true})
	h.next(g)

	// A replay revokes the family: every token inactive.
	k0 := h.create("c1", "carol", "read")
	k1 := h.next(k0)
	h.expect(h.req(k0), store.Replayed)
	for _, d := range []string{k0.digest, k1.digest} {
		if info, ok := h.info(k0.id, d); !ok || info.Active {
			t.Fatalf("RefreshInfo after replay = %+v, %v; want found, inactive", info, ok)
		}
	}

	// A family created without an issue time has a zero IssuedAt.
	m := family{id: random(), digest: digest(), client: "c1"}
	err := h.s.CreateFamily(ctx, store.NewFamily{
		FamilyID: m.id, Digest: m.digest, ClientID: "c1", Subject: "dave", Scope: "read",
		ExpiresAt: h.now.Add(tokenLife), FamilyExpiresAt: h.now.Add(familyLife),
	})
	if err != nil {
		t.Fatal(err)
	}
	h.wantInfo(m.id, m.digest, store.RefreshInfo{ClientID: "c1", Subject: "dave", Scope: "read",
		ExpiresAt: h.now.Add(tokenLife), Active: true})
}

// testRefreshInfoExpiry: an expired token is not found (by the real clock,
// like the stored entries themselves).
func testRefreshInfoExpiry(t *testing.T, h *harness) {
	ctx := context.Background()
	create := func(exp time.Time) family {
		t.Helper()
		f := family{id: random(), digest: digest(), client: "c1"}
		err := h.s.CreateFamily(ctx, store.NewFamily{
			FamilyID: f.id, Digest: f.digest, ClientID: "c1", Subject: "alice", Scope: "read",
			IssuedAt: h.now, ExpiresAt: exp, FamilyExpiresAt: h.now.Add(familyLife),
		})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	past := create(time.Now().Add(-time.Second))
	h.wantNoInfo(past.id, past.digest)

	exp := time.Now().Add(200 * time.Millisecond).Truncate(time.Millisecond)
	soon := create(exp)
	h.wantInfo(soon.id, soon.digest, store.RefreshInfo{ClientID: "c1", Subject: "alice", Scope: "read",
		IssuedAt: h.now, ExpiresAt: exp, Active: true})
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, ok := h.info(soon.id, soon.digest); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("refresh token still found 5s after its expiry")
		}
	}
	if time.Now().Before(exp) {
		t.Fatalf("refresh token gone at %v, before its expiry %v", time.Now(), exp)
	}
}

// listAll follows ListFamilies pages of limit entries from the start to the
// end and returns every family listed, checking each page's size.
func (h *harness) listAll(client string, limit int, includeRevoked bool) []store.FamilySummary {
	h.t.Helper()
	var all []store.FamilySummary
	q := store.FamilyQuery{Limit: limit, IncludeRevoked: includeRevoked}
	for pages := 0; ; pages++ {
		if pages > 1000 {
			h.t.Fatal("ListFamilies: more than 1000 pages")
		}
		page, err := h.s.ListFamilies(context.Background(), client, q)
		if err != nil {
			h.t.Fatalf("ListFamilies(%q, %+v): %v", client, q, err)
		}
		if page.Families == nil {
			h.t.Fatalf("ListFamilies(%q, %+v): nil Families, want an empty slice", client, q)
		}
		if len(page.Families) > limit {
			h.t.Fatalf("ListFamilies(%q, %+v): %d families, more than the limit", client, q, len(page.Families))
		}
		all = append(all, page.Families...)
		if page.Next == "" {
			return all
		}
		if page.Next == q.After {
			h.t.Fatalf("ListFamilies(%q, %+v): Next does not advance", client, q)
		}
		q.After = page.Next
	}
}

func familyIDs(fs []store.FamilySummary) []string {
	ids := make([]string, len(fs))
	for i, f := range fs {
		ids[i] = f.FamilyID
	}
	return ids
}

// testListFamilies: pages cover a client's families exactly once, oldest
// first (then by id), with the current token's subject and scope; revoked
// ones only when asked; other clients' never.
func testListFamilies(t *testing.T, h *harness) {
	base := h.now
	var want []family
	for i := range 7 {
		h.now = base.Add(time.Duration(i/2) * time.Second) // pairs share a creation time
		want = append(want, h.create("c1", "sub"+string(rune('a'+i)), "read write"))
	}
	h.create("c2", "bob", "read")
	h.create("c10", "bob", "read") // a client id with c1 as prefix
	h.now = base
	slices.SortFunc(want, func(a, b family) int {
		ai, bi := slices.Index(want, a), slices.Index(want, b)
		if d := ai/2 - bi/2; d != 0 {
			return d
		}
		return strings.Compare(a.id, b.id)
	})
	wantIDs := make([]string, len(want))
	for i, f := range want {
		wantIDs[i] = f.id
	}
	for _, limit := range []int{1, 2, 3, 7, 8, store.MaxFamilyPage} {
		if got := familyIDs(h.listAll("c1", limit, false)); !slices.Equal(got, wantIDs) {
			t.Fatalf("limit %d: listed %v, want %v", limit, got, wantIDs)
		}
	}
	got := h.listAll("c1", 100, false)
	for i, f := range got {
		created := base.Add(time.Duration(i/2) * time.Second)
		if !f.CreatedAt.Equal(created) || !f.ExpiresAt.Equal(created.Add(familyLife)) ||
			f.Revoked || f.Scope != "read write" || !strings.HasPrefix(f.Subject, "sub") {
			t.Fatalf("family %d = %+v", i, f)
		}
	}
	if got := h.listAll("nobody", 10, false); len(got) != 0 {
		t.Fatalf("unknown client: listed %v", familyIDs(got))
	}

	// Rotation narrows the listed scope and extends the family's expiry.
	r := h.req(want[0])
	r.Scope = "read"
	r.FamilyExpiresAt = base.Add(3 * familyLife)
	h.expect(r, store.Rotated)
	// Revoked families are hidden unless asked for.
	if err := h.s.RevokeFamily(context.Background(), want[1].id); err != nil {
		t.Fatal(err)
	}
	got = h.listAll("c1", 2, false)
	if ids := familyIDs(got); !slices.Equal(ids, slices.Delete(slices.Clone(wantIDs), 1, 2)) {
		t.Fatalf("after revoking %s: listed %v", want[1].id, ids)
	}
	if got[0].Scope != "read" || !got[0].ExpiresAt.Equal(base.Add(3*familyLife)) {
		t.Fatalf("rotated family listed as %+v, want scope read and the extended expiry", got[0])
	}
	all := h.listAll("c1", 2, true)
	if ids := familyIDs(all); !slices.Equal(ids, wantIDs) {
		t.Fatalf("with revoked: listed %v, want %v", ids, wantIDs)
	}
	for i, f := range all {
		if f.Revoked != (i == 1) {
			t.Fatalf("with revoked: family %d Revoked = %v", i, f.Revoked)
		}
	}

	// The client's revoked-before time revokes the families created before
	// it (the first pair), as Rotate refuses them, and comes with the page.
	before := base.Add(time.Second)
	h.revokeClient("c1", before, time.Hour)
	page, err := h.s.ListFamilies(context.Background(), "c1", store.FamilyQuery{Limit: store.MaxFamilyPage})
	if err != nil {
		t.Fatal(err)
	}
	if !page.ClientRevokedBefore.Equal(before) {
		t.Fatalf("ClientRevokedBefore = %v, want %v", page.ClientRevokedBefore, before)
	}
	if ids := familyIDs(page.Families); !slices.Equal(ids, wantIDs[2:]) {
		t.Fatalf("after RevokeClient: listed %v, want %v", ids, wantIDs[2:])
	}
	all = h.listAll("c1", 3, true)
	for i, f := range all {
		if f.Revoked != (i < 2) {
			t.Fatalf("after RevokeClient, with revoked: family %d Revoked = %v", i, f.Revoked)
		}
	}
	if page := h.listAll("c2", 10, true); len(page) != 1 || page[0].Revoked {
		t.Fatalf("another client's family after RevokeClient: %+v", page)
	}
}

// testListFamiliesInvalid: bad limits and cursors are refused.
func testListFamiliesInvalid(t *testing.T, h *harness) {
	h.create("c1", "alice", "read")
	for _, q := range []store.FamilyQuery{
		{Limit: 0}, {Limit: -1}, {Limit: store.MaxFamilyPage + 1},
		{Limit: 1, After: "x"}, {Limit: 1, After: "000000000000001:"},
		{Limit: 1, After: "00000000000000a:abc"}, {Limit: 1, After: "000000000000001:{x}"},
	} {
		page, err := h.s.ListFamilies(context.Background(), "c1", q)
		if err == nil {
			t.Fatalf("ListFamilies(%+v) = %+v, want an error", q, page)
		}
		if errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("ListFamilies(%+v): %v, want an error that is not ErrUnavailable", q, err)
		}
		if q.After != "" && !errors.Is(err, store.ErrBadCursor) {
			t.Fatalf("ListFamilies(%+v): %v, want ErrBadCursor", q, err)
		}
	}
}

// testListFamiliesExpiry: an expired family is no longer listed, and the
// families around it still are.
func testListFamiliesExpiry(t *testing.T, h *harness) {
	ctx := context.Background()
	first := h.create("c1", "alice", "read")
	exp := time.Now().Add(200 * time.Millisecond).Truncate(time.Millisecond)
	soon := family{id: random(), digest: digest(), client: "c1"}
	err := h.s.CreateFamily(ctx, store.NewFamily{
		FamilyID: soon.id, Digest: soon.digest, ClientID: "c1", Subject: "alice", Scope: "read",
		IssuedAt: h.now, ExpiresAt: exp, FamilyExpiresAt: exp,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.now = h.now.Add(time.Millisecond)
	last := h.create("c1", "alice", "read")
	if got := familyIDs(h.listAll("c1", 1, true)); len(got) != 3 {
		t.Fatalf("listed %v, want 3 families", got)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		got := familyIDs(h.listAll("c1", 1, true))
		if slices.Equal(got, []string{first.id, last.id}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("5s after a family's expiry: listed %v", got)
		}
	}
	if time.Now().Before(exp) {
		t.Fatalf("family unlisted at %v, before its expiry %v", time.Now(), exp)
	}
	// Listing again (after the index entry was dropped) agrees.
	if got := familyIDs(h.listAll("c1", 2, true)); !slices.Equal(got, []string{first.id, last.id}) {
		t.Fatalf("listed %v, want %v", got, []string{first.id, last.id})
	}

	// A family whose current token expired is still listed (its record
	// lives on), without a subject or scope.
	tokenExp := time.Now().Add(200 * time.Millisecond).Truncate(time.Millisecond)
	lapsed := family{id: random(), digest: digest(), client: "c2"}
	err = h.s.CreateFamily(ctx, store.NewFamily{
		FamilyID: lapsed.id, Digest: lapsed.digest, ClientID: "c2", Subject: "alice", Scope: "read",
		IssuedAt: h.now, ExpiresAt: tokenExp, FamilyExpiresAt: h.now.Add(familyLife),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := h.listAll("c2", 10, false); len(got) != 1 || got[0].Subject != "alice" || got[0].Scope != "read" {
		t.Fatalf("before the token's expiry: %+v", got)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		got := h.listAll("c2", 10, false)
		if len(got) != 1 || got[0].FamilyID != lapsed.id {
			t.Fatalf("after the token's expiry: %+v, want the family still listed", got)
		}
		if got[0].Subject == "" && got[0].Scope == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("5s after its token's expiry the family is listed as %+v", got[0])
		}
	}
}
