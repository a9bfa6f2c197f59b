//! Reconnect coordination: a disk whose transport must be re-established is
//! reconnected once md holds nothing of it (every leg on it and its partitions).

use super::action::{log, Action, Ms, Outcome, SEC};
use super::engine::Engine;
use super::event::Event;
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
            .any(|l| on(l) && l.is(Phase::Reconnecting))
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
            if leg.is(Phase::Healthy) {
                if other_in_sync {
                    leg.start_failing();
                    out.push(log(Event::FailingForReconnect {
                        array: k.0.clone(),
                        device: k.1.clone(),
                        disk: disk.clone(),
                    }));
                    out.push(Action::Fail {
                        array: k.0.clone(),
                        device: k.1.clone(),
                    });
                } else if leg.may_speak(now) {
                    leg.hush(now + self.config.probe.max_interval_s * SEC);
                    out.push(log(Event::ReconnectBlocked {
                        disk: disk.clone(),
                        array: k.0.clone(),
                        device: k.1.clone(),
                    }));
                }
            }
        }
        if blocked {
            // re-checked when a sibling's remove finishes, or at the next interval
            for l in self.legs.values_mut().filter(|l| on(l) && !l.bound) {
                if l.probe_due(now) {
                    l.postpone(now);
                }
            }
            return;
        }
        for l in self.legs.values_mut().filter(|l| on(l)) {
            if l.is(Phase::Failed) && !l.probing() {
                l.start_reconnect();
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
        for l in self
            .legs
            .values_mut()
            .filter(|l| l.is(Phase::Reconnecting) && crate::md::identity::on_disk(&l.device, disk))
        {
            match outcome {
                Outcome::Done => {
                    l.reconnected();
                    out.push(Action::Probe {
                        device: l.device.clone(),
                    });
                }
                Outcome::Failed(_) => {
                    l.back_off(now, max);
                    next = l.state().deadline().map(|t| t - now);
                }
            }
        }
        if let (Outcome::Failed(failure), Some(next_in)) = (outcome, next) {
            out.push(log(Event::ReconnectFailed {
                disk: disk.to_string(),
                failure: failure.clone(),
                next_in,
            }));
        }
    }
}
