//! Unit tests of the healing policy: one test per case the agent must get right.

use super::*;
use crate::config::Config;
use crate::md::model::{Array, Member, Snapshot, SpeedLimit, Sync, SyncAction, SyncState};

const UUID: &str = "0fbf5f2c-add2-43c2-bd78-a4be3ab709ef";
const OTHER: &str = "11111111-2222-3333-4444-555555555555";
const S: Ms = 1000;

fn member(dev: &str, slot: Option<u32>, states: &[&str]) -> Member {
    Member {
        device: dev.into(),
        slot,
        descriptor: None,
        states: states.iter().map(|s| s.to_string()).collect(),
        faulty: states.contains(&"faulty"),
        errors: None,
    }
}

fn raid1(members: Vec<Member>) -> Array {
    let mut a = Array::named("md0");
    a.level = Some("raid1".into());
    a.array_state = Some("clean".into());
    a.raid_disks = Some(2);
    a.uuid = Some(UUID.into());
    let in_sync = members
        .iter()
        .filter(|m| m.slot.is_some() && m.in_sync() && !m.faulty)
        .count() as u32;
    a.degraded = Some(2 - in_sync.min(2));
    a.members = members;
    a.sync_speed_min = Some(SpeedLimit {
        kbps: 1000,
        system: true,
    });
    a.sync_speed_max = Some(SpeedLimit {
        kbps: 200000,
        system: true,
    });
    a.derive_health();
    a
}

fn snap(arrays: Vec<Array>) -> Snapshot {
    Snapshot {
        arrays,
        problems: vec![],
    }
}

fn healthy() -> Snapshot {
    snap(vec![raid1(vec![
        member("nbd0", Some(0), &["in_sync"]),
        member("nbd1", Some(1), &["in_sync"]),
    ])])
}

fn nbd1_faulty() -> Snapshot {
    snap(vec![raid1(vec![
        member("nbd0", Some(0), &["in_sync"]),
        member("nbd1", None, &["faulty"]),
    ])])
}

fn nbd1_gone() -> Snapshot {
    snap(vec![raid1(vec![member("nbd0", Some(0), &["in_sync"])])])
}

fn recovering(with: &str) -> Snapshot {
    let mut a = raid1(vec![
        member("nbd0", Some(0), &["in_sync"]),
        member(with, Some(1), &[]),
    ]);
    a.sync = Some(Sync {
        action: SyncAction::Recover,
        state: SyncState::Running,
        done: Some(10),
        total: Some(100),
        percent: None,
        speed_kbps: Some(1000),
        finish_min: None,
    });
    a.derive_health();
    snap(vec![a])
}

fn sb(uuid: &str, role: u32, events: u64) -> ProbeOutcome {
    ProbeOutcome::Readable {
        sb: Some(SbFacts {
            uuid: uuid.into(),
            role: SbRole::Active(role),
            events,
            dev_number: role,
        }),
    }
}

fn cfg(f: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config::default();
    c.throttle.jitter_s = 0;
    f(&mut c);
    c
}

fn engine() -> Engine {
    Engine::new(cfg(|_| {}), 42)
}

/// An engine with a reconnect command configured for the disk nbd1.
fn engine_with_nbd1_reconnect() -> Engine {
    Engine::new(
        cfg(|c| {
            c.reconnect.push(crate::config::Reconnect {
                device: "nbd1".into(),
                command: vec!["nbd-client".into()],
                timeout_s: 30,
            })
        }),
        3,
    )
}

fn non_log(v: &[Action]) -> Vec<Action> {
    v.iter()
        .filter(|a| !matches!(a, Action::Log { .. }))
        .cloned()
        .collect()
}

fn logs(v: &[Action]) -> Vec<String> {
    v.iter()
        .filter_map(|a| match a {
            Action::Log(e) => Some(e.to_string()),
            _ => None,
        })
        .collect()
}

fn probe(dev: &str) -> Action {
    Action::Probe { device: dev.into() }
}

fn removal(array: &str, dev: &str) -> Action {
    Action::Remove {
        array: array.into(),
        device: dev.into(),
    }
}

/// Drive a leg from healthy to faulty and past its first probe time.
fn fail_and_wait(e: &mut Engine, t0: Ms) -> Vec<Action> {
    e.on_snapshot(&healthy(), &Env::default(), t0);
    let a = e.on_snapshot(&nbd1_faulty(), &Env::default(), t0 + 1);
    assert!(
        non_log(&a).is_empty(),
        "no action before the first probe: {a:?}"
    );
    assert!(logs(&a)[0].contains("leg nbd1 failed"), "{a:?}");
    let deadline = e.next_deadline().expect("a probe is scheduled");
    assert_eq!(deadline, t0 + 1 + 2 * S);
    e.on_snapshot(&nbd1_faulty(), &Env::default(), deadline)
}

#[test]
fn healthy_array_needs_nothing() {
    let mut e = engine();
    let a = e.on_snapshot(&healthy(), &Env::default(), 0);
    assert!(a.is_empty(), "{a:?}");
    assert_eq!(e.next_deadline(), None, "no timer while healthy");
}

#[test]
fn faulty_bound_leg_probed_then_readded_via_sysfs() {
    let mut e = engine();
    let a = fail_and_wait(&mut e, 0);
    assert_eq!(non_log(&a), vec![probe("nbd1")]);
    let a = e.on_probe(&nbd1_faulty(), "nbd1", sb(UUID, 1, 100), 3 * S);
    assert_eq!(
        non_log(&a),
        vec![Action::ReAdd {
            array: "md0".into(),
            device: "nbd1".into()
        }]
    );
    let a = e.on_outcome(&non_log(&a)[0], &Outcome::Done, 3 * S);
    assert!(logs(&a)[0].contains("re-added nbd1"), "{a:?}");
    // recovery starts, then finishes: leg healthy, nothing more to do
    let a = e.on_snapshot(&recovering("nbd1"), &Env::default(), 4 * S);
    assert!(non_log(&a).is_empty(), "{a:?}");
    assert!(logs(&a).iter().any(|l| l.contains("recover started")));
    let a = e.on_snapshot(&healthy(), &Env::default(), 10 * S);
    assert!(logs(&a)
        .iter()
        .any(|l| l.contains("recovery finished after 6s")));
}

#[test]
fn refused_readd_falls_back_to_remove_then_add_with_role() {
    let mut e = engine();
    fail_and_wait(&mut e, 0);
    let a = e.on_probe(&nbd1_faulty(), "nbd1", sb(UUID, 1, 100), 3 * S);
    let readd = non_log(&a)[0].clone();
    let a = e.on_outcome(
        &readd,
        &Outcome::Failed(Failure::Errno(Errno::EBUSY)),
        3 * S,
    );
    let remove = removal("md0", "nbd1");
    assert_eq!(non_log(&a), vec![remove.clone()]);
    let a = e.on_outcome(&remove, &Outcome::Done, 3 * S);
    assert_eq!(non_log(&a), vec![probe("nbd1")]);
    let a = e.on_probe(&nbd1_gone(), "nbd1", sb(UUID, 1, 100), 4 * S);
    assert_eq!(
        non_log(&a),
        vec![Action::Add {
            array: "md0".into(),
            device: "nbd1".into(),
            role: Some(1),
            dev_number: Some(1)
        }]
    );
}

#[test]
fn impossible_readd_adds_for_full_recovery_only_when_allowed() {
    for allowed in [true, false] {
        let mut e = Engine::new(cfg(|c| c.heal.full_recovery = allowed), 1);
        e.on_snapshot(&healthy(), &Env::default(), 0);
        e.on_snapshot(&nbd1_gone(), &Env::default(), 1);
        // the leg left while healthy (removed): probed later
        let t = e.next_deadline().unwrap();
        let a = e.on_snapshot(&nbd1_gone(), &Env::default(), t);
        assert_eq!(non_log(&a), vec![probe("nbd1")]);
        let a = e.on_probe(&nbd1_gone(), "nbd1", sb(UUID, 1, 100), t);
        let add = non_log(&a)[0].clone();
        assert!(matches!(add, Action::Add { role: Some(1), .. }), "{add:?}");
        let a = e.on_outcome(&add, &Outcome::Failed(Failure::Errno(Errno::EINVAL)), t);
        if allowed {
            assert_eq!(
                non_log(&a),
                vec![Action::Add {
                    array: "md0".into(),
                    device: "nbd1".into(),
                    role: None,
                    dev_number: None
                }]
            );
        } else {
            assert!(non_log(&a).is_empty(), "{a:?}");
            assert!(logs(&a)[0].contains("full recovery is off"), "{a:?}");
            assert_eq!(
                e.legs_of("md0")
                    .find(|l| l.device == "nbd1")
                    .unwrap()
                    .phase(),
                Phase::NeedsAdmin
            );
        }
    }
}

#[test]
fn failed_probes_back_off_to_the_cap() {
    let mut e = engine();
    fail_and_wait(&mut e, 0);
    let mut t = 3 * S;
    let mut intervals = vec![];
    for _ in 0..8 {
        e.on_probe(&nbd1_faulty(), "nbd1", ProbeOutcome::Failed(Errno::EIO), t);
        let next = e.next_deadline().unwrap();
        intervals.push((next - t) / S);
        // nothing happens before the deadline
        assert!(non_log(&e.on_snapshot(&nbd1_faulty(), &Env::default(), next - 1)).is_empty());
        let a = e.on_snapshot(&nbd1_faulty(), &Env::default(), next);
        assert_eq!(non_log(&a), vec![probe("nbd1")]);
        t = next;
    }
    assert_eq!(intervals, vec![4, 8, 16, 32, 60, 60, 60, 60]);
}

#[test]
fn new_node_matched_by_superblock_uuid_and_role() {
    let mut e = engine();
    e.on_snapshot(&healthy(), &Env::default(), 0);
    e.on_snapshot(&nbd1_gone(), &Env::default(), 1);
    // vbd re-attached as a new node
    e.on_device("xvdd");
    let a = e.on_snapshot(&nbd1_gone(), &Env::default(), 2);
    assert!(non_log(&a).contains(&probe("xvdd")), "{a:?}");
    let a = e.on_probe(&nbd1_gone(), "xvdd", sb(UUID, 1, 100), 3);
    assert_eq!(
        non_log(&a),
        vec![Action::Add {
            array: "md0".into(),
            device: "xvdd".into(),
            role: Some(1),
            dev_number: Some(1)
        }]
    );
}

/// A vbd detached and attached again under a new name while md still lists the
/// old node as faulty: ADD_NEW_DISK would hit the old node's descriptor number
/// (EBUSY), so that member (and no other) is removed first, then the new one added.
#[test]
fn new_node_replacing_a_faulty_member_removes_that_member_first() {
    let with_faulty = || {
        let mut leg1 = member("xvdc", None, &["faulty"]);
        leg1.descriptor = Some(1);
        // a third, unrelated faulty leg of a 3-way mirror: not this device's place
        let mut leg2 = member("xvde", None, &["faulty"]);
        leg2.descriptor = Some(2);
        let mut a = raid1(vec![member("xvdb", Some(0), &["in_sync"]), leg1, leg2]);
        a.raid_disks = Some(3);
        a.degraded = Some(2);
        a.derive_health();
        snap(vec![a])
    };
    let mut e = engine();
    e.on_snapshot(&with_faulty(), &Env::default(), 0);
    e.on_device("xvdd");
    let a = e.on_snapshot(&with_faulty(), &Env::default(), 1);
    assert!(non_log(&a).contains(&probe("xvdd")), "{a:?}");
    let a = e.on_probe(&with_faulty(), "xvdd", sb(UUID, 1, 100), 2);
    assert_eq!(
        non_log(&a),
        vec![
            removal("md0", "xvdc"),
            Action::Add {
                array: "md0".into(),
                device: "xvdd".into(),
                role: Some(1),
                dev_number: Some(1)
            }
        ]
    );
    assert!(
        logs(&a).iter().any(|l| l.contains("removing faulty xvdc")),
        "{a:?}"
    );
}

#[test]
fn never_by_name_alone_foreign_superblock_is_never_added_and_logged_once() {
    let mut e = engine();
    fail_and_wait(&mut e, 0);
    // same node name, another array's superblock
    let a = e.on_probe(&nbd1_faulty(), "nbd1", sb(OTHER, 1, 100), 3 * S);
    assert!(non_log(&a).is_empty(), "{a:?}");
    assert!(logs(&a)[0].contains("belongs to another array"), "{a:?}");
    // a refused leg is not probed again by the timer
    assert_eq!(e.next_deadline(), None);
    assert!(non_log(&e.on_snapshot(&nbd1_faulty(), &Env::default(), 1000 * S)).is_empty());
    // a foreign disk appearing: probed, never added, logged once
    e.on_device("sdz");
    let a = e.on_snapshot(&nbd1_faulty(), &Env::default(), 1001 * S);
    assert!(non_log(&a).contains(&probe("sdz")));
    let a = e.on_probe(&nbd1_faulty(), "sdz", sb(OTHER, 0, 5), 1001 * S);
    assert!(non_log(&a).is_empty());
    assert_eq!(logs(&a).len(), 1);
    let a = e.on_probe(&nbd1_faulty(), "sdz", sb(OTHER, 0, 5), 1002 * S);
    assert!(a.is_empty(), "logged once: {a:?}");
}

#[test]
fn no_superblock_wrong_role_stale_copy_or_newer_events_refused() {
    let arr = nbd1_faulty().arrays[0].clone();
    let mem = ArrayMem {
        events: Some(100),
        ..Default::default()
    };
    let f = |uuid: &str, role: SbRole, events: u64| SbFacts {
        uuid: uuid.into(),
        role,
        events,
        dev_number: 1,
    };
    assert!(verdict(&arr, &mem, Some(1), None)
        .unwrap_err()
        .to_string()
        .contains("no md superblock"));
    assert!(
        verdict(&arr, &mem, Some(1), Some(&f(UUID, SbRole::Active(0), 90)))
            .unwrap_err()
            .to_string()
            .contains("but the leg held slot 1")
    );
    assert!(
        verdict(&arr, &mem, None, Some(&f(UUID, SbRole::Active(0), 90)))
            .unwrap_err()
            .to_string()
            .contains("held by another in-sync leg")
    );
    assert!(
        verdict(&arr, &mem, None, Some(&f(UUID, SbRole::Active(5), 90)))
            .unwrap_err()
            .to_string()
            .contains("beyond")
    );
    assert!(verdict(&arr, &mem, None, Some(&f(UUID, SbRole::Spare, 90)))
        .unwrap_err()
        .to_string()
        .contains("spare"));
    assert!(
        verdict(&arr, &mem, Some(1), Some(&f(UUID, SbRole::Active(1), 101)))
            .unwrap_err()
            .to_string()
            .contains("split brain")
    );
    assert!(verdict(&arr, &mem, Some(1), Some(&f(UUID, SbRole::Active(1), 99))).is_ok());
    // mdadm's colon form of the same UUID is the same array
    assert!(verdict(
        &arr,
        &mem,
        Some(1),
        Some(&f(
            "0fbf5f2c:add243c2:bd78a4be:3ab709ef",
            SbRole::Active(1),
            99
        ))
    )
    .is_ok());
}

#[test]
fn flapping_leg_backs_off_then_stops_until_dom0_asks() {
    let mut e = Engine::new(
        cfg(|c| {
            c.heal.flap_limit = 3;
            c.heal.flap_backoff_s = 10;
            c.heal.flap_window_s = 300;
        }),
        7,
    );
    e.on_snapshot(&healthy(), &Env::default(), 0);
    let mut t = S;
    let mut waits = vec![];
    for round in 0..4 {
        let a = e.on_snapshot(&nbd1_faulty(), &Env::default(), t);
        if round == 3 {
            assert!(logs(&a)[0].contains("flapping"), "{a:?}");
            assert_eq!(e.next_deadline(), None, "no more probes");
            break;
        }
        let next = e.next_deadline().unwrap();
        waits.push((next - t) / S);
        t = next;
        let a = e.on_snapshot(&nbd1_faulty(), &Env::default(), t);
        assert_eq!(non_log(&a), vec![probe("nbd1")]);
        let a = e.on_probe(&nbd1_faulty(), "nbd1", sb(UUID, 1, 100), t);
        let readd = non_log(&a)[0].clone();
        e.on_outcome(&readd, &Outcome::Done, t);
        e.on_snapshot(&recovering("nbd1"), &Env::default(), t + S);
        t += 5 * S; // fails again 5 s after the re-add
    }
    assert_eq!(
        waits,
        vec![2, 10, 20],
        "initial probe, then flap backoff doubling"
    );
    // nothing happens however long we wait
    assert!(non_log(&e.on_snapshot(&nbd1_faulty(), &Env::default(), t + 10_000 * S)).is_empty());
    // dom0's probe hint: probed again at once
    e.on_probe_hint(t + 10_001 * S);
    let a = e.on_snapshot(&nbd1_faulty(), &Env::default(), t + 10_001 * S);
    assert_eq!(non_log(&a), vec![probe("nbd1")]);
}

#[test]
fn leg_healthy_through_the_window_is_forgiven() {
    let mut e = Engine::new(cfg(|c| c.heal.flap_window_s = 60), 7);
    fail_and_wait(&mut e, 0);
    let a = e.on_probe(&nbd1_faulty(), "nbd1", sb(UUID, 1, 100), 3 * S);
    e.on_outcome(&non_log(&a)[0], &Outcome::Done, 3 * S);
    // fails 10 s later: a flap
    e.on_snapshot(&healthy(), &Env::default(), 4 * S);
    e.on_snapshot(&nbd1_faulty(), &Env::default(), 13 * S);
    assert_eq!(
        e.legs_of("md0").find(|l| l.device == "nbd1").unwrap().flaps,
        1
    );
    let t = e.next_deadline().unwrap();
    e.on_snapshot(&nbd1_faulty(), &Env::default(), t);
    let a = e.on_probe(&nbd1_faulty(), "nbd1", sb(UUID, 1, 100), t);
    e.on_outcome(&non_log(&a)[0], &Outcome::Done, t);
    e.on_snapshot(&healthy(), &Env::default(), t + 61 * S);
    assert_eq!(
        e.legs_of("md0").find(|l| l.device == "nbd1").unwrap().flaps,
        0
    );
}

#[test]
fn reconnect_command_runs_after_remove_and_before_add() {
    let mut e = engine_with_nbd1_reconnect();
    let a = fail_and_wait(&mut e, 0);
    let remove = removal("md0", "nbd1");
    assert_eq!(non_log(&a), vec![remove.clone()]);
    let a = e.on_outcome(&remove, &Outcome::Done, 3 * S);
    let rc = Action::Reconnect {
        device: "nbd1".into(),
    };
    assert_eq!(non_log(&a), vec![rc.clone()]);
    // server still down: reconnect fails, retried with backoff
    let a = e.on_outcome(&rc, &Outcome::Failed(Failure::EmptyCommand), 3 * S);
    assert!(non_log(&a).is_empty());
    let t = e.next_deadline().unwrap();
    assert_eq!(t, 7 * S);
    let a = e.on_snapshot(&nbd1_gone(), &Env::default(), t);
    assert_eq!(non_log(&a), vec![rc.clone()]);
    let a = e.on_outcome(&rc, &Outcome::Done, t);
    assert_eq!(non_log(&a), vec![probe("nbd1")]);
    let a = e.on_probe(&nbd1_gone(), "nbd1", sb(UUID, 1, 100), t);
    assert!(
        matches!(&non_log(&a)[0], Action::Add { role: Some(1), device, .. } if device == "nbd1")
    );
}

#[test]
fn start_jitter_delays_the_add() {
    let mut e = Engine::new(cfg(|c| c.throttle.jitter_s = 30), 12345);
    fail_and_wait(&mut e, 0);
    let a = e.on_probe(&nbd1_faulty(), "nbd1", sb(UUID, 1, 100), 3 * S);
    assert!(non_log(&a).is_empty(), "{a:?}");
    let at = e.next_deadline().unwrap();
    assert!(at > 3 * S && at <= 33 * S, "{at}");
    assert!(non_log(&e.on_snapshot(&nbd1_faulty(), &Env::default(), at - 1)).is_empty());
    let a = e.on_snapshot(&nbd1_faulty(), &Env::default(), at);
    assert!(matches!(non_log(&a)[0], Action::ReAdd { .. }));
}

#[test]
fn different_seeds_spread_the_start() {
    let delays: Vec<Ms> = (1..20)
        .map(|seed| {
            let mut e = Engine::new(cfg(|c| c.throttle.jitter_s = 30), seed * 7919);
            fail_and_wait(&mut e, 0);
            e.on_probe(&nbd1_faulty(), "nbd1", sb(UUID, 1, 100), 3 * S);
            e.next_deadline().unwrap()
        })
        .collect();
    let mut distinct = delays.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() > 15, "{delays:?}");
}

#[test]
fn stalled_writes_are_reported() {
    let mut e = engine();
    let mut s = healthy();
    s.arrays[0].array_state = Some("write-pending".into());
    assert!(e.on_snapshot(&s, &Env::default(), 0).is_empty());
    assert_eq!(e.next_deadline(), Some(60 * S));
    assert!(logs(&e.on_snapshot(&s, &Env::default(), 59 * S)).is_empty());
    let a = e.on_snapshot(&s, &Env::default(), 60 * S);
    assert!(logs(&a)[0].contains("stalled"), "{a:?}");
    assert!(e.arrays["md0"].stalled);
    let a = e.on_snapshot(&healthy(), &Env::default(), 61 * S);
    assert!(logs(&a)[0].contains("flow again"));
}

#[test]
fn throttle_follows_budget_and_load_and_restores() {
    let mut e = Engine::new(cfg(|c| c.throttle.max_kbps = 50_000), 1);
    e.on_snapshot(&healthy(), &Env::default(), 0);
    let a = e.on_snapshot(&recovering("nbd1"), &Env::default(), S);
    assert_eq!(
        non_log(&a),
        vec![Action::SetSpeed {
            array: "md0".into(),
            min: None,
            max: Some(50_000)
        }]
    );
    // unchanged: nothing written again
    assert!(non_log(&e.on_snapshot(&recovering("nbd1"), &Env::default(), 2 * S)).is_empty());
    // dom0's budget below the ceiling wins
    let env = Env {
        budget_kbps: Some(8_000),
        io_pressure: None,
    };
    let a = e.on_snapshot(&recovering("nbd1"), &env, 3 * S);
    assert_eq!(
        non_log(&a),
        vec![Action::SetSpeed {
            array: "md0".into(),
            min: None,
            max: Some(8_000)
        }]
    );
    // the guest's own I/O is busy: divided
    let env = Env {
        budget_kbps: Some(8_000),
        io_pressure: Some(55.0),
    };
    let a = e.on_snapshot(&recovering("nbd1"), &env, 4 * S);
    assert_eq!(
        non_log(&a),
        vec![Action::SetSpeed {
            array: "md0".into(),
            min: None,
            max: Some(2_000)
        }]
    );
    assert!(logs(&a)[0].contains("guest I/O busy"));
    // done: the previous (system) values come back
    let a = e.on_snapshot(&healthy(), &env, 5 * S);
    assert_eq!(
        non_log(&a),
        vec![Action::SetSpeed {
            array: "md0".into(),
            min: None,
            max: None
        }]
    );
    assert!(e.restore_all().is_empty());
}

#[test]
fn restore_on_exit_and_no_throttle_by_default() {
    let mut e = engine();
    assert!(non_log(&e.on_snapshot(&recovering("nbd1"), &Env::default(), 0)).is_empty());
    let mut e = Engine::new(cfg(|c| c.throttle.max_kbps = 10_000), 1);
    e.on_snapshot(&recovering("nbd1"), &Env::default(), 0);
    assert_eq!(
        e.restore_all(),
        vec![Action::SetSpeed {
            array: "md0".into(),
            min: None,
            max: None
        }]
    );
}

#[test]
fn unmanaged_arrays_are_never_touched() {
    let mut s = nbd1_faulty();
    s.arrays[0].level = Some("raid5".into());
    let mut e = engine();
    e.on_snapshot(&s, &Env::default(), 0);
    assert!(non_log(&e.on_snapshot(&s, &Env::default(), 1000 * S)).is_empty());
    let mut e = Engine::new(cfg(|c| c.ignore = vec!["md0".into()]), 1);
    e.on_snapshot(&nbd1_faulty(), &Env::default(), 0);
    assert!(e
        .on_snapshot(&nbd1_faulty(), &Env::default(), 1000 * S)
        .is_empty());
}

/// Seed layout: md0 = nbd0p1+nbd1p1, md1 = nbd0p2+nbd1p2. nbd1's server dies;
/// md0 notices, the idle md1 does not. nbd1 can be reconnected only once md holds
/// no part of it, so md1's nbd1p2 is failed first (md1 keeps nbd0p2 in sync).
#[test]
fn reconnect_of_a_shared_disk_waits_for_every_partition() {
    let mut e = engine_with_nbd1_reconnect();
    let arr = |name: &str, p: u32, faulty1: bool, bound1: bool| {
        let mut m = vec![member(&format!("nbd0p{p}"), Some(0), &["in_sync"])];
        if bound1 {
            m.push(if faulty1 {
                member(&format!("nbd1p{p}"), None, &["faulty"])
            } else {
                member(&format!("nbd1p{p}"), Some(1), &["in_sync"])
            });
        }
        let mut a = raid1(m);
        a.name = name.into();
        a
    };
    let s = |f0: bool, b0: bool, f1: bool, b1: bool| {
        snap(vec![arr("md0", 1, f0, b0), arr("md1", 2, f1, b1)])
    };
    e.on_snapshot(&s(false, true, false, true), &Env::default(), 0);
    e.on_snapshot(&s(true, true, false, true), &Env::default(), S);
    let a = e.on_snapshot(&s(true, true, false, true), &Env::default(), 3 * S);
    let rm0 = removal("md0", "nbd1p1");
    assert_eq!(non_log(&a), vec![rm0.clone()]);
    let a = e.on_outcome(&rm0, &Outcome::Done, 3 * S);
    let fail1 = Action::Fail {
        array: "md1".into(),
        device: "nbd1p2".into(),
    };
    assert_eq!(non_log(&a), vec![fail1.clone()], "{a:?}");
    assert!(e.on_outcome(&fail1, &Outcome::Done, 3 * S).is_empty());
    // no second Fail while md has not reported it faulty yet
    assert!(
        non_log(&e.on_snapshot(&s(true, false, false, true), &Env::default(), 3 * S)).is_empty()
    );
    e.on_snapshot(&s(true, false, true, true), &Env::default(), 4 * S);
    let rm1 = removal("md1", "nbd1p2");
    let mut t;
    let mut rounds = 0;
    loop {
        t = e.next_deadline().unwrap();
        assert!(t > 3 * S, "no timer in the past: {t}");
        let a = e.on_snapshot(&s(true, false, true, true), &Env::default(), t);
        if !non_log(&a).is_empty() {
            assert_eq!(non_log(&a), vec![rm1.clone()]);
            break;
        }
        rounds += 1;
        assert!(rounds < 5, "nbd1p2 never removed");
    }
    let a = e.on_outcome(&rm1, &Outcome::Done, t);
    let rc = Action::Reconnect {
        device: "nbd1".into(),
    };
    assert_eq!(non_log(&a), vec![rc.clone()], "one reconnect for the disk");
    let a = e.on_outcome(&rc, &Outcome::Done, t);
    assert_eq!(non_log(&a), vec![probe("nbd1p1"), probe("nbd1p2")]);
}

#[test]
fn the_only_in_sync_leg_is_never_failed_for_a_reconnect() {
    let mut e = engine_with_nbd1_reconnect();
    let mut md1 = raid1(vec![member("nbd1p2", Some(1), &["in_sync"])]);
    md1.name = "md1".into();
    let mut md0 = raid1(vec![
        member("nbd0p1", Some(0), &["in_sync"]),
        member("nbd1p1", None, &["faulty"]),
    ]);
    md0.name = "md0".into();
    let mut healthy0 = md0.clone();
    healthy0.members[1] = member("nbd1p1", Some(1), &["in_sync"]);
    e.on_snapshot(&snap(vec![healthy0, md1.clone()]), &Env::default(), 0);
    e.on_snapshot(&snap(vec![md0.clone(), md1.clone()]), &Env::default(), S);
    let a = e.on_snapshot(
        &snap(vec![md0.clone(), md1.clone()]),
        &Env::default(),
        3 * S,
    );
    let rm = non_log(&a)[0].clone();
    let a = e.on_outcome(&rm, &Outcome::Done, 3 * S);
    assert!(non_log(&a).is_empty(), "{a:?}");
    assert!(logs(&a)[0].contains("only in-sync leg"), "{a:?}");
}

#[test]
fn limits_left_by_a_killed_run_are_restored() {
    let mut e = engine();
    let mut saved = std::collections::BTreeMap::new();
    saved.insert("md0".to_string(), (None, Some(90_000)));
    e.preload_saved_speeds(saved);
    // not recovering any more: the old values go back at once
    let a = e.on_snapshot(&healthy(), &Env::default(), 0);
    assert_eq!(
        non_log(&a),
        vec![Action::SetSpeed {
            array: "md0".into(),
            min: None,
            max: Some(90_000)
        }]
    );
    assert!(e.saved_speeds().is_empty());
}

/// Requests stuck on a dead nbd connection make `remove` answer EBUSY until the
/// transport is torn down: the reconnect command (which disconnects first) runs,
/// and the next round removes the leg and reconnects it for real.
#[test]
fn busy_remove_tears_the_transport_down_first() {
    let mut e = engine_with_nbd1_reconnect();
    let a = fail_and_wait(&mut e, 0);
    let remove = removal("md0", "nbd1");
    assert_eq!(non_log(&a), vec![remove.clone()]);
    let a = e.on_outcome(
        &remove,
        &Outcome::Failed(Failure::Errno(Errno::EBUSY)),
        3 * S,
    );
    let rc = Action::Reconnect {
        device: "nbd1".into(),
    };
    assert_eq!(non_log(&a), vec![rc.clone()]);
    // the connect fails (md still holds the device): back off
    assert!(non_log(&e.on_outcome(&rc, &Outcome::Failed(Failure::EmptyCommand), 3 * S)).is_empty());
    let t = e.next_deadline().unwrap();
    let a = e.on_snapshot(&nbd1_faulty(), &Env::default(), t);
    assert_eq!(non_log(&a), vec![remove.clone()]);
    let a = e.on_outcome(&remove, &Outcome::Done, t);
    assert_eq!(non_log(&a), vec![rc.clone()]);
    let a = e.on_outcome(&rc, &Outcome::Done, t);
    assert_eq!(non_log(&a), vec![probe("nbd1")]);
}
