#!/usr/bin/env bash
# `make run`: installs what is missing, starts the local stack, builds and runs the local runner in
# the foreground. Ctrl-C stops the runner, then whatever this script started.
. "$(dirname "$0")/common.sh"
. "$BILLY_LOCAL_DIR/env.sh"
command -v cargo >/dev/null 2>&1 || die "cargo (Rust) is needed"

started="$(mktemp)"
cleanup() {
  local svcs; svcs="$(cat "$started" 2>/dev/null || true)"
  # shellcheck disable=SC2086
  [ -z "$svcs" ] || bash "$BILLY_LOCAL_DIR/stack.sh" stop $svcs
  rm -f "$started"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$SECONDS
bash "$BILLY_LOCAL_DIR/stack.sh" start --record "$started"
log "stack ready after $((SECONDS - t0)) s; building the runner"
(cd "$BILLY_ROOT" && cargo build -q -p billy-local)
log "ready after $((SECONDS - t0)) s in all"
# Not exec: the EXIT trap must run after the runner ends, to stop the stack.
"$BILLY_ROOT/target/debug/billy-local" || true
