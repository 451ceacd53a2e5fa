package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
)

// Row is one line of the results table.
type Row struct {
	Key   string `json:"key"`
	Name  string `json:"name"`
	Label string `json:"label"` // short name for the chart
	// Extra marks rows that are not among the main targets (informational, or a
	// stricter reading of one of its targets).
	Extra bool `json:"extra,omitempty"`
	// Failed says why the row could not be measured ("" when it was).
	Failed string `json:"failed,omitempty"`

	RPS          float64  `json:"requests_per_second"`
	P50Ms        float64  `json:"p50_ms"`
	P90Ms        float64  `json:"p90_ms"`
	P99Ms        float64  `json:"p99_ms"`
	MaxMs        float64  `json:"max_ms"`
	OK           int      `json:"ok"`
	Errors       int      `json:"errors"`
	WarmupErrors int      `json:"warmup_errors,omitempty"`
	ErrorKinds   []string `json:"error_kinds,omitempty"`
	WindowS      float64  `json:"window_seconds"`
	Exhausted    bool     `json:"supply_exhausted,omitempty"`
	Load1        float64  `json:"load_average_1m"`
	// OtherCPUPct is the share of all cores that processes other than Caddy,
	// Redis and the generator used during the window.
	OtherCPUPct float64 `json:"other_processes_cpu_percent"`
	CaddyCPUUs  float64 `json:"caddy_cpu_us_per_request"`
	RedisCPUUs  float64 `json:"redis_cpu_us_per_request"`
	GenCPUUs    float64 `json:"generator_cpu_us_per_request"`
	// DBCPUUs is mariadbd's CPU time per request, for the rows that use
	// MariaDB (the server is shared: anything else it ran meanwhile counts).
	DBCPUUs float64 `json:"mariadb_cpu_us_per_request,omitempty"`
	// DB is the growth of MariaDB's status counters (dbCounters) over the
	// row per request sent in it (warm-ups included); server-wide.
	DB map[string]float64 `json:"mariadb_status_per_request,omitempty"`
	// Codes says how an authorization_code row's codes were supplied.
	Codes *codeSupply `json:"codes,omitempty"`
	// OneClient is the pre-filled authorization_code row measured with one
	// client before it.
	OneClient *oneClient `json:"one_client,omitempty"`
	// RSA is the RSA-signing bound a row other than RS256 is compared
	// with (the openid exchange's, with the client's key); RS256 uses the
	// report's.
	RSA *rsaBound `json:"rsa_bound,omitempty"`

	// CeilingAlongsideRPS and CeilingAlongsideP99Ms are the ceiling
	// measured in alternation with the row (generator.runAlternating).
	// LocalCeilingRPS is the ceiling the row's ratio uses: that one, or the
	// run's mean ceiling for a row measured alone.
	CeilingAlongsideRPS   float64 `json:"ceiling_alongside_rps,omitempty"`
	CeilingAlongsideP99Ms float64 `json:"ceiling_alongside_p99_ms,omitempty"`
	LocalCeilingRPS       float64 `json:"local_ceiling_rps,omitempty"`
	// TwinAlongsideRPS, TwinAlongsideP99Ms and TwinErrors are the row's
	// twin (stream.twin) measured in alternation with it: row 5's same
	// requests on an identical site with an empty Redis.
	TwinAlongsideRPS   float64 `json:"twin_alongside_rps,omitempty"`
	TwinAlongsideP99Ms float64 `json:"twin_alongside_p99_ms,omitempty"`
	TwinErrors         int     `json:"twin_errors,omitempty"`
	VsCeiling          float64 `json:"ratio_to_ceiling"`
	// VsCeilingCPU is the ceiling's CPU time per request (Caddy + Redis +
	// generator) over the row's: the ratio the two would have on the same
	// cores if nothing else ran there. It is derived, less sensitive to
	// other load on the machine than VsCeiling; the targets use VsCeiling.
	VsCeilingCPU float64 `json:"ratio_to_ceiling_by_cpu_cost,omitempty"`
	VsRSA        float64 `json:"ratio_to_rsa_bound,omitempty"`
	Target       *Check  `json:"target,omitempty"`
	P99          *Check  `json:"p99_target,omitempty"`
}

// cpuUs is the CPU time per request of Caddy, Redis, the generator and, for
// the rows that use it, MariaDB.
func (x *Row) cpuUs() float64 { return x.CaddyCPUUs + x.RedisCPUUs + x.GenCPUUs + x.DBCPUUs }

// Check is a target and whether it was met.
type Check struct {
	Name     string  `json:"name"`
	Target   string  `json:"target"`
	Value    float64 `json:"value"`
	Measured string  `json:"measured"`
	Met      bool    `json:"met"`
	Extra    bool    `json:"extra,omitempty"`
}

// Report is everything one run measured; it is written as results.json.
type Report struct {
	Command      string    `json:"command"`
	Started      time.Time `json:"started"`
	Finished     time.Time `json:"finished"`
	CPU          string    `json:"cpu"`
	Cores        int       `json:"cores"`
	GoVersion    string    `json:"go_version"`
	CaddyVersion string    `json:"caddy_version"`
	UptimeStart  string    `json:"uptime_start"`
	UptimeEnd    string    `json:"uptime_end"`
	// OtherCPUPctStart is the share of all cores other processes used in
	// the second before the run.
	OtherCPUPctStart float64 `json:"other_processes_cpu_percent_start"`
	Settings         struct {
		Concurrency int     `json:"concurrency"`
		WarmupS     float64 `json:"warmup_seconds"`
		DurationS   float64 `json:"duration_seconds"`
		Families    int     `json:"families"`
		Codes       int     `json:"prefilled_codes,omitempty"`
		Generator   string  `json:"generator"`
	} `json:"settings"`
	// Ceiling is the mean of the ceiling rows: the reference of the p99
	// checks, and of a row's ratio when it has no ceiling probes around it.
	Ceiling struct {
		RPS   float64 `json:"requests_per_second"`
		P99Ms float64 `json:"p99_ms"`
		// CPUUs is the CPU time of Caddy, Redis and the generator per request.
		CPUUs float64 `json:"cpu_us_per_request"`
	} `json:"ceiling"`
	ResponseBytes map[string]int `json:"response_body_bytes"`
	Rows          []*Row         `json:"rows"`
	RSA           *rsaBound      `json:"rsa_bound,omitempty"`
	Core          *coreBench     `json:"core_benchmark,omitempty"`
	PreIssued     int            `json:"pre_issued_refresh_tokens"`
	Fill          *fillResult    `json:"redis_fill,omitempty"`
	FillSeconds   float64        `json:"redis_fill_seconds,omitempty"`
	Memory        struct {
		CaddyRSSKB   int64  `json:"caddy_vmrss_kib"`
		CaddyHWMKB   int64  `json:"caddy_vmhwm_kib"`
		RedisUsedMem string `json:"redis_used_memory"`
	} `json:"memory"`
	Checks []*Check `json:"checks"`
	Notes  []string `json:"notes,omitempty"`
}

// row returns the row with key, or nil.
func (r *Report) row(key string) *Row {
	for _, x := range r.Rows {
		if x.Key == key && x.Failed == "" {
			return x
		}
	}
	return nil
}

// The main targets, as ratios to the ceiling, and that of the
// authorization_code exchange without openid (an extra row, with a target
// of its own).
var ceilingTargets = map[string]float64{
	"edge":    0.60, // a moserver_auth-protected respond
	"es256":   0.45,
	"eddsa":   0.45,
	"hs256":   0.60,
	"refresh": 0.30,
	"revoke":  0.35,
	codeKey:   0.05,
}

// rsaTargets are the targets of the rows compared with the RSA-signing
// bound: RS256 and the exchange with openid, which signs an
// RS256 id_token per request.
var rsaTargets = map[string]float64{
	"rs256":   rsaTarget,
	openIDKey: 0.80,
}

// rsaBoundOf is the bound a row is compared with: its own, or the report's
// for RS256.
func (r *Report) rsaBoundOf(x *Row) *rsaBound {
	if x.RSA != nil {
		return x.RSA
	}
	if x.Key == "rs256" {
		return r.RSA
	}
	return nil
}

// hasP99Check says whether a row's p99 is checked against 2 × the
// ceiling's: not RS256's (a signature takes a millisecond) nor the
// authorization_code rows' (each commits to MariaDB and waits for it).
func hasP99Check(key string) bool {
	return key != "rs256" && !strings.HasPrefix(key, codeKey)
}

// The other targets.
const (
	rsaTarget     = 0.85 // RS256 ≥ 0.85 × the RSA-signing bound
	sameTarget    = 0.90 // row 5 within 10% of row 2
	p99Factor     = 2.0  // p99 ≤ 2 × the ceiling's p99
	allocsTarget  = 60   // allocs per client_credentials request (core benchmark)
	rssTargetByte = 150e6
)

// evaluate fills the ceiling reference, the ratios and every check.
func (r *Report) evaluate() {
	var n int
	var rps, p99, cpu float64
	for _, x := range r.Rows {
		if strings.HasPrefix(x.Key, "ceiling") && x.Failed == "" {
			rps += x.RPS
			p99 += x.P99Ms
			cpu += x.cpuUs()
			n++
		}
	}
	if n > 0 {
		r.Ceiling.RPS, r.Ceiling.P99Ms, r.Ceiling.CPUUs = rps/float64(n), p99/float64(n), cpu/float64(n)
	}
	for _, x := range r.Rows {
		x.LocalCeilingRPS = r.Ceiling.RPS
		if x.CeilingAlongsideRPS > 0 {
			x.LocalCeilingRPS = x.CeilingAlongsideRPS
		}
		if x.LocalCeilingRPS > 0 {
			x.VsCeiling = x.RPS / x.LocalCeilingRPS
		}
	}
	r.Checks = nil
	for _, x := range r.Rows {
		if x.Failed != "" || strings.HasPrefix(x.Key, "ceiling") {
			if x.Failed != "" && !strings.HasPrefix(x.Key, "ceiling") {
				r.Checks = append(r.Checks, &Check{Name: x.Name, Target: "measured", Measured: "failed: " + x.Failed, Extra: x.Extra})
			}
			continue
		}
		if c := x.cpuUs(); c > 0 && r.Ceiling.CPUUs > 0 {
			x.VsCeilingCPU = r.Ceiling.CPUUs / c
		}
		errNote := ""
		if x.Errors > 0 {
			errNote = fmt.Sprintf(", %d errors", x.Errors)
		}
		switch {
		case rsaTargets[x.Key] > 0:
			if bound := r.rsaBoundOf(x); bound != nil && bound.PerSecond > 0 {
				t := rsaTargets[x.Key]
				x.VsRSA = x.RPS / bound.PerSecond
				x.Target = &Check{
					Target:   fmt.Sprintf("≥ %.2f × RSA bound (%.0f/s)", t, bound.PerSecond),
					Value:    x.VsRSA,
					Measured: fmt.Sprintf("%.2f%s", x.VsRSA, errNote),
					Met:      x.VsRSA >= t && x.Errors == 0,
				}
			}
		case ceilingTargets[x.Key] > 0:
			t := ceilingTargets[x.Key]
			x.Target = &Check{
				Target:   fmt.Sprintf("≥ %.2f × ceiling", t),
				Value:    x.VsCeiling,
				Measured: fmt.Sprintf("%.2f%s", x.VsCeiling, errNote),
				Met:      x.VsCeiling >= t && x.Errors == 0,
			}
		case isFillRow(x.Key) && x.TwinAlongsideRPS > 0:
			// Against its twin measured in alternation with it: the
			// same requests, the same machine speed, only the Redis
			// differs.
			v := x.RPS / x.TwinAlongsideRPS
			if x.TwinErrors > 0 {
				errNote += fmt.Sprintf(", %d errors of the twin", x.TwinErrors)
			}
			x.Target = &Check{
				Target:   fmt.Sprintf("≥ %.2f × the same on an empty Redis, alongside (%.0f req/s)", sameTarget, x.TwinAlongsideRPS),
				Value:    v,
				Measured: fmt.Sprintf("%.2f%s", v, errNote),
				Met:      v >= sameTarget && x.Errors == 0 && x.TwinErrors == 0,
			}
		case isFillRow(x.Key):
			if ref := r.fillReference(x.Key); ref != nil && ref.VsCeiling > 0 {
				// Each against its own local ceiling: what is compared
				// is the cost, not the machine's speed at the time.
				v := x.VsCeiling / ref.VsCeiling
				x.Target = &Check{
					Target:   fmt.Sprintf("≥ %.2f × %s (within 10%%)", sameTarget, ref.Label),
					Value:    v,
					Measured: fmt.Sprintf("%.2f%s", v, errNote),
					Met:      v >= sameTarget && x.Errors == 0,
				}
			}
		}
		if x.Target != nil {
			x.Target.Name, x.Target.Extra = x.Name, x.Extra
			r.Checks = append(r.Checks, x.Target)
		}
		if ceilP99 := cmp.Or(x.CeilingAlongsideP99Ms, r.Ceiling.P99Ms); hasP99Check(x.Key) && ceilP99 > 0 {
			limit := p99Factor * ceilP99
			x.P99 = &Check{
				Name:     x.Name + ": p99",
				Target:   fmt.Sprintf("p99 ≤ %.2f ms (2 × ceiling)", limit),
				Value:    x.P99Ms,
				Measured: fmt.Sprintf("%.2f ms", x.P99Ms),
				Met:      x.P99Ms <= limit,
				Extra:    x.Extra,
			}
			r.Checks = append(r.Checks, x.P99)
		}
	}
	if r.Memory.CaddyRSSKB > 0 {
		b := float64(r.Memory.CaddyRSSKB) * 1024
		r.Checks = append(r.Checks, &Check{
			Name:     "Caddy resident memory at the end",
			Target:   "< 150 MB",
			Value:    b / 1e6,
			Measured: fmt.Sprintf("%.1f MB", b/1e6),
			Met:      b < rssTargetByte,
		})
	}
	if r.Core != nil {
		c := &Check{Name: "allocations per client_credentials request (" + coreRequestBench + ")", Target: fmt.Sprintf("≤ %d allocs/op", allocsTarget)}
		if r.Core.Error != "" {
			c.Measured = "not measured: " + r.Core.Error
		} else {
			var parts []string
			c.Met = true
			for _, alg := range coreAlgs {
				row := r.Core.Rows[alg]
				c.Value = max(c.Value, float64(row.AllocsPerOp))
				c.Met = c.Met && row.AllocsPerOp <= allocsTarget
				parts = append(parts, fmt.Sprintf("%s %d (%.1f µs/op, %d B/op)", alg, row.AllocsPerOp, row.NsPerOp/1e3, row.BytesPerOp))
			}
			sign := r.Core.Rows[coreSignRow]
			c.Measured = fmt.Sprintf("%s allocs/op; the standard library's deterministic ES256 signature alone (ecdsa.PrivateKey.Sign) allocates %d, so the module's own share of the ES256 request is %d",
				strings.Join(parts, ", "), sign.AllocsPerOp, r.Core.Rows["ES256"].AllocsPerOp-sign.AllocsPerOp)
		}
		r.Checks = append(r.Checks, c)
	}
}

// met counts the main checks (extra ones aside) and those met.
func (r *Report) met() (met, total int) {
	for _, c := range r.Checks {
		if c.Extra {
			continue
		}
		total++
		if c.Met {
			met++
		}
	}
	return met, total
}

func yesNo(c *Check) string {
	switch {
	case c == nil:
		return "—"
	case c.Met:
		return "yes"
	default:
		return "**no**"
	}
}

func fmtRatio(v float64) string {
	if v == 0 || math.IsNaN(v) {
		return "—"
	}
	return fmt.Sprintf("%.2f", v)
}

// tableRows renders the table body as cells (shared by the console and the
// markdown outputs).
func (r *Report) tableRows() (head []string, rows [][]string) {
	head = []string{"row", "req/s", "p50 ms", "p99 ms", "errors", "× ceiling", "ceiling alongside req/s", "target", "measured", "met",
		"p99 ≤ 2× ceiling", "Caddy CPU µs/req", "Redis CPU µs/req", "MariaDB CPU µs/req", "generator CPU µs/req", "× ceiling by CPU cost", "others' CPU %"}
	for _, x := range r.Rows {
		name := x.Name
		if x.Extra {
			name += " (extra)"
		}
		if x.Failed != "" {
			rows = append(rows, []string{name, "FAILED: " + x.Failed, "", "", "", "", "", "", "", "", "", "", "", "", "", "", ""})
			continue
		}
		target, measured := "reference", ""
		if !strings.HasPrefix(x.Key, "ceiling") {
			target, measured = "—", "—"
		}
		if x.Target != nil {
			target, measured = x.Target.Target, x.Target.Measured
		}
		p99 := "—"
		if x.P99 != nil {
			p99 = yesNo(x.P99)
		}
		errs := fmt.Sprint(x.Errors)
		if x.WarmupErrors > 0 {
			errs += fmt.Sprintf(" (+%d in warm-up)", x.WarmupErrors)
		}
		vs := fmtRatio(x.VsCeiling)
		if strings.HasPrefix(x.Key, "ceiling") {
			vs = fmtRatio(x.RPS / r.Ceiling.RPS)
		}
		around := "—"
		if x.CeilingAlongsideRPS > 0 {
			around = fmt.Sprintf("%.0f", x.CeilingAlongsideRPS)
		}
		cpuRatio := fmtRatio(x.VsCeilingCPU)
		if strings.HasPrefix(x.Key, "ceiling") && r.Ceiling.CPUUs > 0 && x.cpuUs() > 0 {
			cpuRatio = fmtRatio(r.Ceiling.CPUUs / x.cpuUs())
		}
		met := "—"
		if x.Target != nil {
			met = yesNo(x.Target)
		}
		db := "—"
		if x.DBCPUUs > 0 {
			db = fmt.Sprintf("%.0f", x.DBCPUUs)
		}
		rows = append(rows, []string{
			name,
			fmt.Sprintf("%.0f", x.RPS),
			fmt.Sprintf("%.2f", x.P50Ms),
			fmt.Sprintf("%.2f", x.P99Ms),
			errs,
			vs,
			around,
			target,
			measured,
			met,
			p99,
			fmt.Sprintf("%.0f", x.CaddyCPUUs),
			fmt.Sprintf("%.0f", x.RedisCPUUs),
			db,
			fmt.Sprintf("%.0f", x.GenCPUUs),
			cpuRatio,
			fmt.Sprintf("%.0f", x.OtherCPUPct),
		})
	}
	return head, rows
}

// printTable writes the table aligned for a terminal.
func (r *Report) printTable(w io.Writer) {
	head, rows := r.tableRows()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, cells := range rows {
		for i := range cells {
			cells[i] = strings.ReplaceAll(cells[i], "**", "")
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
}

// markdown renders results.md.
func (r *Report) markdown(chartFile string) string {
	var b strings.Builder
	met, total := r.met()
	fmt.Fprintf(&b, "# End-to-end benchmark\n\n")
	fmt.Fprintf(&b, "`%s` on %s, %s (%d cores), %s, Caddy %s.  \n", r.Command, r.Started.UTC().Format("2006-01-02 15:04 UTC"), r.CPU, r.Cores, r.GoVersion, r.CaddyVersion)
	fmt.Fprintf(&b, "Load before: `%s` (other processes used %.0f%% of the cores in the second before the run)  \nLoad after: `%s`\n\n", r.UptimeStart, r.OtherCPUPctStart, r.UptimeEnd)
	fmt.Fprintf(&b, "%s; concurrency %d; %.0f s warm-up + %.0f s measured per row (in 10 slices alternating with the ceiling's, see below); loopback only.\n\n",
		r.Settings.Generator, r.Settings.Concurrency, r.Settings.WarmupS, r.Settings.DurationS)
	fmt.Fprintf(&b, "**Targets met: %d of %d.** Ceiling (mean of the ceiling rows at the start and the end; each ratio uses the ceiling measured alongside its row): %.0f req/s, p99 %.2f ms.\n\n",
		met, total, r.Ceiling.RPS, r.Ceiling.P99Ms)
	head, rows := r.tableRows()
	fmt.Fprintf(&b, "| %s |\n|", strings.Join(head, " | "))
	for i := range head {
		if i == 0 || i >= 6 && i <= 10 {
			b.WriteString("---|")
		} else {
			b.WriteString("---:|")
		}
	}
	b.WriteString("\n")
	for _, cells := range rows {
		fmt.Fprintf(&b, "| %s |\n", strings.Join(cells, " | "))
	}
	b.WriteString("\n")
	b.WriteString("Each row is measured in 10 slices alternating with 10 slices of the ceiling (same Caddy, same generator; " +
		"2 s warm-up before the first slice, 0.25 s before the others, keep-alive connections kept), and its ratio is to " +
		"that ceiling (*ceiling alongside*): the speed of these shared cores swings by 10–20% within seconds, and a row and " +
		"its ceiling measured in alternation see the same swings. Row 5 (the 1M rows) runs on a site identical to the ES256 one " +
		"but for its Redis, a redis-server of its own holding the families, and is measured in alternation with its *twin* too: " +
		"the same requests to the same site on an empty redis-server (in turns before and after the row's slice); its target is " +
		"its rate over the twin's. " +
		"CPU columns: CPU time per request of each process during the window (from /proc and getrusage); " +
		"*others' CPU %* is the share of both cores used by every other process on the machine during the window (the noise). " +
		"*× ceiling by CPU cost* is the ceiling's total CPU per request over the row's: what the ratio would be on cores " +
		"shared by nothing else; it is derived, for reading a run on a busy machine, and the targets use the measured × ceiling. " +
		"Rows marked (extra) are not among the main targets: the calibration (the ceiling measured alternating with itself: how far a " +
		"ratio can be off by the method alone), client_credentials issuing a refresh token (a Redis write per request), " +
		"empty and with the 1M families, as a stricter reading of row 5, and the authorization_code rows (MariaDB; see below), " +
		"whose targets are their own: ≥ 0.05 × the ceiling without openid, ≥ 0.80 × the RSA-signing bound (measured with the " +
		"client's key alongside, as for RS256) with it.\n\n")
	if chartFile != "" {
		fmt.Fprintf(&b, "![requests per second per row, ceiling marked](%s)\n\n", chartFile)
	}
	b.WriteString("## Other targets and measurements\n\n")
	for _, c := range r.Checks {
		if strings.HasPrefix(c.Name, "Caddy resident") || strings.HasPrefix(c.Name, "allocations") {
			fmt.Fprintf(&b, "- %s: %s (target %s): %s\n", c.Name, c.Measured, c.Target, strings.ReplaceAll(yesNo(c), "**", ""))
		}
	}
	if r.Memory.CaddyHWMKB > 0 {
		fmt.Fprintf(&b, "- Caddy peak resident memory (VmHWM): %.1f MB\n", float64(r.Memory.CaddyHWMKB)*1024/1e6)
	}
	if r.RSA != nil {
		fmt.Fprintf(&b, "- RSA-signing bound: %d cores ÷ %.0f µs of CPU per RSA-2048 PKCS#1 v1.5 SHA-256 signature (%d signatures in one goroutine, in %d measurements: before the RS256 row, after each of its slices and after it; %.0f µs each by the wall clock) = %.0f signatures/s\n",
			r.RSA.Cores, r.RSA.CPUPerSignUs, r.RSA.Signatures, r.RSA.measurements(), r.RSA.PerSignUs, r.RSA.PerSecond)
		if rs := r.row("rs256"); rs != nil && rs.CaddyCPUUs > 0 {
			fmt.Fprintf(&b, "- What bounds the RS256 row: per request Caddy used %.0f µs of CPU (the signature %.0f of them, %.0f%%), Redis %.0f µs and the load generator, on the same cores, %.0f µs; "+
				"with the cores fully used that allows at most %.2f of the bound (a signature's CPU over a request's), and the row reached %.2f\n",
				rs.CaddyCPUUs, r.RSA.CPUPerSignUs, 100*min(1, r.RSA.CPUPerSignUs/rs.CaddyCPUUs), rs.RedisCPUUs, rs.GenCPUUs, r.RSA.CPUPerSignUs/rs.cpuUs(), rs.VsRSA)
		}
	}
	if r.Fill != nil {
		fmt.Fprintf(&b, "- Row 5's Redis: %d live refresh families written in %.1f s (pipelined HSET + PEXPIREAT in the store's layout); %d keys, %s used\n",
			r.Fill.Families, r.FillSeconds, r.Fill.Keys, r.Fill.UsedMem)
	}
	if r.Memory.RedisUsedMem != "" {
		fmt.Fprintf(&b, "- Redis memory at the end: %s\n", r.Memory.RedisUsedMem)
	}
	if r.PreIssued > 0 {
		fmt.Fprintf(&b, "- Refresh tokens pre-issued through the endpoint (bench-rt client, not timed beyond the cc+RT row): %d\n", r.PreIssued)
	}
	if len(r.ResponseBytes) > 0 {
		var parts []string
		for _, k := range []string{"ceiling", "ES256", "EdDSA", "HS256", "RS256", "authorization_code", "authorization_code openid"} {
			if n, ok := r.ResponseBytes[k]; ok {
				parts = append(parts, fmt.Sprintf("%s %d", k, n))
			}
		}
		fmt.Fprintf(&b, "- Response body bytes (one request each): %s\n", strings.Join(parts, ", "))
	}
	for _, x := range r.Rows {
		if len(x.ErrorKinds) > 0 {
			fmt.Fprintf(&b, "- Errors of %s: %s\n", x.Name, strings.Join(x.ErrorKinds, "; "))
		}
		switch {
		case x.Exhausted && x.Codes != nil:
			fmt.Fprintf(&b, "- %s: the codes inserted for a slice ran out before its end (it ran faster than twice the slice before); the rate is over the %.1f s measured\n", x.Name, x.WindowS)
		case x.Exhausted:
			fmt.Fprintf(&b, "- %s: the pre-issued tokens ran out after %.1f s of the window; the rate is over that time\n", x.Name, x.WindowS)
		}
	}
	if lines := r.codeBounds(); len(lines) > 0 {
		b.WriteString("\n## The authorization_code exchange\n\n")
		b.WriteString("The plugin's codes redeemed through a moserver site configured with `wordpress \"<dsn>\" { table_prefix wp_ index_tables }` on a " +
			"database of its own on the machine's MariaDB (the plugin's tables as the tests create them, which have no index; the module's " +
			"`index_tables` adds one on the code column at start, so a SELECT or DELETE by code reads one row; the last row drops it again: " +
			"the plugin's own schema, where each of them scans the table), one client and user, and the client's RSA-2048 key in `moos_oauth_public_keys`; " +
			"every request redeems a fresh code, each worker its own. Without `openid` an exchange reads the code row, writes a refresh " +
			"family to Redis, inserts an opaque access-token row, records the redemption in Redis and deletes the code row; with it, " +
			"there is no family, but the user's rows and the client's key are read and an RS256 id_token is signed per request. Before each slice of these rows the codes the slice before " +
			"left are deleted and twice the codes the slice needs at the last slice's rate are inserted, so the table holds a few " +
			"seconds' worth, as a live site's does (a code lives 30 s and is deleted when redeemed); the pre-filled row measures the " +
			"other choice. The MariaDB server is shared with whatever else runs on the machine: its CPU and counters are the server's.\n\n")
		for _, l := range lines {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	if len(r.Notes) > 0 {
		b.WriteString("\n## Notes\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

// writeFiles writes results.md and results.json into dir.
func (r *Report) writeFiles(dir, chartFile string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	md := filepath.Join(dir, "results.md")
	if err := os.WriteFile(md, []byte(r.markdown(chartFile)), 0o644); err != nil {
		return nil, err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	jp := filepath.Join(dir, "results.json")
	if err := os.WriteFile(jp, append(js, '\n'), 0o644); err != nil {
		return nil, err
	}
	return []string{md, jp}, nil
}

// isFillRow says whether key is one of row 5's: measured with the families
// in Redis.
func isFillRow(key string) bool { return key == "es256_1m" || key == "es256rt_1m" }

// fillReference returns the row a row measured with the families in Redis
// (es256_1m, es256rt_1m) is compared with when it has no twin (reports of
// earlier versions): the same requests measured right before the fill
// (es256_pre, es256rt_pre), or, in a report without those, the row at the
// start (es256, es256rt); nil for other rows.
func (r *Report) fillReference(key string) *Row {
	base, ok := strings.CutSuffix(key, "_1m")
	if !ok {
		return nil
	}
	if ref := r.row(base + "_pre"); ref != nil {
		return ref
	}
	return r.row(base)
}

// codeBounds describes, for each authorization_code row measured, how its
// codes were supplied and what bounds it: the CPU each process used per
// exchange, the rate the cores allow at that cost (cores ÷ the CPU per
// request), and MariaDB's counters per exchange; for the openid row the
// signature's share; for the pre-filled row its one-client run.
func (r *Report) codeBounds() []string {
	var out []string
	for _, x := range r.Rows {
		if x.Key != codeKey && x.Key != openIDKey && x.Key != prefilledKey && x.Key != unindexedKey || x.Failed != "" && x.OK+x.Errors == 0 {
			continue // not measured (a row without one success was)
		}
		var l strings.Builder
		if x.RPS == 0 {
			fmt.Fprintf(&l, "**%s**: no exchange succeeded", x.Name)
		} else {
			fmt.Fprintf(&l, "**%s**: %.0f exchanges/s, p50 %.0f ms, p99 %.0f ms", x.Name, x.RPS, x.P50Ms, x.P99Ms)
		}
		if x.Errors > 0 {
			fmt.Fprintf(&l, ", %d errors in the window (%s, warm-ups included)", x.Errors, strings.Join(x.ErrorKinds, "; "))
		}
		switch {
		case x.VsRSA > 0:
			fmt.Fprintf(&l, "; %.2f × the RSA-signing bound", x.VsRSA)
		case x.VsCeiling > 0:
			fmt.Fprintf(&l, "; %.2f × the ceiling alongside", x.VsCeiling)
		}
		if x.Target != nil {
			fmt.Fprintf(&l, " (target %s: %s)", x.Target.Target, strings.ReplaceAll(yesNo(x.Target), "**", ""))
		}
		l.WriteString(". ")
		if c := x.Codes; c != nil && c.Prefilled {
			fmt.Fprintf(&l, "All %d codes were inserted before the row (in %.1f s), and each worker redeems its own block of them: without the index an exchange's "+
				"SELECT and DELETE would scan on average half the table (MariaDB's rows read by table scans below show whether they did). ", c.Inserted, c.FillSeconds)
			if o := x.OneClient; o != nil {
				fmt.Fprintf(&l, "One client at a time first, on codes spread over the table: %.1f exchanges/s, p50 %.0f ms (%d exchanges, %d errors). ", o.RPS, o.P50Ms, o.OK, o.Errors)
			}
		} else if c != nil {
			fmt.Fprintf(&l, "%d codes were inserted for its slices; the table held at most %d at the start of one. ", c.Inserted, c.LargestTable)
		}
		if cpu := x.cpuUs(); cpu > 0 && r.Cores > 0 && x.RPS > 0 {
			allow := float64(r.Cores) * 1e6 / cpu
			fmt.Fprintf(&l, "CPU per exchange: Caddy %.0f µs, MariaDB %.0f µs, Redis %.0f µs, the load generator %.0f µs: %.0f µs, which the %d cores "+
				"allow %.0f times a second; the row reached %.2f of that while other processes used %.0f%% of the cores",
				x.CaddyCPUUs, x.DBCPUUs, x.RedisCPUUs, x.GenCPUUs, cpu, r.Cores, allow, x.RPS/allow, x.OtherCPUPct)
			if bound := r.rsaBoundOf(x); bound != nil && bound.CPUPerSignUs > 0 {
				fmt.Fprintf(&l, "; the id_token's signature is %.0f µs of it (%.0f%%), so the cores allow at most %.2f of the RSA bound",
					bound.CPUPerSignUs, 100*bound.CPUPerSignUs/cpu, bound.CPUPerSignUs/cpu)
			}
			l.WriteString(". ")
		} else if cpu > 0 {
			fmt.Fprintf(&l, "CPU per request: Caddy %.0f µs, MariaDB %.0f µs, Redis %.0f µs, the load generator %.0f µs, while other processes used %.0f%% of the cores. ",
				x.CaddyCPUUs, x.DBCPUUs, x.RedisCPUUs, x.GenCPUUs, x.OtherCPUPct)
		}
		if d := x.DB; len(d) > 0 {
			fmt.Fprintf(&l, "MariaDB per request (server-wide counters, warm-ups included): %.1f statements, %.0f rows read by table scans, %.2f row-lock waits (%.1f ms waited), %.2f fsyncs.",
				d["Questions"], d["Handler_read_rnd_next"], d["Innodb_row_lock_waits"], d["Innodb_row_lock_time"], d["Innodb_data_fsyncs"])
		}
		out = append(out, strings.TrimSpace(l.String()))
	}
	return out
}
