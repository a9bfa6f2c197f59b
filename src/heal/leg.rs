//! One leg of one array: where it is in its life, and what is remembered about it.

use super::action::{Ms, SbFacts};
use std::fmt;

/// Where a leg is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// In the array and not faulty.
    Healthy,
    /// Faulty (bound or removed); waiting for the next probe.
    Failed,
    /// A remove is under way (before reconnect, or after a refused re-add).
    Removing,
    /// The reconnect command runs.
    Reconnecting,
    /// A probe proved the leg; adding after the start delay.
    Waiting,
    /// A re-add/add is under way.
    Adding,
    /// Fails again soon after each re-add: no more re-adds until told.
    Flapping,
    /// Its superblock does not prove it belongs here: never touched.
    Refused,
    /// mdguard asked md to fail it (its disk must be reconnected).
    Failing,
    /// Re-add impossible and full recovery not allowed by config.
    NeedsAdmin,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Healthy => "healthy",
            Phase::Failed => "failed",
            Phase::Removing => "removing",
            Phase::Reconnecting => "reconnecting",
            Phase::Waiting => "waiting",
            Phase::Adding => "adding",
            Phase::Flapping => "flapping",
            Phase::Refused => "refused",
            Phase::Failing => "failing",
            Phase::NeedsAdmin => "needs-admin",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything remembered about one leg of one array.
#[derive(Debug, Clone, PartialEq)]
pub struct Leg {
    pub array: String,
    pub device: String,
    /// Slot it held when last seen healthy.
    pub role: Option<u32>,
    pub phase: Phase,
    /// Still bound to the array (a `dev-X` entry exists)?
    pub bound: bool,
    pub failed_at: Option<Ms>,
    /// When the last re-add/add was done.
    pub added_at: Option<Ms>,
    /// Failures within the flap window after a re-add, in a row.
    pub flaps: u32,
    pub next_probe: Ms,
    pub probe_interval: Ms,
    pub probing: bool,
    /// Earliest time to add (start jitter).
    pub add_at: Ms,
    /// Superblock facts from the last good probe.
    pub sb: Option<SbFacts>,
    /// How the last re-add attempt went (re-add refused -> remove+add -> full).
    pub tried_readd: bool,
    pub tried_add_role: bool,
}
