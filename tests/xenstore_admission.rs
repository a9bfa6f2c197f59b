//! Resync admission against Debian's real xenstored (tests/xs): `mdguard host
//! run` in dom0, guests as real guest domains through the fixture's ring
//! bridge. Guests are simulated agents speaking the protocol (20 at once),
//! and real `mdguard run` agents over prepared trees go through ask, grant
//! and add. Ignored by plain `cargo test`; run tests/xs/run.sh.
mod common;
#[path = "xs/fixture.rs"]
mod fixture;
#[path = "xs/service.rs"]
mod service;

use common::v1;
use fixture::{guest, wait_for, Xenstored};
use mdguard::report::admission::Answer;
use mdguard::xenstore::Client;
use service::Service;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const POOL: &str = "/dev/vg_storage2/*";

// ---------------------------------------------------------------- simulated agents

/// A guest's agent reduced to the admission protocol, connected as that
/// guest domain through the ring bridge.
struct Sim {
    id: u32,
    c: Client,
}

fn array(health: &str, xvdc: &str) -> String {
    format!(
        r#"{{"health":"{health}","level":"raid1","disks":2,"in_sync":{},"members":[["xvdb","in_sync"],["xvdc","{xvdc}"]]}}"#,
        if xvdc == "in_sync" { 2 } else { 1 }
    )
}

impl Sim {
    fn new(sock: &Path, id: u32) -> Sim {
        let mut c = guest(sock);
        c.watch(&format!("/local/domain/{id}/control/mdguard"), "ctl")
            .unwrap();
        Sim { id, c }
    }

    fn data(&self, key: &str) -> String {
        format!("/local/domain/{}/data/mdguard/{key}", self.id)
    }

    /// Publish md0 with xvdc in `xvdc` state, as an agent does (one
    /// transaction).
    fn publish(&mut self, health: &str, xvdc: &str) {
        let (v, h, a) = (
            self.data("version"),
            self.data("health"),
            self.data("arrays/md0"),
        );
        self.c
            .transaction(|t| {
                t.write(&v, b"1")?;
                t.write(&h, health.as_bytes())?;
                t.write(&a, array(health, xvdc).as_bytes())
            })
            .unwrap();
    }

    fn request(&mut self, token: &str) {
        let p = self.data("request");
        self.c
            .write(&p, format!("{token} xvdc").as_bytes())
            .unwrap();
    }

    fn done(&mut self) {
        let p = self.data("request");
        self.c.rm(&p).unwrap();
    }

    fn ctl(&mut self, key: &str) -> Option<String> {
        self.c
            .try_read(&format!("/local/domain/{}/control/mdguard/{key}", self.id))
            .unwrap()
            .map(|v| String::from_utf8(v).unwrap())
    }

    /// Wait (watching its control directory) until `f` holds.
    fn wait_ctl<T>(
        &mut self,
        timeout: Duration,
        mut f: impl FnMut(&mut Sim) -> Option<T>,
    ) -> Option<T> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(v) = f(self) {
                return Some(v);
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.c
                .wait_events(left.min(Duration::from_millis(200)))
                .unwrap();
        }
    }
}

/// What dom0 holds at one instant, read in one transaction: how many guests
/// hold a grant for the request they have, and the budgets' sum.
fn snapshot(c: &mut Client, ids: &[u32]) -> Option<(usize, u64, usize)> {
    c.transaction(|t| {
        let (mut holders, mut sum, mut budgets) = (0, 0, 0);
        for id in ids {
            let grant = t.try_read(&format!("/local/domain/{id}/control/mdguard/grant"))?;
            let request = t.try_read(&format!("/local/domain/{id}/data/mdguard/request"))?;
            if let (Some(g), Some(r)) = (grant, request) {
                if let Ok(Answer::Granted { token }) = Answer::parse(&g) {
                    if r.split(|b| *b == b' ').next() == Some(token.as_bytes()) {
                        holders += 1;
                    }
                }
            }
            if let Some(b) =
                t.try_read(&format!("/local/domain/{id}/control/mdguard/budget_kbps"))?
            {
                sum += std::str::from_utf8(&b).unwrap().parse::<u64>().unwrap();
                budgets += 1;
            }
        }
        Ok((holders, sum, budgets))
    })
    .ok()
}

/// 20 guests whose legs are on one storage server ask at once: dom0 never
/// lets more than K recover at the same time, never hands out more than the
/// host budget, uses K places (not fewer), and all 20 get their turn. Half way
/// through, the service is killed (-9) and started again: it adopts what is
/// in xenstore and K still holds. At the end no grant and no budget is left,
/// and a clean stop takes the announcement back.
#[test]
#[ignore = "needs xenstored: run tests/xs/provision.sh (scripts/test-all.sh does)"]
fn twenty_guests_on_one_storage_never_exceed_k_nor_the_budget() {
    const N: u32 = 20;
    const K: usize = 3;
    const BUDGET: u64 = 30000;
    let mut xs = Xenstored::start();
    let ids: Vec<u32> = (1..=N).collect();
    let mut socks = Vec::new();
    for id in &ids {
        socks.push(xs.add_guest(*id, &format!("g{id}")));
        xs.add_vbd(*id, "vbd", "xvdc", &format!("/dev/vg_storage2/g{id}"));
    }
    let args = [
        "--per-storage",
        "3",
        "--budget-kbps",
        "30000",
        "--storage-group",
        POOL,
    ];
    let mut service = Service::start(&xs, &args);
    // every guest publishes a degraded md0 and waits for the announcement
    let mut sims: Vec<Sim> = ids
        .iter()
        .zip(&socks)
        .map(|(id, s)| {
            let mut g = Sim::new(s, *id);
            g.publish("degraded", "failed");
            g
        })
        .collect();
    for g in &mut sims {
        let c = g.wait_ctl(Duration::from_secs(20), |g| g.ctl("coordinator"));
        assert!(c.is_some(), "dom{} not announced:\n{}", g.id, service.log());
    }
    // dom0's view, checked after every change while they run
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new((0usize, 0u64, 0usize)));
    let observer = {
        let (stop, seen, ids) = (stop.clone(), seen.clone(), ids.clone());
        let mut c = xs.client();
        std::thread::spawn(move || {
            c.watch("/local/domain", "all").unwrap();
            let mut snapshots = 0;
            while !stop.load(Ordering::Relaxed) {
                c.wait_events(Duration::from_millis(100)).unwrap();
                if let Some((holders, sum, _)) = snapshot(&mut c, &ids) {
                    snapshots += 1;
                    let mut s = seen.lock().unwrap();
                    assert!(holders <= K, "{holders} guests hold a grant at once");
                    assert!(sum <= BUDGET, "budgets add up to {sum} KiB/s");
                    s.0 = s.0.max(holders);
                    s.1 = s.1.max(sum);
                    s.2 = snapshots;
                }
            }
        })
    };
    // the guests, each on its own thread: ask, wait, recover 300 ms, finish
    let active = Arc::new(Mutex::new((0usize, 0usize)));
    let finished = Arc::new(AtomicUsize::new(0));
    let waits = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = sims
        .into_iter()
        .map(|mut g| {
            let (active, finished, waits) = (active.clone(), finished.clone(), waits.clone());
            std::thread::spawn(move || {
                let token = format!("t{}-1", g.id);
                let asked = Instant::now();
                g.request(&token);
                // rewritten every 5 s while it waits, as an agent does, so a
                // slow run never makes dom0 take it for silent
                let mut written = Instant::now();
                let grant = g.wait_ctl(Duration::from_secs(120), |g| {
                    if written.elapsed() > Duration::from_secs(5) {
                        g.request(&token);
                        written = Instant::now();
                    }
                    g.ctl("grant").filter(|v| *v == token)
                });
                assert!(grant.is_some(), "dom{} never granted", g.id);
                waits.lock().unwrap().push(asked.elapsed());
                {
                    let mut a = active.lock().unwrap();
                    a.0 += 1;
                    a.1 = a.1.max(a.0);
                    assert!(a.0 <= K, "{} guests recovering at once", a.0);
                }
                // the budget came with (before) the grant
                let b: u64 = g.ctl("budget_kbps").expect("a budget").parse().unwrap();
                assert!(
                    (BUDGET / K as u64..=BUDGET).contains(&b),
                    "dom{}: {b}",
                    g.id
                );
                g.publish("recovering", "rebuilding");
                std::thread::sleep(Duration::from_millis(300));
                g.publish("ok", "in_sync");
                // counted out before dom0 can see it finish
                active.lock().unwrap().0 -= 1;
                g.done();
                finished.fetch_add(1, Ordering::Relaxed);
            })
        })
        .collect();
    // half way: the service dies and a new one takes over
    let half = wait_for(Duration::from_secs(60), || {
        (finished.load(Ordering::Relaxed) >= 8).then_some(())
    });
    assert!(half.is_some(), "{}", service.log());
    service.kill9();
    std::thread::sleep(Duration::from_millis(300));
    let mut service = Service::start(&xs, &args);
    for t in threads {
        t.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    observer.join().unwrap();
    let (guest_max, dom0_max, max_sum, snapshots) = {
        let a = active.lock().unwrap();
        let s = seen.lock().unwrap();
        (a.1, s.0, s.1, s.2)
    };
    assert_eq!(finished.load(Ordering::Relaxed), N as usize);
    assert_eq!(guest_max, K, "K places used, never more");
    assert_eq!(dom0_max, K, "dom0's view: K grants at most");
    assert_eq!(max_sum, BUDGET, "the budget was split, never exceeded");
    let mut w = waits.lock().unwrap().clone();
    w.sort();
    eprintln!(
        "20 guests, K={K}: waits for a grant min {:?} median {:?} max {:?}; {snapshots} dom0 snapshots",
        w[0],
        w[w.len() / 2],
        w[w.len() - 1]
    );
    // all done: no grant, no budget left (the last release is written at once)
    let clean = wait_for(Duration::from_secs(10), || {
        let mut c = xs.client();
        let left: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|id| {
                ["grant", "budget_kbps"].iter().any(|k| {
                    c.try_read(&format!("/local/domain/{id}/control/mdguard/{k}"))
                        .unwrap()
                        .is_some()
                })
            })
            .collect();
        left.is_empty().then_some(())
    });
    assert!(clean.is_some(), "{}", service.log());
    assert!(service
        .log()
        .contains("resync place freed (its resync is over)"));
    // a clean stop takes the announcement back from every guest
    service.stop();
    let mut c = xs.client();
    for id in &ids {
        assert_eq!(
            c.try_read(&format!("/local/domain/{id}/control/mdguard/coordinator"))
                .unwrap(),
            None
        );
    }
    assert!(service
        .log()
        .contains("announcement removed from 20 guest(s)"));
}

/// A guest alone on its storage is granted at once, with the whole budget.
#[test]
#[ignore = "needs xenstored: run tests/xs/provision.sh (scripts/test-all.sh does)"]
fn a_lone_guest_is_granted_at_once() {
    let mut xs = Xenstored::start();
    let sock = xs.add_guest(5, "web5");
    xs.add_vbd(5, "vbd", "xvdc", "/dev/vg_storage2/web5");
    let service = Service::start(&xs, &["--budget-kbps", "20000"]);
    let mut g = Sim::new(&sock, 5);
    g.publish("degraded", "failed");
    assert!(g
        .wait_ctl(Duration::from_secs(20), |g| g.ctl("coordinator"))
        .is_some());
    let mut times = Vec::new();
    for round in 1..=5 {
        let token = format!("lone-{round}");
        let t = Instant::now();
        g.request(&token);
        let got = g.wait_ctl(Duration::from_secs(10), |g| {
            g.ctl("grant").filter(|v| *v == token)
        });
        times.push(t.elapsed());
        assert!(got.is_some(), "{}", service.log());
        assert_eq!(g.ctl("budget_kbps").as_deref(), Some("20000"));
        g.done();
        assert!(g
            .wait_ctl(Duration::from_secs(10), |g| g
                .ctl("grant")
                .is_none()
                .then_some(()))
            .is_some());
    }
    times.sort();
    eprintln!("lone guest: request -> grant {times:?}");
    assert!(times[2] < Duration::from_millis(500), "{times:?}");
    assert!(service
        .log()
        .contains("dom5: resync granted on /dev/vg_storage2/web5"));
}

/// Nothing changes, nothing happens: after announcing itself the service
/// writes nothing and uses no CPU while every guest is healthy.
#[test]
#[ignore = "needs xenstored: run tests/xs/provision.sh (scripts/test-all.sh does)"]
fn an_idle_host_costs_nothing() {
    let mut xs = Xenstored::start();
    let mut sims = Vec::new();
    for id in 1..=5 {
        let sock = xs.add_guest(id, &format!("g{id}"));
        xs.add_vbd(id, "vbd", "xvdc", &format!("/dev/vg_storage2/g{id}"));
        let mut g = Sim::new(&sock, id);
        g.publish("ok", "in_sync");
        sims.push(g);
    }
    let service = Service::start(&xs, &["--budget-kbps", "20000"]);
    for g in &mut sims {
        assert!(g
            .wait_ctl(Duration::from_secs(20), |g| g.ctl("coordinator"))
            .is_some());
    }
    let mut c = xs.client();
    c.watch("/local/domain", "all").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    c.take_events();
    let _ = c.poll_events();
    let before = service.cpu_ticks();
    let evs = c.wait_events(Duration::from_secs(3)).unwrap();
    assert!(evs.is_empty(), "writes while idle: {evs:?}");
    assert_eq!(service.cpu_ticks(), before, "CPU used while idle");
    for g in &mut sims {
        assert_eq!(g.ctl("budget_kbps"), None);
        assert_eq!(g.ctl("grant"), None);
    }
}

/// A backend that goes down and comes back (its `state` leaves 4 and returns)
/// makes dom0 ask that guest, and only that one, to probe now.
#[test]
#[ignore = "needs xenstored: run tests/xs/provision.sh (scripts/test-all.sh does)"]
fn a_backend_connected_again_makes_its_guest_probe() {
    let mut xs = Xenstored::start();
    let mut sims = Vec::new();
    for id in [3, 4] {
        let sock = xs.add_guest(id, &format!("g{id}"));
        xs.add_vbd(id, "vbd", "xvdc", &format!("/dev/nbd{id}"));
        let mut g = Sim::new(&sock, id);
        g.publish("degraded", "failed");
        sims.push(g);
    }
    let service = Service::start(&xs, &[]);
    for g in &mut sims {
        assert!(g
            .wait_ctl(Duration::from_secs(20), |g| g.ctl("coordinator"))
            .is_some());
        assert_eq!(g.ctl("probe"), None, "no hint at start");
    }
    let state = format!(
        "/local/domain/0/backend/vbd/3/{}/state",
        fixture::xvd_devid("xvdc")
    );
    xs.tool_ok("xenstore-write", &[&state, "6"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sims[0].ctl("probe"), None, "closed is no hint");
    let t = Instant::now();
    xs.tool_ok("xenstore-write", &[&state, "4"]);
    let hint = sims[0].wait_ctl(Duration::from_secs(10), |g| g.ctl("probe"));
    assert!(hint.is_some(), "{}", service.log());
    eprintln!(
        "backend connected -> probe token in the guest: {:?}",
        t.elapsed()
    );
    assert_eq!(sims[1].ctl("probe"), None, "the other guest is not asked");
    service.wait_log(
        "dom3 g3: storage back (xvdc on /dev/nbd3 connected again): asked its agent to probe now",
    );
    // a write of the same state again is no return
    xs.tool_ok("xenstore-write", &[&state, "4"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sims[0].ctl("probe"), hint);
}

/// A loop device of dom0's (the host's here), detached on drop: a real block
/// device the kernel sends uevents for.
struct Loop {
    name: String,
    _file: tempfile::NamedTempFile,
    attached: bool,
}

impl Loop {
    fn new() -> Loop {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(1 << 20).unwrap();
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file.path())
            .output()
            .expect("losetup (util-linux)");
        assert!(
            out.status.success(),
            "this test needs a loop device (root): losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = String::from_utf8(out.stdout).unwrap();
        Loop {
            name: path.trim().trim_start_matches("/dev/").to_string(),
            _file: file,
            attached: true,
        }
    }

    /// `physical-device` as the block hotplug script writes it: hex major:minor.
    fn physical_device(&self) -> String {
        let dev = fs::read_to_string(format!("/sys/class/block/{}/dev", self.name)).unwrap();
        let (major, minor) = dev.trim().split_once(':').unwrap();
        let hex = |n: &str| format!("{:x}", n.parse::<u32>().unwrap());
        format!("{}:{}", hex(major), hex(minor))
    }

    /// Make the kernel say `change` for it (as a dm resume or a transport
    /// reconnecting does).
    fn change(&self) {
        fs::write(format!("/sys/class/block/{}/uevent", self.name), "change").unwrap();
    }

    /// Detach its file: the kernel's own `change`, and the device has no size.
    fn detach(&mut self) {
        let st = Command::new("losetup")
            .args(["-d", &format!("/dev/{}", self.name)])
            .status()
            .unwrap();
        assert!(st.success());
        self.attached = false;
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        if self.attached {
            let _ = Command::new("losetup")
                .args(["-d", &format!("/dev/{}", self.name)])
                .status();
        }
    }
}

/// A storage that returns under the same vbd changes nothing in xenstore:
/// dom0's block device blkback holds comes back (a dm table swapped to a
/// reconnected transport, a path reinstated). The kernel's uevent for that
/// device (matched to the backend by its `physical-device`) makes dom0 ask
/// the guests with a leg to bring back on it to probe, and no other; a
/// change that leaves the device with no size is no return.
#[test]
#[ignore = "needs xenstored: run tests/xs/provision.sh (scripts/test-all.sh does)"]
fn a_dom0_device_that_changes_makes_its_guests_probe() {
    let mut lo = Loop::new();
    let other = Loop::new();
    let mut xs = Xenstored::start();
    // 3: a failed leg on the loop device; 4: its leg there in sync;
    // 5: a failed leg on another device
    let mut sims = Vec::new();
    for (id, xvdc, dev) in [
        (3, "failed", &lo),
        (4, "in_sync", &lo),
        (5, "failed", &other),
    ] {
        let sock = xs.add_guest(id, &format!("g{id}"));
        let devid = xs.add_vbd(id, "vbd", "xvdc", &format!("/dev/{}", dev.name));
        xs.tool_ok(
            "xenstore-write",
            &[
                &format!("/local/domain/0/backend/vbd/{id}/{devid}/physical-device"),
                &dev.physical_device(),
            ],
        );
        let mut g = Sim::new(&sock, id);
        g.publish(if xvdc == "failed" { "degraded" } else { "ok" }, xvdc);
        sims.push(g);
    }
    let service = Service::start(&xs, &[]);
    assert!(
        !service
            .log()
            .contains("cannot listen to dom0's kernel uevents"),
        "{}",
        service.log()
    );
    for g in &mut sims {
        assert!(g
            .wait_ctl(Duration::from_secs(20), |g| g.ctl("coordinator"))
            .is_some());
        assert_eq!(g.ctl("probe"), None, "no hint at start");
    }
    let t = Instant::now();
    lo.change();
    let hint = sims[0].wait_ctl(Duration::from_secs(10), |g| g.ctl("probe"));
    assert!(hint.is_some(), "{}", service.log());
    eprintln!(
        "dom0 device changed -> probe token in the guest: {:?}",
        t.elapsed()
    );
    service.wait_log(&format!(
        "dom3 g3: storage back (xvdc on /dev/{0}: dom0's {0} changed): asked its agent to probe now",
        lo.name
    ));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sims[1].ctl("probe"), None, "its leg is in sync");
    assert_eq!(sims[2].ctl("probe"), None, "its leg is elsewhere");
    // the device emptied: the kernel says change, nothing is back
    lo.detach();
    service.wait_log(&format!(
        "dom0's {} changed but has no size: no storage back",
        lo.name
    ));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sims[0].ctl("probe"), hint, "a new hint for an empty device");
}

// ---------------------------------------------------------------- real agents

/// A guest's root for a real `mdguard run`: md0 is a RAID1 over nbd0 (slot 0)
/// and nbd1, both legs' superblocks on their device files.
struct Tree {
    dir: tempfile::TempDir,
    uuid: String,
}

fn superblock(dev_number: u32, events_past: u64, roles: [u16; 2]) -> (Vec<u8>, String) {
    use mdguard::md::superblock::{parse_at, Version};
    let mut b =
        fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/superblock/v1.2.sb"))
            .unwrap();
    let events = v1::get_u64(&b, v1::EVENTS) + events_past;
    v1::put_u32(&mut b, v1::DEV_NUMBER, dev_number);
    v1::put_u64(&mut b, v1::EVENTS, events);
    for (i, r) in roles.iter().enumerate() {
        b[v1::DEV_ROLES + 2 * i..v1::DEV_ROLES + 2 * i + 2].copy_from_slice(&r.to_le_bytes());
    }
    v1::reseal(&mut b);
    let sb = parse_at(&b, Version::V1_2, 4 << 20).expect("a valid superblock");
    (b, sb.uuid.sysfs())
}

impl Tree {
    fn new(config: &str) -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let (survivor, uuid) = superblock(0, 2, [0, 0xfffe]);
        let (leg, _) = superblock(1, 0, [0, 1]);
        let t = Tree { dir, uuid };
        t.write("etc/mdguard.toml", config);
        for (dev, sb) in [("nbd0", survivor), ("nbd1", leg)] {
            let p = t.path(&format!("dev/{dev}"));
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            let mut img = vec![0u8; 4 << 20];
            img[4096..4096 + sb.len()].copy_from_slice(&sb);
            fs::write(p, img).unwrap();
        }
        t.md(true);
        t
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap_or_default()
    }

    /// md0 whole (`whole`) or with nbd1 faulty.
    fn md(&self, whole: bool) {
        let (members, count, pattern) = if whole {
            ("nbd1[1] nbd0[0]", 2, "UU")
        } else {
            ("nbd1[1](F) nbd0[0]", 1, "U_")
        };
        self.write(
            "proc/mdstat",
            &format!("Personalities : [raid1]\nmd0 : active raid1 {members}\n      65472 blocks super 1.2 [2/{count}] [{pattern}]\n      bitmap: 1/1 pages [4KB], 65536KB chunk\n\nunused devices: <none>\n"),
        );
        let sys = "sys/block/md0/md";
        for (k, v) in [
            ("level", "raid1"),
            ("raid_disks", "2"),
            ("array_state", "active"),
            ("degraded", if whole { "0" } else { "1" }),
            ("sync_action", "idle"),
            ("sync_completed", "none"),
            ("metadata_version", "1.2"),
            ("bitmap/location", "+8"),
            ("uuid", &self.uuid),
            ("dev-nbd0/state", "in_sync"),
            ("dev-nbd0/slot", "0"),
            ("dev-nbd1/state", if whole { "in_sync" } else { "faulty" }),
            ("dev-nbd1/slot", if whole { "1" } else { "none" }),
        ] {
            self.write(&format!("{sys}/{k}"), v);
        }
        for (k, v) in [
            ("sync_speed_min", "1000 (system)"),
            ("sync_speed_max", "200000 (system)"),
        ] {
            if !self.path(&format!("{sys}/{k}")).exists() {
                self.write(&format!("{sys}/{k}"), v);
            }
        }
    }
}

/// A real `mdguard run` as guest domain `sock`'s agent; killed on drop.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn start(t: &Tree, sock: &Path) -> Agent {
        let log = t.path("agent.log");
        let child = Command::new(env!("CARGO_BIN_EXE_mdguard"))
            .args(["run", "--foreground", "--exit-after", "120", "--root"])
            .arg(t.dir.path())
            .arg("--config")
            .arg(t.path("etc/mdguard.toml"))
            .env("XENSTORED_PATH", sock)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let a = Agent { child, log };
        a.wait_log("watching md arrays");
        a
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_log(&self, needle: &str) -> Duration {
        let t = Instant::now();
        let seen = wait_for(Duration::from_secs(30), || {
            self.log().contains(needle).then_some(())
        });
        assert!(
            seen.is_some(),
            "no {needle:?} in the agent's log:\n{}",
            self.log()
        );
        t.elapsed()
    }

    /// Wake the loop so it reads the tree again (a tree sends no POLLPRI).
    fn poke(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A start jitter of 60 s and a 30 s wait for dom0: only a grant adds the leg
/// within seconds.
const COORDINATED: &str =
    "[probe]\ninitial_interval_s = 1\n[throttle]\njitter_s = 60\ngrant_timeout_s = 30\n";

/// The real agent goes through ask, grant and add: its request names nbd1,
/// dom0 grants it at once (alone on its storage), the leg is re-added long
/// before any jitter, and once md has it in sync the request goes and dom0
/// frees the place.
#[test]
#[ignore = "needs xenstored: run tests/xs/provision.sh (scripts/test-all.sh does)"]
fn a_real_agent_asks_is_granted_and_adds() {
    let mut xs = Xenstored::start();
    let sock = xs.add_guest(7, "web7");
    let service = Service::start(&xs, &["--budget-kbps", "20000"]);
    let t = Tree::new(COORDINATED);
    let agent = Agent::start(&t, &sock);
    agent.wait_log("dom0 coordinates resyncs: a returning leg asks it for a turn");
    // nbd1 fails
    t.md(false);
    agent.poke();
    agent.wait_log("md0: leg nbd1 failed; probing it in 1s");
    let asked = agent.wait_log(
        "md0: leg nbd1 answers again and its superblock proves it belongs here; asking dom0 for a turn to re-add it (waiting up to 30s for an answer)",
    );
    agent.wait_log("dom0 granted the turn to re-add nbd1");
    let added = agent.wait_log("md0: re-added nbd1");
    assert!(
        asked + added < Duration::from_secs(10),
        "{asked:?} {added:?}"
    );
    assert_eq!(t.read("sys/block/md0/md/dev-nbd1/state"), "re-add");
    assert!(!agent.log().contains("start jitter"), "{}", agent.log());
    service.wait_log("dom7: resync granted on dom7's nbd1 (no dom0 backend)");
    // dom0 sees the request while the leg recovers
    let req = xs.tool_ok("xenstore-read", &["/local/domain/7/data/mdguard/request"]);
    assert!(req.ends_with(" nbd1"), "{req}");
    assert_eq!(
        xs.tool_ok("xenstore-read", &["/local/domain/7/control/mdguard/grant"]),
        req.split(' ').next().unwrap()
    );
    assert_eq!(
        xs.tool_ok(
            "xenstore-read",
            &["/local/domain/7/control/mdguard/budget_kbps"]
        ),
        "20000"
    );
    // md has it in sync: the request goes, dom0 frees the place and the budget
    t.md(true);
    agent.poke();
    service.wait_log("dom7: resync place freed (its resync is over)");
    let mut c = xs.client();
    for k in [
        "data/mdguard/request",
        "control/mdguard/grant",
        "control/mdguard/budget_kbps",
    ] {
        assert_eq!(
            c.try_read(&format!("/local/domain/7/{k}")).unwrap(),
            None,
            "{k}"
        );
    }
}

/// Without a coordinator the agent keeps its start jitter and asks nobody.
#[test]
#[ignore = "needs xenstored: run tests/xs/provision.sh (scripts/test-all.sh does)"]
fn a_guest_without_a_coordinator_keeps_its_jitter() {
    let mut xs = Xenstored::start();
    let sock = xs.add_guest(8, "web8");
    let t = Tree::new(COORDINATED);
    let agent = Agent::start(&t, &sock);
    t.md(false);
    agent.poke();
    agent.wait_log(
        "md0: leg nbd1 answers again and its superblock proves it belongs here; re-adding in ",
    );
    assert!(agent.log().contains("s (start jitter)"), "{}", agent.log());
    assert!(!agent.log().contains("asking dom0"), "{}", agent.log());
    assert_eq!(
        xs.client()
            .try_read("/local/domain/8/data/mdguard/request")
            .unwrap(),
        None
    );
}

/// A dead coordinator never stops healing: `host run` is killed (-9), so its
/// announcement stays behind and nobody answers. The agent asks, waits
/// `grant_timeout_s`, falls back to its jitter (0 here) and re-adds the leg.
/// Then a coordinator that stops cleanly: its announcement goes and the
/// agent knows it.
#[test]
#[ignore = "needs xenstored: run tests/xs/provision.sh (scripts/test-all.sh does)"]
fn a_dead_coordinator_never_stops_healing() {
    let mut xs = Xenstored::start();
    let sock = xs.add_guest(9, "db9");
    let mut service = Service::start(&xs, &[]);
    let t = Tree::new(
        "[probe]\ninitial_interval_s = 1\n[throttle]\njitter_s = 0\ngrant_timeout_s = 5\n",
    );
    let agent = Agent::start(&t, &sock);
    agent.wait_log("dom0 coordinates resyncs");
    service.kill9();
    t.md(false);
    agent.poke();
    agent.wait_log("asking dom0 for a turn to re-add it (waiting up to 5s for an answer)");
    let fell_back =
        agent.wait_log("md0: no turn from dom0 for leg nbd1 (no answer in time); re-adding");
    agent.wait_log("md0: re-added nbd1");
    assert!(
        fell_back >= Duration::from_secs(3) && fell_back < Duration::from_secs(12),
        "{fell_back:?}"
    );
    assert_eq!(t.read("sys/block/md0/md/dev-nbd1/state"), "re-add");
    // a coordinator that comes and stops cleanly: the agent hears both
    t.md(true);
    agent.poke();
    let mut service = Service::start(&xs, &[]);
    let n = agent.log().matches("dom0 coordinates resyncs").count();
    let again = wait_for(Duration::from_secs(10), || {
        (agent.log().matches("dom0 coordinates resyncs").count() > n
            || xs
                .tool_ok(
                    "xenstore-read",
                    &["/local/domain/9/control/mdguard/coordinator"],
                )
                .starts_with("host-"))
        .then_some(())
    });
    assert!(again.is_some());
    service.stop();
    agent.wait_log("dom0's coordinator went away: returning legs use the start jitter");
}

/// Guests that come and go while the service runs: one introduced later is
/// seen (`@introduceDomain`) and announced; one that is destroyed while it
/// holds the only place (`@releaseDomain`, its home removed) frees it, and the
/// next guest in line is granted.
#[test]
#[ignore = "needs xenstored: run tests/xs/provision.sh (scripts/test-all.sh does)"]
fn guests_that_come_and_go() {
    let mut xs = Xenstored::start();
    let service = Service::start(&xs, &["--per-storage", "1", "--storage-group", POOL]);
    let mut sims = Vec::new();
    for id in [1, 2] {
        let sock = xs.add_guest(id, &format!("g{id}"));
        xs.add_vbd(id, "vbd", "xvdc", &format!("/dev/vg_storage2/g{id}"));
        let mut g = Sim::new(&sock, id);
        g.publish("degraded", "failed");
        let c = g.wait_ctl(Duration::from_secs(10), |g| g.ctl("coordinator"));
        assert!(
            c.is_some(),
            "dom{id} introduced later is not announced:\n{}",
            service.log()
        );
        sims.push(g);
    }
    sims[0].request("a-1");
    assert!(sims[0]
        .wait_ctl(Duration::from_secs(10), |g| g
            .ctl("grant")
            .filter(|v| v == "a-1"))
        .is_some());
    sims[1].request("b-1");
    assert!(sims[1]
        .wait_ctl(Duration::from_secs(10), |g| g
            .ctl("grant")
            .filter(|v| v.starts_with("queued b-1 ")))
        .is_some());
    // guest 1 is destroyed: released, its home removed by the toolstack
    let mut c = xs.client();
    c.release(1).unwrap();
    c.rm("/local/domain/1").unwrap();
    let g2 = sims[1].wait_ctl(Duration::from_secs(10), |g| {
        g.ctl("grant").filter(|v| v == "b-1")
    });
    assert!(g2.is_some(), "{}", service.log());
    service.wait_log("dom1: resync place freed (it vanished)");
    // nothing was created under the vanished guest's home
    assert_eq!(c.try_read("/local/domain/1").unwrap(), None);
}

/// An agent killed while it held the only place leaves its request behind;
/// the agent started next takes it away at once (it is not its own), so the
/// next guest in line is not kept waiting for a recovery nobody runs.
#[test]
#[ignore = "needs xenstored: run tests/xs/provision.sh (scripts/test-all.sh does)"]
fn a_request_left_by_a_killed_agent_goes_when_the_next_one_starts() {
    let mut xs = Xenstored::start();
    let sock1 = xs.add_guest(1, "web1");
    let sock2 = xs.add_guest(2, "web2");
    for id in [1, 2] {
        xs.add_vbd(id, "vbd", "xvdc", &format!("/dev/vg_storage2/web{id}"));
    }
    let service = Service::start(&xs, &["--per-storage", "1", "--storage-group", POOL]);
    // what the killed agent left: its data and a granted request
    let mut old = Sim::new(&sock1, 1);
    old.publish("degraded", "failed");
    old.request("old-1");
    assert!(old
        .wait_ctl(Duration::from_secs(10), |g| g
            .ctl("grant")
            .filter(|v| v == "old-1"))
        .is_some());
    drop(old);
    let mut next = Sim::new(&sock2, 2);
    next.publish("degraded", "failed");
    next.request("next-1");
    assert!(next
        .wait_ctl(Duration::from_secs(10), |g| g
            .ctl("grant")
            .filter(|v| v.starts_with("queued next-1 ")))
        .is_some());
    // a new agent in guest 1 (its arrays whole: nothing to ask for)
    let t = Tree::new(COORDINATED);
    let _agent = Agent::start(&t, &sock1);
    let granted = next.wait_ctl(Duration::from_secs(10), |g| {
        g.ctl("grant").filter(|v| v == "next-1")
    });
    assert!(granted.is_some(), "{}", service.log());
    assert_eq!(
        xs.client()
            .try_read("/local/domain/1/data/mdguard/request")
            .unwrap(),
        None
    );
}
