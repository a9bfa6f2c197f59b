//! `mdguard host ...`: dom0's side. Reads every guest's `data/mdguard/` (and,
//! for the storage view, dom0's vbd backends) through xenstored's socket and
//! writes guests' `control/mdguard/` keys. This file is the I/O; what it reads
//! is judged, grouped and printed by pure code in its submodules:
//!
//! - [`args`]: the command line ([`args::USAGE`]);
//! - [`guest`]: one guest as read, its judged health and verdict;
//! - [`storage`]: dom0's backends, the storage behind each leg, the grouping;
//! - [`check`]: `host check`'s plugin line;
//! - [`render`]: `host status`'s text and JSON;
//! - [`admission`]: `host run`'s resync admission (the pure planner);
//!   [`grants`]: what the metrics say of it;
//! - [`liveness`]: `host run`'s pings, its agents' liveness;
//! - [`events`]: `host run`'s hook events, the changes between two looks;
//! - [`service`]: `host run` itself, the dom0 service; [`writer`]: its
//!   writes, in transactions.
//!
//! `D` is a domid or a domain name; without `--domain` every guest (not
//! dom0) is addressed. `status` and `check` ping every agent that published
//! (2 s, or `--timeout`; `--no-ping` reads only) and exit like a nagios check
//! with the worst guest: 0 ok, 1 recovering, 2 degraded/failed, 3 unknown,
//! unreachable, an agent that did not answer (`silent`) or said it stopped
//! (`stopped`), or no guest publishing anything. Guests without
//! `data/mdguard` are listed but do not count.
//!
//! Every value read from a guest is untrusted: parsed strictly, bounded,
//! and escaped before it reaches the terminal.

pub mod admission;
pub mod args;
pub mod check;
pub mod devices;
pub mod events;
pub mod grants;
pub mod guest;
pub mod liveness;
pub mod render;
pub mod service;
pub mod storage;
pub mod writer;

use crate::clock::{unix_now, unix_time};
use crate::report::schema::{self, ArrayJson, Health};
use crate::report::status::CheckCode;
use crate::xenstore::{Access, Client, Error, Perm, Txn};
pub use args::USAGE;
use args::{Command, Target, Usage};
use guest::{judge, AgentState, GuestStatus};
use render::GuestView;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::time::{Duration, Instant};
use storage::{Backend, BackendKind, GuestStorage, Leg, RawBackend, StoragePattern};

/// Exit code for usage errors, as every mdguard command (but `check`).
const EXIT_USAGE: i32 = 2;
const EXIT_UNKNOWN: i32 = 3;
/// Most arrays read per guest.
const ARRAYS_MAX: usize = 64;

/// Entry point: `args` are the arguments after `host`.
pub fn main<I, A>(args: I) -> i32
where
    I: IntoIterator<Item = A>,
    A: Into<OsString>,
{
    let cmd = match args::parse(args.into_iter().map(Into::into).collect()) {
        Ok(c) => c,
        // a monitoring plugin's usage error is UNKNOWN, on its one line
        Err(Usage { check: true, msg }) => {
            println!(
                "MDGUARD UNKNOWN - usage: {} (see mdguard host check --help)",
                check::plugin_text(&msg, 200)
            );
            return EXIT_UNKNOWN;
        }
        Err(Usage { msg, .. }) => {
            eprintln!("mdguard host: {msg}\n{USAGE}");
            return EXIT_USAGE;
        }
    };
    let is_check = matches!(cmd, Command::Check { .. });
    match run(cmd) {
        Ok(code) => code,
        Err(HostError::Usage(m)) => {
            eprintln!("mdguard host: {m}\n{USAGE}");
            EXIT_USAGE
        }
        Err(HostError::Xs(e)) if is_check => {
            println!(
                "MDGUARD UNKNOWN - {}",
                check::plugin_text(&e.to_string(), 200)
            );
            EXIT_UNKNOWN
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

fn run(cmd: Command) -> Result<i32, HostError> {
    if cmd == Command::Help {
        println!("{USAGE}");
        return Ok(0);
    }
    if let Command::Metrics { ping, textfile } = &cmd {
        return Ok(metrics(*ping, textfile.as_deref()));
    }
    if let Command::Run { settings, options } = cmd {
        return service::run(settings, options).map_err(HostError::Xs);
    }
    let mut c = Client::open()?;
    match cmd {
        // handled above
        Command::Help | Command::Metrics { .. } | Command::Run { .. } => Ok(0),
        Command::Status {
            json,
            ping,
            by_storage,
            storage,
        } => status(&mut c, json, ping, by_storage, storage.as_ref()),
        Command::Check { ping } => {
            let guests = read_all(&mut c, ping)?;
            let (code, line) = check::check_line(&guests);
            println!("{line}");
            Ok(code as i32)
        }
        Command::SetBudget { kbps, domain } => {
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
        Command::Probe { target } => probe(&mut c, &target),
        Command::Ping { domain, timeout } => {
            let mut doms = targets(&mut c, domain.as_deref())?;
            if domain.is_none() {
                // every guest that publishes mdguard data: one without an
                // agent has nobody to answer
                doms.retain(|(id, _)| publishes(&mut c, *id).unwrap_or(false));
            }
            ping(&mut c, &doms, timeout)
        }
    }
}

pub(super) fn new_token() -> String {
    let ns = unix_time().as_nanos();
    format!("{}-{}", ns / 1000, std::process::id())
}

/// Every domid under /local/domain (strictly numeric names only), sorted.
pub(super) fn domids(c: &mut Client) -> Result<Vec<u32>, Error> {
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

pub(super) fn domain_name(c: &mut Client, id: u32) -> String {
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

/// Does guest `id` publish mdguard data: anything under its `data/mdguard`?
fn publishes(c: &mut Client, id: u32) -> Result<bool, Error> {
    match c.directory(&format!("/local/domain/{id}/{}", schema::DATA_DIR)) {
        Ok(keys) => Ok(!keys.is_empty()),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Write `control/mdguard/<key>` of domain `id`: owner dom0, guest read-only
/// (`n0 r<id>`), on the directory too so the guest can watch it.
pub(super) fn write_control(c: &mut Client, id: u32, key: &str, value: &[u8]) -> Result<(), Error> {
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

/// What guest `id` published, judged ([`judge`]); its agent not yet asked.
/// Read in one transaction, as the guest writes it: never half an update.
pub(super) fn read_guest(c: &mut Client, id: u32) -> Result<GuestStatus, Error> {
    Ok(read_guest_with(c, id, [])?.0)
}

/// Guest `id`'s answer to a ping (`data/mdguard/pong`).
pub(super) fn pong_path(id: u32) -> String {
    format!(
        "/local/domain/{id}/{}/{}",
        schema::DATA_DIR,
        schema::KEY_PONG
    )
}

/// The values of keys read beside a guest's data, in the order asked
/// (`None`: absent).
pub(super) type Values<const N: usize> = [Option<Vec<u8>>; N];

/// [`read_guest`], and in the same transaction the value of each of `extra`,
/// keys of the guest's `data/mdguard` (`None`: absent). A key the listing of
/// `data/mdguard` does not name is not read: each read is a request, and
/// xenstored 4.17 with 1000 domains spends about a millisecond on one
/// (benches/host_scale.rs).
pub(super) fn read_guest_with<const N: usize>(
    c: &mut Client,
    id: u32,
    extra: [&str; N],
) -> Result<(GuestStatus, Values<N>), Error> {
    let name = domain_name(c, id);
    c.transaction(|t| read_guest_in(t, id, &name, extra))
}

fn read_guest_in<const N: usize>(
    t: &mut Txn<'_>,
    id: u32,
    name: &str,
    extra: [&str; N],
) -> Result<(GuestStatus, Values<N>), Error> {
    let base = format!("/local/domain/{id}/{}", schema::DATA_DIR);
    let mut g = GuestStatus::new(id, name.to_string());
    let keys = match t.directory(&base) {
        Ok(v) => v,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => return Err(e),
    };
    // what the listing names, read; the rest is absent
    let read = |t: &mut Txn<'_>, key: &str| -> Result<Option<Vec<u8>>, Error> {
        if keys.iter().any(|k| k == key) {
            t.try_read(&format!("{base}/{key}"))
        } else {
            Ok(None)
        }
    };
    let mut values: Values<N> = std::array::from_fn(|_| None);
    for (v, k) in values.iter_mut().zip(extra) {
        *v = read(t, k)?;
    }
    if keys.is_empty() {
        return Ok((g, values));
    }
    let published = match read(t, schema::KEY_HEALTH)? {
        None => {
            g.errors.push("health missing".into());
            Health::Unknown
        }
        Some(v) => Health::parse(&v).unwrap_or_else(|e| {
            g.errors.push(format!("health: {e}"));
            Health::Unknown
        }),
    };
    g.agent = if read(t, schema::KEY_STOPPED)?.is_some() {
        AgentState::Stopped
    } else {
        AgentState::NotAsked
    };
    match read(t, schema::KEY_VERSION)? {
        None => g.errors.push("version missing".into()),
        Some(v) => match schema::parse_u64(&v) {
            Ok(n) => g.version = Some(n),
            Err(e) => g.errors.push(format!("version: {e}")),
        },
    }
    if let Some(v) = read(t, schema::KEY_UPDATED)? {
        match schema::parse_u64(&v) {
            Ok(n) => g.updated = Some(n),
            Err(e) => g.errors.push(format!("updated: {e}")),
        }
    }
    let names = if keys.iter().any(|k| k == schema::KEY_ARRAYS) {
        match t.directory(&format!("{base}/{}", schema::KEY_ARRAYS)) {
            Ok(v) => v,
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => return Err(e),
        }
    } else {
        Vec::new()
    };
    if names.len() > ARRAYS_MAX {
        g.errors.push(format!(
            "{} arrays published, the first {ARRAYS_MAX} read",
            names.len()
        ));
    }
    let mut arrays = BTreeMap::new();
    for n in names.iter().take(ARRAYS_MAX) {
        if !schema::valid_name(n) {
            g.errors.push(format!(
                "array name {:?}",
                crate::text::printable(n.as_bytes(), 32)
            ));
            continue;
        }
        if let Some(v) = t.try_read(&format!("{base}/{}/{n}", schema::KEY_ARRAYS))? {
            match ArrayJson::parse(&v) {
                Ok(j) => {
                    arrays.insert(n.clone(), j);
                }
                Err(e) => g.errors.push(format!("{n}: {e}")),
            }
        }
    }
    g.health = Some(judge(published, &arrays, &mut g.errors));
    g.arrays = arrays;
    Ok((g, values))
}

/// Every domain's report; each agent that published is pinged (unless
/// `ping_timeout` is None) and one that does not answer in time is `silent`.
fn read_all(c: &mut Client, ping_timeout: Option<Duration>) -> Result<Vec<GuestStatus>, HostError> {
    let mut guests = Vec::new();
    for id in domids(c)? {
        match read_guest(c, id) {
            Ok(g) => guests.push(g),
            Err(e) if e.is_connection() => return Err(e.into()),
            Err(e) => {
                let mut g = GuestStatus::new(id, domain_name(c, id));
                g.health = Some(Health::Unknown);
                g.errors.push(format!("unreachable: {e}"));
                guests.push(g);
            }
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
    Ok(guests)
}

/// dom0's backends of guest `domid` (both kinds, by kind and devid); what
/// does not parse goes to `problems`.
pub(super) fn read_backends(
    c: &mut Client,
    domid: u32,
    problems: &mut Vec<String>,
) -> Result<Vec<Backend>, Error> {
    let mut out = Vec::new();
    for kind in BackendKind::ALL {
        let dir = kind.dir(domid);
        let ids = match c.directory(&dir) {
            Ok(v) => v,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        if ids.len() > storage::BACKENDS_MAX {
            problems.push(format!(
                "{dir}: {} backends, the first {} read",
                ids.len(),
                storage::BACKENDS_MAX
            ));
        }
        for id in ids.iter().take(storage::BACKENDS_MAX) {
            let key = |k: &str| format!("{dir}/{id}/{k}");
            let raw = RawBackend {
                dev: c.try_read(&key(storage::KEY_DEV))?,
                params: c.try_read(&key(storage::KEY_PARAMS))?,
                type_: c.try_read(&key(storage::KEY_TYPE))?,
                state: c.try_read(&key(storage::KEY_STATE))?,
                frontend_id: c.try_read(&key(storage::KEY_FRONTEND_ID))?,
                physical_device: c.try_read(&key(storage::KEY_PHYSICAL_DEVICE))?,
            };
            if raw.dev.is_none() && raw.params.is_none() && raw.state.is_none() {
                continue; // removed meanwhile (or still being written)
            }
            match Backend::parse(kind, domid, id, &raw) {
                Ok(b) => out.push(b),
                Err(e) => problems.push(format!("{dir}/{id}: {e}")),
            }
        }
    }
    out.sort_by_key(|b| (b.kind, b.devid));
    Ok(out)
}

/// `host status`: one line per guest, or the storage view (`by_storage`:
/// every storage; `only`: the storages a pattern matches, as one, and the
/// exit code that storage's).
fn status(
    c: &mut Client,
    json: bool,
    ping_timeout: Option<Duration>,
    by_storage: bool,
    only: Option<&StoragePattern>,
) -> Result<i32, HostError> {
    let guests = read_all(c, ping_timeout)?;
    let mut code = guest::host_code(guests.iter().map(GuestStatus::verdict));
    let mut problems = Vec::new();
    let mut backends: Vec<Vec<Backend>> = Vec::new();
    let mut legs: Vec<Vec<Leg>> = Vec::new();
    if by_storage {
        for g in &guests {
            let b = read_backends(c, g.domid, &mut problems)?;
            legs.push(storage::legs(&g.arrays, &b));
            backends.push(b);
        }
    }
    let grouping =
        by_storage.then(|| storage::group(&GuestStorage::of_all(&guests, &backends, &legs), only));
    if let (Some(pat), Some(g)) = (only, &grouping) {
        let Some(group) = g.groups.first() else {
            return Err(HostError::Usage(format!(
                "no guest has a dom0 backend on storage {}",
                crate::text::printable(pat.as_str().as_bytes(), 200)
            )));
        };
        code = group
            .worst()
            .and_then(guest::Verdict::code)
            .unwrap_or(CheckCode::Unknown);
    }
    if json {
        let views: Vec<GuestView> = guests
            .iter()
            .enumerate()
            .map(|(i, g)| GuestView {
                status: g,
                storage: by_storage.then(|| (&backends[i][..], &legs[i][..])),
            })
            .collect();
        println!(
            "{}",
            render::status_json(&views, code, grouping.as_ref().map(|g| (g, &problems[..])))
        );
    } else if let Some(g) = &grouping {
        print!(
            "{}",
            render::storage_text(&guests, g, &problems, only.is_none())
        );
    } else {
        print!("{}", render::guest_lines(&guests, unix_now()));
    }
    Ok(code as i32)
}

// ---------------------------------------------------------------- metrics

/// `host metrics`: every guest's series ([`crate::report::metrics::host`]) on
/// stdout or to a textfile. When xenstore cannot be read it still says so, as
/// `mdguard_xenstore_up 0` alone (a textfile left as it was would go on
/// telling the last state as the present), and exits 3.
fn metrics(ping: Option<Duration>, textfile: Option<&std::path::Path>) -> i32 {
    use crate::report::metrics::{exposition::Families, host as series, write_textfile};
    let read = Client::open().map_err(HostError::from).and_then(|mut c| {
        let guests = read_all(&mut c, ping)?;
        let admission = read_grants(&mut c, &guests)?;
        Ok((guests, admission))
    });
    let (text, code) = match read {
        Ok((guests, admission)) => (series::host_metrics(&guests, &admission).render(), 0),
        Err(e) => {
            let why = match e {
                HostError::Usage(m) => m,
                HostError::Xs(e) => e.to_string(),
            };
            eprintln!("mdguard host: {why}");
            let mut f = Families::new();
            series::xenstore_up(&mut f, false);
            (f.render(), EXIT_UNKNOWN)
        }
    };
    match textfile {
        None => {
            print!("{text}");
            code
        }
        Some(p) => match write_textfile(p, &text) {
            Ok(()) => code,
            Err(e) => {
                eprintln!("mdguard host: cannot write {}: {e}", p.display());
                EXIT_UNKNOWN
            }
        },
    }
}

/// Resync admission as xenstore holds it, for every guest that publishes:
/// dom0's answer to its standing request and the budget written for it
/// (each guest in one transaction). A value that does not parse counts as
/// none: the planner ignores it too.
fn read_grants(c: &mut Client, guests: &[GuestStatus]) -> Result<grants::Admission, Error> {
    use crate::report::admission::{Answer, Request, CTL_GRANT, KEY_REQUEST};
    let mut out = grants::Admission::default();
    for g in guests.iter().filter(|g| g.health.is_some()) {
        let home = format!("/local/domain/{}", g.domid);
        let ctl = |k: &str| format!("{home}/{}/{k}", schema::CONTROL_DIR);
        let (answer, request, budget) = match c.transaction(|t| {
            Ok((
                t.try_read(&ctl(CTL_GRANT))?,
                t.try_read(&format!("{home}/{}/{KEY_REQUEST}", schema::DATA_DIR))?,
                t.try_read(&ctl(schema::CTL_BUDGET))?,
            ))
        }) {
            Ok(v) => v,
            Err(e) if e.is_connection() => return Err(e),
            Err(_) => continue, // gone meanwhile: no admission to show
        };
        let answer = answer.and_then(|v| Answer::parse(&v).ok());
        let request = request.and_then(|v| Request::parse(&v).ok());
        out.guests.insert(
            g.domid,
            grants::GuestGrant {
                grant: grants::Grant::of(answer.as_ref(), request.as_ref()),
                budget_kbps: budget
                    .and_then(|v| schema::parse_budget_kbps(&v).ok())
                    .flatten(),
            },
        );
    }
    Ok(out)
}

// ---------------------------------------------------------------- probe

/// Write a new probe token to each target: every guest, one domain, or every
/// guest with a dom0 backend on the storage (what dom0 holds, not what the
/// guest says).
fn probe(c: &mut Client, target: &Target) -> Result<i32, HostError> {
    let doms: Vec<(u32, String, Option<String>)> = match target {
        Target::All | Target::Domain(_) => {
            let sel = match target {
                Target::Domain(d) => Some(d.as_str()),
                _ => None,
            };
            targets(c, sel)?
                .into_iter()
                .map(|(id, name)| (id, name, None))
                .collect()
        }
        Target::Storage(pat) => on_storage(c, pat)?
            .into_iter()
            .map(|(id, name, why)| (id, name, Some(why)))
            .collect(),
    };
    let token = new_token();
    for (id, name, why) in &doms {
        write_control(c, *id, schema::CTL_PROBE, token.as_bytes())?;
        let mut line = format!(
            "{id} {} probe={token}",
            crate::text::printable_str(name, 40)
        );
        if let Some(w) = why {
            line.push_str(&format!(" ({w})"));
        }
        println!("{line}");
    }
    Ok(0)
}

/// Every guest with a dom0 backend whose storage matches: domid, name, and
/// which of its devices on which storage.
fn on_storage(
    c: &mut Client,
    pat: &StoragePattern,
) -> Result<Vec<(u32, String, String)>, HostError> {
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for (id, name) in targets(c, None)? {
        let hits: Vec<String> = read_backends(c, id, &mut problems)?
            .iter()
            .filter_map(|b| {
                let s = b.storage.as_ref().filter(|s| pat.matches(s))?;
                Some(format!(
                    "{} on {}",
                    b.dev,
                    crate::text::printable(s.as_str().as_bytes(), 200)
                ))
            })
            .collect();
        if !hits.is_empty() {
            out.push((id, name, hits.join(", ")));
        }
    }
    for p in &problems {
        eprintln!(
            "mdguard host: warning: {}",
            crate::text::printable(p.as_bytes(), 200)
        );
    }
    if out.is_empty() {
        return Err(HostError::Usage(format!(
            "no guest has a dom0 backend on storage {}",
            crate::text::printable(pat.as_str().as_bytes(), 200)
        )));
    }
    Ok(out)
}

// ---------------------------------------------------------------- ping

/// Ask each of `doms` to answer (one token, written to each guest's
/// `control/mdguard/ping`, its `data/mdguard/pong` watched) and wait up to
/// `timeout` after the last ping is written: who answered, after how long
/// (from the first ping). A pong is read when its
/// watch fires, and only then: with 1000 guests, reading every pong still
/// awaited at each wake-up was a million reads.
fn ask(
    c: &mut Client,
    doms: &[(u32, String)],
    timeout: Duration,
) -> Result<BTreeMap<u32, Duration>, HostError> {
    let token = new_token();
    // every watch fires once when set: room for that and an answer each
    c.set_event_limit(crate::xenstore::MAX_QUEUED_EVENTS + 2 * doms.len());
    // watch token -> guest, and whether its watch has fired once (when set)
    let mut pending: BTreeMap<String, (u32, bool)> = BTreeMap::new();
    for (id, _) in doms {
        let watch = format!("pong-{id}");
        c.watch(&pong_path(*id), &watch)?;
        pending.insert(watch, (*id, false));
    }
    // each answer's time counts from the first ping; the timeout from the
    // last one, so that no guest has less than it because there are many
    // to write to (1000 guests' pings took longer than the default 2 s)
    let start = Instant::now();
    let writes: Vec<admission::Write> = doms
        .iter()
        .map(|(id, _)| admission::Write {
            domid: *id,
            key: schema::CTL_PING,
            value: Some(token.as_bytes().to_vec()),
        })
        .collect();
    // a guest gone meanwhile is not waited for
    for id in writer::write_plan(c, &writes)? {
        pending.remove(&format!("pong-{id}"));
    }
    let deadline = Instant::now() + timeout;
    let mut answered = BTreeMap::new();
    while !pending.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let events = c.wait_events(left)?;
        // the pongs to read: those whose watch fired after it was set (or
        // all, when events were lost)
        let lost = c.take_events_lost();
        let mut read: std::collections::BTreeSet<String> = Default::default();
        for ev in events {
            if let Some((_, fired)) = pending.get_mut(&ev.token) {
                // each watch fires once when set, before any change
                if std::mem::replace(fired, true) {
                    read.insert(ev.token);
                }
            }
        }
        if lost {
            read = pending.keys().cloned().collect();
            pending.values_mut().for_each(|(_, fired)| *fired = true);
        }
        for w in read {
            let Some(&(id, _)) = pending.get(&w) else {
                continue;
            };
            if c.try_read(&pong_path(id))?.as_deref() == Some(token.as_bytes()) {
                answered.insert(id, start.elapsed());
                pending.remove(&w);
            }
        }
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
