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

/// Fields of a 1.x superblock a test rewrites (offsets of `struct
/// mdp_superblock_1` in the kernel's md_p.h), relative to the superblock.
pub mod v1 {
    pub const DEV_NUMBER: usize = 160;
    pub const UTIME: usize = 192;
    pub const EVENTS: usize = 200;
    pub const SB_CSUM: usize = 216;
    pub const MAX_DEV: usize = 220;
    pub const DEV_ROLES: usize = 256;

    pub fn put_u32(sb: &mut [u8], at: usize, v: u32) {
        sb[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    pub fn put_u64(sb: &mut [u8], at: usize, v: u64) {
        sb[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }

    pub fn get_u64(sb: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(sb[at..at + 8].try_into().unwrap())
    }

    /// Recompute `sb_csum` after an edit: the le32 words of the first
    /// 256 + 2 * max_dev bytes with the checksum as zero, folded to 32 bits
    /// (md.c `calc_sb_1_csum`).
    pub fn reseal(sb: &mut [u8]) {
        let max_dev = u32::from_le_bytes(sb[MAX_DEV..MAX_DEV + 4].try_into().unwrap()) as usize;
        sb[SB_CSUM..SB_CSUM + 4].copy_from_slice(&[0; 4]);
        let len = DEV_ROLES + 2 * max_dev;
        let mut sum: u64 = sb[..len]
            .chunks_exact(4)
            .map(|w| u64::from(u32::from_le_bytes(w.try_into().unwrap())))
            .sum();
        if len % 4 == 2 {
            sum += u64::from(u16::from_le_bytes([sb[len - 2], sb[len - 1]]));
        }
        let csum = ((sum & 0xffff_ffff) + (sum >> 32)) as u32;
        sb[SB_CSUM..SB_CSUM + 4].copy_from_slice(&csum.to_le_bytes());
    }
}
