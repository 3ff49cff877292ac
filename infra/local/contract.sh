#!/usr/bin/env bash
# Contract fuzzing (part of `make test`): serves Billy on a loopback port with its own tables, makes
# a tenant, and runs schemathesis over every operation of docs/openapi.yaml with a pinned seed and
# bounded examples: no answer may be a 5xx, every answer must be documented for its operation and
# match its schema. Expects the local stack to be up and the runner and sandbox binaries built; it
# stops the two processes it starts, by pid.
. "$(dirname "$0")/common.sh"
. "$BILLY_LOCAL_DIR/env.sh"
cd "$BILLY_ROOT"

port="${CONTRACT_PORT:-3100}"
sandbox_port="${CONTRACT_SANDBOX_PORT:-4611}"
out="$BILLY_ROOT/target/contract"
serve_billy_for_check contract "$port" "$sandbox_port" "$out"
key="$(curl -sf -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
  -d '{"name":"Contract"}' "$base/v1/tenants" | "$CONTRACT_HOME/venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["api_keys"]["test"])')"
[ -n "$key" ] || die "no tenant was made"

# A small world to aim at (contract.toml names these ids per operation).
post() {
  curl -sf -H "Authorization: Bearer $key" -H 'Content-Type: application/json' -d "$2" "$base/v1$1" \
    | "$CONTRACT_HOME/venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}
CONTRACT_CUSTOMER="$(post /customers '{"name":"Contract"}')"
CONTRACT_PAYMENT_METHOD="$(post "/customers/$CONTRACT_CUSTOMER/payment_methods" '{"type":"card","card":{"number":"4242424242424242"}}')"
CONTRACT_PAYOUT_DESTINATION="$(post "/customers/$CONTRACT_CUSTOMER/payout_destinations" '{"type":"bank_account","bank_account":{"account_number":"000123456789"}}')"
CONTRACT_PLAN="$(post /plans '{"name":"Pro","amount":1000,"currency":"usd","frequency":"monthly"}')"
CONTRACT_SUBSCRIPTION="$(post /subscriptions "{\"customer\":\"$CONTRACT_CUSTOMER\",\"plan\":\"$CONTRACT_PLAN\"}")"
CONTRACT_INVOICE="$(post /invoices "{\"customer\":\"$CONTRACT_CUSTOMER\",\"currency\":\"usd\",\"items\":[{\"description\":\"Setup\",\"unit_amount\":500}]}")"
CONTRACT_CLOCK="$(post /test_clocks '{"frozen_time":"2026-01-01T00:00:00Z"}')"
CONTRACT_COUPON="$(post /coupons '{"name":"Ten","percent_off":10,"duration":"once"}')"
CONTRACT_VERIFICATION="$(post /verifications '{"month":"2025-12"}')"
CONTRACT_EXPORT="$(post /exports '{"type":"transactions"}')"
CONTRACT_ENDPOINT="$(post /webhook_endpoints '{"url":"http://127.0.0.1:9/hook","enabled_events":["*"]}')"
export CONTRACT_CUSTOMER CONTRACT_PAYMENT_METHOD CONTRACT_PAYOUT_DESTINATION CONTRACT_PLAN CONTRACT_SUBSCRIPTION \
  CONTRACT_INVOICE CONTRACT_CLOCK CONTRACT_COUPON CONTRACT_VERIFICATION CONTRACT_EXPORT CONTRACT_ENDPOINT
for v in CONTRACT_CUSTOMER CONTRACT_PAYMENT_METHOD CONTRACT_PAYOUT_DESTINATION CONTRACT_PLAN CONTRACT_SUBSCRIPTION \
  CONTRACT_INVOICE CONTRACT_CLOCK CONTRACT_COUPON CONTRACT_VERIFICATION CONTRACT_EXPORT CONTRACT_ENDPOINT; do
  [ -n "${!v}" ] || die "seeding the contract world failed at $v"
done

log "schemathesis $SCHEMATHESIS_VERSION over docs/openapi.yaml at $base (seed ${CONTRACT_SEED:-20261205}, ${CONTRACT_EXAMPLES:-12} examples per operation)"
# (Run from target/contract: schemathesis keeps its own cache in the working directory.)
cd "$out"
"$CONTRACT_HOME/venv/bin/st" --config-file "$BILLY_LOCAL_DIR/contract.toml" run "$BILLY_ROOT/docs/openapi.yaml" \
  --url "$base" \
  --header "Authorization: Bearer $key" \
  --seed "${CONTRACT_SEED:-20261205}" \
  --max-examples "${CONTRACT_EXAMPLES:-12}" \
  --phases examples,coverage,fuzzing \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --workers 2 \
  --request-timeout 20 \
  --generation-database none \
  --no-color \
  --report junit --report-dir "$out" 2>&1 | tee "$out/schemathesis.log"
status="${PIPESTATUS[0]}"
[ "$status" -eq 0 ] || die "contract fuzzing failed (report: $out; runner log: $out/runner.log)"
log "contract fuzzing passed"
