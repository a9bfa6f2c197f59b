#!/usr/bin/env bash
# The main job: build mdguard and show this machine's md arrays (`mdguard status`).
# On a machine without md it says so, then shows a sample guest (tests/fixtures/demo)
# so a new user sees what a degraded and a recovering mirror look like.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_cargo
cargo build --release --locked
bin=target/release/mdguard
echo "== mdguard status (this machine)"
"$bin" status
echo
echo "== mdguard check (this machine)"
"$bin" check || true
if [ ! -e /proc/mdstat ]; then
  echo
  echo "== a sample Xen guest mid-outage: mdguard status --root tests/fixtures/demo"
  "$bin" status --root tests/fixtures/demo
  echo
  echo "== mdguard check --root tests/fixtures/demo"
  "$bin" check --root tests/fixtures/demo || echo "(exit $?)"
fi
