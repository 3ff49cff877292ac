#!/usr/bin/env bash
# `make bench`: starts the local stack (or reuses one), runs billy-bench (billing run, requests and
# cost per invoice, DynamoDB ceiling, API latency), then measures every function's Lambda package,
# and prints the figures. BENCH_N (default 10000) and the other BENCH_* variables tune the run;
# BENCH_SKIP_PACKAGES=1 skips the (slow) arm64 release builds; BENCH_COLDSTART_RUNS=0 skips the
# cold-start part (and its host release build of every function).
. "$(dirname "$0")/common.sh"
. "$BILLY_LOCAL_DIR/env.sh"
cd "$BILLY_ROOT"


stop_on_exit_what_this_run_starts
bash "$BILLY_LOCAL_DIR/install.sh" all
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
RUST_LOG="${RUST_LOG:-error}" target/release/billy-bench > target/bench/last.json
log "billing run and API figures (target/bench/last.json):"
cat target/bench/last.json

if [ "${BENCH_SKIP_PACKAGES:-0}" != "1" ]; then
  log "building every function for Lambda (release, arm64, zip)"
  mapfile -t packages < <(function_packages)
  PATH="$TOOLS_HOME/venv/bin:$PATH" cargo lambda build --release --arm64 --output-format zip "${packages[@]}" > target/bench/lambda-build.log 2>&1 \
    || { tail -20 target/bench/lambda-build.log >&2; die "cargo lambda build failed"; }
  printf '%-22s %12s %12s\n' function bootstrap zip | tee target/bench/packages.txt
  for f in functions/*/; do
    name="$(basename "$f")"; zip="target/lambda/$name/bootstrap.zip"
    unzipped="$(unzip -l "$zip" | awk '/bootstrap$/ {print $1}')"
    printf '%-22s %12s %12s\n' "$name" "$unzipped" "$(stat -c %s "$zip")" | tee -a target/bench/packages.txt
  done
fi
