//! The client's errors.

use super::wire::{WireError, XsErrno};
use std::fmt;
use std::io;

/// Errors from the client.
#[derive(Debug)]
pub enum Error {
    /// No xenstore here (not a Xen guest, no xenstored): log once and carry on.
    NotAvailable(String),
    /// The server closed the connection (e.g. xenstored restarted).
    Disconnected,
    /// No reply within the client's timeout.
    Timeout,
    /// An I/O error other than EOF.
    Io(io::Error),
    /// A request we refused to send or a reply we could not decode.
    Wire(WireError),
    /// xenstored answered with an error.
    Xs(XsErrno),
    /// The server broke the protocol (wrong reply type, ...).
    Protocol(String),
}

impl Error {
    pub fn errno(&self) -> Option<&XsErrno> {
        match self {
            Error::Xs(e) => Some(e),
            _ => None,
        }
    }
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Xs(XsErrno::NoEnt))
    }
    /// True when reconnecting may help.
    pub fn is_connection(&self) -> bool {
        matches!(self, Error::Disconnected | Error::Io(_) | Error::Timeout)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotAvailable(s) => write!(f, "xenstore not available: {s}"),
            Error::Disconnected => f.write_str("xenstore connection closed"),
            Error::Timeout => f.write_str("xenstore did not answer in time"),
            Error::Io(e) => write!(f, "xenstore I/O error: {e}"),
            Error::Wire(e) => write!(f, "{e}"),
            Error::Xs(e) => write!(f, "xenstore error {e}"),
            Error::Protocol(s) => write!(f, "xenstore protocol error: {s}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<WireError> for Error {
    fn from(e: WireError) -> Self {
        Error::Wire(e)
    }
}

pub type Result<T> = std::result::Result<T, Error>;
