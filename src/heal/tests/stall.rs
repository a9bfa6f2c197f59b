//! Stalled writes.

use super::*;

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
        no_records(&a),
        vec![Action::Log(Event::WritesFlow { array: m.md.into() })]
    );
}
