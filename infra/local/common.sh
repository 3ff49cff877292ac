# Shared settings for the local stack scripts: cache folders keyed by pinned versions, ports, logs.
# Sourced, not run.
set -euo pipefail

BILLY_LOCAL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BILLY_ROOT="$(cd "$BILLY_LOCAL_DIR/../.." && pwd)"
# shellcheck source=versions.env
. "$BILLY_LOCAL_DIR/versions.env"

BILLY_CACHE="${BILLY_CACHE:-$HOME/.cache/billy}"
BILLY_STATE="${BILLY_STATE:-$BILLY_CACHE/state}"
BILLY_LOGS="${BILLY_LOGS:-$BILLY_STATE/logs}"
mkdir -p "$BILLY_CACHE" "$BILLY_STATE" "$BILLY_LOGS"

LOCALSTACK_PORT="${LOCALSTACK_PORT:-4566}"
DYNAMODB_PORT="${DYNAMODB_PORT:-8000}"

# A cache key changes whenever a pinned version or the constraints file changes, so a version bump
# installs into a new folder and never reuses a half-upgraded one.
cache_key() { cat "$@" | sha256sum | cut -c1-12; }
LOCALSTACK_HOME="$BILLY_CACHE/localstack-$(cache_key <(grep -E '^(LOCALSTACK|SERVICE_IDENTITY)_VERSION=' "$BILLY_LOCAL_DIR/versions.env") "$BILLY_LOCAL_DIR/constraints-localstack.txt")"
DYNAMODB_HOME="$BILLY_CACHE/dynamodb-local-$DYNAMODB_LOCAL_NPM_VERSION"
DYNAMODB_LAUNCHER="$DYNAMODB_HOME/launcher-$(cache_key "$BILLY_LOCAL_DIR/java/LoopbackDynamoDbLocal.java")"
TOOLS_HOME="$BILLY_CACHE/tools-cargo-lambda-$CARGO_LAMBDA_VERSION-sam-$SAM_CLI_VERSION"
# Protocol peers for tests: localstripe (a fake Stripe API), and the official Stripe and Adyen
# libraries, whose signature schemes the tests use.
PEERS_HOME="$BILLY_CACHE/peers-localstripe-$LOCALSTRIPE_VERSION-stripe-$STRIPE_PY_VERSION-adyen-$ADYEN_PY_VERSION"
# schemathesis, the contract fuzzer `make test` runs over docs/openapi.yaml.
CONTRACT_HOME="$BILLY_CACHE/schemathesis-$SCHEMATHESIS_VERSION"
# playwright-core for the browser test (Chromium itself is Debian's package).
BROWSER_HOME="$BILLY_CACHE/browser-$PLAYWRIGHT_CORE_VERSION"
# cargo-mutants for `make mutants`, built once per version from crates.io.
MUTANTS_HOME="$BILLY_CACHE/cargo-mutants-$CARGO_MUTANTS_VERSION"

# `-p <function>` for every function of functions/, one word each (for cargo build / cargo lambda).
function_packages() {
  local f
  for f in "$BILLY_ROOT"/functions/*/; do printf -- '-p\n%s\n' "$(basename "$f")"; done
}

log() { printf '[billy-local] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Finds a Python >= 3.13: LocalStack 2026.x imports `warnings.deprecated`, new in 3.13 (3.12 starts
# but then finds no runtime components). The default python3 may be older; pyenv often has one.
find_python313() {
  local candidates=(python3.14 python3.13 python3)
  if command -v pyenv >/dev/null 2>&1; then
    local root v; root="$(pyenv root)"
    for v in "$root"/versions/3.1[3-9]*; do
      [ -x "$v/bin/python3" ] && candidates+=("$v/bin/python3")
    done
  fi
  local c
  for c in "${candidates[@]}"; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 13) else 1)' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  return 1
}

# Any Python >= 3.9 will do for the tools venv (cargo-lambda, aws-sam-cli).
find_python_tools() { find_python313 || command -v python3; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Makes this script stop, on exit, exactly the services a `stack.sh start --record "$STARTED_FILE"`
# of its own started (a reused healthy stack is left running). `on_exit_first`, if the script
# defines it, runs before that.
stop_on_exit_what_this_run_starts() {
  STARTED_FILE="$(mktemp)"
  trap '_stop_started_stack' EXIT
  trap 'exit 130' INT TERM
}

_stop_started_stack() {
  if declare -F on_exit_first >/dev/null; then on_exit_first; fi
  local svcs; svcs="$(cat "$STARTED_FILE" 2>/dev/null || true)"
  # shellcheck disable=SC2086
  [ -z "$svcs" ] || bash "$BILLY_LOCAL_DIR/stack.sh" stop $svcs
  rm -f "$STARTED_FILE"
}

# Serves Billy for a check of its own (`contract.sh`, `browser.sh`): the sandbox gateway and the
# runner (built binaries) on loopback ports, with tables under their own prefix, writing their logs
# to `$out`; waits for /v1/health. Sets `base` and `admin` (the admin token), and stops both
# processes by pid when the calling script exits. Usage: serve_billy_for_check <name> <port>
# <sandbox port> <out dir>.
serve_billy_for_check() {
  local name="$1" port="$2" sandbox_port="$3" out="$4"
  base="http://127.0.0.1:$port"
  admin="$name-admin-token-$(date +%s)-$$-0123456789abcdef"
  mkdir -p "$out"
  _check_pids=""
  trap _stop_check_processes EXIT
  trap 'exit 130' INT TERM
  SANDBOX_PORT="$sandbox_port" SANDBOX_URL="http://127.0.0.1:$sandbox_port" \
    SANDBOX_WEBHOOK_URL="$base/v1/webhooks/sandbox" SANDBOX_VAULT_FILE="$out/sandbox-vault.json" \
    "$BILLY_ROOT/target/debug/sandbox-gateway" > "$out/sandbox-gateway.log" 2>&1 &
  _check_pids="$!"
  BILLY_PORT="$port" BILLY_ADMIN_TOKEN="$admin" BILLY_PREFIX="billy-$name-$$" \
    SANDBOX_URL="http://127.0.0.1:$sandbox_port" RUST_LOG="${RUST_LOG:-warn}" \
    "$BILLY_ROOT/target/debug/billy-local" > "$out/runner.log" 2>&1 &
  local runner_pid=$!
  _check_pids="$runner_pid $_check_pids"
  for _ in $(seq 1 120); do
    curl -sf "$base/v1/health" >/dev/null 2>&1 && break
    kill -0 "$runner_pid" 2>/dev/null || { cat "$out/runner.log" >&2; die "the runner stopped"; }
    sleep 0.5
  done
  curl -sf "$base/v1/health" >/dev/null || die "Billy did not answer on $base"
}
_stop_check_processes() {
  local pid
  for pid in $_check_pids; do
    if kill -0 "$pid" 2>/dev/null; then kill -INT "$pid" 2>/dev/null || true; fi
  done
  for pid in $_check_pids; do wait "$pid" 2>/dev/null || true; done
}
