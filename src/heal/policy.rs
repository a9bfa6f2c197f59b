//! decide: the healing policy as a deterministic state machine with no I/O.
//!
//! The daemon feeds it what it observed (a [`Snapshot`], probe results, the outcome
//! of each action it carried out, block devices that appeared, dom0's hints) with the
//! current time, and gets back [`Action`]s to carry out. Nothing here touches the
//! kernel, the clock or the network, so every rule is unit-tested on its own; the
//! actions themselves are proven on a real kernel in the VM harness.
//!
//! A leg's life, as this engine sees it:
//!
//! ```text
//! healthy --(member faulty)--> failed --probe ok, sb proves membership--> re-add
//!    ^                           |  \--probe fails--> back off, probe again
//!    |                           \--reconnect configured--> remove -> reconnect -> probe -> add
//!    +---(in sync again)--- recovering <--- added
//! a leg that fails again soon after each re-add is flapping: exponential backoff,
//! then no more re-adds until it stays healthy or dom0 asks for a probe.
//! ```

use crate::config::{same_uuid, Config};
use crate::md::model::{Array, Snapshot, SyncAction, SyncState};
use std::collections::BTreeMap;
use std::fmt;

/// Milliseconds on a monotonic clock.
pub type Ms = u64;

const SEC: Ms = 1000;

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

/// Per-array memory: identity and the speed limits to restore.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArrayMem {
    pub uuid: Option<String>,
    /// Highest event count seen on an in-sync member's superblock.
    pub events: Option<u64>,
    /// sync_speed_min/max as they were before mdguard changed them
    /// (`None` inside = `system`).
    pub saved_speed: Option<(Option<u64>, Option<u64>)>,
    /// What mdguard last wrote.
    pub set_speed: Option<(Option<u64>, Option<u64>)>,
    pub recovery_started: Option<Ms>,
    pub write_pending_since: Option<Ms>,
    pub stalled: bool,
}

/// Inputs besides md's state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Env {
    /// `some avg10` of /proc/pressure/io, percent.
    pub io_pressure: Option<f64>,
    /// Resync budget for the whole guest from dom0, KiB/s.
    pub budget_kbps: Option<u64>,
}

/// The policy engine. Deterministic: same inputs, same actions.
#[derive(Debug, Clone)]
pub struct Engine {
    pub config: Config,
    pub legs: BTreeMap<(String, String), Leg>,
    pub arrays: BTreeMap<String, ArrayMem>,
    /// Devices whose superblock was refused, to log once.
    refused_logged: Vec<String>,
    /// Devices seen appearing that may be a returning leg.
    candidates: Vec<String>,
    /// The managed arrays as last seen (to judge a sibling's array).
    last: Vec<Array>,
    rng: u64,
}

fn log(level: Level, message: String) -> Action {
    Action::Log { level, message }
}

impl Engine {
    pub fn new(config: Config, seed: u64) -> Engine {
        Engine {
            config,
            legs: BTreeMap::new(),
            arrays: BTreeMap::new(),
            refused_logged: Vec::new(),
            candidates: Vec::new(),
            last: Vec::new(),
            rng: seed | 1,
        }
    }

    fn jitter(&mut self) -> Ms {
        let max = self.config.throttle.jitter_s * SEC;
        if max == 0 {
            return 0;
        }
        // xorshift64: good enough to spread a host's guests over a few seconds
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % (max + 1)
    }

    fn managed(&self, s: &Snapshot) -> Vec<Array> {
        let c = &self.config;
        s.arrays.iter().filter(|a| {
            c.manages(&a.name, a.uuid.as_deref(), a.level.as_deref())
                && matches!(a.array_state.as_deref(), Some(st) if !matches!(st, "inactive" | "clear" | "broken" | "readonly"))
        }).cloned().collect()
    }

    /// Legs of one array in a given phase (for reports).
    pub fn legs_of(&self, array: &str) -> impl Iterator<Item = &Leg> {
        let array = array.to_string();
        self.legs.values().filter(move |l| l.array == array)
    }

    /// The main step: md's state changed (or a timer fired).
    pub fn on_snapshot(&mut self, snap: &Snapshot, env: &Env, now: Ms) -> Vec<Action> {
        let mut out = Vec::new();
        let managed = self.managed(snap);
        self.last = managed.clone();
        for a in &managed {
            let mem = self.arrays.entry(a.name.clone()).or_default();
            if a.uuid.is_some() {
                mem.uuid = a.uuid.clone();
            }
            self.track_members(a, now, &mut out);
            self.track_stall(a, now, &mut out);
        }
        // Legs of arrays that vanished are forgotten.
        let names: Vec<&str> = managed.iter().map(|a| a.name.as_str()).collect();
        self.legs
            .retain(|(arr, _), _| names.contains(&arr.as_str()));
        for a in &managed {
            self.advance_legs(a, now, &mut out);
        }
        self.probe_candidates(&managed, &mut out);
        self.throttle(&managed, env, now, &mut out);
        out
    }

    fn track_members(&mut self, a: &Array, now: Ms, out: &mut Vec<Action>) {
        let flap_window = self.config.heal.flap_window_s * SEC;
        let bound: Vec<&str> = a.members.iter().map(|m| m.device.as_str()).collect();
        for m in &a.members {
            let key = (a.name.clone(), m.device.clone());
            let initial = self.config.probe.initial_interval_s * SEC;
            let leg = self.legs.entry(key).or_insert_with(|| Leg {
                array: a.name.clone(),
                device: m.device.clone(),
                role: m.slot,
                phase: Phase::Healthy,
                bound: true,
                failed_at: None,
                added_at: None,
                flaps: 0,
                next_probe: 0,
                probe_interval: initial,
                probing: false,
                add_at: 0,
                sb: None,
                tried_readd: false,
                tried_add_role: false,
            });
            leg.bound = true;
            if m.faulty {
                if matches!(leg.phase, Phase::Healthy | Phase::Failing) {
                    // a new failure
                    leg.failed_at = Some(now);
                    leg.tried_readd = false;
                    leg.tried_add_role = false;
                    let soon = leg
                        .added_at
                        .is_some_and(|t| now.saturating_sub(t) < flap_window);
                    if soon {
                        leg.flaps += 1;
                    }
                    let backoff = if leg.flaps > 0 {
                        let b = self.config.heal.flap_backoff_s * SEC;
                        b.saturating_mul(1 << (leg.flaps - 1).min(20))
                            .min(self.config.heal.flap_backoff_max_s * SEC)
                    } else {
                        initial
                    };
                    if leg.flaps >= self.config.heal.flap_limit {
                        leg.phase = Phase::Flapping;
                        out.push(log(
                            Level::Error,
                            format!(
                                "{}: leg {} is flapping ({} failures soon after re-add): not re-adding it again until it stays healthy or dom0 asks for a probe",
                                a.name, m.device, leg.flaps
                            ),
                        ));
                    } else {
                        leg.phase = Phase::Failed;
                        leg.probe_interval = initial;
                        leg.next_probe = now + backoff;
                        out.push(log(
                            Level::Warn,
                            format!(
                                "{}: leg {} failed{}; probing it in {}s",
                                a.name,
                                m.device,
                                if leg.flaps > 0 {
                                    format!(
                                        " again {}s after its re-add (flap {})",
                                        now.saturating_sub(leg.added_at.unwrap_or(now)) / SEC,
                                        leg.flaps
                                    )
                                } else {
                                    String::new()
                                },
                                backoff / SEC
                            ),
                        ));
                    }
                }
            } else {
                if m.slot.is_some() {
                    leg.role = m.slot;
                }
                if !matches!(leg.phase, Phase::Healthy | Phase::Removing | Phase::Failing) {
                    out.push(log(
                        Level::Info,
                        format!("{}: leg {} is back in the array", a.name, m.device),
                    ));
                    leg.phase = Phase::Healthy;
                }
                // a leg that stayed healthy through the flap window is forgiven
                if leg.flaps > 0
                    && m.in_sync()
                    && leg
                        .added_at
                        .is_some_and(|t| now.saturating_sub(t) >= flap_window)
                {
                    leg.flaps = 0;
                }
            }
        }
        // Legs no longer bound: removed by us, by an admin, or the node vanished.
        for leg in self.legs.values_mut().filter(|l| l.array == a.name) {
            if !bound.contains(&leg.device.as_str()) && leg.bound {
                leg.bound = false;
                if leg.phase == Phase::Healthy {
                    // removed while healthy (admin action): not ours to bring back
                    // unless the array is degraded and the sb proves it.
                    leg.phase = Phase::Failed;
                    leg.failed_at = Some(now);
                    leg.next_probe = now + leg.probe_interval;
                }
            }
        }
        // Forget healthy legs that are gone and never failed.
        self.legs
            .retain(|_, l| l.bound || l.phase != Phase::Healthy || l.array != a.name);
        // Recovery bookkeeping
        let mem = self.arrays.entry(a.name.clone()).or_default();
        // md flips sync_action to `recover` for a moment when a leg fails and there
        // is nothing to recover onto: a recovery starts when a member is rebuilt.
        let rebuilding = a
            .members
            .iter()
            .any(|m| m.slot.is_some() && !m.in_sync() && !m.faulty)
            || a.sync
                .as_ref()
                .is_some_and(|s| s.action == SyncAction::Resync);
        let running = a
            .sync
            .as_ref()
            .is_some_and(|s| s.action.restores() && s.state == SyncState::Running);
        match mem.recovery_started {
            None if running && rebuilding => {
                mem.recovery_started = Some(now);
                let action = a
                    .sync
                    .as_ref()
                    .map(|s| s.action.as_str())
                    .unwrap_or("resync");
                out.push(log(Level::Info, format!("{}: {action} started", a.name)));
            }
            Some(t) if !running => {
                mem.recovery_started = None;
                out.push(log(
                    Level::Info,
                    format!(
                        "{}: recovery finished after {}s; array is {}",
                        a.name,
                        now.saturating_sub(t) / SEC,
                        a.health
                    ),
                ));
            }
            _ => {}
        }
    }

    fn track_stall(&mut self, a: &Array, now: Ms, out: &mut Vec<Action>) {
        let limit = self.config.heal.stall_timeout_s * SEC;
        let mem = self.arrays.entry(a.name.clone()).or_default();
        if a.array_state.as_deref() == Some("write-pending") {
            let since = *mem.write_pending_since.get_or_insert(now);
            if now.saturating_sub(since) >= limit && !mem.stalled {
                mem.stalled = true;
                out.push(log(
                    Level::Error,
                    format!(
                        "{}: writes stalled for {}s (a leg's storage hangs without a transport timeout?)",
                        a.name,
                        now.saturating_sub(since) / SEC
                    ),
                ));
            }
        } else {
            if mem.stalled {
                out.push(log(Level::Info, format!("{}: writes flow again", a.name)));
            }
            mem.write_pending_since = None;
            mem.stalled = false;
        }
    }

    /// When the next timer should fire, if any leg waits for one.
    pub fn next_deadline(&self) -> Option<Ms> {
        self.legs
            .values()
            .filter_map(|l| match l.phase {
                Phase::Failed if !l.probing => Some(l.next_probe),
                Phase::Waiting => Some(l.add_at),
                _ => None,
            })
            .min()
            .into_iter()
            .chain(self.arrays.values().filter_map(|m| {
                m.write_pending_since
                    .filter(|_| !m.stalled)
                    .map(|t| t + self.config.heal.stall_timeout_s * SEC)
            }))
            .min()
    }

    fn advance_legs(&mut self, a: &Array, now: Ms, out: &mut Vec<Action>) {
        let keys: Vec<(String, String)> = self
            .legs
            .keys()
            .filter(|k| k.0 == a.name)
            .cloned()
            .collect();
        for k in keys {
            let reconnect = self.config.reconnect_for(&k.1).is_some();
            let leg = self.legs.get_mut(&k).expect("key from map");
            match leg.phase {
                Phase::Failed if !leg.probing && now >= leg.next_probe => {
                    if reconnect && leg.bound {
                        // nbd cannot reconnect while md holds the device
                        leg.phase = Phase::Removing;
                        out.push(Action::Remove {
                            array: a.name.clone(),
                            device: leg.device.clone(),
                        });
                    } else if reconnect && !leg.bound {
                        let dev = leg.device.clone();
                        self.try_reconnect(&dev, now, out);
                    } else {
                        leg.probing = true;
                        out.push(Action::Probe {
                            device: leg.device.clone(),
                        });
                    }
                }
                Phase::Waiting if now >= leg.add_at => {
                    if !array_wants_leg(a, leg) {
                        continue;
                    }
                    leg.phase = Phase::Adding;
                    out.push(self_add_action(a, leg));
                }
                _ => {}
            }
        }
    }

    /// Reconnect the disk of `dev` once nothing of it is held by md any more:
    /// faulty siblings are removed on their own; a sibling md has not noticed is
    /// failed first when its array keeps another in-sync leg.
    fn try_reconnect(&mut self, dev: &str, now: Ms, out: &mut Vec<Action>) {
        let Some(disk) = self.config.reconnect_for(dev).map(|r| r.device.clone()) else {
            return;
        };
        let on = |l: &Leg| crate::config::on_disk(&l.device, &disk);
        if self
            .legs
            .values()
            .any(|l| on(l) && l.phase == Phase::Reconnecting)
        {
            return;
        }
        let mut blocked = false;
        let sibs: Vec<(String, String)> = self
            .legs
            .iter()
            .filter(|(_, l)| on(l) && l.bound)
            .map(|(k, _)| k.clone())
            .collect();
        for k in sibs {
            blocked = true;
            let other_in_sync = self.last.iter().any(|a| {
                a.name == k.0
                    && a.members
                        .iter()
                        .any(|m| m.device != k.1 && m.in_sync() && !m.faulty && m.slot.is_some())
            });
            let leg = self.legs.get_mut(&k).expect("key from map");
            if leg.phase == Phase::Healthy {
                if other_in_sync {
                    leg.phase = Phase::Failing;
                    out.push(log(
                        Level::Warn,
                        format!(
                            "{}: failing {} (its disk {disk} lost its transport and must be reconnected)",
                            k.0, k.1
                        ),
                    ));
                    out.push(Action::Fail {
                        array: k.0.clone(),
                        device: k.1.clone(),
                    });
                } else if leg.next_probe <= now {
                    leg.next_probe = now + self.config.probe.max_interval_s * SEC;
                    out.push(log(
                        Level::Error,
                        format!(
                            "{disk}: cannot be reconnected: {} in {} is its array's only in-sync leg",
                            k.1, k.0
                        ),
                    ));
                }
            }
        }
        if blocked {
            // re-checked when a sibling's remove finishes, or at the next interval
            for l in self.legs.values_mut().filter(|l| on(l) && !l.bound) {
                if l.phase == Phase::Failed && l.next_probe <= now {
                    l.next_probe = now + l.probe_interval;
                }
            }
            return;
        }
        for l in self.legs.values_mut().filter(|l| on(l)) {
            if l.phase == Phase::Failed && !l.probing {
                l.phase = Phase::Reconnecting;
            }
        }
        out.push(Action::Reconnect { device: disk });
    }

    /// A block device appeared or changed (uevent): it may be a returning leg.
    pub fn on_device(&mut self, device: &str) {
        if !self.candidates.iter().any(|d| d == device) {
            self.candidates.push(device.to_string());
        }
        // a device that changed may now carry another superblock
        self.refused_logged.retain(|d| d != device);
        // a failed leg that reappears: probe it now rather than at the next backoff
        for leg in self.legs.values_mut().filter(|l| l.device == device) {
            if matches!(leg.phase, Phase::Failed | Phase::Refused) && !leg.probing {
                leg.phase = Phase::Failed;
                leg.next_probe = 0;
            }
        }
    }

    fn probe_candidates(&mut self, managed: &[Array], out: &mut Vec<Action>) {
        if self.candidates.is_empty() {
            return;
        }
        let any_degraded = managed.iter().any(|a| a.degraded.unwrap_or(0) > 0);
        let cands = std::mem::take(&mut self.candidates);
        if !any_degraded {
            return;
        }
        for d in cands {
            // a leg mdguard is already bringing back is not a stranger
            let known_leg = self
                .legs
                .values()
                .any(|l| l.device == d && (l.bound || l.phase != Phase::Healthy));
            let in_any = managed
                .iter()
                .any(|a| a.members.iter().any(|m| m.device == d));
            if !known_leg && !in_any {
                out.push(Action::Probe { device: d });
            }
        }
    }

    /// dom0 says storage is back: probe every failed or flapping leg now.
    pub fn on_probe_hint(&mut self, now: Ms) -> Vec<Action> {
        let mut out = Vec::new();
        for leg in self.legs.values_mut() {
            if matches!(
                leg.phase,
                Phase::Failed | Phase::Flapping | Phase::NeedsAdmin
            ) {
                if leg.phase == Phase::Flapping {
                    leg.flaps = 0;
                }
                leg.phase = Phase::Failed;
                leg.next_probe = now;
                leg.probe_interval = self.config.probe.initial_interval_s * SEC;
            }
        }
        self.refused_logged.clear();
        out.push(log(
            Level::Info,
            "dom0 asked for a probe: probing every failed leg now".into(),
        ));
        out
    }

    /// A probe finished.
    pub fn on_probe(
        &mut self,
        snap: &Snapshot,
        device: &str,
        outcome: ProbeOutcome,
        now: Ms,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let max = self.config.probe.max_interval_s * SEC;
        let legs: Vec<(String, String)> = self
            .legs
            .iter()
            .filter(|(_, l)| l.device == device && l.probing)
            .map(|(k, _)| k.clone())
            .collect();
        if legs.is_empty() {
            // a candidate device (new node): match it to an array by superblock
            self.match_candidate(snap, device, &outcome, now, &mut out);
            return out;
        }
        for k in legs {
            let arr = snap.arrays.iter().find(|a| a.name == k.0).cloned();
            let jitter = self.jitter();
            let mem = self.arrays.get(&k.0).cloned().unwrap_or_default();
            let leg = self.legs.get_mut(&k).expect("key from map");
            leg.probing = false;
            match &outcome {
                ProbeOutcome::Failed(_) | ProbeOutcome::TimedOut => {
                    leg.probe_interval = (leg.probe_interval * 2).min(max);
                    leg.next_probe = now + leg.probe_interval;
                    leg.phase = Phase::Failed;
                    if leg.probe_interval == max || leg.probe_interval <= 4 * SEC {
                        let why = match &outcome {
                            ProbeOutcome::Failed(e) => e.clone(),
                            _ => "timed out".into(),
                        };
                        out.push(log(
                            Level::Info,
                            format!(
                                "{}: leg {} still unusable ({why}); next probe in {}s",
                                k.0,
                                leg.device,
                                leg.probe_interval / SEC
                            ),
                        ));
                    }
                }
                ProbeOutcome::Readable { sb } => {
                    let Some(a) = arr else { continue };
                    match verdict(&a, &mem, leg.role, sb.as_ref()) {
                        Ok(()) => {
                            leg.sb = sb.clone();
                            leg.phase = Phase::Waiting;
                            leg.add_at = now + jitter;
                            out.push(log(
                                Level::Info,
                                format!(
                                    "{}: leg {} answers again and its superblock proves it belongs here; re-adding{}",
                                    k.0,
                                    leg.device,
                                    if jitter > 0 {
                                        format!(" in {:.1}s (start jitter)", jitter as f64 / 1000.0)
                                    } else {
                                        String::new()
                                    }
                                ),
                            ));
                            if jitter == 0 && array_wants_leg(&a, leg) {
                                leg.phase = Phase::Adding;
                                out.push(self_add_action(&a, leg));
                            }
                        }
                        Err(why) => {
                            leg.phase = Phase::Refused;
                            out.push(log(
                                Level::Error,
                                format!(
                                    "{}: leg {} answers but will not be re-added: {why}",
                                    k.0, leg.device
                                ),
                            ));
                        }
                    }
                }
            }
        }
        out
    }

    fn match_candidate(
        &mut self,
        snap: &Snapshot,
        device: &str,
        outcome: &ProbeOutcome,
        now: Ms,
        out: &mut Vec<Action>,
    ) {
        let ProbeOutcome::Readable { sb: Some(sb) } = outcome else {
            return;
        };
        let managed = self.managed(snap);
        let Some(a) = managed
            .iter()
            .find(|a| a.uuid.as_deref().is_some_and(|u| same_uuid(u, &sb.uuid)))
        else {
            if !self.refused_logged.iter().any(|d| d == device) {
                self.refused_logged.push(device.to_string());
                out.push(log(
                    Level::Info,
                    format!(
                        "{device}: carries md superblock {} of no array mdguard manages; not touched",
                        sb.uuid
                    ),
                ));
            }
            return;
        };
        let mem = self.arrays.get(&a.name).cloned().unwrap_or_default();
        let role = match sb.role {
            SbRole::Active(r) => Some(r),
            _ => None,
        };
        if let Err(why) = verdict(a, &mem, role, Some(sb)) {
            if !self.refused_logged.iter().any(|d| d == device) {
                self.refused_logged.push(device.to_string());
                out.push(log(
                    Level::Error,
                    format!("{device}: not added to {}: {why}", a.name),
                ));
            }
            return;
        }
        let jitter = self.jitter();
        let leg = Leg {
            array: a.name.clone(),
            device: device.to_string(),
            role,
            phase: Phase::Waiting,
            bound: false,
            failed_at: None,
            added_at: None,
            flaps: 0,
            next_probe: 0,
            probe_interval: self.config.probe.initial_interval_s * SEC,
            probing: false,
            add_at: now + jitter,
            sb: Some(sb.clone()),
            tried_readd: true,
            tried_add_role: false,
        };
        out.push(log(
            Level::Info,
            format!(
                "{}: new device {device} carries this array's superblock (role {}): adding it",
                a.name,
                role.map(|r| r.to_string())
                    .unwrap_or_else(|| "spare".into())
            ),
        ));
        // a member md still lists as faulty (the vbd this device replaces: xvdc
        // detached and attached again as xvdd) keeps its descriptor number, and
        // ADD_NEW_DISK with that number fails with EBUSY until it is removed
        // (seen in Xen): remove it and forget it. Only that one: another faulty
        // leg may still come back on its own node.
        for m in a
            .members
            .iter()
            .filter(|m| m.faulty && m.device != device && m.descriptor == Some(sb.dev_number))
        {
            out.push(log(
                Level::Info,
                format!(
                    "{}: removing faulty {} so {device} can take its place",
                    a.name, m.device
                ),
            ));
            out.push(Action::Remove {
                array: a.name.clone(),
                device: m.device.clone(),
            });
            self.legs.remove(&(a.name.clone(), m.device.clone()));
        }
        let key = (a.name.clone(), device.to_string());
        self.legs.insert(key.clone(), leg);
        if jitter == 0 {
            let leg = self.legs.get_mut(&key).expect("just inserted");
            leg.phase = Phase::Adding;
            out.push(self_add_action(a, leg));
        }
    }

    /// An action finished.
    pub fn on_outcome(&mut self, action: &Action, outcome: &Outcome, now: Ms) -> Vec<Action> {
        let mut out = Vec::new();
        let key = match action {
            Action::ReAdd { array, device }
            | Action::Remove { array, device }
            | Action::Add { array, device, .. } => (array.clone(), device.clone()),
            Action::Reconnect { device } => {
                self.reconnected(device, outcome, now, &mut out);
                return out;
            }
            Action::Fail { array, device } => {
                if let Outcome::Failed(e) = outcome {
                    out.push(log(
                        Level::Warn,
                        format!("{array}: could not fail {device} ({e})"),
                    ));
                    if let Some(l) = self.legs.get_mut(&(array.clone(), device.clone())) {
                        if l.phase == Phase::Failing {
                            l.phase = Phase::Healthy;
                        }
                    }
                }
                return out;
            }
            Action::SetSpeed { array, .. } => {
                if let Outcome::Failed(e) = outcome {
                    out.push(log(
                        Level::Warn,
                        format!("{array}: could not set sync speed limits: {e}"),
                    ));
                }
                return out;
            }
            _ => return out,
        };
        let full_recovery = self.config.heal.full_recovery;
        let initial = self.config.probe.initial_interval_s * SEC;
        let reconnect = self.config_reconnect(&key.1);
        let Some(leg) = self.legs.get_mut(&key) else {
            return out;
        };
        let (arr, dev) = (key.0.clone(), key.1.clone());
        // an outcome for a step the leg is no longer at (overtaken by events) is stale
        let expected = match action {
            Action::ReAdd { .. } | Action::Add { .. } => Phase::Adding,
            _ => Phase::Removing,
        };
        if leg.phase != expected {
            return out;
        }
        match (action, outcome) {
            (Action::ReAdd { .. }, Outcome::Done) | (Action::Add { .. }, Outcome::Done) => {
                leg.added_at = Some(now);
                leg.phase = Phase::Healthy;
                leg.bound = true;
                out.push(log(
                    Level::Info,
                    format!(
                        "{arr}: re-added {dev}{}",
                        match action {
                            Action::Add { role: None, .. } => " as a spare for a full recovery",
                            _ => " (the bitmap limits the resync to what changed)",
                        }
                    ),
                ));
            }
            (Action::ReAdd { .. }, Outcome::Failed(e)) => {
                // the kernel kept no slot for it: remove and add through ADD_NEW_DISK
                leg.tried_readd = true;
                leg.phase = Phase::Removing;
                out.push(log(
                    Level::Info,
                    format!("{arr}: re-add of {dev} refused ({e}); removing it to add it back"),
                ));
                out.push(Action::Remove {
                    array: arr,
                    device: dev,
                });
            }
            (Action::Remove { .. }, Outcome::Done) => {
                leg.bound = false;
                if reconnect {
                    leg.phase = Phase::Failed;
                    self.try_reconnect(&dev, now, &mut out);
                } else {
                    leg.phase = Phase::Failed;
                    leg.probing = true;
                    out.push(Action::Probe { device: dev });
                }
            }
            (Action::Remove { .. }, Outcome::Failed(e)) => {
                // EBUSY while I/O is pending: try again at the next probe time
                leg.phase = Phase::Failed;
                leg.next_probe = now + initial;
                out.push(log(
                    Level::Warn,
                    format!("{arr}: could not remove {dev} ({e}); retrying"),
                ));
                // requests stuck on a dead nbd connection keep md from letting go
                // until the transport is torn down: the reconnect command (which
                // disconnects first) frees them; its connect may fail while md
                // still holds the device, and the next round removes and retries
                if reconnect && e == "EBUSY" {
                    if let Some(disk) = self.config.reconnect_for(&dev).map(|r| r.device.clone()) {
                        let busy = self.legs.values().any(|l| {
                            l.phase == Phase::Reconnecting
                                && crate::config::on_disk(&l.device, &disk)
                        });
                        if !busy {
                            if let Some(l) = self.legs.get_mut(&key) {
                                l.phase = Phase::Reconnecting;
                            }
                            out.push(Action::Reconnect { device: disk });
                        }
                    }
                }
            }
            (Action::Add { role: Some(_), .. }, Outcome::Failed(e)) => {
                leg.tried_add_role = true;
                if full_recovery {
                    leg.phase = Phase::Adding;
                    out.push(log(
                        Level::Warn,
                        format!(
                            "{arr}: re-add of {dev} impossible ({e}: no bitmap or events too old); adding it for a full recovery"
                        ),
                    ));
                    out.push(Action::Add {
                        array: arr,
                        device: dev,
                        role: None,
                        dev_number: None,
                    });
                } else {
                    leg.phase = Phase::NeedsAdmin;
                    out.push(log(
                        Level::Error,
                        format!(
                            "{arr}: re-add of {dev} impossible ({e}) and full recovery is off in the config: left degraded for an admin"
                        ),
                    ));
                }
            }
            (Action::Add { role: None, .. }, Outcome::Failed(e)) => {
                leg.phase = Phase::NeedsAdmin;
                out.push(log(
                    Level::Error,
                    format!("{arr}: adding {dev} failed ({e}); left for an admin"),
                ));
            }
            _ => {}
        }
        out
    }

    /// The reconnect command for `disk` finished: probe each leg on it, or back off.
    fn reconnected(&mut self, disk: &str, outcome: &Outcome, now: Ms, out: &mut Vec<Action>) {
        let max = self.config.probe.max_interval_s * SEC;
        let mut next = None;
        for l in self
            .legs
            .values_mut()
            .filter(|l| l.phase == Phase::Reconnecting && crate::config::on_disk(&l.device, disk))
        {
            match outcome {
                Outcome::Done => {
                    l.phase = Phase::Failed;
                    l.probing = true;
                    out.push(Action::Probe {
                        device: l.device.clone(),
                    });
                }
                Outcome::Failed(_) => {
                    l.phase = Phase::Failed;
                    l.probe_interval = (l.probe_interval * 2).min(max);
                    l.next_probe = now + l.probe_interval;
                    next = Some(l.probe_interval);
                }
            }
        }
        if let (Outcome::Failed(e), Some(n)) = (outcome, next) {
            out.push(log(
                Level::Info,
                format!("{disk}: reconnect failed ({e}); next try in {}s", n / SEC),
            ));
        }
    }

    fn config_reconnect(&self, dev: &str) -> bool {
        self.config.reconnect_for(dev).is_some()
    }

    fn throttle(&mut self, managed: &[Array], env: &Env, _now: Ms, out: &mut Vec<Action>) {
        let recovering: Vec<&Array> = managed
            .iter()
            .filter(|a| {
                a.sync.as_ref().is_some_and(|s| {
                    matches!(s.action, SyncAction::Recover | SyncAction::Resync)
                        && s.state == SyncState::Running
                })
            })
            .collect();
        let n = recovering.len().max(1) as u64;
        let t = &self.config.throttle;
        let busy = env.io_pressure.is_some_and(|p| p >= t.busy_pressure);
        for a in managed {
            let mem = self.arrays.entry(a.name.clone()).or_default();
            let is_rec = recovering.iter().any(|r| r.name == a.name);
            if is_rec {
                // the ceiling: config, dom0's budget shared between recovering arrays
                let mut ceiling: Option<u64> = None;
                if t.max_kbps > 0 {
                    ceiling = Some(t.max_kbps);
                }
                if let Some(b) = env.budget_kbps {
                    let share = (b / n).max(1);
                    ceiling = Some(ceiling.map_or(share, |c| c.min(share)));
                }
                if busy {
                    let base = ceiling
                        .or(a.sync_speed_max.map(|s| s.kbps))
                        .unwrap_or(200_000);
                    ceiling = Some((base / t.busy_divisor).max(1));
                }
                let min = if t.min_kbps > 0 {
                    Some(ceiling.map_or(t.min_kbps, |c| t.min_kbps.min(c)))
                } else {
                    // a floor above the ceiling would override it: keep it below
                    ceiling.and_then(|c| a.sync_speed_min.filter(|m| m.kbps > c).map(|_| c))
                };
                let want = (min, ceiling);
                if want == (None, None) && mem.set_speed.is_none() {
                    continue;
                }
                if mem.saved_speed.is_none() {
                    mem.saved_speed = Some((
                        a.sync_speed_min.filter(|s| !s.system).map(|s| s.kbps),
                        a.sync_speed_max.filter(|s| !s.system).map(|s| s.kbps),
                    ));
                }
                let saved = mem.saved_speed.expect("set above");
                let target = (want.0.or(saved.0), want.1.or(saved.1));
                if mem.set_speed != Some(target) {
                    mem.set_speed = Some(target);
                    out.push(Action::SetSpeed {
                        array: a.name.clone(),
                        min: target.0,
                        max: target.1,
                    });
                    out.push(log(
                        Level::Info,
                        format!(
                            "{}: resync throttled to {} KiB/s{}",
                            a.name,
                            target.1.map_or("system".into(), |v| v.to_string()),
                            if busy { " (guest I/O busy)" } else { "" }
                        ),
                    ));
                }
            } else if let Some(saved) = mem.saved_speed.take() {
                mem.set_speed = None;
                out.push(Action::SetSpeed {
                    array: a.name.clone(),
                    min: saved.0,
                    max: saved.1,
                });
            }
        }
    }

    /// Limits mdguard changed and must put back, per array.
    pub fn saved_speeds(&self) -> BTreeMap<String, (Option<u64>, Option<u64>)> {
        self.arrays
            .iter()
            .filter_map(|(n, m)| m.saved_speed.map(|s| (n.clone(), s)))
            .collect()
    }

    /// Limits a previous run changed and did not put back (it was killed): they are
    /// the values to restore, not what sysfs shows now.
    pub fn preload_saved_speeds(&mut self, saved: BTreeMap<String, (Option<u64>, Option<u64>)>) {
        for (n, s) in saved {
            let mem = self.arrays.entry(n).or_default();
            mem.saved_speed = Some(s);
            // unknown: what is in sysfs now was written by the previous run
            mem.set_speed = Some((Some(u64::MAX), Some(u64::MAX)));
        }
    }

    /// The speed limits to put back (on exit).
    pub fn restore_all(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        for (name, mem) in self.arrays.iter_mut() {
            if let Some(saved) = mem.saved_speed.take() {
                mem.set_speed = None;
                out.push(Action::SetSpeed {
                    array: name.clone(),
                    min: saved.0,
                    max: saved.1,
                });
            }
        }
        out
    }

    /// Record facts learnt from an in-sync member's superblock.
    pub fn note_array_sb(&mut self, array: &str, sb: &SbFacts) {
        let mem = self.arrays.entry(array.to_string()).or_default();
        if mem.uuid.is_none() {
            mem.uuid = Some(sb.uuid.clone());
        }
        mem.events = Some(mem.events.map_or(sb.events, |e| e.max(sb.events)));
    }
}

/// Is the array still missing a leg this one could fill?
fn array_wants_leg(a: &Array, leg: &Leg) -> bool {
    a.degraded.unwrap_or(0) > 0 || a.members.iter().any(|m| m.device == leg.device && m.faulty)
}

fn self_add_action(a: &Array, leg: &Leg) -> Action {
    if leg.bound && !leg.tried_readd {
        Action::ReAdd {
            array: a.name.clone(),
            device: leg.device.clone(),
        }
    } else {
        let role = match leg.sb.as_ref().map(|s| s.role) {
            Some(SbRole::Active(r)) => Some(r),
            _ => leg.role,
        };
        Action::Add {
            array: a.name.clone(),
            device: leg.device.clone(),
            role,
            dev_number: leg.sb.as_ref().map(|s| s.dev_number),
        }
    }
}

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
