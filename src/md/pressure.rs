//! How busy the guest's own I/O is: the throttle's "is the guest busy" input.
//!
//! `some avg10` of `/proc/pressure/io` (PSI) when the kernel has it. Kernels
//! before 4.20, and those built or booted with PSI off (`psi=0`, or
//! `CONFIG_PSI_DEFAULT_DISABLED` without `psi=1`, as RHEL 8 and 9 ship), have
//! no such file: then the measure is the KiB/s the guest read and wrote through
//! its md arrays, from `/proc/diskstats`, over at least [`WINDOW_MS`]. Only the
//! md devices count: the resync's own traffic goes to the legs, never through
//! the md device, so a resync does not make the guest look busy (the legs'
//! counters would).

use super::diskstats::{kbps, parse_diskstats, Sectors};
use crate::root::Root;

/// The busy measure, as last read.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum IoLoad {
    /// Not known: no reading yet (the fallback needs two), or nothing readable.
    #[default]
    Unknown,
    /// `some avg10` of /proc/pressure/io, percent.
    Pressure(f64),
    /// KiB/s read and written through the md arrays (/proc/diskstats).
    ArrayKbps(u64),
}

/// The shortest time over which the fallback computes a rate; the loop looks
/// every 5 s while an array recovers, so in practice that is the window.
pub const WINDOW_MS: u64 = 2_000;

/// Where the measure comes from. PSI does not come and go while the kernel
/// runs: once it is found missing, the fallback is used from then on.
#[derive(Debug, Clone, PartialEq, Default)]
enum Source {
    #[default]
    Psi,
    Diskstats {
        /// The reading the next rate is computed from: (when, sectors).
        last: Option<(u64, Sectors)>,
        /// The rate computed last.
        load: IoLoad,
    },
}

/// Which measure is in use, to say so when it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Psi,
    Diskstats,
    /// Neither file can be read: the guest never counts as busy.
    Nothing,
}

impl Measure {
    /// The log line for switching to this measure.
    pub fn announce(self) -> &'static str {
        match self {
            Measure::Psi => "busy detection: io pressure from /proc/pressure/io",
            Measure::Diskstats => {
                "no /proc/pressure/io (kernel before 4.20 or PSI disabled): the guest counts as busy \
                 while its arrays carry at least throttle.busy_kbps of its own reads and writes \
                 (/proc/diskstats)"
            }
            Measure::Nothing => {
                "busy detection is off: neither /proc/pressure/io nor /proc/diskstats can be read; \
                 the resync is never slowed for the guest's own I/O"
            }
        }
    }
}

/// Reads the busy measure each turn of the loop, remembering what the
/// fallback needs between turns.
#[derive(Debug, Clone, Default)]
pub struct LoadReader {
    source: Source,
    /// The measure last said (None: nothing said yet; PSI is not worth a line).
    said: Option<Measure>,
}

impl LoadReader {
    /// The load now, given the md arrays' device names and the time in ms on a
    /// monotonic clock; and a line to log when the measure in use changed.
    pub fn read(
        &mut self,
        root: &Root,
        arrays: &[String],
        now_ms: u64,
    ) -> (IoLoad, Option<&'static str>) {
        let (load, measure) = match &mut self.source {
            Source::Psi => match read_io_pressure(root) {
                Some(p) => (IoLoad::Pressure(p), Measure::Psi),
                None => {
                    self.source = Source::Diskstats {
                        last: None,
                        load: IoLoad::Unknown,
                    };
                    return self.read(root, arrays, now_ms);
                }
            },
            Source::Diskstats { last, load } => {
                match std::fs::read_to_string(root.path("/proc/diskstats")) {
                    Ok(text) => {
                        let now = parse_diskstats(&text);
                        match last {
                            Some((at, before)) if now_ms.saturating_sub(*at) >= WINDOW_MS => {
                                if let Some(k) = kbps(before, &now, arrays, now_ms - *at) {
                                    *load = IoLoad::ArrayKbps(k);
                                }
                                *last = Some((now_ms, now));
                            }
                            Some(_) => {}
                            None => *last = Some((now_ms, now)),
                        }
                        (*load, Measure::Diskstats)
                    }
                    Err(_) => {
                        *last = None;
                        *load = IoLoad::Unknown;
                        (IoLoad::Unknown, Measure::Nothing)
                    }
                }
            }
        };
        let first_psi = self.said.is_none() && measure == Measure::Psi;
        let say = (self.said != Some(measure) && !first_psi).then(|| measure.announce());
        self.said = Some(measure);
        (load, say)
    }
}

/// `some avg10=12.34 ...` of /proc/pressure/io.
pub fn read_io_pressure(root: &Root) -> Option<f64> {
    let s = std::fs::read_to_string(root.path("/proc/pressure/io")).ok()?;
    parse_pressure(&s)
}

pub fn parse_pressure(s: &str) -> Option<f64> {
    let line = s.lines().find(|l| l.starts_with("some "))?;
    let v = line
        .split_whitespace()
        .find_map(|t| t.strip_prefix("avg10="))?;
    v.parse().ok().filter(|x: &f64| x.is_finite() && *x >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_lines() {
        let s = "some avg10=12.50 avg60=3.00 avg300=1.00 total=123\nfull avg10=1.00 avg60=0.00 avg300=0.00 total=5\n";
        assert_eq!(parse_pressure(s), Some(12.5));
        assert_eq!(parse_pressure("full avg10=1.00"), None);
        assert_eq!(parse_pressure("some avg10=nan"), None);
        assert_eq!(parse_pressure("some avg10=-3"), None);
    }

    fn write(root: &tempfile::TempDir, rel: &str, text: &str) {
        let p = root.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// md0 and its leg nbd1 at the given sectors (read, written).
    fn diskstats(md0: (u64, u64), nbd1: (u64, u64)) -> String {
        format!(
            "   9       0 md0 10 0 {} 0 10 0 {} 0 0 0 0 0 0 0 0 0 0\n  43      32 nbd1 10 0 {} 5 10 0 {} 9 1 20 30 0 0 0 0 0 0\n",
            md0.0, md0.1, nbd1.0, nbd1.1
        )
    }

    #[test]
    fn with_psi_the_pressure_is_read_and_nothing_is_said() {
        let d = tempfile::tempdir().unwrap();
        write(
            &d,
            "proc/pressure/io",
            "some avg10=31.00 avg60=0 avg300=0 total=9\n",
        );
        write(&d, "proc/diskstats", &diskstats((0, 0), (0, 0)));
        let mut r = LoadReader::default();
        let root = Root::new(d.path());
        assert_eq!(
            r.read(&root, &["md0".into()], 0),
            (IoLoad::Pressure(31.0), None)
        );
        assert_eq!(
            r.read(&root, &["md0".into()], 9000),
            (IoLoad::Pressure(31.0), None)
        );
    }

    /// A tree without /proc/pressure/io: the fallback is said once, and the
    /// load follows the md device's counters over a window, not the leg's.
    #[test]
    fn without_psi_diskstats_of_the_arrays_after_one_line() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(d.path());
        let md = vec!["md0".to_string()];
        write(&d, "proc/diskstats", &diskstats((1000, 2000), (0, 0)));
        let mut r = LoadReader::default();
        // the first look only takes a reading, and says what is used
        let (load, said) = r.read(&root, &md, 10_000);
        assert_eq!(load, IoLoad::Unknown);
        assert!(
            said.unwrap()
                .starts_with("no /proc/pressure/io (kernel before 4.20"),
            "{said:?}"
        );
        // the guest writes 8 MiB through md0 in 5 s; the leg carries a resync
        write(
            &d,
            "proc/diskstats",
            &diskstats((1000, 2000 + 16_384), (4_000_000, 4_000_000)),
        );
        // too soon for a rate: still unknown, and nothing said again
        assert_eq!(r.read(&root, &md, 11_000), (IoLoad::Unknown, None));
        assert_eq!(r.read(&root, &md, 15_000), (IoLoad::ArrayKbps(1638), None));
        // between windows the last rate holds
        assert_eq!(r.read(&root, &md, 16_000), (IoLoad::ArrayKbps(1638), None));
        // the guest is idle; only the resync moves (on the leg)
        write(
            &d,
            "proc/diskstats",
            &diskstats((1000, 2000 + 16_384), (9_000_000, 9_000_000)),
        );
        assert_eq!(r.read(&root, &md, 20_000), (IoLoad::ArrayKbps(0), None));
        // diskstats gone: unknown, said once
        std::fs::remove_file(d.path().join("proc/diskstats")).unwrap();
        let (load, said) = r.read(&root, &md, 25_000);
        assert_eq!(load, IoLoad::Unknown);
        assert!(
            said.unwrap().starts_with("busy detection is off"),
            "{said:?}"
        );
        assert_eq!(r.read(&root, &md, 30_000), (IoLoad::Unknown, None));
        // back: a new first reading, said once
        write(&d, "proc/diskstats", &diskstats((0, 0), (0, 0)));
        let (load, said) = r.read(&root, &md, 35_000);
        assert_eq!(load, IoLoad::Unknown);
        assert!(said.is_some());
        // PSI appearing later is not looked for: the kernel does not grow it
        write(
            &d,
            "proc/pressure/io",
            "some avg10=99.00 avg60=0 avg300=0 total=9\n",
        );
        write(&d, "proc/diskstats", &diskstats((0, 2048), (0, 0)));
        assert_eq!(r.read(&root, &md, 40_000), (IoLoad::ArrayKbps(204), None));
    }
}
