//! The agent on a real kernel: `mdguard run` inside the VM guest heals md RAID1
//! arrays whose NBD legs' storage servers die and come back. Each scenario ends
//! with the array `[UU]`, the data written during the outage intact, and a
//! `check` finding no mismatch.

mod harness;

use harness::{Lab, LabConfig, Layout, IGNORE_MSG};
use std::time::{Duration, Instant};

const HEAL_WAIT: Duration = Duration::from_secs(240);

/// Write the guest's config and start the agent in the background.
fn start_agent(lab: &mut Lab, extra: &str) {
    let mut cfg = String::from(
        "[throttle]\njitter_s = 0\n[probe]\ninitial_interval_s = 1\nmax_interval_s = 4\ntimeout_ms = 3000\n",
    );
    cfg.push_str(extra);
    for (i, leg) in lab.legs.iter().enumerate() {
        let t = lab
            .cfg
            .nbd_timeout
            .map(|t| format!(" -t {t}"))
            .unwrap_or_default();
        cfg.push_str(&format!(
            "[[reconnect]]\ndevice = \"{}\"\ncommand = [\"sh\", \"-c\", \"nbd-client -d /dev/{0} >/dev/null 2>&1; nbd-client 10.0.2.2 {} /dev/{0} -N leg{t}\"]\ntimeout_s = 20\n",
            leg.nbd,
            leg.server.port()
        ));
        let _ = i;
    }
    lab.vm.sh(&format!(
        "mkdir -p /etc/mdguard && cat > /etc/mdguard/mdguard.toml <<'EOF'\n{cfg}EOF"
    ));
    lab.vm
        .sh("MDGUARD_LOG_TIMESTAMPS=1 setsid mdguard run --foreground \
         </dev/null >/tmp/mdguard.log 2>&1 & echo $! > /tmp/mdguard.pid");
    lab.vm
        .wait_for("mdguard started", Duration::from_secs(20), |vm| {
            vm.sh("cat /tmp/mdguard.log")
                .contains("watching md arrays")
                .then_some(())
        });
}

fn agent_log(lab: &mut Lab) -> String {
    lab.vm.sh("cat /tmp/mdguard.log")
}

/// `[12.345] mdguard: ...` lines containing `needle`: their timestamps.
fn log_times(log: &str, needle: &str) -> Vec<f64> {
    log.lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect()
}

/// Write `mib` MiB of random data at `seek_mib` into the array; its sha256.
fn write_data(lab: &mut Lab, md: &str, seek_mib: u32, mib: u32) -> String {
    lab.vm.sh(&format!(
        "dd if=/dev/urandom of=/tmp/data.{md} bs=1M count={mib} 2>/dev/null && \
         dd if=/tmp/data.{md} of=/dev/{md} bs=1M seek={seek_mib} oflag=direct conv=notrunc,fsync 2>/dev/null; \
         sha256sum < /tmp/data.{md} | cut -d' ' -f1"
    ))
    .trim()
    .to_string()
}

fn read_sha(lab: &mut Lab, md: &str, skip_mib: u32, mib: u32) -> String {
    lab.vm
        .sh(&format!(
            "dd if=/dev/{md} bs=1M skip={skip_mib} count={mib} iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1"
        ))
        .trim()
        .to_string()
}

/// Run a `check` and return mismatch_cnt.
fn check_mismatches(lab: &mut Lab, md: &str) -> u64 {
    lab.vm
        .sh(&format!("echo check > /sys/block/{md}/md/sync_action"));
    lab.wait_snapshot(&format!("{md} check done"), HEAL_WAIT, |s| {
        s.get(md, "sync_action") == Some("idle")
    });
    lab.vm
        .sh(&format!("cat /sys/block/{md}/md/mismatch_cnt"))
        .trim()
        .parse()
        .unwrap()
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
    let mut lab = Lab::start(
        "heal-kill",
        LabConfig {
            layout: Layout::Mirror,
            nbd_timeout: Some(5),
            throttle_kbps: None,
            leg_mib: 64,
            bitmap_chunk_kib: Some(1024),
            ..LabConfig::default()
        },
    );
    lab.wait_clean("md0", HEAL_WAIT);
    start_agent(&mut lab, "");

    lab.legs[1].server.kill();
    let sha = write_data(&mut lab, "md0", 8, 4);
    lab.wait_snapshot("md0 degraded", Duration::from_secs(60), |s| {
        s.get("md0", "degraded") == Some("1")
    });
    let written_before = sectors_written(&mut lab, "nbd1");
    lab.legs[1].server.restart();
    let back_at = lab.vm.uptime();
    lab.wait_snapshot("md0 healed by mdguard", HEAL_WAIT, |s| {
        s.get("md0", "degraded") == Some("0") && s.get("md0", "sync_action") == Some("idle")
    });
    let log = agent_log(&mut lab);
    let readd = log_times(&log, "re-added nbd1");
    assert!(!readd.is_empty(), "mdguard never re-added nbd1:\n{log}");
    let copied_kib = sectors_written(&mut lab, "nbd1").saturating_sub(written_before) / 2;
    assert_eq!(
        read_sha(&mut lab, "md0", 8, 4),
        sha,
        "data written during the outage"
    );
    assert_eq!(
        check_mismatches(&mut lab, "md0"),
        0,
        "legs differ after heal"
    );
    // the bitmap limited the copy: far less than the 64 MiB leg
    assert!(
        copied_kib < 32 * 1024,
        "resync copied {copied_kib} KiB: the bitmap was not used?\n{log}"
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
