//! Metrics in Prometheus's text format, for node_exporter's textfile collector
//! (or anything that reads that format): the guest's own (`mdguard status
//! --format=prometheus`) and dom0's over every guest (`mdguard host metrics`,
//! and `mdguard host run --metrics-listen` over HTTP).
//! The series and what each means: docs/metrics.md.
//!
//! - [`exposition`]: the text format, written and read back (pure);
//! - [`array`]: the series of one array, the same family on both sides (pure);
//! - [`guest`]: the guest's series from md and the agent's view (pure);
//! - [`host`]: dom0's series from every guest as `host status` reads them (pure);
//! - [`http`]: the little HTTP/1.x of `host run --metrics-listen` (pure);
//! - [`listener`]: that listener, on its own threads;
//! - [`write_textfile`]: an atomic write for the collector.

pub mod array;
pub mod exposition;
pub mod guest;
pub mod host;
pub mod http;
pub mod listener;

use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The temporary file [`write_textfile`] writes first: beside `path` (a rename
/// within one directory is atomic) and not ending in `.prom`, so the collector
/// never reads it half written.
pub fn textfile_tmp(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Write `text` to `path` so that a reader sees the old file or the new one,
/// never a part: a temporary file beside it, flushed, renamed over it. The file
/// is readable by all (0644): node_exporter runs as its own user, and metrics
/// are no secret.
pub fn write_textfile(path: &Path, text: &str) -> io::Result<()> {
    let tmp = textfile_tmp(path);
    let r = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        // whatever the umask
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_textfile_is_replaced_whole_and_readable_by_all() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("mdguard.prom");
        write_textfile(&p, "# TYPE a gauge\na 1\n").unwrap();
        write_textfile(&p, "# TYPE a gauge\na 2\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "# TYPE a gauge\na 2\n"
        );
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o444, 0o444, "{mode:o}");
        // nothing left behind, and the temporary name is not one the
        // collector reads
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("mdguard.prom")]);
        assert!(!textfile_tmp(&p).to_string_lossy().ends_with(".prom"));
        // a directory that does not exist: an error, nothing written
        assert!(write_textfile(&d.path().join("no/such.prom"), "x").is_err());
    }
}
