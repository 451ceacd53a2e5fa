package oauth

import "time"

// Events receives what the server does, for metrics. Implementations must
// be safe for concurrent use and fast: they run on the request path.
type Events interface {
	// TokenRequest: one answered token-endpoint request; outcome is "issued"
	// or the OAuth error code.
	TokenRequest(grant, outcome string, d time.Duration)
	// Revocation: one answered revocation request; outcome is "revoked"
	// (including unknown and foreign tokens, answered 200) or the error code.
	Revocation(outcome string)
	// ReplayDetected: a spent refresh token was presented again.
	ReplayDetected()
	// FamilyRevoked: a refresh family was revoked (replay or revocation).
	FamilyRevoked()
	// RateLimited: an authentication was refused for the failure budget
	// (its request's outcome is "rate_limited").
	RateLimited()
	// StoreUnavailable: a request of any endpoint was answered 503 because
	// the store (or the WordPress database) could not answer in time.
	StoreUnavailable()
	// PassedThrough: a token-endpoint request went to the next handler.
	PassedThrough()
}

// noEvents is the default Events.
type noEvents struct{}

func (noEvents) TokenRequest(string, string, time.Duration) {}
func (noEvents) Revocation(string)                          {}
func (noEvents) ReplayDetected()                            {}
func (noEvents) FamilyRevoked()                             {}
func (noEvents) RateLimited()                               {}
func (noEvents) StoreUnavailable()                          {}
func (noEvents) PassedThrough()                             {}
