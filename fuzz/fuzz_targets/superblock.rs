//! The superblock reader must give Ok or an error, never panic, for any bytes at
//! any location of any device size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mdguard::md::superblock::{parse_at, probe_bytes, probe_with, Superblock, Version};

/// Whatever parses must print both UUID forms and match itself through them.
fn check(sb: &Superblock) {
    let mdadm = sb.uuid.mdadm();
    let sysfs = sb.uuid.sysfs();
    assert_eq!(mdadm.len(), 35);
    assert_eq!(sysfs.len(), 36);
    assert!(sb.uuid.matches_text(&mdadm));
    assert!(sb.uuid.matches_text(&sysfs));
    let _ = sb.role.to_string();
}

fuzz_target!(|data: &[u8]| {
    // The bytes as a whole device (superblocks at 0 and 4 KiB, and at the end).
    if let Ok(sb) = probe_bytes(data) {
        check(&sb);
    }

    // The bytes as the block found at each location, on devices of several sizes,
    // including ones derived from the input and the extremes.
    let derived = data
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
        .unwrap_or(0);
    let len = data.len() as u64;
    let sizes = [
        0,
        511,
        8 * 1024,
        64 * 1024,
        64 * 1024 + 4096 + 12345,
        4 << 20, // the size tests/fixtures/superblock blocks were made for
        1 << 30,
        (1 << 40) + 3 * 512,
        u64::MAX,
        u64::MAX - 511,
        len,
        derived,
        derived.wrapping_add(len),
    ];
    for size in sizes {
        for v in Version::PROBE_ORDER {
            match parse_at(data, v, size) {
                Ok(sb) => check(&sb),
                Err(e) => {
                    let _ = e.to_string();
                }
            }
        }
        // A device whose every location holds these bytes (reads past the input
        // come back short, as at the end of a device).
        let r = probe_with(size, |_offset, buf| {
            let n = data.len().min(buf.len());
            buf[..n].copy_from_slice(&data[..n]);
            Ok(n)
        });
        if let Ok(sb) = r {
            check(&sb);
        }
    }
});
