# Billy's two commands, plus the pieces they are made of.
.PHONY: run test bench mutants package install stack-start stack-stop stack-status validate build-lambda fmt

run: ## install what is missing, start the local stack and serve the API on 127.0.0.1:$${BILLY_PORT:-3000}
	@bash infra/local/run.sh

test: ## every check: fmt, clippy, unit + integration + end-to-end tests, sam validate --lint
	@bash infra/local/test.sh

bench: ## billing-run throughput, requests and cost per invoice, ceiling, API latency, package sizes
	@bash infra/local/bench.sh

package: ## `sam build`: every function for Lambda (arm64, release) into .aws-sam/build, sizes listed
	@bash infra/local/package.sh

mutants: ## mutation testing of the billing rules (cargo-mutants; long, not part of `make test`)
	@bash infra/local/mutants.sh

install:
	@bash infra/local/install.sh all

stack-start:
	@bash infra/local/stack.sh start

stack-stop:
	@bash infra/local/stack.sh stop

stack-status:
	@bash infra/local/stack.sh status

validate:
	@bash -c '. infra/local/common.sh && bash infra/local/install.sh tools && AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0 "$$TOOLS_HOME/venv/bin/sam" validate --lint'

build-lambda: ## every function for Lambda (arm64, release) into target/lambda/<name>/bootstrap
	@bash -c '. infra/local/common.sh && bash infra/local/install.sh tools && bash infra/local/dashboard-assets.sh && PATH="$$TOOLS_HOME/venv/bin:$$PATH" cargo lambda build --release --arm64 $$(function_packages)'

fmt:
	@cargo fmt --all
