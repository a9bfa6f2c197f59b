//! `mdguard run --pidfile PATH`, for init systems other than systemd: the
//! agent's pid, written once its configuration was read (so an init script
//! that waits for the file knows the start went through), locked for as long
//! as the agent runs (a second agent on the same file refuses to start), and
//! removed when it stops.

use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A pid file this process holds; removed on drop.
#[derive(Debug)]
pub struct Pidfile {
    path: PathBuf,
    _lock: Flock<File>,
}

impl Pidfile {
    /// Take `path` for this process, or say why not (another agent holds it,
    /// or it cannot be written).
    pub fn create(path: &Path) -> Result<Pidfile, String> {
        let at = |e: std::io::Error| format!("pid file {}: {e}", path.display());
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map_err(at)?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((mut f, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut other = String::new();
                let _ = f.read_to_string(&mut other);
                return Err(format!(
                    "pid file {}: another mdguard runs (pid {})",
                    path.display(),
                    other.trim()
                ));
            }
            Err((_, e)) => return Err(at(e.into())),
        };
        lock.set_len(0).map_err(at)?;
        lock.rewind().map_err(at)?;
        writeln!(lock, "{}", std::process::id()).map_err(at)?;
        Ok(Pidfile {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }
}

impl Drop for Pidfile {
    /// Removed while still locked, so a new agent never sees it empty.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_locked_and_removed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("mdguard.pid");
        // a stale file from an agent that was killed: taken over
        std::fs::write(&p, "99999999\n").unwrap();
        let held = Pidfile::create(&p).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            format!("{}\n", std::process::id())
        );
        // a second holder is refused, naming the first
        let e = Pidfile::create(&p).unwrap_err();
        assert!(
            e.ends_with(&format!(
                "another mdguard runs (pid {})",
                std::process::id()
            )),
            "{e}"
        );
        drop(held);
        assert!(!p.exists());
        // free again
        drop(Pidfile::create(&p).unwrap());
        let e = Pidfile::create(&d.path().join("no/such/dir/x.pid")).unwrap_err();
        assert!(e.contains("No such file or directory"), "{e}");
    }
}
