//! Publishing to xenstore: what to write now ([`Publisher::plan`], pure) and
//! carrying it out ([`Publisher::publish`], one transaction). What was written
//! can be lost behind the publisher's back (the guest was restored or migrated
//! and its `data/` is new and empty, or dom0 removed the keys): the agent reads
//! back the keys a watch event names ([`Publisher::written_under`]) and
//! [`Publisher::confirm`] forgets those that are not as written, so the next
//! plan writes them again.

use super::schema::{
    valid_name, ArrayJson, ArraySummary, Health, DATA_DIR, KEY_ARRAYS, KEY_HEALTH, KEY_PONG,
    KEY_UPDATED, KEY_VERSION, SCHEMA_VERSION,
};
use crate::xenstore::wire::is_child;
use crate::xenstore::{Client, Result as XsResult, Txn};
use std::collections::BTreeMap;

/// One xenstore operation the publisher wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Write { path: String, value: Vec<u8> },
    Rm { path: String },
}

#[derive(Debug, Clone)]
pub struct PublishConfig {
    /// Where to publish: `data/mdguard` (relative to the guest's home).
    pub base: String,
    /// Minimum seconds between two writes that only move resync progress.
    pub progress_interval: u64,
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            base: DATA_DIR.to_string(),
            progress_interval: 60,
        }
    }
}

/// What to write now, and when to ask again for held-back progress.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub ops: Vec<Op>,
    /// Unix time at which a held-back progress update becomes due.
    pub next_due: Option<u64>,
}

/// Remembers what it wrote; decides what to write. Pure: no I/O except in
/// [`Publisher::publish`], which runs a plan through a [`Client`].
#[derive(Debug, Clone)]
pub struct Publisher {
    cfg: PublishConfig,
    written: BTreeMap<String, Vec<u8>>,
    /// Unix time each array key was last written.
    written_at: BTreeMap<String, u64>,
}

impl Publisher {
    pub fn new(cfg: PublishConfig) -> Publisher {
        Publisher {
            cfg,
            written: BTreeMap::new(),
            written_at: BTreeMap::new(),
        }
    }

    fn key(&self, rel: &str) -> String {
        format!("{}/{}", self.cfg.base, rel)
    }

    /// Forget everything written (xenstored restarted): the next plan
    /// writes it all again.
    pub fn reset(&mut self) {
        self.written.clear();
        self.written_at.clear();
    }

    /// The keys this publisher wrote that a watch event on `event_path` may
    /// have changed: those at or below it (xenstore's child relation). An
    /// event on `data/mdguard` itself (the watch set up again after the guest
    /// resumed, or the directory removed) names them all.
    pub fn written_under(&self, event_path: &str) -> Vec<String> {
        self.written
            .keys()
            .filter(|k| is_child(k, event_path))
            .cloned()
            .collect()
    }

    /// `key` read back (`None`: absent). When it is not what was written, it
    /// is forgotten, so the next plan writes it again; true then.
    pub fn confirm(&mut self, key: &str, found: Option<&[u8]>) -> bool {
        match self.written.get(key) {
            Some(v) if Some(v.as_slice()) != found => {
                self.written.remove(key);
                self.written_at.remove(key);
                true
            }
            _ => false,
        }
    }

    /// What must be written for `arrays` at `now`. Arrays with invalid names
    /// are skipped (they cannot form a key).
    pub fn plan(&self, arrays: &[ArraySummary], now: u64) -> Plan {
        let mut plan = Plan::default();
        let mut changed = false;
        if !self.written.contains_key(&self.key(KEY_VERSION)) {
            plan.ops.push(Op::Write {
                path: self.key(KEY_VERSION),
                value: SCHEMA_VERSION.to_string().into_bytes(),
            });
        }
        let mut present = Vec::new();
        for a in arrays.iter().filter(|a| valid_name(&a.name)) {
            let key = self.key(&format!("{KEY_ARRAYS}/{}", a.name));
            present.push(key.clone());
            let j = ArrayJson::from_summary(a);
            let bytes = j.to_bytes();
            let Some(old) = self.written.get(&key) else {
                plan.ops.push(Op::Write {
                    path: key,
                    value: bytes,
                });
                changed = true;
                continue;
            };
            if *old == bytes {
                continue;
            }
            let only_progress = ArrayJson::parse(old)
                .map(|o| o.without_progress() == j.without_progress())
                .unwrap_or(false);
            if only_progress {
                let last = self.written_at.get(&key).copied().unwrap_or(0);
                let due = last.saturating_add(self.cfg.progress_interval);
                if now < due {
                    plan.next_due = Some(plan.next_due.map_or(due, |d: u64| d.min(due)));
                    continue;
                }
            }
            plan.ops.push(Op::Write {
                path: key,
                value: bytes,
            });
            changed = true;
        }
        let prefix = self.key(&format!("{KEY_ARRAYS}/"));
        for k in self.written.keys().filter(|k| k.starts_with(&prefix)) {
            if !present.contains(k) {
                plan.ops.push(Op::Rm { path: k.clone() });
                changed = true;
            }
        }
        let health = arrays.iter().map(|a| a.health).max().unwrap_or(Health::Ok);
        let hkey = self.key(KEY_HEALTH);
        if self.written.get(&hkey).map(Vec::as_slice) != Some(health.as_str().as_bytes()) {
            plan.ops.push(Op::Write {
                path: hkey,
                value: health.as_str().as_bytes().to_vec(),
            });
            changed = true;
        }
        // `updated` goes with every change, and is written again if it alone
        // was lost
        if changed || !self.written.contains_key(&self.key(KEY_UPDATED)) {
            plan.ops.push(Op::Write {
                path: self.key(KEY_UPDATED),
                value: now.to_string().into_bytes(),
            });
        }
        plan
    }

    /// Record that `ops` were carried out at `now`.
    pub fn mark_written(&mut self, ops: &[Op], now: u64) {
        for op in ops {
            match op {
                Op::Write { path, value } => {
                    self.written.insert(path.clone(), value.clone());
                    self.written_at.insert(path.clone(), now);
                }
                Op::Rm { path } => {
                    self.written.remove(path);
                    self.written_at.remove(path);
                }
            }
        }
    }

    /// The pong answer for a ping token.
    pub fn pong_op(&self, token: &str) -> Op {
        Op::Write {
            path: self.key(KEY_PONG),
            value: token.as_bytes().to_vec(),
        }
    }

    /// Plan and carry out in one transaction (dom0 sees a consistent set).
    /// Returns the plan (its `next_due` tells when to call again). On a
    /// connection error nothing is recorded; after a reconnect call
    /// [`Publisher::reset`] first.
    pub fn publish(&mut self, c: &mut Client, arrays: &[ArraySummary], now: u64) -> XsResult<Plan> {
        if !c.is_connected() {
            c.reconnect()?;
        }
        if c.take_reconnected() {
            self.reset();
        }
        let plan = self.plan(arrays, now);
        if plan.ops.is_empty() {
            return Ok(plan);
        }
        c.transaction(|t| apply(t, &plan.ops))?;
        // A reconnect inside the transaction means the store may be fresh:
        // write everything once more.
        if c.take_reconnected() {
            self.reset();
            let plan = self.plan(arrays, now);
            c.transaction(|t| apply(t, &plan.ops))?;
            self.mark_written(&plan.ops, now);
            return Ok(plan);
        }
        self.mark_written(&plan.ops, now);
        Ok(plan)
    }
}

fn apply(t: &mut Txn<'_>, ops: &[Op]) -> XsResult<()> {
    for op in ops {
        match op {
            Op::Write { path, value } => t.write(path, value)?,
            Op::Rm { path } => match t.rm(path) {
                Err(e) if e.is_not_found() => {}
                r => r?,
            },
        }
    }
    Ok(())
}

impl Default for Publisher {
    fn default() -> Self {
        Publisher::new(PublishConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::schema::tests::array;

    fn paths(p: &Plan) -> Vec<&str> {
        p.ops
            .iter()
            .map(|o| match o {
                Op::Write { path, .. } | Op::Rm { path } => path.as_str(),
            })
            .collect()
    }

    fn value<'a>(p: &'a Plan, path: &str) -> Option<&'a [u8]> {
        p.ops.iter().find_map(|o| match o {
            Op::Write { path: q, value } if q == path => Some(value.as_slice()),
            _ => None,
        })
    }

    #[test]
    fn first_plan_writes_everything_then_nothing() {
        let mut p = Publisher::default();
        let arrays = vec![array("md0", Health::Ok, None)];
        let plan = p.plan(&arrays, 100);
        assert_eq!(
            paths(&plan),
            vec![
                "data/mdguard/version",
                "data/mdguard/arrays/md0",
                "data/mdguard/health",
                "data/mdguard/updated"
            ]
        );
        assert_eq!(value(&plan, "data/mdguard/health"), Some(&b"ok"[..]));
        assert_eq!(value(&plan, "data/mdguard/updated"), Some(&b"100"[..]));
        p.mark_written(&plan.ops, 100);
        let again = p.plan(&arrays, 5000);
        assert!(again.ops.is_empty(), "{again:?}");
        assert_eq!(again.next_due, None);
    }

    #[test]
    fn health_is_the_worst_array() {
        let p = Publisher::default();
        let plan = p.plan(
            &[
                array("md0", Health::Ok, None),
                array("md1", Health::Degraded, None),
                array("md2", Health::Recovering, Some(1.0)),
            ],
            1,
        );
        assert_eq!(value(&plan, "data/mdguard/health"), Some(&b"degraded"[..]));
        assert_eq!(
            value(&p.plan(&[], 1), "data/mdguard/health"),
            Some(&b"ok"[..])
        );
    }

    #[test]
    fn progress_is_rate_limited_but_state_changes_are_not() {
        let mut p = Publisher::new(PublishConfig {
            progress_interval: 60,
            ..Default::default()
        });
        let plan = p.plan(&[array("md0", Health::Recovering, Some(10.0))], 1000);
        p.mark_written(&plan.ops, 1000);
        // Progress moves 10 s later: held back, due at 1060.
        let plan = p.plan(&[array("md0", Health::Recovering, Some(20.0))], 1010);
        assert!(plan.ops.is_empty(), "{plan:?}");
        assert_eq!(plan.next_due, Some(1060));
        // At 1060 it is written, with `updated`.
        let plan = p.plan(&[array("md0", Health::Recovering, Some(30.0))], 1060);
        assert_eq!(
            paths(&plan),
            vec!["data/mdguard/arrays/md0", "data/mdguard/updated"]
        );
        p.mark_written(&plan.ops, 1060);
        // Finishing (health change) is written at once, with health.
        let plan = p.plan(&[array("md0", Health::Ok, None)], 1061);
        assert_eq!(
            paths(&plan),
            vec![
                "data/mdguard/arrays/md0",
                "data/mdguard/health",
                "data/mdguard/updated"
            ]
        );
        // A member state change without a health change is written at once too.
        p.mark_written(&plan.ops, 1061);
        let mut a = array("md0", Health::Ok, None);
        a.members[1].1 = "in_sync,write_mostly".into();
        assert_eq!(paths(&p.plan(&[a], 1062)).len(), 2);
    }

    #[test]
    fn vanished_arrays_are_removed_and_reset_republishes() {
        let mut p = Publisher::default();
        let plan = p.plan(
            &[
                array("md0", Health::Ok, None),
                array("md1", Health::Ok, None),
            ],
            1,
        );
        p.mark_written(&plan.ops, 1);
        let plan = p.plan(&[array("md0", Health::Ok, None)], 2);
        assert_eq!(
            plan.ops[0],
            Op::Rm {
                path: "data/mdguard/arrays/md1".into()
            }
        );
        p.mark_written(&plan.ops, 2);
        p.reset();
        let plan = p.plan(&[array("md0", Health::Ok, None)], 3);
        assert_eq!(plan.ops.len(), 4, "{plan:?}");
    }

    /// What the agent does when its watch on `data/mdguard` fires: read back
    /// what the event may have touched, forget what is not as written, plan.
    fn lose_and_confirm(p: &mut Publisher, event: &str, store: &BTreeMap<String, Vec<u8>>) {
        for k in p.written_under(event) {
            p.confirm(&k, store.get(&k).map(Vec::as_slice));
        }
    }

    #[test]
    fn keys_lost_behind_its_back_are_written_again() {
        let mut p = Publisher::default();
        let arrays = vec![
            array("md0", Health::Ok, None),
            array("md1", Health::Degraded, None),
        ];
        let plan = p.plan(&arrays, 10);
        p.mark_written(&plan.ops, 10);
        let mut store: BTreeMap<String, Vec<u8>> = plan
            .ops
            .iter()
            .filter_map(|o| match o {
                Op::Write { path, value } => Some((path.clone(), value.clone())),
                Op::Rm { .. } => None,
            })
            .collect();
        // its own writes come back as events: read back, all as written
        for k in store.keys() {
            lose_and_confirm(&mut p, k, &store);
        }
        assert!(p.plan(&arrays, 11).ops.is_empty());
        // an event on a key it did not write touches nothing
        assert!(p.written_under("data/mdguard/pong").is_empty());
        // dom0 removes one array: only it (and `updated`) are written again
        store.remove("data/mdguard/arrays/md1");
        lose_and_confirm(&mut p, "data/mdguard/arrays/md1", &store);
        assert_eq!(
            paths(&p.plan(&arrays, 12)),
            vec!["data/mdguard/arrays/md1", "data/mdguard/updated"]
        );
        p.mark_written(&p.plan(&arrays, 12).ops, 12);
        // dom0 overwrites the health with a lie: the truth goes back
        store.insert("data/mdguard/health".into(), b"ok".to_vec());
        lose_and_confirm(&mut p, "data/mdguard/health", &store);
        let plan = p.plan(&arrays, 13);
        assert_eq!(value(&plan, "data/mdguard/health"), Some(&b"degraded"[..]));
        p.mark_written(&plan.ops, 13);
        // only `updated` lost: it alone is written again
        store.remove("data/mdguard/updated");
        lose_and_confirm(&mut p, "data/mdguard/updated", &store);
        assert_eq!(paths(&p.plan(&arrays, 14)), vec!["data/mdguard/updated"]);
        // the guest resumed with a new, empty data/: the watch fires on the
        // directory itself and everything is written again, version first
        store.clear();
        lose_and_confirm(&mut p, "data/mdguard", &store);
        let plan = p.plan(&arrays, 15);
        assert_eq!(
            paths(&plan),
            vec![
                "data/mdguard/version",
                "data/mdguard/arrays/md0",
                "data/mdguard/arrays/md1",
                "data/mdguard/health",
                "data/mdguard/updated"
            ]
        );
    }

    #[test]
    fn bad_array_names_are_not_published() {
        let p = Publisher::default();
        for bad in ["", "..", "md0/../x", "md 0", &"m".repeat(40)] {
            let plan = p.plan(&[array(bad, Health::Failed, None)], 1);
            assert!(
                !paths(&plan).iter().any(|k| k.contains("arrays/")),
                "{bad:?} -> {plan:?}"
            );
        }
    }
}
