//! `/proc/diskstats`: sectors read and written per block device, the busy
//! measure that exists on every kernel (the fallback when there is no
//! `/proc/pressure/io`, see [`super::pressure`]).

use std::collections::BTreeMap;

/// Sectors (512 bytes) read and written so far, per device name.
pub type Sectors = BTreeMap<String, u64>;

/// Parse `/proc/diskstats`: `major minor name` and then the counters, of which
/// the 3rd is sectors read and the 7th sectors written (every kernel since
/// 2.6.25 prints at least 11 counters; older kernels printed 4 for a partition:
/// reads, sectors read, writes, sectors written). Lines that fit neither are
/// skipped.
pub fn parse_diskstats(text: &str) -> Sectors {
    let mut out = Sectors::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 {
            continue;
        }
        let n: Vec<Option<u64>> = f[3..].iter().map(|x| x.parse().ok()).collect();
        let (read, written) = match n.len() {
            4 => (n[1], n[3]),
            k if k >= 11 => (n[2], n[6]),
            _ => continue,
        };
        if let (Some(r), Some(w)) = (read, written) {
            out.insert(f[2].to_string(), r.saturating_add(w));
        }
    }
    out
}

/// KiB/s moved through `devices` between two readings `ms` apart. A device
/// missing from either reading, or whose counter went back (the device was
/// stopped and made again), does not count. None when `ms` is 0.
pub fn kbps(before: &Sectors, after: &Sectors, devices: &[String], ms: u64) -> Option<u64> {
    if ms == 0 {
        return None;
    }
    let sectors: u64 = devices
        .iter()
        .filter_map(|d| after.get(d)?.checked_sub(*before.get(d)?))
        .fold(0u64, u64::saturating_add);
    // sectors * 512 B / 1024 per KiB / (ms / 1000)
    Some(sectors.saturating_mul(500) / ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_and_old_formats() {
        // 6.1 (20 counters), 4.19 (14) and a 2.6-era partition line (4)
        let t = "\
   9       0 md0 1200 0 96000 0 3400 0 27200 0 0 0 0 0 0 0 0 0 0 0
 43       0 nbd0 310 2 8000 120 900 0 70000 4400 0 1500 4520
   8       1 sda1 57 1024 33 264
 202      16 xvdb
garbage line here
";
        let s = parse_diskstats(t);
        assert_eq!(s.get("md0"), Some(&(96_000 + 27_200)));
        assert_eq!(s.get("nbd0"), Some(&78_000));
        assert_eq!(s.get("sda1"), Some(&(1024 + 264)));
        assert_eq!(s.get("xvdb"), None);
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn rate_over_the_named_devices_only() {
        let before = parse_diskstats("9 0 md0 0 0 100 0 0 0 100 0 0 0 0\n9 1 md1 0 0 0 0 0 0 0 0 0 0 0\n43 0 nbd0 0 0 0 0 0 0 0 0 0 0 0\n");
        // md0 moved 4096 sectors (2 MiB), md1 1024 (512 KiB), nbd0 (a leg,
        // the resync's traffic) a lot
        let after = parse_diskstats("9 0 md0 0 0 2148 0 0 0 2148 0 0 0 0\n9 1 md1 0 0 512 0 0 0 512 0 0 0 0\n43 0 nbd0 0 0 999999 0 0 0 0 0 0 0 0\n");
        let arrays = vec!["md0".to_string(), "md1".to_string()];
        // 2.5 MiB in 2 s
        assert_eq!(kbps(&before, &after, &arrays, 2000), Some(1280));
        assert_eq!(kbps(&before, &after, &arrays[..1], 1000), Some(2048));
        assert_eq!(kbps(&before, &after, &arrays, 0), None);
        // a counter that went back (md0 stopped and assembled again) counts 0
        assert_eq!(kbps(&after, &before, &arrays[..1], 1000), Some(0));
        // a device in one reading only
        assert_eq!(kbps(&before, &Sectors::new(), &arrays, 1000), Some(0));
    }
}
