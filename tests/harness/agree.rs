//! Does `mdguard status --json` agree with the kernel's sysfs?
//!
//! The guest runs `snap; mdguard status --json; snap` in one step. The
//! kernel's state can change between reads (array_state flips active/clean,
//! progress moves), so the comparison is made only when the two snapshots
//! around the status call agree on every field compared; otherwise retry.

use super::{Lab, Snapshot};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Fields of a snapshot that must not move between the two reads.
fn stable_view(s: &Snapshot) -> Vec<(String, String)> {
    s.map
        .iter()
        .filter(|(k, _)| {
            !(k.ends_with("/sync_completed")
                || k.ends_with("/sync_speed")
                || k.ends_with("/errors")
                || k.ends_with("/mismatch_cnt"))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn num(v: &Value) -> Option<u64> {
    v.as_u64()
}

/// The health the contract (README "Command line") prescribes for this
/// sysfs state; the kernel's view decides, not mdguard's.
pub fn expected_health(s: &Snapshot, md: &str) -> &'static str {
    let state = s.must(md, "array_state");
    if matches!(state, "inactive" | "clear" | "broken") {
        return "failed";
    }
    let raid_disks: u32 = s.must(md, "raid_disks").parse().unwrap_or(0);
    let degraded: u32 = s.must(md, "degraded").parse().unwrap_or(0);
    if raid_disks > 0 && degraded >= raid_disks {
        return "failed";
    }
    let action = s.must(md, "sync_action");
    let completed = s.get(md, "sync_completed").unwrap_or("none");
    // A restoring action counts when it runs or is queued (sync_completed
    // "delayed"); sync_action alone can name an action that is not running.
    if matches!(action, "resync" | "recover" | "reshape") && completed != "none" {
        return "recovering";
    }
    if degraded > 0 {
        return "degraded";
    }
    "ok"
}

/// Compare one status JSON document with one sysfs snapshot. Err lists
/// every disagreement.
pub fn compare(json: &Value, s: &Snapshot) -> Result<(), String> {
    let mut errs = Vec::new();
    let arrays = json["arrays"]
        .as_array()
        .ok_or_else(|| format!("no \"arrays\" list in {json}"))?;
    let mut names: Vec<String> = arrays
        .iter()
        .map(|a| a["name"].as_str().unwrap_or("?").to_string())
        .collect();
    names.sort();
    let mut kernel = s.arrays();
    kernel.sort();
    if names != kernel {
        errs.push(format!("arrays: status {names:?}, sysfs {kernel:?}"));
    }
    for a in arrays {
        let md = a["name"].as_str().unwrap_or("?");
        if !kernel.iter().any(|k| k == md) {
            continue;
        }
        macro_rules! eq {
            ($field:expr, $got:expr, $want:expr $(,)?) => {{
                let (field, got, want): (&str, String, String) = (&$field, $got, $want);
                if got != want {
                    errs.push(format!("{md}.{field}: status {got}, sysfs {want}"));
                }
            }};
        }
        let sv = |k: &str| s.get(md, k).unwrap_or("<missing>").to_string();
        eq!(
            "level",
            a["level"].as_str().unwrap_or("null").into(),
            sv("level")
        );
        eq!(
            "array_state",
            a["array_state"].as_str().unwrap_or("null").into(),
            sv("array_state"),
        );
        eq!(
            "raid_disks",
            num(&a["raid_disks"]).map_or("null".into(), |n| n.to_string()),
            sv("raid_disks"),
        );
        eq!(
            "degraded",
            num(&a["degraded"]).map_or("null".into(), |n| n.to_string()),
            sv("degraded"),
        );
        eq!(
            "health",
            a["health"].as_str().unwrap_or("null").into(),
            expected_health(s, md).into(),
        );

        // Members: same set, and per member the same states, slot, faulty.
        let members = a["members"].as_array().cloned().unwrap_or_default();
        let mut got_devs: Vec<String> = members
            .iter()
            .map(|m| m["device"].as_str().unwrap_or("?").to_string())
            .collect();
        got_devs.sort();
        let mut want_devs: Vec<String> = s.members(md).into_iter().map(|m| m.device).collect();
        want_devs.sort();
        eq!("members", format!("{got_devs:?}"), format!("{want_devs:?}"),);
        for km in s.members(md) {
            let Some(m) = members
                .iter()
                .find(|m| m["device"].as_str() == Some(&km.device))
            else {
                continue;
            };
            let d = &km.device;
            let mut states: Vec<String> = m["states"]
                .as_array()
                .map(|v| {
                    v.iter()
                        .map(|x| x.as_str().unwrap_or("?").to_string())
                        .collect()
                })
                .unwrap_or_default();
            states.sort();
            let mut kstates = km.states.clone();
            kstates.sort();
            eq!(
                &format!("{d}.states"),
                format!("{states:?}"),
                format!("{kstates:?}"),
            );
            eq!(
                &format!("{d}.slot"),
                format!("{:?}", num(&m["slot"])),
                format!("{:?}", km.slot.map(u64::from)),
            );
            eq!(
                &format!("{d}.faulty"),
                format!("{:?}", m["faulty"].as_bool()),
                format!("{:?}", Some(km.states.iter().any(|x| x == "faulty"))),
            );
        }

        // Sync: null exactly when the kernel runs and queues nothing.
        let action = sv("sync_action");
        let completed = sv("sync_completed");
        let sync = &a["sync"];
        let kernel_syncing = action != "idle" && action != "frozen" && completed != "none";
        if !kernel_syncing {
            if !sync.is_null() {
                errs.push(format!(
                    "{md}.sync: status {sync}, sysfs has no sync \
                     (sync_action {action}, sync_completed {completed})"
                ));
            }
        } else if sync.is_null() {
            errs.push(format!(
                "{md}.sync: status null, sysfs {action} ({completed})"
            ));
        } else {
            eq!(
                "sync.action",
                sync["action"].as_str().unwrap_or("null").into(),
                action.clone(),
            );
            let want_state = if completed == "delayed" {
                "delayed"
            } else {
                "running"
            };
            eq!(
                "sync.state",
                sync["state"].as_str().unwrap_or("null").into(),
                want_state.into(),
            );
            if let Some((_, total)) = completed.split_once(" / ") {
                eq!(
                    "sync.total",
                    num(&sync["total"]).map_or("null".into(), |n| n.to_string()),
                    total.trim().to_string(),
                );
                if let (Some(d), Some(t)) = (num(&sync["done"]), num(&sync["total"])) {
                    if d > t {
                        eq!("sync.done", format!("{d} (> total {t})"), format!("<= {t}"));
                    }
                }
            }
        }

        // Bitmap: present exactly when sysfs has a bitmap location.
        let loc = sv("bitmap/location");
        let has = loc != "none" && loc != "<missing>";
        eq!(
            "bitmap",
            if a["bitmap"].is_null() {
                "null"
            } else {
                "present"
            }
            .into(),
            if has { "present" } else { "null" }.into(),
        );
        if has {
            if let Some(l) = a["bitmap"]["location"].as_str() {
                eq!("bitmap.location", l.into(), loc.clone());
            }
        }
    }
    // mdguard must read every value a real kernel prints without complaint.
    for p in json["problems"].as_array().into_iter().flatten() {
        errs.push(format!("problems: {}", p.as_str().unwrap_or("?")));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("\n"))
    }
}

impl Lab {
    /// Run `mdguard status --json` in the guest and assert it agrees with
    /// sysfs read just before and just after it. Returns the JSON and the
    /// snapshot it was compared with.
    pub fn assert_status_agrees(&mut self, stage: &str) -> (Value, Snapshot) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self
                .vm
                .sh("snap; echo '--- status'; mdguard status --json; echo \"--- rc $?\"; snap");
            let (before, rest) = out.split_once("--- status\n").expect("framing");
            let (json, rest) = rest.split_once("--- rc ").expect("framing");
            let (rc, after) = rest.split_once('\n').expect("framing");
            assert_eq!(
                rc.trim(),
                "0",
                "{stage}: mdguard status --json exited {rc}: {json}"
            );
            let value: Value = serde_json::from_str(json).unwrap_or_else(|e| {
                panic!("{stage}: mdguard status --json is not JSON ({e}):\n{json}")
            });
            let (b, a) = (Snapshot::parse(before), Snapshot::parse(after));
            if stable_view(&b) == stable_view(&a) {
                match compare(&value, &b) {
                    Ok(()) => return (value, b),
                    Err(e) => panic!(
                        "{stage}: mdguard status --json disagrees with sysfs:\n{e}\n\
                         --- sysfs\n{}--- status\n{json}",
                        b.text
                    ),
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "{stage}: sysfs never stayed still around a status call:\n\
                     before:\n{}after:\n{}",
                    b.text, a.text
                );
            }
        }
    }
}
