//! xenstored's own account of one connection's work, from its trace (`-T
//! FILE`, the C daemon's option): each request it took (`IN <conn> <date>
//! <time> <TYPE> (<payload>)`) and each watch event it sent (`OUT <conn> ...
//! WATCH_EVENT (...)`). xenstored writes a line as it handles the message,
//! so the file's length marks a moment: benches/host_scale.rs notes it
//! between phases. Tracing makes xenstored several times slower: count with
//! it, time without it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub struct Trace {
    path: PathBuf,
}

/// What one connection did between two marks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests by message type.
    pub requests: BTreeMap<String, u64>,
    pub watch_events: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.requests.values().sum()
    }
}

impl Trace {
    pub fn new(path: &Path) -> Trace {
        Trace {
            path: path.to_path_buf(),
        }
    }

    /// A mark: everything traced so far is before it.
    pub fn mark(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.path).unwrap_or_default()).into_owned()
    }

    /// The connection (xenstored's pointer for it) that first sent a request
    /// of type `ty` whose payload starts with `payload`.
    pub fn conn_of(&self, ty: &str, payload: &str) -> Option<String> {
        self.messages()
            .into_iter()
            .find(|m| m.2 == "IN" && m.3 == ty && m.4.starts_with(payload))
            .map(|m| m.1)
    }

    /// Each traced message: where its line starts, its connection, `IN` or
    /// `OUT`, its type, its payload (NULs shown as spaces).
    fn messages(&self) -> Vec<(u64, String, String, String, String)> {
        let text = self.text();
        let mut at = 0u64;
        let mut out = Vec::new();
        for l in text.split_inclusive('\n') {
            let start = at;
            at += l.len() as u64;
            let f: Vec<&str> = l.trim_end_matches('\n').splitn(6, ' ').collect();
            if f.len() == 6 && (f[0] == "IN" || f[0] == "OUT") {
                let payload = f[5].strip_prefix('(').unwrap_or(f[5]);
                let payload = payload.strip_suffix(')').unwrap_or(payload);
                out.push((start, f[1].into(), f[0].into(), f[4].into(), payload.into()));
            }
        }
        out
    }

    /// The requests `conn` sent: type and payload, in order.
    pub fn requests(&self, conn: &str) -> Vec<(String, String)> {
        self.messages()
            .into_iter()
            .filter(|m| m.1 == conn && m.2 == "IN")
            .map(|m| (m.3, m.4))
            .collect()
    }

    fn add(c: &mut Counts, dir: &str, ty: &str) {
        match dir {
            "IN" => *c.requests.entry(ty.to_string()).or_default() += 1,
            _ if ty == "WATCH_EVENT" => c.watch_events += 1,
            _ => {}
        }
    }

    /// What `conn` did in each span between consecutive `marks` (a line
    /// counts in the span where it starts).
    pub fn count(&self, conn: &str, marks: &[u64]) -> Vec<Counts> {
        let mut out = vec![Counts::default(); marks.len().saturating_sub(1)];
        for (start, c, dir, ty, _) in self.messages() {
            if c != conn {
                continue;
            }
            // the span [marks[i], marks[i + 1]) holding `start`
            let i = marks.iter().rposition(|m| *m <= start);
            if let Some(counts) = i.and_then(|i| out.get_mut(i)) {
                Self::add(counts, &dir, &ty);
            }
        }
        out
    }

    /// What each connection did between two marks.
    pub fn count_all(&self, from: u64, to: u64) -> BTreeMap<String, Counts> {
        let mut out: BTreeMap<String, Counts> = BTreeMap::new();
        for (start, c, dir, ty, _) in self.messages() {
            if (from..to).contains(&start) {
                Self::add(out.entry(c).or_default(), &dir, &ty);
            }
        }
        out
    }
}
