//! A leg's life: failure (and flapping), probing, the add, and what each action's
//! outcome means for it.

use super::action::{log, Action, Errno, LegFlags, Ms, Outcome, ProbeOutcome, SEC};
use super::engine::Engine;
use super::event::{Event, Flap};
use super::leg::{Attempt, Leg, LegState, NextProbe, Phase, Start};
use super::membership::{shared_uuid, verdict};
use crate::md::model::{Array, Snapshot, SyncAction, SyncState};

impl Engine {
    pub(super) fn track_members(&mut self, a: &Array, now: Ms, out: &mut Vec<Action>) {
        let flap_window = self.config.heal.flap_window_s * SEC;
        let initial = self.config.probe.initial_interval_s * SEC;
        let bound: Vec<&str> = a.members.iter().map(|m| m.device.as_str()).collect();
        for m in &a.members {
            let key = (a.name.clone(), m.device.clone());
            let leg = self
                .legs
                .entry(key)
                .or_insert_with(|| Leg::new(&a.name, &m.device, m.slot, true, LegState::HEALTHY));
            leg.bound = true;
            // md lists a faulty member's flags too; they go with the member
            leg.flags = LegFlags::of(m);
            if m.faulty {
                if matches!(leg.phase(), Phase::Healthy | Phase::Failing) {
                    // a new failure
                    let since_readd = leg.added_at.map(|t| now.saturating_sub(t));
                    if since_readd.is_some_and(|d| d < flap_window) {
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
                        leg.flap();
                        out.push(log(Event::Flapping {
                            array: a.name.clone(),
                            device: m.device.clone(),
                            flaps: leg.flaps,
                        }));
                    } else {
                        leg.fail(now + backoff, initial);
                        out.push(log(Event::LegFailed {
                            array: a.name.clone(),
                            device: m.device.clone(),
                            flap: (leg.flaps > 0).then(|| Flap {
                                after: since_readd.unwrap_or(0),
                                count: leg.flaps,
                            }),
                            probe_in: backoff,
                        }));
                    }
                }
            } else {
                if m.slot.is_some() {
                    leg.role = m.slot;
                }
                if !matches!(
                    leg.phase(),
                    Phase::Healthy | Phase::Removing | Phase::Failing
                ) {
                    out.push(log(Event::BackInArray {
                        array: a.name.clone(),
                        device: m.device.clone(),
                    }));
                    leg.back_in_array();
                }
                // its recovery is over once md lists it in sync
                if m.in_sync() {
                    leg.syncing = false;
                }
                // a sysfs re-add keeps md's mark of the write error that failed
                // the leg; ADD_NEW_DISK would have started it afresh: clear it
                if m.in_sync() && leg.clear_write_error {
                    leg.clear_write_error = false;
                    if m.has_state("write_error") {
                        out.push(log(Event::WriteErrorCleared {
                            array: a.name.clone(),
                            device: m.device.clone(),
                        }));
                        out.push(Action::ClearWriteError {
                            array: a.name.clone(),
                            device: m.device.clone(),
                        });
                    }
                }
                // an add done: say what md wrote to the leg to bring it in sync
                if m.in_sync() && leg.is(Phase::Healthy) {
                    if let (Some(c), Some(w)) = (leg.copy, m.written_sectors) {
                        leg.copy = None;
                        out.push(log(Event::Copied {
                            array: a.name.clone(),
                            device: m.device.clone(),
                            kib: w.saturating_sub(c.from_sectors) / 2,
                            full: c.full,
                            size_kib: a.size_kb,
                        }));
                    }
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
                if leg.is(Phase::Healthy) {
                    // removed while healthy (admin action): not ours to bring back
                    // unless the array is degraded and the sb proves it.
                    leg.fail(now + initial, initial);
                }
            }
        }
        // Forget healthy legs that are gone and never failed.
        self.legs
            .retain(|_, l| l.bound || !l.is(Phase::Healthy) || l.array != a.name);
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
                out.push(log(Event::RecoveryStarted {
                    array: a.name.clone(),
                    action,
                }));
            }
            Some(t) if !running => {
                mem.recovery_started = None;
                out.push(log(Event::RecoveryFinished {
                    array: a.name.clone(),
                    after: now.saturating_sub(t),
                    health: a.health,
                }));
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
            if leg.probe_due(now) {
                if reconnect && leg.bound {
                    // nbd cannot reconnect while md holds the device
                    leg.start_remove();
                    out.push(Action::Remove {
                        array: a.name.clone(),
                        device: leg.device.clone(),
                    });
                } else if reconnect && !leg.bound {
                    let dev = leg.device.clone();
                    self.try_reconnect(&dev, now, out);
                } else {
                    leg.start_probe();
                    out.push(Action::Probe {
                        device: leg.device.clone(),
                    });
                }
            } else if matches!(leg.state(), LegState::Waiting { add_at, .. } if now >= *add_at) {
                // no answer from dom0 in time: the start jitter after all
                if leg.awaits_turn() && !self.turn_timed_out(&k, now, out) {
                    continue;
                }
                let leg = self.legs.get(&k).expect("key from map");
                if !array_wants_leg(a, leg) {
                    continue;
                }
                self.begin_confirm(a, &k, out);
            }
        }
    }

    /// dom0 says storage is back: probe every failed or flapping leg now.
    pub fn on_probe_hint(&mut self, now: Ms) -> Vec<Action> {
        let initial = self.config.probe.initial_interval_s * SEC;
        for leg in self.legs.values_mut() {
            if matches!(
                leg.phase(),
                Phase::Failed | Phase::Flapping | Phase::NeedsAdmin
            ) {
                leg.probe_now(now, initial);
            }
        }
        self.refused_logged.clear();
        vec![log(Event::ProbeHint)]
    }

    /// A probe finished. A result for a device whose legs are not probing (it
    /// came back healthy meanwhile) is stale and ignored; a device with no leg
    /// is a candidate (a new node).
    pub fn on_probe(
        &mut self,
        snap: &Snapshot,
        device: &str,
        outcome: ProbeOutcome,
        now: Ms,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let max = self.config.probe.read_cap_s() * SEC;
        let legs: Vec<(String, String)> = self
            .legs
            .iter()
            .filter(|(_, l)| l.device == device && l.probing())
            .map(|(k, _)| k.clone())
            .collect();
        if legs.is_empty() {
            if !self.legs.values().any(|l| l.device == device) {
                // a candidate device (new node): match it to an array by superblock
                self.match_candidate(snap, device, &outcome, now, &mut out);
            }
            return out;
        }
        for k in legs {
            let arr = snap.arrays.iter().find(|a| a.name == k.0).cloned();
            let granted_before = self.legs.get(&k).is_some_and(Leg::granted_before);
            let (add_at, start) = self.start_wait(granted_before, now);
            let mem = self.arrays.get(&k.0).cloned().unwrap_or_default();
            let leg = self.legs.get_mut(&k).expect("key from map");
            let sb = match &outcome {
                ProbeOutcome::Readable { sb } => sb,
                ProbeOutcome::Failed(_) | ProbeOutcome::TimedOut => {
                    leg.back_off(now, max);
                    let next_in = leg.state().deadline().unwrap_or(now) - now;
                    // said at the 1st, 2nd, 4th, 8th... failure in a row: a
                    // long outage probed every few seconds is a few lines
                    if leg.failures().is_power_of_two() {
                        out.push(log(Event::StillUnusable {
                            array: k.0.clone(),
                            device: leg.device.clone(),
                            errno: match &outcome {
                                ProbeOutcome::Failed(e) => Some(*e),
                                _ => None,
                            },
                            next_in,
                        }));
                    }
                    continue;
                }
            };
            let Some(a) = arr else {
                // the array vanished: the leg is forgotten at the next snapshot
                continue;
            };
            let judged = match sb.as_ref().and_then(|s| shared_uuid(snap, &s.uuid)) {
                Some(shared) => Err(shared),
                None => verdict(&a, &mem, leg.role, sb.as_ref()),
            };
            match judged {
                Ok(()) => {
                    let sb = sb.clone().expect("the verdict proves a superblock");
                    leg.prove(add_at, start, sb);
                    out.push(log(Engine::proven_event(
                        &k.0,
                        &leg.device,
                        start,
                        add_at,
                        now,
                    )));
                    if add_at == now && start != Start::Asking && array_wants_leg(&a, leg) {
                        self.begin_confirm(&a, &k, &mut out);
                    }
                }
                Err(reason) => {
                    leg.refuse(reason.clone());
                    out.push(log(Event::Refused {
                        array: k.0.clone(),
                        device: leg.device.clone(),
                        reason,
                    }));
                }
            }
        }
        out
    }

    /// An action finished. An outcome for a step the leg is no longer at
    /// (overtaken by events) is stale and ignored.
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
                if let Outcome::Failed(failure) = outcome {
                    out.push(log(Event::FailRefused {
                        array: array.clone(),
                        device: device.clone(),
                        failure: failure.clone(),
                    }));
                    if let Some(l) = self.legs.get_mut(&(array.clone(), device.clone())) {
                        if l.is(Phase::Failing) {
                            l.fail_refused();
                        }
                    }
                }
                return out;
            }
            Action::SetSpeed { array, .. } => {
                if let Outcome::Failed(failure) = outcome {
                    out.push(log(Event::SpeedNotSet {
                        array: array.clone(),
                        failure: failure.clone(),
                    }));
                }
                return out;
            }
            Action::ClearWriteError { array, device } => {
                if let Outcome::Failed(failure) = outcome {
                    out.push(log(Event::WriteErrorNotCleared {
                        array: array.clone(),
                        device: device.clone(),
                        failure: failure.clone(),
                    }));
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
        let (array, device) = (key.0.clone(), key.1.clone());
        match action {
            Action::ReAdd { .. } | Action::Add { .. } => {
                let Some(attempt) = leg.adding().filter(|a| a.is(action)) else {
                    return out;
                };
                match outcome {
                    Outcome::Done => {
                        leg.added(now);
                        // md keeps a sysfs re-added member's write-error mark
                        leg.clear_write_error = attempt == Attempt::ReAdd;
                        out.push(log(Event::ReAdded {
                            array,
                            device,
                            attempt,
                        }));
                    }
                    Outcome::Failed(failure) => {
                        let failure = failure.clone();
                        match attempt {
                            Attempt::ReAdd => {
                                // the kernel kept no slot for it: remove and add
                                // through ADD_NEW_DISK
                                leg.readd_refused();
                                out.push(log(Event::ReAddRefused {
                                    array: array.clone(),
                                    device: device.clone(),
                                    failure,
                                }));
                                out.push(Action::Remove { array, device });
                            }
                            // the kernel takes a leg in its slot only when its
                            // events fit the bitmap: EINVAL says they do not, so
                            // it is not the leg that left (an older copy, another
                            // history); a full recovery would overwrite it
                            Attempt::InSlot { .. } if failure.errno() == Some(Errno::EINVAL) => {
                                leg.give_up();
                                out.push(log(Event::NotSameHistory {
                                    array,
                                    device,
                                    failure,
                                }));
                            }
                            Attempt::InSlot { .. } if full_recovery => {
                                let add = leg.add_as_spare();
                                out.push(log(Event::FullRecovery {
                                    array,
                                    device,
                                    failure,
                                }));
                                out.push(add);
                            }
                            Attempt::InSlot { .. } => {
                                leg.give_up();
                                out.push(log(Event::FullRecoveryOff {
                                    array,
                                    device,
                                    failure,
                                }));
                            }
                            Attempt::Spare => {
                                leg.give_up();
                                out.push(log(Event::AddFailed {
                                    array,
                                    device,
                                    failure,
                                }));
                            }
                        }
                    }
                }
            }
            _ => {
                if !leg.is(Phase::Removing) {
                    return out;
                }
                match outcome {
                    Outcome::Done if reconnect => {
                        leg.removed(NextProbe::At(now));
                        self.try_reconnect(&device, now, &mut out);
                    }
                    Outcome::Done => {
                        leg.removed(NextProbe::UnderWay);
                        out.push(Action::Probe { device });
                    }
                    Outcome::Failed(failure) => {
                        // EBUSY while I/O is pending: try again at the next probe time
                        leg.remove_refused(now + initial);
                        out.push(log(Event::RemoveRefused {
                            array,
                            device: device.clone(),
                            failure: failure.clone(),
                        }));
                        // requests stuck on a dead nbd connection keep md from
                        // letting go until the transport is torn down: the
                        // reconnect command (which disconnects first) frees them;
                        // its connect may fail while md still holds the device,
                        // and the next round removes and retries
                        if reconnect && failure.errno() == Some(Errno::EBUSY) {
                            self.reconnect_busy(&key, &mut out);
                        }
                    }
                }
            }
        }
        out
    }

    /// A busy remove: tear the disk's transport down (its reconnect command)
    /// unless a reconnect of that disk already runs.
    fn reconnect_busy(&mut self, key: &(String, String), out: &mut Vec<Action>) {
        let Some(disk) = self.config.reconnect_for(&key.1).map(|r| r.device.clone()) else {
            return;
        };
        let busy = self
            .legs
            .values()
            .any(|l| l.is(Phase::Reconnecting) && crate::md::identity::on_disk(&l.device, &disk));
        if !busy {
            if let Some(l) = self.legs.get_mut(key) {
                l.start_reconnect();
            }
            out.push(Action::Reconnect { device: disk });
        }
    }

    pub(super) fn config_reconnect(&self, dev: &str) -> bool {
        self.config.reconnect_for(dev).is_some()
    }
}

/// Is the array still missing a leg this one could fill?
pub(super) fn array_wants_leg(a: &Array, leg: &Leg) -> bool {
    a.degraded.unwrap_or(0) > 0 || a.members.iter().any(|m| m.device == leg.device && m.faulty)
}
