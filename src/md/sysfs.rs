//! Reader for `/sys/block/mdX/md/*`: the kernel's authoritative per-array state.
//!
//! Files that do not exist are simply unknown (older kernels lack some). A value that
//! exists but does not parse is a problem naming the file and what was expected.

use crate::md::model::SpeedLimit;
use crate::root::Root;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// What sysfs says about one array. Every field is optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SysArray {
    pub level: Option<String>,
    pub array_state: Option<String>,
    pub raid_disks: Option<u32>,
    pub degraded: Option<u32>,
    pub sync_action: Option<String>,
    pub sync_completed: Option<SyncCompleted>,
    pub sync_speed: Option<u64>,
    pub sync_speed_min: Option<SpeedLimit>,
    pub sync_speed_max: Option<SpeedLimit>,
    pub metadata_version: Option<String>,
    pub uuid: Option<String>,
    pub bitmap_location: Option<String>,
    pub bitmap_chunk_bytes: Option<u64>,
    pub mismatch_cnt: Option<u64>,
    pub members: Vec<SysMember>,
}

/// `sync_completed`: `none`, `delayed`, or `done / total` in sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncCompleted {
    None,
    Delayed,
    Progress { done: u64, total: u64 },
}

/// `dev-X/`: one member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SysMember {
    pub device: String,
    pub states: Vec<String>,
    /// `None` when the file says `none` (spare, faulty) or is absent.
    pub slot: Option<u32>,
    pub errors: Option<u64>,
    /// Sectors written to the member's block device since it appeared
    /// (`dev-X/block/stat`, field 7), when sysfs has it.
    pub written_sectors: Option<u64>,
}

/// The state words the kernel documents for `dev-X/state` (md.rst).
pub const MEMBER_STATES: &[&str] = &[
    "faulty",
    "in_sync",
    "journal",
    "write_mostly",
    "blocked",
    "spare",
    "write_error",
    "want_replacement",
    "replacement",
    "external_bbl",
    "failfast",
];

/// The values `array_state` can read (md.rst).
pub const ARRAY_STATES: &[&str] = &[
    "clear",
    "inactive",
    "suspended",
    "readonly",
    "read-auto",
    "clean",
    "active",
    "write-pending",
    "active-idle",
    "broken",
];

/// The names of every md array sysfs knows: `/sys/block/md*` with an `md/` dir.
pub fn list_arrays(root: &Root) -> io::Result<Vec<String>> {
    let mut v = Vec::new();
    for e in fs::read_dir(root.path("/sys/block"))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("md") && e.path().join("md").is_dir() {
            v.push(name);
        }
    }
    v.sort_by(|a, b| natural_cmp(a, b));
    Ok(v)
}

/// `md2` < `md10`.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn split(s: &str) -> (&str, Option<u64>) {
        let i = s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        (&s[..i], s[i..].parse().ok())
    }
    split(a).cmp(&split(b)).then_with(|| a.cmp(b))
}

/// Read one array's sysfs directory. `problems` gets one line per bad value.
pub fn read_array(root: &Root, name: &str, problems: &mut Vec<String>) -> Option<SysArray> {
    let dir = root.md_sysfs(name);
    if !dir.is_dir() {
        return None;
    }
    let mut r = Reader { problems };
    let mut a = SysArray {
        level: r.word(&dir.join("level")),
        array_state: r.word(&dir.join("array_state")),
        // `N (M)` while a reshape changes the count from M to N
        raid_disks: r.parsed(&dir.join("raid_disks"), |s| {
            s.split(" (")
                .next()
                .unwrap_or(s)
                .parse::<u32>()
                .map_err(|_| "a number, or `N (M)` during a reshape".to_string())
        }),
        degraded: r.num(&dir.join("degraded")),
        sync_action: r.word(&dir.join("sync_action")),
        sync_completed: r.parsed(&dir.join("sync_completed"), parse_sync_completed),
        // `none` while no sync runs
        sync_speed: r
            .parsed(&dir.join("sync_speed"), |s| {
                if s == "none" {
                    Ok(None)
                } else {
                    s.parse::<u64>()
                        .map(Some)
                        .map_err(|_| "a number or `none`".to_string())
                }
            })
            .flatten(),
        sync_speed_min: r.parsed(&dir.join("sync_speed_min"), parse_speed_limit),
        sync_speed_max: r.parsed(&dir.join("sync_speed_max"), parse_speed_limit),
        metadata_version: r.word(&dir.join("metadata_version")),
        uuid: r.word(&dir.join("uuid")),
        bitmap_location: r.word(&dir.join("bitmap/location")),
        bitmap_chunk_bytes: r.num(&dir.join("bitmap/chunksize")),
        mismatch_cnt: r.num(&dir.join("mismatch_cnt")),
        members: Vec::new(),
    };
    if let Some(s) = &a.array_state {
        if !ARRAY_STATES.contains(&s.as_str()) {
            r.problems.push(format!(
                "{}: unknown array state `{s}` (expected one of {})",
                dir.join("array_state").display(),
                ARRAY_STATES.join(" ")
            ));
        }
    }
    let mut members: Vec<SysMember> = Vec::new();
    match fs::read_dir(&dir) {
        Ok(rd) => {
            for e in rd.flatten() {
                let fname = e.file_name().to_string_lossy().into_owned();
                let Some(dev) = fname.strip_prefix("dev-") else {
                    continue;
                };
                let p = e.path();
                let states = r
                    .word(&p.join("state"))
                    .map(|s| {
                        s.split(',')
                            .map(str::trim)
                            .filter(|w| !w.is_empty())
                            .map(String::from)
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                for w in &states {
                    if !MEMBER_STATES.contains(&w.as_str()) {
                        r.problems.push(format!(
                            "{}: unknown member state `{w}` (kept as is)",
                            p.join("state").display()
                        ));
                    }
                }
                let slot = r.parsed(&p.join("slot"), |s| {
                    if s == "none" {
                        Ok(None)
                    } else {
                        s.parse::<u32>()
                            .map(Some)
                            .map_err(|_| "a slot number or `none`".to_string())
                    }
                });
                members.push(SysMember {
                    device: dev.to_string(),
                    states,
                    slot: slot.flatten(),
                    errors: r.num(&p.join("errors")),
                    written_sectors: fs::read_to_string(p.join("block/stat"))
                        .ok()
                        .and_then(|t| written_sectors(&t)),
                });
            }
        }
        Err(e) => r
            .problems
            .push(format!("{}: cannot list members: {e}", dir.display())),
    }
    members.sort_by(|x, y| {
        (x.slot.is_none(), x.slot, &x.device).cmp(&(y.slot.is_none(), y.slot, &y.device))
    });
    a.members = members;
    Some(a)
}

struct Reader<'a> {
    problems: &'a mut Vec<String>,
}

impl Reader<'_> {
    /// The file's text, trimmed; None when absent. Unreadable files are problems.
    fn word(&mut self, p: &Path) -> Option<String> {
        match fs::read(p) {
            Ok(b) => {
                if b.len() > 4096 {
                    self.problems.push(format!(
                        "{}: value is {} bytes, expected a short word",
                        p.display(),
                        b.len()
                    ));
                    return None;
                }
                match String::from_utf8(b) {
                    Ok(s) => Some(s.trim().to_string()),
                    Err(_) => {
                        self.problems
                            .push(format!("{}: value is not UTF-8 text", p.display()));
                        None
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            // EINVAL/ENODEV etc. on attributes the personality does not support
            Err(e) if matches!(e.raw_os_error(), Some(19) | Some(22) | Some(95)) => None,
            Err(e) => {
                self.problems
                    .push(format!("{}: cannot read: {e}", p.display()));
                None
            }
        }
    }

    fn parsed<T>(&mut self, p: &Path, f: impl Fn(&str) -> Result<T, String>) -> Option<T> {
        let s = self.word(p)?;
        if s.is_empty() {
            return None;
        }
        match f(&s) {
            Ok(v) => Some(v),
            Err(expected) => {
                self.problems.push(format!(
                    "{}: expected {expected}, got `{}`",
                    p.display(),
                    s.chars().take(60).collect::<String>()
                ));
                None
            }
        }
    }

    fn num<T: std::str::FromStr>(&mut self, p: &Path) -> Option<T> {
        self.parsed(p, |s| s.parse::<T>().map_err(|_| "a number".to_string()))
    }
}

/// `none`, `delayed`, `123 / 456`.
pub fn parse_sync_completed(s: &str) -> Result<SyncCompleted, String> {
    match s {
        "none" => Ok(SyncCompleted::None),
        "delayed" => Ok(SyncCompleted::Delayed),
        _ => {
            let bad = || "`none`, `delayed` or `done / total`".to_string();
            let (d, t) = s.split_once('/').ok_or_else(bad)?;
            Ok(SyncCompleted::Progress {
                done: d.trim().parse().map_err(|_| bad())?,
                total: t.trim().parse().map_err(|_| bad())?,
            })
        }
    }
}

/// `1000 (system)` / `50000 (local)`.
pub fn parse_speed_limit(s: &str) -> Result<SpeedLimit, String> {
    let bad = || "`N (local)` or `N (system)`".to_string();
    let (n, tag) = s.split_once(' ').ok_or_else(bad)?;
    let kbps = n.parse().map_err(|_| bad())?;
    let system = match tag.trim() {
        "(system)" => true,
        "(local)" => false,
        _ => return Err(bad()),
    };
    Ok(SpeedLimit { kbps, system })
}

/// Path of an attribute of one member, e.g. `dev-nbd0/state`.
/// Sectors written, from a block device's `stat` (field 7; Documentation/block/stat.rst).
pub fn written_sectors(stat: &str) -> Option<u64> {
    stat.split_whitespace().nth(6)?.parse().ok()
}

pub fn member_attr(root: &Root, md: &str, dev: &str, attr: &str) -> PathBuf {
    root.md_sysfs(md).join(format!("dev-{dev}")).join(attr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_completed_forms() {
        assert_eq!(parse_sync_completed("none"), Ok(SyncCompleted::None));
        assert_eq!(parse_sync_completed("delayed"), Ok(SyncCompleted::Delayed));
        assert_eq!(
            parse_sync_completed("1569888 / 2093056"),
            Ok(SyncCompleted::Progress {
                done: 1569888,
                total: 2093056
            })
        );
        assert!(parse_sync_completed("12 of 13").is_err());
        assert!(parse_sync_completed("a / 2").is_err());
    }

    #[test]
    fn speed_limits() {
        assert_eq!(
            parse_speed_limit("1000 (system)"),
            Ok(SpeedLimit {
                kbps: 1000,
                system: true
            })
        );
        assert_eq!(
            parse_speed_limit("5000 (local)"),
            Ok(SpeedLimit {
                kbps: 5000,
                system: false
            })
        );
        assert!(parse_speed_limit("5000").is_err());
        assert!(parse_speed_limit("fast (local)").is_err());
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["md10", "md2", "md127", "md1", "md_d0"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, vec!["md1", "md2", "md10", "md127", "md_d0"]);
    }
}
