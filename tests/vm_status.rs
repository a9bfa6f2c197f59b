//! Real-kernel tests: md RAID1 over nbd legs in a QEMU guest (tests/vm/README.md).
//!
//! Each test boots one guest and walks a leg through the stages of its life;
//! at every stage `mdguard status --json` (run in the guest) must agree with
//! the kernel's sysfs, and the stage's /proc/mdstat text and sysfs snapshot
//! are captured (target/vm-captures/, and tests/fixtures/ with
//! MDGUARD_UPDATE_FIXTURES=1).
mod harness;

use harness::*;
use std::time::{Duration, Instant};

const SYNC_WAIT: Duration = Duration::from_secs(180);

fn member_state(s: &Snapshot, md: &str, dev: &str) -> String {
    s.member(md, dev)
        .map(|m| m.states.join(","))
        .unwrap_or_else(|| "<not a member>".into())
}

fn has_state(s: &Snapshot, md: &str, dev: &str, state: &str) -> bool {
    s.member(md, dev)
        .is_some_and(|m| m.states.iter().any(|x| x == state))
}

/// Start an O_DIRECT write to `dev` in the background; its pid lands in
/// /tmp/<tag>.pid, its exit status in /tmp/<tag>.rc when it finishes.
fn background_write(lab: &mut Lab, dev: &str, seek_kib: u64, tag: &str) {
    lab.vm.sh(&format!(
        "rm -f /tmp/{tag}.rc /tmp/{tag}.pid; \
         (dd if=/dev/urandom of=/dev/{dev} bs=4k count=4 seek={} oflag=direct conv=notrunc \
          >/tmp/{tag}.log 2>&1 & echo $! > /tmp/{tag}.pid; wait $!; echo $? > /tmp/{tag}.rc) &",
        seek_kib / 4
    ));
}

/// Wait until the background write `tag` is stuck in the kernel: not
/// finished, and its dd in uninterruptible sleep (D) on two reads 0.3 s apart.
/// (Neither /sys/block/nbd1/inflight nor md0's counts it: what md sends the
/// frozen leg first is its bitmap update, a REQ_PREFLUSH|REQ_FUA write that
/// the flush machinery keeps out of the inflight counters; seen 0 for 10 s.)
fn wait_write_in_flight(lab: &mut Lab, tag: &str) {
    let script = format!(
        "[ ! -e /tmp/{tag}.rc ] && p=$(cat /tmp/{tag}.pid) && \
         grep -q '^State:.*D' /proc/$p/status && usleep 300000 && \
         [ ! -e /tmp/{tag}.rc ] && grep -q '^State:.*D' /proc/$p/status"
    );
    lab.vm.wait_for(
        &format!("write {tag} blocked in the kernel"),
        Duration::from_secs(20),
        |vm| (vm.run(&script, Duration::from_secs(10)).status == 0).then_some(()),
    );
}

/// `mdadm --remove`, retried: the kernel answers EBUSY while I/O is pending.
fn remove_member(lab: &mut Lab, md: &str, dev: &str) {
    let md_s = md.to_string();
    let dev_s = dev.to_string();
    lab.vm.wait_for(
        &format!("mdadm {md} --remove {dev}"),
        Duration::from_secs(30),
        |vm| {
            let s = vm.run(
                &format!("mdadm /dev/{md_s} --remove /dev/{dev_s}"),
                Duration::from_secs(30),
            );
            (s.status == 0).then_some(())
        },
    );
    lab.wait_snapshot(
        &format!("{dev} gone from {md}"),
        Duration::from_secs(10),
        |s| s.member(md, dev).is_none(),
    );
}

/// The stages of one leg's life on a mirror with a write-intent bitmap and
/// `nbd-client -t 10`: resync, clean, check, leg killed, degraded (F),
/// removed, recovering (bitmap re-add), recovered, leg frozen with a write
/// in flight, and failed by the nbd timeout.
#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn mirror_leg_lifecycle() {
    let t0 = Instant::now();
    let mut lab = Lab::start(
        "mirror",
        LabConfig {
            layout: Layout::Mirror,
            bitmap: true,
            nbd_timeout: Some(10),
            ..LabConfig::default()
        },
    );
    let md = "md0";

    // resync: created under a 64 KiB/s ceiling, so it is still running.
    lab.wait_snapshot("initial resync running", Duration::from_secs(30), |s| {
        s.get(md, "sync_action") == Some("resync")
            && s.get(md, "sync_completed").is_some_and(|c| c.contains('/'))
    });
    let c = lab.capture("resync");
    assert!(c.mdstat.contains("resync ="), "{}", c.mdstat);
    let (j, _) = lab.assert_status_agrees("resync");
    assert_eq!(j["arrays"][0]["health"], "recovering");

    // clean
    lab.unthrottle();
    lab.wait_clean(md, SYNC_WAIT);
    lab.capture("clean");
    let (j, s) = lab.assert_status_agrees("clean");
    assert_eq!(j["arrays"][0]["health"], "ok");
    assert_eq!(s.must(md, "bitmap/location"), "+8");

    // check: a throttled scrub, then stopped.
    lab.throttle(64);
    lab.vm.sh("echo check > /sys/block/md0/md/sync_action");
    lab.wait_snapshot("check running", Duration::from_secs(30), |s| {
        s.get(md, "sync_action") == Some("check")
            && s.get(md, "sync_completed").is_some_and(|c| c.contains('/'))
    });
    let c = lab.capture("check");
    assert!(c.mdstat.contains("check ="), "{}", c.mdstat);
    let (j, _) = lab.assert_status_agrees("check");
    assert_eq!(j["arrays"][0]["health"], "ok");
    lab.vm.sh("echo idle > /sys/block/md0/md/sync_action");
    lab.wait_clean(md, Duration::from_secs(30));
    lab.unthrottle();

    // leg killed: the server is gone, but an idle array has not noticed.
    lab.legs[1].server.kill();
    let killed_at = Instant::now();
    let c = lab.capture("leg-killed");
    lab.assert_status_agrees("leg-killed");
    eprintln!(
        "fact: right after SIGKILL of leg1's server, nbd1 is '{}' (degraded={})",
        member_state(&c.snapshot, md, "nbd1"),
        c.snapshot.must(md, "degraded")
    );

    // degraded (F): the next write fails the dead leg.
    let w = Instant::now();
    lab.vm
        .sh("dd if=/dev/urandom of=/dev/md0 bs=4k count=16 oflag=direct conv=notrunc 2>&1");
    let s = lab.wait_snapshot("nbd1 faulty after a write", Duration::from_secs(60), |s| {
        has_state(s, md, "nbd1", "faulty")
    });
    eprintln!(
        "fact: killed leg marked faulty {:.1} s after the first write ({:.1} s after the kill)",
        w.elapsed().as_secs_f64(),
        killed_at.elapsed().as_secs_f64()
    );
    assert_eq!(s.must(md, "degraded"), "1");
    let c = lab.capture("degraded");
    assert!(c.mdstat.contains("nbd1[1](F)"), "{}", c.mdstat);
    assert!(c.mdstat.contains("[2/1] [U_]"), "{}", c.mdstat);
    let (j, s) = lab.assert_status_agrees("degraded");
    assert_eq!(j["arrays"][0]["health"], "degraded");
    assert_eq!(s.member(md, "nbd1").unwrap().slot, None);

    // removed
    remove_member(&mut lab, md, "nbd1");
    let c = lab.capture("removed");
    assert!(!c.mdstat.contains("nbd1"), "{}", c.mdstat);
    let (j, _) = lab.assert_status_agrees("removed");
    assert_eq!(j["arrays"][0]["health"], "degraded");

    // The server comes back; the dead nbd device must be disconnected and
    // connected again (md no longer holds it).
    lab.legs[1].server.restart();
    let d = lab.disconnect_leg(1);
    eprintln!(
        "fact: nbd-client -d on the dead leg: status {} {}",
        d.status,
        d.stdout.trim()
    );
    lab.connect_leg(1);

    // recovering: bitmap-based re-add, throttled so it is observable.
    lab.throttle(64);
    lab.vm.sh("mdadm /dev/md0 --re-add /dev/nbd1");
    lab.wait_snapshot("recovery running", Duration::from_secs(30), |s| {
        s.get(md, "sync_action") == Some("recover")
            && s.get(md, "sync_completed").is_some_and(|c| c.contains('/'))
    });
    let c = lab.capture("recovering");
    assert!(c.mdstat.contains("recovery ="), "{}", c.mdstat);
    let (j, _) = lab.assert_status_agrees("recovering");
    assert_eq!(j["arrays"][0]["health"], "recovering");
    lab.unthrottle();
    lab.wait_clean(md, SYNC_WAIT);
    let c = lab.capture("recovered");
    assert!(c.mdstat.contains("[2/2] [UU]"), "{}", c.mdstat);
    lab.assert_status_agrees("recovered");

    // leg frozen with a write in flight: md waits; nbd's own timeout (-t 10)
    // is the only thing that ends the wait.
    lab.legs[1].server.freeze();
    let frozen_at = Instant::now();
    background_write(&mut lab, "md0", 1024, "frozen");
    wait_write_in_flight(&mut lab, "frozen");
    let c = lab.capture("leg-frozen");
    assert!(
        has_state(&c.snapshot, md, "nbd1", "in_sync"),
        "{}",
        c.snapshot.text
    );
    lab.assert_status_agrees("leg-frozen");
    let s = lab.wait_snapshot(
        "frozen leg failed by the nbd timeout",
        Duration::from_secs(90),
        |s| has_state(s, md, "nbd1", "faulty"),
    );
    eprintln!(
        "fact: frozen leg (nbd-client -t 10) marked faulty {:.1} s after SIGSTOP",
        frozen_at.elapsed().as_secs_f64()
    );
    assert_eq!(s.must(md, "degraded"), "1");
    lab.capture("frozen-timed-out");
    lab.assert_status_agrees("frozen-timed-out");
    let rc = lab.vm.wait_for(
        "the in-flight write to finish",
        Duration::from_secs(30),
        |vm| vm.read("/tmp/frozen.rc"),
    );
    assert_eq!(rc, "0", "the write completes on the surviving leg");
    lab.legs[1].server.resume();

    eprintln!(
        "test mirror_leg_lifecycle: {:.1} s (guest boot {:.1} s)",
        t0.elapsed().as_secs_f64(),
        lab.vm.boot_time.as_secs_f64()
    );
}

/// The seed layout (md0 = p1+p1, md1 = p2+p2 on two partitioned legs), no
/// bitmap, no nbd timeout: delayed resync of the second array, a frozen leg
/// that hangs writes until it is resumed, both arrays degraded by one dead
/// server, and a full recovery after --add.
#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn seed_layout_without_bitmap_or_timeout() {
    let t0 = Instant::now();
    let mut lab = Lab::start(
        "seed",
        LabConfig {
            layout: Layout::Seed,
            bitmap: false,
            nbd_timeout: None,
            leg_mib: 34,
            ..LabConfig::default()
        },
    );

    // resync: md0 runs, md1 waits for it (the arrays share both disks).
    lab.wait_snapshot(
        "md0 resync running, md1 delayed",
        Duration::from_secs(30),
        |s| {
            s.get("md0", "sync_action") == Some("resync")
                && s.get("md0", "sync_completed")
                    .is_some_and(|c| c.contains('/'))
                && s.get("md1", "sync_completed") == Some("delayed")
        },
    );
    let c = lab.capture("seed-resync");
    assert!(c.mdstat.contains("resync=DELAYED"), "{}", c.mdstat);
    let (j, s) = lab.assert_status_agrees("seed-resync");
    assert_eq!(s.must("md0", "bitmap/location"), "none");
    assert!(j["arrays"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["health"] == "recovering"));

    lab.unthrottle();
    lab.wait_clean("md0", SYNC_WAIT);
    lab.wait_clean("md1", SYNC_WAIT);
    lab.capture("seed-clean");
    lab.assert_status_agrees("seed-clean");

    // Frozen leg, no transport timeout: the write hangs and md keeps the leg
    // in sync for as long as the server stays frozen (watched for 15 s,
    // longer than the 10 s nbd timeout of the other test).
    lab.legs[1].server.freeze();
    background_write(&mut lab, "md0", 1024, "hung");
    wait_write_in_flight(&mut lab, "hung");
    let c = lab.capture("seed-frozen-hung");
    assert!(has_state(&c.snapshot, "md0", "nbd1p1", "in_sync"));
    lab.assert_status_agrees("seed-frozen-hung");
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(15) {
        let s = lab.snapshot();
        assert!(
            has_state(&s, "md0", "nbd1p1", "in_sync") && !has_state(&s, "md0", "nbd1p1", "faulty"),
            "frozen leg without -t changed state after {:?}:\n{}",
            watch.elapsed(),
            s.text
        );
        assert_eq!(
            lab.vm.read("/tmp/hung.rc"),
            None,
            "the write cannot finish yet"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let resumed = Instant::now();
    lab.legs[1].server.resume();
    let rc = lab
        .vm
        .wait_for("the hung write to finish", Duration::from_secs(60), |vm| {
            vm.read("/tmp/hung.rc")
        });
    eprintln!(
        "fact: without -t the write waited for the frozen server and finished {:.1} s after SIGCONT",
        resumed.elapsed().as_secs_f64()
    );
    assert_eq!(rc, "0");
    let s = lab.wait_clean("md0", Duration::from_secs(30));
    assert!(has_state(&s, "md0", "nbd1p1", "in_sync"));
    lab.assert_status_agrees("seed-resumed");

    // One dead server degrades both arrays once each sees a write.
    lab.legs[1].server.kill();
    lab.vm.sh(
        "for md in md0 md1; do dd if=/dev/urandom of=/dev/$md bs=4k count=4 oflag=direct \
         conv=notrunc 2>&1; done",
    );
    lab.wait_snapshot("both arrays degraded", Duration::from_secs(60), |s| {
        has_state(s, "md0", "nbd1p1", "faulty") && has_state(s, "md1", "nbd1p2", "faulty")
    });
    let c = lab.capture("seed-degraded");
    assert!(c.mdstat.contains("nbd1p1[1](F)") && c.mdstat.contains("nbd1p2[1](F)"));
    let (j, _) = lab.assert_status_agrees("seed-degraded");
    assert_eq!(j["health"], "degraded");

    remove_member(&mut lab, "md0", "nbd1p1");
    remove_member(&mut lab, "md1", "nbd1p2");
    lab.legs[1].server.restart();
    lab.disconnect_leg(1);
    lab.connect_leg(1);

    // No bitmap: the kernel cannot re-add; a full recovery after --add.
    lab.throttle(64);
    let readd = lab.vm.run(
        "mdadm /dev/md0 --re-add /dev/nbd1p1 2>&1",
        Duration::from_secs(30),
    );
    eprintln!(
        "fact: --re-add without a bitmap after writes: status {}: {}",
        readd.status,
        readd.stdout.trim()
    );
    if readd.status != 0 {
        lab.vm.sh("mdadm /dev/md0 --add /dev/nbd1p1");
    }
    lab.vm.sh("mdadm /dev/md1 --add /dev/nbd1p2");
    lab.wait_snapshot("md0 recovering", Duration::from_secs(30), |s| {
        s.get("md0", "sync_action") == Some("recover")
            && s.get("md0", "sync_completed")
                .is_some_and(|c| c.contains('/'))
    });
    let c = lab.capture("seed-recovering");
    assert!(c.mdstat.contains("recovery ="), "{}", c.mdstat);
    let (j, _) = lab.assert_status_agrees("seed-recovering");
    assert_eq!(j["arrays"][0]["health"], "recovering");
    lab.unthrottle();
    lab.wait_clean("md0", SYNC_WAIT);
    lab.wait_clean("md1", SYNC_WAIT);
    lab.capture("seed-recovered");
    let (j, _) = lab.assert_status_agrees("seed-recovered");
    assert_eq!(j["health"], "ok");

    eprintln!(
        "test seed_layout_without_bitmap_or_timeout: {:.1} s (guest boot {:.1} s)",
        t0.elapsed().as_secs_f64(),
        lab.vm.boot_time.as_secs_f64()
    );
}

/// What the daemon authors must know about bringing a dead nbd leg back,
/// pinned as assertions: reconnecting while md still holds the faulty leg,
/// `re-add` through sysfs onto a dead transport, the working sequence
/// (remove, nbd-client -d, connect, mdadm --re-add), how long the bitmap
/// resync after a short outage takes, and that `nbd-client -persist` does not
/// reconnect.
#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn nbd_leg_comes_back() {
    let t0 = Instant::now();
    let mut lab = Lab::start(
        "comeback",
        LabConfig {
            throttle_kbps: None,
            // qcow2 here (raw elsewhere): a SIGKILLed qcow2 server must
            // come back serving the same image.
            format: ImageFormat::Qcow2,
            ..LabConfig::default()
        },
    );
    let md = "md0";
    lab.wait_clean(md, SYNC_WAIT);

    lab.legs[1].server.kill();
    lab.vm
        .sh("dd if=/dev/urandom of=/dev/md0 bs=4k count=16 oflag=direct conv=notrunc 2>&1");
    lab.wait_snapshot("nbd1 faulty", Duration::from_secs(60), |s| {
        has_state(s, md, "nbd1", "faulty")
    });
    lab.legs[1].server.restart();

    // 1. Connect again while md still holds the faulty, dead nbd1.
    let port = lab.legs[1].server.port();
    let r = lab.vm.run(
        &format!("dmesg -c >/dev/null; nbd-client 10.0.2.2 {port} /dev/nbd1 -N leg 2>&1; rc=$?; dmesg; exit $rc"),
        Duration::from_secs(30),
    );
    eprintln!(
        "fact: nbd-client connect while md holds the dead nbd1: status {}:\n{}",
        r.status,
        r.stdout.trim()
    );
    assert_ne!(
        r.status, 0,
        "a dead nbd device held by md cannot be reconnected"
    );
    // 2. sysfs re-add onto the still-dead transport.
    let r2 = lab.vm.run(
        "dmesg -c >/dev/null; echo re-add > /sys/block/md0/md/dev-nbd1/state 2>&1; rc=$?; \
         usleep 500000; dmesg; exit $rc",
        Duration::from_secs(30),
    );
    let s = lab.snapshot();
    eprintln!(
        "fact: 'echo re-add > dev-nbd1/state' with the nbd transport dead: status {}:\n{}\n\
         nbd1 now '{}', degraded={}",
        r2.status,
        r2.stdout.trim(),
        member_state(&s, md, "nbd1"),
        s.must(md, "degraded")
    );

    assert!(
        has_state(&s, md, "nbd1", "faulty") && s.must(md, "degraded") == "1",
        "a re-add onto a dead transport leaves the leg faulty: {}",
        s.text
    );

    // 3. The sequence that works.
    remove_member(&mut lab, md, "nbd1");
    lab.disconnect_leg(1);
    lab.connect_leg(1);
    let t = Instant::now();
    lab.vm.sh("mdadm /dev/md0 --re-add /dev/nbd1");
    lab.wait_clean(md, SYNC_WAIT);
    eprintln!(
        "fact: bitmap re-add after a short outage: clean {:.1} s after mdadm --re-add",
        t.elapsed().as_secs_f64()
    );
    let (j, _) = lab.assert_status_agrees("comeback-clean");
    assert_eq!(j["health"], "ok");

    // 4. `nbd-client -persist` does not bring a leg back by itself. In the
    // default netlink mode nbd-client exits right after setup, so there is
    // nobody to reconnect; in ioctl mode (-nonetlink) it stays, but exits
    // when the server dies instead of reconnecting.
    let mut s3 = StorageServer::create(lab.dir(), "leg2", 8, ImageFormat::Raw);
    let port = s3.port();
    lab.vm.sh(&format!(
        "nbd-client 10.0.2.2 {port} /dev/nbd2 -N leg -nonetlink -persist \
         </dev/null >/tmp/persist.log 2>&1 &"
    ));
    let running = "ps | grep -q '[n]bd-client .*/dev/nbd2'";
    let connected = format!("{running} && [ \"$(cat /sys/block/nbd2/size)\" -gt 0 ]");
    lab.vm.wait_for(
        "nbd2 connected, -persist client running",
        Duration::from_secs(30),
        |vm| (vm.run(&connected, Duration::from_secs(10)).status == 0).then_some(()),
    );
    s3.kill();
    lab.vm.wait_for(
        "the -persist client to give up after the server died",
        Duration::from_secs(30),
        |vm| {
            vm.run(
                "dd if=/dev/nbd2 of=/dev/null bs=4k count=1 iflag=direct",
                Duration::from_secs(10),
            );
            (vm.run(running, Duration::from_secs(10)).status != 0).then_some(())
        },
    );
    s3.restart();
    let size = lab.vm.read("/sys/block/nbd2/size");
    let log = lab.vm.read("/tmp/persist.log").unwrap_or_default();
    eprintln!(
        "fact: nbd-client -nonetlink -persist exited when its server died (nbd2 size now {size:?}); \
         its log:\n{log}"
    );
    assert_eq!(
        size.as_deref(),
        Some("0"),
        "nbd2 was cleared, nothing reconnected it"
    );

    eprintln!(
        "test nbd_leg_comes_back: {:.1} s (guest boot {:.1} s)",
        t0.elapsed().as_secs_f64(),
        lab.vm.boot_time.as_secs_f64()
    );
}

/// A storage server killed while writes stream to the array (no `-t`): a
/// request that was on the wire when the connection reset can stay queued in
/// nbd forever, and md's writes wait for it: the array hangs. Either md has
/// already failed the leg (then `remove` answers EBUSY), or it has noticed
/// nothing at all (leg in_sync, degraded=0). Both times `nbd-client -d`
/// errors the stuck requests out, the writes complete, the leg is faulty and
/// can be removed. (Daemon: disconnect a dead nbd leg before removing it.)
///
/// Whether a request is caught mid-send is a race (seen in about half the
/// kills), so up to 4 kills are tried in one boot until one hangs. Asserted
/// every time: the writes complete after `nbd-client -d` and the leg comes
/// back; when one hangs: no progress, and EBUSY or degraded=0 as above.
#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn killed_under_load_hangs_until_nbd_disconnect() {
    let t0 = Instant::now();
    let mut lab = Lab::start(
        "stuck",
        LabConfig {
            throttle_kbps: None,
            ..LabConfig::default()
        },
    );
    let md = "md0";
    lab.wait_clean(md, SYNC_WAIT);
    let loads_done = "[ -e /tmp/load1.rc ] && [ -e /tmp/load2.rc ]";
    let mut hung = 0;
    for attempt in 1..=4 {
        // Two O_DIRECT streams, so several large requests are on the wire.
        lab.vm.sh("rm -f /tmp/load*.rc; for i in 1 2; do \
               (dd if=/dev/zero of=/dev/md0 bs=1M count=12 seek=$(( (i - 1) * 12 )) \
                  oflag=direct >/tmp/load$i.log 2>&1; echo $? > /tmp/load$i.rc) & \
             done");
        lab.vm
            .wait_for("writes flowing to nbd1", Duration::from_secs(20), |vm| {
                let st = vm.read("/sys/block/nbd1/stat")?;
                let sectors: u64 = st.split_whitespace().nth(6)?.parse().ok()?;
                (sectors > 2048).then_some(())
            });
        lab.legs[1].server.kill();
        let killed = Instant::now();
        let finished = wait_until(Duration::from_secs(10), || {
            lab.vm.run(loads_done, Duration::from_secs(10)).status == 0
        });
        if finished {
            lab.wait_snapshot("nbd1 faulty", Duration::from_secs(60), |s| {
                has_state(s, md, "nbd1", "faulty")
            });
            eprintln!("attempt {attempt}: writes finished, leg faulty: no hang");
        } else {
            hung += 1;
            let s = lab.snapshot();
            let faulty = has_state(&s, md, "nbd1", "faulty");
            let inflight = lab.vm.read("/sys/block/nbd1/inflight").unwrap_or_default();
            let stage = if faulty {
                "stuck-faulty"
            } else {
                "stuck-unnoticed"
            };
            lab.capture(stage);
            lab.assert_status_agrees(stage);
            if faulty {
                assert_eq!(s.must(md, "degraded"), "1");
                let r = lab.vm.run(
                    "echo remove > /sys/block/md0/md/dev-nbd1/state",
                    Duration::from_secs(10),
                );
                assert_ne!(r.status, 0, "remove must fail while requests are stuck");
                assert!(r.stderr.contains("busy"), "EBUSY expected: {}", r.stderr);
            } else {
                assert_eq!(
                    s.must(md, "degraded"),
                    "0",
                    "md has not noticed: {}",
                    s.text
                );
            }
            assert_ne!(
                lab.vm.run(loads_done, Duration::from_secs(10)).status,
                0,
                "still hung"
            );
            eprintln!(
                "fact (attempt {attempt}): writes to md0 hung {:.0} s after the kill; nbd1 {} \
                 (inflight '{}'); {}",
                killed.elapsed().as_secs_f64(),
                member_state(&s, md, "nbd1"),
                inflight.split_whitespace().collect::<Vec<_>>().join(" "),
                if faulty {
                    "remove answered EBUSY"
                } else {
                    "md has not noticed anything: degraded=0"
                }
            );
        }
        // nbd-client -d fails whatever is stuck: the writes complete.
        let d = Instant::now();
        lab.disconnect_leg(1);
        lab.vm
            .wait_for("the load writes to finish", Duration::from_secs(30), |vm| {
                (vm.run(loads_done, Duration::from_secs(10)).status == 0).then_some(())
            });
        let rcs = lab.vm.sh("cat /tmp/load1.rc /tmp/load2.rc");
        assert_eq!(
            rcs.split_whitespace().collect::<Vec<_>>(),
            ["0", "0"],
            "writes succeed"
        );
        if !finished {
            eprintln!(
                "fact: after nbd-client -d the hung writes finished in {:.1} s, status 0",
                d.elapsed().as_secs_f64()
            );
        }
        lab.wait_snapshot(
            "nbd1 faulty after the disconnect",
            Duration::from_secs(30),
            |s| has_state(s, md, "nbd1", "faulty"),
        );
        // Bring the leg back for the next attempt (or the end).
        remove_member(&mut lab, md, "nbd1");
        lab.legs[1].server.restart();
        lab.connect_leg(1);
        lab.vm.sh("mdadm /dev/md0 --re-add /dev/nbd1");
        lab.wait_clean(md, SYNC_WAIT);
        if hung > 0 {
            break;
        }
    }
    if hung == 0 {
        eprintln!("NOTE: no kill caught a request mid-send in 4 tries (the hang is a race)");
    }
    lab.assert_status_agrees("stuck-recovered");

    eprintln!(
        "test killed_under_load_hangs_until_nbd_disconnect: {:.1} s (guest boot {:.1} s)",
        t0.elapsed().as_secs_f64(),
        lab.vm.boot_time.as_secs_f64()
    );
}
