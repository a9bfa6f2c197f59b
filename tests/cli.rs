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

/// `mdguard host ARGS` is a usage error, said before any xenstore access:
/// exit 2, `mdguard host: WHY` and the usage on stderr, nothing on stdout.
fn assert_host_usage_error(args: &[&str], why: &str) {
    let o = Command::new(env!("CARGO_BIN_EXE_mdguard"))
        .args(args)
        .env("XENSTORED_PATH", "/nonexistent/xenstored/socket")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert!(
        err.starts_with(&format!("mdguard host: {why}\nusage: mdguard host status")),
        "{args:?}: {err}"
    );
    assert!(o.stdout.is_empty(), "{args:?}");
}

#[test]
fn every_command_takes_help() {
    for (args, shows) in [
        (&["help"][..], "mdguard host status"),
        (&["--help"], "mdguard host status"),
        (&["-h"], "mdguard run"),
        (
            &["status", "--help"],
            "Usage: mdguard status [--json | --format FORMAT]",
        ),
        (&["check", "--help"], "Usage: mdguard check [--root DIR]"),
        (&["check", "-h"], "Usage: mdguard check"),
        (&["run", "--help"], "Usage: mdguard run [--config PATH]"),
        (&["version", "--help"], "Usage: mdguard version"),
        (&["help", "--help"], "Usage: mdguard help"),
        (&["host", "--help"], "mdguard host status"),
        (&["host", "status", "--help"], "mdguard host status"),
        (&["host", "check", "--help"], "mdguard host check"),
        (&["host", "check", "-h"], "mdguard host check"),
        (&["host", "metrics", "--help"], "mdguard host metrics"),
        (&["host", "run", "--help"], "mdguard host run"),
        (&["host", "probe", "--help"], "mdguard host probe"),
        (&["host", "ping", "--help"], "mdguard host ping"),
        (&["host", "set-budget", "--help"], "mdguard host set-budget"),
    ] {
        let o = mdguard(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        assert!(stdout(&o).contains(shows), "{args:?}: {}", stdout(&o));
    }
    // version and help take nothing else
    assert_eq!(mdguard(&["version", "--bogus"]).status.code(), Some(2));
    assert_eq!(mdguard(&["help", "me"]).status.code(), Some(2));
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

/// `mdguard host`'s usage errors never reach xenstore: exit 2 with the usage
/// on stderr, except `host check`, a monitoring plugin: one UNKNOWN line on
/// stdout and exit 3. The usage names every command and option.
#[test]
fn host_usage_errors() {
    let o = mdguard(&["host", "--help"]);
    for want in [
        "mdguard host status [--json] [--no-ping] [--timeout SECS] [--by-storage | --storage ID]",
        "mdguard host check [--no-ping] [--timeout SECS]",
        "mdguard host probe [--domain D | --storage ID]",
    ] {
        assert!(stdout(&o).contains(want), "{want}: {}", stdout(&o));
    }
    let o = mdguard(&["help"]);
    assert!(stdout(&o).contains("mdguard host check"), "{}", stdout(&o));
    for (args, why) in [
        (&["host"][..], "missing command"),
        (&["host", "frobnicate"], "unknown command \"frobnicate\""),
        (&["host", "--bogus"], "invalid option '--bogus'"),
        (&["host", "status", "--bogus"], "invalid option '--bogus'"),
        (
            &["host", "status", "--domain", "5"],
            "invalid option '--domain'",
        ),
        (
            &["host", "status", "--storage", ""],
            "--storage: 1 to 1024 printable characters",
        ),
        (
            &["host", "status", "--timeout", "9999"],
            "--timeout: 0..3600 seconds",
        ),
        (
            &["host", "ping", "--by-storage"],
            "invalid option '--by-storage'",
        ),
        (&["host", "set-budget"], "set-budget needs --kbps N"),
        (
            &["host", "set-budget", "--storage", "x"],
            "invalid option '--storage'",
        ),
        (
            &["host", "probe", "--storage", "x", "--domain", "5"],
            "--domain and --storage exclude each other",
        ),
    ] {
        assert_host_usage_error(args, why);
    }
    for (args, why) in [
        (
            &["host", "check", "--bogus"][..],
            "invalid option '--bogus'",
        ),
        (&["host", "check", "--json"], "invalid option '--json'"),
        (
            &["host", "check", "--by-storage"],
            "invalid option '--by-storage'",
        ),
        (
            &["host", "check", "--domain", "5"],
            "invalid option '--domain'",
        ),
        (
            &["host", "check", "--timeout", "-1"],
            "--timeout: 0..3600 seconds",
        ),
        (&["host", "check", "extra"], "unexpected argument \"extra\""),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_mdguard"))
            .args(args)
            .env("XENSTORED_PATH", "/nonexistent/xenstored/socket")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(3), "{args:?}");
        assert_eq!(
            stdout(&o),
            format!("MDGUARD UNKNOWN - usage: {why} (see mdguard host check --help)\n"),
            "{args:?}"
        );
        assert!(o.stderr.is_empty(), "{args:?}");
    }
    // xenstore out of reach: the plugin still answers on one line
    let o = Command::new(env!("CARGO_BIN_EXE_mdguard"))
        .args(["host", "check"])
        .env("XENSTORED_PATH", "/nonexistent/xenstored/socket")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stdout(&o).starts_with("MDGUARD UNKNOWN - xenstore not available: "),
        "{}",
        stdout(&o)
    );
    assert_eq!(stdout(&o).lines().count(), 1);
}

/// `status --format=prometheus`: the series read back as the format says,
/// and node_exporter's md semantics on mdstat alone (a recovering array's
/// blocks done, its working slots); `--textfile` writes the same atomically.
#[test]
fn status_prometheus_format_and_textfile() {
    use mdguard::report::metrics::exposition::parse;
    let d = tree(RECOVERING);
    let o = mdguard(&["status", "--format=prometheus", "--root", &root_arg(&d)]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let text = stdout(&o);
    let s = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let v = |name: &str, want: &[(&str, &str)]| {
        s.iter()
            .find(|p| p.name == name && want.iter().all(|(k, x)| p.label(k) == Some(*x)))
            .map(|p| p.value)
    };
    assert_eq!(v("mdguard_agent_up", &[]), Some(0.0), "no agent runs here");
    assert_eq!(
        v(
            "mdguard_array_health",
            &[("array", "md0"), ("health", "recovering")]
        ),
        Some(1.0)
    );
    assert_eq!(v("mdguard_md_state", &[("state", "recovering")]), Some(1.0));
    assert_eq!(v("mdguard_md_blocks", &[]), Some(1047552.0));
    assert_eq!(v("mdguard_md_blocks_synced", &[]), Some(224640.0));
    assert_eq!(v("mdguard_md_disks", &[("state", "active")]), Some(1.0));
    assert_eq!(v("mdguard_md_disks_required", &[]), Some(2.0));
    assert_eq!(
        v("mdguard_sync_completed_ratio", &[("action", "recover")]),
        Some(0.214)
    );
    // the same to a textfile, nothing on stdout
    let f = d.path().join("mdguard.prom");
    let o = mdguard(&[
        "status",
        "--format",
        "prometheus",
        "--textfile",
        f.to_str().unwrap(),
        "--root",
        &root_arg(&d),
    ]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "");
    assert_eq!(fs::read_to_string(&f).unwrap(), text);
    // md unreadable: exit 3, the textfile left as it was
    let bad = tempfile::tempdir().unwrap();
    fs::create_dir_all(bad.path().join("proc/mdstat")).unwrap();
    let o = mdguard(&[
        "status",
        "--format=prometheus",
        "--textfile",
        f.to_str().unwrap(),
        "--root",
        &root_arg(&bad),
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(fs::read_to_string(&f).unwrap(), text);
    // no md at all: no array, nothing wrong
    let none = tempfile::tempdir().unwrap();
    let o = mdguard(&["status", "--format=prometheus", "--root", &root_arg(&none)]);
    assert_eq!(o.status.code(), Some(0));
    let s = parse(&stdout(&o)).unwrap();
    assert!(s.iter().all(|p| p.label("array").is_none()));
    assert!(s
        .iter()
        .any(|p| p.name == "mdguard_problems" && p.value == 0.0));
    // usage
    for args in [
        &["status", "--format=yaml"][..],
        &["status", "--format=text", "--textfile", "x.prom"],
        &["status", "--json", "--textfile", "x.prom"],
        &["check", "--format=prometheus"],
    ] {
        let o = mdguard(args);
        assert_ne!(o.status.code(), Some(0), "{args:?}");
    }
    let o = mdguard(&["status", "--format=yaml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--format yaml: text, json or prometheus"));
}

/// `mdguard host run`, dom0's service: its help, its usage errors (exit 2,
/// before any xenstore access), and xenstore out of reach (exit 3, said).
#[test]
fn host_run_help_and_usage_errors() {
    for args in [&["host", "run", "--help"][..], &["host", "run", "-h"]] {
        let o = mdguard(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        assert!(
            stdout(&o).contains(
                "mdguard host run [--per-storage K] [--budget-kbps N] [--storage-group ID]..."
            ),
            "{}",
            stdout(&o)
        );
    }
    assert!(stdout(&mdguard(&["help"])).contains("mdguard host run [--per-storage K]"));
    for (args, why) in [
        (
            &["host", "run", "--per-storage", "0"][..],
            "--per-storage \"0\": 1..1000 recoveries",
        ),
        (
            &["host", "run", "--budget-kbps", "500"],
            "--budget-kbps: 1000..100000000 KiB/s",
        ),
        (
            &["host", "run", "--silent-after", "5"],
            "--silent-after \"5\": 20..3600 seconds (an agent shows it lives every 10 s)",
        ),
        (
            &["host", "run", "--storage-group", ""],
            "--storage-group: 1 to 1024 printable characters",
        ),
        (
            &["host", "run", "--domain", "5"],
            "invalid option '--domain'",
        ),
        (
            &["host", "run", "--per-storage"],
            "missing argument for option '--per-storage'",
        ),
        (&["host", "run", "now"], "unexpected argument \"now\""),
    ] {
        assert_host_usage_error(args, why);
    }
    // no xenstore: it says so and exits 3 at once
    let o = Command::new(env!("CARGO_BIN_EXE_mdguard"))
        .args(["host", "run", "--foreground"])
        .env("XENSTORED_PATH", "/nonexistent/xenstored/socket")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("cannot reach xenstore: xenstore not available: "),
        "{err}"
    );
}

/// `run --pidfile`: the pid is there once the agent runs, a second agent on the
/// same file refuses to start (exit 1, naming the first), and the file goes
/// when the agent stops. A config it cannot use: no pid file at all.
#[test]
fn run_pidfile_for_init_scripts() {
    let d = tree(HEALTHY);
    let pidfile = d.path().join("mdguard.pid");
    let conf = d.path().join("mdguard.toml");
    fs::write(&conf, "[report]\nxenstore = false\n").unwrap();
    let run = |extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mdguard"));
        c.args(["run", "--foreground", "--root"])
            .arg(d.path())
            .arg("--config")
            .arg(&conf)
            .arg("--pidfile")
            .arg(&pidfile)
            .args(extra);
        c
    };
    let mut first = run(&["--exit-after", "4"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while fs::read_to_string(&pidfile).unwrap_or_default() != format!("{}\n", first.id()) {
        assert!(std::time::Instant::now() < end, "no pid file");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = run(&["--exit-after", "1"]).output().unwrap();
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains(&format!(
            "another mdguard runs (pid {}); refusing to start",
            first.id()
        )),
        "{err}"
    );
    assert!(first.wait().unwrap().success());
    assert!(!pidfile.exists(), "the pid file stays after a clean stop");
    fs::write(&conf, "frobnicate = 1\n").unwrap();
    let bad = run(&["--exit-after", "1"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        !pidfile.exists(),
        "a pid file for an agent that refused to start"
    );
}
