//! Each guest agent's liveness as `mdguard host run` judges it, in
//! `host status`'s words ([`AgentState`]): `stopped` when it said so
//! (`data/mdguard/stopped`), `answering` when it answered this round's ping,
//! `silent` when it did not within the timeout. Pure: the service writes the
//! pings and reads the answers; [`Pinger`] says whom to ask, when, and what
//! the answers mean.
//!
//! Rounds: every `every` ms a new token goes to every agent that publishes
//! and has not said it stopped; a guest that starts publishing, or whose
//! agent runs again after a stop, is asked at once with the round's token.
//! An agent answers this round when its `pong` is the round's token, or
//! changed since it was asked: `host status` (or a cron job's `host metrics`)
//! writing its own token over the service's may be the only ping the agent
//! reads, and its answer proves it as well.
//! Between two answers a guest keeps the state it had: a round in progress
//! never makes an answering agent `not-asked`, and an agent that stopped
//! stays `stopped` until its successor answers (or falls silent).

use super::guest::AgentState;
use crate::heal::Ms;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone)]
pub struct Pinger {
    every: Ms,
    timeout: Ms,
    /// This round's token and when it began.
    round: Option<(String, Ms)>,
    /// Who was sent this round's token, and when.
    asked: BTreeMap<u32, Ms>,
    /// Each guest's `pong` as last read, and as it was when asked.
    pong_seen: BTreeMap<u32, Vec<u8>>,
    pong_asked: BTreeMap<u32, Option<Vec<u8>>>,
    /// Who answered it.
    answered: BTreeSet<u32>,
    /// Who did not within the timeout (said once per round).
    overdue: BTreeSet<u32>,
}

impl Pinger {
    /// A round every `every` ms (at least `timeout`: a round never begins
    /// while answers to the last one are awaited); an answer is due
    /// `timeout` ms after the ask.
    pub fn new(every: Ms, timeout: Ms) -> Pinger {
        Pinger {
            every: every.max(timeout),
            timeout,
            round: None,
            asked: BTreeMap::new(),
            pong_seen: BTreeMap::new(),
            pong_asked: BTreeMap::new(),
            answered: BTreeSet::new(),
            overdue: BTreeSet::new(),
        }
    }

    /// This round's token.
    pub fn token(&self) -> Option<&str> {
        self.round.as_ref().map(|(t, _)| t.as_str())
    }

    /// Is a new round due at `now`? Not while an answer to this one is
    /// awaited (a guest asked late, after the writes to a thousand others,
    /// has its whole timeout).
    pub fn round_due(&self, now: Ms) -> bool {
        self.round
            .as_ref()
            .map_or(true, |(_, at)| now >= at.saturating_add(self.every))
            && self.awaited().is_none()
    }

    /// When the first answer still awaited is due.
    fn awaited(&self) -> Option<Ms> {
        self.asked
            .iter()
            .filter(|(id, _)| !self.answered.contains(id) && !self.overdue.contains(id))
            .map(|(_, at)| at.saturating_add(self.timeout))
            .min()
    }

    /// Begin a round with `token`: nobody is asked yet.
    pub fn begin(&mut self, token: String, now: Ms) {
        self.round = Some((token, now));
        self.asked.clear();
        self.pong_asked.clear();
        self.answered.clear();
        self.overdue.clear();
    }

    /// Should guest `id` be sent this round's token now: it publishes, has
    /// not said it stopped, and was not asked this round.
    pub fn wants(&self, id: u32, publishes: bool, stopped: bool) -> bool {
        self.round.is_some() && publishes && !stopped && !self.asked.contains_key(&id)
    }

    /// Guest `id` was sent this round's token at `now`.
    pub fn asked(&mut self, id: u32, now: Ms) {
        self.asked.insert(id, now);
        self.pong_asked.insert(id, self.pong_seen.get(&id).cloned());
        self.answered.remove(&id);
        self.overdue.remove(&id);
    }

    /// Guest `id`'s `data/mdguard/pong` as read: true when it answers this
    /// round (this round's token, or any answer written since the ask; the
    /// value it had when asked is no answer).
    pub fn pong(&mut self, id: u32, pong: Option<&[u8]>) -> bool {
        match pong {
            Some(v) => self.pong_seen.insert(id, v.to_vec()),
            None => self.pong_seen.remove(&id),
        };
        let ours = matches!((self.token(), pong), (Some(t), Some(p)) if t.as_bytes() == p);
        let changed = match self.pong_asked.get(&id) {
            Some(then) => pong.is_some() && then.as_deref() != pong,
            None => false,
        };
        if (ours || changed) && self.asked.contains_key(&id) {
            self.answered.insert(id);
            self.overdue.remove(&id);
            return true;
        }
        false
    }

    /// Guest `id` stopped or went away: it is asked again once it runs.
    pub fn forget(&mut self, id: u32) {
        self.asked.remove(&id);
        self.pong_asked.remove(&id);
        self.answered.remove(&id);
        self.overdue.remove(&id);
    }

    /// The guests whose answer became overdue by `now`, each once a round.
    pub fn overdue(&mut self, now: Ms) -> Vec<u32> {
        let late: Vec<u32> = self
            .asked
            .iter()
            .filter(|(id, at)| {
                !self.answered.contains(id)
                    && !self.overdue.contains(id)
                    && now >= at.saturating_add(self.timeout)
            })
            .map(|(id, _)| *id)
            .collect();
        self.overdue.extend(late.iter().copied());
        late
    }

    /// When to look again though nothing happens: the next round, or the
    /// first answer still awaited.
    pub fn next_due(&self) -> Option<Ms> {
        let round = self
            .round
            .as_ref()
            .map(|(_, at)| at.saturating_add(self.every));
        // no round begins while an answer is awaited
        self.awaited().or(round).or(Some(0))
    }

    /// Guest `id`'s agent: `read` is what its publication says (`None`: it
    /// publishes nothing; `Stopped`; else `NotAsked`), `prev` what was
    /// judged before.
    pub fn judge(&self, id: u32, read: AgentState, prev: AgentState) -> AgentState {
        match read {
            AgentState::None | AgentState::Stopped => read,
            _ if self.answered.contains(&id) => AgentState::Answering,
            _ if self.overdue.contains(&id) => AgentState::Silent,
            _ => match prev {
                AgentState::Answering | AgentState::Silent | AgentState::Stopped => prev,
                AgentState::NotAsked | AgentState::None => AgentState::NotAsked,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AgentState::*;

    const S: Ms = 1000;

    #[test]
    fn a_guest_asked_late_has_its_whole_timeout_before_the_next_round() {
        // rounds every 2 s, 2 s to answer; the writes to the others took
        // 0.5 s, so guest 8 was asked at 0.5 s
        let mut p = Pinger::new(2 * S, 2 * S);
        p.begin("t1".into(), 0);
        p.asked(8, S / 2);
        assert!(!p.round_due(2 * S), "its answer is awaited until 2.5 s");
        assert_eq!(p.next_due(), Some(2 * S + S / 2));
        assert!(p.overdue(2 * S).is_empty());
        assert_eq!(p.overdue(2 * S + S / 2), [8]);
        assert_eq!(p.judge(8, NotAsked, NotAsked), Silent);
        assert!(p.round_due(2 * S + S / 2));
    }

    #[test]
    fn a_round_asks_answers_and_finds_the_silent() {
        let mut p = Pinger::new(30 * S, 2 * S);
        assert!(p.round_due(0));
        assert_eq!(p.next_due(), Some(0), "the first round at once");
        assert!(!p.wants(5, true, false), "no round yet");
        p.begin("t1".into(), 0);
        assert!(p.wants(5, true, false));
        assert!(!p.wants(6, false, false), "publishes nothing");
        assert!(!p.wants(7, true, true), "said it stopped");
        // what guest 5 answered before this round
        p.pong(5, Some(b"old"));
        p.asked(5, 0);
        p.asked(8, 0);
        assert!(!p.wants(5, true, false), "once a round");
        assert_eq!(p.judge(5, NotAsked, NotAsked), NotAsked);
        assert_eq!(p.next_due(), Some(2 * S));
        assert!(!p.pong(5, Some(b"old")), "the answer before the ask");
        assert!(!p.pong(5, Option::None));
        assert!(p.pong(5, Some(b"t1")));
        assert!(!p.pong(9, Some(b"t1")), "never asked");
        assert_eq!(p.judge(5, NotAsked, NotAsked), Answering);
        assert!(p.overdue(2 * S - 1).is_empty());
        assert_eq!(p.overdue(2 * S), [8]);
        assert!(p.overdue(3 * S).is_empty(), "said once");
        assert_eq!(p.judge(8, NotAsked, NotAsked), Silent);
        assert_eq!(p.next_due(), Some(30 * S));
        // a late answer still counts: the agent is back
        assert!(p.pong(8, Some(b"t1")));
        assert_eq!(p.judge(8, NotAsked, Silent), Answering);
    }

    /// `host status` writes its token over the service's before the agent
    /// reads either: the agent answers that one, and that is an answer too.
    #[test]
    fn an_answer_to_another_tools_ping_counts() {
        let mut p = Pinger::new(30 * S, 2 * S);
        p.begin("t1".into(), 0);
        p.pong(5, Some(b"t0"));
        p.asked(5, 0);
        p.asked(6, 0);
        assert!(p.pong(5, Some(b"status-token")));
        assert_eq!(p.judge(5, NotAsked, NotAsked), Answering);
        // a guest that had never answered, answering another tool
        assert!(p.pong(6, Some(b"status-token")));
        assert_eq!(p.overdue(2 * S), Vec::<u32>::new());
    }

    #[test]
    fn a_new_round_keeps_what_was_judged_until_the_answers() {
        let mut p = Pinger::new(30 * S, 2 * S);
        p.begin("t1".into(), 0);
        p.asked(5, 0);
        p.asked(8, 0);
        p.pong(5, Some(b"t1"));
        p.overdue(2 * S);
        assert!(!p.round_due(30 * S - 1));
        assert!(p.round_due(30 * S));
        p.begin("t2".into(), 30 * S);
        p.asked(5, 30 * S);
        p.asked(8, 30 * S);
        assert_eq!(p.judge(5, NotAsked, Answering), Answering);
        assert_eq!(p.judge(8, NotAsked, Silent), Silent);
        assert!(!p.pong(5, Some(b"t1")), "last round's token, as when asked");
        assert_eq!(p.overdue(32 * S), [5, 8]);
        assert_eq!(p.judge(5, NotAsked, Answering), Silent);
    }

    #[test]
    fn rounds_are_never_shorter_than_the_wait_for_an_answer() {
        let mut p = Pinger::new(S, 2 * S);
        p.begin("t1".into(), 0);
        p.asked(5, 0);
        assert!(!p.round_due(S + 1));
        assert_eq!(p.next_due(), Some(2 * S));
        assert_eq!(p.overdue(2 * S), [5]);
        assert!(p.round_due(2 * S));
    }

    #[test]
    fn a_stopped_agent_stays_stopped_until_its_successor_answers() {
        let mut p = Pinger::new(30 * S, 2 * S);
        p.begin("t1".into(), 0);
        p.asked(5, 0);
        p.pong(5, Some(b"t1"));
        // it says it stopped
        assert_eq!(p.judge(5, Stopped, Answering), Stopped);
        p.forget(5);
        // a new agent: the key is gone; asked at once, stopped until it answers
        assert!(p.wants(5, true, false));
        p.asked(5, 10 * S);
        assert_eq!(p.judge(5, NotAsked, Stopped), Stopped);
        assert!(p.pong(5, Some(b"t1")));
        assert_eq!(p.judge(5, NotAsked, Stopped), Answering);
        // one that never answers is silent at its deadline
        p.forget(5);
        p.asked(5, 20 * S);
        assert_eq!(p.overdue(22 * S), [5]);
        assert_eq!(p.judge(5, NotAsked, Stopped), Silent);
        // no data: no agent
        assert_eq!(p.judge(5, AgentState::None, Answering), AgentState::None);
    }
}
