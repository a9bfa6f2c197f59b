//! Native reader for Linux md superblocks (metadata 0.90, 1.0, 1.1 and 1.2).
//!
//! mdguard re-adds a leg to an array only when the leg's own superblock says it
//! belongs there, so this module answers "which array, which role, how fresh" for a
//! block device or an image file without running `mdadm`.
//!
//! Layouts follow the kernel's `include/uapi/linux/raid/md_p.h` (`mdp_super_t` and
//! `struct mdp_superblock_1`); the locations and the sanity checks follow
//! `drivers/md/md.c` (`super_90_load`, `super_1_load`) and mdadm's `super0.c` /
//! `super1.c`:
//!
//! | version | where                                             | byte order |
//! |---------|---------------------------------------------------|------------|
//! | 1.2     | 4 KiB from the start                              | little     |
//! | 1.1     | at the start                                      | little     |
//! | 1.0     | `((sectors - 16) & !7)` sectors from the start    | little     |
//! | 0.90    | `(bytes & !(64K-1)) - 64K` from the start         | native     |
//!
//! Everything here is total: any byte string and any device size give `Ok` or an
//! [`SbError`], never a panic (the `superblock` fuzz target checks that).

pub use crate::md::identity::Uuid;
use std::fmt;
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// `MD_SB_MAGIC`, shared by every version.
pub const MD_SB_MAGIC: u32 = 0xa92b_4efc;

/// Bytes read at each candidate location; the kernel reads one 4 KiB page too.
pub const SB_READ_BYTES: usize = 4096;

/// Size of the fixed part of a v1 superblock; `dev_roles[]` follows it.
const V1_FIXED: usize = 256;
/// The kernel refuses `max_dev` above what fits in one 4 KiB page.
const V1_MAX_DEV_LIMIT: u32 = ((SB_READ_BYTES - V1_FIXED) / 2) as u32;
/// `mdp_super_t` is exactly 4096 bytes.
const V090_BYTES: usize = 4096;
/// `MD_RESERVED_BYTES`: 0.90 keeps its superblock in the last aligned 64 KiB.
const V090_RESERVED: u64 = 64 * 1024;

/// Superblock format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// 0.90 (also 0.91 while reshaping): native-endian, near the end.
    V0_90,
    /// 1.0: near the end of the device.
    V1_0,
    /// 1.1: at the start of the device.
    V1_1,
    /// 1.2: 4 KiB from the start of the device.
    V1_2,
}

impl Version {
    /// The order [`read_superblock`] tries the locations in: the common default
    /// (1.2) first, then 1.1, then the ones near the end (1.0, 0.90).
    pub const PROBE_ORDER: [Version; 4] =
        [Version::V1_2, Version::V1_1, Version::V1_0, Version::V0_90];

    /// `(major, minor)` as mdadm names it (`0.90` is `(0, 90)`).
    pub fn as_pair(self) -> (u32, u32) {
        match self {
            Version::V0_90 => (0, 90),
            Version::V1_0 => (1, 0),
            Version::V1_1 => (1, 1),
            Version::V1_2 => (1, 2),
        }
    }

    /// Byte offset of this version's superblock on a device of `dev_size` bytes,
    /// or `None` when the device is too small to hold one there.
    pub fn offset(self, dev_size: u64) -> Option<u64> {
        match self {
            Version::V1_2 => Some(8 * 512),
            Version::V1_1 => Some(0),
            Version::V1_0 => {
                // md.c super_1_load: sb_start = nr_sectors - 8*2; sb_start &= ~(4*2-1)
                let sectors = dev_size / 512;
                let start = sectors.checked_sub(8 * 2)? & !(4 * 2 - 1);
                start.checked_mul(512)
            }
            Version::V0_90 => (dev_size & !(V090_RESERVED - 1)).checked_sub(V090_RESERVED),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::V0_90 => f.write_str("0.90"),
            Version::V1_0 => f.write_str("1.0"),
            Version::V1_1 => f.write_str("1.1"),
            Version::V1_2 => f.write_str("1.2"),
        }
    }
}

/// What this device is in its array, from its own superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Holds slot N (`dev_roles[dev_number] == N`; 0.90: `this_disk` in sync).
    Active(u32),
    /// A spare (`0xffff`; 0.90: not in sync, not faulty), or `dev_number` beyond
    /// `max_dev` (as mdadm's `role_from_sb` treats it).
    Spare,
    /// Marked faulty (`0xfffe`; 0.90: `MD_DISK_FAULTY`).
    Faulty,
    /// A raid4/5/6 journal device (`0xfffd`).
    Journal,
    /// Some other reserved role value (`0xff00..=0xfffc`).
    Unknown(u16),
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Active(n) => write!(f, "active {n}"),
            Role::Spare => f.write_str("spare"),
            Role::Faulty => f.write_str("faulty"),
            Role::Journal => f.write_str("journal"),
            Role::Unknown(v) => write!(f, "unknown role {v:#06x}"),
        }
    }
}

/// A parsed, checksum-verified md superblock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    pub version: Version,
    /// Byte offset of the superblock on the device.
    pub offset: u64,
    /// The array's UUID (`set_uuid`).
    pub uuid: Uuid,
    /// 1.x `set_name` (often `homehost:name`); `None` for 0.90 or an empty name.
    pub name: Option<String>,
    /// Creation time, seconds since the epoch.
    pub ctime: u64,
    /// Last superblock update, seconds since the epoch.
    pub utime: u64,
    /// RAID level: 1 for RAID1; -1 linear, -4 multipath.
    pub level: i32,
    pub layout: u32,
    /// Chunk size in 512-byte sectors.
    pub chunk_sectors: u32,
    /// Slots in the complete array.
    pub raid_disks: u32,
    /// Used size of each component, in 512-byte sectors.
    pub size: u64,
    /// This device's role, from `dev_roles[dev_number]` (0.90: `this_disk`).
    pub role: Role,
    /// Permanent descriptor number of this device (not its slot).
    pub dev_number: u32,
    /// Every descriptor's role as this superblock last recorded it, indexed by
    /// descriptor number (1.x: `dev_roles[0..max_dev]`; 0.90: `disks[0..27]`, a
    /// removed or unused entry reading as a spare). How this device saw the rest
    /// of the array when it last wrote: a member it records as faulty or gone
    /// had failed in its history.
    pub roles: Vec<Role>,
    /// Event count: higher is fresher.
    pub events: u64,
    /// Sectors from the superblock to the write-intent bitmap, when there is one
    /// (1.x: `feature_map` bit 0; 0.90: state bit `MD_SB_BITMAP_PRESENT`, at 4 KiB).
    pub bitmap_offset: Option<i32>,
    /// First data sector on this device.
    pub data_offset: u64,
    /// Sectors usable for data on this device.
    pub data_size: u64,
    /// Superblock position in sectors, as recorded in it (checked against `offset`).
    pub super_offset: u64,
    /// Sectors known in sync (`u64::MAX` when clean); 0.90: `recovery_cp`.
    pub resync_offset: u64,
    /// 1.x `feature_map` (0 for 0.90).
    pub feature_map: u32,
    /// 1.x: entries in `dev_roles[]`; 0.90: 27 (`MD_SB_DISKS`).
    pub max_dev: u32,
    /// 1.x `device_uuid` (`None` for 0.90).
    pub device_uuid: Option<[u8; 16]>,
    /// The stored (and verified) checksum.
    pub checksum: u32,
}

/// Why no superblock could be returned.
#[derive(Debug)]
pub enum SbError {
    /// No md magic at any location.
    NoSuperblock,
    /// Magic found, but the checksum is wrong: a torn write or a corrupted block.
    BadChecksum {
        version: Version,
        offset: u64,
        stored: u32,
        computed: u32,
    },
    /// Magic found, but the device or buffer ends before the superblock does.
    Truncated {
        version: Version,
        offset: u64,
        needed: usize,
        available: usize,
    },
    /// Magic found with a major/minor version this reader does not know.
    UnsupportedVersion { offset: u64, major: u32, minor: u32 },
    /// Magic and checksum fine, but the fields contradict themselves or the
    /// location (the kernel would refuse it too).
    Malformed {
        version: Version,
        offset: u64,
        reason: String,
    },
    /// Reading the device failed.
    Io(io::Error),
}

impl fmt::Display for SbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SbError::NoSuperblock => f.write_str("no md superblock found (tried 1.2, 1.1, 1.0, 0.90)"),
            SbError::BadChecksum { version, offset, stored, computed } => write!(
                f,
                "md {version} superblock at byte {offset} has a bad checksum: stored {stored:#010x}, computed {computed:#010x}"
            ),
            SbError::Truncated { version, offset, needed, available } => write!(
                f,
                "md {version} superblock at byte {offset} is truncated: needs {needed} bytes, only {available} available"
            ),
            SbError::UnsupportedVersion { offset, major, minor } => write!(
                f,
                "md superblock at byte {offset} has unsupported version {major}.{minor}"
            ),
            SbError::Malformed { version, offset, reason } => {
                write!(f, "md {version} superblock at byte {offset} is malformed: {reason}")
            }
            SbError::Io(e) => write!(f, "reading md superblock: {e}"),
        }
    }
}

impl std::error::Error for SbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SbError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for SbError {
    fn from(e: io::Error) -> SbError {
        SbError::Io(e)
    }
}

// ---- byte access, bounds-checked ------------------------------------------------

fn le16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}
fn le32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}
fn le64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}
fn ne32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

/// Sum of 32-bit words (little-endian for 1.x, native for 0.90) with the word at
/// `csum_at` counted as zero, a trailing 16-bit half-word added as in
/// `calc_sb_1_csum`, and the 64-bit sum folded once into 32 bits.
fn md_csum(b: &[u8], csum_at: usize, native: bool) -> u32 {
    let mut sum: u64 = 0;
    let mut words = b.chunks_exact(4);
    for (i, w) in words.by_ref().enumerate() {
        if i * 4 == csum_at {
            continue;
        }
        let a = [w[0], w[1], w[2], w[3]];
        let v = if native {
            u32::from_ne_bytes(a)
        } else {
            u32::from_le_bytes(a)
        };
        sum = sum.wrapping_add(u64::from(v));
    }
    let rest = words.remainder();
    if rest.len() >= 2 {
        sum = sum.wrapping_add(u64::from(u16::from_le_bytes([rest[0], rest[1]])));
    }
    ((sum & 0xffff_ffff) + (sum >> 32)) as u32
}

// ---- 1.x ------------------------------------------------------------------------

/// Field offsets in `struct mdp_superblock_1` (md_p.h).
mod v1 {
    pub const MAGIC: usize = 0;
    pub const MAJOR: usize = 4;
    pub const FEATURE_MAP: usize = 8;
    pub const SET_UUID: usize = 16;
    pub const SET_NAME: usize = 32;
    pub const CTIME: usize = 64;
    pub const LEVEL: usize = 72;
    pub const LAYOUT: usize = 76;
    pub const SIZE: usize = 80;
    pub const CHUNKSIZE: usize = 88;
    pub const RAID_DISKS: usize = 92;
    pub const BITMAP_OFFSET: usize = 96;
    pub const DATA_OFFSET: usize = 128;
    pub const DATA_SIZE: usize = 136;
    pub const SUPER_OFFSET: usize = 144;
    pub const DEV_NUMBER: usize = 160;
    pub const DEVICE_UUID: usize = 168;
    pub const UTIME: usize = 192;
    pub const EVENTS: usize = 200;
    pub const RESYNC_OFFSET: usize = 208;
    pub const SB_CSUM: usize = 216;
    pub const MAX_DEV: usize = 220;
    pub const DEV_ROLES: usize = 256;
}

/// `MD_FEATURE_BITMAP_OFFSET`.
const FEATURE_BITMAP_OFFSET: u32 = 1;
/// 40 low bits of 1.x `ctime`/`utime` are seconds.
const TIME_SEC_MASK: u64 = (1 << 40) - 1;

fn role_from_v1(value: u16) -> Role {
    match value {
        0xffff => Role::Spare,
        0xfffe => Role::Faulty,
        0xfffd => Role::Journal,
        v if v >= 0xff00 => Role::Unknown(v),
        v => Role::Active(u32::from(v)),
    }
}

fn parse_v1(buf: &[u8], version: Version, offset: u64) -> Result<Superblock, SbError> {
    let truncated = |needed: usize| SbError::Truncated {
        version,
        offset,
        needed,
        available: buf.len(),
    };
    if le32(buf, v1::MAGIC) != Some(MD_SB_MAGIC) {
        return Err(SbError::NoSuperblock);
    }
    let major = le32(buf, v1::MAJOR).ok_or_else(|| truncated(v1::MAJOR + 4))?;
    if major != 1 {
        let (_, minor) = version.as_pair();
        return Err(SbError::UnsupportedVersion {
            offset,
            major,
            minor,
        });
    }
    if buf.len() < V1_FIXED {
        return Err(truncated(V1_FIXED));
    }
    let malformed = |reason: String| SbError::Malformed {
        version,
        offset,
        reason,
    };
    // Every read below is within the first 256 bytes, checked just above.
    let r32 = |at| le32(buf, at).unwrap_or(0);
    let r64 = |at| le64(buf, at).unwrap_or(0);

    let max_dev = r32(v1::MAX_DEV);
    if max_dev > V1_MAX_DEV_LIMIT {
        return Err(malformed(format!(
            "max_dev {max_dev} exceeds the kernel's limit {V1_MAX_DEV_LIMIT}"
        )));
    }
    // max_dev <= 1920, so this cannot overflow.
    let sb_len = V1_FIXED + 2 * max_dev as usize;
    let sb = buf.get(..sb_len).ok_or_else(|| truncated(sb_len))?;

    let stored = verified_checksum(
        version,
        offset,
        r32(v1::SB_CSUM),
        md_csum(sb, v1::SB_CSUM, false),
    )?;

    let super_offset = r64(v1::SUPER_OFFSET);
    if offset % 512 != 0 || super_offset != offset / 512 {
        return Err(malformed(format!(
            "super_offset says sector {super_offset} but it was read at byte {offset}"
        )));
    }

    let dev_number = r32(v1::DEV_NUMBER);
    let role = if dev_number < max_dev {
        // dev_number < max_dev, so the index lies inside `sb`.
        let at = v1::DEV_ROLES + 2 * dev_number as usize;
        role_from_v1(le16(sb, at).unwrap_or(0xffff))
    } else {
        Role::Spare
    };

    // max_dev is bounded by the length check of `sb` above
    let roles = (0..max_dev as usize)
        .map(|i| role_from_v1(le16(sb, v1::DEV_ROLES + 2 * i).unwrap_or(0xffff)))
        .collect();

    let feature_map = r32(v1::FEATURE_MAP);
    let bitmap_offset = if feature_map & FEATURE_BITMAP_OFFSET != 0 {
        Some(r32(v1::BITMAP_OFFSET) as i32)
    } else {
        None
    };

    let raw_name = &sb[v1::SET_NAME..v1::SET_NAME + 32];
    let name_len = raw_name
        .iter()
        .position(|&c| c == 0)
        .unwrap_or(raw_name.len());
    let name = if name_len == 0 {
        None
    } else {
        Some(String::from_utf8_lossy(&raw_name[..name_len]).into_owned())
    };

    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&sb[v1::SET_UUID..v1::SET_UUID + 16]);
    let mut device_uuid = [0u8; 16];
    device_uuid.copy_from_slice(&sb[v1::DEVICE_UUID..v1::DEVICE_UUID + 16]);

    Ok(Superblock {
        version,
        offset,
        uuid: Uuid::from_v1_bytes(uuid),
        name,
        ctime: r64(v1::CTIME) & TIME_SEC_MASK,
        utime: r64(v1::UTIME) & TIME_SEC_MASK,
        level: r32(v1::LEVEL) as i32,
        layout: r32(v1::LAYOUT),
        chunk_sectors: r32(v1::CHUNKSIZE),
        raid_disks: r32(v1::RAID_DISKS),
        size: r64(v1::SIZE),
        role,
        dev_number,
        roles,
        events: r64(v1::EVENTS),
        bitmap_offset,
        data_offset: r64(v1::DATA_OFFSET),
        data_size: r64(v1::DATA_SIZE),
        super_offset,
        resync_offset: r64(v1::RESYNC_OFFSET),
        feature_map,
        max_dev,
        device_uuid: Some(device_uuid),
        checksum: stored,
    })
}

// ---- 0.90 -----------------------------------------------------------------------

/// Word indexes in `mdp_super_t` (md_p.h); byte offset = 4 * index.
mod v0 {
    pub const MAGIC: usize = 0;
    pub const MAJOR: usize = 1;
    pub const MINOR: usize = 2;
    pub const UUID0: usize = 5;
    pub const CTIME: usize = 6;
    pub const LEVEL: usize = 7;
    pub const SIZE: usize = 8;
    pub const RAID_DISKS: usize = 10;
    pub const UUID1: usize = 13;
    pub const UUID2: usize = 14;
    pub const UUID3: usize = 15;
    pub const UTIME: usize = 32;
    pub const STATE: usize = 33;
    pub const SB_CSUM: usize = 38;
    /// Little-endian layout; on big-endian the two halves swap (md_p.h `#if`).
    #[cfg(target_endian = "little")]
    pub const EVENTS_LO: usize = 39;
    #[cfg(target_endian = "little")]
    pub const EVENTS_HI: usize = 40;
    #[cfg(target_endian = "big")]
    pub const EVENTS_HI: usize = 39;
    #[cfg(target_endian = "big")]
    pub const EVENTS_LO: usize = 40;
    pub const RECOVERY_CP: usize = 43;
    pub const LAYOUT: usize = 64;
    pub const CHUNK_SIZE: usize = 65;
    /// `disks[27]`, 32 words each: number, major, minor, raid_disk, state.
    pub const DISKS: usize = 128;
    /// `this_disk` descriptor: number, major, minor, raid_disk, state.
    pub const THIS_DISK: usize = 992;
}

const MD_DISK_FAULTY: u32 = 1 << 0;
const MD_DISK_SYNC: u32 = 1 << 2;
const MD_SB_CLEAN: u32 = 1 << 0;
const MD_SB_BITMAP_PRESENT: u32 = 1 << 8;

/// A 0.90 descriptor's role from its `raid_disk` and `state` words.
fn role_from_v090(raid_disk: u32, state: u32) -> Role {
    if state & MD_DISK_FAULTY != 0 {
        Role::Faulty
    } else if state & MD_DISK_SYNC != 0 {
        Role::Active(raid_disk)
    } else {
        Role::Spare
    }
}

fn parse_v090(buf: &[u8], offset: u64) -> Result<Superblock, SbError> {
    let version = Version::V0_90;
    let w = |i: usize| ne32(buf, 4 * i);
    match w(v0::MAGIC) {
        Some(MD_SB_MAGIC) => {}
        _ => return Err(SbError::NoSuperblock),
    }
    let truncated = || SbError::Truncated {
        version,
        offset,
        needed: V090_BYTES,
        available: buf.len(),
    };
    let major = w(v0::MAJOR).ok_or_else(truncated)?;
    let minor = w(v0::MINOR).ok_or_else(truncated)?;
    // 0.91 is 0.90 during a reshape (md.c accepts 90..=91).
    if major != 0 || !(90..=91).contains(&minor) {
        return Err(SbError::UnsupportedVersion {
            offset,
            major,
            minor,
        });
    }
    let sb = buf.get(..V090_BYTES).ok_or_else(truncated)?;
    // Everything below is inside the 4096 bytes just checked.
    let w = |i: usize| ne32(sb, 4 * i).unwrap_or(0);

    let stored = verified_checksum(
        version,
        offset,
        w(v0::SB_CSUM),
        md_csum(sb, 4 * v0::SB_CSUM, true),
    )?;

    let number = w(v0::THIS_DISK);
    let raid_disk = w(v0::THIS_DISK + 3);
    let disk_state = w(v0::THIS_DISK + 4);
    let role = role_from_v090(raid_disk, disk_state);
    let roles = (0..27)
        .map(|i| {
            let d = v0::DISKS + 32 * i;
            role_from_v090(w(d + 3), w(d + 4))
        })
        .collect();

    let state = w(v0::STATE);
    let events = (u64::from(w(v0::EVENTS_HI)) << 32) | u64::from(w(v0::EVENTS_LO));
    let size_sectors = u64::from(w(v0::SIZE)).saturating_mul(2); // size is in KiB
    let resync_offset = if state & MD_SB_CLEAN != 0 {
        u64::MAX
    } else {
        u64::from(w(v0::RECOVERY_CP))
    };

    Ok(Superblock {
        version,
        offset,
        uuid: Uuid::from_v090_words([w(v0::UUID0), w(v0::UUID1), w(v0::UUID2), w(v0::UUID3)]),
        name: None,
        ctime: u64::from(w(v0::CTIME)),
        utime: u64::from(w(v0::UTIME)),
        level: w(v0::LEVEL) as i32,
        layout: w(v0::LAYOUT),
        chunk_sectors: w(v0::CHUNK_SIZE) / 512,
        raid_disks: w(v0::RAID_DISKS),
        size: size_sectors,
        role,
        dev_number: number,
        roles,
        events,
        // The kernel puts a 0.90 bitmap 4 KiB after the superblock.
        bitmap_offset: (state & MD_SB_BITMAP_PRESENT != 0).then_some(8),
        data_offset: 0,
        data_size: size_sectors,
        super_offset: offset / 512,
        resync_offset,
        feature_map: 0,
        max_dev: 27,
        device_uuid: None,
        checksum: stored,
    })
}

// ---- public entry points --------------------------------------------------------

/// Parse `buf`, the bytes found at `version`'s location on a device of `dev_size`
/// bytes (normally [`SB_READ_BYTES`] of them; fewer if the device ends sooner).
///
/// Returns [`SbError::NoSuperblock`] when the magic is absent, and an error, never a
/// match, for a bad checksum, a truncated block or contradictory fields.
pub fn parse_at(buf: &[u8], version: Version, dev_size: u64) -> Result<Superblock, SbError> {
    let offset = version.offset(dev_size).ok_or(SbError::NoSuperblock)?;
    match version {
        Version::V0_90 => parse_v090(buf, offset),
        _ => parse_v1(buf, version, offset),
    }
}

/// Probe every location of a device of `dev_size` bytes, reading through
/// `read_at(offset, buf) -> bytes read` (short reads mean end of device).
///
/// Tries [`Version::PROBE_ORDER`] and returns the first valid superblock. When
/// none is valid, returns the first error seen at a location that had the md magic
/// (bad checksum, truncated, ...), or `NoSuperblock` when none had it. I/O errors
/// are returned at once.
pub fn probe_with<F>(dev_size: u64, mut read_at: F) -> Result<Superblock, SbError>
where
    F: FnMut(u64, &mut [u8]) -> io::Result<usize>,
{
    let mut first_err: Option<SbError> = None;
    let mut buf = vec![0u8; SB_READ_BYTES];
    for version in Version::PROBE_ORDER {
        let Some(offset) = version.offset(dev_size) else {
            continue;
        };
        if offset >= dev_size {
            continue;
        }
        let want = usize::try_from(dev_size - offset)
            .unwrap_or(SB_READ_BYTES)
            .min(SB_READ_BYTES);
        let n = read_at(offset, &mut buf[..want])?.min(want);
        match parse_at(&buf[..n], version, dev_size) {
            Ok(sb) => return Ok(sb),
            Err(SbError::NoSuperblock) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or(SbError::NoSuperblock))
}

/// Probe an in-memory device image (its size is `dev.len()`).
pub fn probe_bytes(dev: &[u8]) -> Result<Superblock, SbError> {
    probe_with(dev.len() as u64, |offset, buf| {
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        let src = dev.get(start..).unwrap_or(&[]);
        let n = src.len().min(buf.len());
        buf[..n].copy_from_slice(&src[..n]);
        Ok(n)
    })
}

/// Read the md superblock of a block device or an image file.
///
/// The size comes from seeking to the end (for a block device that is its size in
/// bytes, the same number `BLKGETSIZE64` gives). Block devices are opened with
/// `O_DIRECT` when they allow it, because md writes its superblocks with bios that
/// bypass the block device's page cache: a buffered read could return an old copy.
pub fn read_superblock(path: &Path) -> Result<Superblock, SbError> {
    let is_block = std::fs::metadata(path)?.file_type().is_block_device();
    let mut file = if is_block {
        open_direct(path).or_else(|_| File::open(path))?
    } else {
        File::open(path)?
    };
    let dev_size = file.seek(SeekFrom::End(0))?;
    // O_DIRECT needs an aligned buffer; all locations are 4 KiB aligned and the
    // reads are at most 4 KiB, so a 4 KiB-aligned bounce buffer serves every case.
    let mut bounce = AlignedBuf::new();
    probe_with(dev_size, |offset, out| {
        let tmp = bounce.as_mut_slice();
        let mut done = 0;
        while done < tmp.len() {
            let at = offset.saturating_add(done as u64);
            match file.read_at(&mut tmp[done..], at) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // O_DIRECT refuses a partial tail block; what was read stands.
                Err(e)
                    if done > 0 && e.raw_os_error() == Some(nix::errno::Errno::EINVAL as i32) =>
                {
                    break
                }
                Err(e) => return Err(e),
            }
        }
        let n = done.min(out.len());
        out[..n].copy_from_slice(&tmp[..n]);
        Ok(n)
    })
}

/// The stored checksum, once it equals the computed one: a torn or corrupted
/// block is an error, never a match.
fn verified_checksum(
    version: Version,
    offset: u64,
    stored: u32,
    computed: u32,
) -> Result<u32, SbError> {
    if stored == computed {
        Ok(stored)
    } else {
        Err(SbError::BadChecksum {
            version,
            offset,
            stored,
            computed,
        })
    }
}

fn open_direct(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_DIRECT.bits())
        .open(path)
}

/// A 4 KiB buffer aligned to 4 KiB, as `O_DIRECT` wants.
struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
}

impl AlignedBuf {
    fn new() -> AlignedBuf {
        let storage = vec![0u8; 2 * SB_READ_BYTES];
        let addr = storage.as_ptr() as usize;
        let start = (SB_READ_BYTES - addr % SB_READ_BYTES) % SB_READ_BYTES;
        AlignedBuf { storage, start }
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + SB_READ_BYTES]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_0_offset_matches_kernel_formula() {
        // 1 GiB + 3 sectors: (sectors - 16) & !7
        let size = (1u64 << 30) + 3 * 512;
        let sectors = size / 512;
        assert_eq!(
            Version::V1_0.offset(size),
            Some(((sectors - 16) & !7) * 512)
        );
        assert_eq!(Version::V1_0.offset(15 * 512), None);
        assert_eq!(Version::V1_0.offset(16 * 512), Some(0));
    }

    #[test]
    fn v090_offset_is_last_aligned_64k_block() {
        assert_eq!(Version::V0_90.offset(1 << 20), Some((1 << 20) - 65536));
        assert_eq!(
            Version::V0_90.offset((1 << 20) + 12345),
            Some((1 << 20) - 65536)
        );
        assert_eq!(Version::V0_90.offset(65535), None);
        assert_eq!(Version::V0_90.offset(65536), Some(0));
    }

    #[test]
    fn csum_counts_trailing_half_word_and_skips_csum_slot() {
        let mut b = vec![0u8; 10];
        b[0..4].copy_from_slice(&0xffff_ffffu32.to_le_bytes());
        b[4..8].copy_from_slice(&5u32.to_le_bytes()); // the csum slot: ignored
        b[8..10].copy_from_slice(&2u16.to_le_bytes());
        // 0xffffffff + 2 = 0x1_0000_0001 -> folded 1 + 1 = 2
        assert_eq!(md_csum(&b, 4, false), 2);
    }
}
