//! `mdguard run`: one event loop on poll(2).
//!
//! It sleeps until the kernel says something changed (POLLPRI on /proc/mdstat and on
//! the md sysfs attributes that notify), a block device appears (uevent netlink), the
//! config file changes (inotify), a signal arrives, a helper thread finishes a probe
//! or a reconnect, or a timer the policy asked for expires. While every array is
//! healthy it wakes up for nothing.

use crate::clock::{unix_now, unix_time, Clock};
use crate::config::Config;
use crate::heal::act::dispatch::Dispatcher;
use crate::heal::{Action, Engine, Env, Ms};
use crate::log;
use crate::md::model::{Health, Snapshot};
use crate::md::observe::read_snapshot;
use crate::report::agent_state::{AgentView, ArrayView};
use crate::report::hooks::{HookEvent, MdWatch, Runner as Hooks};
use crate::report::schema::reported_health;
use crate::root::Root;
mod agent_view;
mod legs_file;
pub(crate) mod notify;
pub mod pidfile;
mod sources;

use sources::{drain, wake, watch_config, Notifier, Source};

use crate::md::pressure::LoadReader;
use crate::md::uevent::{open_uevent, parse_uevent};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How `mdguard run` was started.
#[derive(Debug, Clone)]
pub struct Options {
    pub root: Root,
    pub config_path: PathBuf,
    pub foreground: bool,
    /// Stop after this long (tests and benchmarks); `None` runs until signalled.
    pub max_runtime: Option<Duration>,
}

/// While an array recovers, re-evaluate throttling this often (pressure changes
/// send no event).
const RECOVERY_TICK: Ms = 5_000;

/// The loop's state beyond the policy engine.
pub struct Daemon {
    opts: Options,
    engine: Engine,
    clock: Clock,
    /// Carries out the engine's actions.
    act: Dispatcher,
    snap: Snapshot,
    notifiers: Vec<Notifier>,
    wake_r: UnixStream,
    term: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
    usr1: Arc<AtomicBool>,
    uevent: Option<OwnedFd>,
    inotify: Option<nix::sys::inotify::Inotify>,
    env: Env,
    /// The busy measure (PSI, or the arrays' diskstats without it).
    load: LoadReader,
    last_problem_count: usize,
    read_error_logged: bool,
    /// xenstore reporting and dom0's requests (None outside Xen).
    xs: Option<crate::report::agent::Reporter>,
    /// What the agent's view file says, as last written.
    view_written: Option<AgentView>,
    /// systemd watchdog: (interval, last ping).
    watchdog: Option<(Ms, Ms)>,
    /// The legs' records on disk.
    legs_file: legs_file::Keeper,
    /// The configured program run on events, off the loop.
    hooks: Hooks<HookEvent>,
    /// md's own changes that make a hook event (degraded at first sight, a
    /// leg back in sync).
    md_watch: MdWatch,
}

impl Daemon {
    pub fn new(opts: Options, config: Config) -> io::Result<Daemon> {
        let (wake_r, wake_w) = UnixStream::pair()?;
        wake_r.set_nonblocking(true)?;
        wake_w.set_nonblocking(true)?;
        let wake_w = Arc::new(wake_w);
        let term = Arc::new(AtomicBool::new(false));
        let hup = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::flag::register(sig, term.clone())?;
            signal_hook::low_level::pipe::register(sig, wake_w.try_clone()?)?;
        }
        let usr1 = Arc::new(AtomicBool::new(false));
        for (sig, flag) in [
            (signal_hook::consts::SIGHUP, &hup),
            (signal_hook::consts::SIGUSR1, &usr1),
        ] {
            signal_hook::flag::register(sig, flag.clone())?;
            signal_hook::low_level::pipe::register(sig, wake_w.try_clone()?)?;
        }
        let seed = (std::process::id() as u64) << 32 ^ (unix_time().as_nanos() as u64).max(1);
        let uevent = open_uevent().map_err(|e| log::warn(&format!("no uevent socket ({e}); new block devices are seen only on md events and timers"))).ok();
        let inotify = watch_config(&opts.config_path)
            .map_err(|e| {
                log::warn(&format!(
                    "cannot watch {} ({e}); reload with SIGHUP",
                    opts.config_path.display()
                ))
            })
            .ok();
        let legs_file = legs_file::Keeper::new(opts.root.clone());
        let w = wake_w.clone();
        let act = Dispatcher::new(opts.root.clone(), Arc::new(move || wake(&w)));
        Ok(Daemon {
            hooks: Hooks::new(&config.hooks),
            md_watch: MdWatch::default(),
            engine: Engine::new(config, seed),
            act,
            opts,
            clock: Clock::start(),
            snap: Snapshot {
                arrays: vec![],
                problems: vec![],
            },
            notifiers: Vec::new(),
            wake_r,
            term,
            hup,
            usr1,
            uevent,
            inotify,
            env: Env::default(),
            load: LoadReader::default(),
            last_problem_count: 0,
            read_error_logged: false,
            xs: None,
            view_written: None,
            watchdog: notify::watchdog_interval().map(|d| ((d.as_millis() as Ms / 2).max(1), 0)),
            legs_file,
        })
    }

    fn now(&self) -> Ms {
        self.clock.now()
    }

    fn execute(&mut self, actions: Vec<Action>) {
        self.act
            .execute(&mut self.engine, &self.snap, self.clock, actions);
        self.hook_events();
    }

    /// Hand the events logged since the last call to the hooks (which only
    /// queue them), each with its array's health as mdguard reports it.
    fn hook_events(&mut self) {
        for e in self.act.take_events() {
            if let Some(h) = HookEvent::from_event(&e) {
                self.hook(h);
            }
        }
    }

    fn hook(&self, mut h: HookEvent) {
        if h.health.is_none() {
            h.health = self
                .snap
                .arrays
                .iter()
                .find(|a| a.name == h.array)
                .map(|a| {
                    let v = ArrayView::of(&self.engine, &a.name);
                    reported_health(a.health, v.flapping, v.stalled)
                });
        }
        self.hooks.submit(h);
    }

    fn observe(&mut self) {
        match read_snapshot(&self.opts.root) {
            Ok(s) => {
                if s.problems.len() != self.last_problem_count {
                    for p in &s.problems {
                        log::warn(p);
                    }
                    self.last_problem_count = s.problems.len();
                }
                self.read_error_logged = false;
                self.snap = s;
            }
            Err(e) => {
                if !self.read_error_logged {
                    log::error(&format!("{e}; waiting for md"));
                    self.read_error_logged = true;
                }
                self.snap = Snapshot {
                    arrays: vec![],
                    problems: vec![e.to_string()],
                };
            }
        }
        let arrays: Vec<String> = self.snap.arrays.iter().map(|a| a.name.clone()).collect();
        let (load, said) = self.load.read(&self.opts.root, &arrays, self.now());
        if let Some(line) = said {
            log::notice(line);
        }
        self.env.io_load = load;
        self.env.wall_s = Some(unix_now());
    }

    /// Re-open the POLLPRI files for the arrays and members as they are now.
    /// True when it opened a file it did not watch before: that file is armed at
    /// its state of this moment, so a change made after the last `observe` and
    /// before the open would never be signalled, and md must be read again.
    fn rewatch(&mut self) -> bool {
        let mut want: Vec<PathBuf> = vec![self.opts.root.mdstat()];
        for a in &self.snap.arrays {
            let dir = self.opts.root.md_sysfs(&a.name);
            for attr in ["array_state", "degraded", "sync_action"] {
                want.push(dir.join(attr));
            }
            for m in &a.members {
                want.push(dir.join(format!("dev-{}", m.device)).join("state"));
            }
        }
        self.notifiers
            .retain(|n| want.contains(&n.path) && n.path.exists());
        let mut opened = false;
        for p in want {
            if !self.notifiers.iter().any(|n| n.path == p) {
                if let Some(n) = Notifier::open(&p) {
                    self.notifiers.push(n);
                    opened = true;
                }
            }
        }
        opened
    }

    fn reload(&mut self) {
        match Config::load(&self.opts.config_path) {
            Ok(c) => {
                if c != self.engine.config {
                    self.hooks.configure(&c.hooks);
                    self.engine.config = c;
                    log::notice(&format!(
                        "configuration reloaded from {}",
                        self.opts.config_path.display()
                    ));
                }
            }
            Err(e) => log::error(&format!("{e}; keeping the previous configuration")),
        }
    }

    fn timeout(&self) -> Option<Ms> {
        let now = self.now();
        let mut t = self.engine.next_deadline();
        let mut consider = |x: Ms| t = Some(t.map_or(x, |y: Ms| y.min(x)));
        if let Some(d) = self.act.next_deadline() {
            consider(d);
        }
        if let Some(d) = self.engine.history.next_due() {
            consider(d);
        }
        if self
            .snap
            .arrays
            .iter()
            .any(|a| a.health == Health::Recovering)
        {
            consider(now + RECOVERY_TICK);
        }
        if let Some(end) = self.opts.max_runtime {
            consider(end.as_millis() as Ms);
        }
        if let Some((every, last)) = self.watchdog {
            consider(last + every);
        }
        if let Some(due) = self.xs.as_ref().and_then(|x| x.next_due) {
            consider(now + due.saturating_sub(unix_now()) * 1000);
        }
        t.map(|d| d.saturating_sub(now))
    }

    /// Run until SIGTERM/SIGINT (or `max_runtime`). Returns after putting back the
    /// sync speed limits it changed.
    pub fn run(&mut self) -> io::Result<()> {
        log::notice(&format!(
            "mdguard {} watching md arrays{}",
            env!("CARGO_PKG_VERSION"),
            if self.engine.config.dry_run {
                " (dry run)"
            } else {
                ""
            }
        ));
        if let Some(saved) = self.act.load_limits() {
            self.engine.preload_saved_speeds(saved);
        }
        if let Some((records, from)) = legs_file::load(&self.opts.root) {
            log::info(&format!(
                "{} leg records from {}",
                records.len(),
                from.display()
            ));
            self.engine.history.restore(records);
            self.legs_file.loaded(&self.engine.history);
        }
        if self.engine.config.report.xenstore {
            match crate::report::agent::Reporter::open(
                self.engine.config.report.progress_interval_s,
            ) {
                Ok(r) => {
                    log::notice("reporting to dom0 under data/mdguard in xenstore");
                    self.xs = Some(r);
                }
                Err(why) => log::notice(&format!(
                    "no xenstore ({why}): not reporting to dom0; healing goes on"
                )),
            }
        }
        // the devices already there: candidates as if they had just appeared (a
        // leg mdadm left out at boot, "non-fresh", gets no uevent; nothing is
        // read unless an array is degraded)
        match crate::md::uevent::present(&self.opts.root) {
            Ok(devs) => devs.iter().for_each(|d| self.engine.on_device(d)),
            Err(e) => log::warn(&format!(
                "cannot list the block devices in {}: {e}; only devices that appear from now on are considered",
                self.opts.root.class_block().display()
            )),
        }
        notify::send("READY=1");
        let mut last_status = String::new();
        loop {
            self.observe();
            let now = self.now();
            let snap = self.snap.clone();
            let actions = self.engine.on_snapshot(&snap, &self.env, now);
            self.execute(actions);
            // after the engine's events of this look: RebuildFinished, then
            // SpareActive, as mdadm says them
            for h in self.md_watch.observe(&self.engine.managed(&snap)) {
                self.hook(h);
            }
            if let Some(xs) = self.xs.as_mut() {
                xs.publish(&self.snap, &self.engine);
                xs.ask(&self.engine);
            }
            self.write_agent_view();
            self.legs_file.keep(&self.engine.history, false);
            // events the client queued while it answered requests: act on them
            // before sleeping
            if self.xenstore_requests() {
                continue;
            }
            // a file watched from now on: read md again, so a change made
            // between that read and the open is not lost (seen by the soak: a
            // leg failed right after the agent started and nothing woke it)
            if self.rewatch() {
                continue;
            }
            let status = crate::report::status::status_line(&self.snap);
            if status != last_status {
                notify::send(&format!("STATUS={status}"));
                last_status = status;
            }
            if let Some((every, last)) = self.watchdog {
                if now >= last + every {
                    notify::send("WATCHDOG=1");
                    self.watchdog = Some((every, now));
                }
            }
            if self.term.load(Ordering::Relaxed) {
                break;
            }
            if let Some(end) = self.opts.max_runtime {
                if self.clock.elapsed() >= end {
                    break;
                }
            }
            for src in self.wait()? {
                self.handle(src);
            }
            if self.hup.swap(false, Ordering::Relaxed) {
                log::info(&format!(
                    "SIGHUP: rereading {}",
                    self.opts.config_path.display()
                ));
                self.reload();
            }
            if self.usr1.swap(false, Ordering::Relaxed) {
                // local "storage is back, probe now" (dom0 sends it over xenstore)
                let more = self.engine.on_probe_hint(self.now());
                self.execute(more);
            }
            self.act
                .drain_done(&mut self.engine, &self.snap, self.clock);
            self.hook_events();
        }
        let restore = self.engine.restore_all();
        self.execute(restore);
        self.act.settle_limits(&self.engine);
        self.legs_file.keep(&self.engine.history, true);
        if !self.legs_file.flush(Duration::from_secs(2)) {
            log::warn(
                "the leg records were not written to disk within 2 s; the copy in /run stands",
            );
        }
        if let Some(xs) = self.xs.as_mut() {
            xs.stopped();
        }
        if !self.hooks.wait_idle(Duration::from_secs(2)) {
            log::warn(&format!(
                "{} hooks still running or waiting at stop; not waited for",
                self.hooks.pending()
            ));
        }
        if let Err(e) = AgentView::remove(&self.opts.root) {
            log::warn(&format!("cannot remove the agent's view: {e}"));
        }
        log::notice("mdguard stopping; sync speed limits restored");
        notify::send("STOPPING=1");
        Ok(())
    }

    /// Sleep in poll(2) until a source fires or the next timer is due; the sources
    /// that fired, by id.
    fn wait(&self) -> io::Result<Vec<Source>> {
        let timeout = match self.timeout() {
            Some(ms) => {
                PollTimeout::try_from(ms.min(i32::MAX as u64) as i32).unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let mut set: Vec<(Source, BorrowedFd<'_>, PollFlags)> =
            vec![(Source::Wake, self.wake_r.as_fd(), PollFlags::POLLIN)];
        if let Some(u) = &self.uevent {
            set.push((Source::Uevent, u.as_fd(), PollFlags::POLLIN));
        }
        if let Some(i) = &self.inotify {
            set.push((Source::Config, i.as_fd(), PollFlags::POLLIN));
        }
        if let Some(fd) = self.xs.as_ref().and_then(|x| x.fd()) {
            // SAFETY: the fd belongs to the xenstore client, which outlives `set`.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            set.push((Source::Xenstore, fd, PollFlags::POLLIN));
        }
        for (i, n) in self.notifiers.iter().enumerate() {
            set.push((Source::Md(i), n.file.as_fd(), PollFlags::POLLPRI));
        }
        let mut fds: Vec<PollFd> = set
            .iter()
            .map(|(_, fd, flags)| PollFd::new(*fd, *flags))
            .collect();
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(io::Error::from(e)),
        }
        let woke = PollFlags::POLLIN | PollFlags::POLLPRI | PollFlags::POLLERR;
        Ok(set
            .iter()
            .map(|(id, _, _)| *id)
            .zip(&fds)
            .filter(|(_, f)| f.revents().is_some_and(|r| r.intersects(woke)))
            .map(|(id, _)| id)
            .collect())
    }

    /// Take what a source that fired has to say.
    fn handle(&mut self, src: Source) {
        match src {
            Source::Wake => drain(&self.wake_r),
            Source::Uevent => self.read_uevents(),
            Source::Config => {
                if let Some(i) = &self.inotify {
                    let _ = i.read_events();
                }
                self.reload();
            }
            Source::Xenstore => {
                self.xenstore_requests();
            }
            Source::Md(i) => {
                if let Some(n) = self.notifiers.get_mut(i) {
                    n.rearm();
                }
            }
        }
    }

    /// dom0's requests; true when one needs a fresh look at md.
    fn xenstore_requests(&mut self) -> bool {
        let Some(xs) = self.xs.as_mut() else {
            return false;
        };
        let req = xs.requests();
        let changed =
            req.budget.is_some() || req.probe || req.coordinator.is_some() || !req.turns.is_empty();
        if let Some(b) = req.budget {
            self.env.budget_kbps = b;
        }
        if req.probe {
            let more = self.engine.on_probe_hint(self.now());
            self.execute(more);
        }
        if let Some(on) = req.coordinator {
            let more = self.engine.set_coordinated(on, self.now());
            self.execute(more);
        }
        for (turn, devices) in req.turns {
            let more = self.engine.on_turn(turn, &devices, self.now());
            self.execute(more);
        }
        // a vbd change: look at md again; a new block device arrives as a uevent.
        // Lost keys: the next publish writes them again.
        changed || req.vbd_changed || req.republish
    }

    fn read_uevents(&mut self) {
        let Some(u) = &self.uevent else { return };
        let mut buf = vec![0u8; 8192];
        loop {
            match nix::unistd::read(u, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Some(dev) = parse_uevent(&buf[..n]) {
                        log::info(&format!("block device {dev} appeared or changed"));
                        self.engine.on_device(&dev);
                    }
                }
            }
        }
    }
}
