//! The limits file: the sync speed limits mdguard changed and must put back, kept
//! in /run/mdguard so a crash or `kill -9` does not lose them.
//!
//! Write-ahead around every limit written to md: before the write, the file holds
//! what the engine will have to put back plus everything it held already (a
//! throttle is on record before md is throttled; a restore keeps its record until
//! md has its value back); after the write, exactly what the engine holds.

use crate::log;
use crate::root::Root;
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

/// Array -> (sync_speed_min, sync_speed_max) to put back; None = `system`.
pub type SavedSpeeds = BTreeMap<String, (Option<u64>, Option<u64>)>;

pub struct LimitsFile {
    path: PathBuf,
    /// What the file says, as last written (or read).
    written: SavedSpeeds,
}

impl LimitsFile {
    pub fn new(root: &Root) -> LimitsFile {
        LimitsFile {
            path: root.path("/run/mdguard/speed-limits.json"),
            written: SavedSpeeds::new(),
        }
    }

    /// The limits a previous run changed and did not put back, if any.
    pub fn load(&mut self) -> Option<SavedSpeeds> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        match serde_json::from_str::<SavedSpeeds>(&text) {
            Ok(m) => {
                log::notice(&format!(
                    "found speed limits a previous mdguard changed ({}); they will be restored",
                    self.path.display()
                ));
                self.written = m.clone();
                Some(m)
            }
            Err(e) => {
                log::warn(&format!(
                    "{}: ignoring unreadable state: {e}",
                    self.path.display()
                ));
                None
            }
        }
    }

    /// Right before a limit is written: `engine` (what the engine must put back
    /// now) and every record the file has.
    pub fn before_write(&mut self, engine: &SavedSpeeds) {
        let mut all = self.written.clone();
        all.extend(engine.iter().map(|(k, v)| (k.clone(), *v)));
        self.keep(all);
    }

    /// Right after a limit was written (or at stop): exactly what the engine must
    /// put back.
    pub fn after_write(&mut self, engine: &SavedSpeeds) {
        self.keep(engine.clone());
    }

    fn keep(&mut self, now: SavedSpeeds) {
        if now == self.written {
            return;
        }
        let p = &self.path;
        let r = if now.is_empty() {
            std::fs::remove_file(p).or_else(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
        } else {
            let tmp = p.with_extension("tmp");
            p.parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|_| std::fs::write(&tmp, serde_json::to_vec(&now).unwrap_or_default()))
                .and_then(|_| std::fs::rename(&tmp, p))
        };
        match r {
            Ok(()) => self.written = now,
            Err(e) => log::warn(&format!(
                "cannot record speed limits in {}: {e}",
                p.display()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &std::path::Path) -> LimitsFile {
        LimitsFile::new(&Root::new(dir))
    }

    fn on_disk(dir: &std::path::Path) -> Option<SavedSpeeds> {
        let p = dir.join("run/mdguard/speed-limits.json");
        std::fs::read_to_string(p)
            .ok()
            .map(|t| serde_json::from_str(&t).unwrap())
    }

    #[test]
    fn a_throttle_is_on_record_before_md_is_throttled() {
        let d = tempfile::tempdir().unwrap();
        let mut f = file(d.path());
        let saved = SavedSpeeds::from([("md0".to_string(), (None, Some(5000)))]);
        f.before_write(&saved);
        assert_eq!(on_disk(d.path()), Some(saved.clone()));
        f.after_write(&saved);
        assert_eq!(on_disk(d.path()), Some(saved));
    }

    #[test]
    fn a_restore_keeps_its_record_until_md_has_its_value_back() {
        let d = tempfile::tempdir().unwrap();
        let mut f = file(d.path());
        let saved = SavedSpeeds::from([("md0".to_string(), (Some(1000), None))]);
        f.before_write(&saved);
        // the engine dropped md0's record when it asked for the restore
        f.before_write(&SavedSpeeds::new());
        assert_eq!(on_disk(d.path()), Some(saved), "dropped before the write");
        f.after_write(&SavedSpeeds::new());
        assert_eq!(on_disk(d.path()), None);
    }

    #[test]
    fn what_a_killed_run_left_is_read_back() {
        let d = tempfile::tempdir().unwrap();
        let saved = SavedSpeeds::from([("md1".to_string(), (None, None))]);
        file(d.path()).before_write(&saved);
        let mut again = file(d.path());
        assert_eq!(again.load(), Some(saved.clone()));
        // nothing to write: the file already says it
        again.before_write(&saved);
        assert_eq!(on_disk(d.path()), Some(saved));
    }

    #[test]
    fn an_unreadable_file_is_ignored() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("run/mdguard")).unwrap();
        std::fs::write(d.path().join("run/mdguard/speed-limits.json"), "{not json").unwrap();
        assert_eq!(file(d.path()).load(), None);
    }
}
