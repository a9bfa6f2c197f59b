//! The series of one array, the same family in the guest (`mdguard status
//! --format=prometheus`) and in dom0 (`mdguard host metrics`, with the guest's
//! labels in front). Pure.
//!
//! Both sides start from an [`ArraySummary`]: the guest builds it from md and
//! the agent's view ([`crate::report::agent_state::ArrayView::summary`], the
//! one xenstore publishes), dom0 from the array JSON a guest published
//! ([`from_json`]). What only the guest can read (md's array state, its size
//! and how much a sync has done) comes as [`MdExtra`].
//!
//! Names follow node_exporter's md collector where they map, with the same
//! meaning, under `mdguard_md_*`: as `node_md_*` in a textfile they would
//! repeat the series node_exporter's own md collector exports, and
//! node_exporter drops a repeat (seen with 1.5: the collector's value kept,
//! the textfile's dropped, an error logged at every scrape).

use super::exposition::Families;
use crate::md::model::{Array, Health, MemberCondition, SyncAction};
use crate::report::host::guest::{FLAG_FLAPPING, FLAG_STALLED};
use crate::report::schema::{reported_health, ArrayJson, ArraySummary};
use crate::text::strip_controls;

/// Longest label value taken from what a guest published (device names,
/// states, reasons): the agent writes at most 64 characters there; a hostile
/// guest more, which is cut.
pub const LABEL_MAX: usize = 64;

pub const ARRAY_HEALTH: &str = "mdguard_array_health";
pub const MD_DISKS: &str = "mdguard_md_disks";
pub const MD_DISKS_REQUIRED: &str = "mdguard_md_disks_required";
pub const MD_STATE: &str = "mdguard_md_state";
pub const MD_BLOCKS: &str = "mdguard_md_blocks";
pub const MD_BLOCKS_SYNCED: &str = "mdguard_md_blocks_synced";
pub const SYNC_COMPLETED: &str = "mdguard_sync_completed_ratio";
pub const LEG_STATE: &str = "mdguard_leg_state";
pub const LEG_REFUSED: &str = "mdguard_leg_refused";
pub const ARRAY_FLAPPING: &str = "mdguard_array_flapping";
pub const ARRAY_STALLED: &str = "mdguard_array_stalled";

/// node_exporter's `node_md_state` words, in its order.
pub const MD_STATES: [&str; 5] = ["active", "inactive", "recovering", "resync", "check"];

/// What only the guest reads from md itself.
#[derive(Debug, Clone, PartialEq)]
pub struct MdExtra {
    /// Slots working, as md counts them (`raid_disks - degraded`, the `m` of
    /// mdstat's `[n/m]`; node_exporter's active disks), when md says.
    pub active: Option<u32>,
    /// One of [`MD_STATES`], as node_exporter derives it from /proc/mdstat.
    pub state: &'static str,
    /// Size in 1 KiB blocks (mdstat's `N blocks`).
    pub blocks: Option<u64>,
    /// Blocks a running sync has done; all of them when none runs; 0 while
    /// one is delayed or pending (node_exporter's `node_md_blocks_synced`).
    pub blocks_synced: Option<u64>,
}

impl MdExtra {
    pub fn of(a: &Array) -> MdExtra {
        let inactive = matches!(a.array_state.as_deref(), Some("inactive" | "clear"));
        // mdstat's progress line says `recovery`, `resync` (also for a
        // repair), `check` or `reshape`; node_exporter calls the array
        // recovering, resync or check by it, and active otherwise
        let state = match (&a.sync, inactive) {
            (_, true) => "inactive",
            (Some(s), _) => match s.action {
                SyncAction::Recover => "recovering",
                SyncAction::Resync | SyncAction::Repair => "resync",
                SyncAction::Check => "check",
                SyncAction::Reshape => "active",
            },
            (None, _) => "active",
        };
        let blocks_synced = match &a.sync {
            None => a.size_kb,
            Some(s) if s.state != crate::md::model::SyncState::Running => Some(0),
            // sectors of 512 bytes; the sync covers one leg, md's blocks
            // count the array: for RAID1 the same
            Some(s) => s.done.map(|d| d / 2).or_else(|| {
                let (f, size) = (s.fraction()?, a.size_kb?);
                Some((f * size as f64) as u64)
            }),
        };
        let missing = a.degraded.or_else(|| {
            a.slots_up
                .as_ref()
                .map(|s| s.iter().filter(|up| !**up).count() as u32)
        });
        MdExtra {
            active: a.raid_disks.zip(missing).map(|(n, m)| n.saturating_sub(m)),
            state,
            blocks: a.size_kb,
            blocks_synced,
        }
    }
}

/// An array as dom0 read it from a guest's JSON. The flags the agent writes
/// become `flapping`/`stalled`, and a flagged array reads at least `degraded`
/// whatever its `health` says ([`reported_health`], as `host status` judges).
pub fn from_json(name: &str, j: &ArrayJson) -> ArraySummary {
    let flapping = j.flags.iter().any(|f| f == FLAG_FLAPPING);
    let stalled = j.flags.iter().any(|f| f == FLAG_STALLED);
    ArraySummary {
        name: name.to_string(),
        health: reported_health(j.health, flapping, stalled),
        level: j.level.clone(),
        raid_disks: j.disks,
        in_sync: j.in_sync,
        members: j.members.clone(),
        sync: j.sync.clone(),
        flapping,
        stalled,
        refused: j.refused.clone(),
    }
}

/// A value a guest published, made fit for a label: no control characters, at
/// most [`LABEL_MAX`] characters (the format's own escapes do the rest).
pub fn label_text(s: &str) -> String {
    strip_controls(s, LABEL_MAX)
}

/// 1.0 for true.
pub fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// Every series of one array, each with `labels` (the guest's, in dom0) in
/// front of its own.
pub fn push_array(
    f: &mut Families,
    labels: &[(&str, &str)],
    a: &ArraySummary,
    md: Option<&MdExtra>,
) {
    let with = |extra: &[(&'static str, &str)]| -> Vec<(String, String)> {
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([("array".to_string(), a.name.clone())])
            .chain(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .collect()
    };
    let mut push =
        |name: &'static str, help: &'static str, extra: &[(&'static str, &str)], v: f64| {
            let l = with(extra);
            let refs: Vec<(&str, &str)> = l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            f.push(name, help, &refs, v);
        };
    for h in Health::ALL {
        push(
            ARRAY_HEALTH,
            "The array's health as mdguard reports it (1 for the current one): ok, recovering, unknown, degraded (also while stalled or flapping), failed.",
            &[("health", h.as_str())],
            flag(a.health == h),
        );
    }
    // the member words the agent publishes ([`Member::condition`])
    let count =
        |c: MemberCondition| a.members.iter().filter(|(_, s)| s == c.as_str()).count() as f64;
    for (state, n) in [
        (
            "active",
            f64::from(md.and_then(|m| m.active).unwrap_or(a.in_sync)),
        ),
        ("failed", count(MemberCondition::Faulty)),
        ("spare", count(MemberCondition::Spare)),
    ] {
        push(
            MD_DISKS,
            "Legs of the array by state (node_md_disks): active (in sync in a slot), failed (faulty), spare (no slot).",
            &[("state", state)],
            n,
        );
    }
    if a.raid_disks > 0 {
        push(
            MD_DISKS_REQUIRED,
            "Slots of the array (raid_disks; node_md_disks_required).",
            &[],
            f64::from(a.raid_disks),
        );
    }
    if let Some(md) = md {
        for s in MD_STATES {
            push(
                MD_STATE,
                "The array's state as node_md_state tells it (1 for the current one): active, inactive, recovering, resync, check.",
                &[("state", s)],
                flag(md.state == s),
            );
        }
        if let Some(b) = md.blocks {
            push(
                MD_BLOCKS,
                "Size of the array in 1 KiB blocks (node_md_blocks).",
                &[],
                b as f64,
            );
        }
        if let Some(b) = md.blocks_synced {
            push(
                MD_BLOCKS_SYNCED,
                "Blocks a running sync has done, all of them when none runs (node_md_blocks_synced).",
                &[],
                b as f64,
            );
        }
    }
    if let Some((action, pct)) = &a.sync {
        let pct = if pct.is_finite() {
            pct.clamp(0.0, 100.0)
        } else {
            0.0
        };
        let action = label_text(action);
        push(
            SYNC_COMPLETED,
            "How much of a running resync, recovery, check, repair or reshape is done, 0 to 1 (present only while one runs).",
            &[("action", &action)],
            (f64::from(pct) / 100.0 * 1000.0).round() / 1000.0,
        );
    }
    for (dev, state) in &a.members {
        let (dev, state) = (label_text(dev), label_text(state));
        push(
            LEG_STATE,
            "Each leg with its state (always 1): in_sync, rebuilding, spare, faulty, up, unknown as md lists it, or the phase of a leg mdguard is bringing back that md no longer lists (failed, reconnecting, waiting, ...).",
            &[("device", &dev), ("state", &state)],
            1.0,
        );
    }
    for (dev, why) in &a.refused {
        let (dev, why) = (label_text(dev), label_text(why));
        push(
            LEG_REFUSED,
            "Each leg mdguard will not add until an admin acts (always 1), with the reason's code (split-brain, older-history, other-array, ...).",
            &[("device", &dev), ("reason", &why)],
            1.0,
        );
    }
    push(
        ARRAY_FLAPPING,
        "1 while a leg of the array keeps failing soon after each re-add and mdguard stopped re-adding it.",
        &[],
        flag(a.flapping),
    );
    push(
        ARRAY_STALLED,
        "1 while the array's writes hang (write-pending past heal.stall_timeout_s).",
        &[],
        flag(a.stalled),
    );
}
