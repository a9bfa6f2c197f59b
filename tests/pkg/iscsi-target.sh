# One iSCSI target on the host for a booted package-tier guest: Debian's tgtd
# serving one LUN backed by an image file, on 127.0.0.1 (the guest reaches it
# at 10.0.2.2), killed (SIGKILL) and started again with the same target, LUN,
# port and SCSI identity, as tests/harness/iscsi.rs does for the VM tier.
# Sourced; needs free_port and $work.
#
#   tgt_init NAME IMAGE   the target's IQN, port and identity (nothing started)
#   tgt_start             start tgtd and configure it (the leg's portal last)
#   tgt_kill              SIGKILL, as a crashed storage server
#   tgt_cleanup           kill it and remove its management socket
tgt_name= tgt_iqn= tgt_image= tgt_port= tgt_ctl= tgt_pid=

tgt_init() {
    tgt_name=$1 tgt_image=$2
    tgt_iqn=iqn.2026-12.org.mdguard.test:$1
    tgt_port=$(free_port)
    # tgtd's management socket /var/run/tgtd/socket.N: N from the port (1..32767;
    # 0 is the system tgtd's), so several runs on one machine do not meet
    tgt_ctl=$(( tgt_port % 32767 + 1 ))
}

tgt_adm() { tgtadm -C "$tgt_ctl" --lld iscsi "$@" >> "$work/tgtd-$tgt_name.log" 2>&1; }

# tgt_try_start: one attempt; tgtd first listens on a scratch portal, so that
# no initiator logs in before the LUN and its identity are there
tgt_try_start() {
    local scratch i
    scratch=$(free_port)
    tgtd -f -C "$tgt_ctl" --iscsi "portal=127.0.0.1:$scratch" </dev/null >> "$work/tgtd-$tgt_name.log" 2>&1 &
    tgt_pid=$!
    for i in $(seq 50); do
        tgt_adm --op show --mode sys && break
        kill -0 "$tgt_pid" 2>/dev/null || return 1
        sleep 0.1
    done
    # the LUN's identity, not tgt's default (the same for every tgtd): scsi_id
    # makes the wwid (naa.6000000000000000 + these 16 hex digits)
    tgt_adm --op new --mode target --tid 1 -T "$tgt_iqn" &&
        tgt_adm --op new --mode logicalunit --tid 1 --lun 1 -b "$tgt_image" &&
        tgt_adm --op update --mode logicalunit --tid 1 --lun 1 \
            --params "scsi_id=5eed00000000d0c5,scsi_sn=mdguard-$tgt_name" &&
        tgt_adm --op bind --mode target --tid 1 -I ALL &&
        tgt_adm --op new --mode portal --param "portal=127.0.0.1:$tgt_port" &&
        tgt_adm --op delete --mode portal --param "portal=127.0.0.1:$scratch" || return 1
    for i in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$tgt_port") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

tgt_start() {
    local i
    for i in $(seq 20); do
        tgt_try_start && { echo "tgt: $tgt_iqn on 127.0.0.1:$tgt_port (tgtd $tgt_pid)" >&2; return 0; }
        tgt_kill
        sleep 0.25
    done
    echo "tgt: could not start tgtd for $tgt_iqn on port $tgt_port (log: $work/tgtd-$tgt_name.log)" >&2
    return 1
}

tgt_kill() {
    [[ -n $tgt_pid ]] || return 0
    kill -9 "$tgt_pid" 2>/dev/null || true
    wait "$tgt_pid" 2>/dev/null || true
    tgt_pid=
}

tgt_cleanup() {
    tgt_kill
    [[ -n $tgt_ctl ]] && rm -f "/var/run/tgtd/socket.$tgt_ctl" "/var/run/tgtd/socket.$tgt_ctl.lock"
    return 0
}
