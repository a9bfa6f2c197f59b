//! Xenstore, the protocol only: a pure codec ([`wire`]) and a small blocking
//! client ([`client`]). It knows nothing of md; mdguard's keys and what they mean
//! are in [`crate::report`].
//!
//! No libxenstore: the guest talks to `/dev/xen/xenbus`, dom0 and the tests
//! to xenstored's unix socket, with the same code.
//!
//! In the agent's poll loop:
//!
//! ```no_run
//! use mdguard::xenstore::{Client, Error};
//! let mut xs = match Client::open() {
//!     Ok(c) => c,
//!     Err(Error::NotAvailable(why)) => { eprintln!("no xenstore: {why}"); return }
//!     Err(e) => panic!("{e}"),
//! };
//! xs.watch("control/mdguard", "ctl").unwrap();
//! // poll(2) on xs.as_raw_fd() with the other fds; when readable:
//! match xs.poll_events() {
//!     Ok(events) => { /* re-read the keys the events name */ }
//!     Err(Error::Disconnected) => {
//!         // xenstored restarted: reconnect (with backoff); watches are
//!         // re-registered, and `report::publisher::Publisher::reset` makes the next publish
//!         // write everything again (Publisher::publish does this itself).
//!         let _ = xs.reconnect();
//!     }
//!     Err(e) => eprintln!("{e}"),
//! }
//! ```

pub mod client;
pub mod error;
pub mod transport;
pub mod wire;

pub use client::{Client, Txn, MAX_QUEUED_EVENTS};
pub use error::{Error, Result};
pub use transport::Endpoint;
pub use wire::{Access, Perm, WatchEvent, XsErrno};
