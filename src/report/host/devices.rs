//! Storage back, seen as a dom0 block device. Pure: the service reads the
//! kernel's uevents and the device's size (`service.rs`).
//!
//! A vbd backend's state says nothing when the storage under it returns in
//! place: dom0's device (an iSCSI LUN, a device-mapper device over a
//! reconnected transport) stays open in blkback, the backend stays connected,
//! and the guest's node stays. What dom0 does see is its kernel's uevent for
//! that device: a `change` when a device-mapper table is swapped and resumed
//! (LVM, a path reinstated by multipathd), a `change` or `add` when a
//! transport reconnects its device. The block hotplug script wrote which
//! device blkback opened (`physical-device`), so such an event is matched to
//! the backends on it by device number, never by name.
//!
//! The guests asked to probe are those with a connected backend on the device
//! and a leg on that backend that is not in sync: a guest with nothing to
//! bring back is not written to. A device that changed to no size (an nbd
//! device disconnecting) is no return; the service checks that before asking.

use super::storage::{leg_health, place, Backend, BackendKind, Place, STATE_CONNECTED};
use crate::report::schema::{ArrayJson, Health};
use std::collections::BTreeMap;

/// One guest as the match needs it.
#[derive(Debug, Clone, Copy)]
pub struct GuestOn<'a> {
    pub domid: u32,
    /// dom0's backends for it.
    pub backends: &'a [Backend],
    /// What it published.
    pub arrays: &'a BTreeMap<String, ArrayJson>,
}

/// A guest to ask to probe, with its backends on the device and the legs on
/// them that are not in sync (device names as published).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Concerned<'a> {
    pub domid: u32,
    pub backends: Vec<&'a Backend>,
    pub legs: Vec<String>,
}

/// The guests whose legs dom0's block device `dev` (major, minor) holds and
/// that have one of them to bring back, by domid.
pub fn concerned<'a>(dev: (u32, u32), guests: &[GuestOn<'a>]) -> Vec<Concerned<'a>> {
    let mut out: Vec<Concerned<'a>> = guests
        .iter()
        .filter_map(|g| {
            let on: Vec<&'a Backend> = g
                .backends
                .iter()
                .filter(|b| {
                    b.kind == BackendKind::Vbd
                        && b.physical_device == Some(dev)
                        && b.state == Some(STATE_CONNECTED)
                })
                .collect();
            if on.is_empty() {
                return None;
            }
            let legs: Vec<String> = g
                .arrays
                .values()
                .flat_map(|a| a.members.iter().map(move |(d, s)| (a, d, s)))
                .filter(|(a, d, s)| {
                    leg_health(a, s) != Health::Ok
                        && match place(d, g.backends) {
                            Place::Backend { kind, devid, .. } => {
                                on.iter().any(|b| b.kind == kind && b.devid == devid)
                            }
                            Place::NoParams { .. } | Place::NoBackend => false,
                        }
                })
                .map(|(_, d, _)| d.clone())
                .collect();
            (!legs.is_empty()).then_some(Concerned {
                domid: g.domid,
                backends: on,
                legs,
            })
        })
        .collect();
    out.sort_by_key(|c| c.domid);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::host::storage::RawBackend;

    fn vbd(domid: u32, devid: u32, dev: &str, params: &str, pd: Option<&str>) -> Backend {
        let raw = RawBackend {
            dev: Some(dev.into()),
            params: Some(params.into()),
            type_: Some(b"phy".to_vec()),
            state: Some(b"4".to_vec()),
            frontend_id: Some(domid.to_string().into_bytes()),
            physical_device: pd.map(|p| p.as_bytes().to_vec()),
        };
        Backend::parse(BackendKind::Vbd, domid, &devid.to_string(), &raw).unwrap()
    }

    fn md0(members: &[(&str, &str)]) -> BTreeMap<String, ArrayJson> {
        let j = format!(
            r#"{{"health":"degraded","level":"raid1","disks":2,"in_sync":1,"members":[{}]}}"#,
            members
                .iter()
                .map(|(d, s)| format!(r#"["{d}","{s}"]"#))
                .collect::<Vec<_>>()
                .join(",")
        );
        BTreeMap::from([("md0".to_string(), ArrayJson::parse(j.as_bytes()).unwrap())])
    }

    #[test]
    fn a_device_back_concerns_the_guests_with_a_leg_to_bring_back_on_it() {
        // dm-1 (254:1) serves guest 3's xvdc and guest 4's xvdc; guest 5's
        // xvdb is elsewhere; guest 6's xvdc on dm-1 is in sync
        let b3 = [
            vbd(3, 51728, "xvdb", "/dev/nbd0", Some("2b:0")),
            vbd(3, 51744, "xvdc", "/dev/mapper/leg1", Some("fe:1")),
        ];
        let b4 = [vbd(4, 51744, "xvdc", "/dev/mapper/leg1", Some("fe:1"))];
        let b5 = [vbd(5, 51728, "xvdb", "/dev/mapper/leg2", Some("fe:2"))];
        let b6 = [vbd(6, 51744, "xvdc", "/dev/mapper/leg1", Some("fe:1"))];
        let a3 = md0(&[("xvdb", "in_sync"), ("xvdc", "faulty")]);
        let a4 = md0(&[("xvdb", "in_sync"), ("xvdc", "failed")]);
        let a5 = md0(&[("xvdb", "failed"), ("xvdc", "in_sync")]);
        let a6 = md0(&[("xvdb", "faulty"), ("xvdc", "in_sync")]);
        let guests = [
            GuestOn {
                domid: 4,
                backends: &b4,
                arrays: &a4,
            },
            GuestOn {
                domid: 3,
                backends: &b3,
                arrays: &a3,
            },
            GuestOn {
                domid: 5,
                backends: &b5,
                arrays: &a5,
            },
            GuestOn {
                domid: 6,
                backends: &b6,
                arrays: &a6,
            },
        ];
        let c = concerned((254, 1), &guests);
        let seen: Vec<(u32, Vec<String>, Vec<&str>)> = c
            .iter()
            .map(|c| {
                (
                    c.domid,
                    c.legs.clone(),
                    c.backends.iter().map(|b| b.dev.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (3, vec!["xvdc".to_string()], vec!["xvdc"]),
                (4, vec!["xvdc".to_string()], vec!["xvdc"]),
            ]
        );
        assert_eq!(concerned((254, 2), &guests)[0].domid, 5);
        assert!(
            concerned((43, 0), &guests).is_empty(),
            "guest 3's xvdb is in sync"
        );
        assert!(concerned((254, 9), &guests).is_empty(), "no backend on it");
    }

    #[test]
    fn only_a_connected_vbd_whose_device_is_known_counts() {
        let a = md0(&[("xvdb", "in_sync"), ("xvdc", "faulty")]);
        let check = |b: Backend| {
            let bs = [b];
            concerned(
                (254, 1),
                &[GuestOn {
                    domid: 3,
                    backends: &bs,
                    arrays: &a,
                }],
            )
            .len()
        };
        assert_eq!(
            check(vbd(3, 51744, "xvdc", "/dev/mapper/leg1", Some("fe:1"))),
            1
        );
        // the hotplug script has not written it (yet): never guessed from params
        assert_eq!(check(vbd(3, 51744, "xvdc", "/dev/mapper/leg1", None)), 0);
        let mut closing = vbd(3, 51744, "xvdc", "/dev/mapper/leg1", Some("fe:1"));
        closing.state = Some(5);
        assert_eq!(check(closing), 0, "a backend going away is no return");
        let mut q = vbd(3, 51744, "xvdc", "/srv/leg1.img", Some("fe:1"));
        q.kind = BackendKind::Qdisk;
        assert_eq!(check(q), 0, "QEMU opens files, not dom0 block devices");
        // a partition of the vbd's disk is a leg on it
        let p = md0(&[("xvdb", "in_sync"), ("xvdc1", "failed")]);
        let bs = [vbd(3, 51744, "xvdc", "/dev/mapper/leg1", Some("fe:1"))];
        let c = concerned(
            (254, 1),
            &[GuestOn {
                domid: 3,
                backends: &bs,
                arrays: &p,
            }],
        );
        assert_eq!(c[0].legs, ["xvdc1"]);
    }
}
