//! Fast tier: replay the real-kernel captures the VM tests saved
//! (tests/fixtures/mdstat/vm-*.txt with tests/fixtures/sysfs/vm-*.txt) as a
//! `--root` tree, run the real `mdguard status --json` on the host over it,
//! and check it agrees with the captured sysfs exactly as the VM tests do in
//! the guest; `mdguard check` must exit with the worst array's code. No VM
//! needed; runs with plain `cargo test`.
mod harness;

use harness::agree::{compare, expected_check_code};
use harness::Snapshot;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every stage with both an mdstat and a sysfs capture.
fn stages() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(fixtures().join("sysfs"))
        .expect("tests/fixtures/sysfs")
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            let stage = n.strip_prefix("vm-")?.strip_suffix(".txt")?.to_string();
            fixtures()
                .join(format!("mdstat/vm-{stage}.txt"))
                .is_file()
                .then_some(stage)
        })
        .collect();
    v.sort();
    v
}

/// Lay a capture out as DIR/proc/mdstat and DIR/sys/block/mdX/md/... files.
fn build_root(stage: &str, dir: &Path) -> Snapshot {
    let mdstat =
        std::fs::read_to_string(fixtures().join(format!("mdstat/vm-{stage}.txt"))).unwrap();
    let snap = Snapshot::parse(
        &std::fs::read_to_string(fixtures().join(format!("sysfs/vm-{stage}.txt"))).unwrap(),
    );
    std::fs::create_dir_all(dir.join("proc")).unwrap();
    std::fs::write(dir.join("proc/mdstat"), mdstat).unwrap();
    for (key, value) in &snap.map {
        // key = md0/array_state, md0/dev-nbd1/state, md0/bitmap/location
        let (md, rest) = key.split_once('/').unwrap();
        let path = dir.join("sys/block").join(md).join("md").join(rest);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("{value}\n")).unwrap();
    }
    snap
}

/// `mdguard status --json --root ROOT`, which must succeed with JSON.
fn status_json(stage: &str, root: &Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_mdguard"))
        .args(["status", "--json", "--root"])
        .arg(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{stage}: mdguard status failed: {out:?}"
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{stage}: not JSON ({e}): {out:?}"))
}

#[test]
fn status_agrees_with_every_vm_capture() {
    let stages = stages();
    assert!(
        stages.len() >= 10,
        "expected the VM captures in tests/fixtures (found {stages:?})"
    );
    let mut failures = Vec::new();
    for stage in &stages {
        let dir = tempfile::tempdir().unwrap();
        let snap = build_root(stage, dir.path());
        let json = status_json(stage, dir.path());
        if let Err(e) = compare(&json, &snap) {
            failures.push(format!("{stage}:\n{e}"));
        }
        let check = Command::new(env!("CARGO_BIN_EXE_mdguard"))
            .args(["check", "--root"])
            .arg(dir.path())
            .output()
            .unwrap();
        let want = expected_check_code(&snap);
        if check.status.code() != Some(want) {
            failures.push(format!(
                "{stage}: mdguard check exited {:?}, expected {want}: {}",
                check.status.code(),
                String::from_utf8_lossy(&check.stdout).trim()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The comparison itself must be able to fail: feed it a status document
/// with one field changed at a time and expect each change to be named.
#[test]
fn comparison_catches_each_kind_of_disagreement() {
    let stage = "degraded";
    let dir = tempfile::tempdir().unwrap();
    let snap = build_root(stage, dir.path());
    let good = status_json(stage, dir.path());
    compare(&good, &snap).expect("the unmodified document agrees");
    type Edit = fn(&mut serde_json::Value);
    let edits: &[(&str, Edit)] = &[
        ("array_state", |j| {
            j["arrays"][0]["array_state"] = "readonly".into()
        }),
        ("degraded", |j| j["arrays"][0]["degraded"] = 0.into()),
        ("health", |j| j["arrays"][0]["health"] = "ok".into()),
        ("raid_disks", |j| j["arrays"][0]["raid_disks"] = 3.into()),
        ("level", |j| j["arrays"][0]["level"] = "raid5".into()),
        ("slot", |j| {
            for m in j["arrays"][0]["members"].as_array_mut().unwrap() {
                m["slot"] = 7.into();
            }
        }),
        ("faulty", |j| {
            for m in j["arrays"][0]["members"].as_array_mut().unwrap() {
                m["faulty"] = false.into();
            }
        }),
        ("states", |j| {
            for m in j["arrays"][0]["members"].as_array_mut().unwrap() {
                m["states"] = serde_json::json!(["in_sync"]);
            }
        }),
        ("members", |j| {
            j["arrays"][0]["members"].as_array_mut().unwrap().pop();
        }),
        (
            "sync",
            |j| {
                j["arrays"][0]["sync"] =
                    serde_json::json!({"action": "recover", "state": "running"})
            },
        ),
        ("bitmap", |j| {
            j["arrays"][0]["bitmap"] = serde_json::Value::Null
        }),
        ("arrays", |j| j["arrays"].as_array_mut().unwrap().clear()),
        ("problems", |j| {
            j["problems"] = serde_json::json!(["/sys/x: odd"])
        }),
    ];
    for (what, edit) in edits {
        let mut j = good.clone();
        edit(&mut j);
        let err = compare(&j, &snap)
            .err()
            .unwrap_or_else(|| panic!("changing {what} went unnoticed"));
        assert!(err.contains(what), "changing {what} reported as: {err}");
    }
}

/// `mdguard status` and the xenstore report say the same word for every member of
/// every capture (they once disagreed on "rebuilding").
#[test]
fn status_and_xenstore_name_every_member_alike() {
    use mdguard::md::model::Snapshot as Model;
    use mdguard::report::{agent, status};
    let check = |what: &str, snap: &Model| {
        let engine = mdguard::heal::Engine::new(mdguard::config::Config::default(), 1);
        let text = status::status_text(snap);
        let mut members = 0;
        for a in &snap.arrays {
            let published = agent::summary(a, &engine).members;
            assert_eq!(published.len(), a.members.len(), "{what} {}", a.name);
            for (dev, word) in published {
                members += 1;
                let shown = match word.as_str() {
                    "faulty" => "FAULTY".to_string(),
                    // status shows the kernel's own words instead
                    "unknown" => continue,
                    w => w.to_string(),
                };
                assert!(
                    text.contains(&format!("{dev} {shown}")),
                    "{what}: xenstore says {dev} is {word}, status says:\n{text}"
                );
            }
        }
        members
    };
    let mut n = 0;
    for stage in stages() {
        let dir = tempfile::tempdir().unwrap();
        build_root(&stage, dir.path());
        let snap =
            mdguard::md::observe::read_snapshot(&mdguard::root::Root::new(dir.path())).unwrap();
        n += check(&stage, &snap);
    }
    // mdstat alone (no sysfs): the demo guest and every mdstat capture
    let mut texts: Vec<PathBuf> = vec![fixtures().join("demo/proc/mdstat")];
    texts.extend(
        std::fs::read_dir(fixtures().join("mdstat"))
            .unwrap()
            .flatten()
            .map(|e| e.path()),
    );
    for p in texts {
        let snap = mdguard::md::observe::snapshot_from(
            &mdguard::root::Root::new("/nonexistent-mdguard-root"),
            &std::fs::read_to_string(&p).unwrap(),
        );
        n += check(&p.display().to_string(), &snap);
    }
    // one member of each condition, including the cases the captures lack: a
    // slot without `spare` (rebuilding), no states at all (up)
    let mut a = mdguard::md::model::Array::named("md9");
    a.level = Some("raid1".into());
    a.raid_disks = Some(2);
    let m = mdguard::md::model::Member::new;
    a.members = vec![
        m("xvda", Some(0), &["in_sync"]),
        m("xvdb", Some(1), &["write_mostly"]),
        m("xvdc", Some(1), &["spare"]),
        m("xvdd", None, &["spare"]),
        m("xvde", None, &["faulty"]),
        m("xvdf", None, &[]),
    ];
    a.derive_health();
    let synthetic = Model {
        arrays: vec![a],
        problems: vec![],
    };
    n += check("synthetic", &synthetic);
    assert!(n > 60, "only {n} members compared");
}
