#!/usr/bin/env bash
# `make mutants`: mutation testing of the billing rules with cargo-mutants (configuration, with the
# files examined and every excluded mutant and why, in .cargo/mutants.toml). Needs no local stack:
# billy-core's own tests are pure. Prints caught / missed / unviable / timeout per file; fails when
# a mutant is missed or times out. Results in target/mutants.out/.
. "$(dirname "$0")/common.sh"
command -v cargo >/dev/null 2>&1 || die "cargo (Rust) is needed"
cd "$BILLY_ROOT"
bash "$BILLY_LOCAL_DIR/install.sh" mutants
bash "$BILLY_LOCAL_DIR/dashboard-assets.sh"

status=0
rm -rf target/mutants.out target/mutants.out.old
"$MUTANTS_HOME/bin/cargo-mutants" mutants --jobs "${MUTANTS_JOBS:-2}" --output target --no-times || status=$?
if [ "$status" -le 3 ] && [ -f target/mutants.out/outcomes.json ]; then
  python3 "$BILLY_LOCAL_DIR/mutants_score.py" target/mutants.out/outcomes.json
else
  log "cargo-mutants stopped before testing mutants (exit $status): see target/mutants.out/debug.log"
fi
exit "$status"
