#!/usr/bin/env bash
# `make run`: installs what is missing, starts the local stack, builds and runs the local runner in
# the foreground. Ctrl-C stops the runner, then whatever this script started.
. "$(dirname "$0")/common.sh"
. "$BILLY_LOCAL_DIR/env.sh"
command -v cargo >/dev/null 2>&1 || die "cargo (Rust) is needed"

sandbox_pid=""
# Before the stack goes: the sandbox gateway this script started.
on_exit_first() {
  if [ -n "$sandbox_pid" ] && kill -0 "$sandbox_pid" 2>/dev/null; then
    kill -TERM "$sandbox_pid" 2>/dev/null || true
    wait "$sandbox_pid" 2>/dev/null || true
    log "stopped the sandbox gateway (pid $sandbox_pid)"
  fi
}
stop_on_exit_what_this_run_starts

t0=$SECONDS
bash "$BILLY_LOCAL_DIR/stack.sh" start --record "$STARTED_FILE"
log "stack ready after $((SECONDS - t0)) s; building the runner and the sandbox gateway"
bash "$BILLY_LOCAL_DIR/dashboard-assets.sh"
(cd "$BILLY_ROOT" && cargo build -q -p billy-local -p sandbox-gateway)
# The sandbox gateway: a separate loopback process that posts signed webhooks to the runner.
export SANDBOX_PORT="${SANDBOX_PORT:-4610}"
export SANDBOX_URL="http://127.0.0.1:$SANDBOX_PORT"
export SANDBOX_WEBHOOK_URL="http://127.0.0.1:${BILLY_PORT:-3000}/v1/webhooks/sandbox"
# The sandbox's own vault of test numbers (it stands in for a gateway's vault; Billy keeps tokens).
export SANDBOX_VAULT_FILE="${SANDBOX_VAULT_FILE:-$BILLY_CACHE/state/sandbox-vault.json}"
"$BILLY_ROOT/target/debug/sandbox-gateway" > "$BILLY_LOGS/sandbox-gateway.log" 2>&1 &
sandbox_pid=$!
log "sandbox gateway on $SANDBOX_URL (pid $sandbox_pid, log $BILLY_LOGS/sandbox-gateway.log)"
log "ready after $((SECONDS - t0)) s in all"
# Not exec: the EXIT trap must run after the runner ends, to stop the stack.
"$BILLY_ROOT/target/debug/billy-local" || true
