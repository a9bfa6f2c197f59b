//! One leg of one array: its state machine, and what is remembered about it.
//!
//! Each state carries its own data ([`LegState`]); every edge is one named method
//! on [`Leg`] that checks its source state. The published word of each state
//! ([`Phase::as_str`]) is what dom0 sees. The diagram (also in
//! `docs/leg-states.md`, with one line per transition; a unit test holds both
//! to this enum and to the edges below):
//!
//! ```text
//! [healthy] --fail--> [failed]: probe due at a time, or a probe under way
//!   |  |                |  start_probe (due -> under way); back_off (under way -> due,
//!   |  |                |  interval doubled); postpone (due -> due, a sibling holds the disk)
//!   |  |                +--prove--> [waiting] --start_confirm--> [confirming] --start_add--> [adding] --added--> [healthy]
//!   |  |                +--refuse--> [refused] --probe_soon--> [failed]
//!   |  |                +--start_remove--> [removing] --removed / remove_refused--> [failed]
//!   |  |                +--start_reconnect--> [reconnecting] --reconnected / back_off--> [failed]
//!   |  |                                     [waiting] --grant / hold / fall_back (dom0's admission)--> [waiting]
//!   |  |                                     [waiting] --refuse (no in-sync witness)--> [refused]
//!   |  |                                     [confirming] --refuse (history does not fit)--> [refused]
//!   |  |                                     [confirming] --recheck / back_off--> [failed]
//!   |  |                                     [confirming] --start_remove (no bitmap, still bound)--> [removing]
//!   |  |                                     [confirming] --hold_for_admin--> [needs-admin]
//!   |  |                                     [adding] --readd_refused--> [removing]
//!   |  |                                     [adding] --add_as_spare--> [adding]
//!   |  |                                     [adding] --give_up--> [needs-admin]
//!   |  +--start_failing--> [failing] --fail_refused--> [healthy]
//!   |                      [failing] --fail / flap--> (as from healthy)
//!   +--flap--> [flapping]
//! [flapping] / [needs-admin] / [failed] --probe_now (dom0's hint)--> [failed]
//! any state but healthy, removing, failing --back_in_array--> [healthy]
//! ```
//!
//! Transitions from a wrong state: the engine checks a leg's state before it
//! calls an edge, and an event that arrives for a step the leg is no longer at
//! (an outcome or probe result overtaken by events) is stale and ignored there.
//! A call of an edge from a wrong state is therefore a bug in the engine: it
//! trips a `debug_assert` in tests and debug builds, and in a release build the
//! leg keeps its state (the call is ignored), so a bug cannot turn a leg the
//! wrong way.

use super::action::{Action, LegFlags, Ms, SbFacts};
use super::membership::Refusal;
use crate::md::superblock::Role;
use std::fmt;

/// Where a leg is in its life: the word dom0 sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// In the array and not faulty.
    Healthy,
    /// Faulty (bound or removed); waiting for the next probe, or probing.
    Failed,
    /// A remove is under way (before reconnect, or after a refused re-add).
    Removing,
    /// The reconnect command runs.
    Reconnecting,
    /// A probe proved the leg; adding after the start delay.
    Waiting,
    /// Read again right before its add, with an in-sync member as witness: its
    /// superblock must not have moved and its history must fit the array's.
    Confirming,
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
    /// Every phase, in the order of the diagram's documentation.
    pub const ALL: [Phase; 11] = [
        Phase::Healthy,
        Phase::Failed,
        Phase::Removing,
        Phase::Reconnecting,
        Phase::Waiting,
        Phase::Confirming,
        Phase::Adding,
        Phase::Flapping,
        Phase::Refused,
        Phase::Failing,
        Phase::NeedsAdmin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Healthy => "healthy",
            Phase::Failed => "failed",
            Phase::Removing => "removing",
            Phase::Reconnecting => "reconnecting",
            Phase::Waiting => "waiting",
            Phase::Confirming => "confirming",
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

/// When a failed leg is probed next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextProbe {
    /// At this time.
    At(Ms),
    /// A probe is under way; its result moves the leg on.
    UnderWay,
}

/// What a failed leg remembers until it is healthy again (through removing,
/// reconnecting, waiting and adding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Episode {
    /// Time between probes; doubles after each failed probe or reconnect.
    pub interval: Ms,
    /// md refused a sysfs re-add (or there was never a member to re-add): the
    /// next add goes through ADD_NEW_DISK.
    pub readd_refused: bool,
    /// dom0's coordinator granted this leg its turn: proven again in this
    /// episode (a refused re-add, a superblock that moved), it does not ask again.
    pub granted: bool,
    /// Probes and reconnects that failed in a row.
    pub failures: u32,
}

impl Episode {
    pub fn new(interval: Ms) -> Episode {
        Episode {
            interval,
            readd_refused: false,
            granted: false,
            failures: 0,
        }
    }
}

/// How a proven leg waits for its add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The random start jitter: no coordinator in dom0 (or it did not answer).
    Jitter,
    /// It asked dom0's coordinator for a turn; its `add_at` is when it stops
    /// waiting for an answer and falls back to the jitter.
    Asking,
    /// The coordinator answered "queued": it waits on while the coordinator
    /// shows it lives (`add_at` moves on with each sign).
    Queued,
    /// dom0's coordinator granted the turn.
    Granted,
}

/// What the array offers a returning leg, as the attempt depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddPolicy {
    /// The array has a write-intent bitmap: a re-add copies only what changed.
    /// Without one a re-add copies nothing (md takes the leg as in sync), so the
    /// only safe add is a full recovery.
    pub bitmap: bool,
    /// `heal.full_recovery`: a full recovery may be started without an admin.
    pub full_recovery: bool,
}

/// How an add is attempted, in the order they are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// `echo re-add` on the member md still lists as faulty.
    ReAdd,
    /// ADD_NEW_DISK into the slot its superblock names: the kernel accepts it only
    /// if the bitmap can bring the leg up to date.
    InSlot { role: u32, dev_number: u32 },
    /// ADD_NEW_DISK as a spare: a full recovery.
    Spare,
}

impl Attempt {
    /// The action that carries the attempt out.
    pub fn action(self, array: &str, device: &str, flags: LegFlags) -> Action {
        let (array, device) = (array.to_string(), device.to_string());
        match self {
            Attempt::ReAdd => Action::ReAdd { array, device },
            Attempt::InSlot { role, dev_number } => Action::Add {
                array,
                device,
                role: Some(role),
                dev_number: Some(dev_number),
                flags,
            },
            Attempt::Spare => Action::Add {
                array,
                device,
                role: None,
                dev_number: None,
                flags,
            },
        }
    }

    /// Is `action` the one that carries this attempt out?
    pub fn is(self, action: &Action) -> bool {
        matches!(
            (self, action),
            (Attempt::ReAdd, Action::ReAdd { .. })
                | (Attempt::InSlot { .. }, Action::Add { role: Some(_), .. })
                | (Attempt::Spare, Action::Add { role: None, .. })
        )
    }
}

/// A leg's state, with the data that belongs to it.
#[derive(Debug, Clone, PartialEq)]
pub enum LegState {
    Healthy {
        /// Until when "cannot be reconnected" is not said again about this leg.
        quiet_until: Ms,
    },
    Failed {
        probe: NextProbe,
        episode: Episode,
    },
    Removing {
        episode: Episode,
    },
    Reconnecting {
        episode: Episode,
    },
    Waiting {
        add_at: Ms,
        /// What it waits for: the jitter, or dom0's answer.
        start: Start,
        /// The superblock that proved the leg.
        sb: SbFacts,
        episode: Episode,
    },
    Confirming {
        /// The superblock that proved the leg; the fresh read must equal it.
        sb: SbFacts,
        episode: Episode,
    },
    Adding {
        attempt: Attempt,
        episode: Episode,
    },
    Flapping,
    Refused {
        /// Why: reported to dom0 and in `status` until the leg is probed again.
        reason: Refusal,
    },
    Failing,
    NeedsAdmin,
}

impl LegState {
    pub const HEALTHY: LegState = LegState::Healthy { quiet_until: 0 };

    pub fn phase(&self) -> Phase {
        match self {
            LegState::Healthy { .. } => Phase::Healthy,
            LegState::Failed { .. } => Phase::Failed,
            LegState::Removing { .. } => Phase::Removing,
            LegState::Reconnecting { .. } => Phase::Reconnecting,
            LegState::Waiting { .. } => Phase::Waiting,
            LegState::Confirming { .. } => Phase::Confirming,
            LegState::Adding { .. } => Phase::Adding,
            LegState::Flapping => Phase::Flapping,
            LegState::Refused { .. } => Phase::Refused,
            LegState::Failing => Phase::Failing,
            LegState::NeedsAdmin => Phase::NeedsAdmin,
        }
    }

    /// The time a timer must fire for this state, if any.
    pub fn deadline(&self) -> Option<Ms> {
        match self {
            LegState::Failed {
                probe: NextProbe::At(t),
                ..
            } => Some(*t),
            LegState::Waiting { add_at, .. } => Some(*add_at),
            _ => None,
        }
    }

    /// Why the leg was refused, while it is.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            LegState::Refused { reason } => Some(reason),
            _ => None,
        }
    }

    fn episode(&self) -> Option<Episode> {
        match self {
            LegState::Failed { episode, .. }
            | LegState::Removing { episode }
            | LegState::Reconnecting { episode }
            | LegState::Waiting { episode, .. }
            | LegState::Confirming { episode, .. }
            | LegState::Adding { episode, .. } => Some(*episode),
            _ => None,
        }
    }
}

/// Everything remembered about one leg of one array.
#[derive(Debug, Clone, PartialEq)]
pub struct Leg {
    pub array: String,
    pub device: String,
    /// Slot it held when last seen healthy.
    pub role: Option<u32>,
    /// Still bound to the array (a `dev-X` entry exists)?
    pub bound: bool,
    /// When the last re-add/add was done (spans states: flaps are failures soon
    /// after it).
    pub added_at: Option<Ms>,
    /// Failures within the flap window after a re-add, in a row.
    pub flaps: u32,
    /// Its flags as md last listed them (kept across a remove and add).
    pub flags: LegFlags,
    /// What its last add asked md to copy, until md has it in sync again and
    /// the log says what md did copy.
    pub copy: Option<CopyWatch>,
    /// Re-added through sysfs: md kept its `write_error` mark, to be cleared
    /// once it is in sync.
    pub clear_write_error: bool,
    /// Added and not yet listed in sync by md: its recovery is not over (what
    /// the guest's resync request to dom0 stands for).
    pub syncing: bool,
    state: LegState,
}

/// An add under way, seen from the leg's block device: how much md writes to
/// it tells a full recovery from a bitmap-scoped one from none at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyWatch {
    /// A full recovery was asked for (added as a spare).
    pub full: bool,
    /// Sectors written to the device before the add.
    pub from_sectors: u64,
}

impl Leg {
    /// The one way to make a leg.
    pub fn new(array: &str, device: &str, role: Option<u32>, bound: bool, state: LegState) -> Leg {
        Leg {
            array: array.to_string(),
            device: device.to_string(),
            role,
            bound,
            added_at: None,
            flaps: 0,
            flags: LegFlags::default(),
            copy: None,
            clear_write_error: false,
            syncing: false,
            state,
        }
    }

    pub fn state(&self) -> &LegState {
        &self.state
    }

    pub fn phase(&self) -> Phase {
        self.state.phase()
    }

    pub fn is(&self, phase: Phase) -> bool {
        self.phase() == phase
    }

    /// Failed and not probing: its probe time has come.
    pub fn probe_due(&self, now: Ms) -> bool {
        matches!(self.state, LegState::Failed { probe: NextProbe::At(t), .. } if now >= t)
    }

    /// Failed with a probe under way.
    pub fn probing(&self) -> bool {
        matches!(
            self.state,
            LegState::Failed {
                probe: NextProbe::UnderWay,
                ..
            }
        )
    }

    /// Take the edge `edge` to `to` if the leg is in a state `from` accepts (see
    /// the module comment for a wrong state).
    fn step(&mut self, edge: &str, from: impl Fn(&LegState) -> bool, to: LegState) {
        if from(&self.state) {
            self.state = to;
        } else {
            debug_assert!(
                false,
                "{}/{}: {edge} from {:?}",
                self.array, self.device, self.state
            );
        }
    }

    fn episode_or_new(&self, interval: Ms) -> Episode {
        self.state.episode().unwrap_or(Episode::new(interval))
    }

    // ---- the edges, one per transition ----

    /// healthy | failing -> failed: md marked it faulty (or it left while healthy);
    /// probed at `next_probe`, then every `interval`, backing off.
    pub fn fail(&mut self, next_probe: Ms, interval: Ms) {
        self.copy = None;
        self.clear_write_error = false;
        self.syncing = false;
        let to = LegState::Failed {
            probe: NextProbe::At(next_probe),
            episode: Episode::new(interval),
        };
        self.step(
            "fail",
            |s| matches!(s, LegState::Healthy { .. } | LegState::Failing),
            to,
        );
    }

    /// healthy | failing -> flapping: failed too often soon after its re-add.
    pub fn flap(&mut self) {
        self.copy = None;
        self.syncing = false;
        self.step(
            "flap",
            |s| matches!(s, LegState::Healthy { .. } | LegState::Failing),
            LegState::Flapping,
        );
    }

    /// healthy -> failing: mdguard asks md to fail it (its disk must be reconnected).
    pub fn start_failing(&mut self) {
        self.step(
            "start_failing",
            |s| matches!(s, LegState::Healthy { .. }),
            LegState::Failing,
        );
    }

    /// failing -> healthy: md would not fail it.
    pub fn fail_refused(&mut self) {
        self.step(
            "fail_refused",
            |s| matches!(s, LegState::Failing),
            LegState::HEALTHY,
        );
    }

    /// healthy -> healthy: "cannot be reconnected" said; quiet until `until`.
    pub fn hush(&mut self, until: Ms) {
        self.step(
            "hush",
            |s| matches!(s, LegState::Healthy { .. }),
            LegState::Healthy { quiet_until: until },
        );
    }

    /// May "cannot be reconnected" be said about this (healthy) leg now?
    pub fn may_speak(&self, now: Ms) -> bool {
        matches!(self.state, LegState::Healthy { quiet_until } if quiet_until <= now)
    }

    /// (any but healthy, removing, failing) -> healthy: md lists it in sync again.
    pub fn back_in_array(&mut self) {
        self.step(
            "back_in_array",
            |s| {
                !matches!(
                    s,
                    LegState::Healthy { .. } | LegState::Removing { .. } | LegState::Failing
                )
            },
            LegState::HEALTHY,
        );
    }

    /// failed (probe due) -> failed (probe under way).
    pub fn start_probe(&mut self) {
        let episode = self.episode_or_new(0);
        self.step(
            "start_probe",
            |s| {
                matches!(
                    s,
                    LegState::Failed {
                        probe: NextProbe::At(_),
                        ..
                    }
                )
            },
            LegState::Failed {
                probe: NextProbe::UnderWay,
                episode,
            },
        );
    }

    /// failed (probe under way) | reconnecting | confirming -> failed: the probe,
    /// the reconnect or the read before the add failed; the interval doubles up
    /// to `max`.
    pub fn back_off(&mut self, now: Ms, max: Ms) {
        let mut episode = self.episode_or_new(0);
        episode.interval = (episode.interval * 2).min(max);
        episode.failures = episode.failures.saturating_add(1);
        self.step(
            "back_off",
            |s| {
                matches!(
                    s,
                    LegState::Failed {
                        probe: NextProbe::UnderWay,
                        ..
                    } | LegState::Reconnecting { .. }
                        | LegState::Confirming { .. }
                )
            },
            LegState::Failed {
                probe: NextProbe::At(now + episode.interval),
                episode,
            },
        );
    }

    /// failed (probe due, not yet probing) -> failed: a sibling still holds the
    /// disk; look again one interval later.
    pub fn postpone(&mut self, now: Ms) {
        let episode = self.episode_or_new(0);
        self.step(
            "postpone",
            |s| matches!(s, LegState::Failed { probe: NextProbe::At(t), .. } if *t <= now),
            LegState::Failed {
                probe: NextProbe::At(now + episode.interval),
                episode,
            },
        );
    }

    /// failed | refused -> failed, probe due at once: its device (re)appeared.
    /// A probe under way is left to finish.
    pub fn probe_soon(&mut self, initial: Ms) {
        let episode = self.episode_or_new(initial);
        self.step(
            "probe_soon",
            |s| {
                matches!(
                    s,
                    LegState::Failed {
                        probe: NextProbe::At(_),
                        ..
                    } | LegState::Refused { .. }
                )
            },
            LegState::Failed {
                probe: NextProbe::At(0),
                episode,
            },
        );
    }

    /// failed | flapping | needs-admin -> failed, probe due `now` with the initial
    /// interval: dom0 says storage is back. A flapping leg is forgiven; a probe
    /// under way is left to finish.
    pub fn probe_now(&mut self, now: Ms, initial: Ms) {
        if self.is(Phase::Flapping) {
            self.flaps = 0;
        }
        let mut episode = self.episode_or_new(initial);
        episode.interval = initial;
        episode.failures = 0;
        let probe = if self.probing() {
            NextProbe::UnderWay
        } else {
            NextProbe::At(now)
        };
        self.step(
            "probe_now",
            |s| {
                matches!(
                    s,
                    LegState::Failed { .. } | LegState::Flapping | LegState::NeedsAdmin
                )
            },
            LegState::Failed { probe, episode },
        );
    }

    /// failed (probe under way) -> waiting: its superblock proves it belongs;
    /// added at `add_at` (for a leg [`Start::Asking`], the time it stops
    /// waiting for dom0's answer).
    pub fn prove(&mut self, add_at: Ms, start: Start, sb: SbFacts) {
        let episode = self.episode_or_new(0);
        self.step(
            "prove",
            |s| {
                matches!(
                    s,
                    LegState::Failed {
                        probe: NextProbe::UnderWay,
                        ..
                    }
                )
            },
            LegState::Waiting {
                add_at,
                start,
                sb,
                episode,
            },
        );
    }

    /// How a waiting leg waits, if it does.
    pub fn start(&self) -> Option<Start> {
        match self.state {
            LegState::Waiting { start, .. } => Some(start),
            _ => None,
        }
    }

    /// Waiting for dom0's turn (asked, or queued).
    pub fn awaits_turn(&self) -> bool {
        asking(&self.state)
    }

    /// Probes and reconnects that failed in a row in this failure episode.
    pub fn failures(&self) -> u32 {
        self.state.episode().map_or(0, |e| e.failures)
    }

    /// dom0 granted this leg its turn earlier in this failure episode.
    pub fn granted_before(&self) -> bool {
        self.state.episode().is_some_and(|e| e.granted)
    }

    /// This waiting leg with `add_at` and `start` replaced (the admission
    /// edges below); its own state when it is not waiting (the edge then
    /// refuses it).
    fn rewait(&self, add_at: Ms, start: Start) -> LegState {
        match &self.state {
            LegState::Waiting { sb, episode, .. } => LegState::Waiting {
                add_at,
                start,
                sb: sb.clone(),
                episode: Episode {
                    granted: episode.granted || start == Start::Granted,
                    ..*episode
                },
            },
            other => other.clone(),
        }
    }

    /// waiting (asking) -> waiting (granted, add due `now`): dom0's
    /// coordinator granted its turn.
    pub fn grant(&mut self, now: Ms) {
        let to = self.rewait(now, Start::Granted);
        self.step("grant", asking, to);
    }

    /// waiting (asking) -> waiting (queued until `until`): dom0's coordinator
    /// queued it, and lives: wait on.
    pub fn hold(&mut self, until: Ms) {
        let to = self.rewait(until, Start::Queued);
        self.step("hold", asking, to);
    }

    /// waiting (asking) -> waiting (jitter, add due at `add_at`): no answer
    /// from dom0 in time, or the coordinator went away.
    pub fn fall_back(&mut self, add_at: Ms) {
        let to = self.rewait(add_at, Start::Jitter);
        self.step("fall_back", asking, to);
    }

    /// failed (probe under way) | waiting | confirming -> refused: its superblock
    /// does not prove it, there is no in-sync leg to check its history against,
    /// or its history does not fit the array's.
    pub fn refuse(&mut self, reason: Refusal) {
        self.step(
            "refuse",
            |s| {
                matches!(
                    s,
                    LegState::Failed {
                        probe: NextProbe::UnderWay,
                        ..
                    } | LegState::Waiting { .. }
                        | LegState::Confirming { .. }
                )
            },
            LegState::Refused { reason },
        );
    }

    /// waiting -> confirming: the add time has come; the leg and a witness are
    /// read again first.
    pub fn start_confirm(&mut self) {
        let LegState::Waiting { sb, episode, .. } = &self.state else {
            debug_assert!(
                false,
                "{}/{}: start_confirm from {:?}",
                self.array, self.device, self.state
            );
            return;
        };
        let to = LegState::Confirming {
            sb: sb.clone(),
            episode: *episode,
        };
        self.step(
            "start_confirm",
            |s| matches!(s, LegState::Waiting { .. }),
            to,
        );
    }

    /// The superblock that proved the leg, while it waits or is confirmed.
    pub fn proven(&self) -> Option<&SbFacts> {
        match &self.state {
            LegState::Waiting { sb, .. } | LegState::Confirming { sb, .. } => Some(sb),
            _ => None,
        }
    }

    /// confirming -> failed, probe due at once: its superblock moved between the
    /// probe that proved it and the read before the add.
    pub fn recheck(&mut self, now: Ms) {
        let episode = self.episode_or_new(0);
        self.step(
            "recheck",
            |s| matches!(s, LegState::Confirming { .. }),
            LegState::Failed {
                probe: NextProbe::At(now),
                episode,
            },
        );
    }

    /// How the add is attempted. Without a bitmap only a full recovery (as a
    /// spare) is safe, and only once md no longer lists the member; with one, a
    /// sysfs re-add while md still lists the member and has not refused one, else
    /// ADD_NEW_DISK into the slot the proving superblock names. `None`: nothing
    /// safe is left to try without an admin.
    pub fn next_attempt(&self, policy: AddPolicy) -> Option<Attempt> {
        let LegState::Confirming { sb, episode } = &self.state else {
            return None;
        };
        if !policy.bitmap {
            return (policy.full_recovery && !self.bound).then_some(Attempt::Spare);
        }
        if self.bound && !episode.readd_refused {
            return Some(Attempt::ReAdd);
        }
        // the verdict accepts only an active role, so the slot is always known
        let role = match sb.role {
            Role::Active(r) => Some(r),
            _ => self.role,
        };
        Some(match role {
            Some(role) => Attempt::InSlot {
                role,
                dev_number: sb.dev_number,
            },
            None => Attempt::Spare,
        })
    }

    /// confirming -> adding: confirmed; returns the action to carry out, or None
    /// when [`Leg::next_attempt`] has nothing to try (the leg stays confirming).
    pub fn start_add(&mut self, policy: AddPolicy) -> Option<Action> {
        let attempt = self.next_attempt(policy)?;
        let episode = self.episode_or_new(0);
        if let LegState::Confirming { sb, .. } = &self.state {
            self.copy = sb.written_sectors.map(|from_sectors| CopyWatch {
                full: attempt == Attempt::Spare,
                from_sectors,
            });
        }
        self.step(
            "start_add",
            |s| matches!(s, LegState::Confirming { .. }),
            LegState::Adding { attempt, episode },
        );
        Some(attempt.action(&self.array, &self.device, self.flags))
    }

    /// confirming -> needs-admin: confirmed, but no add is safe without an admin
    /// (no bitmap, and full recovery is off in the config).
    pub fn hold_for_admin(&mut self) {
        self.step(
            "hold_for_admin",
            |s| matches!(s, LegState::Confirming { .. }),
            LegState::NeedsAdmin,
        );
    }

    /// The attempt under way, if adding.
    pub fn adding(&self) -> Option<Attempt> {
        match self.state {
            LegState::Adding { attempt, .. } => Some(attempt),
            _ => None,
        }
    }

    /// adding -> healthy: the (re-)add went through.
    pub fn added(&mut self, now: Ms) {
        self.added_at = Some(now);
        self.bound = true;
        self.syncing = true;
        self.step(
            "added",
            |s| matches!(s, LegState::Adding { .. }),
            LegState::HEALTHY,
        );
    }

    /// adding (sysfs re-add) -> removing: md refused the re-add; the leg is
    /// removed to be added through ADD_NEW_DISK.
    pub fn readd_refused(&mut self) {
        let mut episode = self.episode_or_new(0);
        episode.readd_refused = true;
        self.step(
            "readd_refused",
            |s| {
                matches!(
                    s,
                    LegState::Adding {
                        attempt: Attempt::ReAdd,
                        ..
                    }
                )
            },
            LegState::Removing { episode },
        );
    }

    /// adding (in its slot) -> adding (as a spare): full recovery.
    pub fn add_as_spare(&mut self) -> Action {
        let episode = self.episode_or_new(0);
        if let Some(c) = self.copy.as_mut() {
            c.full = true;
        }
        self.step(
            "add_as_spare",
            |s| {
                matches!(
                    s,
                    LegState::Adding {
                        attempt: Attempt::InSlot { .. },
                        ..
                    }
                )
            },
            LegState::Adding {
                attempt: Attempt::Spare,
                episode,
            },
        );
        Attempt::Spare.action(&self.array, &self.device, self.flags)
    }

    /// adding -> needs-admin: no add left to try.
    pub fn give_up(&mut self) {
        self.step(
            "give_up",
            |s| matches!(s, LegState::Adding { .. }),
            LegState::NeedsAdmin,
        );
    }

    /// failed (probe due) | confirming -> removing: md must let go of it (before a
    /// reconnect, or before a full recovery, which needs an unbound device).
    pub fn start_remove(&mut self) {
        let episode = self.episode_or_new(0);
        self.step(
            "start_remove",
            |s| {
                matches!(
                    s,
                    LegState::Failed {
                        probe: NextProbe::At(_),
                        ..
                    } | LegState::Confirming { .. }
                )
            },
            LegState::Removing { episode },
        );
    }

    /// removing -> failed: removed; probed at once (`probe` UnderWay) or after
    /// the reconnect (`At(now)`).
    pub fn removed(&mut self, probe: NextProbe) {
        self.bound = false;
        let episode = self.episode_or_new(0);
        self.step(
            "removed",
            |s| matches!(s, LegState::Removing { .. }),
            LegState::Failed { probe, episode },
        );
    }

    /// removing -> failed: md would not let go (EBUSY while I/O is pending);
    /// tried again at `retry_at`.
    pub fn remove_refused(&mut self, retry_at: Ms) {
        let episode = self.episode_or_new(0);
        self.step(
            "remove_refused",
            |s| matches!(s, LegState::Removing { .. }),
            LegState::Failed {
                probe: NextProbe::At(retry_at),
                episode,
            },
        );
    }

    /// failed (not probing) -> reconnecting: the disk's reconnect command runs.
    pub fn start_reconnect(&mut self) {
        let episode = self.episode_or_new(0);
        self.step(
            "start_reconnect",
            |s| {
                matches!(
                    s,
                    LegState::Failed {
                        probe: NextProbe::At(_),
                        ..
                    }
                )
            },
            LegState::Reconnecting { episode },
        );
    }

    /// reconnecting -> failed (probe under way): the reconnect command succeeded.
    pub fn reconnected(&mut self) {
        let episode = self.episode_or_new(0);
        self.step(
            "reconnected",
            |s| matches!(s, LegState::Reconnecting { .. }),
            LegState::Failed {
                probe: NextProbe::UnderWay,
                episode,
            },
        );
    }
}

/// Waiting for dom0's turn: the states the admission edges accept.
fn asking(s: &LegState) -> bool {
    matches!(
        s,
        LegState::Waiting {
            start: Start::Asking | Start::Queued,
            ..
        }
    )
}

#[cfg(test)]
mod tests {
    use super::Phase;
    use std::collections::BTreeSet;

    const DOC: &str = include_str!("../../docs/leg-states.md");
    const FILE: &str = include_str!("leg.rs");

    /// This file without its tests.
    fn code() -> &'static str {
        FILE.split("#[cfg(test)]\nmod tests").next().expect("code")
    }

    fn words() -> BTreeSet<&'static str> {
        Phase::ALL.iter().map(|p| p.as_str()).collect()
    }

    /// The ```text block of the doc, and of this file's module comment.
    fn diagrams() -> (String, String) {
        let doc = DOC.split("```text\n").nth(1).expect("a diagram in the doc");
        let doc = doc.split("```").next().expect("closed").to_string();
        let src: String = FILE
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .map(|l| l.trim_start_matches("//!").strip_prefix(' ').unwrap_or(""))
            .skip_while(|l| *l != "```text")
            .skip(1)
            .take_while(|l| *l != "```")
            .map(|l| format!("{l}\n"))
            .collect();
        (doc, src)
    }

    /// (from words, edge, to word) of each row of the doc's transitions table.
    fn transitions() -> Vec<(Vec<String>, String, String)> {
        let table = DOC
            .split("## Transitions")
            .nth(1)
            .expect("a transitions table");
        table
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| {
                let cols: Vec<&str> = l.split('|').map(str::trim).collect();
                let unquote = |w: &str| w.trim().trim_matches('`').to_string();
                (
                    cols[1].split(',').map(unquote).collect(),
                    unquote(cols[2]),
                    unquote(cols[3]),
                )
            })
            .collect()
    }

    #[test]
    fn the_diagram_in_the_doc_is_the_one_in_the_code() {
        let (doc, src) = diagrams();
        assert!(!doc.is_empty());
        assert_eq!(doc, src, "docs/leg-states.md and leg.rs's diagram differ");
    }

    /// A state added to the enum but not to the diagram (or a word in the
    /// diagram that is no state) fails here.
    #[test]
    fn the_diagram_names_every_state_and_only_states() {
        let (doc, _) = diagrams();
        let named: BTreeSet<&str> = doc
            .split('[')
            .skip(1)
            .filter_map(|s| s.split_once(']').map(|(w, _)| w))
            .collect();
        assert_eq!(named, words());
    }

    #[test]
    fn the_transitions_table_covers_every_state_and_every_edge() {
        let rows = transitions();
        let mut seen = BTreeSet::new();
        for (from, edge, to) in &rows {
            for w in from.iter().chain([to]) {
                assert!(
                    words().contains(w.as_str()),
                    "{w} (edge {edge}) is no state"
                );
                seen.insert(w.clone());
            }
            assert!(
                code().contains(&format!("pub fn {edge}(")),
                "edge {edge} is no method of Leg"
            );
        }
        let all: BTreeSet<String> = words().iter().map(|w| w.to_string()).collect();
        assert_eq!(seen, all, "a state without a transition");
        // every edge of the code is in the table
        let edges: BTreeSet<&str> = rows.iter().map(|(_, e, _)| e.as_str()).collect();
        let in_code: BTreeSet<&str> = code()
            .split("self.step(")
            .skip(1)
            .map(|step| step.split('"').nth(1).expect("an edge name"))
            .collect();
        assert_eq!(edges, in_code, "the doc's edges and the code's differ");
    }

    #[test]
    fn published_words_stay() {
        let w: Vec<&str> = Phase::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(
            w,
            [
                "healthy",
                "failed",
                "removing",
                "reconnecting",
                "waiting",
                "confirming",
                "adding",
                "flapping",
                "refused",
                "failing",
                "needs-admin"
            ]
        );
    }
}
