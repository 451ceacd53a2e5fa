#!/usr/bin/env bash
# Build, run and test Caddy with the moserver module (github.com/caddy-moserver/caddy-moserver).
#
#   ./xcaddy.sh build   build ./caddy with xcaddy, as a user of the module does
#   ./xcaddy.sh run     build ./caddy from ./cmd/caddy and run it with Caddyfile.example
#   ./xcaddy.sh test    the whole suite (fresh machine / CI): setup, gofmt, vet, go test -race, fuzz
#   ./xcaddy.sh bench   the end-to-end load benchmark (bench/README.md)
#   ./xcaddy.sh soak    the soak (soak/cmd/moserver-soak)
#
# Tests, run, bench and soak build ./cmd/caddy (Caddy's standard modules and this one) with
# go build, so Go's build cache decides what to rebuild.
set -euo pipefail

# Fuzz targets run at the end of `test`, each "<package>:<FuzzFunc>", for FUZZTIME (default
# 20s); a panic or a 5xx fails the suite.
FUZZ_TARGETS=(
	"./internal/oauth:FuzzTokenEndpoint"
	"./internal/tokens:FuzzVerify"
	"./internal/tokens:FuzzParseRefresh"
)

readonly CADDY_VERSION="v2.11.9"
readonly XCADDY_VERSION="v0.4.5"
readonly MODULE="github.com/caddy-moserver/caddy-moserver"
# xcaddy runs `go get <module>@<version>`; without a version go asks the module proxy for the
# module's latest, which a proxy that answers 403 for an unknown module turns into a failed
# build. The zero pseudo-version plus the local replacement (=.) never asks the proxy.
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

# go_build_caddy <output>: Caddy with this module, from ./cmd/caddy.
go_build_caddy() {
	log "go build -o $1 ./cmd/caddy"
	go build -o "$1" ./cmd/caddy
}

cmd_build() {
	local xcaddy
	xcaddy="$(command -v xcaddy 2>/dev/null)" || {
		xcaddy="$(go env GOPATH | cut -d: -f1)/bin/xcaddy"
		[[ -x "$xcaddy" ]] || go install "github.com/caddyserver/xcaddy/cmd/xcaddy@$XCADDY_VERSION"
	}
	log "$xcaddy build $CADDY_VERSION --with $MODULE=."
	"$xcaddy" build "$CADDY_VERSION" --with "$MODULE@$MODULE_VERSION=." --output ./caddy
}

cmd_run() {
	go_build_caddy ./caddy
	# The example reads its demo client's secret at load time ({env.MOSERVER_DEMO_SECRET}), so
	# that it stays out of Caddy's autosaved config; the demo default is set here.
	if [[ -z "${MOSERVER_DEMO_SECRET:-}" ]]; then
		export MOSERVER_DEMO_SECRET=demo-secret
		log "MOSERVER_DEMO_SECRET is unset: the demo client's secret is demo-secret"
	fi
	exec ./caddy run --config Caddyfile.example --adapter caddyfile
}

CURRENT_STEP=""
BIN_DIR=""
step() {
	CURRENT_STEP="$1"
	log "$1"
}

cmd_test() {
	trap 'rc=$?; [[ -z "$BIN_DIR" ]] || rm -rf "$BIN_DIR"; if ((rc == 0)); then echo "xcaddy.sh test: OK (all steps passed in ${SECONDS}s)"; else echo "xcaddy.sh test: FAILED at step \"$CURRENT_STEP\" (exit $rc)"; fi' EXIT
	step "machine setup (.ci/setup.sh)"
	bash .ci/setup.sh
	step "go version"
	go version
	step "gofmt"
	local unformatted
	unformatted="$(gofmt -l $(git ls-files -co --exclude-standard -- '*.go' 2>/dev/null || echo .))"
	[[ -z "$unformatted" ]] || die "gofmt: these files need formatting (gofmt -w):"$'\n'"$unformatted"
	step "go vet ./... (and the bench and soak modules)"
	go vet ./...
	(cd bench && go vet ./...)
	(cd soak && go vet ./...)
	step "build"
	BIN_DIR="$(mktemp -d)"
	go_build_caddy "$BIN_DIR/caddy"
	export MOSERVER_CADDY_BIN="$BIN_DIR/caddy"
	step "go test -race -count=1 ./... (and the bench and soak modules)"
	go test -race -count=1 ./...
	(cd bench && go test -race -count=1 ./...)
	(cd soak && go test -race -count=1 ./...)
	step "fuzz"
	local entry
	for entry in "${FUZZ_TARGETS[@]}"; do
		log "fuzz ${entry#*:} in ${entry%%:*} for ${FUZZTIME:-20s}"
		go test -run '^$' -fuzz "^${entry#*:}\$" -fuzztime "${FUZZTIME:-20s}" "${entry%%:*}"
	done
	CURRENT_STEP="done"
}

# run_tool <module dir> <name> <package> <args...>: builds Caddy and the tool (in its own
# module, so that its libraries stay out of the plugin's go.mod), runs the tool with them. The
# tools start their own redis-server and Caddy, and stop them, also on Ctrl-C and on failure.
run_tool() {
	local dir="$1" name="$2" pkg="$3" bin_dir rc=0
	shift 3
	bash .ci/setup.sh # redis-server, and MariaDB up for the authorization_code rows
	bin_dir="$(mktemp -d)"
	go_build_caddy "$bin_dir/caddy"
	(cd "$dir" && go build -o "$bin_dir/$name" "$pkg") || die "building $dir/$pkg failed"
	"$bin_dir/$name" -caddy "$bin_dir/caddy" "$@" || rc=$?
	rm -rf "$bin_dir"
	return "$rc"
}

case "${1:-}" in
build) cmd_build ;;
run) cmd_run ;;
test) cmd_test ;;
bench)
	shift
	log "uptime: $(cat /proc/loadavg)"
	run_tool bench moserver-bench ./cmd/moserver-bench -out "$ROOT/bench" -repo "$ROOT" "$@"
	;;
soak)
	shift
	run_tool soak moserver-soak ./cmd/moserver-soak -out "$ROOT/soak" "$@"
	;;
*)
	sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
	[[ -z "${1:-}" ]] || exit 2
	;;
esac
