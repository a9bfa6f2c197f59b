//! What the loop waits on besides its own timers: files whose POLLPRI says
//! "changed", the self-pipe that signals and helper threads write to, and the
//! config file's inotify watch.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// A poll source, by id: the loop asks each source that fired by its id, not by
/// its position in the poll set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The self-pipe: a signal arrived or a helper thread finished.
    Wake,
    /// The kernel's uevent socket: a block device appeared or changed.
    Uevent,
    /// inotify on the config file's directory.
    Config,
    /// The xenstore connection: dom0 wrote a control key, or a vbd changed.
    Xenstore,
    /// A md file whose POLLPRI says it changed (index into the loop's notifiers).
    Md(usize),
}

/// A file whose POLLPRI says "changed": read it from offset 0 to re-arm.
pub struct Notifier {
    pub path: PathBuf,
    pub file: File,
}

impl Notifier {
    pub fn open(path: &Path) -> Option<Notifier> {
        let mut file = File::open(path).ok()?;
        let mut sink = Vec::new();
        let _ = file.read_to_end(&mut sink);
        Some(Notifier {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn rearm(&mut self) {
        let mut sink = Vec::new();
        let _ = self.file.seek(SeekFrom::Start(0));
        let _ = self.file.read_to_end(&mut sink);
    }
}

/// Wake the loop (from a helper thread or a signal handler's pipe).
pub fn wake(w: &UnixStream) {
    let _ = io::Write::write(&mut &*w, &[1]);
}

/// Empty the self-pipe.
pub fn drain(r: &UnixStream) {
    let mut buf = [0u8; 64];
    while let Ok(n) = (&*r).read(&mut buf) {
        if n == 0 {
            break;
        }
    }
}

/// Watch the config file's directory (editors replace the file).
pub fn watch_config(path: &Path) -> io::Result<nix::sys::inotify::Inotify> {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let dir = path.parent().unwrap_or(Path::new("/"));
    let ino = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)?;
    ino.add_watch(
        dir,
        AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE,
    )?;
    Ok(ino)
}
