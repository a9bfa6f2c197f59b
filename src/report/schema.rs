//! mdguard's xenstore contract: the keys, the array JSON, dom0's control keys, and
//! strict parsers for every value read back (all of it is untrusted input). What to
//! write and when is [`super::publisher`]. The full contract, for admins and for
//! dom0 tooling, is `docs/xenstore-schema.md`; this is its summary.
//!
//! # Schema (version 1)
//!
//! Relative to the guest's home (`/local/domain/<domid>/`). The guest writes under
//! its own `data/mdguard/`:
//!
//! - `version` (`1`), `health` (the worst array: `ok` < `recovering` < `unknown` <
//!   `degraded` < `failed`; `ok` with no array), `arrays/<mdX>` (one array as
//!   compact JSON, at most [`ARRAY_JSON_MAX`] bytes, see [`ArrayJson`]), `updated`
//!   (unix seconds of the last change), `pong` (the last ping token, echoed).
//! - Only on change, in one transaction; resync progress alone at most every
//!   `report.progress_interval_s` (config default 10 s); everything again after
//!   xenstored restarts ([`super::publisher::Publisher::reset`]).
//!
//! dom0 writes the guest's `control/mdguard/` (owner dom0, guest read-only:
//! permissions `n0`, `r<domid>`), which the agent watches:
//!
//! - `budget_kbps`: resync ceiling for the whole guest, `1..=`[`BUDGET_MAX_KBPS`];
//!   empty or `0`: none ([`parse_budget_kbps`]);
//! - `ping`: a token `[A-Za-z0-9._:-]{1,64}` ([`parse_token`]) echoed to
//!   `data/mdguard/pong`;
//! - `probe`: a token; each new one means "storage is back, probe failed legs now";
//! - `coordinator`, `grant`: resync admission with `mdguard host run`; the
//!   guest's side of it is `data/mdguard/request` ([`super::admission`]).
//!
//! Array JSON example (`data/mdguard/arrays/md0`):
//! `{"health":"recovering","level":"raid1","disks":2,"in_sync":1,"members":[["xvdb","in_sync"],["xvdc","spare"]],"sync":["recover",42.5]}`
//! plus optional `"flags":["flapping","stalled"]` and `"more_members":N` when
//! the member list had to be cut to stay under 1 KiB.
//!
//! `mdguard host status` maps the worst guest to a nagios code
//! ([`Health::check_code`]): ok 0, recovering 1, degraded/failed 2, unknown or
//! unreachable 3.

use super::admission::{Answer, CTL_COORDINATOR, CTL_GRANT};
use crate::text::{printable, printable_str, strip_controls};
use serde::{Deserialize, Serialize};
use std::fmt;

pub const SCHEMA_VERSION: u32 = 1;
/// Relative to the guest's home.
pub const DATA_DIR: &str = "data/mdguard";
pub const CONTROL_DIR: &str = "control/mdguard";
pub const KEY_VERSION: &str = "version";
pub const KEY_HEALTH: &str = "health";
pub const KEY_ARRAYS: &str = "arrays";
pub const KEY_UPDATED: &str = "updated";
pub const KEY_PONG: &str = "pong";
/// Written (unix time) by an agent that stops cleanly; removed when one starts.
pub const KEY_STOPPED: &str = "stopped";
pub const CTL_BUDGET: &str = "budget_kbps";
pub const CTL_PING: &str = "ping";
pub const CTL_PROBE: &str = "probe";
/// Every key dom0 writes under `control/mdguard/` that the agent reads (the
/// admission keys, `coordinator` and `grant`, are [`super::admission`]'s).
pub const CONTROL_KEYS: [&str; 5] = [CTL_BUDGET, CTL_PING, CTL_PROBE, CTL_COORDINATOR, CTL_GRANT];

/// Hard cap on one array's JSON.
pub const ARRAY_JSON_MAX: usize = 1023;
/// Longest value we accept from any key we read (xenstored's default
/// per-value quota for guests is 2048).
pub const VALUE_MAX: usize = 2048;
pub const TOKEN_MAX: usize = 64;
pub const BUDGET_MAX_KBPS: u64 = 100_000_000;
pub const NAME_MAX: usize = 32;

// ---------------------------------------------------------------- health

/// The same health words as `mdguard status` (one type for both).
pub use crate::md::model::Health;

impl Health {
    /// Strict: exactly one of the five words.
    pub fn parse(v: &[u8]) -> Result<Health, ParseError> {
        std::str::from_utf8(v)
            .ok()
            .and_then(Health::from_word)
            .ok_or_else(|| ParseError::BadValue(format!("health {:?}", printable(v, 24))))
    }
}

// ---------------------------------------------------------------- parse errors

/// Why a value read from xenstore was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    TooLong { len: usize, max: usize },
    Empty,
    NotUtf8,
    BadNumber(String),
    OutOfRange { value: u64, max: u64 },
    BadToken(String),
    BadValue(String),
    BadJson(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::TooLong { len, max } => write!(f, "value of {len} bytes (max {max})"),
            ParseError::Empty => f.write_str("empty value"),
            ParseError::NotUtf8 => f.write_str("value is not UTF-8"),
            ParseError::BadNumber(s) => write!(f, "not a decimal number: {s}"),
            ParseError::OutOfRange { value, max } => write!(f, "{value} out of range (max {max})"),
            ParseError::BadToken(s) => write!(f, "bad token: {s}"),
            ParseError::BadValue(s) => write!(f, "bad value: {s}"),
            ParseError::BadJson(s) => write!(f, "bad JSON: {s}"),
        }
    }
}

impl std::error::Error for ParseError {}

fn bounded(v: &[u8], max: usize) -> Result<(), ParseError> {
    if v.len() > max {
        return Err(ParseError::TooLong { len: v.len(), max });
    }
    Ok(())
}

/// Strict unsigned decimal: digits only, no sign, no spaces, no leading zeros
/// (except "0"), at most 20 digits.
pub fn parse_u64(v: &[u8]) -> Result<u64, ParseError> {
    bounded(v, 20)?;
    if v.is_empty() {
        return Err(ParseError::Empty);
    }
    let bad = || ParseError::BadNumber(printable(v, 24));
    if !v.iter().all(u8::is_ascii_digit) || (v.len() > 1 && v[0] == b'0') {
        return Err(bad());
    }
    std::str::from_utf8(v)
        .map_err(|_| bad())?
        .parse()
        .map_err(|_| bad())
}

/// `control/mdguard/budget_kbps`: `None` for "no budget" (empty or 0).
pub fn parse_budget_kbps(v: &[u8]) -> Result<Option<u64>, ParseError> {
    if v.is_empty() {
        return Ok(None);
    }
    let n = parse_u64(v)?;
    if n > BUDGET_MAX_KBPS {
        return Err(ParseError::OutOfRange {
            value: n,
            max: BUDGET_MAX_KBPS,
        });
    }
    Ok(if n == 0 { None } else { Some(n) })
}

/// Ping and probe tokens: `[A-Za-z0-9._:-]{1,64}`.
pub fn parse_token(v: &[u8]) -> Result<String, ParseError> {
    bounded(v, TOKEN_MAX)?;
    if v.is_empty() {
        return Err(ParseError::Empty);
    }
    if !v
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        return Err(ParseError::BadToken(printable(v, TOKEN_MAX)));
    }
    Ok(String::from_utf8(v.to_vec()).expect("ASCII checked"))
}

/// An array or device name as used in a key: `[A-Za-z0-9_.-]{1,32}`, not `.`/`..`.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= NAME_MAX
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

// ---------------------------------------------------------------- control keys

/// What a change under `control/mdguard/` means for the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlEvent {
    /// New dom0 budget (`None`: removed / no budget).
    Budget(Option<u64>),
    /// Answer by writing the token to `data/mdguard/pong`.
    Ping(String),
    /// Probe faulty legs now.
    Probe(String),
    /// dom0's coordinator appeared (its token) or went away (`None`).
    Coordinator(Option<String>),
    /// dom0 answered a resync request.
    Answer(Answer),
}

/// Which control key a watch event path names, if any. Accepts relative
/// (`control/mdguard/ping`) and absolute (`/local/domain/5/control/mdguard/ping`)
/// event paths.
pub fn control_key(event_path: &str) -> Option<&'static str> {
    let rest = event_path.rsplit_once("control/mdguard/")?.1;
    CONTROL_KEYS.into_iter().find(|k| *k == rest)
}

/// Remembers the last control values seen and turns raw reads into events.
#[derive(Debug, Default, Clone)]
pub struct ControlState {
    budget: Option<Option<u64>>,
    ping: Option<String>,
    probe: Option<String>,
    coordinator: Option<Option<String>>,
    answer: Option<Answer>,
}

impl ControlState {
    /// `raw` is the key's value, `None` if it does not exist. Returns an event
    /// only when the parsed value differs from the last one seen.
    pub fn update(
        &mut self,
        key: &str,
        raw: Option<&[u8]>,
    ) -> Result<Option<ControlEvent>, ParseError> {
        match key {
            CTL_BUDGET => {
                let b = match raw {
                    None => None,
                    Some(v) => parse_budget_kbps(v)?,
                };
                if self.budget == Some(b) {
                    return Ok(None);
                }
                self.budget = Some(b);
                Ok(Some(ControlEvent::Budget(b)))
            }
            CTL_PING | CTL_PROBE => {
                let Some(v) = raw else { return Ok(None) };
                let t = parse_token(v)?;
                let slot = if key == CTL_PING {
                    &mut self.ping
                } else {
                    &mut self.probe
                };
                if slot.as_deref() == Some(t.as_str()) {
                    return Ok(None);
                }
                *slot = Some(t.clone());
                Ok(Some(if key == CTL_PING {
                    ControlEvent::Ping(t)
                } else {
                    ControlEvent::Probe(t)
                }))
            }
            CTL_COORDINATOR => {
                let c = raw.map(parse_token).transpose()?;
                if self.coordinator.as_ref() == Some(&c) {
                    return Ok(None);
                }
                // a first look that finds none is no news
                let first = self.coordinator.is_none();
                self.coordinator = Some(c.clone());
                Ok((!first || c.is_some()).then_some(ControlEvent::Coordinator(c)))
            }
            CTL_GRANT => {
                let Some(v) = raw else { return Ok(None) };
                let a = Answer::parse(v)?;
                if self.answer.as_ref() == Some(&a) {
                    return Ok(None);
                }
                self.answer = Some(a.clone());
                Ok(Some(ControlEvent::Answer(a)))
            }
            _ => Err(ParseError::BadValue(format!(
                "unknown control key {}",
                printable_str(key, 32)
            ))),
        }
    }
}

// ---------------------------------------------------------------- array summary

/// The health dom0 reads for an array: md's, made at least `degraded` when the
/// agent knows more. Writes that hang (`stalled`) freeze the guest, and a leg
/// that keeps failing (`flapping`) leaves the array without its mirror most of
/// the time, even at a moment md shows it whole: neither may read `ok`. The
/// flags say which.
pub fn reported_health(md: Health, flapping: bool, stalled: bool) -> Health {
    if flapping || stalled {
        md.max(Health::Degraded)
    } else {
        md
    }
}

/// What the md model hands the publisher for one array.
#[derive(Debug, Clone, PartialEq)]
pub struct ArraySummary {
    /// `md0`, `md127`, ...
    pub name: String,
    pub health: Health,
    /// `raid1`, ...
    pub level: String,
    pub raid_disks: u32,
    pub in_sync: u32,
    /// (device, state) e.g. ("xvdb", "in_sync"), ("xvdc", "faulty").
    pub members: Vec<(String, String)>,
    /// (action, percent done) while a resync/recovery/check runs.
    pub sync: Option<(String, f32)>,
    pub flapping: bool,
    pub stalled: bool,
    /// Legs mdguard will not add: (device, reason code).
    pub refused: Vec<(String, String)>,
}

/// The JSON stored in `data/mdguard/arrays/<mdX>`; also what dom0 parses back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArrayJson {
    pub health: Health,
    pub level: String,
    pub disks: u32,
    pub in_sync: u32,
    #[serde(default)]
    pub members: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<(String, f32)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub more_members: u32,
    /// Legs the agent will not add, each with its reason's code
    /// (`older-history`, `split-brain`, ...): an admin decides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<(String, String)>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl ArrayJson {
    pub fn from_summary(a: &ArraySummary) -> ArrayJson {
        let mut flags = Vec::new();
        if a.flapping {
            flags.push("flapping".to_string());
        }
        if a.stalled {
            flags.push("stalled".to_string());
        }
        ArrayJson {
            health: a.health,
            level: strip_controls(&a.level, 16),
            disks: a.raid_disks,
            in_sync: a.in_sync,
            members: a
                .members
                .iter()
                .map(|(d, s)| (strip_controls(d, NAME_MAX), strip_controls(s, 64)))
                .collect(),
            // One decimal: progress is stable text and compares cleanly.
            sync: a.sync.as_ref().map(|(act, pct)| {
                let p = if pct.is_finite() {
                    pct.clamp(0.0, 100.0)
                } else {
                    0.0
                };
                (strip_controls(act, 16), (p * 10.0).round() / 10.0)
            }),
            flags,
            more_members: 0,
            refused: a
                .refused
                .iter()
                .map(|(d, c)| (strip_controls(d, NAME_MAX), strip_controls(c, 32)))
                .collect(),
        }
    }

    /// Compact JSON, cut (members dropped from the end) to stay < 1 KiB.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut j = self.clone();
        loop {
            let v = serde_json::to_vec(&j).expect("plain data serializes");
            if v.len() <= ARRAY_JSON_MAX {
                return v;
            }
            if j.members.pop().is_some() {
                j.more_members += 1;
            } else if j.refused.pop().is_none() {
                return v;
            }
        }
    }

    /// Strict-enough parse of untrusted JSON from a guest.
    pub fn parse(v: &[u8]) -> Result<ArrayJson, ParseError> {
        bounded(v, VALUE_MAX)?;
        serde_json::from_slice(v).map_err(|e| ParseError::BadJson(e.to_string()))
    }

    /// The same JSON without progress, to tell "only progress moved".
    pub(crate) fn without_progress(&self) -> ArrayJson {
        let mut j = self.clone();
        if let Some((_, p)) = j.sync.as_mut() {
            *p = 0.0;
        }
        j
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn array(name: &str, health: Health, sync: Option<f32>) -> ArraySummary {
        ArraySummary {
            name: name.into(),
            health,
            level: "raid1".into(),
            raid_disks: 2,
            in_sync: if health == Health::Ok { 2 } else { 1 },
            members: vec![
                ("xvdb".into(), "in_sync".into()),
                (
                    "xvdc".into(),
                    if health == Health::Ok {
                        "in_sync"
                    } else {
                        "spare"
                    }
                    .into(),
                ),
            ],
            sync: sync.map(|p| ("recover".into(), p)),
            flapping: false,
            stalled: false,
            refused: vec![],
        }
    }

    #[test]
    fn stalled_or_flapping_never_reads_ok() {
        use Health::*;
        for (md, flapping, stalled, want) in [
            (Ok, false, false, Ok),
            (Ok, false, true, Degraded),
            (Ok, true, false, Degraded),
            (Recovering, true, false, Degraded),
            (Failed, false, true, Failed),
            (Unknown, false, false, Unknown),
        ] {
            assert_eq!(
                reported_health(md, flapping, stalled),
                want,
                "{md} {flapping} {stalled}"
            );
        }
    }

    #[test]
    fn array_json_is_compact_and_bounded() {
        let j = ArrayJson::from_summary(&array("md0", Health::Recovering, Some(42.46)));
        let s = String::from_utf8(j.to_bytes()).unwrap();
        assert_eq!(
            s,
            r#"{"health":"recovering","level":"raid1","disks":2,"in_sync":1,"members":[["xvdb","in_sync"],["xvdc","spare"]],"sync":["recover",42.5]}"#
        );
        let mut big = array("md9", Health::Degraded, None);
        big.members = (0..100)
            .map(|i| (format!("xvd{i:028}"), "in_sync,write_mostly".into()))
            .collect();
        big.flapping = true;
        let b = ArrayJson::from_summary(&big).to_bytes();
        assert!(b.len() <= ARRAY_JSON_MAX, "{}", b.len());
        let back = ArrayJson::parse(&b).unwrap();
        assert_eq!(back.members.len() as u32 + back.more_members, 100);
        assert_eq!(back.flags, vec!["flapping"]);
        // a refused leg and its reason ride along, kept after every member
        let mut refused = array("md0", Health::Degraded, None);
        refused.refused = vec![("xvdc".into(), "older-history".into())];
        let s = String::from_utf8(ArrayJson::from_summary(&refused).to_bytes()).unwrap();
        assert!(
            s.ends_with(r#","refused":[["xvdc","older-history"]]}"#),
            "{s}"
        );
        big.refused = vec![("xvdc".into(), "split-brain".into())];
        let back = ArrayJson::parse(&ArrayJson::from_summary(&big).to_bytes()).unwrap();
        assert_eq!(
            back.refused,
            vec![("xvdc".to_string(), "split-brain".to_string())]
        );
        // NaN / out of range progress cannot poison the JSON.
        let j = ArrayJson::from_summary(&array("md0", Health::Recovering, Some(f32::NAN)));
        assert_eq!(j.sync.unwrap().1, 0.0);
    }

    #[test]
    fn strict_value_parsers() {
        assert_eq!(parse_budget_kbps(b"5000"), Ok(Some(5000)));
        assert_eq!(parse_budget_kbps(b""), Ok(None));
        assert_eq!(parse_budget_kbps(b"0"), Ok(None));
        for bad in [
            &b"-1"[..],
            b"+5",
            b" 5",
            b"5\n",
            b"05",
            b"1e3",
            b"0x10",
            b"99999999999999999999999",
        ] {
            assert!(parse_budget_kbps(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            parse_budget_kbps(b"100000001"),
            Err(ParseError::OutOfRange { .. })
        ));
        assert_eq!(parse_token(b"abc-1.2:3_x").unwrap(), "abc-1.2:3_x");
        for bad in [&b""[..], b"a b", b"a/b", b"\xff", &[b'a'; 65]] {
            assert!(parse_token(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Health::parse(b"degraded"), Ok(Health::Degraded));
        assert!(Health::parse(b"OK").is_err());
        assert!(Health::parse(b"ok\n").is_err());
        assert_eq!(parse_u64(b"0"), Ok(0));
        assert_eq!(parse_u64(b"18446744073709551615"), Ok(u64::MAX));
        assert!(parse_u64(b"18446744073709551616").is_err());
    }

    #[test]
    fn the_coordinator_and_its_answers_are_news_only_when_they_change() {
        let mut s = ControlState::default();
        // no coordinator at the first look: nothing to say
        assert_eq!(s.update(CTL_COORDINATOR, None), Ok(None));
        assert_eq!(
            s.update(CTL_COORDINATOR, Some(b"c1")),
            Ok(Some(ControlEvent::Coordinator(Some("c1".into()))))
        );
        assert_eq!(s.update(CTL_COORDINATOR, Some(b"c1")), Ok(None));
        assert_eq!(
            s.update(CTL_COORDINATOR, None),
            Ok(Some(ControlEvent::Coordinator(None)))
        );
        assert!(s.update(CTL_COORDINATOR, Some(b"c 1")).is_err());
        assert_eq!(
            s.update(CTL_GRANT, Some(b"queued t 1")),
            Ok(Some(ControlEvent::Answer(Answer::Queued {
                token: "t".into(),
                seq: 1
            })))
        );
        assert_eq!(s.update(CTL_GRANT, Some(b"queued t 1")), Ok(None));
        // each refresh of a queued answer is news: the coordinator lives
        assert!(matches!(
            s.update(CTL_GRANT, Some(b"queued t 2")),
            Ok(Some(ControlEvent::Answer(Answer::Queued { seq: 2, .. })))
        ));
        assert_eq!(
            s.update(CTL_GRANT, Some(b"t")),
            Ok(Some(ControlEvent::Answer(Answer::Granted {
                token: "t".into()
            })))
        );
        assert_eq!(s.update(CTL_GRANT, None), Ok(None));
        assert!(s.update(CTL_GRANT, Some(b"granted t")).is_err());
        // a first look that finds one is news
        let mut s = ControlState::default();
        assert_eq!(
            s.update(CTL_COORDINATOR, Some(b"c1")),
            Ok(Some(ControlEvent::Coordinator(Some("c1".into()))))
        );
    }

    #[test]
    fn control_state_reports_changes_only() {
        let mut s = ControlState::default();
        assert_eq!(
            s.update(CTL_PING, Some(b"t1")),
            Ok(Some(ControlEvent::Ping("t1".into())))
        );
        assert_eq!(
            s.update(CTL_PING, Some(b"t1")),
            Ok(None),
            "spurious watch fire"
        );
        assert_eq!(
            s.update(CTL_PING, Some(b"t2")),
            Ok(Some(ControlEvent::Ping("t2".into())))
        );
        assert_eq!(s.update(CTL_PING, None), Ok(None));
        assert_eq!(
            s.update(CTL_BUDGET, None),
            Ok(Some(ControlEvent::Budget(None)))
        );
        assert_eq!(s.update(CTL_BUDGET, None), Ok(None));
        assert_eq!(
            s.update(CTL_BUDGET, Some(b"800")),
            Ok(Some(ControlEvent::Budget(Some(800))))
        );
        assert!(s.update(CTL_BUDGET, Some(b"lots")).is_err());
        assert_eq!(
            s.update(CTL_PROBE, Some(b"7")),
            Ok(Some(ControlEvent::Probe("7".into())))
        );
        assert!(s.update("other", Some(b"1")).is_err());
        assert_eq!(control_key("control/mdguard/ping"), Some(CTL_PING));
        assert_eq!(
            control_key("/local/domain/5/control/mdguard/budget_kbps"),
            Some(CTL_BUDGET)
        );
        assert_eq!(control_key("control/mdguard/grant"), Some(CTL_GRANT));
        assert_eq!(control_key("control/mdguard"), None);
        assert_eq!(control_key("control/mdguard/ping/x"), None);
    }

    /// The `.TP` tags of a man page section (`.SH`/`.SS` whose title starts
    /// with `title`), as plain text.
    fn tags(page: &str, title: &str) -> Vec<String> {
        let lines: Vec<&str> = page.lines().collect();
        let mut inside = false;
        let mut out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            if let Some(h) = l.strip_prefix(".SH ").or_else(|| l.strip_prefix(".SS ")) {
                inside = h.trim_matches('"').replace("\\-", "-").starts_with(title);
            } else if inside && *l == ".TP" {
                let tag = lines[i + 1].split_once(' ').map_or("", |t| t.1);
                out.push(tag.replace(['"', ' '], "").replace("\\-", "-"));
            }
        }
        out
    }

    /// mdguard-xenstore(7) names every key and JSON field of this schema, and
    /// nothing else: a key added here and not described there fails.
    #[test]
    fn the_manual_describes_every_key_and_field() {
        let page = include_str!("../../packaging/man/mdguard-xenstore.7");
        assert!(
            page.contains(&format!("schema version {SCHEMA_VERSION}")),
            "mdguard-xenstore(7) does not name schema version {SCHEMA_VERSION}"
        );
        let mut guest: Vec<String> = [
            KEY_VERSION,
            KEY_HEALTH,
            KEY_UPDATED,
            KEY_PONG,
            KEY_STOPPED,
            crate::report::admission::KEY_REQUEST,
        ]
        .iter()
        .map(|k| format!("{DATA_DIR}/{k}"))
        .collect();
        guest.push(format!("{DATA_DIR}/{KEY_ARRAYS}/<mdX>"));
        let dom0: Vec<String> = CONTROL_KEYS
            .iter()
            .map(|k| format!("{CONTROL_DIR}/{k}"))
            .collect();
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        assert_eq!(
            sorted(tags(page, &format!("WRITTEN BY THE GUEST: {DATA_DIR}/"))),
            sorted(guest)
        );
        assert_eq!(
            sorted(tags(page, &format!("WRITTEN BY DOM0: {CONTROL_DIR}/"))),
            sorted(dom0)
        );
        // every field, the optional ones set
        let full = ArrayJson {
            health: Health::Degraded,
            level: "raid1".into(),
            disks: 2,
            in_sync: 1,
            members: vec![("xvdb".into(), "in_sync".into())],
            sync: Some(("recover".into(), 1.0)),
            flags: vec!["flapping".into()],
            more_members: 1,
            refused: vec![("xvdc".into(), "older-history".into())],
        };
        let json = serde_json::to_value(&full).unwrap();
        let fields: Vec<String> = json.as_object().unwrap().keys().cloned().collect();
        assert_eq!(sorted(tags(page, "The array JSON")), sorted(fields));
        // the health words, best to worst, as the page lists them
        let words: Vec<&str> = Health::ALL.iter().map(|h| h.as_str()).collect();
        let listed = format!(
            ".BR {} \" or \" {} ,",
            words[..4].join(" \", \" "),
            words[4]
        );
        assert!(
            page.contains(&listed),
            "mdguard-xenstore(7) lacks `{listed}`"
        );
    }
}
