package main

import (
	"fmt"
	"runtime"
	"sort"
	"strings"
	"time"
)

// memSample is one look at Caddy's (and Redis's) memory during the soak.
type memSample struct {
	at         time.Duration // since the soak began
	rssKB      int64         // Caddy's VmRSS
	heapInuse  int64         // Caddy's Go heap in use, bytes (-1 unknown)
	goroutines int64         // Caddy's goroutines (-1 unknown)
	redisUsed  int64         // Redis used_memory, bytes (-1 unknown)
}

// memTrend summarises the RSS samples.
type memTrend struct {
	startKB, peakKB, endKB int64
	firstQKB, lastQKB      float64 // mean RSS of the first and last quarter of the soak
	growth                 float64 // lastQ / firstQ - 1
	slopeMiBPerMin         float64 // least-squares slope over every sample
}

// maxMemGrowth is the RSS growth between the first and the last quarter
// that fails the soak.
const maxMemGrowth = 0.20

// trend computes the memory trend of samples over a soak of length dur.
// Samples with at < dur/4 form the first quarter, at >= 3*dur/4 the last.
func trend(samples []memSample, dur time.Duration) memTrend {
	var t memTrend
	if len(samples) == 0 {
		return t
	}
	t.startKB, t.endKB = samples[0].rssKB, samples[len(samples)-1].rssKB
	var nf, nl int
	var sf, sl float64
	for _, s := range samples {
		t.peakKB = max(t.peakKB, s.rssKB)
		switch {
		case s.at < dur/4:
			sf += float64(s.rssKB)
			nf++
		case s.at >= dur*3/4:
			sl += float64(s.rssKB)
			nl++
		}
	}
	if nf > 0 && nl > 0 {
		t.firstQKB, t.lastQKB = sf/float64(nf), sl/float64(nl)
		if t.firstQKB > 0 {
			t.growth = t.lastQKB/t.firstQKB - 1
		}
	}
	t.slopeMiBPerMin = slope(samples) * 60 / 1024
	return t
}

// slope is the least-squares slope of RSS (KiB) over time (s).
func slope(samples []memSample) float64 {
	n := float64(len(samples))
	if n < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for _, s := range samples {
		x, y := s.at.Seconds(), float64(s.rssKB)
		sx += x
		sy += y
		sxx += x * x
		sxy += x * y
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

// check is one guarantee of the soak.
type check struct {
	name string
	ok   bool
	warn bool // reported, never fails the run
	note string
}

// report is everything the soak prints and writes.
type report struct {
	started             time.Time
	cfg                 config
	caddyVersion        string
	loadBefore          string
	loadAfter           string
	ccCapacity          float64 // client_credentials req/s, closed loop
	mixOpsCap           float64 // the mix, ops/s, closed loop
	mixReqCap           float64 // the mix, req/s
	target              float64 // ops/s of the soak
	open                openResult
	soakOps             int64
	soakReqs            int64
	cpu                 cpuSnap // used during the soak
	finalChains         int
	run                 *runner
	capRun              *runner
	samples             []memSample
	trend               memTrend
	counters            map[string]int64 // the module's /metrics
	answers             map[string]int64 // the answers received, by the same keys
	countersErr         error
	caddyAlive          bool
	panics              bool
	checks              []check
	failed              bool
	capacityPhaseIssues map[string]int64
}

func mib(kb int64) string       { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }
func mibF(kb float64) string    { return fmt.Sprintf("%.1f MiB", kb/1024) }
func mibB(b int64) string       { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }
func pct(f float64) string      { return fmt.Sprintf("%+.1f%%", 100*f) }
func passFail(ok bool) string   { return map[bool]string{true: "PASS", false: "FAIL"}[ok] }
func countStr(n int64) string   { return fmt.Sprintf("%d", n) }
func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// evaluate fills the checks and failed.
func (r *report) evaluate() {
	l := &r.run.ledger
	f := r.run.failureCounts()
	n5xx, transport, unexpected := f["5xx"], f["transport error"], f["unexpected answer"]
	balance := l.worked.Load() + l.finalOK.Load() + l.endedBy.Load() + l.lost.Load() + l.unverified.Load() + l.pending.Load()
	mismatch := counterMismatches(r.counters, r.answers)
	add := func(c check) { r.checks = append(r.checks, c) }
	add(check{name: "zero 5xx", ok: n5xx == 0, note: countStr(n5xx) + " answers ≥ 500"})
	add(check{name: "every answer as expected, no transport error", ok: transport == 0 && unexpected == 0,
		note: fmt.Sprintf("%d transport errors, %d unexpected answers", transport, unexpected)})
	add(check{name: "zero lost rotations", ok: l.lost.Load() == 0 && l.seedRefused.Load() == 0,
		note: fmt.Sprintf("%d successors refused without a replay or revocation by the soak; %d fresh tokens refused", l.lost.Load(), l.seedRefused.Load())})
	add(check{name: "zero duplicated rotations", ok: l.duplicated.Load() == 0 && l.issuedTwice.Load() == 0,
		note: fmt.Sprintf("%d tokens that rotated twice, %d token values handed out twice", l.duplicated.Load(), l.issuedTwice.Load())})
	add(check{name: "every successor used exactly once", ok: balance == l.issued.Load() && l.unverified.Load() == 0 && l.pending.Load() == 0,
		note: fmt.Sprintf("%d issued = %d worked + %d at the final check + %d ended by the soak + %d lost + %d unverified + %d unused",
			l.issued.Load(), l.worked.Load(), l.finalOK.Load(), l.endedBy.Load(), l.lost.Load(), l.unverified.Load(), l.pending.Load())})
	// A replay or double spend answered 5xx (already a failure above) proves
	// nothing either way and is left out of this guarantee.
	replaysOK := l.replayAccepted.Load() == 0 && l.duplicated.Load() == 0 && l.doubleNoWin.Load() == 0 && l.replayKept.Load() == 0
	add(check{name: "replays refused and their family revoked", ok: replaysOK && l.replays.Load() > 0 && l.doubles.Load() > 0,
		note: fmt.Sprintf("%d/%d spent tokens refused, %d/%d double spends with exactly one winner, %d/%d replayed families' latest token refused",
			l.replayRejected.Load(), l.replays.Load(), l.doubleOneWin.Load(), l.doubles.Load(), l.familyRevoked.Load(), l.familyRevoked.Load()+l.replayKept.Load())})
	add(check{name: "revocations hold", ok: l.revocations.Load() > 0 && l.revokeHeld.Load() == l.revocations.Load(),
		note: fmt.Sprintf("%d/%d revoked tokens refused afterwards", l.revokeHeld.Load(), l.revocations.Load())})
	memOK := len(r.samples) >= 4 && r.trend.growth <= maxMemGrowth
	add(check{name: fmt.Sprintf("stable memory (RSS, last quarter ≤ first quarter + %.0f%%)", 100*maxMemGrowth), ok: memOK,
		note: fmt.Sprintf("%s → %s (%s), slope %+.2f MiB/min, %d samples", mibF(r.trend.firstQKB), mibF(r.trend.lastQKB), pct(r.trend.growth), r.trend.slopeMiBPerMin, len(r.samples))})
	cnote := "the module's counters equal the answers received, label by label"
	if r.countersErr != nil {
		cnote = "could not read /metrics: " + r.countersErr.Error()
	} else if len(mismatch) > 0 {
		cnote = strings.Join(mismatch, "; ")
	}
	add(check{name: "no answer lost (module counters = answers received)", ok: r.countersErr == nil && len(mismatch) == 0, note: cnote})
	add(check{name: "Caddy alive, no panic in its log", ok: r.caddyAlive && !r.panics,
		note: fmt.Sprintf("running: %v, panic in log: %v", r.caddyAlive, r.panics)})
	achieved := rate(r.soakOps, r.open.elapsed)
	add(check{name: "achieved rate ≥ 95% of the target, nothing shed", warn: true,
		ok:   r.open.shed == 0 && achieved >= 0.95*r.target,
		note: fmt.Sprintf("%.0f of %.0f ops/s; %d of %d due operations shed", achieved, r.target, r.open.shed, r.open.scheduled)})
	for _, c := range r.checks {
		if !c.ok && !c.warn {
			r.failed = true
		}
	}
}

// counterMismatches compares the module's counters with the answers.
func counterMismatches(server, client map[string]int64) []string {
	keys := map[string]bool{}
	for k := range server {
		keys[k] = true
	}
	for k := range client {
		keys[k] = true
	}
	var out []string
	for k := range keys {
		if server[k] != client[k] {
			out = append(out, fmt.Sprintf("%s: module %d, received %d", k, server[k], client[k]))
		}
	}
	sort.Strings(out)
	return out
}

// markdown renders the report (also printed to the terminal).
func (r *report) markdown() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	verdict := "PASS"
	if r.failed {
		verdict = "FAIL"
	}
	w("# moserver soak: %s\n\n", verdict)
	w("`./xcaddy.sh soak` (soak/cmd/moserver-soak), %s, SOAK_DURATION=%s, on %s. ", r.started.UTC().Format("2006-01-02 15:04 UTC"), r.cfg.duration, r.cfg.machine)
	w("%s with the moserver module, a private redis-server, all on loopback; load average before %s, after %s. ", r.caddyVersion, r.loadBefore, r.loadAfter)
	w("The load generator runs on the same machine and shares its CPUs.\n\n")

	w("## Load\n\n")
	w("| phase | what | result |\n|---|---|---|\n")
	if r.cfg.rate > 0 {
		w("| capacity | skipped: SOAK_RATE=%g | |\n", r.cfg.rate)
	} else {
		w("| capacity 1 | client_credentials, closed loop, %d concurrent, %s | %.0f req/s |\n", r.cfg.concurrency, r.cfg.capacity, r.ccCapacity)
		w("| capacity 2 | the soak's mix, closed loop, %d concurrent, %s | %.0f ops/s (%.0f req/s) |\n", r.cfg.concurrency, r.cfg.capacity, r.mixOpsCap, r.mixReqCap)
	}
	w("| soak | the mix, open loop at %.0f%% of capacity 2: %.0f ops/s, up to %d in flight, %s | %.0f ops/s, %.0f req/s; %d ops due, %d shed |\n",
		100*r.cfg.load, r.target, r.cfg.workers, r.open.elapsed.Round(time.Second), rate(r.soakOps, r.open.elapsed), rate(r.soakReqs, r.open.elapsed), r.open.scheduled, r.open.shed)
	w("| final check | every chain's current token rotated once more | %d chains |\n\n", r.finalChains)
	w("The mix, of every 20 operations: 8 client_credentials; 8 refreshes of a chain (a family the soak rotates, ")
	w("each new token used exactly once); 2 revocations of a chain's current token (RFC 7009 URL and `token=` at the token endpoint), ")
	w("each checked to be refused afterwards; 1 replay of a spent token and 1 double spend (the current token twice at once), ")
	w("each followed by a check that the family's latest token is refused.\n\n")
	secs := max(r.open.elapsed.Seconds(), 1e-9)
	w("CPU during the soak, in cores: Caddy %.2f, Redis %.2f, the load generator %.2f, other processes %.2f (the machine: %d CPUs).\n\n",
		r.cpu.caddy.Seconds()/secs, r.cpu.redis.Seconds()/secs, r.cpu.self.Seconds()/secs,
		max(0, (r.cpu.machine-r.cpu.caddy-r.cpu.redis-r.cpu.self).Seconds()/secs), runtime.NumCPU())

	w("## Requests during the soak\n\n")
	w("| request | count | 2xx | 4xx | 5xx | no answer | p50 ms | p99 ms | max ms |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	r.run.mu.Lock()
	for _, k := range requestKinds {
		st := r.run.reqs[k]
		if st == nil {
			continue
		}
		lat := st.lat
		w("| %s | %d | %d | %d | %d | %d | %s | %s | %s |\n", k, st.n, st.ok2xx, st.n4xx, st.n5xx, st.transport,
			ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99)), ms(percentile(lat, 1)))
	}
	w("\n| operation (open loop) | done | p50 ms from due | p99 ms | max ms |\n|---|--:|--:|--:|--:|\n")
	for _, k := range opKinds {
		lat := r.run.opLat[k]
		if len(lat) == 0 {
			continue
		}
		w("| %s | %d | %s | %s | %s |\n", k, len(lat), ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99)), ms(percentile(lat, 1)))
	}
	r.run.mu.Unlock()
	w("\nThe 4xx are the expected refusals (revoked tokens, replays, the losing half of each double spend).\n\n")

	l := &r.run.ledger
	w("## Rotations\n\n| | count |\n|---|--:|\n")
	w("| 2xx refreshes (successors issued) | %d |\n", l.issued.Load())
	w("| successor used once afterwards and rotated | %d |\n", l.worked.Load())
	w("| successor rotated at the final check | %d |\n", l.finalOK.Load())
	w("| successor whose family the soak revoked or replayed (refusal expected) | %d |\n", l.endedBy.Load())
	w("| **LOST** (refused, never revoked or replayed by the soak) | %d |\n", l.lost.Load())
	w("| **DUPLICATED** (two successes from one token, or one token value issued twice) | %d |\n", l.duplicated.Load()+l.issuedTwice.Load())
	w("| unverified (5xx or no answer) | %d |\n", l.unverified.Load())
	w("| spent tokens replayed / refused | %d / %d |\n", l.replays.Load(), l.replayRejected.Load())
	w("| double spends / exactly one winner | %d / %d |\n", l.doubles.Load(), l.doubleOneWin.Load())
	w("| replayed families whose latest token was then refused | %d of %d |\n", l.familyRevoked.Load(), l.familyRevoked.Load()+l.replayKept.Load())
	w("| revocations / revoked token refused afterwards | %d / %d |\n\n", l.revocations.Load(), l.revokeHeld.Load())

	w("## Memory (every %s)\n\n", r.cfg.sample)
	w("| | Caddy RSS |\n|---|--:|\n")
	w("| start | %s |\n| peak | %s |\n| end | %s |\n", mib(r.trend.startKB), mib(r.trend.peakKB), mib(r.trend.endKB))
	w("| mean, first quarter | %s |\n| mean, last quarter | %s |\n| growth | %s |\n| slope | %+.2f MiB/min |\n\n",
		mibF(r.trend.firstQKB), mibF(r.trend.lastQKB), pct(r.trend.growth), r.trend.slopeMiBPerMin)
	w("| t | Caddy RSS | Go heap in use | goroutines | Redis used_memory |\n|--:|--:|--:|--:|--:|\n")
	for _, s := range r.samples {
		heap, gr, red := "?", "?", "?"
		if s.heapInuse >= 0 {
			heap = mibB(s.heapInuse)
		}
		if s.goroutines >= 0 {
			gr = countStr(s.goroutines)
		}
		if s.redisUsed >= 0 {
			red = mibB(s.redisUsed)
		}
		w("| %s | %s | %s | %s | %s |\n", s.at.Round(time.Second), mib(s.rssKB), heap, gr, red)
	}
	w("\nRedis grows by design: every family the soak creates is kept for its TTL (14 days).\n\n")

	w("## Guarantees\n\n| | guarantee | |\n|---|---|---|\n")
	for _, c := range r.checks {
		status := passFail(c.ok)
		if c.warn && !c.ok {
			status = "WARN"
		}
		w("| %s | %s | %s |\n", status, c.name, c.note)
	}
	if len(r.capacityPhaseIssues) > 0 {
		var ks []string
		for k, v := range r.capacityPhaseIssues {
			ks = append(ks, fmt.Sprintf("%d× %s", v, k))
		}
		sort.Strings(ks)
		w("\nDuring the capacity phases (saturation, not part of the guarantees): %s.\n", strings.Join(ks, ", "))
	}
	r.run.mu.Lock()
	ex := append([]string(nil), r.run.examples...)
	r.run.mu.Unlock()
	if len(ex) > 0 {
		w("\nFirst failures:\n\n```\n%s\n```\n", strings.Join(ex, "\n"))
	}
	return b.String()
}

// terminal renders the short summary table printed at the end.
func (r *report) terminal() string {
	var b strings.Builder
	l := &r.run.ledger
	row := func(k, v string) { fmt.Fprintf(&b, "  %-44s %s\n", k, v) }
	fmt.Fprintf(&b, "\nmoserver soak summary (%s at %.0f%% of capacity)\n", r.open.elapsed.Round(time.Second), 100*r.cfg.load)
	if r.cfg.rate == 0 {
		row("capacity: client_credentials (closed loop)", fmt.Sprintf("%.0f req/s", r.ccCapacity))
		row("capacity: mix (closed loop)", fmt.Sprintf("%.0f ops/s = %.0f req/s", r.mixOpsCap, r.mixReqCap))
	}
	row("soak rate: target / achieved", fmt.Sprintf("%.0f / %.0f ops/s (%.0f req/s), %d shed", r.target, rate(r.soakOps, r.open.elapsed), rate(r.soakReqs, r.open.elapsed), r.open.shed))
	secs := max(r.open.elapsed.Seconds(), 1e-9)
	row("CPU cores: Caddy / Redis / generator / others", fmt.Sprintf("%.2f / %.2f / %.2f / %.2f", r.cpu.caddy.Seconds()/secs, r.cpu.redis.Seconds()/secs,
		r.cpu.self.Seconds()/secs, max(0, (r.cpu.machine-r.cpu.caddy-r.cpu.redis-r.cpu.self).Seconds()/secs)))
	row("requests", countStr(r.soakReqs))
	f := r.run.failureCounts()
	row("5xx", countStr(f["5xx"]))
	row("transport errors / unexpected answers", fmt.Sprintf("%d / %d", f["transport error"], f["unexpected answer"]))
	row("refreshes issued (2xx)", countStr(l.issued.Load()))
	row("  used once and worked / final check", fmt.Sprintf("%d / %d", l.worked.Load(), l.finalOK.Load()))
	row("  ended by the soak's replays/revocations", countStr(l.endedBy.Load()))
	row("  LOST / DUPLICATED / unverified", fmt.Sprintf("%d / %d / %d", l.lost.Load(), l.duplicated.Load()+l.issuedTwice.Load(), l.unverified.Load()))
	row("replays refused / families revoked", fmt.Sprintf("%d of %d / %d of %d", l.replayRejected.Load()+l.doubleOneWin.Load(), l.replays.Load()+l.doubles.Load(), l.familyRevoked.Load(), l.familyRevoked.Load()+l.replayKept.Load()))
	row("revocations held", fmt.Sprintf("%d of %d", l.revokeHeld.Load(), l.revocations.Load()))
	row("Caddy RSS start / peak / end", fmt.Sprintf("%s / %s / %s", mib(r.trend.startKB), mib(r.trend.peakKB), mib(r.trend.endKB)))
	row("RSS first → last quarter, slope", fmt.Sprintf("%s → %s (%s), %+.2f MiB/min", mibF(r.trend.firstQKB), mibF(r.trend.lastQKB), pct(r.trend.growth), r.trend.slopeMiBPerMin))
	fmt.Fprintf(&b, "\n")
	for _, c := range r.checks {
		status := passFail(c.ok)
		if c.warn && !c.ok {
			status = "WARN"
		}
		fmt.Fprintf(&b, "  [%s] %s: %s\n", status, c.name, c.note)
	}
	verdict := "PASS"
	if r.failed {
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "\nsoak: %s\n", verdict)
	return b.String()
}
