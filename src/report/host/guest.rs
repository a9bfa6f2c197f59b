//! One guest as dom0 reads it, and what dom0 concludes from it. Pure: the
//! reading is `host.rs`.
//!
//! Two judgements, each never better than its evidence:
//! - [`judge`]: the health a guest's publication supports: the worst of its
//!   `health` key and each array's health (an array flagged `stalled` or
//!   `flapping` at least `degraded`), and at least `unknown` when anything it
//!   published could not be read. A guest cannot read `ok` by writing `ok` in
//!   one key and something else (or garbage) in another.
//! - [`Verdict`]: that health, unless the agent is not there to stand behind
//!   it (`silent`, `stopped`); the word `host status` shows and the plugin code
//!   `host status` and `host check` exit with.

use crate::report::schema::{reported_health, ArrayJson, Health};
use crate::report::status::{worst_code, CheckCode};
use crate::text::printable;
use serde::Serialize;
use std::collections::BTreeMap;

/// The array flags an agent publishes (`flags` in the array JSON).
pub const FLAG_FLAPPING: &str = "flapping";
pub const FLAG_STALLED: &str = "stalled";

/// Whether a guest's agent is there to stand behind what it published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentState {
    /// It answered a ping just now.
    Answering,
    /// It did not answer within the timeout: crashed, hung, or the guest is.
    Silent,
    /// It said it stopped (a clean stop writes `data/mdguard/stopped`).
    Stopped,
    /// Not asked (`--no-ping`): what it published, unconfirmed.
    NotAsked,
    /// The guest publishes no mdguard data.
    None,
}

/// One guest's report as read from xenstore (`host status --json`'s `guests`).
#[derive(Debug, Clone, Serialize)]
pub struct GuestStatus {
    pub domid: u32,
    pub name: String,
    /// `None`: the guest publishes nothing (no agent). Otherwise the health
    /// its publication supports ([`judge`]).
    pub health: Option<Health>,
    pub agent: AgentState,
    pub version: Option<u64>,
    pub updated: Option<u64>,
    pub arrays: BTreeMap<String, ArrayJson>,
    /// What could not be read, escaped.
    pub errors: Vec<String>,
}

impl GuestStatus {
    /// A guest that publishes nothing (yet).
    pub fn new(domid: u32, name: String) -> GuestStatus {
        GuestStatus {
            domid,
            name,
            health: None,
            agent: AgentState::None,
            version: None,
            updated: None,
            arrays: BTreeMap::new(),
            errors: Vec::new(),
        }
    }

    pub fn verdict(&self) -> Verdict {
        Verdict::of(self.health, self.agent)
    }
}

/// The health a guest's publication supports: `published` (its `health` key,
/// `unknown` when it did not parse), raised to each array's health (an array
/// with a flag at least `degraded`, as the agent itself reports it), and to
/// `unknown` when `errors` is not empty. Says in `errors` when the `health`
/// key claims better than an array, or an array carries a flag no agent writes.
pub fn judge(
    published: Health,
    arrays: &BTreeMap<String, ArrayJson>,
    errors: &mut Vec<String>,
) -> Health {
    let mut worst = published;
    let mut notes = Vec::new();
    for (name, a) in arrays {
        let flapping = a.flags.iter().any(|f| f == FLAG_FLAPPING);
        let stalled = a.flags.iter().any(|f| f == FLAG_STALLED);
        if let Some(f) = a
            .flags
            .iter()
            .find(|f| *f != FLAG_FLAPPING && *f != FLAG_STALLED)
        {
            notes.push(format!(
                "{name}: unknown flag {}",
                printable(f.as_bytes(), 24)
            ));
        }
        let h = reported_health(a.health, flapping, stalled);
        if h > published {
            notes.push(format!("health {published} but {name} {h}"));
        }
        worst = worst.max(h);
    }
    errors.extend(notes);
    if errors.is_empty() {
        worst
    } else {
        worst.max(Health::Unknown)
    }
}

/// What dom0 says of a guest: the health it published, judged, or why that
/// cannot be believed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The agent answered (or was not asked): its judged health.
    Health(Health),
    /// The agent did not answer the ping: whatever it said is stale.
    Silent,
    /// The agent said it stopped.
    Stopped,
    /// No mdguard data: the guest does not count.
    NoData,
}

impl Verdict {
    pub fn of(health: Option<Health>, agent: AgentState) -> Verdict {
        match (health, agent) {
            (None, _) => Verdict::NoData,
            (Some(_), AgentState::Silent) => Verdict::Silent,
            (Some(_), AgentState::Stopped) => Verdict::Stopped,
            (Some(h), _) => Verdict::Health(h),
        }
    }

    /// `ok` ... `failed`, `silent`, `stopped`; `-` without data.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Health(h) => h.as_str(),
            Verdict::Silent => "silent",
            Verdict::Stopped => "stopped",
            Verdict::NoData => "-",
        }
    }

    /// Worst first: failed, degraded, silent, stopped, unknown, recovering,
    /// ok, no data. Follows the plugin precedence of [`Verdict::code`]
    /// (CRITICAL > UNKNOWN > WARNING > OK), finer within a code.
    pub fn severity(self) -> u8 {
        match self {
            Verdict::NoData => 0,
            Verdict::Health(Health::Ok) => 1,
            Verdict::Health(Health::Recovering) => 2,
            Verdict::Health(Health::Unknown) => 3,
            Verdict::Stopped => 4,
            Verdict::Silent => 5,
            Verdict::Health(Health::Degraded) => 6,
            Verdict::Health(Health::Failed) => 7,
        }
    }

    /// The plugin code; `None` for a guest that does not count (no data).
    /// A silent or stopped agent is UNKNOWN, whatever it last said.
    pub fn code(self) -> Option<CheckCode> {
        match self {
            Verdict::Health(h) => Some(h.check_code()),
            Verdict::Silent | Verdict::Stopped => Some(CheckCode::Unknown),
            Verdict::NoData => None,
        }
    }
}

/// The host's code: the worst guest's ([`worst_code`]); UNKNOWN when no guest
/// counts (nobody publishes anything).
pub fn host_code(verdicts: impl IntoIterator<Item = Verdict>) -> CheckCode {
    let codes: Vec<CheckCode> = verdicts.into_iter().filter_map(Verdict::code).collect();
    if codes.is_empty() {
        CheckCode::Unknown
    } else {
        worst_code(codes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Health::*;

    fn array(health: Health, flags: &[&str]) -> ArrayJson {
        ArrayJson {
            health,
            level: "raid1".into(),
            disks: 2,
            in_sync: 2,
            members: vec![],
            sync: None,
            flags: flags.iter().map(|f| f.to_string()).collect(),
            more_members: 0,
            refused: vec![],
        }
    }

    fn arrays(list: &[(&str, ArrayJson)]) -> BTreeMap<String, ArrayJson> {
        list.iter()
            .map(|(n, a)| (n.to_string(), a.clone()))
            .collect()
    }

    #[test]
    fn judged_health_is_never_better_than_any_part() {
        let mut e = vec![];
        assert_eq!(judge(Ok, &arrays(&[("md0", array(Ok, &[]))]), &mut e), Ok);
        assert!(e.is_empty(), "{e:?}");
        // no array at all: what the key says
        assert_eq!(judge(Recovering, &BTreeMap::new(), &mut e), Recovering);
        // the key claims better than an array: the array's, and said why
        let a = arrays(&[("md0", array(Ok, &[])), ("md1", array(Degraded, &[]))]);
        assert_eq!(judge(Ok, &a, &mut e), Degraded);
        assert_eq!(e, vec!["health ok but md1 degraded"]);
        // a flag makes an array at least degraded, even if it says ok
        let mut e = vec![];
        let a = arrays(&[("md0", array(Ok, &[FLAG_STALLED]))]);
        assert_eq!(judge(Ok, &a, &mut e), Degraded);
        assert_eq!(e, vec!["health ok but md0 degraded"]);
        // an unknown flag: unknown at least
        let mut e = vec![];
        let a = arrays(&[("md0", array(Ok, &["shiny\u{1b}"]))]);
        assert_eq!(judge(Ok, &a, &mut e), Unknown);
        assert_eq!(e, vec!["md0: unknown flag shiny\\x1b"]);
        // anything unreadable: unknown at least, worse stays worse
        let mut e = vec!["md9: bad JSON".to_string()];
        assert_eq!(judge(Ok, &BTreeMap::new(), &mut e), Unknown);
        assert_eq!(judge(Failed, &BTreeMap::new(), &mut e), Failed);
    }

    #[test]
    fn verdict_words_and_codes() {
        use AgentState as A;
        let v = |h, a| Verdict::of(h, a);
        assert_eq!(v(Some(Ok), A::Answering).word(), "ok");
        assert_eq!(v(Some(Ok), A::Answering).code(), Some(CheckCode::Ok));
        assert_eq!(v(Some(Ok), A::NotAsked).code(), Some(CheckCode::Ok));
        assert_eq!(
            v(Some(Recovering), A::Answering).code(),
            Some(CheckCode::Warning)
        );
        assert_eq!(
            v(Some(Degraded), A::Answering).code(),
            Some(CheckCode::Critical)
        );
        // what a silent or stopped agent last said does not count
        assert_eq!(v(Some(Ok), A::Silent).word(), "silent");
        assert_eq!(v(Some(Ok), A::Silent).code(), Some(CheckCode::Unknown));
        assert_eq!(v(Some(Ok), A::Stopped).word(), "stopped");
        assert_eq!(v(Some(Ok), A::Stopped).code(), Some(CheckCode::Unknown));
        assert_eq!(v(None, A::None), Verdict::NoData);
        assert_eq!(Verdict::NoData.code(), None);
    }

    #[test]
    fn severity_follows_the_plugin_precedence() {
        use Verdict as V;
        let all = [
            V::NoData,
            V::Health(Ok),
            V::Health(Recovering),
            V::Health(Unknown),
            V::Stopped,
            V::Silent,
            V::Health(Degraded),
            V::Health(Failed),
        ];
        for w in all.windows(2) {
            assert!(w[0].severity() < w[1].severity(), "{w:?}");
            let rank = |v: V| v.code().map_or(0, |c| c.rank() + 1);
            assert!(rank(w[0]) <= rank(w[1]), "{w:?}");
        }
    }

    #[test]
    fn host_code_is_the_worst_counted_guest() {
        use Verdict as V;
        assert_eq!(host_code([]), CheckCode::Unknown, "nobody publishes");
        assert_eq!(host_code([V::NoData, V::NoData]), CheckCode::Unknown);
        assert_eq!(host_code([V::NoData, V::Health(Ok)]), CheckCode::Ok);
        assert_eq!(
            host_code([V::Health(Ok), V::Health(Recovering)]),
            CheckCode::Warning
        );
        assert_eq!(
            host_code([V::Health(Recovering), V::Silent]),
            CheckCode::Unknown
        );
        assert_eq!(
            host_code([V::Silent, V::Health(Degraded)]),
            CheckCode::Critical
        );
    }
}
