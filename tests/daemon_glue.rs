//! The whole daemon on the ordinary test tier: `mdguard run --root DIR` over a
//! prepared /proc, /sys and /dev tree, driven through scripted steps.
//!
//! The engine's rules have unit tests of their own (src/heal/tests.rs); these tests
//! check the glue around them: that the running program feeds every rule its input
//! (md's state, timers, probe results, action outcomes, I/O pressure, dom0's probe
//! hint, the config file, the state file) and carries out what the rule decides. A
//! rule whose input the daemon never feeds fails one of these tests.
//!
//! A prepared tree sends no POLLPRI, so after changing it a test sends SIGHUP, which
//! wakes the loop (any wake-up makes it read md's state again). Sysfs writes land in
//! the tree's files, where the tests read them; the real kernel's side of each action
//! is proven in the VM tier (tests/vm_heal.rs).

mod common;

use common::v1;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A leg of the prepared array: its device name, slot, and sysfs state word.
struct Leg {
    dev: &'static str,
    slot: Option<u32>,
    state: &'static str,
}

fn leg(dev: &'static str, slot: Option<u32>, state: &'static str) -> Leg {
    Leg { dev, slot, state }
}

/// One RAID1 array as md would show it in /proc/mdstat and sysfs.
struct Md {
    name: &'static str,
    uuid: String,
    array_state: &'static str,
    /// `recover` with 10% done, or none.
    recovering: bool,
    /// An internal write-intent bitmap (mdadm's default).
    bitmap: bool,
    legs: Vec<Leg>,
}

/// A guest's root: /proc, /sys, /dev and the config, and the daemon running on it.
struct Guest {
    dir: tempfile::TempDir,
    log: PathBuf,
    child: Option<Child>,
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Guest {
    fn new(config: &str) -> Guest {
        let dir = tempfile::tempdir().unwrap();
        for d in [
            "proc/pressure",
            "sys/block",
            "sys/class/block",
            "dev",
            "run",
        ] {
            fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let log = dir.path().join("agent.log");
        let g = Guest {
            dir,
            log,
            child: None,
        };
        g.write("etc/mdguard.toml", config);
        g.write(
            "proc/pressure/io",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
        );
        g
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

    /// md's view of the array: /proc/mdstat and /sys/block/<md>/md.
    fn set_md(&self, md: &Md) {
        let raid_disks = 2u32;
        let in_sync_slot = |s: u32| {
            md.legs
                .iter()
                .any(|l| l.slot == Some(s) && l.state == "in_sync")
        };
        let working = (0..raid_disks).filter(|s| in_sync_slot(*s)).count() as u32;
        let pattern: String = (0..raid_disks)
            .map(|s| if in_sync_slot(s) { 'U' } else { '_' })
            .collect();
        let members: Vec<String> = md
            .legs
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let mark = match l.state {
                    "faulty" => "(F)",
                    "spare" => "(S)",
                    _ => "",
                };
                format!("{}[{i}]{mark}", l.dev)
            })
            .collect();
        let mut mdstat = format!(
            "Personalities : [raid1]\n{} : active raid1 {}\n      65472 blocks super 1.2 [{raid_disks}/{working}] [{pattern}]\n",
            md.name,
            members.join(" ")
        );
        if md.recovering {
            mdstat.push_str("      [==>..................]  recovery = 10.0% (6547/65472) finish=1.0min speed=1000K/sec\n");
        }
        if md.bitmap {
            mdstat.push_str("      bitmap: 1/1 pages [4KB], 65536KB chunk\n");
        }
        mdstat.push_str("\nunused devices: <none>\n");
        self.write("proc/mdstat", &mdstat);
        let sys = format!("sys/block/{}/md", md.name);
        let attrs = [
            ("level", "raid1".to_string()),
            ("raid_disks", raid_disks.to_string()),
            ("array_state", md.array_state.to_string()),
            ("degraded", (raid_disks - working).to_string()),
            (
                "sync_action",
                if md.recovering { "recover" } else { "idle" }.to_string(),
            ),
            (
                "sync_completed",
                if md.recovering {
                    "13094 / 130944"
                } else {
                    "none"
                }
                .to_string(),
            ),
            (
                "sync_speed",
                if md.recovering { "1000" } else { "none" }.to_string(),
            ),
            ("metadata_version", "1.2".to_string()),
            (
                "bitmap/location",
                if md.bitmap { "+8" } else { "none" }.to_string(),
            ),
            ("uuid", md.uuid.clone()),
        ];
        for (k, v) in attrs {
            self.write(&format!("{sys}/{k}"), &v);
        }
        // what md shows until someone writes a limit; a test reads what mdguard wrote
        for (k, v) in [
            ("sync_speed_min", "1000 (system)"),
            ("sync_speed_max", "200000 (system)"),
        ] {
            if !self.path(&format!("{sys}/{k}")).exists() {
                self.write(&format!("{sys}/{k}"), v);
            }
        }
        for l in &md.legs {
            let d = format!("{sys}/dev-{}", l.dev);
            self.write(&format!("{d}/state"), l.state);
            self.write(
                &format!("{d}/slot"),
                &l.slot.map_or("none".into(), |s| s.to_string()),
            );
            self.write(&format!("{d}/errors"), "0");
        }
    }

    /// A block device of the guest: a 4 MiB image with `sb` (4 KiB at the 1.2
    /// location) or without any superblock.
    fn set_dev(&self, dev: &str, sb: Option<&[u8]>) {
        let p = self.path(&format!("dev/{dev}"));
        let mut f = fs::File::create(&p).unwrap();
        f.set_len(4 << 20).unwrap();
        if let Some(sb) = sb {
            f.seek(SeekFrom::Start(4096)).unwrap();
            f.write_all(sb).unwrap();
        }
    }

    fn start(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_mdguard"))
            .args(["run", "--foreground", "--exit-after", "120", "--root"])
            .arg(self.dir.path())
            .arg("--config")
            .arg(self.path("etc/mdguard.toml"))
            // no xenstore here: the agent says so and heals on
            .env("XENSTORED_PATH", self.path("no-xenstored"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&self.log).unwrap())
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_log("watching md arrays");
    }

    fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.as_ref().expect("started").id() as i32)
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), sig).unwrap();
    }

    /// Wake the loop so it reads the tree again.
    fn poke(&self) {
        self.signal(nix::sys::signal::Signal::SIGHUP);
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait (bounded) until the daemon's log holds `needle`.
    fn wait_log(&self, needle: &str) {
        self.wait_until(&format!("log line {needle:?}"), || {
            self.log().contains(needle)
        });
    }

    fn wait_until(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if cond() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "timed out waiting for {what}; the daemon's log:\n{}",
            self.log()
        );
    }

    /// Stop the daemon the way systemd does and wait for it.
    fn stop(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let mut c = self.child.take().expect("started");
        let status = c.wait().unwrap();
        assert!(status.success(), "{status}\n{}", self.log());
    }

    /// md0 whole (both legs in sync, clean), each leg's superblock updated at
    /// `t` with 100 events; the daemon started, and both legs recorded by it
    /// (its /run copy of the records names two descriptors).
    fn start_whole_and_recorded(&mut self, uuid: &str, t: u64) {
        self.set_md(&whole(uuid));
        self.set_dev("nbd0", Some(&v1_variant_at(0, 100, [0, 1], Some(t))));
        self.set_dev("nbd1", Some(&v1_variant_at(1, 100, [0, 1], Some(t))));
        self.start();
        self.wait_until("both legs recorded in /run", || {
            self.read("run/mdguard/legs.json")
                .matches("\"dev_number\"")
                .count()
                == 2
        });
    }

    fn kill9(&mut self) {
        let mut c = self.child.take().expect("started");
        c.kill().unwrap();
        let _ = c.wait();
    }
}

/// The 4 KiB 1.2 superblock of tests/fixtures/superblock: device 1 in slot 1 of a
/// two-leg RAID1; and its array UUID as sysfs prints it.
fn returning_leg_sb() -> (Vec<u8>, String) {
    let block =
        fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/superblock/v1.2.sb"))
            .unwrap();
    let sb =
        mdguard::md::superblock::parse_at(&block, mdguard::md::superblock::Version::V1_2, 4 << 20)
            .unwrap();
    assert_eq!(sb.role, mdguard::md::superblock::Role::Active(1));
    (block, sb.uuid.sysfs())
}

/// The fixture's 1.2 superblock rewritten as another device of the same array:
/// descriptor `dev_number` in slot `role`, at `events`, recording `roles` for the
/// two descriptors (raw `dev_roles[]` values: 0xfffe faulty). Offsets are those of
/// `struct mdp_superblock_1` in md_p.h; the result is checked by parsing it.
fn v1_variant(dev_number: u32, events: u64, roles: [u16; 2]) -> Vec<u8> {
    v1_variant_at(dev_number, events, roles, None)
}

/// [`v1_variant`], last updated at `utime` (unix seconds) when given.
fn v1_variant_at(dev_number: u32, events: u64, roles: [u16; 2], utime: Option<u64>) -> Vec<u8> {
    let mut b =
        fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/superblock/v1.2.sb"))
            .unwrap();
    if let Some(t) = utime {
        v1::put_u64(&mut b, v1::UTIME, t);
    }
    v1::put_u32(&mut b, v1::DEV_NUMBER, dev_number);
    v1::put_u64(&mut b, v1::EVENTS, events);
    for (i, r) in roles.iter().enumerate() {
        let at = v1::DEV_ROLES + 2 * i;
        b[at..at + 2].copy_from_slice(&r.to_le_bytes());
    }
    let max_dev = u32::from_le_bytes(b[v1::MAX_DEV..v1::MAX_DEV + 4].try_into().unwrap());
    assert_eq!(max_dev, 2, "the fixture is a two-leg mirror");
    v1::reseal(&mut b);
    let sb = mdguard::md::superblock::parse_at(&b, mdguard::md::superblock::Version::V1_2, 4 << 20)
        .expect("a valid variant");
    assert_eq!((sb.dev_number, sb.events), (dev_number, events));
    if let Some(t) = utime {
        assert_eq!(sb.utime, t);
    }
    b
}

/// The fixture's update time.
fn fixture_utime() -> u64 {
    let b = v1_variant(1, 100, [0, 1]);
    mdguard::md::superblock::parse_at(&b, mdguard::md::superblock::Version::V1_2, 4 << 20)
        .unwrap()
        .utime
}

/// The superblock of nbd0, the leg the array ran on: descriptor 0 in slot 0, a
/// few events past the returning leg's, recording nbd1 as faulty.
fn survivor_sb() -> Vec<u8> {
    v1_variant(0, 0x1_0000_0030, [0, 0xfffe])
}

const QUICK: &str = "[probe]\ninitial_interval_s = 1\n[throttle]\njitter_s = 0\n";

/// md0 whole: both legs in sync, the array clean.
fn whole(uuid: &str) -> Md {
    Md {
        array_state: "clean",
        legs: vec![
            leg("nbd0", Some(0), "in_sync"),
            leg("nbd1", Some(1), "in_sync"),
        ],
        ..degraded(uuid)
    }
}

fn degraded(uuid: &str) -> Md {
    Md {
        name: "md0",
        uuid: uuid.into(),
        array_state: "active",
        recovering: false,
        bitmap: true,
        legs: vec![leg("nbd0", Some(0), "in_sync"), leg("nbd1", None, "faulty")],
    }
}

#[test]
fn failed_leg_is_probed_and_readded_when_its_superblock_proves_it() {
    let (sb, uuid) = returning_leg_sb();
    let mut g = Guest::new(QUICK);
    g.set_md(&degraded(&uuid));
    g.set_dev("nbd0", Some(&survivor_sb()));
    g.set_dev("nbd1", Some(&sb));
    g.start();
    // md's state -> the failure is seen; the timer -> the probe; the probe's
    // result -> the verdict; the action's outcome -> the log
    g.wait_log("md0: leg nbd1 failed; probing it in 1s");
    g.wait_log("md0: leg nbd1 answers again and its superblock proves it belongs here");
    g.wait_log("md0: re-added nbd1");
    assert_eq!(g.read("sys/block/md0/md/dev-nbd1/state"), "re-add");
    // md takes it back: the leg is healthy again
    let mut md = degraded(&uuid);
    md.legs[1] = leg("nbd1", Some(1), "in_sync");
    g.set_md(&md);
    g.poke();
    g.stop();
    assert!(!g.log().contains("will not be re-added"), "{}", g.log());
}

/// A leg already there when the agent starts and that md does not list (mdadm
/// left it out at boot: "kicking non-fresh nbd1 from array", as a guest powered
/// off mid-recovery came back in the soak): no uevent will ever announce it, so
/// the daemon takes the devices present at start as candidates. nbd1 carries
/// md0's superblock and is taken for an add; nbd2, an nbd device with no
/// server (size 0), is never read.
#[test]
fn a_leg_left_out_at_boot_is_a_candidate_at_start() {
    let (_, uuid) = returning_leg_sb();
    let mut g = Guest::new(QUICK);
    let mut md = degraded(&uuid);
    md.legs.truncate(1);
    g.set_md(&md);
    g.set_dev("nbd0", Some(&v1_variant(0, 120, [0, 1])));
    g.set_dev("nbd1", Some(&v1_variant(1, 118, [0, 1])));
    g.set_dev("nbd2", None);
    for (dev, size) in [
        ("nbd0", "8192"),
        ("nbd1", "8192"),
        ("nbd2", "0"),
        ("md0", "8192"),
    ] {
        g.write(&format!("sys/class/block/{dev}/size"), size);
        g.write(&format!("sys/class/block/{dev}/dev"), "43:0");
    }
    g.start();
    g.wait_log("md0: new device nbd1 carries this array's superblock (role 1)");
    g.stop();
    let log = g.log();
    assert!(!log.contains("nbd2"), "{log}");
    // the array itself is no candidate, and not said to be none
    assert!(!log.contains("md0: not considered"), "{log}");
    assert!(!log.contains("new device nbd0"), "{log}");
}

/// Split brain through the whole daemon: nbd1 comes back with a superblock that
/// records nbd0, the leg the array runs on, as faulty (nbd1 ran on alone at some
/// point). The daemon reads the survivor's superblock (the witness) right before
/// the add and refuses; nbd1 is never touched. The same leg with a history that
/// fits is re-added (the control).
#[test]
fn a_leg_from_another_history_is_refused_by_the_running_daemon() {
    let (_, uuid) = returning_leg_sb();
    for (nbd1_roles, split) in [([0xfffe, 1], true), ([0, 1], false)] {
        let mut g = Guest::new(QUICK);
        let mut md = degraded(&uuid);
        md.legs[0] = leg("nbd0", Some(0), "in_sync");
        g.set_md(&md);
        // the survivor, descriptor 0, has seen more events than the leg
        g.set_dev("nbd0", Some(&v1_variant(0, 120, [0, 0xfffe])));
        g.set_dev("nbd1", Some(&v1_variant(1, 100, nbd1_roles)));
        g.start();
        g.wait_log("md0: leg nbd1 answers again and its superblock proves it belongs here");
        if split {
            g.wait_log("md0: leg nbd1 answers but will not be re-added: its superblock records nbd0 (descriptor 0), a leg the array runs on, as faulty: it ran on without that leg (split brain?)");
            g.poke();
            std::thread::sleep(Duration::from_millis(1500));
            assert_eq!(g.read("sys/block/md0/md/dev-nbd1/state"), "faulty");
            assert!(!g.log().contains("md0: re-added"), "{}", g.log());
        } else {
            g.wait_log("md0: re-added nbd1");
            assert_eq!(g.read("sys/block/md0/md/dev-nbd1/state"), "re-add");
        }
        g.stop();
    }
}

/// A leg restored from an older copy, through the whole daemon and across a
/// reboot: the first run records both legs' superblocks while the array is
/// whole and keeps them in /var/lib at its stop; /run is emptied (a reboot);
/// the next run loads the records, sees nbd1 fail, and when nbd1 comes back
/// with a superblock updated an hour before its record, refuses it, says why,
/// and reports it in the agent's view. The same leg as it left is re-added
/// (the control).
#[test]
fn a_leg_older_than_its_record_is_refused_across_a_reboot() {
    let (_, uuid) = returning_leg_sb();
    let t = fixture_utime();
    for (nbd1_utime, older) in [(t - 3600, true), (t, false)] {
        let mut g = Guest::new(QUICK);
        g.start_whole_and_recorded(&uuid, t);
        g.stop();
        let kept = g.read("var/lib/mdguard/legs.json");
        assert_eq!(kept.matches("\"dev_number\"").count(), 2, "{kept}");
        assert!(kept.contains(&format!("\"utime\":{t}")), "{kept}");
        // a reboot: /run is empty; nbd1 failed and comes back as `nbd1_utime`
        fs::remove_dir_all(g.path("run/mdguard")).unwrap();
        let mut md = degraded(&uuid);
        md.legs[0] = leg("nbd0", Some(0), "in_sync");
        g.set_md(&md);
        g.set_dev(
            "nbd0",
            Some(&v1_variant_at(0, 102, [0, 0xfffe], Some(t + 10))),
        );
        g.set_dev(
            "nbd1",
            Some(&v1_variant_at(1, 100, [0, 1], Some(nbd1_utime))),
        );
        g.start();
        g.wait_log("2 leg records from");
        g.wait_log("md0: leg nbd1 answers again and its superblock proves it belongs here");
        if older {
            g.wait_log("md0: leg nbd1 answers but will not be re-added: its superblock (updated ");
            assert!(
                g.log()
                    .contains("is older than the one the leg had in the array"),
                "{}",
                g.log()
            );
            g.poke();
            std::thread::sleep(Duration::from_millis(1500));
            assert_eq!(g.read("sys/block/md0/md/dev-nbd1/state"), "faulty");
            assert!(!g.log().contains("md0: re-added"), "{}", g.log());
            let view = g.read("run/mdguard/agent.json");
            assert!(view.contains("\"nbd1\":\"older-history\""), "{view}");
        } else {
            g.wait_log("md0: re-added nbd1");
            assert_eq!(g.read("sys/block/md0/md/dev-nbd1/state"), "re-add");
        }
        g.stop();
    }
}

#[test]
fn leg_of_another_array_is_refused_and_left_alone() {
    let (sb, _) = returning_leg_sb();
    let mut g = Guest::new(QUICK);
    // the array's UUID is not the one in the returning leg's superblock
    g.set_md(&degraded("01234567-89ab-cdef-0123-456789abcdef"));
    g.set_dev("nbd0", Some(&survivor_sb()));
    g.set_dev("nbd1", Some(&sb));
    g.start();
    g.wait_log(
        "md0: leg nbd1 answers but will not be re-added: its superblock belongs to another array",
    );
    // give it time to do anything else it would do
    g.poke();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(g.read("sys/block/md0/md/dev-nbd1/state"), "faulty");
    g.stop();
    assert!(!g.log().contains("md0: re-added"), "{}", g.log());
}

#[test]
fn dom0_probe_hint_probes_a_leg_before_its_timer() {
    let (sb, uuid) = returning_leg_sb();
    // the first probe is an hour away: only the hint can bring the leg back now
    let mut g = Guest::new(
        "[probe]\ninitial_interval_s = 3600\nmax_interval_s = 3600\n[throttle]\njitter_s = 0\n",
    );
    g.set_md(&degraded(&uuid));
    g.set_dev("nbd0", Some(&survivor_sb()));
    g.set_dev("nbd1", Some(&sb));
    g.start();
    g.wait_log("md0: leg nbd1 failed; probing it in 3600s");
    assert_eq!(g.read("sys/block/md0/md/dev-nbd1/state"), "faulty");
    // SIGUSR1 enters the engine through the same call as dom0's xenstore request
    g.signal(nix::sys::signal::Signal::SIGUSR1);
    g.wait_log("dom0 asked for a probe");
    g.wait_log("md0: re-added nbd1");
    assert_eq!(g.read("sys/block/md0/md/dev-nbd1/state"), "re-add");
    g.stop();
}

fn recovering(uuid: &str) -> Md {
    Md {
        name: "md0",
        uuid: uuid.into(),
        array_state: "active",
        recovering: true,
        bitmap: true,
        legs: vec![
            leg("nbd0", Some(0), "in_sync"),
            leg("nbd1", Some(1), "spare"),
        ],
    }
}

#[test]
fn busy_guest_slows_the_resync_and_the_limits_are_put_back_on_stop() {
    let (_, uuid) = returning_leg_sb();
    let mut g = Guest::new("[throttle]\nmax_kbps = 8000\nbusy_divisor = 4\nbusy_pressure = 20.0\n");
    // the guest's own I/O is stalled 80% of the time
    g.write(
        "proc/pressure/io",
        "some avg10=80.00 avg60=50.00 avg300=10.00 total=1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    );
    g.set_md(&recovering(&uuid));
    g.start();
    g.wait_log("md0: resync throttled to 2000 KiB/s (guest I/O busy)");
    assert_eq!(g.read("sys/block/md0/md/sync_speed_max"), "2000");
    // the limits to put back are kept where a restart finds them
    assert!(g.path("run/mdguard/speed-limits.json").exists());
    // the pressure is gone: the config's ceiling alone
    g.write(
        "proc/pressure/io",
        "some avg10=1.00 avg60=50.00 avg300=10.00 total=2\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    );
    g.poke();
    g.wait_log("md0: resync throttled to 8000 KiB/s\n");
    assert_eq!(g.read("sys/block/md0/md/sync_speed_max"), "8000");
    g.stop();
    assert_eq!(g.read("sys/block/md0/md/sync_speed_max"), "system");
    assert_eq!(g.read("sys/block/md0/md/sync_speed_min"), "system");
    assert!(!g.path("run/mdguard/speed-limits.json").exists());
    // with PSI there, nothing is said about the measure
    assert!(!g.log().contains("/proc/pressure/io"), "{}", g.log());
}

/// /proc/diskstats as the kernel prints it, with md0 at `sectors` written and
/// its leg nbd1 at `leg` (the resync's traffic).
fn diskstats(sectors: u64, leg: u64) -> String {
    format!(
        "   9       0 md0 40 0 320 4 50 0 {sectors} 8 0 0 0 0 0 0 0 0 0\n  43      32 nbd1 10 0 {leg} 5 10 0 {leg} 9 1 20 30 0 0 0 0 0 0\n"
    )
}

/// A kernel without PSI (before 4.20, or psi=0): the agent says once that it
/// falls back to /proc/diskstats, and the guest's own writes through md0 slow
/// the resync while the resync's traffic on the leg does not.
#[test]
fn without_psi_the_arrays_diskstats_slow_the_resync() {
    let (_, uuid) = returning_leg_sb();
    let mut g = Guest::new("[throttle]\nmax_kbps = 8000\nbusy_divisor = 4\nbusy_kbps = 1024\n");
    fs::remove_file(g.path("proc/pressure/io")).unwrap();
    g.write("proc/diskstats", &diskstats(1000, 0));
    g.set_md(&recovering(&uuid));
    g.start();
    g.wait_log("no /proc/pressure/io (kernel before 4.20 or PSI disabled)");
    g.wait_log("md0: resync throttled to 8000 KiB/s\n");
    // the resync alone moves a lot on the leg: not busy
    g.write("proc/diskstats", &diskstats(1000, 5_000_000));
    std::thread::sleep(Duration::from_millis(2200));
    g.poke();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        g.read("sys/block/md0/md/sync_speed_max"),
        "8000",
        "{}",
        g.log()
    );
    // the guest writes 200 MiB through md0: busy
    g.write("proc/diskstats", &diskstats(1000 + 409_600, 5_000_000));
    std::thread::sleep(Duration::from_millis(2200));
    g.poke();
    g.wait_log("md0: resync throttled to 2000 KiB/s (guest I/O busy)");
    assert_eq!(g.read("sys/block/md0/md/sync_speed_max"), "2000");
    // and stops: the next window is quiet
    std::thread::sleep(Duration::from_millis(2200));
    g.poke();
    g.wait_until("the ceiling back at 8000", || {
        g.read("sys/block/md0/md/sync_speed_max") == "8000"
    });
    g.stop();
    assert_eq!(
        g.log().matches("no /proc/pressure/io").count(),
        1,
        "said once: {}",
        g.log()
    );
}

#[test]
fn limits_changed_before_a_kill_9_are_put_back_by_the_next_run() {
    let (_, uuid) = returning_leg_sb();
    let mut g = Guest::new("[throttle]\nmax_kbps = 3000\n");
    g.set_md(&recovering(&uuid));
    g.start();
    g.wait_log("md0: resync throttled to 3000 KiB/s");
    assert_eq!(g.read("sys/block/md0/md/sync_speed_max"), "3000");
    g.kill9();
    // the recovery finished while no mdguard ran
    let mut md = recovering(&uuid);
    md.recovering = false;
    md.legs[1] = leg("nbd1", Some(1), "in_sync");
    g.set_md(&md);
    g.start();
    g.wait_log("found speed limits a previous mdguard changed");
    g.wait_until("sync_speed_max put back", || {
        g.read("sys/block/md0/md/sync_speed_max") == "system"
    });
    g.stop();
}

#[test]
fn writes_that_hang_are_reported_and_their_end_too() {
    let (_, uuid) = returning_leg_sb();
    let mut g = Guest::new("[heal]\nstall_timeout_s = 1\n");
    let mut md = degraded(&uuid);
    md.legs[1] = leg("nbd1", Some(1), "in_sync");
    md.array_state = "write-pending";
    g.set_md(&md);
    g.start();
    g.wait_log("md0: writes stalled for 1s");
    // the guest's own check knows what the running agent knows: md shows [UU],
    // but the writes hang
    let check = |g: &Guest| {
        Command::new(env!("CARGO_BIN_EXE_mdguard"))
            .args(["check", "--root"])
            .arg(g.dir.path())
            .output()
            .unwrap()
    };
    g.wait_until("check sees the stall", || {
        check(&g).status.code() == Some(2)
    });
    let line = String::from_utf8_lossy(&check(&g).stdout).into_owned();
    assert!(
        line.contains("MDGUARD CRITICAL - md0 degraded")
            && line.contains("writes stalled (mdguard)"),
        "{line}"
    );
    md.array_state = "active";
    g.set_md(&md);
    g.poke();
    g.wait_log("md0: writes flow again");
    g.wait_until("check reads ok again", || {
        check(&g).status.code() == Some(0)
    });
    g.stop();
    assert!(
        !g.path("run/mdguard/agent.json").exists(),
        "a clean stop removes the view"
    );
}

#[test]
fn an_edited_config_is_taken_without_a_restart() {
    let (_, uuid) = returning_leg_sb();
    let mut g = Guest::new("[throttle]\nmax_kbps = 3000\n");
    g.set_md(&recovering(&uuid));
    g.start();
    g.wait_log("md0: resync throttled to 3000 KiB/s");
    // the admin edits the file (an editor's rename): inotify, no signal sent
    g.write("etc/mdguard.toml.new", "[throttle]\nmax_kbps = 6000\n");
    fs::rename(g.path("etc/mdguard.toml.new"), g.path("etc/mdguard.toml")).unwrap();
    g.wait_log("configuration reloaded");
    g.wait_log("md0: resync throttled to 6000 KiB/s");
    assert_eq!(g.read("sys/block/md0/md/sync_speed_max"), "6000");
    // a broken edit is refused with its line, and the last good config stays
    g.write("etc/mdguard.toml.new", "[throttle]\nmax_kbps = \"fast\"\n");
    fs::rename(g.path("etc/mdguard.toml.new"), g.path("etc/mdguard.toml")).unwrap();
    g.wait_log("keeping the previous configuration");
    assert_eq!(g.read("sys/block/md0/md/sync_speed_max"), "6000");
    g.stop();
}

/// A config that names an array md does not have says so, instead of managing
/// nothing in silence; the arrays it does name are still healed.
#[test]
fn a_config_naming_a_missing_array_says_so() {
    let (sb, uuid) = returning_leg_sb();
    let mut g = Guest::new(&format!("arrays = [\"md0\", \"md9\"]\n{QUICK}"));
    g.set_md(&degraded(&uuid));
    g.set_dev("nbd0", Some(&survivor_sb()));
    g.set_dev("nbd1", Some(&sb));
    g.start();
    g.wait_log(
        "the config's arrays = [...] names md9, but md has no such array (yet): not managed",
    );
    g.wait_log("md0: re-added nbd1");
    g.stop();
}

/// A hook script that appends one line per event to `events`: its arguments,
/// then `MDGUARD_EVENT`, `MDGUARD_HEALTH`, `MDGUARD_REASON`; for the events
/// named in `hang`, it records its pid in `hung.pid` and sleeps instead.
fn hook_script(g: &Guest, hang: &str) -> String {
    let events = g.path("events");
    let script = format!(
        "#!/bin/sh\ncase \"$1\" in {hang}) echo $$ > {pid}; exec sleep 300;; esac\n\
         echo \"$*|$MDGUARD_EVENT|$MDGUARD_HEALTH|$MDGUARD_REASON\" >> {events}\n",
        hang = if hang.is_empty() { "''" } else { hang },
        pid = g.path("hung.pid").display(),
        events = events.display(),
    );
    g.write("hook.sh", &script);
    let p = g.path("hook.sh");
    let mut perm = fs::metadata(&p).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    fs::set_permissions(&p, perm).unwrap();
    p.to_string_lossy().into_owned()
}

fn hook_lines(g: &Guest) -> Vec<String> {
    g.read("events").lines().map(str::to_string).collect()
}

/// The whole daemon, a leg's fail, return and recovery as a hook script hears
/// them: mdadm's argument convention and event names where mdadm has them,
/// mdguard's own between, in order, each with the array's health then.
#[test]
fn a_hook_hears_a_fail_return_and_recovery_in_order() {
    let (_, uuid) = returning_leg_sb();
    let t = fixture_utime();
    let mut g = Guest::new("");
    let program = hook_script(&g, "");
    g.write(
        "etc/mdguard.toml",
        &format!("{QUICK}[hooks]\nprogram = \"{program}\"\ntimeout_s = 10\n"),
    );
    g.start_whole_and_recorded(&uuid, t);
    // nbd1 fails; the array runs on nbd0
    g.set_dev(
        "nbd0",
        Some(&v1_variant_at(0, 102, [0, 0xfffe], Some(t + 10))),
    );
    let mut md = degraded(&uuid);
    md.legs[0] = leg("nbd0", Some(0), "in_sync");
    g.set_md(&md);
    g.poke();
    // the probe proves it, the daemon re-adds it: md takes it as a rebuilding
    // spare at once (the kernel's part, played here)
    let state = "sys/block/md0/md/dev-nbd1/state";
    g.wait_until("the re-add", || g.read(state) == "re-add");
    g.set_md(&recovering(&uuid));
    g.poke();
    g.wait_until("RebuildStarted heard", || {
        hook_lines(&g)
            .iter()
            .any(|l| l.starts_with("RebuildStarted"))
    });
    g.set_md(&whole(&uuid));
    g.poke();
    g.wait_until("SpareActive heard", || {
        hook_lines(&g).iter().any(|l| l.starts_with("SpareActive"))
    });
    g.stop();
    assert_eq!(
        hook_lines(&g),
        [
            "Fail /dev/md0 /dev/nbd1|Fail|degraded|",
            "LegReturned /dev/md0 /dev/nbd1|LegReturned|degraded|",
            "ReAdded /dev/md0 /dev/nbd1|ReAdded|degraded|re-add",
            "RebuildStarted /dev/md0|RebuildStarted|recovering|recover",
            "RebuildFinished /dev/md0|RebuildFinished|ok|ok",
            "SpareActive /dev/md0 /dev/nbd1|SpareActive|ok|",
        ],
        "{}",
        g.log()
    );
}

/// A hook that hangs holds nothing up: the leg is re-added while it still
/// runs; it is killed at its timeout (with what it started), and the array's
/// later events reach the hook after it, in order.
#[test]
fn a_hook_that_hangs_is_killed_and_healing_goes_on() {
    let (sb, uuid) = returning_leg_sb();
    let mut g = Guest::new("");
    let program = hook_script(&g, "Fail");
    g.write(
        "etc/mdguard.toml",
        &format!("{QUICK}[hooks]\nprogram = \"{program}\"\ntimeout_s = 8\n"),
    );
    g.set_md(&degraded(&uuid));
    g.set_dev("nbd0", Some(&survivor_sb()));
    g.set_dev("nbd1", Some(&sb));
    let start = Instant::now();
    g.start();
    g.wait_log("md0: re-added nbd1");
    let readded = start.elapsed();
    assert_eq!(g.read("sys/block/md0/md/dev-nbd1/state"), "re-add");
    let hung: i32 = g
        .read("hung.pid")
        .trim()
        .parse()
        .expect("the Fail hook ran");
    assert!(
        Path::new(&format!("/proc/{hung}")).exists(),
        "the hook still hangs when the leg is back ({readded:?})"
    );
    assert!(
        hook_lines(&g).is_empty(),
        "md0's next hooks wait their turn"
    );
    g.wait_log("still running after 8s (hooks.timeout_s): killed");
    g.wait_until("the later events heard", || hook_lines(&g).len() == 3);
    assert_eq!(
        hook_lines(&g),
        [
            "DegradedArray /dev/md0|DegradedArray|degraded|degraded",
            "LegReturned /dev/md0 /dev/nbd1|LegReturned|degraded|",
            "ReAdded /dev/md0 /dev/nbd1|ReAdded|degraded|re-add",
        ]
    );
    let gone = |pid: i32| {
        fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "))
    };
    g.wait_until("the hung hook gone", || gone(hung));
    g.stop();
}
