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
/// (EBUSY), so that member (and no other) is removed first, then the new one
/// added: both once the new node has passed the read before the add.
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
        vec![confirm_action("md3", "xvdd", "xvdb")],
        "nothing removed before the read before the add"
    );
    let a = confirmed(&mut e, &with_faulty(), "md3", "xvdd", sb(UUID, 1, 100), 2);
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
    assert!(
        e.legs_of("md3").all(|l| l.device != "xvdc"),
        "xvdc forgotten"
    );
}

/// A new node carrying the failed leg's superblock but sitting on other storage
/// (a copy of the leg's disk on another iSCSI target) is refused at the read
/// before the add: the faulty member stays in md and mdguard keeps its leg, so
/// when the leg answers again on its own node it is re-added there.
#[test]
fn a_refused_new_node_leaves_the_faulty_member_and_its_leg() {
    let healthy = || raid1("md0").leg("sda", 0).leg("sdb", 1).snap();
    let left = || {
        raid1("md0")
            .leg("sda", 0)
            .faulty_leg_numbered("sdb", 1)
            .snap()
    };
    let on = |storage: &str| SbFacts {
        storage: Some(storage.into()),
        ..facts(UUID, 1, 100)
    };
    let mut e = engine();
    e.on_snapshot(&healthy(), &Env::default(), 0);
    e.on_record(
        "md0",
        "sdb",
        &ProbeOutcome::Readable {
            sb: Some(on("scsi naa.leg1")),
        },
    );
    e.on_snapshot(&left(), &Env::default(), S);
    e.on_device("sdc");
    let a = e.on_snapshot(&left(), &Env::default(), S + 1);
    assert!(actions(&a).contains(&probe("sdc")), "{a:?}");
    let copy = ProbeOutcome::Readable {
        sb: Some(on("scsi naa.copy")),
    };
    let a = e.on_probe(&left(), "sdc", copy.clone(), S + 2);
    assert_eq!(actions(&a), vec![confirm_action("md0", "sdc", "sda")]);
    let a = confirmed(&mut e, &left(), "md0", "sdc", copy, S + 2);
    assert!(
        actions(&a).is_empty(),
        "nothing removed, nothing added: {a:?}"
    );
    assert!(
        matches!(
            events(&a).as_slice(),
            [Event::Refused {
                reason: Refusal::OtherStorage { .. },
                ..
            }]
        ),
        "{a:?}"
    );
    // the leg answers again on its own node: proven and re-added there
    let leg = e
        .legs_of("md0")
        .find(|l| l.device == "sdb")
        .expect("sdb tracked");
    assert_eq!(leg.phase(), Phase::Failed);
    let t = e.next_deadline().expect("sdb's probe is due");
    let a = e.on_snapshot(&left(), &Env::default(), t);
    assert!(actions(&a).contains(&probe("sdb")), "{a:?}");
    let back = ProbeOutcome::Readable {
        sb: Some(on("scsi naa.leg1")),
    };
    let a = e.on_probe(&left(), "sdb", back.clone(), t + 1);
    assert_eq!(actions(&a), vec![confirm_action("md0", "sdb", "sda")]);
    let a = confirmed(&mut e, &left(), "md0", "sdb", back, t + 1);
    assert_eq!(
        actions(&a),
        vec![Action::ReAdd {
            array: "md0".into(),
            device: "sdb".into()
        }]
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
    // a foreign disk appearing on the legs' transport: probed, never added,
    // logged once
    e.on_device("nbd7");
    let a = e.on_snapshot(&m.faulty(), &Env::default(), 1001 * S);
    assert!(actions(&a).contains(&probe("nbd7")));
    let a = e.on_probe(&m.faulty(), "nbd7", sb(OTHER, 0, 5), 1001 * S);
    assert_eq!(
        a,
        vec![Action::Log(Event::ForeignDevice {
            device: "nbd7".into(),
            uuid: OTHER.into()
        })]
    );
    let a = e.on_probe(&m.faulty(), "nbd7", sb(OTHER, 0, 5), 1002 * S);
    assert!(a.is_empty(), "logged once: {a:?}");
}

/// A local copy of a leg (a loop device on a backup image, a dm or LVM snapshot)
/// carries the leg's very superblock: it is never even probed. Nor is a device
/// on a transport none of the degraded array's legs use. Each is said once.
#[test]
fn local_copies_and_other_transports_are_never_probed() {
    let m = XVD;
    let mut e = engine();
    e.on_snapshot(&m.healthy(), &Env::default(), 0);
    e.on_snapshot(&m.gone(), &Env::default(), 1);
    for dev in ["loop0", "dm-2", "zram0", "sdb", "xvdd"] {
        e.on_device(dev);
    }
    let a = e.on_snapshot(&m.gone(), &Env::default(), 2);
    let probed: Vec<Action> = actions(&a)
        .into_iter()
        .filter(|x| matches!(x, Action::Probe { .. }))
        .collect();
    assert_eq!(probed, vec![probe("xvdd")], "{a:?}");
    let said = |dev: &str, why: NotALeg| {
        events(&a).contains(&Event::NotACandidate {
            device: dev.into(),
            why,
        })
    };
    for dev in ["loop0", "dm-2", "zram0"] {
        assert!(said(dev, NotALeg::LocalCopy), "{dev}: {a:?}");
    }
    assert!(said("sdb", NotALeg::OtherTransport), "{a:?}");
    // seen again: not probed, not said again
    e.on_device("loop0");
    let a = e.on_snapshot(&m.gone(), &Env::default(), 3);
    assert!(a.is_empty(), "{a:?}");
}

/// Legs on partitions (md0 = nbd0p1 + nbd1p1, md1 = nbd0p2 + nbd1p2) with 0.90
/// superblocks, which sit at the end of a partition: the last partition's is
/// also where the whole disk's would be. nbd1 reconnected shows up as a new
/// device carrying md1's superblock; it must never be added in place of nbd1p2.
#[test]
fn a_whole_disk_whose_partitions_are_legs_is_never_probed() {
    let arr = |name: &str, p: u32| {
        raid1(name)
            .leg(&format!("nbd0p{p}"), 0)
            .faulty_leg(&format!("nbd1p{p}"))
            .snap()
            .arrays
            .remove(0)
    };
    let both = || snap(vec![arr("md0", 1), arr("md1", 2)]);
    let mut e = engine();
    e.on_snapshot(&both(), &Env::default(), 0);
    for dev in ["nbd1", "nbd1p1", "nbd1p2"] {
        e.on_device(dev);
    }
    let a = e.on_snapshot(&both(), &Env::default(), 1);
    assert!(!actions(&a).contains(&probe("nbd1")), "{a:?}");
    assert!(
        events(&a).contains(&Event::NotACandidate {
            device: "nbd1".into(),
            why: NotALeg::PartitionedDisk,
        }),
        "{a:?}"
    );
}

/// Two running arrays with one UUID (a cloned image whose arrays were both
/// assembled): a device carrying that UUID cannot be told to belong to either,
/// whether it is a new node or a leg that failed.
#[test]
fn a_uuid_two_running_arrays_share_proves_nothing() {
    let twins = || {
        snap(vec![
            raid1("md3").leg("xvdb", 0).faulty_leg("xvdc").build(),
            raid1("md4").leg("xvde", 0).leg("xvdf", 1).build(),
        ])
    };
    let mut e = engine();
    e.on_snapshot(&twins(), &Env::default(), 0);
    e.on_device("xvdd");
    let a = e.on_snapshot(&twins(), &Env::default(), 1);
    assert!(actions(&a).contains(&probe("xvdd")), "{a:?}");
    let shared = Refusal::SharedUuid {
        arrays: vec!["md3".into(), "md4".into()],
    };
    let a = e.on_probe(&twins(), "xvdd", sb(UUID, 1, 100), 1);
    assert_eq!(
        a,
        vec![Action::Log(Event::CandidateRefused {
            array: "md3 or md4".into(),
            device: "xvdd".into(),
            reason: shared.clone(),
        })]
    );
    // the leg that failed, on its own node
    let t = e.next_deadline().unwrap();
    let a = e.on_snapshot(&twins(), &Env::default(), t);
    assert!(actions(&a).contains(&probe("xvdc")), "{a:?}");
    let a = e.on_probe(&twins(), "xvdc", sb(UUID, 1, 100), t);
    assert_eq!(
        events(&a),
        vec![Event::Refused {
            array: "md3".into(),
            device: "xvdc".into(),
            reason: shared,
        }]
    );
    assert!(actions(&a).is_empty());
}
