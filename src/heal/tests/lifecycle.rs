//! A leg's life: failure, probing, the add and its fallbacks, flapping, jitter, stale events.

use super::*;

/// A healthy array needs nothing but, when first seen, one read of each leg for
/// its record; seen again unchanged, nothing at all and no timer.
#[test]
fn healthy_array_needs_nothing() {
    for m in [NBD, XVD] {
        let mut e = engine();
        let a = e.on_snapshot(&m.healthy(), &Env::default(), 0);
        assert!(actions(&a).is_empty(), "{a:?}");
        assert_eq!(a.len(), 2, "one record read per leg: {a:?}");
        let a = e.on_snapshot(&m.healthy(), &Env::default(), 60 * S);
        assert!(a.is_empty(), "{a:?}");
        assert_eq!(e.next_deadline(), None, "no timer while healthy");
        assert_eq!(e.history.next_due(), None, "no timer while healthy");
    }
}

#[test]
fn faulty_bound_leg_probed_then_readded_via_sysfs() {
    for m in [NBD, XVD] {
        let mut e = engine();
        let a = fail_and_wait(&mut e, m, 0);
        assert_eq!(actions(&a), vec![probe(m.bad)]);
        assert!(m.leg(&e).probing());
        let a = e.on_probe(&m.faulty(), m.bad, sb(UUID, 1, 99), 3 * S);
        // read again, with the surviving leg as witness, right before the add
        assert_eq!(actions(&a), vec![m.confirm()]);
        assert_eq!(m.leg(&e).phase(), Phase::Confirming);
        let a = confirmed(&mut e, &m.faulty(), m.md, m.bad, sb(UUID, 1, 99), 3 * S);
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
            no_records(&a),
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
    e.on_probe(&m.faulty(), m.bad, sb(UUID, 1, 99), 3 * S);
    let a = confirmed(&mut e, &m.faulty(), m.md, m.bad, sb(UUID, 1, 99), 3 * S);
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
    let a = e.on_probe(&m.gone(), m.bad, sb(UUID, 1, 99), 4 * S);
    assert_eq!(actions(&a), vec![m.confirm()]);
    let a = confirmed(&mut e, &m.gone(), m.md, m.bad, sb(UUID, 1, 99), 4 * S);
    assert_eq!(actions(&a), vec![add_in_slot(m.md, m.bad, 1)]);
    assert_eq!(
        m.leg(&e).adding(),
        Some(Attempt::InSlot {
            role: 1,
            dev_number: 1
        })
    );
}

/// ADD_NEW_DISK into the slot is refused with EINVAL when the leg's events are
/// older than the bitmap can bring up to date: not the leg that left (an older
/// copy, another history), so it is never overwritten by a full recovery. Any
/// other refusal falls back to a full recovery when the config allows it.
#[test]
fn refused_add_in_slot_is_left_alone_or_fully_recovered() {
    let m = NBD;
    for (errno_, allowed) in [
        (Errno::EINVAL, true),
        (Errno::ENOMEM, true),
        (Errno::ENOMEM, false),
    ] {
        let mut e = Engine::new(cfg(|c| c.heal.full_recovery = allowed), 1);
        e.on_snapshot(&m.healthy(), &Env::default(), 0);
        e.on_snapshot(&m.gone(), &Env::default(), 1);
        // the leg left while healthy (removed): probed later
        let t = e.next_deadline().unwrap();
        let a = e.on_snapshot(&m.gone(), &Env::default(), t);
        assert_eq!(actions(&a), vec![probe(m.bad)]);
        e.on_probe(&m.gone(), m.bad, sb(UUID, 1, 99), t);
        let a = confirmed(&mut e, &m.gone(), m.md, m.bad, sb(UUID, 1, 99), t);
        let add = add_in_slot(m.md, m.bad, 1);
        assert_eq!(actions(&a), vec![add.clone()]);
        let a = e.on_outcome(&add, &errno(errno_), t);
        let failure = Failure::Errno(errno_);
        let (array, device) = (m.md.to_string(), m.bad.to_string());
        match (errno_, allowed) {
            (Errno::EINVAL, _) => {
                assert_eq!(
                    a,
                    vec![Action::Log(Event::NotSameHistory {
                        array,
                        device,
                        failure
                    })]
                );
                assert_eq!(m.leg(&e).phase(), Phase::NeedsAdmin);
            }
            (_, true) => {
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
                            dev_number: None,
                            flags: LegFlags::default(),
                        }
                    ]
                );
                assert_eq!(m.leg(&e).adding(), Some(Attempt::Spare));
            }
            (_, false) => {
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
}

/// Probe reads back off only up to `probe.max_read_interval_s` (4 s by
/// default): reads are cheap, and a leg that comes back without an event is
/// found within that. Said at the 1st, 2nd, 4th, 8th failure in a row.
#[test]
fn failed_probes_back_off_to_the_cap() {
    for (read_cap, want, want_said) in [
        (None, vec![4; 8], vec![4, 4, 4, 4]),
        (
            Some(60),
            vec![4, 8, 16, 32, 60, 60, 60, 60],
            vec![4, 8, 32, 60],
        ),
    ] {
        let (intervals, said) = probe_intervals(read_cap);
        assert_eq!(intervals, want, "{read_cap:?}");
        assert_eq!(said, want_said, "{read_cap:?}");
    }
}

/// The interval after each of 8 failed probes, and the intervals said in
/// the log, with `max_read_interval_s` = `read_cap` (or the default).
fn probe_intervals(read_cap: Option<u64>) -> (Vec<Ms>, Vec<Ms>) {
    let m = NBD;
    let mut e = Engine::new(
        cfg(|c| {
            if let Some(r) = read_cap {
                c.probe.max_read_interval_s = r;
            }
        }),
        42,
    );
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
    (intervals, said)
}

/// The vbd case: a leg keeps its node and its storage comes back under it,
/// with no event, after a long outage. It is re-added at most the read cap
/// after it is readable again (with reads backing off to 60 s, up to 60 s).
#[test]
fn a_silent_return_after_a_long_outage_waits_at_most_the_read_cap() {
    for (read_cap, worst) in [(None, 4 * S), (Some(60), 60 * S)] {
        let m = XVD;
        let mut e = Engine::new(
            cfg(|c| {
                if let Some(r) = read_cap {
                    c.probe.max_read_interval_s = r;
                }
            }),
            42,
        );
        fail_and_wait(&mut e, m, 0);
        let t = 2 * S + 1;
        let mut waits = Vec::new();
        // readable again at 300 s, 301 s, ... 359 s after the failure:
        // how long until the probe that finds it
        for back in (300..360).map(|s| s * S) {
            let mut e = e.clone();
            let mut now = t;
            loop {
                if now >= back {
                    let a = e.on_probe(&m.faulty(), m.bad, sb(UUID, 1, 100), now);
                    assert_eq!(actions(&a), vec![m.confirm()]);
                    waits.push(now - back);
                    break;
                }
                e.on_probe(&m.faulty(), m.bad, ProbeOutcome::Failed(Errno::EIO), now);
                now = e.next_deadline().unwrap();
                assert_eq!(
                    actions(&e.on_snapshot(&m.faulty(), &Env::default(), now)),
                    vec![probe(m.bad)]
                );
            }
        }
        let max = *waits.iter().max().unwrap();
        assert!(max <= worst && max > worst - 2 * S, "{read_cap:?}: {max}");
    }
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
        let a = prove_and_confirm(&mut e, m, &m.faulty(), t);
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
    prove_and_confirm(&mut e, m, &m.faulty(), 3 * S);
    e.on_outcome(&m.readd(), &Outcome::Done, 3 * S);
    // fails 10 s later: a flap
    e.on_snapshot(&m.healthy(), &Env::default(), 4 * S);
    e.on_snapshot(&m.faulty(), &Env::default(), 13 * S);
    assert_eq!(m.leg(&e).flaps, 1);
    let t = e.next_deadline().unwrap();
    e.on_snapshot(&m.faulty(), &Env::default(), t);
    let a = prove_and_confirm(&mut e, m, &m.faulty(), t);
    assert_eq!(actions(&a), vec![m.readd()]);
    e.on_outcome(&m.readd(), &Outcome::Done, t);
    e.on_snapshot(&m.healthy(), &Env::default(), t + 61 * S);
    assert_eq!(m.leg(&e).flaps, 0);
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
    assert_eq!(actions(&a), vec![m.confirm()]);
    let a = confirmed(&mut e, &m.faulty(), m.md, m.bad, sb(UUID, 1, 100), at);
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

/// md forgets a member's write-mostly and failfast flags when it is removed, and
/// ADD_NEW_DISK clears them unless asked: the add carries them from when md last
/// listed the leg.
#[test]
fn write_mostly_and_failfast_survive_a_remove_and_add() {
    let m = XVD;
    let flagged = |faulty: bool| {
        let b = raid1(m.md).leg(m.good, 0);
        if faulty {
            b.member(m.bad, None, &["faulty", "write_mostly", "failfast"])
        } else {
            b.member(m.bad, Some(1), &["in_sync", "write_mostly", "failfast"])
        }
        .snap()
    };
    let mut e = engine();
    e.on_snapshot(&flagged(false), &Env::default(), 0);
    e.on_snapshot(&flagged(true), &Env::default(), 1);
    let t = e.next_deadline().unwrap();
    e.on_snapshot(&flagged(true), &Env::default(), t);
    prove_and_confirm(&mut e, m, &flagged(true), t);
    // the sysfs re-add is refused: removed, then added through ADD_NEW_DISK
    e.on_outcome(&m.readd(), &errno(Errno::EBUSY), t);
    e.on_outcome(&m.remove(), &Outcome::Done, t);
    let a = prove_and_confirm(&mut e, m, &m.gone(), t);
    let both = LegFlags {
        write_mostly: true,
        failfast: true,
    };
    assert_eq!(
        actions(&a),
        vec![Action::Add {
            array: m.md.into(),
            device: m.bad.into(),
            role: Some(1),
            dev_number: Some(1),
            flags: both,
        }]
    );
}

/// `arrays = ["md0", "md9"]` where md has no md9: said once, and again only when
/// the list of missing names changes (here: md9 appears, then the config names
/// another missing array).
#[test]
fn configured_arrays_that_md_lacks_are_said() {
    let m = NBD;
    let mut e = Engine::new(cfg(|c| c.arrays = vec!["md0".into(), "md9".into()]), 1);
    let said = |a: &[Action]| -> Vec<Vec<String>> {
        events(a)
            .into_iter()
            .filter_map(|e| match e {
                Event::ConfiguredArraysMissing { names } => Some(names),
                _ => None,
            })
            .collect()
    };
    let a = e.on_snapshot(&m.healthy(), &Env::default(), 0);
    assert_eq!(said(&a), vec![vec!["md9".to_string()]]);
    assert!(said(&e.on_snapshot(&m.healthy(), &Env::default(), 1)).is_empty());
    // md9 appears: nothing missing, nothing to say
    let both = snap(vec![
        raid1("md0").leg("nbd0", 0).leg("nbd1", 1).build(),
        raid1("md9").leg("nbd2", 0).leg("nbd3", 1).build(),
    ]);
    assert!(said(&e.on_snapshot(&both, &Env::default(), 2)).is_empty());
    // by UUID too: the config's md0 entry given as the array's UUID in mdadm's form
    let mut e = Engine::new(
        cfg(|c| c.arrays = vec!["0fbf5f2c:add243c2:bd78a4be:3ab709ef".into()]),
        1,
    );
    assert!(said(&e.on_snapshot(&m.healthy(), &Env::default(), 0)).is_empty());
}

/// md keeps a member's `write_error` mark through a sysfs re-add (seen on the
/// real kernel: `vm_safety::a_leg_readded_through_sysfs_does_not_keep_its_write_error`):
/// once the leg is in sync the mark is cleared, once; a leg added through
/// ADD_NEW_DISK starts afresh and is left alone.
#[test]
fn a_sysfs_readded_leg_loses_its_write_error_mark_once_in_sync() {
    let m = NBD;
    let marked = || {
        raid1(m.md)
            .leg(m.good, 0)
            .member(m.bad, Some(1), &["in_sync", "write_error"])
            .snap()
    };
    let clear = Action::ClearWriteError {
        array: m.md.into(),
        device: m.bad.into(),
    };
    let mut e = engine();
    fail_and_wait(&mut e, m, 0);
    e.on_probe(&m.faulty(), m.bad, sb(UUID, 1, 99), 3 * S);
    let a = confirmed(&mut e, &m.faulty(), m.md, m.bad, sb(UUID, 1, 99), 3 * S);
    assert_eq!(actions(&a), vec![m.readd()]);
    e.on_outcome(&m.readd(), &Outcome::Done, 3 * S);
    let a = e.on_snapshot(&marked(), &Env::default(), 4 * S);
    assert_eq!(actions(&a), vec![clear.clone()]);
    assert!(events(&a).contains(&Event::WriteErrorCleared {
        array: m.md.into(),
        device: m.bad.into(),
    }));
    // asked once: the next look does not ask again
    assert!(actions(&e.on_snapshot(&marked(), &Env::default(), 5 * S)).is_empty());
    // a marked leg mdguard did not re-add through sysfs: not its business
    let mut e = engine();
    assert!(actions(&e.on_snapshot(&marked(), &Env::default(), 0)).is_empty());
}
