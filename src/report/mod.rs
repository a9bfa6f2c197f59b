//! report: everything mdguard says about health.
//!
//! - [`status`]: the local `mdguard status` table and JSON, and `mdguard check`;
//! - [`schema`]: the xenstore contract (keys, array JSON, dom0's control keys, strict
//!   parsers of everything read back);
//! - [`publisher`]: what the guest writes and when (pure plan, then one transaction);
//! - [`agent`]: the guest's xenstore side in the daemon (publish, take dom0's requests);
//! - [`admission`]: resync admission's values (the guest's request, dom0's
//!   answer); [`asker`]: the guest's side of it;
//! - [`agent_state`]: what the running agent knows beyond md (stalled, flapping), for
//!   the guest's own `status` and `check`;
//! - [`host`]: dom0's side, `mdguard host ...`;
//! - [`metrics`]: Prometheus's text format, the guest's and dom0's series;
//! - [`hooks`]: a program run on each event, mdadm --monitor's way.

pub mod admission;
pub mod agent;
pub mod agent_state;
pub mod asker;
pub mod hooks;
pub mod host;
pub mod metrics;
pub mod publisher;
pub mod schema;
pub mod status;
