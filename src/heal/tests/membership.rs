//! The membership verdict: what a superblock must prove.

use super::*;

#[test]
fn no_superblock_wrong_role_stale_copy_or_newer_events_refused() {
    let arr = raid1("md3").leg("xvdb", 0).faulty_leg("xvdc").build();
    let mem = ArrayMem::default();
    let f = |uuid: &str, role: Role, events: u64| SbFacts {
        role,
        dev_number: 1,
        ..facts(uuid, 1, events)
    };
    let v = |held: Option<u32>, sb: &SbFacts| verdict(&arr, &mem, held, Some(sb));
    assert_eq!(
        verdict(&arr, &mem, Some(1), None),
        Err(Refusal::NoSuperblock)
    );
    assert_eq!(
        v(Some(1), &f(UUID, Role::Active(0), 90)),
        Err(Refusal::WrongSlot { role: 0, held: 1 })
    );
    assert_eq!(
        v(None, &f(UUID, Role::Active(0), 90)),
        Err(Refusal::SlotTaken { role: 0 })
    );
    assert_eq!(
        v(None, &f(UUID, Role::Active(5), 90)),
        Err(Refusal::BeyondSlots { role: 5, slots: 2 })
    );
    assert_eq!(v(None, &f(UUID, Role::Spare, 90)), Err(Refusal::Spare));
    assert_eq!(v(None, &f(UUID, Role::Faulty, 90)), Err(Refusal::Faulty));
    assert_eq!(v(Some(1), &f(UUID, Role::Active(1), 99)), Ok(()));
    // mdadm's colon form of the same UUID is the same array
    assert_eq!(
        v(
            Some(1),
            &f("0fbf5f2c:add243c2:bd78a4be:3ab709ef", Role::Active(1), 99)
        ),
        Ok(())
    );
    // no UUID from md nor from a member's superblock: nothing can be proven
    let mut anon = arr.clone();
    anon.uuid = None;
    assert_eq!(
        verdict(
            &anon,
            &ArrayMem::default(),
            Some(1),
            Some(&f(UUID, Role::Active(1), 1))
        ),
        Err(Refusal::UuidUnknown)
    );
}
