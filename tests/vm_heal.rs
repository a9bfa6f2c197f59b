//! The agent on a real kernel: `mdguard run` inside the VM guest heals md RAID1
//! arrays whose NBD legs' storage servers die and come back. Each scenario ends
//! with the array `[UU]`, the data written during the outage intact, and a
//! `check` finding no mismatch.

mod harness;

use harness::guest::{self, agent_log, check_mismatches, log_times, read_sha, write_data};
use harness::{ImageFormat, Lab, LabConfig, Layout, StorageServer, IGNORE_MSG};
use std::time::{Duration, Instant};

const HEAL_WAIT: Duration = Duration::from_secs(240);

/// Write the guest's config and start the agent in the background.
/// `throttle`: extra keys of the [throttle] table; `extra`: further tables.
fn start_agent(lab: &mut Lab, throttle: &str, extra: &str) {
    let mut cfg = format!(
        "[throttle]\njitter_s = 0\n{throttle}[probe]\ninitial_interval_s = 1\nmax_interval_s = 4\ntimeout_ms = 3000\n",
    );
    cfg.push_str(extra);
    for i in 0..lab.legs.len() {
        let t = lab
            .cfg
            .nbd_timeout
            .map(|t| format!(" -t {t}"))
            .unwrap_or_default();
        // without udev nobody rescans a reconnected disk's partitions: ask
        let rescan = if lab.cfg.layout == Layout::Seed {
            format!(" && blockdev --rereadpt /dev/{}", lab.legs[i].nbd)
        } else {
            String::new()
        };
        cfg.push_str(&lab.reconnect_cfg(i, &format!("{t}{rescan}")));
    }
    // MDGUARD_VM_RUN_ARGS: the arguments of the packaged unit's ExecStart=
    // (tests/pkg/run.sh); with no syslog in the guest it logs to stderr anyway
    let args = std::env::var("MDGUARD_VM_RUN_ARGS").unwrap_or_else(|_| "run --foreground".into());
    guest::start_agent(&mut lab.vm, &cfg, &args, Duration::from_secs(20));
}

/// Sectors written to a leg's block device so far (field 7 of /sys/block/X/stat).
fn sectors_written(lab: &mut Lab, dev: &str) -> u64 {
    lab.vm
        .sh(&format!("cat /sys/block/{dev}/stat"))
        .split_whitespace()
        .nth(6)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Scenario 1: a storage server killed during writes, restarted: the leg is
/// re-added without any human step, and the resync uses the bitmap.
#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn killed_server_comes_back_and_is_readded() {
    let _ = IGNORE_MSG;
    let t0 = Instant::now();
    let mut lab = lab("heal-kill", Layout::Mirror, Some(5), 64);
    // nbd1 is write-mostly and failfast: md forgets both when the leg is
    // removed, so the heal must ask for them again
    let state = "/sys/block/md0/md/dev-nbd1/state";
    lab.vm.sh(&format!(
        "echo writemostly > {state} && echo failfast > {state}"
    ));
    start_agent(&mut lab, "", "");

    lab.legs[1].server.kill();
    let sha = write_data(&mut lab.vm, "md0", 8, 4);
    lab.wait_snapshot("md0 degraded", Duration::from_secs(60), |s| {
        s.get("md0", "degraded") == Some("1")
    });
    let written_before = sectors_written(&mut lab, "nbd1");
    lab.legs[1].server.restart();
    let back_at = lab.vm.uptime();
    lab.wait_healed("md0", HEAL_WAIT);
    let log = agent_log(&mut lab.vm);
    let readd = log_times(&log, "re-added nbd1");
    assert!(!readd.is_empty(), "mdguard never re-added nbd1:\n{log}");
    let copied_kib = sectors_written(&mut lab, "nbd1").saturating_sub(written_before) / 2;
    assert_eq!(
        read_sha(&mut lab.vm, "md0", 8, 4),
        sha,
        "data written during the outage"
    );
    assert_eq!(
        check_mismatches(&mut lab.vm, "md0", HEAL_WAIT),
        0,
        "legs differ after heal"
    );
    let healed = lab.vm.read(state).unwrap_or_default();
    for word in ["in_sync", "write_mostly", "failfast"] {
        assert!(
            healed.split(',').any(|w| w.trim() == word),
            "nbd1's state after the heal: {healed}\n{log}"
        );
    }
    assert!(!healed.contains("write_error"), "{healed}\n{log}");
    // the bitmap limited the copy: far less than the 64 MiB leg
    assert!(
        copied_kib < 32 * 1024,
        "resync copied {copied_kib} KiB: the bitmap was not used?\n{log}"
    );
    // the agent says what md wrote to the leg, as the leg's own counter shows
    let said = lab
        .vm
        .wait_for("the copy report", Duration::from_secs(30), |vm| {
            agent_log(vm).lines().find_map(|l| {
                l.split_once("md0: nbd1 is in sync: md wrote ")
                    .map(|(_, r)| r.to_string())
            })
        });
    assert!(said.ends_with("(what the bitmap kept)"), "{said}");
    let said_mib: f64 = said.split(' ').next().unwrap().parse().unwrap();
    assert!(
        (said_mib * 1024.0 - copied_kib as f64).abs() <= 1024.0,
        "agent said {said}, the leg's counter {copied_kib} KiB"
    );
    let readd_at = readd.last().copied().unwrap();
    eprintln!(
        "figure: server back -> re-add issued {:.1} s; resync copied {} KiB; scenario {:.1} s (boot {:.1} s)",
        readd_at - back_at,
        copied_kib,
        t0.elapsed().as_secs_f64(),
        lab.vm.boot_time.as_secs_f64()
    );
    eprintln!("mdguard log:\n{log}");
}

/// A lab for a heal scenario, its arrays in sync.
fn lab(name: &str, layout: Layout, nbd_timeout: Option<u32>, leg_mib: u64) -> Lab {
    Lab::start_clean(
        name,
        LabConfig::healing(layout, nbd_timeout, leg_mib),
        HEAL_WAIT,
    )
}

fn kill_and_write(lab: &mut Lab, md: &str, seek_mib: u32, mib: u32) -> String {
    lab.legs[1].server.kill();
    let sha = write_data(&mut lab.vm, md, seek_mib, mib);
    let md2 = md.to_string();
    lab.wait_snapshot(
        &format!("{md} degraded"),
        Duration::from_secs(60),
        move |s| s.get(&md2, "degraded") == Some("1"),
    );
    sha
}

fn finish(lab: &mut Lab, t0: Instant, name: &str) {
    let log = agent_log(&mut lab.vm);
    // resync durations as mdguard measured them: "recovery finished after Ns"
    let resyncs: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split("recovery finished after ").nth(1))
        .filter_map(|r| r.split(';').next())
        .collect();
    eprintln!(
        "scenario {name}: {:.1} s (boot {:.1} s); resync durations {resyncs:?}\nmdguard log:\n{log}",
        t0.elapsed().as_secs_f64(),
        lab.vm.boot_time.as_secs_f64()
    );
}

/// Scenario 2a: a frozen server and no transport timeout: md has no I/O timeout,
/// so writes hang; mdguard reports the stall, and once the server resumes the
/// array is whole with nothing to heal.
#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn frozen_server_without_timeout_is_reported_stalled() {
    let t0 = Instant::now();
    let mut lab = lab("heal-freeze", Layout::Mirror, None, 32);
    start_agent(&mut lab, "", "[heal]\nstall_timeout_s = 3\n");
    lab.vm
        .sh("dd if=/dev/urandom of=/tmp/data bs=1M count=2 2>/dev/null");
    lab.legs[1].server.freeze();
    lab.vm.sh(
        "(dd if=/tmp/data of=/dev/md0 bs=1M seek=4 oflag=direct conv=notrunc,fsync; touch /tmp/dd.done) \
         >/dev/null 2>&1 &",
    );
    lab.vm
        .wait_for("mdguard reports the stall", HEAL_WAIT, |vm| {
            agent_log(vm).contains("writes stalled").then_some(())
        });
    assert_eq!(
        lab.vm
            .run("[ -e /tmp/dd.done ]", Duration::from_secs(10))
            .status,
        1,
        "the write hangs"
    );
    lab.legs[1].server.resume();
    lab.vm.wait_for("the write completes", HEAL_WAIT, |vm| {
        (vm.run("[ -e /tmp/dd.done ]", Duration::from_secs(10))
            .status
            == 0)
            .then_some(())
    });
    lab.wait_healed("md0", HEAL_WAIT);
    lab.vm
        .wait_for("mdguard sees writes flow", Duration::from_secs(30), |vm| {
            agent_log(vm).contains("writes flow again").then_some(())
        });
    let sha = lab
        .vm
        .sh("sha256sum < /tmp/data | cut -d' ' -f1")
        .trim()
        .to_string();
    assert_eq!(read_sha(&mut lab.vm, "md0", 4, 2), sha);
    assert_eq!(check_mismatches(&mut lab.vm, "md0", HEAL_WAIT), 0);
    finish(&mut lab, t0, "frozen, no timeout");
}

/// Scenario 2b: frozen server with `nbd-client -t 5`: the leg fails on the
/// timeout, and is reconnected and re-added once the server resumes.
#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn frozen_server_with_timeout_fails_the_leg_then_heals() {
    let t0 = Instant::now();
    let mut lab = lab("heal-freeze-t", Layout::Mirror, Some(5), 32);
    start_agent(&mut lab, "", "");
    lab.legs[1].server.freeze();
    let sha = write_data(&mut lab.vm, "md0", 4, 2);
    lab.wait_snapshot(
        "md0 degraded by the nbd timeout",
        Duration::from_secs(60),
        |s| s.get("md0", "degraded") == Some("1"),
    );
    lab.legs[1].server.resume();
    let back = lab.vm.uptime();
    lab.wait_healed("md0", HEAL_WAIT);
    let log = agent_log(&mut lab.vm);
    let readd = log_times(&log, "re-added nbd1");
    assert!(!readd.is_empty(), "{log}");
    assert_eq!(read_sha(&mut lab.vm, "md0", 4, 2), sha);
    assert_eq!(check_mismatches(&mut lab.vm, "md0", HEAL_WAIT), 0);
    eprintln!(
        "figure: frozen+timeout: server resumed -> re-add {:.1} s",
        readd.last().unwrap() - back
    );
    finish(&mut lab, t0, "frozen with -t");
}

/// Scenario 3: the seed layout (md0 = p1+p1, md1 = p2+p2 over the same two legs):
/// only md0 is written, so only md0 notices the dead leg; md1's part of the disk
/// is failed so the disk can be reconnected, and both arrays heal.
#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn seed_layout_both_arrays_heal() {
    let t0 = Instant::now();
    let mut lab = lab("heal-seed", Layout::Seed, Some(5), 48);
    start_agent(&mut lab, "", "");
    let sha = kill_and_write(&mut lab, "md0", 2, 2);
    lab.legs[1].server.restart();
    lab.wait_healed("md0", HEAL_WAIT);
    lab.wait_healed("md1", HEAL_WAIT);
    let log = agent_log(&mut lab.vm);
    assert!(log.contains("re-added nbd1p1"), "{log}");
    assert!(log.contains("re-added nbd1p2"), "{log}");
    assert!(log.contains("failing nbd1p2"), "{log}");
    assert_eq!(read_sha(&mut lab.vm, "md0", 2, 2), sha);
    assert_eq!(check_mismatches(&mut lab.vm, "md0", HEAL_WAIT), 0);
    assert_eq!(check_mismatches(&mut lab.vm, "md1", HEAL_WAIT), 0);
    finish(&mut lab, t0, "seed layout");
}

/// Scenario 3b: the seed layout with 0.90 superblocks, the last partition running
/// to the end of the disk. A 0.90 superblock sits at the end of its device, so
/// the whole disk nbd1 shows md1's superblock (nbd1p2's) as its own. When nbd1
/// comes back, the whole disk is passed over (its partitions are legs) and only
/// the partitions are re-added.
#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn a_whole_disk_is_never_added_for_its_last_partition() {
    let t0 = Instant::now();
    let cfg = LabConfig {
        metadata: "0.90",
        last_partition_to_end: true,
        ..LabConfig::healing(Layout::Seed, Some(5), 48)
    };
    let mut lab = Lab::start_clean("heal-090", cfg, HEAL_WAIT);
    // the hazard is real on this kernel: the disk reads as md1's member
    let uuid = |lab: &mut Lab, dev: &str| {
        lab.vm
            .sh(&format!(
                "mdadm --examine /dev/{dev} 2>/dev/null | grep -i '^ *UUID' || true"
            ))
            .trim()
            .to_string()
    };
    let (disk, part) = (uuid(&mut lab, "nbd1"), uuid(&mut lab, "nbd1p2"));
    assert!(
        !part.is_empty() && disk == part,
        "nbd1: {disk:?}, nbd1p2: {part:?}"
    );
    start_agent(&mut lab, "", "");
    let sha = kill_and_write(&mut lab, "md0", 2, 2);
    lab.legs[1].server.restart();
    lab.wait_healed("md0", HEAL_WAIT);
    lab.wait_healed("md1", HEAL_WAIT);
    let log = agent_log(&mut lab.vm);
    assert!(
        log.contains("re-added nbd1p1") && log.contains("re-added nbd1p2"),
        "{log}"
    );
    assert!(!log.contains("new device nbd1 "), "{log}");
    assert!(
        log.contains(
            "nbd1: not considered as a returning leg: a whole disk whose partitions are legs"
        ),
        "{log}"
    );
    let s = lab.snapshot();
    assert!(s.member("md0", "nbd1").is_none() && s.member("md1", "nbd1").is_none());
    assert_eq!(read_sha(&mut lab.vm, "md0", 2, 2), sha);
    assert_eq!(check_mismatches(&mut lab.vm, "md1", HEAL_WAIT), 0);
    finish(&mut lab, t0, "0.90 partitions");
}

/// Scenario 4: a flapping server, killed and restarted again and again: backoff
/// holds (no re-add storm), then mdguard stops re-adding and says `flapping`;
/// a probe request (SIGUSR1 locally, dom0's hint in Xen) heals it at the end.
#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn flapping_server_backs_off_then_heals_on_request() {
    let t0 = Instant::now();
    let mut lab = lab("heal-flap", Layout::Mirror, Some(5), 32);
    start_agent(
        &mut lab,
        "",
        "[heal]\nflap_window_s = 120\nflap_backoff_s = 2\nflap_limit = 3\n",
    );
    let mut kills = 0;
    for round in 0..5 {
        kill_and_write(&mut lab, "md0", 4 + round, 1);
        kills += 1;
        lab.legs[1].server.restart();
        let before = log_times(&agent_log(&mut lab.vm), "re-added nbd1").len();
        let readded = harness::wait_until(Duration::from_secs(30), || {
            log_times(&agent_log(&mut lab.vm), "re-added nbd1").len() > before
        });
        if !readded {
            break;
        }
        lab.wait_healed("md0", HEAL_WAIT);
        // Let md clear its bitmap (all counters back to zero frees every page:
        // `bitmap: 0/N pages`) before the next failure. Once, in a CI run, a
        // failure inside that window was followed by a check that found 384
        // mismatched sectors after the final heal; a flap that fast is md's own
        // edge, kept out of this test of mdguard's backoff (see the closing note).
        lab.wait_bitmap_clean(Duration::from_secs(60));
    }
    let log = agent_log(&mut lab.vm);
    assert!(log.contains("is flapping"), "{log}");
    let readds = log_times(&log, "re-added nbd1");
    assert!(
        readds.len() < kills,
        "{} re-adds for {kills} kills:\n{log}",
        readds.len()
    );
    // the waits between re-adds grew
    let gaps: Vec<f64> = readds.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!("figure: re-add times {readds:?}, gaps {gaps:?}");
    // nothing more happens by itself
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        log_times(&agent_log(&mut lab.vm), "re-added nbd1").len(),
        readds.len()
    );
    lab.vm.sh("kill -USR1 $(cat /tmp/mdguard.pid)");
    lab.wait_healed("md0", HEAL_WAIT);
    let mismatches = check_mismatches(&mut lab.vm, "md0", HEAL_WAIT);
    if mismatches != 0 {
        let dmesg = lab.vm.sh("dmesg | tail -60");
        eprintln!("dmesg:\n{dmesg}");
    }
    finish(&mut lab, t0, "flapping");
    assert_eq!(mismatches, 0);
}

/// Scenario 5: while md0 is degraded, disks that carry md superblocks appear:
/// over the legs' own transport, another array's leg (nbd2) and a stale copy of
/// md0's surviving leg (nbd3), each served by a storage server of its own; and
/// locally, the same two on loop devices. The nbd ones are probed and refused
/// by their superblocks; the local ones are not even probed (a loop device or a
/// dm snapshot is where stale copies of legs live). None is touched.
#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn foreign_and_stale_disks_are_never_touched() {
    let t0 = Instant::now();
    let mut lab = lab("heal-foreign", Layout::Mirror, Some(5), 32);
    let connect = |lab: &mut Lab, nbd: &str, port: u16| {
        lab.vm.sh(&format!(
            "nbd-client 10.0.2.2 {port} /dev/{nbd} -N {}",
            harness::storage::EXPORT
        ));
        let check = format!("[ \"$(cat /sys/block/{nbd}/size)\" -gt 0 ]");
        lab.vm.wait_for(
            &format!("/dev/{nbd} connected"),
            Duration::from_secs(30),
            |vm| (vm.run(&check, Duration::from_secs(10)).status == 0).then_some(()),
        );
    };
    // another array's leg, made while no agent runs: locally and over nbd
    lab.vm.sh(
        "dd if=/dev/zero of=/tmp/f0 bs=1M count=16 2>/dev/null && dd if=/dev/zero of=/tmp/f1 bs=1M count=16 2>/dev/null && \
         losetup /dev/loop0 /tmp/f0 && losetup /dev/loop1 /tmp/f1 && \
         mdadm --create /dev/md9 --run --level=1 --raid-devices=2 --metadata=1.2 --assume-clean /dev/loop0 /dev/loop1 >/dev/null 2>&1 && \
         mdadm --stop /dev/md9 >/dev/null 2>&1 && losetup -d /dev/loop0 && losetup -d /dev/loop1",
    );
    let foreign = StorageServer::create(lab.dir(), "foreign", 16, ImageFormat::Raw);
    connect(&mut lab, "nbd2", foreign.port());
    lab.vm.sh(
        "mdadm --create /dev/md8 --run --level=1 --raid-devices=2 --metadata=1.2 --assume-clean /dev/nbd2 missing >/dev/null 2>&1 && \
         mdadm --stop /dev/md8 >/dev/null 2>&1 && nbd-client -d /dev/nbd2 >/dev/null 2>&1",
    );
    start_agent(&mut lab, "", "");
    kill_and_write(&mut lab, "md0", 4, 1);
    // a stale copy of the surviving leg (role 0 of md0): in the guest from nbd0,
    // and on the host from leg 0's image, served as a disk of its own
    lab.vm.sh("dd if=/dev/nbd0 of=/tmp/stale bs=1M 2>/dev/null");
    let stale_img = lab.dir().join("stale.raw");
    std::fs::copy(lab.legs[0].server.image(), &stale_img).expect("copy leg 0's image");
    let stale = StorageServer::serve(lab.dir(), "stale", stale_img, ImageFormat::Raw);
    connect(&mut lab, "nbd2", foreign.port());
    connect(&mut lab, "nbd3", stale.port());
    lab.vm
        .sh("losetup /dev/loop2 /tmp/f0 && losetup /dev/loop3 /tmp/stale");
    let judged = [
        "nbd2: carries md superblock",
        "nbd3: not added to md0",
        "loop2: not considered as a returning leg",
        "loop3: not considered as a returning leg",
    ];
    lab.vm
        .wait_for("every disk judged", Duration::from_secs(60), |vm| {
            let l = agent_log(vm);
            judged.iter().all(|j| l.contains(j)).then_some(())
        });
    std::thread::sleep(Duration::from_secs(3));
    let s = lab.snapshot();
    for dev in ["nbd2", "nbd3", "loop2", "loop3"] {
        assert!(s.member("md0", dev).is_none(), "{dev} was added");
    }
    assert_eq!(s.get("md0", "degraded"), Some("1"));
    let log = agent_log(&mut lab.vm);
    for j in judged {
        assert_eq!(log.matches(j).count(), 1, "{j}: logged once:\n{log}");
    }
    assert!(
        log.contains("nbd3: not added to md0: slot 0 is held by another in-sync leg"),
        "{log}"
    );
    assert!(
        !log.contains("loop2: carries md superblock"),
        "loop devices are never probed:\n{log}"
    );
    finish(&mut lab, t0, "foreign disk");
}

/// Scenarios 6 and 7: the resync is throttled to the configured ceiling while it
/// runs; mdguard killed with -9 mid-recovery and restarted does no harm, picks up
/// where the kernel is, and still puts the original limits back at the end.
#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn throttled_recovery_survives_kill_9_and_restores_limits() {
    let t0 = Instant::now();
    let mut lab = lab("heal-kill9", Layout::Mirror, Some(5), 32);
    let before = lab
        .vm
        .sh("cat /sys/block/md0/md/sync_speed_max")
        .trim()
        .to_string();
    assert_eq!(before, "200000 (system)");
    start_agent(&mut lab, "max_kbps = 1000\n", "");
    let sha = kill_and_write(&mut lab, "md0", 2, 8);
    lab.legs[1].server.restart();
    lab.wait_snapshot("recovering, throttled", HEAL_WAIT, |s| {
        s.get("md0", "sync_action") == Some("recover")
            && s.get("md0", "sync_speed_max") == Some("1000 (local)")
    });
    lab.vm.sh("kill -9 $(cat /tmp/mdguard.pid)");
    let s = lab.snapshot();
    assert_eq!(
        s.get("md0", "sync_speed_max"),
        Some("1000 (local)"),
        "left throttled by the killed run"
    );
    lab.vm
        .sh("MDGUARD_LOG_TIMESTAMPS=1 setsid mdguard run --foreground \
         </dev/null >/tmp/mdguard2.log 2>&1 & echo $! > /tmp/mdguard.pid");
    lab.wait_healed("md0", HEAL_WAIT);
    lab.vm
        .wait_for("limits restored", Duration::from_secs(30), |vm| {
            (vm.sh("cat /sys/block/md0/md/sync_speed_max").trim() == "200000 (system)")
                .then_some(())
        });
    let log2 = lab.vm.sh("cat /tmp/mdguard2.log");
    assert!(log2.contains("previous mdguard changed"), "{log2}");
    assert_eq!(
        lab.vm.sh("cat /sys/block/md0/md/sync_speed_min").trim(),
        "1000 (system)"
    );
    assert_eq!(read_sha(&mut lab.vm, "md0", 2, 8), sha);
    assert_eq!(check_mismatches(&mut lab.vm, "md0", HEAL_WAIT), 0);
    eprintln!("second run:\n{log2}");
    finish(&mut lab, t0, "kill -9 + throttle");
}

/// While every array is healthy the loop sleeps in poll(2) with no timer: the
/// main thread is not woken at all (voluntary context switches of the loop thread
/// stay put over 20 s).
#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn healthy_arrays_wake_the_agent_up_for_nothing() {
    let t0 = Instant::now();
    let mut lab = lab("idle", Layout::Seed, None, 16);
    start_agent(&mut lab, "", "");
    let ctxt = |lab: &mut Lab| -> u64 {
        lab.vm
            .sh("grep voluntary_ctxt_switches /proc/$(cat /tmp/mdguard.pid)/status | head -1")
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    std::thread::sleep(Duration::from_secs(2));
    let (a, ta) = (ctxt(&mut lab), lab.vm.uptime());
    std::thread::sleep(Duration::from_secs(20));
    let (b, tb) = (ctxt(&mut lab), lab.vm.uptime());
    let rss = lab
        .vm
        .sh("grep VmRSS /proc/$(cat /tmp/mdguard.pid)/status")
        .trim()
        .to_string();
    eprintln!(
        "figure: idle wake-ups {} in {:.0} s ({:.1}/min); {rss}",
        b - a,
        tb - ta,
        (b - a) as f64 * 60.0 / (tb - ta)
    );
    assert_eq!(b, a, "the idle agent was woken up");
    finish(&mut lab, t0, "idle");
}
