#!/bin/bash
# The soak (issue 13), one command: many fail/recover cycles on one VM lab with
# every block written checked after each heal (tests/vm_soak.rs says how).
#
#   scripts/soak.sh [CYCLES]      # default 50
#
# Provisions and builds like tests/vm/run.sh, then runs the ignored test
# binary. Env: MDGUARD_SOAK_SEED (replay a run's fault sequence; printed and in
# the results), MDGUARD_SOAK_CHECK_EVERY, MDGUARD_SOAK_CYCLE_TIMEOUT_S,
# MDGUARD_SOAK_REGION_MIB, MDGUARD_SOAK_LEG_MIB, MDGUARD_SOAK_MAX_KBPS,
# MDGUARD_SOAK_FAULTS, MDGUARD_SOAK_OUT, MDGUARD_VM_CACHE.
# Results: target/soak/results.json (and results.agent.log); evidence of a
# cycle that could not be carried out under target/soak/cycle-N/.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here/.."
export MDGUARD_SOAK_CYCLES=${1:-${MDGUARD_SOAK_CYCLES:-50}}
start=$(date +%s)
bash tests/vm/provision.sh
cargo build --locked --bin mdguard
bash tests/vm/build-initramfs.sh target/debug/mdguard
export MDGUARD_VM_RUN_ID="soak$$-$(date +%s)"

status=0
cargo test --locked --test vm_soak -- --ignored --nocapture --test-threads=1 || status=$?
if pgrep -af "mdguard-vm-$MDGUARD_VM_RUN_ID-" | grep -E 'qemu-(system|nbd)'; then
    echo "soak: processes left running (above)" >&2
    status=1
fi
echo "soak: took $(( $(date +%s) - start )) s; results in target/soak/results.json"
exit "$status"
