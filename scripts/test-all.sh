#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit/property/corpus/CLI tests, and the
# tiers that need real components (real xenstored, real kernel in QEMU) when present.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_cargo
start=$(date +%s)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
step() { echo; echo "=== $* ($(( $(date +%s) - start ))s)"; }

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy -D warnings"
cargo clippy --locked --all-targets -- -D warnings
step "unit, property, corpus and CLI tests"
cargo test --locked 2>&1 | tee -a "$log"
for tier in tests/xs/run.sh tests/prom/run.sh tests/vm/run.sh tests/pkg/run.sh tests/xen/run.sh; do
  if [ -x "$tier" ]; then
    step "$tier"
    "$tier" 2>&1 | tee -a "$log"
  fi
done
if [ -x scripts/fuzz.sh ]; then
  step "bounded fuzzing"
  scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
fi
step "done"
# One closing line over every cargo test binary that ran (pipefail has already
# stopped the script on any failure).
awk '/^test result:/ { p += $4; f += $6 } END { printf "summary: %d passed, %d failed\n", p, f }' "$log"
