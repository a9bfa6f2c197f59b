//! When a proven leg is added: after the random start jitter, or when dom0's
//! coordinator grants it a turn (resync admission, `docs/xenstore-schema.md`).
//!
//! With a coordinator in dom0 (`control/mdguard/coordinator`), a proven leg
//! asks instead of drawing a jitter ([`Start::Asking`]); the agent turns the
//! legs that wait into its request ([`Engine::awaiting_turn`]) and dom0's
//! answers into [`Engine::on_turn`]. A grant makes the add due at once; a
//! "queued" answer keeps the leg waiting `throttle.grant_timeout_s` past each
//! sign of the coordinator's life. No answer by then, or the coordinator gone:
//! the leg falls back to the jitter. A dead coordinator delays a heal by at
//! most `grant_timeout_s` plus the jitter; it never stops one.

use super::action::{log, Action, Ms, SEC};
use super::engine::Engine;
use super::event::Event;
use super::leg::{Phase, Start};

/// dom0's answer to the agent's request, for the legs it named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    Granted,
    Queued,
}

impl Engine {
    /// How a leg proven at `now` waits for its add: when, and for what. A leg
    /// granted its turn earlier in this episode does not ask again.
    pub(super) fn start_wait(&mut self, granted_before: bool, now: Ms) -> (Ms, Start) {
        let timeout = self.config.throttle.grant_timeout_s * SEC;
        if granted_before {
            (now, Start::Granted)
        } else if self.coordinated && timeout > 0 {
            (now + timeout, Start::Asking)
        } else {
            (now + self.jitter(), Start::Jitter)
        }
    }

    /// The event that says a leg was proven and how it waits.
    pub(super) fn proven_event(
        array: &str,
        device: &str,
        start: Start,
        add_at: Ms,
        now: Ms,
    ) -> Event {
        match start {
            Start::Asking | Start::Queued => Event::AskTurn {
                array: array.into(),
                device: device.into(),
                timeout: add_at - now,
            },
            Start::Jitter | Start::Granted => Event::Proven {
                array: array.into(),
                device: device.into(),
                jitter: add_at - now,
            },
        }
    }

    /// Whether dom0 runs a coordinator. When it goes away, every leg waiting
    /// for its turn falls back to the start jitter at once.
    pub fn set_coordinated(&mut self, on: bool, now: Ms) -> Vec<Action> {
        self.coordinated = on;
        let mut out = Vec::new();
        if !on {
            self.fall_back_all(now, true, &mut out);
        }
        out
    }

    pub fn coordinated(&self) -> bool {
        self.coordinated
    }

    /// dom0 answered the agent's request for `devices`. Only legs that wait
    /// for a turn and that the request named take it (a leg proven after the
    /// request was written waits for the next one).
    pub fn on_turn(&mut self, turn: Turn, devices: &[String], now: Ms) -> Vec<Action> {
        let timeout = self.config.throttle.grant_timeout_s * SEC;
        let mut took = Vec::new();
        let mut queued_now = Vec::new();
        for leg in self
            .legs
            .values_mut()
            .filter(|l| l.awaits_turn() && devices.contains(&l.device))
        {
            match turn {
                Turn::Granted => {
                    leg.grant(now);
                    took.push(leg.device.clone());
                }
                Turn::Queued => {
                    if leg.start() == Some(Start::Asking) {
                        queued_now.push(leg.device.clone());
                    }
                    leg.hold(now + timeout);
                }
            }
        }
        let mut out = Vec::new();
        if !took.is_empty() {
            took.dedup();
            out.push(log(Event::TurnGranted { devices: took }));
        }
        if !queued_now.is_empty() {
            queued_now.dedup();
            out.push(log(Event::TurnQueued {
                devices: queued_now,
            }));
        }
        out
    }

    /// The devices whose legs wait for dom0's turn: what the agent's request
    /// names.
    pub fn awaiting_turn(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .legs
            .values()
            .filter(|l| l.awaits_turn())
            .map(|l| l.device.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// A leg is on its way back (waiting, confirmed, being added, or added and
    /// not yet in sync) or an array recovers: the guest's request to dom0
    /// stands until this is over.
    pub fn resync_pending(&self) -> bool {
        self.legs.values().any(|l| {
            l.syncing
                || matches!(
                    l.phase(),
                    Phase::Waiting | Phase::Confirming | Phase::Adding
                )
        }) || self.arrays.values().any(|m| m.recovery_started.is_some())
    }

    /// A leg whose wait for a turn ran out: it falls back to the jitter.
    /// True when its add is due now (no jitter).
    pub(super) fn turn_timed_out(
        &mut self,
        key: &(String, String),
        now: Ms,
        out: &mut Vec<Action>,
    ) -> bool {
        let jitter = self.jitter();
        let Some(leg) = self.legs.get_mut(key) else {
            return false;
        };
        leg.fall_back(now + jitter);
        out.push(log(Event::NoTurn {
            array: key.0.clone(),
            device: key.1.clone(),
            jitter,
            gone: false,
        }));
        jitter == 0
    }

    fn fall_back_all(&mut self, now: Ms, gone: bool, out: &mut Vec<Action>) {
        let keys: Vec<(String, String)> = self
            .legs
            .iter()
            .filter(|(_, l)| l.awaits_turn())
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            let jitter = self.jitter();
            if let Some(leg) = self.legs.get_mut(&k) {
                leg.fall_back(now + jitter);
                out.push(log(Event::NoTurn {
                    array: k.0,
                    device: k.1,
                    jitter,
                    gone,
                }));
            }
        }
    }
}
