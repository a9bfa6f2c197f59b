//! The command line contract: `status`, `status --json`, `check` over prepared trees.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn mdguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mdguard"))
        .args(args)
        .output()
        .expect("run mdguard")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

const HEALTHY: &str = "Personalities : [raid1] \n\
md0 : active raid1 nbd1[1] nbd0[0]\n      1047552 blocks super 1.2 [2/2] [UU]\n      \
bitmap: 0/1 pages [0KB], 65536KB chunk\n\n\
md1 : active raid1 nbd3[1] nbd2[0]\n      261120 blocks super 1.2 [2/2] [UU]\n      \n\
unused devices: <none>\n";

const DEGRADED: &str = "Personalities : [raid1] \n\
md0 : active raid1 nbd1[1](F) nbd0[0]\n      1047552 blocks super 1.2 [2/1] [U_]\n      \
bitmap: 1/1 pages [4KB], 65536KB chunk\n\nunused devices: <none>\n";

const RECOVERING: &str = "Personalities : [raid1] \n\
md0 : active raid1 nbd1[2] nbd0[0]\n      1047552 blocks super 1.2 [2/1] [U_]\n      \
[====>................]  recovery = 21.4% (224640/1047552) finish=0.4min speed=30720K/sec\n      \
bitmap: 1/1 pages [4KB], 65536KB chunk\n\nunused devices: <none>\n";

fn tree(mdstat: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "proc/mdstat", mdstat);
    d
}

fn root_arg(d: &tempfile::TempDir) -> String {
    d.path().to_string_lossy().into_owned()
}

#[test]
fn check_exit_codes_follow_the_plugin_convention() {
    for (text, code, word) in [
        (HEALTHY, 0, "MDGUARD OK - md0 md1 ok"),
        (RECOVERING, 1, "MDGUARD WARNING - md0 recovering"),
        (
            DEGRADED,
            2,
            "MDGUARD CRITICAL - md0 degraded (1 slot empty, faulty: nbd1)",
        ),
    ] {
        let d = tree(text);
        let o = mdguard(&["check", "--root", &root_arg(&d)]);
        assert_eq!(o.status.code(), Some(code), "{}", stdout(&o));
        assert!(stdout(&o).starts_with(word), "{}", stdout(&o));
        assert_eq!(stdout(&o).lines().count(), 1, "one line: {}", stdout(&o));
    }
    let d = tempfile::tempdir().unwrap();
    let o = mdguard(&["check", "--root", &root_arg(&d)]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stdout(&o).contains("md driver is not loaded"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn status_table_for_humans() {
    let d = tree(RECOVERING);
    let o = mdguard(&["status", "--root", &root_arg(&d)]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stdout(&o),
        "ARRAY  LEVEL  HEALTH      LEGS  MEMBERS           SYNC\n\
         md0    raid1  RECOVERING  1/2   nbd1 up, nbd0 up  recover 21.4% 30.0 MiB/s eta 26s\n"
    );
    let d = tree(DEGRADED);
    let o = mdguard(&["status", "--root", &root_arg(&d)]);
    assert_eq!(
        stdout(&o),
        "ARRAY  LEVEL  HEALTH    LEGS  MEMBERS               SYNC\n\
         md0    raid1  DEGRADED  1/2   nbd1 FAULTY, nbd0 up  -\n\
         md0: 1 slot empty, faulty: nbd1\n"
    );
}

#[test]
fn status_json_contract() {
    let d = tree(DEGRADED);
    let o = mdguard(&["status", "--json", "--root", &root_arg(&d)]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["version"], 1, "the shape's version");
    let a = &v["arrays"][0];
    for k in [
        "name",
        "level",
        "array_state",
        "health",
        "raid_disks",
        "degraded",
        "members",
        "sync",
        "bitmap",
    ] {
        assert!(a.get(k).is_some(), "missing {k} in {a}");
    }
    assert_eq!(a["name"], "md0");
    assert_eq!(a["health"], "degraded");
    assert_eq!(a["raid_disks"], 2);
    assert_eq!(a["degraded"], 1);
    assert!(a["sync"].is_null());
    assert_eq!(a["bitmap"]["chunk_kb"], 65536);
    let m = &a["members"][0];
    for k in ["device", "slot", "states", "faulty"] {
        assert!(m.get(k).is_some(), "missing {k} in {m}");
    }
    assert_eq!(m["device"], "nbd1");
    assert_eq!(m["faulty"], true);
    assert_eq!(m["states"], serde_json::json!(["faulty"]));
    assert_eq!(v["health"], "degraded");
}

/// Odd sysfs values: each reported with its file and what was expected; the array is
/// still shown from what could be read.
#[test]
fn bad_sysfs_values_are_reported_and_the_rest_is_shown() {
    let d = tree(HEALTHY);
    let r = d.path();
    write(r, "sys/block/md0/md/level", "raid1\n");
    write(r, "sys/block/md0/md/array_state", "clean\n");
    write(r, "sys/block/md0/md/raid_disks", "2\n");
    write(r, "sys/block/md0/md/degraded", "lots\n");
    write(r, "sys/block/md0/md/sync_action", "idle\n");
    write(r, "sys/block/md0/md/sync_completed", "12 of 14\n");
    write(r, "sys/block/md0/md/sync_speed_max", "fast\n");
    write(r, "sys/block/md0/md/dev-nbd0/state", "in_sync\n");
    write(r, "sys/block/md0/md/dev-nbd0/slot", "0\n");
    write(r, "sys/block/md0/md/dev-nbd1/state", "in_sync,sparkly\n");
    write(r, "sys/block/md0/md/dev-nbd1/slot", "one\n");
    let o = mdguard(&["status", "--json", "--root", &root_arg(&d)]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let probs: Vec<String> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    let has = |file: &str, what: &str| {
        assert!(
            probs.iter().any(|p| p.contains(file) && p.contains(what)),
            "no problem naming {file} / {what}: {probs:?}"
        )
    };
    has("md0/md/degraded", "expected a number, got `lots`");
    has(
        "md0/md/sync_completed",
        "expected `none`, `delayed` or `done / total`",
    );
    has("md0/md/sync_speed_max", "`N (local)` or `N (system)`");
    has("dev-nbd1/slot", "a slot number or `none`");
    has("dev-nbd1/state", "unknown member state `sparkly`");
    assert_eq!(probs.len(), 5, "{probs:?}");
    // md0 still there, degraded count from mdstat since sysfs's was garbage
    let md0 = &v["arrays"][0];
    assert_eq!(md0["name"], "md0");
    assert_eq!(md0["degraded"], 0);
    assert_eq!(md0["health"], "ok");
    assert_eq!(md0["members"][0]["slot"], 0);
    assert!(md0["members"][1]["slot"].is_null());
    // md1 untouched
    assert_eq!(v["arrays"][1]["health"], "ok");
}

#[test]
fn malformed_mdstat_names_the_line_and_keeps_the_rest() {
    let text = HEALTHY.replace("261120 blocks", "26x120 blocks");
    let d = tree(&text);
    let o = mdguard(&["status", "--root", &root_arg(&d)]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert!(out.contains("md0    raid1  ok"), "{out}");
    assert!(
        out.contains("proc/mdstat: line 7: md1: expected `N blocks`"),
        "{out}"
    );
}

#[test]
fn no_md_at_all_is_a_clear_message() {
    let d = tempfile::tempdir().unwrap();
    let o = mdguard(&["status", "--root", &root_arg(&d)]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("no md arrays:"), "{}", stdout(&o));
    let o = mdguard(&["status", "--json", "--root", &root_arg(&d)]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["arrays"], serde_json::json!([]));
}

#[test]
fn usage_errors() {
    let o = mdguard(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    for args in [
        &["status", "--bogus"][..],
        &["run", "--bogus"],
        &["status", "--json", "x"],
    ] {
        let o = mdguard(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("Usage:"),
            "{args:?}"
        );
    }
    // check is a monitoring plugin: a usage error is UNKNOWN (3), on one line
    for args in [&["check", "--json"][..], &["check", "--bogus"]] {
        let o = mdguard(args);
        assert_eq!(o.status.code(), Some(3), "{args:?}");
        assert!(
            stdout(&o).starts_with("MDGUARD UNKNOWN - usage: "),
            "{}",
            stdout(&o)
        );
        assert_eq!(stdout(&o).lines().count(), 1);
    }
    let o = mdguard(&["version"]);
    assert!(stdout(&o).starts_with("mdguard "));
}

#[test]
fn every_command_takes_help() {
    for args in [
        &["help"][..],
        &["--help"],
        &["status", "--help"],
        &["check", "--help"],
        &["check", "-h"],
        &["run", "--help"],
        &["host", "--help"],
        &["host", "status", "--help"],
    ] {
        let o = mdguard(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        assert!(
            stdout(&o).contains("mdguard host status"),
            "{args:?}: {}",
            stdout(&o)
        );
    }
}

/// A --root or --config named on the command line must exist: a typo is an
/// error, not an empty machine or the defaults.
#[test]
fn named_root_and_config_must_exist() {
    let o = mdguard(&["status", "--root", "/nonexistent-mdguard-root"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("--root /nonexistent-mdguard-root: no such directory"));
    let o = mdguard(&["check", "--root", "/nonexistent-mdguard-root"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stdout(&o).contains("no such directory"), "{}", stdout(&o));
    let d = tree(HEALTHY);
    let o = mdguard(&[
        "run",
        "--foreground",
        "--exit-after",
        "1",
        "--root",
        &root_arg(&d),
        "--config",
        "/nonexistent-mdguard.toml",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("/nonexistent-mdguard.toml: no such file; refusing to start"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Without md, `status --json` still says a health word: no array is unhealthy.
#[test]
fn status_json_without_md_says_ok() {
    let d = tempfile::tempdir().unwrap();
    let o = mdguard(&["status", "--json", "--root", &root_arg(&d)]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["health"], "ok");
    assert_eq!(v["version"], 1);
    assert_eq!(v["arrays"].as_array().map(Vec::len), Some(0));
}
