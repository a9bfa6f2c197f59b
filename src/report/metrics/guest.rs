//! The guest's metrics, `mdguard status --format=prometheus` (for
//! node_exporter's textfile collector): md's state with what the running
//! agent knows beyond it. Pure.

use super::array::{flag, push_array, MdExtra};
use super::exposition::Families;
use crate::md::model::Snapshot;
use crate::report::agent_state::AgentView;

pub const AGENT_UP: &str = "mdguard_agent_up";
pub const PROBLEMS: &str = "mdguard_problems";

/// Every series of this guest: whether a live agent's view was found, how many
/// things could not be read, and each array's series ([`push_array`]) with md's
/// own state, size and sync progress.
pub fn guest_metrics(snap: &Snapshot, view: Option<&AgentView>) -> Families {
    let mut f = Families::new();
    f.push(
        AGENT_UP,
        "1 when the agent (mdguard run) runs and keeps /run/mdguard/agent.json; in dom0, per guest: 1 when its agent answered the ping just now.",
        &[],
        flag(view.is_some()),
    );
    f.push(
        PROBLEMS,
        "Things that could not be read (mdstat lines, sysfs files; in dom0, values a guest published), each said by `mdguard status` / `host status`.",
        &[],
        snap.problems.len() as f64,
    );
    for a in &snap.arrays {
        let v = view
            .and_then(|v| v.arrays.get(&a.name))
            .cloned()
            .unwrap_or_default();
        push_array(&mut f, &[], &v.summary(a), Some(&MdExtra::of(a)));
    }
    f
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::md::model::{Array, Health, Member, Sync, SyncAction, SyncState};
    use crate::report::agent_state::ArrayView;
    use crate::report::metrics::exposition::{parse, Parsed};

    fn raid1(name: &str, members: Vec<Member>, degraded: u32) -> Array {
        let mut a = Array::named(name);
        a.level = Some("raid1".into());
        a.array_state = Some("clean".into());
        a.raid_disks = Some(2);
        a.degraded = Some(degraded);
        a.size_kb = Some(65472);
        a.members = members;
        a
    }

    /// The value of `name` whose labels include every pair of `want`.
    pub(crate) fn value(s: &[Parsed], name: &str, want: &[(&str, &str)]) -> Option<f64> {
        let hits: Vec<&Parsed> = s
            .iter()
            .filter(|p| p.name == name && want.iter().all(|(k, v)| p.label(k) == Some(*v)))
            .collect();
        assert!(hits.len() <= 1, "{name} {want:?} matches {hits:?}");
        hits.first().map(|p| p.value)
    }

    /// A recovering and a degraded array, the agent refusing one leg and
    /// bringing another back: each series says it, and the text reads back.
    #[test]
    fn guest_series_follow_md_and_the_agents_view() {
        let mut rec = raid1(
            "md0",
            vec![
                Member::new("xvdb1", Some(0), &["in_sync"]),
                Member::new("xvdc1", Some(1), &["spare"]),
            ],
            1,
        );
        rec.sync = Some(Sync {
            action: SyncAction::Recover,
            state: SyncState::Running,
            done: Some(13094),
            total: Some(130944),
            percent: Some(10.0),
            speed_kbps: Some(1000),
            finish_min: Some(1.0),
        });
        rec.derive_health();
        let mut deg = raid1(
            "md1",
            vec![
                Member::new("xvdb2", Some(0), &["in_sync"]),
                Member::new("xvdc2", None, &["faulty"]),
            ],
            1,
        );
        deg.derive_health();
        let mut inactive = raid1("md2", vec![], 0);
        inactive.array_state = Some("inactive".into());
        inactive.derive_health();
        assert_eq!(
            (rec.health, deg.health, inactive.health),
            (Health::Recovering, Health::Degraded, Health::Failed)
        );
        let snap = Snapshot {
            arrays: vec![rec, deg, inactive],
            problems: vec!["/sys/block/md9/md/level: unreadable".into()],
        };
        let view = AgentView::new(
            1,
            [(
                "md1".to_string(),
                ArrayView {
                    refused: [("xvdd2".to_string(), "split-brain".to_string())].into(),
                    away: [("xvdd2".to_string(), "refused".to_string())].into(),
                    stalled: true,
                    ..ArrayView::default()
                },
            )],
        );
        let text = guest_metrics(&snap, Some(&view)).render();
        let s = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let v = |name, want: &[(&str, &str)]| value(&s, name, want);
        assert_eq!(v(AGENT_UP, &[]), Some(1.0));
        assert_eq!(v(PROBLEMS, &[]), Some(1.0));
        // health as a state set: exactly one 1 per array
        for (arr, h) in [
            ("md0", "recovering"),
            ("md1", "degraded"),
            ("md2", "failed"),
        ] {
            for w in Health::ALL {
                let want = if w.as_str() == h { 1.0 } else { 0.0 };
                assert_eq!(
                    v(
                        "mdguard_array_health",
                        &[("array", arr), ("health", w.as_str())]
                    ),
                    Some(want),
                    "{arr} {w}"
                );
            }
        }
        // node_md semantics
        let md0 = |n, st: Option<&str>| {
            let mut w = vec![("array", "md0")];
            if let Some(st) = st {
                w.push(("state", st));
            }
            v(n, &w)
        };
        assert_eq!(md0("mdguard_md_disks", Some("active")), Some(1.0));
        assert_eq!(md0("mdguard_md_disks", Some("failed")), Some(0.0));
        assert_eq!(
            md0("mdguard_md_disks", Some("spare")),
            Some(0.0),
            "rebuilding holds a slot"
        );
        assert_eq!(md0("mdguard_md_disks_required", None), Some(2.0));
        assert_eq!(md0("mdguard_md_state", Some("recovering")), Some(1.0));
        assert_eq!(md0("mdguard_md_state", Some("active")), Some(0.0));
        assert_eq!(md0("mdguard_md_blocks", None), Some(65472.0));
        assert_eq!(md0("mdguard_md_blocks_synced", None), Some(6547.0));
        assert_eq!(
            v(
                "mdguard_sync_completed_ratio",
                &[("array", "md0"), ("action", "recover")]
            ),
            Some(0.1)
        );
        assert_eq!(
            v(
                "mdguard_leg_state",
                &[("array", "md0"), ("device", "xvdc1")]
            ),
            Some(1.0)
        );
        assert_eq!(
            v(
                "mdguard_leg_state",
                &[("device", "xvdc1"), ("state", "rebuilding")]
            ),
            Some(1.0)
        );
        // md1: md's faulty leg, the agent's refused one, stalled
        assert_eq!(
            v("mdguard_md_disks", &[("array", "md1"), ("state", "failed")]),
            Some(1.0)
        );
        assert_eq!(
            v("mdguard_md_blocks_synced", &[("array", "md1")]),
            Some(65472.0),
            "no sync: all of them"
        );
        assert_eq!(
            v(
                "mdguard_leg_state",
                &[("device", "xvdc2"), ("state", "faulty")]
            ),
            Some(1.0)
        );
        assert_eq!(
            v(
                "mdguard_leg_state",
                &[("device", "xvdd2"), ("state", "refused")]
            ),
            Some(1.0)
        );
        assert_eq!(
            v(
                "mdguard_leg_refused",
                &[
                    ("array", "md1"),
                    ("device", "xvdd2"),
                    ("reason", "split-brain")
                ]
            ),
            Some(1.0)
        );
        assert_eq!(v("mdguard_array_stalled", &[("array", "md1")]), Some(1.0));
        assert_eq!(v("mdguard_array_stalled", &[("array", "md0")]), Some(0.0));
        assert_eq!(v("mdguard_array_flapping", &[("array", "md1")]), Some(0.0));
        assert_eq!(
            v("mdguard_sync_completed_ratio", &[("array", "md1")]),
            None,
            "only while a sync runs"
        );
        assert_eq!(
            v(
                "mdguard_md_state",
                &[("array", "md2"), ("state", "inactive")]
            ),
            Some(1.0)
        );
        // no agent: the same arrays, md's word alone
        let s = parse(&guest_metrics(&snap, None).render()).unwrap();
        assert_eq!(value(&s, AGENT_UP, &[]), Some(0.0));
        assert_eq!(
            value(&s, "mdguard_array_stalled", &[("array", "md1")]),
            Some(0.0)
        );
        assert_eq!(value(&s, "mdguard_leg_refused", &[]), None);
    }

    /// A stalled array md shows whole reads degraded, as dom0 and `check` say.
    #[test]
    fn a_stalled_array_is_never_ok() {
        let mut a = raid1(
            "md0",
            vec![
                Member::new("xvdb", Some(0), &["in_sync"]),
                Member::new("xvdc", Some(1), &["in_sync"]),
            ],
            0,
        );
        a.derive_health();
        assert_eq!(a.health, Health::Ok);
        let snap = Snapshot {
            arrays: vec![a],
            problems: vec![],
        };
        let view = AgentView::new(
            1,
            [(
                "md0".to_string(),
                ArrayView {
                    stalled: true,
                    ..ArrayView::default()
                },
            )],
        );
        let s = parse(&guest_metrics(&snap, Some(&view)).render()).unwrap();
        assert_eq!(
            value(&s, "mdguard_array_health", &[("health", "degraded")]),
            Some(1.0)
        );
        assert_eq!(
            value(&s, "mdguard_array_health", &[("health", "ok")]),
            Some(0.0)
        );
    }
}
