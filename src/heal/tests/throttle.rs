//! The throttle: budget, load, and putting limits back.

use super::*;

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
        io_load: IoLoad::Unknown,
        ..Env::default()
    };
    let a = e.on_snapshot(&m.recovering(m.bad), &env, 3 * S);
    assert_eq!(actions(&a), vec![speed(Some(8_000))]);
    // the guest's own I/O is busy: divided
    let env = Env {
        budget_kbps: Some(8_000),
        io_load: IoLoad::Pressure(55.0),
        ..Env::default()
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

/// Without PSI the busy measure is the arrays' own KiB/s: at `busy_kbps` and
/// above the ceiling is divided, below it is not; an unknown load never is.
#[test]
fn without_psi_the_arrays_kbps_decides_busy() {
    let m = NBD;
    let speed = |max: Option<u64>| Action::SetSpeed {
        array: m.md.into(),
        min: None,
        max,
    };
    let mut e = Engine::new(
        cfg(|c| {
            c.throttle.max_kbps = 8_000;
            c.throttle.busy_kbps = 1_024;
        }),
        1,
    );
    let load = |l: IoLoad| Env {
        budget_kbps: None,
        io_load: l,
        ..Env::default()
    };
    e.on_snapshot(&m.healthy(), &Env::default(), 0);
    let a = e.on_snapshot(&m.recovering(m.bad), &load(IoLoad::Unknown), S);
    assert_eq!(actions(&a), vec![speed(Some(8_000))]);
    let a = e.on_snapshot(&m.recovering(m.bad), &load(IoLoad::ArrayKbps(1_023)), 2 * S);
    assert!(actions(&a).is_empty(), "below busy_kbps: {a:?}");
    let a = e.on_snapshot(&m.recovering(m.bad), &load(IoLoad::ArrayKbps(1_024)), 3 * S);
    assert_eq!(actions(&a), vec![speed(Some(2_000))]);
    let a = e.on_snapshot(&m.recovering(m.bad), &load(IoLoad::ArrayKbps(0)), 4 * S);
    assert_eq!(actions(&a), vec![speed(Some(8_000))]);
    // a pressure figure is judged against busy_pressure, not busy_kbps
    let a = e.on_snapshot(
        &m.recovering(m.bad),
        &load(IoLoad::Pressure(1_500.0)),
        5 * S,
    );
    assert_eq!(actions(&a), vec![speed(Some(2_000))]);
    let a = e.on_snapshot(&m.recovering(m.bad), &load(IoLoad::Pressure(19.9)), 6 * S);
    assert_eq!(actions(&a), vec![speed(Some(8_000))]);
}

/// The limits are in md before the add that starts a recovery, not after md is
/// seen copying (a bitmap-scoped copy can be over before the next look); they
/// stay through the moment between the add and md's first look at the spare,
/// and go back once the leg is in sync.
#[test]
fn the_limits_are_written_before_the_add() {
    let m = NBD;
    let speed = |max: Option<u64>| Action::SetSpeed {
        array: m.md.into(),
        min: None,
        max,
    };
    let mut e = Engine::new(cfg(|c| c.throttle.max_kbps = 1_000), 1);
    let t = fail_and_wait(&mut e, m, 0);
    assert_eq!(actions(&t), vec![probe(m.bad)]);
    let a = prove_and_confirm(&mut e, m, &m.faulty(), 3 * S);
    assert_eq!(actions(&a), vec![speed(Some(1_000)), m.readd()], "{a:?}");
    assert_eq!(e.saved_speeds().len(), 1, "on record before the write");
    // md not yet seen recovering, the add under way, then done: kept
    assert!(actions(&e.on_snapshot(&m.faulty(), &Env::default(), 3 * S + 1)).is_empty());
    e.on_outcome(&m.readd(), &Outcome::Done, 3 * S + 2);
    // bound again, in its slot, not in sync, md not copying yet
    let added = raid1(m.md)
        .leg(m.good, 0)
        .member(m.bad, Some(1), &[])
        .snap();
    let a = e.on_snapshot(&added, &Env::default(), 3 * S + 3);
    assert!(
        !actions(&a).contains(&speed(None)),
        "put back too early: {a:?}"
    );
    assert!(actions(&e.on_snapshot(&m.recovering(m.bad), &Env::default(), 4 * S)).is_empty());
    let a = e.on_snapshot(&m.healthy(), &Env::default(), 5 * S);
    assert_eq!(actions(&a), vec![speed(None)]);
}

/// A leg refused at the read before its add starts no recovery: whatever was
/// written for it goes back at the next look.
#[test]
fn a_refused_add_leaves_no_limits_behind() {
    let m = NBD;
    let mut e = Engine::new(cfg(|c| c.throttle.max_kbps = 1_000), 1);
    fail_and_wait(&mut e, m, 0);
    e.on_probe(&m.faulty(), m.bad, sb(UUID, 1, 100), 3 * S);
    // the leg moved under mdguard: another superblock at the read before the add
    let a = confirmed(&mut e, &m.faulty(), m.md, m.bad, sb(OTHER, 1, 100), 3 * S);
    assert!(
        !actions(&a)
            .iter()
            .any(|x| matches!(x, Action::ReAdd { .. } | Action::Add { .. })),
        "{a:?}"
    );
    e.on_snapshot(&m.faulty(), &Env::default(), 4 * S);
    assert!(e.saved_speeds().is_empty(), "{:?}", e.saved_speeds());
}
