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

/// A kernel uevent for a block device being added or changed: its name.
pub fn parse_uevent(msg: &[u8]) -> Option<String> {
    let mut action = None;
    let mut subsystem = None;
    let mut devname = None;
    for field in msg.split(|b| *b == 0) {
        let f = std::str::from_utf8(field).ok()?;
        if let Some(v) = f.strip_prefix("ACTION=") {
            action = Some(v);
        } else if let Some(v) = f.strip_prefix("SUBSYSTEM=") {
            subsystem = Some(v);
        } else if let Some(v) = f.strip_prefix("DEVNAME=") {
            devname = Some(v);
        }
    }
    if subsystem != Some("block") || !matches!(action, Some("add") | Some("change")) {
        return None;
    }
    let d = devname?.trim_start_matches("/dev/");
    plain_name(d).then(|| d.to_string())
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
        for bad in [
            &b"remove@/x\0ACTION=remove\0SUBSYSTEM=block\0DEVNAME=nbd1\0"[..],
            b"add@/x\0ACTION=add\0SUBSYSTEM=net\0DEVNAME=eth0\0",
            b"add@/x\0ACTION=add\0SUBSYSTEM=block\0DEVNAME=../etc/passwd\0",
            b"add@/x\0ACTION=add\0SUBSYSTEM=block\0DEVNAME=md0\0",
            b"\xff\xfe",
        ] {
            assert_eq!(parse_uevent(bad), None);
        }
    }
}
