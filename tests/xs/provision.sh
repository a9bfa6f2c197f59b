#!/usr/bin/env bash
# Installs what the real-xenstored tests need: Debian's xenstored (xen-utils-4.17),
# the standard xenstore-* client tools, and a C compiler for the LD_PRELOAD shim.
# Idempotent: does nothing when everything is already there. Retries apt.
set -euo pipefail

XENSTORED=/usr/lib/xen-4.17/bin/xenstored
need=()
[ -x "$XENSTORED" ] || need+=(xen-utils-4.17)
command -v xenstore-read >/dev/null 2>&1 || need+=(xenstore-utils)
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)

if [ ${#need[@]} -eq 0 ]; then
    echo "provision: xenstored, xenstore-utils and cc already present"
    exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

retry() {
    local n=0
    until "$@"; do
        n=$((n + 1))
        if [ $n -ge 4 ]; then
            echo "provision: giving up after $n tries: $*" >&2
            return 1
        fi
        echo "provision: retry $n: $*" >&2
        sleep $((n * 5))
    done
}

echo "provision: installing ${need[*]}"
retry $SUDO apt-get update -q
# Without --no-install-recommends xen-utils pulls ~150 packages (qemu, ...).
retry $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"

[ -x "$XENSTORED" ] || { echo "provision: $XENSTORED missing after install" >&2; exit 1; }
[ -x /usr/lib/xen-4.17/bin/oxenstored ] || { echo "provision: oxenstored missing after install" >&2; exit 1; }
command -v xenstore-read >/dev/null || { echo "provision: xenstore-read missing" >&2; exit 1; }
echo "provision: done"
