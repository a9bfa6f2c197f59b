//! What a hook is told: the event's name (mdadm --monitor's where it has one,
//! mdguard's own otherwise), the array, the component, and the environment.
//! Pure. [`HookEvent::from_event`] is the one place an engine [`Event`] becomes
//! a hook; [`MdWatch`] adds the two mdadm events that only a change in md's own
//! state tells (an array first seen degraded, a leg back in sync).

use crate::heal::{Attempt, Event};
use crate::md::model::{Array, Health};
use crate::text::strip_controls;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;

/// A hook's event name, its first argument and `MDGUARD_EVENT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HookName {
    /// mdadm's: a leg md marked faulty (component given).
    Fail,
    /// mdadm's: an array degraded (or failed) when mdguard first sees it.
    DegradedArray,
    /// mdadm's: a recovery or resync started onto a leg.
    RebuildStarted,
    /// mdadm's: it ended (the health after it in `MDGUARD_HEALTH`).
    RebuildFinished,
    /// mdadm's: a leg that was not in sync is in sync again (component).
    SpareActive,
    /// mdguard's: a failed leg answers and its superblock proves it belongs
    /// (or a new node carries the array's superblock).
    LegReturned,
    /// mdguard's: the leg was added back (how, in `MDGUARD_REASON`).
    ReAdded,
    /// mdguard's: a leg answers but its superblock does not prove it belongs;
    /// it is left alone (the reason's code in `MDGUARD_REASON`).
    Refused,
    /// mdguard's: a leg that belongs could not be added and is left for an
    /// admin (full recovery off, md refused it, no bitmap, ...).
    NeedsAdmin,
    /// mdguard's: a leg keeps failing soon after each re-add; no more re-adds.
    Flapping,
    /// mdguard's: the array's writes hang.
    Stalled,
    /// mdguard's: they flow again.
    WritesFlow,
    /// dom0's (`host run`): a guest's agent that published stopped answering
    /// its pings, or said it stopped (`host status`'s `silent`, `stopped`).
    AgentSilent,
    /// dom0's: it answers again.
    AgentBack,
}

impl HookName {
    /// Every name, the agent's and dom0's.
    pub const ALL: [HookName; 14] = [
        HookName::Fail,
        HookName::DegradedArray,
        HookName::RebuildStarted,
        HookName::RebuildFinished,
        HookName::SpareActive,
        HookName::LegReturned,
        HookName::ReAdded,
        HookName::Refused,
        HookName::NeedsAdmin,
        HookName::Flapping,
        HookName::Stalled,
        HookName::WritesFlow,
        HookName::AgentSilent,
        HookName::AgentBack,
    ];

    /// What the agent (`mdguard run`, `[hooks]`) runs a hook on.
    pub const GUEST: [HookName; 12] = [
        HookName::Fail,
        HookName::DegradedArray,
        HookName::RebuildStarted,
        HookName::RebuildFinished,
        HookName::SpareActive,
        HookName::LegReturned,
        HookName::ReAdded,
        HookName::Refused,
        HookName::NeedsAdmin,
        HookName::Flapping,
        HookName::Stalled,
        HookName::WritesFlow,
    ];

    /// What dom0's service (`mdguard host run --hook`) runs a hook on: the
    /// changes it sees in a guest's report, and its agent's liveness
    /// ([`crate::report::host::events`]).
    pub const DOM0: [HookName; 9] = [
        HookName::AgentSilent,
        HookName::AgentBack,
        HookName::Fail,
        HookName::DegradedArray,
        HookName::RebuildStarted,
        HookName::RebuildFinished,
        HookName::Refused,
        HookName::Flapping,
        HookName::Stalled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HookName::Fail => "Fail",
            HookName::DegradedArray => "DegradedArray",
            HookName::RebuildStarted => "RebuildStarted",
            HookName::RebuildFinished => "RebuildFinished",
            HookName::SpareActive => "SpareActive",
            HookName::LegReturned => "LegReturned",
            HookName::ReAdded => "ReAdded",
            HookName::Refused => "Refused",
            HookName::NeedsAdmin => "NeedsAdmin",
            HookName::Flapping => "Flapping",
            HookName::Stalled => "Stalled",
            HookName::WritesFlow => "WritesFlow",
            HookName::AgentSilent => "AgentSilent",
            HookName::AgentBack => "AgentBack",
        }
    }

    /// The name exactly as [`HookName::as_str`] spells it.
    pub fn parse(s: &str) -> Option<HookName> {
        HookName::ALL.into_iter().find(|n| n.as_str() == s)
    }
}

impl fmt::Display for HookName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event for a hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookEvent {
    pub name: HookName,
    /// The md array's kernel name (`md0`).
    pub array: String,
    /// The leg's kernel name (`xvdc1`), when the event is about one.
    pub component: Option<String>,
    /// A short code (`split-brain`, `re-add`, `recover`, ...) or empty.
    pub reason: String,
    /// The log line of the event.
    pub message: String,
    /// The array's health as mdguard reports it then (filled in by the daemon,
    /// which has md's state).
    pub health: Option<Health>,
}

/// `/dev/<name>`, with sysfs's `!` for a `/` in a name (`cciss!c0d0`).
fn dev_path(name: &str) -> String {
    format!("/dev/{}", name.replace('!', "/"))
}

impl HookEvent {
    fn new(
        name: HookName,
        array: &str,
        component: Option<&str>,
        reason: &str,
        e: &Event,
    ) -> HookEvent {
        HookEvent {
            name,
            array: array.to_string(),
            component: component.map(str::to_string),
            reason: reason.to_string(),
            message: e.to_string(),
            health: None,
        }
    }

    /// The engine's event as a hook's, if it is one (the table in
    /// docs/hooks.md). Everything else (probes, throttling, log-only notes)
    /// runs no hook.
    pub fn from_event(e: &Event) -> Option<HookEvent> {
        use HookName as H;
        let h = |name, array: &str, dev: Option<&str>, reason: &str| {
            Some(HookEvent::new(name, array, dev, reason, e))
        };
        match e {
            Event::LegFailed { array, device, flap, .. } => {
                let why = if flap.is_some() { "failed-again" } else { "" };
                h(H::Fail, array, Some(device), why)
            }
            Event::Flapping { array, device, .. } => h(H::Flapping, array, Some(device), ""),
            Event::RecoveryStarted { array, action } => h(H::RebuildStarted, array, None, action),
            Event::RecoveryFinished { array, health, .. } => {
                h(H::RebuildFinished, array, None, health.as_str())
            }
            Event::Proven { array, device, .. } => h(H::LegReturned, array, Some(device), ""),
            Event::NewDevice { array, device, .. } => {
                h(H::LegReturned, array, Some(device), "new-device")
            }
            Event::ReAdded { array, device, attempt } => {
                let how = match attempt {
                    Attempt::ReAdd => "re-add",
                    Attempt::InSlot { .. } => "in-slot",
                    Attempt::Spare => "full-recovery",
                };
                h(H::ReAdded, array, Some(device), how)
            }
            Event::Refused { array, device, reason }
            | Event::CandidateRefused { array, device, reason } => {
                h(H::Refused, array, Some(device), reason.code())
            }
            Event::FullRecoveryOff { array, device, .. } => {
                h(H::NeedsAdmin, array, Some(device), "full-recovery-off")
            }
            Event::FullCopyOff { array, device } => {
                h(H::NeedsAdmin, array, Some(device), "no-bitmap")
            }
            Event::AddFailed { array, device, .. } => {
                h(H::NeedsAdmin, array, Some(device), "add-failed")
            }
            Event::NotSameHistory { array, device, .. } => {
                h(H::NeedsAdmin, array, Some(device), "not-same-history")
            }
            Event::Stalled { array, .. } => h(H::Stalled, array, None, ""),
            Event::WritesFlow { array } => h(H::WritesFlow, array, None, ""),
            Event::BackInArray { .. }
            | Event::Copied { .. }
            | Event::WriteErrorCleared { .. }
            // dom0's coordinator's turns: its own business, in the log
            | Event::AskTurn { .. }
            | Event::TurnGranted { .. }
            | Event::TurnQueued { .. }
            | Event::NoTurn { .. }
            | Event::WriteErrorNotCleared { .. }
            | Event::ProbeHint
            | Event::StillUnusable { .. }
            | Event::ReAddRefused { .. }
            | Event::RemoveRefused { .. }
            | Event::FullRecovery { .. }
            | Event::FailRefused { .. }
            | Event::SpeedNotSet { .. }
            | Event::NotACandidate { .. }
            | Event::ForeignDevice { .. }
            | Event::MakingRoom { .. }
            | Event::FailingForReconnect { .. }
            | Event::ReconnectFailed { .. }
            // said again every probe.max_interval_s while it lasts: a log line
            | Event::ReconnectBlocked { .. }
            | Event::HistoryMoved { .. }
            | Event::WitnessUnreadable { .. }
            | Event::RemovingForFullCopy { .. }
            | Event::FullCopyNeeded { .. }
            | Event::ConfiguredArraysMissing { .. }
            | Event::Throttled { .. } => None,
        }
    }

    /// The arguments after the program, mdadm's way: `EVENT MD-DEVICE
    /// [COMPONENT]` (`Fail /dev/md0 /dev/xvdc1`).
    pub fn args(&self) -> Vec<OsString> {
        let mut a = vec![self.name.as_str().into(), dev_path(&self.array).into()];
        if let Some(c) = &self.component {
            a.push(dev_path(c).into());
        }
        a
    }

    /// `MDGUARD_*` for the program's environment, at unix time `now`. Values
    /// lose their control characters (a hostile name cannot forge a line in
    /// the mail a hook writes).
    pub fn env(&self, now: u64) -> Vec<(&'static str, String)> {
        let clean = |s: &str| strip_controls(s, 1024);
        vec![
            ("MDGUARD_EVENT", self.name.as_str().to_string()),
            ("MDGUARD_ARRAY", clean(&self.array)),
            ("MDGUARD_DEVICE", clean(&dev_path(&self.array))),
            (
                "MDGUARD_COMPONENT",
                self.component
                    .as_deref()
                    .map_or(String::new(), |c| clean(&dev_path(c))),
            ),
            (
                "MDGUARD_HEALTH",
                self.health.unwrap_or(Health::Unknown).as_str().to_string(),
            ),
            ("MDGUARD_REASON", clean(&self.reason)),
            ("MDGUARD_MESSAGE", clean(&self.message)),
            ("MDGUARD_TIME", now.to_string()),
        ]
    }
}

impl super::runner::Job for HookEvent {
    fn name(&self) -> HookName {
        self.name
    }

    /// One array's hooks run in order.
    fn queue(&self) -> String {
        self.array.clone()
    }

    fn args(&self) -> Vec<OsString> {
        HookEvent::args(self)
    }

    fn env(&self, now: u64) -> Vec<(&'static str, String)> {
        HookEvent::env(self, now)
    }

    fn what(&self) -> String {
        let mut s = format!("{} {}", self.name, self.array);
        if let Some(c) = &self.component {
            s.push(' ');
            s.push_str(c);
        }
        s
    }
}

/// The mdadm events md's own state tells and the engine does not: an array
/// degraded when first seen (`DegradedArray`: at start, or an array assembled
/// degraded later) and a leg that was not in sync and is (`SpareActive`). Fed
/// every snapshot of the managed arrays; the first one sets what is known.
#[derive(Debug, Clone, Default)]
pub struct MdWatch {
    seen: BTreeSet<String>,
    in_sync: BTreeMap<(String, String), bool>,
}

impl MdWatch {
    pub fn observe(&mut self, arrays: &[Array]) -> Vec<HookEvent> {
        let mut out = Vec::new();
        let mut now_in_sync = BTreeMap::new();
        for a in arrays {
            if self.seen.insert(a.name.clone())
                && matches!(a.health, Health::Degraded | Health::Failed)
            {
                out.push(HookEvent {
                    name: HookName::DegradedArray,
                    array: a.name.clone(),
                    component: None,
                    reason: a.health.as_str().to_string(),
                    message: format!("{}: {} ({})", a.name, a.health, a.reason),
                    health: Some(a.health),
                });
            }
            for m in &a.members {
                let key = (a.name.clone(), m.device.clone());
                let sync = m.in_sync() && !m.faulty && m.slot.is_some();
                if sync && self.in_sync.get(&key) == Some(&false) {
                    out.push(HookEvent {
                        name: HookName::SpareActive,
                        array: a.name.clone(),
                        component: Some(m.device.clone()),
                        reason: String::new(),
                        message: format!("{}: {} is in sync", a.name, m.device),
                        health: Some(a.health),
                    });
                }
                now_in_sync.insert(key, sync);
            }
        }
        self.in_sync = now_in_sync;
        self.seen.retain(|n| arrays.iter().any(|a| &a.name == n));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heal::{Failure, Flap, Refusal};
    use crate::md::model::Member;

    #[test]
    fn names_round_trip_and_are_mdadms_where_it_has_them() {
        for n in HookName::ALL {
            assert_eq!(HookName::parse(n.as_str()), Some(n));
        }
        assert_eq!(HookName::parse("fail"), None, "exact spelling");
        // mdadm(8)'s words
        for w in [
            "Fail",
            "DegradedArray",
            "RebuildStarted",
            "RebuildFinished",
            "SpareActive",
        ] {
            assert!(HookName::parse(w).is_some(), "{w}");
        }
    }

    #[test]
    fn engine_events_map_to_hooks() {
        let s = |x: &str| x.to_string();
        // the event, and the hook's (name, component, reason), if any
        type Want<'a> = Option<(&'a str, Option<&'a str>, &'a str)>;
        let cases: Vec<(Event, Want)> = vec![
            (
                Event::LegFailed {
                    array: s("md0"),
                    device: s("xvdc1"),
                    flap: None,
                    probe_in: 2000,
                },
                Some(("Fail", Some("xvdc1"), "")),
            ),
            (
                Event::LegFailed {
                    array: s("md0"),
                    device: s("xvdc1"),
                    flap: Some(Flap {
                        after: 1000,
                        count: 1,
                    }),
                    probe_in: 2000,
                },
                Some(("Fail", Some("xvdc1"), "failed-again")),
            ),
            (
                Event::Proven {
                    array: s("md0"),
                    device: s("xvdc1"),
                    jitter: 0,
                },
                Some(("LegReturned", Some("xvdc1"), "")),
            ),
            (
                Event::ReAdded {
                    array: s("md0"),
                    device: s("xvdc1"),
                    attempt: Attempt::Spare,
                },
                Some(("ReAdded", Some("xvdc1"), "full-recovery")),
            ),
            (
                Event::RecoveryStarted {
                    array: s("md0"),
                    action: "recover",
                },
                Some(("RebuildStarted", None, "recover")),
            ),
            (
                Event::RecoveryFinished {
                    array: s("md0"),
                    after: 5000,
                    health: Health::Ok,
                },
                Some(("RebuildFinished", None, "ok")),
            ),
            (
                Event::Refused {
                    array: s("md0"),
                    device: s("xvdc1"),
                    reason: Refusal::NoWitness,
                },
                Some(("Refused", Some("xvdc1"), "no-witness")),
            ),
            (
                Event::NotSameHistory {
                    array: s("md0"),
                    device: s("xvdc1"),
                    failure: Failure::Errno(crate::heal::Errno::EINVAL),
                },
                Some(("NeedsAdmin", Some("xvdc1"), "not-same-history")),
            ),
            (
                Event::Flapping {
                    array: s("md0"),
                    device: s("xvdc1"),
                    flaps: 5,
                },
                Some(("Flapping", Some("xvdc1"), "")),
            ),
            (
                Event::Stalled {
                    array: s("md0"),
                    after: 60_000,
                },
                Some(("Stalled", None, "")),
            ),
            (
                Event::WritesFlow { array: s("md0") },
                Some(("WritesFlow", None, "")),
            ),
            (Event::ProbeHint, None),
            (
                Event::BackInArray {
                    array: s("md0"),
                    device: s("xvdc1"),
                },
                None,
            ),
        ];
        for (e, want) in cases {
            let got = HookEvent::from_event(&e);
            match (got, want) {
                (None, None) => {}
                (Some(h), Some((name, comp, reason))) => {
                    assert_eq!(h.name.as_str(), name, "{e:?}");
                    assert_eq!(h.component.as_deref(), comp, "{e:?}");
                    assert_eq!(h.reason, reason, "{e:?}");
                    assert_eq!(h.message, e.to_string());
                    assert_eq!(h.array, "md0");
                }
                (got, want) => panic!("{e:?}: {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn arguments_and_environment_are_mdadms_and_clean() {
        let mut h = HookEvent::from_event(&Event::Refused {
            array: "md0".into(),
            device: "cciss!c0d0p1".into(),
            reason: Refusal::NoSuperblock,
        })
        .unwrap();
        h.health = Some(Health::Degraded);
        h.message.push_str("\nSubject: forged");
        assert_eq!(h.args(), ["Refused", "/dev/md0", "/dev/cciss/c0d0p1"]);
        let env: BTreeMap<&str, String> = h.env(1_700_000_000).into_iter().collect();
        assert_eq!(env["MDGUARD_EVENT"], "Refused");
        assert_eq!(env["MDGUARD_ARRAY"], "md0");
        assert_eq!(env["MDGUARD_DEVICE"], "/dev/md0");
        assert_eq!(env["MDGUARD_COMPONENT"], "/dev/cciss/c0d0p1");
        assert_eq!(env["MDGUARD_HEALTH"], "degraded");
        assert_eq!(env["MDGUARD_REASON"], "no-superblock");
        assert_eq!(env["MDGUARD_TIME"], "1700000000");
        assert!(!env["MDGUARD_MESSAGE"].contains('\n'));
        assert!(env["MDGUARD_MESSAGE"].ends_with("superblockSubject: forged"));
        let h = HookEvent::from_event(&Event::Stalled {
            array: "md1".into(),
            after: 1,
        })
        .unwrap();
        assert_eq!(h.args(), ["Stalled", "/dev/md1"]);
        assert_eq!(h.env(0)[3], ("MDGUARD_COMPONENT", String::new()));
    }

    fn raid1(name: &str, legs: &[(&str, Option<u32>, &str)]) -> Array {
        let mut a = Array::named(name);
        a.level = Some("raid1".into());
        a.array_state = Some("clean".into());
        a.raid_disks = Some(2);
        a.members = legs
            .iter()
            .map(|(d, s, st)| Member::new(d, *s, &[st]))
            .collect();
        a.degraded = Some(2 - a.in_sync_count());
        a.derive_health();
        a
    }

    #[test]
    fn md_watch_says_degraded_at_first_sight_and_legs_back_in_sync() {
        let mut w = MdWatch::default();
        let whole = raid1(
            "md0",
            &[("xvdb", Some(0), "in_sync"), ("xvdc", Some(1), "in_sync")],
        );
        let degraded = raid1(
            "md1",
            &[("xvdd", Some(0), "in_sync"), ("xvde", None, "faulty")],
        );
        let first = w.observe(&[whole.clone(), degraded.clone()]);
        assert_eq!(first.len(), 1, "{first:?}");
        assert_eq!(
            (first[0].name, first[0].array.as_str()),
            (HookName::DegradedArray, "md1")
        );
        assert_eq!(first[0].health, Some(Health::Degraded));
        // still degraded: said once
        assert!(w.observe(&[whole.clone(), degraded.clone()]).is_empty());
        // md1's leg rebuilds, then is in sync
        let rebuilding = raid1(
            "md1",
            &[("xvdd", Some(0), "in_sync"), ("xvde", Some(1), "spare")],
        );
        assert!(w.observe(&[whole.clone(), rebuilding]).is_empty());
        let back = raid1(
            "md1",
            &[("xvdd", Some(0), "in_sync"), ("xvde", Some(1), "in_sync")],
        );
        let ev = w.observe(&[whole.clone(), back.clone()]);
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!(ev[0].name, HookName::SpareActive);
        assert_eq!(ev[0].component.as_deref(), Some("xvde"));
        assert_eq!(ev[0].args(), ["SpareActive", "/dev/md1", "/dev/xvde"]);
        // an array that goes and comes back degraded is new again
        assert!(w.observe(std::slice::from_ref(&whole)).is_empty());
        let ev = w.observe(&[whole, degraded]);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].name, HookName::DegradedArray);
    }
}
