//! The benchmark (issue 8): mdguard next to what admins use today, on the real
//! kernel of the VM harness (tests/vm/README.md). It reports figures and never
//! fails on a number; it fails only when a scenario cannot be carried out.
//!
//! Run it with `benches/run.sh [--quick]` (provisions, builds the release binary
//! and the initramfs, then runs this with `--ignored`). Env:
//! `MDGUARD_BENCH_REPS` (10), `MDGUARD_BENCH_IDLE_S` (600),
//! `MDGUARD_BENCH_OUTAGE_S` (10: probe/hint outage), `MDGUARD_BENCH_RESYNC_OUTAGE_S`
//! (60), `MDGUARD_BENCH_RESYNC_MIB` (16 written during it), `MDGUARD_BENCH_LEG_MIB`
//! (256: resync legs), `MDGUARD_BENCH_WINDOW_S` (10: how long `mdadm --monitor`
//! is given to re-add), `MDGUARD_BENCH_THROTTLE_KBPS` (5000).
//!
//! Every time is taken on the guest's CLOCK_MONOTONIC (`uevstamp now`; mdguard's
//! log with MDGUARD_LOG_TIMESTAMPS uses the same clock).

#[path = "../tests/harness/mod.rs"]
mod harness;
#[path = "../tests/xs/fixture.rs"]
mod xs_fixture;

use harness::guest::{self, agent_log, log_times};
use harness::{Lab, LabConfig, Layout, Vm};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(300);
/// How long mdguard may take to start watching the arrays.
const WAIT_AGENT: Duration = Duration::from_secs(30);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn num(s: &str) -> f64 {
    s.trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {s:?}"))
}

/// min / median / max of samples (median of an even count: the mean of the two middle ones).
fn stats(v: &[f64]) -> Value {
    if v.is_empty() {
        return json!(null);
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = s.len();
    let med = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    json!({"n": n, "min": r3(s[0]), "median": r3(med), "max": r3(s[n - 1]), "samples": v.iter().map(|x| r3(*x)).collect::<Vec<_>>()})
}

fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn stop_agent(lab: &mut Lab) {
    lab.vm.sh("kill $(cat /tmp/mdguard.pid)");
    lab.vm
        .wait_for("mdguard stopped", Duration::from_secs(30), |vm| {
            (vm.run("kill -0 $(cat /tmp/mdguard.pid)", Duration::from_secs(10))
                .status
                != 0)
                .then_some(())
        });
    lab.vm
        .sh("mv /tmp/mdguard.log /tmp/mdguard.log.$(date +%s)");
}

/// Keep the guest's logs of a scenario under target/bench/logs/.
fn save_logs(lab: &mut Lab, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench/logs");
    std::fs::create_dir_all(&dir).unwrap();
    let all = lab.vm.sh(
        "for f in /tmp/mdguard.log* /tmp/monitor.log /tmp/udev.log /tmp/udev.out; do \
         [ -e $f ] && { echo \"=== $f\"; cat $f; }; done; echo '=== dmesg'; dmesg | tail -200; true",
    );
    std::fs::write(dir.join(format!("{name}.log")), all).unwrap();
}

/// The config every mdguard re-add scenario runs with (besides `[[reconnect]]`).
/// Probe intervals are the shipped defaults; the start jitter (a deliberate
/// random 0..10 s delay before each add, so a host's guests do not all resync
/// at once) is off, so the figures show the mechanism, and flap detection is
/// off (window 0 s) because the repetitions fail the same leg every few seconds.
const AGENT_CFG: &str = "[probe]\ninitial_interval_s = 2\nmax_interval_s = 60\ntimeout_ms = 5000\n\
[throttle]\njitter_s = 0\n[heal]\nflap_window_s = 0\n";

/// A one-array lab for a heal scenario, md0 in sync.
fn lab(name: &str, leg_mib: u64) -> Lab {
    Lab::start_clean(
        name,
        LabConfig::healing(Layout::Mirror, Some(5), leg_mib),
        WAIT,
    )
}

/// Kill leg 1's server and write `mib` MiB at `seek_mib` so md fails the leg.
fn fail_leg(lab: &mut Lab, seek_mib: u64, mib: u64) {
    lab.legs[1].server.kill();
    lab.vm.sh(&format!(
        "dd if=/dev/urandom of=/dev/md0 bs=1M seek={seek_mib} count={mib} oflag=direct conv=notrunc 2>/dev/null"
    ));
    lab.wait_snapshot("md0 degraded", Duration::from_secs(60), |s| {
        s.get("md0", "degraded") == Some("1")
    });
}

fn wait_healed(lab: &mut Lab) {
    lab.wait_healed("md0", WAIT);
    // let md settle (bitmap cleared, superblocks written) before the next failure
    std::thread::sleep(Duration::from_secs(2));
}

/// The dead leg's node goes away (as a detached vbd's does): disconnect it and
/// take it out of md.
fn drop_node(lab: &mut Lab, node: &str) {
    lab.vm.wait_for(
        &format!("{node} out of md0"),
        Duration::from_secs(60),
        |vm| {
            let st = vm.run(
                &format!(
                    "nbd-client -d /dev/{node} >/dev/null 2>&1; mdadm /dev/md0 --remove failed >/dev/null 2>&1; \
                     mdadm /dev/md0 --remove detached >/dev/null 2>&1; [ ! -e /sys/block/md0/md/dev-{node} ]"
                ),
                Duration::from_secs(30),
            );
            (st.status == 0).then_some(())
        },
    );
}

/// Connect the restarted leg-1 server under `node`. Returns when the node
/// was announced (the kernel's uevent, as received by a separate listener in
/// the guest: `uevstamp`) and when nbd-client returned, on CLOCK_MONOTONIC.
fn connect_node(lab: &mut Lab, node: &str) -> (f64, f64) {
    let port = lab.legs[1].server.port();
    let out = lab.vm.sh(&format!(
        "rm -f /tmp/uev.out; uevstamp {node} 30 > /tmp/uev.out & \
         while ! grep -q READY /tmp/uev.out 2>/dev/null; do usleep 10000; done; \
         nbd-client 10.0.2.2 {port} /dev/{node} -N leg -t 5 >/dev/null 2>&1; b=$(uevstamp now); \
         wait; echo $(tail -1 /tmp/uev.out | cut -d' ' -f1) $b; [ \"$(cat /sys/block/{node}/size)\" -gt 0 ]"
    ));
    let mut w = out.split_whitespace();
    (num(w.next().unwrap()), num(w.next().unwrap()))
}

/// The event path: the leg returns as a new node (nbd1, nbd2, nbd3 in turn).
fn bench_event(reps: usize) -> (Value, Vec<String>) {
    let mut lab = lab("bench-event", 32);
    let mut cfg = AGENT_CFG.to_string();
    cfg.push_str("# no [[reconnect]]: the leg must come back as a node of its own\n");
    guest::start_agent(&mut lab.vm, &cfg, "run --foreground", WAIT_AGENT);
    let nodes = ["nbd1", "nbd2", "nbd3"];
    let (mut lat, mut connect) = (Vec::new(), Vec::new());
    for i in 0..reps {
        let (cur, nxt) = (nodes[i % 3], nodes[(i + 1) % 3]);
        fail_leg(&mut lab, 1 + i as u64 % 16, 1);
        drop_node(&mut lab, cur);
        lab.legs[1].server.restart();
        let before = log_times(&agent_log(&mut lab.vm), &format!("re-added {nxt}")).len();
        let (ev, b) = connect_node(&mut lab, nxt);
        let t = lab.vm.wait_for("mdguard re-adds the new node", WAIT, |vm| {
            let l = agent_log(vm);
            let t = log_times(&l, &format!("re-added {nxt}"));
            (t.len() > before).then(|| *t.last().unwrap())
        });
        lat.push(t - ev);
        connect.push(b - ev);
        eprintln!("bench: event rep {i}: {cur} -> {nxt}: uevent -> re-added {:.3} s (nbd-client returned {:.3} s after the uevent)", t - ev, b - ev);
        wait_healed(&mut lab);
    }
    let log = agent_log(&mut lab.vm);
    save_logs(&mut lab, "event");
    (
        json!({"usable_to_readd_s": stats(&lat), "nbd_client_returned_after_uevent_s": stats(&connect)}),
        vec![log],
    )
}

/// The probe path (mdguard's own timer) and the hint path (SIGUSR1 right after
/// the server is back: the engine entry dom0's xenstore probe request takes),
/// alternating, on one node (nbd1) that mdguard reconnects itself.
fn bench_probe_hint(reps: usize, outage_s: u64) -> Value {
    let mut lab = lab("bench-probe", 32);
    let mut cfg = AGENT_CFG.to_string();
    cfg.push_str(&lab.reconnect_cfg(1, " -t 5"));
    guest::start_agent(&mut lab.vm, &cfg, "run --foreground", WAIT_AGENT);
    let (mut probe, mut hint, mut rtt, mut outages) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for i in 0..2 * reps {
        let hinted = i % 2 == 1;
        // The outage is drawn uniformly from [outage_s, 2 outage_s) (fixed seed)
        // so the server returns at any point of mdguard's backoff schedule
        // (retries 2, 6, 14, 30, 62 s after the failure), not at one lucky point.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let this = outage_s as f64 * (1.0 + (x % 1000) as f64 / 1000.0);
        outages.push(this);
        let t_kill = Instant::now();
        fail_leg(&mut lab, 1 + i as u64 % 16, 1);
        let left = Duration::from_secs_f64(this).saturating_sub(t_kill.elapsed());
        std::thread::sleep(left);
        let before = log_times(&agent_log(&mut lab.vm), "re-added nbd1").len();
        lab.legs[1].server.restart();
        let t = Instant::now();
        let usable = num(&lab.vm.sh(if hinted {
            "uevstamp now; kill -USR1 $(cat /tmp/mdguard.pid)"
        } else {
            "uevstamp now"
        }));
        rtt.push(t.elapsed().as_secs_f64());
        let readd = lab.vm.wait_for("mdguard re-adds nbd1", WAIT, |vm| {
            let t = log_times(&agent_log(vm), "re-added nbd1");
            (t.len() > before).then(|| *t.last().unwrap())
        });
        let d = readd - usable;
        eprintln!(
            "bench: {} rep {}: outage {this:.1} s, server back -> re-added {d:.3} s",
            if hinted { "hint" } else { "probe" },
            i / 2
        );
        if hinted {
            hint.push(d)
        } else {
            probe.push(d)
        }
        wait_healed(&mut lab);
    }
    save_logs(&mut lab, "probe-hint");
    json!({"probe": {"usable_to_readd_s": stats(&probe)}, "hint": {"usable_to_readd_s": stats(&hint)},
           "outage_s": outage_s, "outages_s": stats(&outages), "usable_timestamp_step_rtt_s": stats(&rtt)})
}

/// udev's 64-md-raid-assembly.rules runs `mdadm --incremental --export $devnode
/// --offroot` for an added or changed block device that blkid calls a
/// linux_raid_member. The guest has no udev (and the kernel no uevent helper):
/// `uevstamp exec` listens to uevents and runs this for each block event, one
/// at a time; it runs that command for every add/change of a non-empty nbd
/// device (mdadm itself rejects what is no member), and logs when it started
/// and returned.
const UEVENT_HELPER: &str = r#"#!/bin/sh
[ "$SUBSYSTEM" = block ] || exit 0
case "$ACTION" in add|change) ;; *) exit 0 ;; esac
case "$DEVNAME" in nbd*) ;; *) exit 0 ;; esac
[ "$(cat /sys/class/block/$DEVNAME/size 2>/dev/null)" -gt 0 ] 2>/dev/null || exit 0
[ -e /tmp/udev.on ] || exit 0
a=$(uevstamp now)
out=$(/sbin/mdadm --incremental --export /dev/$DEVNAME --offroot 2>&1 | tr '\n' ' ')
rc=$?
b=$(uevstamp now)
echo "$a $b $DEVNAME $ACTION rc=$rc $out" >> /tmp/udev.log
"#;

/// mdadm --monitor's alert program: one timestamped line per event.
const MONITOR_PROGRAM: &str = "#!/bin/sh\necho \"$(uevstamp now) $*\" >> /tmp/monitor.log\n";

/// The alternatives on the same array, one guest: `mdadm --monitor` runs
/// throughout; each repetition the leg returns as a new node first with no
/// udev (only the monitor could act: does it re-add within the window?), then
/// is unplugged and plugged again with the udev emulation on
/// (`mdadm --incremental` with `POLICY action=re-add`).
fn bench_alternatives(reps: usize, window_s: u64) -> Value {
    let mut lab = lab("bench-mdadm", 32);
    lab.vm.sh(&format!(
        "mkdir -p /etc/mdadm && printf 'POLICY action=re-add\\n' > /etc/mdadm/mdadm.conf && \
         cat > /bin/uevent-helper <<'EOF'\n{UEVENT_HELPER}EOF\n\
         cat > /bin/monitor-event <<'EOF'\n{MONITOR_PROGRAM}EOF\n\
         chmod +x /bin/uevent-helper /bin/monitor-event\n\
         setsid uevstamp exec /bin/uevent-helper </dev/null >/tmp/udev.out 2>&1 &\n\
         setsid mdadm --monitor --scan --program=/bin/monitor-event </dev/null >/tmp/monitor.out 2>&1 &\n\
         echo $! > /tmp/monitor.pid"
    ));
    std::thread::sleep(Duration::from_secs(2));
    let alive = lab
        .vm
        .run("kill -0 $(cat /tmp/monitor.pid)", Duration::from_secs(10))
        .status
        == 0;
    assert!(
        alive,
        "mdadm --monitor exited: {}",
        lab.vm.sh("cat /tmp/monitor.out")
    );
    let nodes = ["nbd1", "nbd2", "nbd3"];
    let (mut incr, mut fail_evt, mut monitor_readds) = (Vec::new(), Vec::new(), 0u32);
    let mut events_after_return: Vec<String> = Vec::new();
    for i in 0..reps {
        let (cur, nxt) = (nodes[i % 3], nodes[(i + 1) % 3]);
        let mon_before = lab.vm.sh("cat /tmp/monitor.log 2>/dev/null; true");
        // printk's clock against CLOCK_MONOTONIC: a marker line between two stamps
        let cal = lab.vm.sh(
            "dmesg -c >/dev/null; a=$(uevstamp now); echo bench-mark > /dev/kmsg; b=$(uevstamp now); \
             k=$(dmesg | grep -m1 bench-mark | sed 's/^\\[ *\\([0-9.]*\\)\\].*/\\1/'); echo $a $b $k",
        );
        let c: Vec<f64> = cal.split_whitespace().map(num).collect();
        let offset = (c[0] + c[1]) / 2.0 - c[2];
        fail_leg(&mut lab, 1 + i as u64 % 16, 1);
        // the monitor's Fail event against the kernel's own line
        let (fail_at, kern_at) = lab.vm.wait_for(
            "mdadm --monitor's Fail event",
            Duration::from_secs(120),
            |vm| {
                let log = vm.sh("cat /tmp/monitor.log 2>/dev/null; true");
                let new = &log[mon_before.len().min(log.len())..];
                let f = new
                    .lines()
                    .find(|l| l.contains(" Fail "))
                    .and_then(|l| l.split_whitespace().next())
                    .map(num)?;
                let k = vm
                    .sh("dmesg | grep -m1 'Disk failure on' | sed 's/^\\[ *\\([0-9.]*\\)\\].*/\\1/'")
                    .trim()
                    .parse::<f64>()
                    .ok()?;
                Some((f, k + offset))
            },
        );
        fail_evt.push(fail_at - kern_at);
        drop_node(&mut lab, cur);
        lab.legs[1].server.restart();
        // (a) only mdadm --monitor: does anything re-add the returned leg?
        let mon_mark = lab.vm.sh("cat /tmp/monitor.log");
        let (b, _) = connect_node(&mut lab, nxt);
        std::thread::sleep(Duration::from_secs(window_s));
        let s = lab.snapshot();
        if s.member("md0", nxt).is_some() || s.get("md0", "degraded") != Some("1") {
            monitor_readds += 1;
        }
        let mon_now = lab.vm.sh("cat /tmp/monitor.log");
        events_after_return.extend(
            mon_now[mon_mark.len().min(mon_now.len())..]
                .lines()
                .map(str::to_string),
        );
        // (b) udev emulation on: unplug, plug, mdadm --incremental
        lab.vm.sh(&format!(
            "nbd-client -d /dev/{nxt} >/dev/null 2>&1; touch /tmp/udev.on; : > /tmp/udev.log"
        ));
        let (b2, _) = connect_node(&mut lab, nxt);
        let done = lab.vm.wait_for(
            "mdadm --incremental re-adds",
            Duration::from_secs(60),
            |vm| {
                let l = vm.sh("cat /tmp/udev.log");
                let line = l.lines().find(|l| l.contains(&format!(" {nxt} ")))?;
                let present = vm
                    .run(
                        &format!("[ -e /sys/block/md0/md/dev-{nxt} ]"),
                        Duration::from_secs(10),
                    )
                    .status
                    == 0;
                if !present {
                    return None;
                }
                line.split_whitespace().nth(1).map(num)
            },
        );
        lab.vm.sh("rm -f /tmp/udev.on");
        incr.push(done - b2);
        eprintln!(
            "bench: mdadm rep {i}: monitor Fail event {:.3} s after the kernel's line; monitor alone: {} after {window_s} s (usable at {b:.2}); incremental: usable -> re-added {:.3} s",
            fail_at - kern_at,
            if monitor_readds > 0 { "RE-ADDED" } else { "no re-add" },
            done - b2
        );
        wait_healed(&mut lab);
    }
    let udev = lab.vm.sh("cat /tmp/udev.log");
    save_logs(&mut lab, "mdadm");
    json!({
        "incremental": {"usable_to_readd_s": stats(&incr), "udev_log_last_rep": udev},
        "monitor": {"readds": monitor_readds, "reps": reps, "window_s": window_s,
                    "fail_event_after_kernel_s": stats(&fail_evt),
                    "events_after_leg_returned": events_after_return},
    })
}

/// Write `mib` MiB at distinct random 1 MiB-aligned offsets of md0.
fn scatter_writes(lab: &mut Lab, mib: u64, leg_mib: u64, seed: u64) {
    let mut x = seed | 1;
    let mut offs: Vec<u64> = Vec::new();
    let usable = leg_mib - 2; // md's data area is a little smaller than the leg
    while (offs.len() as u64) < mib.min(usable) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let o = x % usable;
        if !offs.contains(&o) {
            offs.push(o);
        }
    }
    let script: Vec<String> = offs
        .iter()
        .map(|o| format!("dd if=/dev/urandom of=/dev/md0 bs=1M seek={o} count=1 oflag=direct conv=notrunc 2>/dev/null"))
        .collect();
    lab.vm.sh(&script.join(" && "));
}

/// One outage of the resync lab; returns its figures.
#[allow(clippy::too_many_arguments)]
fn outage(
    lab: &mut Lab,
    label: &str,
    outage_s: u64,
    mib: u64,
    leg_mib: u64,
    with_io: bool,
    seed: u64,
) -> Value {
    let t_kill = Instant::now();
    fail_leg(lab, 0, 1);
    scatter_writes(lab, mib.saturating_sub(1), leg_mib, seed);
    std::thread::sleep(Duration::from_secs(outage_s).saturating_sub(t_kill.elapsed()));
    let before = log_times(&agent_log(&mut lab.vm), "re-added nbd1").len();
    // watcher: when md0 is whole again; and the guest's I/O during the resync
    let io = if with_io {
        "while [ \"$(cat /sys/block/md0/md/sync_action)\" = idle ]; do usleep 20000; done; \
         iolat /dev/md0 600 7 /sys/block/md0/md/sync_action > /tmp/lat.out 2>&1;"
    } else {
        ""
    };
    lab.vm.sh(&format!(
        "rm -f /tmp/clean.at /tmp/lat.out; (while [ \"$(cat /sys/block/md0/md/degraded)\" != 0 ] || \
         [ \"$(cat /sys/block/md0/md/sync_action)\" != idle ]; do usleep 50000; done; \
         uevstamp now > /tmp/clean.at.t && mv /tmp/clean.at.t /tmp/clean.at) </dev/null >/dev/null 2>&1 & \
         ({io} true) </dev/null >/dev/null 2>&1 &"
    ));
    lab.legs[1].server.restart();
    lab.vm.sh("kill -USR1 $(cat /tmp/mdguard.pid)");
    let readd = lab.vm.wait_for("mdguard re-adds nbd1", WAIT, |vm| {
        let t = log_times(&agent_log(vm), "re-added nbd1");
        (t.len() > before).then(|| *t.last().unwrap())
    });
    let clean = lab
        .vm
        .wait_for("md0 whole again", Duration::from_secs(1800), |vm| {
            vm.read("/tmp/clean.at").and_then(|s| s.parse::<f64>().ok())
        });
    // what the storage server wrote to its image since it restarted: the
    // resync plus md's superblock/bitmap updates (and, with_io, the guest's writes)
    let pid = lab.legs[1].server.pid();
    let io_file = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let wchar: u64 = io_file
        .lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut v = json!({
        "case": label, "outage_s": outage_s, "written_during_outage_mib": mib,
        "resync_s": r3(clean - readd), "leg_bytes_written_by_server": wchar,
        "leg_mib_written_by_server": r3(wchar as f64 / 1048576.0),
    });
    if with_io {
        let lat = lab
            .vm
            .wait_for("iolat output", Duration::from_secs(120), |vm| {
                let s = vm.read("/tmp/lat.out")?;
                s.contains("write ops=").then_some(s)
            });
        v["guest_io"] = parse_lat(&lat);
    }
    eprintln!("bench: resync {label}: {v}");
    wait_healed(lab);
    v
}

/// iolat's lines as JSON.
fn parse_lat(out: &str) -> Value {
    let mut v = json!({});
    for l in out.lines() {
        let mut w = l.split_whitespace();
        let Some(kind) = w.next() else { continue };
        if let Some(s) = kind.strip_prefix("seconds=") {
            v["seconds"] = json!(num(s));
            continue;
        }
        let mut m = serde_json::Map::new();
        for kv in w {
            if let Some((k, x)) = kv.split_once('=') {
                m.insert(k.to_string(), json!(x.parse::<u64>().unwrap_or(0)));
            }
        }
        v[kind] = Value::Object(m);
    }
    v
}

fn bench_resync(outage_s: u64, mib: u64, leg_mib: u64, throttle_kbps: u64) -> Value {
    let mut lab = lab("bench-resync", leg_mib);
    // first no throttle of mdguard's at all: no ceiling, and no division while
    // the guest's I/O is busy (the kernel's own 200000 KiB/s limit applies)
    let mut cfg = AGENT_CFG.replace("jitter_s = 0\n", "jitter_s = 0\nbusy_divisor = 1\n");
    cfg.push_str(&lab.reconnect_cfg(1, " -t 5"));
    guest::start_agent(&mut lab.vm, &cfg, "run --foreground", WAIT_AGENT);
    // the guest's I/O with nothing else going on
    let base = lab.vm.sh("iolat /dev/md0 10 7");
    let mut out = vec![json!({"case": "healthy, no resync", "guest_io": parse_lat(&base)})];
    out.push(outage(
        &mut lab,
        "bitmap (1 MiB chunk)",
        outage_s,
        mib,
        leg_mib,
        false,
        11,
    ));
    lab.vm.sh("mdadm --grow /dev/md0 --bitmap=none");
    out.push(outage(
        &mut lab,
        "no bitmap",
        outage_s,
        mib,
        leg_mib,
        false,
        12,
    ));
    // the guest's I/O during a full recovery, unthrottled and throttled
    let short = outage_s.min(10);
    out.push(outage(
        &mut lab,
        "no bitmap, guest I/O, mdguard throttle off (max_kbps = 0, busy_divisor = 1)",
        short,
        1,
        leg_mib,
        true,
        13,
    ));
    stop_agent(&mut lab);
    let mut cfg = AGENT_CFG.replace(
        "jitter_s = 0\n",
        &format!("jitter_s = 0\nmax_kbps = {throttle_kbps}\n"),
    );
    cfg.push_str(&lab.reconnect_cfg(1, " -t 5"));
    guest::start_agent(&mut lab.vm, &cfg, "run --foreground", WAIT_AGENT);
    out.push(outage(
        &mut lab,
        &format!("no bitmap, guest I/O, mdguard throttle max_kbps = {throttle_kbps} (/4 while the guest's I/O is busy: the default busy_divisor)"),
        short,
        1,
        leg_mib,
        true,
        14,
    ));
    save_logs(&mut lab, "resync");
    json!(out)
}

/// Per-process counters from /proc, summed over its threads.
fn proc_counters(vm: &mut Vm, pidfile: &str) -> Value {
    let out = vm.sh(&format!(
        "p=$(cat {pidfile}); v=0; n=0; for t in /proc/$p/task/*; do \
         v=$((v + $(awk '/^voluntary_ctxt_switches/ {{print $2}}' $t/status))); \
         n=$((n + $(awk '/^nonvoluntary_ctxt_switches/ {{print $2}}' $t/status))); done; \
         echo $v $n $(awk '{{print $14, $15}}' /proc/$p/stat) \
         $(awk '/^VmHWM/ {{print $2}}' /proc/$p/status) $(awk '/^VmRSS/ {{print $2}}' /proc/$p/status) \
         $(ls /proc/$p/task | wc -l) $(cut -d' ' -f1 /proc/uptime)"
    ));
    let f: Vec<f64> = out.split_whitespace().map(num).collect();
    json!({"voluntary_ctxt": f[0], "nonvoluntary_ctxt": f[1], "utime_ticks": f[2], "stime_ticks": f[3],
           "vmhwm_kib": f[4], "vmrss_kib": f[5], "threads": f[6], "uptime": f[7]})
}

fn bench_footprint(idle_s: u64) -> Value {
    let mut lab = lab("bench-idle", 32);
    lab.vm.sh(&format!(
        "cat > /bin/monitor-event <<'EOF'\n{MONITOR_PROGRAM}EOF\nchmod +x /bin/monitor-event\n\
         setsid mdadm --monitor --scan --program=/bin/monitor-event </dev/null >/tmp/monitor.out 2>&1 & \
         echo $! > /tmp/monitor.pid"
    ));
    let mut cfg = AGENT_CFG.to_string();
    cfg.push_str(&lab.reconnect_cfg(1, " -t 5"));
    guest::start_agent(&mut lab.vm, &cfg, "run --foreground", WAIT_AGENT);
    std::thread::sleep(Duration::from_secs(5));
    let clk_tck = num(&lab.vm.sh("getconf CLK_TCK 2>/dev/null || echo 100"));
    let a = [
        proc_counters(&mut lab.vm, "/tmp/mdguard.pid"),
        proc_counters(&mut lab.vm, "/tmp/monitor.pid"),
    ];
    std::thread::sleep(Duration::from_secs(idle_s));
    let b = [
        proc_counters(&mut lab.vm, "/tmp/mdguard.pid"),
        proc_counters(&mut lab.vm, "/tmp/monitor.pid"),
    ];
    let mut out = json!({"idle_s": idle_s, "clk_tck": clk_tck});
    for (i, name) in ["mdguard", "mdadm_monitor"].iter().enumerate() {
        let d = |k: &str| b[i][k].as_f64().unwrap() - a[i][k].as_f64().unwrap();
        let secs = d("uptime");
        let wake = d("voluntary_ctxt") + d("nonvoluntary_ctxt");
        out[*name] = json!({
            "seconds": r3(secs),
            "context_switches": wake,
            "context_switches_per_min": r3(wake * 60.0 / secs),
            "voluntary": d("voluntary_ctxt"),
            "cpu_s": r3((d("utime_ticks") + d("stime_ticks")) / clk_tck),
            "cpu_s_total_since_start": r3((b[i]["utime_ticks"].as_f64().unwrap() + b[i]["stime_ticks"].as_f64().unwrap()) / clk_tck),
            "peak_rss_kib": b[i]["vmhwm_kib"], "rss_kib": b[i]["vmrss_kib"], "threads": b[i]["threads"],
        });
    }
    save_logs(&mut lab, "footprint");
    eprintln!("bench: footprint {out}");
    out
}

/// xenstore writes of an idle healthy agent: a real xenstored (the xenstore
/// tier's fixture, tests/xs) with its trace file on, the agent connected as
/// guest domain 7 over a root whose /proc/mdstat is a healthy capture
/// (tests/fixtures/mdstat/vm-clean.txt). Counts the guest's WRITE requests
/// after its first report has settled.
fn bench_xenstore(idle_s: u64) -> Value {
    if !std::path::Path::new(xs_fixture::XENSTORED).exists() {
        return json!({"skipped": format!("{} missing: run tests/xs/provision.sh", xs_fixture::XENSTORED)});
    }
    let tmp = tempfile::tempdir().unwrap();
    let trace = tmp.path().join("xenstored.trace");
    let mut xs = xs_fixture::Xenstored::start_with(&["-T", trace.to_str().unwrap()]);
    let guest = xs.add_guest(7, "bench7");
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("proc")).unwrap();
    std::fs::write(
        root.join("proc/mdstat"),
        include_str!("../tests/fixtures/mdstat/vm-clean.txt"),
    )
    .unwrap();
    let cfg = tmp.path().join("mdguard.toml");
    std::fs::write(&cfg, AGENT_CFG).unwrap();
    let log = tmp.path().join("agent.log");
    let mut agent = std::process::Command::new(env!("CARGO_BIN_EXE_mdguard"))
        .args(["run", "--foreground", "--root"])
        .arg(&root)
        .arg("--config")
        .arg(&cfg)
        .env("XENSTORED_PATH", &guest)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let writes = || -> Vec<String> {
        std::fs::read_to_string(&trace)
            .unwrap_or_default()
            .lines()
            // the guest writes under its home with relative paths
            .filter(|l| {
                l.starts_with("IN ") && l.contains(" WRITE (") && l.contains("data/mdguard/")
            })
            .map(str::to_string)
            .collect()
    };
    let first = xs_fixture::wait_for(Duration::from_secs(30), || {
        writes()
            .iter()
            .any(|l| l.contains("data/mdguard/health"))
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(5));
    let at_start = writes();
    std::thread::sleep(Duration::from_secs(idle_s));
    let at_end = writes();
    let _ = agent.kill();
    let _ = agent.wait();
    let v = json!({
        "idle_s": idle_s, "first_report_seen": first.is_some(),
        "writes_in_first_report": at_start.len(), "writes_while_idle": at_end.len() - at_start.len(),
        "first_report_sample": at_start.iter().take(3).collect::<Vec<_>>(),
        "trace_head": std::fs::read_to_string(&trace).unwrap_or_default().lines().take(if first.is_some() { 0 } else { 30 }).collect::<Vec<_>>(),
        "agent_log": std::fs::read_to_string(&log).unwrap_or_default(),
    });
    eprintln!("bench: xenstore {v}");
    v
}

/// Run one scenario; a panic (a scenario that could not be carried out) is
/// recorded as `{"error": ...}` so the other figures are still written.
fn guarded<T>(name: &str, errors: &mut Vec<String>, f: impl FnOnce() -> T) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            eprintln!("bench: {name} failed: {msg}");
            errors.push(format!("{name}: {msg}"));
            None
        }
    }
}

fn ms(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        v => format!(
            "{:.0} / {:.0} / {:.0} ms",
            v["min"].as_f64().unwrap() * 1000.0,
            v["median"].as_f64().unwrap() * 1000.0,
            v["max"].as_f64().unwrap() * 1000.0
        ),
    }
}

fn table(r: &Value) -> String {
    let mut t = String::new();
    let reps = r["config"]["reps"].as_u64().unwrap_or(0);
    t.push_str(&format!(
        "### Leg usable again -> re-add issued (min / median / max over {reps} repetitions)\n\n\
         | path | who | usable -> re-add |\n| --- | --- | --- |\n"
    ));
    let ra = &r["readd"];
    t.push_str(&format!(
        "| event: leg returns as a new node (uevent) | mdguard | {} |\n",
        ms(&ra["event"]["usable_to_readd_s"])
    ));
    t.push_str(&format!(
        "| event: same | `mdadm --incremental`, `POLICY action=re-add`, udev emulated | {} |\n",
        ms(&ra["mdadm"]["incremental"]["usable_to_readd_s"])
    ));
    let mon = &ra["mdadm"]["monitor"];
    t.push_str(&format!(
        "| event: same | `mdadm --monitor --scan` | never: {} re-adds in {} returns (each watched {} s); its Fail event came {} after the kernel's |\n",
        mon["readds"], mon["reps"], mon["window_s"], ms(&mon["fail_event_after_kernel_s"])
    ));
    t.push_str(&format!(
        "| probe: same node (mdguard reconnects it), server back after {}-{} s, mdguard's timer (2 s doubling to 60 s) | mdguard | {} |\n",
        ra["probe_hint"]["outage_s"], ra["probe_hint"]["outage_s"].as_u64().unwrap_or(0) * 2, ms(&ra["probe_hint"]["probe"]["usable_to_readd_s"])
    ));
    t.push_str(&format!(
        "| hint: same, SIGUSR1 right after (= dom0's probe request) | mdguard | {} |\n\n",
        ms(&ra["probe_hint"]["hint"]["usable_to_readd_s"])
    ));
    if let Some(rs) = r["resync"].as_array() {
        t.push_str("### Resync and the guest's I/O (4 KiB O_DIRECT random, QD1)\n\n\
                    | case | outage | written | resync | leg MiB written by its server | read p50 / p99 | write p50 / p99 |\n\
                    | --- | --- | --- | --- | --- | --- | --- |\n");
        for c in rs {
            let io = |k: &str| {
                let x = &c["guest_io"][k];
                if x.is_null() {
                    "-".to_string()
                } else {
                    format!(
                        "{:.1} / {:.1} ms",
                        x["p50_us"].as_f64().unwrap() / 1000.0,
                        x["p99_us"].as_f64().unwrap() / 1000.0
                    )
                }
            };
            let opt = |k: &str, unit: &str| match &c[k] {
                Value::Null => "-".to_string(),
                v => format!("{v}{unit}"),
            };
            let leg = match c["leg_mib_written_by_server"].as_f64() {
                None => "-".to_string(),
                Some(m) if c["guest_io"].is_null() => format!("{m:.1}"),
                Some(m) => format!("{m:.1} (with the guest's writes)"),
            };
            t.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                c["case"].as_str().unwrap_or(""),
                opt("outage_s", " s"),
                opt("written_during_outage_mib", " MiB"),
                opt("resync_s", " s"),
                leg,
                io("read"),
                io("write")
            ));
        }
        t.push('\n');
    }
    let fp = &r["footprint"];
    if !fp.is_null() {
        t.push_str(&format!(
            "### Footprint while healthy ({} s, same guest, side by side)\n\n\
             | | context switches / min | CPU s | peak RSS | threads |\n| --- | --- | --- | --- | --- |\n",
            fp["idle_s"]
        ));
        for (k, name) in [
            ("mdguard", "`mdguard run`"),
            ("mdadm_monitor", "`mdadm --monitor --scan`"),
        ] {
            let x = &fp[k];
            let f = |k: &str| x[k].as_f64().unwrap_or(f64::NAN);
            t.push_str(&format!(
                "| {name} | {:.1} | {:.2} | {:.0} KiB | {:.0} |\n",
                f("context_switches_per_min"),
                f("cpu_s"),
                f("peak_rss_kib"),
                f("threads")
            ));
        }
        t.push('\n');
    }
    let x = &r["xenstore_idle"];
    if !x.is_null() {
        t.push_str(&format!(
            "xenstore writes by an idle healthy agent (real xenstored, {} s): {} (its first report: {} writes).\n\n",
            x["idle_s"], x["writes_while_idle"], x["writes_in_first_report"]
        ));
    }
    t.push_str(&format!(
        "Binary (stripped, x86_64): mdguard {} bytes; Debian's mdadm {} bytes.\n",
        r["binary"]["mdguard_bytes"], r["binary"]["mdadm_bytes"]
    ));
    if let Some(p) = r["parse"].as_array() {
        t.push_str("\n### mdstat parser (host, release build)\n\n| file | ns/parse min / median / max |\n| --- | --- |\n");
        for f in p {
            let n = &f["ns_per_parse"];
            t.push_str(&format!(
                "| {} | {:.0} / {:.0} / {:.0} |\n",
                f["file"].as_str().unwrap_or(""),
                n["min"].as_f64().unwrap_or(0.0),
                n["median"].as_f64().unwrap_or(0.0),
                n["max"].as_f64().unwrap_or(0.0)
            ));
        }
    }
    t
}

/// Print the table of a results file again (e.g. benches/results/latest.json).
#[test]
#[ignore = "benchmark: run benches/run.sh"]
fn table_from_json() {
    let Some(p) = std::env::var_os("MDGUARD_BENCH_TABLE_FROM") else {
        return;
    };
    let r: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    println!("{}", table(&r));
}

#[test]
#[ignore = "benchmark: run benches/run.sh"]
fn bench() {
    if std::env::var_os("MDGUARD_BENCH_TABLE_FROM").is_some() {
        return;
    }
    let reps = env_u64("MDGUARD_BENCH_REPS", 10) as usize;
    let idle_s = env_u64("MDGUARD_BENCH_IDLE_S", 600);
    let outage_s = env_u64("MDGUARD_BENCH_OUTAGE_S", 10);
    let resync_outage_s = env_u64("MDGUARD_BENCH_RESYNC_OUTAGE_S", 60);
    let resync_mib = env_u64("MDGUARD_BENCH_RESYNC_MIB", 16);
    let leg_mib = env_u64("MDGUARD_BENCH_LEG_MIB", 256);
    let window_s = env_u64("MDGUARD_BENCH_WINDOW_S", 10);
    let throttle = env_u64("MDGUARD_BENCH_THROTTLE_KBPS", 5000);
    let only = std::env::var("MDGUARD_BENCH_ONLY").unwrap_or_default();
    let want = |s: &str| only.is_empty() || only.split(',').any(|o| o == s);
    let t0 = Instant::now();
    let load_start = harness::host_sh("cat /proc/loadavg");
    let repo = env!("CARGO_MANIFEST_DIR");
    let out_dir = std::path::Path::new(repo).join("target/bench");
    std::fs::create_dir_all(&out_dir).unwrap();

    // the footprint guest idles alongside the others (it only counts)
    let fp = want("footprint").then(|| std::thread::spawn(move || bench_footprint(idle_s)));
    let xs = want("xenstore").then(|| std::thread::spawn(move || bench_xenstore(idle_s)));
    let mut r = json!({
        "date": harness::host_sh("date -u +%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpus": harness::host_sh("nproc"), "cpu": harness::host_sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
            "os": harness::host_sh(". /etc/os-release; echo $PRETTY_NAME"), "host_kernel": harness::host_sh("uname -r"),
            "qemu": harness::host_sh("qemu-system-x86_64 --version | head -1"), "accel": "tcg",
            "guest": "1 vCPU, 256 MiB, Debian kernel (tests/vm)",
            "loadavg_start": load_start,
        },
        "config": {"reps": reps, "idle_s": idle_s, "probe_outage_s": outage_s, "resync_outage_s": resync_outage_s,
                   "resync_written_mib": resync_mib, "resync_leg_mib": leg_mib, "monitor_window_s": window_s,
                   "throttle_kbps": throttle, "agent_config": AGENT_CFG,
                   "legs": "qemu-nbd on the host over QEMU user networking, nbd-client -t 5, md RAID1 metadata 1.2, bitmap chunk 1 MiB; re-add legs 32 MiB"},
        "readd": {},
    });
    let mut errors = Vec::new();
    if want("event") {
        if let Some((v, _)) = guarded("event", &mut errors, || bench_event(reps)) {
            r["readd"]["event"] = v;
        }
    }
    if want("mdadm") {
        if let Some(v) = guarded("mdadm", &mut errors, || bench_alternatives(reps, window_s)) {
            r["readd"]["mdadm"] = v;
        }
    }
    if want("probe") {
        if let Some(v) = guarded("probe", &mut errors, || bench_probe_hint(reps, outage_s)) {
            r["readd"]["probe_hint"] = v;
        }
    }
    if want("resync") {
        if let Some(v) = guarded("resync", &mut errors, || {
            bench_resync(resync_outage_s, resync_mib, leg_mib, throttle)
        }) {
            r["resync"] = v;
        }
    }
    if let Some(h) = fp {
        match h.join() {
            Ok(v) => r["footprint"] = v,
            Err(_) => errors.push("footprint: panicked".into()),
        }
    }
    if let Some(h) = xs {
        match h.join() {
            Ok(v) => r["xenstore_idle"] = v,
            Err(_) => errors.push("xenstore: panicked".into()),
        }
    }
    r["errors"] = json!(errors);
    let bin = env!("CARGO_BIN_EXE_mdguard");
    r["binary"] = json!({
        "mdguard": bin, "mdguard_bytes": std::fs::metadata(bin).map(|m| m.len()).unwrap_or(0),
        "mdguard_stripped": harness::host_sh(&format!("file -b {bin} | grep -o 'not stripped\\|stripped' | head -1")),
        "mdadm_bytes": std::fs::metadata("/sbin/mdadm").map(|m| m.len()).unwrap_or(0),
    });
    if let Ok(p) = std::fs::read_to_string(out_dir.join("parse.json")) {
        r["parse"] = serde_json::from_str(&p).unwrap_or(Value::Null);
    }
    r["machine"]["loadavg_end"] = json!(harness::host_sh("cat /proc/loadavg"));
    r["wall_s"] = json!(r3(t0.elapsed().as_secs_f64()));
    let text = serde_json::to_string_pretty(&r).unwrap();
    std::fs::write(out_dir.join("results.json"), text + "\n").unwrap();
    let t = table(&r);
    std::fs::write(out_dir.join("results.md"), &t).unwrap();
    println!("\n{t}");
    println!(
        "(target/bench/results.json; {:.0} s; load at start {load_start})",
        t0.elapsed().as_secs_f64()
    );
    assert!(
        errors.is_empty(),
        "scenarios that could not be carried out: {errors:?}"
    );
}
