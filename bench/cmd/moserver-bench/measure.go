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
}

// measureRSA signs with the RS256 site's own key (PEM at keyPath) in one
// goroutine for about d: SHA-256 of a token-sized signing input, then
// rsa.SignPKCS1v15, as RS256 does.
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

// coreBench is the result of the core-path go test benchmark.
type coreBench struct {
	Benchmark   string  `json:"benchmark"`
	NsPerOp     float64 `json:"ns_per_op"`
	AllocsPerOp int     `json:"allocs_per_op"`
	BytesPerOp  int     `json:"bytes_per_op"`
	Error       string  `json:"error,omitempty"`
}

// coreBenchName is the core-path benchmark of a whole client_credentials
// request (internal/oauth/bench_test.go).
const coreBenchName = "BenchmarkClientCredentials"

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op(?:\s+([\d.]+) B/op)?(?:\s+(\d+) allocs/op)?`)

// runCoreBench runs `go test -bench` of the core client_credentials path in
// repo and parses ns/op, B/op and allocs/op. It runs before any server
// starts, so it has the machine to itself (apart from other users).
func runCoreBench(ctx context.Context, repo string) *coreBench {
	cb := &coreBench{Benchmark: coreBenchName}
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "^"+coreBenchName+"$",
		"-benchmem", "-benchtime", "1s", "-count", "1", "./internal/oauth/")
	cmd.Dir = repo
	out, err := cmd.CombinedOutput()
	if err != nil {
		cb.Error = fmt.Sprintf("go test -bench: %v: %s", err, lastLines(string(out), 8))
		return cb
	}
	for _, line := range strings.Split(string(out), "\n") {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil || m[1] != coreBenchName {
			continue
		}
		cb.NsPerOp, _ = strconv.ParseFloat(m[2], 64)
		if m[3] != "" {
			b, _ := strconv.ParseFloat(m[3], 64)
			cb.BytesPerOp = int(b)
		}
		if m[4] == "" {
			cb.Error = "no allocs/op in the benchmark output"
			return cb
		}
		cb.AllocsPerOp, _ = strconv.Atoi(m[4])
		return cb
	}
	cb.Error = "no " + coreBenchName + " line in: " + lastLines(string(out), 8)
	return cb
}

// lastLines returns the last n lines of s on one line, separated by " | ".
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
