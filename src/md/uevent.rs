//! Block devices coming and going: the kernel's uevent netlink socket.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

/// A netlink socket on the kernel's uevent multicast group (non-blocking).
pub fn open_uevent() -> io::Result<OwnedFd> {
    use nix::sys::socket::{
        bind, socket, AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType,
    };
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        SockProtocol::NetlinkKObjectUEvent,
    )?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 1))?;
    Ok(fd)
}

/// The block devices present now with a size (the names under
/// `/sys/class/block` whose `size` is not 0, md arrays left out), sorted: at start, the devices no
/// uevent will announce (a leg mdadm left out of the array at boot is already
/// there when the agent starts). Empty ones (an nbd device with no server, an
/// empty drive) are left out: reading them only fills the kernel's log.
pub fn present(root: &crate::root::Root) -> io::Result<Vec<String>> {
    let dir = root.class_block();
    let sized = |name: &str| {
        std::fs::read_to_string(dir.join(name).join("size"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0)
    };
    let mut names: Vec<String> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| plain_name(n) && sized(n))
        .collect();
    names.sort();
    Ok(names)
}

/// A kernel uevent for a block device (a disk or a partition) being added or
/// changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockEvent {
    /// Its kernel name (`nbd1`, `dm-3`) when it is a plain one
    /// (not an md array's, nothing that walks out of /dev).
    pub name: Option<String>,
    /// Its device number (`MAJOR`, `MINOR`), when the event gives it.
    pub dev: Option<(u32, u32)>,
}

/// A block device's `add` or `change` uevent; `None` for anything else.
pub fn parse_block_event(msg: &[u8]) -> Option<BlockEvent> {
    let mut action = None;
    let mut subsystem = None;
    let mut devname = None;
    let (mut major, mut minor) = (None, None);
    for field in msg.split(|b| *b == 0) {
        let f = std::str::from_utf8(field).ok()?;
        if let Some(v) = f.strip_prefix("ACTION=") {
            action = Some(v);
        } else if let Some(v) = f.strip_prefix("SUBSYSTEM=") {
            subsystem = Some(v);
        } else if let Some(v) = f.strip_prefix("DEVNAME=") {
            devname = Some(v);
        } else if let Some(v) = f.strip_prefix("MAJOR=") {
            major = v.parse::<u32>().ok();
        } else if let Some(v) = f.strip_prefix("MINOR=") {
            minor = v.parse::<u32>().ok();
        }
    }
    if subsystem != Some("block") || !matches!(action, Some("add") | Some("change")) {
        return None;
    }
    let name = devname
        .map(|d| d.trim_start_matches("/dev/"))
        .filter(|d| plain_name(d))
        .map(str::to_string);
    Some(BlockEvent {
        name,
        dev: major.zip(minor),
    })
}

/// A kernel uevent for a block device being added or changed: its name.
pub fn parse_uevent(msg: &[u8]) -> Option<String> {
    parse_block_event(msg)?.name
}

/// A name mdguard takes from the kernel as a device that may be a leg: a plain
/// kernel name, nothing that could walk out of /dev, and not an md array's.
fn plain_name(d: &str) -> bool {
    !(d.is_empty() || d.len() > 64 || d.contains('/') || d.starts_with('.') || d.starts_with("md"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uevents() {
        let m = b"change@/devices/virtual/block/nbd1\0ACTION=change\0DEVPATH=/devices/virtual/block/nbd1\0SUBSYSTEM=block\0DEVNAME=nbd1\0DEVTYPE=disk\0";
        assert_eq!(parse_uevent(m).as_deref(), Some("nbd1"));
        let m = b"add@/x\0ACTION=add\0SUBSYSTEM=block\0DEVNAME=/dev/xvdd\0";
        assert_eq!(parse_uevent(m).as_deref(), Some("xvdd"));
        let m = b"change@/devices/virtual/block/dm-3\0ACTION=change\0DEVPATH=/devices/virtual/block/dm-3\0SUBSYSTEM=block\0MAJOR=254\0MINOR=3\0DEVNAME=dm-3\0DEVTYPE=disk\0DM_COOKIE=0\0";
        assert_eq!(
            parse_block_event(m),
            Some(BlockEvent {
                name: Some("dm-3".into()),
                dev: Some((254, 3))
            })
        );
        // an md array's change: no leg, but a device number dom0 may hold
        let m = b"change@/x\0ACTION=change\0SUBSYSTEM=block\0MAJOR=9\0MINOR=0\0DEVNAME=md0\0";
        assert_eq!(
            parse_block_event(m),
            Some(BlockEvent {
                name: None,
                dev: Some((9, 0))
            })
        );
        assert_eq!(parse_uevent(m), None);
        let m = b"add@/x\0ACTION=add\0SUBSYSTEM=block\0MAJOR=x\0MINOR=1\0DEVNAME=sdb\0";
        assert_eq!(
            parse_block_event(m).unwrap().dev,
            None,
            "MAJOR not a number"
        );
        for bad in [
            &b"remove@/x\0ACTION=remove\0SUBSYSTEM=block\0DEVNAME=nbd1\0"[..],
            b"add@/x\0ACTION=add\0SUBSYSTEM=net\0DEVNAME=eth0\0",
            b"add@/x\0ACTION=add\0SUBSYSTEM=block\0DEVNAME=../etc/passwd\0",
            b"add@/x\0ACTION=add\0SUBSYSTEM=block\0DEVNAME=md0\0",
            b"\xff\xfe",
        ] {
            assert_eq!(parse_uevent(bad), None);
            if !bad.starts_with(b"add@/x\0ACTION=add\0SUBSYSTEM=block") {
                assert_eq!(parse_block_event(bad), None);
            }
        }
    }
}
