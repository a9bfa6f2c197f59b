//! Observe: read /proc/mdstat and sysfs into one [`Snapshot`].
//!
//! sysfs is the authority where it exists; mdstat fills what sysfs lacks (progress
//! percent and finish estimate, the bitmap line, descriptor numbers) and serves alone
//! when sysfs is absent (a captured mdstat, an old kernel).

use crate::md::mdstat::{self, MdstatArray, MdstatSync, ReadOnly, RunState};
use crate::md::model::{Array, Bitmap, Member, Snapshot, Sync, SyncAction, SyncState};
use crate::md::sysfs::{self, SyncCompleted, SysArray};
use crate::root::Root;
use std::fmt;
use std::fs;
use std::io;

/// Why nothing at all could be read.
#[derive(Debug)]
pub enum ReadError {
    /// `/proc/mdstat` does not exist: the md driver is not loaded.
    NoMd(std::path::PathBuf),
    /// `/proc/mdstat` exists but cannot be read.
    Unreadable(std::path::PathBuf, io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::NoMd(p) => write!(
                f,
                "{} does not exist: the md driver is not loaded, so there are no md arrays here",
                p.display()
            ),
            ReadError::Unreadable(p, e) => write!(f, "cannot read {}: {e}", p.display()),
        }
    }
}

impl std::error::Error for ReadError {}

/// Read every array under `root`.
pub fn read_snapshot(root: &Root) -> Result<Snapshot, ReadError> {
    let path = root.mdstat();
    let text = match fs::read(&path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ReadError::NoMd(path)),
        Err(e) => return Err(ReadError::Unreadable(path, e)),
    };
    Ok(snapshot_from(root, &text))
}

/// Build a snapshot from mdstat text plus whatever sysfs under `root` says.
pub fn snapshot_from(root: &Root, mdstat_text: &str) -> Snapshot {
    let parsed = mdstat::parse(mdstat_text);
    let mdstat_path = root.mdstat();
    let mut problems: Vec<String> = parsed
        .problems
        .iter()
        .map(|p| format!("{}: {p}", mdstat_path.display()))
        .collect();
    let mut names: Vec<String> = parsed.arrays.iter().map(|a| a.name.clone()).collect();
    // Arrays sysfs knows that mdstat did not show (a block of mdstat we could not
    // parse, or a race): still shown, from sysfs alone.
    if let Ok(sys_names) = sysfs::list_arrays(root) {
        for n in sys_names {
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    let mut arrays = Vec::new();
    for name in names {
        let md = parsed.arrays.iter().find(|a| a.name == name);
        let sys = sysfs::read_array(root, &name, &mut problems);
        if md.is_none() {
            // A bare md node with nothing assembled reads `clear`/`inactive` and no
            // members: not an array anyone manages.
            if let Some(s) = &sys {
                if s.members.is_empty()
                    && matches!(s.array_state.as_deref(), Some("clear") | Some("inactive"))
                {
                    continue;
                }
            }
        }
        arrays.push(merge(&name, md, sys.as_ref()));
    }
    arrays.sort_by(|a, b| sysfs::natural_cmp(&a.name, &b.name));
    Snapshot { arrays, problems }
}

fn mdstat_state(a: &MdstatArray) -> &'static str {
    match (a.state, a.read_only) {
        (RunState::Inactive, _) => "inactive",
        (RunState::Broken, _) => "broken",
        (RunState::Active, Some(ReadOnly::ReadOnly)) => "readonly",
        (RunState::Active, Some(ReadOnly::AutoReadOnly)) => "read-auto",
        (RunState::Active, None) => "active",
    }
}

/// Merge one array's mdstat block and sysfs directory.
pub fn merge(name: &str, md: Option<&MdstatArray>, sys: Option<&SysArray>) -> Array {
    let mut a = Array::named(name);
    let sys_level = sys.and_then(|s| s.level.clone()).filter(|l| !l.is_empty());
    a.level = sys_level.or_else(|| md.and_then(|m| m.level.clone()));
    a.array_state = sys
        .and_then(|s| s.array_state.clone())
        .or_else(|| md.map(|m| mdstat_state(m).to_string()));
    a.raid_disks = sys
        .and_then(|s| s.raid_disks)
        .or_else(|| md.and_then(|m| m.raid_disks));
    a.degraded = sys.and_then(|s| s.degraded).or_else(|| {
        md.and_then(|m| match (m.raid_disks, m.working) {
            (Some(n), Some(w)) => Some(n.saturating_sub(w)),
            _ => None,
        })
    });
    a.size_kb = md.and_then(|m| m.blocks);
    a.metadata = sys
        .and_then(|s| s.metadata_version.clone())
        .or_else(|| md.and_then(|m| m.metadata.clone()));
    a.uuid = sys.and_then(|s| s.uuid.clone());
    a.slots_up = md.and_then(|m| m.slots.clone());
    a.sync_speed_min = sys.and_then(|s| s.sync_speed_min);
    a.sync_speed_max = sys.and_then(|s| s.sync_speed_max);

    // Members: sysfs when it lists any, else mdstat's flags.
    match sys.filter(|s| !s.members.is_empty()) {
        Some(s) => {
            for m in &s.members {
                let descriptor = md.and_then(|md| {
                    md.members
                        .iter()
                        .find(|x| x.device == m.device)
                        .map(|x| x.descriptor)
                });
                let words: Vec<&str> = m.states.iter().map(String::as_str).collect();
                a.members.push(Member {
                    descriptor,
                    errors: m.errors,
                    written_sectors: m.written_sectors,
                    ..Member::new(&m.device, m.slot, &words)
                });
            }
        }
        None => {
            if let Some(md) = md {
                for m in &md.members {
                    // mdstat's flags, in the order sysfs lists the same words
                    let words: Vec<&str> = [
                        (m.faulty, "faulty"),
                        (m.journal, "journal"),
                        (m.write_mostly, "write_mostly"),
                        (m.spare, "spare"),
                        (m.replacement, "replacement"),
                    ]
                    .into_iter()
                    .filter_map(|(on, w)| on.then_some(w))
                    .collect();
                    a.members.push(Member {
                        descriptor: Some(m.descriptor),
                        ..Member::new(&m.device, None, &words)
                    });
                }
            }
        }
    }

    a.sync = merge_sync(md.and_then(|m| m.sync.as_ref()), sys);
    a.bitmap = merge_bitmap(md, sys);
    a.derive_health();
    a
}

fn merge_sync(md: Option<&MdstatSync>, sys: Option<&SysArray>) -> Option<Sync> {
    let from_md = md.map(|s| match s {
        MdstatSync::Progress {
            kind,
            percent,
            done_kb,
            total_kb,
            finish_min,
            speed_kbps,
        } => Sync {
            action: SyncAction::parse(kind.as_str()).unwrap_or(SyncAction::Resync),
            state: SyncState::Running,
            done: Some(done_kb.saturating_mul(2)),
            total: Some(total_kb.saturating_mul(2)),
            percent: Some(*percent),
            speed_kbps: *speed_kbps,
            finish_min: *finish_min,
        },
        MdstatSync::Delayed(k) | MdstatSync::Pending(k) | MdstatSync::Remote(k) => Sync {
            action: SyncAction::parse(k.as_str()).unwrap_or(SyncAction::Resync),
            state: match s {
                MdstatSync::Delayed(_) => SyncState::Delayed,
                MdstatSync::Pending(_) => SyncState::Pending,
                _ => SyncState::Remote,
            },
            done: None,
            total: None,
            percent: None,
            speed_kbps: None,
            finish_min: None,
        },
    });
    let Some(sys) = sys else { return from_md };
    let Some(act) = sys.sync_action.as_deref() else {
        return from_md;
    };
    let Some(action) = SyncAction::parse(act) else {
        // idle / frozen: nothing runs, unless mdstat shows it queued (delayed,
        // pending, remote) which sysfs reports as idle.
        return from_md.filter(|s| s.state != SyncState::Running);
    };
    if from_md.is_none() && sys.sync_completed == Some(SyncCompleted::None) {
        // md reads `recover` (or the action asked for) as soon as a recovery is
        // needed, before its thread runs: when a leg fails with nothing to
        // recover onto, and for a moment after an add. Nothing copies and
        // nothing waits; mdstat shows no line and sync_completed `none`.
        return None;
    }
    let mut s = from_md.unwrap_or(Sync {
        action,
        state: SyncState::Running,
        done: None,
        total: None,
        percent: None,
        speed_kbps: None,
        finish_min: None,
    });
    s.action = action;
    match sys.sync_completed {
        Some(SyncCompleted::Progress { done, total }) => {
            s.done = Some(done);
            s.total = Some(total);
            if s.state != SyncState::Remote {
                s.state = SyncState::Running;
            }
        }
        Some(SyncCompleted::Delayed) => s.state = SyncState::Delayed,
        _ => {}
    }
    if let Some(v) = sys.sync_speed {
        if s.state == SyncState::Running {
            s.speed_kbps = Some(v);
        }
    }
    Some(s)
}

fn merge_bitmap(md: Option<&MdstatArray>, sys: Option<&SysArray>) -> Option<Bitmap> {
    let loc = sys.and_then(|s| s.bitmap_location.clone());
    if loc.as_deref() == Some("none") {
        return None;
    }
    let mb = md.and_then(|m| m.bitmap.as_ref());
    if mb.is_none() && loc.is_none() {
        return None;
    }
    let chunk = sys
        .and_then(|s| s.bitmap_chunk_bytes)
        .or_else(|| mb.map(|b| b.chunk_bytes));
    Some(Bitmap {
        pages_used: mb.map(|b| b.pages_used),
        pages_total: mb.map(|b| b.pages_total),
        chunk_kb: chunk.map(|c| c / 1024),
        file: mb.and_then(|b| b.file.clone()),
        location: loc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sys(action: &str, completed: Option<SyncCompleted>) -> SysArray {
        SysArray {
            sync_action: Some(action.into()),
            sync_completed: completed,
            ..SysArray::default()
        }
    }

    /// Right after a leg fails md says `recover` with no thread running: no
    /// recovery (the array reads degraded, not recovering, and nothing is
    /// throttled for it).
    #[test]
    fn a_recovery_md_only_needs_is_not_one() {
        assert_eq!(
            merge_sync(None, Some(&sys("recover", Some(SyncCompleted::None)))),
            None
        );
        let running = merge_sync(
            None,
            Some(&sys(
                "recover",
                Some(SyncCompleted::Progress { done: 8, total: 64 }),
            )),
        )
        .expect("a recovery");
        assert_eq!(
            (running.action, running.state),
            (SyncAction::Recover, SyncState::Running)
        );
        // sync_completed unreadable: what sync_action says stands
        let s = merge_sync(None, Some(&sys("recover", None))).expect("a recovery");
        assert_eq!(s.state, SyncState::Running);
        // queued behind another array: still said
        let delayed = MdstatSync::Delayed(mdstat::MdstatSyncKind::Resync);
        let s = merge_sync(
            Some(&delayed),
            Some(&sys("resync", Some(SyncCompleted::None))),
        )
        .expect("a delayed resync");
        assert_eq!(s.state, SyncState::Delayed);
    }
}
