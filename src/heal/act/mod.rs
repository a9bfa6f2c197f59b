//! act: carry out the engine's actions.
//!
//! - [`kernel`]: one function per kernel interface (md sysfs writes, ADD_NEW_DISK,
//!   the O_DIRECT superblock probe);
//! - [`workers`]: helper threads for blocking work (probes, reconnect commands);
//! - [`dispatch`]: the dispatcher that runs each [`crate::heal::Action`] and feeds
//!   its outcome back to the engine, until nothing is left to do;
//! - [`limits_file`]: the speed limits to put back, on disk around every write.

pub mod dispatch;
pub mod kernel;
pub mod limits_file;
pub mod workers;
