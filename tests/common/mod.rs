//! Small helpers for the test crates that do not need a VM or xenstored
//! (`mod common;` in the test file).
#![allow(dead_code)] // each test binary uses a different part of it

use std::path::Path;

/// Copy the tree `src` into `dst` (which exists): directories recursively,
/// symlinks as symlinks (sysfs trees are full of them), files by content.
pub fn copy_tree(src: &Path, dst: &Path) {
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            std::fs::create_dir_all(&to).unwrap();
            copy_tree(&e.path(), &to);
        } else if ft.is_symlink() {
            let t = std::fs::read_link(e.path()).unwrap();
            std::os::unix::fs::symlink(t, &to).unwrap();
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}
