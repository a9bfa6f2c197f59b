//! Reading the kernel's md state: `/proc/mdstat`, `/sys/block/mdX/md/*`, superblocks.

pub mod diskstats;
pub mod identity;
pub mod mdstat;
pub mod model;
pub mod observe;
pub mod pressure;
pub mod superblock;
pub mod sysfs;
pub mod uevent;
