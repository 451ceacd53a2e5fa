package loadtest

import (
	"strings"
	"testing"
)

// TestParseMetrics reads counters, a gauge and a histogram of a text
// exposition into sorted-label keys, and picks the module's counters.
func TestParseMetrics(t *testing.T) {
	text := `# HELP moserver_token_requests_total x
# TYPE moserver_token_requests_total counter
moserver_token_requests_total{outcome="issued",grant="refresh_token"} 7
moserver_token_requests_total{grant="client_credentials",outcome="invalid_client"} 2
# TYPE moserver_revocations_total counter
moserver_revocations_total{outcome="revoked"} 3
# TYPE up gauge
up 1
# TYPE moserver_token_request_duration_seconds histogram
moserver_token_request_duration_seconds_bucket{grant="client_credentials",le="0.005"} 4
moserver_token_request_duration_seconds_bucket{grant="client_credentials",le="+Inf"} 5
moserver_token_request_duration_seconds_sum{grant="client_credentials"} 0.02
moserver_token_request_duration_seconds_count{grant="client_credentials"} 5
`
	got, err := ParseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]float64{
		`moserver_token_requests_total{grant="refresh_token",outcome="issued"}`:              7,
		`moserver_token_requests_total{grant="client_credentials",outcome="invalid_client"}`: 2,
		`moserver_revocations_total{outcome="revoked"}`:                                      3,
		`up`: 1,
		`moserver_token_request_duration_seconds_count{grant="client_credentials"}`:             5,
		`moserver_token_request_duration_seconds_sum{grant="client_credentials"}`:               0.02,
		`moserver_token_request_duration_seconds_bucket{grant="client_credentials",le="0.005"}`: 4,
		`moserver_token_request_duration_seconds_bucket{grant="client_credentials",le="+Inf"}`:  5,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", key, v, ok, want)
		}
	}
	counters := ModuleCounters(got)
	if len(counters) != 3 || counters[`moserver_revocations_total{outcome="revoked"}`] != 3 {
		t.Errorf("ModuleCounters = %v", counters)
	}
	if _, err := ParseMetrics(strings.NewReader("not a metric line {\n")); err == nil {
		t.Error("a malformed exposition parsed without error")
	}
}
