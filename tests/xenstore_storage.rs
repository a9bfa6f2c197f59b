//! The storage behind each leg, seen from dom0, against a real xenstored:
//! guests publish as real guest domains (through the fixture's ring bridge),
//! dom0's backends are written as xl writes them (`Xenstored::add_vbd`), and
//! `mdguard host status --by-storage / --storage` and `host probe --storage`
//! are run as dom0 would. Ignored by plain `cargo test`; run tests/xs/run.sh.
#[path = "xs/fixture.rs"]
mod fixture;

use fixture::{guest, status_guest, xvd_devid, Xenstored};
use mdguard::report::publisher::Publisher;
use mdguard::report::schema::{ArraySummary, ControlEvent, ControlState, Health};
use mdguard::xenstore::{Client, XsErrno};
use std::process::Output;

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", out(o)))
}

/// md0 over `legs` (device, state), health as md would derive it.
fn md0(health: Health, legs: &[(&str, &str)]) -> ArraySummary {
    ArraySummary {
        name: "md0".into(),
        health,
        level: "raid1".into(),
        raid_disks: 2,
        in_sync: legs.iter().filter(|l| l.1 == "in_sync").count() as u32,
        members: legs
            .iter()
            .map(|(d, s)| (d.to_string(), s.to_string()))
            .collect(),
        sync: None,
        flapping: false,
        stalled: false,
        refused: vec![],
    }
}

/// A host like the README's: each guest's md0 has one leg from storage1 and
/// one from storage2, each an LV of a volume group on that server's iSCSI
/// LUN in dom0, given to the guest as a vbd.
/// - web01 (5): its storage2 leg failed: degraded;
/// - web02 (6): partitions of its vbds, both in sync;
/// - db01 (7): its storage2 leg is a file on an NFS mount in dom0, served
///   by QEMU (qdisk);
/// - app03 (8): nbd inside the guest, no vbd for its legs; one vbd (its
///   scratch disk) on storage2;
/// - bare (9): no mdguard, a vbd on storage2.
struct Host {
    xs: Xenstored,
    /// Each publishing guest's own connection (through its ring).
    guests: Vec<(Client, Publisher)>,
}

fn host() -> Host {
    let mut xs = Xenstored::start();
    let mut socks = Vec::new();
    for (id, name) in [(5, "web01"), (6, "web02"), (7, "db01"), (8, "app03")] {
        socks.push(xs.add_guest(id, name));
    }
    xs.add_guest(9, "bare");
    xs.add_vbd(5, "vbd", "xvdb", "/dev/vg_storage1/web01");
    xs.add_vbd(5, "vbd", "xvdc", "/dev/vg_storage2/web01");
    xs.add_vbd(6, "vbd", "xvdb", "/dev/vg_storage1/web02");
    xs.add_vbd(6, "vbd", "xvdc", "/dev/vg_storage2/web02");
    xs.add_vbd(7, "vbd", "xvdb", "/dev/vg_storage1/db01");
    xs.add_vbd(7, "qdisk", "xvdc", "/mnt/storage2/db01.img");
    xs.add_vbd(8, "vbd", "xvde", "/dev/vg_storage2/app03-scratch");
    xs.add_vbd(9, "vbd", "xvda", "/dev/vg_storage2/bare");
    let legs: [(Health, &[(&str, &str)]); 4] = [
        (Health::Degraded, &[("xvdb", "in_sync"), ("xvdc", "faulty")]),
        (Health::Ok, &[("xvdb1", "in_sync"), ("xvdc1", "in_sync")]),
        (Health::Ok, &[("xvdb", "in_sync"), ("xvdc", "in_sync")]),
        (
            Health::Degraded,
            &[("nbd0p1", "in_sync"), ("nbd1p1", "failed")],
        ),
    ];
    let guests = socks
        .iter()
        .zip(legs)
        .map(|(sock, (h, l))| {
            let mut c = guest(sock);
            let mut p = Publisher::default();
            p.publish(&mut c, &[md0(h, l)], 1000).unwrap();
            (c, p)
        })
        .collect();
    Host { xs, guests }
}

/// `host status --by-storage`: one line per storage (the backend's
/// `params`), each guest with its worst leg on it, and the legs no backend
/// explains; in text, JSON and the exit code.
#[test]
#[ignore = "needs xenstored: run tests/xs/provision.sh (scripts/test-all.sh does)"]
fn status_groups_legs_by_the_storage_behind_them() {
    let h = host();
    let o = h.xs.mdguard_host(&["status", "--by-storage", "--no-ping"]);
    let text = out(&o);
    assert_eq!(o.status.code(), Some(2), "{text}{}", err(&o));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "storage /dev/vg_storage1/db01: 1 guest: 1 ok (db01)",
            "storage /dev/vg_storage1/web01: 1 guest: 1 ok (web01)",
            "storage /dev/vg_storage1/web02: 1 guest: 1 ok (web02)",
            "storage /dev/vg_storage2/app03-scratch: 1 guest: 1 without an md leg (app03)",
            "storage /dev/vg_storage2/bare: 1 guest: 1 without an md leg (bare)",
            "storage /dev/vg_storage2/web01: 1 guest: 1 degraded (web01)",
            "storage /dev/vg_storage2/web02: 1 guest: 1 ok (web02)",
            "storage /mnt/storage2/db01.img: 1 guest: 1 ok (db01)",
            "no dom0 backend: app03 degraded: md0 nbd0p1 in_sync, md0 nbd1p1 failed",
        ],
        "{text}"
    );

    // the plugin over the same host (the README's example)
    let o = h.xs.mdguard_host(&["check", "--no-ping"]);
    assert_eq!(
        out(&o),
        "MDGUARD CRITICAL - web01 degraded (md0 degraded 1/2); app03 degraded (md0 degraded 1/2); \
         2 ok | guests=4 ok=2 warning=0 critical=2 unknown=0 no_data=2\n"
    );
    assert_eq!(o.status.code(), Some(2));

    // one server: everything on storage2, whichever backend serves it
    let o =
        h.xs.mdguard_host(&["status", "--storage", "*storage2*", "--no-ping"]);
    assert_eq!(
        out(&o),
        "storage *storage2*: 5 guests: 1 degraded (web01), 2 ok (web02 db01), \
         2 without an md leg (app03 bare)\n"
    );
    assert_eq!(o.status.code(), Some(2), "storage2 has a failed leg");
    // storage1 is whole: exit 0, although web01 as a whole is degraded
    let o =
        h.xs.mdguard_host(&["status", "--storage", "/dev/vg_storage1/*", "--no-ping"]);
    assert_eq!(
        out(&o),
        "storage /dev/vg_storage1/*: 3 guests: 3 ok (web01 web02 db01)\n"
    );
    assert_eq!(o.status.code(), Some(0));
    let o =
        h.xs.mdguard_host(&["status", "--storage", "/dev/storage9/*", "--no-ping"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a storage no guest uses: usage error"
    );
    assert!(
        err(&o).contains("no guest has a dom0 backend on storage /dev/storage9/*"),
        "{}",
        err(&o)
    );

    // JSON: the groups, each guest's backends and mapped legs
    let o =
        h.xs.mdguard_host(&["status", "--by-storage", "--json", "--no-ping"]);
    assert_eq!(o.status.code(), Some(2));
    let v = json(&o);
    assert_eq!(v["version"], 1);
    assert_eq!(v["exit_code"], 2);
    let groups = v["storage"].as_array().unwrap();
    let g = groups
        .iter()
        .find(|g| g["storage"] == "/dev/vg_storage2/web01")
        .unwrap();
    assert_eq!((&g["worst"], &g["code"]), (&"degraded".into(), &2.into()));
    let m = &g["members"][0];
    assert_eq!(
        (&m["domid"], &m["verdict"]),
        (&5.into(), &"degraded".into())
    );
    assert_eq!(m["legs"][0]["device"], "xvdc");
    assert_eq!(m["legs"][0]["state"], "faulty");
    assert_eq!(m["legs"][0]["via"], "backend");
    assert_eq!(m["legs"][0]["kind"], "vbd");
    assert_eq!(m["legs"][0]["devid"], xvd_devid("xvdc"));
    assert_eq!(m["backends"][0]["type"], "phy");
    assert_eq!(m["backends"][0]["state"], 4);
    let db = status_guest(&v, 7).unwrap();
    assert_eq!(db["legs"][1]["kind"], "qdisk");
    assert_eq!(
        db["legs"][1]["storage"], "/mnt/storage2/db01.img",
        "no aio:"
    );
    assert_eq!(db["backends"][1]["type"], "qdisk");
    let web02 = status_guest(&v, 6).unwrap();
    assert_eq!(web02["legs"][1]["device"], "xvdc1");
    assert_eq!(web02["legs"][1]["storage"], "/dev/vg_storage2/web02");
    assert_eq!(v["unmapped"][0]["domid"], 8);
    assert_eq!(v["unmapped"][0]["legs"][1]["via"], "no-backend");
    assert_eq!(v["unmapped"][0]["legs"][1]["health"], "degraded");
    assert_eq!(v["backend_errors"], serde_json::json!([]));

    // with the ping (no agent runs here): every publishing guest is silent,
    // on every storage: nothing reads ok
    let o =
        h.xs.mdguard_host(&["status", "--storage", "*", "--timeout", "0.3"]);
    assert_eq!(
        out(&o),
        "storage *: 5 guests: 3 silent (web01 web02 db01), 2 without an md leg (app03 bare)\n"
    );
    assert_eq!(o.status.code(), Some(3));
}

/// A backend leaving the connected state is shown; a backend dom0 left half
/// written is a warning, and the leg it would explain is unmapped.
#[test]
#[ignore = "needs xenstored: run tests/xs/provision.sh (scripts/test-all.sh does)"]
fn backend_state_and_broken_backends_are_shown() {
    let h = host();
    let mut d0 = h.xs.client();
    let web02_c = format!("/local/domain/0/backend/vbd/6/{}", xvd_devid("xvdc"));
    d0.write(&format!("{web02_c}/state"), b"6").unwrap();
    let web01_c = format!("/local/domain/0/backend/vbd/5/{}", xvd_devid("xvdc"));
    d0.rm(&format!("{web01_c}/dev")).unwrap();
    let o =
        h.xs.mdguard_host(&["status", "--storage", "/dev/vg_storage2/*", "--no-ping"]);
    let text = out(&o);
    assert_eq!(
        text,
        format!(
            "storage /dev/vg_storage2/*: 3 guests: 1 ok (web02), 2 without an md leg (app03 bare); \
             backend not connected: web02 xvdc closed\n\
             warning: {web01_c}: dev missing\n"
        )
    );
    // web01's failed leg now has no backend: storage2 reads ok, and says why
    assert_eq!(o.status.code(), Some(0), "{text}");
    let o = h.xs.mdguard_host(&["status", "--by-storage", "--no-ping"]);
    assert!(
        out(&o).contains("no dom0 backend: web01 degraded: md0 xvdc faulty\n"),
        "{}",
        out(&o)
    );
    assert_eq!(o.status.code(), Some(2), "the guest itself is degraded");
}

/// A guest cannot move its legs onto other storage: dom0's backends are
/// not writable to it, and what it may write (its own frontend directory,
/// its `data/`) is never read for the mapping.
#[test]
#[ignore = "needs xenstored: run tests/xs/provision.sh (scripts/test-all.sh does)"]
fn a_guest_cannot_fake_its_backends() {
    let mut h = host();
    let before = out(&h.xs.mdguard_host(&["status", "--by-storage", "--no-ping"]));
    let (g, _) = &mut h.guests[0];
    let devid = xvd_devid("xvdc");
    for path in [
        format!("/local/domain/0/backend/vbd/5/{devid}/params"),
        format!("/local/domain/0/backend/vbd/5/{}/params", xvd_devid("xvdd")),
        "/local/domain/0/backend/vbd/6/51744/dev".into(),
        "/local/domain/5/backend/vbd/5/51760/params".into(),
    ] {
        let e = g.write(&path, b"/dev/vg_storage1/evil").unwrap_err();
        assert_eq!(e.errno(), Some(&XsErrno::Access), "{path}");
    }
    assert_eq!(
        g.rm(&format!("/local/domain/0/backend/vbd/5/{devid}"))
            .unwrap_err()
            .errno(),
        Some(&XsErrno::Access)
    );
    // its own frontend directory is the guest's (xl makes it so): it may
    // point it anywhere; dom0 does not look
    let fe = format!("device/vbd/{devid}");
    g.write(
        &format!("{fe}/backend"),
        b"/local/domain/0/backend/vbd/6/51744",
    )
    .unwrap();
    g.write(&format!("{fe}/params"), b"/dev/vg_storage1/evil")
        .unwrap();
    g.write("data/backend/vbd/5/51744/params", b"/dev/vg_storage1/evil")
        .unwrap();
    g.write("data/mdguard/backends/xvdc", b"/dev/vg_storage1/evil")
        .unwrap();
    let after = h.xs.mdguard_host(&["status", "--by-storage", "--no-ping"]);
    assert_eq!(out(&after), before, "the guest's writes moved nothing");
    assert!(!out(&after).contains("evil"));
    assert_eq!(after.status.code(), Some(2));
}

/// `host probe --storage`: every guest with a dom0 backend on that storage
/// gets a new probe token (what dom0 holds decides, not what the guest
/// publishes: `bare` and `app03`'s scratch disk count), no other guest.
#[test]
#[ignore = "needs xenstored: run tests/xs/provision.sh (scripts/test-all.sh does)"]
fn probe_reaches_every_guest_on_a_storage() {
    let mut h = host();
    let mut d0 = h.xs.client();
    let token = |d0: &mut Client, id: u32| {
        d0.try_read(&format!("/local/domain/{id}/control/mdguard/probe"))
            .unwrap()
    };
    let o =
        h.xs.mdguard_host(&["probe", "--storage", "/dev/vg_storage2/*"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let lines: Vec<String> = out(&o).lines().map(|l| l.to_string()).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    let t = lines[0]
        .split("probe=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        lines,
        [
            format!("5 web01 probe={t} (xvdc on /dev/vg_storage2/web01)"),
            format!("6 web02 probe={t} (xvdc on /dev/vg_storage2/web02)"),
            format!("8 app03 probe={t} (xvde on /dev/vg_storage2/app03-scratch)"),
            format!("9 bare probe={t} (xvda on /dev/vg_storage2/bare)"),
        ]
    );
    for id in [5, 6, 8, 9] {
        assert_eq!(token(&mut d0, id).as_deref(), Some(t.as_bytes()), "{id}");
    }
    assert_eq!(token(&mut d0, 7), None, "db01's storage2 leg is a file");
    // the guest sees a probe request it can act on, and cannot forge one
    let (g5, _) = &mut h.guests[0];
    let raw = g5.read("control/mdguard/probe").unwrap();
    assert_eq!(
        ControlState::default().update("probe", Some(&raw)),
        Ok(Some(ControlEvent::Probe(t.clone())))
    );
    // a qdisk's storage is its path, without the format libxl puts in front
    let o =
        h.xs.mdguard_host(&["probe", "--storage", "/mnt/storage2/db01.img"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).starts_with("7 db01 probe="), "{}", out(&o));
    assert!(out(&o).ends_with(" (xvdc on /mnt/storage2/db01.img)\n"));
    assert!(token(&mut d0, 7).is_some());
    // nothing on it, or both selectors: usage errors, nothing written
    let before5 = token(&mut d0, 5);
    for args in [
        &["probe", "--storage", "/dev/storage9/*"][..],
        &["probe", "--storage", "aio:/mnt/storage2/db01.img"],
        &["probe", "--storage", "*", "--domain", "5"],
    ] {
        let o = h.xs.mdguard_host(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(err(&o).contains("usage: mdguard host"), "{}", err(&o));
    }
    assert_eq!(token(&mut d0, 5), before5);
}
