//! The kernel actions: each function is one kernel interface (md sysfs, the
//! ADD_NEW_DISK ioctl, an O_DIRECT superblock read), thin on purpose and proven in
//! the VM harness (tests/vm_*).

use crate::heal::{Errno, Failure, LegFlags, Outcome, ProbeOutcome, SbFacts};
use crate::md::identity::storage_identity;
use crate::md::superblock::{self, SbError};
use crate::root::Root;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// An io error as a [`Failure`]: its errno (printed as its name, `EBUSY`), or its
/// text when it carries none.
pub fn failure(e: &io::Error) -> Failure {
    match e.raw_os_error() {
        Some(n) => Failure::Errno(Errno::from_raw(n)),
        None => Failure::Io(e.to_string()),
    }
}

fn outcome(r: io::Result<()>) -> Outcome {
    match r {
        Ok(()) => Outcome::Done,
        Err(e) => Outcome::Failed(failure(&e)),
    }
}

/// Write a whole value to a sysfs attribute in one write(2), as sysfs wants.
pub fn write_attr(path: &Path, value: &str) -> io::Result<()> {
    // O_TRUNC as a shell's `>` does: sysfs ignores it, a prepared tree needs it
    let mut f = OpenOptions::new().write(true).truncate(true).open(path)?;
    f.write_all(value.as_bytes())
}

/// `echo <word> > md/dev-X/state` (`re-add`, `remove`, `faulty`).
pub fn member_state(root: &Root, md: &str, dev: &str, word: &str) -> Outcome {
    outcome(write_attr(
        &crate::md::sysfs::member_attr(root, md, dev, "state"),
        word,
    ))
}

/// `echo remove`. EBUSY (I/O still pending) comes back to the policy, which
/// retries at the next probe time or tears the transport down first; sleeping
/// here would stall the event loop.
pub fn remove_member(root: &Root, md: &str, dev: &str) -> Outcome {
    member_state(root, md, dev, "remove")
}

/// `sync_speed_min` / `sync_speed_max`: a number or `system`.
pub fn set_speed(root: &Root, md: &str, min: Option<u64>, max: Option<u64>) -> Outcome {
    let dir = root.md_sysfs(md);
    let v = |x: Option<u64>| x.map_or("system".to_string(), |n| n.to_string());
    // lower max first if needed so min <= max holds at every step
    let r = write_attr(&dir.join("sync_speed_max"), &v(max))
        .and_then(|_| write_attr(&dir.join("sync_speed_min"), &v(min)));
    outcome(r)
}

/// `major:minor` of a block device from sysfs.
pub fn dev_numbers(root: &Root, dev: &str) -> io::Result<(u32, u32)> {
    let s = fs::read_to_string(root.class_block().join(dev).join("dev"))?;
    let (a, b) = s
        .trim()
        .split_once(':')
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad dev file"))?;
    let p = |x: &str| {
        x.parse::<u32>()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad dev number"))
    };
    Ok((p(a)?, p(b)?))
}

/// `mdu_disk_info_t` from linux/raid/md_u.h.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct MduDiskInfo {
    pub number: i32,
    pub major: i32,
    pub minor: i32,
    pub raid_disk: i32,
    pub state: i32,
}

const MD_DISK_ACTIVE: i32 = 1;
const MD_DISK_SYNC: i32 = 2;
const MD_DISK_WRITEMOSTLY: i32 = 9;
const MD_DISK_FAILFAST: i32 = 10;
/// `MD_MAJOR`
const MD_MAJOR: u8 = 9;
nix::ioctl_write_ptr_bad!(
    add_new_disk,
    nix::request_code_write!(MD_MAJOR, 0x21, std::mem::size_of::<MduDiskInfo>()),
    MduDiskInfo
);

/// ADD_NEW_DISK, as `mdadm --re-add` (with `role`: the kernel accepts it only if it
/// can resume the leg from the bitmap) or `mdadm --add` of a leg that still carries
/// the array's superblock (without `role`: the kernel re-adds through the bitmap
/// when it can, else recovers fully).
pub fn add_disk(
    root: &Root,
    md: &str,
    dev: &str,
    role: Option<u32>,
    dev_number: Option<u32>,
    flags: LegFlags,
) -> Outcome {
    let r = (|| -> io::Result<()> {
        let (major, minor) = dev_numbers(root, dev)?;
        let f = OpenOptions::new().read(true).open(root.dev(md))?;
        let info = MduDiskInfo {
            number: dev_number.map_or(0, |n| n as i32),
            major: major as i32,
            minor: minor as i32,
            raid_disk: role.map_or(-1, |r| r as i32),
            state: if role.is_some() {
                (1 << MD_DISK_ACTIVE) | (1 << MD_DISK_SYNC)
            } else {
                0
            } | if flags.write_mostly {
                1 << MD_DISK_WRITEMOSTLY
            } else {
                0
            } | if flags.failfast {
                1 << MD_DISK_FAILFAST
            } else {
                0
            },
        };
        // SAFETY: the fd is an open md device and `info` is a valid
        // mdu_disk_info_t that outlives the call.
        unsafe { add_new_disk(f.as_raw_fd(), &info) }.map_err(io::Error::from)?;
        Ok(())
    })();
    outcome(r)
}

/// Map the reader's superblock to what the policy needs.
pub fn sb_facts(sb: &superblock::Superblock) -> SbFacts {
    SbFacts {
        uuid: sb.uuid.sysfs(),
        role: sb.role,
        events: sb.events,
        dev_number: sb.dev_number,
        utime: sb.utime,
        roles: sb.roles.clone(),
        device_uuid: sb
            .device_uuid
            .map(|b| b.iter().map(|x| format!("{x:02x}")).collect()),
        storage: None,
        written_sectors: None,
    }
}

/// Read a device's superblock with O_DIRECT (no page cache: a dead device must look
/// dead). Blocking: run it off the loop ([`super::workers::spawn_probe`]).
pub fn probe_device(root: &Root, dev: &str) -> ProbeOutcome {
    match superblock::read_superblock(&root.dev(dev)) {
        Ok(sb) => ProbeOutcome::Readable {
            sb: Some(SbFacts {
                storage: storage_identity(root, dev),
                written_sectors: std::fs::read_to_string(root.class_block().join(dev).join("stat"))
                    .ok()
                    .and_then(|t| crate::md::sysfs::written_sectors(&t)),
                ..sb_facts(&sb)
            }),
        },
        Err(SbError::NoSuperblock) => ProbeOutcome::Readable { sb: None },
        // a read that fails without an errno (a short read) counts as EIO
        Err(SbError::Io(e)) => {
            ProbeOutcome::Failed(e.raw_os_error().map_or(Errno::EIO, Errno::from_raw))
        }
        // a torn or foreign block is an answer: no superblock that proves anything
        Err(_) => ProbeOutcome::Readable { sb: None },
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_number_is_add_new_disk() {
        // _IOW(9, 0x21, 20 bytes) as mdadm uses it: 0x40140921
        assert_eq!(
            nix::request_code_write!(MD_MAJOR, 0x21, std::mem::size_of::<MduDiskInfo>()),
            0x4014_0921
        );
    }

    #[test]
    fn sysfs_writes_on_a_prepared_tree() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(d.path());
        let dir = root.md_sysfs("md0");
        fs::create_dir_all(dir.join("dev-nbd1")).unwrap();
        fs::write(dir.join("dev-nbd1/state"), "faulty").unwrap();
        fs::write(dir.join("sync_speed_min"), "").unwrap();
        fs::write(dir.join("sync_speed_max"), "").unwrap();
        assert_eq!(member_state(&root, "md0", "nbd1", "re-add"), Outcome::Done);
        assert_eq!(
            fs::read_to_string(dir.join("dev-nbd1/state")).unwrap(),
            "re-add"
        );
        assert_eq!(set_speed(&root, "md0", None, Some(5000)), Outcome::Done);
        assert_eq!(
            fs::read_to_string(dir.join("sync_speed_max")).unwrap(),
            "5000"
        );
        assert_eq!(
            fs::read_to_string(dir.join("sync_speed_min")).unwrap(),
            "system"
        );
        let gone = member_state(&root, "md0", "nbd9", "re-add");
        assert_eq!(gone, Outcome::Failed(Failure::Errno(Errno::ENOENT)));
        // the log prints the errno's name, as it always has
        let Outcome::Failed(f) = gone else {
            unreachable!()
        };
        assert_eq!(f.to_string(), "ENOENT");
        let no_errno = io::Error::new(io::ErrorKind::InvalidData, "bad dev file");
        assert_eq!(failure(&no_errno).to_string(), "bad dev file");
    }

    #[test]
    fn probe_of_images() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(d.path());
        fs::create_dir_all(d.path().join("dev")).unwrap();
        fs::write(d.path().join("dev/blank"), vec![0u8; 1 << 20]).unwrap();
        assert_eq!(
            probe_device(&root, "blank"),
            ProbeOutcome::Readable { sb: None }
        );
        match probe_device(&root, "missing") {
            ProbeOutcome::Failed(e) => assert_eq!(e, Errno::ENOENT),
            o => panic!("{o:?}"),
        }
    }
}
