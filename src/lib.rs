//! mdguard: keeps Linux md RAID1 mirrors whole inside Xen guests.
//!
//! The program is one loop of three steps (see README and DESIGN):
//! *observe* the kernel's md state into an immutable snapshot ([`md`]),
//! *decide* what to do with a pure function ([`heal`]), and *act*
//! ([`heal::act`]), in one poll(2) loop ([`daemon`]).
//! Every path goes through one [`root::Root`] so tests can run over a prepared tree.

pub mod clock;
pub mod config;
pub mod daemon;
pub mod heal;
pub mod log;
pub mod md;
pub mod report;
pub mod root;
pub mod text;
pub mod xenstore;
