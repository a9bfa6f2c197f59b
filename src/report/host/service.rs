//! `mdguard host run`: the dom0 service. It watches (xenstore watches, never
//! polling) every guest's `data/mdguard`, `@introduceDomain` /
//! `@releaseDomain` and dom0's vbd and qdisk backends, and
//!
//! - coordinates resyncs: announces itself in each guest that runs an agent
//!   (`control/mdguard/coordinator`), answers its requests and splits the host
//!   budget as [`super::admission::Coordinator`] plans, every plan written in
//!   one transaction;
//! - hints that storage is back: a backend whose `state` returns to 4
//!   (connected), or a dom0 block device under a backend that the kernel
//!   says was added or changed and has a size ([`super::devices`]), makes it
//!   write a new `control/mdguard/probe` token to that guest, whose agent
//!   probes its failed legs at once;
//! - says what changed in each guest's report, once per change
//!   ([`super::events`]): in the log, and to a hook (`--hook`, run by the
//!   agent's hook runner);
//! - with `--hook`, `--metrics-listen` or `--ping-every`, pings every agent
//!   that publishes every so often ([`super::liveness`]) to tell `silent`
//!   from `answering`, as `host status` does;
//! - with `--metrics-listen`, serves `host metrics`' series over HTTP
//!   ([`crate::report::metrics::listener`], its own threads) from a snapshot
//!   this loop publishes after each change: a scrape never waits for the
//!   loop, nor the loop for a scrape.
//!
//! While nothing changes (and no ping is due) it sleeps in poll(2) with no
//! timer and writes nothing (dom0's kernel uevents wake it, and it reads the
//! block ones); a timer runs only while a guest is queued (its
//! answer is refreshed) or recovers (it may fall silent), and for the pings.
//! On SIGTERM or SIGINT it removes its announcement, its queued answers and
//! the budgets it split, and exits 0. A restarted service adopts what is in
//! xenstore and goes on.

use super::admission::{Coordinator, Seen, Settings, Write, Written};
use super::devices::{concerned, GuestOn};
use super::events::{diff, HostEvent};
use super::grants::Admission;
use super::guest::{AgentState, GuestStatus};
use super::liveness::Pinger;
use super::storage::{Backend, BackendKind, STATE_CONNECTED};
use super::writer::write_plan;
use super::{domain_name, domids, new_token, pong_path, read_backends, read_guest_with};
use crate::clock::Clock;
use crate::daemon::notify;
use crate::heal::Ms;
use crate::log;
use crate::md::uevent::{open_uevent, parse_block_event};
use crate::report::admission::{Answer, Request, CTL_COORDINATOR, CTL_GRANT, KEY_REQUEST};
use crate::report::hooks::Runner;
use crate::report::metrics::exposition::Families;
use crate::report::metrics::host::{host_metrics, xenstore_up};
use crate::report::metrics::listener::{Limits, Listener};
use crate::report::schema::{self, CONTROL_DIR, CTL_BUDGET, CTL_PING, DATA_DIR, KEY_PONG};
use crate::text::printable;
use crate::xenstore::{Client, Error, MAX_QUEUED_EVENTS};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOKEN_INTRO: &str = "mdguard-host-intro";
const TOKEN_RELEASE: &str = "mdguard-host-release";
const TOKEN_BACKEND: &str = "mdguard-host-backend";
/// A guest's data watch: this prefix and its domid.
const TOKEN_GUEST: &str = "mdguard-host-dom";

/// A backend, by kind, guest and devid.
type BackendKey = (BackendKind, u32, u32);

/// How long an agent has to answer a ping (as `host status`'s default).
const PING_TIMEOUT: Ms = 2000;

/// How `host run` runs, besides the coordinator's [`Settings`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Log to stderr.
    pub foreground: bool,
    /// Serve the metrics over HTTP on this address (`--metrics-listen`).
    pub listen: Option<SocketAddr>,
    /// Run this hook on dom0's events (`--hook`, `--hook-event`,
    /// `--hook-timeout`).
    pub hooks: Option<crate::config::Hooks>,
    /// Ping every agent this often; `None`: never.
    pub ping_every: Option<Duration>,
}

/// What the listener serves: the loop's last view, rendered on a scrape.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// xenstore could be read (false while the service reconnects).
    pub up: bool,
    /// Every domain, as `host metrics` lists them (shared with the loop:
    /// a snapshot copies no guest).
    pub guests: Vec<Arc<GuestStatus>>,
    pub admission: Arc<Admission>,
}

impl Snapshot {
    /// `host metrics`' text, with what only the coordinator knows.
    pub fn render(&self) -> String {
        if self.up {
            host_metrics(&self.guests, &self.admission).render()
        } else {
            let mut f = Families::new();
            xenstore_up(&mut f, false);
            f.render()
        }
    }
}

/// The last snapshot, swapped whole: a scrape clones the `Arc` and renders
/// outside the lock.
type Published = Arc<Mutex<Arc<Snapshot>>>;

/// The service's state besides the coordinator's.
struct Service {
    c: Client,
    coord: Coordinator,
    clock: Clock,
    /// The domains watched and read (dom0 included).
    known: BTreeSet<u32>,
    /// Domains whose data watch was just set and read: the watch's first
    /// firing (xenstored fires each watch once when it is set, before any
    /// change) says nothing new and is not read again.
    fresh: BTreeSet<u32>,
    /// Every guest (domid > 0) under /local/domain, as last read.
    guests: BTreeMap<u32, Seen>,
    /// Every domain as last read, its agent as judged: what events are
    /// found between and the metrics show.
    views: BTreeMap<u32, Arc<GuestStatus>>,
    /// What each domain's publication says of its agent (`stopped`,
    /// `not-asked`, or none), before the pings' judgement.
    read_agent: BTreeMap<u32, AgentState>,
    pinger: Option<Pinger>,
    hooks: Option<Runner<HostEvent>>,
    published: Option<Published>,
    /// Something the metrics show changed since the last snapshot.
    dirty: bool,
    /// Something the planner sees changed since its last plan.
    replan: bool,
    /// When to plan again though nothing changes, as the last plan said.
    plan_due: Option<Ms>,
    /// Resync admission as the last plan left it, for the metrics.
    admission: Arc<Admission>,
    names: BTreeMap<u32, String>,
    /// Each backend's last `state`.
    states: BTreeMap<BackendKey, Option<u8>>,
    /// Requests that did not parse, by guest, as last logged.
    bad_request: BTreeMap<u32, String>,
    /// The last failure to write a plan, as logged (each said once).
    write_error: Option<String>,
    /// The last failure to write the pings, as logged.
    ping_error: Option<String>,
    /// The kernel's uevent socket: dom0's block devices added or changed.
    uevents: Option<OwnedFd>,
}

/// Run until SIGTERM or SIGINT. `Err` when xenstore cannot be reached at
/// start or fails for good; 1 when the listener cannot listen.
pub fn run(settings: Settings, options: Options) -> Result<i32, Error> {
    log::init(options.foreground, std::path::Path::new("/dev/log"));
    let term = Arc::new(AtomicBool::new(false));
    let (wake_r, wake_w) = UnixStream::pair().map_err(Error::Io)?;
    wake_r.set_nonblocking(true).map_err(Error::Io)?;
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, term.clone()).map_err(Error::Io)?;
        signal_hook::low_level::pipe::register(sig, wake_w.try_clone().map_err(Error::Io)?)
            .map_err(Error::Io)?;
    }
    // Listening starts before anything is read, so a device that comes back
    // while the guests are first read is queued, not missed.
    let uevents = match open_uevent() {
        Ok(fd) => {
            log::info(
                "listening to dom0's kernel uevents (a block device under a vbd coming back)",
            );
            Some(fd)
        }
        Err(e) => {
            log::warn(&format!(
                "cannot listen to dom0's kernel uevents ({e}): storage back is seen in the backends' state only"
            ));
            None
        }
    };
    let c = match Client::open() {
        Ok(c) => c,
        Err(e) => {
            log::error(&format!("cannot reach xenstore: {e}"));
            return Err(e);
        }
    };
    let published: Option<Published> = options
        .listen
        .map(|_| Arc::new(Mutex::new(Arc::new(Snapshot::default()))));
    // kept until the end of the run; dropped, it stops listening
    let _listener = match (options.listen, &published) {
        (Some(addr), Some(p)) => {
            let p = p.clone();
            let render = Arc::new(move || {
                let snap = p.lock().unwrap_or_else(|e| e.into_inner()).clone();
                snap.render()
            });
            match Listener::start(addr, render, Limits::default()) {
                Ok(l) => {
                    log::notice(&format!(
                        "serving the metrics on http://{}/metrics",
                        l.local_addr()
                    ));
                    Some(l)
                }
                Err(e) => {
                    log::error(&format!("cannot listen on {addr} (--metrics-listen): {e}"));
                    return Ok(1);
                }
            }
        }
        _ => None,
    };
    let token = format!("host-{}", new_token());
    if let Some(h) = &options.hooks {
        log::notice(&format!(
            "running {} on {} (killed after {}s)",
            printable(h.program.as_bytes(), 200),
            if h.events.is_empty() {
                "every event".to_string()
            } else {
                h.events.join(", ")
            },
            h.timeout_s
        ));
    }
    if let Some(every) = options.ping_every {
        log::notice(&format!(
            "pinging every agent every {}s: one that does not answer within {}s is silent",
            every.as_secs(),
            PING_TIMEOUT / 1000
        ));
    }
    let mut s = Service {
        c,
        coord: Coordinator::new(settings, token),
        clock: Clock::start(),
        known: BTreeSet::new(),
        fresh: BTreeSet::new(),
        guests: BTreeMap::new(),
        views: BTreeMap::new(),
        read_agent: BTreeMap::new(),
        pinger: options
            .ping_every
            .map(|d| Pinger::new(d.as_millis() as Ms, PING_TIMEOUT)),
        hooks: options.hooks.as_ref().map(Runner::new),
        published,
        dirty: true,
        replan: true,
        plan_due: None,
        admission: Arc::default(),
        names: BTreeMap::new(),
        states: BTreeMap::new(),
        bad_request: BTreeMap::new(),
        write_error: None,
        ping_error: None,
        uevents,
    };
    s.c.set_timeout(Duration::from_secs(10));
    let cfg = s.coord.settings().clone();
    log::notice(&format!(
        "mdguard {} coordinating resyncs: at most {} per storage{}{}; announced as {}",
        env!("CARGO_PKG_VERSION"),
        cfg.per_storage,
        match cfg.budget_kbps {
            Some(b) => format!(", a host budget of {b} KiB/s split among the recovering guests"),
            None => String::new(),
        },
        if cfg.groups.is_empty() {
            String::new()
        } else {
            format!(
                ", storage groups {}",
                cfg.groups
                    .iter()
                    .map(|g| printable(g.as_str().as_bytes(), 200))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        },
        s.coord.token()
    ));
    s.start()?;
    let mut ready = false;
    let watchdog = notify::watchdog_interval().map(|d| (d.as_millis() as Ms / 2).max(1));
    let mut last_ping: Ms = 0;
    while !term.load(Ordering::Relaxed) {
        let due = s.coordinate();
        let ping_due = s.ping()?;
        s.publish();
        if !ready {
            notify::send("READY=1");
            ready = true;
        }
        let now = s.clock.now();
        if let Some(every) = watchdog {
            if now >= last_ping + every {
                notify::send("WATCHDOG=1");
                last_ping = now;
            }
        }
        let wake_at = [due, ping_due, watchdog.map(|w| last_ping + w)]
            .into_iter()
            .flatten()
            .min();
        let timeout = match wake_at {
            Some(t) => PollTimeout::try_from(t.saturating_sub(now).min(i32::MAX as u64) as i32)
                .unwrap_or(PollTimeout::MAX),
            None => PollTimeout::NONE,
        };
        if term.load(Ordering::Relaxed) {
            break;
        }
        s.wait(&wake_r, timeout)?;
    }
    notify::send("STOPPING=1");
    s.stop();
    if let Some(h) = &s.hooks {
        if !h.wait_idle(Duration::from_secs(2)) {
            log::warn(&format!(
                "{} hooks still running or waiting at stop; not waited for",
                h.pending()
            ));
        }
    }
    Ok(0)
}

impl Service {
    fn now(&self) -> Ms {
        self.clock.now()
    }

    /// Watch what the service needs and read every guest.
    fn start(&mut self) -> Result<(), Error> {
        self.c.watch("@introduceDomain", TOKEN_INTRO)?;
        self.c.watch("@releaseDomain", TOKEN_RELEASE)?;
        for kind in BackendKind::ALL {
            self.c.watch(
                &format!("/local/domain/0/backend/{}", kind.as_str()),
                TOKEN_BACKEND,
            )?;
        }
        self.rescan(true)
    }

    /// The domains under /local/domain: watch new ones and read them, forget
    /// the ones gone. `first`: adopt what an earlier run wrote, and take the
    /// backends' states as they are (no storage-back hint).
    fn rescan(&mut self, first: bool) -> Result<(), Error> {
        let ids: BTreeSet<u32> = domids(&mut self.c)?.into_iter().collect();
        let gone: BTreeSet<u32> = self
            .views
            .keys()
            .chain(self.known.iter())
            .filter(|id| !ids.contains(id))
            .copied()
            .collect();
        for id in gone {
            self.forget(id);
        }
        for id in ids {
            if self.known.contains(&id) {
                continue;
            }
            let (path, token) = (guest_data(id), format!("{TOKEN_GUEST}{id}"));
            // a reconnect registers the client's watches again by itself
            if !self
                .c
                .watches()
                .iter()
                .any(|(p, t)| *p == path && *t == token)
            {
                self.c.watch(&path, &token)?;
                self.fresh.insert(id);
            }
            self.names.insert(id, domain_name(&mut self.c, id));
            if id == 0 {
                // dom0 is listed as host metrics lists it, never coordinated
                self.known.insert(id);
                self.read(id)?;
                continue;
            }
            if first {
                let w = self.read_written(id)?;
                self.coord.adopt(id, w);
            }
            self.known.insert(id);
            self.read(id)?;
            self.read_states(id, !first)?;
        }
        // each watch fires once when set: room for that and a change each
        self.c
            .set_event_limit(MAX_QUEUED_EVENTS + 2 * self.known.len());
        Ok(())
    }

    fn forget(&mut self, id: u32) {
        if let Err(e) = self
            .c
            .unwatch(&guest_data(id), &format!("{TOKEN_GUEST}{id}"))
        {
            if e.is_connection() {
                return;
            }
        }
        self.known.remove(&id);
        self.fresh.remove(&id);
        self.guests.remove(&id);
        self.replan = true;
        self.views.remove(&id);
        self.read_agent.remove(&id);
        if let Some(p) = &mut self.pinger {
            p.forget(id);
        }
        self.dirty = true;
        self.names.remove(&id);
        self.bad_request.remove(&id);
        self.states.retain(|(_, d, _), _| *d != id);
    }

    /// What an earlier coordinator left in guest `id`'s `control/mdguard/`.
    fn read_written(&mut self, id: u32) -> Result<Written, Error> {
        let dir = format!("/local/domain/{id}/{CONTROL_DIR}");
        // one listing, then only what it names: most guests have nothing
        let keys = match self.c.directory(&dir) {
            Ok(k) => k,
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => return Err(e),
        };
        let read = |c: &mut Client, k: &str| match keys.iter().any(|n| n == k) {
            true => c.try_read(&format!("{dir}/{k}")),
            false => Ok(None),
        };
        let mut w = Written::default();
        if let Some(v) = read(&mut self.c, CTL_COORDINATOR)? {
            w.coordinator = schema::parse_token(&v).ok();
        }
        if let Some(v) = read(&mut self.c, CTL_GRANT)? {
            w.answer = Answer::parse(&v).ok();
        }
        if let Some(v) = read(&mut self.c, CTL_BUDGET)? {
            w.budget = schema::parse_budget_kbps(&v).ok().flatten();
        }
        Ok(w)
    }

    /// Read domain `id`'s publication into what the planner sees (a guest)
    /// and what the events and metrics see.
    fn read(&mut self, id: u32) -> Result<(), Error> {
        // its answer to a ping and its request, in the same transaction
        let (g, [pong, request]) = match read_guest_with(&mut self.c, id, [KEY_PONG, KEY_REQUEST]) {
            Ok(v) => v,
            Err(e) if e.is_connection() => return Err(e),
            Err(e) => {
                log::warn(&format!("dom{id}: cannot read its data: {e}"));
                return Ok(());
            }
        };
        let pong = pong.filter(|_| self.pinger.is_some() && g.health.is_some());
        if id != 0 {
            self.see(id, &g, request);
        }
        self.update_view(id, g, pong.as_deref());
        Ok(())
    }

    /// What the planner sees of guest `id`, from `g` and its request.
    fn see(&mut self, id: u32, g: &GuestStatus, request: Option<Vec<u8>>) {
        let request = match request {
            None => {
                self.bad_request.remove(&id);
                None
            }
            Some(v) => match Request::parse(&v) {
                Ok(r) => {
                    self.bad_request.remove(&id);
                    Some(r)
                }
                Err(e) => {
                    let why = e.to_string();
                    if self.bad_request.get(&id) != Some(&why) {
                        log::warn(&format!(
                            "dom{id} {}: ignoring its {DATA_DIR}/{KEY_REQUEST}: {why}",
                            self.name(id)
                        ));
                        self.bad_request.insert(id, why);
                    }
                    None
                }
            },
        };
        let rebuilding = g
            .arrays
            .values()
            .flat_map(|a| a.members.iter())
            .filter(|(_, state)| state == "rebuilding")
            .map(|(dev, _)| dev.clone())
            .collect();
        let backends = self
            .guests
            .get(&id)
            .map(|s| s.backends.clone())
            .unwrap_or_default();
        let seen = Seen {
            domid: id,
            publishes: g.health.is_some(),
            request,
            rebuilding,
            stopped: g.agent == AgentState::Stopped,
            heard_at: self.now(),
            backends,
        };
        self.guests.insert(id, seen);
        self.replan = true;
    }

    /// Domain `id` read anew as `g` (with its `pong`): its agent judged, the
    /// events since the last look said.
    fn update_view(&mut self, id: u32, mut g: GuestStatus, pong: Option<&[u8]>) {
        let read = g.agent;
        if let Some(p) = &mut self.pinger {
            if matches!(read, AgentState::Stopped | AgentState::None) {
                p.forget(id);
            } else {
                p.pong(id, pong);
            }
        }
        let prev = self.views.get(&id).map_or(AgentState::None, |v| v.agent);
        g.agent = match &self.pinger {
            Some(p) => p.judge(id, read, prev),
            None => read,
        };
        self.read_agent.insert(id, read);
        let before = self.views.insert(id, Arc::new(g));
        let events = diff(before.as_deref(), &self.views[&id]);
        self.emit(events);
        self.dirty = true;
    }

    /// Judge domain `id`'s agent again (an answer came, or is overdue).
    fn rejudge(&mut self, id: u32) {
        let (Some(p), Some(v)) = (&self.pinger, self.views.get(&id)) else {
            return;
        };
        let read = self
            .read_agent
            .get(&id)
            .copied()
            .unwrap_or(AgentState::None);
        let now = p.judge(id, read, v.agent);
        if now != v.agent {
            let before = v.clone();
            let v = Arc::make_mut(self.views.get_mut(&id).expect("looked up"));
            v.agent = now;
            let events = diff(Some(&before), v);
            self.emit(events);
            self.dirty = true;
        }
    }

    /// Only domain `id`'s answer to a ping changed.
    fn read_pong(&mut self, id: u32) -> Result<(), Error> {
        if self.pinger.is_none() || !self.views.contains_key(&id) {
            return Ok(());
        }
        let pong = self.c.try_read(&pong_path(id))?;
        if let Some(p) = &mut self.pinger {
            p.pong(id, pong.as_deref());
        }
        self.rejudge(id);
        Ok(())
    }

    /// Each event to the log and to the hook.
    fn emit(&self, events: Vec<HostEvent>) {
        for e in events {
            log::notice(&e.message);
            if let Some(h) = &self.hooks {
                h.submit(e);
            }
        }
    }

    /// Begin a ping round when one is due, ask who must be asked, judge who
    /// did not answer in time. When to look again.
    fn ping(&mut self) -> Result<Option<Ms>, Error> {
        let now = self.now();
        let Some(p) = &mut self.pinger else {
            return Ok(None);
        };
        // who did not answer in time, before a new round forgets who was asked
        let late = p.overdue(now);
        for id in late {
            self.rejudge(id);
        }
        let p = self.pinger.as_mut().expect("pinging");
        if p.round_due(now) {
            p.begin(format!("host-{}", new_token()), now);
        }
        let token = p.token().expect("a round began").as_bytes().to_vec();
        let ask: Vec<u32> = self
            .views
            .iter()
            .filter(|(id, g)| {
                p.wants(
                    **id,
                    g.health.is_some(),
                    self.read_agent.get(id) == Some(&AgentState::Stopped),
                )
            })
            .map(|(id, _)| *id)
            .collect();
        if !ask.is_empty() {
            let writes: Vec<Write> = ask
                .iter()
                .map(|id| Write {
                    domid: *id,
                    key: CTL_PING,
                    value: Some(token.clone()),
                })
                .collect();
            match write_plan(&mut self.c, &writes) {
                Ok(_) => self.ping_error = None,
                Err(e) if e.is_connection() => return Err(e),
                Err(e) => {
                    let why = e.to_string();
                    if self.ping_error.as_ref() != Some(&why) {
                        log::warn(&format!("cannot ping the agents: {why}"));
                        self.ping_error = Some(why);
                    }
                }
            }
            // asked even when the write failed: asked again next round,
            // not at every turn. Its time to answer runs from now, the
            // writes done: with 1000 guests they take seconds
            let now = self.now();
            let p = self.pinger.as_mut().expect("pinging");
            for id in ask {
                p.asked(id, now);
            }
        }
        Ok(self.pinger.as_ref().and_then(Pinger::next_due))
    }

    /// Hand the listener a new snapshot when something it shows changed.
    fn publish(&mut self) {
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        let Some(p) = &self.published else { return };
        let snap = Snapshot {
            up: true,
            guests: self.views.values().cloned().collect(),
            admission: self.admission.clone(),
        };
        *p.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(snap);
    }

    fn name(&self, id: u32) -> String {
        printable(
            self.names.get(&id).map_or("-", String::as_str).as_bytes(),
            40,
        )
    }

    /// Read guest `id`'s backends; with `hint`, a backend connected again (or
    /// new and connected) makes its agent probe now.
    fn read_states(&mut self, id: u32, hint: bool) -> Result<(), Error> {
        let mut problems = Vec::new();
        let backends = read_backends(&mut self.c, id, &mut problems)?;
        for p in problems {
            log::warn(&format!("dom{id}: {}", printable(p.as_bytes(), 200)));
        }
        let mut back: Vec<&Backend> = Vec::new();
        let keys: BTreeSet<BackendKey> = backends.iter().map(|b| (b.kind, id, b.devid)).collect();
        self.states.retain(|k, _| k.1 != id || keys.contains(k));
        for b in &backends {
            let key = (b.kind, id, b.devid);
            let before = self.states.insert(key, b.state);
            let was_connected = before.is_some_and(|s| s == Some(STATE_CONNECTED));
            if hint && b.state == Some(STATE_CONNECTED) && !was_connected {
                back.push(b);
            }
        }
        let publishes = self.guests.get(&id).is_some_and(|g| g.publishes);
        if publishes && !back.is_empty() {
            let what: Vec<String> = back.iter().map(|b| on_storage(b)).collect();
            self.ask_probe(id, &format!("{} connected again", what.join(", ")))?;
        }
        if let Some(g) = self.guests.get_mut(&id) {
            if g.backends != backends {
                g.backends = backends;
                self.replan = true;
            }
        }
        Ok(())
    }

    /// Write a new probe token to guest `id`: its storage is back (`why`).
    fn ask_probe(&mut self, id: u32, why: &str) -> Result<(), Error> {
        let token = new_token();
        match super::write_control(&mut self.c, id, schema::CTL_PROBE, token.as_bytes()) {
            Ok(()) => log::notice(&format!(
                "dom{id} {}: storage back ({why}): asked its agent to probe now",
                self.name(id)
            )),
            Err(e) if e.is_connection() => return Err(e),
            Err(e) => log::warn(&format!("dom{id}: cannot write its probe request: {e}")),
        }
        Ok(())
    }

    /// Take every uevent queued: the block devices added or changed, by
    /// number and name (when it has a plain one). `None` when the kernel
    /// dropped some (the socket's buffer overflowed): any device may have
    /// changed.
    fn read_uevents(&mut self) -> Option<BTreeMap<(u32, u32), String>> {
        let fd = self.uevents.as_ref()?;
        let mut devs = BTreeMap::new();
        let (mut lost, mut failed) = (false, None);
        let mut buf = vec![0u8; 8192];
        loop {
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) | Err(nix::errno::Errno::EAGAIN) => break,
                Ok(n) => {
                    if let Some(e) = parse_block_event(&buf[..n]) {
                        if let Some(dev) = e.dev {
                            let name = e.name.unwrap_or_else(|| format!("{}:{}", dev.0, dev.1));
                            devs.insert(dev, name);
                        }
                    }
                }
                Err(nix::errno::Errno::ENOBUFS) => lost = true,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            log::warn(&format!(
                "reading dom0's kernel uevents failed ({e}); no longer listening: storage back is seen in the backends' state only"
            ));
            self.uevents = None;
        }
        (!lost).then_some(devs)
    }

    /// dom0's block devices `devs` were added or changed (`None`: any may
    /// have): ask each guest with a leg to bring back on one that now has a
    /// size to probe now.
    fn devices_changed(&mut self, devs: Option<BTreeMap<(u32, u32), String>>) -> Result<(), Error> {
        let devs = devs.unwrap_or_else(|| {
            log::warn("dom0's kernel dropped uevents: looking at every backend's device");
            self.guests
                .values()
                .flat_map(|g| g.backends.iter())
                .filter_map(|b| b.physical_device)
                .map(|d| (d, format!("{}:{}", d.0, d.1)))
                .collect()
        });
        let mut asks: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for (dev, name) in devs {
            let guests: Vec<GuestOn> = self
                .guests
                .values()
                .filter(|g| g.publishes && !g.stopped)
                .filter_map(|g| {
                    self.views.get(&g.domid).map(|v| GuestOn {
                        domid: g.domid,
                        backends: &g.backends,
                        arrays: &v.arrays,
                    })
                })
                .collect();
            let found = concerned(dev, &guests);
            if found.is_empty() {
                continue;
            }
            if !has_size(dev) {
                log::info(&format!(
                    "dom0's {} changed but has no size: no storage back",
                    printable(name.as_bytes(), 64)
                ));
                continue;
            }
            for c in found {
                let what: Vec<String> = c.backends.iter().map(|b| on_storage(b)).collect();
                asks.entry(c.domid).or_default().push(format!(
                    "{}: dom0's {} changed",
                    what.join(", "),
                    printable(name.as_bytes(), 64)
                ));
            }
        }
        for (id, why) in asks {
            self.ask_probe(id, &why.join("; "))?;
        }
        Ok(())
    }

    /// Plan when something the planner sees changed or the last plan is
    /// due (not at each answer to a ping: with 1000 guests a plan is a
    /// look at each), write it ([`write_plan`]), log what it decided. When
    /// to plan again though nothing changes, if ever.
    fn coordinate(&mut self) -> Option<Ms> {
        let now = self.now();
        if !self.replan && self.plan_due.map_or(true, |d| now < d) {
            return self.plan_due;
        }
        let due = self.plan_now(now);
        self.plan_due = due;
        due
    }

    fn plan_now(&mut self, now: Ms) -> Option<Ms> {
        self.replan = false;
        let plan = self.coord.plan(self.guests.values(), now);
        if plan.writes.is_empty() {
            let due = plan.next_due;
            self.coord.apply(plan, &[]);
            self.admission_changed();
            return due;
        }
        match write_plan(&mut self.c, &plan.writes) {
            Ok(skipped) => {
                self.write_error = None;
                for d in &plan.decisions {
                    log::notice(&d.to_string());
                }
                let due = plan.next_due;
                self.coord.apply(plan, &skipped);
                self.admission_changed();
                due
            }
            Err(e) => {
                // not recorded: the next plan, a second later, writes it again
                let why = e.to_string();
                if self.write_error.as_ref() != Some(&why) {
                    log::warn(&format!(
                        "cannot write the admission plan: {why}; retrying every second"
                    ));
                    self.write_error = Some(why);
                }
                self.replan = true;
                Some(now + 1000)
            }
        }
    }

    /// The metrics' view of the admission, after a plan.
    fn admission_changed(&mut self) {
        if self.published.is_some() {
            let a = Admission::of_coordinator(&self.coord, self.guests.values());
            if *self.admission != a {
                self.admission = Arc::new(a);
                self.dirty = true;
            }
        }
    }

    /// Sleep until xenstore or a signal says something, or `timeout`; then
    /// read what changed.
    fn wait(&mut self, wake: &UnixStream, timeout: PollTimeout) -> Result<(), Error> {
        // events that came in with the replies of the last round are queued in
        // the client, not on the socket: take them before sleeping
        let mut events = self.c.take_events();
        if events.is_empty() {
            let mut fds = vec![PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
            if let Some(u) = &self.uevents {
                fds.push(PollFd::new(u.as_fd(), PollFlags::POLLIN));
            }
            if let Some(fd) = self.c.as_raw_fd() {
                // SAFETY: the client owns the fd and outlives `fds`.
                let fd = unsafe { BorrowedFd::borrow_raw(fd) };
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(Error::Io(e.into())),
            }
        }
        let mut buf = [0u8; 64];
        while matches!(std::io::Read::read(&mut &*wake, &mut buf), Ok(n) if n > 0) {}
        let devs = self.read_uevents();
        match self.c.poll_events() {
            Ok(ev) => events.extend(ev),
            Err(e) if e.is_connection() => return self.reconnect(),
            Err(e) => return Err(e),
        }
        if self.c.take_events_lost() {
            // a first firing may be among the lost: none is skipped
            self.fresh.clear();
            // too many at once: read everything again
            let ids: Vec<u32> = self.known.iter().copied().collect();
            for id in ids {
                self.read(id)?;
                if id != 0 {
                    self.read_states(id, true)?;
                }
            }
        }
        let mut dirty: BTreeSet<u32> = BTreeSet::new();
        let mut pongs: BTreeSet<u32> = BTreeSet::new();
        let mut backends: BTreeSet<u32> = BTreeSet::new();
        let mut rescan = false;
        let mut released = false;
        for ev in events {
            match ev.token.as_str() {
                TOKEN_INTRO => rescan = true,
                TOKEN_RELEASE => {
                    rescan = true;
                    released = true;
                }
                TOKEN_BACKEND => {
                    if let Some(id) = backend_domid(&ev.path) {
                        backends.insert(id);
                    }
                }
                t => {
                    if let Some(id) = t
                        .strip_prefix(TOKEN_GUEST)
                        .and_then(|n| schema::parse_u64(n.as_bytes()).ok())
                        .and_then(|n| u32::try_from(n).ok())
                    {
                        if self.fresh.remove(&id) && ev.path == guest_data(id) {
                            continue; // its first firing: read just now
                        }
                        // an answer to a ping changes nothing else
                        if ev.path == pong_path(id) {
                            pongs.insert(id);
                        } else {
                            dirty.insert(id);
                        }
                    }
                }
            }
        }
        if released {
            // a domain released whose home is still there is gone too
            let ids: Vec<u32> = self.known.iter().copied().filter(|id| *id != 0).collect();
            for id in ids {
                if !self.c.is_domain_introduced(id)? {
                    self.forget(id);
                }
            }
        }
        if rescan {
            self.rescan(false)?;
        }
        for id in &dirty {
            if self.known.contains(id) {
                self.read(*id)?;
            }
        }
        for id in pongs.difference(&dirty) {
            self.read_pong(*id)?;
        }
        for id in backends {
            if self.guests.contains_key(&id) {
                self.read_states(id, true)?;
            }
        }
        if devs.as_ref().map_or(true, |d| !d.is_empty()) {
            self.devices_changed(devs)?;
        }
        Ok(())
    }

    /// xenstored went away: connect again (every second) and read everything
    /// anew (a restarted xenstored lost the store; the plan writes it again).
    fn reconnect(&mut self) -> Result<(), Error> {
        log::warn("lost xenstore; reconnecting");
        if let Some(p) = &self.published {
            *p.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(Snapshot::default());
        }
        let mut tries = 0u32;
        loop {
            match self.c.reconnect() {
                Ok(()) => break,
                Err(e) if tries >= 60 => return Err(e),
                Err(_) => {
                    tries += 1;
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        log::notice("xenstore reconnected; reading every guest again");
        let _ = self.c.take_events();
        let ids: Vec<u32> = self.guests.keys().copied().collect();
        for id in ids {
            self.guests.remove(&id);
            self.coord.adopt(id, Written::default());
        }
        self.replan = true;
        // read every domain again; the views stay, so nothing that did not
        // change is said again
        self.known.clear();
        self.fresh.clear();
        // pings written before may be lost with the store: a new round, so
        // nobody is silent for a token it never saw
        let now = self.now();
        if let Some(p) = &mut self.pinger {
            p.begin(format!("host-{}", new_token()), now);
        }
        self.dirty = true;
        self.rescan(false)
    }

    /// A clean stop: take back the announcement, the queued answers and the
    /// budgets.
    fn stop(&mut self) {
        let writes = self.coord.stop();
        let guests: BTreeSet<u32> = writes.iter().map(|w| w.domid).collect();
        match write_plan(&mut self.c, &writes) {
            Ok(_) => log::notice(&format!(
                "mdguard host run stopping: announcement removed from {} guest(s)",
                guests.len()
            )),
            Err(e) => log::warn(&format!("stopping: cannot remove the announcement: {e}")),
        }
    }
}

/// `xvdc on /dev/nbd3`: a backend and its storage, for the log.
fn on_storage(b: &Backend) -> String {
    format!(
        "{} on {}",
        b.dev,
        b.storage
            .as_ref()
            .map_or("-".into(), |s| printable(s.as_str().as_bytes(), 200))
    )
}

/// dom0's block device `dev` has a size now (`/sys/dev/block/M:m/size`).
fn has_size(dev: (u32, u32)) -> bool {
    std::fs::read_to_string(format!("/sys/dev/block/{}:{}/size", dev.0, dev.1))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .is_some_and(|n| n > 0)
}

fn guest_data(id: u32) -> String {
    format!("/local/domain/{id}/{DATA_DIR}")
}

/// The guest a backend event names: `/local/domain/0/backend/<kind>/<domid>/...`.
fn backend_domid(path: &str) -> Option<u32> {
    let rest = path.strip_prefix("/local/domain/0/backend/")?;
    let mut parts = rest.split('/');
    let _kind = parts.next()?;
    let id = schema::parse_u64(parts.next()?.as_bytes()).ok()?;
    u32::try_from(id).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_event_names_its_guest() {
        assert_eq!(
            backend_domid("/local/domain/0/backend/vbd/7/51744/state"),
            Some(7)
        );
        assert_eq!(backend_domid("/local/domain/0/backend/qdisk/12"), Some(12));
        assert_eq!(backend_domid("/local/domain/0/backend/vbd"), None);
        assert_eq!(backend_domid("/local/domain/0/backend/vbd/x7/1"), None);
        assert_eq!(backend_domid("/local/domain/7/backend/vbd/7/1"), None);
    }
}
