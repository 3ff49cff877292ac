#!/usr/bin/env bash
# Builds the dashboard's web bundle (functions/dashboard/web/dist: index.html, app.js, app.css), which
# the dashboard function embeds at compile time: so run this before cargo builds it. Installs the
# locked npm packages when node_modules is missing or package-lock.json changed since, and skips the
# build when every file of dist is newer than every source file.
. "$(dirname "$0")/common.sh"

web="$BILLY_ROOT/functions/dashboard/web"
dist="$web/dist"
command -v npm >/dev/null 2>&1 || die "npm (Node.js 20+) is needed to build the dashboard's web bundle"

# The lock's hash at the last `npm ci`, kept inside node_modules so a fresh clone has none.
lock_stamp="$web/node_modules/.billy-lock-sha256"
lock_hash="$(sha256sum "$web/package-lock.json" | cut -d' ' -f1)"
if [ ! -d "$web/node_modules" ] || [ "$(cat "$lock_stamp" 2>/dev/null)" != "$lock_hash" ]; then
  log "installing the dashboard's npm packages (npm ci)"
  (cd "$web" && npm ci --silent --no-audit --no-fund >/dev/null)
  printf '%s\n' "$lock_hash" > "$lock_stamp"
fi

# The oldest file of dist against every input of the build.
up_to_date() {
  local f oldest=""
  for f in index.html app.js app.css; do
    [ -f "$dist/$f" ] || return 1
    if [ -z "$oldest" ] || [ "$dist/$f" -ot "$oldest" ]; then oldest="$dist/$f"; fi
  done
  [ -z "$(find "$web/src" "$web/build.mjs" "$web/package.json" "$web/package-lock.json" -newer "$oldest" -print -quit)" ]
}
if up_to_date; then
  log "dashboard assets are up to date"
  exit 0
fi
log "building the dashboard's web bundle into $dist"
(cd "$web" && npm run --silent build)
for f in index.html app.js app.css; do [ -s "$dist/$f" ] || die "the build made no $dist/$f"; done
