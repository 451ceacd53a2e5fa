package caddymodule

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// opsMetricValue returns the value of the counter, or the sample count of the
// histogram, named name with exactly labels in g's registry (0 if absent).
func opsMetricValue(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if !opsLabelsEqual(m.GetLabel(), labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

func opsLabelsEqual(got []*dto.LabelPair, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, lp := range got {
		if v, ok := want[lp.GetName()]; !ok || v != lp.GetValue() {
			return false
		}
	}
	return true
}

func TestRegisterMetricsTwiceAndAcrossRegistries(t *testing.T) {
	reg1 := prometheus.NewPedanticRegistry()
	if err := registerMetrics(reg1); err != nil {
		t.Fatal(err)
	}
	// A second moserver block of the same configuration.
	if err := registerMetrics(reg1); err != nil {
		t.Fatalf("second registration with the same registry: %v", err)
	}
	// A reload: Caddy gives the new configuration a new registry.
	reg2 := prometheus.NewPedanticRegistry()
	if err := registerMetrics(reg2); err != nil {
		t.Fatalf("registration with a new registry: %v", err)
	}
	if err := registerMetrics(nil); err != nil {
		t.Fatalf("nil registry: %v", err)
	}
	// A foreign collector with one of our names is a real conflict.
	reg3 := prometheus.NewPedanticRegistry()
	reg3.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "moserver_passthrough_total", Help: "x"}))
	if err := registerMetrics(reg3); err == nil {
		t.Fatal("a conflicting collector was not reported")
	}

	// Both registries see the same, continuing counters.
	before := opsMetricValue(t, reg2, "moserver_passthrough_total", nil)
	metricsEvents{}.PassedThrough()
	for i, reg := range []*prometheus.Registry{reg1, reg2} {
		if got := opsMetricValue(t, reg, "moserver_passthrough_total", nil); got != before+1 {
			t.Errorf("registry %d: passthrough = %v, want %v", i+1, got, before+1)
		}
	}
}

func TestMetricsEvents(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	ev, err := newMetricsEvents(reg)
	if err != nil {
		t.Fatal(err)
	}
	type probe struct {
		name   string
		labels map[string]string
		delta  float64
	}
	probes := []probe{
		{"moserver_token_requests_total", map[string]string{"grant": "client_credentials", "outcome": "issued"}, 2},
		{"moserver_token_requests_total", map[string]string{"grant": "refresh_token", "outcome": "temporarily_unavailable"}, 1},
		{"moserver_token_request_duration_seconds", map[string]string{"grant": "client_credentials"}, 3},
		{"moserver_token_request_duration_seconds", map[string]string{"grant": "refresh_token"}, 1},
		{"moserver_revocations_total", map[string]string{"outcome": "revoked"}, 1},
		{"moserver_revocations_total", map[string]string{"outcome": "temporarily_unavailable"}, 1},
		{"moserver_refresh_replays_total", nil, 1},
		{"moserver_families_revoked_total", nil, 2},
		{"moserver_rate_limited_total", nil, 1},
		{"moserver_token_requests_total", map[string]string{"grant": "client_credentials", "outcome": "rate_limited"}, 1},
		// Only StoreUnavailable counts as a store error: not a 429 (whose
		// error code is also temporarily_unavailable).
		{"moserver_store_errors_total", nil, 2},
		{"moserver_passthrough_total", nil, 1},
	}
	before := make([]float64, len(probes))
	for i, p := range probes {
		before[i] = opsMetricValue(t, reg, p.name, p.labels)
	}
	ev.TokenRequest("client_credentials", "issued", 2*time.Millisecond)
	ev.TokenRequest("client_credentials", "issued", 3*time.Millisecond)
	ev.TokenRequest("refresh_token", "temporarily_unavailable", time.Second)
	ev.Revocation("revoked")
	ev.Revocation("temporarily_unavailable")
	ev.ReplayDetected()
	ev.FamilyRevoked()
	ev.FamilyRevoked()
	ev.RateLimited()
	ev.TokenRequest("client_credentials", "rate_limited", time.Millisecond)
	ev.StoreUnavailable()
	ev.StoreUnavailable()
	ev.PassedThrough()
	for i, p := range probes {
		if got := opsMetricValue(t, reg, p.name, p.labels) - before[i]; got != p.delta {
			t.Errorf("%s%v: +%v, want +%v", p.name, p.labels, got, p.delta)
		}
	}
	// The whole registry gathers cleanly (the pedantic registry checks
	// descriptions against the metrics).
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
}

// A provisioned moserver block counts its requests in the registry of the
// Caddy context it was provisioned with.
func TestHandlerCountsInCaddyRegistry(t *testing.T) {
	h, ctx := opsProvisionHandler(t, "https://metrics.example/wp-json/moserver", nil)
	reg := ctx.GetMetricsRegistry()
	issued := map[string]string{"grant": "client_credentials", "outcome": "issued"}
	badClient := map[string]string{"grant": "client_credentials", "outcome": "invalid_client"}
	replay := map[string]string{"grant": "refresh_token", "outcome": "invalid_grant"}
	b := map[string]float64{
		"issued":      opsMetricValue(t, reg, "moserver_token_requests_total", issued),
		"bad":         opsMetricValue(t, reg, "moserver_token_requests_total", badClient),
		"replay":      opsMetricValue(t, reg, "moserver_token_requests_total", replay),
		"replays":     opsMetricValue(t, reg, "moserver_refresh_replays_total", nil),
		"passthrough": opsMetricValue(t, reg, "moserver_passthrough_total", nil),
		"families":    opsMetricValue(t, reg, "moserver_families_revoked_total", nil),
	}

	rt := opsTokenRequest(t, h, opsCCForm()).refresh
	wrong := opsCCForm()
	wrong.Set("client_secret", "nope")
	if r := opsTokenRequest(t, h, wrong); r.status != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %d", r.status)
	}
	rt2 := opsTokenRequest(t, h, opsRefreshForm(rt))
	if rt2.status != 200 {
		t.Fatalf("refresh: %d %s", rt2.status, rt2.body)
	}
	if r := opsTokenRequest(t, h, opsRefreshForm(rt2.refresh)); r.status != 200 {
		t.Fatalf("second refresh: %d %s", r.status, r.body)
	}
	// rt's successor was used: presenting rt again is a replay.
	if r := opsTokenRequest(t, h, opsRefreshForm(rt)); r.status != http.StatusBadRequest {
		t.Fatalf("replay: %d %s", r.status, r.body)
	}
	if r := opsTokenRequest(t, h, url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}); r.status != http.StatusTeapot {
		t.Fatalf("authorization_code was not passed on: %d", r.status)
	}

	for k, want := range map[string]float64{"issued": 1, "bad": 1, "replay": 1, "replays": 1, "passthrough": 1, "families": 1} {
		var got float64
		switch k {
		case "issued":
			got = opsMetricValue(t, reg, "moserver_token_requests_total", issued)
		case "bad":
			got = opsMetricValue(t, reg, "moserver_token_requests_total", badClient)
		case "replay":
			got = opsMetricValue(t, reg, "moserver_token_requests_total", replay)
		case "replays":
			got = opsMetricValue(t, reg, "moserver_refresh_replays_total", nil)
		case "passthrough":
			got = opsMetricValue(t, reg, "moserver_passthrough_total", nil)
		case "families":
			got = opsMetricValue(t, reg, "moserver_families_revoked_total", nil)
		}
		if got-b[k] != want {
			t.Errorf("%s: +%v, want +%v", k, got-b[k], want)
		}
	}
	if n := opsMetricValue(t, reg, "moserver_token_request_duration_seconds", map[string]string{"grant": "refresh_token"}); n < 2 {
		t.Errorf("refresh_token latency samples = %v, want ≥ 2", n)
	}
	fams, _ := reg.Gather()
	var names []string
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "moserver_") {
			names = append(names, f.GetName())
		}
	}
	if len(names) < 7 {
		t.Errorf("moserver metrics in Caddy's registry: %v", names)
	}
}
