package main

import (
	"math"
	"testing"
	"time"
)

func TestTrend(t *testing.T) {
	var flat, growing []memSample
	for i := 0; i <= 24; i++ {
		at := time.Duration(i) * 5 * time.Second
		flat = append(flat, memSample{at: at, rssKB: 100 * 1024})
		growing = append(growing, memSample{at: at, rssKB: int64(100*1024 + i*2048)}) // +2 MiB per 5 s
	}
	tr := trend(flat, 2*time.Minute)
	if tr.growth != 0 || tr.slopeMiBPerMin != 0 || tr.startKB != 100*1024 || tr.peakKB != 100*1024 {
		t.Errorf("flat: %+v", tr)
	}
	tr = trend(growing, 2*time.Minute)
	if math.Abs(tr.slopeMiBPerMin-24) > 1e-9 {
		t.Errorf("slope %v MiB/min, want 24", tr.slopeMiBPerMin)
	}
	// First quarter: t < 30 s (samples 0..5, mean 105 MiB); last: t >= 90 s (18..24, mean 142 MiB).
	if want := 142.0/105 - 1; math.Abs(tr.growth-want) > 1e-9 {
		t.Errorf("growth %v, want %v", tr.growth, want)
	}
	if tr.growth <= maxMemGrowth {
		t.Errorf("a growth of %.1f%% should be flagged", 100*tr.growth)
	}
	if tr := trend(nil, time.Minute); tr.growth != 0 || tr.peakKB != 0 {
		t.Errorf("no samples: %+v", tr)
	}
}

func TestOpMix(t *testing.T) {
	n := map[string]int{}
	for i := int64(0); i < 2000; i++ {
		n[opKind(i)]++
	}
	want := map[string]int{opCC: 800, opRefresh: 800, opRevoke: 200, opReplay: 100, opDouble: 100}
	for k, v := range want {
		if n[k] != v {
			t.Errorf("%s: %d of 2000, want %d", k, n[k], v)
		}
	}
}

func TestMetricKey(t *testing.T) {
	cases := []struct {
		path, body string
		a          answer
		want       string
	}{
		{tokenPath, "grant_type=client_credentials", answer{status: 200}, `moserver_token_requests_total{grant="client_credentials",outcome="issued"}`},
		{tokenPath, refreshBody("x"), answer{status: 400, code: "invalid_grant"}, `moserver_token_requests_total{grant="refresh_token",outcome="invalid_grant"}`},
		{tokenPath, "token=x&token_type_hint=refresh_token", answer{status: 200}, `moserver_revocations_total{outcome="revoked"}`},
		{revokePath, "token=x", answer{status: 503, code: "temporarily_unavailable"}, `moserver_revocations_total{outcome="temporarily_unavailable"}`},
	}
	for _, c := range cases {
		if got := metricKey(c.path, c.body, c.a); got != c.want {
			t.Errorf("metricKey(%s, %s) = %s, want %s", c.path, c.body, got, c.want)
		}
	}
	if m := counterMismatches(map[string]int64{"a": 1, "b": 2}, map[string]int64{"a": 1, "b": 2}); len(m) != 0 {
		t.Errorf("equal counters: %v", m)
	}
	if m := counterMismatches(map[string]int64{"a": 2}, map[string]int64{"a": 1, "c": 1}); len(m) != 2 {
		t.Errorf("two mismatches expected: %v", m)
	}
}

func TestPercentile(t *testing.T) {
	d := []time.Duration{5, 1, 4, 2, 3}
	if p := percentile(d, 0.5); p != 3 {
		t.Errorf("p50 = %v", p)
	}
	if p := percentile(d, 1); p != 5 {
		t.Errorf("max = %v", p)
	}
	if p := percentile(nil, 0.99); p != 0 {
		t.Errorf("empty = %v", p)
	}
}
