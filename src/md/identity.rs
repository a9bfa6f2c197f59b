//! Identity: one definition of what names an array (its UUID, in every textual
//! form md and mdadm use) and of which block devices are one disk (a disk and its
//! partitions).

use std::fmt;

/// An array's UUID as the kernel holds it (`mddev->uuid`, the bytes behind the
/// sysfs `md/uuid` file), remembering whether it came from a 0.90 superblock,
/// where mdadm prints it differently.
///
/// * sysfs form (`%pU`): the 16 bytes in order, `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
/// * mdadm form (`--examine`, `--detail`, `/dev/disk/by-id/md-uuid-*`):
///   `xxxxxxxx:xxxxxxxx:xxxxxxxx:xxxxxxxx`. For 1.x it is the same bytes in order;
///   for 0.90 each group is one native-endian `set_uuidN` word printed as `%08x`,
///   so on little-endian machines the bytes of each group appear reversed compared
///   with sysfs.
///
/// `Display` gives the mdadm form. Equality compares the bytes only.
#[derive(Debug, Clone, Copy)]
pub struct Uuid {
    bytes: [u8; 16],
    v090_words: bool,
}

impl Uuid {
    /// A UUID from a 1.x superblock's `set_uuid`.
    pub fn from_v1_bytes(bytes: [u8; 16]) -> Uuid {
        Uuid {
            bytes,
            v090_words: false,
        }
    }

    /// A UUID from a 0.90 superblock's `set_uuid0..3` words (as read natively).
    pub fn from_v090_words(words: [u32; 4]) -> Uuid {
        let mut bytes = [0u8; 16];
        for (chunk, w) in bytes.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&w.to_ne_bytes());
        }
        Uuid {
            bytes,
            v090_words: true,
        }
    }

    /// The bytes in kernel (sysfs) order.
    pub fn bytes(&self) -> [u8; 16] {
        self.bytes
    }

    /// The form of the sysfs `md/uuid` file: `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    pub fn sysfs(&self) -> String {
        let mut s = String::with_capacity(36);
        for (i, b) in self.bytes.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                s.push('-');
            }
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// The form mdadm prints: `xxxxxxxx:xxxxxxxx:xxxxxxxx:xxxxxxxx`.
    pub fn mdadm(&self) -> String {
        let mut s = String::with_capacity(35);
        for (i, chunk) in self.bytes.chunks_exact(4).enumerate() {
            if i > 0 {
                s.push(':');
            }
            if self.v090_words {
                let w = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                s.push_str(&format!("{w:08x}"));
            } else {
                for b in chunk {
                    s.push_str(&format!("{b:02x}"));
                }
            }
        }
        s
    }

    /// Whether `text` names this UUID in either form (case-insensitive, surrounding
    /// whitespace ignored). The punctuation matters: for 0.90 the two forms hold
    /// the same digits in another order, so `:` means mdadm's form, `-` sysfs's.
    pub fn matches_text(&self, text: &str) -> bool {
        let t = text.trim().to_ascii_lowercase();
        !t.is_empty() && (t == self.mdadm() || t == self.sysfs())
    }
}

impl PartialEq for Uuid {
    fn eq(&self, other: &Uuid) -> bool {
        self.bytes == other.bytes
    }
}
impl Eq for Uuid {}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.mdadm())
    }
}

/// Two UUID texts compare equal whatever their punctuation and case. Both must be
/// in the same byte order: mdadm's form of a 0.90 UUID is not the sysfs form with
/// other punctuation (see [`Uuid`]); mdguard compares sysfs forms (the array's
/// `md/uuid` and [`Uuid::sysfs`] of a probed superblock).
pub fn same_uuid(a: &str, b: &str) -> bool {
    hex32(a).is_some_and(|x| Some(x) == hex32(b))
}

/// A UUID's 32 hex digits in lower case, whatever the punctuation; None when the
/// text does not hold exactly 32.
fn hex32(text: &str) -> Option<String> {
    let h: String = text
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (h.len() == 32).then_some(h)
}

/// Is `dev` the disk `disk` or one of its partitions? The kernel names partitions
/// `<disk>p<N>` when the disk's name ends in a digit (`nbd1p2`), else `<disk><N>`
/// (`sda1`, `xvdb2`).
pub fn on_disk(dev: &str, disk: &str) -> bool {
    let Some(rest) = dev.strip_prefix(disk) else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    let num = if disk.ends_with(|c: char| c.is_ascii_digit()) {
        rest.strip_prefix('p')
    } else {
        Some(rest)
    };
    num.is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The transport a block device's name says it comes over: `nbd` for `nbd1p2`,
/// `xvd` for `xvdb2`, `sd` for `sda`, `vd` for `vdb`, `loop`, `dm` for `dm-3`,
/// `nvme` for `nvme0n1`: the name's leading letters, where the disk letters of
/// `xvd`, `sd`, `vd` and `hd` names are not part of it.
pub fn transport(dev: &str) -> &str {
    for p in ["xvd", "sd", "vd", "hd"] {
        if dev
            .strip_prefix(p)
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_lowercase()))
        {
            return p;
        }
    }
    let end = dev
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(dev.len());
    &dev[..end]
}

/// Devices that are never the returning leg of a mirror whose legs come from
/// storage servers: local copies and stacked devices (a loop device on a backup
/// image, a device-mapper or LVM snapshot, zram and RAM disks, optical drives,
/// md itself). Such a device may well carry a copy of a leg's superblock.
pub fn never_a_leg(dev: &str) -> bool {
    matches!(
        transport(dev),
        "loop" | "dm" | "zram" | "ram" | "sr" | "md" | "fd" | "nullb" | "zd"
    )
}

/// The identity of the storage behind a block device, as its transport names it,
/// when it names one: what a leg's record keeps so that a device that later
/// shows the leg's superblock can be told to sit on other storage (a clone or
/// another guest's disk handed back).
///
/// - nbd: the backend identifier the client gave the kernel (`backend`, empty
///   when the client sets none, as Debian 12's nbd-client 3.24 does);
/// - virtio-blk: the disk's `serial`;
/// - SCSI (iSCSI LUNs among them): the `device/wwid` the kernel reads from the
///   LUN's identification page;
/// - a partition: its disk's identity and its partition number.
///
/// Xen vbds have none the guest can read in sysfs (`device/nodename` names
/// the frontend slot, not the storage, and changes on a re-attach): `None`.
pub fn storage_identity(root: &crate::root::Root, dev: &str) -> Option<String> {
    let sys = root.class_block().join(dev);
    if let Ok(part) = std::fs::read_to_string(sys.join("partition")) {
        // a partition's sysfs directory sits in its disk's
        let disk_dir = std::fs::canonicalize(&sys).ok()?.parent()?.to_path_buf();
        let disk = disk_dir.file_name()?.to_str()?.to_string();
        let id = storage_identity(root, &disk)?;
        return Some(format!("{id} part{}", part.trim()));
    }
    let read = |rel: &str| -> Option<String> {
        let v = std::fs::read_to_string(sys.join(rel)).ok()?;
        let v = crate::text::printable_str(v.trim(), 256);
        (!v.is_empty()).then_some(v)
    };
    match transport(dev) {
        "nbd" => read("backend").map(|v| format!("nbd backend {v}")),
        "vd" => read("serial").map(|v| format!("virtio serial {v}")),
        "sd" => read("device/wwid").map(|v| format!("scsi {v}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_forms() {
        let u = Uuid::from_v1_bytes([
            0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x10, 0x32, 0x54, 0x76, 0x98, 0xba,
            0xdc, 0xfe,
        ]);
        assert_eq!(u.mdadm(), "01234567:89abcdef:10325476:98badcfe");
        assert_eq!(u.sysfs(), "01234567-89ab-cdef-1032-547698badcfe");
        assert_eq!(u.to_string(), u.mdadm());
        assert!(u.matches_text(" 01234567-89AB-cdef-1032-547698badcfe\n"));
        assert!(!u.matches_text(""));
        assert!(!u.matches_text("01234567:89abcdef:10325476:98badcff"));
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn uuid_v090_words_print_as_mdadm_does() {
        let u = Uuid::from_v090_words([0x0123_4567, 0x89ab_cdef, 1, 2]);
        assert_eq!(u.mdadm(), "01234567:89abcdef:00000001:00000002");
        // the kernel memcpy()s the words, so sysfs shows them byte-swapped on x86
        assert_eq!(u.sysfs(), "67452301-efcd-ab89-0100-000002000000");
    }
    #[test]
    fn partitions_belong_to_their_disk() {
        assert!(on_disk("nbd1", "nbd1"));
        assert!(on_disk("nbd1p2", "nbd1"));
        assert!(!on_disk("nbd10", "nbd1"));
        assert!(!on_disk("nbd1p", "nbd1"));
        assert!(on_disk("sda1", "sda"));
        assert!(!on_disk("sdab", "sda"));
        assert!(on_disk("xvdb2", "xvdb"));
        assert!(!on_disk("xvdc", "xvdb"));
    }
    #[test]
    fn text_uuid_forms() {
        assert!(same_uuid(
            "0fbf5f2c:add243c2:bd78a4be:3ab709ef",
            "0FBF5F2C-ADD2-43C2-BD78-A4BE3AB709EF"
        ));
        assert!(!same_uuid("", ""));
        assert!(!same_uuid("0fbf5f2c", "0fbf5f2c"));
    }

    #[test]
    fn transports_by_name() {
        for (dev, t) in [
            ("nbd1", "nbd"),
            ("nbd1p2", "nbd"),
            ("xvdb", "xvd"),
            ("xvdaa3", "xvd"),
            ("sda", "sd"),
            ("sdb1", "sd"),
            ("vdc", "vd"),
            ("loop0", "loop"),
            ("dm-3", "dm"),
            ("nvme0n1p1", "nvme"),
            ("sr0", "sr"),
            ("zram0", "zram"),
        ] {
            assert_eq!(transport(dev), t, "{dev}");
        }
        for dev in ["loop3", "dm-0", "zram1", "ram0", "sr0", "md127"] {
            assert!(never_a_leg(dev), "{dev}");
        }
        for dev in ["nbd2", "xvdd", "sdc", "vdb", "nvme1n1"] {
            assert!(!never_a_leg(dev), "{dev}");
        }
    }
}
