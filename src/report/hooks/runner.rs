//! Running hooks off the daemon's loop, the agent's and dom0's alike.
//! [`Runner::submit`] only queues (a mutex held for a push) and starts a
//! thread when one may run; the thread starts the program, waits for it, and
//! kills it (its whole process group, so a shell's children go too) once
//! `hooks.timeout_s` has passed. At most `hooks.max_concurrent` run at once;
//! one queue's hooks (an array's in the guest, a guest's in dom0) run one at a
//! time in the order of their events, so a script sees `Fail` before
//! `ReAdded`. The queue holds at most [`QUEUE_MAX`] events; past that an event
//! is dropped and the log says so: a hook that hangs every time costs its
//! timeout per event and never the daemon.

use super::event::HookName;
use crate::clock::unix_now;
use crate::config::Hooks as Config;
use crate::log;
use std::collections::{BTreeSet, VecDeque};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Events waiting for a hook at most.
pub const QUEUE_MAX: usize = 256;

/// How often a running hook is looked at.
const POLL: Duration = Duration::from_millis(20);

/// What the runner needs of an event: the agent's
/// [`super::HookEvent`] and dom0's [`crate::report::host::events::HostEvent`].
pub trait Job: std::fmt::Debug + Send + 'static {
    /// Its name (`hooks.events` selects on it).
    fn name(&self) -> HookName;
    /// The queue it waits in: one queue's hooks run one at a time, in order.
    fn queue(&self) -> String;
    /// The arguments after the program.
    fn args(&self) -> Vec<OsString>;
    /// `MDGUARD_*` for its environment, at unix time `now`.
    fn env(&self, now: u64) -> Vec<(&'static str, String)>;
    /// How the log names it (`Fail md0 xvdc1`).
    fn what(&self) -> String;
}

/// How one hook run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Exited(ExitStatus),
    /// Killed after this long.
    Killed(Duration),
    /// The program could not be started.
    NotStarted(String),
}

#[derive(Debug)]
struct State<J> {
    config: Option<Config>,
    queue: VecDeque<J>,
    /// Queues with a hook running.
    busy: BTreeSet<String>,
    running: usize,
    dropped: u64,
}

#[derive(Debug)]
struct Shared<J> {
    state: Mutex<State<J>>,
    /// Signalled whenever a hook ends.
    ended: Condvar,
}

/// The hooks: the config in force, the queue, the hooks running.
#[derive(Debug)]
pub struct Runner<J> {
    shared: Arc<Shared<J>>,
}

impl<J> Clone for Runner<J> {
    fn clone(&self) -> Self {
        Runner {
            shared: self.shared.clone(),
        }
    }
}

impl<J> Default for Runner<J> {
    fn default() -> Self {
        Runner {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    config: None,
                    queue: VecDeque::new(),
                    busy: BTreeSet::new(),
                    running: 0,
                    dropped: 0,
                }),
                ended: Condvar::new(),
            }),
        }
    }
}

fn lock<J>(s: &Shared<J>) -> MutexGuard<'_, State<J>> {
    s.state.lock().unwrap_or_else(|p| p.into_inner())
}

impl<J: Job> Runner<J> {
    pub fn new(config: &Config) -> Runner<J> {
        let r = Runner::default();
        r.configure(config);
        r
    }

    /// The config to use from now on (a reload); queued events follow it.
    pub fn configure(&self, config: &Config) {
        lock(&self.shared).config = Some(config.clone());
        pump(&self.shared);
    }

    /// Queue `event` for the hook if the config wants one for it. Never waits
    /// for a hook.
    pub fn submit(&self, event: J) {
        {
            let mut st = lock(&self.shared);
            let Some(c) = &st.config else { return };
            if !c.wants(event.name().as_str()) {
                return;
            }
            if st.queue.len() >= QUEUE_MAX {
                st.dropped += 1;
                let n = st.dropped;
                drop(st);
                log::error(&format!(
                    "hook queue full ({QUEUE_MAX} events waiting): {} not run ({n} dropped so far)",
                    event.what()
                ));
                return;
            }
            st.queue.push_back(event);
        }
        pump(&self.shared);
    }

    /// Hooks running or waiting.
    pub fn pending(&self) -> usize {
        let st = lock(&self.shared);
        st.running + st.queue.len()
    }

    /// Wait until no hook runs or waits, at most `timeout`; true if none does.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        let mut st = lock(&self.shared);
        while st.running + st.queue.len() > 0 {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = match self.shared.ended.wait_timeout(st, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        true
    }
}

/// Start every queued hook that may run now.
fn pump<J: Job>(shared: &Arc<Shared<J>>) {
    let mut st = lock(shared);
    loop {
        let Some(config) = st.config.clone() else {
            return;
        };
        if st.running >= config.max_concurrent as usize {
            return;
        }
        // the first event whose queue has no hook running
        let Some(i) = st.queue.iter().position(|e| !st.busy.contains(&e.queue())) else {
            return;
        };
        let event = st.queue.remove(i).expect("position found");
        if !config.wants(event.name().as_str()) {
            continue; // the config changed while it waited
        }
        let queue = event.queue();
        st.running += 1;
        st.busy.insert(queue.clone());
        let sh = shared.clone();
        let q = queue.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("hook-{queue}"))
            .spawn(move || {
                let ended = run(&config, &event);
                say(&config, &event, &ended);
                let mut st = lock(&sh);
                st.running -= 1;
                st.busy.remove(&q);
                drop(st);
                sh.ended.notify_all();
                pump(&sh);
            });
        if let Err(e) = spawned {
            st.running -= 1;
            st.busy.remove(&queue);
            log::error(&format!("cannot start a hook thread: {e}"));
            return;
        }
    }
}

/// Run the program for `event` and wait for it, killing its process group
/// after the timeout.
pub fn run<J: Job>(config: &Config, event: &J) -> Ended {
    let start = Instant::now();
    let mut child = match Command::new(&config.program)
        .args(event.args())
        .envs(event.env(unix_now()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // its own group: the timeout kills what it started too
        .process_group(0)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Ended::NotStarted(e.to_string()),
    };
    let timeout = Duration::from_secs(config.timeout_s);
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Ended::Exited(st),
            Ok(None) if start.elapsed() >= timeout => {
                let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
                return Ended::Killed(start.elapsed());
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => return Ended::NotStarted(e.to_string()),
        }
    }
}

/// The log line of a hook that did not end well (a clean exit says nothing).
fn say<J: Job>(config: &Config, event: &J, ended: &Ended) {
    let what = format!("hook {} {}", config.program, event.what());
    match ended {
        Ended::Exited(st) if st.success() => {}
        Ended::Exited(st) => log::warn(&format!("{what}: {st}")),
        Ended::Killed(after) => log::error(&format!(
            "{what}: still running after {}s (hooks.timeout_s): killed",
            after.as_secs()
        )),
        Ended::NotStarted(e) => log::error(&format!("{what}: cannot run it: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::hooks::HookEvent;
    use std::path::Path;

    fn script(dir: &Path, body: &str) -> String {
        let p = dir.join("hook.sh");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&p)
            .status()
            .unwrap();
        p.to_string_lossy().into_owned()
    }

    fn event(name: HookName, array: &str, comp: Option<&str>) -> HookEvent {
        HookEvent {
            name,
            array: array.into(),
            component: comp.map(str::to_string),
            reason: String::new(),
            message: format!("{array}: {name}"),
            health: None,
        }
    }

    fn config(program: &str, max: u32, timeout_s: u64) -> Config {
        Config {
            program: program.into(),
            events: vec![],
            timeout_s,
            max_concurrent: max,
        }
    }

    #[test]
    fn a_hook_gets_mdadms_arguments_and_the_environment() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let p = script(
            d.path(),
            &format!(
                "echo \"$# $1 $2 $3 $MDGUARD_EVENT $MDGUARD_COMPONENT $MDGUARD_HEALTH\" >> {}",
                out.display()
            ),
        );
        let mut e = event(HookName::Fail, "md0", Some("xvdc1"));
        e.health = Some(crate::md::model::Health::Degraded);
        let ended = run(&config(&p, 1, 5), &e);
        assert!(
            matches!(ended, Ended::Exited(s) if s.success()),
            "{ended:?}"
        );
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "3 Fail /dev/md0 /dev/xvdc1 Fail /dev/xvdc1 degraded\n"
        );
        let ended = run(&config("/nonexistent/hook", 1, 5), &e);
        assert!(matches!(ended, Ended::NotStarted(_)), "{ended:?}");
    }

    /// A hook that hangs, and the shell's child it waits on, are killed at
    /// the timeout.
    #[test]
    fn a_hanging_hook_and_its_children_are_killed() {
        let d = tempfile::tempdir().unwrap();
        let pid = d.path().join("pid");
        let p = script(
            d.path(),
            &format!("sleep 300 & echo $! > {}; wait", pid.display()),
        );
        let t = Instant::now();
        let ended = run(&config(&p, 1, 1), &event(HookName::Stalled, "md0", None));
        assert!(matches!(ended, Ended::Killed(_)), "{ended:?}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        let child: i32 = std::fs::read_to_string(&pid)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // reaped by init, or a zombie a moment: gone either way soon
        let gone = (0..100).any(|_| {
            let alive = std::fs::read_to_string(format!("/proc/{child}/stat"))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false);
            if alive {
                std::thread::sleep(Duration::from_millis(20));
            }
            !alive
        });
        assert!(gone, "the hook's child {child} still runs");
    }

    /// At most `max_concurrent` at once; one array's hooks in order, one at a
    /// time; `submit` never waits for a hook.
    #[test]
    fn concurrency_is_bounded_and_each_array_keeps_its_order() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("log");
        // each run: a start line, 0.2 s, an end line (appends are atomic)
        let p = script(
            d.path(),
            &format!(
                "echo \"start $2 $1 $(date +%s%N)\" >> {l}; sleep 0.2; echo \"end $2 $1 $(date +%s%N)\" >> {l}",
                l = log.display()
            ),
        );
        let r: Runner<HookEvent> = Runner::new(&config(&p, 2, 10));
        let t = Instant::now();
        for (name, array) in [
            (HookName::Fail, "md0"),
            (HookName::Fail, "md1"),
            (HookName::Fail, "md2"),
            (HookName::LegReturned, "md0"),
            (HookName::ReAdded, "md0"),
            (HookName::ReAdded, "md1"),
        ] {
            r.submit(event(name, array, None));
        }
        assert!(t.elapsed() < Duration::from_millis(150), "submit waited");
        assert!(r.wait_idle(Duration::from_secs(20)));
        let text = std::fs::read_to_string(&log).unwrap();
        let mut lines: Vec<(u128, bool, String, String)> = text
            .lines()
            .map(|l| {
                let w: Vec<&str> = l.split(' ').collect();
                (
                    w[3].parse().unwrap(),
                    w[0] == "start",
                    w[1].to_string(),
                    w[2].to_string(),
                )
            })
            .collect();
        lines.sort();
        assert_eq!(lines.len(), 12, "{text}");
        let (mut now, mut most) = (0i32, 0);
        for (_, start, _, _) in &lines {
            now += if *start { 1 } else { -1 };
            most = most.max(now);
        }
        assert_eq!(most, 2, "{text}");
        let md0: Vec<&str> = lines
            .iter()
            .filter(|l| l.1 && l.2 == "/dev/md0")
            .map(|l| l.3.as_str())
            .collect();
        assert_eq!(md0, ["Fail", "LegReturned", "ReAdded"]);
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn only_the_events_configured_run_and_nothing_without_a_program() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let p = script(d.path(), &format!("echo $1 >> {}", out.display()));
        let mut c = config(&p, 4, 5);
        c.events = vec!["SpareActive".into()];
        let r: Runner<HookEvent> = Runner::new(&c);
        r.submit(event(HookName::Fail, "md0", None));
        r.submit(event(HookName::SpareActive, "md0", Some("xvdc")));
        assert!(r.wait_idle(Duration::from_secs(10)));
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "SpareActive\n");
        r.configure(&Config::default());
        r.submit(event(HookName::SpareActive, "md0", Some("xvdc")));
        assert_eq!(r.pending(), 0);
    }
}
