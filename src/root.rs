//! One prefix for every path the program reads or writes.
//!
//! Production uses `/`; tests point it at a prepared tree (`--root DIR`), so the
//! same code reads `DIR/proc/mdstat` and `DIR/sys/block/md0/md/...`.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    base: PathBuf,
}

impl Default for Root {
    fn default() -> Self {
        Root::new("/")
    }
}

impl Root {
    pub fn new(base: impl Into<PathBuf>) -> Self {
        Root { base: base.into() }
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    /// Join an absolute-style path ("/proc/mdstat") onto the root.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.base.join(abs.trim_start_matches('/'))
    }

    pub fn mdstat(&self) -> PathBuf {
        self.path("/proc/mdstat")
    }

    /// `/sys/block/<md>/md`
    pub fn md_sysfs(&self, md: &str) -> PathBuf {
        self.path("/sys/block").join(md).join("md")
    }

    /// `/sys/class/block`
    pub fn class_block(&self) -> PathBuf {
        self.path("/sys/class/block")
    }

    /// `/dev/<name>`
    pub fn dev(&self, name: &str) -> PathBuf {
        self.path("/dev").join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_under_base() {
        let r = Root::new("/tmp/x");
        assert_eq!(r.mdstat(), PathBuf::from("/tmp/x/proc/mdstat"));
        assert_eq!(r.md_sysfs("md0"), PathBuf::from("/tmp/x/sys/block/md0/md"));
        assert_eq!(r.dev("nbd0"), PathBuf::from("/tmp/x/dev/nbd0"));
        assert_eq!(Root::default().mdstat(), PathBuf::from("/proc/mdstat"));
    }
}
