//! The policy's boundary: what the daemon tells the engine (probe outcomes, action
//! outcomes) and what the engine asks the daemon to do ([`Action`]).

/// Milliseconds on a monotonic clock.
pub type Ms = u64;

pub(crate) const SEC: Ms = 1000;

/// The role a superblock gives its device in the array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SbRole {
    Active(u32),
    Spare,
    Faulty,
}

/// What a leg's superblock says, as far as decisions need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbFacts {
    pub uuid: String,
    pub role: SbRole,
    pub events: u64,
    /// The device's descriptor number in the array (`dev_number`).
    pub dev_number: u32,
}

/// Outcome of reading a device's superblock area with O_DIRECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The device answered; `sb` is None when it carries no md superblock.
    Readable { sb: Option<SbFacts> },
    /// The read failed (EIO, ENXIO, ...).
    Failed(String),
    /// No answer within the probe timeout.
    TimedOut,
}

/// Something to carry out. Each names the array and device it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read the device's superblock area (O_DIRECT, with a timeout, off the loop).
    Probe { device: String },
    /// `echo re-add > md/dev-X/state` on a faulty member still bound.
    ReAdd { array: String, device: String },
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
    },
    /// Write sync_speed_min/max (`None` = `system`).
    SetSpeed {
        array: String,
        min: Option<u64>,
        max: Option<u64>,
    },
    /// Log a line (one per event worth an admin's attention).
    Log { level: Level, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// What became of an action the daemon carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// errno name or message.
    Failed(String),
}

/// A log line as an action.
pub(crate) fn log(level: Level, message: String) -> Action {
    Action::Log { level, message }
}
