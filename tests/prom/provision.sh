#!/usr/bin/env bash
# Installs what the prometheus tier needs: Debian's Prometheus (with promtool)
# and prometheus-node-exporter; the dom0 side also needs the real xenstored
# (tests/xs/provision.sh). Idempotent: does nothing when all is there. Retries
# apt. The packages' services are not started here (the tests run their own
# processes on loopback ports).
set -euo pipefail

need=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-node-exporter >/dev/null 2>&1 || need+=(prometheus-node-exporter)

if [ ${#need[@]} -eq 0 ]; then
    echo "provision: prometheus, promtool and prometheus-node-exporter already present"
    exit 0
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
. "$repo/scripts/lib.sh"
echo "provision: installing ${need[*]}"
apt_install "${need[@]}"

for t in prometheus promtool prometheus-node-exporter; do
    command -v "$t" >/dev/null || { echo "provision: $t missing after install" >&2; exit 1; }
done
echo "provision: done"
