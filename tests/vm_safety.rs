//! The two ways an automatic re-add can lose data, on a real kernel, each next
//! to what the kernel and mdadm do in the same situation without mdguard
//! (docs/safety.md holds the table these tests pin):
//!
//! - an array without a write-intent bitmap: a leg that comes back after an
//!   outage with writes must get a full recovery; a re-add that keeps its old
//!   slot makes raid1 skip the recovery and call the leg in sync with nothing
//!   copied;
//! - split brain: a leg that ran on alone while the array later booted degraded
//!   on the other one holds writes the array never saw, and the array holds
//!   writes it never saw; it must not be added (either copy would be lost).
//!
//! The leg's own content is read below md (its block device past the data
//! offset) to show what md copied or left alone.

mod common;
mod harness;

use common::v1;
use harness::guest::{self, agent_log, check_mismatches, read_sha, write_data};
use harness::{Lab, LabConfig, Layout, IGNORE_MSG};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(240);
/// Where the outage's pattern goes in md0, and how much (MiB).
const SEEK_MIB: u32 = 8;
const PATTERN_MIB: u32 = 8;

const FULL_RECOVERY_LINE: &str = "md0: nbd1 is added for a full recovery: the array has no write-intent bitmap, so a re-add would copy nothing and leave it without the writes made while it was away";
const SPARE_LINE: &str = "md0: re-added nbd1 as a spare for a full recovery";
const BITMAP_READD: &str = "(the bitmap limits the resync to what changed)";
const REFUSED_PREFIX: &str = "md0: leg nbd1 answers but will not be re-added: ";

fn lab(name: &str, bitmap: bool) -> Lab {
    let cfg = LabConfig {
        bitmap,
        ..LabConfig::healing(Layout::Mirror, Some(5), 32)
    };
    Lab::start_clean(name, cfg, WAIT)
}

/// The agent as tests/vm_heal.rs runs it: no start jitter, probes every 1-4 s,
/// each leg's `[[reconnect]]` command.
fn start_agent(lab: &mut Lab) {
    start_agent_probing(lab, 1, true);
}

/// [`start_agent`] with the first probe of a failed leg `initial_s` after it
/// failed, and with or without the `[[reconnect]]` commands.
fn start_agent_probing(lab: &mut Lab, initial_s: u32, reconnect: bool) {
    let mut cfg = format!("[throttle]\njitter_s = 0\n[probe]\ninitial_interval_s = {initial_s}\nmax_interval_s = 4\ntimeout_ms = 3000\n");
    for i in (0..lab.legs.len()).filter(|_| reconnect) {
        cfg.push_str(&lab.reconnect_cfg(i, " -t 5"));
    }
    guest::start_agent(
        &mut lab.vm,
        &cfg,
        "run --foreground",
        Duration::from_secs(20),
    );
}

/// Run `script` in the guest, whatever its exit status: (status, stdout and
/// stderr together), printed for the record.
fn observe(lab: &mut Lab, what: &str, script: &str) -> (i32, String) {
    let s = lab.vm.run(script, Duration::from_secs(60));
    let out = format!("{}{}", s.stdout, s.stderr).trim().to_string();
    eprintln!("observed: {what}: `{script}` -> exit {}: {out:?}", s.status);
    (s.status, out)
}

/// Drop the guest's cached copies of a leg's blocks, so a read sees the disk.
fn drop_caches(lab: &mut Lab, dev: &str) {
    lab.vm.sh(&format!(
        "blockdev --flushbufs /dev/{dev}; echo 3 > /proc/sys/vm/drop_caches"
    ));
}

/// A field of `mdadm --examine /dev/{dev}` (e.g. "Events", "Data Offset").
fn examine(lab: &mut Lab, dev: &str, field: &str) -> String {
    drop_caches(lab, dev);
    let out = lab.vm.sh(&format!("mdadm --examine /dev/{dev}"));
    out.lines()
        .filter_map(|l| l.split_once(" : "))
        .find(|(k, _)| k.trim() == field)
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {field} in mdadm --examine /dev/{dev}:\n{out}"))
}

fn events(lab: &mut Lab, dev: &str) -> u64 {
    examine(lab, dev, "Events").parse().unwrap()
}

/// Where the array's data starts on the leg, in sectors ("2048 sectors").
fn data_offset(lab: &mut Lab, dev: &str) -> u64 {
    examine(lab, dev, "Data Offset")
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("Data Offset : N sectors")
}

/// sha256 of the leg's own blocks that hold md's `mib` MiB from `seek_mib` on:
/// read below md, straight from the block device, past the page cache.
fn leg_sha(lab: &mut Lab, dev: &str, data_off_sectors: u64, seek_mib: u32, mib: u32) -> String {
    let start = data_off_sectors * 512 + ((seek_mib as u64) << 20);
    let bs = [1u64 << 20, 64 << 10, 4 << 10, 512]
        .into_iter()
        .find(|b| start % b == 0 && ((mib as u64) << 20) % b == 0)
        .unwrap();
    lab.vm
        .sh(&format!(
            "dd if=/dev/{dev} bs={bs} skip={} count={} iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1",
            start / bs,
            ((mib as u64) << 20) / bs
        ))
        .trim()
        .to_string()
}

/// Sectors written to a block device so far (field 7 of /sys/block/X/stat).
fn sectors_written(lab: &mut Lab, dev: &str) -> u64 {
    lab.vm
        .sh(&format!("cat /sys/block/{dev}/stat"))
        .split_whitespace()
        .nth(6)
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn mdstat_md0(lab: &mut Lab) -> String {
    lab.mdstat()
        .lines()
        .skip_while(|l| !l.starts_with("md0"))
        .take(2)
        .collect::<Vec<_>>()
        .join(" / ")
}

/// Kill leg 1's server and write the outage's pattern: md fails nbd1.
fn outage_on_leg1(lab: &mut Lab) -> String {
    lab.legs[1].server.kill();
    let sha = write_data(&mut lab.vm, "md0", SEEK_MIB, PATTERN_MIB);
    lab.wait_snapshot("md0 degraded", Duration::from_secs(60), |s| {
        s.get("md0", "degraded") == Some("1")
    });
    sha
}

/// Scenario A: no bitmap, the leg comes back on its node after an outage with
/// writes: mdguard adds it as a spare, md copies the whole leg, and the leg's
/// own blocks hold what was written while it was away.
#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn no_bitmap_leg_back_gets_a_full_recovery() {
    let _ = IGNORE_MSG;
    let t0 = Instant::now();
    let mut lab = lab("safety-nobitmap", false);
    assert_eq!(lab.snapshot().get("md0", "bitmap/location"), Some("none"));
    let off = data_offset(&mut lab, "nbd1");
    start_agent(&mut lab);
    let sha = outage_on_leg1(&mut lab);
    let written_before = sectors_written(&mut lab, "nbd1");
    lab.legs[1].server.restart();
    lab.wait_healed("md0", WAIT);
    let s = lab.snapshot();
    let log = agent_log(&mut lab.vm);
    assert!(log.contains(FULL_RECOVERY_LINE), "{log}");
    assert!(log.contains(SPARE_LINE), "{log}");
    assert!(!log.contains(BITMAP_READD), "{log}");
    let m = s.member("md0", "nbd1").expect("nbd1 a member again");
    assert!(m.states.iter().any(|x| x == "in_sync"), "{}", s.text);
    assert!(mdstat_md0(&mut lab).contains("[UU]"));
    // a full recovery writes the whole leg (32 MiB less the metadata)
    let copied_mib = (sectors_written(&mut lab, "nbd1") - written_before) / 2048;
    assert!(copied_mib >= 24, "only {copied_mib} MiB written to nbd1");
    // and the agent says so, from the same counter
    let said = lab
        .vm
        .wait_for("the copy report", Duration::from_secs(30), |vm| {
            agent_log(vm)
                .lines()
                .find(|l| l.contains("md0: nbd1 is in sync: md wrote "))
                .map(str::to_string)
        });
    eprintln!("observed: mdguard: {said}");
    assert!(said.ends_with("(a full recovery)"), "{said}");
    assert_eq!(
        leg_sha(&mut lab, "nbd1", off, SEEK_MIB, PATTERN_MIB),
        sha,
        "nbd1's own blocks lack the outage's writes"
    );
    assert_eq!(read_sha(&mut lab.vm, "md0", SEEK_MIB, PATTERN_MIB), sha);
    assert_eq!(check_mismatches(&mut lab.vm, "md0", WAIT), 0);
    eprintln!(
        "scenario no-bitmap/mdguard: {:.1} s (boot {:.1} s); {copied_mib} MiB copied to nbd1\nmdguard log:\n{log}",
        t0.elapsed().as_secs_f64(),
        lab.vm.boot_time.as_secs_f64()
    );
}

/// Scenario A, the leg md still lists: failed with its transport whole (as a
/// transient error would leave it), so it answers at the first probe while md
/// holds it, faulty and out of its slot. That is where mdguard 0.1.0 wrote
/// `re-add` to sysfs; now it must remove the leg and add it as a spare.
#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn no_bitmap_leg_md_still_lists_gets_a_full_recovery() {
    let t0 = Instant::now();
    let mut lab = lab("safety-nobitmap-bound", false);
    let off = data_offset(&mut lab, "nbd1");
    // the first probe 3 s after the failure: the outage's writes are done by
    // then. No reconnect command: the transport is whole, the leg answers
    // where it is, still held by md.
    start_agent_probing(&mut lab, 3, false);
    lab.vm
        .sh("dd if=/dev/urandom of=/tmp/data.md0 bs=1M count=8 2>/dev/null");
    let written_before = sectors_written(&mut lab, "nbd1");
    let out = lab.vm.sh(&format!(
        "mdadm /dev/md0 --fail /dev/nbd1 2>&1 && \
         dd if=/tmp/data.md0 of=/dev/md0 bs=1M seek={SEEK_MIB} oflag=direct conv=notrunc,fsync 2>/dev/null && \
         cut -d' ' -f1 /proc/uptime && cat /sys/block/md0/md/dev-nbd1/state && \
         sha256sum < /tmp/data.md0 | cut -d' ' -f1"
    ));
    let lines: Vec<&str> = out.lines().collect();
    let [_, written_at, state, sha] = lines[..] else {
        panic!("{out}")
    };
    let written_at: f64 = written_at.parse().unwrap();
    assert!(state.contains("faulty"), "{out}");
    lab.wait_healed("md0", WAIT);
    let log = agent_log(&mut lab.vm);
    // md still listed it: removed first, and said so
    assert!(log.contains("md0: removing nbd1 first: the array has no write-intent bitmap, so it can come back only through a full recovery"), "{log}");
    assert!(log.contains(FULL_RECOVERY_LINE), "{log}");
    assert!(log.contains(SPARE_LINE), "{log}");
    assert!(!log.contains(BITMAP_READD), "{log}");
    let added = guest::log_times(&log, SPARE_LINE);
    assert!(
        added.iter().all(|&t| t > written_at),
        "added at {added:?}, before the outage's writes ended at {written_at}:\n{log}"
    );
    let s = lab.snapshot();
    assert_eq!(s.member("md0", "nbd1").unwrap().states, ["in_sync"]);
    let copied_mib = (sectors_written(&mut lab, "nbd1") - written_before) / 2048;
    assert!(copied_mib >= 24, "only {copied_mib} MiB written to nbd1");
    assert_eq!(leg_sha(&mut lab, "nbd1", off, SEEK_MIB, PATTERN_MIB), sha);
    assert_eq!(check_mismatches(&mut lab.vm, "md0", WAIT), 0);
    eprintln!(
        "scenario no-bitmap, leg still listed/mdguard: {:.1} s (boot {:.1} s); writes ended at {written_at}, {copied_mib} MiB copied to nbd1\nmdguard log:\n{log}",
        t0.elapsed().as_secs_f64(),
        lab.vm.boot_time.as_secs_f64()
    );
}

/// Scenario A without mdguard: what an admin's `mdadm --re-add` does to a
/// bitmap-less array, for a leg whose transport died (the killed server) and
/// for one whose transport stayed whole (failed by hand). The second ends as
/// mdguard 0.1.0's sysfs `re-add` did: the leg in sync at once, nothing copied.
#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn no_bitmap_readd_by_hand() {
    let t0 = Instant::now();
    let mut lab = lab("safety-nobitmap-hand", false);
    let off = data_offset(&mut lab, "nbd1");

    // 1. the killed server, back on the same node
    let sha = outage_on_leg1(&mut lab);
    lab.legs[1].server.restart();
    let (st, out) = observe(
        &mut lab,
        "re-add, leg faulty in md0, transport dead",
        "mdadm /dev/md0 --re-add /dev/nbd1",
    );
    assert_eq!(
        (st, out.as_str()),
        (0, "mdadm: re-add /dev/nbd1 to md0 succeed")
    );
    // ... and the leg fails again at once on its dead transport
    let s = lab.wait_snapshot("nbd1 faulty again", Duration::from_secs(30), |s| {
        s.get("md0", "dev-nbd1/state")
            .is_some_and(|st| st.contains("faulty"))
    });
    assert_eq!(s.get("md0", "degraded"), Some("1"));
    let (st, _) = observe(&mut lab, "remove", "mdadm /dev/md0 --remove /dev/nbd1");
    assert_eq!(st, 0);
    lab.disconnect_leg(1);
    lab.connect_leg(1);
    let (st, out) = observe(
        &mut lab,
        "re-add, leg removed and reconnected",
        "mdadm /dev/md0 --re-add /dev/nbd1",
    );
    assert_eq!(
        (st, out.as_str()),
        (
            1,
            "mdadm: --re-add for /dev/nbd1 to /dev/md0 is not possible"
        )
    );
    assert!(lab.snapshot().member("md0", "nbd1").is_none());
    // what works: --add, a full recovery
    let (st, _) = observe(&mut lab, "add", "mdadm /dev/md0 --add /dev/nbd1");
    assert_eq!(st, 0);
    lab.wait_healed("md0", WAIT);
    assert_eq!(leg_sha(&mut lab, "nbd1", off, SEEK_MIB, PATTERN_MIB), sha);
    assert_eq!(check_mismatches(&mut lab.vm, "md0", WAIT), 0);
    eprintln!("observed: after --add: nbd1 holds the outage's writes, mismatch_cnt 0");

    // 2. a leg that left with its transport whole: md still lists it, faulty,
    // out of its slot (saved_raid_disk kept)
    let (st, _) = observe(&mut lab, "fail", "mdadm /dev/md0 --fail /dev/nbd1");
    assert_eq!(st, 0);
    lab.wait_snapshot("nbd1 out of its slot", Duration::from_secs(30), |s| {
        s.get("md0", "dev-nbd1/slot") == Some("none")
    });
    let sha2 = write_data(&mut lab.vm, "md0", SEEK_MIB, PATTERN_MIB);
    let written_before = sectors_written(&mut lab, "nbd1");
    let (st, out) = observe(
        &mut lab,
        "re-add, leg faulty in md0, transport whole",
        "mdadm /dev/md0 --re-add /dev/nbd1",
    );
    assert_eq!(
        (st, out.as_str()),
        (0, "mdadm: re-add /dev/nbd1 to md0 succeed")
    );
    let s = lab.wait_healed("md0", Duration::from_secs(30));
    let m = s.member("md0", "nbd1").unwrap();
    assert_eq!(m.states, ["in_sync"], "{}", s.text);
    assert!(mdstat_md0(&mut lab).contains("[UU]"));
    let copied_kib = (sectors_written(&mut lab, "nbd1") - written_before) / 2;
    let leg = leg_sha(&mut lab, "nbd1", off, SEEK_MIB, PATTERN_MIB);
    assert_ne!(leg, sha2, "nbd1 got the writes made while it was away");
    let mm = check_mismatches(&mut lab.vm, "md0", WAIT);
    eprintln!(
        "observed: after the sysfs re-add: nbd1 in_sync, {copied_kib} KiB written to it, the outage's writes absent, mismatch_cnt {mm}"
    );
    // nothing copied: the superblock writes only, far less than the 8 MiB
    assert!(copied_kib < 1024, "{copied_kib} KiB copied");
    // every sector of the outage's pattern differs (8 MiB = 16384 sectors)
    assert!(mm >= 16384, "mismatch_cnt {mm}");
    eprintln!(
        "scenario no-bitmap/by hand: {:.1} s (boot {:.1} s)",
        t0.elapsed().as_secs_f64(),
        lab.vm.boot_time.as_secs_f64()
    );
}

/// A second region only the leg that ran on alone (nbd1) writes: 2 MiB at 24 MiB.
const ALONE_SEEK_MIB: u32 = 24;
const ALONE_MIB: u32 = 2;

/// What the split brain left.
struct Split {
    lab: Lab,
    /// Written to md0 on nbd1 alone, at SEEK_MIB.
    p1: String,
    /// Written to md0 on nbd1 alone, at ALONE_SEEK_MIB (nbd0 never sees it).
    p1_alone: String,
    /// Written to md0 on nbd0 alone (the degraded boot), at SEEK_MIB.
    p2: String,
    /// nbd1's data offset (sectors) and event count.
    off: u64,
    ev1: u64,
    /// nbd0's event count after P2, and at the end.
    ev0: (u64, u64),
}

/// The split brain: md0 (bitmap) loses nbd0 and runs on nbd1, which gets P1 (and
/// `p1_alone`); then, "at the next boot", nbd1 is missing and md0 is assembled
/// degraded from the stale nbd0, which gets P2 at P1's place. With `catch_up`
/// the degraded boot runs on (more writes) until its event count reaches
/// nbd1's. Ends with md0 running on nbd0 alone, nbd1 disconnected and its
/// server down.
fn split_brain(name: &str, catch_up: bool) -> Split {
    let mut lab = lab(name, true);
    let off = data_offset(&mut lab, "nbd1");
    lab.legs[0].server.kill();
    let p1 = write_data(&mut lab.vm, "md0", SEEK_MIB, PATTERN_MIB);
    lab.wait_snapshot("md0 degraded on nbd1", Duration::from_secs(60), |s| {
        s.get("md0", "degraded") == Some("1")
    });
    let p1_alone = write_data(&mut lab.vm, "md0", ALONE_SEEK_MIB, ALONE_MIB);
    lab.vm.sh("mdadm --stop /dev/md0");
    let ev1 = events(&mut lab, "nbd1");
    assert_eq!(lab.disconnect_leg(1).status, 0);
    lab.legs[1].server.kill();
    lab.disconnect_leg(0);
    lab.legs[0].server.restart();
    lab.connect_leg(0);
    let (st, out) = observe(
        &mut lab,
        "degraded boot on nbd0",
        "mdadm --assemble --run /dev/md0 /dev/nbd0",
    );
    assert_eq!(
        (st, out.as_str()),
        (
            0,
            "mdadm: /dev/md0 has been started with 1 drive (out of 2)."
        )
    );
    let p2 = write_data(&mut lab.vm, "md0", SEEK_MIB, PATTERN_MIB);
    assert_ne!(p1, p2);
    lab.wait_snapshot("md0 clean", Duration::from_secs(30), |s| {
        s.get("md0", "array_state") == Some("clean")
    });
    let ev0_first = events(&mut lab, "nbd0");
    let mut n = 0;
    // each write burst is a dirty and a clean superblock update on a degraded
    // array: two events
    while catch_up && events(&mut lab, "nbd0") < ev1 {
        n += 1;
        assert!(n <= 30, "nbd0's events stay below nbd1's {ev1}");
        write_data(&mut lab.vm, "md0", 20, 1);
        lab.wait_snapshot("md0 clean", Duration::from_secs(30), |s| {
            s.get("md0", "array_state") == Some("clean")
        });
    }
    let ev0 = events(&mut lab, "nbd0");
    eprintln!(
        "observed: split brain: nbd1 (ran on alone: P1) events {ev1}; nbd0 (degraded boot: P2) events {ev0_first} after P2, {ev0} after {n} more writes"
    );
    let s = lab.snapshot();
    assert_eq!(s.get("md0", "degraded"), Some("1"));
    assert!(s.member("md0", "nbd0").is_some() && s.member("md0", "nbd1").is_none());
    Split {
        lab,
        p1,
        p1_alone,
        p2,
        off,
        ev1,
        ev0: (ev0_first, ev0),
    }
}

/// Wait (90 s at most) for mdguard's refusal of nbd1: the whole log line.
fn refusal_of_nbd1(lab: &mut Lab) -> String {
    let line = lab
        .vm
        .wait_for("mdguard refuses nbd1", Duration::from_secs(90), |vm| {
            agent_log(vm)
                .lines()
                .find(|l| l.contains(REFUSED_PREFIX))
                .map(str::to_string)
        });
    eprintln!("observed: mdguard: {line}");
    line
}

/// A claim about absence: over the next 6 s (several probes, every 1-4 s) nbd1
/// is not taken: not a member of md0, md0 `[U_]`, never re-added, and nothing
/// written to it since `written_before`. The agent's log.
fn nbd1_left_alone(lab: &mut Lab, written_before: u64) -> String {
    std::thread::sleep(Duration::from_secs(6));
    let s = lab.snapshot();
    assert!(s.member("md0", "nbd1").is_none(), "{}", s.text);
    assert_eq!(s.get("md0", "degraded"), Some("1"));
    assert!(mdstat_md0(lab).contains("[U_]"));
    let log = agent_log(&mut lab.vm);
    assert!(!log.contains("re-added nbd1"), "{log}");
    assert_eq!(sectors_written(lab, "nbd1"), written_before, "nbd1 written");
    log
}

/// Bring nbd1 back: its server up, the device connected (a uevent).
fn nbd1_returns(lab: &mut Lab) {
    lab.legs[1].server.restart();
    lab.connect_leg(1);
}

/// The split-brain leg returns while mdguard runs: refused with `reason`, never
/// touched; md0 stays degraded on nbd0.
fn split_brain_refused(name: &str, catch_up: bool, reason: impl Fn(&Split) -> Vec<String>) {
    let t0 = Instant::now();
    let mut sp = split_brain(name, catch_up);
    let reasons = reason(&sp);
    let lab = &mut sp.lab;
    start_agent(lab);
    nbd1_returns(lab);
    let written_before = sectors_written(lab, "nbd1");
    let line = refusal_of_nbd1(lab);
    let refused_at = Instant::now();
    assert!(
        reasons
            .iter()
            .any(|r| line.ends_with(&format!("{REFUSED_PREFIX}{r}"))),
        "{line}\nexpected one of {reasons:#?}"
    );
    let log = nbd1_left_alone(lab, written_before);
    assert_eq!(leg_sha(lab, "nbd1", sp.off, SEEK_MIB, PATTERN_MIB), sp.p1);
    assert_eq!(
        leg_sha(lab, "nbd1", sp.off, ALONE_SEEK_MIB, ALONE_MIB),
        sp.p1_alone
    );
    assert_eq!(events(lab, "nbd1"), sp.ev1, "nbd1's superblock was written");
    assert_eq!(read_sha(&mut lab.vm, "md0", SEEK_MIB, PATTERN_MIB), sp.p2);
    eprintln!(
        "scenario {name}: {:.1} s (boot {:.1} s), watched {:.1} s after the refusal\nmdguard log:\n{log}",
        t0.elapsed().as_secs_f64(),
        lab.vm.boot_time.as_secs_f64(),
        refused_at.elapsed().as_secs_f64()
    );
}

/// Scenario B: the degraded boot ran on long enough to count as many events as
/// the leg that ran on alone: refused for what its superblock records.
#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn split_brain_leg_is_refused_and_untouched() {
    split_brain_refused("safety-split", true, |_| {
        ["faulty", "gone"]
            .iter()
            .map(|as_| format!("its superblock records nbd0 (descriptor 0), a leg the array runs on, as {as_}: it ran on without that leg (split brain?)"))
            .collect()
    });
}

/// Scenario B, a short degraded boot: the returning leg has seen more events
/// than the array: refused for that.
#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn split_brain_leg_with_more_events_is_refused() {
    split_brain_refused("safety-split-ev", false, |sp| {
        assert!(sp.ev1 > sp.ev0.1, "nbd1 {} <= nbd0 {:?}", sp.ev1, sp.ev0);
        vec![format!(
            "its event count {} is newer than the array's {} (split brain?)",
            sp.ev1, sp.ev0.1
        )]
    });
}

/// Scenario B without mdguard: `mdadm --incremental` leaves the leg alone;
/// `mdadm --re-add` takes it and md's recovery overwrites everything it wrote
/// while it ran alone with the degraded boot's history.
#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn split_brain_by_hand() {
    let t0 = Instant::now();
    let mut sp = split_brain("safety-split-hand", true);
    let lab = &mut sp.lab;
    nbd1_returns(lab);
    let (st, out) = observe(lab, "incremental", "mdadm --incremental /dev/nbd1");
    assert_eq!(
        (st, out.as_str()),
        (
            2,
            "mdadm: not adding /dev/nbd1 to active array (without --run) /dev/md0"
        )
    );
    assert!(lab.snapshot().member("md0", "nbd1").is_none());
    assert_eq!(leg_sha(lab, "nbd1", sp.off, SEEK_MIB, PATTERN_MIB), sp.p1);
    let written_before = sectors_written(lab, "nbd1");
    let (st, out) = observe(lab, "re-add", "mdadm /dev/md0 --re-add /dev/nbd1");
    assert_eq!((st, out.as_str()), (0, "mdadm: re-added /dev/nbd1"));
    let s = lab.snapshot();
    let m = s.member("md0", "nbd1").expect("nbd1 a member");
    eprintln!(
        "observed: right after the re-add: nbd1 {m:?}; {}",
        mdstat_md0(lab)
    );
    let s = lab.wait_healed("md0", WAIT);
    assert_eq!(s.member("md0", "nbd1").unwrap().states, ["in_sync"]);
    let copied_mib = (sectors_written(lab, "nbd1") - written_before) / 2048;
    let at_p1 = leg_sha(lab, "nbd1", sp.off, SEEK_MIB, PATTERN_MIB);
    let alone = leg_sha(lab, "nbd1", sp.off, ALONE_SEEK_MIB, ALONE_MIB);
    let nbd0_alone = leg_sha(lab, "nbd0", sp.off, ALONE_SEEK_MIB, ALONE_MIB);
    let mm = check_mismatches(&mut lab.vm, "md0", WAIT);
    eprintln!(
        "observed: after the re-add's recovery ({copied_mib} MiB written to nbd1): nbd1 at P1's place holds P2: {}, P1: {}; nbd1 still holds what only it wrote: {}; mismatch_cnt {mm}\ndmesg:\n{}",
        at_p1 == sp.p2,
        at_p1 == sp.p1,
        alone == sp.p1_alone,
        lab.vm.sh("dmesg | grep -iE 'md0|md:|bitmap|raid1' | tail -30")
    );
    // everything nbd1 wrote alone is gone: P1 under P2, and its other region
    // taken from nbd0; the legs agree with each other
    assert_eq!(at_p1, sp.p2);
    assert_ne!(alone, sp.p1_alone);
    assert_eq!(alone, nbd0_alone);
    assert_eq!(mm, 0);
    eprintln!(
        "scenario split brain/by hand: {:.1} s (boot {:.1} s)",
        t0.elapsed().as_secs_f64(),
        lab.vm.boot_time.as_secs_f64()
    );
}

// ---- restored copies and other guests' disks (issue 13, cases 3 and 4) ----

/// Where the outage's writes go in these scenarios (MiB in md0), apart from P1.
const OUTAGE_SEEK_MIB: u32 = 20;
const OUTAGE_MIB: u32 = 4;

/// A field of `mdadm --examine --export /dev/{dev}` as a number (MD_EVENTS,
/// MD_UPDATE_TIME).
fn examine_export(lab: &mut Lab, dev: &str, key: &str) -> u64 {
    drop_caches(lab, dev);
    let out = lab.vm.sh(&format!("mdadm --examine --export /dev/{dev}"));
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in mdadm --examine --export /dev/{dev}:\n{out}"))
}

/// The agent's record of the leg with descriptor `dev_number`: (utime, events).
fn recorded(lab: &mut Lab, dev_number: u64) -> Option<(u64, u64)> {
    let text = lab.vm.sh("cat /run/mdguard/legs.json 2>/dev/null");
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["legs"].as_array()?.iter().find_map(|r| {
        (r["dev_number"].as_u64()? == dev_number)
            .then(|| Some((r["utime"].as_u64()?, r["events"].as_u64()?)))
            .flatten()
    })
}

/// What the history scenarios leave: md0 degraded with nbd1's server down, its
/// image replaced by `copy` (taken while the array was whole and quiet), P1
/// written between the copy and the failure, the outage's writes after it.
struct Older {
    lab: Lab,
    p1: String,
    outage: String,
    off: u64,
    /// nbd1's update time in the copy, and when it failed.
    copy_utime: u64,
    last_utime: u64,
}

/// md0 (bitmap, 1 MiB chunks) whole and quiet; a copy of leg 1 is taken; P1 is
/// written and the bitmap cleared again (md0 whole: P1 is on both legs and no
/// longer in the bitmap); nbd1's server dies; the outage's writes. With an agent
/// running, it is started first and has recorded nbd1 after P1. `restore`
/// turns the copy into what comes back (as is: a restored snapshot), given
/// nbd1's event count when it failed.
fn older_copy_returns(name: &str, agent: bool, restore: impl FnOnce(&mut Vec<u8>, u64)) -> Older {
    let mut lab = lab(name, true);
    let off = data_offset(&mut lab, "nbd1");
    if agent {
        start_agent(&mut lab);
    }
    lab.wait_bitmap_clean(WAIT);
    lab.vm.sh("sync");
    let copy_utime = examine_export(&mut lab, "nbd1", "MD_UPDATE_TIME");
    let mut copy = std::fs::read(lab.legs[1].server.image()).unwrap();
    // update times have a resolution of one second
    std::thread::sleep(Duration::from_millis(1500));
    let p1 = write_data(&mut lab.vm, "md0", SEEK_MIB, PATTERN_MIB);
    lab.wait_snapshot("md0 clean", Duration::from_secs(30), |s| {
        s.get("md0", "array_state") == Some("clean")
    });
    lab.wait_bitmap_clean(WAIT);
    let last_utime = examine_export(&mut lab, "nbd1", "MD_UPDATE_TIME");
    assert!(last_utime > copy_utime, "{last_utime} <= {copy_utime}");
    if agent {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = recorded(&mut lab, 1);
            if r.is_some_and(|(u, _)| u >= last_utime) {
                eprintln!("observed: agent's record of nbd1 (utime, events): {r:?}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "nbd1's record {r:?}, md's {last_utime}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let last_events = examine_export(&mut lab, "nbd1", "MD_EVENTS");
    lab.legs[1].server.kill();
    let outage = write_data(&mut lab.vm, "md0", OUTAGE_SEEK_MIB, OUTAGE_MIB);
    lab.wait_snapshot("md0 degraded", Duration::from_secs(60), |s| {
        s.get("md0", "degraded") == Some("1")
    });
    restore(&mut copy, last_events);
    std::fs::write(lab.legs[1].server.image(), &copy).unwrap();
    eprintln!(
        "observed: nbd1's copy updated at {copy_utime}, nbd1 last updated at {last_utime} before it failed"
    );
    Older {
        lab,
        p1,
        outage,
        off,
        copy_utime,
        last_utime,
    }
}

/// mdguard runs; what comes back on nbd1's node must be refused for a reason
/// `expected` accepts (the words after the refusal's prefix), and left alone:
/// never a member, nothing written to it, md0 degraded on nbd0 with every write
/// readable.
fn older_copy_refused(o: &mut Older, expected: impl Fn(&str) -> bool) {
    let lab = &mut o.lab;
    lab.legs[1].server.restart();
    let line = refusal_of_nbd1(lab);
    let (_, reason) = line.split_once(REFUSED_PREFIX).unwrap();
    assert!(expected(reason), "unexpected reason: {line}");
    let written_before = sectors_written(lab, "nbd1");
    let p1_on_leg = leg_sha(lab, "nbd1", o.off, SEEK_MIB, PATTERN_MIB);
    assert_ne!(p1_on_leg, o.p1, "the copy lacks P1: that is the point");
    let log = nbd1_left_alone(lab, written_before);
    assert_eq!(
        leg_sha(lab, "nbd1", o.off, SEEK_MIB, PATTERN_MIB),
        p1_on_leg
    );
    assert_eq!(read_sha(&mut lab.vm, "md0", SEEK_MIB, PATTERN_MIB), o.p1);
    assert_eq!(
        read_sha(&mut lab.vm, "md0", OUTAGE_SEEK_MIB, OUTAGE_MIB),
        o.outage
    );
    // the local status says why md0 will not heal by itself
    let st = lab.vm.sh("mdguard status --json");
    assert!(st.contains("nbd1 refused: "), "{st}");
    eprintln!("observed: status --json: {st}\nmdguard log:\n{log}");
}

/// Case 3 with mdguard: the leg's storage comes back from a copy taken before
/// P1 (a restored snapshot). Its UUIDs, role and event count pass every
/// superblock rule and the kernel's bitmap check; its update time is older
/// than the agent's record of the leg: refused, untouched.
#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn restored_snapshot_is_refused_and_untouched() {
    let t0 = Instant::now();
    let mut o = older_copy_returns("safety-snapshot", true, |_, _| {});
    let copy = format!(
        "its superblock (updated {}, events ",
        mdguard::clock::utc(o.copy_utime)
    );
    older_copy_refused(&mut o, |r| {
        r.starts_with(&copy)
            && r.contains(") is older than the one the leg had in the array (updated ")
    });
    eprintln!(
        "scenario restored snapshot/mdguard: {:.1} s (boot {:.1} s); copy {} < record {}",
        t0.elapsed().as_secs_f64(),
        o.lab.vm.boot_time.as_secs_f64(),
        o.copy_utime,
        o.last_utime
    );
}

/// Case 4 with mdguard: nbd1's export hands back another guest's disk: a clone
/// of this guest's image (same array and device UUIDs, same role) that the
/// other guest's kernel updated after nbd1 left this array, at an event count
/// the array accepts. Refused as written after the leg left.
#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn another_guests_disk_on_the_legs_export_is_refused() {
    let t0 = Instant::now();
    let later = mdguard::clock::unix_now() + 600;
    let mut o = older_copy_returns("safety-clone", true, |img, events| {
        // the 1.2 superblock, 4 KiB into the leg, as the clone's kernel left it
        let sb = &mut img[4096..8192];
        v1::put_u64(sb, v1::UTIME, later);
        v1::put_u64(sb, v1::EVENTS, events);
        v1::reseal(sb);
    });
    let updated = format!(
        "its superblock was updated at {}, after the leg left the array at ",
        mdguard::clock::utc(later)
    );
    older_copy_refused(&mut o, |r| {
        r.starts_with(&updated) && r.ends_with(": another system has used this disk since")
    });
    eprintln!(
        "scenario another guest's disk/mdguard: {:.1} s (boot {:.1} s)",
        t0.elapsed().as_secs_f64(),
        o.lab.vm.boot_time.as_secs_f64()
    );
}

/// Cases 3 and 4 without mdguard: the restored copy goes back with `mdadm
/// --re-add`; the kernel takes it and copies only what the bitmap kept since
/// the failure: P1 (written between the copy and the failure) is missing on
/// the leg for good, and a `check` finds it.
#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn restored_snapshot_by_hand() {
    let t0 = Instant::now();
    let mut o = older_copy_returns("safety-snapshot-hand", false, |_, _| {});
    let lab = &mut o.lab;
    lab.legs[1].server.restart();
    let (st, _) = observe(lab, "remove", "mdadm /dev/md0 --remove /dev/nbd1");
    assert_eq!(st, 0);
    lab.disconnect_leg(1);
    lab.connect_leg(1);
    let (st, out) = observe(
        lab,
        "re-add of the restored copy",
        "mdadm /dev/md0 --re-add /dev/nbd1",
    );
    assert_eq!((st, out.as_str()), (0, "mdadm: re-added /dev/nbd1"));
    lab.wait_healed("md0", WAIT);
    assert!(mdstat_md0(lab).contains("[UU]"));
    let p1_on_leg = leg_sha(lab, "nbd1", o.off, SEEK_MIB, PATTERN_MIB);
    let outage_on_leg = leg_sha(lab, "nbd1", o.off, OUTAGE_SEEK_MIB, OUTAGE_MIB);
    assert_eq!(
        outage_on_leg, o.outage,
        "the bitmap copied the outage's writes"
    );
    assert_ne!(p1_on_leg, o.p1, "P1 missing on nbd1 below md");
    let mm = check_mismatches(&mut lab.vm, "md0", WAIT);
    eprintln!(
        "observed: after --re-add of the restored copy: md0 [UU], the outage's writes on nbd1, P1 absent, mismatch_cnt {mm}"
    );
    // every sector of P1 differs (8 MiB = 16384 sectors)
    assert!(mm >= 16384, "mismatch_cnt {mm}");
    eprintln!(
        "scenario restored snapshot/by hand: {:.1} s (boot {:.1} s)",
        t0.elapsed().as_secs_f64(),
        lab.vm.boot_time.as_secs_f64()
    );
}

/// Two running arrays with one UUID (a cloned image assembled next to its
/// original: here md1, created over two loop devices with md0's UUID): nbd1
/// comes back after an outage, and its superblock cannot say which of the two
/// it belongs to. Refused with both arrays named, never touched.
#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn a_uuid_two_running_arrays_share_proves_nothing() {
    let t0 = Instant::now();
    let mut lab = lab("safety-shared-uuid", true);
    let uuid = lab
        .vm
        .sh("mdadm --detail --export /dev/md0 | sed -n 's/^MD_UUID=//p'")
        .trim()
        .to_string();
    assert!(!uuid.is_empty());
    lab.vm.sh(&format!(
        "dd if=/dev/zero of=/tmp/c0 bs=1M count=16 2>/dev/null && \
         dd if=/dev/zero of=/tmp/c1 bs=1M count=16 2>/dev/null && \
         losetup /dev/loop0 /tmp/c0 && losetup /dev/loop1 /tmp/c1 && \
         mdadm --create /dev/md1 --run --level=1 --raid-devices=2 --metadata=1.2 \
           --assume-clean --uuid={uuid} /dev/loop0 /dev/loop1 >/dev/null 2>&1"
    ));
    let md1 = lab
        .vm
        .sh("mdadm --detail --export /dev/md1 | sed -n 's/^MD_UUID=//p'");
    assert_eq!(md1.trim(), uuid, "md1 carries md0's UUID");
    start_agent(&mut lab);
    outage_on_leg1(&mut lab);
    lab.legs[1].server.restart();
    let line = refusal_of_nbd1(&mut lab);
    assert!(
        line.ends_with("its UUID is carried by 2 running arrays (md0, md1): which one it belongs to cannot be told"),
        "{line}"
    );
    let written_before = sectors_written(&mut lab, "nbd1");
    nbd1_left_alone(&mut lab, written_before);
    let s = lab.snapshot();
    assert!(s.member("md1", "nbd1").is_none(), "{}", s.text);
    eprintln!(
        "scenario shared UUID/mdguard: {:.1} s (boot {:.1} s)",
        t0.elapsed().as_secs_f64(),
        lab.vm.boot_time.as_secs_f64()
    );
}

/// Case 7: a leg that saw a write error (md's WriteErrorSeen, `write_error` in
/// its state) and comes back through a sysfs `re-add` (bitmap, md still lists
/// it, its transport whole): md keeps the flag across the re-add, and a leg
/// marked as having seen a write error is treated as suspect by md ever after.
/// The healed leg must read plain `in_sync`.
#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn a_leg_readded_through_sysfs_does_not_keep_its_write_error() {
    let t0 = Instant::now();
    let mut lab = lab("safety-write-error", true);
    let state = "/sys/block/md0/md/dev-nbd1/state";
    // the first probe 3 s after the failure; no reconnect: the transport is
    // whole and the leg answers where md still holds it
    start_agent_probing(&mut lab, 3, false);
    let out = lab.vm.sh(&format!(
        "echo write_error > {state} && cat {state} && mdadm /dev/md0 --fail /dev/nbd1 2>&1 && cat {state}"
    ));
    eprintln!("observed: write_error set, failed: {out:?}");
    assert!(
        out.lines().next().unwrap_or("").contains("write_error"),
        "{out}"
    );
    let sha = write_data(&mut lab.vm, "md0", SEEK_MIB, PATTERN_MIB);
    lab.wait_healed("md0", WAIT);
    let log = agent_log(&mut lab.vm);
    assert!(
        log.contains("md0: re-added nbd1 (the bitmap limits the resync to what changed)"),
        "{log}"
    );
    let healed = lab
        .vm
        .wait_for("nbd1 plain in_sync", Duration::from_secs(30), |vm| {
            let st = vm.sh(&format!("cat {state}"));
            (!st.contains("write_error")).then_some(st)
        });
    eprintln!("observed: nbd1's state after the heal: {healed:?}");
    assert_eq!(healed.trim(), "in_sync");
    assert_eq!(read_sha(&mut lab.vm, "md0", SEEK_MIB, PATTERN_MIB), sha);
    assert_eq!(check_mismatches(&mut lab.vm, "md0", WAIT), 0);
    eprintln!(
        "scenario write_error/mdguard: {:.1} s (boot {:.1} s)\nmdguard log:\n{log}",
        t0.elapsed().as_secs_f64(),
        lab.vm.boot_time.as_secs_f64()
    );
}

/// A leg mdadm left out when it assembled the array at boot (the soak's guest
/// powered off mid-recovery came back with "kicking non-fresh nbd1 from
/// array", and the agent, started after, never looked at nbd1: no uevent
/// announces a device that is already there). Here nbd1 is failed and removed,
/// the outage's writes land on nbd0, md0 is stopped and assembled from nbd0
/// alone, and only then the agent starts: it must take nbd1, present since
/// before it ran, as a candidate, prove it and add it. The outage's writes are
/// then on nbd1's own blocks and `check` finds nothing.
#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn a_leg_left_out_at_boot_is_added_when_the_agent_starts() {
    let t0 = Instant::now();
    let mut lab = lab("safety-leftout", true);
    let off = data_offset(&mut lab, "nbd1");
    lab.vm
        .sh("mdadm /dev/md0 --fail /dev/nbd1 --remove /dev/nbd1 >/dev/null 2>&1");
    let sha = write_data(&mut lab.vm, "md0", SEEK_MIB, PATTERN_MIB);
    let (rc, out) = observe(
        &mut lab,
        "md0 assembled from nbd0 alone",
        "mdadm --stop /dev/md0 && mdadm --assemble --run /dev/md0 /dev/nbd0 && cat /proc/mdstat",
    );
    assert_eq!(rc, 0, "{out}");
    assert!(mdstat_md0(&mut lab).contains("[U_]"), "{out}");
    assert!(lab.snapshot().member("md0", "nbd1").is_none());
    // assembled auto-read-only (`read-auto`): md starts no recovery until the
    // first write, which a booted guest makes when it mounts its file systems,
    // before the agent starts; so here
    let first = write_data(&mut lab.vm, "md0", 0, 1);
    // out of read-auto: `active`, or `clean` once md's safe-mode delay
    // (200 ms without writes) has passed, as it had under load in one CI run
    let state = lab.snapshot().get("md0", "array_state").map(str::to_string);
    assert!(
        matches!(state.as_deref(), Some("active" | "clean")),
        "md0 still {state:?} after a write"
    );
    start_agent(&mut lab);
    let healed = harness::wait_until(WAIT, || {
        let s = lab.snapshot();
        s.get("md0", "degraded") == Some("0") && s.get("md0", "sync_action") == Some("idle")
    });
    let log = agent_log(&mut lab.vm);
    assert!(healed, "md0 not healed in {WAIT:?}; mdguard log:\n{log}");
    assert!(
        log.contains("md0: new device nbd1 carries this array's superblock (role 1)"),
        "{log}"
    );
    assert!(!log.contains("md0: not considered"), "{log}");
    let s = lab.snapshot();
    let m = s.member("md0", "nbd1").expect("nbd1 a member again");
    assert!(m.states.iter().any(|x| x == "in_sync"), "{}", s.text);
    assert_eq!(
        leg_sha(&mut lab, "nbd1", off, SEEK_MIB, PATTERN_MIB),
        sha,
        "nbd1's own blocks lack the outage's writes"
    );
    assert_eq!(read_sha(&mut lab.vm, "md0", SEEK_MIB, PATTERN_MIB), sha);
    assert_eq!(read_sha(&mut lab.vm, "md0", 0, 1), first);
    assert_eq!(check_mismatches(&mut lab.vm, "md0", WAIT), 0);
    eprintln!(
        "scenario left out at boot: {:.1} s (boot {:.1} s)\nmdguard log:\n{log}",
        t0.elapsed().as_secs_f64(),
        lab.vm.boot_time.as_secs_f64()
    );
}
