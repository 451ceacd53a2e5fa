package main

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// rsaBound is the RSA-signing bound of the RS256 row: cores ÷ the time of
// one RSA-2048 PKCS#1 v1.5 SHA-256 signature, measured in-process. The time
// used is the CPU time per signature, which other processes on the machine
// do not inflate (they only stretch the wall-clock time, also recorded).
type rsaBound struct {
	Cores      int `json:"cores"`
	Signatures int `json:"signatures"`
	// CPUPerSignUs is the process CPU time per signature (the signing loop
	// is all that runs in the process then): the bound's divisor.
	CPUPerSignUs float64 `json:"cpu_microseconds_per_signature"`
	// PerSignUs is the wall-clock time per signature; above CPUPerSignUs
	// when other load took the core away during the measurement.
	PerSignUs float64 `json:"wall_microseconds_per_signature"`
	PerSecond float64 `json:"bound_requests_per_second"`
	// Measurements is how many measurements were combined (before the
	// RS256 row, after each of its slices, after it).
	Measurements int `json:"measurements,omitempty"`
}

// mean combines two measurements of the bound (before and after the RS256
// row) into one over all their signatures.
func (a *rsaBound) mean(b *rsaBound) *rsaBound {
	n := a.Signatures + b.Signatures
	if n == 0 {
		return a
	}
	w := func(x, y float64) float64 {
		return (x*float64(a.Signatures) + y*float64(b.Signatures)) / float64(n)
	}
	m := &rsaBound{
		Cores:        a.Cores,
		Signatures:   n,
		Measurements: a.measurements() + b.measurements(),
		CPUPerSignUs: w(a.CPUPerSignUs, b.CPUPerSignUs),
		PerSignUs:    w(a.PerSignUs, b.PerSignUs),
	}
	m.PerSecond = float64(m.Cores) / (m.CPUPerSignUs / 1e6)
	return m
}

// measurements is how many measurements the bound combines (at least 1).
func (a *rsaBound) measurements() int { return max(a.Measurements, 1) }

// measureRSA measures the bound with the RS256 site's own key (PEM at
// keyPath): measureRSAKey.
func measureRSA(keyPath string, d time.Duration) (*rsaBound, error) {
	data, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(data)
	if blk == nil {
		return nil, errors.New("RS256 key: no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("RS256 key: %w", err)
	}
	key, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("RS256 key: %T, not RSA", k)
	}
	return measureRSAKey(key, d)
}

// measureRSAKey signs with key in one goroutine for about d: SHA-256 of a
// token-sized signing input, then rsa.SignPKCS1v15, as RS256 does.
func measureRSAKey(key *rsa.PrivateKey, d time.Duration) (*rsaBound, error) {
	msg := []byte(strings.Repeat("eyJhbGciOiJSUzI1NiJ9", 16)) // ~320 bytes, a JWT signing input's size
	sign := func() error {
		sum := sha256.Sum256(msg)
		_, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, sum[:])
		return err
	}
	for range 10 { // warm up (precomputation, caches)
		if err := sign(); err != nil {
			return nil, err
		}
	}
	n := 0
	start, cpu0 := time.Now(), selfCPU()
	for time.Since(start) < d {
		if err := sign(); err != nil {
			return nil, err
		}
		n++
	}
	per := time.Since(start) / time.Duration(n)
	cpuPer := (selfCPU() - cpu0) / time.Duration(n)
	if cpuPer <= 0 { // no rusage: fall back to the wall clock
		cpuPer = per
	}
	cores := runtime.NumCPU()
	return &rsaBound{
		Cores:        cores,
		Signatures:   n,
		CPUPerSignUs: float64(cpuPer) / float64(time.Microsecond),
		PerSignUs:    float64(per) / float64(time.Microsecond),
		PerSecond:    float64(cores) / cpuPer.Seconds(),
	}, nil
}

// coreBench is the result of the core-path go test benchmarks: one
// client_credentials request through the module per signing algorithm,
// and the standard library's ES256 signature alone.
type coreBench struct {
	Command string `json:"command"`
	// Rows are keyed by algorithm (ES256, EdDSA, HS256, RS256) and
	// coreSignRow.
	Rows  map[string]coreRow `json:"rows"`
	Error string             `json:"error,omitempty"`
}

// coreRow is one go test benchmark line.
type coreRow struct {
	NsPerOp     float64 `json:"ns_per_op"`
	AllocsPerOp int     `json:"allocs_per_op"`
	BytesPerOp  int     `json:"bytes_per_op"`
}

// The benchmarks of internal/oauth/bench_test.go that runCoreBench runs.
const (
	coreRequestBench = "BenchmarkTokenByAlgorithm"
	coreSignBench    = "BenchmarkStdlibES256Sign"
	coreSignRow      = "stdlib ES256 signature"
)

// coreAlgs are the algorithms of coreRequestBench, in report order.
var coreAlgs = []string{"ES256", "EdDSA", "HS256", "RS256"}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op(?:\s+([\d.]+) B/op)?(?:\s+(\d+) allocs/op)?`)

// runCoreBench runs the core-path benchmarks in repo and parses ns/op, B/op
// and allocs/op. It runs before any server starts, so it has the machine
// to itself (apart from other users).
func runCoreBench(ctx context.Context, repo string) *coreBench {
	args := []string{"test", "-run", "^$", "-bench", "^(" + coreRequestBench + "|" + coreSignBench + ")$",
		"-benchmem", "-benchtime", "2000x", "-count", "1", "./internal/oauth/"}
	cb := &coreBench{Command: "go " + strings.Join(args, " "), Rows: map[string]coreRow{}}
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = repo
	out, err := cmd.CombinedOutput()
	if err != nil {
		cb.Error = fmt.Sprintf("go test -bench: %v: %s", err, lastLines(string(out), 8))
		return cb
	}
	parseCoreBench(cb, string(out))
	return cb
}

// parseCoreBench fills cb.Rows from go test output, or cb.Error when a row
// is missing.
func parseCoreBench(cb *coreBench, out string) {
	for _, line := range strings.Split(out, "\n") {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil || m[4] == "" {
			continue
		}
		key := strings.TrimPrefix(m[1], coreRequestBench+"/")
		if m[1] == coreSignBench {
			key = coreSignRow
		}
		var row coreRow
		row.NsPerOp, _ = strconv.ParseFloat(m[2], 64)
		b, _ := strconv.ParseFloat(m[3], 64)
		row.BytesPerOp = int(b)
		row.AllocsPerOp, _ = strconv.Atoi(m[4])
		cb.Rows[key] = row
	}
	for _, k := range append(slices.Clone(coreAlgs), coreSignRow) {
		if _, ok := cb.Rows[k]; !ok {
			cb.Error = fmt.Sprintf("no %s allocs/op line in: %s", k, lastLines(out, 8))
			return
		}
	}
}

// lastLines returns the last n lines of s on one line, separated by " | ".
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
