//! `mdguard host metrics` against a real xenstored, guests played through
//! the fixture's ring bridge: a degraded and a recovering guest whose agents
//! answer, one whose agent is silent, one stopped, one without mdguard, and a
//! hostile one, read into Prometheus's text format, on stdout and as an
//! atomic textfile. Ignored by plain `cargo test`; run tests/xs/run.sh.
#[path = "xs/fixture.rs"]
mod fixture;
#[path = "xs/guests.rs"]
mod guests;

use fixture::Xenstored;
use guests::host_of_guests;
use mdguard::report::metrics::exposition::{parse, Parsed};
use std::process::{Command, Output};

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn value(s: &[Parsed], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let hits: Vec<&Parsed> = s
        .iter()
        .filter(|p| p.name == name && want.iter().all(|(k, v)| p.label(k) == Some(*v)))
        .collect();
    assert!(hits.len() <= 1, "{name} {want:?}: {hits:?}");
    hits.first().map(|p| p.value)
}

#[test]
#[ignore = "needs xenstored: run tests/xs/provision.sh (scripts/test-all.sh does)"]
fn host_metrics_for_every_kind_of_guest() {
    let mut xs = Xenstored::start();
    let agents = host_of_guests(&mut xs);
    let o = xs.mdguard_host(&["metrics", "--timeout", "2"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let t = text(&o);
    assert!(!t.contains('\x1b'), "{t}");
    let s = parse(&t).unwrap_or_else(|e| panic!("{e}\n{t}"));
    let v = |name, want: &[(&str, &str)]| value(&s, name, want);
    assert_eq!(v("mdguard_xenstore_up", &[]), Some(1.0));
    // agents: two answering, app silent, old stopped, bare none, evil silent
    for (dom, up, state) in [
        ("web", Some(1.0), "answering"),
        ("db", Some(1.0), "answering"),
        ("app", Some(0.0), "silent"),
        ("old", Some(0.0), "stopped"),
        ("evil", Some(0.0), "silent"),
    ] {
        assert_eq!(v("mdguard_agent_up", &[("domain", dom)]), up, "{dom}\n{t}");
        assert_eq!(
            v("mdguard_agent_state", &[("domain", dom), ("state", state)]),
            Some(1.0),
            "{dom}"
        );
        assert_eq!(v("mdguard_guest_publishing", &[("domain", dom)]), Some(1.0));
    }
    assert_eq!(
        v(
            "mdguard_guest_publishing",
            &[("domain", "bare"), ("domid", "9")]
        ),
        Some(0.0)
    );
    assert_eq!(v("mdguard_agent_up", &[("domain", "bare")]), None);
    // arrays, with the guest's labels
    assert_eq!(
        v(
            "mdguard_array_health",
            &[
                ("domain", "web"),
                ("domid", "5"),
                ("array", "md0"),
                ("health", "degraded")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            "mdguard_md_disks",
            &[("domain", "web"), ("state", "failed")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            "mdguard_array_health",
            &[("domain", "db"), ("health", "recovering")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            "mdguard_sync_completed_ratio",
            &[("domain", "db"), ("action", "recover")]
        ),
        Some(0.425)
    );
    assert_eq!(
        v(
            "mdguard_guest_health",
            &[("domain", "db"), ("health", "recovering")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            "mdguard_guest_updated_timestamp_seconds",
            &[("domain", "web")]
        ),
        Some(1.7e9)
    );
    // evil: its forged line is a label value, its repeat counted
    assert_eq!(
        v("mdguard_agent_up", &[("domain", "web"), ("domid", "5")]),
        Some(1.0)
    );
    assert_eq!(
        v(
            "mdguard_leg_state",
            &[
                ("domain", "evil"),
                (
                    "device",
                    "x\"} 1mdguard_agent_up{domain=\"web\",domid=\"5\"} 0"
                )
            ]
        ),
        Some(1.0),
        "{t}"
    );
    assert_eq!(
        v(
            "mdguard_leg_state",
            &[("domain", "evil"), ("device", "\\"), ("state", "[2J")]
        ),
        Some(1.0)
    );
    let dups = s
        .iter()
        .filter(|p| p.name == "mdguard_leg_state" && p.label("device") == Some("dup"))
        .count();
    assert_eq!(dups, 2, "two states, two series: {t}");
    assert_eq!(v("mdguard_problems", &[("domain", "web")]), Some(0.0));
    // the textfile: the same text, written whole
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("mdguard.prom");
    let o = xs.mdguard_host(&["metrics", "--no-ping", "--textfile", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(text(&o), "");
    let written = std::fs::read_to_string(&f).unwrap();
    let s = parse(&written).unwrap();
    assert_eq!(
        value(
            &s,
            "mdguard_agent_state",
            &[("domain", "web"), ("state", "not-asked")]
        ),
        Some(1.0)
    );
    assert_eq!(value(&s, "mdguard_agent_up", &[("domain", "web")]), None);
    // xenstore gone: the textfile says so instead of going on with the past
    let o = Command::new(env!("CARGO_BIN_EXE_mdguard"))
        .args(["host", "metrics", "--textfile", f.to_str().unwrap()])
        .env("XENSTORED_PATH", dir.path().join("no-socket"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(
        std::fs::read_to_string(&f).unwrap(),
        "# HELP mdguard_xenstore_up 1 when mdguard host could read xenstore; 0 when it could not, and nothing else is known.\n\
         # TYPE mdguard_xenstore_up gauge\nmdguard_xenstore_up 0\n"
    );
    for a in agents {
        assert!(a.stop() >= 1, "each answering agent was pinged");
    }
}
