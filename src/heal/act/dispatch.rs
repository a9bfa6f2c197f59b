//! The dispatcher: carries out each [`Action`] the engine asks for and feeds its
//! outcome back to the engine, until nothing is left to do. Blocking work (probes,
//! reconnect commands) goes to helper threads ([`super::workers`]) whose results
//! come back through [`Dispatcher::drain_done`].

use super::kernel;
use super::limits_file::{LimitsFile, SavedSpeeds};
use super::workers::{self, Done};
use crate::clock::Clock;
use crate::heal::{Action, Engine, Event, Ms, ProbeOutcome};
use crate::log;
use crate::md::model::Snapshot;
use crate::root::Root;
use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

/// A helper thread pokes this when it has sent a result (the loop wakes up).
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// Why a device is being read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reading {
    Probe,
    /// Right before an add, with the array and its witness member.
    Confirm {
        array: String,
        witness: String,
    },
    /// An in-sync member, for its leg's record.
    Record {
        array: String,
    },
}

pub struct Dispatcher {
    root: Root,
    /// Probes under way: device -> what for, and the deadline.
    probing: BTreeMap<String, (Reading, Ms)>,
    /// Probes that timed out and whose thread may still be stuck.
    stuck: Vec<String>,
    tx: Sender<Done>,
    rx: Receiver<Done>,
    waker: Waker,
    /// Every event logged, in order, until the daemon takes them (for hooks).
    events: Vec<Event>,
    /// The limits to put back, on disk before and after each limit written.
    limits: LimitsFile,
}

impl Dispatcher {
    pub fn new(root: Root, waker: Waker) -> Dispatcher {
        let (tx, rx) = channel();
        Dispatcher {
            probing: BTreeMap::new(),
            stuck: Vec::new(),
            tx,
            rx,
            waker,
            events: Vec::new(),
            limits: LimitsFile::new(&root),
            root,
        }
    }

    /// The limits a previous run changed and did not put back (it was killed).
    pub fn load_limits(&mut self) -> Option<SavedSpeeds> {
        self.limits.load()
    }

    /// Bring the limits file to what the engine must put back (at stop).
    pub fn settle_limits(&mut self, engine: &Engine) {
        self.limits.after_write(&engine.saved_speeds());
    }

    /// The events logged since the last call, in order.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The earliest probe deadline, if a probe is under way.
    pub fn next_deadline(&self) -> Option<Ms> {
        self.probing.values().map(|(_, t)| *t).min()
    }

    /// Carry out `actions` and everything their outcomes lead to.
    pub fn execute(
        &mut self,
        engine: &mut Engine,
        snap: &Snapshot,
        clock: Clock,
        actions: Vec<Action>,
    ) {
        let mut queue: VecDeque<Action> = actions.into();
        let dry = engine.config.dry_run;
        while let Some(a) = queue.pop_front() {
            let now = clock.now();
            let result = match &a {
                Action::Log(event) => {
                    log::log(event.level(), &event.to_string());
                    self.events.push(event.clone());
                    continue;
                }
                Action::Probe { device } => {
                    self.start_reading(engine, snap, clock, device, Reading::Probe);
                    continue;
                }
                // reads, like a probe: carried out in a dry run too
                Action::Record { array, device } => {
                    let why = Reading::Record {
                        array: array.clone(),
                    };
                    self.start_reading(engine, snap, clock, device, why);
                    continue;
                }
                Action::Confirm {
                    array,
                    device,
                    witness,
                } => {
                    let why = Reading::Confirm {
                        array: array.clone(),
                        witness: witness.clone(),
                    };
                    self.start_reading(engine, snap, clock, device, why);
                    continue;
                }
                _ if dry => {
                    log::notice(&format!("dry run: would {}", describe(&a)));
                    continue;
                }
                Action::Reconnect { device } => {
                    match engine.config.reconnect_for(device) {
                        Some(rc) => {
                            log::notice(&format!(
                                "{device}: running reconnect command: {}",
                                rc.command.join(" ")
                            ));
                            let w = self.waker.clone();
                            workers::spawn_reconnect(
                                device.clone(),
                                rc.command.clone(),
                                Duration::from_secs(rc.timeout_s),
                                self.tx.clone(),
                                move || w(),
                            );
                        }
                        None => log::error(&format!("{device}: no reconnect command configured")),
                    }
                    continue;
                }
                Action::ReAdd { array, device } => {
                    kernel::member_state(&self.root, array, device, "re-add")
                }
                Action::Remove { array, device } => {
                    kernel::remove_member(&self.root, array, device)
                }
                Action::Fail { array, device } => {
                    kernel::member_state(&self.root, array, device, "faulty")
                }
                Action::ClearWriteError { array, device } => {
                    kernel::member_state(&self.root, array, device, "-write_error")
                }
                Action::Add {
                    array,
                    device,
                    role,
                    dev_number,
                    flags,
                } => kernel::add_disk(&self.root, array, device, *role, *dev_number, *flags),
                Action::SetSpeed { array, min, max } => {
                    // write-ahead: a crash between the two loses nothing
                    self.limits.before_write(&engine.saved_speeds());
                    let r = kernel::set_speed(&self.root, array, *min, *max);
                    self.limits.after_write(&engine.saved_speeds());
                    r
                }
            };
            let more = engine.on_outcome(&a, &result, now);
            queue.extend(more);
        }
    }

    fn start_reading(
        &mut self,
        engine: &mut Engine,
        snap: &Snapshot,
        clock: Clock,
        device: &str,
        why: Reading,
    ) {
        let now = clock.now();
        if self.stuck.iter().any(|d| d == device) || self.probing.contains_key(device) {
            // a probe of this device still hangs in the kernel: do not pile threads
            // on it; it counts as timed out again
            self.timed_out(engine, snap, clock, device, why);
            return;
        }
        let deadline = now + engine.config.probe.timeout_ms;
        self.probing
            .insert(device.to_string(), (why.clone(), deadline));
        let w = self.waker.clone();
        let (root, tx, dev) = (self.root.clone(), self.tx.clone(), device.to_string());
        match why {
            Reading::Probe | Reading::Record { .. } => {
                workers::spawn_probe(root, dev, tx, move || w())
            }
            Reading::Confirm { array, witness } => {
                workers::spawn_confirm(root, array, dev, witness, tx, move || w())
            }
        }
    }

    /// A read that did not answer in time goes to the engine as timed out.
    fn timed_out(
        &mut self,
        engine: &mut Engine,
        snap: &Snapshot,
        clock: Clock,
        device: &str,
        why: Reading,
    ) {
        let now = clock.now();
        let more = match why {
            Reading::Probe => engine.on_probe(snap, device, ProbeOutcome::TimedOut, now),
            // no record this time; md's next change asks again
            Reading::Record { .. } => return,
            Reading::Confirm { array, .. } => engine.on_confirm(
                snap,
                &array,
                device,
                ProbeOutcome::TimedOut,
                ProbeOutcome::TimedOut,
                now,
            ),
        };
        self.execute(engine, snap, clock, more);
    }

    /// Results of helper threads, and probes past their deadline.
    pub fn drain_done(&mut self, engine: &mut Engine, snap: &Snapshot, clock: Clock) {
        while let Ok(d) = self.rx.try_recv() {
            let now = clock.now();
            match d {
                Done::Probe { device, outcome } => {
                    self.stuck.retain(|x| x != &device);
                    let more = match self.probing.remove(&device) {
                        None => continue, // already timed out
                        Some((Reading::Record { array }, _)) => {
                            engine.on_record(&array, &device, &outcome);
                            continue;
                        }
                        Some(_) => engine.on_probe(snap, &device, outcome, now),
                    };
                    self.execute(engine, snap, clock, more);
                }
                Done::Confirm {
                    array,
                    device,
                    leg,
                    witness,
                } => {
                    self.stuck.retain(|x| x != &device);
                    if self.probing.remove(&device).is_none() {
                        continue; // already timed out
                    }
                    let more = engine.on_confirm(snap, &array, &device, leg, witness, now);
                    self.execute(engine, snap, clock, more);
                }
                Done::Reconnect { device, outcome } => {
                    let a = Action::Reconnect { device };
                    let more = engine.on_outcome(&a, &outcome, now);
                    self.execute(engine, snap, clock, more);
                }
            }
        }
        // probes past their deadline
        let now = clock.now();
        let late: Vec<String> = self
            .probing
            .iter()
            .filter(|(_, (_, d))| *d <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for dev in late {
            if let Some((why, _)) = self.probing.remove(&dev) {
                self.stuck.push(dev.clone());
                self.timed_out(engine, snap, clock, &dev, why);
            }
        }
    }
}

/// What an action would do, in words (for the dry-run log).
fn describe(a: &Action) -> String {
    match a {
        Action::ReAdd { array, device } => format!("re-add {device} to {array}"),
        Action::Remove { array, device } => format!("remove {device} from {array}"),
        Action::Add {
            array,
            device,
            role,
            ..
        } => format!(
            "add {device} to {array}{}",
            role.map_or(" for a full recovery".into(), |r| format!(" in slot {r}"))
        ),
        Action::SetSpeed { array, min, max } => format!(
            "set {array} sync_speed_min={} sync_speed_max={}",
            min.map_or("system".into(), |v| v.to_string()),
            max.map_or("system".into(), |v| v.to_string())
        ),
        Action::Fail { array, device } => format!("fail {device} in {array}"),
        Action::ClearWriteError { array, device } => {
            format!("clear the write error of {device} in {array}")
        }
        Action::Reconnect { device } => format!("reconnect {device}"),
        Action::Probe { device } => format!("probe {device}"),
        Action::Record { array, device } => format!("read {device} of {array} for its record"),
        Action::Confirm {
            array,
            device,
            witness,
        } => format!("read {device} and {witness} again before adding it to {array}"),
        Action::Log(event) => event.to_string(),
    }
}
