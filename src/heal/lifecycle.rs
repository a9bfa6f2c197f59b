//! A leg's life: failure (and flapping), probing, the add, and what each action's
//! outcome means for it.

use super::action::{log, Action, Level, Ms, Outcome, ProbeOutcome, SbRole, SEC};
use super::engine::Engine;
use super::leg::{Leg, Phase};
use super::membership::verdict;
use crate::md::model::{Array, Snapshot, SyncAction, SyncState};

impl Engine {
    pub(super) fn track_members(&mut self, a: &Array, now: Ms, out: &mut Vec<Action>) {
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

    pub(super) fn advance_legs(&mut self, a: &Array, now: Ms, out: &mut Vec<Action>) {
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
                                && crate::md::identity::on_disk(&l.device, &disk)
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

    pub(super) fn config_reconnect(&self, dev: &str) -> bool {
        self.config.reconnect_for(dev).is_some()
    }
}

/// Is the array still missing a leg this one could fill?
pub(super) fn array_wants_leg(a: &Array, leg: &Leg) -> bool {
    a.degraded.unwrap_or(0) > 0 || a.members.iter().any(|m| m.device == leg.device && m.faulty)
}

pub(super) fn self_add_action(a: &Array, leg: &Leg) -> Action {
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
