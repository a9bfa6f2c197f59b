#!/bin/bash
# The real-kernel VM test tier, one entry point (scripts/test-all.sh calls it):
# provision, build mdguard, build the initramfs, run the VM tests.
#
#   tests/vm/run.sh [--update-fixtures] [extra cargo test filter args...]
#
# Env: MDGUARD_VM_THREADS (default 2) guests at once; MDGUARD_VM_CACHE.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here/../.."
if [[ ${1:-} == --update-fixtures ]]; then
    export MDGUARD_UPDATE_FIXTURES=1; shift
fi
start=$(date +%s)
bash tests/vm/provision.sh
cargo build --locked --bin mdguard
bash tests/vm/build-initramfs.sh target/debug/mdguard
threads=${MDGUARD_VM_THREADS:-2}
# Every lab directory (and so every qemu command line) of this run carries it.
export MDGUARD_VM_RUN_ID="r$$-$(date +%s)"

status=0
# vm_soak: the soak's bounded smoke (3 cycles; scripts/soak.sh is the long run),
# its results apart from a long run's. vm_iscsi boots its own initramfs
# (initramfs-iscsi.cpio, the base one plus open-iscsi), built by the harness.
export MDGUARD_SOAK_OUT=${MDGUARD_SOAK_OUT:-$PWD/target/soak/smoke.json}
cargo test --locked --test vm_status --test vm_heal --test vm_safety --test vm_soak --test vm_iscsi -- --include-ignored --test-threads="$threads" --show-output "$@" || status=$?
# Nothing of ours may outlive the run (QEMU, qemu-nbd, the iSCSI tests' tgtd).
# (Other sessions' VM tests may be running on this machine: look for this
# run's id only.)
if pgrep -af "mdguard-vm-$MDGUARD_VM_RUN_ID-" | grep -E 'qemu-(system|nbd)|tgtd'; then
    echo "vm: processes left running after the tests (above)" >&2
    status=1
fi
echo "vm: tier took $(( $(date +%s) - start )) s"
exit "$status"
