//! The membership verdict: does a superblock prove a device belongs in this array?

use super::action::{SbFacts, SbRole};
use super::engine::ArrayMem;
use crate::md::identity::same_uuid;
use crate::md::model::Array;

/// Does this superblock prove the device belongs in this array, in a slot that is
/// free? Err says why not, in words for the log.
pub fn verdict(
    a: &Array,
    mem: &ArrayMem,
    leg_role: Option<u32>,
    sb: Option<&SbFacts>,
) -> Result<(), String> {
    let Some(sb) = sb else {
        return Err("it carries no md superblock".into());
    };
    let Some(uuid) = a.uuid.as_deref().or(mem.uuid.as_deref()) else {
        return Err("the array's UUID is unknown, so membership cannot be proven".into());
    };
    if !same_uuid(uuid, &sb.uuid) {
        return Err(format!(
            "its superblock belongs to another array ({}, not {uuid})",
            sb.uuid
        ));
    }
    let role = match sb.role {
        SbRole::Active(r) => r,
        SbRole::Spare => return Err("its superblock says it is a spare, not a mirror leg".into()),
        SbRole::Faulty => return Err("its superblock marks it faulty".into()),
    };
    if let Some(r) = leg_role {
        if r != role {
            return Err(format!(
                "its superblock gives role {role}, but the leg held slot {r}"
            ));
        }
    }
    if let Some(rd) = a.raid_disks {
        if role >= rd {
            return Err(format!(
                "its superblock gives role {role}, beyond the array's {rd} slots"
            ));
        }
    }
    if a.members
        .iter()
        .any(|m| m.slot == Some(role) && m.in_sync() && !m.faulty)
    {
        return Err(format!(
            "slot {role} is held by another in-sync leg (a stale copy?)"
        ));
    }
    if let Some(e) = mem.events {
        if sb.events > e {
            return Err(format!(
                "its event count {} is newer than the array's {e} (split brain?)",
                sb.events
            ));
        }
    }
    Ok(())
}
