//! A small blocking xenstore client over the guest's xenbus device or
//! xenstored's unix socket. One connection, one request in flight at a time.
//!
//! Watch events arrive unsolicited and may be interleaved with replies: they
//! are queued and handed out by [`Client::take_events`] /
//! [`Client::poll_events`]. The connection's fd ([`Client::as_raw_fd`]) fits a
//! poll(2) loop: when it is readable, call [`Client::poll_events`], which never
//! blocks.
//!
//! When xenstored goes away (EOF on the socket) calls fail with
//! [`Error::Disconnected`]; the next call (or an explicit [`Client::reconnect`])
//! connects again and re-registers every watch. Because a restarted xenstored
//! has lost its data, the client raises a flag ([`Client::take_reconnected`])
//! so the caller re-publishes what it owns.

use super::error::{Error, Result};
use super::transport::{wait_readable, Conn, Endpoint};
use super::wire::{self, DirPart, Message, MsgType, Perm, WatchEvent, WireError, XsErrno};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// Watch events kept while the caller does not drain them (unless
/// [`Client::set_event_limit`] says otherwise); beyond that the oldest are
/// dropped and [`Client::take_events_lost`] reports it.
pub const MAX_QUEUED_EVENTS: usize = 1024;

/// How many times [`Client::transaction`] retries a commit that got EAGAIN.
pub const TX_RETRIES: u32 = 16;

/// A xenstore connection.
#[derive(Debug)]
pub struct Client {
    endpoint: Endpoint,
    conn: Option<Conn>,
    dec: wire::Decoder,
    next_req: u32,
    events: VecDeque<WatchEvent>,
    watches: Vec<(String, String)>,
    reconnected: bool,
    events_lost: bool,
    /// Most watch events queued.
    event_limit: usize,
    timeout: Duration,
    /// Counts connections made (1 after `open`), for callers and tests.
    generation: u64,
}

impl Client {
    /// Connect to the discovered endpoint ([`Endpoint::discover`]).
    pub fn open() -> Result<Client> {
        Client::connect(Endpoint::discover()?)
    }

    pub fn connect(endpoint: Endpoint) -> Result<Client> {
        let conn = Conn::open(&endpoint)?;
        Ok(Client {
            endpoint,
            conn: Some(conn),
            dec: wire::Decoder::new(),
            next_req: 1,
            events: VecDeque::new(),
            watches: Vec::new(),
            reconnected: false,
            events_lost: false,
            event_limit: MAX_QUEUED_EVENTS,
            timeout: Duration::from_secs(10),
            generation: 1,
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// How long one request may wait for its reply (default 10 s).
    pub fn set_timeout(&mut self, t: Duration) {
        self.timeout = t;
    }

    /// Keep up to `n` watch events (at least [`MAX_QUEUED_EVENTS`]): a
    /// caller with many watches, each of which fires once when it is set,
    /// would otherwise lose events and have to read everything again.
    pub fn set_event_limit(&mut self, n: usize) {
        self.event_limit = n.max(MAX_QUEUED_EVENTS);
    }

    /// The connection's fd for a poll loop; `None` while disconnected. It
    /// changes after a reconnect.
    pub fn as_raw_fd(&self) -> Option<RawFd> {
        self.conn.as_ref().map(|c| c.fd().as_raw_fd())
    }

    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Number of connections made so far (1 after connect, +1 per reconnect).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// True once after each automatic or explicit reconnect: xenstored may
    /// have lost everything, re-publish.
    pub fn take_reconnected(&mut self) -> bool {
        std::mem::take(&mut self.reconnected)
    }

    /// True once after watch events were dropped because the queue was
    /// full: re-read everything watched.
    pub fn take_events_lost(&mut self) -> bool {
        std::mem::take(&mut self.events_lost)
    }

    fn drop_conn(&mut self) {
        self.conn = None;
        self.dec.clear();
    }

    /// Connect again and re-register every watch. Each watch fires once
    /// when set, so the caller also sees one event per watch.
    pub fn reconnect(&mut self) -> Result<()> {
        self.drop_conn();
        self.conn = Some(Conn::open(&self.endpoint)?);
        self.generation += 1;
        self.reconnected = true;
        let watches = self.watches.clone();
        for (path, token) in &watches {
            let p = wire::watch_payload(path, token)?;
            if let Err(e) = self.request_raw(MsgType::Watch, 0, p) {
                if e.is_connection() {
                    self.drop_conn();
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn ensure_connected(&mut self) -> Result<()> {
        if self.conn.is_none() {
            self.reconnect()?;
        }
        Ok(())
    }

    fn next_id(&mut self) -> u32 {
        let id = self.next_req;
        self.next_req = self.next_req.wrapping_add(1).max(1);
        id
    }

    /// Read once from the connection into the decoder and dispatch events.
    /// Returns the reply matching `want` if one was decoded.
    fn pump(&mut self, want: Option<u32>) -> Result<Option<Message>> {
        let mut buf = [0u8; 8192];
        let conn = self.conn.as_mut().ok_or(Error::Disconnected)?;
        let n = match conn.read(&mut buf) {
            Ok(0) => {
                self.drop_conn();
                return Err(Error::Disconnected);
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => {
                self.drop_conn();
                return Err(if e.kind() == io::ErrorKind::ConnectionReset {
                    Error::Disconnected
                } else {
                    Error::Io(e)
                });
            }
        };
        self.dec.push(&buf[..n]);
        self.dispatch(want)
    }

    fn dispatch(&mut self, want: Option<u32>) -> Result<Option<Message>> {
        let mut found = None;
        loop {
            let m = match self.dec.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    self.drop_conn();
                    return Err(Error::Wire(e));
                }
            };
            if m.ty == MsgType::WatchEvent {
                match wire::parse_watch_event(&m.payload) {
                    Ok(ev) => {
                        if self.events.len() >= self.event_limit {
                            self.events.pop_front();
                            self.events_lost = true;
                        }
                        self.events.push_back(ev)
                    }
                    Err(e) => return Err(Error::Wire(e)),
                }
            } else if Some(m.req_id) == want && found.is_none() {
                found = Some(m);
            }
            // Other replies belong to requests that timed out: dropped.
        }
        Ok(found)
    }

    /// Send one request and wait for its reply. Watch events seen meanwhile
    /// are queued. Returns the reply payload; ERROR replies become `Error::Xs`.
    pub fn request_raw(&mut self, ty: MsgType, tx_id: u32, payload: Vec<u8>) -> Result<Vec<u8>> {
        // Refuse an oversize payload before touching the connection.
        let req_id = self.next_id();
        let msg = wire::encode(ty, req_id, tx_id, &payload)?;
        self.ensure_connected()?;
        let conn = self.conn.as_mut().ok_or(Error::Disconnected)?;
        if let Err(e) = conn.write_all(&msg) {
            self.drop_conn();
            return Err(match e.kind() {
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => Error::Disconnected,
                _ => Error::Io(e),
            });
        }
        let deadline = Instant::now() + self.timeout;
        // A reply may already be buffered from an earlier read.
        let mut reply = self.dispatch(Some(req_id))?;
        while reply.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout);
            }
            let fd = self.conn.as_ref().ok_or(Error::Disconnected)?.fd();
            if !wait_readable(fd, left).map_err(Error::Io)? {
                return Err(Error::Timeout);
            }
            reply = self.pump(Some(req_id))?;
        }
        let m = reply.expect("loop exits with a reply");
        if m.ty == MsgType::Error {
            return Err(Error::Xs(wire::parse_error(&m.payload)));
        }
        if m.ty != ty {
            return Err(Error::Protocol(format!(
                "reply type {:?} to a {:?} request",
                m.ty, ty
            )));
        }
        Ok(m.payload)
    }

    /// Drain whatever the server sent without blocking and return every
    /// queued watch event. `Err(Disconnected)` when the server went away.
    pub fn poll_events(&mut self) -> Result<Vec<WatchEvent>> {
        while let Some(conn) = self.conn.as_ref() {
            if !wait_readable(conn.fd(), Duration::ZERO).map_err(Error::Io)? {
                break;
            }
            self.pump(None)?;
        }
        if self.conn.is_none() && self.events.is_empty() {
            return Err(Error::Disconnected);
        }
        Ok(self.events.drain(..).collect())
    }

    /// Wait up to `timeout` for at least one watch event.
    pub fn wait_events(&mut self, timeout: Duration) -> Result<Vec<WatchEvent>> {
        let deadline = Instant::now() + timeout;
        loop {
            let evs = self.poll_events()?;
            if !evs.is_empty() {
                return Ok(evs);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Vec::new());
            }
            let fd = self.conn.as_ref().ok_or(Error::Disconnected)?.fd();
            wait_readable(fd, left).map_err(Error::Io)?;
        }
    }

    /// Queued watch events, without any I/O.
    pub fn take_events(&mut self) -> Vec<WatchEvent> {
        self.events.drain(..).collect()
    }

    // ------------------------------------------------------------ operations

    pub fn read(&mut self, path: &str) -> Result<Vec<u8>> {
        self.read_in(0, path)
    }

    /// Read a value that must be UTF-8 text.
    pub fn read_string(&mut self, path: &str) -> Result<String> {
        let v = self.read(path)?;
        String::from_utf8(v)
            .map_err(|_| Error::Wire(WireError::Malformed(format!("{path}: value is not UTF-8"))))
    }

    /// `Ok(None)` when the node does not exist.
    pub fn try_read(&mut self, path: &str) -> Result<Option<Vec<u8>>> {
        absent_as_none(self.read(path))
    }

    pub fn write(&mut self, path: &str, value: &[u8]) -> Result<()> {
        self.write_in(0, path, value)
    }

    pub fn directory(&mut self, path: &str) -> Result<Vec<String>> {
        self.directory_in(0, path)
    }

    pub fn mkdir(&mut self, path: &str) -> Result<()> {
        self.mkdir_in(0, path)
    }

    pub fn rm(&mut self, path: &str) -> Result<()> {
        self.rm_in(0, path)
    }

    pub fn get_perms(&mut self, path: &str) -> Result<Vec<Perm>> {
        self.get_perms_in(0, path)
    }

    pub fn set_perms(&mut self, path: &str, perms: &[Perm]) -> Result<()> {
        self.set_perms_in(0, path, perms)
    }

    /// `/local/domain/<domid>` as the server sees it.
    pub fn get_domain_path(&mut self, domid: u32) -> Result<String> {
        let p = self.request_raw(
            MsgType::GetDomainPath,
            0,
            wire::strings_payload(&[&domid.to_string()])?,
        )?;
        Ok(wire::single_string(&p)?)
    }

    /// Register a watch; it fires once at once, then on every change under `path`.
    /// Remembered and re-registered after a reconnect.
    pub fn watch(&mut self, path: &str, token: &str) -> Result<()> {
        self.request_raw(MsgType::Watch, 0, wire::watch_payload(path, token)?)?;
        if !self.watches.iter().any(|(p, t)| p == path && t == token) {
            self.watches.push((path.to_string(), token.to_string()));
        }
        Ok(())
    }

    pub fn unwatch(&mut self, path: &str, token: &str) -> Result<()> {
        self.watches.retain(|(p, t)| !(p == path && t == token));
        self.request_raw(MsgType::Unwatch, 0, wire::watch_payload(path, token)?)?;
        // Drop events for that watch already queued.
        self.events.retain(|e| e.token != token);
        Ok(())
    }

    pub fn watches(&self) -> &[(String, String)] {
        &self.watches
    }

    /// dom0 only: introduce a domain to xenstored.
    pub fn introduce(&mut self, domid: u32, mfn: u64, port: u32) -> Result<()> {
        let p = wire::strings_payload(&[&domid.to_string(), &mfn.to_string(), &port.to_string()])?;
        self.request_raw(MsgType::Introduce, 0, p).map(|_| ())
    }

    /// dom0 only: forget a domain.
    pub fn release(&mut self, domid: u32) -> Result<()> {
        self.request_raw(
            MsgType::Release,
            0,
            wire::strings_payload(&[&domid.to_string()])?,
        )
        .map(|_| ())
    }

    pub fn is_domain_introduced(&mut self, domid: u32) -> Result<bool> {
        let p = self.request_raw(
            MsgType::IsDomainIntroduced,
            0,
            wire::strings_payload(&[&domid.to_string()])?,
        )?;
        Ok(wire::single_string(&p)? == "T")
    }

    // ------------------------------------------------------------ transactions

    /// Start a transaction; returns its id. Prefer [`Client::transaction`].
    pub fn transaction_start(&mut self) -> Result<u32> {
        let p = self.request_raw(MsgType::TransactionStart, 0, vec![0])?;
        let s = wire::single_string(&p)?;
        if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::Protocol(format!("transaction id {s:?}")));
        }
        s.parse()
            .map_err(|_| Error::Protocol(format!("transaction id {s:?}")))
    }

    /// End a transaction: commit (`true`) or abort. A commit may fail with EAGAIN.
    pub fn transaction_end(&mut self, tx_id: u32, commit: bool) -> Result<()> {
        let p = if commit { b"T\0" } else { b"F\0" };
        self.request_raw(MsgType::TransactionEnd, tx_id, p.to_vec())
            .map(|_| ())
    }

    /// Run `f` in a transaction and commit, retrying (up to [`TX_RETRIES`]
    /// times) when the commit or an operation reports EAGAIN. `f` may run
    /// several times: keep it free of side effects outside xenstore.
    pub fn transaction<T>(&mut self, mut f: impl FnMut(&mut Txn<'_>) -> Result<T>) -> Result<T> {
        let mut last = Error::Xs(XsErrno::Again);
        for attempt in 0..TX_RETRIES {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(u64::from(attempt.min(10))));
            }
            let id = self.transaction_start()?;
            let mut tx = Txn { client: self, id };
            match f(&mut tx) {
                Ok(v) => match self.transaction_end(id, true) {
                    Ok(()) => return Ok(v),
                    Err(Error::Xs(XsErrno::Again)) => last = Error::Xs(XsErrno::Again),
                    Err(e) => return Err(e),
                },
                Err(e) => {
                    if !e.is_connection() {
                        let _ = self.transaction_end(id, false);
                    }
                    match e {
                        Error::Xs(XsErrno::Again) => last = e,
                        e => return Err(e),
                    }
                }
            }
        }
        Err(last)
    }

    // ------------------------------------------------------------ ops with a tx id

    fn read_in(&mut self, tx: u32, path: &str) -> Result<Vec<u8>> {
        self.request_raw(MsgType::Read, tx, wire::path_payload(path)?)
    }

    fn write_in(&mut self, tx: u32, path: &str, value: &[u8]) -> Result<()> {
        self.request_raw(MsgType::Write, tx, wire::write_payload(path, value)?)
            .map(|_| ())
    }

    fn mkdir_in(&mut self, tx: u32, path: &str) -> Result<()> {
        self.request_raw(MsgType::Mkdir, tx, wire::path_payload(path)?)
            .map(|_| ())
    }

    fn rm_in(&mut self, tx: u32, path: &str) -> Result<()> {
        self.request_raw(MsgType::Rm, tx, wire::path_payload(path)?)
            .map(|_| ())
    }

    fn get_perms_in(&mut self, tx: u32, path: &str) -> Result<Vec<Perm>> {
        let p = self.request_raw(MsgType::GetPerms, tx, wire::path_payload(path)?)?;
        Ok(wire::parse_perms(&p)?)
    }

    fn set_perms_in(&mut self, tx: u32, path: &str, perms: &[Perm]) -> Result<()> {
        self.request_raw(MsgType::SetPerms, tx, wire::set_perms_payload(path, perms)?)
            .map(|_| ())
    }

    fn directory_in(&mut self, tx: u32, path: &str) -> Result<Vec<String>> {
        match self.request_raw(MsgType::Directory, tx, wire::path_payload(path)?) {
            Ok(p) => Ok(wire::split_strings(&p)?),
            // The listing does not fit in one reply: fetch it in parts.
            Err(Error::Xs(XsErrno::TooBig)) => self.directory_parts(tx, path),
            Err(e) => Err(e),
        }
    }

    fn directory_parts(&mut self, tx: u32, path: &str) -> Result<Vec<String>> {
        'restart: for _ in 0..8 {
            let mut names = Vec::new();
            let mut offset = 0usize;
            let mut generation: Option<String> = None;
            loop {
                let p = self.request_raw(
                    MsgType::DirectoryPart,
                    tx,
                    wire::directory_part_payload(path, offset)?,
                )?;
                let DirPart {
                    generation: g,
                    names: chunk,
                    done,
                } = wire::parse_directory_part(&p)?;
                match &generation {
                    Some(old) if *old != g => continue 'restart, // changed meanwhile
                    _ => generation = Some(g),
                }
                if chunk.is_empty() && !done {
                    return Err(Error::Protocol("empty DIRECTORY_PART chunk".into()));
                }
                offset += chunk.iter().map(|n| n.len() + 1).sum::<usize>();
                names.extend(chunk);
                if done {
                    return Ok(names);
                }
            }
        }
        Err(Error::Xs(XsErrno::Again))
    }
}

/// Operations inside one transaction (see [`Client::transaction`]).
pub struct Txn<'a> {
    client: &'a mut Client,
    id: u32,
}

/// A read's result with "no such node" turned into `Ok(None)`.
fn absent_as_none(r: Result<Vec<u8>>) -> Result<Option<Vec<u8>>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

impl Txn<'_> {
    pub fn id(&self) -> u32 {
        self.id
    }
    pub fn read(&mut self, path: &str) -> Result<Vec<u8>> {
        self.client.read_in(self.id, path)
    }
    pub fn try_read(&mut self, path: &str) -> Result<Option<Vec<u8>>> {
        absent_as_none(self.read(path))
    }
    pub fn write(&mut self, path: &str, value: &[u8]) -> Result<()> {
        self.client.write_in(self.id, path, value)
    }
    pub fn mkdir(&mut self, path: &str) -> Result<()> {
        self.client.mkdir_in(self.id, path)
    }
    pub fn rm(&mut self, path: &str) -> Result<()> {
        self.client.rm_in(self.id, path)
    }
    pub fn directory(&mut self, path: &str) -> Result<Vec<String>> {
        self.client.directory_in(self.id, path)
    }
    pub fn get_perms(&mut self, path: &str) -> Result<Vec<Perm>> {
        self.client.get_perms_in(self.id, path)
    }
    pub fn set_perms(&mut self, path: &str, perms: &[Perm]) -> Result<()> {
        self.client.set_perms_in(self.id, path, perms)
    }
}

/// Raw access by transaction id, for callers that manage transactions by hand.
impl Client {
    pub fn read_tx(&mut self, tx: u32, path: &str) -> Result<Vec<u8>> {
        self.read_in(tx, path)
    }
    pub fn write_tx(&mut self, tx: u32, path: &str, value: &[u8]) -> Result<()> {
        self.write_in(tx, path, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn discover_reports_not_available() {
        let e = Endpoint::discover_in(&[
            Endpoint::Device("/nonexistent/xen/xenbus".into()),
            Endpoint::Socket("/nonexistent/xenstored/socket".into()),
        ])
        .unwrap_err();
        match e {
            Error::NotAvailable(s) => {
                assert!(s.contains("/nonexistent/xen/xenbus"), "{s}");
                assert!(s.contains("/nonexistent/xenstored/socket"), "{s}");
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn env_path_may_name_a_device() {
        assert_eq!(
            Endpoint::from_env_path("/dev/null".into()),
            Endpoint::Device("/dev/null".into())
        );
        assert_eq!(
            Endpoint::from_env_path("/nonexistent/s".into()),
            Endpoint::Socket("/nonexistent/s".into())
        );
    }

    #[test]
    fn connect_to_missing_socket_is_not_available() {
        let e = Client::connect(Endpoint::Socket("/nonexistent/sock".into())).unwrap_err();
        assert!(matches!(e, Error::NotAvailable(_)), "{e:?}");
    }

    /// A fake server on a socketpair: replies out of order with an event
    /// in between, proving events are queued and replies matched by id.
    #[test]
    fn events_interleaved_with_replies_are_queued() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s");
        let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut hdr = [0u8; 16];
            s.read_exact(&mut hdr).unwrap();
            let h = wire::Header::from_bytes(&hdr);
            let mut p = vec![0u8; h.len as usize];
            s.read_exact(&mut p).unwrap();
            assert_eq!(p, b"/k\0");
            // An event, a stale reply, then the real one split in two writes.
            s.write_all(&wire::encode(MsgType::WatchEvent, 0, 0, b"/k\0tok\0").unwrap())
                .unwrap();
            s.write_all(&wire::encode(MsgType::Read, h.req_id + 100, 0, b"stale").unwrap())
                .unwrap();
            let r = wire::encode(MsgType::Read, h.req_id, 0, b"value").unwrap();
            s.write_all(&r[..10]).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            s.write_all(&r[10..]).unwrap();
            s.write_all(&wire::encode(MsgType::WatchEvent, 0, 0, b"/k/x\0tok\0").unwrap())
                .unwrap();
            std::thread::sleep(Duration::from_millis(50));
        });
        let mut c = Client::connect(Endpoint::Socket(sock)).unwrap();
        c.set_timeout(Duration::from_secs(5));
        assert_eq!(c.read("/k").unwrap(), b"value");
        let mut evs = c.take_events();
        if evs.len() < 2 {
            evs.extend(c.wait_events(Duration::from_secs(2)).unwrap());
        }
        let paths: Vec<_> = evs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, vec!["/k", "/k/x"]);
        server.join().unwrap();
        // The server closed: the next poll reports it.
        std::thread::sleep(Duration::from_millis(20));
        assert!(matches!(c.poll_events(), Err(Error::Disconnected)));
        assert!(!c.is_connected());
    }

    /// `n` watch events sent at once to a client keeping up to `limit`
    /// (None: the default), none taken meanwhile: were some lost, and the
    /// events kept.
    fn flood(n: usize, limit: Option<usize>) -> (bool, Vec<WatchEvent>) {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s");
        let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let mut c = Client::connect(Endpoint::Socket(sock)).unwrap();
        if let Some(l) = limit {
            c.set_event_limit(l);
        }
        let (mut s, _) = l.accept().unwrap();
        // One buffer, one write, from a thread: many tiny writes would fill
        // the socket buffer and block this test.
        let mut all = Vec::new();
        for i in 0..n {
            let p = format!("/e/{i}\0t\0");
            all.extend(wire::encode(MsgType::WatchEvent, 0, 0, p.as_bytes()).unwrap());
        }
        let writer = std::thread::spawn(move || {
            s.write_all(&all).unwrap();
            s
        });
        // Fill the queue without taking events out, reading while it writes.
        while c.wait_readable_for_test() {
            c.pump(None).unwrap();
        }
        let _s = writer.join().unwrap();
        let lost = c.take_events_lost();
        assert!(!c.take_events_lost());
        (lost, c.take_events())
    }

    #[test]
    fn event_queue_is_bounded() {
        let n = MAX_QUEUED_EVENTS + 10;
        let (lost, evs) = flood(n, None);
        assert!(lost);
        assert_eq!(evs.len(), MAX_QUEUED_EVENTS);
        assert_eq!(
            evs.last().unwrap().path,
            format!("/e/{}", n - 1),
            "newest kept"
        );
    }

    #[test]
    fn a_client_with_many_watches_keeps_more_events() {
        // a thousand watches fire once each when set, and a few change
        let (lost, evs) = flood(1100, Some(3000));
        assert!(!lost);
        assert_eq!(evs.len(), 1100);
        // never fewer than the default
        let (lost, evs) = flood(MAX_QUEUED_EVENTS, Some(10));
        assert!(!lost);
        assert_eq!(evs.len(), MAX_QUEUED_EVENTS);
    }

    impl Client {
        fn wait_readable_for_test(&self) -> bool {
            wait_readable(self.conn.as_ref().unwrap().fd(), Duration::from_millis(50)).unwrap()
        }
    }

    #[test]
    fn oversize_write_is_refused_without_io() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let mut c = Client::connect(Endpoint::Socket(sock)).unwrap();
        let e = c.write("/k", &vec![b'x'; 4096]).unwrap_err();
        assert!(
            matches!(e, Error::Wire(WireError::PayloadTooLarge { .. })),
            "{e:?}"
        );
        assert!(c.is_connected());
    }

    #[test]
    fn request_times_out_when_server_is_silent() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let mut c = Client::connect(Endpoint::Socket(sock)).unwrap();
        c.set_timeout(Duration::from_millis(100));
        let t = Instant::now();
        assert!(matches!(c.read("/k"), Err(Error::Timeout)));
        assert!(t.elapsed() < Duration::from_secs(2));
    }
}
