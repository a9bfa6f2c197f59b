//! What `mdguard host status` prints: one line per guest, the storage view
//! (`--by-storage`), and the JSON of both. Pure. Everything a guest wrote is
//! escaped to printable ASCII before it reaches the terminal.

use super::guest::{GuestStatus, Verdict};
use super::storage::{Backend, Grouping, Leg, Place, STATE_CONNECTED};
use crate::report::schema::Health;
use crate::report::status::CheckCode;
use crate::text::{printable, printable_str};
use serde::Serialize;
use std::fmt::Write as _;

/// The version of `host status --json`'s shape: raised when a key is removed
/// or changes meaning (new keys do not raise it).
pub const HOST_JSON_VERSION: u32 = 1;

/// Names listed per word in a storage line at most; the rest are counted.
const NAMES_MAX: usize = 20;

/// One guest with, under `--by-storage`, its backends and legs.
pub struct GuestView<'a> {
    pub status: &'a GuestStatus,
    pub storage: Option<(&'a [Backend], &'a [Leg])>,
}

fn esc(s: &str, max: usize) -> String {
    printable(s.as_bytes(), max)
}

/// One line per guest: domid, name, verdict, last change, arrays, errors.
pub fn guest_lines(guests: &[GuestStatus], now: u64) -> String {
    let mut out = String::new();
    for g in guests {
        let updated = match g.updated {
            Some(t) if t <= now => format!("{}s ago", now - t),
            Some(t) => format!("t={t}"),
            None => "-".into(),
        };
        let arrays: Vec<String> = g
            .arrays
            .iter()
            .map(|(n, a)| {
                let mut s = format!("{n}:{}({}/{})", a.health, a.in_sync, a.disks);
                if let Some((act, pct)) = &a.sync {
                    let _ = write!(s, " {} {pct:.1}%", esc(act, 16));
                }
                for f in &a.flags {
                    let _ = write!(s, " {}", esc(f, 16));
                }
                for (dev, why) in &a.refused {
                    let _ = write!(s, " {} refused: {}", esc(dev, 32), esc(why, 32));
                }
                s
            })
            .collect();
        let mut line = format!(
            "{:<5} {:<20} {:<10} {:<12} {}",
            g.domid,
            printable_str(&g.name, 20),
            g.verdict().word(),
            updated,
            if g.health.is_none() {
                "(no mdguard data)".to_string()
            } else {
                arrays.join(", ")
            }
        );
        for e in &g.errors {
            let _ = write!(line, " [{}]", esc(e, 80));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if guests.iter().all(|g| g.health.is_none()) {
        out.push_str("no guest publishes mdguard data\n");
    }
    out
}

/// `5 web01 degraded` ... grouped by word, worst first: `1 degraded (web01), 2 ok (a b)`.
fn tally<'a>(entries: impl Iterator<Item = (Option<Verdict>, &'a str, u32)>) -> String {
    let mut v: Vec<(Option<Verdict>, &str, u32)> = entries.collect();
    let sev = |x: Option<Verdict>| x.map_or(0, |v| v.severity() + 1);
    v.sort_by_key(|(x, _, id)| (std::cmp::Reverse(sev(*x)), *id));
    let mut parts = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let word = v[i].0;
        let same: Vec<&str> = v[i..]
            .iter()
            .take_while(|e| e.0 == word)
            .map(|e| e.1)
            .collect();
        i += same.len();
        let mut names: Vec<String> = same
            .iter()
            .take(NAMES_MAX)
            .map(|n| printable_str(n, 20))
            .collect();
        if same.len() > NAMES_MAX {
            names.push(format!("+{}", same.len() - NAMES_MAX));
        }
        parts.push(format!(
            "{} {} ({})",
            same.len(),
            word.map_or("without an md leg", Verdict::word),
            names.join(" ")
        ));
    }
    parts.join(", ")
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

fn leg_text(l: &Leg) -> String {
    let mut s = format!("{} {} {}", l.array, esc(&l.device, 32), esc(&l.state, 24));
    if let Place::NoParams { kind, devid } = l.place {
        let _ = write!(s, " ({} {devid} has no params)", kind.as_str());
    }
    s
}

/// The storage view: a line per storage, then the legs no dom0 backend
/// explains, then (with `legless`) the guests that published no leg at all,
/// then what could not be read from dom0's backends.
pub fn storage_text(
    guests: &[GuestStatus],
    g: &Grouping,
    problems: &[String],
    legless: bool,
) -> String {
    let mut out = String::new();
    for s in &g.groups {
        let _ = write!(
            out,
            "storage {}: {}: {}",
            esc(s.storage.as_str(), 200),
            plural(s.members.len(), "guest"),
            tally(
                s.members
                    .iter()
                    .map(|m| (m.verdict, m.name.as_str(), m.domid))
            )
        );
        let down: Vec<String> = s
            .members
            .iter()
            .flat_map(|m| {
                m.backends
                    .iter()
                    .filter(|b| b.state != Some(STATE_CONNECTED))
                    .map(move |b| {
                        format!(
                            "{} {} {}",
                            printable_str(&m.name, 20),
                            b.dev,
                            b.state_word()
                        )
                    })
            })
            .collect();
        if !down.is_empty() {
            let _ = write!(out, "; backend not connected: {}", down.join(", "));
        }
        out.push('\n');
    }
    for u in &g.unmapped {
        let legs: Vec<String> = u.legs.iter().map(leg_text).collect();
        let _ = writeln!(
            out,
            "no dom0 backend: {} {}: {}",
            printable_str(&u.name, 20),
            u.verdict.word(),
            legs.join(", ")
        );
    }
    let shown = |id: u32| {
        g.groups.iter().any(|s| {
            s.members
                .iter()
                .any(|m| m.domid == id && m.verdict.is_some())
        }) || g.unmapped.iter().any(|u| u.domid == id)
    };
    let legless: Vec<&GuestStatus> = guests
        .iter()
        .filter(|x| legless && x.health.is_some() && !shown(x.domid))
        .collect();
    if !legless.is_empty() {
        let _ = writeln!(
            out,
            "no leg published: {}",
            tally(
                legless
                    .iter()
                    .map(|x| (Some(x.verdict()), x.name.as_str(), x.domid))
            )
        );
    }
    if g.groups.is_empty() && g.unmapped.is_empty() && legless.is_empty() {
        out.push_str("no guest publishes mdguard data\n");
    }
    for p in problems {
        let _ = writeln!(out, "warning: {}", esc(p, 200));
    }
    out
}

// ---------------------------------------------------------------- JSON

#[derive(Serialize)]
struct GuestJson<'a> {
    #[serde(flatten)]
    status: &'a GuestStatus,
    /// `ok` ... `failed`, `silent`, `stopped`, `-` (no data).
    verdict: &'static str,
    /// Its plugin code; null when it does not count.
    code: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backends: Option<&'a [Backend]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    legs: Option<&'a [Leg]>,
}

#[derive(Serialize)]
struct MemberJson<'a> {
    domid: u32,
    name: &'a str,
    /// Null: no md leg published on this storage.
    verdict: Option<&'static str>,
    code: Option<u8>,
    legs: &'a [Leg],
    backends: &'a [Backend],
}

#[derive(Serialize)]
struct GroupJson<'a> {
    storage: &'a str,
    guests: usize,
    /// The worst member's verdict; null when no member has a leg on it.
    worst: Option<&'static str>,
    code: Option<u8>,
    members: Vec<MemberJson<'a>>,
}

#[derive(Serialize)]
struct UnmappedJson<'a> {
    domid: u32,
    name: &'a str,
    verdict: &'static str,
    legs: &'a [Leg],
}

#[derive(Serialize)]
struct Report<'a> {
    version: u32,
    /// The worst published health among guests that publish.
    worst: Option<Health>,
    exit_code: i32,
    guests: Vec<GuestJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    storage: Option<Vec<GroupJson<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unmapped: Option<Vec<UnmappedJson<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backend_errors: Option<&'a [String]>,
}

fn code_of(v: Verdict) -> Option<u8> {
    v.code().map(|c| c as u8)
}

/// `host status --json` with its exit code; with the storage view when
/// `grouping` is given.
pub fn status_json(
    views: &[GuestView<'_>],
    code: CheckCode,
    grouping: Option<(&Grouping, &[String])>,
) -> String {
    let r = Report {
        version: HOST_JSON_VERSION,
        worst: views.iter().filter_map(|v| v.status.health).max(),
        exit_code: code as i32,
        guests: views
            .iter()
            .map(|v| GuestJson {
                status: v.status,
                verdict: v.status.verdict().word(),
                code: code_of(v.status.verdict()),
                backends: v.storage.map(|s| s.0),
                legs: v.storage.map(|s| s.1),
            })
            .collect(),
        storage: grouping.map(|(g, _)| {
            g.groups
                .iter()
                .map(|s| {
                    let worst = s
                        .members
                        .iter()
                        .filter_map(|m| m.verdict)
                        .max_by_key(|v| v.severity());
                    GroupJson {
                        storage: s.storage.as_str(),
                        guests: s.members.len(),
                        worst: worst.map(Verdict::word),
                        code: worst.and_then(code_of),
                        members: s
                            .members
                            .iter()
                            .map(|m| MemberJson {
                                domid: m.domid,
                                name: &m.name,
                                verdict: m.verdict.map(Verdict::word),
                                code: m.verdict.and_then(code_of),
                                legs: &m.legs,
                                backends: &m.backends,
                            })
                            .collect(),
                    }
                })
                .collect()
        }),
        unmapped: grouping.map(|(g, _)| {
            g.unmapped
                .iter()
                .map(|u| UnmappedJson {
                    domid: u.domid,
                    name: &u.name,
                    verdict: u.verdict.word(),
                    legs: &u.legs,
                })
                .collect()
        }),
        backend_errors: grouping.map(|(_, p)| p),
    };
    serde_json::to_string(&r).expect("plain data serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::host::guest::AgentState;
    use crate::report::host::storage::{group, legs, BackendKind, GuestStorage, RawBackend};
    use crate::report::schema::ArrayJson;
    use std::collections::BTreeMap;
    use Health::*;

    fn vbd(domid: u32, devid: u32, dev: &str, params: &str, state: &str) -> Backend {
        let raw = RawBackend {
            dev: Some(dev.into()),
            params: Some(params.into()),
            type_: Some(b"phy".to_vec()),
            state: Some(state.into()),
            frontend_id: Some(domid.to_string().into_bytes()),
            physical_device: None,
        };
        Backend::parse(BackendKind::Vbd, domid, &devid.to_string(), &raw).unwrap()
    }

    fn guest(
        domid: u32,
        name: &str,
        agent: AgentState,
        members: &[(&str, &str)],
        h: Health,
    ) -> GuestStatus {
        let mut g = GuestStatus::new(domid, name.into());
        g.health = Some(h);
        g.agent = agent;
        g.updated = Some(1000);
        g.arrays = BTreeMap::from([(
            "md0".to_string(),
            ArrayJson {
                health: h,
                level: "raid1".into(),
                disks: 2,
                in_sync: 1,
                members: members
                    .iter()
                    .map(|(d, s)| (d.to_string(), s.to_string()))
                    .collect(),
                sync: None,
                flags: vec![],
                more_members: 0,
                refused: vec![],
            },
        )]);
        g
    }

    struct Host {
        guests: Vec<GuestStatus>,
        backends: Vec<Vec<Backend>>,
        legs: Vec<Vec<Leg>>,
    }

    fn host() -> Host {
        let guests = vec![
            guest(
                5,
                "web01",
                AgentState::Answering,
                &[("xvdb", "in_sync"), ("xvdc", "faulty")],
                Degraded,
            ),
            guest(
                6,
                "web02",
                AgentState::Answering,
                &[("xvdb1", "in_sync"), ("xvdc1", "in_sync")],
                Ok,
            ),
            guest(
                7,
                "app4",
                AgentState::Silent,
                &[("xvdb", "in_sync"), ("xvdc", "in_sync")],
                Ok,
            ),
            guest(
                8,
                "web03",
                AgentState::Answering,
                &[("nbd0p1", "in_sync"), ("nbd1p1", "failed")],
                Degraded,
            ),
            GuestStatus::new(9, "bare".into()),
        ];
        let backends = vec![
            vec![
                vbd(5, 51728, "xvdb", "/dev/nbd1", "4"),
                vbd(5, 51744, "xvdc", "/dev/nbd2", "4"),
            ],
            vec![
                vbd(6, 51728, "xvdb", "/dev/nbd3", "4"),
                vbd(6, 51744, "xvdc", "/dev/nbd2", "6"),
            ],
            vec![
                vbd(7, 51728, "xvdb", "/dev/nbd5", "4"),
                vbd(7, 51744, "xvdc", "/dev/nbd2", "4"),
            ],
            vec![],
            vec![vbd(9, 51712, "xvda", "/dev/nbd2", "4")],
        ];
        let legs = guests
            .iter()
            .zip(&backends)
            .map(|(g, b)| legs(&g.arrays, b))
            .collect();
        Host {
            guests,
            backends,
            legs,
        }
    }

    fn grouping(h: &Host) -> Grouping {
        group(&GuestStorage::of_all(&h.guests, &h.backends, &h.legs), None)
    }

    #[test]
    fn the_storage_view_in_text() {
        let h = host();
        let g = grouping(&h);
        let text = storage_text(
            &h.guests,
            &g,
            &["backend/vbd/5/1: dev missing".into()],
            true,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "storage /dev/nbd1: 1 guest: 1 ok (web01)",
                "storage /dev/nbd2: 4 guests: 1 degraded (web01), 1 silent (app4), 1 ok (web02), \
                 1 without an md leg (bare); backend not connected: web02 xvdc closed",
                "storage /dev/nbd3: 1 guest: 1 ok (web02)",
                "storage /dev/nbd5: 1 guest: 1 silent (app4)",
                "no dom0 backend: web03 degraded: md0 nbd0p1 in_sync, md0 nbd1p1 failed",
                "warning: backend/vbd/5/1: dev missing",
            ]
        );
    }

    #[test]
    fn guests_without_legs_are_not_lost_from_the_view() {
        let mut g = GuestStatus::new(3, "empty".into());
        g.health = Some(Unknown);
        g.errors.push("md0: bad JSON".into());
        let text = storage_text(&[g.clone()], &Grouping::default(), &[], true);
        assert_eq!(text, "no leg published: 1 unknown (empty)\n");
        // under one storage, a guest not on it is not listed
        let text = storage_text(&[g], &Grouping::default(), &[], false);
        assert_eq!(text, "no guest publishes mdguard data\n");
        let text = storage_text(
            &[GuestStatus::new(3, "bare".into())],
            &Grouping::default(),
            &[],
            true,
        );
        assert_eq!(text, "no guest publishes mdguard data\n");
    }

    #[test]
    fn the_storage_view_in_json() {
        let h = host();
        let g = grouping(&h);
        let views: Vec<GuestView> = h
            .guests
            .iter()
            .enumerate()
            .map(|(i, s)| GuestView {
                status: s,
                storage: Some((&h.backends[i], &h.legs[i])),
            })
            .collect();
        let v: serde_json::Value =
            serde_json::from_str(&status_json(&views, CheckCode::Critical, Some((&g, &[]))))
                .unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["exit_code"], 2);
        let nbd2 = &v["storage"][1];
        assert_eq!(nbd2["storage"], "/dev/nbd2");
        assert_eq!(nbd2["guests"], 4);
        assert_eq!(nbd2["worst"], "degraded");
        assert_eq!(nbd2["code"], 2);
        assert_eq!(nbd2["members"][0]["name"], "web01");
        assert_eq!(nbd2["members"][0]["legs"][0]["device"], "xvdc");
        assert_eq!(nbd2["members"][0]["legs"][0]["state"], "faulty");
        assert_eq!(nbd2["members"][0]["legs"][0]["health"], "degraded");
        assert_eq!(nbd2["members"][0]["legs"][0]["via"], "backend");
        assert_eq!(nbd2["members"][0]["legs"][0]["devid"], 51744);
        assert_eq!(nbd2["members"][1]["verdict"], "ok");
        assert_eq!(nbd2["members"][1]["backends"][0]["state"], 6);
        assert_eq!(nbd2["members"][2]["verdict"], "silent");
        assert_eq!(nbd2["members"][2]["code"], 3);
        assert!(
            nbd2["members"][3]["verdict"].is_null(),
            "bare has no leg there"
        );
        assert_eq!(v["unmapped"][0]["name"], "web03");
        assert_eq!(v["unmapped"][0]["legs"][1]["via"], "no-backend");
        assert_eq!(v["unmapped"][0]["legs"][1]["health"], "degraded");
        let web01 = &v["guests"][0];
        assert_eq!(web01["verdict"], "degraded");
        assert_eq!(web01["code"], 2);
        assert_eq!(web01["backends"][1]["dev"], "xvdc");
        assert_eq!(web01["backends"][1]["type"], "phy");
        assert_eq!(web01["legs"][1]["storage"], "/dev/nbd2");
        assert_eq!(v["guests"][4]["verdict"], "-");
        assert!(v["guests"][4]["code"].is_null());
        // without --by-storage: none of the storage keys
        let plain: Vec<GuestView> = h
            .guests
            .iter()
            .map(|s| GuestView {
                status: s,
                storage: None,
            })
            .collect();
        let v: serde_json::Value =
            serde_json::from_str(&status_json(&plain, CheckCode::Critical, None)).unwrap();
        assert!(v.get("storage").is_none() && v.get("unmapped").is_none());
        assert!(v["guests"][0].get("legs").is_none());
        assert_eq!(v["guests"][2]["verdict"], "silent");
        assert_eq!(v["guests"][2]["health"], "ok", "what it last said");
    }

    #[test]
    fn guest_lines_escape_what_guests_wrote() {
        let mut g = guest(5, "web01", AgentState::Answering, &[], Recovering);
        let a = g.arrays.get_mut("md0").unwrap();
        a.sync = Some(("re\u{202e}cover".into(), 42.0));
        a.flags = vec!["stalled".into()];
        a.refused = vec![("xvdc\u{1b}".into(), "older-history".into())];
        g.errors.push("x\u{1b}[2J".into());
        let text = guest_lines(&[g], 1010);
        assert_eq!(
            text,
            "5     web01                recovering 10s ago      md0:recovering(1/2) re\\xe2\\x80\\xaecover 42.0% stalled xvdc\\x1b refused: older-history [x\\x1b[2J]\n"
        );
    }
}
