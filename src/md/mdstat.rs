//! `/proc/mdstat` parser.
//!
//! The text is what `md_seq_show()` in the kernel's drivers/md/md.c prints:
//!
//! ```text
//! Personalities : [raid1] [raid6] [raid5] [raid4]
//! md0 : active raid1 nbd1p1[1](F) nbd0p1[0]
//!       1047552 blocks super 1.2 [2/1] [U_]
//!       [=>...................]  recovery =  5.0% (52736/1047552) finish=0.9min speed=17578K/sec
//!       bitmap: 1/1 pages [4KB], 65536KB chunk
//!
//! unused devices: <none>
//! ```
//!
//! The parser never panics and never gives up on the whole file: a line it does not
//! understand becomes a [`Problem`] (line number, what was expected, what was seen)
//! and every array it can still read is returned.

use crate::text::ellipsize;
use serde::Serialize;
use std::fmt;

/// Whole parse result.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Mdstat {
    pub personalities: Vec<String>,
    pub arrays: Vec<MdstatArray>,
    pub unused_devices: Vec<String>,
    pub problems: Vec<Problem>,
}

/// Something in the text that was not understood. Lines count from 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// First word of the array line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Active,
    Inactive,
    Broken,
}

/// `(read-only)` / `(auto-read-only)` after the run state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadOnly {
    ReadOnly,
    AutoReadOnly,
}

/// One component as listed on the array line: `name[desc](W)(J)(F)(S)(R)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MdstatMember {
    pub device: String,
    /// Descriptor number: NOT the slot.
    pub descriptor: u32,
    pub write_mostly: bool,
    pub journal: bool,
    pub faulty: bool,
    pub spare: bool,
    pub replacement: bool,
}

/// What the sync line says the sync thread is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MdstatSyncKind {
    Recovery,
    Resync,
    Check,
    Reshape,
}

impl MdstatSyncKind {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "recovery" | "recover" => Self::Recovery,
            "resync" => Self::Resync,
            "check" => Self::Check,
            "reshape" => Self::Reshape,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Recovery => "recovery",
            Self::Resync => "resync",
            Self::Check => "check",
            Self::Reshape => "reshape",
        }
    }
}

/// Sync progress, or the word that says why it is not progressing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum MdstatSync {
    Progress {
        kind: MdstatSyncKind,
        percent: f64,
        /// KiB done / total (mdstat prints 1 KiB blocks).
        done_kb: u64,
        total_kb: u64,
        finish_min: Option<f64>,
        speed_kbps: Option<u64>,
    },
    /// `resync=DELAYED`
    Delayed(MdstatSyncKind),
    /// `resync=PENDING`
    Pending(MdstatSyncKind),
    /// `recover=REMOTE`, `resync=REMOTE`, `reshape=REMOTE`
    Remote(MdstatSyncKind),
}

/// The bitmap line: `bitmap: u/t pages [NKB], CKB chunk[, file: path]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MdstatBitmap {
    pub pages_used: u64,
    pub pages_total: u64,
    pub kb: u64,
    /// Chunk in bytes (the kernel prints KB, or B for small chunks).
    pub chunk_bytes: u64,
    pub file: Option<String>,
}

/// One array block of /proc/mdstat.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MdstatArray {
    pub name: String,
    /// Line number of the `mdX : ...` line.
    pub line: usize,
    pub state: RunState,
    pub read_only: Option<ReadOnly>,
    pub level: Option<String>,
    pub members: Vec<MdstatMember>,
    /// Size in 1 KiB blocks.
    pub blocks: Option<u64>,
    /// `1.2`, `external:imsm`, `non-persistent`; `0.90` when the kernel printed no
    /// `super` word on a size line (it omits it for 0.90).
    pub metadata: Option<String>,
    /// Personality detail between metadata and `[n/m]`: `level 5, 512k chunk,
    /// algorithm 2`, `512k chunks`, `64k rounding`, `2 near-copies`.
    pub detail: Option<String>,
    /// `[n/m]`: raid disks / working.
    pub raid_disks: Option<u32>,
    pub working: Option<u32>,
    /// `[UU_]`: per slot, true = up.
    pub slots: Option<Vec<bool>>,
    pub sync: Option<MdstatSync>,
    pub bitmap: Option<MdstatBitmap>,
}

impl MdstatArray {
    fn new(name: &str, line: usize, state: RunState) -> Self {
        MdstatArray {
            name: name.to_string(),
            line,
            state,
            read_only: None,
            level: None,
            members: Vec::new(),
            blocks: None,
            metadata: None,
            detail: None,
            raid_disks: None,
            working: None,
            slots: None,
            sync: None,
            bitmap: None,
        }
    }
}

/// Parse the text of /proc/mdstat. Never panics; problems are collected, not fatal.
pub fn parse(text: &str) -> Mdstat {
    let mut out = Mdstat::default();
    let mut cur: Option<MdstatArray> = None;
    let mut seen_personalities = false;
    for (idx, raw) in text.lines().enumerate() {
        let n = idx + 1;
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = strip_key(line, "Personalities") {
            if let Some(a) = cur.take() {
                finish(a, &mut out);
            }
            seen_personalities = true;
            for tok in rest.split_whitespace() {
                match tok.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
                    Some(p) if !p.is_empty() => out.personalities.push(p.to_string()),
                    _ => out.problems.push(Problem {
                        line: n,
                        message: format!("expected a personality like `[raid1]`, got `{tok}`"),
                    }),
                }
            }
            continue;
        }
        if let Some(rest) = strip_key(line, "unused devices") {
            if let Some(a) = cur.take() {
                finish(a, &mut out);
            }
            if rest != "<none>" {
                out.unused_devices
                    .extend(rest.split_whitespace().map(|d| strip_desc(d).to_string()));
            }
            continue;
        }
        if let Some((name, rest)) = array_header(line) {
            if let Some(a) = cur.take() {
                finish(a, &mut out);
            }
            cur = parse_header(name, rest, n, &mut out.problems);
            continue;
        }
        match cur.as_mut() {
            Some(a) => body_line(a, line, n, &mut out.problems),
            None => out.problems.push(Problem {
                line: n,
                message: format!(
                    "unrecognised line outside any array (expected `Personalities :`, `mdX : ...` or `unused devices:`): `{}`",
                    ellipsize(line)
                ),
            }),
        }
    }
    if let Some(a) = cur.take() {
        finish(a, &mut out);
    }
    if !seen_personalities && out.arrays.is_empty() {
        out.problems.push(Problem {
            line: 1,
            message: "no `Personalities :` line and no array: this is not /proc/mdstat text".into(),
        });
    }
    out
}

/// Sanity checks once an array's block is complete.
fn finish(a: MdstatArray, out: &mut Mdstat) {
    if a.blocks.is_none() {
        out.problems.push(Problem {
            line: a.line,
            message: format!(
                "{}: the array's text ends before its size line (`N blocks ...`): truncated?",
                a.name
            ),
        });
    }
    if let (Some(n), Some(s)) = (a.raid_disks, a.slots.as_ref()) {
        if s.len() != n as usize {
            out.problems.push(Problem {
                line: a.line,
                message: format!(
                    "{}: [n/m] says {} raid disks but the slot pattern has {}",
                    a.name,
                    n,
                    s.len()
                ),
            });
        }
    }
    out.arrays.push(a);
}

/// `Key : rest` or `Key: rest` (the kernel prints `Personalities :` and
/// `unused devices: `).
fn strip_key<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(key)?;
    let rest = rest.trim_start();
    let rest = rest.strip_prefix(':')?;
    Some(rest.trim())
}

/// `md0 : active raid1 ...` -> ("md0", "active raid1 ...").
fn array_header(line: &str) -> Option<(&str, &str)> {
    let (name, rest) = line.split_once(" : ")?;
    let name = name.trim();
    let ok = name.starts_with("md")
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    ok.then_some((name, rest))
}

fn strip_desc(tok: &str) -> &str {
    tok.split('[').next().unwrap_or(tok)
}

fn parse_header(
    name: &str,
    rest: &str,
    n: usize,
    problems: &mut Vec<Problem>,
) -> Option<MdstatArray> {
    let mut toks = rest.split_whitespace().peekable();
    let state = match toks.next() {
        Some("active") => RunState::Active,
        Some("inactive") => RunState::Inactive,
        Some("broken") => RunState::Broken,
        other => {
            problems.push(Problem {
                line: n,
                message: format!(
                    "{name}: expected `active`, `inactive` or `broken` after `{name} :`, got `{}`",
                    other.unwrap_or("")
                ),
            });
            return None;
        }
    };
    let mut a = MdstatArray::new(name, n, state);
    match toks.peek().copied() {
        Some("(read-only)") => {
            a.read_only = Some(ReadOnly::ReadOnly);
            toks.next();
        }
        Some("(auto-read-only)") => {
            a.read_only = Some(ReadOnly::AutoReadOnly);
            toks.next();
        }
        _ => {}
    }
    for tok in toks {
        if a.members.is_empty() && a.level.is_none() && !tok.contains('[') {
            a.level = Some(tok.to_string());
            continue;
        }
        match parse_member(tok) {
            Ok(m) => a.members.push(m),
            Err(e) => problems.push(Problem {
                line: n,
                message: format!("{name}: member `{}`: {e}", ellipsize(tok)),
            }),
        }
    }
    Some(a)
}

/// `sdb1[3](W)(F)` -> member.
fn parse_member(tok: &str) -> Result<MdstatMember, String> {
    let open = tok
        .find('[')
        .ok_or("expected `device[N]` with a descriptor number")?;
    let close = tok[open..]
        .find(']')
        .map(|c| c + open)
        .ok_or("missing `]` after the descriptor number")?;
    let device = &tok[..open];
    if device.is_empty() {
        return Err("empty device name".into());
    }
    let descriptor: u32 = tok[open + 1..close]
        .parse()
        .map_err(|_| format!("descriptor `{}` is not a number", &tok[open + 1..close]))?;
    let mut m = MdstatMember {
        device: device.to_string(),
        descriptor,
        ..Default::default()
    };
    let mut flags = &tok[close + 1..];
    while !flags.is_empty() {
        let f = flags
            .strip_prefix('(')
            .and_then(|f| f.split_once(')'))
            .ok_or_else(|| format!("expected a flag like `(F)`, got `{flags}`"))?;
        match f.0 {
            "W" => m.write_mostly = true,
            "J" => m.journal = true,
            "F" => m.faulty = true,
            "S" => m.spare = true,
            "R" => m.replacement = true,
            other => return Err(format!("unknown member flag `({other})`")),
        }
        flags = f.1;
    }
    Ok(m)
}

fn body_line(a: &mut MdstatArray, line: &str, n: usize, problems: &mut Vec<Problem>) {
    let res = if line.starts_with("bitmap:") {
        parse_bitmap(line).map(|b| a.bitmap = Some(b))
    } else if let Some(s) = sync_word(line) {
        s.map(|s| a.sync = Some(s))
    } else if line.contains("blocks") && a.blocks.is_none() {
        parse_size_line(a, line)
    } else {
        Err(format!(
            "unrecognised line in the array's text (expected its size, sync or bitmap line): `{}`",
            ellipsize(line)
        ))
    };
    if let Err(e) = res {
        problems.push(Problem {
            line: n,
            message: format!("{}: {e}", a.name),
        });
    }
}

/// `1047552 blocks super 1.2 [2/1] [U_]` and personality variants.
fn parse_size_line(a: &mut MdstatArray, line: &str) -> Result<(), String> {
    let mut toks = line.split_whitespace();
    let blocks = toks.next().unwrap_or("");
    a.blocks = Some(
        blocks
            .parse()
            .map_err(|_| format!("expected `N blocks`, got `{}`", ellipsize(line)))?,
    );
    if toks.next() != Some("blocks") {
        return Err(format!("expected `N blocks`, got `{}`", ellipsize(line)));
    }
    let rest: Vec<&str> = toks.collect();
    let mut i = 0;
    let mut detail: Vec<&str> = Vec::new();
    let mut saw_super = false;
    while i < rest.len() {
        let t = rest[i];
        if t == "super" {
            let v = rest
                .get(i + 1)
                .ok_or("`super` without a metadata version")?;
            a.metadata = Some((*v).to_string());
            saw_super = true;
            i += 2;
            continue;
        }
        if let Some(inner) = t.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            if let Some((x, y)) = inner.split_once('/') {
                let x: u32 = x
                    .parse()
                    .map_err(|_| format!("bad `[n/m]` count `{t}`: expected numbers"))?;
                let y: u32 = y
                    .parse()
                    .map_err(|_| format!("bad `[n/m]` count `{t}`: expected numbers"))?;
                a.raid_disks = Some(x);
                a.working = Some(y);
            } else if !inner.is_empty() && inner.bytes().all(|b| b == b'U' || b == b'_') {
                a.slots = Some(inner.bytes().map(|b| b == b'U').collect());
            } else {
                return Err(format!(
                    "bad slot pattern `{t}`: expected only `U` and `_` inside [ ]"
                ));
            }
            i += 1;
            continue;
        }
        detail.push(t);
        i += 1;
    }
    if !saw_super {
        // md_seq_show prints nothing for v0.90 superblocks.
        a.metadata = Some("0.90".into());
    }
    if !detail.is_empty() {
        a.detail = Some(detail.join(" "));
    }
    Ok(())
}

/// Returns Some(..) when the line is a sync line (progress or `x=WORD`).
fn sync_word(line: &str) -> Option<Result<MdstatSync, String>> {
    // `resync=DELAYED` and friends
    if let Some((k, v)) = line.split_once('=') {
        if !k.contains(' ') && !k.starts_with('[') {
            if let Some(kind) = MdstatSyncKind::parse(k) {
                return Some(match v.trim() {
                    "DELAYED" => Ok(MdstatSync::Delayed(kind)),
                    "PENDING" => Ok(MdstatSync::Pending(kind)),
                    "REMOTE" => Ok(MdstatSync::Remote(kind)),
                    o => Err(format!(
                        "`{k}=` followed by `{o}`: expected DELAYED, PENDING or REMOTE"
                    )),
                });
            }
        }
    }
    // progress: optional `[==>...]` bar, then `kind = p% (a/b) finish=.. speed=..`
    let body = if line.starts_with('[') {
        let close = line.find(']')?;
        let bar = &line[1..close];
        if !bar.bytes().all(|b| matches!(b, b'=' | b'>' | b'.')) {
            return None;
        }
        line[close + 1..].trim_start()
    } else {
        line
    };
    let (kind, rest) = body.split_once('=')?;
    let kind = MdstatSyncKind::parse(kind.trim())?;
    Some(parse_progress(kind, rest))
}

fn parse_progress(kind: MdstatSyncKind, rest: &str) -> Result<MdstatSync, String> {
    let rest = rest.trim();
    let (pct, rest) = rest
        .split_once('%')
        .ok_or_else(|| format!("{}: expected `NN.N%`", kind.as_str()))?;
    let percent: f64 = pct.trim().parse().map_err(|_| {
        format!(
            "{}: percent `{}` is not a number",
            kind.as_str(),
            pct.trim()
        )
    })?;
    if !(0.0..=100.0).contains(&percent) {
        return Err(format!("{}: percent {percent} out of range", kind.as_str()));
    }
    let rest = rest.trim_start();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.split_once(')'))
        .ok_or_else(|| {
            format!(
                "{}: expected `(done/total)` after the percent",
                kind.as_str()
            )
        })?;
    let (d, t) = inner
        .0
        .split_once('/')
        .ok_or_else(|| format!("{}: expected `(done/total)`", kind.as_str()))?;
    let done_kb: u64 = d
        .parse()
        .map_err(|_| format!("{}: done count `{d}` is not a number", kind.as_str()))?;
    let total_kb: u64 = t
        .parse()
        .map_err(|_| format!("{}: total count `{t}` is not a number", kind.as_str()))?;
    let mut finish_min = None;
    let mut speed_kbps = None;
    for tok in inner.1.split_whitespace() {
        if let Some(v) = tok.strip_prefix("finish=") {
            let v = v
                .strip_suffix("min")
                .ok_or_else(|| format!("finish `{v}`: expected minutes like `1.5min`"))?;
            finish_min = Some(
                v.parse::<f64>()
                    .map_err(|_| format!("finish `{v}` is not a number"))?,
            );
        } else if let Some(v) = tok.strip_prefix("speed=") {
            let v = v
                .strip_suffix("K/sec")
                .ok_or_else(|| format!("speed `{v}`: expected `NK/sec`"))?;
            speed_kbps = Some(
                v.parse::<u64>()
                    .map_err(|_| format!("speed `{v}` is not a number"))?,
            );
        } else {
            return Err(format!("unexpected `{tok}` in the sync line"));
        }
    }
    Ok(MdstatSync::Progress {
        kind,
        percent,
        done_kb,
        total_kb,
        finish_min,
        speed_kbps,
    })
}

/// `bitmap: 1/1 pages [4KB], 65536KB chunk, file: /bitmap`
fn parse_bitmap(line: &str) -> Result<MdstatBitmap, String> {
    let bad = || {
        format!(
            "expected `bitmap: used/total pages [NKB], NKB chunk[, file: path]`, got `{}`",
            ellipsize(line)
        )
    };
    let rest = line.strip_prefix("bitmap:").ok_or_else(bad)?.trim();
    let (pages, rest) = rest.split_once(" pages").ok_or_else(bad)?;
    let (u, t) = pages.trim().split_once('/').ok_or_else(bad)?;
    let pages_used = u.parse().map_err(|_| bad())?;
    let pages_total = t.parse().map_err(|_| bad())?;
    let rest = rest.trim_start();
    let (kb, rest) = rest
        .strip_prefix('[')
        .and_then(|r| r.split_once("KB]"))
        .ok_or_else(bad)?;
    let kb = kb.parse().map_err(|_| bad())?;
    let rest = rest.trim_start().strip_prefix(',').ok_or_else(bad)?.trim();
    let (chunk, rest) = rest.split_once(" chunk").ok_or_else(bad)?;
    let chunk_bytes = if let Some(k) = chunk.strip_suffix("KB") {
        k.parse::<u64>()
            .map_err(|_| bad())?
            .checked_mul(1024)
            .ok_or_else(bad)?
    } else if let Some(b) = chunk.strip_suffix('B') {
        b.parse().map_err(|_| bad())?
    } else {
        return Err(bad());
    };
    let rest = rest.trim();
    let file = if rest.is_empty() {
        None
    } else {
        let f = rest
            .strip_prefix(',')
            .map(str::trim)
            .and_then(|r| r.strip_prefix("file:"))
            .ok_or_else(bad)?;
        Some(f.trim().to_string())
    };
    Ok(MdstatBitmap {
        pages_used,
        pages_total,
        kb,
        chunk_bytes,
        file,
    })
}

/// Render a parsed mdstat back to text in the kernel's format. Used by the property
/// tests (render -> parse -> compare) and by tools that want canonical text.
pub fn render(m: &Mdstat) -> String {
    let mut s = String::from("Personalities :");
    for p in &m.personalities {
        s.push_str(&format!(" [{p}]"));
    }
    s.push_str(" \n");
    for a in &m.arrays {
        let st = match a.state {
            RunState::Active => "active",
            RunState::Inactive => "inactive",
            RunState::Broken => "broken",
        };
        s.push_str(&format!("{} : {st}", a.name));
        match a.read_only {
            Some(ReadOnly::ReadOnly) => s.push_str(" (read-only)"),
            Some(ReadOnly::AutoReadOnly) => s.push_str(" (auto-read-only)"),
            None => {}
        }
        if let Some(l) = &a.level {
            s.push_str(&format!(" {l}"));
        }
        for m in &a.members {
            s.push_str(&format!(" {}[{}]", m.device, m.descriptor));
            for (on, f) in [
                (m.write_mostly, "(W)"),
                (m.journal, "(J)"),
                (m.faulty, "(F)"),
                (m.spare, "(S)"),
                (m.replacement, "(R)"),
            ] {
                if on {
                    s.push_str(f);
                }
            }
        }
        if let Some(b) = a.blocks {
            s.push_str(&format!("\n      {b} blocks"));
            match a.metadata.as_deref() {
                Some("0.90") | None => {}
                Some(v) => s.push_str(&format!(" super {v}")),
            }
            if let Some(d) = &a.detail {
                s.push_str(&format!(" {d}"));
            }
            if let (Some(n), Some(w)) = (a.raid_disks, a.working) {
                s.push_str(&format!(" [{n}/{w}]"));
            }
            if let Some(sl) = &a.slots {
                let p: String = sl.iter().map(|u| if *u { 'U' } else { '_' }).collect();
                s.push_str(&format!(" [{p}]"));
            }
        }
        s.push_str("\n      ");
        match &a.sync {
            Some(MdstatSync::Progress {
                kind,
                percent,
                done_kb,
                total_kb,
                finish_min,
                speed_kbps,
            }) => {
                let filled = ((percent / 5.0) as usize).min(19);
                let bar = format!("{}>{}", "=".repeat(filled), ".".repeat(19 - filled));
                s.push_str(&format!(
                    "[{bar}]  {} = {percent:.1}% ({done_kb}/{total_kb})",
                    kind.as_str()
                ));
                if let Some(f) = finish_min {
                    s.push_str(&format!(" finish={f:.1}min"));
                }
                if let Some(v) = speed_kbps {
                    s.push_str(&format!(" speed={v}K/sec"));
                }
                s.push_str("\n      ");
            }
            Some(MdstatSync::Delayed(k)) => {
                s.push_str(&format!("\t{}=DELAYED\n      ", k.as_str()))
            }
            Some(MdstatSync::Pending(k)) => {
                s.push_str(&format!("\t{}=PENDING\n      ", k.as_str()))
            }
            Some(MdstatSync::Remote(k)) => s.push_str(&format!("\t{}=REMOTE\n      ", k.as_str())),
            None => {}
        }
        if let Some(b) = &a.bitmap {
            let chunk = if b.chunk_bytes % 1024 == 0 {
                format!("{}KB", b.chunk_bytes / 1024)
            } else {
                format!("{}B", b.chunk_bytes)
            };
            s.push_str(&format!(
                "bitmap: {}/{} pages [{}KB], {chunk} chunk",
                b.pages_used, b.pages_total, b.kb
            ));
            if let Some(f) = &b.file {
                s.push_str(&format!(", file: {f}"));
            }
        }
        s.push_str("\n\n");
    }
    s.push_str("unused devices: ");
    if m.unused_devices.is_empty() {
        s.push_str("<none>");
    } else {
        s.push_str(&m.unused_devices.join(" "));
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEGRADED: &str = "Personalities : [raid1] \n\
md0 : active raid1 nbd1p1[1](F) nbd0p1[0]\n      1047552 blocks super 1.2 [2/1] [U_]\n      \
[=>...................]  recovery =  5.0% (52736/1047552) finish=0.9min speed=17578K/sec\n      \
bitmap: 1/1 pages [4KB], 65536KB chunk\n\nunused devices: <none>\n";

    #[test]
    fn parses_a_recovering_array() {
        let m = parse(DEGRADED);
        assert!(m.problems.is_empty(), "{:?}", m.problems);
        assert_eq!(m.personalities, vec!["raid1"]);
        let a = &m.arrays[0];
        assert_eq!(a.name, "md0");
        assert_eq!(a.state, RunState::Active);
        assert_eq!(a.level.as_deref(), Some("raid1"));
        assert_eq!(a.members.len(), 2);
        assert!(a.members[0].faulty && a.members[0].descriptor == 1);
        assert!(!a.members[1].faulty);
        assert_eq!(a.blocks, Some(1047552));
        assert_eq!(a.metadata.as_deref(), Some("1.2"));
        assert_eq!((a.raid_disks, a.working), (Some(2), Some(1)));
        assert_eq!(a.slots, Some(vec![true, false]));
        match &a.sync {
            Some(MdstatSync::Progress {
                kind,
                percent,
                done_kb,
                total_kb,
                finish_min,
                speed_kbps,
            }) => {
                assert_eq!(*kind, MdstatSyncKind::Recovery);
                assert_eq!(*percent, 5.0);
                assert_eq!((*done_kb, *total_kb), (52736, 1047552));
                assert_eq!(*finish_min, Some(0.9));
                assert_eq!(*speed_kbps, Some(17578));
            }
            o => panic!("unexpected sync {o:?}"),
        }
        let b = a.bitmap.as_ref().unwrap();
        assert_eq!((b.pages_used, b.pages_total, b.kb), (1, 1, 4));
        assert_eq!(b.chunk_bytes, 64 << 20);
        assert!(b.file.is_none());
    }

    #[test]
    fn member_flags_in_kernel_order() {
        let m = parse_member("sdb1[3](W)(J)(F)").unwrap();
        assert!(m.write_mostly && m.journal && m.faulty && !m.spare);
        let m = parse_member("sdc[12](W)(S)(R)").unwrap();
        assert!(m.write_mostly && m.spare && m.replacement && !m.faulty);
        assert_eq!(m.descriptor, 12);
        assert!(parse_member("sdb1[x]").is_err());
        assert!(parse_member("sdb1[1](Q)").is_err());
        assert!(parse_member("sdb1").is_err());
        assert!(parse_member("[1]").is_err());
        assert!(parse_member("sdb1[1](F").is_err());
    }

    #[test]
    fn bitmap_with_file_and_byte_chunk() {
        let b = parse_bitmap("bitmap: 3/8 pages [12KB], 512B chunk, file: /var/md0.bm").unwrap();
        assert_eq!(b.chunk_bytes, 512);
        assert_eq!(b.file.as_deref(), Some("/var/md0.bm"));
        assert!(parse_bitmap("bitmap: x/8 pages [12KB], 64KB chunk").is_err());
        assert!(parse_bitmap("bitmap: 1/8 pages").is_err());
    }

    #[test]
    fn sync_words() {
        let md = "Personalities : [raid1]\nmd1 : active raid1 a[0] b[1]\n      10 blocks [2/2] [UU]\n\trecover=REMOTE\n";
        let m = parse(md);
        assert!(m.problems.is_empty(), "{:?}", m.problems);
        assert_eq!(
            m.arrays[0].sync,
            Some(MdstatSync::Remote(MdstatSyncKind::Recovery))
        );
        let bad = parse("Personalities : [raid1]\nmd1 : active raid1 a[0]\n 10 blocks [2/1] [U_]\n resync=LATER\n");
        assert_eq!(bad.problems.len(), 1);
        assert!(bad.problems[0].message.contains("DELAYED"));
        assert_eq!(bad.problems[0].line, 4);
        // the array itself is still there
        assert_eq!(bad.arrays[0].slots, Some(vec![true, false]));
    }

    #[test]
    fn truncated_text_is_reported_and_array_kept() {
        let m = parse("Personalities : [raid1]\nmd0 : active raid1 sda[0] sdb[1]");
        assert_eq!(m.arrays.len(), 1);
        assert_eq!(m.arrays[0].members.len(), 2);
        assert_eq!(m.problems.len(), 1);
        assert!(m.problems[0].message.contains("truncated"));
    }

    #[test]
    fn garbage_is_a_problem_not_a_panic() {
        let m = parse("\u{0}\u{ffff}[[[ ::: ]]]\nmd0 : \n md0 : active");
        assert!(m.arrays.len() <= 1);
        assert!(!m.problems.is_empty());
        let m = parse("");
        assert!(m.arrays.is_empty());
        assert_eq!(m.problems.len(), 1);
    }

    #[test]
    fn bad_values_name_line_and_expectation() {
        let m = parse("Personalities : [raid1]\nmd0 : active raid1 sda[0] sdb[1]\n      12x blocks [2/2] [UU]\n      [=>..]  resync = 1e9% (1/2)\n");
        assert_eq!(m.problems.len(), 3, "{:?}", m.problems);
        assert_eq!(m.problems[0].line, 3);
        assert!(m.problems[0].message.contains("expected `N blocks`"));
        assert_eq!(m.problems[1].line, 4);
        assert!(m.problems[1].message.contains("out of range"));
        // the missing size line is reported at the array's header line
        assert_eq!(m.problems[2].line, 2);
    }

    #[test]
    fn render_round_trips_the_kernel_text() {
        let m = parse(DEGRADED);
        let again = parse(&render(&m));
        assert!(again.problems.is_empty(), "{:?}", again.problems);
        assert_eq!(again.arrays, m.arrays);
    }
}
