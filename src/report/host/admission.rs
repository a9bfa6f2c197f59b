//! dom0's resync admission: which guests may start a recovery now, and each
//! recovering guest's share of the host's resync budget. Pure: the service
//! ([`super::service`]) reads what the guests published into [`Seen`], asks
//! [`Coordinator::plan`] what to write, writes it in one transaction and
//! records it ([`Coordinator::apply`]), as `Publisher::plan` / `publish` do in
//! the guest. The protocol is [`crate::report::admission`].
//!
//! The rules:
//!
//! - A guest's agent is **alive** while it publishes, has not said it stopped,
//!   and was heard from within `silent_after` (an agent with a request
//!   rewrites it every [`crate::report::admission::REQUEST_REFRESH_S`]).
//! - A guest **recovers** on a storage while it holds a grant for the request
//!   that stands (on the storages of the legs the request names) or publishes
//!   a leg `rebuilding` there (also without a grant: it fell back to its
//!   jitter, runs an older agent, or resyncs after a boot). Only alive guests
//!   count: a guest that vanishes, stops or falls silent frees its places.
//! - A storage is a dom0 backend's storage ([`super::storage::StorageId`]),
//!   or the first `--storage-group` pattern it matches (one storage server);
//!   a leg no dom0 backend explains is a group of its own.
//! - Guests that ask are taken first come, first served (by domid after a
//!   restart): granted when each storage their legs are on has fewer than
//!   `per_storage` guests recovering, else queued (a queued answer is
//!   rewritten every few seconds, the coordinator's sign of life).
//! - The host budget, when set, is split evenly among the guests that
//!   recover (shares differ by at most 1 KiB/s and add up to the budget),
//!   written to each one's `control/mdguard/budget_kbps`, and removed from a
//!   guest once it no longer recovers.
//! - What the coordinator wrote is its state, and it is all in xenstore: a
//!   restarted service adopts it ([`Coordinator::adopt`]) and goes on.

use super::storage::{place, Backend, Place, StoragePattern};
use crate::heal::Ms;
use crate::report::admission::{Answer, Request, CTL_COORDINATOR, CTL_GRANT, QUEUED_REFRESH_S};
use crate::report::schema::CTL_BUDGET;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// How the coordinator is configured (`mdguard host run`'s options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// At most this many guests recover on one storage at once.
    pub per_storage: u32,
    /// The host's resync budget, KiB/s, split among the recovering guests;
    /// `None`: the coordinator leaves `budget_kbps` alone.
    pub budget_kbps: Option<u64>,
    /// An agent not heard from for this long is silent: its places are freed.
    pub silent_after: Ms,
    /// Storage servers: a storage matching one of these counts as the pattern.
    pub groups: Vec<StoragePattern>,
}

/// A queued answer is rewritten this often (below the protocol's
/// [`QUEUED_REFRESH_S`], so a late wake-up still keeps the promise).
pub const QUEUED_REWRITE: Ms = QUEUED_REFRESH_S * 1000 * 3 / 4;
const _: () = assert!(QUEUED_REWRITE < QUEUED_REFRESH_S * 1000);

/// Where a leg's recovery counts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    /// A storage (a backend's storage id, or the `--storage-group` pattern it
    /// matches).
    Storage(String),
    /// A leg no dom0 backend explains: a group of its own.
    Alone { domid: u32, device: String },
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Group::Storage(s) => f.write_str(&crate::text::printable(s.as_bytes(), 120)),
            Group::Alone { domid, device } => write!(f, "dom{domid}'s {device} (no dom0 backend)"),
        }
    }
}

/// The group of guest `domid`'s device.
pub fn group_of(
    domid: u32,
    device: &str,
    backends: &[Backend],
    patterns: &[StoragePattern],
) -> Group {
    match place(device, backends) {
        Place::Backend { storage, .. } => Group::Storage(
            patterns
                .iter()
                .find(|p| p.matches(&storage))
                .map_or_else(|| storage.as_str().to_string(), |p| p.as_str().to_string()),
        ),
        Place::NoParams { .. } | Place::NoBackend => Group::Alone {
            domid,
            device: device.to_string(),
        },
    }
}

/// What dom0 read about one guest: the planner's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub domid: u32,
    /// It publishes mdguard data: an agent runs (or ran) there.
    pub publishes: bool,
    /// Its resync request, when one stands and parses.
    pub request: Option<Request>,
    /// Its legs published `rebuilding`.
    pub rebuilding: Vec<String>,
    /// Its agent said it stopped.
    pub stopped: bool,
    /// When the coordinator last heard from it (its data changed).
    pub heard_at: Ms,
    /// dom0's backends for it.
    pub backends: Vec<Backend>,
}

/// What the coordinator wrote in one guest's `control/mdguard/`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    pub coordinator: Option<String>,
    pub answer: Option<Answer>,
    /// `budget_kbps` (only tracked when the coordinator splits a budget).
    pub budget: Option<u64>,
    /// When a queued answer was last written (`None`: not by this run).
    pub queued_at: Option<Ms>,
    /// Its place in the queue (first come, first served).
    pub since: Option<u64>,
}

/// One write to a guest's `control/mdguard/<key>`; `None` removes the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub domid: u32,
    pub key: &'static str,
    pub value: Option<Vec<u8>>,
}

/// What a plan decided, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Granted {
        domid: u32,
        groups: Vec<Group>,
    },
    Queued {
        domid: u32,
        behind: Vec<Group>,
    },
    /// Its places were freed: `why` (finished, silent, stopped, vanished).
    Released {
        domid: u32,
        why: &'static str,
    },
    Budget {
        recovering: usize,
        share: u64,
    },
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |g: &[Group]| {
            g.iter()
                .map(|g| g.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Decision::Granted { domid, groups } => {
                write!(f, "dom{domid}: resync granted on {}", list(groups))
            }
            Decision::Queued { domid, behind } => {
                write!(f, "dom{domid}: resync queued: {} busy", list(behind))
            }
            Decision::Released { domid, why } => write!(f, "dom{domid}: resync place freed ({why})"),
            Decision::Budget { recovering, share } => write!(
                f,
                "host resync budget split among {recovering} recovering guest(s): {share} KiB/s each"
            ),
        }
    }
}

/// What to write now, and the state after it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub writes: Vec<Write>,
    /// The coordinator's memory once the writes are done.
    pub written: BTreeMap<u32, Written>,
    order: u64,
    pub decisions: Vec<Decision>,
    /// When to plan again though nothing changed (a queued answer to
    /// refresh, a guest that may fall silent).
    pub next_due: Option<Ms>,
}

/// The admission state of one running `mdguard host run`.
#[derive(Debug, Clone)]
pub struct Coordinator {
    settings: Settings,
    /// Announced in each guest's `control/mdguard/coordinator`.
    token: String,
    written: BTreeMap<u32, Written>,
    /// Next queue place.
    order: u64,
}

fn put(writes: &mut Vec<Write>, domid: u32, key: &'static str, value: Option<Vec<u8>>) {
    writes.push(Write { domid, key, value });
}

/// One guest as the plan judges it.
struct Judged<'a> {
    seen: &'a Seen,
    alive: bool,
    /// Its grant stands for the request that stands.
    holding: bool,
    /// The groups it recovers on.
    held: BTreeSet<Group>,
    since: Option<u64>,
}

impl Coordinator {
    pub fn new(settings: Settings, token: String) -> Coordinator {
        Coordinator {
            settings,
            token,
            written: BTreeMap::new(),
            order: 0,
        }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// What an earlier run left in guest `domid`'s `control/mdguard/`:
    /// taken as written by this one (a restart goes on where it stopped).
    /// A budget is adopted only when this run splits one.
    pub fn adopt(&mut self, domid: u32, mut w: Written) {
        if self.settings.budget_kbps.is_none() {
            w.budget = None;
        }
        w.queued_at = None;
        w.since = None;
        self.written.insert(domid, w);
    }

    pub fn written(&self, domid: u32) -> Option<&Written> {
        self.written.get(&domid)
    }

    fn groups(&self, g: &Seen, devices: &[String]) -> BTreeSet<Group> {
        devices
            .iter()
            .map(|d| group_of(g.domid, d, &g.backends, &self.settings.groups))
            .collect()
    }

    /// What to write for the guests as `seen` at `now`.
    pub fn plan<'a>(&self, seen: impl IntoIterator<Item = &'a Seen>, now: Ms) -> Plan {
        let s = &self.settings;
        let mut order = self.order;
        let mut decisions = Vec::new();
        let mut judged: Vec<Judged<'_>> = Vec::new();
        for g in seen {
            let w = self.written.get(&g.domid);
            let alive =
                g.publishes && !g.stopped && now < g.heard_at.saturating_add(s.silent_after);
            let holding = alive
                && matches!(
                    (w.and_then(|w| w.answer.as_ref()), &g.request),
                    (Some(Answer::Granted { token }), Some(r)) if *token == r.token
                );
            let mut held = BTreeSet::new();
            if holding {
                held.extend(self.groups(g, &g.request.as_ref().expect("holding").devices));
            }
            if alive {
                held.extend(self.groups(g, &g.rebuilding));
            }
            let since = match (&g.request, w.and_then(|w| w.since)) {
                (None, _) => None,
                (Some(_), Some(n)) => Some(n),
                (Some(_), None) => {
                    order += 1;
                    Some(order)
                }
            };
            judged.push(Judged {
                seen: g,
                alive,
                holding,
                held,
                since,
            });
        }
        let mut occupancy: BTreeMap<Group, u32> = BTreeMap::new();
        for j in &judged {
            for gr in &j.held {
                *occupancy.entry(gr.clone()).or_default() += 1;
            }
        }
        // who asks, first come first served
        let mut asking: Vec<usize> = (0..judged.len())
            .filter(|&i| judged[i].alive && !judged[i].holding && judged[i].seen.request.is_some())
            .collect();
        asking.sort_by_key(|&i| (judged[i].since, judged[i].seen.domid));
        let mut granted: BTreeSet<u32> = BTreeSet::new();
        let mut queued: BTreeSet<u32> = BTreeSet::new();
        for i in asking {
            let j = &judged[i];
            let want = self.groups(j.seen, &j.seen.request.as_ref().expect("asks").devices);
            let busy: Vec<Group> = want
                .iter()
                .filter(|gr| {
                    let others =
                        occupancy.get(*gr).copied().unwrap_or(0) - u32::from(j.held.contains(*gr));
                    others >= s.per_storage
                })
                .cloned()
                .collect();
            if busy.is_empty() {
                for gr in &want {
                    if !j.held.contains(gr) {
                        *occupancy.entry(gr.clone()).or_default() += 1;
                    }
                }
                decisions.push(Decision::Granted {
                    domid: j.seen.domid,
                    groups: want.iter().cloned().collect(),
                });
                granted.insert(j.seen.domid);
                judged[i].held.extend(want);
            } else {
                if !matches!(
                    self.written.get(&j.seen.domid).and_then(|w| w.answer.as_ref()),
                    Some(Answer::Queued { token, .. }) if Some(token) == j.seen.request.as_ref().map(|r| &r.token)
                ) {
                    decisions.push(Decision::Queued {
                        domid: j.seen.domid,
                        behind: busy,
                    });
                }
                queued.insert(j.seen.domid);
            }
        }
        // the budget's shares
        let recovering: Vec<u32> = judged
            .iter()
            .filter(|j| !j.held.is_empty())
            .map(|j| j.seen.domid)
            .collect();
        let shares: BTreeMap<u32, u64> = match s.budget_kbps {
            Some(b) if !recovering.is_empty() => {
                let n = recovering.len() as u64;
                recovering
                    .iter()
                    .enumerate()
                    .map(|(i, id)| (*id, (b / n + u64::from((i as u64) < b % n)).max(1)))
                    .collect()
            }
            _ => BTreeMap::new(),
        };
        let mut writes = Vec::new();
        let mut written: BTreeMap<u32, Written> = BTreeMap::new();
        let mut next_due: Option<Ms> = None;
        let mut due = |t: Ms| next_due = Some(next_due.map_or(t, |d: Ms| d.min(t)));
        for j in &judged {
            let g = j.seen;
            let old = self.written.get(&g.domid).cloned().unwrap_or_default();
            let mut w = old.clone();
            w.since = j.since;
            if g.publishes && old.coordinator.as_deref() != Some(&self.token) {
                put(
                    &mut writes,
                    g.domid,
                    CTL_COORDINATOR,
                    Some(self.token.as_bytes().to_vec()),
                );
                w.coordinator = Some(self.token.clone());
            }
            // the budget first: a guest granted now starts throttled
            if s.budget_kbps.is_some() {
                let share = shares.get(&g.domid).copied();
                if share != old.budget {
                    put(
                        &mut writes,
                        g.domid,
                        CTL_BUDGET,
                        share.map(|v| v.to_string().into_bytes()),
                    );
                    w.budget = share;
                }
            }
            let request = g.request.as_ref();
            let answer = if j.holding || granted.contains(&g.domid) {
                Some(Answer::Granted {
                    token: request.expect("asked").token.clone(),
                })
            } else if queued.contains(&g.domid) {
                let token = request.expect("asked").token.clone();
                match &old.answer {
                    Some(Answer::Queued { token: t, seq })
                        if *t == token
                            && old.queued_at.is_some_and(|at| now < at + QUEUED_REWRITE) =>
                    {
                        Some(Answer::Queued { token, seq: *seq })
                    }
                    Some(Answer::Queued { token: t, seq }) if *t == token => {
                        w.queued_at = Some(now);
                        Some(Answer::Queued {
                            token,
                            seq: seq + 1,
                        })
                    }
                    _ => {
                        w.queued_at = Some(now);
                        Some(Answer::Queued { token, seq: 1 })
                    }
                }
            } else {
                None
            };
            if answer != old.answer {
                if answer.is_none() && matches!(old.answer, Some(Answer::Granted { .. })) {
                    decisions.push(Decision::Released {
                        domid: g.domid,
                        why: if !g.publishes {
                            "its agent's data is gone"
                        } else if g.stopped {
                            "its agent stopped"
                        } else if !j.alive {
                            "its agent fell silent"
                        } else {
                            "its resync is over"
                        },
                    });
                }
                put(
                    &mut writes,
                    g.domid,
                    CTL_GRANT,
                    answer.as_ref().map(Answer::to_bytes),
                );
                w.answer = answer;
            }
            if !matches!(w.answer, Some(Answer::Queued { .. })) {
                w.queued_at = None;
            }
            if let Some(at) = w.queued_at {
                due(at + QUEUED_REWRITE);
            }
            // its silence would change the plan: look again then
            let matters =
                !j.held.is_empty() || request.is_some() || w.answer.is_some() || w.budget.is_some();
            if j.alive && matters {
                due(g.heard_at.saturating_add(s.silent_after));
            }
            if w != Written::default() {
                written.insert(g.domid, w);
            }
        }
        // guests that vanished: their places are free, nothing to write
        let present: BTreeSet<u32> = judged.iter().map(|j| j.seen.domid).collect();
        for (domid, w) in &self.written {
            if !present.contains(domid) && matches!(w.answer, Some(Answer::Granted { .. })) {
                decisions.push(Decision::Released {
                    domid: *domid,
                    why: "it vanished",
                });
            }
        }
        if let (Some(&share), true) = (
            shares.values().min(),
            writes.iter().any(|w| w.key == CTL_BUDGET),
        ) {
            decisions.push(Decision::Budget {
                recovering: shares.len(),
                share,
            });
        }
        Plan {
            writes,
            written,
            order,
            decisions,
            next_due,
        }
    }

    /// The plan was carried out, except the writes for the guests in
    /// `skipped` (gone meanwhile): forgotten.
    pub fn apply(&mut self, plan: Plan, skipped: &[u32]) {
        self.written = plan.written;
        self.written.retain(|id, _| !skipped.contains(id));
        self.order = plan.order;
    }

    /// A clean stop: the coordinator's announcement, its queued answers and
    /// the budgets it split go (guests fall back to their jitter and their
    /// own limits); grants stand, so a restarted coordinator adopts them.
    pub fn stop(&self) -> Vec<Write> {
        let mut out = Vec::new();
        for (domid, w) in &self.written {
            if w.coordinator.is_some() {
                out.push(Write {
                    domid: *domid,
                    key: CTL_COORDINATOR,
                    value: None,
                });
            }
            if matches!(w.answer, Some(Answer::Queued { .. })) {
                out.push(Write {
                    domid: *domid,
                    key: CTL_GRANT,
                    value: None,
                });
            }
            if w.budget.is_some() {
                out.push(Write {
                    domid: *domid,
                    key: CTL_BUDGET,
                    value: None,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::host::storage::{BackendKind, RawBackend};

    const S: Ms = 1000;
    const POOL: &str = "/dev/vg_storage2/*";

    fn settings(k: u32, budget: Option<u64>) -> Settings {
        Settings {
            per_storage: k,
            budget_kbps: budget,
            silent_after: 30 * S,
            groups: vec![StoragePattern::parse(POOL).unwrap()],
        }
    }

    /// Guest `domid` with `xvdc` on storage `params` (one of storage2's
    /// volumes unless said otherwise).
    fn guest(domid: u32, params: &str) -> Seen {
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
            request: None,
            rebuilding: vec![],
            stopped: false,
            heard_at: 0,
            backends: vec![Backend::parse(BackendKind::Vbd, domid, "51744", &raw).unwrap()],
        }
    }

    fn on_storage2(domid: u32) -> Seen {
        guest(domid, &format!("/dev/vg_storage2/g{domid}"))
    }

    fn asking(mut g: Seen, token: &str) -> Seen {
        g.request = Some(Request::new(token.into(), &["xvdc".into()]));
        g
    }

    fn coord(k: u32, budget: Option<u64>) -> Coordinator {
        Coordinator::new(settings(k, budget), "c1".into())
    }

    /// Plan and apply.
    fn step(c: &mut Coordinator, seen: &[Seen], now: Ms) -> Plan {
        let p = c.plan(seen, now);
        c.apply(p.clone(), &[]);
        p
    }

    fn answer_of(p: &Plan, domid: u32) -> Option<Option<Answer>> {
        p.writes
            .iter()
            .find(|w| w.domid == domid && w.key == CTL_GRANT)
            .map(|w| w.value.as_deref().map(|v| Answer::parse(v).unwrap()))
    }

    fn budget_of(p: &Plan, domid: u32) -> Option<Option<u64>> {
        p.writes
            .iter()
            .find(|w| w.domid == domid && w.key == CTL_BUDGET)
            .map(|w| {
                w.value
                    .as_deref()
                    .map(|v| std::str::from_utf8(v).unwrap().parse().unwrap())
            })
    }

    fn granted(token: &str) -> Option<Option<Answer>> {
        Some(Some(Answer::Granted {
            token: token.into(),
        }))
    }

    fn is_queued(a: Option<Option<Answer>>) -> bool {
        matches!(a, Some(Some(Answer::Queued { .. })))
    }

    /// The guests the coordinator's memory says hold a grant for the request
    /// they have.
    fn holders(c: &Coordinator, seen: &[Seen]) -> Vec<u32> {
        seen.iter()
            .filter(|g| {
                matches!((c.written(g.domid).and_then(|w| w.answer.as_ref()), &g.request),
                    (Some(Answer::Granted { token }), Some(r)) if *token == r.token)
            })
            .map(|g| g.domid)
            .collect()
    }

    fn budgets(c: &Coordinator, seen: &[Seen]) -> Vec<u64> {
        seen.iter()
            .filter_map(|g| c.written(g.domid).and_then(|w| w.budget))
            .collect()
    }

    #[test]
    fn a_lone_guest_is_granted_at_once_with_the_whole_budget() {
        let mut c = coord(2, Some(20000));
        let seen = vec![asking(on_storage2(5), "t5")];
        let p = step(&mut c, &seen, 0);
        assert_eq!(answer_of(&p, 5), granted("t5"));
        assert_eq!(budget_of(&p, 5), Some(Some(20000)));
        // the announcement, then the budget before the grant
        let keys: Vec<&str> = p.writes.iter().map(|w| w.key).collect();
        assert_eq!(keys, vec![CTL_COORDINATOR, CTL_BUDGET, CTL_GRANT]);
        assert!(p.decisions.contains(&Decision::Granted {
            domid: 5,
            groups: vec![Group::Storage(POOL.into())]
        }));
        // nothing changed: nothing to write
        assert!(step(&mut c, &seen, S).writes.is_empty());
    }

    #[test]
    fn at_most_k_per_storage_first_come_first_served_the_rest_queued() {
        let mut c = coord(2, Some(9000));
        // 7 asks first, then 3, 9, 4, 5
        let mut seen = vec![asking(on_storage2(7), "t7")];
        step(&mut c, &seen, 0);
        for id in [3, 9, 4, 5] {
            seen.push(asking(on_storage2(id), &format!("t{id}")));
        }
        let p = step(&mut c, &seen, S);
        assert_eq!(
            holders(&c, &seen),
            vec![7, 3],
            "7 first, then the lowest domid"
        );
        for id in [9, 4, 5] {
            assert!(is_queued(answer_of(&p, id)), "{id}: {p:?}");
        }
        // two recover: 4500 each, the sum is the budget
        assert_eq!(budgets(&c, &seen), vec![4500, 4500]);
        assert!(p.decisions.contains(&Decision::Queued {
            domid: 9,
            behind: vec![Group::Storage(POOL.into())]
        }));
    }

    #[test]
    fn shares_are_even_and_add_up_to_the_budget_counting_guests_rebuilding_without_a_grant() {
        let mut c = coord(3, Some(10000));
        let mut seen: Vec<Seen> = (1..=3)
            .map(|id| asking(on_storage2(id), &format!("t{id}")))
            .collect();
        // a guest recovering without a grant (an older agent, a fallback)
        let mut other = guest(8, "/dev/vg_storage1/g8");
        other.rebuilding = vec!["xvdc".into()];
        seen.push(other);
        step(&mut c, &seen, 0);
        let b = budgets(&c, &seen);
        assert_eq!(b.len(), 4);
        assert_eq!(b.iter().sum::<u64>(), 10000);
        assert!(
            b.iter().max().unwrap() - b.iter().min().unwrap() <= 1,
            "{b:?}"
        );
        // a guest rebuilding without a grant takes a place on its storage too
        let mut c = coord(1, None);
        let mut rebuilding = on_storage2(1);
        rebuilding.rebuilding = vec!["xvdc".into()];
        let seen = vec![rebuilding, asking(on_storage2(2), "t2")];
        let p = step(&mut c, &seen, 0);
        assert!(is_queued(answer_of(&p, 2)));
        assert!(
            !p.writes.iter().any(|w| w.key == CTL_BUDGET),
            "no budget: untouched"
        );
    }

    #[test]
    fn a_finished_guest_frees_its_place_and_the_budget_is_split_again() {
        let mut c = coord(1, Some(8000));
        let mut seen = vec![asking(on_storage2(1), "t1"), asking(on_storage2(2), "t2")];
        step(&mut c, &seen, 0);
        assert_eq!(holders(&c, &seen), vec![1]);
        // 1 adds its leg and rebuilds; 2 still queued
        seen[0].rebuilding = vec!["xvdc".into()];
        assert!(step(&mut c, &seen, S).writes.is_empty());
        // 1 is in sync and takes its request away
        seen[0].rebuilding.clear();
        seen[0].request = None;
        let p = step(&mut c, &seen, 2 * S);
        assert_eq!(answer_of(&p, 1), Some(None), "the old grant goes");
        assert_eq!(budget_of(&p, 1), Some(None), "and its budget");
        assert_eq!(answer_of(&p, 2), granted("t2"));
        assert_eq!(budget_of(&p, 2), Some(Some(8000)));
        assert!(p.decisions.contains(&Decision::Released {
            domid: 1,
            why: "its resync is over"
        }));
        // 2 done too: no budget left anywhere
        seen[1].request = None;
        step(&mut c, &seen, 3 * S);
        assert!(budgets(&c, &seen).is_empty());
        assert!(holders(&c, &seen).is_empty());
    }

    #[test]
    fn a_guest_that_vanishes_frees_its_place_and_nothing_is_written_to_it() {
        let mut c = coord(1, Some(8000));
        let seen = vec![asking(on_storage2(1), "t1"), asking(on_storage2(2), "t2")];
        step(&mut c, &seen, 0);
        let p = step(&mut c, &seen[1..], S);
        assert!(p.writes.iter().all(|w| w.domid == 2), "{p:?}");
        assert_eq!(answer_of(&p, 2), granted("t2"));
        assert_eq!(budget_of(&p, 2), Some(Some(8000)));
        assert!(p.decisions.contains(&Decision::Released {
            domid: 1,
            why: "it vanished"
        }));
        assert!(c.written(1).is_none());
    }

    #[test]
    fn a_guest_that_falls_silent_or_stops_loses_its_place() {
        for stop in [false, true] {
            let mut c = coord(1, Some(8000));
            let mut seen = vec![asking(on_storage2(1), "t1"), asking(on_storage2(2), "t2")];
            let p = step(&mut c, &seen, 0);
            // the plan asks to be woken when guest 1 would fall silent
            assert_eq!(p.next_due, Some(QUEUED_REWRITE.min(30 * S)));
            // guest 2 keeps refreshing its request, guest 1 does not
            seen[1].heard_at = 25 * S;
            let now = if stop {
                seen[0].stopped = true;
                5 * S
            } else {
                30 * S
            };
            let p = step(&mut c, &seen, now);
            assert_eq!(answer_of(&p, 1), Some(None), "stop {stop}: grant revoked");
            assert_eq!(budget_of(&p, 1), Some(None));
            assert_eq!(answer_of(&p, 2), granted("t2"));
            assert!(p.decisions.contains(&Decision::Released {
                domid: 1,
                why: if stop {
                    "its agent stopped"
                } else {
                    "its agent fell silent"
                }
            }));
            // heard again (it rewrites its request): it asks anew and waits its turn
            seen[0].stopped = false;
            seen[0].heard_at = now + S;
            let p = step(&mut c, &seen, now + S);
            assert!(is_queued(answer_of(&p, 1)), "{p:?}");
        }
    }

    #[test]
    fn a_restarted_coordinator_adopts_what_is_in_xenstore_and_keeps_k() {
        let mut c = coord(2, Some(9000));
        let seen: Vec<Seen> = (1..=4)
            .map(|id| asking(on_storage2(id), &format!("t{id}")))
            .collect();
        step(&mut c, &seen, 0);
        assert_eq!(holders(&c, &seen), vec![1, 2]);
        // a new run: what the old one wrote is read back from xenstore
        let mut again = Coordinator::new(settings(2, Some(9000)), "c2".into());
        for g in &seen {
            again.adopt(g.domid, c.written(g.domid).cloned().unwrap());
        }
        let p = step(&mut again, &seen, 10 * S);
        // its own announcement, the queued answers refreshed (no time of
        // writing is known), and nothing else: no new grant, same budgets
        assert!(p.writes.iter().all(|w| w.key != CTL_BUDGET), "{p:?}");
        for id in [1, 2] {
            assert_eq!(answer_of(&p, id), None, "{id} keeps its grant");
        }
        for id in [3, 4] {
            assert!(matches!(
                answer_of(&p, id),
                Some(Some(Answer::Queued { seq: 2, .. }))
            ));
        }
        assert_eq!(
            p.writes.iter().filter(|w| w.key == CTL_COORDINATOR).count(),
            4
        );
        assert_eq!(holders(&again, &seen), vec![1, 2]);
        assert_eq!(budgets(&again, &seen), vec![4500, 4500]);
        // a budget is adopted only by a run that splits one
        let mut plain = Coordinator::new(settings(2, None), "c3".into());
        plain.adopt(1, c.written(1).cloned().unwrap());
        assert_eq!(plain.written(1).unwrap().budget, None);
    }

    #[test]
    fn storages_do_not_block_each_other_and_a_leg_without_backend_is_its_own_group() {
        let mut c = coord(1, None);
        let mut nbd_in_guest = asking(on_storage2(3), "t3");
        nbd_in_guest.backends.clear(); // its leg is nbd inside the guest
        let mut nbd_in_guest2 = asking(on_storage2(4), "t4");
        nbd_in_guest2.backends.clear();
        let seen = vec![
            asking(on_storage2(1), "t1"),
            asking(guest(2, "/dev/vg_storage1/g2"), "t2"),
            nbd_in_guest,
            nbd_in_guest2,
            asking(on_storage2(5), "t5"),
        ];
        let p = step(&mut c, &seen, 0);
        assert_eq!(holders(&c, &seen), vec![1, 2, 3, 4]);
        assert!(is_queued(answer_of(&p, 5)));
        assert!(p.decisions.contains(&Decision::Granted {
            domid: 3,
            groups: vec![Group::Alone {
                domid: 3,
                device: "xvdc".into()
            }]
        }));
        // without the storage-group pattern each volume is a storage
        let mut c = Coordinator::new(
            Settings {
                groups: vec![],
                ..settings(1, None)
            },
            "c".into(),
        );
        step(&mut c, &seen, 0);
        assert_eq!(holders(&c, &seen), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_queued_answer_is_refreshed_and_the_service_wakes_for_it() {
        let mut c = coord(1, None);
        let mut seen = vec![asking(on_storage2(1), "t1"), asking(on_storage2(2), "t2")];
        let p = step(&mut c, &seen, 0);
        assert!(matches!(
            answer_of(&p, 2),
            Some(Some(Answer::Queued { seq: 1, .. }))
        ));
        assert_eq!(p.next_due, Some(QUEUED_REWRITE));
        assert!(step(&mut c, &seen, QUEUED_REWRITE - 1).writes.is_empty());
        seen[0].heard_at = QUEUED_REWRITE;
        seen[1].heard_at = QUEUED_REWRITE;
        let p = step(&mut c, &seen, QUEUED_REWRITE);
        assert_eq!(p.writes.len(), 1, "{p:?}");
        assert!(matches!(
            answer_of(&p, 2),
            Some(Some(Answer::Queued { seq: 2, .. }))
        ));
        // a queued guest asks anew (another leg): a new token, queued at 1
        seen[1] = asking(on_storage2(2), "t2b");
        seen[1].heard_at = QUEUED_REWRITE;
        let p = step(&mut c, &seen, QUEUED_REWRITE + 1);
        assert_eq!(
            answer_of(&p, 2),
            Some(Some(Answer::Queued {
                token: "t2b".into(),
                seq: 1
            }))
        );
    }

    #[test]
    fn idle_guests_get_the_announcement_once_and_nothing_else() {
        let mut c = coord(2, Some(1000));
        let mut quiet = on_storage2(2);
        quiet.publishes = false; // no agent: not coordinated
        let seen = vec![on_storage2(1), quiet];
        let p = step(&mut c, &seen, 0);
        assert_eq!(
            p.writes,
            vec![Write {
                domid: 1,
                key: CTL_COORDINATOR,
                value: Some(b"c1".to_vec())
            }]
        );
        let p = step(&mut c, &seen, 3600 * S);
        assert!(p.writes.is_empty());
        assert_eq!(p.next_due, None, "nothing to wake up for");
        // a clean stop takes the announcement back
        assert_eq!(
            c.stop(),
            vec![Write {
                domid: 1,
                key: CTL_COORDINATOR,
                value: None
            }]
        );
    }

    #[test]
    fn a_clean_stop_keeps_grants_and_removes_the_rest() {
        let mut c = coord(1, Some(1000));
        let seen = vec![asking(on_storage2(1), "t1"), asking(on_storage2(2), "t2")];
        step(&mut c, &seen, 0);
        let stop = c.stop();
        let keys: Vec<(u32, &str)> = stop.iter().map(|w| (w.domid, w.key)).collect();
        assert_eq!(
            keys,
            vec![
                (1, CTL_COORDINATOR),
                (1, CTL_BUDGET),
                (2, CTL_COORDINATOR),
                (2, CTL_GRANT)
            ]
        );
        assert!(stop.iter().all(|w| w.value.is_none()));
    }

    #[test]
    fn a_guest_recovering_and_asking_for_more_is_not_blocked_by_itself() {
        let mut c = coord(1, None);
        let mut g = asking(on_storage2(1), "t1");
        g.rebuilding = vec!["xvdc".into()];
        let p = step(&mut c, &[g], 0);
        assert_eq!(answer_of(&p, 1), granted("t1"));
    }
}
