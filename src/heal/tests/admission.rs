//! Resync admission: with a coordinator in dom0 a proven leg asks for a turn
//! instead of the start jitter; a grant adds it at once, a queue keeps it
//! waiting while the coordinator lives, silence or the coordinator's end falls
//! back to the jitter.

use super::*;

/// An engine with a 30 s jitter (so an add after the jitter is unmistakable),
/// a 10 s wait for dom0's answer, and dom0's coordinator seen.
fn coordinated() -> Engine {
    let mut e = Engine::new(
        cfg(|c| {
            c.throttle.jitter_s = 30;
            c.throttle.grant_timeout_s = 10;
        }),
        12345,
    );
    assert!(e.set_coordinated(true, 0).is_empty());
    e
}

/// `m.bad` failed, probed and proven at 3 s: it asks.
fn proven_asking(e: &mut Engine, m: Mirror) {
    fail_and_wait(e, m, 0);
    let a = e.on_probe(&m.faulty(), m.bad, sb(UUID, 1, 100), 3 * S);
    assert_eq!(
        a,
        vec![Action::Log(Event::AskTurn {
            array: m.md.into(),
            device: m.bad.into(),
            timeout: 10 * S,
        })]
    );
}

#[test]
fn a_coordinated_leg_asks_instead_of_the_jitter_and_is_added_on_its_grant() {
    let m = XVD;
    let mut e = coordinated();
    proven_asking(&mut e, m);
    assert_eq!(e.awaiting_turn(), vec![m.bad.to_string()]);
    assert_eq!(m.leg(&e).start(), Some(Start::Asking));
    assert_eq!(e.next_deadline(), Some(13 * S), "the answer's deadline");
    assert!(e.resync_pending());
    // nothing happens while it waits
    assert!(actions(&e.on_snapshot(&m.faulty(), &Env::default(), 4 * S)).is_empty());
    // the grant: added at the next look, not after a jitter
    let a = e.on_turn(Turn::Granted, &[m.bad.into()], 4 * S + 200);
    assert_eq!(
        events(&a),
        vec![Event::TurnGranted {
            devices: vec![m.bad.into()]
        }]
    );
    assert!(e.awaiting_turn().is_empty());
    let a = e.on_snapshot(&m.faulty(), &Env::default(), 4 * S + 200);
    assert_eq!(actions(&a), vec![m.confirm()]);
    let a = confirmed(
        &mut e,
        &m.faulty(),
        m.md,
        m.bad,
        sb(UUID, 1, 100),
        4 * S + 200,
    );
    assert_eq!(actions(&a), vec![m.readd()]);
    e.on_outcome(&m.readd(), &Outcome::Done, 4 * S + 300);
    // added, recovering: the request still stands for it
    assert!(e.resync_pending());
    e.on_snapshot(&m.recovering(m.bad), &Env::default(), 5 * S);
    assert!(e.resync_pending());
    // in sync: over
    e.on_snapshot(&m.healthy(), &Env::default(), 9 * S);
    assert!(!e.resync_pending());
}

/// A bitmap re-add that copies nothing: md lists the leg in sync at once.
/// Between the add and that look the leg is still on its way back.
#[test]
fn an_added_leg_stands_until_md_lists_it_in_sync() {
    let m = NBD;
    let mut e = coordinated();
    proven_asking(&mut e, m);
    e.on_turn(Turn::Granted, &[m.bad.into()], 4 * S);
    e.on_snapshot(&m.faulty(), &Env::default(), 4 * S);
    confirmed(&mut e, &m.faulty(), m.md, m.bad, sb(UUID, 1, 100), 4 * S);
    e.on_outcome(&m.readd(), &Outcome::Done, 4 * S);
    assert_eq!(m.leg(&e).phase(), Phase::Healthy);
    assert!(e.resync_pending(), "added, md not yet looked at");
    e.on_snapshot(&m.healthy(), &Env::default(), 5 * S);
    assert!(!e.resync_pending());
}

#[test]
fn a_grant_for_other_legs_admits_none_of_these() {
    let m = XVD;
    let mut e = coordinated();
    proven_asking(&mut e, m);
    assert!(e.on_turn(Turn::Granted, &["xvdq".into()], 4 * S).is_empty());
    assert_eq!(m.leg(&e).start(), Some(Start::Asking));
    assert!(actions(&e.on_snapshot(&m.faulty(), &Env::default(), 5 * S)).is_empty());
}

#[test]
fn a_queued_leg_waits_while_the_coordinator_lives() {
    let m = XVD;
    let mut e = coordinated();
    proven_asking(&mut e, m);
    let a = e.on_turn(Turn::Queued, &[m.bad.into()], 5 * S);
    assert_eq!(
        events(&a),
        vec![Event::TurnQueued {
            devices: vec![m.bad.into()]
        }]
    );
    assert_eq!(e.next_deadline(), Some(15 * S));
    // each refresh moves the deadline, said once
    assert!(e.on_turn(Turn::Queued, &[m.bad.into()], 9 * S).is_empty());
    assert!(e.on_turn(Turn::Queued, &[m.bad.into()], 13 * S).is_empty());
    assert_eq!(e.next_deadline(), Some(23 * S));
    // past the first deadline, nothing: it is still queued
    assert!(actions(&e.on_snapshot(&m.faulty(), &Env::default(), 16 * S)).is_empty());
    assert_eq!(m.leg(&e).start(), Some(Start::Queued));
    assert_eq!(e.awaiting_turn(), vec![m.bad.to_string()]);
    e.on_turn(Turn::Granted, &[m.bad.into()], 20 * S);
    let a = e.on_snapshot(&m.faulty(), &Env::default(), 20 * S);
    assert_eq!(actions(&a), vec![m.confirm()]);
}

/// A dead coordinator never stops healing: no answer within
/// `grant_timeout_s`, and the leg waits out its jitter instead.
#[test]
fn no_answer_in_time_falls_back_to_the_jitter() {
    let m = XVD;
    let mut e = coordinated();
    proven_asking(&mut e, m);
    let a = e.on_snapshot(&m.faulty(), &Env::default(), 13 * S);
    assert!(actions(&a).is_empty(), "the jitter first: {a:?}");
    let Some(Event::NoTurn {
        jitter,
        gone: false,
        ..
    }) = events(&a).first().cloned()
    else {
        panic!("{a:?}")
    };
    assert!(jitter > 0 && jitter <= 30 * S, "{jitter}");
    assert_eq!(m.leg(&e).start(), Some(Start::Jitter));
    assert!(e.awaiting_turn().is_empty());
    assert_eq!(e.next_deadline(), Some(13 * S + jitter));
    // a late grant changes nothing
    assert!(e.on_turn(Turn::Granted, &[m.bad.into()], 14 * S).is_empty());
    let a = e.on_snapshot(&m.faulty(), &Env::default(), 13 * S + jitter);
    assert_eq!(actions(&a), vec![m.confirm()]);
}

/// Without a jitter the fallback adds at once.
#[test]
fn no_answer_and_no_jitter_adds_at_the_deadline() {
    let m = NBD;
    let mut e = Engine::new(cfg(|c| c.throttle.grant_timeout_s = 6), 1);
    e.set_coordinated(true, 0);
    fail_and_wait(&mut e, m, 0);
    e.on_probe(&m.faulty(), m.bad, sb(UUID, 1, 100), 3 * S);
    assert!(actions(&e.on_snapshot(&m.faulty(), &Env::default(), 8 * S)).is_empty());
    let a = e.on_snapshot(&m.faulty(), &Env::default(), 9 * S);
    assert_eq!(actions(&a), vec![m.confirm()]);
}

#[test]
fn the_coordinator_going_away_falls_back_at_once() {
    let m = XVD;
    let mut e = coordinated();
    proven_asking(&mut e, m);
    let a = e.set_coordinated(false, 5 * S);
    let Some(Event::NoTurn {
        jitter, gone: true, ..
    }) = events(&a).first().cloned()
    else {
        panic!("{a:?}")
    };
    assert_eq!(e.next_deadline(), Some(5 * S + jitter));
    // and the next leg uses the jitter without asking
    assert!(!e.coordinated());
}

#[test]
fn without_a_coordinator_or_with_asking_off_the_jitter_stays() {
    for (coordinator, timeout) in [(false, 10), (true, 0)] {
        let m = XVD;
        let mut e = Engine::new(
            cfg(|c| {
                c.throttle.jitter_s = 30;
                c.throttle.grant_timeout_s = timeout;
            }),
            12345,
        );
        e.set_coordinated(coordinator, 0);
        fail_and_wait(&mut e, m, 0);
        let a = e.on_probe(&m.faulty(), m.bad, sb(UUID, 1, 100), 3 * S);
        assert!(
            matches!(events(&a)[..], [Event::Proven { jitter, .. }] if jitter > 0),
            "{a:?}"
        );
        assert_eq!(m.leg(&e).start(), Some(Start::Jitter));
        assert!(e.awaiting_turn().is_empty());
    }
}

/// Granted once in an episode, a leg proven again (its re-add refused, the
/// superblock moved) does not queue again behind others.
#[test]
fn a_leg_granted_in_this_episode_does_not_ask_again() {
    let m = XVD;
    let mut e = coordinated();
    proven_asking(&mut e, m);
    e.on_turn(Turn::Granted, &[m.bad.into()], 4 * S);
    e.on_snapshot(&m.faulty(), &Env::default(), 4 * S);
    confirmed(&mut e, &m.faulty(), m.md, m.bad, sb(UUID, 1, 100), 4 * S);
    // md refuses the sysfs re-add: removed, probed, proven again
    let a = e.on_outcome(&m.readd(), &errno(Errno::EINVAL), 4 * S);
    assert_eq!(actions(&a), vec![m.remove()]);
    let a = e.on_outcome(&m.remove(), &Outcome::Done, 4 * S);
    assert_eq!(actions(&a), vec![probe(m.bad)]);
    let a = e.on_probe(&m.gone(), m.bad, sb(UUID, 1, 100), 5 * S);
    assert!(
        !events(&a)
            .iter()
            .any(|e| matches!(e, Event::AskTurn { .. })),
        "{a:?}"
    );
    assert_eq!(actions(&a), vec![confirm_action(m.md, m.bad, m.good)]);
}

/// A new node (a vbd attached again as xvdd) asks like any returning leg.
#[test]
fn a_new_node_asks_too() {
    let m = XVD;
    let mut e = coordinated();
    e.on_snapshot(&m.healthy(), &Env::default(), 0);
    e.on_snapshot(&m.gone(), &Env::default(), 1);
    e.on_device("xvdd");
    e.on_snapshot(&m.gone(), &Env::default(), 2);
    let a = e.on_probe(&m.gone(), "xvdd", sb(UUID, 1, 100), 3);
    assert!(actions(&a).is_empty(), "{a:?}");
    assert!(events(&a).contains(&Event::AskTurn {
        array: m.md.into(),
        device: "xvdd".into(),
        timeout: 10 * S,
    }));
    assert_eq!(e.awaiting_turn(), vec!["xvdd".to_string()]);
    e.on_turn(Turn::Granted, &["xvdd".into()], 4);
    let a = e.on_snapshot(&m.gone(), &Env::default(), 4);
    assert_eq!(actions(&a), vec![confirm_action(m.md, "xvdd", m.good)]);
}
