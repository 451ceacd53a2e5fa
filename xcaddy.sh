#!/usr/bin/env bash
# Build, run and test Caddy with the moserver module (github.com/caddy-moserver/caddy-moserver).
#
#   ./xcaddy.sh build   build ./caddy with xcaddy (skipped when the sources are unchanged)
#   ./xcaddy.sh run     build, then run ./caddy with Caddyfile.example
#   ./xcaddy.sh test    the whole suite (fresh machine / CI): deps, gofmt, vet, build, go test -race, fuzz
#
# Environment knobs:
#   FORCE_BUILD=1   rebuild even if ./caddy is up to date
#   FUZZTIME=20s    time per fuzz target in `test` (see FUZZ_TARGETS below)
set -euo pipefail

# Fuzz targets run at the end of `test`, each entry "<package>:<FuzzFunc>",
# each run for FUZZTIME (default 20s); any panic or 5xx fails the suite.
FUZZ_TARGETS=(
	"./internal/oauth:FuzzTokenEndpoint"
	"./internal/tokens:FuzzVerify"
	"./internal/tokens:FuzzParseRefresh"
)

readonly CADDY_VERSION="v2.11.9"
readonly XCADDY_VERSION="v0.4.5"
readonly MODULE="github.com/caddy-moserver/caddy-moserver"
# xcaddy runs `go get <module>@<version>` in its temporary build module. Without an explicit
# version, go asks the module proxy for the module's latest version, and a proxy that answers
# 403 instead of 404 for an unknown module makes the build fail. The zero pseudo-version plus
# the local replacement (=.) means go never asks the proxy about this module.
readonly MODULE_VERSION="v0.0.0-00010101000000-000000000000"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

# CI may run with a minimal PATH; the Go toolchain lives in /usr/local/go on our machines.
if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
	export PATH="/usr/local/go/bin:$PATH"
fi

log() { printf '==> %s\n' "$*"; }
die() {
	printf 'xcaddy.sh: %s\n' "$*" >&2
	exit 1
}

usage() {
	cat <<EOF
usage: $0 <command>

commands:
  build   build ./caddy ($CADDY_VERSION + $MODULE) with xcaddy $XCADDY_VERSION;
          skipped when ./caddy exists and .caddy.hash matches the sources (FORCE_BUILD=1 to force)
  run     build, then exec ./caddy run --config Caddyfile.example --adapter caddyfile
          (MOSERVER_DEMO_SECRET, the demo client's secret, defaults to demo-secret)
  test    install missing system packages, gofmt check, go vet, build,
          go test -race -count=1 ./... against the built binary, fuzz targets
  bench   build, then the end-to-end load benchmark of issue 5 (ceiling, client_credentials per
          algorithm, refresh/revocation on a private Redis, 1M stored families, the plugin's
          authorization codes exchanged against MariaDB; ~10 min);
          writes bench/results.{md,json,svg,png} (BENCH_DURATION=10s BENCH_CONCURRENCY=64 ...)
  soak    build, then the soak of issue 4 (SOAK_DURATION=2m of mixed grants at 80% of the measured
          capacity, private Redis); writes soak/results.md, exits 1 if a guarantee fails; not in test
EOF
}

# ---------------------------------------------------------------------------
# Source listing and content hash
# ---------------------------------------------------------------------------

in_git_repo() { git rev-parse --is-inside-work-tree >/dev/null 2>&1; }

# All tracked + untracked-not-ignored *.go files, NUL-separated, sorted, existing only
# (a tracked file deleted from the work tree is listed by git but skipped here).
list_go_files() {
	if in_git_repo; then
		git ls-files -z -co --exclude-standard -- '*.go'
	else
		find . -path ./.git -prune -o -type f -name '*.go' -print0 | sed -z 's|^\./||'
	fi | LC_ALL=C sort -zu | while IFS= read -r -d '' f; do
		if [[ -f "$f" ]]; then printf '%s\0' "$f"; fi
	done
}

# Files that can change the binary: non-test *.go files outside testdata/, plus go.mod and go.sum.
# (_test.go and testdata/ files are never compiled into ./caddy, so editing tests doesn't force a rebuild.)
list_build_inputs() {
	{
		list_go_files | while IFS= read -r -d '' f; do
			case "$f" in
			*_test.go | testdata/* | */testdata/*) ;;
			*) printf '%s\0' "$f" ;;
			esac
		done
		for f in go.mod go.sum; do
			if [[ -f "$f" ]]; then printf '%s\0' "$f"; fi
		done
	} | LC_ALL=C sort -zu
}

compute_hash() {
	{
		# The build recipe: a change here must invalidate the cache too.
		printf 'caddy=%s xcaddy=%s module=%s@%s race=%s buildflags=%s modflags=%s\n' \
			"$CADDY_VERSION" "$XCADDY_VERSION" "$MODULE" "$MODULE_VERSION" \
			"${XCADDY_RACE_DETECTOR:-}" "${XCADDY_GO_BUILD_FLAGS:-}" "${XCADDY_GO_MOD_FLAGS:-}"
		go env GOVERSION GOOS GOARCH GOARM GOAMD64 CGO_ENABLED GOFLAGS
		list_build_inputs | xargs -0 -r sha256sum --
	} | sha256sum | cut -d' ' -f1
}

# ---------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------

XCADDY=""
ensure_xcaddy() {
	if XCADDY="$(command -v xcaddy 2>/dev/null)"; then
		:
	else
		local gobin
		gobin="$(go env GOBIN)"
		if [[ -z "$gobin" ]]; then
			gobin="$(go env GOPATH)"
			gobin="${gobin%%:*}/bin"
		fi
		XCADDY="$gobin/xcaddy"
		if [[ ! -x "$XCADDY" ]]; then
			log "xcaddy not found; installing github.com/caddyserver/xcaddy/cmd/xcaddy@$XCADDY_VERSION"
			go install "github.com/caddyserver/xcaddy/cmd/xcaddy@$XCADDY_VERSION"
		fi
	fi
	log "using xcaddy: $XCADDY ($("$XCADDY" version 2>/dev/null | head -n1 || echo 'version unknown'))"
}

BUILD_TMP=""
IN_TEST=0
CURRENT_STEP=""

on_exit() {
	local rc=$?
	if [[ -n "$BUILD_TMP" ]]; then
		rm -f "$BUILD_TMP"
	fi
	if ((IN_TEST)); then
		if ((rc == 0)); then
			printf 'xcaddy.sh test: OK (all steps passed in %ss)\n' "$SECONDS"
		else
			printf 'xcaddy.sh test: FAILED at step "%s" (exit %s)\n' "$CURRENT_STEP" "$rc"
		fi
	fi
}
trap on_exit EXIT

cmd_build() {
	local start=$SECONDS
	# Serialise concurrent builds (e.g. several test packages calling `xcaddy.sh build` at once).
	exec 9>"$ROOT/.caddy.lock"
	if ! flock -n 9; then
		log "another build is running; waiting for its lock"
		flock 9
	fi

	local hash
	hash="$(compute_hash)"
	if [[ "${FORCE_BUILD:-}" != 1 && -x ./caddy && -f .caddy.hash && "$(cat .caddy.hash)" == "$hash" ]]; then
		log "./caddy is up to date (sources hash ${hash:0:12}); skipping build"
		exec 9>&-
		return 0
	fi

	ensure_xcaddy
	log "building ./caddy: $XCADDY build $CADDY_VERSION --with $MODULE@$MODULE_VERSION=. (sources hash ${hash:0:12})"
	rm -f .caddy.hash
	# Build to a temp file and rename, so a running ./caddy is never overwritten in place
	# and a failed build never leaves a half-written binary behind.
	BUILD_TMP="$ROOT/.caddy.tmp.$$"
	"$XCADDY" build "$CADDY_VERSION" --with "$MODULE@$MODULE_VERSION=." --output "$BUILD_TMP"
	mv -f "$BUILD_TMP" ./caddy
	BUILD_TMP=""
	printf '%s\n' "$hash" >.caddy.hash
	exec 9>&-

	if ! ./caddy list-modules 2>/dev/null | grep -q 'moserver'; then
		log "warning: no module named *moserver* is registered in ./caddy (is plugin.go in place?)"
	fi
	log "built ./caddy ($(./caddy version | head -n1)) in $((SECONDS - start))s"
}

# ---------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------

cmd_run() {
	cmd_build
	[[ -f Caddyfile.example ]] || die "Caddyfile.example not found in $ROOT"
	# The example reads its demo client's secret at load time ({env.MOSERVER_DEMO_SECRET}),
	# so that it stays out of Caddy's autosaved config; the demo default is set here.
	if [[ -z "${MOSERVER_DEMO_SECRET:-}" ]]; then
		export MOSERVER_DEMO_SECRET=demo-secret
		log "MOSERVER_DEMO_SECRET is unset: the demo client's secret is demo-secret"
	fi
	log "exec ./caddy run --config Caddyfile.example --adapter caddyfile"
	exec ./caddy run --config Caddyfile.example --adapter caddyfile
}

# ---------------------------------------------------------------------------
# test
# ---------------------------------------------------------------------------

step() {
	CURRENT_STEP="$1"
	log "$1"
}

ensure_system_packages() {
	local missing=() web=() had_apache=0
	command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
	command -v mariadbd >/dev/null 2>&1 || [[ -x /usr/sbin/mariadbd ]] || missing+=(mariadb-server)
	# TestWordPressE2E (integration/): Debian's WordPress, served by a php-fpm the test starts itself.
	[[ -f /usr/share/wordpress/wp-load.php ]] || web+=(wordpress)
	compgen -G '/usr/sbin/php-fpm*' >/dev/null || web+=(php-fpm)
	compgen -G '/usr/lib/php/*/mysqli.so' >/dev/null || web+=(php-mysql)
	command -v php >/dev/null 2>&1 || web+=(php-cli)
	if ((${#missing[@]} + ${#web[@]} == 0)); then
		log "system packages present: redis-server mariadb-server wordpress php-fpm php-mysql"
	else
		if [[ "$(id -u)" -ne 0 ]]; then
			die "missing system packages: ${missing[*]} ${web[*]}; install them with: sudo apt-get install -y ${missing[*]} ${web[*]}"
		fi
		export DEBIAN_FRONTEND=noninteractive
		apt-get update
		if ((${#missing[@]} > 0)); then
			log "installing missing system packages: ${missing[*]}"
			apt-get install -y "${missing[@]}"
			command -v redis-server >/dev/null 2>&1 || die "redis-server is still not on PATH ($PATH) after apt-get install"
		fi
		if ((${#web[@]} > 0)); then
			# wordpress depends on apache2 | httpd: apache2 comes along but must not run (port 80).
			# No service starts during the install (policy-rc.d 101, unless the machine has its
			# own policy), and an apache2 installed here is disabled and verified stopped.
			[[ -x /usr/sbin/apache2 ]] && had_apache=1
			log "installing missing system packages: ${web[*]} (--no-install-recommends, no service started)"
			if [[ -e /usr/sbin/policy-rc.d ]]; then
				apt-get install -y --no-install-recommends "${web[@]}"
			else
				(
					trap 'rm -f /usr/sbin/policy-rc.d' EXIT
					printf '#!/bin/sh\n# xcaddy.sh: no service starts while test packages install\nexit 101\n' >/usr/sbin/policy-rc.d
					chmod 755 /usr/sbin/policy-rc.d
					apt-get install -y --no-install-recommends "${web[@]}"
				)
			fi
			if ((!had_apache)) && [[ -x /usr/sbin/apache2 ]]; then
				if command -v systemctl >/dev/null 2>&1; then
					systemctl disable --now apache2 apache-htcacheclean >/dev/null 2>&1 || true
				fi
				update-rc.d apache2 disable >/dev/null 2>&1 || true
				if pgrep -x apache2 >/dev/null 2>&1; then
					apache2ctl stop >/dev/null 2>&1 || true
					sleep 1
					! pgrep -x apache2 >/dev/null 2>&1 || die "apache2 (installed with wordpress) is running and would not stop"
				fi
			fi
			[[ -f /usr/share/wordpress/wp-load.php ]] && compgen -G '/usr/sbin/php-fpm*' >/dev/null && command -v php >/dev/null 2>&1 ||
				die "wordpress / php-fpm / php still missing after apt-get install ${web[*]}"
		fi
	fi
	# The integration tests need MariaDB up on 127.0.0.1:3306 (mariadbtest starts nothing).
	ensure_mariadb
}

# ensure_mariadb starts the machine's MariaDB when nothing answers on 127.0.0.1:3306, MYSQL_DSN
# is unset and we are root (the integration tests and the bench's authorization_code rows use it).
ensure_mariadb() {
	if ! (: <>/dev/tcp/127.0.0.1/3306) 2>/dev/null && [[ -z "${MYSQL_DSN:-}" && "$(id -u)" -eq 0 && -x /usr/sbin/mariadbd ]]; then
		log "starting MariaDB"
		install -d -o mysql -g mysql /run/mysqld
		start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
		local i
		for ((i = 0; i < 60; i++)); do
			(: <>/dev/tcp/127.0.0.1/3306) 2>/dev/null && break
			sleep 0.5
		done
		(: <>/dev/tcp/127.0.0.1/3306) 2>/dev/null || die "MariaDB did not come up on 127.0.0.1:3306 within 30s"
	fi
}

check_gofmt() {
	local unformatted
	if in_git_repo; then
		unformatted="$(list_go_files | xargs -0 -r gofmt -l --)"
	else
		unformatted="$(gofmt -l .)"
	fi
	if [[ -n "$unformatted" ]]; then
		printf 'gofmt: these files need formatting (run gofmt -w):\n%s\n' "$unformatted" >&2
		return 1
	fi
	log "gofmt: all files formatted"
}

run_fuzz() {
	local entry pkg name
	if ((${#FUZZ_TARGETS[@]} == 0)); then
		log "no fuzz targets configured"
		return 0
	fi
	for entry in "${FUZZ_TARGETS[@]}"; do
		pkg="${entry%%:*}"
		name="${entry#*:}"
		[[ "$pkg" != "$entry" && -n "$name" ]] || die "bad FUZZ_TARGETS entry '$entry' (want <package>:<FuzzFunc>)"
		log "fuzz $name in $pkg for ${FUZZTIME:-20s}"
		go test -run '^$' -fuzz "^${name}\$" -fuzztime "${FUZZTIME:-20s}" "$pkg"
	done
}

cmd_test() {
	IN_TEST=1
	step "system packages"
	ensure_system_packages
	step "go version"
	go version
	step "gofmt"
	check_gofmt
	step "go vet ./..."
	go vet ./...
	step "build"
	cmd_build
	export MOSERVER_CADDY_BIN="$ROOT/caddy"
	step "go test -race -count=1 ./... (MOSERVER_CADDY_BIN=$MOSERVER_CADDY_BIN)"
	go test -race -count=1 ./...
	step "fuzz"
	run_fuzz
	CURRENT_STEP="done"
}

# ---------------------------------------------------------------------------
# bench
# ---------------------------------------------------------------------------

# The end-to-end load benchmark of issue 5 (bench/cmd/moserver-bench; its package comment has
# the details): builds ./caddy, starts a private redis-server and ./caddy on loopback ports,
# measures every row with a Go load generator and writes bench/results.{md,json,svg,png}.
# The authorization_code rows use a database of their own on MariaDB (MYSQL_DSN, or root on
# 127.0.0.1:3306, started here if installed); without it they are reported as failed.
# Knobs: BENCH_DURATION (10s per row), BENCH_WARMUP (2s), BENCH_CONCURRENCY (64),
# BENCH_FAMILIES (1000000), BENCH_CODES (300000 codes in the pre-filled authorization_code
# row's table; 0 skips it), BENCH_TOKENS (pre-issued refresh tokens; estimated),
# BENCH_CORE=0 (skip the go test -bench allocs check), BENCH_KEEP=1 (keep the temp dir),
# BENCH_PROFILE=<dir> (CPU profiles of Caddy and of the generator per row).
cmd_bench() {
	log "uptime before the build: $(uptime 2>/dev/null || cat /proc/loadavg)"
	if ! command -v redis-server >/dev/null 2>&1; then
		[[ "$(id -u)" -eq 0 ]] || die "redis-server not found; install it with: sudo apt-get install -y redis-server"
		log "installing redis-server"
		DEBIAN_FRONTEND=noninteractive apt-get update
		DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server
	fi
	ensure_mariadb
	cmd_build
	local bin_dir rc=0
	bin_dir="$(mktemp -d)"
	log "building the load generator (bench/cmd/moserver-bench)"
	if ! go build -o "$bin_dir/moserver-bench" ./bench/cmd/moserver-bench; then
		rm -rf "$bin_dir"
		die "building bench/cmd/moserver-bench failed"
	fi
	# It stops every process it starts, also on Ctrl-C (exit 130) and on failure.
	"$bin_dir/moserver-bench" -caddy "$ROOT/caddy" -out "$ROOT/bench" -repo "$ROOT" "$@" || rc=$?
	rm -rf "$bin_dir"
	return "$rc"
}

# ---------------------------------------------------------------------------
# soak
# ---------------------------------------------------------------------------

# The soak of issue 4 item 7 (soak/cmd/moserver-soak; its package comment has the details):
# builds ./caddy, then the soak starts a private redis-server and ./caddy on loopback ports,
# measures capacity, runs SOAK_DURATION of mixed grants at SOAK_LOAD of it, checks 5xx, lost or
# duplicated rotations, replays, revocations and Caddy's memory, prints a table and writes
# soak/results.md. Knobs: SOAK_DURATION (2m), SOAK_LOAD (0.8), SOAK_CAPACITY_DURATION (3s),
# SOAK_CONCURRENCY (64), SOAK_WORKERS (64), SOAK_SAMPLE (5s), SOAK_RATE (ops/s, skips the
# capacity phases), SOAK_KEEP=1 (keep the temp dir).
cmd_soak() {
	command -v redis-server >/dev/null 2>&1 || die "redis-server not found; install it with: sudo apt-get install -y redis-server"
	cmd_build
	local bin_dir rc=0
	bin_dir="$(mktemp -d)"
	log "building the soak (soak/cmd/moserver-soak)"
	if ! go build -o "$bin_dir/moserver-soak" ./soak/cmd/moserver-soak; then
		rm -rf "$bin_dir"
		die "building soak/cmd/moserver-soak failed"
	fi
	# It stops every process it starts, also on Ctrl-C (exit 130) and on failure.
	"$bin_dir/moserver-soak" -caddy "$ROOT/caddy" -out "$ROOT/soak" "$@" || rc=$?
	rm -rf "$bin_dir"
	return "$rc"
}

# ---------------------------------------------------------------------------

case "${1:-}" in
build) cmd_build ;;
run) cmd_run ;;
test) cmd_test ;;
bench)
	shift
	cmd_bench "$@"
	;;
soak)
	shift
	cmd_soak "$@"
	;;
-h | --help | help)
	usage
	;;
*)
	usage >&2
	exit 2
	;;
esac
