//! The dom0 service at scale (issue 15): `mdguard host run` over a real
//! xenstored (Debian's C xenstored 4.17 under the xenstore tier's shim,
//! tests/xs) holding 1000 guest domains, 50 of which change state at once.
//! A benchmark: it reports figures and fails only when a step cannot be
//! carried out. `benches/host-scale.sh` runs it (release build); the figures
//! and what they mean are in docs/performance.md.
//!
//! What is real: xenstored, its permissions, quotas and watches; every guest
//! is a domain introduced to it with a home, `data/`, `control/` and two vbd
//! backends as a toolstack writes them (tests/xs/fixture.rs), and writes as
//! itself through its own shared ring; the service is the release binary.
//! What is simulated: the guests have no kernel and no md. Their agents are
//! clients in this process (benches/host_scale/agents.rs) writing what
//! mdguard's agent code plans (publisher, asker, pongs); all rings are
//! carried by one thread (tests/xs/hub.rs).
//!
//! The run: guests and their backends created; every agent publishes a
//! healthy md0; the service starts (`--metrics-listen`, K per storage, one
//! `--storage-group` per storage server) and is timed until its listener
//! lists every guest and every agent has seen its announcement; it idles
//! (two ping rounds); then the changing guests' leg fails at once (degraded),
//! and then comes back at once (each asks for a turn, recovers for a set
//! time once granted, finishes); `host status` runs with and without pings;
//! the service stops. Measured: the service's CPU (utime + stime of
//! /proc/PID/stat) and context switches in each phase, its peak RSS
//! (VmHWM), the xenstore requests it made and the watch events it got
//! (counted by xenstored, `-T`), the time from a guest's write to the metric
//! on the listener and to dom0's answer in the guest's control path.
//!
//! Env: `MDGUARD_SCALE_GUESTS` (1000), `MDGUARD_SCALE_CHANGING` (50),
//! `MDGUARD_SCALE_STORAGES` (10 storage servers), `MDGUARD_SCALE_K` (2),
//! `MDGUARD_SCALE_RECOVER_MS` (1000: how long a granted guest recovers),
//! `MDGUARD_SCALE_IDLE_S` (65), `MDGUARD_SCALE_SCRAPE_MS` (100: how often
//! the metric is looked for), `MDGUARD_SCALE_STATUS_REPS` (3),
//! `MDGUARD_SCALE_RUNS` (`timed`, `counted` or both: the run is done twice,
//! timed without xenstored's trace, which makes xenstored several times
//! slower, then again with it to count the requests),
//! `MDGUARD_SCALE_STATUS_TIMEOUT_S` (300: a `host status` is killed after
//! it), `MDGUARD_SCALE_OUT` (target/bench/host-scale.json).

#[path = "../tests/xs/fixture.rs"]
mod fixture;
#[path = "../tests/xs/guests.rs"]
mod guests;
#[path = "../tests/xs/hub.rs"]
mod hub;
#[path = "../tests/xs/service.rs"]
mod service;

#[path = "host_scale/agents.rs"]
mod agents;
#[path = "host_scale/scrape.rs"]
mod scrape;
#[path = "../tests/xs/trace.rs"]
mod trace;

use agents::{Changing, Quiet, Step, Times};
use fixture::{wait_for, Xenstored};
use scrape::{Mark, Watcher};
use serde_json::{json, Value};
use service::Service;
use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use trace::{Counts, Trace};

const DEGRADED: Mark = Mark {
    family: "mdguard_guest_health",
    label: "health=\"degraded\"",
};
const GRANTED: Mark = Mark {
    family: "mdguard_resync_grant",
    label: "state=\"granted\"",
};

/// How often the benchmark scrapes while it waits for the listener to show
/// something (a scrape of 1000 guests is 2 MB of text: not back to back).
const SCRAPE_WAIT: Duration = Duration::from_millis(50);

/// `f` every `period` until it returns Some, at most `timeout`.
fn every<T>(period: Duration, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(period);
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?}: a whole number")),
        Err(_) => default,
    }
}

struct Config {
    guests: u32,
    changing: u32,
    storages: u32,
    k: u32,
    recover: Duration,
    idle: Duration,
    scrape: Duration,
    status_reps: u32,
    /// Which runs: `timed`, `counted`, or both.
    runs: String,
    /// How long `host status` may take before it is killed.
    status_timeout: Duration,
}

impl Config {
    fn from_env() -> Config {
        let c = Config {
            guests: env_u64("MDGUARD_SCALE_GUESTS", 1000) as u32,
            changing: env_u64("MDGUARD_SCALE_CHANGING", 50) as u32,
            storages: env_u64("MDGUARD_SCALE_STORAGES", 10) as u32,
            k: env_u64("MDGUARD_SCALE_K", 2) as u32,
            recover: Duration::from_millis(env_u64("MDGUARD_SCALE_RECOVER_MS", 1000)),
            idle: Duration::from_secs(env_u64("MDGUARD_SCALE_IDLE_S", 65)),
            scrape: Duration::from_millis(env_u64("MDGUARD_SCALE_SCRAPE_MS", 100)),
            status_reps: env_u64("MDGUARD_SCALE_STATUS_REPS", 3) as u32,
            runs: std::env::var("MDGUARD_SCALE_RUNS").unwrap_or_else(|_| "both".into()),
            status_timeout: Duration::from_secs(env_u64("MDGUARD_SCALE_STATUS_TIMEOUT_S", 300)),
        };
        assert!(
            c.storages >= 1 && c.changing >= 1 && c.guests >= c.changing * 2,
            "MDGUARD_SCALE_*: at least one storage and one changing guest, and twice as many guests"
        );
        c
    }

    /// Guest `id`'s storage server (its xvdc leg is there).
    fn storage(&self, id: u32) -> u32 {
        (id - 1) % self.storages
    }

    /// The guests that change: spread over the domids, as many on each
    /// storage server (give or take one).
    fn changing_ids(&self) -> Vec<u32> {
        let step = self.guests / self.changing;
        let ids: Vec<u32> = (0..self.changing)
            .map(|j| 1 + j * step + (j % self.storages).min(step - 1))
            .collect();
        let mut uniq = ids.clone();
        uniq.dedup();
        assert!(
            uniq.len() == ids.len() && ids.iter().all(|id| *id <= self.guests),
            "cannot spread {} changing guests over {} guests",
            self.changing,
            self.guests
        );
        ids
    }
}

// ---------------------------------------------------------------- /proc

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// A process's counters.
#[derive(Debug, Clone, Copy, Default)]
struct Proc {
    /// utime + stime, every thread.
    ticks: u64,
    hwm_kib: u64,
    rss_kib: u64,
    threads: u64,
    /// voluntary + involuntary context switches, every thread.
    switches: u64,
}

fn status_field(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn proc_of(pid: u32) -> Proc {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mut switches = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        if let Ok(s) = std::fs::read_to_string(t.path().join("status")) {
            switches += status_field(&s, "voluntary_ctxt_switches:")
                + status_field(&s, "nonvoluntary_ctxt_switches:");
        }
    }
    Proc {
        ticks: f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap(),
        hwm_kib: status_field(&status, "VmHWM:"),
        rss_kib: status_field(&status, "VmRSS:"),
        threads: status_field(&status, "Threads:"),
        switches,
    }
}

/// `mdguard host ARGS` against `xs`, killed after `timeout` (its status is
/// then none).
fn host_status(xs: &Xenstored, args: &[&str], timeout: Duration) -> std::process::Output {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mdguard"))
        .arg("host")
        .args(args)
        .env("XENSTORED_PATH", &xs.socket)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // its output read meanwhile: a full pipe would stop it
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut v).unwrap();
        v
    });
    let end = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let mut o = child.wait_with_output().unwrap();
    o.stdout = reader.join().unwrap();
    o
}

fn sh(cmd: &str) -> String {
    std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

// ---------------------------------------------------------------- figures

fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn ms(d: Duration) -> f64 {
    r3(d.as_secs_f64() * 1000.0)
}

/// min / median / p90 / max of samples in ms.
fn spread(v: &[f64]) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
    json!({"n": s.len(), "min": r3(s[0]), "median": r3(at(0.5)), "p90": r3(at(0.9)), "max": r3(s[s.len() - 1])})
}

/// `b - a` in ms for each pair present.
fn gaps<'a>(pairs: impl Iterator<Item = (Option<Instant>, Option<Instant>)> + 'a) -> Vec<f64> {
    pairs
        .filter_map(|(a, b)| Some(ms(b?.checked_duration_since(a?)?)))
        .collect()
}

/// One phase: its length, what the service (and xenstored) spent, what the
/// service asked of xenstored.
struct Phase {
    name: &'static str,
    wall: Duration,
    service: (Proc, Proc),
    xenstored: (Proc, Proc),
    mark: (u64, u64),
}

struct Clock {
    at: Instant,
    service: Proc,
    xenstored: Proc,
    mark: u64,
}

fn now(service: u32, xenstored: u32, t: &Trace) -> Clock {
    Clock {
        at: Instant::now(),
        service: proc_of(service),
        xenstored: proc_of(xenstored),
        mark: t.mark(),
    }
}

fn phase(name: &'static str, a: &Clock, b: &Clock) -> Phase {
    Phase {
        name,
        wall: b.at - a.at,
        service: (a.service, b.service),
        xenstored: (a.xenstored, b.xenstored),
        mark: (a.mark, b.mark),
    }
}

fn counts_json(c: &Counts) -> Value {
    json!({"requests": c.total(), "by_type": c.requests, "watch_events": c.watch_events})
}

/// Every metric line of a scrape that is `family{...} 1` with `label`.
fn count_set(body: &str, family: &str, label: &str) -> usize {
    body.lines()
        .filter(|l| scrape::domid_with(l, family, label).is_some())
        .count()
}

#[test]
#[ignore = "a benchmark: run benches/host-scale.sh"]
fn host_run_over_a_thousand_guests() {
    let cfg = Config::from_env();
    let load_start = sh("cat /proc/loadavg");
    let mut result = json!({
        "what": "mdguard host run over a real xenstored with many guest domains (benches/host_scale.rs)",
        "config": {
            "guests": cfg.guests, "changing": cfg.changing, "changing_domids": cfg.changing_ids(),
            "storage_servers": cfg.storages, "per_storage": cfg.k,
            "recover_ms": cfg.recover.as_millis() as u64, "idle_s": cfg.idle.as_secs(),
            "scrape_every_ms": cfg.scrape.as_millis() as u64, "status_reps": cfg.status_reps,
            "xenstored": fixture::XENSTORED,
        },
        "machine": {
            "cpus": sh("nproc"), "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
            "kernel": sh("uname -r"), "loadavg_start": load_start,
        },
    });
    let out = std::env::var("MDGUARD_SCALE_OUT").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench/host-scale.json").into()
    });
    if let Some(d) = std::path::Path::new(&out).parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    // timed without xenstored's trace (it makes xenstored several times
    // slower), then the same again with it, to count the requests
    let runs: &[(&str, bool)] = match cfg.runs.as_str() {
        "timed" => &[("timed", false)],
        "counted" => &[("counted", true)],
        _ => &[("timed", false), ("counted", true)],
    };
    for (name, traced) in runs {
        let r = std::panic::catch_unwind(|| scenario(&cfg, *traced));
        result[*name] = r.unwrap_or_else(|e| {
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            json!({ "failed": why })
        });
        result["machine"]["loadavg_end"] = json!(sh("cat /proc/loadavg"));
        std::fs::write(&out, serde_json::to_string_pretty(&result).unwrap()).unwrap();
    }
    println!("{}", serde_json::to_string_pretty(&result).unwrap());
    eprintln!("scale: results in {out}");
    for (name, _) in runs {
        assert!(
            result[*name].get("failed").is_none(),
            "the {name} run failed"
        );
    }
}

/// One run: the guests, the service, the phases. Its figures.
fn scenario(cfg: &Config, traced: bool) -> Value {
    let tck = clk_tck();
    let tmp = tempfile::tempdir().unwrap();
    let trace_path = tmp.path().join("xenstored.trace");
    let trace = Trace::new(&trace_path);
    let t0 = Instant::now();
    let xs = if traced {
        Xenstored::start_with(&["-T", trace_path.to_str().unwrap()])
    } else {
        Xenstored::start()
    };
    let xs_pid = xs.pid();

    // the guests, as a toolstack makes them; introduced once all are
    // written (xenstored 4.17 looks at every domain's ring at each turn of
    // its loop: each request costs more the more domains there are)
    for id in 1..=cfg.guests {
        xs.guest_home(id, &format!("g{id}"));
        xs.add_vbd(id, "vbd", "xvdb", &format!("/dev/vg_local/g{id}"));
        xs.add_vbd(
            id,
            "vbd",
            "xvdc",
            &format!("/dev/vg_s{}/g{id}", cfg.storage(id)),
        );
    }
    let rings: Vec<_> = (1..=cfg.guests).map(|id| xs.introduce(id)).collect();
    let created = t0.elapsed();
    let (_hub, socks) = hub::Hub::start(&xs, &rings);
    let changing_ids = cfg.changing_ids();
    let t = Instant::now();
    let quiet = Quiet::start(
        (1..=cfg.guests)
            .filter(|id| !changing_ids.contains(id))
            .map(|id| socks[id as usize - 1].clone())
            .collect(),
    );
    let changing: Vec<Changing> = changing_ids
        .iter()
        .map(|id| Changing::start(socks[*id as usize - 1].clone(), *id))
        .collect();
    let published = t.elapsed();
    eprintln!(
        "scale: {} guests created in {:.1} s, published in {:.1} s",
        cfg.guests,
        created.as_secs_f64(),
        published.as_secs_f64()
    );

    // the service
    let mut args: Vec<String> = ["--metrics-listen", "127.0.0.1:0", "--per-storage"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(cfg.k.to_string());
    for s in 0..cfg.storages {
        args.push("--storage-group".into());
        args.push(format!("/dev/vg_s{s}/*"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mark0 = trace.mark();
    let spawned = Instant::now();
    let mut svc = Service::start(&xs, &args);
    let pid = svc.pid();
    let c_start = Clock {
        at: spawned,
        service: Proc::default(),
        xenstored: proc_of(xs_pid),
        mark: mark0,
    };
    let port = svc.metrics_port();
    // a scrape, tried again when the listener turns it away (4
    // connections at most, and a slot is freed a moment after the answer)
    let get = |port: u16| {
        let mut why = String::new();
        for _ in 0..50 {
            match scrape::try_get(port) {
                Ok(b) => return b,
                Err(e) => why = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = svc.log();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        panic!(
            "scraping the listener: {why}; the service's log ends:\n{}",
            tail.join("\n")
        )
    };
    let n = cfg.guests as usize;
    let listed = every(SCRAPE_WAIT, Duration::from_secs(300), || {
        let b = get(port);
        (b.contains("mdguard_xenstore_up 1")
            && b.lines()
                .filter(|l| l.starts_with("mdguard_guest_publishing{") && l.ends_with(" 1"))
                .count()
                == n)
            .then(Instant::now)
    })
    .expect("the listener lists every guest");
    let announced = wait_for(Duration::from_secs(300), || {
        let q = quiet.stats.lock().unwrap().clone();
        let c: Vec<Option<Instant>> = changing
            .iter()
            .map(|c| *c.announced.lock().unwrap())
            .collect();
        (q.announced + c.iter().flatten().count() == n).then(|| {
            c.iter()
                .flatten()
                .copied()
                .chain(q.last_announced)
                .max()
                .unwrap()
        })
    })
    .expect("every agent saw the announcement");
    let c_up = now(pid, xs_pid, &trace);
    eprintln!(
        "scale: listed after {:.2} s, announced to all after {:.2} s",
        (listed - spawned).as_secs_f64(),
        (announced - spawned).as_secs_f64()
    );
    // settled: every agent answered the service's ping round (a few may
    // miss its 2 s on a loaded machine: then the best seen in 120 s)
    let mut most_answering = 0;
    let answering = every(SCRAPE_WAIT, Duration::from_secs(120), || {
        let a = count_set(&get(port), "mdguard_agent_state", "state=\"answering\"");
        most_answering = most_answering.max(a);
        (a == n).then(Instant::now)
    });
    std::thread::sleep(Duration::from_secs(2));

    // idle: nothing changes; pings every 30 s
    let c_idle = now(pid, xs_pid, &trace);
    let mut per_second = Vec::new();
    let mut last = c_idle.service.ticks;
    while c_idle.at.elapsed() < cfg.idle {
        std::thread::sleep(Duration::from_secs(1));
        let p = proc_of(pid);
        per_second.push(p.ticks - last);
        last = p.ticks;
    }
    let c_idle_end = now(pid, xs_pid, &trace);
    eprintln!(
        "scale: idle {:.0} s: {:.2} CPU s",
        cfg.idle.as_secs_f64(),
        (c_idle_end.service.ticks - c_idle.service.ticks) as f64 / tck
    );

    // what a scrape costs
    let reps = 10;
    let mut took = Vec::new();
    let mut bytes = 0;
    for _ in 0..reps {
        let t = Instant::now();
        bytes = get(port).len();
        took.push(ms(t.elapsed()));
    }
    let c_scraped = now(pid, xs_pid, &trace);

    // the burst: every changing guest's leg fails at once
    let watcher = Watcher::start(port, cfg.scrape, vec![DEGRADED, GRANTED]);
    std::thread::sleep(cfg.scrape * 2);
    let c_fail = now(pid, xs_pid, &trace);
    let b = Arc::new(Barrier::new(changing.len() + 1));
    for c in &changing {
        c.send(Step::Fail(b.clone()));
    }
    b.wait();
    let failed: Vec<Times> = changing
        .iter()
        .map(|c| c.wait(Duration::from_secs(60)).expect("the leg failed"))
        .collect();
    let all_degraded = wait_for(Duration::from_secs(120), || {
        failed
            .iter()
            .all(|t| {
                watcher
                    .first(DEGRADED, t.domid, t.failed.unwrap())
                    .is_some()
            })
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    let c_failed = now(pid, xs_pid, &trace);

    // ... and comes back at once: each asks for a turn
    let b = Arc::new(Barrier::new(changing.len() + 1));
    for c in &changing {
        c.send(Step::Return(b.clone(), cfg.recover));
    }
    b.wait();
    let returned = Instant::now();
    let times: Vec<Times> = changing
        .iter()
        .map(|c| {
            c.wait(Duration::from_secs(900))
                .expect("the guest recovered")
        })
        .collect();
    let all_done = Instant::now();
    let all_granted = wait_for(Duration::from_secs(60), || {
        times
            .iter()
            .all(|t| {
                t.granted
                    .is_some_and(|g| watcher.first(GRANTED, t.domid, g).is_some())
            })
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    let c_returned = now(pid, xs_pid, &trace);
    let seen = std::mem::take(&mut *watcher.seen.lock().unwrap());
    drop(watcher);
    let mem = proc_of(pid);

    // `host status` over every guest, while the service runs
    let mut status = Vec::new();
    let mut status_marks = vec![trace.mark()];
    for ping in [true, false] {
        for _ in 0..cfg.status_reps {
            let mut a = vec!["status", "--json"];
            if !ping {
                a.push("--no-ping");
            }
            let t = Instant::now();
            let o = host_status(&xs, &a, cfg.status_timeout);
            let wall = t.elapsed();
            status_marks.push(trace.mark());
            let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
            let guests = v["guests"].as_array().map_or(0, Vec::len);
            let answering = v["guests"].as_array().map_or(0, |g| {
                g.iter().filter(|g| g["agent"] == "answering").count()
            });
            status.push((ping, wall, o.status.code(), guests, answering));
        }
    }
    let c_status = now(pid, xs_pid, &trace);
    let stopping = Instant::now();
    svc.stop();
    let stop_took = stopping.elapsed();
    let log = svc.log();

    // xenstored's count: the service is the connection that watched
    // @introduceDomain
    let conn = match traced {
        true => trace
            .conn_of("WATCH", "@introduceDomain")
            .expect("the service's connection in the trace"),
        false => String::new(),
    };
    let phases = [
        phase("startup", &c_start, &c_up),
        phase("idle", &c_idle, &c_idle_end),
        phase("scrapes", &c_idle_end, &c_scraped),
        phase("burst_fail", &c_fail, &c_failed),
        phase("burst_return", &c_failed, &c_returned),
        phase("host_status", &c_returned, &c_status),
    ];
    let mut marks: Vec<u64> = Vec::new();
    for p in &phases {
        marks.push(p.mark.0);
        marks.push(p.mark.1);
    }
    let counts = trace.count(&conn, &marks);
    let mut phase_json = serde_json::Map::new();
    for (i, p) in phases.iter().enumerate() {
        let cpu = |a: Proc, b: Proc| r3((b.ticks - a.ticks) as f64 / tck);
        phase_json.insert(
            p.name.into(),
            json!({
                "wall_s": r3(p.wall.as_secs_f64()),
                "service_cpu_s": cpu(p.service.0, p.service.1),
                "service_context_switches": p.service.1.switches - p.service.0.switches,
                "xenstored_cpu_s": cpu(p.xenstored.0, p.xenstored.1),
                "service_xenstore": traced.then(|| counts_json(&counts[2 * i])),
            }),
        );
    }
    // host status's own connections, one span per run
    let status_counts: Vec<u64> = status_marks
        .windows(2)
        .map(|w| {
            let by = trace.count_all(w[0], w[1]);
            by.iter()
                .filter(|(c, _)| **c != conn)
                .map(|(_, c)| c.total())
                .sum()
        })
        .collect();

    // latencies
    let by_id: BTreeMap<u32, &Times> = times.iter().map(|t| (t.domid, t)).collect();
    let to_metric_degraded = gaps(failed.iter().map(|t| {
        (
            t.failed,
            t.failed.and_then(|f| seen.first(DEGRADED, t.domid, f)),
        )
    }));
    let to_answer = gaps(times.iter().map(|t| (t.asked, t.answered)));
    let to_grant_at_once = gaps(
        times
            .iter()
            .filter(|t| !t.queued)
            .map(|t| (t.asked, t.granted)),
    );
    let to_metric_granted = gaps(times.iter().map(|t| {
        (
            t.granted,
            t.granted.and_then(|g| seen.first(GRANTED, t.domid, g)),
        )
    }));
    // a queued guest's grant after the place it got was freed: the last
    // request removed on its storage before its grant
    let handover = gaps(times.iter().filter(|t| t.queued).map(|t| {
        let s = cfg.storage(t.domid);
        let freed = by_id
            .values()
            .filter(|o| o.domid != t.domid && cfg.storage(o.domid) == s)
            .filter_map(|o| o.done)
            .filter(|d| t.granted.is_some_and(|g| *d <= g))
            .max();
        (freed, t.granted)
    }));
    let status_json = |ping: bool| {
        let runs: Vec<_> = status.iter().filter(|s| s.0 == ping).collect();
        json!({
            "wall_ms": spread(&runs.iter().map(|s| ms(s.1)).collect::<Vec<_>>()),
            "exit_codes": runs.iter().map(|s| s.2).collect::<Vec<_>>(),
            "guests_listed": runs.iter().map(|s| s.3).collect::<Vec<_>>(),
            "answering": runs.iter().map(|s| s.4).collect::<Vec<_>>(),
            "xenstore_requests": traced.then(|| status_counts.iter().enumerate()
                .filter(|(i, _)| (*i < cfg.status_reps as usize) == ping)
                .map(|(_, c)| *c).collect::<Vec<_>>()),
        })
    };
    let quiet_stats = quiet.stats.lock().unwrap().clone();
    json!({
        "xenstored_trace": traced,
        "service_args": args,
        "setup": {
            "guests_created_s": r3(created.as_secs_f64()),
            "agents_published_s": r3(published.as_secs_f64()),
        },
        "startup": {
            "listed_every_guest_s": r3((listed - spawned).as_secs_f64()),
            "announced_to_every_guest_s": r3((announced - spawned).as_secs_f64()),
            "every_agent_answering_s": answering.map(|a| r3((a - spawned).as_secs_f64())),
            "most_agents_answering": most_answering,
        },
        "phases": phase_json,
        "idle_cpu_ticks_per_second": per_second,
        "scrape": {
            "bytes": bytes, "wall_ms": spread(&took),
            "service_cpu_ms_each": r3((c_scraped.service.ticks - c_idle_end.service.ticks) as f64 / tck * 1000.0 / reps as f64),
            "during_bursts": {"scrapes": seen.scrapes, "failed": seen.errors, "wall_ms": spread(&seen.took.iter().map(|d| ms(*d)).collect::<Vec<_>>())},
        },
        "burst_fail": {
            "write_to_metric_degraded_ms": spread(&to_metric_degraded),
            "every_guest_seen_degraded": all_degraded.is_some(),
        },
        "burst_return": {
            "request_to_first_answer_ms": spread(&to_answer),
            "request_to_grant_when_granted_at_once_ms": spread(&to_grant_at_once),
            "queued": times.iter().filter(|t| t.queued).count(),
            "place_freed_to_next_grant_ms": spread(&handover),
            "grant_to_metric_granted_ms": spread(&to_metric_granted),
            "every_guest_seen_granted": all_granted.is_some(),
            "first_request_to_last_done_s": r3((all_done - returned).as_secs_f64()),
        },
        "memory": {"peak_rss_kib": mem.hwm_kib, "rss_kib": mem.rss_kib, "threads": mem.threads},
        "host_status": {"with_ping": status_json(true), "no_ping": status_json(false)},
        "stop_s": r3(stop_took.as_secs_f64()),
        "quiet_agents": {"pongs": quiet_stats.pongs},
        "service_log_lines": log.lines().count(),
        "service_log_tail": log.lines().rev().take(5).collect::<Vec<_>>(),
    })
}
