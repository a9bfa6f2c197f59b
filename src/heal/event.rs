//! What the engine reports: one [`Event`] per thing worth an admin's attention.
//! Rules and their tests deal in these values; [`fmt::Display`] and
//! [`Event::level`] give the log line and its level (the VM tests and admins grep
//! these words: change them only on purpose).

use super::action::{Errno, Failure, Ms, SEC};
use super::leg::Attempt;
use super::membership::Refusal;
use crate::log::Severity;
use crate::md::model::Health;
use std::fmt;

/// A failure soon after a re-add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flap {
    /// Time since the re-add.
    pub after: Ms,
    /// Failures soon after a re-add, in a row.
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A leg md marked faulty; probed after `probe_in`.
    LegFailed {
        array: String,
        device: String,
        flap: Option<Flap>,
        probe_in: Ms,
    },
    /// Too many failures soon after a re-add: no more re-adds until told.
    Flapping {
        array: String,
        device: String,
        flaps: u32,
    },
    BackInArray {
        array: String,
        device: String,
    },
    /// A recovery (or resync) started: `action` is md's sync_action word.
    RecoveryStarted {
        array: String,
        action: &'static str,
    },
    RecoveryFinished {
        array: String,
        after: Ms,
        health: Health,
    },
    /// A leg re-added through sysfs is in sync but still marked `write_error`.
    WriteErrorCleared {
        array: String,
        device: String,
    },
    WriteErrorNotCleared {
        array: String,
        device: String,
        failure: Failure,
    },
    /// A leg mdguard added is in sync: what md wrote to it meanwhile
    /// (`kib`), for an add that asked for a full recovery (`full`) or a
    /// bitmap-scoped one, against the array's size (`size_kib`).
    Copied {
        array: String,
        device: String,
        kib: u64,
        full: bool,
        size_kib: Option<u64>,
    },
    /// dom0 asked for a probe of every failed leg.
    ProbeHint,
    /// A probe failed (`errno`) or timed out (`None`).
    StillUnusable {
        array: String,
        device: String,
        errno: Option<Errno>,
        next_in: Ms,
    },
    /// A probe proved the leg belongs; it is added after `jitter`.
    Proven {
        array: String,
        device: String,
        jitter: Ms,
    },
    /// A probe proved the leg belongs; it asked dom0's coordinator for a
    /// turn and waits up to `timeout` for an answer.
    AskTurn {
        array: String,
        device: String,
        timeout: Ms,
    },
    /// dom0's coordinator granted these legs their turn.
    TurnGranted {
        devices: Vec<String>,
    },
    /// dom0's coordinator queued these legs behind other recoveries.
    TurnQueued {
        devices: Vec<String>,
    },
    /// No turn from dom0 (no answer in time, or the coordinator `gone`): the
    /// leg is added after the start `jitter` instead.
    NoTurn {
        array: String,
        device: String,
        jitter: Ms,
        gone: bool,
    },
    /// A leg's superblock does not prove it belongs.
    Refused {
        array: String,
        device: String,
        reason: Refusal,
    },
    /// The leg is back: `attempt` is how it went in.
    ReAdded {
        array: String,
        device: String,
        attempt: Attempt,
    },
    /// md refused the sysfs re-add: the leg is removed to be added back.
    ReAddRefused {
        array: String,
        device: String,
        failure: Failure,
    },
    RemoveRefused {
        array: String,
        device: String,
        failure: Failure,
    },
    /// ADD_NEW_DISK into the slot failed: added as a spare for a full recovery.
    FullRecovery {
        array: String,
        device: String,
        failure: Failure,
    },
    /// ADD_NEW_DISK into the slot failed and full recovery is off.
    FullRecoveryOff {
        array: String,
        device: String,
        failure: Failure,
    },
    /// Adding as a spare failed too.
    AddFailed {
        array: String,
        device: String,
        failure: Failure,
    },
    FailRefused {
        array: String,
        device: String,
        failure: Failure,
    },
    SpeedNotSet {
        array: String,
        failure: Failure,
    },
    /// A device that appeared is not considered as a returning leg at all.
    NotACandidate {
        device: String,
        why: NotALeg,
    },
    /// A device carries the superblock of no managed array.
    ForeignDevice {
        device: String,
        uuid: String,
    },
    /// A new device carries a managed array's superblock that does not prove it.
    CandidateRefused {
        array: String,
        device: String,
        reason: Refusal,
    },
    /// A new device proven by its superblock (`role` None: a spare).
    NewDevice {
        array: String,
        device: String,
        role: Option<u32>,
    },
    /// The faulty member `faulty` is removed so `device` can take its place.
    MakingRoom {
        array: String,
        faulty: String,
        device: String,
    },
    /// A healthy leg on a disk that must be reconnected is failed.
    FailingForReconnect {
        array: String,
        device: String,
        disk: String,
    },
    /// The disk cannot be reconnected: `device` is its array's only in-sync leg.
    ReconnectBlocked {
        disk: String,
        array: String,
        device: String,
    },
    ReconnectFailed {
        disk: String,
        failure: Failure,
        next_in: Ms,
    },
    Stalled {
        array: String,
        after: Ms,
    },
    WritesFlow {
        array: String,
    },
    /// The leg's superblock moved between the probe that proved it and the read
    /// right before its add: it is probed again.
    HistoryMoved {
        array: String,
        device: String,
    },
    /// The witness member could not be read, so the leg's history could not be
    /// checked: tried again after `next_in`.
    WitnessUnreadable {
        array: String,
        device: String,
        witness: String,
        next_in: Ms,
    },
    /// No write-intent bitmap and md still lists the leg: it is removed first, to
    /// come back as a spare.
    RemovingForFullCopy {
        array: String,
        device: String,
    },
    /// No write-intent bitmap: the leg goes in as a spare for a full recovery.
    FullCopyNeeded {
        array: String,
        device: String,
    },
    /// No write-intent bitmap and full recovery is off: left for an admin.
    FullCopyOff {
        array: String,
        device: String,
    },
    /// md refused the leg in its slot with EINVAL: its superblock is older than
    /// the bitmap can bring up to date; another history, left for an admin.
    NotSameHistory {
        array: String,
        device: String,
        failure: Failure,
    },
    /// The config's `arrays` names these, and md has no such array (yet).
    ConfiguredArraysMissing {
        names: Vec<String>,
    },
    /// Resync speed capped at `max` (`None`: the system's) KiB/s.
    Throttled {
        array: String,
        max: Option<u64>,
        busy: bool,
    },
}

/// Why a device that appeared is never probed as a returning leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotALeg {
    /// A loop, device-mapper, zram, RAM or optical device, or md itself: a local
    /// copy of a leg may carry its superblock.
    LocalCopy,
    /// No leg of a degraded array comes over its transport.
    OtherTransport,
    /// A whole disk whose partitions are (or were) legs: the 0.90 superblock of
    /// its last partition, at the end of the disk, reads as the disk's own.
    PartitionedDisk,
}

impl Event {
    /// A full recovery after which md had written less than 90 % of the
    /// array's size to the leg: it did not copy the whole leg.
    fn short_copy(&self) -> bool {
        matches!(self, Event::Copied { kib, full: true, size_kib: Some(size), .. } if kib.saturating_mul(10) < size.saturating_mul(9))
    }

    pub fn level(&self) -> Severity {
        use Event::*;
        match self {
            Flapping { .. }
            | Refused { .. }
            | FullRecoveryOff { .. }
            | AddFailed { .. }
            | CandidateRefused { .. }
            | ReconnectBlocked { .. }
            | FullCopyOff { .. }
            | NotSameHistory { .. }
            | Stalled { .. } => Severity::Error,
            Copied { .. } if self.short_copy() => Severity::Error,
            LegFailed { .. }
            | RemoveRefused { .. }
            | FullRecovery { .. }
            | FailRefused { .. }
            | SpeedNotSet { .. }
            | WriteErrorNotCleared { .. }
            | HistoryMoved { .. }
            | WitnessUnreadable { .. }
            | FullCopyNeeded { .. }
            | RemovingForFullCopy { .. }
            | ConfiguredArraysMissing { .. }
            | FailingForReconnect { .. } => Severity::Warning,
            BackInArray { .. }
            | RecoveryStarted { .. }
            | RecoveryFinished { .. }
            | Copied { .. }
            | WriteErrorCleared { .. }
            | ProbeHint
            | StillUnusable { .. }
            | Proven { .. }
            | AskTurn { .. }
            | TurnGranted { .. }
            | TurnQueued { .. }
            | NoTurn { .. }
            | ReAdded { .. }
            | ReAddRefused { .. }
            | ForeignDevice { .. }
            | NotACandidate { .. }
            | NewDevice { .. }
            | MakingRoom { .. }
            | ReconnectFailed { .. }
            | WritesFlow { .. }
            | Throttled { .. } => Severity::Notice,
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Event::*;
        match self {
            LegFailed {
                array,
                device,
                flap,
                probe_in,
            } => {
                write!(f, "{array}: leg {device} failed")?;
                if let Some(Flap { after, count }) = flap {
                    write!(f, " again {}s after its re-add (flap {count})", after / SEC)?;
                }
                write!(f, "; probing it in {}s", probe_in / SEC)
            }
            Flapping {
                array,
                device,
                flaps,
            } => write!(
                f,
                "{array}: leg {device} is flapping ({flaps} failures soon after re-add): not re-adding it again until it stays healthy or dom0 asks for a probe"
            ),
            BackInArray { array, device } => {
                write!(f, "{array}: leg {device} is back in the array")
            }
            RecoveryStarted { array, action } => write!(f, "{array}: {action} started"),
            WriteErrorNotCleared {
                array,
                device,
                failure,
            } => write!(
                f,
                "{array}: cannot clear {device}'s write error mark: {failure}"
            ),
            WriteErrorCleared { array, device } => write!(
                f,
                "{array}: {device} is in sync again; clearing the write error md kept marked on it through the re-add"
            ),
            Copied {
                array,
                device,
                kib,
                full,
                size_kib,
            } => {
                let mib = |k: u64| format!("{:.1} MiB", k as f64 / 1024.0);
                let of = size_kib.map_or(String::new(), |s| format!(" of the array's {}", mib(s)));
                if self.short_copy() {
                    write!(
                        f,
                        "{array}: {device} is in sync, but md wrote only {} to it{of} after an add for a full recovery: it did not copy the whole leg; run a check (echo check > /sys/block/{array}/md/sync_action)",
                        mib(*kib)
                    )
                } else if *full {
                    write!(f, "{array}: {device} is in sync: md wrote {} to it{of} (a full recovery)", mib(*kib))
                } else {
                    write!(f, "{array}: {device} is in sync: md wrote {} to it{of} (what the bitmap kept)", mib(*kib))
                }
            }
            RecoveryFinished {
                array,
                after,
                health,
            } => write!(
                f,
                "{array}: recovery finished after {}s; array is {health}",
                after / SEC
            ),
            ProbeHint => f.write_str("dom0 asked for a probe: probing every failed leg now"),
            StillUnusable {
                array,
                device,
                errno,
                next_in,
            } => {
                write!(f, "{array}: leg {device} still unusable (")?;
                match errno {
                    Some(e) => write!(f, "{e:?}")?,
                    None => f.write_str("timed out")?,
                }
                write!(f, "); next probe in {}s", next_in / SEC)
            }
            Proven {
                array,
                device,
                jitter,
            } => {
                write!(
                    f,
                    "{array}: leg {device} answers again and its superblock proves it belongs here; re-adding"
                )?;
                if *jitter > 0 {
                    write!(f, " in {:.1}s (start jitter)", *jitter as f64 / 1000.0)?;
                }
                Ok(())
            }
            AskTurn {
                array,
                device,
                timeout,
            } => write!(
                f,
                "{array}: leg {device} answers again and its superblock proves it belongs here; asking dom0 for a turn to re-add it (waiting up to {}s for an answer)",
                timeout / SEC
            ),
            TurnGranted { devices } => {
                write!(f, "dom0 granted the turn to re-add {}", devices.join(", "))
            }
            TurnQueued { devices } => write!(
                f,
                "dom0 queued the re-add of {} behind other recoveries on its storage",
                devices.join(", ")
            ),
            NoTurn {
                array,
                device,
                jitter,
                gone,
            } => {
                write!(
                    f,
                    "{array}: no turn from dom0 for leg {device} ({}); re-adding",
                    if *gone {
                        "its coordinator went away"
                    } else {
                        "no answer in time"
                    }
                )?;
                if *jitter > 0 {
                    write!(f, " in {:.1}s (start jitter)", *jitter as f64 / 1000.0)?;
                }
                Ok(())
            }
            Refused {
                array,
                device,
                reason,
            } => write!(
                f,
                "{array}: leg {device} answers but will not be re-added: {reason}"
            ),
            ReAdded {
                array,
                device,
                attempt,
            } => write!(
                f,
                "{array}: re-added {device}{}",
                match attempt {
                    Attempt::Spare => " as a spare for a full recovery",
                    _ => " (the bitmap limits the resync to what changed)",
                }
            ),
            ReAddRefused {
                array,
                device,
                failure,
            } => write!(
                f,
                "{array}: re-add of {device} refused ({failure}); removing it to add it back"
            ),
            RemoveRefused {
                array,
                device,
                failure,
            } => write!(f, "{array}: could not remove {device} ({failure}); retrying"),
            FullRecovery {
                array,
                device,
                failure,
            } => write!(
                f,
                "{array}: re-add of {device} impossible ({failure}: no bitmap or events too old); adding it for a full recovery"
            ),
            FullRecoveryOff {
                array,
                device,
                failure,
            } => write!(
                f,
                "{array}: re-add of {device} impossible ({failure}) and full recovery is off in the config: left degraded for an admin"
            ),
            AddFailed {
                array,
                device,
                failure,
            } => write!(
                f,
                "{array}: adding {device} failed ({failure}); left for an admin"
            ),
            FailRefused {
                array,
                device,
                failure,
            } => write!(f, "{array}: could not fail {device} ({failure})"),
            SpeedNotSet { array, failure } => {
                write!(f, "{array}: could not set sync speed limits: {failure}")
            }
            NotACandidate { device, why } => write!(
                f,
                "{device}: not considered as a returning leg: {}",
                match why {
                    NotALeg::LocalCopy =>
                        "a loop, device-mapper, zram, RAM or optical device may hold a local copy of a leg",
                    NotALeg::OtherTransport => "no leg of a degraded array comes over its transport",
                    NotALeg::PartitionedDisk =>
                        "a whole disk whose partitions are legs (a 0.90 superblock at the end of its last partition reads as the disk's own)",
                }
            ),
            ForeignDevice { device, uuid } => write!(
                f,
                "{device}: carries md superblock {uuid} of no array mdguard manages; not touched"
            ),
            CandidateRefused {
                array,
                device,
                reason,
            } => write!(f, "{device}: not added to {array}: {reason}"),
            NewDevice {
                array,
                device,
                role,
            } => {
                write!(
                    f,
                    "{array}: new device {device} carries this array's superblock (role "
                )?;
                match role {
                    Some(r) => write!(f, "{r}")?,
                    None => f.write_str("spare")?,
                }
                f.write_str("): adding it")
            }
            MakingRoom {
                array,
                faulty,
                device,
            } => write!(
                f,
                "{array}: removing faulty {faulty} so {device} can take its place"
            ),
            FailingForReconnect {
                array,
                device,
                disk,
            } => write!(
                f,
                "{array}: failing {device} (its disk {disk} lost its transport and must be reconnected)"
            ),
            ReconnectBlocked {
                disk,
                array,
                device,
            } => write!(
                f,
                "{disk}: cannot be reconnected: {device} in {array} is its array's only in-sync leg"
            ),
            ReconnectFailed {
                disk,
                failure,
                next_in,
            } => write!(
                f,
                "{disk}: reconnect failed ({failure}); next try in {}s",
                next_in / SEC
            ),
            Stalled { array, after } => write!(
                f,
                "{array}: writes stalled for {}s (a leg's storage hangs without a transport timeout?)",
                after / SEC
            ),
            WritesFlow { array } => write!(f, "{array}: writes flow again"),
            HistoryMoved { array, device } => write!(
                f,
                "{array}: {device}'s superblock changed between its probe and its add; probing it again"
            ),
            WitnessUnreadable {
                array,
                device,
                witness,
                next_in,
            } => write!(
                f,
                "{array}: cannot read {witness}'s superblock to check {device}'s history against; trying again in {}s",
                next_in / SEC
            ),
            RemovingForFullCopy { array, device } => write!(
                f,
                "{array}: removing {device} first: the array has no write-intent bitmap, so it can come back only through a full recovery"
            ),
            FullCopyNeeded { array, device } => write!(
                f,
                "{array}: {device} is added for a full recovery: the array has no write-intent bitmap, so a re-add would copy nothing and leave it without the writes made while it was away"
            ),
            FullCopyOff { array, device } => write!(
                f,
                "{array}: {device} belongs here, but the array has no write-intent bitmap and full recovery is off in the config: left degraded for an admin"
            ),
            NotSameHistory {
                array,
                device,
                failure,
            } => write!(
                f,
                "{array}: the kernel refused {device} in its slot ({failure}): its superblock is older than the bitmap can bring up to date (another history?); not added, left for an admin"
            ),
            ConfiguredArraysMissing { names } => write!(
                f,
                "the config's arrays = [...] names {}, but md has no such array (yet): not managed",
                names.join(", ")
            ),
            Throttled { array, max, busy } => {
                write!(f, "{array}: resync throttled to ")?;
                match max {
                    Some(v) => write!(f, "{v}")?,
                    None => f.write_str("system")?,
                }
                write!(
                    f,
                    " KiB/s{}",
                    if *busy { " (guest I/O busy)" } else { "" }
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words the VM tests and admins grep stay as they were.
    #[test]
    fn log_lines_keep_their_words() {
        let s = |a: &str| a.to_string();
        let cases: Vec<(Event, &str, Severity)> = vec![
            (
                Event::LegFailed {
                    array: s("md3"),
                    device: s("xvdc"),
                    flap: Some(Flap {
                        after: 5 * SEC,
                        count: 2,
                    }),
                    probe_in: 20 * SEC,
                },
                "md3: leg xvdc failed again 5s after its re-add (flap 2); probing it in 20s",
                Severity::Warning,
            ),
            (
                Event::Proven {
                    array: s("md3"),
                    device: s("xvdc"),
                    jitter: 1500,
                },
                "md3: leg xvdc answers again and its superblock proves it belongs here; re-adding in 1.5s (start jitter)",
                Severity::Notice,
            ),
            (
                Event::AskTurn {
                    array: s("md3"),
                    device: s("xvdc"),
                    timeout: 10 * SEC,
                },
                "md3: leg xvdc answers again and its superblock proves it belongs here; asking dom0 for a turn to re-add it (waiting up to 10s for an answer)",
                Severity::Notice,
            ),
            (
                Event::TurnGranted {
                    devices: vec![s("xvdc"), s("xvdd")],
                },
                "dom0 granted the turn to re-add xvdc, xvdd",
                Severity::Notice,
            ),
            (
                Event::TurnQueued {
                    devices: vec![s("xvdc")],
                },
                "dom0 queued the re-add of xvdc behind other recoveries on its storage",
                Severity::Notice,
            ),
            (
                Event::NoTurn {
                    array: s("md3"),
                    device: s("xvdc"),
                    jitter: 2500,
                    gone: false,
                },
                "md3: no turn from dom0 for leg xvdc (no answer in time); re-adding in 2.5s (start jitter)",
                Severity::Notice,
            ),
            (
                Event::NoTurn {
                    array: s("md3"),
                    device: s("xvdc"),
                    jitter: 0,
                    gone: true,
                },
                "md3: no turn from dom0 for leg xvdc (its coordinator went away); re-adding",
                Severity::Notice,
            ),
            (
                Event::StillUnusable {
                    array: s("md3"),
                    device: s("xvdc"),
                    errno: Some(Errno::EIO),
                    next_in: 4 * SEC,
                },
                "md3: leg xvdc still unusable (EIO); next probe in 4s",
                Severity::Notice,
            ),
            (
                Event::ReAdded {
                    array: s("md3"),
                    device: s("xvdc"),
                    attempt: Attempt::ReAdd,
                },
                "md3: re-added xvdc (the bitmap limits the resync to what changed)",
                Severity::Notice,
            ),
            (
                Event::ReAddRefused {
                    array: s("md3"),
                    device: s("xvdc"),
                    failure: Failure::Errno(Errno::EBUSY),
                },
                "md3: re-add of xvdc refused (EBUSY); removing it to add it back",
                Severity::Notice,
            ),
            (
                Event::NewDevice {
                    array: s("md3"),
                    device: s("xvdd"),
                    role: Some(1),
                },
                "md3: new device xvdd carries this array's superblock (role 1): adding it",
                Severity::Notice,
            ),
            (
                Event::Throttled {
                    array: s("md3"),
                    max: Some(2000),
                    busy: true,
                },
                "md3: resync throttled to 2000 KiB/s (guest I/O busy)",
                Severity::Notice,
            ),
            (
                Event::Stalled {
                    array: s("md3"),
                    after: 61 * SEC,
                },
                "md3: writes stalled for 61s (a leg's storage hangs without a transport timeout?)",
                Severity::Error,
            ),
            (
                Event::Refused {
                    array: s("md3"),
                    device: s("xvdc"),
                    reason: Refusal::NoSuperblock,
                },
                "md3: leg xvdc answers but will not be re-added: it carries no md superblock",
                Severity::Error,
            ),
        ];
        for (e, text, level) in cases {
            assert_eq!(e.to_string(), text);
            assert_eq!(e.level(), level, "{text}");
        }
    }
}
