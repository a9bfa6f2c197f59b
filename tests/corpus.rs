//! Every file of ../shared/corpus/external is parsed here, with assertions on what it
//! says. The files are other projects' real captures (and a few impossible ones, noted
//! in the corpus README): the parser must give a clear result for each, never panic.
//!
//! The corpus is not part of this repository. Where it is missing (a clone with
//! no `../shared` beside it) each test here says so on stderr and does nothing
//! else; with CI=true a missing corpus fails. MDGUARD_CORPUS_DIR points to it
//! elsewhere.

mod common;

use common::copy_tree;
use mdguard::md::mdstat::{self, MdstatSync, MdstatSyncKind, RunState};
use mdguard::md::model::{Health, Snapshot, SyncAction, SyncState};
use mdguard::md::observe::{read_snapshot, snapshot_from};
use mdguard::root::Root;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the external corpus is looked for: `../shared/corpus/external` beside
/// the repository, or the directory MDGUARD_CORPUS_DIR names.
fn corpus_dir() -> PathBuf {
    std::env::var_os("MDGUARD_CORPUS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/external"))
}

/// CI must not skip: there (CI=true, as CI services set it) a missing corpus fails.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The external corpus (other projects' captures, not part of this repository).
struct Corpus(PathBuf);

/// The corpus, or None when it is not there: then the calling test says so on
/// stderr (straight to it, so a passing `cargo test` shows it too) and does
/// nothing else. Under CI a missing corpus fails the test.
fn corpus() -> Option<Corpus> {
    let dir = corpus_dir();
    if dir.is_dir() {
        return Some(Corpus(dir));
    }
    let what = format!(
        "external mdstat corpus not found at {} (MDGUARD_CORPUS_DIR names another place)",
        dir.display()
    );
    assert!(!in_ci(), "{what}; CI=true requires it");
    let test = std::thread::current()
        .name()
        .unwrap_or("a corpus test")
        .to_string();
    // one write of the whole line, so parallel tests do not cut it up
    let line = format!("{test}: skipped: {what}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
    None
}

impl Corpus {
    fn path(&self) -> &Path {
        &self.0
    }

    fn text(&self, rel: &str) -> String {
        let p = self.0.join(rel);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// mdstat alone (no sysfs): a root that does not exist has no /sys.
    fn snap(&self, rel: &str) -> Snapshot {
        snapshot_from(&Root::new("/nonexistent-mdguard-root"), &self.text(rel))
    }
}

/// `name:level:health:members` for each array, in natural name order.
fn summary(s: &Snapshot) -> Vec<String> {
    s.arrays
        .iter()
        .map(|a| {
            format!(
                "{}:{}:{}:{}",
                a.name,
                a.level.as_deref().unwrap_or("?"),
                a.health,
                a.members.len()
            )
        })
        .collect()
}

/// (file, expected summary, number of reading problems)
const EXPECT: &[(&str, &[&str], usize)] = &[
    // the impossible one: a faulty member while every slot is up -> ok, no panic
    (
        "check_raid/issue164",
        &["md0:raid1:ok:2", "md1:raid1:ok:6"],
        0,
    ),
    ("check_raid/issue34", &["md0:?:ok:2", "md127:raid1:ok:2"], 0),
    (
        "check_raid/issue34_2",
        &["md126:raid1:ok:2", "md127:?:ok:2"],
        0,
    ),
    // junk line `# cat /proc/mdstat` before the text: reported, array still read
    (
        "check_raid/issue43/mdstat-readd",
        &["md0:raid6:recovering:6"],
        1,
    ),
    (
        "check_raid/issue43/mdstat-rebuilt",
        &["md0:raid6:degraded:5"],
        0,
    ),
    (
        "check_raid/issue43/recovery",
        &["md0:raid6:recovering:6"],
        0,
    ),
    ("check_raid/issue43/reshape", &["md0:raid6:recovering:6"], 0),
    (
        "check_raid/issue64",
        &["md0:raid1:ok:2", "md1:raid1:ok:2", "md2:raid1:ok:2"],
        0,
    ),
    (
        "check_raid/mdstat-centos6.2",
        &[
            "md0:raid1:ok:2",
            "md1:raid0:ok:2",
            "md2:raid1:ok:2",
            "md3:raid1:ok:2",
            "md4:raid1:ok:2",
        ],
        0,
    ),
    ("check_raid/mdstat-failed", &["md0:raid5:degraded:3"], 0),
    (
        "check_raid/mdstat-linear",
        &["md0:linear:ok:2", "md1:raid1:ok:2"],
        0,
    ),
    ("check_raid/mdstat-none", &[], 0),
    ("check_raid/mdstat-raid0", &["md2:raid0:ok:2"], 0),
    (
        "check_raid/mdstat-resync",
        &[
            "md0:raid1:ok:2",
            "md1:raid1:recovering:2",
            "md2:raid1:recovering:2",
        ],
        0,
    ),
    ("check_raid/pr185_0", &["md1:raid5:ok:6"], 0),
    (
        "check_raid/pr185_1",
        &["md1:raid5:ok:6", "md2:raid5:ok:7"],
        0,
    ),
    // a check is not a recovery: ok while it runs
    (
        "check_raid/pr24",
        &["md0:raid1:ok:2", "md1:raid1:ok:2", "md2:raid1:ok:2"],
        0,
    ),
    (
        "check_raid/pr28_0",
        &["md0:raid1:recovering:2", "md1:raid1:ok:2"],
        1,
    ),
    (
        "check_raid/pr28_1",
        &["md0:raid1:recovering:2", "md1:raid1:degraded:1"],
        0,
    ),
    (
        "check_raid/pr28_2",
        &["md0:raid1:recovering:2", "md1:raid1:recovering:2"],
        0,
    ),
    (
        "check_raid/pr77",
        &["md0:raid1:ok:2", "md1:raid1:recovering:2"],
        0,
    ),
    ("pymdstat/mdstat.01", &[], 0),
    ("pymdstat/mdstat.02", &["md_d0:raid5:ok:5"], 0),
    ("pymdstat/mdstat.03", &["md0:raid5:degraded:3"], 0),
    (
        "pymdstat/mdstat.04",
        &[
            "md0:raid1:ok:2",
            "md1:raid1:ok:2",
            "md2:raid1:ok:2",
            "md3:raid5:ok:10",
        ],
        0,
    ),
    ("pymdstat/mdstat.05", &["md127:raid5:recovering:6"], 0),
    ("pymdstat/mdstat.06", &["md0:raid6:ok:7"], 0),
    // [6/4] on raid1: two slots empty, still running on four
    ("pymdstat/mdstat.07", &["md1:raid1:degraded:5"], 0),
    ("pymdstat/mdstat.08", &["md0:raid5:failed:3"], 0),
    (
        "pymdstat/mdstat.09",
        &["md0:raid1:ok:2", "md1:raid1:ok:2", "md2:?:failed:4"],
        0,
    ),
    (
        "pymdstat/mdstat.10",
        &[
            "md125:raid0:ok:6",
            "md126:raid0:ok:2",
            "md128:raid1:ok:2",
            "md129:raid1:ok:2",
        ],
        0,
    ),
    ("pymdstat/mdstat.11", &["md127:?:failed:3"], 0),
    ("pymdstat/mdstat.12", &["md127:raid0:ok:2"], 0),
    ("pymdstat/mdstat.13", &["md127:raid4:recovering:3"], 0),
    ("pymdstat/mdstat.14", &["md127:raid0:ok:2"], 0),
    (
        "pymdstat/mdstat.15",
        &[
            "md0:raid1:ok:8",
            "md1:raid1:ok:8",
            "md2:raid6:ok:8",
            "md3:raid6:ok:8",
        ],
        0,
    ),
    // truncated capture: ends after the bitmap line, no `unused devices:`
    ("pymdstat/mdstat.16", &["md1:raid5:ok:8"], 0),
    (
        "prometheus-procfs/proc/mdstat",
        &[
            "md0:raid1:ok:2",
            "md00:raid0:ok:1",
            "md3:raid6:ok:10",
            // impossible: inactive yet `[2/2] [UU]`; inactive wins -> failed
            "md4:raid1:failed:2",
            "md6:raid1:recovering:3",
            "md7:raid6:degraded:4",
            "md8:raid1:recovering:4",
            "md9:raid1:recovering:7",
            "md10:raid0:ok:2",
            "md11:raid1:recovering:5",
            "md12:raid0:ok:2",
            "md42:raid5:recovering:3",
            "md101:raid0:ok:3",
            "md120:linear:ok:2",
            "md126:raid0:ok:2",
            "md127:raid1:ok:2",
            "md201:raid1:ok:2",
            // an imsm container: always inactive, not a failure
            "md219:?:ok:3",
        ],
        0,
    ),
];

#[test]
fn every_corpus_file_is_covered() {
    let Some(c) = corpus() else { return };
    let mut files = Vec::new();
    let mut stack = vec![c.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                // the sysfs tree is tested separately below
                if !p.ends_with("prometheus-procfs/sys") {
                    stack.push(p);
                }
            } else {
                files.push(
                    p.strip_prefix(c.path())
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    files.sort();
    let mut known: Vec<&str> = EXPECT.iter().map(|e| e.0).collect();
    known.sort();
    assert_eq!(files, known, "every corpus file needs an expectation here");
}

#[test]
fn corpus_files_parse_as_expected() {
    let Some(c) = corpus() else { return };
    let mut failures = Vec::new();
    for (file, want, nprob) in EXPECT {
        let s = c.snap(file);
        let got = summary(&s);
        if got != *want || s.problems.len() != *nprob {
            failures.push(format!(
                "{file}:\n  got  {got:?}\n  want {want:?}\n  problems {:?} (want {nprob})",
                s.problems
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn junk_line_is_named_precisely() {
    let Some(c) = corpus() else { return };
    let s = c.snap("check_raid/issue43/mdstat-readd");
    assert!(s.problems[0].contains("line 1:"), "{}", s.problems[0]);
    assert!(s.problems[0].contains("# cat /proc/mdstat"));
}

#[test]
fn recovery_line_fields() {
    let Some(c) = corpus() else { return };
    let m = mdstat::parse(&c.text("check_raid/issue43/recovery"));
    let a = &m.arrays[0];
    assert_eq!(a.slots, Some(vec![true, true, true, true, false, false]));
    assert_eq!((a.raid_disks, a.working), (Some(6), Some(4)));
    assert_eq!(a.detail.as_deref(), Some("level 6, 4k chunk, algorithm 2"));
    assert_eq!(
        a.sync,
        Some(MdstatSync::Progress {
            kind: MdstatSyncKind::Recovery,
            percent: 19.6,
            done_kb: 288381540,
            total_kb: 1465135936,
            finish_min: Some(1420.1),
            speed_kbps: Some(13810),
        })
    );
    // descriptor numbers are not slots: sdf1[7] in a 6-disk array
    let sdf1 = a.members.iter().find(|m| m.device == "sdf1").unwrap();
    assert_eq!(sdf1.descriptor, 7);
}

#[test]
fn metadata_forms() {
    let Some(c) = corpus() else { return };
    let m = mdstat::parse(&c.text("check_raid/issue34"));
    let md127 = m.arrays.iter().find(|a| a.name == "md127").unwrap();
    assert_eq!(md127.metadata.as_deref(), Some("external:/md0/0"));
    let md0 = m.arrays.iter().find(|a| a.name == "md0").unwrap();
    assert_eq!(md0.state, RunState::Inactive);
    assert_eq!(md0.metadata.as_deref(), Some("external:imsm"));
    assert!(md0.members.iter().all(|m| m.spare));
    // 0.90 prints no `super` word
    let m = mdstat::parse(&c.text("check_raid/mdstat-linear"));
    assert_eq!(m.arrays[1].metadata.as_deref(), Some("0.90"));
    assert_eq!(m.arrays[0].metadata.as_deref(), Some("0.90"));
    assert_eq!(m.arrays[1].detail.as_deref(), Some("64k rounding"));
    let m = mdstat::parse(&c.text("check_raid/issue43/reshape"));
    assert_eq!(m.arrays[0].metadata.as_deref(), Some("0.91"));
}

#[test]
fn delayed_pending_and_auto_read_only() {
    let Some(c) = corpus() else { return };
    let s = c.snap("prometheus-procfs/proc/mdstat");
    let get = |n: &str| s.arrays.iter().find(|a| a.name == n).unwrap();
    assert_eq!(get("md9").sync.as_ref().unwrap().state, SyncState::Delayed);
    let md11 = get("md11");
    assert_eq!(md11.sync.as_ref().unwrap().state, SyncState::Pending);
    assert_eq!(md11.array_state.as_deref(), Some("read-auto"));
    let md201 = get("md201");
    assert_eq!(md201.sync.as_ref().unwrap().action, SyncAction::Check);
    assert_eq!(md201.health, Health::Ok);
    // mdstat KiB -> sectors
    assert_eq!(md201.sync.as_ref().unwrap().done, Some(114176 * 2));
    let s2 = c.snap("check_raid/issue64");
    assert_eq!(
        s2.arrays[2].array_state.as_deref(),
        Some("read-auto"),
        "md2 is auto-read-only"
    );
}

#[test]
fn bitmap_lines() {
    let Some(c) = corpus() else { return };
    let s = c.snap("check_raid/mdstat-centos6.2");
    let md3 = s.arrays.iter().find(|a| a.name == "md3").unwrap();
    let b = md3.bitmap.as_ref().unwrap();
    assert_eq!((b.pages_used, b.pages_total), (Some(2), Some(4)));
    assert_eq!(b.chunk_kb, Some(65536));
    let md0 = s.arrays.iter().find(|a| a.name == "md0").unwrap();
    assert!(md0.bitmap.is_none());
}

#[test]
fn no_trailing_newline_and_no_unused_line() {
    let Some(c) = corpus() else { return };
    let m = mdstat::parse(&c.text("pymdstat/mdstat.01"));
    assert!(m.arrays.is_empty() && m.problems.is_empty());
    assert!(m.personalities.is_empty());
    let m = mdstat::parse(&c.text("pymdstat/mdstat.16"));
    assert_eq!(m.arrays[0].bitmap.as_ref().unwrap().pages_total, 102);
}

/// The prometheus sysfs tree overlaid on its mdstat: sysfs wins where it exists.
#[test]
fn sysfs_is_the_authority() {
    let Some(c) = corpus() else { return };
    let dir = tempfile::tempdir().unwrap();
    let src = c.path().join("prometheus-procfs");
    copy_tree(&src, dir.path());
    let s = read_snapshot(&Root::new(dir.path())).unwrap();
    let get = |n: &str| s.arrays.iter().find(|a| a.name == n).unwrap();
    // mdstat says raid1 sdi1/sdj1; sysfs says raid0 sdg/sdh: sysfs wins
    let md0 = get("md0");
    assert_eq!(md0.level.as_deref(), Some("raid0"));
    let devs: Vec<&str> = md0.members.iter().map(|m| m.device.as_str()).collect();
    assert_eq!(devs, vec!["sdg", "sdh"]);
    assert!(md0.members[0].in_sync());
    assert_eq!(
        md0.uuid.as_deref(),
        Some("155f29ff-1716-4107-b362-52307ef86cac")
    );
    // md1 only in sysfs: still shown
    assert_eq!(get("md1").health, Health::Ok);
    // md5 (sysfs only): degraded 1, faulty sdp
    let md5 = get("md5");
    assert_eq!(md5.health, Health::Degraded);
    assert!(md5.members.iter().any(|m| m.device == "sdp" && m.faulty));
    // md6: sync_completed in sectors from sysfs
    let sync = get("md6").sync.clone().unwrap();
    assert_eq!(sync.action, SyncAction::Recover);
    assert_eq!((sync.done, sync.total), (Some(1569888), Some(2093056)));
    // md7 is a container: inactive but not failed
    assert_eq!(get("md7").health, Health::Ok);
    // md8's raid_disks reads `N (M)` during a reshape
    assert!(
        s.problems.iter().all(|p| !p.contains("md8/md/raid_disks")),
        "{:?}",
        s.problems
    );
}
