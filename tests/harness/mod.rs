//! Real-kernel VM test harness (tests/vm/README.md explains it).
//!
//! A [`Lab`] is: N storage servers (qemu-nbd, one per RAID leg) on 127.0.0.1,
//! one guest (Debian kernel under QEMU TCG, busybox initramfs) that reaches
//! them at 10.0.2.2, nbd devices connected to them and md RAID1 arrays over
//! those, plus the step channel to run commands in the guest. Everything is
//! killed and removed when the Lab is dropped, also when a test panics.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod agree;
pub mod guest;
pub mod iscsi;
pub mod iscsi_lab;
pub mod proc;
pub mod storage;
pub mod vm;
pub mod xen;
pub mod xen_clock;
pub mod xen_dm;

pub use storage::{ImageFormat, StorageServer};
pub use vm::{Step, Vm};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const IGNORE_MSG: &str = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)";

/// Poll `cond` until true or `timeout`; returns the last answer.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

// ---- base64 (the step channel's framing) ----------------------------------

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn b64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decode base64, ignoring whitespace and padding; panics on other bytes.
pub fn b64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for b in text.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' | b' ' => continue,
            _ => panic!("bad base64 byte {b:#x} from the guest"),
        };
        acc = acc << 6 | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

// ---- assets -----------------------------------------------------------------

/// Kernel and initramfs the guest boots.
pub struct Assets {
    pub vmlinux: PathBuf,
    pub initramfs: PathBuf,
    pub kernel_version: String,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn mtime(p: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// `sha256sum`'s hex digest of a file.
pub fn sha256_file(p: &Path) -> String {
    let o = Command::new("sha256sum")
        .arg(p)
        .output()
        .unwrap_or_else(|e| panic!("sha256sum {p:?}: {e}"));
    assert!(o.status.success(), "sha256sum {p:?} failed");
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Which initramfs a guest boots: the one every VM test uses, or that one with
/// the iSCSI initiator added (tests/vm_iscsi.rs; 12 MB more, mostly open-iscsi's
/// libraries, so the other tests do not carry it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Base,
    Iscsi,
}

/// Find the VM assets, failing loudly when provisioning has not been done,
/// and (re)build the initramfs when the mdguard binary under test or the
/// guest scripts are newer than it.
pub fn assets() -> &'static Assets {
    assets_for(Flavor::Base)
}

/// [`assets`] of a flavour.
pub fn assets_for(flavor: Flavor) -> &'static Assets {
    static BASE: OnceLock<Assets> = OnceLock::new();
    static ISCSI: OnceLock<Assets> = OnceLock::new();
    let cell = match flavor {
        Flavor::Base => &BASE,
        Flavor::Iscsi => &ISCSI,
    };
    cell.get_or_init(|| find_assets(flavor))
}

fn find_assets(flavor: Flavor) -> Assets {
    let cache = std::env::var_os("MDGUARD_VM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("tests/vm/.cache"));
    let vmlinux = cache.join("kernel/vmlinux");
    let kver = std::fs::read_to_string(cache.join("kernel.version")).unwrap_or_default();
    if !vmlinux.is_file() || kver.trim().is_empty() {
        panic!(
            "VM test assets missing: no kernel in {cache:?}. \
             Run tests/vm/provision.sh (or tests/vm/run.sh) first."
        );
    }
    for tool in ["qemu-system-x86_64", "qemu-nbd", "qemu-img"] {
        let ok = Command::new(tool)
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(ok, "VM test: {tool} not found; run tests/vm/provision.sh");
    }
    // MDGUARD_VM_BIN: another mdguard binary for the guest (tests/pkg/run.sh
    // boots the packaged one), in its own initramfs (MDGUARD_VM_INITRAMFS)
    // so the default one is not clobbered.
    let bin = std::env::var_os("MDGUARD_VM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_mdguard")));
    let base = std::env::var_os("MDGUARD_VM_INITRAMFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache.join("initramfs.cpio"));
    let initramfs = match flavor {
        Flavor::Base => base,
        Flavor::Iscsi => {
            let stem = base.file_stem().unwrap_or_default().to_string_lossy();
            base.with_file_name(format!("{stem}-iscsi.cpio"))
        }
    };
    let inputs = [
        bin.clone(),
        repo().join("tests/vm/build-initramfs.sh"),
        repo().join("tests/vm/guest/init"),
        repo().join("tests/vm/guest/ctl-loop"),
        repo().join("tests/vm/guest/snap"),
    ];
    // mtimes alone miss a different binary that is older than the
    // initramfs (a package's files carry its build date): the initramfs
    // also records which binary (sha256) it holds (build-initramfs.sh
    // writes the stamp).
    let stamp = initramfs.with_extension("mdguard.sha256");
    let want = sha256_file(&bin);
    let built = mtime(&initramfs);
    let same_bin = std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == want);
    if built.is_none() || !same_bin || inputs.iter().any(|p| mtime(p) > built) {
        eprintln!("vm: (re)building the initramfs {initramfs:?} with {bin:?}");
        let st = Command::new("bash")
            .arg(repo().join("tests/vm/build-initramfs.sh"))
            .arg(&bin)
            .env("MDGUARD_VM_CACHE", &cache)
            .env("MDGUARD_VM_INITRAMFS", &initramfs)
            .env(
                "MDGUARD_VM_ISCSI",
                if flavor == Flavor::Iscsi { "1" } else { "" },
            )
            .status()
            .expect("bash");
        assert!(st.success(), "tests/vm/build-initramfs.sh failed");
    }
    Assets {
        vmlinux,
        initramfs,
        kernel_version: kver.trim().to_string(),
    }
}

// ---- sysfs snapshots --------------------------------------------------------

/// `mdX/file=value` and `mdX/dev-Y/file=value` lines from the guest's `snap`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub text: String,
    pub map: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub device: String,
    pub states: Vec<String>,
    /// None when sysfs says "none" (faulty or spare: no slot).
    pub slot: Option<u32>,
}

impl Snapshot {
    pub fn parse(text: &str) -> Snapshot {
        let map = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect();
        Snapshot {
            text: text.to_string(),
            map,
        }
    }

    pub fn arrays(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .map
            .keys()
            .filter_map(|k| k.split('/').next())
            .map(str::to_string)
            .collect();
        v.dedup();
        v
    }

    /// `get("md0", "array_state")`
    pub fn get(&self, md: &str, key: &str) -> Option<&str> {
        self.map.get(&format!("{md}/{key}")).map(String::as_str)
    }

    pub fn must(&self, md: &str, key: &str) -> &str {
        self.get(md, key)
            .unwrap_or_else(|| panic!("no {md}/{key} in snapshot:\n{}", self.text))
    }

    pub fn members(&self, md: &str) -> Vec<Member> {
        let prefix = format!("{md}/dev-");
        let mut devs: Vec<&str> = self
            .map
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .filter_map(|r| r.split_once('/').map(|x| x.0))
            .collect();
        devs.dedup();
        devs.into_iter()
            .map(|d| {
                let state = self.must(md, &format!("dev-{d}/state"));
                Member {
                    device: d.to_string(),
                    states: state
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect(),
                    slot: self.must(md, &format!("dev-{d}/slot")).parse().ok(),
                }
            })
            .collect()
    }

    pub fn member(&self, md: &str, dev: &str) -> Option<Member> {
        self.members(md).into_iter().find(|m| m.device == dev)
    }
}

/// The guest's sysfs snapshot (`snap`).
pub fn snapshot(vm: &mut Vm) -> Snapshot {
    Snapshot::parse(&vm.sh("snap"))
}

/// Wait until `pred` holds for a fresh snapshot; returns that snapshot.
pub fn wait_snapshot(
    vm: &mut Vm,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&Snapshot) -> bool,
) -> Snapshot {
    vm.wait_for(what, timeout, |vm| {
        let s = snapshot(vm);
        pred(&s).then_some(s)
    })
}

/// Wait until `md` is fully in sync: no sync running, not degraded, and
/// `resync_start` = `none` (nothing left to resync). The last matters
/// right after `mdadm --create`: sync_action reads `idle` for a moment
/// before the initial resync starts (seen), so idle alone is not clean.
pub fn wait_clean(vm: &mut Vm, md: &str, timeout: Duration) -> Snapshot {
    wait_snapshot(
        vm,
        &format!("{md} idle, in sync, not degraded"),
        timeout,
        |s| {
            s.get(md, "sync_action") == Some("idle")
                && s.get(md, "degraded") == Some("0")
                && !matches!(s.get(md, "resync_start"), Some(r) if r != "none")
        },
    )
}

/// Wait until `md` has both legs again and no sync running (a heal done).
pub fn wait_healed(vm: &mut Vm, md: &str, timeout: Duration) -> Snapshot {
    wait_snapshot(vm, &format!("{md} healed"), timeout, |s| {
        s.get(md, "degraded") == Some("0") && s.get(md, "sync_action") == Some("idle")
    })
}

// ---- the lab: servers + guest + arrays ------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One RAID1 (md0) over two whole legs.
    Mirror,
    /// Each leg a disk with two partitions: md0 = p1+p1 (root-like),
    /// md1 = p2+p2 (swap-like).
    Seed,
}

#[derive(Debug, Clone)]
pub struct LabConfig {
    pub layout: Layout,
    pub bitmap: bool,
    /// `nbd-client -t SECONDS`; None: no transport timeout.
    pub nbd_timeout: Option<u32>,
    pub leg_mib: u64,
    pub format: ImageFormat,
    /// `mdadm --bitmap-chunk` in KiB; None: mdadm's default (64 MiB, which
    /// covers a whole small test leg, so any write dirties all of it).
    pub bitmap_chunk_kib: Option<u32>,
    /// Global md resync ceiling (KiB/s) set before the arrays are created,
    /// so the initial resync is observable; None: kernel default.
    pub throttle_kbps: Option<u32>,
    /// `mdadm --metadata`: "1.2" (the default) or "0.90", whose superblock sits
    /// at the end of the device.
    pub metadata: &'static str,
    /// Seed layout: the second partition runs to the very end of the disk (the
    /// default leaves 1 MiB free), so a 0.90 superblock at its end is also where
    /// the whole disk's would be.
    pub last_partition_to_end: bool,
}

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig {
            layout: Layout::Mirror,
            bitmap: true,
            nbd_timeout: None,
            leg_mib: 32,
            format: ImageFormat::Raw,
            bitmap_chunk_kib: None,
            throttle_kbps: Some(64),
            metadata: "1.2",
            last_partition_to_end: false,
        }
    }
}

impl LabConfig {
    /// What the heal scenarios run on (tests/vm_heal.rs, the flap experiment,
    /// the bench): a 1 MiB bitmap chunk, so an outage's writes dirty only what
    /// they touch, and no resync ceiling.
    pub fn healing(layout: Layout, nbd_timeout: Option<u32>, leg_mib: u64) -> LabConfig {
        LabConfig {
            layout,
            nbd_timeout,
            throttle_kbps: None,
            leg_mib,
            bitmap_chunk_kib: Some(1024),
            ..LabConfig::default()
        }
    }
}

pub struct Leg {
    pub server: StorageServer,
    /// Guest block device of the whole leg, e.g. "nbd0".
    pub nbd: String,
}

pub struct ArraySpec {
    pub name: String,
    /// Member block devices in the guest, e.g. ["nbd0p1", "nbd1p1"].
    pub members: Vec<String>,
}

pub struct Lab {
    // Drop order is field order: the guest goes first, then the servers,
    // then the directory holding images, sockets and logs.
    pub vm: Vm,
    pub legs: Vec<Leg>,
    pub arrays: Vec<ArraySpec>,
    pub cfg: LabConfig,
    name: String,
    started: Instant,
    dir: tempfile::TempDir,
}

pub const DEFAULT_SPEED_MAX: u32 = 200_000;
pub const DEFAULT_SPEED_MIN: u32 = 1_000;

impl Lab {
    /// Start the servers, boot the guest, connect the legs, create the arrays.
    pub fn start(name: &str, cfg: LabConfig) -> Lab {
        let assets = assets();
        let started = Instant::now();
        // The run id lets tests/vm/run.sh find leftovers of its own run only
        // (other sessions on the machine may run VM tests at the same time).
        let run_id = std::env::var("MDGUARD_VM_RUN_ID")
            .unwrap_or_else(|_| format!("p{}", std::process::id()));
        let dir = tempfile::Builder::new()
            .prefix(&format!("mdguard-vm-{run_id}-{name}-"))
            .tempdir()
            .expect("tempdir");
        let mut legs = Vec::new();
        for i in 0..2 {
            let leg = format!("leg{i}");
            let server = match cfg.layout {
                Layout::Mirror => StorageServer::create(dir.path(), &leg, cfg.leg_mib, cfg.format),
                Layout::Seed => {
                    assert_eq!(cfg.format, ImageFormat::Raw, "seed layout: raw images only");
                    let img = dir.path().join(format!("{leg}.raw"));
                    let f = std::fs::File::create(&img).unwrap();
                    f.set_len(cfg.leg_mib << 20).unwrap();
                    let p1 = (cfg.leg_mib - 2) / 2;
                    let end_gap = if cfg.last_partition_to_end { 0 } else { 1 };
                    storage::write_mbr(&img, &[(1, p1), (1 + p1, cfg.leg_mib - 1 - end_gap - p1)]);
                    StorageServer::serve(dir.path(), &leg, img, cfg.format)
                }
            };
            legs.push(Leg {
                server,
                nbd: format!("nbd{i}"),
            });
        }
        let mut vm = Vm::boot(assets, dir.path());
        if let Some(bin) = std::env::var_os("MDGUARD_VM_BIN") {
            // the guest runs exactly the binary asked for, byte for byte
            let want = sha256_file(Path::new(&bin));
            let got = vm.sh("sha256sum /bin/mdguard | cut -d' ' -f1");
            assert_eq!(got.trim(), want, "guest /bin/mdguard is not {bin:?}");
        }
        let arrays = match cfg.layout {
            Layout::Mirror => vec![ArraySpec {
                name: "md0".into(),
                members: vec!["nbd0".into(), "nbd1".into()],
            }],
            Layout::Seed => (1..=2)
                .map(|p| ArraySpec {
                    name: format!("md{}", p - 1),
                    members: vec![format!("nbd0p{p}"), format!("nbd1p{p}")],
                })
                .collect(),
        };
        let mut lab = Lab {
            vm,
            legs,
            arrays,
            cfg,
            name: name.to_string(),
            started,
            dir,
        };
        for i in 0..lab.legs.len() {
            lab.connect_leg(i);
        }
        match lab.cfg.throttle_kbps {
            Some(k) => lab.set_speed_limits(1, k),
            None => lab.set_speed_limits(DEFAULT_SPEED_MIN, DEFAULT_SPEED_MAX),
        }
        let bitmap = match (lab.cfg.bitmap, lab.cfg.bitmap_chunk_kib) {
            (false, _) => "none".to_string(),
            (true, None) => "internal".to_string(),
            (true, Some(k)) => format!("internal --bitmap-chunk={k}K"),
        };
        for a in &lab.arrays {
            let devs: Vec<String> = a.members.iter().map(|m| format!("/dev/{m}")).collect();
            let script = format!(
                "mdadm --create /dev/{} --run --level=1 --raid-devices=2 --metadata={} \
                 --bitmap={bitmap} {}",
                a.name,
                lab.cfg.metadata,
                devs.join(" ")
            );
            lab.vm.sh(&script);
        }
        lab
    }

    /// [`Lab::start`], then wait up to `timeout` until every array has
    /// finished its initial resync.
    pub fn start_clean(name: &str, cfg: LabConfig, timeout: Duration) -> Lab {
        let mut lab = Lab::start(name, cfg);
        let names: Vec<String> = lab.arrays.iter().map(|a| a.name.clone()).collect();
        for md in names {
            lab.wait_clean(&md, timeout);
        }
        lab
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Connect leg `i`'s nbd device to its server and wait until it (and,
    /// in the seed layout, its partitions) is usable.
    pub fn connect_leg(&mut self, i: usize) {
        let nbd = self.legs[i].nbd.clone();
        let port = self.legs[i].server.port();
        let t = self
            .cfg
            .nbd_timeout
            .map(|t| format!(" -t {t}"))
            .unwrap_or_default();
        self.vm.sh(&format!(
            "nbd-client 10.0.2.2 {port} /dev/{nbd} -N {}{t}",
            storage::EXPORT
        ));
        // Without udev nobody opens the new device, and the kernel scans
        // the partition table only on an open (GD_NEED_PART_SCAN): ask.
        let parts = if self.cfg.layout == Layout::Seed {
            format!(
                " && {{ [ -b /dev/{nbd}p2 ] || blockdev --rereadpt /dev/{nbd}; }} \
                 && [ -b /dev/{nbd}p1 ] && [ -b /dev/{nbd}p2 ]"
            )
        } else {
            String::new()
        };
        let check = format!("[ \"$(cat /sys/block/{nbd}/size)\" -gt 0 ]{parts}");
        self.vm.wait_for(
            &format!("/dev/{nbd} connected"),
            Duration::from_secs(30),
            |vm| (vm.run(&check, vm::STEP_TIMEOUT).status == 0).then_some(()),
        );
    }

    /// The agent's `[[reconnect]]` table for leg `i`: drop the node's dead
    /// connection, connect it to the leg's server again; `opts` go at the end
    /// of the `nbd-client` line (e.g. ` -t 5`).
    pub fn reconnect_cfg(&self, i: usize, opts: &str) -> String {
        format!(
            "[[reconnect]]\ndevice = \"{0}\"\ncommand = [\"sh\", \"-c\", \"nbd-client -d /dev/{0} >/dev/null 2>&1; nbd-client 10.0.2.2 {1} /dev/{0} -N leg{opts}\"]\ntimeout_s = 20\n",
            self.legs[i].nbd,
            self.legs[i].server.port()
        )
    }

    /// `nbd-client -d`: drop the (dead) connection of leg `i`.
    pub fn disconnect_leg(&mut self, i: usize) -> Step {
        let nbd = self.legs[i].nbd.clone();
        self.vm
            .run(&format!("nbd-client -d /dev/{nbd}"), vm::STEP_TIMEOUT)
    }

    /// Global md resync limits (/proc/sys/dev/raid/speed_limit_{min,max}).
    pub fn set_speed_limits(&mut self, min_kbps: u32, max_kbps: u32) {
        self.vm.sh(&format!(
            "echo {min_kbps} > /proc/sys/dev/raid/speed_limit_min && \
             echo {max_kbps} > /proc/sys/dev/raid/speed_limit_max"
        ));
    }

    pub fn throttle(&mut self, kbps: u32) {
        self.set_speed_limits(1, kbps);
    }

    pub fn unthrottle(&mut self) {
        self.set_speed_limits(DEFAULT_SPEED_MIN, DEFAULT_SPEED_MAX);
    }

    pub fn mdstat(&mut self) -> String {
        self.vm.sh("cat /proc/mdstat")
    }

    pub fn snapshot(&mut self) -> Snapshot {
        snapshot(&mut self.vm)
    }

    /// Wait until `pred` holds for a fresh snapshot; returns that snapshot.
    pub fn wait_snapshot(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Snapshot) -> bool,
    ) -> Snapshot {
        wait_snapshot(&mut self.vm, what, timeout, pred)
    }

    /// [`wait_clean`] in this lab's guest.
    pub fn wait_clean(&mut self, md: &str, timeout: Duration) -> Snapshot {
        wait_clean(&mut self.vm, md, timeout)
    }

    /// [`wait_healed`] in this lab's guest.
    pub fn wait_healed(&mut self, md: &str, timeout: Duration) -> Snapshot {
        wait_healed(&mut self.vm, md, timeout)
    }

    /// Wait until md has cleared the bitmap: every counter back to zero frees
    /// every page (`bitmap: 0/N pages` in mdstat).
    pub fn wait_bitmap_clean(&mut self, timeout: Duration) {
        self.vm.wait_for("bitmap clean", timeout, |vm| {
            vm.sh("cat /proc/mdstat")
                .contains("bitmap: 0/")
                .then_some(())
        });
    }

    /// Record a stage: mdstat text and sysfs snapshot, taken back to back,
    /// saved under target/vm-captures/<lab>/ and, with
    /// MDGUARD_UPDATE_FIXTURES=1, as tests/fixtures/{mdstat,sysfs}/vm-<stage>.txt.
    pub fn capture(&mut self, stage: &str) -> Capture {
        let out = self.vm.sh("cat /proc/mdstat; echo '--- snap'; snap");
        let (mdstat, snap) = out
            .split_once("--- snap\n")
            .expect("capture output framing");
        let cap = Capture {
            stage: stage.to_string(),
            mdstat: mdstat.to_string(),
            snapshot: Snapshot::parse(snap),
        };
        let dir = repo().join("target/vm-captures").join(&self.name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{stage}.mdstat.txt")), &cap.mdstat).unwrap();
        std::fs::write(dir.join(format!("{stage}.sysfs.txt")), &cap.snapshot.text).unwrap();
        if std::env::var_os("MDGUARD_UPDATE_FIXTURES").is_some_and(|v| v == "1") {
            for (sub, text) in [("mdstat", &cap.mdstat), ("sysfs", &cap.snapshot.text)] {
                let d = repo().join("tests/fixtures").join(sub);
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join(format!("vm-{stage}.txt")), text).unwrap();
            }
        }
        // One line per stage: the md lines of mdstat (the rest is in the files).
        let summary: Vec<&str> = cap
            .mdstat
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("md") || l.contains("blocks") || l.contains('='))
            .collect();
        eprintln!(
            "[{:6.1}s] {}: stage {stage}: {}",
            self.started.elapsed().as_secs_f64(),
            self.name,
            summary.join(" | ")
        );
        cap
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        eprintln!(
            "lab {}: {:.1} s in all (boot {:.1} s)",
            self.name,
            self.started.elapsed().as_secs_f64(),
            self.vm.boot_time.as_secs_f64()
        );
    }
}

/// One stage as seen by the kernel.
pub struct Capture {
    pub stage: String,
    pub mdstat: String,
    pub snapshot: Snapshot,
}

/// A shell command on the host, its trimmed stdout ("" when it could not run):
/// the machine facts the soak and the benchmark record.
pub fn host_sh(cmd: &str) -> String {
    std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
