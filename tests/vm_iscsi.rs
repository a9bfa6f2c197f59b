//! iSCSI legs on the real kernel: md0 (RAID1, bitmap) over two LUNs, each served
//! by its own tgtd on the host and reached through open-iscsi in the guest
//! (iscsid, iscsi_tcp), with `node.session.timeo.replacement_timeout` short.
//! A target killed and restarted within the replacement timeout, and beyond it:
//! the session recovered by iscsid itself, by mdguard's `[[reconnect]]`
//! (iscsiadm logout and login), and by an admin's re-login that gives the LUN a
//! new node. Each ends with md0 `[UU]`, the outage's writes read back through md
//! and below md on the returning leg, and a `check` finding no mismatch.

mod harness;

use harness::guest::{self, agent_log, check_mismatches, leg_sha, log_times, read_sha, write_data};
use harness::iscsi::{IscsiTarget, LunIdentity};
use harness::iscsi_lab::{IscsiLab, IscsiLabConfig, ISCSID_LOG};
use harness::{wait_healed, wait_snapshot, Vm, IGNORE_MSG};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(180);

/// Every node's replacement timeout: a restart a second after the kill is well
/// inside it even under TCG, and a test waiting it out stays short.
const REPLACEMENT_S: u32 = 6;

fn lab(name: &str) -> IscsiLab {
    let cfg = IscsiLabConfig {
        replacement_timeout_s: REPLACEMENT_S,
        ..IscsiLabConfig::default()
    };
    IscsiLab::start_clean(name, cfg, WAIT)
}

/// Start `mdguard run` with quick probes, no start jitter and `extra` tables.
fn start_agent(lab: &mut IscsiLab, extra: &str) {
    let cfg = format!(
        "[throttle]\njitter_s = 0\n[probe]\ninitial_interval_s = 1\nmax_interval_s = 4\ntimeout_ms = 3000\n{extra}"
    );
    guest::start_agent(
        &mut lab.vm,
        &cfg,
        "run --foreground",
        Duration::from_secs(20),
    );
}

/// The node and storage identity mdguard recorded for md0's leg with descriptor
/// `dev_number` (`/run/mdguard/legs.json`), if it has read that leg in sync.
fn record(vm: &mut Vm, dev_number: u64) -> Option<(String, Option<String>)> {
    let text = vm.sh("cat /run/mdguard/legs.json 2>/dev/null; true");
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let rec = v["legs"]
        .as_array()?
        .iter()
        .find(|r| r["dev_number"].as_u64() == Some(dev_number))?;
    Some((
        rec["device"].as_str().unwrap_or_default().to_string(),
        rec["storage"].as_str().map(str::to_string),
    ))
}

fn recorded_storage(lab: &mut IscsiLab, dev_number: u64) -> (String, Option<String>) {
    record(&mut lab.vm, dev_number).unwrap_or_else(|| {
        let text = lab.vm.sh("cat /run/mdguard/legs.json 2>/dev/null; true");
        panic!("no record of leg {dev_number} in {text}")
    })
}

/// Sectors written to a block device so far (field 7 of its `stat`).
fn sectors_written(lab: &mut IscsiLab, dev: &str) -> u64 {
    lab.vm
        .sh(&format!("cat /sys/block/{dev}/stat"))
        .split_whitespace()
        .nth(6)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Kill leg 1's target, write `mib` MiB at `seek_mib` (the write waits out the
/// replacement timeout, then md fails sdb and it completes on sda) and wait
/// until md0 is degraded; the data's sha256.
fn kill_beyond_timeout(lab: &mut IscsiLab, seek_mib: u32, mib: u32) -> String {
    let t = Instant::now();
    lab.targets[1].kill();
    let sha = write_data(&mut lab.vm, "md0", seek_mib, mib);
    wait_snapshot(&mut lab.vm, "md0 degraded", Duration::from_secs(60), |s| {
        s.get("md0", "degraded") == Some("1")
    });
    eprintln!(
        "figure: target killed -> md0 degraded {:.1} s (replacement_timeout {REPLACEMENT_S} s)",
        t.elapsed().as_secs_f64()
    );
    sha
}

/// The data of an outage, through md and on the returning leg below md.
fn verify_data(lab: &mut IscsiLab, leg: &str, seek_mib: u32, mib: u32, sha: &str) {
    assert_eq!(
        read_sha(&mut lab.vm, "md0", seek_mib, mib),
        sha,
        "through md0"
    );
    assert_eq!(
        leg_sha(&mut lab.vm, leg, seek_mib, mib),
        sha,
        "on {leg} below md"
    );
}

/// [`verify_data`], then md's `check` of the whole array.
fn verify(lab: &mut IscsiLab, leg: &str, seek_mib: u32, mib: u32, sha: &str) {
    verify_data(lab, leg, seek_mib, mib, sha);
    assert_eq!(check_mismatches(&mut lab.vm, "md0", WAIT), 0, "legs differ");
}

fn finish(lab: &mut IscsiLab, t0: Instant, name: &str) {
    let log = agent_log(&mut lab.vm);
    let iscsid = lab.vm.sh(&format!("cat {ISCSID_LOG}"));
    eprintln!(
        "scenario {name}: {:.1} s (boot {:.1} s)\nmdguard log:\n{log}\niscsid log:\n{iscsid}",
        t0.elapsed().as_secs_f64(),
        lab.vm.boot_time.as_secs_f64()
    );
}

/// A target frozen for 2 s: the write waits, nothing else happens.
/// (a) The target killed and back within the replacement timeout: the I/O waits,
/// iscsid logs in again, the write completes on both legs and md notices nothing.
/// (b) Killed for longer: the queued I/O fails, md fails sdb, and once the target
/// is back iscsid recovers the session by itself (it never stops trying; the
/// timeout only decides when I/O fails) on the same node, sdb, which mdguard
/// re-adds with no `[[reconnect]]` configured. The LUN's identity is the one
/// mdguard recorded for the leg.
#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn iscsi_target_back_within_and_after_the_replacement_timeout() {
    let _ = IGNORE_MSG;
    let t0 = Instant::now();
    let mut lab = lab("iscsi-recover");
    let iqn = lab.targets[1].iqn().to_string();
    assert_eq!(lab.disk(&iqn).as_deref(), Some("sdb"));
    let wwid = lab.wwid("sdb");
    assert_eq!(wwid, lab.targets[1].identity().wwid());
    assert_ne!(lab.wwid("sda"), wwid, "two LUNs, two identities");
    start_agent(&mut lab, "");

    // a target frozen (SIGSTOP) for 2 s, shorter than the initiator's NOP-Out
    // interval (5 s): the connection stays, the write waits and then lands
    lab.vm
        .sh("dd if=/dev/urandom of=/tmp/data.f bs=1M count=1 2>/dev/null");
    lab.targets[1].freeze();
    lab.vm.sh(
        "(dd if=/tmp/data.f of=/dev/md0 bs=1M seek=2 oflag=direct conv=notrunc,fsync; echo $? > /tmp/f.rc) \
         >/dev/null 2>&1 &",
    );
    std::thread::sleep(Duration::from_secs(2));
    let waiting = lab
        .vm
        .run("[ -e /tmp/f.rc ]", Duration::from_secs(10))
        .status
        != 0;
    let frozen_state = lab.session_state(&iqn);
    lab.targets[1].resume();
    let rc = lab
        .vm
        .wait_for("the write after the thaw", Duration::from_secs(30), |vm| {
            vm.read("/tmp/f.rc")
        });
    assert!(waiting, "the write waited for the frozen target");
    assert_eq!(
        frozen_state, "LOGGED_IN running",
        "a short freeze is no error"
    );
    assert_eq!(rc, "0");
    assert!(
        !lab.vm
            .sh(&format!("cat {ISCSID_LOG}"))
            .contains("error (1020"),
        "no connection error"
    );

    // (a) back within the replacement timeout
    lab.vm
        .sh("dd if=/dev/urandom of=/tmp/data.a bs=1M count=2 2>/dev/null");
    let killed = Instant::now();
    lab.targets[1].kill();
    lab.vm.sh(
        "(dd if=/tmp/data.a of=/dev/md0 bs=1M seek=4 oflag=direct conv=notrunc,fsync; echo $? > /tmp/a.rc) \
         >/dev/null 2>&1 &",
    );
    lab.vm
        .wait_for("the session fails", Duration::from_secs(20), |vm| {
            let s = vm.sh(&format!(
                "for s in /sys/class/iscsi_session/session*; do [ \"$(cat $s/targetname)\" = '{iqn}' ] && cat $s/state; done; true"
            ));
            (s.trim() == "FAILED").then_some(())
        });
    let during = lab.snapshot();
    let blocked = lab
        .vm
        .run("[ -e /tmp/a.rc ]", Duration::from_secs(10))
        .status
        != 0;
    lab.targets[1].restart();
    let back_in = killed.elapsed();
    assert!(
        back_in < Duration::from_secs(REPLACEMENT_S as u64 - 2),
        "the restart came {back_in:?} after the kill: not surely inside the replacement timeout"
    );
    let rc = lab
        .vm
        .wait_for("the write completes", Duration::from_secs(60), |vm| {
            vm.read("/tmp/a.rc")
        });
    let completed_in = killed.elapsed();
    assert_eq!(rc, "0", "the write waited and succeeded");
    assert!(blocked, "the write was waiting while the target was away");
    let s = lab.snapshot();
    assert_eq!(s.get("md0", "degraded"), Some("0"));
    assert_eq!(s.get("md0", "dev-sdb/state"), Some("in_sync"));
    let dmesg = lab.vm.sh("dmesg");
    assert!(!dmesg.contains("Disk failure on sdb"), "{dmesg}");
    let sha_a = lab
        .vm
        .sh("sha256sum < /tmp/data.a | cut -d' ' -f1")
        .trim()
        .to_string();
    assert_eq!(leg_sha(&mut lab.vm, "sdb", 4, 2), sha_a, "on sdb below md");
    let log = agent_log(&mut lab.vm);
    assert!(!log.contains("sdb"), "mdguard acted on sdb:\n{log}");
    eprintln!(
        "figure: (a) restart {:.1} s after the kill, write done {:.1} s after it; md0 meanwhile: array_state {:?}, sdb {:?}",
        back_in.as_secs_f64(),
        completed_in.as_secs_f64(),
        during.get("md0", "array_state"),
        during.get("md0", "dev-sdb/state")
    );

    // (b) away longer than the replacement timeout
    let sha = kill_beyond_timeout(&mut lab, 8, 4);
    assert_eq!(lab.session_state(&iqn), "FREE transport-offline");
    lab.targets[1].restart();
    let back = lab.vm.uptime();
    let t_back = Instant::now();
    lab.vm
        .wait_for("iscsid recovers the session", Duration::from_secs(60), |vm| {
            let s = vm.sh(&format!(
                "for s in /sys/class/iscsi_session/session*; do [ \"$(cat $s/targetname)\" = '{iqn}' ] && cat $s/state; done; true"
            ));
            (s.trim() == "LOGGED_IN").then_some(())
        });
    let session_in = t_back.elapsed();
    assert_eq!(lab.disk(&iqn).as_deref(), Some("sdb"), "the same node");
    wait_healed(&mut lab.vm, "md0", WAIT);
    let log = agent_log(&mut lab.vm);
    let readd = log_times(&log, "re-added sdb");
    assert!(!readd.is_empty(), "mdguard never re-added sdb:\n{log}");
    verify(&mut lab, "sdb", 8, 4, &sha);
    assert_eq!(lab.wwid("sdb"), wwid, "the same LUN after the recovery");
    let (node, storage) = recorded_storage(&mut lab, 1);
    assert_eq!(
        (node.as_str(), storage),
        ("sdb", Some(format!("scsi {wwid}")))
    );
    eprintln!(
        "figure: (b) target back -> session logged in {:.1} s, -> re-add issued {:.1} s (guest clock)",
        session_in.as_secs_f64(),
        readd.last().unwrap() - back
    );
    finish(&mut lab, t0, "within and after the replacement timeout");
}

/// The `[[reconnect]]` of the docs for an iSCSI leg: `iscsiadm --logout` then
/// `--login`, with the node's login bounded (one login attempt of at most 5 s:
/// the defaults, 8 attempts of 15 s, kept a login to a dead portal going for
/// 122 s here). mdguard removes the failed sdb from md0 and runs the command;
/// while the target is away the login fails and mdguard retries after its
/// backoff; once the target is back the command logs in and the session's new
/// disk is probed and re-added.
#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn iscsi_reconnect_command_logs_out_and_in_again() {
    let t0 = Instant::now();
    let mut lab = lab("iscsi-reconnect");
    let (iqn, port) = (lab.targets[1].iqn().to_string(), lab.targets[1].port());
    let portal = IscsiLab::portal(port);
    for (key, value) in [
        ("node.session.initial_login_retry_max", 1),
        ("node.conn[0].timeo.login_timeout", 5),
    ] {
        lab.vm.sh(&format!(
            "iscsiadm -m node -T {iqn} -p {portal} -o update -n '{key}' -v {value}"
        ));
    }
    let cmd = format!(
        "iscsiadm -m node -T {iqn} -p {portal} --logout; iscsiadm -m node -T {iqn} -p {portal} --login"
    );
    start_agent(
        &mut lab,
        &format!(
            "[[reconnect]]\ndevice = \"sdb\"\ncommand = [\"sh\", \"-c\", \"{cmd}\"]\ntimeout_s = 30\n"
        ),
    );
    let sha = kill_beyond_timeout(&mut lab, 8, 4);
    let failed = lab.vm.wait_for(
        "a reconnect failing while the target is away",
        Duration::from_secs(90),
        |vm| {
            agent_log(vm)
                .lines()
                .find(|l| l.contains("sdb: reconnect failed"))
                .map(str::to_string)
        },
    );
    lab.targets[1].restart();
    let back = lab.vm.uptime();
    wait_healed(&mut lab.vm, "md0", WAIT);
    let log = agent_log(&mut lab.vm);
    let dev = lab.disk(&iqn).expect("a session to leg 1 again");
    let readd = log_times(&log, &format!("re-added {dev}"));
    assert!(!readd.is_empty(), "mdguard never re-added {dev}:\n{log}");
    let runs = log.matches("sdb: running reconnect command").count();
    assert!(runs >= 2, "the command ran again after failing:\n{log}");
    verify(&mut lab, &dev, 8, 4, &sha);
    assert_eq!(lab.wwid(&dev), lab.targets[1].identity().wwid());
    eprintln!(
        "figure: reconnect: {runs} runs ({failed}); the LUN came back as {dev}; \
         target back -> re-add issued {:.1} s (guest clock)",
        readd.last().unwrap() - back
    );
    finish(&mut lab, t0, "[[reconnect]] with iscsiadm");
}

/// A copy of leg 1 served by another target while leg 1 is away: the same
/// superblock, another SCSI identity. mdguard refuses it and leaves the failed
/// sdb in md0, so when iscsid recovers leg 1's session sdb is re-added on its
/// node. Then an admin logs out of a failed session while md0 still holds sdb,
/// and in again once the target is back: the LUN comes back on a new node, which
/// mdguard adds by its superblock after removing the stale sdb. tgt's default
/// identities are the same for every tgtd's first LUN: shown, not relied on.
#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn iscsi_copy_on_another_target_refused_and_relogin_on_a_new_node() {
    let t0 = Instant::now();
    let mut lab = lab("iscsi-newnode");
    let (iqn, port) = (lab.targets[1].iqn().to_string(), lab.targets[1].port());
    let wwid = lab.wwid("sdb");
    start_agent(&mut lab, "");
    // the identity check needs the leg's record: mdguard reads the in-sync legs
    // when it starts (a read cut short by the failure records nothing)
    let (node, recorded) = lab
        .vm
        .wait_for("leg 1 recorded", Duration::from_secs(30), |vm| {
            record(vm, 1)
        });
    assert_eq!(
        (node.as_str(), recorded),
        ("sdb", Some(format!("scsi {wwid}")))
    );

    // outage 1: a copy of leg 1 as it was when it failed, on another target
    let sha1 = kill_beyond_timeout(&mut lab, 8, 4);
    let copy = lab.dir().join("copy.raw");
    std::fs::copy(lab.targets[1].image(), &copy).expect("copy leg 1's image");
    let other = IscsiTarget::serve(lab.dir(), "other", copy, LunIdentity::own("other"));
    lab.add_node(other.iqn(), other.port());
    let odev = lab.login(other.iqn(), other.port());
    let owwid = lab.wwid(&odev);
    assert_eq!(owwid, other.identity().wwid());
    assert_ne!(owwid, wwid, "another target's LUN, another identity");
    let refused = format!("it sits on scsi {owwid}, not on scsi {wwid} where the leg was");
    lab.vm
        .wait_for("the copy refused", Duration::from_secs(60), |vm| {
            agent_log(vm).contains(&refused).then_some(())
        });
    let owritten = sectors_written(&mut lab, &odev);
    let s = lab.snapshot();
    assert!(
        s.member("md0", "sdb").is_some(),
        "the failed sdb stays in md0 for its own return:\n{}\n{}",
        s.text,
        agent_log(&mut lab.vm)
    );
    lab.targets[1].restart();
    wait_healed(&mut lab.vm, "md0", WAIT);
    let log = agent_log(&mut lab.vm);
    assert!(!log_times(&log, "re-added sdb").is_empty(), "{log}");
    // md's check once, at the end, covers both outages
    verify_data(&mut lab, "sdb", 8, 4, &sha1);

    // outage 2: the admin's re-login, logout now, login once the target is back
    let sha2 = kill_beyond_timeout(&mut lab, 16, 4);
    lab.logout(&iqn, port);
    lab.targets[1].restart();
    let back = lab.vm.uptime();
    let dev = lab.login(&iqn, port);
    assert!(dev != "sdb" && dev != odev, "a new node, not {dev}");
    wait_healed(&mut lab.vm, "md0", WAIT);
    let log = agent_log(&mut lab.vm);
    let added = log_times(&log, &format!("re-added {dev}"));
    assert!(!added.is_empty(), "mdguard never added {dev}:\n{log}");
    assert!(
        log.contains(&format!("new device {dev} carries this array's superblock")),
        "{log}"
    );
    verify(&mut lab, &dev, 16, 4, &sha2);
    verify_data(&mut lab, &dev, 8, 4, &sha1);
    assert_eq!(lab.wwid(&dev), wwid, "the same LUN on its new node");
    let s = lab.snapshot();
    assert!(s.member("md0", "sdb").is_none(), "the stale sdb removed");
    assert!(s.member("md0", &odev).is_none(), "the copy not added");
    assert_eq!(
        sectors_written(&mut lab, &odev),
        owritten,
        "the copy not written"
    );
    let (node, storage) = lab
        .vm
        .wait_for("the new node recorded", Duration::from_secs(30), |vm| {
            record(vm, 1).filter(|(n, _)| *n == dev)
        });
    assert_eq!(
        (node.as_str(), storage),
        (dev.as_str(), Some(format!("scsi {wwid}")))
    );

    // tgt's defaults: every tgtd's LUN 1 of target 1 reads the same
    let img = lab.dir().join("plain.raw");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let plain = IscsiTarget::serve(lab.dir(), "plain", img, LunIdentity::TgtDefault);
    lab.add_node(plain.iqn(), plain.port());
    let pdev = lab.login(plain.iqn(), plain.port());
    assert_eq!(lab.wwid(&pdev), LunIdentity::TgtDefault.wwid());
    eprintln!(
        "figure: new node {dev} (copy on {odev}); target back -> add issued {:.1} s (guest clock); \
         tgt's default identity: {}",
        added.last().unwrap() - back,
        LunIdentity::TgtDefault.wwid()
    );
    finish(&mut lab, t0, "copy refused, new node after a re-login");
}
