//! The engine: the state it keeps, its inputs besides md (dom0's budget, I/O
//! pressure), and the main step. Each rule lives in its own file beside this one.

use super::action::{log, Action, Ms, SEC};
use super::event::Event;
use super::leg::Leg;
use crate::config::Config;
use crate::md::identity::same_uuid;
use crate::md::model::{Array, Snapshot};
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
    rng: u64,
}

impl Engine {
    pub fn new(config: Config, seed: u64) -> Engine {
        Engine {
            config,
            legs: BTreeMap::new(),
            arrays: BTreeMap::new(),
            refused_logged: Vec::new(),
            not_candidates: Vec::new(),
            missing: Vec::new(),
            candidates: Vec::new(),
            last: Vec::new(),
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

    pub(super) fn managed(&self, s: &Snapshot) -> Vec<Array> {
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

    /// When the next timer should fire, if any leg waits for one.
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
