#!/bin/bash
# Provision the real-Xen tier (issue 6). Idempotent; safe to re-run.
#
#  1. tests/vm/provision.sh: qemu-system-x86 (backports), qemu-nbd,
#     busybox-static, mdadm, nbd-client, kmod, cpio, and Debian's kernel
#     unpacked with its uncompressed vmlinux in tests/vm/.cache/kernel.
#     The same kernel serves as dom0 and as the PV domU.
#  2. tests/xs/provision.sh: xen-utils-4.17 (xl, xenstored, xenconsoled,
#     xen-init-dom0, libxenlight...) and xenstore-utils, installed on the
#     host (without recommends: nothing starts, no hypervisor); dom0's
#     initramfs copies them with their libraries.
#  3. util-linux's flock and bash for the block hotplug script (present on
#     any Debian), file and binutils for the initramfs builder, dmsetup for
#     dom0's device-mapper legs.
#  4. xen-hypervisor-4.17-amd64: downloaded, never installed; unpacked into
#     tests/xen/.cache/, and boot/xen-4.17-amd64.gz decompressed to
#     tests/xen/.cache/xen (a multiboot ELF QEMU's -kernel boots).
#
# Env: MDGUARD_XEN_CACHE overrides the cache dir (default tests/xen/.cache).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${MDGUARD_XEN_CACHE:-$here/.cache}
mkdir -p "$cache"
log() { echo "xen provision: $*" >&2; }
. "$repo/scripts/lib.sh"

bash "$repo/tests/vm/provision.sh"
bash "$repo/tests/xs/provision.sh"
apt_install util-linux bash file binutils dmsetup

hyp=xen-hypervisor-4.17-amd64
if [[ ! -s $cache/xen || ! -f $cache/xen.version ]]; then
    rm -rf "$cache/dl" "$cache/hypervisor" && mkdir -p "$cache/dl"
    log "downloading $hyp"
    ok=0
    for i in 1 2 3 4; do
        (cd "$cache/dl" && apt-get -q download "$hyp") && { ok=1; break; }
        log "download failed (try $i); again in $((i * 5))s"
        sleep $((i * 5))
    done
    ((ok)) || { log "cannot download $hyp"; exit 1; }
    deb=$(ls "$cache"/dl/"$hyp"_*.deb | head -n1)
    dpkg-deb -x "$deb" "$cache/hypervisor"
    gzip -dc "$cache/hypervisor/boot/xen-4.17-amd64.gz" > "$cache/xen.tmp"
    mv "$cache/xen.tmp" "$cache/xen"
    basename "$deb" .deb > "$cache/xen.version"
    rm -rf "$cache/dl"
fi
file -b "$cache/xen" | grep -q '^ELF' || { log "$cache/xen is not an ELF file"; exit 1; }
log "ok: $(cat "$cache/xen.version"), kernel $(cat "$repo/tests/vm/.cache/kernel.version")"
