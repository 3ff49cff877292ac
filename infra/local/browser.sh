#!/usr/bin/env bash
# The browser test: serves Billy (with the dashboard bundle it was built with) on a loopback port
# with its own tables, and runs tests/browser/dashboard.mjs in Debian's Chromium through
# playwright-core: the overview's figures against the reports API, a customer page against its
# summary, the transactions list and its CSV export, tenant isolation, and portal links (valid,
# altered, expired). Screenshots go to target/browser/. Expects the local stack to be up and the
# runner and sandbox binaries built; it stops the two processes it starts, by pid.
. "$(dirname "$0")/common.sh"
. "$BILLY_LOCAL_DIR/env.sh"
cd "$BILLY_ROOT"

bash "$BILLY_LOCAL_DIR/install.sh" browser

port="${BROWSER_PORT:-3200}"
sandbox_port="${BROWSER_SANDBOX_PORT:-4621}"
out="$BILLY_ROOT/target/browser"
rm -f "$out"/*.png "$out"/*.csv
serve_billy_for_check browser "$port" "$sandbox_port" "$out"
# The runner embeds the web bundle when it is compiled: a bundle built since is not what it serves.
curl -sf "$base/dashboard/assets/app.js" | cmp -s - "$BILLY_ROOT/functions/dashboard/web/dist/app.js" \
  || die "billy-local serves another dashboard bundle than functions/dashboard/web/dist: build billy-local again (after infra/local/dashboard-assets.sh)"

log "browser test: Chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}'), playwright-core $PLAYWRIGHT_CORE_VERSION, at $base"
BASE="$base" ADMIN_TOKEN="$admin" OUT="$out" CHROMIUM=/usr/bin/chromium PLAYWRIGHT_CORE_HOME="$BROWSER_HOME" \
  timeout "${BROWSER_TIMEOUT:-600}" node "$BILLY_ROOT/tests/browser/dashboard.mjs" \
  || die "the browser test failed (screenshots: $out; runner log: $out/runner.log)"
log "browser test passed; screenshots in $out"
