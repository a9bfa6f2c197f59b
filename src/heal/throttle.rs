//! Throttle: per-array sync speed limits while a resync runs (config ceiling,
//! dom0's budget shared between recovering arrays, slower when the guest is busy),
//! and putting back what was there before.

use super::action::{log, Action, Ms};
use super::engine::{Engine, Env};
use super::event::Event;
use super::leg::Phase;
use crate::md::model::{Array, SyncAction, SyncState};
use crate::md::pressure::IoLoad;
use std::collections::BTreeMap;

impl Engine {
    pub(super) fn throttle(
        &mut self,
        managed: &[Array],
        env: &Env,
        _now: Ms,
        out: &mut Vec<Action>,
    ) {
        let recovering: Vec<&Array> = managed.iter().filter(|a| self.recovers(a)).collect();
        let n = recovering.len().max(1) as u64;
        let t = &self.config.throttle;
        let busy = match env.io_load {
            IoLoad::Pressure(p) => p >= t.busy_pressure,
            IoLoad::ArrayKbps(k) => k >= t.busy_kbps,
            IoLoad::Unknown => false,
        };
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
                    out.push(log(Event::Throttled {
                        array: a.name.clone(),
                        max: target.1,
                        busy,
                    }));
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

    /// A recovery runs on `a`, or is about to: a leg is being confirmed or added,
    /// or was added and is not in sync yet. md starts copying a moment after the
    /// add, so the limits are written before it, not after md is seen copying.
    fn recovers(&self, a: &Array) -> bool {
        let running = a.sync.as_ref().is_some_and(|s| {
            matches!(s.action, SyncAction::Recover | SyncAction::Resync)
                && s.state == SyncState::Running
        });
        running
            || self
                .legs_of(&a.name)
                .any(|l| l.syncing || matches!(l.phase(), Phase::Confirming | Phase::Adding))
    }

    /// An add decided on a read, not on a look at md (the read before the add):
    /// the limits its recovery needs go at the front of `out`, judged on md as
    /// last seen.
    pub(super) fn limits_first(&mut self, now: Ms, out: &mut Vec<Action>) {
        let (managed, env) = (self.last.clone(), self.env.clone());
        let mut first = Vec::new();
        self.throttle(&managed, &env, now, &mut first);
        out.splice(0..0, first);
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
}
