//! What the running agent knows that md does not show, kept where the guest's own
//! `mdguard status` and `check` find it: `/run/mdguard/agent.json`. md can show an
//! array whole while its writes hang (`stalled`) or while a leg keeps failing and
//! coming back (`flapping`); only the agent knows, and a local check must not read
//! `ok` then, any more than dom0 does ([`super::schema::reported_health`]).
//!
//! Written by the agent only when what it says changes (an idle healthy guest
//! writes nothing), removed when it stops cleanly. A file left by an agent that
//! died (its pid gone) is ignored: it speaks for nobody.

use super::schema::{reported_health, ArraySummary};
use crate::heal::{Engine, Phase};
use crate::md::model::{Array, Snapshot};
use crate::root::Root;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

/// Where the file lives under `root`.
pub fn path(root: &Root) -> PathBuf {
    root.path("/run/mdguard/agent.json")
}

/// One array as the agent sees it beyond md's own state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayView {
    #[serde(default)]
    pub stalled: bool,
    #[serde(default)]
    pub flapping: bool,
    /// Legs mdguard will not add, each with the reason's code
    /// ([`crate::heal::Refusal::code`]): an admin decides.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub refused: BTreeMap<String, String>,
    /// Legs mdguard is bringing back that md no longer lists (removed to be
    /// reconnected or re-added, a node that vanished), each with its phase
    /// ([`Phase::as_str`]: `failed`, `reconnecting`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub away: BTreeMap<String, String>,
}

impl ArrayView {
    /// What the engine knows of `array`: the one definition the xenstore report
    /// and this file share.
    pub fn of(engine: &Engine, array: &str) -> ArrayView {
        ArrayView {
            stalled: engine.arrays.get(array).is_some_and(|m| m.stalled),
            flapping: engine.legs_of(array).any(|l| l.phase() == Phase::Flapping),
            refused: engine
                .legs_of(array)
                .filter_map(|l| {
                    l.state()
                        .refusal()
                        .map(|r| (l.device.clone(), r.code().to_string()))
                })
                .collect(),
            away: engine
                .legs_of(array)
                .filter(|l| !l.bound && l.phase() != Phase::Healthy)
                .map(|l| (l.device.clone(), l.phase().as_str().to_string()))
                .collect(),
        }
    }

    /// The compact report of array `a` with what the agent knows: md's
    /// members, then the legs away with their phase; the health dom0 and the
    /// metrics read (at least `degraded` when stalled or flapping). The one
    /// definition xenstore's array JSON and the metrics share.
    pub fn summary(&self, a: &Array) -> ArraySummary {
        let mut members: Vec<(String, String)> = a
            .members
            .iter()
            .map(|m| (m.device.clone(), m.condition().as_str().to_string()))
            .collect();
        members.extend(self.away.iter().map(|(d, p)| (d.clone(), p.clone())));
        ArraySummary {
            name: a.name.clone(),
            health: reported_health(a.health, self.flapping, self.stalled),
            level: a.level.clone().unwrap_or_default(),
            raid_disks: a.raid_disks.unwrap_or(0),
            in_sync: a.in_sync_count(),
            members,
            sync: a.sync.as_ref().and_then(|s| {
                s.fraction().map(|f| {
                    (
                        s.action.as_str().to_string(),
                        (f * 1000.0).round() as f32 / 10.0,
                    )
                })
            }),
            flapping: self.flapping,
            stalled: self.stalled,
            refused: self
                .refused
                .iter()
                .map(|(d, c)| (d.clone(), c.clone()))
                .collect(),
        }
    }

    fn is_plain(&self) -> bool {
        *self == ArrayView::default()
    }
}

/// The file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentView {
    pub version: u32,
    pub pid: u32,
    /// Only the arrays with something to say.
    pub arrays: BTreeMap<String, ArrayView>,
}

impl AgentView {
    pub fn new(pid: u32, arrays: impl IntoIterator<Item = (String, ArrayView)>) -> AgentView {
        AgentView {
            version: 1,
            pid,
            arrays: arrays.into_iter().filter(|(_, v)| !v.is_plain()).collect(),
        }
    }

    /// The agent's view, if a live agent left one (`None` otherwise, also for an
    /// unreadable file: the md state alone is then what is shown).
    pub fn read(root: &Root) -> Option<AgentView> {
        let text = std::fs::read_to_string(path(root)).ok()?;
        let v: AgentView = serde_json::from_str(&text).ok()?;
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(v.pid as i32), None).is_ok();
        alive.then_some(v)
    }

    /// Write it (atomically: a reader sees the old file or the new one).
    pub fn write(&self, root: &Root) -> io::Result<()> {
        let p = path(root);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(self).map_err(io::Error::other)?)?;
        std::fs::rename(&tmp, &p)
    }

    /// Remove it (a clean stop).
    pub fn remove(root: &Root) -> io::Result<()> {
        match std::fs::remove_file(path(root)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// md's state with what the agent knows: an array it reports stalled or
    /// flapping is at least degraded, with the reason added.
    pub fn apply(&self, snap: &mut Snapshot) {
        for a in &mut snap.arrays {
            let Some(v) = self.arrays.get(&a.name) else {
                continue;
            };
            let health = reported_health(a.health, v.flapping, v.stalled);
            let mut why = Vec::new();
            if v.stalled {
                why.push("writes stalled (mdguard)".to_string());
            }
            if v.flapping {
                why.push("a leg is flapping (mdguard)".to_string());
            }
            for (dev, code) in &v.refused {
                why.push(format!("{dev} refused: {code} (mdguard; an admin decides)"));
            }
            if health != a.health || !why.is_empty() {
                a.health = health;
                a.reason = if a.reason.is_empty() {
                    why.join(", ")
                } else {
                    format!("{}, {}", a.reason, why.join(", "))
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::md::model::{Array, Health, Member};

    fn whole() -> Snapshot {
        let mut a = Array::named("md0");
        a.level = Some("raid1".into());
        a.raid_disks = Some(2);
        a.degraded = Some(0);
        a.members = vec![
            Member::new("xvdb", Some(0), &["in_sync"]),
            Member::new("xvdc", Some(1), &["in_sync"]),
        ];
        a.derive_health();
        Snapshot {
            arrays: vec![a],
            problems: vec![],
        }
    }

    #[test]
    fn a_live_agents_view_makes_a_stalled_array_degraded() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(d.path());
        assert_eq!(AgentView::read(&root), None, "no file, nothing to add");
        let stalled = ArrayView {
            stalled: true,
            ..ArrayView::default()
        };
        let v = AgentView::new(
            std::process::id(),
            [
                ("md0".to_string(), stalled.clone()),
                ("md1".to_string(), ArrayView::default()),
            ],
        );
        assert_eq!(v.arrays.len(), 1, "plain arrays are not written");
        v.write(&root).unwrap();
        let back = AgentView::read(&root).expect("this process is alive");
        assert_eq!(back, v);
        let mut s = whole();
        assert_eq!(s.arrays[0].health, Health::Ok);
        back.apply(&mut s);
        assert_eq!(s.arrays[0].health, Health::Degraded);
        assert!(
            s.arrays[0].reason.contains("writes stalled"),
            "{}",
            s.arrays[0].reason
        );
        // a refused leg: the array is degraded by md already; the reason says
        // why it will not heal by itself
        let refused = ArrayView {
            refused: [("xvdc".to_string(), "older-history".to_string())].into(),
            ..ArrayView::default()
        };
        let v = AgentView::new(std::process::id(), [("md0".to_string(), refused)]);
        assert_eq!(v.arrays.len(), 1, "a refusal is worth writing");
        let mut s = whole();
        v.apply(&mut s);
        assert!(
            s.arrays[0]
                .reason
                .contains("xvdc refused: older-history (mdguard; an admin decides)"),
            "{}",
            s.arrays[0].reason
        );
        // a file whose agent is gone speaks for nobody
        let dead = AgentView::new(u32::MAX / 2, [("md0".to_string(), stalled)]);
        dead.write(&root).unwrap();
        assert_eq!(AgentView::read(&root), None);
        AgentView::remove(&root).unwrap();
        AgentView::remove(&root).unwrap();
    }
}
