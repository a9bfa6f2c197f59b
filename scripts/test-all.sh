#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit/property/corpus/CLI tests, and the
# tiers that need real components (real xenstored, real kernel in QEMU) when present.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_cargo
start=$(date +%s)
step() { echo; echo "=== $* ($(( $(date +%s) - start ))s)"; }

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy -D warnings"
cargo clippy --locked --all-targets -- -D warnings
step "unit, property, corpus and CLI tests"
cargo test --locked
for tier in tests/xs/run.sh tests/vm/run.sh; do
  if [ -x "$tier" ]; then
    step "$tier"
    "$tier"
  fi
done
if [ -x scripts/fuzz.sh ]; then
  step "bounded fuzzing"
  scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
fi
step "all tests passed"
