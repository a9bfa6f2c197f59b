#!/usr/bin/env bash
# The packaged unit under a real systemd: boot a Debian root (the .deb installed,
# so mdguard.service is enabled exactly as the package left it) as the initramfs
# of the VM tier's kernel, with systemd as init. A oneshot unit then makes an md
# RAID1 over two loop devices, fails one leg, and waits for mdguard, running
# inside its sandbox, to re-add it; then one over two nbd legs served by
# qemu-nbd on the host, disconnects a leg, and waits for mdguard to heal it
# through its configured reconnect command (nbd-client, run in the sandbox:
# AF_INET, netlink, CAP_SYS_ADMIN). It also reads the sandbox off the process.
#
#   tests/pkg/systemd-guest.sh ROOT_TARBALL DEB WORKDIR
#
# Needs tests/vm/provision.sh (kernel, qemu). Prints the guest's report and
# exits non-zero unless it ends with "pkgcheck: PASS".
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
tarball=$1 deb=$2 work=$3
vmcache=${MDGUARD_VM_CACHE:-$repo/tests/vm/.cache}
kver=$(cat "$vmcache/kernel.version")
kroot=$vmcache/kernel
die() { echo "systemd-guest: $*" >&2; exit 1; }

R=$work/sd-root
rm -rf "$R"; mkdir -p "$R"
tar -C "$R" -xf "$tarball"
cp "$deb" "$R/tmp/"
printf '#!/bin/sh\nexit 101\n' > "$R/usr/sbin/policy-rc.d"; chmod 0755 "$R/usr/sbin/policy-rc.d"
chroot "$R" dpkg -i "/tmp/$(basename "$deb")" >/dev/null
rm -f "$R/usr/sbin/policy-rc.d" "$R/tmp/$(basename "$deb")"
[[ -L $R/etc/systemd/system/sysinit.target.wants/mdguard.service ]] || die "not enabled by the package"

# mdadm from the build machine (the same Debian release) only to make the test
# array; mdguard itself never runs it
install -m 0755 "$(command -v mdadm)" "$R/sbin/mdadm"
for lib in $(ldd "$(command -v mdadm)" | grep -oE '/[^ ]+'); do
    [[ -e $R$lib ]] || { mkdir -p "$R$(dirname "$lib")"; cp -L "$lib" "$R$lib"; }
done
# kernel modules md needs, loaded at boot (so /proc/mdstat exists when the
# unit's condition is checked), nbd and the network card
for m in md_mod raid1 loop nbd virtio_pci virtio_net; do
    modprobe -d "$kroot" -S "$kver" --show-depends "$m"
done | awk '$1 == "insmod" {print $2}' | sort -u | while read -r path; do
    rel=${path#"$kroot"/}
    mkdir -p "$R/$(dirname "$rel")"; cp "$path" "$R/$rel"
done
cp "$kroot/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} "$R/lib/modules/$kver/" 2>/dev/null || true
depmod -b "$R" "$kver"
printf 'md_mod\nraid1\nloop\nnbd\nvirtio_pci\nvirtio_net\n' > "$R/etc/modules-load.d/mdguard-test.conf"
# not a first boot (no preset-all), quiet consoles
echo 0123456789abcdef0123456789abcdef > "$R/etc/machine-id"
echo mdguard-test > "$R/etc/hostname"
ln -sf /dev/null "$R/etc/systemd/system/serial-getty@ttyS0.service"
ln -sf /dev/null "$R/etc/systemd/system/getty@tty1.service"
# slim the image: documentation and apt state are not booted
rm -rf "$R"/usr/share/{doc,man,info,locale} "$R"/var/cache/apt/* "$R"/var/lib/apt/lists/*

# nbd legs for the reconnect path: two qemu-nbd servers on the host, reached
# from the guest at 10.0.2.2 (QEMU user networking), nbd-client in the root
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pids=()
cleanup_servers() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup_servers EXIT
ports=()
for i in 0 1; do
    truncate -s 64M "$work/nbd-leg$i.raw"
    port=$(free_port)
    qemu-nbd --persistent --shared=4 -x leg -b 127.0.0.1 --port="$port" --format=raw \
        --cache=writeback "$work/nbd-leg$i.raw" > "$work/qemu-nbd$i.log" 2>&1 &
    pids+=($!)
    ports+=("$port")
done
install -m 0755 "$(command -v nbd-client)" "$R/usr/sbin/nbd-client"
for lib in $(ldd "$(command -v nbd-client)" | grep -oE '/[^ ]+'); do
    [[ -e $R$lib ]] || { mkdir -p "$R$(dirname "$lib")"; cp -L "$lib" "$R$lib"; }
done
printf 'PORT0=%s\nPORT1=%s\n' "${ports[0]}" "${ports[1]}" > "$R/etc/pkgcheck.env"
mkdir -p "$R/etc/systemd/network"
printf '[Match]\nName=en* eth*\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\n' > "$R/etc/systemd/network/10-qemu.network"
ln -sf /lib/systemd/system/systemd-networkd.service "$R/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
# the watchdog at 3 s instead of 60 s (pings every 1.5 s), so that the run
# below, idle and healing, would be killed and restarted if pings stopped
mkdir -p "$R/etc/systemd/system/mdguard.service.d"
printf '[Service]\nWatchdogSec=3s\n' > "$R/etc/systemd/system/mdguard.service.d/test-watchdog.conf"
# the admin's config: quick probes, no start jitter, the reconnect command for
# nbd1 (what the README's example does)
cat > "$R/etc/mdguard/mdguard.toml" <<EOC
[probe]
initial_interval_s = 1
max_interval_s = 4
timeout_ms = 3000
[throttle]
jitter_s = 0
[[reconnect]]
device = "nbd1"
command = ["sh", "-c", "nbd-client -d /dev/nbd1 >/dev/null 2>&1; nbd-client 10.0.2.2 ${ports[1]} /dev/nbd1 -N leg -t 5"]
timeout_s = 20
EOC

cat > "$R/usr/local/sbin/pkgcheck" <<'EOS'
#!/bin/sh
# Runs once at boot (pkgcheck.service); everything goes to the console.
say() { echo "pkgcheck: $*" > /dev/ttyS0; }
fail() {
    say "FAIL: $*"
    { journalctl -b -u mdguard --no-pager; echo "links: $(ls /sys/class/net)"
      journalctl -b -u systemd-networkd --no-pager; } > /dev/ttyS0 2>&1
    systemctl poweroff; exit 1
}
wait_for() {  # wait_for SECONDS CMD...
    t=$1; shift; i=0
    while ! "$@"; do i=$((i + 1)); [ $i -ge $((t * 5)) ] && return 1; sleep 0.2; done
}
active() { [ "$(systemctl show -p ActiveState --value mdguard)" = active ]; }
wait_for 30 active || fail "mdguard.service is not active: $(systemctl show -p ActiveState,SubState,Result mdguard | tr '\n' ' ')"
say "mdguard.service active: $(systemctl show -p SubState,MainPID,WatchdogUSec,StatusText mdguard | tr '\n' ' ')"
pid=$(systemctl show -p MainPID --value mdguard)
say "sandbox: $(grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/$pid/status | tr -s '\t\n' '  ')"
grep -q '^CapBnd:.*0000000000200000' /proc/$pid/status || fail "bounding set is not CAP_SYS_ADMIN alone"
grep -q '^Seccomp:.*2' /proc/$pid/status || fail "no seccomp filter"
grep -q '^NoNewPrivs:.*1' /proc/$pid/status || fail "NoNewPrivs not set"
for i in 0 1; do
    truncate -s 64M /run/leg$i.img && losetup /dev/loop$i /run/leg$i.img || fail "losetup $i"
done
mdadm --create /dev/md0 --run --level=1 --raid-devices=2 --metadata=1.2 --bitmap=internal \
    --bitmap-chunk=1M /dev/loop0 /dev/loop1 >/dev/null 2>&1 || fail "mdadm --create"
clean() { [ "$(cat /sys/block/md0/md/degraded)" = 0 ] && [ "$(cat /sys/block/md0/md/sync_action)" = idle ]; }
wait_for 120 clean || fail "md0 never got clean"
say "md0 clean: $(grep -A1 '^md0' /proc/mdstat | tr -s '\n ' ' ')"
mdadm /dev/md0 --fail /dev/loop1 >/dev/null 2>&1 || fail "mdadm --fail"
dd if=/dev/urandom of=/dev/md0 bs=1M count=4 seek=8 oflag=direct conv=fsync 2>/dev/null
say "loop1 failed by hand: $(grep -A1 '^md0' /proc/mdstat | tr -s '\n ' ' ')"
wait_for 120 clean || fail "mdguard did not heal md0: $(cat /proc/mdstat)"
say "md0 healed: $(grep -A1 '^md0' /proc/mdstat | tr -s '\n ' ' ')"
journalctl -b -u mdguard -o cat | grep -q 're-added loop1' || fail "no re-add of loop1 in mdguard's journal"

# md1 over nbd legs: the reconnect command (nbd-client) runs inside the sandbox
. /etc/pkgcheck.env
wait_for 30 nbd-client 10.0.2.2 "$PORT0" /dev/nbd0 -N leg -t 5 || fail "nbd-client nbd0 (network?)"
nbd-client 10.0.2.2 "$PORT1" /dev/nbd1 -N leg -t 5 >/dev/null || fail "nbd-client nbd1"
mdadm --create /dev/md1 --run --level=1 --raid-devices=2 --metadata=1.2 --bitmap=internal \
    --bitmap-chunk=1M /dev/nbd0 /dev/nbd1 >/dev/null 2>&1 || fail "mdadm --create md1"
clean1() { [ "$(cat /sys/block/md1/md/degraded)" = 0 ] && [ "$(cat /sys/block/md1/md/sync_action)" = idle ]; }
wait_for 120 clean1 || fail "md1 never got clean"
say "md1 clean over nbd: $(grep -A1 '^md1' /proc/mdstat | tr -s '\n ' ' ')"
nbd-client -d /dev/nbd1 >/dev/null 2>&1
dd if=/dev/urandom of=/dev/md1 bs=1M count=4 seek=8 oflag=direct conv=fsync 2>/dev/null
failed1() { [ "$(cat /sys/block/md1/md/degraded)" = 1 ]; }
wait_for 60 failed1 || fail "md1 did not notice nbd1 disconnected"
say "nbd1 disconnected by hand: $(grep -A1 '^md1' /proc/mdstat | tr -s '\n ' ' ')"
wait_for 120 clean1 || fail "mdguard did not heal md1 through the reconnect command: $(cat /proc/mdstat)"
say "md1 healed: $(grep -A1 '^md1' /proc/mdstat | tr -s '\n ' ' ')"
journalctl -b -u mdguard --no-pager -o cat | sed 's/^/pkgcheck: journal: /' > /dev/ttyS0
journalctl -b -u mdguard -o cat | grep -q 'nbd1: running reconnect command' || fail "no reconnect command in the journal"
! journalctl -b -u mdguard -o cat | grep -q 'nbd1: reconnect failed' || fail "the reconnect command failed in the sandbox"
journalctl -b -u mdguard -o cat | grep -Eq 'md1: (re-)?added nbd1' || fail "no add of nbd1 in the journal"
sleep 8   # idle and healthy: only the watchdog wakes it
[ "$(systemctl show -p WatchdogUSec --value mdguard)" = 3s ] || fail "watchdog drop-in not applied"
n=$(systemctl show -p NRestarts --value mdguard)
[ "$n" = 0 ] || fail "mdguard restarted $n times (watchdog?)"
! journalctl -b -u mdguard -o cat | grep -qi 'watchdog timeout' || fail "watchdog timeout"
cyc=$(journalctl -b --no-pager | grep -ci 'ordering cycle')
[ "$cyc" = 0 ] || fail "ordering cycles at boot"
say "still active after the heal: $(systemctl show -p SubState,NRestarts,StatusText mdguard | tr '\n' ' ')"
say "PASS"
systemctl poweroff
EOS
chmod 0755 "$R/usr/local/sbin/pkgcheck"
cat > "$R/etc/systemd/system/pkgcheck.service" <<'EOS'
[Unit]
Description=mdguard package check
After=mdguard.service multi-user.target
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/pkgcheck
StandardOutput=tty
TTYPath=/dev/ttyS0
[Install]
WantedBy=multi-user.target
EOS
ln -sf /etc/systemd/system/pkgcheck.service "$R/etc/systemd/system/multi-user.target.wants/pkgcheck.service"

img=$work/sd-root.cpio
(cd "$R" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet --owner=0:0) > "$img"
echo "systemd-guest: image $(du -h "$img" | cut -f1), booting (TCG; up to 5 min)" >&2
out=$work/sd-console.log
timeout 300 qemu-system-x86_64 -accel tcg -m 1024 -smp 1 -nographic -nodefaults -no-reboot \
    -kernel "$kroot/vmlinux" -initrd "$img" -nic user,model=virtio-net-pci,restrict=off -serial "file:$out" \
    -append "console=ttyS0 panic=-1 rdinit=/lib/systemd/systemd systemd.show_status=0 loglevel=4" || true
grep '^pkgcheck: ' "$out" || true
grep -q '^pkgcheck: PASS' "$out" || { tail -40 "$out"; die "the check in the systemd guest did not pass (console: $out)"; }
