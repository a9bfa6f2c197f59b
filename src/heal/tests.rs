//! Unit tests of the healing policy: one test per case the agent must get right.
//! They assert on actions and typed events, never on log wording (the words are
//! held by `event.rs`'s own test); arrays are built with [`raid1`] under any name.

use super::*;
use crate::config::Config;
use crate::md::model::{Array, Health, Member, Snapshot, SpeedLimit, Sync, SyncAction, SyncState};
use std::os::unix::process::ExitStatusExt;

const UUID: &str = "0fbf5f2c-add2-43c2-bd78-a4be3ab709ef";
const OTHER: &str = "11111111-2222-3333-4444-555555555555";
const S: Ms = 1000;

// ---- arrays ----

/// A managed raid1 under construction: `raid1("md3").leg("xvdb", 0).faulty_leg("xvdc")`.
struct ArrayBuilder {
    a: Array,
}

fn raid1(name: &str) -> ArrayBuilder {
    let mut a = Array::named(name);
    a.level = Some("raid1".into());
    a.array_state = Some("clean".into());
    a.raid_disks = Some(2);
    a.uuid = Some(UUID.into());
    a.sync_speed_min = Some(SpeedLimit {
        kbps: 1000,
        system: true,
    });
    a.sync_speed_max = Some(SpeedLimit {
        kbps: 200000,
        system: true,
    });
    ArrayBuilder { a }
}

impl ArrayBuilder {
    fn member(mut self, dev: &str, slot: Option<u32>, states: &[&str]) -> Self {
        self.a.members.push(Member {
            device: dev.into(),
            slot,
            descriptor: None,
            states: states.iter().map(|s| s.to_string()).collect(),
            faulty: states.contains(&"faulty"),
            errors: None,
        });
        self
    }

    /// An in-sync leg in `slot`.
    fn leg(self, dev: &str, slot: u32) -> Self {
        self.member(dev, Some(slot), &["in_sync"])
    }

    /// A leg md marked faulty (it keeps no slot).
    fn faulty_leg(self, dev: &str) -> Self {
        self.member(dev, None, &["faulty"])
    }

    /// A faulty leg with its descriptor number (`dev_number`).
    fn faulty_leg_numbered(mut self, dev: &str, descriptor: u32) -> Self {
        self = self.faulty_leg(dev);
        self.a.members.last_mut().expect("just pushed").descriptor = Some(descriptor);
        self
    }

    /// A leg in `slot` being rebuilt: a recovery runs.
    fn rebuilding(mut self, dev: &str, slot: u32) -> Self {
        self.a.sync = Some(Sync {
            action: SyncAction::Recover,
            state: SyncState::Running,
            done: Some(10),
            total: Some(100),
            percent: None,
            speed_kbps: Some(1000),
            finish_min: None,
        });
        self.member(dev, Some(slot), &[])
    }

    fn slots(mut self, n: u32) -> Self {
        self.a.raid_disks = Some(n);
        self
    }

    fn array_state(mut self, st: &str) -> Self {
        self.a.array_state = Some(st.into());
        self
    }

    fn level(mut self, level: &str) -> Self {
        self.a.level = Some(level.into());
        self
    }

    fn build(mut self) -> Array {
        let slots = self.a.raid_disks.unwrap_or(2);
        self.a.degraded = Some(slots - self.a.in_sync_count().min(slots));
        self.a.derive_health();
        self.a
    }

    fn snap(self) -> Snapshot {
        snap(vec![self.build()])
    }
}

fn snap(arrays: Vec<Array>) -> Snapshot {
    Snapshot {
        arrays,
        problems: vec![],
    }
}

/// A two-leg mirror by its names: `good` stays, `bad` fails and comes back.
#[derive(Clone, Copy)]
struct Mirror {
    md: &'static str,
    good: &'static str,
    bad: &'static str,
}

/// The nbd lab's names, and a Xen guest's.
const NBD: Mirror = Mirror {
    md: "md0",
    good: "nbd0",
    bad: "nbd1",
};
const XVD: Mirror = Mirror {
    md: "md3",
    good: "xvdb",
    bad: "xvdc",
};

impl Mirror {
    fn healthy(self) -> Snapshot {
        raid1(self.md).leg(self.good, 0).leg(self.bad, 1).snap()
    }

    /// `bad` is faulty, still bound.
    fn faulty(self) -> Snapshot {
        raid1(self.md).leg(self.good, 0).faulty_leg(self.bad).snap()
    }

    /// `bad` is no longer bound.
    fn gone(self) -> Snapshot {
        raid1(self.md).leg(self.good, 0).snap()
    }

    /// `with` is being rebuilt in slot 1.
    fn recovering(self, with: &str) -> Snapshot {
        raid1(self.md).leg(self.good, 0).rebuilding(with, 1).snap()
    }

    fn readd(self) -> Action {
        Action::ReAdd {
            array: self.md.into(),
            device: self.bad.into(),
        }
    }

    fn remove(self) -> Action {
        removal(self.md, self.bad)
    }

    fn leg(self, e: &Engine) -> &Leg {
        e.legs_of(self.md)
            .find(|l| l.device == self.bad)
            .expect("the leg is tracked")
    }
}

// ---- inputs and outputs ----

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

fn errno(e: Errno) -> Outcome {
    Outcome::Failed(Failure::Errno(e))
}

/// A reconnect command that exited 1.
fn exit_1() -> Outcome {
    Outcome::Failed(Failure::Exited {
        program: "nbd-client".into(),
        status: std::process::ExitStatus::from_raw(1 << 8),
        stderr: "Connection refused".into(),
    })
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

/// The actions besides events.
fn actions(v: &[Action]) -> Vec<Action> {
    v.iter()
        .filter(|a| !matches!(a, Action::Log(_)))
        .cloned()
        .collect()
}

fn events(v: &[Action]) -> Vec<Event> {
    v.iter()
        .filter_map(|a| match a {
            Action::Log(e) => Some(e.clone()),
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

fn add_in_slot(array: &str, dev: &str, slot: u32) -> Action {
    Action::Add {
        array: array.into(),
        device: dev.into(),
        role: Some(slot),
        dev_number: Some(slot),
    }
}

/// Drive `m.bad` from healthy to faulty and past its first probe time.
fn fail_and_wait(e: &mut Engine, m: Mirror, t0: Ms) -> Vec<Action> {
    e.on_snapshot(&m.healthy(), &Env::default(), t0);
    let a = e.on_snapshot(&m.faulty(), &Env::default(), t0 + 1);
    assert_eq!(
        events(&a),
        vec![Event::LegFailed {
            array: m.md.into(),
            device: m.bad.into(),
            flap: None,
            probe_in: 2 * S,
        }],
        "no action before the first probe"
    );
    let deadline = e.next_deadline().expect("a probe is scheduled");
    assert_eq!(deadline, t0 + 1 + 2 * S);
    e.on_snapshot(&m.faulty(), &Env::default(), deadline)
}

// ---- the rules ----

#[test]
fn healthy_array_needs_nothing() {
    for m in [NBD, XVD] {
        let mut e = engine();
        let a = e.on_snapshot(&m.healthy(), &Env::default(), 0);
        assert!(a.is_empty(), "{a:?}");
        assert_eq!(e.next_deadline(), None, "no timer while healthy");
    }
}

#[test]
fn faulty_bound_leg_probed_then_readded_via_sysfs() {
    for m in [NBD, XVD] {
        let mut e = engine();
        let a = fail_and_wait(&mut e, m, 0);
        assert_eq!(actions(&a), vec![probe(m.bad)]);
        assert!(m.leg(&e).probing());
        let a = e.on_probe(&m.faulty(), m.bad, sb(UUID, 1, 100), 3 * S);
        assert_eq!(actions(&a), vec![m.readd()]);
        assert_eq!(m.leg(&e).adding(), Some(Attempt::ReAdd));
        let a = e.on_outcome(&m.readd(), &Outcome::Done, 3 * S);
        assert_eq!(
            events(&a),
            vec![Event::ReAdded {
                array: m.md.into(),
                device: m.bad.into(),
                attempt: Attempt::ReAdd,
            }]
        );
        // recovery starts, then finishes: leg healthy, nothing more to do
        let a = e.on_snapshot(&m.recovering(m.bad), &Env::default(), 4 * S);
        assert_eq!(
            a,
            vec![Action::Log(Event::RecoveryStarted {
                array: m.md.into(),
                action: "recover",
            })]
        );
        let a = e.on_snapshot(&m.healthy(), &Env::default(), 10 * S);
        assert_eq!(
            a,
            vec![Action::Log(Event::RecoveryFinished {
                array: m.md.into(),
                after: 6 * S,
                health: Health::Ok,
            })]
        );
        assert_eq!(m.leg(&e).phase(), Phase::Healthy);
    }
}

#[test]
fn refused_readd_falls_back_to_remove_then_add_with_role() {
    let m = XVD;
    let mut e = engine();
    fail_and_wait(&mut e, m, 0);
    let a = e.on_probe(&m.faulty(), m.bad, sb(UUID, 1, 100), 3 * S);
    assert_eq!(actions(&a), vec![m.readd()]);
    let a = e.on_outcome(&m.readd(), &errno(Errno::EBUSY), 3 * S);
    assert_eq!(
        a,
        vec![
            Action::Log(Event::ReAddRefused {
                array: m.md.into(),
                device: m.bad.into(),
                failure: Failure::Errno(Errno::EBUSY),
            }),
            m.remove()
        ]
    );
    let a = e.on_outcome(&m.remove(), &Outcome::Done, 3 * S);
    assert_eq!(actions(&a), vec![probe(m.bad)]);
    let a = e.on_probe(&m.gone(), m.bad, sb(UUID, 1, 100), 4 * S);
    assert_eq!(actions(&a), vec![add_in_slot(m.md, m.bad, 1)]);
    assert_eq!(
        m.leg(&e).adding(),
        Some(Attempt::InSlot {
            role: 1,
            dev_number: 1
        })
    );
}

#[test]
fn impossible_readd_adds_for_full_recovery_only_when_allowed() {
    let m = NBD;
    for allowed in [true, false] {
        let mut e = Engine::new(cfg(|c| c.heal.full_recovery = allowed), 1);
        e.on_snapshot(&m.healthy(), &Env::default(), 0);
        e.on_snapshot(&m.gone(), &Env::default(), 1);
        // the leg left while healthy (removed): probed later
        let t = e.next_deadline().unwrap();
        let a = e.on_snapshot(&m.gone(), &Env::default(), t);
        assert_eq!(actions(&a), vec![probe(m.bad)]);
        let a = e.on_probe(&m.gone(), m.bad, sb(UUID, 1, 100), t);
        let add = add_in_slot(m.md, m.bad, 1);
        assert_eq!(actions(&a), vec![add.clone()]);
        let a = e.on_outcome(&add, &errno(Errno::EINVAL), t);
        let failure = Failure::Errno(Errno::EINVAL);
        let (array, device) = (m.md.to_string(), m.bad.to_string());
        if allowed {
            assert_eq!(
                a,
                vec![
                    Action::Log(Event::FullRecovery {
                        array,
                        device,
                        failure
                    }),
                    Action::Add {
                        array: m.md.into(),
                        device: m.bad.into(),
                        role: None,
                        dev_number: None
                    }
                ]
            );
            assert_eq!(m.leg(&e).adding(), Some(Attempt::Spare));
        } else {
            assert_eq!(
                a,
                vec![Action::Log(Event::FullRecoveryOff {
                    array,
                    device,
                    failure
                })]
            );
            assert_eq!(m.leg(&e).phase(), Phase::NeedsAdmin);
        }
    }
}

#[test]
fn failed_probes_back_off_to_the_cap() {
    let m = NBD;
    let mut e = engine();
    fail_and_wait(&mut e, m, 0);
    let mut t = 3 * S;
    let mut intervals = vec![];
    let mut said = vec![];
    for _ in 0..8 {
        let a = e.on_probe(&m.faulty(), m.bad, ProbeOutcome::Failed(Errno::EIO), t);
        for ev in events(&a) {
            match ev {
                Event::StillUnusable {
                    errno: Some(Errno::EIO),
                    next_in,
                    ..
                } => said.push(next_in / S),
                ev => panic!("{ev:?}"),
            }
        }
        let next = e.next_deadline().unwrap();
        intervals.push((next - t) / S);
        // nothing happens before the deadline
        assert!(actions(&e.on_snapshot(&m.faulty(), &Env::default(), next - 1)).is_empty());
        let a = e.on_snapshot(&m.faulty(), &Env::default(), next);
        assert_eq!(actions(&a), vec![probe(m.bad)]);
        t = next;
    }
    assert_eq!(intervals, vec![4, 8, 16, 32, 60, 60, 60, 60]);
    // said at the first short interval and at the cap, not in between
    assert_eq!(said, vec![4, 60, 60, 60, 60]);
}

#[test]
fn new_node_matched_by_superblock_uuid_and_role() {
    let m = XVD;
    let mut e = engine();
    e.on_snapshot(&m.healthy(), &Env::default(), 0);
    e.on_snapshot(&m.gone(), &Env::default(), 1);
    // vbd re-attached as a new node
    e.on_device("xvdd");
    let a = e.on_snapshot(&m.gone(), &Env::default(), 2);
    assert!(actions(&a).contains(&probe("xvdd")), "{a:?}");
    let a = e.on_probe(&m.gone(), "xvdd", sb(UUID, 1, 100), 3);
    assert_eq!(
        a,
        vec![
            Action::Log(Event::NewDevice {
                array: "md3".into(),
                device: "xvdd".into(),
                role: Some(1),
            }),
            add_in_slot("md3", "xvdd", 1)
        ]
    );
}

/// A vbd detached and attached again under a new name while md still lists the
/// old node as faulty: ADD_NEW_DISK would hit the old node's descriptor number
/// (EBUSY), so that member (and no other) is removed first, then the new one added.
#[test]
fn new_node_replacing_a_faulty_member_removes_that_member_first() {
    let with_faulty = || {
        raid1("md3")
            .slots(3)
            .leg("xvdb", 0)
            .faulty_leg_numbered("xvdc", 1)
            // a third, unrelated faulty leg of a 3-way mirror: not this device's place
            .faulty_leg_numbered("xvde", 2)
            .snap()
    };
    assert_eq!(with_faulty().arrays[0].degraded, Some(2));
    let mut e = engine();
    e.on_snapshot(&with_faulty(), &Env::default(), 0);
    e.on_device("xvdd");
    let a = e.on_snapshot(&with_faulty(), &Env::default(), 1);
    assert!(actions(&a).contains(&probe("xvdd")), "{a:?}");
    let a = e.on_probe(&with_faulty(), "xvdd", sb(UUID, 1, 100), 2);
    assert_eq!(
        actions(&a),
        vec![removal("md3", "xvdc"), add_in_slot("md3", "xvdd", 1)]
    );
    assert!(
        events(&a).contains(&Event::MakingRoom {
            array: "md3".into(),
            faulty: "xvdc".into(),
            device: "xvdd".into(),
        }),
        "{a:?}"
    );
}

#[test]
fn never_by_name_alone_foreign_superblock_is_never_added_and_logged_once() {
    let m = NBD;
    let mut e = engine();
    fail_and_wait(&mut e, m, 0);
    // same node name, another array's superblock
    let a = e.on_probe(&m.faulty(), m.bad, sb(OTHER, 1, 100), 3 * S);
    assert_eq!(
        a,
        vec![Action::Log(Event::Refused {
            array: m.md.into(),
            device: m.bad.into(),
            reason: Refusal::OtherArray {
                found: OTHER.into(),
                expected: UUID.into()
            },
        })]
    );
    // a refused leg is not probed again by the timer
    assert_eq!(m.leg(&e).phase(), Phase::Refused);
    assert_eq!(e.next_deadline(), None);
    assert!(actions(&e.on_snapshot(&m.faulty(), &Env::default(), 1000 * S)).is_empty());
    // a foreign disk appearing: probed, never added, logged once
    e.on_device("sdz");
    let a = e.on_snapshot(&m.faulty(), &Env::default(), 1001 * S);
    assert!(actions(&a).contains(&probe("sdz")));
    let a = e.on_probe(&m.faulty(), "sdz", sb(OTHER, 0, 5), 1001 * S);
    assert_eq!(
        a,
        vec![Action::Log(Event::ForeignDevice {
            device: "sdz".into(),
            uuid: OTHER.into()
        })]
    );
    let a = e.on_probe(&m.faulty(), "sdz", sb(OTHER, 0, 5), 1002 * S);
    assert!(a.is_empty(), "logged once: {a:?}");
}

#[test]
fn no_superblock_wrong_role_stale_copy_or_newer_events_refused() {
    let arr = raid1("md3").leg("xvdb", 0).faulty_leg("xvdc").build();
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
    let v = |held: Option<u32>, sb: &SbFacts| verdict(&arr, &mem, held, Some(sb));
    assert_eq!(
        verdict(&arr, &mem, Some(1), None),
        Err(Refusal::NoSuperblock)
    );
    assert_eq!(
        v(Some(1), &f(UUID, SbRole::Active(0), 90)),
        Err(Refusal::WrongSlot { role: 0, held: 1 })
    );
    assert_eq!(
        v(None, &f(UUID, SbRole::Active(0), 90)),
        Err(Refusal::SlotTaken { role: 0 })
    );
    assert_eq!(
        v(None, &f(UUID, SbRole::Active(5), 90)),
        Err(Refusal::BeyondSlots { role: 5, slots: 2 })
    );
    assert_eq!(v(None, &f(UUID, SbRole::Spare, 90)), Err(Refusal::Spare));
    assert_eq!(v(None, &f(UUID, SbRole::Faulty, 90)), Err(Refusal::Faulty));
    assert_eq!(
        v(Some(1), &f(UUID, SbRole::Active(1), 101)),
        Err(Refusal::NewerEvents {
            events: 101,
            array: 100
        })
    );
    assert_eq!(v(Some(1), &f(UUID, SbRole::Active(1), 99)), Ok(()));
    // mdadm's colon form of the same UUID is the same array
    assert_eq!(
        v(
            Some(1),
            &f("0fbf5f2c:add243c2:bd78a4be:3ab709ef", SbRole::Active(1), 99)
        ),
        Ok(())
    );
    // no UUID from md nor from a member's superblock: nothing can be proven
    let mut anon = arr.clone();
    anon.uuid = None;
    assert_eq!(
        verdict(
            &anon,
            &ArrayMem::default(),
            Some(1),
            Some(&f(UUID, SbRole::Active(1), 1))
        ),
        Err(Refusal::UuidUnknown)
    );
}

#[test]
fn flapping_leg_backs_off_then_stops_until_dom0_asks() {
    let m = XVD;
    let mut e = Engine::new(
        cfg(|c| {
            c.heal.flap_limit = 3;
            c.heal.flap_backoff_s = 10;
            c.heal.flap_window_s = 300;
        }),
        7,
    );
    e.on_snapshot(&m.healthy(), &Env::default(), 0);
    let mut t = S;
    let mut waits = vec![];
    for round in 0..4 {
        let a = e.on_snapshot(&m.faulty(), &Env::default(), t);
        if round == 3 {
            assert_eq!(
                events(&a)[0],
                Event::Flapping {
                    array: m.md.into(),
                    device: m.bad.into(),
                    flaps: 3
                },
                "{a:?}"
            );
            assert!(actions(&a).is_empty(), "{a:?}");
            assert_eq!(e.next_deadline(), None, "no more probes");
            break;
        }
        let flap = (round > 0).then_some(Flap {
            after: 5 * S,
            count: round,
        });
        assert!(
            matches!(&events(&a)[0], Event::LegFailed { flap: f, .. } if *f == flap),
            "{a:?}"
        );
        let next = e.next_deadline().unwrap();
        waits.push((next - t) / S);
        t = next;
        let a = e.on_snapshot(&m.faulty(), &Env::default(), t);
        assert_eq!(actions(&a), vec![probe(m.bad)]);
        let a = e.on_probe(&m.faulty(), m.bad, sb(UUID, 1, 100), t);
        assert_eq!(actions(&a), vec![m.readd()]);
        e.on_outcome(&m.readd(), &Outcome::Done, t);
        e.on_snapshot(&m.recovering(m.bad), &Env::default(), t + S);
        t += 5 * S; // fails again 5 s after the re-add
    }
    assert_eq!(
        waits,
        vec![2, 10, 20],
        "initial probe, then flap backoff doubling"
    );
    assert_eq!(m.leg(&e).phase(), Phase::Flapping);
    // nothing happens however long we wait
    assert!(actions(&e.on_snapshot(&m.faulty(), &Env::default(), t + 10_000 * S)).is_empty());
    // dom0's probe hint: probed again at once
    assert_eq!(
        e.on_probe_hint(t + 10_001 * S),
        vec![Action::Log(Event::ProbeHint)]
    );
    assert_eq!(m.leg(&e).flaps, 0, "forgiven by dom0's hint");
    let a = e.on_snapshot(&m.faulty(), &Env::default(), t + 10_001 * S);
    assert_eq!(actions(&a), vec![probe(m.bad)]);
}

#[test]
fn leg_healthy_through_the_window_is_forgiven() {
    let m = NBD;
    let mut e = Engine::new(cfg(|c| c.heal.flap_window_s = 60), 7);
    fail_and_wait(&mut e, m, 0);
    e.on_probe(&m.faulty(), m.bad, sb(UUID, 1, 100), 3 * S);
    e.on_outcome(&m.readd(), &Outcome::Done, 3 * S);
    // fails 10 s later: a flap
    e.on_snapshot(&m.healthy(), &Env::default(), 4 * S);
    e.on_snapshot(&m.faulty(), &Env::default(), 13 * S);
    assert_eq!(m.leg(&e).flaps, 1);
    let t = e.next_deadline().unwrap();
    e.on_snapshot(&m.faulty(), &Env::default(), t);
    let a = e.on_probe(&m.faulty(), m.bad, sb(UUID, 1, 100), t);
    assert_eq!(actions(&a), vec![m.readd()]);
    e.on_outcome(&m.readd(), &Outcome::Done, t);
    e.on_snapshot(&m.healthy(), &Env::default(), t + 61 * S);
    assert_eq!(m.leg(&e).flaps, 0);
}

#[test]
fn reconnect_command_runs_after_remove_and_before_add() {
    let m = NBD;
    let mut e = engine_with_nbd1_reconnect();
    let a = fail_and_wait(&mut e, m, 0);
    assert_eq!(actions(&a), vec![m.remove()]);
    let a = e.on_outcome(&m.remove(), &Outcome::Done, 3 * S);
    let rc = Action::Reconnect {
        device: "nbd1".into(),
    };
    assert_eq!(actions(&a), vec![rc.clone()]);
    assert_eq!(m.leg(&e).phase(), Phase::Reconnecting);
    // server still down: reconnect fails, retried with backoff
    let a = e.on_outcome(&rc, &exit_1(), 3 * S);
    let Outcome::Failed(failure) = exit_1() else {
        unreachable!()
    };
    assert_eq!(
        a,
        vec![Action::Log(Event::ReconnectFailed {
            disk: "nbd1".into(),
            failure,
            next_in: 4 * S,
        })]
    );
    let t = e.next_deadline().unwrap();
    assert_eq!(t, 7 * S);
    let a = e.on_snapshot(&m.gone(), &Env::default(), t);
    assert_eq!(actions(&a), vec![rc.clone()]);
    let a = e.on_outcome(&rc, &Outcome::Done, t);
    assert_eq!(actions(&a), vec![probe(m.bad)]);
    let a = e.on_probe(&m.gone(), m.bad, sb(UUID, 1, 100), t);
    assert_eq!(actions(&a), vec![add_in_slot(m.md, m.bad, 1)]);
}

#[test]
fn start_jitter_delays_the_add() {
    let m = XVD;
    let mut e = Engine::new(cfg(|c| c.throttle.jitter_s = 30), 12345);
    fail_and_wait(&mut e, m, 0);
    let a = e.on_probe(&m.faulty(), m.bad, sb(UUID, 1, 100), 3 * S);
    assert!(actions(&a).is_empty(), "{a:?}");
    let at = e.next_deadline().unwrap();
    assert!(at > 3 * S && at <= 33 * S, "{at}");
    assert_eq!(
        a,
        vec![Action::Log(Event::Proven {
            array: m.md.into(),
            device: m.bad.into(),
            jitter: at - 3 * S,
        })]
    );
    assert!(actions(&e.on_snapshot(&m.faulty(), &Env::default(), at - 1)).is_empty());
    let a = e.on_snapshot(&m.faulty(), &Env::default(), at);
    assert_eq!(actions(&a), vec![m.readd()]);
}

#[test]
fn different_seeds_spread_the_start() {
    let m = NBD;
    let delays: Vec<Ms> = (1..20)
        .map(|seed| {
            let mut e = Engine::new(cfg(|c| c.throttle.jitter_s = 30), seed * 7919);
            fail_and_wait(&mut e, m, 0);
            e.on_probe(&m.faulty(), m.bad, sb(UUID, 1, 100), 3 * S);
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
    let m = XVD;
    let mut e = engine();
    let s = raid1(m.md)
        .leg(m.good, 0)
        .leg(m.bad, 1)
        .array_state("write-pending")
        .snap();
    assert!(e.on_snapshot(&s, &Env::default(), 0).is_empty());
    assert_eq!(e.next_deadline(), Some(60 * S));
    assert!(e.on_snapshot(&s, &Env::default(), 59 * S).is_empty());
    let a = e.on_snapshot(&s, &Env::default(), 60 * S);
    assert_eq!(
        a,
        vec![Action::Log(Event::Stalled {
            array: m.md.into(),
            after: 60 * S
        })]
    );
    assert!(e.arrays[m.md].stalled);
    let a = e.on_snapshot(&m.healthy(), &Env::default(), 61 * S);
    assert_eq!(
        a,
        vec![Action::Log(Event::WritesFlow { array: m.md.into() })]
    );
}

#[test]
fn throttle_follows_budget_and_load_and_restores() {
    let m = NBD;
    let speed = |max: Option<u64>| Action::SetSpeed {
        array: m.md.into(),
        min: None,
        max,
    };
    let mut e = Engine::new(cfg(|c| c.throttle.max_kbps = 50_000), 1);
    e.on_snapshot(&m.healthy(), &Env::default(), 0);
    let a = e.on_snapshot(&m.recovering(m.bad), &Env::default(), S);
    assert_eq!(actions(&a), vec![speed(Some(50_000))]);
    // unchanged: nothing written again
    assert!(actions(&e.on_snapshot(&m.recovering(m.bad), &Env::default(), 2 * S)).is_empty());
    // dom0's budget below the ceiling wins
    let env = Env {
        budget_kbps: Some(8_000),
        io_pressure: None,
    };
    let a = e.on_snapshot(&m.recovering(m.bad), &env, 3 * S);
    assert_eq!(actions(&a), vec![speed(Some(8_000))]);
    // the guest's own I/O is busy: divided
    let env = Env {
        budget_kbps: Some(8_000),
        io_pressure: Some(55.0),
    };
    let a = e.on_snapshot(&m.recovering(m.bad), &env, 4 * S);
    assert_eq!(
        a,
        vec![
            speed(Some(2_000)),
            Action::Log(Event::Throttled {
                array: m.md.into(),
                max: Some(2_000),
                busy: true
            })
        ]
    );
    // done: the previous (system) values come back
    let a = e.on_snapshot(&m.healthy(), &env, 5 * S);
    assert_eq!(actions(&a), vec![speed(None)]);
    assert!(e.restore_all().is_empty());
}

#[test]
fn restore_on_exit_and_no_throttle_by_default() {
    let m = NBD;
    let mut e = engine();
    assert!(actions(&e.on_snapshot(&m.recovering(m.bad), &Env::default(), 0)).is_empty());
    let mut e = Engine::new(cfg(|c| c.throttle.max_kbps = 10_000), 1);
    e.on_snapshot(&m.recovering(m.bad), &Env::default(), 0);
    assert_eq!(
        e.restore_all(),
        vec![Action::SetSpeed {
            array: m.md.into(),
            min: None,
            max: None
        }]
    );
}

#[test]
fn unmanaged_arrays_are_never_touched() {
    let m = XVD;
    let s = raid1(m.md)
        .level("raid5")
        .leg(m.good, 0)
        .faulty_leg(m.bad)
        .snap();
    let mut e = engine();
    e.on_snapshot(&s, &Env::default(), 0);
    assert!(e.on_snapshot(&s, &Env::default(), 1000 * S).is_empty());
    let mut e = Engine::new(cfg(|c| c.ignore = vec![m.md.into()]), 1);
    e.on_snapshot(&m.faulty(), &Env::default(), 0);
    assert!(e
        .on_snapshot(&m.faulty(), &Env::default(), 1000 * S)
        .is_empty());
    assert_eq!(e.legs_of(m.md).count(), 0);
}

/// Seed layout: md0 = nbd0p1+nbd1p1, md1 = nbd0p2+nbd1p2. nbd1's server dies;
/// md0 notices, the idle md1 does not. nbd1 can be reconnected only once md holds
/// no part of it, so md1's nbd1p2 is failed first (md1 keeps nbd0p2 in sync).
#[test]
fn reconnect_of_a_shared_disk_waits_for_every_partition() {
    let mut e = engine_with_nbd1_reconnect();
    let arr = |name: &str, p: u32, faulty1: bool, bound1: bool| {
        let b = raid1(name).leg(&format!("nbd0p{p}"), 0);
        let leg1 = format!("nbd1p{p}");
        match (bound1, faulty1) {
            (false, _) => b,
            (true, true) => b.faulty_leg(&leg1),
            (true, false) => b.leg(&leg1, 1),
        }
        .build()
    };
    let s = |f0: bool, b0: bool, f1: bool, b1: bool| {
        snap(vec![arr("md0", 1, f0, b0), arr("md1", 2, f1, b1)])
    };
    e.on_snapshot(&s(false, true, false, true), &Env::default(), 0);
    e.on_snapshot(&s(true, true, false, true), &Env::default(), S);
    let a = e.on_snapshot(&s(true, true, false, true), &Env::default(), 3 * S);
    let rm0 = removal("md0", "nbd1p1");
    assert_eq!(actions(&a), vec![rm0.clone()]);
    let a = e.on_outcome(&rm0, &Outcome::Done, 3 * S);
    let fail1 = Action::Fail {
        array: "md1".into(),
        device: "nbd1p2".into(),
    };
    assert_eq!(actions(&a), vec![fail1.clone()], "{a:?}");
    assert_eq!(
        events(&a),
        vec![Event::FailingForReconnect {
            array: "md1".into(),
            device: "nbd1p2".into(),
            disk: "nbd1".into()
        }]
    );
    assert!(e.on_outcome(&fail1, &Outcome::Done, 3 * S).is_empty());
    // no second Fail while md has not reported it faulty yet
    assert!(
        actions(&e.on_snapshot(&s(true, false, false, true), &Env::default(), 3 * S)).is_empty()
    );
    e.on_snapshot(&s(true, false, true, true), &Env::default(), 4 * S);
    let rm1 = removal("md1", "nbd1p2");
    let mut t;
    let mut rounds = 0;
    loop {
        t = e.next_deadline().unwrap();
        assert!(t > 3 * S, "no timer in the past: {t}");
        let a = e.on_snapshot(&s(true, false, true, true), &Env::default(), t);
        if !actions(&a).is_empty() {
            assert_eq!(actions(&a), vec![rm1.clone()]);
            break;
        }
        rounds += 1;
        assert!(rounds < 5, "nbd1p2 never removed");
    }
    let a = e.on_outcome(&rm1, &Outcome::Done, t);
    let rc = Action::Reconnect {
        device: "nbd1".into(),
    };
    assert_eq!(actions(&a), vec![rc.clone()], "one reconnect for the disk");
    let a = e.on_outcome(&rc, &Outcome::Done, t);
    assert_eq!(actions(&a), vec![probe("nbd1p1"), probe("nbd1p2")]);
}

#[test]
fn the_only_in_sync_leg_is_never_failed_for_a_reconnect() {
    let mut e = engine_with_nbd1_reconnect();
    let md1 = raid1("md1").leg("nbd1p2", 1).build();
    let md0 = raid1("md0").leg("nbd0p1", 0).faulty_leg("nbd1p1").build();
    let healthy0 = raid1("md0").leg("nbd0p1", 0).leg("nbd1p1", 1).build();
    e.on_snapshot(&snap(vec![healthy0, md1.clone()]), &Env::default(), 0);
    e.on_snapshot(&snap(vec![md0.clone(), md1.clone()]), &Env::default(), S);
    let a = e.on_snapshot(
        &snap(vec![md0.clone(), md1.clone()]),
        &Env::default(),
        3 * S,
    );
    let rm = removal("md0", "nbd1p1");
    assert_eq!(actions(&a), vec![rm.clone()]);
    let a = e.on_outcome(&rm, &Outcome::Done, 3 * S);
    let blocked = Action::Log(Event::ReconnectBlocked {
        disk: "nbd1".into(),
        array: "md1".into(),
        device: "nbd1p2".into(),
    });
    assert_eq!(a, vec![blocked.clone()]);
    // said once per max probe interval, not at every round
    let md0_removed = raid1("md0").leg("nbd0p1", 0).build();
    let t = e.next_deadline().unwrap();
    assert_eq!(t, 5 * S);
    let s = snap(vec![md0_removed, md1]);
    assert!(e.on_snapshot(&s, &Env::default(), t).is_empty());
    let a = e.on_snapshot(&s, &Env::default(), 3 * S + 60 * S);
    assert_eq!(a, vec![blocked]);
}

#[test]
fn limits_left_by_a_killed_run_are_restored() {
    let mut e = engine();
    let mut saved = std::collections::BTreeMap::new();
    saved.insert("md0".to_string(), (None, Some(90_000)));
    e.preload_saved_speeds(saved);
    // not recovering any more: the old values go back at once
    let a = e.on_snapshot(&NBD.healthy(), &Env::default(), 0);
    assert_eq!(
        actions(&a),
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
    let m = NBD;
    let mut e = engine_with_nbd1_reconnect();
    let a = fail_and_wait(&mut e, m, 0);
    assert_eq!(actions(&a), vec![m.remove()]);
    let a = e.on_outcome(&m.remove(), &errno(Errno::EBUSY), 3 * S);
    let rc = Action::Reconnect {
        device: "nbd1".into(),
    };
    assert_eq!(
        a,
        vec![
            Action::Log(Event::RemoveRefused {
                array: m.md.into(),
                device: m.bad.into(),
                failure: Failure::Errno(Errno::EBUSY)
            }),
            rc.clone()
        ]
    );
    // the connect fails (md still holds the device): back off
    assert!(actions(&e.on_outcome(&rc, &exit_1(), 3 * S)).is_empty());
    let t = e.next_deadline().unwrap();
    let a = e.on_snapshot(&m.faulty(), &Env::default(), t);
    assert_eq!(actions(&a), vec![m.remove()]);
    let a = e.on_outcome(&m.remove(), &Outcome::Done, t);
    assert_eq!(actions(&a), vec![rc.clone()]);
    let a = e.on_outcome(&rc, &Outcome::Done, t);
    assert_eq!(actions(&a), vec![probe(m.bad)]);
}

/// Another errno than EBUSY (the member is gone): no transport teardown, the
/// remove is retried at the next probe time.
#[test]
fn other_remove_failures_just_retry() {
    let m = NBD;
    let mut e = engine_with_nbd1_reconnect();
    fail_and_wait(&mut e, m, 0);
    let a = e.on_outcome(&m.remove(), &errno(Errno::ENOENT), 3 * S);
    assert!(actions(&a).is_empty(), "{a:?}");
    assert_eq!(m.leg(&e).phase(), Phase::Failed);
    assert_eq!(e.next_deadline(), Some(5 * S));
}

/// An outcome or probe result for a step the leg is no longer at is ignored.
#[test]
fn stale_outcomes_and_probe_results_are_ignored() {
    let m = XVD;
    let mut e = engine();
    fail_and_wait(&mut e, m, 0);
    e.on_probe(&m.faulty(), m.bad, sb(UUID, 1, 100), 3 * S);
    // md lists the leg in sync again (an admin re-added it) before the outcome
    e.on_snapshot(&m.healthy(), &Env::default(), 3 * S);
    assert_eq!(m.leg(&e).phase(), Phase::Healthy);
    assert!(e
        .on_outcome(&m.readd(), &errno(Errno::EBUSY), 3 * S)
        .is_empty());
    assert!(e.on_outcome(&m.remove(), &Outcome::Done, 3 * S).is_empty());
    assert!(e
        .on_probe(&m.healthy(), m.bad, sb(UUID, 1, 100), 3 * S)
        .is_empty());
    assert_eq!(m.leg(&e).phase(), Phase::Healthy);
    assert!(m.leg(&e).bound);
}

/// An edge taken from a wrong state is an engine bug: caught in debug builds.
#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "give_up from Healthy")]
fn an_edge_from_a_wrong_state_is_a_bug() {
    let mut leg = Leg::new("md3", "xvdc", Some(1), true, LegState::HEALTHY);
    leg.give_up();
}
