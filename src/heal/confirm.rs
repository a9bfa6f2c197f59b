//! The read before the add: when a proven leg's add time comes, the leg and a
//! witness (an in-sync member) are read again. The leg's superblock must not have
//! moved since the probe that proved it, and its history must fit the array's as
//! the witness records it ([`history_fits`]); then the attempt is chosen by what
//! the array offers ([`AddPolicy`]: without a bitmap only a full recovery).

use super::action::{log, Action, Ms, ProbeOutcome, SEC};
use super::engine::Engine;
use super::event::Event;
use super::leg::{AddPolicy, Phase};
use super::lifecycle::array_wants_leg;
use super::membership::{history_fits, witness, Refusal};
use crate::md::model::{Array, Snapshot};

impl Engine {
    /// What `a` offers a returning leg.
    pub(super) fn add_policy(&self, a: &Array) -> AddPolicy {
        AddPolicy {
            bitmap: a.bitmap.is_some(),
            full_recovery: self.config.heal.full_recovery,
        }
    }

    /// The add time of the leg `key` has come: read it and a witness again.
    pub(super) fn begin_confirm(
        &mut self,
        a: &Array,
        key: &(String, String),
        out: &mut Vec<Action>,
    ) {
        let Some(leg) = self.legs.get_mut(key) else {
            return;
        };
        let Some(witness) = witness(a, &leg.device) else {
            leg.refuse(Refusal::NoWitness);
            out.push(log(Event::Refused {
                array: a.name.clone(),
                device: leg.device.clone(),
                reason: Refusal::NoWitness,
            }));
            return;
        };
        leg.start_confirm();
        out.push(Action::Confirm {
            array: a.name.clone(),
            device: leg.device.clone(),
            witness,
        });
    }

    /// The leg and its witness were read again right before the add.
    pub fn on_confirm(
        &mut self,
        snap: &Snapshot,
        array: &str,
        device: &str,
        leg_read: ProbeOutcome,
        witness_read: ProbeOutcome,
        now: Ms,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let max = self.config.probe.read_cap_s() * SEC;
        let key = (array.to_string(), device.to_string());
        // the array vanished: the leg is forgotten at the next snapshot
        let Some(a) = snap.arrays.iter().find(|x| x.name == array).cloned() else {
            return out;
        };
        let policy = self.add_policy(&a);
        let Some(leg) = self.legs.get_mut(&key) else {
            return out;
        };
        if !leg.is(Phase::Confirming) {
            return out; // stale
        }
        let proven = leg.proven().cloned().expect("a confirming leg was proven");
        let fresh = match leg_read {
            ProbeOutcome::Readable { sb } => sb,
            ProbeOutcome::Failed(_) | ProbeOutcome::TimedOut => {
                leg.back_off(now, max);
                out.push(log(Event::StillUnusable {
                    array: key.0,
                    device: key.1,
                    errno: match leg_read {
                        ProbeOutcome::Failed(e) => Some(e),
                        _ => None,
                    },
                    next_in: leg.state().deadline().unwrap_or(now) - now,
                }));
                return out;
            }
        };
        if fresh.as_ref() != Some(&proven) || !array_wants_leg(&a, leg) {
            leg.recheck(now);
            out.push(log(Event::HistoryMoved {
                array: key.0,
                device: key.1,
            }));
            return out;
        }
        let ProbeOutcome::Readable { sb: Some(w) } = witness_read else {
            leg.back_off(now, max);
            out.push(log(Event::WitnessUnreadable {
                array: key.0,
                device: key.1,
                witness: witness(&a, device).unwrap_or_default(),
                next_in: leg.state().deadline().unwrap_or(now) - now,
            }));
            return out;
        };
        if let Err(reason) =
            history_fits(&a, &proven, &w).and_then(|()| self.history.check(&proven))
        {
            leg.refuse(reason.clone());
            out.push(log(Event::Refused {
                array: key.0,
                device: key.1,
                reason,
            }));
            return out;
        }
        if !policy.bitmap {
            if !policy.full_recovery {
                leg.hold_for_admin();
                out.push(log(Event::FullCopyOff {
                    array: key.0,
                    device: key.1,
                }));
                return out;
            }
            if leg.bound {
                // ADD_NEW_DISK takes only a device md does not hold: removed,
                // probed and confirmed again, then added as a spare
                leg.start_remove();
                out.push(log(Event::RemovingForFullCopy {
                    array: key.0.clone(),
                    device: key.1.clone(),
                }));
                out.push(Action::Remove {
                    array: key.0,
                    device: key.1,
                });
                return out;
            }
            out.push(log(Event::FullCopyNeeded {
                array: key.0.clone(),
                device: key.1.clone(),
            }));
        }
        let new_node = (!leg.bound).then_some(proven.dev_number);
        let add = leg.start_add(policy);
        if let Some(dev_number) = new_node {
            self.make_room(&a, device, dev_number, &mut out);
        }
        // the limits its recovery runs under go first
        self.limits_first(now, &mut out);
        out.extend(add);
        out
    }
}
