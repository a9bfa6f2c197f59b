#!/bin/bash
# The benchmark, one command: mdguard next to mdadm's own tools on the VM
# harness's real kernel (README "Performance"). Reports figures; never fails on one.
#
#   benches/run.sh [--quick]
#
# --quick: 3 repetitions, 60 s of idle footprint, shorter outages and legs (a
# smoke run, a few minutes). Env (defaults in benches/vm_bench.rs):
# MDGUARD_BENCH_REPS, MDGUARD_BENCH_IDLE_S, MDGUARD_BENCH_OUTAGE_S,
# MDGUARD_BENCH_RESYNC_OUTAGE_S, MDGUARD_BENCH_RESYNC_MIB, MDGUARD_BENCH_LEG_MIB,
# MDGUARD_BENCH_WINDOW_S, MDGUARD_BENCH_THROTTLE_KBPS, MDGUARD_BENCH_ONLY
# (comma list of event,mdadm,probe,resync,footprint,xenstore).
# Writes target/bench/results.json and results.md, and prints the table.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here/.."
if [[ ${1:-} == --quick ]]; then
    export MDGUARD_BENCH_REPS=${MDGUARD_BENCH_REPS:-3} MDGUARD_BENCH_IDLE_S=${MDGUARD_BENCH_IDLE_S:-60}
    export MDGUARD_BENCH_OUTAGE_S=${MDGUARD_BENCH_OUTAGE_S:-6} MDGUARD_BENCH_RESYNC_OUTAGE_S=${MDGUARD_BENCH_RESYNC_OUTAGE_S:-15}
    export MDGUARD_BENCH_LEG_MIB=${MDGUARD_BENCH_LEG_MIB:-64} MDGUARD_BENCH_WINDOW_S=${MDGUARD_BENCH_WINDOW_S:-5}
    shift
fi
start=$(date +%s)
bash tests/vm/provision.sh
bash tests/xs/provision.sh   # xenstored, for the idle agent's xenstore writes
cargo build --locked --release --bin mdguard --example iolat --example uevstamp
mkdir -p target/bench
# The parser's cost, on the host.
MDGUARD_BENCH_JSON=$PWD/target/bench/parse.json cargo bench --locked --bench parse

# A cache of its own (the tests' initramfs carries the debug binary): the
# provisioned kernel, an initramfs with the release binary and the I/O tool.
kcache=${MDGUARD_VM_CACHE:-$PWD/tests/vm/.cache}
export MDGUARD_VM_CACHE=$PWD/target/bench/vm-cache
mkdir -p "$MDGUARD_VM_CACHE"
ln -sfn "$(cd "$kcache/kernel" && pwd -P)" "$MDGUARD_VM_CACHE/kernel"
cp "$kcache/kernel.version" "$MDGUARD_VM_CACHE/kernel.version"
export MDGUARD_VM_EXTRA="$PWD/target/release/examples/iolat:bin/iolat $PWD/target/release/examples/uevstamp:bin/uevstamp"
bash tests/vm/build-initramfs.sh "$PWD/target/release/mdguard"
export MDGUARD_VM_RUN_ID="bench$$-$(date +%s)"

status=0
cargo test --locked --release --test vm_bench -- --ignored --nocapture --test-threads=1 "$@" || status=$?
if pgrep -af "mdguard-vm-$MDGUARD_VM_RUN_ID-" | grep -E 'qemu-(system|nbd)'; then
    echo "bench: processes left running (above)" >&2
    status=1
fi
echo "bench: took $(( $(date +%s) - start )) s; results in target/bench/results.json"
exit "$status"
