//! The agent's side of xenstore: publish each array's health under the guest's
//! `data/mdguard/` (only on change), and take dom0's requests from
//! `control/mdguard/` (budget, ping, probe, and resync admission's coordinator
//! and answers, whose request [`super::asker`] keeps). Without xenstore the
//! agent keeps healing and says so once.
//!
//! It also watches its own `data/mdguard`, because what it published can be
//! lost while it writes nothing: after `xl save` + `xl restore` or a migration
//! the guest runs as a new domain whose `data/` is empty, and dom0 may remove
//! the keys. The guest kernel sets every watch up again on resume, and
//! xenstored fires a watch once when it is set up, so a resumed guest hears
//! about it with no polling. On each event the agent reads back the keys it
//! wrote that the event may have touched, and writes again what is missing or
//! changed.

use crate::clock::{unix_now, unix_time};
use crate::heal::{Engine, Turn};
use crate::md::model::{Array, Snapshot};
use crate::report::admission::KEY_REQUEST;
use crate::report::agent_state::ArrayView;
use crate::report::asker::Asker;
use crate::report::publisher::{self, PublishConfig, Publisher};
use crate::report::schema::{
    control_key, ArraySummary, ControlEvent, ControlState, CONTROL_DIR, CONTROL_KEYS, DATA_DIR,
    KEY_STOPPED,
};
use crate::xenstore::{Client, Error};
use std::os::fd::RawFd;

const WATCH_TOKEN_CTL: &str = "mdguard-ctl";
const WATCH_TOKEN_VBD: &str = "mdguard-vbd";
const WATCH_TOKEN_OWN: &str = "mdguard-own";

/// What dom0 asked for since the last call.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Requests {
    /// New budget (Some(None): budget removed).
    pub budget: Option<Option<u64>>,
    pub probe: bool,
    /// A vbd changed (attach/detach): worth a fresh look at block devices.
    pub vbd_changed: bool,
    /// dom0's coordinator appeared (true) or went away (false).
    pub coordinator: Option<bool>,
    /// dom0's answers to the resync request: turns for these legs.
    pub turns: Vec<(Turn, Vec<String>)>,
    /// Published keys were lost or changed behind the agent's back: publish
    /// them again.
    pub republish: bool,
}

pub struct Reporter {
    client: Client,
    publisher: Publisher,
    control: ControlState,
    /// Unix time a held-back progress update is due.
    pub next_due: Option<u64>,
    /// Last error logged (to log each distinct failure once).
    last_error: Option<String>,
    had_budget: bool,
    /// The resync request to dom0's coordinator.
    asker: Asker,
}

impl Reporter {
    /// Connect and watch dom0's keys. `Err` says why there is no xenstore.
    pub fn open(progress_interval_s: u64) -> Result<Reporter, String> {
        let client = match Client::open() {
            Ok(c) => c,
            Err(Error::NotAvailable(why)) => return Err(why),
            Err(e) => return Err(e.to_string()),
        };
        let mut r = Reporter {
            client,
            publisher: Publisher::new(PublishConfig {
                progress_interval: progress_interval_s,
                ..PublishConfig::default()
            }),
            control: ControlState::default(),
            next_due: None,
            last_error: None,
            had_budget: false,
            asker: Asker::new(unix_time().as_micros() as u64),
        };
        r.setup_watches();
        // an agent runs again: whatever a previous one said on stopping is
        // over, and a resync request it left (killed) is not this one's: dom0
        // would hold a place for it
        for key in [KEY_STOPPED, KEY_REQUEST] {
            let path = format!("{DATA_DIR}/{key}");
            if let Err(e) = r.client.rm(&path) {
                if !e.is_not_found() {
                    r.note_error(&format!("cannot remove {path}: {e}"));
                }
            }
        }
        Ok(r)
    }

    /// A clean stop: say so, so dom0 does not take the last report for a live
    /// one.
    pub fn stopped(&mut self) {
        let step = self.asker.stop();
        self.carry_out(step);
        let path = format!("{DATA_DIR}/{KEY_STOPPED}");
        if let Err(e) = self.client.write(&path, unix_now().to_string().as_bytes()) {
            self.note_error(&format!("cannot write {path}: {e}"));
        }
    }

    fn setup_watches(&mut self) {
        for (path, token) in [
            (CONTROL_DIR, WATCH_TOKEN_CTL),
            ("device/vbd", WATCH_TOKEN_VBD),
            (DATA_DIR, WATCH_TOKEN_OWN),
        ] {
            if let Err(e) = self.client.watch(path, token) {
                self.note_error(&format!("cannot watch {path}: {e}"));
            }
        }
    }

    pub fn fd(&self) -> Option<RawFd> {
        self.client.as_raw_fd()
    }

    fn note_error(&mut self, e: &str) {
        if self.last_error.as_deref() != Some(e) {
            crate::log::warn(&format!("xenstore: {e}"));
            self.last_error = Some(e.to_string());
        }
    }

    /// Publish the arrays; writes only what changed.
    pub fn publish(&mut self, snap: &Snapshot, engine: &Engine) {
        let arrays: Vec<ArraySummary> = snap.arrays.iter().map(|a| summary(a, engine)).collect();
        match self
            .publisher
            .publish(&mut self.client, &arrays, unix_now())
        {
            Ok(plan) => {
                self.next_due = plan.next_due;
                self.last_error = None;
            }
            Err(e) => self.note_error(&format!("publishing health failed: {e}")),
        }
    }

    /// Keep the resync request to dom0's coordinator in step with the legs
    /// that wait for a turn (after [`Reporter::publish`]).
    pub fn ask(&mut self, engine: &Engine) {
        let step = self
            .asker
            .plan(&engine.awaiting_turn(), engine.resync_pending(), unix_now());
        self.carry_out(step);
        if let Some(due) = self.asker.next_due() {
            self.next_due = Some(self.next_due.map_or(due, |d| d.min(due)));
        }
    }

    fn carry_out(&mut self, step: crate::report::asker::Step) {
        let result = match &step.op {
            None => Ok(()),
            Some(publisher::Op::Write { path, value }) => self.client.write(path, value),
            Some(publisher::Op::Rm { path }) => match self.client.rm(path) {
                Err(e) if e.is_not_found() => Ok(()),
                r => r,
            },
        };
        match result {
            Ok(()) => self.asker.apply(step),
            // tried again at the next turn of the loop
            Err(e) => self.note_error(&format!("cannot write the resync request: {e}")),
        }
    }

    /// The xenstore fd was readable: collect dom0's requests.
    pub fn requests(&mut self) -> Requests {
        let mut req = Requests::default();
        // answering (a pong) can queue further events inside the client: drain
        // until nothing is left, so none waits for the next wake-up
        for _ in 0..16 {
            if !self.requests_once(&mut req) {
                break;
            }
        }
        req
    }

    /// One round; false when there was nothing to do.
    fn requests_once(&mut self, req: &mut Requests) -> bool {
        let events = match self.client.poll_events() {
            Ok(ev) => ev,
            Err(e) => {
                self.note_error(&format!("connection lost ({e}); reconnecting"));
                if self.client.reconnect().is_ok() {
                    crate::log::notice("xenstore: reconnected; publishing everything again");
                    self.publisher.reset();
                    self.last_error = None;
                }
                return false;
            }
        };
        if events.is_empty() {
            return false;
        }
        let mut own: Vec<String> = Vec::new();
        for ev in events {
            if ev.token == WATCH_TOKEN_VBD {
                req.vbd_changed = true;
                continue;
            }
            if ev.token == WATCH_TOKEN_OWN {
                own.push(ev.path);
                continue;
            }
            // the initial fire names the directory itself: read every key
            let keys: Vec<&str> = match control_key(&ev.path) {
                Some(k) => vec![k],
                None => CONTROL_KEYS.to_vec(),
            };
            for k in keys {
                let path = format!("{CONTROL_DIR}/{k}");
                let raw = match self.client.try_read(&path) {
                    Ok(v) => v,
                    Err(e) => {
                        self.note_error(&format!("cannot read {path}: {e}"));
                        continue;
                    }
                };
                match self.control.update(k, raw.as_deref()) {
                    Ok(Some(ControlEvent::Budget(b))) => {
                        match b {
                            Some(v) => crate::log::notice(&format!(
                                "dom0 set the resync budget to {v} KiB/s"
                            )),
                            None if self.had_budget => {
                                crate::log::notice("dom0 removed the resync budget")
                            }
                            None => {}
                        }
                        self.had_budget = b.is_some();
                        req.budget = Some(b);
                    }
                    Ok(Some(ControlEvent::Ping(token))) => {
                        let op = self.publisher.pong_op(&token);
                        if let publisher::Op::Write { path, value } = op {
                            if let Err(e) = self.client.write(&path, &value) {
                                self.note_error(&format!("cannot answer ping: {e}"));
                            }
                        }
                    }
                    Ok(Some(ControlEvent::Probe(_))) => req.probe = true,
                    Ok(Some(ControlEvent::Coordinator(c))) => {
                        crate::log::notice(if c.is_some() {
                            "dom0 coordinates resyncs: a returning leg asks it for a turn"
                        } else {
                            "dom0's coordinator went away: returning legs use the start jitter"
                        });
                        self.asker.set_coordinator(c.is_some());
                        req.coordinator = Some(c.is_some());
                    }
                    Ok(Some(ControlEvent::Answer(a))) => {
                        if let Some(turn) = self.asker.on_answer(&a) {
                            req.turns.push(turn);
                        }
                    }
                    Ok(None) => {}
                    // untrusted input: say what was wrong, keep going
                    Err(e) => crate::log::warn(&format!("xenstore: ignoring {path}: {e}")),
                }
            }
        }
        if self.check_published(&own) {
            req.republish = true;
        }
        true
    }

    /// Watch events on `data/mdguard`: read back each key written that they
    /// may have touched (its own writes come back this way too, one read
    /// each). True when some key was missing or not as written.
    fn check_published(&mut self, event_paths: &[String]) -> bool {
        let mut keys: Vec<String> = event_paths
            .iter()
            .flat_map(|p| self.publisher.written_under(p))
            .collect();
        keys.sort();
        keys.dedup();
        let mut lost = Vec::new();
        for k in keys {
            match self.client.try_read(&k) {
                Ok(v) => {
                    if self.publisher.confirm(&k, v.as_deref()) {
                        lost.push(k);
                    }
                }
                Err(e) => self.note_error(&format!("cannot read back {k}: {e}")),
            }
        }
        if lost.is_empty() {
            return false;
        }
        let prefix = format!("{DATA_DIR}/");
        let names: Vec<&str> = lost
            .iter()
            .map(|k| k.strip_prefix(&prefix).unwrap_or(k))
            .collect();
        crate::log::notice(&format!(
            "xenstore: published keys gone or changed under {DATA_DIR} ({}): \
             guest restored or migrated, or dom0 changed them; publishing again",
            names.join(", ")
        ));
        true
    }
}

/// The compact per-array report for dom0 ([`ArrayView::summary`]).
pub fn summary(a: &Array, engine: &Engine) -> ArraySummary {
    ArrayView::of(engine, &a.name).summary(a)
}
