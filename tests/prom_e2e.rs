//! The prometheus tier: what mdguard writes for node_exporter's textfile
//! collector, scraped by a real Prometheus and asked back through its HTTP
//! API (`/api/v1/query`).
//!
//! - A guest: `mdguard status --format=prometheus --textfile` over a prepared
//!   tree (tests/fixtures/demo: md0 recovering, md1 degraded) with a live
//!   agent's view (md1's returning leg refused as split brain), read by a
//!   node_exporter whose own md collector reads the same /proc/mdstat, so each
//!   `mdguard_md_*` series is checked against its `node_md_*` twin.
//! - dom0: `mdguard host metrics --textfile` over the real xenstored of
//!   tests/xs with a degraded, a recovering, a silent, a stopped, a bare and a
//!   hostile guest (tests/xs/guests.rs), read by a second node_exporter.
//! - dom0's service: `mdguard host run --metrics-listen` over a second
//!   xenstored where two guests ask for a turn on one storage server (K = 1),
//!   scraped by Prometheus itself: the grant, the queue, the budget and the
//!   storage's places.
//!
//! Both files and the listener's text also pass `promtool check metrics`. Needs Debian's prometheus,
//! prometheus-node-exporter and the xenstored of tests/xs: run
//! tests/prom/run.sh (ignored by plain `cargo test`).
#[path = "xs/fixture.rs"]
mod fixture;
#[path = "xs/guests.rs"]
mod guests;
#[path = "xs/service.rs"]
mod service;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A process killed when dropped, its output in a file.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn start(cmd: &mut Command, log: PathBuf) -> Proc {
        let f = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e} (run tests/prom/provision.sh)"));
        Proc { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nobody listens on (now).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path` from 127.0.0.1:`port`: the status code and the body.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One instant-vector result: its labels and value.
type Series = (BTreeMap<String, String>, f64);

/// Prometheus's answer to a PromQL instant query.
fn query(port: u16, q: &str) -> Vec<Series> {
    let (code, body) = get(port, &format!("/api/v1/query?query={}", urlencode(q)))
        .unwrap_or_else(|| panic!("no answer to {q}"));
    assert_eq!(code, 200, "{q}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success", "{q}: {body}");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let labels = r["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            let value = r["value"][1].as_str().unwrap().parse().unwrap();
            (labels, value)
        })
        .collect()
}

/// The one value `q` selects.
fn one(port: u16, q: &str) -> f64 {
    let r = query(port, q);
    assert_eq!(r.len(), 1, "{q}: {r:?}");
    r[0].1
}

/// node_exporter on a loopback port, reading textfiles from `dir`; with
/// `procfs`, its md collector too.
fn node_exporter(port: u16, dir: &Path, procfs: Option<&Path>, log: PathBuf) -> Proc {
    let mut c = Command::new("prometheus-node-exporter");
    c.arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(["--collector.disable-defaults", "--collector.textfile"])
        .arg(format!("--collector.textfile.directory={}", dir.display()));
    if let Some(p) = procfs {
        c.arg("--collector.mdadm")
            .arg(format!("--path.procfs={}", p.display()));
    }
    Proc::start(&mut c, log)
}

fn copy_tree(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

fn promtool_check(file: &Path) {
    let o = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(file).unwrap())
        .output()
        .expect("promtool (run tests/prom/provision.sh)");
    assert!(
        o.status.success() && o.stdout.is_empty() && o.stderr.is_empty(),
        "promtool on {}: {}{}",
        file.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
#[ignore = "needs prometheus, prometheus-node-exporter and xenstored: run tests/prom/run.sh"]
fn prometheus_sees_degraded_recovering_and_silent_guests() {
    let t0 = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let mdguard = env!("CARGO_BIN_EXE_mdguard");

    // the guest: the demo tree, with a live agent's view (this process's pid)
    let root = w.join("guest");
    std::fs::create_dir_all(&root).unwrap();
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/demo"),
        &root,
    );
    std::fs::create_dir_all(root.join("run/mdguard")).unwrap();
    std::fs::write(
        root.join("run/mdguard/agent.json"),
        format!(
            r#"{{"version":1,"pid":{},"arrays":{{"md1":{{"refused":{{"xvdd2":"split-brain"}}}}}}}}"#,
            std::process::id()
        ),
    )
    .unwrap();
    let guest_dir = w.join("guest-textfiles");
    std::fs::create_dir_all(&guest_dir).unwrap();
    let guest_file = guest_dir.join("mdguard.prom");
    let o = Command::new(mdguard)
        .args(["status", "--format=prometheus", "--root"])
        .arg(&root)
        .arg("--textfile")
        .arg(&guest_file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    promtool_check(&guest_file);

    // dom0: the host's guests in a real xenstored
    let mut xs = fixture::Xenstored::start();
    let agents = guests::host_of_guests(&mut xs);
    let dom0_dir = w.join("dom0-textfiles");
    std::fs::create_dir_all(&dom0_dir).unwrap();
    let dom0_file = dom0_dir.join("mdguard.prom");
    let o = xs.mdguard_host(&[
        "metrics",
        "--timeout",
        "2",
        "--textfile",
        dom0_file.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    drop(agents);
    promtool_check(&dom0_file);

    // dom0's service on a host of its own: g11 granted, g12 queued behind it
    let mut xs2 = fixture::Xenstored::start();
    let mut asking = Vec::new();
    for id in [11u32, 12] {
        let sock = xs2.add_guest(id, &format!("g{id}"));
        xs2.add_vbd(id, "vbd", "xvdc", &format!("/dev/vg_storage2/g{id}"));
        asking.push(guests::LiveAgent::start(
            &sock,
            vec![guests::md0(
                mdguard::report::schema::Health::Degraded,
                "faulty",
                None,
            )],
        ));
    }
    let service = service::Service::start(
        &xs2,
        &[
            "--metrics-listen",
            "127.0.0.1:0",
            "--per-storage",
            "1",
            "--budget-kbps",
            "20000",
            "--storage-group",
            "/dev/vg_storage2/*",
        ],
    );
    let pl = service.metrics_port();
    asking[0].data("request", Some("t11 xvdc"));
    std::thread::sleep(Duration::from_millis(100));
    asking[1].data("request", Some("t12 xvdc"));
    let listener_file = w.join("listener.prom");
    let body = fixture::wait_for(Duration::from_secs(20), || {
        get(pl, "/metrics")
            .filter(|(code, body)| *code == 200 && body.contains("mdguard_resync_queue_position{"))
    })
    .unwrap_or_else(|| panic!("no queue on the listener: {}", service.log()))
    .1;
    std::fs::write(&listener_file, &body).unwrap();
    promtool_check(&listener_file);
    let written = t0.elapsed();

    // two node_exporters and a Prometheus scraping both every second
    let (pg, pd, pp) = (free_port(), free_port(), free_port());
    let _ne_guest = node_exporter(
        pg,
        &guest_dir,
        Some(&root.join("proc")),
        w.join("ne-guest.log"),
    );
    let _ne_dom0 = node_exporter(pd, &dom0_dir, None, w.join("ne-dom0.log"));
    let config = w.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: guest\n    static_configs:\n      - targets: ['127.0.0.1:{pg}']\n\
             \x20 - job_name: dom0\n    static_configs:\n      - targets: ['127.0.0.1:{pd}']\n\
             \x20 - job_name: listener\n    static_configs:\n      - targets: ['127.0.0.1:{pl}']\n"
        ),
    )
    .unwrap();
    let prom = Proc::start(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", w.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{pp}")),
        w.join("prometheus.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let ready = loop {
        let scraped = get(pp, "/-/ready").is_some_and(|(c, _)| c == 200)
            && query(pp, "up == 1").len() == 3
            && !query(pp, "mdguard_resync_queue_position").is_empty()
            && query(pp, "mdguard_agent_up").len() >= 6;
        if scraped || Instant::now() > deadline {
            break scraped;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(ready, "Prometheus did not scrape all three: {}", prom.log());
    let scraped = t0.elapsed();

    // node_exporter took both files whole
    for job in ["guest", "dom0"] {
        assert_eq!(
            one(pp, &format!("node_textfile_scrape_error{{job=\"{job}\"}}")),
            0.0
        );
    }

    // the guest: md and the agent's view
    let g = |q: &str| one(pp, &q.replace("JOB", "job=\"guest\""));
    assert_eq!(g("mdguard_agent_up{JOB}"), 1.0);
    assert_eq!(
        g("mdguard_array_health{JOB,array=\"md0\",health=\"recovering\"}"),
        1.0
    );
    assert_eq!(
        g("mdguard_array_health{JOB,array=\"md1\",health=\"degraded\"}"),
        1.0
    );
    assert_eq!(
        g("mdguard_leg_refused{JOB,array=\"md1\",device=\"xvdd2\",reason=\"split-brain\"}"),
        1.0
    );
    assert_eq!(g("mdguard_sync_completed_ratio{JOB,array=\"md0\"}"), 0.315);
    // each mdguard_md_* series says what its node_md_* twin says, from the
    // same /proc/mdstat
    let mut compared = 0;
    for name in [
        "disks",
        "disks_required",
        "state",
        "blocks",
        "blocks_synced",
    ] {
        let theirs = query(pp, &format!("node_md_{name}{{job=\"guest\"}}"));
        assert!(!theirs.is_empty(), "node_md_{name}");
        for (labels, value) in theirs {
            let mut sel = format!(
                "mdguard_md_{name}{{job=\"guest\",array=\"{}\"",
                labels["device"]
            );
            if let Some(s) = labels.get("state") {
                sel.push_str(&format!(",state=\"{s}\""));
            }
            sel.push('}');
            assert_eq!(one(pp, &sel), value, "{sel} vs node_md_{name} {labels:?}");
            compared += 1;
        }
    }
    assert!(compared >= 20, "{compared}");

    // dom0: a degraded, a recovering and a silent guest
    let d = |q: &str| one(pp, &q.replace("JOB", "job=\"dom0\""));
    assert_eq!(d("mdguard_xenstore_up{JOB}"), 1.0);
    assert_eq!(
        d("mdguard_array_health{JOB,domain=\"web\",domid=\"5\",array=\"md0\",health=\"degraded\"}"),
        1.0
    );
    assert_eq!(
        d("mdguard_md_disks{JOB,domain=\"web\",state=\"failed\"}"),
        1.0
    );
    assert_eq!(d("mdguard_agent_up{JOB,domain=\"web\"}"), 1.0);
    assert_eq!(
        d("mdguard_array_health{JOB,domain=\"db\",health=\"recovering\"}"),
        1.0
    );
    assert_eq!(
        d("mdguard_sync_completed_ratio{JOB,domain=\"db\",action=\"recover\"}"),
        0.425
    );
    assert_eq!(d("mdguard_agent_up{JOB,domain=\"app\"}"), 0.0);
    assert_eq!(
        d("mdguard_agent_state{JOB,domain=\"app\",state=\"silent\"}"),
        1.0
    );
    assert_eq!(
        d("mdguard_agent_state{JOB,domain=\"old\",state=\"stopped\"}"),
        1.0
    );
    assert_eq!(d("mdguard_guest_publishing{JOB,domain=\"bare\"}"), 0.0);
    // the alerts an admin writes: which guest is degraded, whose agent is silent
    let names = |q: &str| -> Vec<String> {
        let mut v: Vec<String> = query(pp, q)
            .into_iter()
            .map(|(l, _)| l["domain"].clone())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names("mdguard_guest_health{job=\"dom0\",health=\"degraded\"} == 1"),
        ["web"]
    );
    assert_eq!(
        names("mdguard_agent_state{job=\"dom0\",state=\"silent\"} == 1"),
        ["app", "evil"]
    );
    // the hostile guest's names are its own label values, nothing more
    assert_eq!(
        query(pp, "mdguard_agent_up{job=\"dom0\",domain=\"web\"}").len(),
        1
    );
    let evil = query(pp, "mdguard_leg_state{domain=\"evil\"}");
    let devices: Vec<&str> = evil.iter().map(|(l, _)| l["device"].as_str()).collect();
    assert!(
        devices.contains(&"x\"} 1mdguard_agent_up{domain=\"web\",domid=\"5\"} 0"),
        "{devices:?}"
    );
    assert!(devices.contains(&"\\"), "{devices:?}");
    assert_eq!(evil.len(), 4, "{evil:?}");
    // dom0's service, scraped over HTTP: the grant, the queue, the budget,
    // the storage's places, and its agents as its pings judge them
    let l = |q: &str| one(pp, &q.replace("JOB", "job=\"listener\""));
    assert_eq!(
        l("mdguard_resync_grant{JOB,domain=\"g11\",domid=\"11\",state=\"granted\"}"),
        1.0
    );
    assert_eq!(
        l("mdguard_resync_grant{JOB,domain=\"g12\",state=\"queued\"}"),
        1.0
    );
    assert_eq!(
        l("mdguard_resync_grant{JOB,domain=\"g12\",state=\"granted\"}"),
        0.0
    );
    assert_eq!(l("mdguard_resync_queue_position{JOB,domain=\"g12\"}"), 1.0);
    assert_eq!(l("mdguard_resync_budget_kbps{JOB,domain=\"g11\"}"), 20000.0);
    assert!(query(
        pp,
        "mdguard_resync_budget_kbps{job=\"listener\",domain=\"g12\"}"
    )
    .is_empty());
    assert_eq!(
        l("mdguard_storage_grants{JOB,storage=\"/dev/vg_storage2/*\"}"),
        1.0
    );
    assert_eq!(
        l("mdguard_storage_grants_max{JOB,storage=\"/dev/vg_storage2/*\"}"),
        1.0
    );
    assert_eq!(
        l("mdguard_agent_state{JOB,domain=\"g11\",state=\"answering\"}"),
        1.0
    );
    drop(asking);
    let lines = |f: &Path| std::fs::read_to_string(f).unwrap().lines().count();
    eprintln!(
        "prometheus tier: textfiles and listener ready in {written:?} (guest {} lines, dom0 {}, listener {}), \
         all scraped after {scraped:?}, {compared} node_md pairs equal, done in {:?}",
        lines(&guest_file),
        lines(&dom0_file),
        lines(&listener_file),
        t0.elapsed()
    );
}
