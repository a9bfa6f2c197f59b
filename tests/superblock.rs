//! Superblock reader tests over image files laid out byte by byte.
//!
//! The builder below is written from the struct definitions in the kernel's
//! `include/uapi/linux/raid/md_p.h`, field after field in declaration order (each
//! field's offset comes from the sizes of the fields before it), and does not use
//! the parser's offset table: a wrong offset in either one makes these tests fail.
//!
//! The `mdadm_*` tests additionally hand the same images to `mdadm --examine`, an
//! oracle written by others. They are skipped when mdadm is not installed, unless
//! `MDGUARD_REQUIRE_MDADM=1` is set, in which case a missing mdadm fails them.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use mdguard::md::superblock::{parse_at, probe_bytes, read_superblock, Role, SbError, Version};

// ---- the builder ----------------------------------------------------------------

/// Appends fields in declaration order, little- or native-endian.
struct Fields {
    out: Vec<u8>,
    native: bool,
}

impl Fields {
    fn new(native: bool) -> Fields {
        Fields {
            out: Vec::new(),
            native,
        }
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.out.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        if self.native {
            self.out.extend_from_slice(&v.to_ne_bytes());
        } else {
            self.out.extend_from_slice(&v.to_le_bytes());
        }
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.out.extend_from_slice(v);
        self
    }
    fn zeros(&mut self, n: usize) -> &mut Self {
        self.out.resize(self.out.len() + n, 0);
        self
    }
    fn u32s(&mut self, n: usize) -> &mut Self {
        self.zeros(4 * n)
    }
}

/// What to put in a superblock. Roles are raw `dev_roles[]` values for 1.x.
#[derive(Clone)]
struct Spec {
    uuid: [u8; 16],
    name: &'static str,
    level: u32,
    raid_disks: u32,
    dev_number: u32,
    roles: Vec<u16>,
    events: u64,
    bitmap_offset: Option<i32>,
    ctime: u64,
    utime: u64,
    /// component size, sectors
    size: u64,
    device_uuid: [u8; 16],
}

const UUID: [u8; 16] = [
    0x3c, 0x1f, 0x9a, 0x02, 0x7d, 0x44, 0xe1, 0x85, 0x0b, 0x6e, 0xaa, 0x31, 0xc4, 0x58, 0x19, 0xf7,
];

fn spec() -> Spec {
    Spec {
        uuid: UUID,
        name: "guest7:root",
        level: 1,
        raid_disks: 2,
        dev_number: 1,
        roles: vec![0, 1],
        events: 0x1_0000_002a,
        bitmap_offset: None,
        ctime: 1_700_000_000,
        utime: 1_700_000_500,
        size: 4096,
        device_uuid: [0x5a; 16],
    }
}

/// Independent of the parser: plain word sum, sb_csum word zeroed first.
fn checksum_v1(sb: &[u8]) -> u32 {
    let mut total: u64 = 0;
    let mut i = 0;
    while i + 4 <= sb.len() {
        total += u64::from(u32::from_le_bytes(sb[i..i + 4].try_into().unwrap()));
        i += 4;
    }
    if sb.len() - i == 2 {
        total += u64::from(u16::from_le_bytes(sb[i..i + 2].try_into().unwrap()));
    }
    ((total & 0xffff_ffff) + (total >> 32)) as u32
}

/// `struct mdp_superblock_1`, with `super_offset` in sectors.
fn v1_block(s: &Spec, super_offset: u64, data_offset: u64, data_size: u64) -> Vec<u8> {
    let mut f = Fields::new(false);
    let mut name = [0u8; 32];
    name[..s.name.len()].copy_from_slice(s.name.as_bytes());
    let feature_map = u32::from(s.bitmap_offset.is_some());
    f.u32(0xa92b4efc) // magic
        .u32(1) // major_version
        .u32(feature_map)
        .u32(0) // pad0
        .bytes(&s.uuid)
        .bytes(&name)
        .u64(s.ctime)
        .u32(s.level)
        .u32(0) // layout
        .u64(s.size)
        .u32(0) // chunksize
        .u32(s.raid_disks)
        .u32(s.bitmap_offset.unwrap_or(0) as u32)
        .u32(0) // new_level
        .u64(0) // reshape_position
        .u32(0) // delta_disks
        .u32(0) // new_layout
        .u32(0) // new_chunk
        .u32(0); // new_offset
    assert_eq!(f.out.len(), 128, "constant array information is 128 bytes");
    f.u64(data_offset)
        .u64(data_size)
        .u64(super_offset)
        .u64(0) // recovery_offset
        .u32(s.dev_number)
        .u32(0) // cnt_corrected_read
        .bytes(&s.device_uuid)
        .u8(0) // devflags
        .u8(0) // bblog_shift
        .u16(0) // bblog_size
        .u32(0); // bblog_offset
    assert_eq!(f.out.len(), 192, "this-device information ends at 192");
    let csum_at = {
        f.u64(s.utime).u64(s.events).u64(u64::MAX); // utime, events, resync_offset
        f.out.len()
    };
    f.u32(0) // sb_csum, filled below
        .u32(s.roles.len() as u32) // max_dev
        .zeros(32); // pad3
    assert_eq!(f.out.len(), 256, "fixed part is 256 bytes");
    for r in &s.roles {
        f.u16(*r);
    }
    let sum = checksum_v1(&f.out);
    f.out[csum_at..csum_at + 4].copy_from_slice(&sum.to_le_bytes());
    f.out
}

/// `mdp_super_t`: 1024 native-endian words.
fn v090_block(s: &Spec, this_number: u32, this_raid_disk: u32, this_state: u32) -> Vec<u8> {
    let mut f = Fields::new(true);
    let w = |i: usize| u32::from_ne_bytes(s.uuid[4 * i..4 * i + 4].try_into().unwrap());
    // generic constant information, 32 words
    f.u32(0xa92b4efc) // md_magic
        .u32(0) // major_version
        .u32(90) // minor_version
        .u32(0) // patch_version
        .u32(0) // gvalid_words
        .u32(w(0)) // set_uuid0
        .u32(s.ctime as u32)
        .u32(s.level)
        .u32((s.size / 2) as u32) // size in KiB
        .u32(s.raid_disks) // nr_disks
        .u32(s.raid_disks)
        .u32(0) // md_minor
        .u32(0) // not_persistent
        .u32(w(1))
        .u32(w(2))
        .u32(w(3))
        .u32s(32 - 16);
    // generic state information, 32 words
    let state = 1 | if s.bitmap_offset.is_some() { 1 << 8 } else { 0 }; // clean, bitmap
    f.u32(s.utime as u32).u32(state).u32(2).u32(2).u32(0).u32(0);
    let csum_at = f.out.len();
    f.u32(0); // sb_csum
    let (first, second) = if cfg!(target_endian = "little") {
        (s.events as u32, (s.events >> 32) as u32) // events_lo, events_hi
    } else {
        ((s.events >> 32) as u32, s.events as u32)
    };
    f.u32(first).u32(second).u32(first).u32(second); // events, cp_events
    f.u32(0) // recovery_cp
        .u64(0) // reshape_position
        .u32(0)
        .u32(0)
        .u32(0)
        .u32(0) // new_level, delta_disks, new_layout, new_chunk
        .u32s(32 - 18);
    assert_eq!(f.out.len(), 64 * 4);
    // personality information, 64 words
    f.u32(0).u32(0).u32(0).u32(0).u32s(64 - 4);
    // disks[27]: number, major, minor, raid_disk, state, reserved[27]
    for d in 0..27u32 {
        let (rd, st) = if d == this_number {
            (this_raid_disk, this_state)
        } else {
            v090_disk(s, d)
        };
        f.u32(d).u32(0).u32(0).u32(rd).u32(st).u32s(27);
    }
    assert_eq!(f.out.len(), (128 + 27 * 32) * 4);
    // reserved: 1024 - 64 - 64 - 27*32 - 32 = 0 words; then this_disk
    f.u32(this_number)
        .u32(0)
        .u32(0)
        .u32(this_raid_disk)
        .u32(this_state)
        .u32s(27);
    assert_eq!(f.out.len(), 4096);
    let mut total: u64 = 0;
    for c in f.out.chunks(4) {
        total += u64::from(u32::from_ne_bytes(c.try_into().unwrap()));
    }
    let sum = ((total & 0xffff_ffff) + (total >> 32)) as u32;
    f.out[csum_at..csum_at + 4].copy_from_slice(&sum.to_ne_bytes());
    f.out
}

const MIB: u64 = 1 << 20;

/// A 0.90 descriptor's `(raid_disk, state)` for the 1.x role value `s.roles[d]`:
/// MD_DISK_FAULTY is bit 0, MD_DISK_ACTIVE bit 1, MD_DISK_SYNC bit 2 (md_p.h).
fn v090_disk(s: &Spec, d: u32) -> (u32, u32) {
    match s.roles.get(d as usize) {
        Some(&0xfffe) => (d, 1),           // faulty
        Some(&0xffff) | None => (2, 0),    // spare, removed or unused
        Some(&r) => (u32::from(r), 0b110), // active + sync
    }
}

/// A device image of `dev_size` bytes with `version`'s superblock in place.
/// Locations are computed here from the md.c comments, not from the parser.
fn image(version: Version, s: &Spec, dev_size: u64) -> (Vec<u8>, u64) {
    let sectors = dev_size / 512;
    let (sb_byte, block) = match version {
        Version::V1_2 => (4096, v1_block(s, 8, 2048, sectors - 2048)),
        Version::V1_1 => (0, v1_block(s, 0, 2048, sectors - 2048)),
        Version::V1_0 => {
            // "At least 8K, but less than 12K, from end of device", 4K aligned.
            let sb_sector = (sectors - 16) / 8 * 8;
            (sb_sector * 512, v1_block(s, sb_sector, 0, sb_sector - 8))
        }
        Version::V0_90 => {
            let sb = dev_size / 65536 * 65536 - 65536;
            let (raid_disk, state) = v090_disk(s, s.dev_number);
            (sb, v090_block(s, s.dev_number, raid_disk, state))
        }
    };
    let mut img = vec![0u8; dev_size as usize];
    img[sb_byte as usize..sb_byte as usize + block.len()].copy_from_slice(&block);
    (img, sb_byte)
}

fn write_image(img: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(img).unwrap();
    f.flush().unwrap();
    f
}

const ALL: [Version; 4] = [Version::V1_2, Version::V1_1, Version::V1_0, Version::V0_90];

// ---- tests ----------------------------------------------------------------------

#[test]
fn each_version_read_from_file_at_its_location() {
    for v in ALL {
        let s = spec();
        let size = 4 * MIB + 3 * 512; // not 4K-aligned: exercises the 1.0 rounding
        let (img, at) = image(v, &s, size);
        let f = write_image(&img);
        let sb = read_superblock(f.path()).unwrap_or_else(|e| panic!("{v}: {e}"));
        assert_eq!(sb.version, v);
        assert_eq!(sb.offset, at, "{v}");
        assert_eq!(sb.super_offset, at / 512, "{v}");
        assert_eq!(sb.events, 0x1_0000_002a, "{v}");
        assert_eq!(sb.level, 1, "{v}");
        assert_eq!(sb.raid_disks, 2, "{v}");
        assert_eq!(sb.role, Role::Active(1), "{v}");
        assert_eq!(sb.dev_number, 1, "{v}");
        assert_eq!(sb.size, 4096, "{v}");
        assert_eq!(sb.ctime, 1_700_000_000, "{v}");
        assert_eq!(sb.utime, 1_700_000_500, "{v}");
        if v == Version::V0_90 {
            assert_eq!(sb.name, None);
            assert_eq!(sb.uuid.sysfs(), "3c1f9a02-7d44-e185-0b6e-aa31c45819f7");
        } else {
            assert_eq!(sb.name.as_deref(), Some("guest7:root"), "{v}");
            assert_eq!(sb.uuid.bytes(), UUID, "{v}");
            assert_eq!(sb.uuid.to_string(), "3c1f9a02:7d44e185:0b6eaa31:c45819f7");
            assert_eq!(sb.device_uuid, Some([0x5a; 16]));
        }
        assert!(
            sb.uuid.matches_text("3c1f9a02-7d44-e185-0b6e-aa31c45819f7"),
            "{v}"
        );
        assert!(
            !sb.uuid.matches_text("3c1f9a02-7d44-e185-0b6e-aa31c45819f8"),
            "{v}"
        );
        // and the in-memory path agrees with the file path
        assert_eq!(probe_bytes(&img).unwrap(), sb, "{v}");
    }
}

#[cfg(target_endian = "little")]
#[test]
fn v090_uuid_mdadm_form_is_word_order() {
    let (img, _) = image(Version::V0_90, &spec(), 2 * MIB);
    let sb = probe_bytes(&img).unwrap();
    // set_uuid0 = 0x029a1f3c as a native word; mdadm prints %08x per word
    assert_eq!(sb.uuid.mdadm(), "029a1f3c:85e1447d:31aa6e0b:f71958c4");
    assert!(sb.uuid.matches_text("029a1f3c:85e1447d:31aa6e0b:f71958c4"));
    assert!(sb.uuid.matches_text("3C1F9A02-7D44-E185-0B6E-AA31C45819F7"));
    // the v1 reading of the same bytes is a different array for mdadm
    assert!(!sb.uuid.matches_text("3c1f9a02:7d44e185:0b6eaa31:c45819f7"));
}

#[test]
fn roles_active_spare_faulty_for_every_version() {
    let cases: [(u16, Role); 4] = [
        (0, Role::Active(0)),
        (1, Role::Active(1)),
        (0xffff, Role::Spare),
        (0xfffe, Role::Faulty),
    ];
    for v in ALL {
        for (raw, want) in cases {
            let mut s = spec();
            s.dev_number = 2;
            s.roles = vec![0, 1, raw, 0xffff];
            let (img, _) = image(v, &s, 2 * MIB);
            let sb = probe_bytes(&img).unwrap_or_else(|e| panic!("{v} {raw:#x}: {e}"));
            assert_eq!(sb.role, want, "{v} raw {raw:#x}");
            assert_eq!(sb.dev_number, 2);
        }
    }
}

/// How the device saw every other member when it last wrote: the table a
/// returning leg is judged by (a survivor it records as faulty means split brain).
#[test]
fn roles_table_records_every_descriptor_for_every_version() {
    for v in ALL {
        let mut s = spec();
        s.dev_number = 1;
        s.roles = vec![0xfffe, 1, 0xffff, 0];
        let (img, _) = image(v, &s, 2 * MIB);
        let sb = probe_bytes(&img).unwrap_or_else(|e| panic!("{v}: {e}"));
        assert_eq!(
            sb.roles[..4],
            [Role::Faulty, Role::Active(1), Role::Spare, Role::Active(0)],
            "{v}"
        );
        let entries = if v == Version::V0_90 { 27 } else { 4 };
        assert_eq!(sb.roles.len(), entries, "{v}");
        assert!(sb.roles[4..].iter().all(|r| *r == Role::Spare), "{v}");
    }
}

#[test]
fn v1_role_is_indexed_by_dev_number_not_slot() {
    let mut s = spec();
    s.dev_number = 3;
    s.roles = vec![0xfffe, 0, 0xffff, 1, 0xffff];
    let (img, _) = image(Version::V1_2, &s, 2 * MIB);
    assert_eq!(probe_bytes(&img).unwrap().role, Role::Active(1));
    // dev_number beyond max_dev: a spare, as mdadm's role_from_sb says
    s.dev_number = 9;
    let (img, _) = image(Version::V1_2, &s, 2 * MIB);
    assert_eq!(probe_bytes(&img).unwrap().role, Role::Spare);
}

#[test]
fn odd_max_dev_checksum_includes_trailing_half_word() {
    let mut s = spec();
    s.roles = vec![0, 1, 0xffff]; // 256 + 6 bytes: the last role is a half word
    let (mut img, at) = image(Version::V1_2, &s, 2 * MIB);
    assert!(probe_bytes(&img).is_ok());
    // flipping that last role must break the checksum
    let last = at as usize + 256 + 4;
    img[last] ^= 0x01;
    assert!(matches!(
        probe_bytes(&img),
        Err(SbError::BadChecksum { .. })
    ));
}

#[test]
fn bitmap_offset_only_when_feature_bit_set() {
    let mut s = spec();
    let (img, _) = image(Version::V1_2, &s, 2 * MIB);
    assert_eq!(probe_bytes(&img).unwrap().bitmap_offset, None);
    s.bitmap_offset = Some(8);
    let (img, _) = image(Version::V1_2, &s, 2 * MIB);
    assert_eq!(probe_bytes(&img).unwrap().bitmap_offset, Some(8));
    s.bitmap_offset = Some(-72); // 1.0 keeps its bitmap before the superblock
    let (img, _) = image(Version::V1_0, &s, 2 * MIB);
    let sb = probe_bytes(&img).unwrap();
    assert_eq!(sb.bitmap_offset, Some(-72));
    assert_eq!(sb.feature_map & 1, 1);
    let (img, _) = image(Version::V0_90, &s, 2 * MIB);
    assert_eq!(probe_bytes(&img).unwrap().bitmap_offset, Some(8));
}

#[test]
fn wrong_checksum_is_an_error_not_a_match() {
    for v in ALL {
        let (mut img, at) = image(v, &spec(), 2 * MIB);
        // change the event count (a real field) without fixing the checksum
        let events_byte = if v == Version::V0_90 { 39 * 4 } else { 200 };
        img[at as usize + events_byte] ^= 0x40;
        let f = write_image(&img);
        match read_superblock(f.path()) {
            Err(SbError::BadChecksum {
                version,
                stored,
                computed,
                ..
            }) => {
                assert_eq!(version, v);
                assert_ne!(stored, computed);
            }
            other => panic!("{v}: expected BadChecksum, got {other:?}"),
        }
        let msg = read_superblock(f.path()).unwrap_err().to_string();
        assert!(msg.contains("checksum"), "{msg}");
    }
}

#[test]
fn valid_superblock_wins_over_a_damaged_one_elsewhere() {
    // a damaged 1.2 block and a good 0.90 one: the good one is returned
    let (mut img, at) = image(Version::V0_90, &spec(), 2 * MIB);
    let (other, _) = image(Version::V1_2, &spec(), 2 * MIB);
    img[4096..8192].copy_from_slice(&other[4096..8192]);
    img[4096 + 200] ^= 1;
    let sb = probe_bytes(&img).unwrap();
    assert_eq!(sb.version, Version::V0_90);
    assert_eq!(sb.offset, at);
}

#[test]
fn v1_2_is_preferred_over_a_stale_v0_90() {
    let (mut img, _) = image(Version::V0_90, &spec(), 2 * MIB);
    let mut s = spec();
    s.uuid = [0x11; 16];
    let (v12, _) = image(Version::V1_2, &s, 2 * MIB);
    img[4096..8192].copy_from_slice(&v12[4096..8192]);
    let sb = probe_bytes(&img).unwrap();
    assert_eq!(sb.version, Version::V1_2);
    assert_eq!(sb.uuid.bytes(), [0x11; 16]);
}

#[test]
fn super_offset_must_match_location() {
    // a 1.1 block copied to the 1.2 location keeps super_offset 0: rejected like
    // the kernel does, not accepted as a 1.2 superblock
    let (src, _) = image(Version::V1_1, &spec(), 2 * MIB);
    let mut img = vec![0u8; 2 * MIB as usize];
    img[4096..8192].copy_from_slice(&src[..4096]);
    assert!(matches!(
        probe_bytes(&img),
        Err(SbError::Malformed {
            version: Version::V1_2,
            ..
        })
    ));
}

#[test]
fn truncated_file_is_reported_as_truncated() {
    let mut s = spec();
    s.roles = vec![0xffff; 200]; // 256 + 400 bytes of superblock
    s.roles[1] = 1;
    let (img, at) = image(Version::V1_2, &s, 2 * MIB);
    let cut = at as usize + 300;
    let f = write_image(&img[..cut]);
    match read_superblock(f.path()) {
        Err(SbError::Truncated {
            needed, available, ..
        }) => {
            assert_eq!(needed, 656);
            assert_eq!(available, 300);
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    // and in memory, the same buffer through parse_at
    let e = parse_at(&img[at as usize..cut], Version::V1_2, 2 * MIB).unwrap_err();
    assert!(matches!(e, SbError::Truncated { .. }), "{e}");
    assert!(e.to_string().contains("truncated"));
    // 0.90 needs its full 4096 bytes
    let (img, at) = image(Version::V0_90, &spec(), 2 * MIB);
    let e = parse_at(
        &img[at as usize..at as usize + 1000],
        Version::V0_90,
        2 * MIB,
    );
    assert!(matches!(e, Err(SbError::Truncated { .. })), "{e:?}");
}

#[test]
fn zeroed_device_has_no_superblock() {
    let f = write_image(&vec![0u8; 2 * MIB as usize]);
    assert!(matches!(
        read_superblock(f.path()),
        Err(SbError::NoSuperblock)
    ));
    let empty = write_image(&[]);
    assert!(matches!(
        read_superblock(empty.path()),
        Err(SbError::NoSuperblock)
    ));
}

#[test]
fn v090_on_device_size_not_64k_aligned() {
    for size in [2 * MIB + 12345, 2 * MIB + 65535, 2 * MIB + 512] {
        let (img, at) = image(Version::V0_90, &spec(), size);
        assert_eq!(at, 2 * MIB - 65536);
        let f = write_image(&img);
        let sb = read_superblock(f.path()).unwrap();
        assert_eq!((sb.version, sb.offset), (Version::V0_90, at), "size {size}");
    }
}

#[test]
fn file_shorter_than_the_superblock_offset() {
    // a 1.2 superblock needs the device to reach 4 KiB; a 3 KiB file holds only
    // the first part of a 1.2 image and has no superblock at all
    let (img, _) = image(Version::V1_2, &spec(), 2 * MIB);
    let f = write_image(&img[..3072]);
    assert!(matches!(
        read_superblock(f.path()),
        Err(SbError::NoSuperblock)
    ));
    // a 0.90 image cut before its superblock: the location moves, nothing there
    let (img, at) = image(Version::V0_90, &spec(), 2 * MIB);
    let f = write_image(&img[..at as usize]);
    assert!(matches!(
        read_superblock(f.path()),
        Err(SbError::NoSuperblock)
    ));
    // smaller than 64 KiB: no 0.90 location exists at all
    let f = write_image(&[0u8; 1000]);
    assert!(matches!(
        read_superblock(f.path()),
        Err(SbError::NoSuperblock)
    ));
}

#[test]
fn missing_file_is_an_io_error() {
    let e = read_superblock(Path::new("/nonexistent/mdguard-test")).unwrap_err();
    assert!(matches!(e, SbError::Io(_)), "{e}");
    assert!(e.to_string().contains("reading md superblock"));
}

#[test]
fn unsupported_major_version() {
    let (mut img, at) = image(Version::V1_2, &spec(), 2 * MIB);
    img[at as usize + 4] = 2; // major_version 2
    assert!(matches!(
        probe_bytes(&img),
        Err(SbError::UnsupportedVersion { major: 2, .. })
    ));
}

// ---- mdadm --examine as an independent oracle -----------------------------------

fn mdadm() -> Option<&'static str> {
    let found = ["/usr/sbin/mdadm", "/sbin/mdadm", "/usr/bin/mdadm"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    if found.is_none() && std::env::var("MDGUARD_REQUIRE_MDADM").as_deref() == Ok("1") {
        panic!("MDGUARD_REQUIRE_MDADM=1 but mdadm is not installed");
    }
    if found.is_none() {
        eprintln!("mdadm not installed: skipping the mdadm cross-check");
    }
    found
}

/// `mdadm --examine --export` as key=value pairs.
fn examine_export(mdadm: &str, path: &Path) -> Vec<(String, String)> {
    let out = Command::new(mdadm)
        .args(["--examine", "--export"])
        .arg(path)
        .output()
        .expect("run mdadm");
    assert!(
        out.status.success(),
        "mdadm --examine failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

fn examine_text(mdadm: &str, path: &Path) -> String {
    let out = Command::new(mdadm)
        .arg("--examine")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn get<'a>(kv: &'a [(String, String)], key: &str) -> Option<&'a str> {
    kv.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[test]
fn mdadm_examine_agrees_with_parser() {
    let Some(mdadm) = mdadm() else { return };
    for v in ALL {
        for (dev_number, roles, events) in [
            (1u32, vec![0u16, 1], 0x1_0000_002au64),
            (0, vec![0, 1], 7),
            (2, vec![0, 1, 0xffff], 12345),
            (1, vec![0, 0xfffe], 99),
        ] {
            let mut s = spec();
            s.dev_number = dev_number;
            s.roles = roles;
            s.events = events;
            let (img, _) = image(v, &s, 4 * MIB);
            let f = write_image(&img);
            let sb = read_superblock(f.path()).unwrap();
            let kv = examine_export(mdadm, f.path());
            let ctx = format!("{v} dev {dev_number}: {kv:?}");
            assert_eq!(get(&kv, "MD_UUID"), Some(sb.uuid.mdadm().as_str()), "{ctx}");
            assert_eq!(
                get(&kv, "MD_EVENTS"),
                Some(sb.events.to_string().as_str()),
                "{ctx}"
            );
            assert_eq!(get(&kv, "MD_LEVEL"), Some("raid1"), "{ctx}");
            assert_eq!(get(&kv, "MD_DEVICES"), Some("2"), "{ctx}");
            if v != Version::V0_90 {
                assert_eq!(get(&kv, "MD_NAME"), sb.name.as_deref(), "{ctx}");
            }
            // the role as mdadm prints it in the human form: 1.x has
            // "Device Role : Active device N" / "spare"; 0.90 has a table row
            // "this  <number> <major> <minor> <raid disk> <state words>"
            let text = examine_text(mdadm, f.path());
            let role_line = text
                .lines()
                .find(|l| l.contains("Device Role") || l.trim_start().starts_with("this "))
                .unwrap_or_else(|| panic!("no role line in {text}"));
            let want = match (v, sb.role) {
                (Version::V0_90, Role::Active(n)) => {
                    let cols: Vec<&str> = role_line.split_whitespace().collect();
                    assert_eq!(cols.get(1), Some(&dev_number.to_string().as_str()));
                    assert_eq!(cols.get(4), Some(&n.to_string().as_str()), "{role_line}");
                    "active sync".to_string()
                }
                (_, Role::Active(n)) => format!("Active device {n}"),
                (Version::V0_90, Role::Faulty) => "faulty".to_string(),
                (_, Role::Spare) => "spare".to_string(),
                // mdadm's examine_super1 prints every role >= 0xfffe as "spare";
                // the kernel (super_1_validate) marks 0xfffe Faulty, as we do
                (_, Role::Faulty) => "spare".to_string(),
                (_, other) => panic!("unexpected role {other}"),
            };
            assert!(
                role_line.to_lowercase().contains(&want.to_lowercase()),
                "{v}: {role_line:?} vs {want}\n{text}"
            );
            assert!(
                text.contains("- correct"),
                "{v}: checksum not correct?\n{text}"
            );
        }
    }
}

#[test]
fn mdadm_computes_the_same_checksum_on_a_damaged_block() {
    let Some(mdadm) = mdadm() else { return };
    for v in ALL {
        let (mut img, at) = image(v, &spec(), 4 * MIB);
        let events_byte = if v == Version::V0_90 { 39 * 4 } else { 200 };
        img[at as usize + events_byte] ^= 0x40;
        let f = write_image(&img);
        let Err(SbError::BadChecksum {
            stored, computed, ..
        }) = read_superblock(f.path())
        else {
            panic!("{v}: expected BadChecksum");
        };
        let out = Command::new(mdadm)
            .arg("--examine")
            .arg(f.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.contains("Checksum :"))
            .unwrap_or_else(|| panic!("{v}: no checksum line in {text}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        // "Checksum : <stored> - expected <computed>"
        assert_eq!(
            words.get(2).copied(),
            Some(format!("{stored:x}").as_str()),
            "{v}: {line}"
        );
        assert_eq!(words.get(4).copied(), Some("expected"), "{v}: {line}");
        assert_eq!(
            words.get(5).copied(),
            Some(format!("{computed:x}").as_str()),
            "{v}: {line}"
        );
    }
}

// ---- fixtures -------------------------------------------------------------------

/// Device size the fixture blocks were laid out for (matters for 1.0's location).
const FIXTURE_DEV_SIZE: u64 = 4 * MIB;

fn fixture_specs() -> Vec<(&'static str, Version, Spec)> {
    let mut out = Vec::new();
    for (tag, v) in [
        ("v1.2", Version::V1_2),
        ("v1.1", Version::V1_1),
        ("v1.0", Version::V1_0),
        ("v0.90", Version::V0_90),
    ] {
        out.push((tag, v, spec()));
    }
    let mut spare = spec();
    spare.dev_number = 2;
    spare.roles = vec![0, 1, 0xffff];
    spare.bitmap_offset = Some(8);
    out.push(("v1.2-spare-bitmap", Version::V1_2, spare));
    let mut faulty = spec();
    faulty.dev_number = 0;
    faulty.roles = vec![0xfffe, 1];
    out.push(("v1.0-faulty", Version::V1_0, faulty));
    out
}

/// `tests/fixtures/superblock/<name>.sb` hold the 4 KiB found at the superblock's
/// location (seeds for the `superblock` fuzz target, and regression inputs).
/// `MDGUARD_WRITE_FIXTURES=1 cargo test --test superblock fixtures` rewrites them.
#[test]
fn fixtures_parse_as_their_names_say() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/superblock");
    let write = std::env::var("MDGUARD_WRITE_FIXTURES").as_deref() == Ok("1");
    for (tag, v, s) in fixture_specs() {
        let path = dir.join(format!("{tag}.sb"));
        if write {
            let (img, at) = image(v, &s, FIXTURE_DEV_SIZE);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &img[at as usize..at as usize + 4096]).unwrap();
        }
        let block = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let sb = parse_at(&block, v, FIXTURE_DEV_SIZE).unwrap_or_else(|e| panic!("{tag}: {e}"));
        assert_eq!(sb.version, v, "{tag}");
        assert_eq!(sb.events, s.events, "{tag}");
        let want = match s.roles.get(s.dev_number as usize) {
            Some(0xffff) => Role::Spare,
            Some(0xfffe) => Role::Faulty,
            Some(r) => Role::Active(u32::from(*r)),
            None => Role::Spare,
        };
        assert_eq!(sb.role, want, "{tag}");
    }
}

// ---- properties -----------------------------------------------------------------

mod props {
    use super::*;
    use mdguard::md::superblock::probe_with;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// No single-bit corruption of a valid block is ever accepted (1.x: the
        /// 256 + 2 * max_dev checksummed bytes; 0.90: all 4096).
        #[test]
        fn any_bit_flip_in_a_block_is_rejected(
            max_dev in 2usize..40,
            bit in 0usize..(8 * 4096),
            v in prop::sample::select(ALL.to_vec()),
        ) {
            let mut s = spec();
            s.roles = vec![0xffff; max_dev];
            s.roles[0] = 0;
            s.roles[1] = 1;
            let (mut img, at) = image(v, &s, 2 * MIB);
            let span = if v == Version::V0_90 { 4096 } else { 256 + 2 * max_dev };
            let bit = bit % (8 * span);
            img[at as usize + bit / 8] ^= 1 << (bit % 8);
            prop_assert!(probe_bytes(&img).is_err(), "bit {} of {} accepted", bit, v);
        }

        /// Any bytes with the magic in place, any device size: an answer, no panic.
        #[test]
        fn arbitrary_blocks_never_panic(
            mut block in prop::collection::vec(any::<u8>(), 0..4200),
            dev_size in any::<u64>(),
            native in any::<bool>(),
        ) {
            if block.len() >= 8 {
                let magic = if native { 0xa92b4efcu32.to_ne_bytes() } else { 0xa92b4efcu32.to_le_bytes() };
                block[..4].copy_from_slice(&magic);
                block[4..8].copy_from_slice(&u32::from(!native).to_le_bytes());
            }
            for v in ALL {
                let _ = parse_at(&block, v, dev_size);
            }
            let _ = probe_with(dev_size, |_, buf| {
                let n = block.len().min(buf.len());
                buf[..n].copy_from_slice(&block[..n]);
                Ok(n)
            });
        }
    }
}

// ---- a real block device (loop), when the machine allows one ----------------------

/// A loop device over an image file, detached on drop.
struct Loop {
    dev: String,
}

impl Loop {
    /// `None` (test skipped) unless losetup can attach here (root, loop support).
    fn attach(image: &Path) -> Option<Loop> {
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(image)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "losetup unavailable ({}): skipping the block device test",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Some(Loop { dev })
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

#[test]
fn block_device_size_and_fresh_read_past_the_page_cache() {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::FileExt;

    // 1.0 sits at a size-dependent place: finding it proves the device size came
    // from the block device itself (its metadata length is 0).
    let size = 4 * MIB + 5 * 512;
    let mut s = spec();
    s.events = 5;
    let (img, at) = image(Version::V1_0, &s, size);
    let file = write_image(&img);
    let Some(lo) = Loop::attach(file.path()) else {
        return;
    };
    let dev = Path::new(&lo.dev);
    assert_eq!(std::fs::metadata(dev).unwrap().len(), 0, "a block device");
    let sb = read_superblock(dev).unwrap();
    assert_eq!((sb.version, sb.offset, sb.events), (Version::V1_0, at, 5));

    // Warm the block device's page cache with the old block, then change the
    // superblock underneath it (as md does with bios that bypass that cache).
    let mut cached = vec![0u8; 4096];
    let mut d = std::fs::File::open(dev).unwrap();
    d.seek(SeekFrom::Start(at)).unwrap();
    d.read_exact(&mut cached).unwrap();
    s.events = 6;
    let (img2, _) = image(Version::V1_0, &s, size);
    let backing = std::fs::OpenOptions::new()
        .write(true)
        .open(file.path())
        .unwrap();
    backing
        .write_all_at(&img2[at as usize..at as usize + 4096], at)
        .unwrap();
    backing.sync_all().unwrap();

    let mut buffered = vec![0u8; 4096];
    d.read_exact_at(&mut buffered, at).unwrap();
    let stale = parse_at(&buffered, Version::V1_0, size)
        .map(|sb| sb.events)
        .ok();
    let sb = read_superblock(dev).unwrap();
    assert_eq!(sb.events, 6, "read_superblock returned a stale block");
    eprintln!("buffered read saw events {stale:?}; read_superblock saw 6");
}
