//! New nodes: a block device that appears is matched to an array by its superblock, never by name.

use super::*;

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
            confirm_action("md3", "xvdd", "xvdb")
        ]
    );
    let a = confirmed(&mut e, &m.gone(), "md3", "xvdd", sb(UUID, 1, 100), 3);
    assert_eq!(a, vec![add_in_slot("md3", "xvdd", 1)]);
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
        vec![
            removal("md3", "xvdc"),
            confirm_action("md3", "xvdd", "xvdb")
        ]
    );
    assert!(
        events(&a).contains(&Event::MakingRoom {
            array: "md3".into(),
            faulty: "xvdc".into(),
            device: "xvdd".into(),
        }),
        "{a:?}"
    );
    let a = confirmed(&mut e, &with_faulty(), "md3", "xvdd", sb(UUID, 1, 100), 2);
    assert_eq!(a, vec![add_in_slot("md3", "xvdd", 1)]);
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
