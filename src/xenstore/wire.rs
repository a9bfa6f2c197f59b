//! The xenstore wire protocol as a pure codec: no I/O here.
//!
//! Every message is a header of four little-endian `u32`s — `{type, req_id,
//! tx_id, len}` — followed by `len` bytes of payload, `len <= 4096`
//! ([`PAYLOAD_MAX`]). xenstored drops a connection that sends a longer payload,
//! and for a guest that is fatal, so [`encode`] refuses to build one.
//!
//! Sources: Xen's `xen/include/public/io/xs_wire.h` and `docs/misc/xenstore.txt`
//! (message numbers, error names, payload layouts). Written for mdguard.

use std::fmt;

/// Bytes in a message header.
pub const HEADER_LEN: usize = 16;
/// Largest payload either side may send (`XENSTORE_PAYLOAD_MAX`).
pub const PAYLOAD_MAX: usize = 4096;
/// Longest absolute path xenstored accepts by default (`XENSTORE_ABS_PATH_MAX`).
pub const ABS_PATH_MAX: usize = 3072;
/// Longest relative path (`XENSTORE_REL_PATH_MAX`).
pub const REL_PATH_MAX: usize = 2048;

/// Message types (`enum xsd_sockmsg_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MsgType {
    Control,
    Directory,
    Read,
    GetPerms,
    Watch,
    Unwatch,
    TransactionStart,
    TransactionEnd,
    Introduce,
    Release,
    GetDomainPath,
    Write,
    Mkdir,
    Rm,
    SetPerms,
    WatchEvent,
    Error,
    IsDomainIntroduced,
    Resume,
    SetTarget,
    ResetWatches,
    DirectoryPart,
    /// A number this codec does not know (kept, never guessed at).
    Unknown(u32),
}

impl MsgType {
    pub fn to_u32(self) -> u32 {
        use MsgType::*;
        match self {
            Control => 0,
            Directory => 1,
            Read => 2,
            GetPerms => 3,
            Watch => 4,
            Unwatch => 5,
            TransactionStart => 6,
            TransactionEnd => 7,
            Introduce => 8,
            Release => 9,
            GetDomainPath => 10,
            Write => 11,
            Mkdir => 12,
            Rm => 13,
            SetPerms => 14,
            WatchEvent => 15,
            Error => 16,
            IsDomainIntroduced => 17,
            Resume => 18,
            SetTarget => 19,
            ResetWatches => 21,
            DirectoryPart => 22,
            Unknown(n) => n,
        }
    }

    pub fn from_u32(n: u32) -> MsgType {
        use MsgType::*;
        match n {
            0 => Control,
            1 => Directory,
            2 => Read,
            3 => GetPerms,
            4 => Watch,
            5 => Unwatch,
            6 => TransactionStart,
            7 => TransactionEnd,
            8 => Introduce,
            9 => Release,
            10 => GetDomainPath,
            11 => Write,
            12 => Mkdir,
            13 => Rm,
            14 => SetPerms,
            15 => WatchEvent,
            16 => Error,
            17 => IsDomainIntroduced,
            18 => Resume,
            19 => SetTarget,
            21 => ResetWatches,
            22 => DirectoryPart,
            n => Unknown(n),
        }
    }
}

/// The 16-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub ty: MsgType,
    pub req_id: u32,
    pub tx_id: u32,
    pub len: u32,
}

impl Header {
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&self.ty.to_u32().to_le_bytes());
        b[4..8].copy_from_slice(&self.req_id.to_le_bytes());
        b[8..12].copy_from_slice(&self.tx_id.to_le_bytes());
        b[12..16].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; HEADER_LEN]) -> Header {
        let u = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Header {
            ty: MsgType::from_u32(u(0)),
            req_id: u(4),
            tx_id: u(8),
            len: u(12),
        }
    }
}

/// One whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub ty: MsgType,
    pub req_id: u32,
    pub tx_id: u32,
    pub payload: Vec<u8>,
}

/// Codec errors. None of them can be caused by a well-behaved peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// We were asked to send more than [`PAYLOAD_MAX`] bytes; nothing was sent.
    PayloadTooLarge { len: usize },
    /// The peer announced a payload longer than [`PAYLOAD_MAX`].
    PeerPayloadTooLarge { len: u32 },
    /// A path or token that cannot be sent (empty, NUL inside, too long, bad chars).
    InvalidPath(String),
    /// A value with a NUL where the protocol needs a string, etc.
    InvalidArgument(String),
    /// A reply whose payload does not have the shape its type requires.
    Malformed(String),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::PayloadTooLarge { len } => write!(
                f,
                "payload of {len} bytes exceeds the xenstore limit of {PAYLOAD_MAX} (not sent)"
            ),
            WireError::PeerPayloadTooLarge { len } => {
                write!(
                    f,
                    "peer announced a {len}-byte payload (limit {PAYLOAD_MAX})"
                )
            }
            WireError::InvalidPath(p) => write!(f, "invalid xenstore path: {p}"),
            WireError::InvalidArgument(s) => write!(f, "invalid argument: {s}"),
            WireError::Malformed(s) => write!(f, "malformed reply: {s}"),
        }
    }
}

impl std::error::Error for WireError {}

/// Encode one message. Refuses payloads over [`PAYLOAD_MAX`].
pub fn encode(ty: MsgType, req_id: u32, tx_id: u32, payload: &[u8]) -> Result<Vec<u8>, WireError> {
    if payload.len() > PAYLOAD_MAX {
        return Err(WireError::PayloadTooLarge { len: payload.len() });
    }
    let h = Header {
        ty,
        req_id,
        tx_id,
        len: payload.len() as u32,
    };
    let mut v = Vec::with_capacity(HEADER_LEN + payload.len());
    v.extend_from_slice(&h.to_bytes());
    v.extend_from_slice(payload);
    Ok(v)
}

/// Incremental decoder: feed it whatever a read() returned, take whole messages out.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub fn new() -> Self {
        Decoder::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that do not yet form a whole message.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// The next whole message, `Ok(None)` if more bytes are needed. After an
    /// error the stream is out of sync; the caller must drop the connection.
    pub fn next_message(&mut self) -> Result<Option<Message>, WireError> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let mut hb = [0u8; HEADER_LEN];
        hb.copy_from_slice(&self.buf[..HEADER_LEN]);
        let h = Header::from_bytes(&hb);
        if h.len as usize > PAYLOAD_MAX {
            return Err(WireError::PeerPayloadTooLarge { len: h.len });
        }
        let total = HEADER_LEN + h.len as usize;
        if self.buf.len() < total {
            return Ok(None);
        }
        let payload = self.buf[HEADER_LEN..total].to_vec();
        self.buf.drain(..total);
        Ok(Some(Message {
            ty: h.ty,
            req_id: h.req_id,
            tx_id: h.tx_id,
            payload,
        }))
    }
}

// ---------------------------------------------------------------- paths

/// Check a path before sending it. Absolute paths start with `/`; relative
/// ones are resolved by the server against the caller's `/local/domain/<id>`.
/// Also accepts the special watch paths `@introduceDomain`, `@releaseDomain`.
pub fn check_path(path: &str) -> Result<(), WireError> {
    let bad = |why: &str| Err(WireError::InvalidPath(format!("{path:?}: {why}")));
    if path.is_empty() {
        return bad("empty");
    }
    if path == "@introduceDomain" || path == "@releaseDomain" {
        return Ok(());
    }
    let max = if path.starts_with('/') {
        ABS_PATH_MAX
    } else {
        REL_PATH_MAX
    };
    if path.len() > max {
        return bad("too long");
    }
    if path.len() > 1 && path.ends_with('/') {
        return bad("trailing '/'");
    }
    if path.contains("//") {
        return bad("empty component");
    }
    // xenstore.txt: path components are [a-zA-Z0-9-/_@].
    if let Some(c) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '/' | '_' | '@')))
    {
        return bad(&format!("character {c:?} not allowed"));
    }
    Ok(())
}

/// xenstore.txt's "child" relation: `child` is `parent` itself, or lies below
/// it (`parent/` is a prefix of it), or `parent` is `/`. A watch on `parent`
/// fires for every event path that is its child, and an event names the path
/// that changed (or the watched path itself when an ancestor was removed, and
/// once when the watch is set up): so the nodes an event may have touched are
/// the watched nodes that are children of its path.
pub fn is_child(child: &str, parent: &str) -> bool {
    parent == "/"
        || child == parent
        || child
            .strip_prefix(parent)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn push_str0(v: &mut Vec<u8>, s: &str) {
    v.extend_from_slice(s.as_bytes());
    v.push(0);
}

/// `path\0` (READ, DIRECTORY, MKDIR, RM, GET_PERMS).
pub fn path_payload(path: &str) -> Result<Vec<u8>, WireError> {
    check_path(path)?;
    let mut v = Vec::with_capacity(path.len() + 1);
    push_str0(&mut v, path);
    Ok(v)
}

/// `path\0value` (WRITE; the value is not NUL-terminated).
pub fn write_payload(path: &str, value: &[u8]) -> Result<Vec<u8>, WireError> {
    check_path(path)?;
    let mut v = Vec::with_capacity(path.len() + 1 + value.len());
    push_str0(&mut v, path);
    v.extend_from_slice(value);
    Ok(v)
}

/// `path\0token\0` (WATCH, UNWATCH).
pub fn watch_payload(path: &str, token: &str) -> Result<Vec<u8>, WireError> {
    check_path(path)?;
    if token.is_empty() || token.bytes().any(|b| b == 0) {
        return Err(WireError::InvalidArgument(format!(
            "watch token {token:?} must be non-empty, without NUL"
        )));
    }
    let mut v = Vec::new();
    push_str0(&mut v, path);
    push_str0(&mut v, token);
    Ok(v)
}

/// `path\0offset\0` (DIRECTORY_PART).
pub fn directory_part_payload(path: &str, offset: usize) -> Result<Vec<u8>, WireError> {
    check_path(path)?;
    let mut v = Vec::new();
    push_str0(&mut v, path);
    push_str0(&mut v, &offset.to_string());
    Ok(v)
}

/// Any list of NUL-terminated strings (INTRODUCE, SET_TARGET, ...).
pub fn strings_payload(parts: &[&str]) -> Result<Vec<u8>, WireError> {
    let mut v = Vec::new();
    for p in parts {
        if p.bytes().any(|b| b == 0) {
            return Err(WireError::InvalidArgument(format!("{p:?} contains NUL")));
        }
        push_str0(&mut v, p);
    }
    Ok(v)
}

// ---------------------------------------------------------------- permissions

/// What a permission entry grants (`n`, `r`, `w`, `b`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    None,
    Read,
    Write,
    Both,
}

/// One permission entry. The first entry of a node's list names its owner and
/// the access every domain not listed gets; later entries grant access to
/// one domain each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perm {
    pub domid: u32,
    pub access: Access,
}

impl Perm {
    pub fn new(domid: u32, access: Access) -> Perm {
        Perm { domid, access }
    }

    pub fn to_wire(self) -> String {
        let c = match self.access {
            Access::None => 'n',
            Access::Read => 'r',
            Access::Write => 'w',
            Access::Both => 'b',
        };
        format!("{c}{}", self.domid)
    }

    /// Strict parse of `n0`, `r5`, `b12`, ...
    pub fn parse(s: &str) -> Result<Perm, WireError> {
        let bad = || WireError::Malformed(format!("permission {s:?}"));
        let mut chars = s.chars();
        let access = match chars.next() {
            Some('n') => Access::None,
            Some('r') => Access::Read,
            Some('w') => Access::Write,
            Some('b') => Access::Both,
            _ => return Err(bad()),
        };
        let digits = chars.as_str();
        if digits.is_empty() || digits.len() > 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let domid = digits.parse::<u32>().map_err(|_| bad())?;
        Ok(Perm { domid, access })
    }
}

/// `path\0perm\0perm\0...` (SET_PERMS).
pub fn set_perms_payload(path: &str, perms: &[Perm]) -> Result<Vec<u8>, WireError> {
    check_path(path)?;
    if perms.is_empty() {
        return Err(WireError::InvalidArgument("empty permission list".into()));
    }
    let mut v = Vec::new();
    push_str0(&mut v, path);
    for p in perms {
        push_str0(&mut v, &p.to_wire());
    }
    Ok(v)
}

// ---------------------------------------------------------------- reply parsing

/// Split a payload of NUL-terminated strings. A trailing fragment without
/// its NUL is kept (xenstored terminates every string, some clients don't).
pub fn split_strings(payload: &[u8]) -> Result<Vec<String>, WireError> {
    if payload.is_empty() {
        return Ok(Vec::new());
    }
    let body = payload.strip_suffix(&[0]).unwrap_or(payload);
    body.split(|&b| b == 0)
        .map(|s| {
            String::from_utf8(s.to_vec())
                .map_err(|_| WireError::Malformed("string is not UTF-8".into()))
        })
        .collect()
}

/// One NUL-terminated (or not) string reply, e.g. GET_DOMAIN_PATH's.
pub fn single_string(payload: &[u8]) -> Result<String, WireError> {
    let body = payload.strip_suffix(&[0]).unwrap_or(payload);
    if body.contains(&0) {
        return Err(WireError::Malformed("embedded NUL in string reply".into()));
    }
    String::from_utf8(body.to_vec()).map_err(|_| WireError::Malformed("string is not UTF-8".into()))
}

/// Parse a GET_PERMS reply.
pub fn parse_perms(payload: &[u8]) -> Result<Vec<Perm>, WireError> {
    let v = split_strings(payload)?;
    if v.is_empty() {
        return Err(WireError::Malformed("empty permission list".into()));
    }
    v.iter().map(|s| Perm::parse(s)).collect()
}

/// A WATCH_EVENT: the path that changed and the token given to WATCH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub path: String,
    pub token: String,
}

pub fn parse_watch_event(payload: &[u8]) -> Result<WatchEvent, WireError> {
    let v = split_strings(payload)?;
    // Some servers append extra fields; path and token always come first.
    if v.len() < 2 {
        return Err(WireError::Malformed(format!(
            "watch event with {} field(s)",
            v.len()
        )));
    }
    Ok(WatchEvent {
        path: v[0].clone(),
        token: v[1].clone(),
    })
}

/// A DIRECTORY_PART reply: generation count, names, and whether it was the last chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirPart {
    pub generation: String,
    pub names: Vec<String>,
    pub done: bool,
}

/// Reply layout: `gen\0name\0name\0...` and, on the last chunk, one more `\0`
/// (so the payload ends in `\0\0`, or is `gen\0\0` for an empty tail).
pub fn parse_directory_part(payload: &[u8]) -> Result<DirPart, WireError> {
    let gen_end = payload
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| WireError::Malformed("DIRECTORY_PART without generation".into()))?;
    let generation = single_string(&payload[..gen_end])?;
    let rest = &payload[gen_end + 1..];
    let done = rest.is_empty() || rest.ends_with(&[0, 0]) || rest == [0];
    let body = if done {
        rest.strip_suffix(&[0]).unwrap_or(rest)
    } else {
        rest
    };
    let names = split_strings(body)?
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    Ok(DirPart {
        generation,
        names,
        done,
    })
}

/// Errors xenstored reports (type ERROR, payload `"ENOENT\0"` etc.).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum XsErrno {
    /// ENOENT: no such node.
    NoEnt,
    /// EACCES: permission denied.
    Access,
    /// EAGAIN: transaction conflict, retry.
    Again,
    /// EINVAL: bad request (path syntax, ...).
    Inval,
    /// E2BIG: value or request too big.
    TooBig,
    /// EQUOTA: per-domain quota exceeded (newer xenstored).
    Quota,
    /// ENOSPC: out of space / quota exceeded (older xenstored).
    NoSpc,
    Exist,
    IsDir,
    NotEmpty,
    NoSys,
    RoFs,
    Busy,
    IsConn,
    Perm,
    NoMem,
    Io,
    /// Anything else, verbatim (bounded in length).
    Other(String),
}

impl XsErrno {
    pub fn from_name(name: &str) -> XsErrno {
        use XsErrno::*;
        match name {
            "ENOENT" => NoEnt,
            "EACCES" => Access,
            "EAGAIN" => Again,
            "EINVAL" => Inval,
            "E2BIG" => TooBig,
            "EQUOTA" => Quota,
            "ENOSPC" => NoSpc,
            "EEXIST" => Exist,
            "EISDIR" => IsDir,
            "ENOTEMPTY" => NotEmpty,
            "ENOSYS" => NoSys,
            "EROFS" => RoFs,
            "EBUSY" => Busy,
            "EISCONN" => IsConn,
            "EPERM" => Perm,
            "ENOMEM" => NoMem,
            "EIO" => Io,
            other => Other(other.chars().take(64).collect()),
        }
    }

    pub fn name(&self) -> &str {
        use XsErrno::*;
        match self {
            NoEnt => "ENOENT",
            Access => "EACCES",
            Again => "EAGAIN",
            Inval => "EINVAL",
            TooBig => "E2BIG",
            Quota => "EQUOTA",
            NoSpc => "ENOSPC",
            Exist => "EEXIST",
            IsDir => "EISDIR",
            NotEmpty => "ENOTEMPTY",
            NoSys => "ENOSYS",
            RoFs => "EROFS",
            Busy => "EBUSY",
            IsConn => "EISCONN",
            Perm => "EPERM",
            NoMem => "ENOMEM",
            Io => "EIO",
            Other(s) => s,
        }
    }

    /// True for the quota family (EQUOTA, ENOSPC, E2BIG on a value).
    pub fn is_quota(&self) -> bool {
        matches!(self, XsErrno::Quota | XsErrno::NoSpc | XsErrno::TooBig)
    }
}

impl fmt::Display for XsErrno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parse the payload of an ERROR reply.
pub fn parse_error(payload: &[u8]) -> XsErrno {
    let body = payload.strip_suffix(&[0]).unwrap_or(payload);
    let body = &body[..body.len().min(64)];
    match std::str::from_utf8(body) {
        Ok(s) => XsErrno::from_name(s.trim_end_matches('\0')),
        Err(_) => XsErrno::Other(String::from_utf8_lossy(body).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_relation_is_xenstores() {
        assert!(is_child("data/mdguard", "data/mdguard"));
        assert!(is_child("data/mdguard/arrays/md0", "data/mdguard"));
        assert!(is_child("/local/domain/7", "/"));
        assert!(!is_child("data/mdguardx", "data/mdguard"));
        assert!(!is_child("data", "data/mdguard"));
        assert!(!is_child("data/mdguard", "data/mdguard/health"));
    }

    #[test]
    fn header_is_four_le_u32() {
        let m = encode(MsgType::Write, 0x01020304, 7, b"a\0b").unwrap();
        assert_eq!(
            &m[..16],
            &[11, 0, 0, 0, 4, 3, 2, 1, 7, 0, 0, 0, 3, 0, 0, 0][..]
        );
        assert_eq!(&m[16..], b"a\0b");
    }

    #[test]
    fn encode_refuses_oversize_payload() {
        assert!(encode(MsgType::Write, 1, 0, &vec![b'x'; PAYLOAD_MAX]).is_ok());
        assert_eq!(
            encode(MsgType::Write, 1, 0, &vec![b'x'; PAYLOAD_MAX + 1]),
            Err(WireError::PayloadTooLarge {
                len: PAYLOAD_MAX + 1
            })
        );
    }

    #[test]
    fn decoder_handles_split_and_joined_messages() {
        let mut all = encode(MsgType::Read, 1, 0, b"v1").unwrap();
        all.extend(encode(MsgType::WatchEvent, 0, 0, b"/a\0tok\0").unwrap());
        let mut d = Decoder::new();
        for b in &all[..20] {
            d.push(&[*b]);
        }
        let m = d.next_message().unwrap().unwrap();
        assert_eq!(m.ty, MsgType::Read);
        assert_eq!(m.payload, b"v1");
        assert_eq!(d.next_message().unwrap(), None);
        d.push(&all[20..]);
        let m = d.next_message().unwrap().unwrap();
        assert_eq!(m.ty, MsgType::WatchEvent);
        assert_eq!(
            parse_watch_event(&m.payload).unwrap(),
            WatchEvent {
                path: "/a".into(),
                token: "tok".into()
            }
        );
        assert_eq!(d.next_message().unwrap(), None);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn decoder_rejects_oversize_announcement() {
        let mut h = Header {
            ty: MsgType::Read,
            req_id: 1,
            tx_id: 0,
            len: 4097,
        }
        .to_bytes()
        .to_vec();
        h.extend(vec![0u8; 10]);
        let mut d = Decoder::new();
        d.push(&h);
        assert_eq!(
            d.next_message(),
            Err(WireError::PeerPayloadTooLarge { len: 4097 })
        );
    }

    #[test]
    fn unknown_type_round_trips() {
        assert_eq!(MsgType::from_u32(20), MsgType::Unknown(20));
        for n in 0..64 {
            assert_eq!(MsgType::from_u32(n).to_u32(), n);
        }
    }

    #[test]
    fn path_checks() {
        assert!(check_path("/local/domain/0/data").is_ok());
        assert!(check_path("data/mdguard/health").is_ok());
        assert!(check_path("@releaseDomain").is_ok());
        assert!(check_path("").is_err());
        assert!(check_path("/a//b").is_err());
        assert!(check_path("/a/").is_err());
        assert!(check_path("/a b").is_err());
        assert!(check_path("/a\0b").is_err());
        assert!(check_path("/").is_ok());
        assert!(check_path(&format!("/{}", "a".repeat(ABS_PATH_MAX))).is_err());
    }

    #[test]
    fn payload_builders() {
        assert_eq!(path_payload("/a").unwrap(), b"/a\0");
        assert_eq!(write_payload("/a", b"xy").unwrap(), b"/a\0xy");
        assert_eq!(watch_payload("/a", "t").unwrap(), b"/a\0t\0");
        assert!(watch_payload("/a", "").is_err());
        assert_eq!(
            set_perms_payload(
                "/a",
                &[Perm::new(0, Access::None), Perm::new(5, Access::Read)]
            )
            .unwrap(),
            b"/a\0n0\0r5\0"
        );
        assert_eq!(directory_part_payload("/a", 12).unwrap(), b"/a\x0012\0");
    }

    #[test]
    fn perms_parse_strictly() {
        assert_eq!(Perm::parse("b7").unwrap(), Perm::new(7, Access::Both));
        for bad in ["", "x1", "r", "r-1", "r1a", "r99999999999", "R1", "r 1"] {
            assert!(Perm::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_perms(b"n0\0r5\0").unwrap(),
            vec![Perm::new(0, Access::None), Perm::new(5, Access::Read)]
        );
    }

    #[test]
    fn error_names_map_to_kinds() {
        assert_eq!(parse_error(b"ENOENT\0"), XsErrno::NoEnt);
        assert_eq!(parse_error(b"EACCES\0"), XsErrno::Access);
        assert_eq!(parse_error(b"EAGAIN"), XsErrno::Again);
        assert_eq!(parse_error(b"E2BIG\0"), XsErrno::TooBig);
        assert_eq!(parse_error(b"EQUOTA\0"), XsErrno::Quota);
        assert_eq!(parse_error(b"EWHAT\0"), XsErrno::Other("EWHAT".into()));
        assert!(parse_error(b"ENOSPC\0").is_quota());
        let long = vec![b'E'; 5000];
        assert_eq!(parse_error(&long).name().len(), 64);
        assert_eq!(
            parse_error(b"\xff\xfe"),
            XsErrno::Other("\u{fffd}\u{fffd}".into())
        );
    }

    #[test]
    fn directory_and_part_replies() {
        assert_eq!(split_strings(b"a\0b\0").unwrap(), vec!["a", "b"]);
        assert_eq!(split_strings(b"").unwrap(), Vec::<String>::new());
        let p = parse_directory_part(b"42\0a\0b\0").unwrap();
        assert_eq!(
            (p.generation.as_str(), p.names.len(), p.done),
            ("42", 2, false)
        );
        let p = parse_directory_part(b"42\0c\0\0").unwrap();
        assert_eq!((p.names, p.done), (vec!["c".to_string()], true));
        let p = parse_directory_part(b"42\0\0").unwrap();
        assert!(p.done && p.names.is_empty());
        assert!(parse_directory_part(b"nogen").is_err());
    }
}
