#!/usr/bin/env bash
# `make test`: installs what is missing, checks format and lints, starts the local stack (or reuses a
# healthy one), runs every test (unit, integration, end-to-end), validates template.yaml, and stops
# what it started.
. "$(dirname "$0")/common.sh"
. "$BILLY_LOCAL_DIR/env.sh"
command -v cargo >/dev/null 2>&1 || die "cargo (Rust) is needed"
cd "$BILLY_ROOT"
stop_on_exit_what_this_run_starts

step() { log "== $* ($(date -u +%H:%M:%S))"; }

step "installing the local stack and tools (cached under $BILLY_CACHE)"
bash "$BILLY_LOCAL_DIR/install.sh" all
step "the dashboard's web bundle (npm; embedded in the dashboard function at compile time)"
bash "$BILLY_LOCAL_DIR/dashboard-assets.sh"
# The stack starts in the background while the code compiles and is linted (a running one a
# benchmark left loaded is refused first, not after the builds).
bash "$BILLY_LOCAL_DIR/stack.sh" preflight
bash "$BILLY_LOCAL_DIR/stack.sh" start --record "$STARTED_FILE" > "$BILLY_LOGS/stack-start.log" 2>&1 &
stack_pid=$!

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets -q -- -D warnings
step "building tests"
cargo test --workspace --no-run -q
step "building every function's binary (debug; the runtime test serves them under the Lambda Runtime API), the runner and the sandbox"
mapfile -t packages < <(function_packages)
cargo build -q "${packages[@]}" -p billy-local -p sandbox-gateway

wait "$stack_pid" || { cat "$BILLY_LOGS/stack-start.log" >&2; die "the local stack did not start"; }
cat "$BILLY_LOGS/stack-start.log" >&2
step "the Adyen fake against Adyen's own library"
"$PEERS_HOME/venv/bin/python" "$BILLY_ROOT/infra/peers/check_adyen_fake.py"
step "cargo test (unit, integration and end-to-end against the local stack)"
# Every function the test stacks host records the AWS actions it calls, and the routes served,
# into one file; the least-privilege check below reads it.
export BILLY_ACCESS_LOG="$BILLY_ROOT/target/access/used.tsv"
rm -f "$BILLY_ACCESS_LOG"
cargo test --workspace
step "least privilege: each function's policy in template.yaml against what it was seen to do"
cargo run -q -p billy-local -- check-access "$BILLY_ACCESS_LOG"

step "contract fuzzing: every operation of docs/openapi.yaml against a live local Billy"
bash "$BILLY_LOCAL_DIR/contract.sh"

step "browser test: the dashboard and a portal link in Debian's Chromium (screenshots in target/browser)"
bash "$BILLY_LOCAL_DIR/browser.sh"

step "sam validate --lint"
"$TOOLS_HOME/venv/bin/sam" validate --lint --template "$BILLY_ROOT/template.yaml"
step "all checks passed"
