//! Reconnect coordination: a disk whose transport must be re-established is
//! reconnected once md holds nothing of it (every leg on it and its partitions).

use super::action::{log, Action, Level, Ms, Outcome, SEC};
use super::engine::Engine;
use super::leg::{Leg, Phase};

impl Engine {
    /// Reconnect the disk of `dev` once nothing of it is held by md any more:
    /// faulty siblings are removed on their own; a sibling md has not noticed is
    /// failed first when its array keeps another in-sync leg.
    pub(super) fn try_reconnect(&mut self, dev: &str, now: Ms, out: &mut Vec<Action>) {
        let Some(disk) = self.config.reconnect_for(dev).map(|r| r.device.clone()) else {
            return;
        };
        let on = |l: &Leg| crate::md::identity::on_disk(&l.device, &disk);
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

    /// The reconnect command for `disk` finished: probe each leg on it, or back off.
    pub(super) fn reconnected(
        &mut self,
        disk: &str,
        outcome: &Outcome,
        now: Ms,
        out: &mut Vec<Action>,
    ) {
        let max = self.config.probe.max_interval_s * SEC;
        let mut next = None;
        for l in self.legs.values_mut().filter(|l| {
            l.phase == Phase::Reconnecting && crate::md::identity::on_disk(&l.device, disk)
        }) {
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
}
