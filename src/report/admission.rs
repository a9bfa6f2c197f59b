//! Resync admission over xenstore: the values both sides exchange, with their
//! strict parsers. The guest's side of the protocol is [`super::asker`], dom0's
//! planner is [`super::host::admission`] and its service
//! [`super::host::service`]. The contract for admins and tools is
//! `docs/xenstore-schema.md` ("Resync admission").
//!
//! - dom0 announces itself in each guest's `control/mdguard/coordinator`
//!   (a token naming the running service), and removes it on a clean stop.
//! - A guest that sees it asks before it adds a returning leg:
//!   `data/mdguard/request` = `<token> <device> [<device> ...]` ([`Request`]).
//!   It rewrites the same value at least every [`REQUEST_REFRESH_S`] while it
//!   has one (a live agent), and removes it when its legs are back in sync.
//! - dom0 answers in `control/mdguard/grant` ([`Answer`]): `<token>` (go) or
//!   `queued <token> <n>` (wait: other recoveries run on that storage), the
//!   queued answer rewritten with a new `<n>` at least every
//!   [`QUEUED_REFRESH_S`] (a live coordinator).

use super::schema::{parse_token, parse_u64, valid_name, ParseError};
use crate::text::printable;
use std::fmt;

/// The guest's request, under its `data/mdguard/`.
pub const KEY_REQUEST: &str = "request";
/// The coordinator's announcement, under the guest's `control/mdguard/`.
pub const CTL_COORDINATOR: &str = "coordinator";
/// The coordinator's answer to a request, under `control/mdguard/`.
pub const CTL_GRANT: &str = "grant";

/// A coordinator rewrites a queued answer (with a new sequence number) at
/// least this often, so a guest can tell a queue from a dead coordinator.
pub const QUEUED_REFRESH_S: u64 = 4;
/// An agent rewrites its request at least this often while it has one, so
/// dom0 can tell a slow recovery from a dead agent.
pub const REQUEST_REFRESH_S: u64 = 10;
/// Most devices one request names.
pub const REQUEST_DEVICES_MAX: usize = 16;
/// Longest request value: a token, then that many names, space-separated.
pub const REQUEST_MAX: usize = 64 + REQUEST_DEVICES_MAX * 33;

/// `data/mdguard/request`: a token and the legs the guest wants to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub token: String,
    /// The guest's device names (`xvdc`, `xvdd1`), sorted, distinct.
    pub devices: Vec<String>,
}

impl Request {
    /// A request for `devices` (sorted and deduplicated here; at most
    /// [`REQUEST_DEVICES_MAX`] kept, names that cannot be keys dropped).
    pub fn new(token: String, devices: &[String]) -> Request {
        let mut devices: Vec<String> = devices.iter().filter(|d| valid_name(d)).cloned().collect();
        devices.sort();
        devices.dedup();
        devices.truncate(REQUEST_DEVICES_MAX);
        Request { token, devices }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = self.token.clone();
        for d in &self.devices {
            s.push(' ');
            s.push_str(d);
        }
        s.into_bytes()
    }

    /// Strict: `<token> <device>...`, single spaces, 1 to
    /// [`REQUEST_DEVICES_MAX`] distinct device names `[A-Za-z0-9_.-]{1,32}`.
    pub fn parse(v: &[u8]) -> Result<Request, ParseError> {
        if v.len() > REQUEST_MAX {
            return Err(ParseError::TooLong {
                len: v.len(),
                max: REQUEST_MAX,
            });
        }
        if v.is_empty() {
            return Err(ParseError::Empty);
        }
        let bad = |why: &str| ParseError::BadValue(format!("request {}: {why}", printable(v, 80)));
        let s = std::str::from_utf8(v).map_err(|_| ParseError::NotUtf8)?;
        let mut words = s.split(' ');
        let token = parse_token(words.next().unwrap_or("").as_bytes())?;
        let mut devices: Vec<String> = Vec::new();
        for w in words {
            if !valid_name(w) {
                return Err(bad("a device name is not [A-Za-z0-9_.-]{1,32}"));
            }
            if devices.iter().any(|d| d == w) {
                return Err(bad("a device named twice"));
            }
            devices.push(w.to_string());
        }
        if devices.is_empty() {
            return Err(bad("no device"));
        }
        if devices.len() > REQUEST_DEVICES_MAX {
            return Err(bad("too many devices"));
        }
        devices.sort();
        Ok(Request { token, devices })
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.token, self.devices.join(" "))
    }
}

/// `control/mdguard/grant`: dom0's answer to the request with `token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `<token>`: add now.
    Granted { token: String },
    /// `queued <token> <n>`: wait; `n` changes at each refresh.
    Queued { token: String, seq: u64 },
}

impl Answer {
    pub fn token(&self) -> &str {
        match self {
            Answer::Granted { token } | Answer::Queued { token, .. } => token,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Answer::Granted { token } => token.clone().into_bytes(),
            Answer::Queued { token, seq } => format!("queued {token} {seq}").into_bytes(),
        }
    }

    /// Strict: one token, or exactly `queued`, a token and a decimal.
    pub fn parse(v: &[u8]) -> Result<Answer, ParseError> {
        if v.len() > 2 * 64 {
            return Err(ParseError::TooLong {
                len: v.len(),
                max: 2 * 64,
            });
        }
        let words: Vec<&[u8]> = v.split(|b| *b == b' ').collect();
        match words[..] {
            [t] => Ok(Answer::Granted {
                token: parse_token(t)?,
            }),
            [b"queued", t, n] => Ok(Answer::Queued {
                token: parse_token(t)?,
                seq: parse_u64(n)?,
            }),
            _ => Err(ParseError::BadValue(format!(
                "grant {}: expected <token> or queued <token> <n>",
                printable(v, 80)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips_and_is_parsed_strictly() {
        let r = Request::new(
            "17-3".into(),
            &["xvdd".into(), "xvdc1".into(), "xvdd".into(), "a/b".into()],
        );
        assert_eq!(
            r.devices,
            vec!["xvdc1", "xvdd"],
            "sorted, distinct, keys only"
        );
        assert_eq!(r.to_bytes(), b"17-3 xvdc1 xvdd");
        assert_eq!(Request::parse(&r.to_bytes()), Ok(r));
        // the order on the wire does not matter
        assert_eq!(
            Request::parse(b"t xvdd xvdc").unwrap().devices,
            vec!["xvdc", "xvdd"]
        );
        for bad in [
            &b""[..],
            b"t",
            b"t ",
            b" t xvdc",
            b"t  xvdc",
            b"t xvdc ",
            b"t xvdc\n",
            b"t xv/dc",
            b"t ..",
            b"t xvdc xvdc",
            b"t\xff xvdc",
            b"t xvd\xffc",
            b"to ken xvdc x/",
        ] {
            assert!(Request::parse(bad).is_err(), "{bad:?}");
        }
        let many: Vec<String> = (0..17).map(|i| format!("xvd{i}")).collect();
        let line = format!("t {}", many.join(" "));
        assert!(Request::parse(line.as_bytes()).is_err(), "17 devices");
        assert_eq!(Request::new("t".into(), &many).devices.len(), 16);
        let long = format!("t {}", "x".repeat(REQUEST_MAX));
        assert!(matches!(
            Request::parse(long.as_bytes()),
            Err(ParseError::TooLong { .. })
        ));
        let full = Request::new(
            "t".repeat(64),
            &(0..16).map(|i| format!("{i:x>32}")).collect::<Vec<_>>(),
        );
        assert!(full.to_bytes().len() <= REQUEST_MAX);
        assert_eq!(Request::parse(&full.to_bytes()), Ok(full));
    }

    #[test]
    fn an_answer_is_a_grant_or_a_queue_place() {
        let g = Answer::Granted {
            token: "17-3".into(),
        };
        assert_eq!(g.to_bytes(), b"17-3");
        assert_eq!(Answer::parse(b"17-3"), Ok(g));
        let q = Answer::Queued {
            token: "17-3".into(),
            seq: 4,
        };
        assert_eq!(q.to_bytes(), b"queued 17-3 4");
        assert_eq!(Answer::parse(b"queued 17-3 4"), Ok(q.clone()));
        assert_eq!(q.token(), "17-3");
        // a token that happens to read "queued" is a grant for that token
        assert_eq!(
            Answer::parse(b"queued"),
            Ok(Answer::Granted {
                token: "queued".into()
            })
        );
        for bad in [
            &b""[..],
            b"a b",
            b"queued t",
            b"queued t 04",
            b"queued t -1",
            b"queued t 1 2",
            b"waiting t 1",
            b"t\n",
            b"queued  t 1",
        ] {
            assert!(Answer::parse(bad).is_err(), "{bad:?}");
        }
    }
}
