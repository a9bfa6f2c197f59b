//! The storage behind each leg, seen from dom0. Pure: the reading is `host.rs`.
//!
//! A guest publishes its legs by the names it sees (`xvdc`, `xvdc1`, `nbd0p1`);
//! dom0's toolstack (xl/libxl) describes each vbd it gave the guest under
//! `/local/domain/0/backend/<kind>/<domid>/<devid>/`, a directory owned by
//! dom0 that the guest can only read. Its keys (libxl `device_disk_add`):
//!
//! - `dev`: the virtual device as configured (`xvdc`): the name a Linux PV
//!   guest gives the disk, its partitions being `xvdc1`, ...;
//! - `params`: what serves it in dom0: the block device or file for a `vbd`
//!   (`phy`) backend (`/dev/nbd2`, `/dev/vg0/web01`, `/dev/disk/by-path/ip-...`),
//!   `<format>:<path>` for a `qdisk` (QEMU) backend (`aio:/srv/web01.img`);
//! - `type` (`phy`, `qdisk`), `state` (the XenbusState, 4 = connected),
//!   `frontend`, `frontend-id`, `mode`, ...;
//! - `physical-device`: the device blkback opened, `<major>:<minor>` in hex
//!   (`fe:3`), written by the block hotplug script (`write_dev` in
//!   `/etc/xen/scripts/block-common.sh`) once the device is found; a qdisk
//!   backend has none.
//!
//! A leg is mapped to the backend whose `dev` is its name or the disk it is a
//! partition of ([`on_disk`]), among the backends dom0 holds for that guest
//! only. Its **storage** ([`StorageId`]) is the backend's `params`, without
//! the format a qdisk backend puts in front, so one device or image reads the
//! same whichever backend serves it. A leg no backend explains (nbd or iSCSI
//! inside the guest, a driver domain's backend, a disk configured as `hdX` or
//! `sdX` that the guest names otherwise) is [`Place::NoBackend`]: shown as
//! such, never guessed. Nothing the guest writes is read here: its own
//! `device/vbd/` frontend directory is writable to it and is ignored.

use super::guest::{Verdict, FLAG_FLAPPING, FLAG_STALLED};
use crate::md::identity::on_disk;
use crate::report::schema::{parse_u64, reported_health, valid_name, ArrayJson, Health};
use crate::text::printable;
use serde::Serialize;
use std::collections::BTreeMap;

/// The domain whose backends are read: dom0 (driver domains are not looked at).
pub const BACKEND_DOMID: u32 = 0;
pub const KEY_DEV: &str = "dev";
pub const KEY_PARAMS: &str = "params";
pub const KEY_TYPE: &str = "type";
pub const KEY_STATE: &str = "state";
pub const KEY_FRONTEND_ID: &str = "frontend-id";
pub const KEY_PHYSICAL_DEVICE: &str = "physical-device";
/// Longest `params` taken (a path; longer is refused as garbage).
pub const PARAMS_MAX: usize = 1024;
/// Most backends read per guest and kind.
pub const BACKENDS_MAX: usize = 256;
/// XenbusState `Connected`.
pub const STATE_CONNECTED: u8 = 4;
/// The formats libxl puts in front of a qdisk backend's `params`.
const QDISK_FORMATS: [&str; 5] = ["aio", "qcow", "qcow2", "vhd", "qed"];

/// Which backend driver serves a vbd: blkback (`phy`) or QEMU's qdisk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Vbd,
    Qdisk,
}

impl BackendKind {
    pub const ALL: [BackendKind; 2] = [BackendKind::Vbd, BackendKind::Qdisk];

    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Vbd => "vbd",
            BackendKind::Qdisk => "qdisk",
        }
    }

    /// Where dom0 keeps guest `domid`'s backends of this kind.
    pub fn dir(self, domid: u32) -> String {
        format!(
            "/local/domain/{BACKEND_DOMID}/backend/{}/{domid}",
            self.as_str()
        )
    }
}

/// The storage behind a backend: its `params`, less a qdisk format prefix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct StorageId(String);

impl StorageId {
    /// `None` when there is nothing behind the backend (empty `params`: an
    /// empty CD-ROM drive).
    pub fn from_params(kind: BackendKind, params: &str) -> Option<StorageId> {
        let path = match (kind, params.split_once(':')) {
            (BackendKind::Qdisk, Some((fmt, rest))) if QDISK_FORMATS.contains(&fmt) => rest,
            _ => params,
        };
        (!path.is_empty()).then(|| StorageId(path.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The raw values of one backend's keys (`None`: the key does not exist).
#[derive(Debug, Clone, Default)]
pub struct RawBackend {
    pub dev: Option<Vec<u8>>,
    pub params: Option<Vec<u8>>,
    pub type_: Option<Vec<u8>>,
    pub state: Option<Vec<u8>>,
    pub frontend_id: Option<Vec<u8>>,
    pub physical_device: Option<Vec<u8>>,
}

/// One vbd backend dom0 holds for a guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backend {
    pub kind: BackendKind,
    pub devid: u32,
    /// The guest's device name (`dev`).
    pub dev: String,
    /// `phy`, `qdisk`, ... (`type`).
    #[serde(rename = "type")]
    pub type_: Option<String>,
    /// XenbusState (`state`).
    pub state: Option<u8>,
    pub storage: Option<StorageId>,
    /// The dom0 block device blkback holds (`physical-device`): major, minor.
    #[serde(skip)]
    pub physical_device: Option<(u32, u32)>,
}

/// `physical-device`: `<major>:<minor>`, each 1 to 8 hex digits.
fn device_number(v: &[u8]) -> Option<(u32, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let (major, minor) = s.split_once(':')?;
    let hex = |h: &str| {
        (!h.is_empty() && h.len() <= 8 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u32::from_str_radix(h, 16).ok())
            .flatten()
    };
    Some((hex(major)?, hex(minor)?))
}

fn text(key: &str, v: &[u8], max: usize) -> Result<String, String> {
    if v.len() > max {
        return Err(format!("{key}: {} bytes (max {max})", v.len()));
    }
    match std::str::from_utf8(v) {
        Ok(s) if !s.chars().any(char::is_control) => Ok(s.to_string()),
        _ => Err(format!("{key}: {}", printable(v, 48))),
    }
}

impl Backend {
    /// Backend `devid` of guest `domid`, from its keys. Strict: a value that
    /// does not parse refuses the backend, with why.
    pub fn parse(
        kind: BackendKind,
        domid: u32,
        devid: &str,
        raw: &RawBackend,
    ) -> Result<Backend, String> {
        let devid = parse_u64(devid.as_bytes())
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("devid {}", printable(devid.as_bytes(), 24)))?;
        let dev = raw
            .dev
            .as_deref()
            .ok_or_else(|| "dev missing".to_string())?;
        let dev = text(KEY_DEV, dev, 64)?;
        if !valid_name(&dev) {
            return Err(format!("{KEY_DEV}: {}", printable(dev.as_bytes(), 48)));
        }
        if let Some(v) = &raw.frontend_id {
            if parse_u64(v).ok() != Some(u64::from(domid)) {
                return Err(format!("{KEY_FRONTEND_ID}: {}", printable(v, 24)));
            }
        }
        let state = match &raw.state {
            None => None,
            Some(v) => Some(
                parse_u64(v)
                    .ok()
                    .and_then(|n| u8::try_from(n).ok())
                    .filter(|n| *n <= 8)
                    .ok_or_else(|| format!("{KEY_STATE}: {}", printable(v, 24)))?,
            ),
        };
        let type_ = match &raw.type_ {
            None => None,
            Some(v) => Some(text(KEY_TYPE, v, 16)?),
        };
        let storage = match &raw.params {
            None => None,
            Some(v) => StorageId::from_params(kind, &text(KEY_PARAMS, v, PARAMS_MAX)?),
        };
        let physical_device = match &raw.physical_device {
            None => None,
            Some(v) => Some(
                device_number(v)
                    .ok_or_else(|| format!("{KEY_PHYSICAL_DEVICE}: {}", printable(v, 24)))?,
            ),
        };
        Ok(Backend {
            kind,
            devid,
            dev,
            type_,
            state,
            storage,
            physical_device,
        })
    }

    /// The XenbusState as a word (`connected`, `closed`, ...).
    pub fn state_word(&self) -> &'static str {
        match self.state {
            None => "no-state",
            Some(0) => "unknown",
            Some(1) => "initialising",
            Some(2) => "initwait",
            Some(3) => "initialised",
            Some(4) => "connected",
            Some(5) => "closing",
            Some(6) => "closed",
            Some(7) => "reconfiguring",
            Some(_) => "reconfigured",
        }
    }
}

// ---------------------------------------------------------------- legs

/// Where a leg's storage is, as far as dom0 can tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "via", rename_all = "kebab-case")]
pub enum Place {
    /// The leg is this backend's device (or a partition of it).
    Backend {
        kind: BackendKind,
        devid: u32,
        storage: StorageId,
    },
    /// A backend with nothing behind it (no `params`).
    NoParams { kind: BackendKind, devid: u32 },
    /// No dom0 backend of this guest has this device.
    NoBackend,
}

/// One leg a guest published (a member of one of its arrays), with where it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Leg {
    pub array: String,
    /// The name the guest published (untrusted: escape before showing).
    pub device: String,
    /// Its state word as published (`in_sync`, `faulty`, a leg phase, ...).
    pub state: String,
    /// What this leg says about its storage ([`leg_health`]).
    pub health: Health,
    #[serde(flatten)]
    pub place: Place,
}

/// What one leg says about the storage under it: `ok` when it is in sync
/// (`in_sync`, or `up`: mdstat's only word for a working member), unless its
/// array is flagged `stalled` or `flapping` (which leg is to blame is not
/// known, so each gets the array's health); otherwise the array's health,
/// at least `recovering` for a leg being rebuilt, `unknown` for an unknown
/// state and `degraded` for any other word (`faulty`, a leg phase such as
/// `failed` or `reconnecting`, or garbage). A `spare` takes its array's
/// health: a hot spare in a whole array is fine.
pub fn leg_health(a: &ArrayJson, state: &str) -> Health {
    let array = reported_health(
        a.health,
        a.flags.iter().any(|f| f == FLAG_FLAPPING),
        a.flags.iter().any(|f| f == FLAG_STALLED),
    );
    match state {
        "in_sync" | "up" if a.flags.is_empty() => Health::Ok,
        "in_sync" | "up" | "spare" => array,
        "rebuilding" => array.max(Health::Recovering),
        "unknown" => array.max(Health::Unknown),
        _ => array.max(Health::Degraded),
    }
}

/// Which backend has guest device `device`: the one whose `dev` it is, else
/// the one it is a partition of.
pub fn place(device: &str, backends: &[Backend]) -> Place {
    if !valid_name(device) {
        return Place::NoBackend;
    }
    let b = backends
        .iter()
        .find(|b| b.dev == device)
        .or_else(|| backends.iter().find(|b| on_disk(device, &b.dev)));
    match b {
        None => Place::NoBackend,
        Some(b) => match &b.storage {
            Some(s) => Place::Backend {
                kind: b.kind,
                devid: b.devid,
                storage: s.clone(),
            },
            None => Place::NoParams {
                kind: b.kind,
                devid: b.devid,
            },
        },
    }
}

/// Every leg of every array a guest published, mapped to its backends.
/// (Members an agent had to cut from a long list, `more_members`, are not
/// listed and so not mapped.)
pub fn legs(arrays: &BTreeMap<String, ArrayJson>, backends: &[Backend]) -> Vec<Leg> {
    arrays
        .iter()
        .flat_map(|(name, a)| {
            a.members.iter().map(move |(device, state)| Leg {
                array: name.clone(),
                device: device.clone(),
                state: state.clone(),
                health: leg_health(a, state),
                place: place(device, backends),
            })
        })
        .collect()
}

// ---------------------------------------------------------------- patterns

/// `--storage`: a storage id, where `*` stands for any run of characters
/// (`/dev/disk/by-path/ip-10.0.0.2:*`); nothing else is special.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoragePattern(String);

impl StoragePattern {
    pub fn parse(s: &str) -> Result<StoragePattern, String> {
        if s.is_empty() || s.len() > PARAMS_MAX || s.chars().any(char::is_control) {
            return Err(format!("--storage: 1 to {PARAMS_MAX} printable characters"));
        }
        Ok(StoragePattern(s.to_string()))
    }

    pub fn matches(&self, id: &StorageId) -> bool {
        glob(self.0.as_bytes(), id.as_str().as_bytes())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `*`-only glob: the last star seen backtracks, so it is linear in practice.
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

// ---------------------------------------------------------------- grouping

/// One guest as the grouping needs it.
#[derive(Debug, Clone, Copy)]
pub struct GuestStorage<'a> {
    pub domid: u32,
    pub name: &'a str,
    pub verdict: Verdict,
    /// Part of what it published could not be read: its legs' word is not
    /// taken as `ok` on any storage (at least `unknown`).
    pub doubtful: bool,
    pub backends: &'a [Backend],
    pub legs: &'a [Leg],
}

impl<'a> GuestStorage<'a> {
    /// Each guest with its backends and legs (the three slices side by side).
    pub fn of_all(
        guests: &'a [super::guest::GuestStatus],
        backends: &'a [Vec<Backend>],
        legs: &'a [Vec<Leg>],
    ) -> Vec<GuestStorage<'a>> {
        guests
            .iter()
            .zip(backends)
            .zip(legs)
            .map(|((g, b), l)| GuestStorage {
                domid: g.domid,
                name: &g.name,
                verdict: g.verdict(),
                doubtful: !g.errors.is_empty(),
                backends: b,
                legs: l,
            })
            .collect()
    }
}

/// One guest under one storage.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub domid: u32,
    pub name: String,
    /// What this guest says of this storage: its worst leg on it (at least
    /// `unknown` when the guest is doubtful, `silent` / `stopped` when its
    /// agent cannot stand behind it);
    /// `None`: it published no leg on it (no mdguard, or a disk not in md).
    pub verdict: Option<Verdict>,
    /// Its legs on this storage.
    pub legs: Vec<Leg>,
    /// Its backends on this storage.
    pub backends: Vec<Backend>,
}

/// Every guest with a backend on one storage.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageGroup {
    pub storage: StorageId,
    /// By domid.
    pub members: Vec<Member>,
}

impl StorageGroup {
    /// The worst member's verdict on this storage; `None` when no member has
    /// an md leg on it.
    pub fn worst(&self) -> Option<Verdict> {
        self.members
            .iter()
            .filter_map(|m| m.verdict)
            .max_by_key(|v| v.severity())
    }
}

/// A guest with legs no backend explains.
#[derive(Debug, Clone, PartialEq)]
pub struct Unmapped {
    pub domid: u32,
    pub name: String,
    pub verdict: Verdict,
    pub legs: Vec<Leg>,
}

/// The storage view of a host.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Grouping {
    /// By storage id.
    pub groups: Vec<StorageGroup>,
    /// By domid.
    pub unmapped: Vec<Unmapped>,
}

/// Group every guest under each storage one of its backends uses; with
/// `only`, under that pattern alone: every backend whose storage it matches
/// counts as one storage named by the pattern (`/dev/vg_storage2/*`), and
/// legs no backend explains are left out (they are on no such storage).
pub fn group(guests: &[GuestStorage<'_>], only: Option<&StoragePattern>) -> Grouping {
    let key = |s: &StorageId| match only {
        None => Some(s.clone()),
        Some(p) => p.matches(s).then(|| StorageId(p.as_str().to_string())),
    };
    let mut by: BTreeMap<StorageId, Vec<Member>> = BTreeMap::new();
    let mut unmapped = Vec::new();
    let mut guests = guests.to_vec();
    guests.sort_by_key(|g| g.domid);
    for g in &guests {
        let mut mine: BTreeMap<StorageId, Member> = BTreeMap::new();
        for b in g.backends {
            let Some(s) = b.storage.as_ref().and_then(key) else {
                continue;
            };
            mine.entry(s)
                .or_insert_with(|| Member {
                    domid: g.domid,
                    name: g.name.to_string(),
                    verdict: None,
                    legs: Vec::new(),
                    backends: Vec::new(),
                })
                .backends
                .push(b.clone());
        }
        let mut lost = Vec::new();
        for l in g.legs {
            match &l.place {
                Place::Backend { storage, .. } => {
                    if let Some(m) = key(storage).and_then(|k| mine.get_mut(&k)) {
                        m.legs.push(l.clone());
                    }
                }
                Place::NoParams { .. } | Place::NoBackend if only.is_none() => lost.push(l.clone()),
                Place::NoParams { .. } | Place::NoBackend => {}
            }
        }
        for (s, mut m) in mine {
            if let Some(mut worst) = m.legs.iter().map(|l| l.health).max() {
                if g.doubtful {
                    worst = worst.max(Health::Unknown);
                }
                m.verdict = Some(match g.verdict {
                    Verdict::Silent | Verdict::Stopped => g.verdict,
                    _ => Verdict::Health(worst),
                });
            }
            by.entry(s).or_default().push(m);
        }
        if !lost.is_empty() {
            unmapped.push(Unmapped {
                domid: g.domid,
                name: g.name.to_string(),
                verdict: g.verdict,
                legs: lost,
            });
        }
    }
    Grouping {
        groups: by
            .into_iter()
            .map(|(storage, members)| StorageGroup { storage, members })
            .collect(),
        unmapped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Health::*;

    fn raw(dev: &str, params: &str) -> RawBackend {
        RawBackend {
            dev: Some(dev.as_bytes().to_vec()),
            params: Some(params.as_bytes().to_vec()),
            type_: Some(b"phy".to_vec()),
            state: Some(b"4".to_vec()),
            frontend_id: Some(b"5".to_vec()),
            physical_device: Some(b"2b:2".to_vec()),
        }
    }

    fn vbd(devid: u32, dev: &str, params: &str) -> Backend {
        Backend::parse(BackendKind::Vbd, 5, &devid.to_string(), &raw(dev, params)).unwrap()
    }

    fn array(health: Health, members: &[(&str, &str)], flags: &[&str]) -> ArrayJson {
        ArrayJson {
            health,
            level: "raid1".into(),
            disks: 2,
            in_sync: 2,
            members: members
                .iter()
                .map(|(d, s)| (d.to_string(), s.to_string()))
                .collect(),
            sync: None,
            flags: flags.iter().map(|f| f.to_string()).collect(),
            more_members: 0,
            refused: vec![],
        }
    }

    #[test]
    fn backends_parse_what_xl_writes_and_refuse_garbage() {
        let b = vbd(51744, "xvdc", "/dev/nbd2");
        assert_eq!(b.dev, "xvdc");
        assert_eq!(b.storage.as_ref().unwrap().as_str(), "/dev/nbd2");
        assert_eq!(b.type_.as_deref(), Some("phy"));
        assert_eq!(b.state_word(), "connected");
        assert_eq!(b.physical_device, Some((43, 2)), "hex, as stat %t:%T");
        // qdisk: the format libxl puts in front is not part of the storage
        let q = Backend::parse(
            BackendKind::Qdisk,
            5,
            "51760",
            &raw("xvdd", "aio:/srv/img/web01.img"),
        )
        .unwrap();
        assert_eq!(q.storage.unwrap().as_str(), "/srv/img/web01.img");
        // a vbd's params is a path, colons and all (by-path names have them)
        let p = vbd(
            1,
            "xvde",
            "/dev/disk/by-path/ip-10.0.0.2:3260-iscsi-iqn.x-lun-0",
        );
        assert_eq!(
            p.storage.unwrap().as_str(),
            "/dev/disk/by-path/ip-10.0.0.2:3260-iscsi-iqn.x-lun-0"
        );
        // no params (an empty CD-ROM drive): no storage, not an error
        let mut r = raw("xvdf", "");
        assert_eq!(
            Backend::parse(BackendKind::Vbd, 5, "7", &r)
                .unwrap()
                .storage,
            None
        );
        r.params = None;
        assert_eq!(
            Backend::parse(BackendKind::Vbd, 5, "7", &r)
                .unwrap()
                .storage,
            None
        );
        let bad = |f: &dyn Fn(&mut RawBackend), devid: &str| {
            let mut r = raw("xvdc", "/dev/nbd2");
            f(&mut r);
            Backend::parse(BackendKind::Vbd, 5, devid, &r).unwrap_err()
        };
        assert_eq!(bad(&|_| {}, "x1"), "devid x1");
        assert_eq!(bad(&|_| {}, "4294967296"), "devid 4294967296");
        assert_eq!(bad(&|r| r.dev = None, "1"), "dev missing");
        assert_eq!(bad(&|r| r.dev = Some(b"../x".to_vec()), "1"), "dev: ../x");
        assert_eq!(
            bad(&|r| r.frontend_id = Some(b"6".to_vec()), "1"),
            "frontend-id: 6"
        );
        assert_eq!(bad(&|r| r.state = Some(b"44".to_vec()), "1"), "state: 44");
        assert_eq!(
            bad(&|r| r.params = Some(b"/dev/\x1b[2J".to_vec()), "1"),
            "params: /dev/\\x1b[2J"
        );
        assert_eq!(
            bad(&|r| r.params = Some(vec![b'a'; PARAMS_MAX + 1]), "1"),
            "params: 1025 bytes (max 1024)"
        );
        assert_eq!(
            bad(&|r| r.params = Some(b"\xff".to_vec()), "1"),
            "params: \\xff"
        );
        for pd in [
            &b"43"[..],
            b"fe:",
            b":1",
            b"fe:1:2",
            b"g:1",
            b"123456789:1",
            b" fe:1",
        ] {
            assert_eq!(
                bad(&|r| r.physical_device = Some(pd.to_vec()), "1"),
                format!("physical-device: {}", printable(pd, 24))
            );
        }
        let mut r = raw("xvdc", "/dev/mapper/leg1");
        r.physical_device = Some(b"FE:1f".to_vec());
        let b = Backend::parse(BackendKind::Vbd, 5, "1", &r).unwrap();
        assert_eq!(b.physical_device, Some((254, 31)));
        r.physical_device = None;
        let b = Backend::parse(BackendKind::Vbd, 5, "1", &r).unwrap();
        assert_eq!(b.physical_device, None, "not written yet, or a qdisk");
    }

    #[test]
    fn a_leg_is_mapped_by_its_disk_never_guessed() {
        let backends = [
            vbd(51728, "xvdb", "/dev/nbd1"),
            vbd(51744, "xvdc", "/dev/nbd2"),
        ];
        let on = |dev: &str| place(dev, &backends);
        assert_eq!(
            on("xvdc"),
            Place::Backend {
                kind: BackendKind::Vbd,
                devid: 51744,
                storage: StorageId("/dev/nbd2".into())
            }
        );
        assert_eq!(on("xvdb2"), on("xvdb"), "a partition is on its disk");
        assert_eq!(on("xvdbb"), Place::NoBackend, "xvdbb is not on xvdb");
        assert_eq!(on("xvdd"), Place::NoBackend);
        assert_eq!(on("nbd0p1"), Place::NoBackend, "nbd inside the guest");
        assert_eq!(on("../xvdc"), Place::NoBackend);
        // a partition given as its own vbd is matched exactly
        let part = [
            vbd(51745, "xvdc1", "/dev/nbd7"),
            vbd(51744, "xvdc", "/dev/nbd2"),
        ];
        assert!(matches!(
            place("xvdc1", &part),
            Place::Backend { devid: 51745, .. }
        ));
        let empty = [Backend::parse(BackendKind::Vbd, 5, "51744", &raw("xvdc", "")).unwrap()];
        assert_eq!(
            place("xvdc", &empty),
            Place::NoParams {
                kind: BackendKind::Vbd,
                devid: 51744
            }
        );
    }

    #[test]
    fn what_a_leg_says_about_its_storage() {
        let a = array(Degraded, &[], &[]);
        assert_eq!(leg_health(&a, "in_sync"), Ok, "the other leg failed");
        assert_eq!(leg_health(&a, "up"), Ok);
        assert_eq!(leg_health(&a, "faulty"), Degraded);
        assert_eq!(leg_health(&a, "failed"), Degraded, "a leg phase");
        assert_eq!(leg_health(&a, "reconnecting"), Degraded);
        assert_eq!(leg_health(&a, "pwned"), Degraded, "garbage");
        assert_eq!(leg_health(&a, "spare"), Degraded);
        assert_eq!(leg_health(&a, "unknown"), Degraded);
        let r = array(Recovering, &[], &[]);
        assert_eq!(leg_health(&r, "rebuilding"), Recovering);
        assert_eq!(leg_health(&r, "in_sync"), Ok);
        let ok = array(Ok, &[], &[]);
        assert_eq!(leg_health(&ok, "spare"), Ok, "a hot spare");
        assert_eq!(leg_health(&ok, "unknown"), Unknown);
        assert_eq!(leg_health(&ok, "rebuilding"), Recovering);
        assert_eq!(leg_health(&ok, "faulty"), Degraded);
        // a stall is not pinned on one leg: every leg gets the array's health
        let st = array(Ok, &[], &[FLAG_STALLED]);
        assert_eq!(leg_health(&st, "in_sync"), Degraded);
        let f = array(Failed, &[], &[FLAG_FLAPPING]);
        assert_eq!(leg_health(&f, "up"), Failed);
    }

    #[test]
    fn storage_patterns() {
        let id = |s: &str| StorageId(s.into());
        let p = |s: &str| StoragePattern::parse(s).unwrap();
        assert!(p("/dev/nbd2").matches(&id("/dev/nbd2")));
        assert!(!p("/dev/nbd2").matches(&id("/dev/nbd20")));
        assert!(p("/dev/nbd*").matches(&id("/dev/nbd20")));
        assert!(p("*").matches(&id("/x")));
        assert!(
            p("*:3260-*lun-*").matches(&id("/dev/disk/by-path/ip-10.0.0.2:3260-iscsi-iqn.x-lun-0"))
        );
        assert!(!p("*:3261-*").matches(&id("/dev/disk/by-path/ip-10.0.0.2:3260-iscsi")));
        assert!(p("/srv/*/web*.img").matches(&id("/srv/a/b/web01.img")));
        assert!(!p("/srv/*/web*.img").matches(&id("/srv/a/b/web01.img.bak")));
        assert!(p("a**b").matches(&id("ab")));
        // pathological patterns stay fast
        let long = "a".repeat(1000);
        assert!(!p(&"*a".repeat(40)).matches(&id(&format!("{long}b"))));
        for bad in ["", "a\nb"] {
            assert!(StoragePattern::parse(bad).is_err(), "{bad:?}");
        }
        assert!(StoragePattern::parse(&"a".repeat(PARAMS_MAX + 1)).is_err());
    }

    #[test]
    fn grouping_by_storage() {
        // web (5): md0 on xvdb (nbd1) + xvdc (nbd2, faulty)
        // db (6): md0 on xvdb (nbd1) + xvdc1 (nbd2, in sync); db is silent
        // app (7): md0 from nbd inside the guest; one vbd on nbd2 not in md
        // bare (8): no mdguard, a vbd on nbd1
        let web_b = [
            vbd(51728, "xvdb", "/dev/nbd1"),
            vbd(51744, "xvdc", "/dev/nbd2"),
        ];
        let db_b = [
            vbd(51728, "xvdb", "/dev/nbd1"),
            vbd(51744, "xvdc", "/dev/nbd2"),
        ];
        let app_b = [vbd(51760, "xvdd", "/dev/nbd2")];
        let bare_b = [vbd(51712, "xvda", "/dev/nbd1")];
        let arr = |m: &[(&str, &str)], h| BTreeMap::from([("md0".to_string(), array(h, m, &[]))]);
        let web_l = legs(
            &arr(&[("xvdb", "in_sync"), ("xvdc", "faulty")], Degraded),
            &web_b,
        );
        let db_l = legs(
            &arr(&[("xvdb", "in_sync"), ("xvdc1", "in_sync")], Ok),
            &db_b,
        );
        let app_l = legs(
            &arr(&[("nbd0p1", "in_sync"), ("nbd1p1", "failed")], Degraded),
            &app_b,
        );
        let all = [
            GuestStorage {
                domid: 8,
                name: "bare",
                verdict: Verdict::NoData,
                doubtful: false,
                backends: &bare_b,
                legs: &[],
            },
            GuestStorage {
                domid: 5,
                name: "web",
                verdict: Verdict::Health(Degraded),
                doubtful: false,
                backends: &web_b,
                legs: &web_l,
            },
            GuestStorage {
                domid: 6,
                name: "db",
                verdict: Verdict::Silent,
                doubtful: false,
                backends: &db_b,
                legs: &db_l,
            },
            GuestStorage {
                domid: 7,
                name: "app",
                verdict: Verdict::Health(Degraded),
                doubtful: false,
                backends: &app_b,
                legs: &app_l,
            },
        ];
        let g = group(&all, None);
        let names: Vec<&str> = g.groups.iter().map(|s| s.storage.as_str()).collect();
        assert_eq!(names, ["/dev/nbd1", "/dev/nbd2"]);
        let seen = |i: usize| -> Vec<(String, Option<&'static str>)> {
            g.groups[i]
                .members
                .iter()
                .map(|m| (m.name.clone(), m.verdict.map(Verdict::word)))
                .collect()
        };
        // nbd1: web's leg is fine there; db is silent; bare publishes no leg
        assert_eq!(
            seen(0),
            [
                ("web".into(), Some("ok")),
                ("db".into(), Some("silent")),
                ("bare".into(), None)
            ]
        );
        // nbd2: web's faulty leg; db's partition in sync but silent; app's
        // vbd there holds no md leg
        assert_eq!(
            seen(1),
            [
                ("web".into(), Some("degraded")),
                ("db".into(), Some("silent")),
                ("app".into(), None)
            ]
        );
        assert_eq!(g.groups[1].members[1].legs[0].device, "xvdc1");
        assert_eq!(g.groups[1].members[0].backends[0].devid, 51744);
        // app's legs come from inside the guest: unmapped, not guessed
        assert_eq!(g.unmapped.len(), 1);
        assert_eq!(g.unmapped[0].name, "app");
        let lost: Vec<&str> = g.unmapped[0]
            .legs
            .iter()
            .map(|l| l.device.as_str())
            .collect();
        assert_eq!(lost, ["nbd0p1", "nbd1p1"]);
        assert_eq!(g.unmapped[0].legs[1].health, Degraded);
        assert_eq!(g.groups[1].worst(), Some(Verdict::Health(Degraded)));
        assert_eq!(g.groups[0].worst(), Some(Verdict::Silent));

        // one pattern: everything it matches is one storage, unmapped legs
        // are on no such storage
        let pat = |s: &str| StoragePattern::parse(s).unwrap();
        let g = group(&all, Some(&pat("/dev/nbd*")));
        assert_eq!(g.groups.len(), 1);
        assert_eq!(g.groups[0].storage.as_str(), "/dev/nbd*");
        let words: Vec<(u32, Option<&str>)> = g.groups[0]
            .members
            .iter()
            .map(|m| (m.domid, m.verdict.map(Verdict::word)))
            .collect();
        assert_eq!(
            words,
            [
                (5, Some("degraded")),
                (6, Some("silent")),
                (7, None),
                (8, None)
            ]
        );
        assert_eq!(g.groups[0].members[0].legs.len(), 2);
        assert_eq!(g.groups[0].members[0].backends.len(), 2);
        assert!(g.unmapped.is_empty());
        let g = group(&all, Some(&pat("/dev/nbd1")));
        assert_eq!(g.groups[0].worst(), Some(Verdict::Silent));
        assert_eq!(g.groups[0].members.len(), 3, "web, db, bare");
        assert_eq!(group(&all, Some(&pat("/dev/sd*"))), Grouping::default());

        // a guest that published something unreadable is never ok on a storage
        let mut doubt = all;
        doubt[1].doubtful = true;
        let g = group(&doubt, Some(&pat("/dev/nbd1")));
        assert_eq!(
            g.groups[0].members[0].verdict,
            Some(Verdict::Health(Unknown))
        );
    }
}
