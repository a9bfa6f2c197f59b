//! dom0's hook events: what changed in a guest's report between two looks,
//! and its agent's liveness, as `mdguard host run` runs them through the
//! hooks' runner ([`crate::report::hooks::Runner`]). Pure: [`diff`] compares
//! two readings of one guest ([`GuestStatus`], its agent judged by the
//! service's pings, `super::liveness`), so each change is said once, never
//! at every look.
//!
//! The program is run mdadm's way, adapted to dom0: `PROGRAM EVENT GUEST
//! [ARRAY [LEG]]` (the domain's name, then the array and leg as the guest
//! names them), with `MDGUARD_*` in its environment. The events and when
//! each fires: docs/hooks.md ("dom0").

use super::guest::{AgentState, GuestStatus, FLAG_FLAPPING, FLAG_STALLED};
use crate::report::hooks::{HookName, Job};
use crate::report::schema::{reported_health, valid_name, ArrayJson, Health};
use crate::text::strip_controls;
use std::collections::BTreeMap;
use std::ffi::OsString;

/// Longest domain name passed on (dom0 reads at most 256 bytes).
const DOMAIN_MAX: usize = 128;
/// Longest reason code passed on.
const REASON_MAX: usize = 32;

/// One dom0 event for a hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEvent {
    pub name: HookName,
    pub domid: u32,
    /// The domain's name, without control characters.
    pub domain: String,
    /// The guest's array (`md0`), for an array's event.
    pub array: Option<String>,
    /// The guest's leg (`xvdc`), for a leg's event.
    pub leg: Option<String>,
    /// A short code (`silent`, `degraded`, `faulty`, `split-brain`, ...) or
    /// empty.
    pub reason: String,
    /// The array's health after the change, or the guest's (judged) for the
    /// agent's events.
    pub health: Option<Health>,
    /// One line for the log and `MDGUARD_MESSAGE`.
    pub message: String,
}

/// A name dom0 passes as an argument: the schema's rule, and no leading `-`
/// (a program must not take it for an option).
fn arg_name(s: &str) -> Option<&str> {
    (valid_name(s) && !s.starts_with('-')).then_some(s)
}

/// A leg's word that says it works (or is on its way back into its slot).
fn working(state: &str) -> bool {
    matches!(state, "in_sync" | "up" | "rebuilding")
}

/// A leg's word that says it is out: md's `faulty`, or a phase of a leg the
/// agent is bringing back (`failed`, `reconnecting`, ...). `spare` and
/// `unknown` are neither.
fn is_out(state: &str) -> bool {
    !working(state) && !matches!(state, "spare" | "unknown")
}

fn degraded(h: Health) -> bool {
    matches!(h, Health::Degraded | Health::Failed)
}

/// An array's health as its agent reports it (at least `degraded` while
/// flagged).
fn health_of(a: &ArrayJson) -> Health {
    reported_health(
        a.health,
        a.flags.iter().any(|f| f == FLAG_FLAPPING),
        a.flags.iter().any(|f| f == FLAG_STALLED),
    )
}

/// Each leg's first word (a hostile guest may list one twice).
fn legs(a: &ArrayJson) -> BTreeMap<&str, &str> {
    let mut m = BTreeMap::new();
    for (d, s) in &a.members {
        m.entry(d.as_str()).or_insert(s.as_str());
    }
    m
}

/// The events between two readings of one guest: `before` is `None` at first
/// sight. At first sight only what is wrong already is said (`DegradedArray`,
/// `AgentSilent`), as `mdadm --monitor` does at its start; after that each
/// change once. Order: the agent, then array by array its legs (`Fail`,
/// `Refused`), its flags (`Flapping`, `Stalled`), its health
/// (`RebuildFinished`, `DegradedArray`, `RebuildStarted`).
pub fn diff(before: Option<&GuestStatus>, after: &GuestStatus) -> Vec<HostEvent> {
    let mut out = Vec::new();
    let Some(guest_health) = after.health else {
        return out; // publishes nothing: no agent, nothing to say
    };
    let domain = strip_controls(&after.name, DOMAIN_MAX);
    let who = format!("dom{} {domain}", after.domid);
    let ev =
        |name, array: Option<&str>, leg: Option<&str>, reason: &str, health, message| HostEvent {
            name,
            domid: after.domid,
            domain: domain.clone(),
            array: array.map(str::to_string),
            leg: leg.map(str::to_string),
            reason: strip_controls(reason, REASON_MAX),
            health: Some(health),
            message,
        };
    let was = before.map_or(AgentState::None, |b| b.agent);
    let down = |a: AgentState| matches!(a, AgentState::Silent | AgentState::Stopped);
    if down(after.agent) && !down(was) {
        let (reason, what) = match after.agent {
            AgentState::Stopped => ("stopped", "its agent stopped"),
            _ => ("silent", "its agent does not answer"),
        };
        out.push(ev(
            HookName::AgentSilent,
            None,
            None,
            reason,
            guest_health,
            format!("{who}: {what}; what it published is stale"),
        ));
    }
    if after.agent == AgentState::Answering && down(was) {
        out.push(ev(
            HookName::AgentBack,
            None,
            None,
            "",
            guest_health,
            format!("{who}: its agent answers again"),
        ));
    }
    let empty = BTreeMap::new();
    let old = before
        .filter(|b| b.health.is_some())
        .map_or(&empty, |b| &b.arrays);
    for (name, a) in &after.arrays {
        let Some(array) = arg_name(name) else {
            continue;
        };
        let h = health_of(a);
        let Some(p) = old.get(name) else {
            if degraded(h) {
                out.push(ev(
                    HookName::DegradedArray,
                    Some(array),
                    None,
                    h.as_str(),
                    h,
                    format!("{who}: {array} {h}"),
                ));
            }
            continue;
        };
        let before_legs = legs(p);
        for (dev, state) in legs(a) {
            let Some(leg) = arg_name(dev) else { continue };
            if is_out(state) && before_legs.get(dev).is_some_and(|w| working(w)) {
                let word = strip_controls(state, REASON_MAX);
                out.push(ev(
                    HookName::Fail,
                    Some(array),
                    Some(leg),
                    &word,
                    h,
                    format!(
                        "{who}: {array}: leg {leg} {word} (was {})",
                        before_legs[dev]
                    ),
                ));
            }
        }
        for (dev, code) in &a.refused {
            let Some(leg) = arg_name(dev) else { continue };
            if p.refused.iter().any(|(d, c)| d == dev && c == code) {
                continue;
            }
            let code = strip_controls(code, REASON_MAX);
            out.push(ev(
                HookName::Refused,
                Some(array),
                Some(leg),
                &code,
                h,
                format!("{who}: {array}: leg {leg} refused ({code})"),
            ));
        }
        for (flag, name, what) in [
            (FLAG_FLAPPING, HookName::Flapping, "a leg keeps failing"),
            (FLAG_STALLED, HookName::Stalled, "its writes hang"),
        ] {
            if a.flags.iter().any(|f| f == flag) && !p.flags.iter().any(|f| f == flag) {
                out.push(ev(
                    name,
                    Some(array),
                    None,
                    "",
                    h,
                    format!("{who}: {array} {flag}: {what}"),
                ));
            }
        }
        let ph = health_of(p);
        if ph == Health::Recovering && h != Health::Recovering {
            out.push(ev(
                HookName::RebuildFinished,
                Some(array),
                None,
                h.as_str(),
                h,
                format!("{who}: {array}: the rebuild is over, {h}"),
            ));
        }
        if degraded(h) && !degraded(ph) {
            out.push(ev(
                HookName::DegradedArray,
                Some(array),
                None,
                h.as_str(),
                h,
                format!("{who}: {array} {h}"),
            ));
        }
        if h == Health::Recovering && ph != Health::Recovering {
            let action = a
                .sync
                .as_ref()
                .map_or(String::new(), |(w, _)| strip_controls(w, REASON_MAX));
            out.push(ev(
                HookName::RebuildStarted,
                Some(array),
                None,
                &action,
                h,
                format!("{who}: {array} recovering {action}")
                    .trim_end()
                    .to_string(),
            ));
        }
    }
    out
}

impl HostEvent {
    /// `EVENT GUEST [ARRAY [LEG]]`.
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![self.name.as_str().into(), self.domain.clone().into()];
        if let Some(x) = &self.array {
            a.push(x.into());
            if let Some(l) = &self.leg {
                a.push(l.into());
            }
        }
        a
    }

    /// `MDGUARD_*` at unix time `now`; every value is printable (names were
    /// checked, the rest stripped of control characters).
    pub fn env(&self, now: u64) -> Vec<(&'static str, String)> {
        vec![
            ("MDGUARD_EVENT", self.name.as_str().to_string()),
            ("MDGUARD_DOMAIN", self.domain.clone()),
            ("MDGUARD_DOMID", self.domid.to_string()),
            ("MDGUARD_ARRAY", self.array.clone().unwrap_or_default()),
            ("MDGUARD_COMPONENT", self.leg.clone().unwrap_or_default()),
            (
                "MDGUARD_HEALTH",
                self.health.unwrap_or(Health::Unknown).as_str().to_string(),
            ),
            ("MDGUARD_REASON", self.reason.clone()),
            ("MDGUARD_MESSAGE", strip_controls(&self.message, 1024)),
            ("MDGUARD_TIME", now.to_string()),
        ]
    }
}

impl Job for HostEvent {
    fn name(&self) -> HookName {
        self.name
    }

    /// One guest's hooks run in order.
    fn queue(&self) -> String {
        format!("dom{}", self.domid)
    }

    fn args(&self) -> Vec<OsString> {
        HostEvent::args(self)
    }

    fn env(&self, now: u64) -> Vec<(&'static str, String)> {
        HostEvent::env(self, now)
    }

    fn what(&self) -> String {
        let mut s = format!("{} dom{} {}", self.name, self.domid, self.domain);
        for x in [&self.array, &self.leg].into_iter().flatten() {
            s.push(' ');
            s.push_str(x);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn array(health: &str, xvdc: &str, extra: &str) -> ArrayJson {
        ArrayJson::parse(
            format!(
                r#"{{"health":"{health}","level":"raid1","disks":2,"in_sync":1,"members":[["xvdb","in_sync"],["xvdc","{xvdc}"]]{extra}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn guest(agent: AgentState, arrays: &[(&str, ArrayJson)]) -> GuestStatus {
        let mut g = GuestStatus::new(5, "web".into());
        g.agent = agent;
        g.arrays = arrays
            .iter()
            .map(|(n, a)| (n.to_string(), a.clone()))
            .collect();
        g.health = Some(g.arrays.values().map(health_of).max().unwrap_or(Health::Ok));
        g
    }

    /// `EVENT ARGS...|REASON|HEALTH` per event.
    fn said(before: Option<&GuestStatus>, after: &GuestStatus) -> Vec<String> {
        diff(before, after)
            .iter()
            .map(|e| {
                let args: Vec<String> = e
                    .args()
                    .iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect();
                format!(
                    "{}|{}|{}",
                    args.join(" "),
                    e.reason,
                    e.health.map_or("-", |h| h.as_str())
                )
            })
            .collect()
    }

    const A: AgentState = AgentState::Answering;

    /// A leg fails, is rebuilt, and the array is whole again: each change
    /// once, and nothing for a look that changed nothing.
    #[test]
    fn a_fail_rebuild_and_return_each_said_once() {
        let ok = guest(A, &[("md0", array("ok", "in_sync", ""))]);
        assert!(said(None, &ok).is_empty(), "whole at first sight");
        let failed = guest(A, &[("md0", array("degraded", "faulty", ""))]);
        assert_eq!(
            said(Some(&ok), &failed),
            [
                "Fail web md0 xvdc|faulty|degraded",
                "DegradedArray web md0|degraded|degraded"
            ]
        );
        assert!(said(Some(&failed), &failed).is_empty(), "not per look");
        // the agent takes it out of md and brings it back: no second Fail
        let away = guest(A, &[("md0", array("degraded", "failed", ""))]);
        assert!(said(Some(&failed), &away).is_empty());
        let rebuilding = guest(
            A,
            &[(
                "md0",
                array("recovering", "rebuilding", r#","sync":["recover",12.5]"#),
            )],
        );
        assert_eq!(
            said(Some(&away), &rebuilding),
            ["RebuildStarted web md0|recover|recovering"]
        );
        let progress = guest(
            A,
            &[(
                "md0",
                array("recovering", "rebuilding", r#","sync":["recover",80.0]"#),
            )],
        );
        assert!(said(Some(&rebuilding), &progress).is_empty(), "progress");
        assert_eq!(
            said(Some(&progress), &ok),
            ["RebuildFinished web md0|ok|ok"]
        );
        // a leg that fails during its rebuild
        assert_eq!(
            said(Some(&progress), &failed),
            [
                "Fail web md0 xvdc|faulty|degraded",
                "RebuildFinished web md0|degraded|degraded",
                "DegradedArray web md0|degraded|degraded"
            ]
        );
    }

    #[test]
    fn degraded_at_first_sight_and_an_array_that_appears() {
        let failed = guest(A, &[("md0", array("degraded", "faulty", ""))]);
        assert_eq!(
            said(None, &failed),
            ["DegradedArray web md0|degraded|degraded"],
            "no Fail: nobody saw it work"
        );
        let two = guest(
            A,
            &[
                ("md0", array("degraded", "faulty", "")),
                ("md1", array("failed", "faulty", "")),
            ],
        );
        assert_eq!(
            said(Some(&failed), &two),
            ["DegradedArray web md1|failed|failed"]
        );
        // degraded to failed is not a second DegradedArray
        let worse = guest(A, &[("md0", array("failed", "faulty", ""))]);
        assert!(said(Some(&failed), &worse).is_empty());
    }

    #[test]
    fn the_agent_falls_silent_stops_and_comes_back() {
        let ok = |agent| guest(agent, &[("md0", array("ok", "in_sync", ""))]);
        let silent = ok(AgentState::Silent);
        assert_eq!(said(Some(&ok(A)), &silent), ["AgentSilent web|silent|ok"]);
        assert!(said(Some(&silent), &silent).is_empty());
        assert!(
            said(Some(&silent), &ok(AgentState::Stopped)).is_empty(),
            "down is down"
        );
        assert_eq!(said(Some(&silent), &ok(A)), ["AgentBack web||ok"]);
        assert_eq!(
            said(Some(&ok(AgentState::NotAsked)), &ok(AgentState::Stopped)),
            ["AgentSilent web|stopped|ok"]
        );
        assert_eq!(
            said(Some(&ok(AgentState::Stopped)), &ok(A)),
            ["AgentBack web||ok"]
        );
        // silent at first sight (its first ping); not asked yet says nothing
        assert_eq!(said(None, &silent), ["AgentSilent web|silent|ok"]);
        assert!(said(None, &ok(AgentState::NotAsked)).is_empty());
        assert!(said(Some(&ok(AgentState::NotAsked)), &ok(A)).is_empty());
        // a domain that publishes nothing has no agent to lose
        let mut bare = GuestStatus::new(9, "bare".into());
        bare.agent = AgentState::Silent;
        assert!(said(None, &bare).is_empty());
    }

    #[test]
    fn refusals_and_flags_appear_once() {
        let ok = guest(A, &[("md0", array("degraded", "faulty", ""))]);
        let refused = guest(
            A,
            &[(
                "md0",
                array(
                    "degraded",
                    "faulty",
                    r#","refused":[["xvdc","split-brain"]]"#,
                ),
            )],
        );
        assert_eq!(
            said(Some(&ok), &refused),
            ["Refused web md0 xvdc|split-brain|degraded"]
        );
        assert!(said(Some(&refused), &refused).is_empty());
        let other = guest(
            A,
            &[(
                "md0",
                array(
                    "degraded",
                    "faulty",
                    r#","refused":[["xvdc","older-history"]]"#,
                ),
            )],
        );
        assert_eq!(
            said(Some(&refused), &other),
            ["Refused web md0 xvdc|older-history|degraded"],
            "another reason is another refusal"
        );
        let whole = guest(A, &[("md0", array("ok", "in_sync", ""))]);
        let flagged = guest(
            A,
            &[(
                "md0",
                array("ok", "in_sync", r#","flags":["flapping","stalled"]"#),
            )],
        );
        assert_eq!(
            said(Some(&whole), &flagged),
            [
                "Flapping web md0||degraded",
                "Stalled web md0||degraded",
                "DegradedArray web md0|degraded|degraded"
            ]
        );
    }

    /// What a hostile guest publishes reaches no argument as an option or a
    /// line: names outside the schema's rule are skipped, codes stripped.
    #[test]
    fn hostile_names_are_skipped_and_values_clean() {
        let before = guest(
            A,
            &[
                ("md0", array("ok", "in_sync", "")),
                ("-rf", array("ok", "in_sync", "")),
            ],
        );
        let mut after = guest(
            A,
            &[
                ("md0", array("ok", "in_sync", "")),
                ("-rf", array("degraded", "faulty", "")),
            ],
        );
        let bad = ArrayJson::parse(
            br#"{"health":"degraded","level":"raid1","disks":2,"in_sync":1,"members":[["xvdb","in_sync"],["--help","faulty"],["xvdc","faulty"],["xvdc","in_sync"]],"refused":[["xvdc","a\nSubject: forged"],["../x","y"]],"sync":["re\u001bcover",1]}"#,
        )
        .unwrap();
        let mut before2 = before.clone();
        before2.arrays.insert(
            "md2".into(),
            ArrayJson::parse(
                br#"{"health":"ok","level":"raid1","disks":2,"in_sync":2,"members":[["--help","in_sync"],["xvdc","in_sync"]]}"#,
            )
            .unwrap(),
        );
        after.arrays.insert("md2".into(), bad);
        after.name = "web\nSubject: x".into();
        let evs = diff(Some(&before2), &after);
        let names: Vec<String> = evs
            .iter()
            .map(|e| format!("{} {:?} {:?} {:?}", e.name, e.array, e.leg, e.reason))
            .collect();
        assert_eq!(
            names,
            [
                "Fail Some(\"md2\") Some(\"xvdc\") \"faulty\"",
                "Refused Some(\"md2\") Some(\"xvdc\") \"aSubject: forged\"",
                "DegradedArray Some(\"md2\") None \"degraded\""
            ],
            "{evs:?}"
        );
        for e in &evs {
            assert_eq!(e.domain, "webSubject: x");
            for (_, v) in e.env(0) {
                assert!(!v.chars().any(char::is_control), "{v:?}");
            }
            for a in e.args() {
                assert!(!a.to_string_lossy().starts_with('-'), "{a:?}");
            }
        }
    }

    #[test]
    fn arguments_and_environment() {
        let e = HostEvent {
            name: HookName::Fail,
            domid: 5,
            domain: "web".into(),
            array: Some("md0".into()),
            leg: Some("xvdc".into()),
            reason: "faulty".into(),
            health: Some(Health::Degraded),
            message: "dom5 web: md0: leg xvdc faulty (was in_sync)".into(),
        };
        assert_eq!(e.args(), ["Fail", "web", "md0", "xvdc"]);
        let env: BTreeMap<&str, String> = e.env(1_700_000_000).into_iter().collect();
        assert_eq!(env["MDGUARD_EVENT"], "Fail");
        assert_eq!(env["MDGUARD_DOMAIN"], "web");
        assert_eq!(env["MDGUARD_DOMID"], "5");
        assert_eq!(env["MDGUARD_ARRAY"], "md0");
        assert_eq!(env["MDGUARD_COMPONENT"], "xvdc");
        assert_eq!(env["MDGUARD_HEALTH"], "degraded");
        assert_eq!(env["MDGUARD_REASON"], "faulty");
        assert_eq!(env["MDGUARD_TIME"], "1700000000");
        assert_eq!(Job::queue(&e), "dom5");
        assert_eq!(e.what(), "Fail dom5 web md0 xvdc");
        let silent = HostEvent {
            name: HookName::AgentSilent,
            array: None,
            leg: None,
            ..e
        };
        assert_eq!(silent.args(), ["AgentSilent", "web"]);
        assert_eq!(silent.env(0)[3], ("MDGUARD_ARRAY", String::new()));
        // every dom0 event is one of dom0's names
        for n in HookName::DOM0 {
            assert_eq!(HookName::parse(n.as_str()), Some(n));
        }
    }
}
