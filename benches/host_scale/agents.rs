//! The guests' agents of the scale benchmark: clients in this process, each
//! connected as its guest domain through its ring (tests/xs/hub.rs), writing
//! what mdguard's own agent code plans: the publisher's report
//! (src/report/publisher.rs), the asker's request (src/report/asker.rs), a
//! pong for each new ping, dom0's control keys read as `report/agent.rs`
//! reads them (every key on the watch's first firing, then the key that
//! fired). What they do not have is md: the arrays are given.
//!
//! - [`Quiet`]: one thread for every guest that stays healthy; it publishes a
//!   healthy md0 and answers pings.
//! - [`Changing`]: a thread per guest that changes state on command: its leg
//!   fails (degraded), then comes back (ask for a turn, recover for a set
//!   time once granted, healthy again, request removed), with the instant of
//!   each step.

use crate::guests::md0;
use mdguard::report::admission::Answer;
use mdguard::report::asker::Asker;
use mdguard::report::publisher::{Op, Publisher};
use mdguard::report::schema::{
    control_key, ArraySummary, ControlEvent, ControlState, Health, CONTROL_KEYS,
};
use mdguard::xenstore::{Client, Endpoint};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Barrier, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The leg that fails and comes back.
pub const LEG: &str = "xvdc";

fn unix_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// One agent's xenstore side.
struct Sim {
    c: Client,
    p: Publisher,
    control: ControlState,
    /// When it first saw dom0's coordinator.
    coordinator_at: Option<Instant>,
    pongs: u64,
}

impl Sim {
    /// Connect as the guest, publish `arrays`, watch `control/mdguard`.
    fn start(sock: &Path, arrays: &[ArraySummary]) -> Sim {
        let mut c = Client::connect(Endpoint::Socket(sock.to_path_buf())).unwrap();
        c.set_timeout(Duration::from_secs(30));
        let mut p = Publisher::default();
        p.publish(&mut c, arrays, unix_s()).unwrap();
        c.watch("control/mdguard", "ctl").unwrap();
        Sim {
            c,
            p,
            control: ControlState::default(),
            coordinator_at: None,
            pongs: 0,
        }
    }

    fn publish(&mut self, arrays: &[ArraySummary]) {
        self.p.publish(&mut self.c, arrays, unix_s()).unwrap();
    }

    fn exec(&mut self, op: &Op) {
        match op {
            Op::Write { path, value } => self.c.write(path, value).unwrap(),
            Op::Rm { path } => match self.c.rm(path) {
                Err(e) if e.is_not_found() => {}
                r => r.unwrap(),
            },
        }
    }

    /// Take what arrived: read the control keys the events name, answer a
    /// new ping. dom0's answers to a request, in order.
    fn take(&mut self) -> Vec<Answer> {
        let events = self.c.poll_events().unwrap();
        let mut keys: Vec<&'static str> = Vec::new();
        for ev in &events {
            match control_key(&ev.path) {
                Some(k) => keys.push(k),
                None => keys.extend(CONTROL_KEYS),
            }
        }
        keys.sort_unstable();
        keys.dedup();
        let mut answers = Vec::new();
        for k in keys {
            let raw = self.c.try_read(&format!("control/mdguard/{k}")).unwrap();
            match self.control.update(k, raw.as_deref()) {
                Ok(Some(ControlEvent::Ping(token))) => {
                    let op = self.p.pong_op(&token);
                    self.exec(&op);
                    self.pongs += 1;
                }
                Ok(Some(ControlEvent::Coordinator(Some(_)))) => {
                    self.coordinator_at.get_or_insert_with(Instant::now);
                }
                Ok(Some(ControlEvent::Answer(a))) => answers.push(a),
                _ => {}
            }
        }
        answers
    }

    fn wait(&mut self, timeout: Duration) {
        if let Some(fd) = self.c.as_raw_fd() {
            // SAFETY: the client owns the fd and outlives the poll.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
            let ms = timeout.as_millis().min(u16::MAX as u128) as u16;
            let _ = poll(&mut fds, PollTimeout::from(ms));
        }
    }
}

/// What the quiet agents did, shared with the benchmark.
#[derive(Debug, Default, Clone)]
pub struct QuietStats {
    pub pongs: u64,
    /// Agents that saw dom0's coordinator, and the last of them when.
    pub announced: usize,
    pub last_announced: Option<Instant>,
}

/// Every guest that stays healthy, on one thread.
pub struct Quiet {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<Mutex<QuietStats>>,
}

impl Quiet {
    /// Connect and publish each of `socks`; returns once all have published.
    pub fn start(socks: Vec<PathBuf>) -> Quiet {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(QuietStats::default()));
        let (ready_tx, ready) = channel();
        let (stop2, stats2) = (stop.clone(), stats.clone());
        let thread = std::thread::spawn(move || {
            let healthy = [md0(Health::Ok, "in_sync", None)];
            let mut sims: Vec<Sim> = socks.iter().map(|s| Sim::start(s, &healthy)).collect();
            ready_tx.send(()).unwrap();
            // epoll, not poll(2): a wake-up costs the same with a thousand agents
            let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
            for (i, s) in sims.iter().enumerate() {
                // SAFETY: each client owns its fd and outlives the epoll.
                let fd = unsafe { BorrowedFd::borrow_raw(s.c.as_raw_fd().unwrap()) };
                ep.add(fd, EpollEvent::new(EpollFlags::EPOLLIN, i as u64))
                    .unwrap();
            }
            let mut events = vec![EpollEvent::empty(); 256];
            while !stop2.load(Ordering::Relaxed) {
                let n = ep.wait(&mut events, PollTimeout::from(200u16)).unwrap_or(0);
                if n == 0 {
                    continue;
                }
                for e in &events[..n] {
                    sims[e.data() as usize].take();
                }
                let mut st = stats2.lock().unwrap();
                st.pongs = sims.iter().map(|s| s.pongs).sum();
                st.announced = sims.iter().filter(|s| s.coordinator_at.is_some()).count();
                st.last_announced = sims.iter().filter_map(|s| s.coordinator_at).max();
            }
        });
        ready
            .recv_timeout(Duration::from_secs(600))
            .expect("the quiet agents published");
        Quiet {
            stop,
            thread: Some(thread),
            stats,
        }
    }
}

impl Drop for Quiet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a changing guest is told to do, all of them at once (the barrier).
#[derive(Clone)]
pub enum Step {
    /// Its leg failed: publish md0 degraded.
    Fail(Arc<Barrier>),
    /// Its leg is back and proven: ask for a turn; once granted recover
    /// for this long, then publish healthy and remove the request.
    Return(Arc<Barrier>, Duration),
}

/// When each step of a changing guest happened (after the write's reply:
/// xenstored had it).
#[derive(Debug, Clone, Default)]
pub struct Times {
    pub domid: u32,
    pub failed: Option<Instant>,
    pub asked: Option<Instant>,
    /// dom0's first answer (granted or queued) seen in its control path.
    pub answered: Option<Instant>,
    pub queued: bool,
    pub granted: Option<Instant>,
    /// The request removed: its place is free.
    pub done: Option<Instant>,
    pub pongs: u64,
}

/// A guest that changes state on command, on a thread of its own.
pub struct Changing {
    /// When it first saw dom0's coordinator.
    pub announced: Arc<Mutex<Option<Instant>>>,
    tx: Sender<Step>,
    done: Receiver<Times>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Changing {
    pub fn start(sock: PathBuf, domid: u32) -> Changing {
        let (tx, rx) = channel::<Step>();
        let (done_tx, done) = channel();
        let stop = Arc::new(AtomicBool::new(false));
        let announced = Arc::new(Mutex::new(None));
        let (stop2, announced2) = (stop.clone(), announced.clone());
        let thread = std::thread::spawn(move || {
            let mut sim = Sim::start(&sock, &[md0(Health::Ok, "in_sync", None)]);
            let seed = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_micros() as u64
                * 1000
                + u64::from(domid);
            let mut asker = Asker::new(seed);
            let mut t = Times {
                domid,
                ..Times::default()
            };
            done_tx.send(t.clone()).unwrap();
            let legs = [LEG.to_string()];
            // how long to recover once granted, and until when
            let mut recover: Option<Duration> = None;
            let mut recovering_until: Option<Instant> = None;
            while !stop2.load(Ordering::Relaxed) {
                if let Ok(step) = rx.try_recv() {
                    match step {
                        Step::Fail(b) => {
                            b.wait();
                            sim.publish(&[md0(Health::Degraded, "faulty", None)]);
                            t.failed = Some(Instant::now());
                            done_tx.send(t.clone()).unwrap();
                        }
                        Step::Return(b, d) => {
                            asker.set_coordinator(sim.coordinator_at.is_some());
                            let s = asker.plan(&legs, true, unix_s());
                            b.wait();
                            if let Some(op) = &s.op {
                                sim.exec(op);
                            }
                            asker.apply(s);
                            t.asked = Some(Instant::now());
                            recover = Some(d);
                        }
                    }
                }
                let answers = sim.take();
                if let Some(at) = sim.coordinator_at {
                    announced2.lock().unwrap().get_or_insert(at);
                }
                for a in answers {
                    let now = Instant::now();
                    let Some((turn, _)) = asker.on_answer(&a) else {
                        continue;
                    };
                    t.answered.get_or_insert(now);
                    match turn {
                        mdguard::heal::Turn::Granted => {
                            t.granted = Some(now);
                            // the leg is added: md recovers it
                            sim.publish(&[md0(Health::Recovering, "rebuilding", Some(0.0))]);
                            recovering_until = Some(now + recover.unwrap_or_default());
                        }
                        mdguard::heal::Turn::Queued => t.queued = true,
                    }
                }
                if recovering_until.is_some_and(|u| Instant::now() >= u) {
                    recovering_until = None;
                    sim.publish(&[md0(Health::Ok, "in_sync", None)]);
                    let s = asker.plan(&[], false, unix_s());
                    if let Some(op) = &s.op {
                        sim.exec(op);
                    }
                    asker.apply(s);
                    t.done = Some(Instant::now());
                    t.pongs = sim.pongs;
                    done_tx.send(t.clone()).unwrap();
                } else if recover.is_some() && t.done.is_none() {
                    // the request stands: rewritten when due (dom0's sign
                    // that this agent lives)
                    let pending = t.granted.is_some();
                    let waiting: &[String] = if pending { &[] } else { &legs };
                    let s = asker.plan(waiting, pending, unix_s());
                    if let Some(op) = &s.op {
                        sim.exec(op);
                    }
                    asker.apply(s);
                }
                let until = recovering_until
                    .map(|u| u.saturating_duration_since(Instant::now()))
                    .unwrap_or(Duration::from_millis(100))
                    .min(Duration::from_millis(100));
                sim.wait(until);
            }
        });
        let c = Changing {
            announced,
            tx,
            done,
            stop,
            thread: Some(thread),
        };
        c.done
            .recv_timeout(Duration::from_secs(60))
            .expect("the agent published");
        c
    }

    pub fn send(&self, s: Step) {
        self.tx.send(s).unwrap();
    }

    /// The times once the step sent is over.
    pub fn wait(&self, timeout: Duration) -> Option<Times> {
        self.done.recv_timeout(timeout).ok()
    }
}

impl Drop for Changing {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
