# Shared by the package tier's booted guests (systemd-guest.sh,
# initscript-guest.sh): a Debian root made bootable as the initramfs of the VM
# tier's kernel. Sourced; needs $repo.
vmcache=${MDGUARD_VM_CACHE:-$repo/tests/vm/.cache}
kver=$(cat "$vmcache/kernel.version")
kroot=$vmcache/kernel

# guest_mdadm ROOT: mdadm from the build machine (the same Debian release),
# only to make the test arrays; mdguard itself never runs it
guest_mdadm() {
    local R=$1 lib
    install -m 0755 "$(command -v mdadm)" "$R/sbin/mdadm"
    for lib in $(ldd "$(command -v mdadm)" | grep -oE '/[^ ]+'); do
        [[ -e $R$lib ]] || { mkdir -p "$R$(dirname "$lib")"; cp -L "$lib" "$R$lib"; }
    done
}

# guest_modules ROOT MODULE...: the kernel modules (with what they depend on)
# and the depmod files, so modprobe works in the guest
guest_modules() {
    local R=$1 path rel
    shift
    for m in "$@"; do
        modprobe -d "$kroot" -S "$kver" --show-depends "$m"
    done | awk '$1 == "insmod" {print $2}' | sort -u | while read -r path; do
        rel=${path#"$kroot"/}
        mkdir -p "$R/$(dirname "$rel")"; cp "$path" "$R/$rel"
    done
    cp "$kroot/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} "$R/lib/modules/$kver/" 2>/dev/null || true
    depmod -b "$R" "$kver"
}

# guest_boot ROOT CONSOLE TIMEOUT APPEND [QEMU ARGS...]: pack ROOT as an
# initramfs and boot it (TCG), the serial console to the file CONSOLE
guest_boot() {
    local R=$1 out=$2 timeout=$3 append=$4 img
    shift 4
    img=$R.cpio
    (cd "$R" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet --owner=0:0) > "$img"
    echo "guest: image $(du -h "$img" | cut -f1), booting (TCG; up to $timeout s)" >&2
    timeout "$timeout" qemu-system-x86_64 -accel tcg -m 1024 -smp 1 -nographic -nodefaults -no-reboot \
        -kernel "$kroot/vmlinux" -initrd "$img" -serial "file:$out" "$@" \
        -append "console=ttyS0 panic=-1 no_timer_check $append" || true
    rm -f "$img"
}
