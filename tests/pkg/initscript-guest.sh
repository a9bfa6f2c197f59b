#!/usr/bin/env bash
# The .deb's init script under a real init without systemd: boot a Debian root
# whose init is sysvinit (sysvinit-core, rsyslog) or OpenRC (Debian's openrc on
# sysvinit's init), with the .deb installed as dpkg leaves it, as the initramfs
# of the VM tier's kernel. A check script that starts after mdguard (an LSB
# script of its own) then proves:
#
# - mdguard was started at boot by /etc/init.d/mdguard (pid file, status, its
#   start line in /var/log/syslog from its pid);
# - it heals: an md RAID1 over two loop devices, one leg failed by hand and
#   written past, re-added by mdguard;
# - reload (SIGHUP, logged by the agent with the same pid), a second start
#   (nothing started), stop (the agent exits cleanly, the pid file goes),
#   status of a stopped service (3), a start with a broken config (fails, the
#   reason in syslog), start and restart (a new pid);
# - sysvinit is booted with psi=0: no /proc/pressure/io on the real kernel, the
#   fallback said once in syslog, a throttled recovery not counted as busy on
#   its own and counted busy while the guest writes through md0;
# - OpenRC: then the native OpenRC script the .deb carries as an example,
#   installed as /etc/init.d/mdguard (as on Alpine or Gentoo): rc-service start
#   under supervise-daemon, a heal, reload, kill -9 and the respawn, stop.
#
#   tests/pkg/initscript-guest.sh sysvinit|openrc ROOT_TARBALL DEB WORKDIR
#
# Needs tests/vm/provision.sh (kernel, qemu). Prints the guest's report and
# exits non-zero unless it ends with "pkgcheck: PASS".
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
init=$1 tarball=$2 deb=$3 work=$4
. "$here/guest-lib.sh"
die() { echo "initscript-guest ($init): $*" >&2; exit 1; }
[[ $init == sysvinit || $init == openrc ]] || die "init: sysvinit or openrc"

R=$work/$init-root
rm -rf "$R"; mkdir -p "$R"
tar -C "$R" -xf "$tarball"
[[ ! -e $R/lib/systemd/systemd ]] || die "the root has systemd"
cp "$deb" "$R/tmp/"
printf '#!/bin/sh\nexit 101\n' > "$R/usr/sbin/policy-rc.d"; chmod 0755 "$R/usr/sbin/policy-rc.d"
chroot "$R" dpkg -i "/tmp/$(basename "$deb")" >/dev/null
rm -f "$R/usr/sbin/policy-rc.d" "$R/tmp/$(basename "$deb")"
# enabled for boot as the package left it
if [[ $init == sysvinit ]]; then
    ls "$R"/etc/rc2.d/S*mdguard >/dev/null 2>&1 || die "not enabled by the package (no /etc/rc2.d/S*mdguard)"
else
    ls "$R"/etc/runlevels/*/mdguard >/dev/null 2>&1 || die "not enabled by the package (no /etc/runlevels/*/mdguard)"
fi
echo "$init" > "$R/etc/pkgcheck.init"

guest_mdadm "$R"
guest_modules "$R" md_mod raid1 loop
printf 'md_mod\nraid1\nloop\n' >> "$R/etc/modules"
echo mdguard-test > "$R/etc/hostname"
# no gettys on the (absent) virtual consoles
sed -i '/getty/d' "$R/etc/inittab"
rm -rf "$R"/usr/share/{man,info,locale} "$R"/var/cache/apt/* "$R"/var/lib/apt/lists/*
# quick probes, no start jitter
cat > "$R/etc/mdguard/mdguard.toml" <<'EOC'
[probe]
initial_interval_s = 1
max_interval_s = 4
[throttle]
jitter_s = 0
EOC

cat > "$R/etc/init.d/pkgcheck" <<'EOS'
#!/bin/sh
### BEGIN INIT INFO
# Provides:          pkgcheck
# Required-Start:    $all mdguard
# Required-Stop:
# Default-Start:     2 3 4 5
# Default-Stop:
# Short-Description: mdguard init script check (tests/pkg/initscript-guest.sh)
### END INIT INFO
[ "$1" = start ] || exit 0
exec > /dev/ttyS0 2>&1
init=$(cat /etc/pkgcheck.init)
conf=/etc/mdguard/mdguard.toml
say() { echo "pkgcheck: $*"; }
fail() {
    say "FAIL: $*"
    grep -h 'mdguard' /var/log/syslog 2>/dev/null | sed 's/^/pkgcheck: syslog: /'
    poweroff -f; exit 1
}
wait_for() {  # wait_for SECONDS CMD...
    t=$1; shift; i=0
    while ! "$@"; do i=$((i + 1)); [ $i -ge $((t * 5)) ] && return 1; sleep 0.2; done
}
pid() { cat /run/mdguard.pid 2>/dev/null; }
running() { _p=$(pid); [ -n "$_p" ] && [ "$(readlink /proc/$_p/exe 2>/dev/null)" = /usr/sbin/mdguard ]; }
logged() { grep -q "mdguard\[$1\]: $2" /var/log/syslog 2>/dev/null; }  # logged PID TEXT
n_agents() { pgrep -x mdguard | wc -l; }

# --- started at boot by the init script, logging to syslog
wait_for 30 running || fail "mdguard not started at boot (pid file: $(pid))"
/etc/init.d/mdguard status > /dev/null || fail "status: not running"
p=$(pid)
wait_for 20 logged "$p" "mdguard .* watching md arrays" || fail "no start line from pid $p in /var/log/syslog"
say "$init started it at boot: pid $p, status: $(/etc/init.d/mdguard status 2>&1 | tail -1)"

# --- the kernel without PSI (sysvinit boot: psi=0)
if grep -qw psi=0 /proc/cmdline; then
    [ ! -e /proc/pressure/io ] || fail "psi=0, yet /proc/pressure/io exists"
    wait_for 10 logged "$p" "no /proc/pressure/io (kernel before 4.20 or PSI disabled)" ||
        fail "the fallback is not said in syslog"
    [ "$(grep -c 'mdguard.*no /proc/pressure/io' /var/log/syslog)" = 1 ] || fail "the fallback said more than once"
    say "psi=0: no /proc/pressure/io, and mdguard said once it falls back to /proc/diskstats"
fi

# --- a heal
for i in 0 1; do
    # on the root (a tmpfs of half the memory), not /run (a tenth of it)
    mkdir -p /legs && truncate -s 64M /legs/leg$i.img && losetup /dev/loop$i /legs/leg$i.img || fail "losetup $i"
done
mdadm --create /dev/md0 --run --level=1 --raid-devices=2 --metadata=1.2 --bitmap=internal \
    --bitmap-chunk=1M --assume-clean /dev/loop0 /dev/loop1 >/dev/null 2>&1 || fail "mdadm --create"
clean() { [ "$(cat /sys/block/md0/md/degraded)" = 0 ] && [ "$(cat /sys/block/md0/md/sync_action)" = idle ]; }
wait_for 60 clean || fail "md0 never clean"
mdadm /dev/md0 --fail /dev/loop1 >/dev/null 2>&1 || fail "mdadm --fail"
dd if=/dev/urandom of=/dev/md0 bs=1M count=4 seek=8 oflag=direct conv=fsync 2>/dev/null
wait_for 120 clean || fail "mdguard did not heal md0: $(cat /proc/mdstat)"
wait_for 10 logged "$p" "md0: re-added loop1" || fail "no re-add of loop1 in syslog"
say "md0 healed: loop1 re-added by pid $p: $(grep -A1 '^md0' /proc/mdstat | tr -s '\n ' ' ')"

# --- busy detection on the real kernel without PSI: a recovery throttled to
# 1000 KiB/s; the resync's own traffic is not busy, the guest's writes are
if grep -qw psi=0 /proc/cmdline; then
    # (flap window 0: failing loop1 again right after its re-add is no flap)
    cat > $conf <<'EOC'
[probe]
initial_interval_s = 3600
max_interval_s = 3600
[heal]
flap_window_s = 0
[throttle]
jitter_s = 0
max_kbps = 1000
busy_divisor = 4
busy_kbps = 1024
EOC
    wait_for 20 logged "$p" "configuration reloaded" || fail "config not reloaded"
    mdadm /dev/md0 --fail /dev/loop1 >/dev/null 2>&1 || fail "mdadm --fail (2)"
    wait_for 20 logged "$p" "md0: leg loop1 failed; probing it in 3600s" || fail "failure not seen"
    dd if=/dev/urandom of=/dev/md0 bs=1M count=48 oflag=direct conv=fsync 2>/dev/null
    kill -USR1 "$p"
    wait_for 30 sh -c '[ "$(cat /sys/block/md0/md/sync_speed_max)" = "1000 (local)" ]' || fail "recovery not throttled to 1000"
    # the first look of the recovery may count the 48 MiB just written (the
    # guest's own); after two more looks only the resync moves: not busy
    sleep 12
    busy() { grep -c 'mdguard.*guest I/O busy' /var/log/syslog; }
    n0=$(busy)
    [ "$(cat /sys/block/md0/md/sync_speed_max)" = "1000 (local)" ] || fail "busy with only the resync running"
    sleep 7
    [ "$(cat /sys/block/md0/md/sync_action)" = recover ] || fail "the recovery ended too soon to judge"
    [ "$(busy)" = "$n0" ] && [ "$(cat /sys/block/md0/md/sync_speed_max)" = "1000 (local)" ] ||
        fail "the resync's own traffic counted as busy"
    dd if=/dev/zero of=/dev/md0 bs=1M count=32 seek=32 oflag=direct 2>/dev/null
    wait_for 20 sh -c "[ \$(grep -c 'mdguard.*md0: resync throttled to 250 KiB/s (guest I/O busy)' /var/log/syslog) -gt $n0 ]" ||
        fail "32 MiB written through md0 did not count as busy ($(cat /sys/block/md0/md/sync_speed_max))"
    wait_for 20 sh -c '[ "$(cat /sys/block/md0/md/sync_speed_max)" = "1000 (local)" ]' || fail "not back to 1000 once idle"
    say "busy without PSI: recovering at 1000 KiB/s, 250 while the guest wrote 32 MiB through md0, 1000 after"
    cat > $conf <<'EOC'
[probe]
initial_interval_s = 1
max_interval_s = 4
[heal]
flap_window_s = 0
[throttle]
jitter_s = 0
EOC
    wait_for 150 clean || fail "md0 did not finish recovering"
fi

# --- reload, a second start, stop, status, a broken config, start, restart
/etc/init.d/mdguard reload > /dev/null || fail "reload"
wait_for 10 logged "$p" "SIGHUP: rereading /etc/mdguard/mdguard.toml" || fail "reload: no SIGHUP in the agent's log"
[ "$(pid)" = "$p" ] || fail "reload changed the pid"
/etc/init.d/mdguard start > /dev/null || fail "a second start failed"
[ "$(pid)" = "$p" ] && [ "$(n_agents)" = 1 ] || fail "a second start started another agent"
/etc/init.d/mdguard stop > /dev/null || fail "stop"
! running && [ "$(n_agents)" = 0 ] || fail "stop left an agent"
[ ! -e /run/mdguard.pid ] || fail "stop left the pid file"
wait_for 10 logged "$p" "mdguard stopping; sync speed limits restored" || fail "no clean stop in syslog"
rc=0; /etc/init.d/mdguard status > /dev/null 2>&1 || rc=$?
[ $rc = 3 ] || fail "status of a stopped mdguard: $rc, not 3"
say "reload (SIGHUP to pid $p), second start (no new agent), stop (clean, pid file gone), status 3"
cp $conf /run/good.toml
echo 'frobnicate = 1' >> $conf
rc=0; /etc/init.d/mdguard start > /dev/null 2>&1 || rc=$?
[ $rc != 0 ] || fail "start with a broken config succeeded"
wait_for 10 grep -q "mdguard.*frobnicate.*refusing to start" /var/log/syslog || fail "the broken config's reason is not in syslog"
! running && [ "$(n_agents)" = 0 ] || fail "an agent runs with a broken config"
cp /run/good.toml $conf
/etc/init.d/mdguard start > /dev/null || fail "start"
running || fail "start: not running"
p1=$(pid)
/etc/init.d/mdguard restart > /dev/null || fail "restart"
running && [ "$(pid)" != "$p1" ] && [ "$(n_agents)" = 1 ] || fail "restart: pid $(pid) (was $p1)"
say "a broken config: start exits $rc, the reason in syslog; start (pid $p1), restart (pid $(pid))"

# --- OpenRC: the native script the package carries as an example
if [ "$init" = openrc ]; then
    /etc/init.d/mdguard stop > /dev/null || fail "stop before the swap"
    install -m 0755 /usr/share/doc/mdguard/examples/mdguard.openrc /etc/init.d/mdguard
    # OpenRC still counts the service started (the LSB script ran it at boot)
    rc-service mdguard zap > /dev/null 2>&1 || fail "rc-service mdguard zap"
    out=$(rc-service mdguard start 2>&1) || fail "rc-service mdguard start (native): $out"
    wait_for 10 sh -c '[ "$(pgrep -x mdguard | wc -l)" = 1 ]' || fail "native: no agent"
    p=$(pgrep -x mdguard)
    rc-service mdguard status 2>&1 | grep -q started || fail "native: status: $(rc-service mdguard status 2>&1)"
    wait_for 20 logged "$p" "mdguard .* watching md arrays" || fail "native: no start line"
    mdadm /dev/md0 --fail /dev/loop1 >/dev/null 2>&1 || fail "mdadm --fail (native)"
    dd if=/dev/urandom of=/dev/md0 bs=1M count=4 seek=16 oflag=direct conv=fsync 2>/dev/null
    wait_for 120 clean || fail "native: md0 not healed"
    wait_for 10 logged "$p" "md0: re-added loop1" || fail "native: no re-add in syslog"
    rc-service mdguard reload > /dev/null 2>&1 || fail "native: reload"
    wait_for 10 logged "$p" "SIGHUP: rereading" || fail "native: reload sent no SIGHUP"
    kill -9 "$p"
    wait_for 20 sh -c "p2=\$(pgrep -x mdguard) && [ \"\$p2\" != $p ]" || fail "native: supervise-daemon did not respawn the agent"
    p2=$(pgrep -x mdguard)
    wait_for 20 logged "$p2" "mdguard .* watching md arrays" || fail "native: the respawned agent did not start"
    rc-service mdguard stop > /dev/null 2>&1 || fail "native: stop"
    wait_for 10 sh -c '! pgrep -x mdguard > /dev/null' || fail "native: stop left an agent"
    say "native OpenRC script: started under supervise-daemon (pid $p), healed md0, reload, killed -9 and respawned (pid $p2), stopped"
fi

say "PASS"
poweroff -f
EOS
chmod 0755 "$R/etc/init.d/pkgcheck"
chroot "$R" update-rc.d pkgcheck defaults >/dev/null 2>&1 || die "update-rc.d pkgcheck"

out=$work/$init-console.log
append="rdinit=/sbin/init loglevel=4"
[[ $init == sysvinit ]] && append="$append psi=0"
guest_boot "$R" "$out" 400 "$append"
grep '^pkgcheck: ' "$out" || true
grep -q '^pkgcheck: PASS' "$out" || { tail -40 "$out"; die "the check did not pass (console: $out)"; }
rm -rf "$R"
