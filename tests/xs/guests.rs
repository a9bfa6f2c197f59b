//! Guests in the conditions the metrics tests need, published into a real
//! xenstored through the fixture's ring bridge (tests/xenstore_metrics.rs and
//! the prometheus tier, tests/prom_e2e.rs).
#![allow(dead_code)]

use super::fixture::{guest, AnsweringAgent, Xenstored};
use mdguard::report::publisher::Publisher;
use mdguard::report::schema::{ArraySummary, Health};

pub fn md0(health: Health, second: &str, sync: Option<f32>) -> ArraySummary {
    ArraySummary {
        name: "md0".into(),
        health,
        level: "raid1".into(),
        raid_disks: 2,
        in_sync: if second == "in_sync" { 2 } else { 1 },
        members: vec![
            ("xvdb".into(), "in_sync".into()),
            ("xvdc".into(), second.into()),
        ],
        sync: sync.map(|p| ("recover".into(), p)),
        flapping: false,
        stalled: false,
        refused: vec![],
    }
}

/// Five guests in five conditions and a hostile one: web degraded and db
/// recovering (their agents answer), app silent, old stopped, bare without
/// mdguard, evil publishing names that would break the text format. Returns the agents that answer (they stop when dropped).
pub fn host_of_guests(xs: &mut Xenstored) -> Vec<AnsweringAgent> {
    let web = xs.add_guest(5, "web");
    let db = xs.add_guest(6, "db");
    let app = xs.add_guest(7, "app");
    let old = xs.add_guest(8, "old");
    xs.add_guest(9, "bare");
    let evil = xs.add_guest(10, "evil");
    let agents = vec![
        AnsweringAgent::start(&web, vec![md0(Health::Degraded, "faulty", None)]),
        AnsweringAgent::start(&db, vec![md0(Health::Recovering, "rebuilding", Some(42.5))]),
    ];
    // app published, then its agent hung: nobody answers
    Publisher::default()
        .publish(
            &mut guest(&app),
            &[md0(Health::Ok, "in_sync", None)],
            1_700_000_000,
        )
        .unwrap();
    // old's agent stopped cleanly and said so
    let mut g = guest(&old);
    Publisher::default()
        .publish(&mut g, &[md0(Health::Ok, "in_sync", None)], 1_700_000_000)
        .unwrap();
    g.write("data/mdguard/stopped", b"1700000001").unwrap();
    // evil: names that would end a label, a line or repeat a series
    let mut g = guest(&evil);
    Publisher::default()
        .publish(&mut g, &[md0(Health::Ok, "in_sync", None)], 1_700_000_000)
        .unwrap();
    g.write(
        "data/mdguard/arrays/md0",
        br#"{"health":"ok","level":"raid1","disks":2,"in_sync":2,"members":[["x\"} 1\nmdguard_agent_up{domain=\"web\",domid=\"5\"} 0\n","in_sync"],["dup","in_sync"],["dup","faulty"],["\\","\u001b[2J"]]}"#,
    )
    .unwrap();
    agents
}

/// What a [`LiveAgent`] is told to do.
enum Cmd {
    Publish(Vec<ArraySummary>),
    /// Answer pings (and the one waiting, at once) or stop answering.
    Answer(bool),
    /// Write (or with `None` remove) a key under the guest's home.
    Key(String, Option<Vec<u8>>),
}

/// A guest's agent reduced to what dom0 sees, driven by the test: it
/// publishes what it is given (as the agent's publisher writes it), answers
/// pings while told to, and writes its request or `stopped` key when told,
/// all on one connection to its guest domain (the bridge takes one at a
/// time). Stopped when dropped.
pub struct LiveAgent {
    tx: std::sync::mpsc::Sender<Cmd>,
    done: std::sync::mpsc::Receiver<()>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LiveAgent {
    pub fn start(sock: &std::path::Path, arrays: Vec<ArraySummary>) -> LiveAgent {
        use mdguard::report::publisher::Op;
        use mdguard::report::schema::{ControlEvent, ControlState};
        use std::sync::atomic::Ordering;
        use std::time::Duration;
        let sock = sock.to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel::<Cmd>();
        let (done_tx, done) = std::sync::mpsc::channel();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut g = guest(&sock);
            let mut p = Publisher::default();
            p.publish(&mut g, &arrays, 1_700_000_000).unwrap();
            g.watch("control/mdguard", "ctl").unwrap();
            let mut st = ControlState::default();
            let mut answering = true;
            let answer = |g: &mut mdguard::xenstore::Client,
                          st: &mut ControlState,
                          p: &Publisher,
                          fresh: bool| {
                let raw = g.try_read("control/mdguard/ping").unwrap();
                if fresh {
                    *st = ControlState::default();
                }
                if let Ok(Some(ControlEvent::Ping(tok))) = st.update("ping", raw.as_deref()) {
                    if let Op::Write { path, value } = p.pong_op(&tok) {
                        g.write(&path, &value).unwrap();
                    }
                }
            };
            done_tx.send(()).unwrap();
            while !stop2.load(Ordering::Relaxed) {
                while let Ok(cmd) = rx.try_recv() {
                    match cmd {
                        Cmd::Publish(a) => {
                            p.publish(&mut g, &a, 1_700_000_000).unwrap();
                        }
                        Cmd::Answer(on) => {
                            answering = on;
                            if on {
                                // a hung agent that resumes reads the ping
                                // that waits
                                answer(&mut g, &mut st, &p, true);
                            }
                        }
                        Cmd::Key(k, Some(v)) => g.write(&k, &v).unwrap(),
                        Cmd::Key(k, None) => g.rm(&k).unwrap(),
                    }
                    done_tx.send(()).unwrap();
                }
                for _ev in g.wait_events(Duration::from_millis(20)).unwrap() {
                    if answering {
                        answer(&mut g, &mut st, &p, false);
                    }
                }
            }
        });
        let a = LiveAgent {
            tx,
            done,
            stop,
            thread: Some(thread),
        };
        a.wait();
        a
    }

    fn wait(&self) {
        self.done
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the agent did it");
    }

    fn send(&self, c: Cmd) {
        self.tx.send(c).unwrap();
        self.wait();
    }

    /// Publish `arrays` now (done when this returns).
    pub fn publish(&self, arrays: Vec<ArraySummary>) {
        self.send(Cmd::Publish(arrays));
    }

    /// Answer pings, or stop answering (a hung agent).
    pub fn answer(&self, on: bool) {
        self.send(Cmd::Answer(on));
    }

    /// Write `data/mdguard/<key>` (`None` removes it).
    pub fn data(&self, key: &str, value: Option<&str>) {
        self.send(Cmd::Key(
            format!("data/mdguard/{key}"),
            value.map(|v| v.as_bytes().to_vec()),
        ));
    }
}

impl Drop for LiveAgent {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
