//! Where xenstore is and how bytes get there: the guest's xenbus device or
//! xenstored's unix socket, found the way the standard tools find them.

use super::error::{Error, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The guest's xenbus device (kernel >= 3.x).
pub const XENBUS_DEV: &str = "/dev/xen/xenbus";
/// Older kernels: xenfs mounted on /proc/xen.
pub const XENBUS_PROC: &str = "/proc/xen/xenbus";
/// xenstored's socket in dom0 (what `xs_daemon_socket()` returns).
pub const XENSTORED_SOCKET: &str = "/run/xenstored/socket";
/// Environment variable the standard tools honour for the socket path.
pub const XENSTORED_PATH_ENV: &str = "XENSTORED_PATH";

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// xenstored's unix socket (dom0, tests).
    Socket(PathBuf),
    /// The kernel's xenbus character device (guests).
    Device(PathBuf),
}

impl Endpoint {
    /// Like the standard tools: `$XENSTORED_PATH` if set (the socket, or a
    /// xenbus device if it names a character device), else the first of
    /// `/run/xenstored/socket`, `/dev/xen/xenbus`, `/proc/xen/xenbus` that
    /// exists. Outside Xen: [`Error::NotAvailable`].
    pub fn discover() -> Result<Endpoint> {
        if let Some(p) = std::env::var_os(XENSTORED_PATH_ENV) {
            if !p.is_empty() {
                return Ok(Self::from_env_path(PathBuf::from(p)));
            }
        }
        Self::discover_in(&[
            Endpoint::Socket(XENSTORED_SOCKET.into()),
            Endpoint::Device(XENBUS_DEV.into()),
            Endpoint::Device(XENBUS_PROC.into()),
        ])
    }

    /// `$XENSTORED_PATH`'s value: a device if it is a character device
    /// (e.g. `/dev/xen/xenbus`), otherwise a socket.
    pub fn from_env_path(p: PathBuf) -> Endpoint {
        use std::os::unix::fs::FileTypeExt;
        match std::fs::metadata(&p) {
            Ok(m) if m.file_type().is_char_device() => Endpoint::Device(p),
            _ => Endpoint::Socket(p),
        }
    }

    /// The first candidate whose path exists.
    pub fn discover_in(candidates: &[Endpoint]) -> Result<Endpoint> {
        for c in candidates {
            if c.path().exists() {
                return Ok(c.clone());
            }
        }
        let tried: Vec<String> = candidates
            .iter()
            .map(|c| c.path().display().to_string())
            .collect();
        Err(Error::NotAvailable(format!(
            "none of {} exists (not running under Xen?)",
            tried.join(", ")
        )))
    }

    pub fn path(&self) -> &Path {
        match self {
            Endpoint::Socket(p) | Endpoint::Device(p) => p,
        }
    }
}

#[derive(Debug)]
pub(super) enum Conn {
    Sock(UnixStream),
    Dev(File),
}

impl Conn {
    pub(super) fn open(ep: &Endpoint) -> Result<Conn> {
        let not_avail = |e: io::Error| {
            use io::ErrorKind::*;
            match e.kind() {
                NotFound | ConnectionRefused | PermissionDenied => {
                    Error::NotAvailable(format!("{}: {e}", ep.path().display()))
                }
                _ => match e.raw_os_error() {
                    // ENODEV/ENXIO: the device node exists but no Xen behind it.
                    Some(19) | Some(6) => {
                        Error::NotAvailable(format!("{}: {e}", ep.path().display()))
                    }
                    _ => Error::Io(e),
                },
            }
        };
        match ep {
            Endpoint::Socket(p) => UnixStream::connect(p).map(Conn::Sock).map_err(not_avail),
            Endpoint::Device(p) => OpenOptions::new()
                .read(true)
                .write(true)
                .open(p)
                .map(Conn::Dev)
                .map_err(not_avail),
        }
    }

    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Conn::Sock(s) => s.as_fd(),
            Conn::Dev(f) => f.as_fd(),
        }
    }

    pub(super) fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        match self {
            Conn::Sock(s) => s.write_all(b),
            Conn::Dev(f) => f.write_all(b),
        }
    }

    pub(super) fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Sock(s) => s.read(b),
            Conn::Dev(f) => f.read(b),
        }
    }
}

/// Readable within `timeout`? (`None`: wait forever; never used by the client.)
pub(super) fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    loop {
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
        }
    }
}
