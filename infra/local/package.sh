#!/usr/bin/env bash
# `make package`: builds every function of template.yaml the way `sam deploy` needs it, offline:
# `sam build` with SAM's Rust support (BuildMethod rust-cargolambda: cargo-lambda cross-compiles
# each function for arm64, release, into the workspace's target dir; SAM copies each bootstrap to
# .aws-sam/build/<LogicalId>/). Prints each function's bootstrap and its zip as Lambda receives it
# (target/package/packages.txt). SAM still marks its Rust support beta: samconfig.toml turns the
# beta flag on, and SAM_CLI_BETA_RUST_CARGO_LAMBDA=1 says so again for older configs.
. "$(dirname "$0")/common.sh"
cd "$BILLY_ROOT"
bash "$BILLY_LOCAL_DIR/install.sh" tools
bash "$BILLY_LOCAL_DIR/dashboard-assets.sh"
# cargo-lambda needs the arm64 standard library (from the Rust toolchain's own distribution).
rustup target list --installed | grep -x aarch64-unknown-linux-gnu >/dev/null || rustup target add aarch64-unknown-linux-gnu
mkdir -p target/package
export SAM_CLI_TELEMETRY=0 SAM_CLI_BETA_RUST_CARGO_LAMBDA=1 AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
log "sam build: every function for Lambda (arm64, release; log: target/package/sam-build.log)"
started=$(date +%s)
PATH="$TOOLS_HOME/venv/bin:$PATH" sam build > target/package/sam-build.log 2>&1 \
  || { tail -30 target/package/sam-build.log >&2; die "sam build failed"; }
log "sam build took $(( $(date +%s) - started )) s"
# Each function's bootstrap and its size zipped (deflate, as `sam deploy` uploads it).
"$(find_python_tools)" - <<'PY' | tee target/package/packages.txt
import io, os, zipfile
root = ".aws-sam/build"
functions = sorted(d for d in os.listdir(root) if os.path.isfile(os.path.join(root, d, "bootstrap")))
print(f"{'function':<28} {'bootstrap':>12} {'zip':>12}")
for d in functions:
    path = os.path.join(root, d, "bootstrap")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(path, "bootstrap")
    print(f"{d:<28} {os.path.getsize(path):>12} {len(buf.getvalue()):>12}")
print(f"{len(functions)} functions built into {root}")
PY
count=$(grep -c "^[A-Za-z]*Function " target/package/packages.txt || true)
expected=$(grep -c "^        Binary: " template.yaml)
[ "$count" = "$expected" ] || die "sam build produced $count functions, template.yaml declares $expected"
