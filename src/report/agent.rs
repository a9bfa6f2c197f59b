//! The agent's side of xenstore: publish each array's health under the guest's
//! `data/mdguard/` (only on change), and take dom0's requests from
//! `control/mdguard/` (budget, ping, probe). Without xenstore the agent keeps
//! healing and says so once.

use crate::clock::unix_now;
use crate::heal::{Engine, Phase};
use crate::md::model::{Array, Snapshot};
use crate::report::agent_state::ArrayView;
use crate::report::publisher::{self, PublishConfig, Publisher};
use crate::report::schema::{
    control_key, reported_health, ArraySummary, ControlEvent, ControlState, CONTROL_DIR,
    CTL_BUDGET, CTL_PING, CTL_PROBE, DATA_DIR, KEY_STOPPED,
};
use crate::xenstore::{Client, Error};
use std::os::fd::RawFd;

const WATCH_TOKEN_CTL: &str = "mdguard-ctl";
const WATCH_TOKEN_VBD: &str = "mdguard-vbd";

/// What dom0 asked for since the last call.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Requests {
    /// New budget (Some(None): budget removed).
    pub budget: Option<Option<u64>>,
    pub probe: bool,
    /// A vbd changed (attach/detach): worth a fresh look at block devices.
    pub vbd_changed: bool,
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
        };
        r.setup_watches();
        // an agent runs again: whatever a previous one said on stopping is over
        let stopped = format!("{DATA_DIR}/{KEY_STOPPED}");
        if let Err(e) = r.client.rm(&stopped) {
            if !e.is_not_found() {
                r.note_error(&format!("cannot remove {stopped}: {e}"));
            }
        }
        Ok(r)
    }

    /// A clean stop: say so, so dom0 does not take the last report for a live
    /// one.
    pub fn stopped(&mut self) {
        let path = format!("{DATA_DIR}/{KEY_STOPPED}");
        if let Err(e) = self.client.write(&path, unix_now().to_string().as_bytes()) {
            self.note_error(&format!("cannot write {path}: {e}"));
        }
    }

    fn setup_watches(&mut self) {
        for (path, token) in [
            (CONTROL_DIR, WATCH_TOKEN_CTL),
            ("device/vbd", WATCH_TOKEN_VBD),
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
        for ev in events {
            if ev.token == WATCH_TOKEN_VBD {
                req.vbd_changed = true;
                continue;
            }
            // the initial fire names the directory itself: read every key
            let keys: Vec<&str> = match control_key(&ev.path) {
                Some(k) => vec![k],
                None => vec![CTL_BUDGET, CTL_PING, CTL_PROBE],
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
                    Ok(None) => {}
                    // untrusted input: say what was wrong, keep going
                    Err(e) => crate::log::warn(&format!("xenstore: ignoring {path}: {e}")),
                }
            }
        }
        true
    }
}

/// The compact per-array report for dom0.
pub fn summary(a: &Array, engine: &Engine) -> ArraySummary {
    let legs: Vec<_> = engine.legs_of(&a.name).collect();
    let mut members: Vec<(String, String)> = a
        .members
        .iter()
        .map(|m| (m.device.clone(), m.condition().as_str().to_string()))
        .collect();
    // legs mdguard is bringing back that md no longer lists
    for l in legs
        .iter()
        .filter(|l| !l.bound && l.phase() != Phase::Healthy)
    {
        members.push((l.device.clone(), l.phase().as_str().to_string()));
    }
    let ArrayView { flapping, stalled } = ArrayView::of(engine, &a.name);
    ArraySummary {
        name: a.name.clone(),
        health: reported_health(a.health, flapping, stalled),
        level: a.level.clone().unwrap_or_default(),
        raid_disks: a.raid_disks.unwrap_or(0),
        in_sync: a.in_sync_count(),
        members,
        sync: a.sync.as_ref().and_then(|s| {
            s.fraction().map(|f| {
                (
                    s.action.as_str().to_string(),
                    (f * 1000.0).round() as f32 / 10.0,
                )
            })
        }),
        flapping,
        stalled,
    }
}
