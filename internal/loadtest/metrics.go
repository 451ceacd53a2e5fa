package loadtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// ScrapeMetrics GETs a Prometheus text exposition (Caddy's admin /metrics)
// and returns its samples; see ParseMetrics.
func ScrapeMetrics(ctx context.Context, url string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	c := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	res, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d", url, res.StatusCode)
	}
	return ParseMetrics(res.Body)
}

// ParseMetrics reads a Prometheus text exposition with the Prometheus
// parser and returns every sample keyed `name{label="value",...}`, labels
// sorted by name (no braces without labels). Counters, gauges and untyped
// samples keep their names; a histogram gives <name>_count, <name>_sum and
// <name>_bucket{...,le="<bound>"}.
func ParseMetrics(r io.Reader) (map[string]float64, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			labels := make([]string, 0, len(m.GetLabel())+1)
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+strconv.Quote(l.GetValue()))
			}
			key := func(name string, extra ...string) string {
				ls := append(slices.Clone(labels), extra...)
				if len(ls) == 0 {
					return name
				}
				slices.Sort(ls)
				return name + "{" + strings.Join(ls, ",") + "}"
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key(name)] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key(name)] = m.GetGauge().GetValue()
			case dto.MetricType_UNTYPED:
				out[key(name)] = m.GetUntyped().GetValue()
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				out[key(name+"_count")] = float64(h.GetSampleCount())
				out[key(name+"_sum")] = h.GetSampleSum()
				for _, b := range h.GetBucket() {
					le := "le=" + strconv.Quote(strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64))
					out[key(name+"_bucket", le)] = float64(b.GetCumulativeCount())
				}
			}
		}
	}
	return out, nil
}

// ModuleCounters returns the moserver request counters of samples
// (moserver_token_requests_total and moserver_revocations_total) as whole
// numbers, with the keys of ParseMetrics.
func ModuleCounters(samples map[string]float64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range samples {
		if strings.HasPrefix(k, "moserver_token_requests_total{") || strings.HasPrefix(k, "moserver_revocations_total{") {
			out[k] = int64(v)
		}
	}
	return out
}
