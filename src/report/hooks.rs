//! Alert hooks, mdadm --monitor's way: a configured program (`[hooks]` in the
//! config) run as `PROGRAM EVENT MD-DEVICE [COMPONENT]` with `MDGUARD_*` in
//! its environment, for each event an admin wants to hear of. The events, the
//! environment and a mail example: docs/hooks.md.
//!
//! - [`event`]: the hook's event names, the one mapping from the engine's
//!   events, the arguments and environment, and [`event::MdWatch`] for what
//!   only md's own state tells (pure);
//! - [`runner`]: running them off the daemon's loop, bounded and timed out;
//!   dom0's service runs its own events ([`crate::report::host::events`])
//!   through the same runner.

pub mod event;
pub mod runner;

pub use event::{HookEvent, HookName, MdWatch};
pub use runner::{Job, Runner};
