//! The guest's side of resync admission: its request to dom0's coordinator
//! (`data/mdguard/request`), kept in step with the legs that wait for a turn,
//! and dom0's answers turned into turns for the engine. Pure: [`Asker::plan`]
//! says what to write, the agent ([`super::agent`]) writes it and hands the
//! answers in. The protocol is [`super::admission`].
//!
//! The request names the legs that wait for a turn. It stands, rewritten at
//! least every [`REQUEST_REFRESH_S`] (so dom0 knows this agent lives), until
//! no leg waits or is on its way back in sync ([`crate::heal::Engine::resync_pending`]):
//! dom0 counts the guest as recovering on those legs' storage until then.

use super::admission::{Answer, Request, KEY_REQUEST, REQUEST_REFRESH_S};
use super::publisher::Op;
use super::schema::DATA_DIR;
use crate::heal::Turn;

/// Where the guest's request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// No request.
    Idle,
    /// Written at `written_at` (unix s); no grant yet.
    Asking { request: Request, written_at: u64 },
    /// dom0 granted it; it stands while the legs recover.
    Granted { request: Request, written_at: u64 },
}

impl Ask {
    fn request(&self) -> Option<(&Request, u64)> {
        match self {
            Ask::Idle => None,
            Ask::Asking {
                request,
                written_at,
            }
            | Ask::Granted {
                request,
                written_at,
            } => Some((request, *written_at)),
        }
    }

    /// The same state, written (again) at `now`.
    fn written(&self, now: u64) -> Ask {
        match self.clone() {
            Ask::Idle => Ask::Idle,
            Ask::Asking { request, .. } => Ask::Asking {
                request,
                written_at: now,
            },
            Ask::Granted { request, .. } => Ask::Granted {
                request,
                written_at: now,
            },
        }
    }
}

/// One step: the operation to carry out and the state after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub op: Option<Op>,
    pub next: Ask,
}

#[derive(Debug, Clone)]
pub struct Asker {
    /// Makes this agent's tokens its own (unix µs at start): a new agent's
    /// request never matches an old grant.
    seed: u64,
    issued: u64,
    coordinator: bool,
    state: Ask,
}

fn path() -> String {
    format!("{DATA_DIR}/{KEY_REQUEST}")
}

impl Asker {
    pub fn new(seed: u64) -> Asker {
        Asker {
            seed,
            issued: 0,
            coordinator: false,
            state: Ask::Idle,
        }
    }

    pub fn state(&self) -> &Ask {
        &self.state
    }

    /// dom0's coordinator appeared or went away.
    pub fn set_coordinator(&mut self, present: bool) {
        self.coordinator = present;
    }

    fn token(&self) -> String {
        format!("{}-{}", self.seed, self.issued + 1)
    }

    fn write(&self, request: Request, granted: bool, now: u64) -> Step {
        let op = Op::Write {
            path: path(),
            value: request.to_bytes(),
        };
        let next = if granted {
            Ask::Granted {
                request,
                written_at: now,
            }
        } else {
            Ask::Asking {
                request,
                written_at: now,
            }
        };
        Step { op: Some(op), next }
    }

    fn remove(&self) -> Step {
        Step {
            op: Some(Op::Rm { path: path() }),
            next: Ask::Idle,
        }
    }

    /// What to write now, given the devices whose legs wait for a turn
    /// (`waiting`, sorted), whether a leg is still on its way back
    /// (`pending`), and the unix time.
    pub fn plan(&self, waiting: &[String], pending: bool, now: u64) -> Step {
        let stay = Step {
            op: None,
            next: self.state.clone(),
        };
        let Some((request, written_at)) = self.state.request() else {
            if self.coordinator && !waiting.is_empty() {
                return self.write(Request::new(self.token(), waiting), false, now);
            }
            return stay;
        };
        if !self.coordinator {
            // its legs fall back to the jitter (the engine); dom0 is gone
            return self.remove();
        }
        let granted = matches!(self.state, Ask::Granted { .. });
        let covered = waiting.iter().all(|d| request.devices.contains(d));
        if !waiting.is_empty() && (granted || !covered) {
            // new legs ask: one request names them, and (granted) the legs
            // still recovering on their grant, so dom0 counts those too
            let mut devices = waiting.to_vec();
            if granted {
                devices.extend(request.devices.iter().cloned());
            }
            return self.write(Request::new(self.token(), &devices), false, now);
        }
        if waiting.is_empty() && !pending {
            return self.remove();
        }
        if now >= written_at + REQUEST_REFRESH_S {
            // the same value again: dom0 sees this agent lives
            return Step {
                op: Some(Op::Write {
                    path: path(),
                    value: request.to_bytes(),
                }),
                next: self.state.written(now),
            };
        }
        stay
    }

    /// The step was carried out.
    pub fn apply(&mut self, step: Step) {
        if let (Some(Op::Write { .. }), Ask::Asking { request, .. }) = (&step.op, &step.next) {
            if self.state.request().map(|(r, _)| &r.token) != Some(&request.token) {
                self.issued += 1;
            }
        }
        self.state = step.next;
    }

    /// dom0 answered: a turn for the engine when the answer is for the
    /// request that stands and still news (a repeated grant is not).
    pub fn on_answer(&mut self, answer: &Answer) -> Option<(Turn, Vec<String>)> {
        let Ask::Asking {
            request,
            written_at,
        } = &self.state
        else {
            return None;
        };
        if answer.token() != request.token {
            return None; // for an earlier request
        }
        match answer {
            Answer::Granted { .. } => {
                let devices = request.devices.clone();
                self.state = Ask::Granted {
                    request: request.clone(),
                    written_at: *written_at,
                };
                Some((Turn::Granted, devices))
            }
            Answer::Queued { .. } => Some((Turn::Queued, request.devices.clone())),
        }
    }

    /// When the request must be written again (unix s), if one stands.
    pub fn next_due(&self) -> Option<u64> {
        self.state.request().map(|(_, at)| at + REQUEST_REFRESH_S)
    }

    /// On a clean stop: the request goes with the agent.
    pub fn stop(&self) -> Step {
        match self.state {
            Ask::Idle => Step {
                op: None,
                next: Ask::Idle,
            },
            _ => self.remove(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn written(step: &Step) -> Option<String> {
        match &step.op {
            Some(Op::Write { path, value }) => {
                assert_eq!(path, "data/mdguard/request");
                Some(String::from_utf8(value.clone()).unwrap())
            }
            _ => None,
        }
    }

    fn removed(step: &Step) -> bool {
        matches!(&step.op, Some(Op::Rm { path }) if path == "data/mdguard/request")
    }

    fn run(a: &mut Asker, waiting: &[&str], pending: bool, now: u64) -> Step {
        let s = a.plan(&devs(waiting), pending, now);
        a.apply(s.clone());
        s
    }

    #[test]
    fn no_coordinator_no_request() {
        let mut a = Asker::new(7);
        assert_eq!(run(&mut a, &["xvdc"], true, 100).op, None);
        assert_eq!(a.state(), &Ask::Idle);
    }

    #[test]
    fn asks_once_then_refreshes_then_leaves_when_in_sync() {
        let mut a = Asker::new(7);
        a.set_coordinator(true);
        assert_eq!(
            written(&run(&mut a, &["xvdc"], true, 100)).as_deref(),
            Some("7-1 xvdc")
        );
        // nothing new: nothing written
        assert_eq!(run(&mut a, &["xvdc"], true, 105).op, None);
        assert_eq!(a.next_due(), Some(110));
        // the refresh: the same value
        assert_eq!(
            written(&run(&mut a, &["xvdc"], true, 110)).as_deref(),
            Some("7-1 xvdc")
        );
        assert_eq!(a.next_due(), Some(120));
        // an answer for another token is not this request's
        let other = Answer::Granted {
            token: "6-1".into(),
        };
        assert_eq!(a.on_answer(&other), None);
        let q = Answer::Queued {
            token: "7-1".into(),
            seq: 1,
        };
        assert_eq!(a.on_answer(&q), Some((Turn::Queued, devs(&["xvdc"]))));
        let g = Answer::Granted {
            token: "7-1".into(),
        };
        assert_eq!(a.on_answer(&g), Some((Turn::Granted, devs(&["xvdc"]))));
        assert_eq!(a.on_answer(&g), None, "a repeated grant is no news");
        // the leg is added and recovers: the request stands
        assert_eq!(run(&mut a, &[], true, 115).op, None);
        // in sync: it goes
        assert!(removed(&run(&mut a, &[], false, 116)));
        assert_eq!(a.state(), &Ask::Idle);
        assert_eq!(a.next_due(), None);
    }

    #[test]
    fn a_new_leg_makes_a_new_request() {
        let mut a = Asker::new(7);
        a.set_coordinator(true);
        run(&mut a, &["xvdc"], true, 100);
        // another leg before the grant: one request for both, a new token
        assert_eq!(
            written(&run(&mut a, &["xvdc", "xvdd"], true, 101)).as_deref(),
            Some("7-2 xvdc xvdd")
        );
        // the old token's grant is stale
        assert_eq!(
            a.on_answer(&Answer::Granted {
                token: "7-1".into()
            }),
            None
        );
        assert!(a
            .on_answer(&Answer::Granted {
                token: "7-2".into()
            })
            .is_some());
        // a leg asks while the granted ones recover: named with them
        assert_eq!(
            written(&run(&mut a, &["xvde"], true, 102)).as_deref(),
            Some("7-3 xvdc xvdd xvde")
        );
        // a leg that stopped waiting (fell back) does not make a new request
        assert_eq!(run(&mut a, &[], true, 103).op, None);
    }

    #[test]
    fn the_coordinator_gone_takes_the_request_away() {
        let mut a = Asker::new(7);
        a.set_coordinator(true);
        run(&mut a, &["xvdc"], true, 100);
        a.set_coordinator(false);
        assert!(removed(&run(&mut a, &["xvdc"], true, 101)));
        assert_eq!(run(&mut a, &["xvdc"], true, 102).op, None);
        // back: a new request, a new token
        a.set_coordinator(true);
        assert_eq!(
            written(&run(&mut a, &["xvdc"], true, 103)).as_deref(),
            Some("7-2 xvdc")
        );
        // a clean stop removes it
        assert!(removed(&a.stop()));
    }
}
