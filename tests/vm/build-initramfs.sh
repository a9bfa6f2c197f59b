#!/bin/bash
# build-initramfs.sh [MDGUARD_BINARY]
#
# Builds tests/vm/.cache/initramfs.cpio (or $MDGUARD_VM_INITRAMFS; uncompressed newc: the kernel only
# copies it, no decompression under TCG) for the VM test tier:
#   busybox (static), mdadm and nbd-client with the libraries ldd lists,
#   the mdguard binary under test (default target/debug/mdguard) and its libs,
#   the kernel modules in `modprobe --show-depends` order, and guest/init.
# MDGUARD_VM_ISCSI=1 adds the iSCSI initiator (the harness builds that flavour as
# initramfs-iscsi.cpio for tests/vm_iscsi.rs): open-iscsi's iscsiadm and iscsid
# with their libraries, /etc/iscsi, and the modules iscsi_tcp and sd_mod need,
# listed in /etc/modules.iscsi and loaded by the test, not at boot.
# Needs provision.sh to have run (kernel and open-iscsi unpacked in the cache).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${MDGUARD_VM_CACHE:-$here/.cache}
mdguard=${1:-$repo/target/debug/mdguard}
out=${MDGUARD_VM_INITRAMFS:-$cache/initramfs.cpio}

die() { echo "build-initramfs: $*" >&2; exit 1; }
[[ -f $cache/kernel.version ]] || die "no kernel in $cache: run tests/vm/provision.sh first"
kver=$(cat "$cache/kernel.version")
kroot=$cache/kernel
[[ -x $mdguard ]] || die "no mdguard binary at $mdguard: cargo build first"

stage=$(mktemp -d "$cache/initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,proc,sys,dev,run,tmp,etc,mnt,var/log,lib/modules}

# copy_bin SRC DEST: the binary and every library ldd resolves for it,
# at the same absolute paths (so the dynamic loader finds them).
copy_bin() {
    install -m 0755 "$1" "$stage/$2"
    local lib
    for lib in $(ldd "$1" 2>/dev/null | grep -oE '/[^ ]+' || true); do
        [[ -e $stage$lib ]] && continue
        mkdir -p "$stage$(dirname "$lib")"
        cp -L "$lib" "$stage$lib"
    done
}

busybox=$(command -v busybox)
file -L "$busybox" | grep -q 'statically linked' || die "$busybox is not static (install busybox-static)"
install -m 0755 "$busybox" "$stage/bin/busybox"
ln -s busybox "$stage/bin/sh"
copy_bin "$(command -v mdadm || echo /sbin/mdadm)" sbin/mdadm
copy_bin "$(command -v nbd-client || echo /usr/sbin/nbd-client)" sbin/nbd-client
# A debug build is large; the guest needs no debug info. A binary without it
# (a release or packaged one) goes in byte for byte.
if file -L "$mdguard" | grep -q 'with debug_info'; then
    objcopy --strip-debug "$mdguard" "$stage/bin/mdguard.tmp" 2>/dev/null && mv "$stage/bin/mdguard.tmp" "$stage/bin/mdguard" ||
        install -m 0755 "$mdguard" "$stage/bin/mdguard"
else
    install -m 0755 "$mdguard" "$stage/bin/mdguard"
fi
chmod 0755 "$stage/bin/mdguard"
copy_bin "$mdguard" bin/mdguard.libs-only && rm -f "$stage/bin/mdguard.libs-only"
# Extra programs for one run, "SRC:DEST ..." (benches/run.sh adds its I/O
# latency tool this way); unset for the tests.
for extra in ${MDGUARD_VM_EXTRA:-}; do
    copy_bin "${extra%%:*}" "${extra#*:}"
done

# Modules: one --show-depends per module (extra words would be parameters).
# The order is dependency order; keep the first occurrence of each.
# add_modules LIST MODULE...: copy them into the stage, listed in LIST in load order.
add_modules() {
    local list=$1 m; shift
    : > "$list"
    for m in "$@"; do
        modprobe -d "$kroot" -S "$kver" --show-depends "$m"
    done | awk '$1 == "insmod" && !seen[$2]++' | while read -r _ path params; do
        rel=${path#"$kroot"/}
        mkdir -p "$stage/$(dirname "$rel")"
        cp "$path" "$stage/$rel"
        echo "/$rel $params" >> "$list"
    done
}
add_modules "$stage/etc/modules.order" virtio_pci virtio_net virtio_console nbd md_mod raid1 loop
grep -q '/raid1.ko' "$stage/etc/modules.order" || die "module list incomplete"

if [[ ${MDGUARD_VM_ISCSI:-} == 1 ]]; then
    oiroot=$cache/open-iscsi
    [[ -x $oiroot/sbin/iscsiadm ]] || die "no open-iscsi in $cache: run tests/vm/provision.sh first"
    copy_bin "$oiroot/sbin/iscsiadm" sbin/iscsiadm
    copy_bin "$oiroot/sbin/iscsid" sbin/iscsid
    # the modules loaded at boot are not listed again
    # crc32c_generic: libiscsi_tcp asks the crypto API for "crc32c" at login (no
    # symbol dependency, so modprobe does not list it)
    add_modules "$stage/etc/modules.iscsi.all" crc32c_generic iscsi_tcp sd_mod
    grep -vxF -f "$stage/etc/modules.order" "$stage/etc/modules.iscsi.all" > "$stage/etc/modules.iscsi" || true
    rm "$stage/etc/modules.iscsi.all"
    grep -q '/iscsi_tcp.ko' "$stage/etc/modules.iscsi" || die "iSCSI module list incomplete"
    mkdir -p "$stage"/etc/iscsi/{nodes,send_targets,ifaces} "$stage"/run/lock/iscsi
    echo "InitiatorName=iqn.2026-12.org.mdguard.test:guest" > "$stage/etc/iscsi/initiatorname.iscsi"
    # iscsid serves only a peer whose uid getpwuid() names "root"
    echo 'root:x:0:0:root:/root:/bin/sh' > "$stage/etc/passwd"
    echo 'root:x:0:' > "$stage/etc/group"
    # The package's iscsid.conf; iscsiadm starts iscsid itself when none runs (no
    # systemd socket here). The tests set node.session.timeo.replacement_timeout.
    sed -e 's|^iscsid.startup = .*|iscsid.startup = /sbin/iscsid|' \
        "$oiroot/etc/iscsi/iscsid.conf" > "$stage/etc/iscsi/iscsid.conf"
fi
echo "$kver" > "$stage/etc/kernel.version"

install -m 0755 "$here/guest/init" "$stage/init"
install -m 0755 "$here/guest/ctl-loop" "$stage/bin/ctl-loop"
install -m 0755 "$here/guest/snap" "$stage/bin/snap"

(cd "$stage" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet --owner=0:0) > "$out.tmp.$$"
rm -f "${out%.*}.mdguard.sha256"
mv "$out.tmp.$$" "$out"   # atomic: a concurrent builder or a booting guest never sees half a file
# which mdguard it holds: the harness rebuilds when asked for another binary
sha256sum "$mdguard" | cut -d' ' -f1 > "${out%.*}.mdguard.sha256"
echo "build-initramfs: $out ($(du -h "$out" | cut -f1)), $(wc -l < "$stage/etc/modules.order") modules, kernel $kver" >&2
