//! mdguard: keeps Linux md RAID1 mirrors whole inside Xen guests.
//!
//! `mdguard run` is one poll(2) loop of three steps: *observe* the kernel's md
//! state into an immutable snapshot, *decide* with a pure engine what to do, and
//! *act*, then report. The map of the code, the loop's event sources and where a
//! re-add is decided and carried out are in `docs/architecture.md`.
//!
//! - [`md`]: observe only: the `/proc/mdstat` parser, the sysfs reader, the native
//!   superblock reader, the merged model, array identity, I/O pressure, uevents.
//! - [`heal`]: decide, pure, one rule per file (a leg's life, the superblock
//!   verdict, new nodes, reconnect, throttle, stall); [`heal::act`] acts: one
//!   function per kernel interface, helper threads, and the dispatcher that feeds
//!   each outcome back to the engine.
//! - [`daemon`]: the poll loop alone, the state file in /run/mdguard, sd_notify.
//! - [`xenstore`]: the xenstore protocol only (codec and client).
//! - [`report`]: everything mdguard says about health: `status`/`check`, the
//!   xenstore schema (`docs/xenstore-schema.md`), the guest agent, `mdguard host`.
//! - [`config`], [`log`], [`clock`] (monotonic and unix time), [`text`] (untrusted
//!   text made safe to show), and [`root::Root`], the one path prefix every read
//!   and write goes through, so tests can run over a prepared tree.

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
