#!/usr/bin/env bash
# The package tier (scripts/test-all.sh calls it): build and lint the .deb and
# the .rpm, verify the unit, install them into a fresh Debian root (enabled,
# not started; upgrade keeps a local edit of the conffile; remove; purge),
# then boot the VM harness guest with the binary from the .deb, started with
# the unit's ExecStart arguments, and run one heal scenario with it. Before
# that, the same Debian root with the .deb installed boots under the VM kernel
# with systemd as init (tests/pkg/systemd-guest.sh): the unit runs as packaged,
# sandbox and all, and re-adds a failed leg.
#
# Env: MDGUARD_DEBIAN_MIRROR (default http://deb.debian.org/debian). One
#      guest only (one scenario), whatever MDGUARD_VM_THREADS says.
# Cache: tests/pkg/.cache (the Debian roots as tarballs, built when absent,
#        and the packaged binary's initramfs). Delete it to start from scratch.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here/../.."
repo=$(pwd)
. scripts/lib.sh
start=$(date +%s)
step() { echo; echo "=== pkg: $* ($(( $(date +%s) - start ))s)"; }
fail() { echo "pkg: FAIL: $*" >&2; exit 1; }
ok() { echo "pkg: ok: $*"; }

apt_install debootstrap systemd rpm dpkg-dev
cache=$here/.cache
mkdir -p "$cache"
work=$(mktemp -d "$cache/run.XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

# --- build: the release packages (linted) and a newer version for upgrades ----
step "build and lint (packaging/build.sh)"
packaging/build.sh
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
deb=target/packages/mdguard_${version}-1_amd64.deb
rpmf=target/packages/mdguard-${version}-1.x86_64.rpm
[[ -f $deb && -f $rpmf ]] || fail "packages missing in target/packages"
# the upgrade: same source, version +1 patch level, and a shipped config file
# that changed (so the conffile logic has something to decide)
next=${version%.*}.$(( ${version##*.} + 1 ))
cp packaging/mdguard.toml "$work/mdguard-next.toml"
echo "# (changed in $next: the install test's upgrade build)" >> "$work/mdguard-next.toml"
step "build version $next for the upgrade test"
MDGUARD_PKG_VERSION=$next MDGUARD_PKG_OUT=$work/next MDGUARD_PKG_CONFIG=$work/mdguard-next.toml \
    packaging/build.sh --no-lint > "$work/next.log" 2>&1 || { tail -30 "$work/next.log"; fail "upgrade build"; }
deb2=$work/next/mdguard_${next}-1_amd64.deb
rpm2=$work/next/mdguard-${next}-1.x86_64.rpm
[[ -f $deb2 && -f $rpm2 ]] || fail "upgrade packages missing"

# --- fresh Debian roots (minbase + an init system and udev, as in a domU image) --
mirror=${MDGUARD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# root_tarball NAME PACKAGES [PACKAGES TO ADD WITH APT]: a cached tarball of a
# debootstrapped bookworm; the second list is installed after, in the root
# (openrc replaces sysv-rc, which debootstrap's resolver would pick first).
# The file's name carries a hash of both lists: a changed list builds a new root.
root_tarball() {
    local key i
    key=$(printf '%s|%s' "$2" "${3:-}" | sha256sum | cut -c1-12)
    local t=$cache/bookworm-minbase-$1-$key.tar
    if [[ ! -f $t ]]; then
        step "debootstrap bookworm (minbase, $2${3:+, then $3}) into the cache" >&2
        for i in 1 2 3; do
            rm -rf "$work/boot"
            if debootstrap --variant=minbase --include="$2" bookworm "$work/boot" "$mirror" > "$work/debootstrap.log" 2>&1 &&
               { [[ -z ${3:-} ]] || chroot "$work/boot" sh -c "DEBIAN_FRONTEND=noninteractive apt-get -q -y install ${3//,/ }" \
                     >> "$work/debootstrap.log" 2>&1; }; then
                break
            fi
            tail -5 "$work/debootstrap.log" >&2
            (( i < 3 )) || fail "debootstrap $1 failed 3 times"
            sleep $((i * 10))
        done
        chroot "$work/boot" apt-get clean
        tar -C "$work/boot" -cf "$t.tmp" . && mv "$t.tmp" "$t"
        rm -rf "$work/boot"
    fi
    echo "$t"
}
# open-iscsi: the systemd guest heals an iSCSI leg (its units, iscsid, iscsiadm);
# kmod: modprobe, which the iSCSI drop-in runs and the kernel calls for crc32c
tarball=$(root_tarball systemd-udev systemd,udev,kmod,open-iscsi)
fresh_root() {  # fresh_root DIR: a pristine copy of the Debian root
    mkdir -p "$1" && tar -C "$1" -xf "$tarball"
    [[ -x $1/bin/systemctl && ! -e $1/usr/sbin/mdguard ]] || fail "$1: not a fresh root"
}
# processes running a binary of root $1 (nothing may have been started)
started_from() {
    local p exe
    for p in /proc/[0-9]*; do
        exe=$(readlink "$p/exe" 2>/dev/null) || continue
        [[ $exe == "$1"/* ]] && echo "${p#/proc/} $exe"
    done
    return 0
}
conf=/etc/mdguard/mdguard.toml
wants=etc/systemd/system/sysinit.target.wants/mdguard.service
# the dom0 service: shipped, never enabled by a package (WantedBy=multi-user.target
# once an admin enables it)
hwants=etc/systemd/system/multi-user.target.wants/mdguard-host.service
# host_disabled ROOT WHAT: mdguard-host.service installed as in systemd/, and
# disabled (no symlink, systemctl says so)
host_disabled() {
    local unitdir=$1/lib/systemd/system
    [[ $2 == rpm ]] && unitdir=$1/usr/lib/systemd/system
    cmp -s "$unitdir/mdguard-host.service" systemd/mdguard-host.service ||
        fail "$2: mdguard-host.service not installed in ${unitdir#$1} as systemd/mdguard-host.service"
    [[ ! -e $1/$hwants && ! -L $1/$hwants ]] || fail "$2: mdguard-host.service enabled (/$hwants)"
    [[ $(systemctl --root="$1" is-enabled mdguard-host.service 2>&1) == disabled ]] ||
        fail "$2: systemctl is-enabled mdguard-host: $(systemctl --root="$1" is-enabled mdguard-host.service 2>&1)"
}
# the drop-in for guests with iSCSI legs, which an admin copies (not active)
iscsi_dropin=usr/share/mdguard/iscsi-reconnect.conf
manuals="usr/share/man/man8/mdguard.8.gz usr/share/man/man5/mdguard.toml.5.gz usr/share/man/man7/mdguard-xenstore.7.gz"
# Every file a manual names exists in the installed root, and the ones that are
# mdguard's belong to the package ($2: the command that says which package owns
# a path). Runtime paths (/run, /proc, /sys, /dev) and xenstore's are not files
# of any package and are not looked at; nor are the files the agent writes in
# /var/lib/mdguard/ (legs.json), whose directory the package must ship, nor
# /etc/systemd/system/ (where an admin puts a drop-in: no package's place).
manual_paths_exist() {
    local R=$1 owner=$2 page p n=0
    for page in $manuals; do
        for p in $(zcat "$R/$page" | sed 's/\\-/-/g; s/\\f[BIRP]//g; s/\\&//g' |
                   grep -oE '/(usr|etc|lib|var|sbin|bin|opt)/[A-Za-z0-9._/+-]*' | sed 's/[.,;:]*$//' | sort -u); do
            [[ $p == /etc/systemd/system/* ]] && continue
            if [[ $p == /var/lib/mdguard/?* ]]; then
                [[ -d $R/var/lib/mdguard ]] || fail "$page names $p, and the package has no /var/lib/mdguard"
                continue
            fi
            [[ -e $R$p ]] || fail "$page names $p, which is not in the installed root"
            if [[ $p == *mdguard* ]]; then
                $owner "${p%/}" >/dev/null 2>&1 || fail "$page names $p, which the package does not ship"
            fi
            n=$((n + 1))
        done
    done
    (( n >= 3 )) || fail "found only $n paths in the manuals"
    ok "every file the manuals name ($n) is there; mdguard's belong to the package"
}

# --- .deb --------------------------------------------------------------------
step "deb: install into a fresh root"
R=$work/deb-root
fresh_root "$R"
# as an image build does: nothing may start services
printf '#!/bin/sh\nexit 101\n' > "$R/usr/sbin/policy-rc.d"; chmod 0755 "$R/usr/sbin/policy-rc.d"
[[ ! -e $R/run/systemd/system ]] || fail "the root claims systemd is running"
cp "$deb" "$deb2" "$R/tmp/"
chroot "$R" dpkg -i "/tmp/$(basename "$deb")" || fail "dpkg -i"
for f in usr/sbin/mdguard lib/systemd/system/mdguard.service "${conf#/}" $manuals "$iscsi_dropin" \
         usr/share/doc/mdguard/copyright usr/share/doc/mdguard/changelog.Debian.gz usr/share/doc/mdguard/README.md.gz; do
    [[ -f $R/$f ]] || fail "deb: /$f not installed"
done
[[ -x $R/usr/sbin/mdguard ]] || fail "deb: mdguard not executable"
[[ -d $R/var/lib/mdguard && $(stat -c %U $R/var/lib/mdguard) == root ]] || fail "deb: no /var/lib/mdguard"
chroot "$R" dpkg-query -W -f='${Conffiles}\n' mdguard | grep -q " $conf " || fail "deb: $conf is not a conffile"
cmp -s "$R$conf" packaging/mdguard.toml || fail "deb: installed $conf differs from packaging/mdguard.toml"
cmp -s "$R/$iscsi_dropin" systemd/iscsi-reconnect.conf || fail "deb: /$iscsi_dropin differs from systemd/iscsi-reconnect.conf"
ok "files in place, $conf is a conffile"
manual_paths_exist "$R" "chroot $R dpkg -S"
for page in $manuals; do
    w=$(LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$R/$page" 2>&1 >/dev/null) ||
        fail "man $page failed: $w"
    [[ -z $w ]] || fail "man --warnings $page: $w"
done
ok "the three manuals render without a warning"
[[ -L $R/$wants && $(readlink "$R/$wants") == /lib/systemd/system/mdguard.service ]] ||
    fail "deb: not enabled (no /$wants)"
[[ $(chroot "$R" systemctl is-enabled mdguard.service) == enabled ]] || fail "deb: systemctl is-enabled"
ok "enabled on install (/$wants)"
host_disabled "$R" deb
ok "mdguard-host.service in /lib/systemd/system, disabled"
left=$(started_from "$R")
[[ -z $left ]] || fail "deb: something from the root was started: $left"
[[ ! -e $R/run/mdguard ]] || fail "deb: /run/mdguard exists: the service was started"
ok "nothing started inside the image"
chroot "$R" /usr/sbin/mdguard version | grep -qx "mdguard $version" || fail "deb: mdguard version"
chroot "$R" /usr/sbin/mdguard status | grep -q "no md arrays" || fail "deb: mdguard status in a root without /proc"
ok "the static binary runs in the bare root"

step "deb: the unit (systemd-analyze verify, warnings fail; security)"
# systemd-analyze runs man(1) for Documentation=man:mdguard(8): let it find
# the installed page
out=$(MANPATH=$R/usr/share/man systemd-analyze verify --root="$R" mdguard.service 2>&1) ||
    { echo "$out"; fail "systemd-analyze verify"; }
[[ -z $out ]] || { echo "$out"; fail "systemd-analyze verify printed warnings (above)"; }
ok "systemd-analyze verify: clean"
sec=$(systemd-analyze security --offline=yes --root="$R" --threshold=35 mdguard.service 2>&1) ||
    { echo "$sec"; fail "systemd-analyze security: exposure above 3.5 (hardening lost?)"; }
echo "$sec" | grep 'Overall exposure level'
# with the iSCSI drop-in installed as its header says: still clean, and the
# same exposure (it widens nothing the rating looks at)
dropdir=$R/etc/systemd/system/mdguard.service.d
install -D -m 0644 "$R/$iscsi_dropin" "$dropdir/iscsi-reconnect.conf"
out=$(MANPATH=$R/usr/share/man systemd-analyze verify --root="$R" mdguard.service 2>&1) ||
    { echo "$out"; fail "systemd-analyze verify with the iSCSI drop-in"; }
[[ -z $out ]] || { echo "$out"; fail "systemd-analyze verify with the iSCSI drop-in printed warnings (above)"; }
sec2=$(systemd-analyze security --offline=yes --root="$R" --threshold=35 mdguard.service 2>&1) ||
    { echo "$sec2"; fail "systemd-analyze security with the iSCSI drop-in: exposure above 3.5"; }
[[ $(echo "$sec2" | grep 'Overall exposure level') == "$(echo "$sec" | grep 'Overall exposure level')" ]] ||
    fail "the iSCSI drop-in changes the exposure: $(echo "$sec2" | grep 'Overall exposure level')"
rm -r "$dropdir"
ok "systemd-analyze verify with the iSCSI drop-in: clean, same exposure"
# the unit's ExecStart= as written: accepted by the binary, loads the shipped
# config, comes up (it would run forever: stop it after 3 s)
execstart=$(sed -n 's/^ExecStart=//p' "$R/lib/systemd/system/mdguard.service")
[[ $execstart == /usr/sbin/mdguard\ * ]] || fail "ExecStart=$execstart: not the packaged binary"
rc=0; timeout 3 chroot "$R" $execstart > "$work/execstart.log" 2>&1 || rc=$?
[[ $rc == 124 ]] || { cat "$work/execstart.log"; fail "ExecStart=$execstart exited ($rc) instead of running"; }
grep -q "watching md arrays" "$work/execstart.log" || { cat "$work/execstart.log"; fail "ExecStart: no start line"; }
ok "ExecStart=$execstart runs with the shipped config"
out=$(MANPATH=$R/usr/share/man systemd-analyze verify --root="$R" mdguard-host.service 2>&1) ||
    { echo "$out"; fail "systemd-analyze verify mdguard-host.service"; }
[[ -z $out ]] || { echo "$out"; fail "systemd-analyze verify mdguard-host.service printed warnings (above)"; }
ok "systemd-analyze verify mdguard-host.service: clean"
sec=$(systemd-analyze security --offline=yes --root="$R" --threshold=20 mdguard-host.service 2>&1) ||
    { echo "$sec"; fail "systemd-analyze security mdguard-host: exposure above 2.0 (hardening lost?)"; }
echo "$sec" | grep 'Overall exposure level' | sed 's/^/mdguard-host.service: /'
# its ExecStart= where there is no xenstore (this root, as in a guest without
# Xen): a precise error and a non-zero exit, at once
execstart=$(sed -n 's/^ExecStart=//p' "$R/lib/systemd/system/mdguard-host.service")
[[ $execstart == "/usr/sbin/mdguard host run" ]] || fail "mdguard-host ExecStart=$execstart"
rc=0; timeout 10 chroot "$R" $execstart > "$work/host-execstart.log" 2>&1 || rc=$?
[[ $rc != 0 && $rc != 124 ]] || { cat "$work/host-execstart.log"; fail "mdguard-host ExecStart exited $rc without xenstore"; }
grep -q 'xenstore not available' "$work/host-execstart.log" || { cat "$work/host-execstart.log"; fail "mdguard-host: no xenstore error"; }
ok "mdguard-host ExecStart without xenstore: exit $rc, '$(grep -m1 'xenstore not available' "$work/host-execstart.log")'"

step "deb: upgrade to $next with a locally edited conffile (and mdguard-host enabled, as on a dom0)"
systemctl --root="$R" enable mdguard-host.service >/dev/null 2>&1 || fail "systemctl enable mdguard-host"
[[ -L $R/$hwants ]] || fail "deb: systemctl enable mdguard-host made no /$hwants"
sed -i 's/^#jitter_s = 10$/jitter_s = 3/' "$R$conf"
grep -qx 'jitter_s = 3' "$R$conf" || fail "local edit"
cp "$R$conf" "$work/edited.toml"
chroot "$R" dpkg -i --force-confold "/tmp/$(basename "$deb2")" || fail "dpkg -i (upgrade)"
[[ $(chroot "$R" dpkg-query -W -f='${Version}' mdguard) == "$next-1" ]] || fail "deb: not upgraded"
cmp -s "$R$conf" "$work/edited.toml" || fail "deb: the local edit of $conf was not kept"
cmp -s "$R$conf.dpkg-dist" "$work/mdguard-next.toml" || fail "deb: the new config is not in $conf.dpkg-dist"
[[ -L $R/$wants ]] || fail "deb: no longer enabled after the upgrade"
[[ -z $(started_from "$R") ]] || fail "deb: the upgrade started something"
ok "upgrade: local edit kept, new file as $conf.dpkg-dist, still enabled"
[[ -L $R/$hwants ]] || fail "deb: the upgrade disabled mdguard-host.service, which the admin had enabled"
ok "upgrade: mdguard-host.service, enabled by the admin, still enabled"

step "deb: remove, then purge"
echo kept > "$R/var/lib/mdguard/history"   # what an agent keeps across reboots
chroot "$R" dpkg -r mdguard || fail "dpkg -r"
[[ -f $R/var/lib/mdguard/history ]] || fail "deb: remove took /var/lib/mdguard's state"
[[ ! -e $R/usr/sbin/mdguard && ! -e $R/lib/systemd/system/mdguard.service && ! -e $R/lib/systemd/system/mdguard-host.service ]] ||
    fail "deb: files left after remove"
cmp -s "$R$conf" "$work/edited.toml" || fail "deb: the conffile did not stay on remove"
ok "removed; $conf (edited) stays"
chroot "$R" dpkg -P mdguard || fail "dpkg -P"
[[ ! -e $R/etc/mdguard ]] || fail "deb: /etc/mdguard left after purge: $(ls -a "$R/etc/mdguard")"
[[ ! -e $R/var/lib/mdguard ]] || fail "deb: /var/lib/mdguard left after purge"
[[ ! -e $R/$wants && ! -L $R/$wants ]] || fail "deb: enablement symlink left after purge"
[[ ! -e $R/$hwants && ! -L $R/$hwants ]] || fail "deb: mdguard-host enablement symlink left after purge"
st=$(chroot "$R" dpkg-query -W -f='${Status}' mdguard 2>/dev/null || true)
[[ -z $st || $st == *not-installed ]] || fail "deb: dpkg still has mdguard after purge: $st"
ok "purged: nothing left (/var/lib/mdguard with its state gone too)"
rm -rf "$R"

# --- .rpm ------------------------------------------------------------------------
step "rpm: install into a fresh root (rpm --root, --nodeps: the root is Debian)"
R=$work/rpm-root
fresh_root "$R"
rpm --root "$R" --initdb
rpm --root "$R" --nodeps -i "$rpmf" || fail "rpm -i"
for f in usr/sbin/mdguard usr/lib/systemd/system/mdguard.service usr/lib/systemd/system/mdguard-host.service \
         usr/lib/systemd/system-preset/80-mdguard.preset \
         "${conf#/}" $manuals usr/share/licenses/mdguard/LICENSE-MIT usr/share/doc/mdguard/README.md; do
    [[ -f $R/$f ]] || fail "rpm: /$f not installed"
done
cmp -s "$R/$iscsi_dropin" systemd/iscsi-reconnect.conf || fail "rpm: /$iscsi_dropin differs from systemd/iscsi-reconnect.conf"
rpm --root "$R" -q --configfiles mdguard | grep -qx "$conf" || fail "rpm: $conf is not %config"
[[ -d $R/var/lib/mdguard ]] && rpm --root "$R" -qf /var/lib/mdguard >/dev/null || fail "rpm: no /var/lib/mdguard"
manual_paths_exist "$R" "rpm --root $R -qf"
[[ -L $R/$wants ]] || fail "rpm: not enabled on install (no /$wants)"
[[ -z $(started_from "$R") && ! -e $R/run/mdguard ]] || fail "rpm: something was started"
ok "files in place, enabled through the preset, nothing started"
host_disabled "$R" rpm
ok "mdguard-host.service in /usr/lib/systemd/system, disabled through the preset"
systemctl --root="$R" enable mdguard-host.service >/dev/null 2>&1 || fail "systemctl enable mdguard-host"
sed -i 's/^#jitter_s = 10$/jitter_s = 3/' "$R$conf"
cp "$R$conf" "$work/edited.toml"
rpm --root "$R" --nodeps -U "$rpm2" || fail "rpm -U"
[[ $(rpm --root "$R" -q --qf '%{VERSION}' mdguard) == "$next" ]] || fail "rpm: not upgraded"
cmp -s "$R$conf" "$work/edited.toml" || fail "rpm: the local edit of $conf was not kept"
cmp -s "$R$conf.rpmnew" "$work/mdguard-next.toml" || fail "rpm: the new config is not in $conf.rpmnew"
[[ -L $R/$wants ]] || fail "rpm: no longer enabled after the upgrade"
ok "upgrade: local edit kept, new file as $conf.rpmnew, still enabled"
[[ -L $R/$hwants ]] || fail "rpm: the upgrade disabled mdguard-host.service, which the admin had enabled"
ok "upgrade: mdguard-host.service, enabled by the admin, still enabled"
rpm --root "$R" --nodeps -e mdguard || fail "rpm -e"
[[ ! -e $R/usr/sbin/mdguard && ! -e $R/usr/lib/systemd/system/mdguard.service ]] || fail "rpm: files left after erase"
[[ ! -e $R/$wants && ! -L $R/$wants ]] || fail "rpm: still enabled after erase"
[[ ! -e $R/$hwants && ! -L $R/$hwants && ! -e $R/usr/lib/systemd/system/mdguard-host.service ]] ||
    fail "rpm: mdguard-host.service left (file or enablement) after erase"
cmp -s "$R$conf.rpmsave" "$work/edited.toml" || fail "rpm: the edited config was not saved as $conf.rpmsave"
[[ ! -e $R$conf ]] || fail "rpm: $conf left after erase"
ok "erased: disabled, edited config kept as $conf.rpmsave (rpm's way)"
rm -rf "$R"

# --- the packaged unit under a real systemd -------------------------------------------
step "VM: the .deb's unit under systemd (as PID 1 of a Debian guest), sandbox and a heal"
bash tests/vm/provision.sh
bash tests/pkg/systemd-guest.sh "$tarball" "$deb" "$work" || fail "the unit under systemd"
ok "mdguard.service ran sandboxed under systemd and re-added a failed leg"
rm -rf "$work/sd-root" "$work/sd-root.cpio"

# --- the .deb's init script under sysvinit and under OpenRC ---------------------------
sysv_tarball=$(root_tarball sysvinit sysvinit-core,udev,kmod,rsyslog,orphan-sysvinit-scripts,procps)
openrc_tarball=$(root_tarball openrc sysvinit-core,udev,kmod,rsyslog,orphan-sysvinit-scripts,procps openrc)
for init in sysvinit openrc; do
    step "VM: the .deb's init script under $init (no systemd), a heal, start/stop/status/reload"
    t=$sysv_tarball; [[ $init == openrc ]] && t=$openrc_tarball
    bash tests/pkg/initscript-guest.sh "$init" "$t" "$deb" "$work" || fail "the init script under $init"
    ok "/etc/init.d/mdguard ran mdguard under $init, which re-added a failed leg"
done

# --- the packaged binary heals an array in the VM guest ------------------------------
step "VM: a heal scenario with the binary and ExecStart from the .deb"
x=$work/deb-files
dpkg-deb -x "$deb" "$x"
execstart=$(sed -n 's/^ExecStart=//p' "$x/lib/systemd/system/mdguard.service")
export MDGUARD_VM_BIN=$x/usr/sbin/mdguard
export MDGUARD_VM_INITRAMFS=$cache/initramfs-packaged.cpio
export MDGUARD_VM_RUN_ARGS=${execstart#/usr/sbin/mdguard }
export MDGUARD_VM_RUN_ID="pkg$$-$(date +%s)"
echo "pkg: guest binary $MDGUARD_VM_BIN ($(stat -c %s "$MDGUARD_VM_BIN") bytes), started as: mdguard $MDGUARD_VM_RUN_ARGS"
status=0
cargo test --locked --test vm_heal -- --include-ignored --exact killed_server_comes_back_and_is_readded \
    --test-threads=1 --show-output || status=$?
if pgrep -af "mdguard-vm-$MDGUARD_VM_RUN_ID-" | grep -E 'qemu-(system|nbd)'; then
    echo "pkg: processes left running after the VM test (above)" >&2
    status=1
fi
(( status == 0 )) || fail "the heal scenario with the packaged binary"
ok "the packaged binary healed md0 in the guest"

step "sizes"
echo "pkg: $(basename "$deb"): $(stat -c %s "$deb") bytes; $(basename "$rpmf"): $(stat -c %s "$rpmf") bytes"
echo "pkg: installed size $(dpkg-deb -f "$deb" Installed-Size) KiB; binary $(stat -c %s "$x/usr/sbin/mdguard") bytes (static)"
echo "pkg: tier took $(( $(date +%s) - start )) s"
