//! The read before the add: the superblock must not have moved, the history must
//! fit the array's (no split brain), and without a bitmap only a full recovery.

use super::*;

/// Fail `m.bad`, prove it by a probe that reads `leg`: the read before the add is
/// asked for.
fn proven(e: &mut Engine, m: Mirror, snap: &Snapshot, leg: ProbeOutcome) {
    fail_and_wait(e, m, 0);
    let a = e.on_probe(snap, m.bad, leg, 3 * S);
    assert_eq!(actions(&a), vec![m.confirm()], "{a:?}");
}

fn returning(roles: Vec<Role>, events: u64) -> ProbeOutcome {
    ProbeOutcome::Readable {
        sb: Some(SbFacts {
            roles,
            ..facts(UUID, 1, events)
        }),
    }
}

/// Split brain: the returning leg ran on alone after the survivor failed (a
/// degraded boot on it, say), so its superblock records the survivor as faulty
/// or gone. Two histories: never added, whatever its event count.
#[test]
fn a_leg_that_ran_on_without_the_survivor_is_refused() {
    for m in [NBD, XVD] {
        for recorded in [Role::Faulty, Role::Spare] {
            let mut e = engine();
            let leg = returning(vec![recorded, Role::Active(1)], 90);
            proven(&mut e, m, &m.faulty(), leg.clone());
            let a = confirmed(&mut e, &m.faulty(), m.md, m.bad, leg, 3 * S);
            assert_eq!(
                a,
                vec![Action::Log(Event::Refused {
                    array: m.md.into(),
                    device: m.bad.into(),
                    reason: Refusal::RanWithout {
                        member: m.good.into(),
                        descriptor: 0,
                        recorded,
                    },
                })]
            );
            assert_eq!(m.leg(&e).phase(), Phase::Refused);
            assert_eq!(e.next_deadline(), None, "left alone");
        }
    }
}

#[test]
fn a_leg_with_more_events_than_the_array_is_refused() {
    let m = NBD;
    let mut e = engine();
    let leg = sb(UUID, 1, 101);
    proven(&mut e, m, &m.faulty(), leg.clone());
    // the witness (the survivor) is at 100
    let a = confirmed(&mut e, &m.faulty(), m.md, m.bad, leg, 3 * S);
    assert_eq!(
        events(&a),
        vec![Event::Refused {
            array: m.md.into(),
            device: m.bad.into(),
            reason: Refusal::NewerEvents {
                events: 101,
                array: 100
            },
        }]
    );
    assert!(actions(&a).is_empty());
}

/// Between the probe that proved it and its add (the start jitter), the leg's
/// superblock changed (another writer, a snapshot restored): it is probed and
/// judged again, never added on the old facts.
#[test]
fn a_superblock_that_moved_before_the_add_is_probed_again() {
    let m = NBD;
    let mut e = engine();
    proven(&mut e, m, &m.faulty(), sb(UUID, 1, 90));
    let a = confirmed(&mut e, &m.faulty(), m.md, m.bad, sb(UUID, 1, 95), 3 * S);
    assert_eq!(
        a,
        vec![Action::Log(Event::HistoryMoved {
            array: m.md.into(),
            device: m.bad.into(),
        })]
    );
    assert!(m.leg(&e).probe_due(3 * S));
    let a = e.on_snapshot(&m.faulty(), &Env::default(), 3 * S);
    assert_eq!(actions(&a), vec![probe(m.bad)]);
}

#[test]
fn an_unreadable_witness_or_leg_backs_off() {
    let m = NBD;
    for (leg_read, witness_read) in [
        (sb(UUID, 1, 90), ProbeOutcome::Failed(Errno::EIO)),
        (sb(UUID, 1, 90), ProbeOutcome::TimedOut),
        (ProbeOutcome::Failed(Errno::EIO), sb(UUID, 0, 100)),
    ] {
        let mut e = engine();
        proven(&mut e, m, &m.faulty(), sb(UUID, 1, 90));
        let a = e.on_confirm(&m.faulty(), m.md, m.bad, leg_read, witness_read, 3 * S);
        assert!(actions(&a).is_empty(), "{a:?}");
        assert_eq!(m.leg(&e).phase(), Phase::Failed);
        assert!(e.next_deadline().is_some_and(|t| t > 3 * S));
    }
}

/// Without a write-intent bitmap a re-add copies nothing (md takes the leg as in
/// sync), so the leg is removed, proven again, and added as a spare: a full
/// recovery. Never a sysfs re-add, never ADD_NEW_DISK into its slot.
#[test]
fn without_a_bitmap_only_a_full_recovery() {
    let m = XVD;
    let faulty = || {
        raid1(m.md)
            .leg(m.good, 0)
            .faulty_leg(m.bad)
            .no_bitmap()
            .snap()
    };
    let gone = || raid1(m.md).leg(m.good, 0).no_bitmap().snap();
    let mut e = engine();
    e.on_snapshot(
        &raid1(m.md).leg(m.good, 0).leg(m.bad, 1).no_bitmap().snap(),
        &Env::default(),
        0,
    );
    e.on_snapshot(&faulty(), &Env::default(), 1);
    let t = e.next_deadline().unwrap();
    e.on_snapshot(&faulty(), &Env::default(), t);
    let a = e.on_probe(&faulty(), m.bad, sb(UUID, 1, 90), t);
    assert_eq!(actions(&a), vec![m.confirm()]);
    let a = confirmed(&mut e, &faulty(), m.md, m.bad, sb(UUID, 1, 90), t);
    assert_eq!(
        a,
        vec![
            Action::Log(Event::RemovingForFullCopy {
                array: m.md.into(),
                device: m.bad.into(),
            }),
            m.remove()
        ],
        "md still lists it: removed first"
    );
    let a = e.on_outcome(&m.remove(), &Outcome::Done, t);
    assert_eq!(actions(&a), vec![probe(m.bad)]);
    let a = e.on_probe(&gone(), m.bad, sb(UUID, 1, 90), t);
    assert_eq!(actions(&a), vec![m.confirm()]);
    let a = confirmed(&mut e, &gone(), m.md, m.bad, sb(UUID, 1, 90), t);
    let spare = Action::Add {
        array: m.md.into(),
        device: m.bad.into(),
        role: None,
        dev_number: None,
        flags: LegFlags::default(),
    };
    assert_eq!(
        a,
        vec![
            Action::Log(Event::FullCopyNeeded {
                array: m.md.into(),
                device: m.bad.into(),
            }),
            spare.clone()
        ]
    );
    let a = e.on_outcome(&spare, &Outcome::Done, t);
    assert_eq!(
        events(&a),
        vec![Event::ReAdded {
            array: m.md.into(),
            device: m.bad.into(),
            attempt: Attempt::Spare,
        }]
    );
    // with full recovery off in the config: left for an admin, untouched
    let mut e = Engine::new(cfg(|c| c.heal.full_recovery = false), 1);
    e.on_snapshot(
        &raid1(m.md).leg(m.good, 0).leg(m.bad, 1).no_bitmap().snap(),
        &Env::default(),
        0,
    );
    e.on_snapshot(&gone(), &Env::default(), 1);
    let t = e.next_deadline().unwrap();
    e.on_snapshot(&gone(), &Env::default(), t);
    e.on_probe(&gone(), m.bad, sb(UUID, 1, 90), t);
    let a = confirmed(&mut e, &gone(), m.md, m.bad, sb(UUID, 1, 90), t);
    assert_eq!(
        a,
        vec![Action::Log(Event::FullCopyOff {
            array: m.md.into(),
            device: m.bad.into(),
        })]
    );
    assert_eq!(m.leg(&e).phase(), Phase::NeedsAdmin);
}

/// An array whose legs are all faulty has no history to check a returning leg
/// against: nothing is added into it.
#[test]
fn no_in_sync_witness_no_add() {
    let m = NBD;
    let lost = || raid1(m.md).faulty_leg(m.good).faulty_leg(m.bad).snap();
    let mut e = engine();
    e.on_snapshot(&m.healthy(), &Env::default(), 0);
    e.on_snapshot(&lost(), &Env::default(), 1);
    let t = e.next_deadline().unwrap();
    let a = e.on_snapshot(&lost(), &Env::default(), t);
    assert!(actions(&a).contains(&probe(m.bad)), "{a:?}");
    let a = e.on_probe(&lost(), m.bad, sb(UUID, 1, 90), t);
    assert!(
        events(&a).contains(&Event::Refused {
            array: m.md.into(),
            device: m.bad.into(),
            reason: Refusal::NoWitness,
        }),
        "{a:?}"
    );
    assert!(!actions(&a).iter().any(|x| matches!(
        x,
        Action::Add { .. } | Action::ReAdd { .. } | Action::Confirm { .. }
    )));
}

/// After an add, once md has the leg in sync, the log says what md wrote to
/// it: a full recovery's whole leg, a bitmap re-add's chunks, and an error
/// when a full recovery wrote much less than the array's size.
#[test]
fn what_md_copied_is_said_once_the_leg_is_in_sync() {
    let m = XVD;
    let counted = |n: u64| ProbeOutcome::Readable {
        sb: Some(SbFacts {
            written_sectors: Some(n),
            ..facts(UUID, 1, 90)
        }),
    };
    let back = |bitmap: bool, written: u64| {
        let mut b = raid1(m.md).leg(m.good, 0).leg(m.bad, 1);
        if !bitmap {
            b = b.no_bitmap();
        }
        let mut a = b.build();
        a.size_kb = Some(32_768);
        a.members[1].written_sectors = Some(written);
        snap(vec![a])
    };
    for (bitmap, written_kib, want) in [
        (true, 4096, "md3: xvdc is in sync: md wrote 4.0 MiB to it of the array's 32.0 MiB (what the bitmap kept)"),
        (false, 32_000, "md3: xvdc is in sync: md wrote 31.2 MiB to it of the array's 32.0 MiB (a full recovery)"),
        (false, 2, "md3: xvdc is in sync, but md wrote only 0.0 MiB to it of the array's 32.0 MiB after an add for a full recovery: it did not copy the whole leg; run a check (echo check > /sys/block/md3/md/sync_action)"),
    ] {
        let gone = || {
            let b = raid1(m.md).leg(m.good, 0);
            if bitmap { b.snap() } else { b.no_bitmap().snap() }
        };
        let mut e = engine();
        e.on_snapshot(&back(bitmap, 500), &Env::default(), 0);
        e.on_snapshot(&gone(), &Env::default(), 1);
        let t = e.next_deadline().unwrap();
        e.on_snapshot(&gone(), &Env::default(), t);
        e.on_probe(&gone(), m.bad, counted(1000), t);
        let a = e.on_confirm(&gone(), m.md, m.bad, counted(1000), sb(UUID, 0, 100), t);
        let add = actions(&a).pop().expect("an add");
        assert!(matches!(add, Action::Add { .. }), "{a:?}");
        e.on_outcome(&add, &Outcome::Done, t);
        let a = e.on_snapshot(&back(bitmap, 1000 + 2 * written_kib), &Env::default(), t + S);
        let said: Vec<String> = events(&a)
            .iter()
            .filter(|ev| matches!(ev, Event::Copied { .. }))
            .map(|ev| ev.to_string())
            .collect();
        assert_eq!(said, vec![want.to_string()]);
        // said once
        let a = e.on_snapshot(&back(bitmap, 1000 + 2 * written_kib), &Env::default(), t + 2 * S);
        assert!(!events(&a).iter().any(|ev| matches!(ev, Event::Copied { .. })));
    }
}
