//! What dom0's metrics say of resync admission: each guest's turn (granted,
//! queued, none) and the budget dom0 wrote for it, and per storage the grants
//! held and K. Pure. Two readers fill it:
//!
//! - `mdguard host metrics` from xenstore ([`Grant::of`]: dom0's answer in
//!   `control/mdguard/grant` for the request in `data/mdguard/request`, and
//!   `control/mdguard/budget_kbps`), which cannot know the queue's order, the
//!   storage groups or K;
//! - `mdguard host run`'s listener from the coordinator's own state
//!   ([`Admission::of_coordinator`]), which knows all of it.

use super::admission::{group_of, Coordinator, Group, Seen};
use crate::report::admission::{Answer, Request};
use std::collections::{BTreeMap, BTreeSet};

/// A guest's turn to add its returning legs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// dom0 answered its request with a grant: it may add (and recover).
    Granted,
    /// It waits: other recoveries run on its storage. `position`: its place
    /// among the queued guests, 1 considered first (known to the coordinator
    /// only).
    Queued { position: Option<u32> },
    /// No request, or no answer for the one that stands.
    None,
}

impl Grant {
    /// The words of the state set, in order.
    pub const WORDS: [&'static str; 3] = ["granted", "queued", "none"];

    /// What xenstore says: dom0's `answer` for the `request` that stands (an
    /// answer for another token is none).
    pub fn of(answer: Option<&Answer>, request: Option<&Request>) -> Grant {
        match (answer, request) {
            (Some(Answer::Granted { token }), Some(r)) if *token == r.token => Grant::Granted,
            (Some(Answer::Queued { token, .. }), Some(r)) if *token == r.token => {
                Grant::Queued { position: None }
            }
            _ => Grant::None,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Grant::Granted => "granted",
            Grant::Queued { .. } => "queued",
            Grant::None => "none",
        }
    }
}

/// One guest's admission as the metrics show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestGrant {
    pub grant: Grant,
    /// `control/mdguard/budget_kbps` as dom0 wrote it (the coordinator's
    /// share while the guest recovers).
    pub budget_kbps: Option<u64>,
}

/// One storage's places: the grants held on it and K.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageGrants {
    /// The storage (a backend's storage id) or the `--storage-group`
    /// pattern it falls under.
    pub storage: String,
    pub held: u32,
    pub max: u32,
}

/// Resync admission for the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admission {
    /// By domid; a guest missing has no grant and no budget.
    pub guests: BTreeMap<u32, GuestGrant>,
    /// Every storage behind the guests' dom0 backends; `None` when not
    /// known (`host metrics` reads no coordinator's settings).
    pub storages: Option<Vec<StorageGrants>>,
}

impl Admission {
    /// The coordinator's view of the guests as `seen`: each one's answer
    /// for its standing request, the queue in the order it is served, the
    /// budget it wrote, and every storage group with the grants held on it
    /// (a leg without a dom0 backend is a group of its own and not listed).
    pub fn of_coordinator<'a>(
        c: &Coordinator,
        seen: impl IntoIterator<Item = &'a Seen>,
    ) -> Admission {
        let patterns = &c.settings().groups;
        let mut guests = BTreeMap::new();
        let mut queue: Vec<(Option<u64>, u32)> = Vec::new();
        let mut held: BTreeMap<String, u32> = BTreeMap::new();
        for g in seen {
            for b in &g.backends {
                if let Group::Storage(s) = group_of(g.domid, &b.dev, &g.backends, patterns) {
                    held.entry(s).or_insert(0);
                }
            }
            let w = c.written(g.domid);
            let grant = Grant::of(w.and_then(|w| w.answer.as_ref()), g.request.as_ref());
            match grant {
                Grant::Granted => {
                    let groups: BTreeSet<Group> = g
                        .request
                        .iter()
                        .flat_map(|r| r.devices.iter())
                        .map(|d| group_of(g.domid, d, &g.backends, patterns))
                        .collect();
                    for gr in groups {
                        if let Group::Storage(s) = gr {
                            *held.entry(s).or_insert(0) += 1;
                        }
                    }
                }
                Grant::Queued { .. } => queue.push((w.and_then(|w| w.since), g.domid)),
                Grant::None => {}
            }
            guests.insert(
                g.domid,
                GuestGrant {
                    grant,
                    budget_kbps: w.and_then(|w| w.budget),
                },
            );
        }
        // the planner's order: first come, first served, then by domid
        queue.sort();
        for (i, (_, domid)) in queue.iter().enumerate() {
            if let Some(g) = guests.get_mut(domid) {
                g.grant = Grant::Queued {
                    position: Some(i as u32 + 1),
                };
            }
        }
        let max = c.settings().per_storage;
        Admission {
            guests,
            storages: Some(
                held.into_iter()
                    .map(|(storage, held)| StorageGrants { storage, held, max })
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::host::admission::Settings;
    use crate::report::host::storage::{Backend, BackendKind, RawBackend, StoragePattern};

    fn req(token: &str) -> Request {
        Request::new(token.into(), &["xvdc".into()])
    }

    #[test]
    fn what_xenstore_says() {
        let r = req("t1");
        let granted = Answer::Granted { token: "t1".into() };
        let queued = Answer::Queued {
            token: "t1".into(),
            seq: 3,
        };
        let stale = Answer::Granted { token: "t0".into() };
        assert_eq!(Grant::of(Some(&granted), Some(&r)), Grant::Granted);
        assert_eq!(
            Grant::of(Some(&queued), Some(&r)),
            Grant::Queued { position: None }
        );
        assert_eq!(Grant::of(Some(&stale), Some(&r)), Grant::None, "old token");
        assert_eq!(Grant::of(Some(&granted), None), Grant::None, "no request");
        assert_eq!(Grant::of(None, Some(&r)), Grant::None, "not answered yet");
        assert_eq!(
            Grant::WORDS,
            [
                Grant::Granted.word(),
                Grant::Queued { position: None }.word(),
                Grant::None.word()
            ]
        );
    }

    fn seen(domid: u32, params: &str, token: Option<&str>) -> Seen {
        let raw = RawBackend {
            dev: Some(b"xvdc".to_vec()),
            params: Some(params.as_bytes().to_vec()),
            type_: Some(b"phy".to_vec()),
            state: Some(b"4".to_vec()),
            frontend_id: Some(domid.to_string().into_bytes()),
            physical_device: None,
        };
        Seen {
            domid,
            publishes: true,
            request: token.map(req),
            rebuilding: vec![],
            stopped: false,
            heard_at: 0,
            backends: vec![Backend::parse(BackendKind::Vbd, domid, "51744", &raw).unwrap()],
        }
    }

    /// K = 1 on the storage server, a budget: 4 asks first and is granted,
    /// 2 and 3 queue behind it in the order they came, 6 is idle, 7 is on
    /// another storage.
    #[test]
    fn the_coordinators_view_with_the_queue_in_order() {
        let settings = Settings {
            per_storage: 1,
            budget_kbps: Some(20000),
            silent_after: 30_000,
            groups: vec![StoragePattern::parse("/dev/vg_storage2/*").unwrap()],
        };
        let mut c = Coordinator::new(settings, "c".into());
        let mut all = vec![seen(4, "/dev/vg_storage2/g4", Some("t4"))];
        let p = c.plan(&all, 0);
        c.apply(p, &[]);
        all.push(seen(3, "/dev/vg_storage2/g3", Some("t3")));
        let p = c.plan(&all, 1);
        c.apply(p, &[]);
        all.push(seen(2, "/dev/vg_storage2/g2", Some("t2")));
        all.push(seen(6, "/dev/vg_storage2/g6", None));
        all.push(seen(7, "/dev/vg_storage1/g7", None));
        let p = c.plan(&all, 2);
        c.apply(p, &[]);
        let a = Admission::of_coordinator(&c, &all);
        let g = |id| a.guests[&id];
        assert_eq!(g(4).grant, Grant::Granted);
        assert_eq!(g(4).budget_kbps, Some(20000));
        assert_eq!(g(3).grant, Grant::Queued { position: Some(1) });
        assert_eq!(g(2).grant, Grant::Queued { position: Some(2) });
        assert_eq!(g(3).budget_kbps, None);
        assert_eq!(g(6).grant, Grant::None);
        assert_eq!(
            a.storages.unwrap(),
            [
                StorageGrants {
                    storage: "/dev/vg_storage1/g7".into(),
                    held: 0,
                    max: 1
                },
                StorageGrants {
                    storage: "/dev/vg_storage2/*".into(),
                    held: 1,
                    max: 1
                }
            ]
        );
    }
}
