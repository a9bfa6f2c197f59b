//! The membership verdict: does a superblock prove a device belongs in this array?

use super::action::SbFacts;
use super::engine::ArrayMem;
use crate::md::identity::same_uuid;
use crate::md::model::{Array, Snapshot};
use crate::md::superblock::Role;
use std::fmt;

/// Why a superblock does not prove membership. Display gives the words for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NoSuperblock,
    /// Neither md nor a member's superblock told the array's UUID.
    UuidUnknown,
    OtherArray {
        found: String,
        expected: String,
    },
    Spare,
    Faulty,
    /// The superblock's role is not the slot the leg held.
    WrongSlot {
        role: u32,
        held: u32,
    },
    BeyondSlots {
        role: u32,
        slots: u32,
    },
    /// Another in-sync leg holds that slot (a stale copy?).
    SlotTaken {
        role: u32,
    },
    /// The superblock has seen more events than the array (split brain?).
    NewerEvents {
        events: u64,
        array: u64,
    },
    /// The superblock records `member`, an in-sync leg the array runs on, as
    /// faulty or gone: the device ran on without it (split brain).
    RanWithout {
        member: String,
        descriptor: u32,
        recorded: Role,
    },
    /// No in-sync leg to check the device's history against.
    NoWitness,
    /// Several running arrays carry this UUID (a cloned image assembled twice):
    /// the superblock cannot say which one the device belongs to.
    SharedUuid {
        arrays: Vec<String>,
    },
    /// Its device UUID is not the one the leg had in the array.
    OtherDevice {
        found: String,
        recorded: String,
    },
    /// It sits on other storage than the leg did ([`crate::md::identity::storage_identity`]).
    OtherStorage {
        found: Option<String>,
        recorded: String,
    },
    /// Its superblock is older than the one recorded while the leg was in the
    /// array: a copy restored from an older snapshot, or another disk with this
    /// array's identity (a clone).
    OlderThanRecorded {
        utime: u64,
        events: u64,
        recorded_utime: u64,
        recorded_events: u64,
    },
    /// Its superblock was written after the leg left the array: another system
    /// used the disk since.
    WrittenAfterLeaving {
        utime: u64,
        left_at: u64,
    },
}

impl Refusal {
    /// A short stable name for reports (the xenstore array JSON, `status --json`).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NoSuperblock => "no-superblock",
            Refusal::UuidUnknown => "uuid-unknown",
            Refusal::OtherArray { .. } => "other-array",
            Refusal::Spare => "spare",
            Refusal::Faulty => "faulty",
            Refusal::WrongSlot { .. } | Refusal::BeyondSlots { .. } => "wrong-slot",
            Refusal::SlotTaken { .. } => "slot-taken",
            Refusal::NewerEvents { .. } | Refusal::RanWithout { .. } => "split-brain",
            Refusal::NoWitness => "no-witness",
            Refusal::SharedUuid { .. } => "shared-uuid",
            Refusal::OtherDevice { .. } => "other-device",
            Refusal::OtherStorage { .. } => "other-storage",
            Refusal::OlderThanRecorded { .. } => "older-history",
            Refusal::WrittenAfterLeaving { .. } => "written-after-leaving",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoSuperblock => f.write_str("it carries no md superblock"),
            Refusal::UuidUnknown => {
                f.write_str("the array's UUID is unknown, so membership cannot be proven")
            }
            Refusal::OtherArray { found, expected } => write!(
                f,
                "its superblock belongs to another array ({found}, not {expected})"
            ),
            Refusal::Spare => f.write_str("its superblock says it is a spare, not a mirror leg"),
            Refusal::Faulty => f.write_str("its superblock marks it faulty"),
            Refusal::WrongSlot { role, held } => write!(
                f,
                "its superblock gives role {role}, but the leg held slot {held}"
            ),
            Refusal::BeyondSlots { role, slots } => write!(
                f,
                "its superblock gives role {role}, beyond the array's {slots} slots"
            ),
            Refusal::SlotTaken { role } => write!(
                f,
                "slot {role} is held by another in-sync leg (a stale copy?)"
            ),
            Refusal::NewerEvents { events, array } => write!(
                f,
                "its event count {events} is newer than the array's {array} (split brain?)"
            ),
            Refusal::RanWithout {
                member,
                descriptor,
                recorded,
            } => write!(
                f,
                "its superblock records {member} (descriptor {descriptor}), a leg the array runs on, as {}: it ran on without that leg (split brain?)",
                if *recorded == Role::Faulty { "faulty" } else { "gone" }
            ),
            Refusal::NoWitness => {
                f.write_str("the array has no in-sync leg to check its history against")
            }
            Refusal::SharedUuid { arrays } => write!(
                f,
                "its UUID is carried by {} running arrays ({}): which one it belongs to cannot be told",
                arrays.len(),
                arrays.join(", ")
            ),
            Refusal::OtherDevice { found, recorded } => write!(
                f,
                "its device UUID {found} is not {recorded}, the leg's while it was in the array: another disk"
            ),
            Refusal::OtherStorage { found, recorded } => write!(
                f,
                "it sits on {}, not on {recorded} where the leg was: another disk",
                found.as_deref().unwrap_or("storage that names no identity")
            ),
            Refusal::OlderThanRecorded {
                utime,
                events,
                recorded_utime,
                recorded_events,
            } => write!(
                f,
                "its superblock (updated {}, events {events}) is older than the one the leg had in the array (updated {}, events {recorded_events}): a copy restored from an older snapshot or another guest's disk; a re-add would leave it without what was written in between, and a full copy would overwrite what it holds, so an admin decides",
                crate::clock::utc(*utime),
                crate::clock::utc(*recorded_utime)
            ),
            Refusal::WrittenAfterLeaving { utime, left_at } => write!(
                f,
                "its superblock was updated at {}, after the leg left the array at {}: another system has used this disk since",
                crate::clock::utc(*utime),
                crate::clock::utc(*left_at)
            ),
        }
    }
}

/// Does this superblock prove the device belongs in this array, in a slot that is
/// free? Err says why not.
pub fn verdict(
    a: &Array,
    mem: &ArrayMem,
    leg_role: Option<u32>,
    sb: Option<&SbFacts>,
) -> Result<(), Refusal> {
    let Some(sb) = sb else {
        return Err(Refusal::NoSuperblock);
    };
    let Some(uuid) = a.uuid.as_deref().or(mem.uuid.as_deref()) else {
        return Err(Refusal::UuidUnknown);
    };
    if !same_uuid(uuid, &sb.uuid) {
        return Err(Refusal::OtherArray {
            found: sb.uuid.clone(),
            expected: uuid.to_string(),
        });
    }
    let role = match sb.role {
        Role::Active(r) => r,
        Role::Faulty => return Err(Refusal::Faulty),
        // a spare, a journal or a reserved role: not a mirror leg
        Role::Spare | Role::Journal | Role::Unknown(_) => return Err(Refusal::Spare),
    };
    if let Some(held) = leg_role {
        if held != role {
            return Err(Refusal::WrongSlot { role, held });
        }
    }
    if let Some(slots) = a.raid_disks {
        if role >= slots {
            return Err(Refusal::BeyondSlots { role, slots });
        }
    }
    if a.members
        .iter()
        .any(|m| m.slot == Some(role) && m.in_sync() && !m.faulty)
    {
        return Err(Refusal::SlotTaken { role });
    }
    Ok(())
}

/// Does the history of a returning leg (`returning`, its proven superblock) fit
/// the array's, as `witness`, the superblock of an in-sync member read at the
/// same moment, records it? mdadm's Assemble applies the same rule to devices it
/// assembles: a device that records the freshest member as failed is from
/// another history.
///
/// - it must not have seen more events than the array;
/// - it must not record any leg the array runs on (in sync) as faulty or gone:
///   a leg that left while the other ran on records it in sync; one that ran on
///   alone (a degraded boot on it, say) recorded the other's failure.
pub fn history_fits(a: &Array, returning: &SbFacts, witness: &SbFacts) -> Result<(), Refusal> {
    if !same_uuid(&returning.uuid, &witness.uuid) {
        return Err(Refusal::OtherArray {
            found: returning.uuid.clone(),
            expected: witness.uuid.clone(),
        });
    }
    if returning.events > witness.events {
        return Err(Refusal::NewerEvents {
            events: returning.events,
            array: witness.events,
        });
    }
    for m in a
        .members
        .iter()
        .filter(|m| m.in_sync() && !m.faulty && m.slot.is_some())
    {
        let Some(d) = m.descriptor else { continue };
        // a descriptor beyond its table: a member added after it left
        if let Some(&recorded) = returning.roles.get(d as usize) {
            if matches!(recorded, Role::Faulty | Role::Spare) {
                return Err(Refusal::RanWithout {
                    member: m.device.clone(),
                    descriptor: d,
                    recorded,
                });
            }
        }
    }
    Ok(())
}

/// Several running arrays carry `uuid` (a cloned image assembled twice): no
/// superblock with it can prove which array a device belongs to.
pub fn shared_uuid(snap: &Snapshot, uuid: &str) -> Option<Refusal> {
    let owners: Vec<String> = snap
        .arrays
        .iter()
        .filter(|a| a.uuid.as_deref().is_some_and(|u| same_uuid(u, uuid)))
        .map(|a| a.name.clone())
        .collect();
    (owners.len() > 1).then_some(Refusal::SharedUuid { arrays: owners })
}

/// The member whose superblock a returning leg's history is checked against:
/// one the array runs on, in sync.
pub fn witness(a: &Array, device: &str) -> Option<String> {
    a.members
        .iter()
        .find(|m| m.device != device && m.in_sync() && !m.faulty && m.slot.is_some())
        .map(|m| m.device.clone())
}
