//! dom0's metrics, `mdguard host metrics` and `mdguard host run`'s listener:
//! every guest as `host status` reads it, the same array series as in the
//! guest with the guest's labels in front (`domain`, `domid`), and what only
//! dom0 knows: whether the guest publishes, its judged health, whether its
//! agent answers, its resync admission ([`Admission`]). Pure: the reading is
//! `report::host` (one look) or the service's own state.
//!
//! Everything a guest published is hostile: label values are stripped of
//! control characters, cut to [`super::array::LABEL_MAX`] characters and
//! escaped; a label set a guest repeats (two members of one name) is kept once
//! and counted in the guest's `mdguard_problems`.

use super::array::{flag, from_json, push_array};
use super::exposition::Families;
use super::guest::{AGENT_UP, PROBLEMS};
use crate::md::model::Health;
use crate::report::host::grants::{Admission, Grant};
use crate::report::host::guest::{AgentState, GuestStatus};
use crate::text::strip_controls;
use std::borrow::Borrow;

pub const GUEST_PUBLISHING: &str = "mdguard_guest_publishing";
pub const GUEST_HEALTH: &str = "mdguard_guest_health";
pub const AGENT_STATE: &str = "mdguard_agent_state";
pub const GUEST_UPDATED: &str = "mdguard_guest_updated_timestamp_seconds";
pub const XENSTORE_UP: &str = "mdguard_xenstore_up";
pub const RESYNC_GRANT: &str = "mdguard_resync_grant";
pub const RESYNC_QUEUE_POSITION: &str = "mdguard_resync_queue_position";
pub const RESYNC_BUDGET: &str = "mdguard_resync_budget_kbps";
pub const STORAGE_GRANTS: &str = "mdguard_storage_grants";
pub const STORAGE_GRANTS_MAX: &str = "mdguard_storage_grants_max";

/// The agent's liveness words, as `host status --json` spells them.
const AGENT_STATES: [(AgentState, &str); 4] = [
    (AgentState::Answering, "answering"),
    (AgentState::Silent, "silent"),
    (AgentState::Stopped, "stopped"),
    (AgentState::NotAsked, "not-asked"),
];

/// Longest domain name kept in a label (dom0 reads at most 256 bytes).
const DOMAIN_MAX: usize = 128;
/// Longest storage kept in a label (a backend's `params`, a pattern).
const STORAGE_MAX: usize = 256;

/// Whether xenstore could be read: the only series when it could not.
pub fn xenstore_up(f: &mut Families, up: bool) {
    f.push(
        XENSTORE_UP,
        "1 when mdguard host could read xenstore; 0 when it could not, and nothing else is known.",
        &[],
        flag(up),
    );
}

/// Every guest's series (after [`xenstore_up`]), with resync admission as
/// `admission` has it; then each storage's places, when known.
pub fn host_metrics<G: Borrow<GuestStatus>>(guests: &[G], admission: &Admission) -> Families {
    let mut f = Families::new();
    xenstore_up(&mut f, true);
    for g in guests {
        let g: &GuestStatus = g.borrow();
        let name = strip_controls(&g.name, DOMAIN_MAX);
        let domid = g.domid.to_string();
        let labels = [("domain", name.as_str()), ("domid", domid.as_str())];
        f.push(
            GUEST_PUBLISHING,
            "1 when the domain publishes mdguard data under data/mdguard in xenstore; its other series exist only then.",
            &labels,
            flag(g.health.is_some()),
        );
        let Some(judged) = g.health else { continue };
        for h in Health::ALL {
            f.push(
                GUEST_HEALTH,
                "The guest's health as dom0 judges it (1 for the current one): never better than any array or value it published; unknown when something could not be read.",
                &[labels[0], labels[1], ("health", h.as_str())],
                flag(judged == h),
            );
        }
        if g.agent != AgentState::NotAsked {
            f.push(
                AGENT_UP,
                "1 when the agent (mdguard run) runs and keeps /run/mdguard/agent.json; in dom0, per guest: 1 when its agent answered the ping just now.",
                &labels,
                flag(g.agent == AgentState::Answering),
            );
        }
        for (state, word) in AGENT_STATES {
            f.push(
                AGENT_STATE,
                "The guest's agent (1 for the current one): answering the ping just now, silent (no answer: what it published is stale), stopped (it said so), not-asked (--no-ping).",
                &[labels[0], labels[1], ("state", word)],
                flag(g.agent == state),
            );
        }
        let turn = admission.guests.get(&g.domid);
        let grant = turn.map_or(Grant::None, |t| t.grant);
        for word in Grant::WORDS {
            f.push(
                RESYNC_GRANT,
                "The guest's turn to add its returning legs (1 for the current one): granted by dom0's coordinator (mdguard host run), queued behind other recoveries on its storage, or none (no request, or none answered).",
                &[labels[0], labels[1], ("state", word)],
                flag(grant.word() == word),
            );
        }
        if let Grant::Queued { position: Some(n) } = grant {
            f.push(
                RESYNC_QUEUE_POSITION,
                "The guest's place among the queued guests, 1 served first (mdguard host run's listener only: the order is the coordinator's).",
                &labels,
                f64::from(n),
            );
        }
        if let Some(b) = turn.and_then(|t| t.budget_kbps) {
            f.push(
                RESYNC_BUDGET,
                "The resync budget dom0 wrote for the guest (control/mdguard/budget_kbps), KiB/s: its share of the host budget while it recovers.",
                &labels,
                b as f64,
            );
        }
        if let Some(t) = g.updated {
            f.push(
                GUEST_UPDATED,
                "Unix time of the guest's last published change (data/mdguard/updated).",
                &labels,
                t as f64,
            );
        }
        let before = f.dropped();
        for (name, j) in &g.arrays {
            push_array(&mut f, &labels, &from_json(name, j), None);
        }
        let repeated = f.dropped() - before;
        f.push(
            PROBLEMS,
            "Things that could not be read (mdstat lines, sysfs files; in dom0, values a guest published), each said by `mdguard status` / `host status`.",
            &labels,
            (g.errors.len() + repeated) as f64,
        );
    }
    for st in admission.storages.iter().flatten() {
        let storage = strip_controls(&st.storage, STORAGE_MAX);
        let labels = [("storage", storage.as_str())];
        f.push(
            STORAGE_GRANTS,
            "Guests holding a resync grant on the storage (a dom0 backend's storage, or the --storage-group it falls under; mdguard host run's listener only).",
            &labels,
            f64::from(st.held),
        );
        f.push(
            STORAGE_GRANTS_MAX,
            "Recoveries granted at once per storage at most (mdguard host run --per-storage).",
            &labels,
            f64::from(st.max),
        );
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::host::guest::judge;
    use crate::report::metrics::exposition::parse;
    use crate::report::metrics::guest::tests::value;
    use crate::report::schema::ArrayJson;

    fn guest(domid: u32, name: &str, agent: AgentState, arrays: &[(&str, &str)]) -> GuestStatus {
        let mut g = GuestStatus::new(domid, name.into());
        for (n, j) in arrays {
            match ArrayJson::parse(j.as_bytes()) {
                Ok(a) => {
                    g.arrays.insert(n.to_string(), a);
                }
                Err(e) => g.errors.push(format!("{n}: {e}")),
            }
        }
        // what an honest agent writes in `health`: its worst array
        let published = g
            .arrays
            .values()
            .map(|a| a.health)
            .max()
            .unwrap_or(Health::Ok);
        g.health = Some(judge(published, &g.arrays, &mut g.errors));
        g.agent = agent;
        g.updated = Some(1_700_000_000);
        g
    }

    const DEGRADED: &str = r#"{"health":"degraded","level":"raid1","disks":2,"in_sync":1,"members":[["xvdb","in_sync"],["xvdc","faulty"]]}"#;
    const RECOVERING: &str = r#"{"health":"recovering","level":"raid1","disks":2,"in_sync":1,"members":[["xvdb","in_sync"],["xvdc","rebuilding"]],"sync":["recover",42.5]}"#;

    #[test]
    fn every_guest_with_its_labels_and_its_agent() {
        let mut bare = GuestStatus::new(9, "bare".into());
        bare.agent = AgentState::None;
        let guests = vec![
            guest(5, "web", AgentState::Answering, &[("md0", DEGRADED)]),
            guest(6, "db", AgentState::Answering, &[("md0", RECOVERING)]),
            guest(7, "app", AgentState::Silent, &[("md0", DEGRADED)]),
            guest(8, "old", AgentState::Stopped, &[]),
            bare,
        ];
        let text = host_metrics(&guests, &Admission::default()).render();
        let s = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let v = |name, want: &[(&str, &str)]| value(&s, name, want);
        assert_eq!(v(XENSTORE_UP, &[]), Some(1.0));
        let on = |d: &'static str, extra: &[(&'static str, &'static str)]| {
            let mut w = vec![("domain", d)];
            w.extend_from_slice(extra);
            w
        };
        assert_eq!(v(AGENT_UP, &on("web", &[("domid", "5")])), Some(1.0));
        assert_eq!(v(AGENT_UP, &on("app", &[])), Some(0.0), "silent");
        assert_eq!(v(AGENT_UP, &on("old", &[])), Some(0.0), "stopped");
        assert_eq!(
            v(AGENT_STATE, &on("app", &[("state", "silent")])),
            Some(1.0)
        );
        assert_eq!(
            v(AGENT_STATE, &on("old", &[("state", "stopped")])),
            Some(1.0)
        );
        assert_eq!(
            v(AGENT_STATE, &on("old", &[("state", "answering")])),
            Some(0.0)
        );
        assert_eq!(v(GUEST_PUBLISHING, &on("bare", &[])), Some(0.0));
        assert_eq!(v(GUEST_PUBLISHING, &on("web", &[])), Some(1.0));
        assert_eq!(v(AGENT_UP, &on("bare", &[])), None, "no agent, no series");
        assert_eq!(v(GUEST_HEALTH, &on("bare", &[])), None);
        assert_eq!(
            v(GUEST_HEALTH, &on("web", &[("health", "degraded")])),
            Some(1.0)
        );
        assert_eq!(
            v(GUEST_HEALTH, &on("db", &[("health", "recovering")])),
            Some(1.0)
        );
        assert_eq!(v(GUEST_UPDATED, &on("db", &[])), Some(1.7e9));
        // the array series, the guest's labels in front
        let web_md0 = on("web", &[("domid", "5"), ("array", "md0")]);
        let mut w = web_md0.clone();
        w.push(("health", "degraded"));
        assert_eq!(v("mdguard_array_health", &w), Some(1.0));
        let mut w = web_md0.clone();
        w.push(("state", "failed"));
        assert_eq!(v("mdguard_md_disks", &w), Some(1.0));
        assert_eq!(
            v(
                "mdguard_sync_completed_ratio",
                &on("db", &[("action", "recover")])
            ),
            Some(0.425)
        );
        assert_eq!(
            v("mdguard_md_state", &[]),
            None,
            "md's own state is the guest's"
        );
        let first = s.iter().find(|p| p.name == "mdguard_array_health").unwrap();
        let keys: Vec<&str> = first.labels.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["domain", "domid", "array", "health"]);
    }

    #[test]
    fn resync_admission_per_guest_and_per_storage() {
        use crate::report::host::grants::{GuestGrant, StorageGrants};
        let guests = vec![
            guest(5, "web", AgentState::Answering, &[("md0", DEGRADED)]),
            guest(6, "db", AgentState::Answering, &[("md0", DEGRADED)]),
            guest(7, "app", AgentState::Answering, &[("md0", DEGRADED)]),
        ];
        let mut a = Admission::default();
        a.guests.insert(
            5,
            GuestGrant {
                grant: Grant::Granted,
                budget_kbps: Some(20000),
            },
        );
        a.guests.insert(
            6,
            GuestGrant {
                grant: Grant::Queued { position: None },
                budget_kbps: None,
            },
        );
        // what host metrics knows: the state and the budget, no order, no storage
        let text = host_metrics(&guests, &a).render();
        let s = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let v = |name, want: &[(&str, &str)]| value(&s, name, want);
        assert_eq!(
            v(RESYNC_GRANT, &[("domain", "web"), ("state", "granted")]),
            Some(1.0)
        );
        assert_eq!(
            v(RESYNC_GRANT, &[("domain", "db"), ("state", "queued")]),
            Some(1.0)
        );
        assert_eq!(
            v(RESYNC_GRANT, &[("domain", "db"), ("state", "granted")]),
            Some(0.0)
        );
        assert_eq!(
            v(RESYNC_GRANT, &[("domain", "app"), ("state", "none")]),
            Some(1.0),
            "not in the admission: none"
        );
        assert_eq!(v(RESYNC_BUDGET, &[("domain", "web")]), Some(20000.0));
        assert_eq!(v(RESYNC_BUDGET, &[("domain", "db")]), None);
        assert!(!text.contains(RESYNC_QUEUE_POSITION), "{text}");
        assert!(!text.contains(STORAGE_GRANTS), "{text}");
        // what the coordinator knows besides
        a.guests.get_mut(&6).unwrap().grant = Grant::Queued { position: Some(1) };
        a.storages = Some(vec![StorageGrants {
            storage: "/dev/vg_storage2/*".into(),
            held: 1,
            max: 2,
        }]);
        let text = host_metrics(&guests, &a).render();
        let s = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let v = |name, want: &[(&str, &str)]| value(&s, name, want);
        assert_eq!(
            v(RESYNC_QUEUE_POSITION, &[("domain", "db"), ("domid", "6")]),
            Some(1.0)
        );
        assert_eq!(
            v(STORAGE_GRANTS, &[("storage", "/dev/vg_storage2/*")]),
            Some(1.0)
        );
        assert_eq!(
            v(STORAGE_GRANTS_MAX, &[("storage", "/dev/vg_storage2/*")]),
            Some(2.0)
        );
    }

    /// What a hostile guest can put in its JSON (names that end the label, the
    /// line, or repeat a series) reads back as one guest's text, escaped, with
    /// the repeats counted as problems, and the honest guest untouched.
    #[test]
    fn hostile_json_stays_in_its_labels() {
        let evil = r#"{"health":"ok","level":"raid1","disks":2,"in_sync":2,"members":[["x\"} 1\nmdguard_agent_up{domain=\"web\"} 1\n#","in_sync"],["dup","in_sync"],["dup","in_sync"],["back\\slash","a\u001b[2Jb"],["LONG-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","in_sync"]],"sync":["recover\n",1e30],"refused":[["dup","x"],["dup","x"]],"flags":["stalled"]}"#;
        let guests = vec![
            guest(5, "web", AgentState::Answering, &[("md0", DEGRADED)]),
            guest(6, "evil\n\"dom", AgentState::Answering, &[("md0", evil)]),
        ];
        let text = host_metrics(&guests, &Admission::default()).render();
        let s = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(!text.contains('\x1b'), "{text}");
        let evil_dom = "evil\"dom";
        let v = |name, want: &[(&str, &str)]| value(&s, name, want);
        // the forged line is a label value, not a series
        assert_eq!(v(AGENT_UP, &[("domain", "web")]), Some(1.0));
        assert_eq!(s.iter().filter(|p| p.name == AGENT_UP).count(), 2, "{text}");
        assert_eq!(
            v(
                "mdguard_leg_state",
                &[
                    ("domain", evil_dom),
                    ("device", "x\"} 1\nmdguard_agent_up{domain=\"web\"} 1\n#")
                ]
            ),
            None,
            "control characters are dropped"
        );
        assert_eq!(
            v(
                "mdguard_leg_state",
                &[
                    ("domain", evil_dom),
                    ("device", "x\"} 1mdguard_agent_up{domain=\"web\"} 1#")
                ]
            ),
            Some(1.0)
        );
        assert_eq!(
            v(
                "mdguard_leg_state",
                &[("device", "back\\slash"), ("state", "a[2Jb")]
            ),
            Some(1.0)
        );
        let long: Vec<&str> = s
            .iter()
            .filter_map(|p| p.label("device"))
            .filter(|d| d.starts_with("LONG"))
            .collect();
        assert_eq!(long.len(), 1);
        assert_eq!(long[0].chars().count(), super::super::array::LABEL_MAX);
        // repeats kept once, counted as the guest's problems
        assert_eq!(
            s.iter()
                .filter(|p| p.name == "mdguard_leg_state" && p.label("device") == Some("dup"))
                .count(),
            1
        );
        // the two repeats, and judge's "health ok but md0 degraded" (stalled)
        assert_eq!(v(PROBLEMS, &[("domain", evil_dom)]), Some(3.0));
        assert_eq!(v(PROBLEMS, &[("domain", "web")]), Some(0.0));
        // a flagged array is degraded whatever it says; progress is bounded
        assert_eq!(
            v(
                "mdguard_array_health",
                &[("domain", evil_dom), ("health", "degraded")]
            ),
            Some(1.0)
        );
        assert_eq!(
            v(
                "mdguard_sync_completed_ratio",
                &[("domain", evil_dom), ("action", "recover")]
            ),
            Some(1.0)
        );
        assert_eq!(
            v(GUEST_HEALTH, &[("domain", evil_dom), ("health", "ok")]),
            Some(0.0)
        );
    }
}
