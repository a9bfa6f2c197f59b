//! Each leg's record while in sync, and the window a returning leg must fit:
//! an older copy, another disk with this array's identity, or a disk written
//! after the leg left is refused before any add.

use super::*;
use crate::heal::history::{History, RECORD_EVERY};

/// When the legs were recorded (unix seconds), and when `bad` left.
const T_REC: u64 = 1_800_000_000;
const T_LEFT: u64 = T_REC + 600;

fn at(wall: u64) -> Env {
    Env {
        wall_s: Some(wall),
        ..Env::default()
    }
}

/// The leg's superblock updated at `utime` with `events`.
fn leg_sb(role: u32, events: u64, utime: u64) -> SbFacts {
    SbFacts {
        utime,
        ..facts(UUID, role, events)
    }
}

fn records(a: &[Action]) -> Vec<(String, String)> {
    a.iter()
        .filter_map(|x| match x {
            Action::Record { array, device } => Some((array.clone(), device.clone())),
            _ => None,
        })
        .collect()
}

/// md's view with `bad` faulty (descriptor 1): it left.
fn bad_left(m: Mirror) -> Snapshot {
    raid1(m.md)
        .leg(m.good, 0)
        .faulty_leg_numbered(m.bad, 1)
        .snap()
}

/// An engine that recorded both legs of `m` (events 100, updated at T_REC), saw
/// `bad` leave at T_LEFT and probed it: the read before the add is asked for.
fn recorded_then_left(m: Mirror, returning: &SbFacts) -> Engine {
    let mut e = engine();
    let a = e.on_snapshot(&m.healthy(), &at(T_REC), 0);
    assert_eq!(
        records(&a),
        vec![(m.md.into(), m.good.into()), (m.md.into(), m.bad.into())]
    );
    for (dev, role) in [(m.good, 0), (m.bad, 1)] {
        let sb = leg_sb(role, 100, T_REC);
        e.on_record(m.md, dev, &ProbeOutcome::Readable { sb: Some(sb) });
    }
    e.on_snapshot(&bad_left(m), &at(T_LEFT), S);
    let t = e.next_deadline().expect("a probe is due");
    let a = e.on_snapshot(&bad_left(m), &at(T_LEFT + 3), t);
    assert_eq!(actions(&a), vec![probe(m.bad)]);
    let read = ProbeOutcome::Readable {
        sb: Some(returning.clone()),
    };
    let a = e.on_probe(&bad_left(m), m.bad, read, t + 1);
    assert_eq!(actions(&a), vec![m.confirm()], "{a:?}");
    e
}

/// The read before the add of `bad`, with the witness in sync at events 101.
fn confirm(e: &mut Engine, m: Mirror, returning: &SbFacts) -> Vec<Action> {
    let leg = ProbeOutcome::Readable {
        sb: Some(returning.clone()),
    };
    e.on_confirm(&bad_left(m), m.md, m.bad, leg, sb(UUID, 0, 101), 10 * S)
}

fn refusal(a: &[Action]) -> Option<Refusal> {
    events(a).into_iter().find_map(|ev| match ev {
        Event::Refused { reason, .. } => Some(reason),
        _ => None,
    })
}

#[test]
fn the_leg_that_left_as_it_left_is_added() {
    for m in [NBD, XVD] {
        // written once more after the record (md went clean), before leaving
        let sb = leg_sb(1, 100, T_REC + 30);
        let mut e = recorded_then_left(m, &sb);
        let a = confirm(&mut e, m, &sb);
        assert_eq!(refusal(&a), None, "{a:?}");
        assert!(
            actions(&a)
                .iter()
                .any(|x| matches!(x, Action::ReAdd { .. } | Action::Add { .. })),
            "{a:?}"
        );
    }
}

/// A copy restored from a snapshot taken before the last record: its update
/// time is older (the event count may be the same: md toggles it N/N+1).
#[test]
fn a_copy_older_than_the_record_is_refused() {
    for m in [NBD, XVD] {
        for (events, utime) in [(100, T_REC - 3600), (98, T_REC)] {
            let sb = leg_sb(1, events, utime);
            let mut e = recorded_then_left(m, &sb);
            let a = confirm(&mut e, m, &sb);
            assert_eq!(
                refusal(&a),
                Some(Refusal::OlderThanRecorded {
                    utime,
                    events,
                    recorded_utime: T_REC,
                    recorded_events: 100
                })
            );
            assert!(actions(&a).is_empty(), "nothing added: {a:?}");
            assert_eq!(m.leg(&e).phase(), Phase::Refused);
        }
        // md's clean/dirty toggle: one event below the record still fits
        let sb = leg_sb(1, 99, T_REC);
        let mut e = recorded_then_left(m, &sb);
        assert_eq!(refusal(&confirm(&mut e, m, &sb)), None);
        // more events than the record: written after it, even if the guest's
        // clock was stepped back meanwhile
        let sb = leg_sb(1, 101, T_REC - 30);
        let mut e = recorded_then_left(m, &sb);
        assert_eq!(refusal(&confirm(&mut e, m, &sb)), None);
    }
}

/// A disk some other system wrote after the leg left (another guest's clone).
#[test]
fn a_disk_written_after_the_leg_left_is_refused() {
    let m = XVD;
    let sb = leg_sb(1, 100, T_LEFT + 120);
    let mut e = recorded_then_left(m, &sb);
    assert_eq!(
        refusal(&confirm(&mut e, m, &sb)),
        Some(Refusal::WrittenAfterLeaving {
            utime: T_LEFT + 120,
            left_at: T_LEFT
        })
    );
    // within the slack: the leg's own last write as md failed it
    let sb = leg_sb(1, 100, T_LEFT + 2);
    let mut e = recorded_then_left(m, &sb);
    assert_eq!(refusal(&confirm(&mut e, m, &sb)), None);
}

/// Another device UUID in the leg's slot, or other storage than the leg sat on.
#[test]
fn another_device_or_other_storage_is_refused() {
    let m = NBD;
    let other = SbFacts {
        device_uuid: Some("ff".repeat(16)),
        ..leg_sb(1, 100, T_REC)
    };
    let mut e = recorded_then_left(m, &other);
    assert!(matches!(
        refusal(&confirm(&mut e, m, &other)),
        Some(Refusal::OtherDevice { .. })
    ));

    // the record names the storage: a device on other storage, or on one that
    // names none, is not the leg
    for found in [Some("nbd backend srv3:guest7"), None] {
        let mut e = engine();
        e.on_snapshot(&m.healthy(), &at(T_REC), 0);
        let rec = SbFacts {
            storage: Some("nbd backend srv2:guest1".into()),
            ..leg_sb(1, 100, T_REC)
        };
        e.on_record(m.md, m.bad, &ProbeOutcome::Readable { sb: Some(rec) });
        let back = SbFacts {
            storage: found.map(String::from),
            ..leg_sb(1, 100, T_REC)
        };
        assert_eq!(
            e.history.check(&back),
            Err(Refusal::OtherStorage {
                found: found.map(String::from),
                recorded: "nbd backend srv2:guest1".into()
            })
        );
        let same = SbFacts {
            storage: Some("nbd backend srv2:guest1".into()),
            ..back
        };
        assert_eq!(e.history.check(&same), Ok(()));
    }
}

/// No record (the agent never saw the leg in sync): the superblock rules alone.
#[test]
fn without_a_record_the_superblock_alone_judges() {
    let h = History::default();
    assert_eq!(h.check(&leg_sb(1, 3, 1)), Ok(()));
}

/// Reads only when md changed, at most once per RECORD_EVERY per array; a
/// change within that time is read when it ends, and a change's read once
/// more RECORD_EVERY later; nothing for an idle array.
#[test]
fn legs_are_read_when_md_changes_at_most_every_few_seconds() {
    let m = NBD;
    let mut e = engine();
    let active = raid1(m.md)
        .leg(m.good, 0)
        .leg(m.bad, 1)
        .array_state("active")
        .snap();
    assert_eq!(
        records(&e.on_snapshot(&m.healthy(), &at(T_REC), 0)).len(),
        2
    );
    // the first look is no change: nothing owed after it
    assert_eq!(e.history.next_due(), None);
    // unchanged: no read, no timer
    assert!(records(&e.on_snapshot(&m.healthy(), &at(T_REC), 60 * S)).is_empty());
    assert_eq!(e.history.next_due(), None);
    // a write (active) and clean again 1 s later: read at once, then owed
    let t = 100 * S;
    assert_eq!(records(&e.on_snapshot(&active, &at(T_REC), t)).len(), 2);
    assert!(records(&e.on_snapshot(&m.healthy(), &at(T_REC), t + S)).is_empty());
    assert_eq!(e.history.next_due(), Some(t + RECORD_EVERY));
    assert_eq!(
        records(&e.on_snapshot(&m.healthy(), &at(T_REC), t + RECORD_EVERY)).len(),
        2
    );
    // md writes the superblock after the change it shows: the change's read is
    // made once more, RECORD_EVERY later, and then nothing is owed
    assert_eq!(e.history.next_due(), Some(t + 2 * RECORD_EVERY));
    assert_eq!(
        records(&e.on_snapshot(&m.healthy(), &at(T_REC), t + 2 * RECORD_EVERY)).len(),
        2
    );
    assert_eq!(e.history.next_due(), None);
    assert!(records(&e.on_snapshot(&m.healthy(), &at(T_REC), t + 60 * S)).is_empty());
    // stalled writes: never read (the read could hang as the writes do)
    let stuck = raid1(m.md)
        .leg(m.good, 0)
        .leg(m.bad, 1)
        .array_state("write-pending")
        .snap();
    assert!(records(&e.on_snapshot(&stuck, &at(T_REC), 200 * S)).is_empty());
    // a read owed when the writes stall, or when the array goes away, is no
    // longer owed: no timer left in the past (the loop would spin on it)
    let t = 300 * S;
    assert_eq!(records(&e.on_snapshot(&active, &at(T_REC), t)).len(), 2);
    e.on_snapshot(&m.healthy(), &at(T_REC), t + S);
    assert_eq!(e.history.next_due(), Some(t + RECORD_EVERY));
    e.on_snapshot(&stuck, &at(T_REC), t + 2 * S);
    assert_eq!(e.history.next_due(), None, "stalled");
    e.on_snapshot(&active, &at(T_REC), t + 3 * S);
    assert_eq!(e.history.next_due(), Some(t + RECORD_EVERY));
    e.on_snapshot(&snap(vec![]), &at(T_REC), t + 4 * S);
    assert_eq!(e.history.next_due(), None, "the array is gone");
}

/// A leg re-added and failing again mid-recovery leaves anew: its later
/// superblock writes (made while it recovered) are its own.
#[test]
fn a_leg_that_rejoined_leaves_anew() {
    let m = XVD;
    let mut h = History::default();
    h.on_read(UUID, m.bad, &leg_sb(1, 100, T_REC));
    let left = raid1(m.md)
        .leg(m.good, 0)
        .faulty_leg_numbered(m.bad, 1)
        .build();
    h.note_members(UUID, &left, T_LEFT);
    let g = h.left_generation;
    // back as a member (recovering), then faulty again an hour later
    let back = raid1(m.md).leg(m.good, 0).rebuilding(m.bad, 1);
    let mut back = back.build();
    back.members[1].descriptor = Some(1);
    h.note_members(UUID, &back, T_LEFT + 10);
    h.note_members(UUID, &left, T_LEFT + 3600);
    assert_eq!(h.left_generation, g + 1);
    assert_eq!(h.check(&leg_sb(1, 120, T_LEFT + 3000)), Ok(()));
    assert!(h.check(&leg_sb(1, 120, T_LEFT + 4000)).is_err());
}
