#!/bin/bash
# The dom0 service at scale (issue 15): `mdguard host run` over a real
# xenstored with 1000 guest domains, 50 of which change state at once
# (benches/host_scale.rs; docs/performance.md "The dom0 service at scale").
# Reports figures; fails only when a step cannot be carried out.
#
#   benches/host-scale.sh [--quick]
#
# --quick: 200 guests, 20 changing, 35 s of idle (a smoke run). Env (defaults
# in benches/host_scale.rs): MDGUARD_SCALE_GUESTS, MDGUARD_SCALE_CHANGING,
# MDGUARD_SCALE_STORAGES, MDGUARD_SCALE_K, MDGUARD_SCALE_RECOVER_MS,
# MDGUARD_SCALE_IDLE_S, MDGUARD_SCALE_SCRAPE_MS, MDGUARD_SCALE_STATUS_REPS,
# MDGUARD_SCALE_STATUS_TIMEOUT_S, MDGUARD_SCALE_RUNS (timed, counted or
# both), MDGUARD_SCALE_OUT (target/bench/host-scale.json).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here/.."
if [[ ${1:-} == --quick ]]; then
    export MDGUARD_SCALE_GUESTS=${MDGUARD_SCALE_GUESTS:-200} MDGUARD_SCALE_CHANGING=${MDGUARD_SCALE_CHANGING:-20}
    export MDGUARD_SCALE_IDLE_S=${MDGUARD_SCALE_IDLE_S:-35}
    shift
fi
start=$(date +%s)
bash tests/xs/provision.sh
# the service's binary as shipped: the release profile
cargo build --locked --release --bin mdguard
cargo test --locked --release --test host_scale -- --ignored --nocapture --test-threads=1 "$@"
echo "host-scale: took $(( $(date +%s) - start )) s; results in ${MDGUARD_SCALE_OUT:-target/bench/host-scale.json}"
