//! Each leg's history as recorded while it was in the array, and the window a
//! returning leg's superblock must fall in before any add.
//!
//! A superblock alone cannot tell the leg that left from an older copy of it: on
//! a healthy array with a bitmap md toggles the event count between N and N+1 as
//! it goes dirty and clean, so a copy restored from a snapshot taken at any time
//! since the last membership change carries the same UUIDs, the same role and an
//! event count the bitmap accepts, and the kernel re-adds it copying only what
//! changed since the failure: the writes between the snapshot and the failure
//! are missing on that leg for good. A disk of another guest cloned from the
//! same image looks the same too.
//!
//! What tells them apart is the leg's own past: mdguard reads the superblock of
//! every in-sync leg while the array changes (at most once per
//! [`RECORD_EVERY`] per array, only when md changed since the last read: an
//! idle guest reads nothing), keeps the last one as a [`LegRecord`] with the
//! time it saw the leg leave, and [`History::check`] holds a returning leg to it:
//!
//! - the same device UUID, and the same storage where the transport names it;
//! - not older than the record: its event count at most one below (md's
//!   clean/dirty toggle), and, unless its event count is above the record's,
//!   its update time not before the recorded one;
//! - not written after the leg left the array (another system used the disk).
//!
//! Where no record exists (the agent never saw the leg in sync) the superblock
//! rules alone judge, as before. What is left open: a copy taken after the last
//! record was read (within [`RECORD_EVERY`] of a change, or during one
//! continuous write burst, when md does not rewrite the superblock) still fits.

use super::action::{Ms, SbFacts, SEC};
use super::membership::Refusal;
use crate::md::identity::same_uuid;
use crate::md::model::Array;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Read the in-sync legs' superblocks at most this often per array.
pub const RECORD_EVERY: Ms = 5 * SEC;

/// A returning leg's superblock may be this much newer (seconds) than the
/// moment mdguard saw it leave: md marks the leg faulty before the agent reads
/// mdstat, and update times have a resolution of one second.
pub const LEAVE_SLACK_S: u64 = 2;

/// One leg's superblock as last read while it was in sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegRecord {
    /// The array's UUID (sysfs form).
    pub array_uuid: String,
    /// The leg's descriptor number in the array.
    pub dev_number: u32,
    /// Its node when it was read (for the log; a leg may come back on another).
    pub device: String,
    pub device_uuid: Option<String>,
    pub events: u64,
    /// The superblock's update time, unix seconds.
    pub utime: u64,
    /// The identity of the storage it sat on, when its transport names one.
    pub storage: Option<String>,
    /// Unix seconds when mdguard saw it leave the array; `None` while in it.
    #[serde(default)]
    pub left_at: Option<u64>,
}

/// Per array: when its legs were last read, and whether md changed since.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Reads {
    last: Option<Ms>,
    /// md's state of the array when last looked at (array_state, members).
    seen: Option<String>,
    /// md changed since the last read.
    dirty: bool,
    /// A read is owed at this time (md changed within [`RECORD_EVERY`] of the
    /// last one, or the read after a change is to be made once more).
    due: Option<Ms>,
    /// md changed since it was first seen (not the agent's first look): the
    /// read it causes is followed by one more.
    settle: bool,
}

/// The records and when to read again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    records: BTreeMap<(String, u32), LegRecord>,
    reads: BTreeMap<String, Reads>,
    /// Bumped on every change of a record (the agent keeps a copy in /run).
    pub generation: u64,
    /// Bumped when a leg is seen leaving (the moment worth keeping across a
    /// reboot: the copy under /var/lib is written then).
    pub left_generation: u64,
}

/// What md shows of an array that a superblock write changes or follows.
fn fingerprint(a: &Array) -> String {
    let mut s = a.array_state.clone().unwrap_or_default();
    for m in &a.members {
        s.push_str(&format!(" {}={}", m.device, m.states.join(",")));
    }
    s
}

/// Members whose superblock is worth recording: in sync, in a slot.
pub fn recordable(a: &Array) -> Vec<String> {
    if !matches!(
        a.array_state.as_deref(),
        Some("clean" | "active" | "active-idle")
    ) {
        return Vec::new();
    }
    a.members
        .iter()
        .filter(|m| m.in_sync() && !m.faulty && m.slot.is_some())
        .map(|m| m.device.clone())
        .collect()
}

impl History {
    /// The records, for the agent's files.
    pub fn records(&self) -> impl Iterator<Item = &LegRecord> {
        self.records.values()
    }

    /// Start from records kept by an earlier run.
    pub fn restore(&mut self, records: Vec<LegRecord>) {
        for r in records {
            self.records.insert((r.array_uuid.clone(), r.dev_number), r);
        }
    }

    /// md's state of `a` as seen now: the in-sync legs to read, if a read is
    /// due (`None` when nothing changed since the last one, or too soon: then a
    /// read is owed at [`History::next_due`]).
    pub fn plan(&mut self, a: &Array, stalled: bool, now: Ms) -> Option<Vec<String>> {
        let r = self.reads.entry(a.name.clone()).or_default();
        let fp = fingerprint(a);
        if r.seen.as_ref() != Some(&fp) {
            r.settle |= r.seen.is_some();
            r.seen = Some(fp);
            r.dirty = true;
        }
        let due_now = r.due.is_some_and(|t| now >= t);
        if !(r.dirty || due_now) {
            return None;
        }
        let devices = recordable(a);
        if stalled || devices.is_empty() {
            // nothing to read now (a read could hang as the writes do): no
            // timer either; md's next change asks again
            r.due = None;
            return None;
        }
        match r.last {
            Some(t) if now < t + RECORD_EVERY => {
                r.due = Some(t + RECORD_EVERY);
                None
            }
            _ => {
                r.last = Some(now);
                // md shows a change (array_state `clean`) before it writes the
                // superblock that goes with it: a read made at once can get the
                // one before (seen under load: a record one update behind for
                // good, as nothing changed after). So a change's read is made
                // once more, RECORD_EVERY later; the agent's first look is not
                // a change (an idle agent stays asleep)
                r.due = (r.dirty && r.settle).then_some(now + RECORD_EVERY);
                r.dirty = false;
                r.settle = false;
                Some(devices)
            }
        }
    }

    /// Forget the reads of arrays md no longer has (their owed reads with
    /// them); the records stay: a leg's array may be assembled again.
    pub fn keep_arrays(&mut self, names: &[&str]) {
        self.reads.retain(|n, _| names.contains(&n.as_str()));
    }

    /// The earliest owed read.
    pub fn next_due(&self) -> Option<Ms> {
        self.reads.values().filter_map(|r| r.due).min()
    }

    /// An in-sync leg of the array with UUID `uuid` was read: keep what it says.
    /// A read that does not show this array's leg in a slot is not a record.
    pub fn on_read(&mut self, uuid: &str, device: &str, sb: &SbFacts) {
        if !same_uuid(uuid, &sb.uuid) || !matches!(sb.role, crate::md::superblock::Role::Active(_))
        {
            return;
        }
        let rec = LegRecord {
            array_uuid: sb.uuid.clone(),
            dev_number: sb.dev_number,
            device: device.to_string(),
            device_uuid: sb.device_uuid.clone(),
            events: sb.events,
            utime: sb.utime,
            storage: sb.storage.clone(),
            left_at: None,
        };
        let key = (self.key_uuid(&sb.uuid), sb.dev_number);
        if self.records.get(&key) != Some(&rec) {
            self.records.insert(key, rec);
            self.generation += 1;
        }
    }

    /// md's members of the array with UUID `uuid` as seen at `wall` (unix
    /// seconds): a faulty one left the array (kept with its record, once per
    /// departure), any other is in it again (a leg re-added, even while it
    /// recovers, leaves anew when it fails again).
    pub fn note_members(&mut self, uuid: &str, a: &Array, wall: u64) {
        for m in &a.members {
            let Some(d) = m.descriptor else { continue };
            let Some(r) = self
                .records
                .iter_mut()
                .find(|((u, n), _)| *n == d && same_uuid(u, uuid))
                .map(|(_, r)| r)
            else {
                continue;
            };
            let left_at = if m.faulty {
                r.left_at.or(Some(wall))
            } else {
                None
            };
            if r.left_at != left_at {
                if left_at.is_some() {
                    self.left_generation += 1;
                }
                r.left_at = left_at;
                self.generation += 1;
            }
        }
    }

    /// The record of the leg a superblock names, if any.
    pub fn record_for(&self, sb: &SbFacts) -> Option<&LegRecord> {
        self.records.get(&(self.key_uuid(&sb.uuid), sb.dev_number))
    }

    /// The stored form of a UUID already recorded in another textual form.
    fn key_uuid(&self, uuid: &str) -> String {
        self.records
            .keys()
            .find(|(u, _)| same_uuid(u, uuid))
            .map_or_else(|| uuid.to_string(), |(u, _)| u.clone())
    }

    /// Does a returning leg's superblock fall in the window its record leaves?
    /// `Ok` too when there is no record (the superblock rules alone judge).
    pub fn check(&self, sb: &SbFacts) -> Result<(), Refusal> {
        let Some(rec) = self.record_for(sb) else {
            return Ok(());
        };
        if let (Some(found), Some(recorded)) = (&sb.device_uuid, &rec.device_uuid) {
            if found != recorded {
                return Err(Refusal::OtherDevice {
                    found: found.clone(),
                    recorded: recorded.clone(),
                });
            }
        }
        if let Some(recorded) = &rec.storage {
            if sb.storage.as_ref() != Some(recorded) {
                return Err(Refusal::OtherStorage {
                    found: sb.storage.clone(),
                    recorded: recorded.clone(),
                });
            }
        }
        // events go down by one at most (md's clean/dirty toggle): more than
        // that below the record is older, and more events than the record's
        // were written after it, whatever the clock said (a clock stepped back
        // must not make the leg that left look older)
        let older_events = sb.events.saturating_add(1) < rec.events;
        let older_time = sb.events <= rec.events && sb.utime < rec.utime;
        if older_events || older_time {
            return Err(Refusal::OlderThanRecorded {
                utime: sb.utime,
                events: sb.events,
                recorded_utime: rec.utime,
                recorded_events: rec.events,
            });
        }
        if let Some(left) = rec.left_at {
            if sb.utime > left + LEAVE_SLACK_S {
                return Err(Refusal::WrittenAfterLeaving {
                    utime: sb.utime,
                    left_at: left,
                });
            }
        }
        Ok(())
    }
}
