//! Reconnect coordination: remove, reconnect, probe, add; shared disks; the only in-sync leg.

use super::*;

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
    let a = prove_and_confirm(&mut e, m, &m.gone(), t);
    assert_eq!(actions(&a), vec![add_in_slot(m.md, m.bad, 1)]);
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
    assert!(no_records(&e.on_snapshot(&s, &Env::default(), t)).is_empty());
    let a = e.on_snapshot(&s, &Env::default(), 3 * S + 60 * S);
    assert_eq!(no_records(&a), vec![blocked]);
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
