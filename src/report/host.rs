//! `mdguard host ...`: dom0's side. Reads every guest's `data/mdguard/`
//! through xenstored's socket and writes guests' `control/mdguard/` keys.
//!
//! ```text
//! mdguard host status [--json] [--no-ping] [--timeout SECS]
//! mdguard host set-budget --kbps N [--domain D]
//! mdguard host ping [--domain D] [--timeout SECS]
//! mdguard host probe [--domain D]
//! ```
//! `D` is a domid or a domain name; without `--domain` every guest (not
//! dom0) is addressed. `status` pings every agent that published (2 s, or
//! `--timeout`; `--no-ping` reads only) and exits like a nagios check with the
//! worst guest: 0 ok, 1 recovering, 2 degraded/failed, 3 unknown, unreachable,
//! an agent that did not answer (`silent`) or said it stopped (`stopped`), or
//! no guest publishing anything. Guests without `data/mdguard` are listed but
//! do not count.
//!
//! Every value read from a guest is untrusted: parsed strictly, bounded,
//! and escaped before it reaches the terminal.

use crate::clock::{unix_now, unix_time};
use crate::report::schema::{self, ArrayJson, Health};
use crate::report::status::{worst_code, CheckCode};
use crate::xenstore::{Access, Client, Error, Perm};
use serde::Serialize;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: mdguard host status [--json] [--no-ping] [--timeout SECS]
       mdguard host set-budget --kbps N [--domain D]
       mdguard host ping [--domain D] [--timeout SECS]
       mdguard host probe [--domain D]";

/// The version of `host status --json`'s shape.
const HOST_JSON_VERSION: u32 = 1;

/// Exit code for usage errors, as every mdguard command.
const EXIT_USAGE: i32 = 2;
const EXIT_UNKNOWN: i32 = 3;

/// Entry point: `args` are the arguments after `host`.
pub fn main<I, A>(args: I) -> i32
where
    I: IntoIterator<Item = A>,
    A: Into<OsString>,
{
    match run(args.into_iter().map(Into::into).collect()) {
        Ok(code) => code,
        Err(HostError::Usage(m)) => {
            eprintln!("mdguard host: {m}\n{USAGE}");
            EXIT_USAGE
        }
        Err(HostError::Xs(e)) => {
            eprintln!("mdguard host: {e}");
            EXIT_UNKNOWN
        }
    }
}

#[derive(Debug)]
enum HostError {
    Usage(String),
    Xs(Error),
}

impl From<Error> for HostError {
    fn from(e: Error) -> Self {
        HostError::Xs(e)
    }
}

impl From<lexopt::Error> for HostError {
    fn from(e: lexopt::Error) -> Self {
        HostError::Usage(e.to_string())
    }
}

fn run(args: Vec<OsString>) -> Result<i32, HostError> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let cmd = match p.next()? {
        Some(Value(v)) => v.string()?,
        Some(Long("help")) | Some(Short('h')) => {
            println!("{USAGE}");
            return Ok(0);
        }
        Some(a) => return Err(a.unexpected().into()),
        None => return Err(HostError::Usage("missing command".into())),
    };
    let mut json = false;
    let mut no_ping = false;
    let mut kbps: Option<u64> = None;
    let mut domain: Option<String> = None;
    // status waits less than ping: it is the one a monitoring system runs
    let mut timeout = Duration::from_secs(if cmd == "status" { 2 } else { 5 });
    while let Some(a) = p.next()? {
        match a {
            Long("json") if cmd == "status" => json = true,
            Long("no-ping") if cmd == "status" => no_ping = true,
            Long("kbps") if cmd == "set-budget" => {
                let v: String = p.value()?.string()?;
                let n = schema::parse_u64(v.as_bytes())
                    .map_err(|e| HostError::Usage(format!("--kbps: {e}")))?;
                if n > schema::BUDGET_MAX_KBPS {
                    return Err(HostError::Usage(format!(
                        "--kbps: at most {}",
                        schema::BUDGET_MAX_KBPS
                    )));
                }
                kbps = Some(n);
            }
            Long("domain") | Short('d') if cmd != "status" => domain = Some(p.value()?.string()?),
            Long("timeout") if cmd == "ping" || cmd == "status" => {
                let v: f64 = p.value()?.parse()?;
                if !(0.0..=3600.0).contains(&v) {
                    return Err(HostError::Usage("--timeout: 0..3600 seconds".into()));
                }
                timeout = Duration::from_secs_f64(v);
            }
            Long("help") | Short('h') => {
                println!("{USAGE}");
                return Ok(0);
            }
            a => return Err(a.unexpected().into()),
        }
    }
    if !matches!(cmd.as_str(), "status" | "set-budget" | "probe" | "ping") {
        return Err(HostError::Usage(format!("unknown command {cmd:?}")));
    }
    if cmd == "set-budget" && kbps.is_none() {
        return Err(HostError::Usage("set-budget needs --kbps N".into()));
    }
    let mut c = Client::open()?;
    match cmd.as_str() {
        "status" => status(&mut c, json, (!no_ping).then_some(timeout)),
        "set-budget" => {
            let kbps = kbps.ok_or_else(|| HostError::Usage("set-budget needs --kbps N".into()))?;
            let doms = targets(&mut c, domain.as_deref())?;
            for (id, name) in &doms {
                write_control(&mut c, *id, schema::CTL_BUDGET, kbps.to_string().as_bytes())?;
                println!(
                    "{id} {} budget_kbps={kbps}",
                    crate::text::printable_str(name, 40)
                );
            }
            Ok(0)
        }
        "probe" => {
            let doms = targets(&mut c, domain.as_deref())?;
            let token = new_token();
            for (id, name) in &doms {
                write_control(&mut c, *id, schema::CTL_PROBE, token.as_bytes())?;
                println!(
                    "{id} {} probe={token}",
                    crate::text::printable_str(name, 40)
                );
            }
            Ok(0)
        }
        "ping" => {
            let mut doms = targets(&mut c, domain.as_deref())?;
            if domain.is_none() {
                // every guest that publishes mdguard data: one without an
                // agent has nobody to answer
                doms.retain(|(id, _)| publishes(&mut c, *id));
            }
            ping(&mut c, &doms, timeout)
        }
        other => Err(HostError::Usage(format!("unknown command {other:?}"))),
    }
}

fn new_token() -> String {
    let ns = unix_time().as_nanos();
    format!("{}-{}", ns / 1000, std::process::id())
}

/// Every domid under /local/domain (strictly numeric names only), sorted.
fn domids(c: &mut Client) -> Result<Vec<u32>, Error> {
    let mut ids: Vec<u32> = match c.directory("/local/domain") {
        Ok(v) => v,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => return Err(e),
    }
    .iter()
    .filter_map(|s| schema::parse_u64(s.as_bytes()).ok())
    .filter_map(|n| u32::try_from(n).ok())
    .collect();
    ids.sort_unstable();
    Ok(ids)
}

fn domain_name(c: &mut Client, id: u32) -> String {
    match c.try_read(&format!("/local/domain/{id}/name")) {
        Ok(Some(v)) if v.len() <= 256 => String::from_utf8_lossy(&v).into_owned(),
        Ok(Some(_)) => "(name too long)".into(),
        _ => "-".into(),
    }
}

/// Resolve `--domain` (domid or name) or all guests (every domain but 0).
fn targets(c: &mut Client, sel: Option<&str>) -> Result<Vec<(u32, String)>, HostError> {
    let ids = domids(c)?;
    let mut out = Vec::new();
    for id in ids {
        let name = domain_name(c, id);
        let hit = match sel {
            None => id != 0,
            Some(s) => s == id.to_string() || s == name,
        };
        if hit {
            out.push((id, name));
        }
    }
    match sel {
        Some(s) if out.is_empty() => Err(HostError::Usage(format!(
            "no domain {s:?} under /local/domain"
        ))),
        // a host with no guest is no mistake of the caller's: nothing to do
        None if out.is_empty() => {
            eprintln!("mdguard host: no guest domain under /local/domain");
            Ok(out)
        }
        _ => Ok(out),
    }
}

/// Does guest `id` publish mdguard data (an agent ran there)?
fn publishes(c: &mut Client, id: u32) -> bool {
    let version = format!(
        "/local/domain/{id}/{}/{}",
        schema::DATA_DIR,
        schema::KEY_VERSION
    );
    matches!(c.try_read(&version), Ok(Some(_)))
}

/// Write `control/mdguard/<key>` of domain `id`: owner dom0, guest read-only
/// (`n0 r<id>`), on the directory too so the guest can watch it.
fn write_control(c: &mut Client, id: u32, key: &str, value: &[u8]) -> Result<(), Error> {
    let dir = format!("/local/domain/{id}/{}", schema::CONTROL_DIR);
    let path = format!("{dir}/{key}");
    let perms = [Perm::new(0, Access::None), Perm::new(id, Access::Read)];
    c.transaction(|t| {
        t.mkdir(&dir)?;
        t.set_perms(&dir, &perms)?;
        t.write(&path, value)?;
        t.set_perms(&path, &perms)?;
        Ok(())
    })
}

// ---------------------------------------------------------------- status

/// Whether a guest's agent is there to stand behind what it published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum AgentState {
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

#[derive(Debug, Serialize)]
struct GuestStatus {
    domid: u32,
    name: String,
    /// `None`: the guest publishes nothing (no agent).
    health: Option<Health>,
    agent: AgentState,
    version: Option<u64>,
    updated: Option<u64>,
    arrays: BTreeMap<String, ArrayJson>,
    errors: Vec<String>,
}

fn read_guest(c: &mut Client, id: u32) -> Result<GuestStatus, Error> {
    let base = format!("/local/domain/{id}/{}", schema::DATA_DIR);
    let mut g = GuestStatus {
        domid: id,
        name: domain_name(c, id),
        health: None,
        agent: AgentState::None,
        version: None,
        updated: None,
        arrays: BTreeMap::new(),
        errors: Vec::new(),
    };
    let health = match c.try_read(&format!("{base}/{}", schema::KEY_HEALTH))? {
        None => {
            // No health key: either no agent, or one that published nothing usable.
            if c.try_read(&format!("{base}/{}", schema::KEY_VERSION))?
                .is_none()
            {
                return Ok(g);
            }
            g.errors.push("health missing".into());
            Health::Unknown
        }
        Some(v) => Health::parse(&v).unwrap_or_else(|e| {
            g.errors.push(format!("health: {e}"));
            Health::Unknown
        }),
    };
    g.health = Some(health);
    g.agent = if c
        .try_read(&format!("{base}/{}", schema::KEY_STOPPED))?
        .is_some()
    {
        AgentState::Stopped
    } else {
        AgentState::NotAsked
    };
    if let Some(v) = c.try_read(&format!("{base}/{}", schema::KEY_VERSION))? {
        match schema::parse_u64(&v) {
            Ok(n) => g.version = Some(n),
            Err(e) => g.errors.push(format!("version: {e}")),
        }
    }
    if let Some(v) = c.try_read(&format!("{base}/{}", schema::KEY_UPDATED))? {
        match schema::parse_u64(&v) {
            Ok(n) => g.updated = Some(n),
            Err(e) => g.errors.push(format!("updated: {e}")),
        }
    }
    let names = match c.directory(&format!("{base}/{}", schema::KEY_ARRAYS)) {
        Ok(v) => v,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => return Err(e),
    };
    for n in names.iter().take(64) {
        if !schema::valid_name(n) {
            g.errors.push(format!(
                "array name {:?}",
                crate::text::printable_str(n, 32)
            ));
            continue;
        }
        // A key removed meanwhile is simply skipped.
        if let Some(v) = c.try_read(&format!("{base}/{}/{n}", schema::KEY_ARRAYS))? {
            match ArrayJson::parse(&v) {
                Ok(j) => {
                    g.arrays.insert(n.clone(), j);
                }
                Err(e) => g.errors.push(format!("{n}: {e}")),
            }
        }
    }
    Ok(g)
}

/// Every guest's report; each agent that published is pinged (unless
/// `ping_timeout` is None) and one that does not answer in time is `silent`.
fn status(c: &mut Client, json: bool, ping_timeout: Option<Duration>) -> Result<i32, HostError> {
    let mut guests = Vec::new();
    for id in domids(c)? {
        match read_guest(c, id) {
            Ok(g) => guests.push(g),
            Err(e) if e.is_connection() => return Err(e.into()),
            Err(e) => guests.push(GuestStatus {
                domid: id,
                name: domain_name(c, id),
                health: Some(Health::Unknown),
                agent: AgentState::None,
                version: None,
                updated: None,
                arrays: BTreeMap::new(),
                errors: vec![format!("unreachable: {e}")],
            }),
        }
    }
    // each agent that published must answer now, or what it said is stale
    if let Some(timeout) = ping_timeout {
        let asked: Vec<(u32, String)> = guests
            .iter()
            .filter(|g| g.agent == AgentState::NotAsked)
            .map(|g| (g.domid, g.name.clone()))
            .collect();
        if !asked.is_empty() {
            let answered = ask(c, &asked, timeout)?;
            for g in guests
                .iter_mut()
                .filter(|g| g.agent == AgentState::NotAsked)
            {
                g.agent = if answered.contains_key(&g.domid) {
                    AgentState::Answering
                } else {
                    AgentState::Silent
                };
            }
        }
    }
    let reporting: Vec<&GuestStatus> = guests.iter().filter(|g| g.health.is_some()).collect();
    let worst = reporting.iter().filter_map(|g| g.health).max();
    // a guest whose agent is silent or stopped counts as UNKNOWN, whatever it
    // last said; no guest reporting at all is UNKNOWN too
    let code = if reporting.is_empty() {
        EXIT_UNKNOWN
    } else {
        worst_code(reporting.iter().map(|g| match g.agent {
            AgentState::Silent | AgentState::Stopped => CheckCode::Unknown,
            _ => g.health.unwrap_or(Health::Unknown).check_code(),
        })) as i32
    };
    let mut out = std::io::stdout().lock();
    if json {
        #[derive(Serialize)]
        struct Report<'a> {
            /// The shape's version (as `status --json`'s).
            version: u32,
            worst: Option<Health>,
            exit_code: i32,
            guests: &'a [GuestStatus],
        }
        let r = Report {
            version: HOST_JSON_VERSION,
            worst,
            exit_code: code,
            guests: &guests,
        };
        let _ = writeln!(out, "{}", serde_json::to_string(&r).expect("serializable"));
        return Ok(code);
    }
    let now = unix_now();
    for g in &guests {
        // what a silent or stopped agent last said is not its guest's health now
        let health = match g.agent {
            AgentState::Silent => "silent",
            AgentState::Stopped => "stopped",
            _ => g.health.map_or("-", Health::as_str),
        };
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
                    s.push_str(&format!(
                        " {} {pct:.1}%",
                        crate::text::printable_str(act, 16)
                    ));
                }
                s
            })
            .collect();
        let mut line = format!(
            "{:<5} {:<20} {:<10} {:<12} {}",
            g.domid,
            crate::text::printable_str(&g.name, 20),
            health,
            updated,
            if g.health.is_none() {
                "(no mdguard data)".to_string()
            } else {
                arrays.join(", ")
            }
        );
        for e in &g.errors {
            line.push_str(&format!(" [{}]", crate::text::printable_str(e, 80)));
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    if reporting.is_empty() {
        let _ = writeln!(out, "no guest publishes mdguard data");
    }
    Ok(code)
}

// ---------------------------------------------------------------- ping

/// Ask each of `doms` to answer (one token, written to each guest's
/// `control/mdguard/ping`, its `data/mdguard/pong` watched) and wait up to
/// `timeout` for all: who answered, after how long.
fn ask(
    c: &mut Client,
    doms: &[(u32, String)],
    timeout: Duration,
) -> Result<BTreeMap<u32, Duration>, HostError> {
    let token = new_token();
    let mut pending: BTreeMap<u32, String> = BTreeMap::new();
    for (id, _) in doms {
        let pong = format!(
            "/local/domain/{id}/{}/{}",
            schema::DATA_DIR,
            schema::KEY_PONG
        );
        c.watch(&pong, &format!("pong-{id}"))?;
        pending.insert(*id, pong);
    }
    let start = Instant::now();
    for (id, _) in doms {
        write_control(c, *id, schema::CTL_PING, token.as_bytes())?;
    }
    let mut answered = BTreeMap::new();
    while !pending.is_empty() {
        let done: Vec<u32> = pending
            .iter()
            .filter(|(_, pong)| matches!(c.try_read(pong), Ok(Some(v)) if v == token.as_bytes()))
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            pending.remove(&id);
            answered.insert(id, start.elapsed());
        }
        let left = timeout.saturating_sub(start.elapsed());
        if pending.is_empty() || left.is_zero() {
            break;
        }
        c.wait_events(left)?;
    }
    Ok(answered)
}

fn ping(c: &mut Client, doms: &[(u32, String)], timeout: Duration) -> Result<i32, HostError> {
    let answered = ask(c, doms, timeout)?;
    for (id, name) in doms {
        match answered.get(id) {
            Some(dt) => println!(
                "{id} {} pong in {} ms",
                crate::text::printable_str(name, 40),
                dt.as_millis()
            ),
            None => println!(
                "{id} {} no answer within {:?}",
                crate::text::printable_str(name, 40),
                timeout
            ),
        }
    }
    Ok(if answered.len() == doms.len() {
        0
    } else {
        EXIT_UNKNOWN
    })
}
