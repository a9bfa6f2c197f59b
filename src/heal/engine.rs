//! The engine: the state it keeps, its inputs besides md (dom0's budget, I/O
//! pressure), and the main step. Each rule lives in its own file beside this one.

use super::action::{log, Action, Ms, ProbeOutcome, SEC};
use super::event::Event;
use super::history::History;
use super::leg::Leg;
use crate::config::Config;
use crate::md::identity::same_uuid;
use crate::md::model::{Array, Snapshot};
use crate::md::pressure::IoLoad;
use std::collections::BTreeMap;

/// Per-array memory: identity and the speed limits to restore.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArrayMem {
    pub uuid: Option<String>,
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
    /// How busy the guest's own I/O is (PSI, or its arrays' KiB/s).
    pub io_load: IoLoad,
    /// Resync budget for the whole guest from dom0, KiB/s.
    pub budget_kbps: Option<u64>,
    /// Wall-clock time, unix seconds (when a leg left its array is kept in this
    /// clock, the one md writes superblock update times in).
    pub wall_s: Option<u64>,
}

/// The policy engine. Deterministic: same inputs, same actions.
#[derive(Debug, Clone)]
pub struct Engine {
    pub config: Config,
    pub legs: BTreeMap<(String, String), Leg>,
    pub arrays: BTreeMap<String, ArrayMem>,
    /// Each leg's superblock as last read in sync, and when to read again.
    pub history: History,
    /// Devices whose superblock was refused, to log once.
    pub(super) refused_logged: Vec<String>,
    /// Devices said once not to be candidates at all (by their name alone, so a
    /// change of content does not make them one).
    pub(super) not_candidates: Vec<String>,
    /// The config's `arrays` entries that named no array, as last said.
    missing: Vec<String>,
    /// Devices seen appearing that may be a returning leg.
    pub(super) candidates: Vec<String>,
    /// The managed arrays as last seen (to judge a sibling's array).
    pub(super) last: Vec<Array>,
    /// dom0 runs a coordinator: proven legs ask for a turn instead of a jitter
    /// ([`super::admission`]).
    pub(super) coordinated: bool,
    /// The inputs besides md as last given (for the limits set between looks).
    pub(super) env: Env,
    rng: u64,
}

impl Engine {
    pub fn new(config: Config, seed: u64) -> Engine {
        Engine {
            config,
            legs: BTreeMap::new(),
            arrays: BTreeMap::new(),
            history: History::default(),
            refused_logged: Vec::new(),
            not_candidates: Vec::new(),
            missing: Vec::new(),
            candidates: Vec::new(),
            last: Vec::new(),
            coordinated: false,
            env: Env::default(),
            rng: seed | 1,
        }
    }

    pub(super) fn jitter(&mut self) -> Ms {
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

    /// The arrays of `s` this engine manages (the config picks them; only
    /// running ones).
    pub fn managed(&self, s: &Snapshot) -> Vec<Array> {
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
        self.note_missing(snap, &mut out);
        let managed = self.managed(snap);
        self.last = managed.clone();
        self.env = env.clone();
        for a in &managed {
            let mem = self.arrays.entry(a.name.clone()).or_default();
            if a.uuid.is_some() {
                mem.uuid = a.uuid.clone();
            }
            self.track_members(a, now, &mut out);
            self.track_stall(a, now, &mut out);
            self.track_history(a, env, now, &mut out);
        }
        // Legs of arrays that vanished are forgotten.
        let names: Vec<&str> = managed.iter().map(|a| a.name.as_str()).collect();
        self.legs
            .retain(|(arr, _), _| names.contains(&arr.as_str()));
        self.history.keep_arrays(&names);
        for a in &managed {
            self.advance_legs(a, now, &mut out);
        }
        self.probe_candidates(&managed, &mut out);
        self.throttle(&managed, env, now, &mut out);
        out
    }

    /// The config names arrays (by name or UUID) that md does not have: said
    /// whenever that list changes, so a typo does not manage nothing in silence.
    fn note_missing(&mut self, snap: &Snapshot, out: &mut Vec<Action>) {
        let missing: Vec<String> =
            self.config
                .arrays
                .iter()
                .filter(|x| {
                    !snap.arrays.iter().any(|a| {
                        a.name == **x || a.uuid.as_deref().is_some_and(|u| same_uuid(x, u))
                    })
                })
                .cloned()
                .collect();
        if missing != self.missing {
            if !missing.is_empty() {
                out.push(log(Event::ConfiguredArraysMissing {
                    names: missing.clone(),
                }));
            }
            self.missing = missing;
        }
    }

    /// Keep the legs' history: who left and rejoined, and read the in-sync legs
    /// when md changed (see [`super::history`]).
    fn track_history(&mut self, a: &Array, env: &Env, now: Ms, out: &mut Vec<Action>) {
        let Some(mem) = self.arrays.get(&a.name) else {
            return;
        };
        let stalled = mem.stalled || mem.write_pending_since.is_some();
        if let (Some(uuid), Some(wall)) = (mem.uuid.clone(), env.wall_s) {
            self.history.note_members(&uuid, a, wall);
        }
        if let Some(devices) = self.history.plan(a, stalled, now) {
            out.extend(devices.into_iter().map(|device| Action::Record {
                array: a.name.clone(),
                device,
            }));
        }
    }

    /// An in-sync leg read for its record ([`Action::Record`]).
    pub fn on_record(&mut self, array: &str, device: &str, outcome: &ProbeOutcome) {
        let uuid = self.arrays.get(array).and_then(|m| m.uuid.clone());
        if let (Some(uuid), ProbeOutcome::Readable { sb: Some(sb) }) = (uuid, outcome) {
            self.history.on_read(&uuid, device, sb);
        }
    }

    /// When the next timer should fire, if any leg waits for one (the legs'
    /// records have their own: [`super::history::History::next_due`]).
    pub fn next_deadline(&self) -> Option<Ms> {
        self.legs
            .values()
            .filter_map(|l| l.state().deadline())
            .min()
            .into_iter()
            .chain(self.arrays.values().filter_map(|m| {
                m.write_pending_since
                    .filter(|_| !m.stalled)
                    .map(|t| t + self.config.heal.stall_timeout_s * SEC)
            }))
            .min()
    }
}
