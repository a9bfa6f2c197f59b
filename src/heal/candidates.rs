//! New-node candidates: a block device that appears (a vbd re-attached as xvdd)
//! may be a returning leg; its superblock says which array, if any.

use super::action::{log, Action, LegFlags, Ms, ProbeOutcome, SEC};
use super::engine::Engine;
use super::event::{Event, NotALeg};
use super::leg::{Episode, Leg, LegState, Phase, Start};
use super::membership::{shared_uuid, verdict, Refusal};
use crate::md::identity::{never_a_leg, on_disk, same_uuid, transport};
use crate::md::model::{Array, Snapshot};
use crate::md::superblock::Role;

impl Engine {
    /// A block device appeared or changed (uevent): it may be a returning leg.
    pub fn on_device(&mut self, device: &str) {
        if !self.candidates.iter().any(|d| d == device) {
            self.candidates.push(device.to_string());
        }
        // a device that changed may now carry another superblock
        self.refused_logged.retain(|d| d != device);
        // a failed leg that reappears: probe it now rather than at the next backoff
        let initial = self.config.probe.initial_interval_s * SEC;
        for leg in self.legs.values_mut().filter(|l| l.device == device) {
            if matches!(leg.phase(), Phase::Failed | Phase::Refused) && !leg.probing() {
                leg.probe_soon(initial);
            }
        }
    }

    pub(super) fn probe_candidates(&mut self, managed: &[Array], out: &mut Vec<Action>) {
        if self.candidates.is_empty() {
            return;
        }
        let any_degraded = managed.iter().any(|a| a.degraded.unwrap_or(0) > 0);
        let cands = std::mem::take(&mut self.candidates);
        if !any_degraded {
            return;
        }
        // the transports the degraded arrays' legs come over (members md lists,
        // and legs mdguard tracks that md no longer does)
        let degraded: Vec<&str> = managed
            .iter()
            .filter(|a| a.degraded.unwrap_or(0) > 0)
            .map(|a| a.name.as_str())
            .collect();
        let mut transports: Vec<&str> = managed
            .iter()
            .filter(|a| degraded.contains(&a.name.as_str()))
            .flat_map(|a| a.members.iter().map(|m| transport(&m.device)))
            .chain(
                self.legs
                    .values()
                    .filter(|l| degraded.contains(&l.array.as_str()))
                    .map(|l| transport(&l.device)),
            )
            .collect();
        transports.sort_unstable();
        transports.dedup();
        for d in cands {
            // a leg mdguard is already bringing back is not a stranger
            let known_leg = self
                .legs
                .values()
                .any(|l| l.device == d && (l.bound || !l.is(Phase::Healthy)));
            let in_any = managed
                .iter()
                .any(|a| a.members.iter().any(|m| m.device == d));
            if known_leg || in_any {
                continue;
            }
            // a whole disk whose partitions md knows: a 0.90 superblock at the
            // end of its last partition reads as the disk's own
            let partitioned = managed
                .iter()
                .flat_map(|a| a.members.iter().map(|m| m.device.as_str()))
                .chain(self.legs.values().map(|l| l.device.as_str()))
                .any(|x| x != d && on_disk(x, &d));
            let why = if never_a_leg(&d) {
                Some(NotALeg::LocalCopy)
            } else if partitioned {
                Some(NotALeg::PartitionedDisk)
            } else if !transports.contains(&transport(&d)) {
                Some(NotALeg::OtherTransport)
            } else {
                None
            };
            match why {
                None => out.push(Action::Probe { device: d }),
                Some(why) if !self.not_candidates.contains(&d) => {
                    self.not_candidates.push(d.clone());
                    out.push(log(Event::NotACandidate { device: d, why }));
                }
                Some(_) => {}
            }
        }
    }

    pub(super) fn match_candidate(
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
        if let Some(reason) = shared_uuid(snap, &sb.uuid) {
            if !self.refused_logged.iter().any(|d| d == device) {
                self.refused_logged.push(device.to_string());
                let array = match &reason {
                    Refusal::SharedUuid { arrays } => arrays.join(" or "),
                    _ => String::new(),
                };
                out.push(log(Event::CandidateRefused {
                    array,
                    device: device.to_string(),
                    reason,
                }));
            }
            return;
        }
        let Some(a) = managed
            .iter()
            .find(|a| a.uuid.as_deref().is_some_and(|u| same_uuid(u, &sb.uuid)))
        else {
            if !self.refused_logged.iter().any(|d| d == device) {
                self.refused_logged.push(device.to_string());
                out.push(log(Event::ForeignDevice {
                    device: device.to_string(),
                    uuid: sb.uuid.clone(),
                }));
            }
            return;
        };
        let mem = self.arrays.get(&a.name).cloned().unwrap_or_default();
        let role = match sb.role {
            Role::Active(r) => Some(r),
            _ => None,
        };
        if let Err(reason) = verdict(a, &mem, role, Some(sb)) {
            if !self.refused_logged.iter().any(|d| d == device) {
                self.refused_logged.push(device.to_string());
                out.push(log(Event::CandidateRefused {
                    array: a.name.clone(),
                    device: device.to_string(),
                    reason,
                }));
            }
            return;
        }
        let (add_at, start) = self.start_wait(false, now);
        // no member to re-add: straight to ADD_NEW_DISK
        let episode = Episode {
            interval: self.config.probe.initial_interval_s * SEC,
            readd_refused: true,
            granted: false,
            failures: 0,
        };
        let state = LegState::Waiting {
            add_at,
            start,
            sb: sb.clone(),
            episode,
        };
        let mut leg = Leg::new(&a.name, device, role, false, state);
        // the node it replaces (md still lists it, faulty, with its descriptor
        // number) had the leg's flags
        if let Some(old) = a
            .members
            .iter()
            .find(|m| m.faulty && m.device != device && m.descriptor == Some(sb.dev_number))
        {
            leg.flags = LegFlags::of(old);
        }
        out.push(log(Event::NewDevice {
            array: a.name.clone(),
            device: device.to_string(),
            role,
        }));
        // the faulty member it replaces stays until the new node has passed the
        // read before the add ([`Engine::make_room`]): a copy refused there must
        // not cost the leg its place, nor mdguard its track of it, when the leg
        // then comes back on its own node
        if start == Start::Asking {
            out.push(log(Engine::proven_event(
                &a.name, device, start, add_at, now,
            )));
        }
        let key = (a.name.clone(), device.to_string());
        self.legs.insert(key.clone(), leg);
        if add_at == now && start != Start::Asking {
            self.begin_confirm(a, &key, out);
        }
    }

    /// A new node passed every check and is about to be added: a member md
    /// still lists as faulty with the descriptor number its superblock names
    /// (the vbd it replaces: xvdc detached and attached again as xvdd, or an
    /// iSCSI LUN logged in again while md held its old disk) makes ADD_NEW_DISK
    /// fail with EBUSY until it is removed (seen in Xen): remove that member and
    /// forget its leg. Only that one: another faulty leg may still come back on
    /// its own node.
    pub(super) fn make_room(
        &mut self,
        a: &Array,
        device: &str,
        dev_number: u32,
        out: &mut Vec<Action>,
    ) {
        for m in a
            .members
            .iter()
            .filter(|m| m.faulty && m.device != device && m.descriptor == Some(dev_number))
        {
            out.push(log(Event::MakingRoom {
                array: a.name.clone(),
                faulty: m.device.clone(),
                device: device.to_string(),
            }));
            out.push(Action::Remove {
                array: a.name.clone(),
                device: m.device.clone(),
            });
            self.legs.remove(&(a.name.clone(), m.device.clone()));
        }
    }
}
