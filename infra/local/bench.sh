#!/usr/bin/env bash
# `make bench`: starts the local stack (or reuses one), runs billy-bench (billing run, requests and
# cost per invoice, DynamoDB ceiling, API latency), then measures every function's Lambda package,
# and prints the figures. BENCH_N (default 10000) and the other BENCH_* variables tune the run;
# BENCH_SKIP_PACKAGES=1 skips `sam build` (the slow arm64 release builds, make package); BENCH_COLDSTART_RUNS=0 skips the
# cold-start part (and its host release build of every function).
. "$(dirname "$0")/common.sh"
. "$BILLY_LOCAL_DIR/env.sh"
cd "$BILLY_ROOT"


stop_on_exit_what_this_run_starts
bash "$BILLY_LOCAL_DIR/install.sh" all
bash "$BILLY_LOCAL_DIR/dashboard-assets.sh"
bash "$BILLY_LOCAL_DIR/stack.sh" start --record "$STARTED_FILE"
log "building billy-bench (release)"
cargo build --release -q -p billy-bench
if [ "${BENCH_COLDSTART_RUNS:-5}" != "0" ]; then
  # The cold-start part runs every function's own release binary (host target) and a hello-world.
  log "building every function and the hello-world yardstick (release, host target)"
  mapfile -t packages < <(function_packages)
  cargo build --release -q -p hello-lambda "${packages[@]}"
fi
mkdir -p target/bench
# The overview's render time in Debian's Chromium, driven by playwright-core (install.sh browser).
export BENCH_RENDER_SCRIPT="${BENCH_RENDER_SCRIPT-$BILLY_ROOT/tests/browser/render.mjs}"
export CHROMIUM=/usr/bin/chromium PLAYWRIGHT_CORE_HOME="$BROWSER_HOME"
# A DynamoDB Local this run reuses (and so leaves running) will hold the run's data and stream
# history in memory, whatever part of the bench fails or is cut short; stack.sh will not reuse it
# for tests or another bench until it is restarted.
if ! grep -qx dynamodb "$STARTED_FILE"; then
  echo "make bench, started $(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$BILLY_STATE/dynamodb-$DYNAMODB_PORT.benched"
  log "this run loads the reused DynamoDB Local: 'make stack-stop' and start again before 'make test'"
fi
RUST_LOG="${RUST_LOG:-error}" target/release/billy-bench > target/bench/last.json
log "billing run and API figures (target/bench/last.json):"
cat target/bench/last.json

if [ "${BENCH_SKIP_PACKAGES:-0}" != "1" ]; then
  # The packages `sam deploy` would upload, built by `sam build` (make package).
  bash "$BILLY_LOCAL_DIR/package.sh"
  cp target/package/packages.txt target/bench/packages.txt
fi
