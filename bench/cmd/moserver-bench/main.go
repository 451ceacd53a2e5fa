// Command moserver-bench is the end-to-end load benchmark. In one
// invocation, on one machine and over loopback only, it
//
//   - starts a private redis-server (no persistence) and the built Caddy
//     (./caddy) with a generated Caddyfile: a ceiling site answering a static
//     token-sized JSON body with `respond`, one moserver site per signing
//     algorithm (ES256, EdDSA, HS256, RS256, keys made with the module's own
//     tokens.GenerateKey), each with `storage redis`, and a WordPress site
//     (`wordpress "<dsn>"`) on a database it creates on the machine's
//     MariaDB (MYSQL_DSN, or root@tcp(127.0.0.1:3306)/ as the tests) with
//     the plugin's tables (package wpfixture, as the tests create them),
//     one client, one user and the client's RSA-2048 key, dropped at the
//     end;
//   - drives every row with its own Go load generator: a fixed number of
//     keep-alive HTTP/1.1 workers (closed loop), a warm-up, then a measured
//     window, recording every latency;
//   - runs the rows: the ceiling; client_credentials with each algorithm;
//     client_credentials issuing refresh tokens (which pre-issues the tokens
//     of the next rows); refresh with rotation (each token used once);
//     revocation (each token revoked once); client_credentials on a site
//     whose Redis (a redis-server of its own) holds 1,000,000 live refresh
//     families, measured in alternation with its twin, the same site on an
//     empty redis-server; the exchange of the plugin's authorization codes
//     without openid and with it (an RS256 id_token per request, against
//     the RSA-signing bound measured with the client's key), each request
//     redeeming a fresh code of the worker's own, inserted right before
//     each slice (twice what the slice needs at the last slice's rate: the
//     table holds a few seconds of codes, as a live site's), and without
//     openid from a table pre-filled with BENCH_CODES codes (one client at
//     a time first, then the usual workers); and the ceiling again at the
//     end;
//   - measures the RSA-signing bound (cores ÷ the CPU time of one RSA-2048
//     PKCS#1 v1.5 SHA-256 signature, with the RS256 site's key) and, with
//     `go test -bench`, the allocations of the core client_credentials path;
//   - measures every row in 10 slices alternating with 10 slices of the
//     ceiling, and takes its ratio to that ceiling (the speed of shared
//     cores swings within seconds; a row and its ceiling measured in
//     alternation see the same swings);
//   - records the CPU time per request of Caddy, Redis and the generator, and
//     how much of the machine other processes used, in every window;
//   - prints the table with each row's ratio to the ceiling of the same run
//     and its targets, and writes results.md, results.json,
//     results.svg and results.png;
//   - stops everything it started, also on Ctrl-C or failure.
//
// Run it through `./xcaddy.sh bench`, which builds ./caddy first. Knobs (all
// optional, environment): BENCH_DURATION (measured time per row, default
// 10s), BENCH_WARMUP (2s), BENCH_CONCURRENCY (64), BENCH_FAMILIES
// (1000000), BENCH_CODES (codes in the table of the pre-filled
// authorization_code row, 300000; 0 skips the row), BENCH_TOKENS (refresh
// tokens to pre-issue; default estimated from the measured rates),
// BENCH_CORE=0 (skip the go test benchmark), BENCH_ONLY=codes (only the
// ceilings and the authorization_code rows, for working on the exchange),
// BENCH_KEEP=1 (keep the temporary directory with the Caddyfile, keys and
// logs), BENCH_PROFILE=<dir> (CPU profiles of Caddy and of the generator
// for `go tool pprof`: over the window of a ceiling row, <dir>/<row>.pprof;
// over each slice of a row measured in alternation, and only those,
// <dir>/<row>/slice-<i>.pprof).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/caddy-moserver/caddy-moserver/internal/loadtest"
)

// config is what one run does.
type config struct {
	caddyBin    string
	outDir      string
	repo        string
	warmup      time.Duration
	duration    time.Duration
	concurrency int
	families    int
	codes       int  // BENCH_CODES: codes in the table of the pre-filled authorization_code row; 0 skips it
	codesOnly   bool // BENCH_ONLY=codes: only the ceilings and the authorization_code rows
	tokens      int  // 0: estimate
	coreBench   bool
	keep        bool
	profileDir  string // BENCH_PROFILE: where CPU profiles of Caddy go; "" for none
	render      string // -render: a results.json to render again instead of running
}

// loadConfig reads the flags and the BENCH_* environment variables.
func loadConfig(args []string) (config, error) {
	cfg := config{
		warmup:      2 * time.Second,
		duration:    10 * time.Second,
		concurrency: 64,
		families:    1_000_000,
		codes:       300_000,
		coreBench:   true,
	}
	fs := flag.NewFlagSet("moserver-bench", flag.ContinueOnError)
	fs.StringVar(&cfg.caddyBin, "caddy", "./caddy", "the Caddy binary built with the moserver module")
	fs.StringVar(&cfg.outDir, "out", "bench", "directory for results.{md,json,svg,png}")
	fs.StringVar(&cfg.repo, "repo", ".", "repository root (for the go test benchmark)")
	fs.StringVar(&cfg.render, "render", "", "re-render the results of an earlier run (its results.json) into -out, measuring nothing")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	var err error
	if cfg.duration, err = loadtest.EnvDuration("BENCH_DURATION", cfg.duration); err != nil {
		return cfg, err
	}
	if cfg.warmup, err = loadtest.EnvDuration("BENCH_WARMUP", cfg.warmup); err != nil {
		return cfg, err
	}
	if cfg.concurrency, err = loadtest.EnvInt("BENCH_CONCURRENCY", cfg.concurrency); err != nil {
		return cfg, err
	}
	if cfg.families, err = loadtest.EnvInt("BENCH_FAMILIES", cfg.families); err != nil {
		return cfg, err
	}
	if cfg.codes, err = loadtest.EnvInt("BENCH_CODES", cfg.codes); err != nil {
		return cfg, err
	}
	if cfg.tokens, err = loadtest.EnvInt("BENCH_TOKENS", 0); err != nil {
		return cfg, err
	}
	cfg.coreBench = os.Getenv("BENCH_CORE") != "0"
	switch only := os.Getenv("BENCH_ONLY"); only {
	case "":
	case "codes":
		cfg.codesOnly = true
	default:
		return cfg, fmt.Errorf("BENCH_ONLY: %q is not a row group (codes)", only)
	}
	cfg.keep = os.Getenv("BENCH_KEEP") == "1"
	if dir := os.Getenv("BENCH_PROFILE"); dir != "" {
		if dir, err = filepath.Abs(dir); err != nil {
			return cfg, fmt.Errorf("BENCH_PROFILE: %w", err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return cfg, fmt.Errorf("BENCH_PROFILE: %w", err)
		}
		cfg.profileDir = dir
	}
	switch {
	case cfg.duration <= 0 || cfg.warmup < 0:
		return cfg, errors.New("BENCH_DURATION must be > 0 and BENCH_WARMUP ≥ 0")
	case cfg.concurrency < 1 || cfg.concurrency > 4096:
		return cfg, errors.New("BENCH_CONCURRENCY must be in 1..4096")
	case cfg.families < 0:
		return cfg, errors.New("BENCH_FAMILIES must be ≥ 0")
	case cfg.codes < 0:
		return cfg, errors.New("BENCH_CODES must be ≥ 0")
	}
	for _, p := range []*string{&cfg.caddyBin, &cfg.outDir, &cfg.repo} {
		if *p, err = filepath.Abs(*p); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

func main() {
	cfg, err := loadConfig(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "moserver-bench:", err)
		os.Exit(2)
	}
	if cfg.render != "" {
		if err := render(cfg.render, cfg.outDir); err != nil {
			fmt.Fprintln(os.Stderr, "moserver-bench:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, cfg)
	interrupted := ctx.Err() != nil
	stop()
	switch {
	case interrupted:
		fmt.Fprintln(os.Stderr, "moserver-bench: interrupted; every process it started is stopped")
		os.Exit(130)
	case err != nil:
		fmt.Fprintln(os.Stderr, "moserver-bench:", err)
		os.Exit(1)
	}
}
