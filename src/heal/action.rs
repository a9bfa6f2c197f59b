//! The policy's boundary: what the daemon tells the engine (probe outcomes, action
//! outcomes) and what the engine asks the daemon to do ([`Action`]). Failures come
//! back typed ([`Failure`], an [`Errno`] for a probe), so rules match on values,
//! never on words.

use super::event::Event;
use crate::md::superblock::Role;
pub use nix::errno::Errno;
use std::fmt;
use std::process::ExitStatus;

/// Milliseconds on a monotonic clock.
pub type Ms = u64;

pub(crate) const SEC: Ms = 1000;

/// What a leg's superblock says, as far as decisions need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbFacts {
    pub uuid: String,
    /// The role the superblock gives the device (the reader's own type).
    pub role: Role,
    pub events: u64,
    /// The device's descriptor number in the array (`dev_number`).
    pub dev_number: u32,
    /// Last superblock update, unix seconds.
    pub utime: u64,
    /// Every descriptor's role as this superblock recorded it (its view of the
    /// rest of the array when it last wrote).
    pub roles: Vec<Role>,
    /// The device's own UUID (1.x `device_uuid`, as 32 hex digits; `None` for
    /// 0.90, which has none).
    pub device_uuid: Option<String>,
    /// Not from the superblock: the identity of the storage the device it was
    /// read from sits on ([`crate::md::identity::storage_identity`]), read
    /// beside it, so a read that moved to other storage is a different read.
    pub storage: Option<String>,
    /// Not from the superblock either: sectors written to the device so far
    /// (its block `stat`), read beside it. Nothing writes to a leg out of its
    /// array, so the read before the add gives where md's copy will start
    /// counting from (and a change since the probe means someone wrote to it).
    pub written_sectors: Option<u64>,
}

/// A member's flags that ADD_NEW_DISK takes from its request (and clears when not
/// asked): kept from when the leg was last listed, so a remove and add does not
/// drop them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegFlags {
    /// Reads go to the other legs unless they fail (`write_mostly`).
    pub write_mostly: bool,
    /// Errors fail the leg at once instead of retrying (`failfast`).
    pub failfast: bool,
}

impl LegFlags {
    /// The flags md shows in a member's state words.
    pub fn of(m: &crate::md::model::Member) -> LegFlags {
        LegFlags {
            write_mostly: m.has_state("write_mostly"),
            failfast: m.has_state("failfast"),
        }
    }
}

/// Outcome of reading a device's superblock area with O_DIRECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The device answered; `sb` is None when it carries no md superblock.
    Readable { sb: Option<SbFacts> },
    /// The read failed (EIO, ENXIO, ...).
    Failed(Errno),
    /// No answer within the probe timeout.
    TimedOut,
}

/// Something to carry out. Each names the array and device it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read the device's superblock area (O_DIRECT, with a timeout, off the loop).
    Probe { device: String },
    /// Right before an add: read the leg's superblock again, and the superblock of
    /// `witness`, an in-sync member of `array`, whose events and view of the array
    /// the returning leg's history must fit.
    Confirm {
        array: String,
        device: String,
        witness: String,
    },
    /// Read an in-sync member's superblock for its leg's record (off the loop,
    /// like a probe; see [`super::history`]).
    Record { array: String, device: String },
    /// `echo re-add > md/dev-X/state` on a faulty member still bound.
    ReAdd { array: String, device: String },
    /// `echo -write_error > md/dev-X/state`: forget the write error md marked
    /// a member with (a sysfs re-add keeps the mark).
    ClearWriteError { array: String, device: String },
    /// `echo remove > md/dev-X/state`.
    Remove { array: String, device: String },
    /// `echo faulty > md/dev-X/state`: a member on a disk whose transport is
    /// known dead (a sibling partition failed) that md has not noticed yet; the
    /// disk cannot be reconnected while md holds any of it.
    Fail { array: String, device: String },
    /// Run the configured reconnect command for the disk (legs on it and on its
    /// partitions are all removed first).
    Reconnect { device: String },
    /// ADD_NEW_DISK: with `role` as a re-add the kernel checks against the bitmap;
    /// with `role: None` as a spare for a full recovery.
    Add {
        array: String,
        device: String,
        role: Option<u32>,
        dev_number: Option<u32>,
        /// The member's write-mostly/failfast flags, which md forgets with the
        /// member and ADD_NEW_DISK sets only when asked.
        flags: LegFlags,
    },
    /// Write sync_speed_min/max (`None` = `system`).
    SetSpeed {
        array: String,
        min: Option<u64>,
        max: Option<u64>,
    },
    /// Report an event worth an admin's attention (logged as one line, at the
    /// event's [`Event::level`]).
    Log(Event),
}

/// What became of an action the daemon carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Failed(Failure),
}

/// Why an action failed. Display gives the words the log has always printed: the
/// errno's name (`EBUSY`), or for a command its exit status and last stderr line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A kernel interface refused (sysfs write, ioctl).
    Errno(Errno),
    /// An I/O error that carries no errno (its text).
    Io(String),
    /// A command exited non-zero; `stderr` is its last stderr line (may be empty).
    Exited {
        program: String,
        status: ExitStatus,
        stderr: String,
    },
    /// A command ran past its timeout and was killed.
    TimedOut { program: String, after_s: u64 },
    /// A command could not be started (or waited for).
    NotStarted { program: String, error: String },
    /// The configured command is empty.
    EmptyCommand,
}

impl Failure {
    /// The errno, when a kernel interface refused.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Failure::Errno(e) => Some(*e),
            _ => None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Debug of an Errno is its bare name (`EBUSY`)
            Failure::Errno(e) => write!(f, "{e:?}"),
            Failure::Io(text) => f.write_str(text),
            Failure::Exited {
                program,
                status,
                stderr,
            } => {
                write!(f, "{program}: {status}")?;
                if !stderr.is_empty() {
                    write!(f, ": {stderr}")?;
                }
                Ok(())
            }
            Failure::TimedOut { program, after_s } => {
                write!(f, "{program}: timed out after {after_s}s")
            }
            Failure::NotStarted { program, error } => write!(f, "{program}: {error}"),
            Failure::EmptyCommand => f.write_str("empty command"),
        }
    }
}

/// An event as an action.
pub(crate) fn log(event: Event) -> Action {
    Action::Log(event)
}
