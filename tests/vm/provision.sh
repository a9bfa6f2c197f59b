#!/bin/bash
# Provision the real-kernel VM test tier (issue 3). Idempotent; safe to re-run.
#
#  1. apt: add <codename>-backports (derived from the machine's own
#     debian.sources), apt-get update, install qemu-system-x86 from backports
#     (the stable one conflicts with qemu-utils 10 from backports and would
#     remove qemu-nbd) plus busybox-static, mdadm, nbd-client, kmod, cpio.
#  2. download (not install) the kernel image package linux-image-amd64
#     currently depends on, unpack it under tests/vm/.cache/, run depmod there.
#  3. extract the uncompressed vmlinux (boots ~3x faster under TCG).
#  4. iSCSI: the target `tgt` (tgtd, tgtadm) is installed on the host (the
#     tests start their own tgtd per leg); the initiator open-iscsi is
#     downloaded and unpacked into the cache, never installed (no iscsid on
#     the host), its libraries (libopeniscsiusr, libisns0) installed, so
#     build-initramfs.sh can copy iscsiadm and iscsid into the guest.
#
# Env: MDGUARD_VM_CACHE overrides the cache dir (default tests/vm/.cache).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${MDGUARD_VM_CACHE:-$here/.cache}
mkdir -p "$cache"

log() { echo "provision: $*" >&2; }

# retry N CMD...: apt and the mirrors fail transiently; back off 2,4,8.. s.
retry() {
    local n=$1 i=1 delay=2; shift
    until "$@"; do
        if (( i >= n )); then log "giving up after $n tries: $*"; return 1; fi
        log "try $i failed: $*; again in ${delay}s"
        sleep "$delay"; i=$((i + 1)); delay=$((delay * 2))
    done
}

if [[ $(id -u) != 0 ]]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
# Other sessions may hold the dpkg lock: wait for it rather than fail.
APT=($SUDO apt-get -o DPkg::Lock::Timeout=300 -o Acquire::Retries=3 -q)

. /etc/os-release
codename=${VERSION_CODENAME:-bookworm}
bpo="$codename-backports"

# --- 1. backports source, derived from the machine's deb822 sources --------
add_backports() {
    if grep -rqs -- "$bpo" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        return 0
    fi
    local src=/etc/apt/sources.list.d/debian.sources
    [[ -r $src ]] || { log "no $src to derive $bpo from"; return 1; }
    # Take the stanza whose Suites has the plain codename (the main archive,
    # not -security) and replace its Suites with the backports suite.
    local stanza
    stanza=$(awk -v RS='' -v cn="$codename" '
        $0 ~ ("Suites:[^\n]*(^|[ \t])" cn "([ \t]|$)") || $0 ~ ("Suites:[ \t]+" cn "([ \t\n]|$)") { print; exit }' "$src" |
        grep -v '^#' | sed -E "s/^Suites:.*/Suites: $bpo/")
    [[ -n $stanza ]] || { log "no '$codename' stanza in $src"; return 1; }
    log "adding $bpo: /etc/apt/sources.list.d/mdguard-backports.sources"
    printf '# Added by mdguard tests/vm/provision.sh, derived from %s\n%s\n' "$src" "$stanza" |
        $SUDO tee /etc/apt/sources.list.d/mdguard-backports.sources >/dev/null
}

pkgs=(busybox-static mdadm nbd-client kmod cpio tgt)
installed() {  # installed PKG: true when dpkg has it fully installed
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}
qemu_from_bpo() {
    installed qemu-system-x86 && dpkg-query -W -f='${Version}' qemu-system-x86 | grep -q bpo
}

add_backports
updated=0
if retry 4 "${APT[@]}" update; then updated=1; else
    log "apt-get update failed; continuing with the lists (and cache) we have"
fi

need=()
for p in "${pkgs[@]}"; do installed "$p" || need+=("$p"); done
if ((${#need[@]})); then
    log "installing ${need[*]}"
    retry 3 "${APT[@]}" install -y --no-install-recommends "${need[@]}"
fi
if ! qemu_from_bpo; then
    log "installing qemu-system-x86 from $bpo"
    retry 3 "${APT[@]}" install -y --no-install-recommends -t "$bpo" qemu-system-x86
fi
for t in qemu-system-x86_64 qemu-nbd qemu-img busybox mdadm nbd-client modprobe depmod cpio tgtd tgtadm; do
    command -v "$t" >/dev/null || [[ -x /sbin/$t || -x /usr/sbin/$t || -x /bin/$t ]] ||
        { log "missing tool after install: $t"; exit 1; }
done

# --- 2. the kernel: download and unpack, never install -----------------------
kpkg=
if ((updated)); then
    kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
        awk '/^ *Depends: linux-image-[0-9]/ { print $2; exit }')
fi
if [[ -z $kpkg ]]; then
    # Offline fallback: reuse what a previous run unpacked.
    kpkg=$(cat "$cache/kernel.pkg" 2>/dev/null || true)
    [[ -n $kpkg ]] || { log "cannot resolve the kernel package (apt-cache depends linux-image-amd64)"; exit 1; }
    log "using cached kernel package $kpkg"
fi
kver=${kpkg#linux-image-}
kroot=$cache/kernel-$kver
if [[ ! -f $kroot/.done ]]; then
    rm -rf "$kroot" "$cache"/dl && mkdir -p "$cache/dl"
    log "downloading $kpkg"
    (cd "$cache/dl" && retry 4 apt-get -q download "$kpkg")
    deb=$(ls "$cache"/dl/"$kpkg"_*.deb | head -n1)
    log "unpacking $(basename "$deb")"
    dpkg-deb -x "$deb" "$kroot"
    rm -rf "$cache/dl"
    # The package's postinst would run depmod; we need modules.dep for
    # modprobe -d ... --show-depends.
    depmod -b "$kroot" "$kver"
    touch "$kroot/.done"
fi

# --- 3. uncompressed vmlinux ------------------------------------------------
vmlinuz=$kroot/boot/vmlinuz-$kver
if [[ ! -s $kroot/vmlinux ]]; then
    log "extracting vmlinux from $(basename "$vmlinuz")"
    "$here/extract-vmlinux.sh" "$vmlinuz" > "$kroot/vmlinux.tmp"
    mv "$kroot/vmlinux.tmp" "$kroot/vmlinux"
fi

# --- 4. open-iscsi for the guest: download and unpack, never install --------
# Installing it would start iscsid on the host (and pull in udev); the guest
# needs only its two programs. Their shared libraries are plain library
# packages: install those the package depends on (lib*, from apt-cache).
oi_ver=
if ((updated)); then
    oi_ver=$(apt-cache policy open-iscsi 2>/dev/null | awk '/Candidate:/ { print $2; exit }')
    [[ $oi_ver == "(none)" ]] && oi_ver=
fi
if [[ -z $oi_ver ]]; then
    oi_ver=$(cat "$cache/open-iscsi.version" 2>/dev/null || true)
    [[ -n $oi_ver ]] || { log "cannot resolve open-iscsi (apt-cache policy open-iscsi)"; exit 1; }
    log "using cached open-iscsi $oi_ver"
fi
oiroot=$cache/open-iscsi-${oi_ver//:/_}
if [[ ! -f $oiroot/.done ]]; then
    rm -rf "$oiroot" "$cache"/dl-oi && mkdir -p "$cache/dl-oi"
    log "downloading open-iscsi $oi_ver"
    (cd "$cache/dl-oi" && retry 4 apt-get -q download "open-iscsi=$oi_ver")
    dpkg-deb -x "$(ls "$cache"/dl-oi/open-iscsi_*.deb | head -n1)" "$oiroot"
    rm -rf "$cache/dl-oi"
    touch "$oiroot/.done"
fi
oi_libs=()
for p in $(apt-cache depends open-iscsi 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^lib/ { print $2 }'); do
    installed "$p" || oi_libs+=("$p")
done
if ((${#oi_libs[@]})); then
    log "installing ${oi_libs[*]} (open-iscsi's libraries, for the guest)"
    retry 3 "${APT[@]}" install -y --no-install-recommends "${oi_libs[@]}"
fi
for t in iscsiadm iscsid; do
    if ldd "$oiroot/sbin/$t" | grep 'not found'; then log "$t: libraries missing (above)"; exit 1; fi
done
echo "$oi_ver" > "$cache/open-iscsi.version"
ln -sfn "$(basename "$oiroot")" "$cache/open-iscsi"

# Stable names for the harness.
echo "$kpkg" > "$cache/kernel.pkg"
ln -sfn "kernel-$kver" "$cache/kernel"
echo "$kver" > "$cache/kernel.version"
log "ok: kernel $kver ($(du -h "$kroot/vmlinux" | cut -f1) vmlinux), qemu $(qemu-system-x86_64 --version | head -n1), tgt $(dpkg-query -W -f='${Version}' tgt), open-iscsi $oi_ver (unpacked)"
