//! The model of one md array as mdguard sees it: merged from sysfs (the authority
//! where it exists) and /proc/mdstat (which fills the rest).

use serde::{Deserialize, Serialize};
use std::fmt;

/// Derived health of one array, ordered from best to worst so the worst of a set is
/// its `max()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Every slot is in sync; nothing runs but check/repair.
    Ok,
    /// A recovery, resync or reshape is running (or queued).
    Recovering,
    /// The state could not be read or makes no sense.
    Unknown,
    /// A slot is empty and no recovery is running.
    Degraded,
    /// Not enough legs to run, broken, or inactive.
    Failed,
}

impl Health {
    /// Every health, best first.
    pub const ALL: [Health; 5] = [
        Health::Ok,
        Health::Recovering,
        Health::Unknown,
        Health::Degraded,
        Health::Failed,
    ];

    /// The health a word names (exactly as [`Health::as_str`] spells it).
    pub fn from_word(w: &str) -> Option<Health> {
        Health::ALL.into_iter().find(|h| h.as_str() == w)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Recovering => "recovering",
            Health::Unknown => "unknown",
            Health::Degraded => "degraded",
            Health::Failed => "failed",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One member (component device) of an array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// Kernel block device name, e.g. `nbd0p1`.
    pub device: String,
    /// Slot (role) in the array; `None` for spares, faulty and journal members.
    pub slot: Option<u32>,
    /// Descriptor number from mdstat's `name[N]` (not the slot).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub descriptor: Option<u32>,
    /// Kernel state words (`in_sync`, `faulty`, `spare`, `write_mostly`, ...).
    pub states: Vec<String>,
    pub faulty: bool,
    /// Corrected read errors (`dev-X/errors`), when sysfs has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<u64>,
    /// Sectors written to its block device so far (what a recovery copied
    /// shows there); not part of the status JSON.
    #[serde(skip)]
    pub written_sectors: Option<u64>,
}

impl Member {
    /// A member with the kernel's state words; faulty when they say so. No
    /// descriptor number and no error count yet.
    pub fn new(device: &str, slot: Option<u32>, states: &[&str]) -> Member {
        Member {
            device: device.to_string(),
            slot,
            descriptor: None,
            states: states.iter().map(|s| s.to_string()).collect(),
            faulty: states.contains(&"faulty"),
            errors: None,
            written_sectors: None,
        }
    }

    pub fn has_state(&self, s: &str) -> bool {
        self.states.iter().any(|x| x == s)
    }
    pub fn in_sync(&self) -> bool {
        self.has_state("in_sync")
    }
    pub fn spare(&self) -> bool {
        self.has_state("spare")
    }

    /// What this member is doing, in one word. The one definition that `mdguard
    /// status` and the xenstore report both use.
    pub fn condition(&self) -> MemberCondition {
        if self.faulty {
            MemberCondition::Faulty
        } else if self.in_sync() {
            MemberCondition::InSync
        } else if self.slot.is_some() {
            // md gives a slot to the member a recovery is filling (sysfs shows it
            // as `spare` with a slot until it is in sync)
            MemberCondition::Rebuilding
        } else if self.spare() {
            MemberCondition::Spare
        } else if self.states.is_empty() {
            MemberCondition::Up
        } else {
            MemberCondition::Unknown
        }
    }
}

/// A member's condition; see [`Member::condition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberCondition {
    Faulty,
    InSync,
    /// Holds a slot and is not in sync: a recovery is (or will be) filling it.
    Rebuilding,
    /// No slot: waits to be used.
    Spare,
    /// Listed by /proc/mdstat with no flag, and sysfs says nothing more.
    Up,
    /// sysfs shows states none of the above explain.
    Unknown,
}

impl MemberCondition {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberCondition::Faulty => "faulty",
            MemberCondition::InSync => "in_sync",
            MemberCondition::Rebuilding => "rebuilding",
            MemberCondition::Spare => "spare",
            MemberCondition::Up => "up",
            MemberCondition::Unknown => "unknown",
        }
    }
}

/// What the sync thread is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncAction {
    Resync,
    Recover,
    Check,
    Repair,
    Reshape,
}

impl SyncAction {
    pub fn parse(s: &str) -> Option<SyncAction> {
        Some(match s {
            "resync" => SyncAction::Resync,
            "recover" | "recovery" => SyncAction::Recover,
            "check" => SyncAction::Check,
            "repair" => SyncAction::Repair,
            "reshape" => SyncAction::Reshape,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            SyncAction::Resync => "resync",
            SyncAction::Recover => "recover",
            SyncAction::Check => "check",
            SyncAction::Repair => "repair",
            SyncAction::Reshape => "reshape",
        }
    }
    /// Does this action restore redundancy (as opposed to verifying it)?
    pub fn restores(self) -> bool {
        matches!(
            self,
            SyncAction::Resync | SyncAction::Recover | SyncAction::Reshape
        )
    }
}

/// Whether the sync is running or waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncState {
    Running,
    /// `resync=DELAYED`: waiting for another array sharing a device.
    Delayed,
    /// `resync=PENDING`: array is read-only/auto-read-only; starts on first write.
    Pending,
    /// `*=REMOTE`: another cluster node does it.
    Remote,
}

/// A running (or queued) sync operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sync {
    pub action: SyncAction,
    pub state: SyncState,
    /// Sectors done, from sysfs `sync_completed` (or mdstat's KiB count x2).
    pub done: Option<u64>,
    /// Sectors to do.
    pub total: Option<u64>,
    /// Percent as the kernel printed it in mdstat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// Current speed in KiB/s.
    pub speed_kbps: Option<u64>,
    /// mdstat's own estimate of the minutes left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_min: Option<f64>,
}

impl Sync {
    /// Fraction done in [0, 1], from counts when known, else the printed percent.
    pub fn fraction(&self) -> Option<f64> {
        match (self.done, self.total) {
            (Some(d), Some(t)) if t > 0 => Some((d as f64 / t as f64).clamp(0.0, 1.0)),
            _ => self.percent.map(|p| (p / 100.0).clamp(0.0, 1.0)),
        }
    }

    /// Seconds left at the current speed, if it can be told.
    pub fn eta_secs(&self) -> Option<u64> {
        if let (Some(d), Some(t), Some(v)) = (self.done, self.total, self.speed_kbps) {
            if v > 0 && t >= d {
                // sectors are 512 bytes, speed is KiB/s
                return Some((t - d) / 2 / v);
            }
        }
        self.finish_min.map(|m| (m * 60.0).round() as u64)
    }
}

/// A sync speed limit as sysfs reports it: `N (local)` or `N (system)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SpeedLimit {
    pub kbps: u64,
    /// True when the array follows the system-wide value.
    pub system: bool,
}

/// Write-intent bitmap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Bitmap {
    /// Pages in use / total from mdstat (`bitmap: u/t pages`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pages_used: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pages_total: Option<u64>,
    /// Chunk size in KiB.
    pub chunk_kb: Option<u64>,
    /// External bitmap file, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// sysfs `bitmap/location` (`+8`, `file`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// One md array.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Array {
    pub name: String,
    /// Personality, e.g. `raid1`; `None` for an inactive array with no personality.
    pub level: Option<String>,
    /// sysfs `array_state`, or derived from mdstat (`active`, `inactive`, `broken`,
    /// `read-only`, `read-auto`).
    pub array_state: Option<String>,
    pub raid_disks: Option<u32>,
    /// Number of missing slots.
    pub degraded: Option<u32>,
    /// Array size in KiB (mdstat's `N blocks`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_kb: Option<u64>,
    /// `1.2`, `0.90`, `external:imsm`, `none` (non-persistent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    /// Array UUID as sysfs prints it (`md/uuid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    pub members: Vec<Member>,
    /// Per-slot in-sync pattern from mdstat (`UU_`), true = in sync.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slots_up: Option<Vec<bool>>,
    pub sync: Option<Sync>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_speed_min: Option<SpeedLimit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_speed_max: Option<SpeedLimit>,
    pub bitmap: Option<Bitmap>,
    pub health: Health,
    /// Why the health is what it is, in a few words (for humans and logs).
    pub reason: String,
}

impl Array {
    /// An array with only a name; every field unknown.
    pub fn named(name: &str) -> Array {
        Array {
            name: name.to_string(),
            level: None,
            array_state: None,
            raid_disks: None,
            degraded: None,
            size_kb: None,
            metadata: None,
            uuid: None,
            members: Vec::new(),
            slots_up: None,
            sync: None,
            sync_speed_min: None,
            sync_speed_max: None,
            bitmap: None,
            health: Health::Unknown,
            reason: String::new(),
        }
    }

    /// Members holding a slot and in sync.
    pub fn in_sync_count(&self) -> u32 {
        self.members
            .iter()
            .filter(|m| m.slot.is_some() && m.in_sync() && !m.faulty)
            .count() as u32
    }

    /// Recompute `health` and `reason` from the other fields.
    pub fn derive_health(&mut self) {
        let (h, r) = derive_health(self);
        self.health = h;
        self.reason = r;
    }
}

/// Minimum working slots for a level to run, given its raid_disks.
fn min_working(level: &str, raid_disks: u32) -> Option<u32> {
    Some(match level {
        "raid1" | "multipath" => 1,
        "raid4" | "raid5" => raid_disks.saturating_sub(1),
        "raid6" => raid_disks.saturating_sub(2),
        "raid0" | "linear" => raid_disks,
        // raid10 depends on layout; half is the common near=2 bound.
        "raid10" => raid_disks.div_ceil(2),
        _ => return None,
    })
}

fn derive_health(a: &Array) -> (Health, String) {
    let state = a.array_state.as_deref().unwrap_or("");
    // An external-metadata container (imsm, ddf) is always inactive: the arrays
    // inside it are separate md devices with their own health.
    let container_meta = a
        .metadata
        .as_deref()
        .and_then(|m| m.strip_prefix("external:"))
        .is_some_and(|t| !t.contains('/'));
    if a.level.as_deref() == Some("container") || (container_meta && a.level.is_none()) {
        return (Health::Ok, "metadata container".into());
    }
    match state {
        "inactive" | "clear" => return (Health::Failed, format!("array is {state}")),
        "broken" => return (Health::Failed, "array is broken (a member is gone)".into()),
        _ => {}
    }
    let Some(level) = a.level.as_deref() else {
        return (Health::Unknown, "personality (level) unknown".into());
    };
    let raid_disks = a.raid_disks;
    // Missing slots: sysfs `degraded` is the authority; else mdstat's [UU_] pattern.
    let missing = a.degraded.or_else(|| {
        a.slots_up
            .as_ref()
            .map(|s| s.iter().filter(|u| !**u).count() as u32)
    });
    if let (Some(rd), Some(missing)) = (raid_disks, missing) {
        if let Some(min) = min_working(level, rd) {
            if rd.saturating_sub(missing) < min {
                return (
                    Health::Failed,
                    format!(
                        "{} of {} legs working, needs {}",
                        rd - missing.min(rd),
                        rd,
                        min
                    ),
                );
            }
        }
    }
    if let Some(s) = &a.sync {
        if s.action.restores() {
            let what = match s.state {
                SyncState::Running => match s.fraction() {
                    Some(f) => format!("{} {:.1}%", s.action.as_str(), f * 100.0),
                    None => s.action.as_str().to_string(),
                },
                SyncState::Delayed => format!("{} delayed", s.action.as_str()),
                SyncState::Pending => format!("{} pending", s.action.as_str()),
                SyncState::Remote => format!("{} on a remote node", s.action.as_str()),
            };
            return (Health::Recovering, what);
        }
    }
    match missing {
        Some(0) => {}
        Some(n) => {
            let faulty: Vec<&str> = a
                .members
                .iter()
                .filter(|m| m.faulty)
                .map(|m| m.device.as_str())
                .collect();
            let mut r = format!("{n} slot{} empty", if n == 1 { "" } else { "s" });
            if !faulty.is_empty() {
                r.push_str(&format!(", faulty: {}", faulty.join(" ")));
            }
            return (Health::Degraded, r);
        }
        None => {
            // raid0/linear have no redundancy and mdstat prints no [n/m]
            if matches!(level, "raid0" | "linear") {
                return (Health::Ok, "no redundancy to lose".into());
            }
            return (Health::Unknown, "slot state unknown".into());
        }
    }
    if a.members.iter().any(|m| m.faulty) {
        // All slots full but a faulty member is still bound (kernel keeps it until
        // removed): redundancy is intact, but it wants attention.
        return (Health::Ok, "in sync; a faulty spare is still bound".into());
    }
    match &a.sync {
        Some(s) => (
            Health::Ok,
            format!("in sync; {} running", s.action.as_str()),
        ),
        None => (Health::Ok, "in sync".into()),
    }
}

/// Every array the observer could read, plus what it could not read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub arrays: Vec<Array>,
    /// Problems met while reading: each names the file and what was wrong.
    pub problems: Vec<String>,
}

impl Snapshot {
    pub fn worst(&self) -> Option<Health> {
        self.arrays.iter().map(|a| a.health).max()
    }
}
