//! Unit tests of the healing policy: one test per case the agent must get right.
//! They assert on actions and typed events, never on log wording (the words are
//! held by `event.rs`'s own test); arrays are built with [`raid1`] under any name.

use super::*;
use crate::config::Config;
use crate::md::model::{
    Array, Bitmap, Health, Member, Snapshot, SpeedLimit, Sync, SyncAction, SyncState,
};
use crate::md::pressure::IoLoad;
use crate::md::superblock::Role;
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
    // an internal write-intent bitmap, as mdadm creates one
    a.bitmap = Some(Bitmap {
        pages_used: Some(1),
        pages_total: Some(1),
        chunk_kb: Some(65536),
        file: None,
        location: Some("+8".into()),
    });
    ArrayBuilder { a }
}

impl ArrayBuilder {
    fn member(mut self, dev: &str, slot: Option<u32>, states: &[&str]) -> Self {
        self.a.members.push(Member::new(dev, slot, states));
        self
    }

    /// An in-sync leg in `slot`, with descriptor number `slot`.
    fn leg(mut self, dev: &str, slot: u32) -> Self {
        self = self.member(dev, Some(slot), &["in_sync"]);
        self.a.members.last_mut().expect("just pushed").descriptor = Some(slot);
        self
    }

    /// No write-intent bitmap (mdadm before 4.3 adds none below 100 GiB).
    fn no_bitmap(mut self) -> Self {
        self.a.bitmap = None;
        self
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

    /// The read before `bad`'s add, with `good` as witness.
    fn confirm(self) -> Action {
        confirm_action(self.md, self.bad, self.good)
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

/// The superblock of a leg in `role` of a two-leg mirror that last wrote while
/// both legs were in sync (a leg that left, as it left).
fn facts(uuid: &str, role: u32, events: u64) -> SbFacts {
    SbFacts {
        uuid: uuid.into(),
        role: Role::Active(role),
        events,
        dev_number: role,
        utime: 1_700_000_000 + events,
        roles: vec![Role::Active(0), Role::Active(1)],
        device_uuid: Some(format!("{role:032x}")),
        storage: None,
        written_sectors: None,
    }
}

fn sb(uuid: &str, role: u32, events: u64) -> ProbeOutcome {
    ProbeOutcome::Readable {
        sb: Some(facts(uuid, role, events)),
    }
}

fn confirm_action(array: &str, dev: &str, witness: &str) -> Action {
    Action::Confirm {
        array: array.into(),
        device: dev.into(),
        witness: witness.into(),
    }
}

/// A probe that proves `m.bad`, and the read before its add (answered with the
/// same superblock): the actions of that read.
fn prove_and_confirm(e: &mut Engine, m: Mirror, snap: &Snapshot, now: Ms) -> Vec<Action> {
    let a = e.on_probe(snap, m.bad, sb(UUID, 1, 100), now);
    assert_eq!(actions(&a), vec![m.confirm()], "{a:?}");
    confirmed(e, snap, m.md, m.bad, sb(UUID, 1, 100), now)
}

/// Answer the read before the add: the leg reads as `leg`, the witness as a
/// member that ran on (events 100, both legs in sync in its view).
fn confirmed(
    e: &mut Engine,
    snap: &Snapshot,
    array: &str,
    dev: &str,
    leg: ProbeOutcome,
    now: Ms,
) -> Vec<Action> {
    e.on_confirm(snap, array, dev, leg, sb(UUID, 0, 100), now)
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
/// The actions that change something or probe a leg (no log lines, no reads
/// for the legs' records: tests/history.rs looks at those).
fn actions(v: &[Action]) -> Vec<Action> {
    v.iter()
        .filter(|a| !matches!(a, Action::Log(_) | Action::Record { .. }))
        .cloned()
        .collect()
}

/// Everything but the reads for the legs' records.
fn no_records(v: &[Action]) -> Vec<Action> {
    v.iter()
        .filter(|a| !matches!(a, Action::Record { .. }))
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
        flags: LegFlags::default(),
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

mod admission;
mod candidates;
mod confirm;
mod history;
mod lifecycle;
mod membership;
mod reconnect;
mod stall;
mod throttle;
