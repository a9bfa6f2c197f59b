//! Xenstore: a pure codec ([`wire`]), a small blocking client ([`client`]),
//! and mdguard's key layout and publishing logic ([`schema`]).
//!
//! No libxenstore: the guest talks to `/dev/xen/xenbus`, dom0 and the tests
//! to xenstored's unix socket, with the same code.

pub mod client;
pub mod schema;
pub mod wire;

pub use client::{Client, Endpoint, Error, Txn};
pub use wire::{Access, Perm, WatchEvent, XsErrno};
