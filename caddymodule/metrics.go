package caddymodule

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-moserver/caddy-moserver/internal/oauth"
)

// moserverMetrics are the module's Prometheus collectors. They are created
// once per process, like Caddy's own (modules/caddyhttp/reverseproxy), and
// registered with the metrics registry of every configuration that has a
// moserver block, so counters keep counting across `caddy reload` and show
// on Caddy's /metrics.
var moserverMetrics = struct {
	once sync.Once

	tokenRequests   *prometheus.CounterVec
	tokenDuration   *prometheus.HistogramVec
	revocations     *prometheus.CounterVec
	refreshReplays  prometheus.Counter
	familiesRevoked prometheus.Counter
	rateLimited     prometheus.Counter
	storeErrors     prometheus.Counter
	passthrough     prometheus.Counter
}{}

// tokenDurationBuckets span a memory store (tens of µs) to a store timeout (1 s).
var tokenDurationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

func initMoserverMetrics() {
	m := &moserverMetrics
	m.once.Do(func() {
		const ns = "moserver"
		m.tokenRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "token_requests_total",
			Help: `Token-endpoint requests answered, by grant type and outcome ("issued" or the OAuth error code).`,
		}, []string{"grant", "outcome"})
		m.tokenDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "token_request_duration_seconds",
			Help:    "Time to answer a token-endpoint request, by grant type.",
			Buckets: tokenDurationBuckets,
		}, []string{"grant"})
		m.revocations = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "revocations_total",
			Help: `RFC 7009 revocation requests answered, by outcome ("revoked" or the OAuth error code).`,
		}, []string{"outcome"})
		m.refreshReplays = prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "refresh_replays_total",
			Help: "Spent refresh tokens presented again (each revokes its family).",
		})
		m.familiesRevoked = prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "families_revoked_total",
			Help: "Refresh-token families revoked by a replay or a revocation request.",
		})
		m.rateLimited = prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "rate_limited_total",
			Help: "Client authentications refused because the failed-authentication budget was spent (429; their requests count with outcome \"rate_limited\").",
		})
		m.storeErrors = prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "store_errors_total",
			Help: "Requests of any endpoint (token, revocation, introspection) answered 503 temporarily_unavailable because the store or the WordPress database could not answer.",
		})
		m.passthrough = prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "passthrough_total",
			Help: "Token-endpoint requests passed on to the next handler (authorization_code and unknown grants).",
		})
	})
}

// metricsCollectors lists every collector, for registration.
func metricsCollectors() []prometheus.Collector {
	m := &moserverMetrics
	return []prometheus.Collector{m.tokenRequests, m.tokenDuration, m.revocations, m.refreshReplays,
		m.familiesRevoked, m.rateLimited, m.storeErrors, m.passthrough}
}

// registerMetrics registers the collectors with reg (Caddy's registry of the
// configuration being provisioned). Registering them again, for a second
// moserver block of the same configuration, is not an error. A nil reg (as
// in some tests) registers nothing; the counters still count.
func registerMetrics(reg prometheus.Registerer) error {
	initMoserverMetrics()
	if reg == nil {
		return nil
	}
	for _, c := range metricsCollectors() {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) && are.ExistingCollector == c {
				continue
			}
			return fmt.Errorf("registering metrics: %w", err)
		}
	}
	return nil
}

// metricsEvents implements oauth.Events with the Prometheus collectors. The
// label values are bounded: grant is client_credentials or refresh_token, and
// outcome is "issued", "revoked", "rate_limited" or one of the server's
// OAuth error codes.
type metricsEvents struct{}

var _ oauth.Events = metricsEvents{}

// newMetricsEvents registers the collectors with reg and returns the Events
// that feed them.
func newMetricsEvents(reg prometheus.Registerer) (oauth.Events, error) {
	if err := registerMetrics(reg); err != nil {
		return nil, err
	}
	return metricsEvents{}, nil
}

func (metricsEvents) TokenRequest(grant, outcome string, d time.Duration) {
	m := &moserverMetrics
	m.tokenRequests.WithLabelValues(grant, outcome).Inc()
	m.tokenDuration.WithLabelValues(grant).Observe(d.Seconds())
}

func (metricsEvents) Revocation(outcome string) {
	moserverMetrics.revocations.WithLabelValues(outcome).Inc()
}

func (metricsEvents) ReplayDetected() { moserverMetrics.refreshReplays.Inc() }
func (metricsEvents) FamilyRevoked()  { moserverMetrics.familiesRevoked.Inc() }
func (metricsEvents) RateLimited()    { moserverMetrics.rateLimited.Inc() }
func (metricsEvents) PassedThrough()  { moserverMetrics.passthrough.Inc() }

func (metricsEvents) StoreUnavailable() { moserverMetrics.storeErrors.Inc() }
