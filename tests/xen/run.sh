#!/bin/bash
# The real-Xen tier, one entry point: provision (idempotent), build mdguard,
# build the dom0/domU initramfs images, run tests/xen_e2e.rs and
# tests/xen_coord.rs.
#
#   tests/xen/run.sh [extra cargo test filter args...]
#
# Env: MDGUARD_XEN_THREADS (default 1) Xen machines at once (each is a
# 2-vCPU TCG QEMU); MDGUARD_XEN_CACHE, MDGUARD_VM_CACHE.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here/../.."
start=$(date +%s)
bash tests/xen/provision.sh
cargo build --locked --bin mdguard
bash tests/xen/build-initramfs.sh target/debug/mdguard
# Every lab directory (and so every qemu command line) of this run carries it.
export MDGUARD_XEN_RUN_ID="r$$-$(date +%s)"
status=0
cargo test --locked --test xen_e2e --test xen_coord -- --include-ignored --test-threads="${MDGUARD_XEN_THREADS:-1}" --nocapture "$@" || status=$?
if pgrep -af "mdguard-xen-$MDGUARD_XEN_RUN_ID-" | grep -E 'qemu-(system|nbd)'; then
    echo "xen: processes left running after the tests (above)" >&2
    status=1
fi
echo "xen: tier took $(( $(date +%s) - start )) s"
exit "$status"
