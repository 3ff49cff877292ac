# Environment that points the AWS SDK (and the runner) at the local stack. Sourced, not run.
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export AWS_ENDPOINT_URL="http://127.0.0.1:${LOCALSTACK_PORT:-4566}"
export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:${DYNAMODB_PORT:-8000}"
export SAM_CLI_TELEMETRY=0
# The Python with the gateways' test peers (localstripe, the official Stripe and Adyen libraries).
if [ -n "${PEERS_HOME:-}" ]; then export BILLY_PEERS_PYTHON="$PEERS_HOME/venv/bin/python"; fi
# cargo-lambda, whose Runtime API emulator serves the functions' real binaries in the runtime test.
if [ -n "${TOOLS_HOME:-}" ]; then export BILLY_CARGO_LAMBDA="$TOOLS_HOME/venv/bin/cargo-lambda"; fi
