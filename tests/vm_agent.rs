//! Real-kernel test of the agent (`mdguard run`) in the guest: a storage
//! server dies, the leg fails, the server comes back, and the agent alone
//! (reconnect command, probe, re-add) makes the mirror whole again.
mod harness;

use harness::*;
use std::time::{Duration, Instant};

fn agent_log(lab: &mut Lab) -> String {
    lab.vm.sh("cat /tmp/agent.log")
}

fn wait_log(lab: &mut Lab, what: &str, needle: &str, timeout: Duration) {
    let needle = needle.to_string();
    lab.vm.wait_for(what, timeout, |vm| {
        vm.read("/tmp/agent.log")
            .filter(|l| l.contains(&needle))
            .map(|_| ())
    });
}

#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn agent_heals_a_leg_when_its_server_returns() {
    let t0 = Instant::now();
    let mut lab = Lab::start(
        "agent",
        LabConfig {
            throttle_kbps: None,
            ..LabConfig::default()
        },
    );
    lab.wait_clean("md0", Duration::from_secs(120));

    // The agent's config: no jitter, quick probes, and for each leg the
    // reconnect command (nbd-client -d first: a dead nbd device cannot be
    // connected again until it is disconnected).
    let mut cfg = String::from(
        "[throttle]\njitter_s = 0\n[probe]\ninitial_interval_s = 1\nmax_interval_s = 4\n",
    );
    for (i, leg) in lab.legs.iter().enumerate() {
        cfg.push_str(&format!(
            "[[reconnect]]\ndevice = \"nbd{i}\"\ncommand = [\"sh\", \"-c\", \
             \"nbd-client -d /dev/nbd{i}; nbd-client 10.0.2.2 {} /dev/nbd{i} -N {}\"]\n",
            leg.server.port(),
            storage::EXPORT
        ));
    }
    lab.vm.sh(&format!(
        "mkdir -p /etc/mdguard && cat > /etc/mdguard/mdguard.toml <<'EOF'\n{cfg}EOF\n\
         (mdguard run --foreground >/tmp/agent.log 2>&1 &)"
    ));
    wait_log(
        &mut lab,
        "the agent to start",
        "watching",
        Duration::from_secs(20),
    );

    // The server dies; a write fails the leg.
    lab.legs[1].server.kill();
    lab.vm
        .sh("dd if=/dev/urandom of=/dev/md0 bs=4k count=16 oflag=direct conv=notrunc 2>&1");
    // While it is down the agent tries to reconnect and fails.
    wait_log(
        &mut lab,
        "a failed reconnect while the server is down",
        "reconnect failed",
        Duration::from_secs(60),
    );
    let s = lab.snapshot();
    assert_eq!(s.must("md0", "degraded"), "1", "{}", s.text);

    // The server returns: the agent alone brings the leg back.
    let back = Instant::now();
    lab.legs[1].server.restart();
    let s = lab.wait_snapshot("the agent to heal md0", Duration::from_secs(120), |s| {
        s.get("md0", "degraded") == Some("0")
            && s.get("md0", "sync_action") == Some("idle")
            && s.member("md0", "nbd1")
                .is_some_and(|m| m.states == ["in_sync"] && m.slot == Some(1))
    });
    eprintln!(
        "figure: server back -> md0 clean with nbd1 in sync, by the agent alone: {:.1} s",
        back.elapsed().as_secs_f64()
    );
    let log = agent_log(&mut lab);
    eprintln!("agent log:\n{log}");
    assert!(
        log.contains("re-added nbd1") || log.contains("leg nbd1 is back"),
        "the agent did the re-add:\n{log}"
    );
    assert!(s
        .member("md0", "nbd0")
        .is_some_and(|m| m.states == ["in_sync"]));
    let (j, _) = lab.assert_status_agrees("agent-healed");
    assert_eq!(j["health"], "ok");
    for l in log.lines().filter(|l| l.contains("error:")) {
        eprintln!("NOTE: the agent logged an error although it healed the array: {l}");
    }

    eprintln!(
        "test agent_heals_a_leg_when_its_server_returns: {:.1} s (guest boot {:.1} s)",
        t0.elapsed().as_secs_f64(),
        lab.vm.boot_time.as_secs_f64()
    );
}
