#!/bin/bash
# build-initramfs.sh [MDGUARD_BINARY]
#
# Builds the two initramfs images of the real-Xen tier (uncompressed newc: no
# decompression under TCG) into tests/xen/.cache/:
#   domu.cpio  the PV guest: busybox, mdadm, the xenstore-* tools, mdguard,
#              xen-blkfront + md modules, guest/domu-init, domu-ctl and
#              domu-clock.
#   dom0.cpio  dom0: busybox, bash, flock, xenstored, xenconsoled,
#              xen-init-dom0, xl, xenstore-control, the xenstore-* tools,
#              the block hotplug scripts, nbd-client, dmsetup, mdguard, the Xen
#              backend, virtio and device-mapper modules, guest/dom0-init,
#              and the PV guest's kernel (the same Debian kernel,
#              uncompressed) and domu.cpio under /boot.
# Every dynamic binary comes with the libraries ldd lists, plus libgcc_s.so.1
# (glibc dlopens it for pthread_cancel; xl and the xenstore tools abort
# without it). Needs tests/xen/provision.sh to have run.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${MDGUARD_XEN_CACHE:-$here/.cache}
vmcache=${MDGUARD_VM_CACHE:-$repo/tests/vm/.cache}
mdguard=${1:-$repo/target/debug/mdguard}
xenbin=/usr/lib/xen-4.17/bin

die() { echo "xen build-initramfs: $*" >&2; exit 1; }
[[ -f $vmcache/kernel.version ]] || die "no kernel in $vmcache: run tests/xen/provision.sh first"
[[ -x $xenbin/xl ]] || die "no $xenbin/xl: run tests/xen/provision.sh first"
[[ -x $mdguard ]] || die "no mdguard binary at $mdguard: cargo build first"
kver=$(cat "$vmcache/kernel.version")
kroot=$vmcache/kernel
libgcc=$(ldconfig -p | awk '/libgcc_s.so.1 .*x86-64/ { print $NF; exit }')
[[ -n $libgcc ]] || die "libgcc_s.so.1 not found (ldconfig -p)"

# new_stage DIR: the skeleton both images share.
new_stage() {
    mkdir -p "$1"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,proc,sys,dev,run,tmp,etc,mnt,var/log,var/lib,var/lock,lib/modules,boot}
    ln -s ../run "$1/var/run"
    local busybox
    busybox=$(command -v busybox)
    file -L "$busybox" | grep -q 'statically linked' || die "$busybox is not static (install busybox-static)"
    install -m 0755 "$busybox" "$1/bin/busybox"
    ln -s busybox "$1/bin/sh"
    mkdir -p "$1$(dirname "$libgcc")"
    cp -L "$libgcc" "$1$libgcc"
}

# copy_bin STAGE SRC DEST: the binary and every library ldd resolves for it,
# at the same absolute paths (so the dynamic loader finds them).
copy_bin() {
    local stage=$1 src=$2 dest=$3 lib
    mkdir -p "$stage/$(dirname "$dest")"
    install -m 0755 "$src" "$stage/$dest"
    for lib in $(ldd "$src" 2>/dev/null | grep -oE '/[^ ]+' || true); do
        [[ -e $stage$lib ]] && continue
        mkdir -p "$stage$(dirname "$lib")"
        cp -L "$lib" "$stage$lib"
    done
}

copy_mdguard() {
    local stage=$1
    # A debug build is large; the guests need no debug info.
    objcopy --strip-debug "$mdguard" "$stage/bin/mdguard" 2>/dev/null || install -m 0755 "$mdguard" "$stage/bin/mdguard"
    chmod 0755 "$stage/bin/mdguard"
    copy_bin "$stage" "$mdguard" bin/mdguard.libs-only && rm -f "$stage/bin/mdguard.libs-only"
}

# copy_mods STAGE MODULE...: one --show-depends per module (extra words would
# be parameters); dependency order, first occurrence kept, in /etc/modules.order.
copy_mods() {
    local stage=$1 m; shift
    : > "$stage/etc/modules.order"
    for m in "$@"; do
        modprobe -d "$kroot" -S "$kver" --show-depends "$m" || die "module $m not found"
    done | awk '$1 == "insmod" && !seen[$2]++' | while read -r _ path params; do
        local rel=${path#"$kroot"/}
        mkdir -p "$stage/$(dirname "$rel")"
        cp "$path" "$stage/$rel"
        echo "/$rel $params" >> "$stage/etc/modules.order"
    done
    echo "$kver" > "$stage/etc/kernel.version"
}

xs_tools=(xenstore-read xenstore-write xenstore-rm xenstore-ls xenstore-list xenstore-chmod xenstore-exists xenstore-watch)

pack() {  # pack STAGE OUT: atomic, so a booting guest never sees half a file
    (cd "$1" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet --owner=0:0) > "$2.tmp.$$"
    mv "$2.tmp.$$" "$2"
}

work=$(mktemp -d "$cache/initramfs.XXXXXX")
trap 'rm -rf "$work"' EXIT

# ---- domU -------------------------------------------------------------------
s=$work/domu
new_stage "$s"
copy_bin "$s" "$(command -v mdadm || echo /sbin/mdadm)" sbin/mdadm
# domu-ctl runs under bash: busybox's ash, as the long-lived loop, segfaulted
# under Xen PV (twice at the same address in busybox, killing the channel)
copy_bin "$s" /bin/bash bin/bash
for t in "${xs_tools[@]}"; do copy_bin "$s" "/usr/bin/$t" "usr/bin/$t"; done
copy_mdguard "$s"
copy_mods "$s" xen-blkfront md_mod raid1
grep -q '/raid1.ko' "$s/etc/modules.order" || die "domU module list incomplete"
install -m 0755 "$here/guest/domu-init" "$s/init"
install -m 0755 "$here/guest/domu-ctl" "$s/bin/domu-ctl"
install -m 0755 "$here/guest/domu-clock" "$s/bin/domu-clock"
install -m 0755 "$repo/tests/vm/guest/snap" "$s/bin/snap"
pack "$s" "$cache/domu.cpio"
echo "xen build-initramfs: $cache/domu.cpio ($(du -h "$cache/domu.cpio" | cut -f1)), $(wc -l < "$s/etc/modules.order") modules" >&2

# ---- dom0 -------------------------------------------------------------------
s=$work/dom0
new_stage "$s"
copy_bin "$s" /bin/bash bin/bash
copy_bin "$s" "$(command -v flock)" bin/flock  # util-linux: the hotplug scripts lock with it
# xenstore-control: `live-update` of xenstored (tests/xen_e2e.rs)
for t in xenstored xenconsoled xen-init-dom0 xl xenstore-control; do copy_bin "$s" "$xenbin/$t" "usr/sbin/$t"; done
# xl save/restore/migrate run libxl's helper from its own directory
copy_bin "$s" "$xenbin/libxl-save-helper" "${xenbin#/}/libxl-save-helper"
for t in "${xs_tools[@]}"; do copy_bin "$s" "/usr/bin/$t" "usr/bin/$t"; done
copy_bin "$s" "$(command -v nbd-client || echo /usr/sbin/nbd-client)" sbin/nbd-client
# device-mapper between blkback and nbd: a leg whose storage comes back under
# the same vbd (tests/harness/xen_dm.rs)
copy_bin "$s" "$(command -v dmsetup || echo /usr/sbin/dmsetup)" sbin/dmsetup
copy_mdguard "$s"
mkdir -p "$s/etc/xen" "$s/var/lib/xen" "$s/var/log/xen/console" "$s/var/lib/xenstored"
cp -a /etc/xen/scripts "$s/etc/xen/scripts"
copy_mods "$s" virtio_pci virtio_net virtio_console nbd dm_mod xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xenfs xen-blkback
grep -q '/xen-blkback.ko' "$s/etc/modules.order" || die "dom0 module list incomplete"
install -m 0755 "$here/guest/dom0-init" "$s/init"
install -m 0755 "$repo/tests/vm/guest/ctl-loop" "$s/bin/ctl-loop"
install -m 0755 "$here/guest/domu-run" "$s/bin/domu-run"
cp "$kroot/vmlinux" "$s/boot/vmlinux"
cp "$cache/domu.cpio" "$s/boot/domu.cpio"
pack "$s" "$cache/dom0.cpio"
echo "xen build-initramfs: $cache/dom0.cpio ($(du -h "$cache/dom0.cpio" | cut -f1)), $(wc -l < "$s/etc/modules.order") modules, kernel $kver" >&2
