//! Real Xen under QEMU (tests/xen/README.md explains it): Debian's Xen 4.17
//! hypervisor booted by QEMU (TCG) as a multiboot kernel, the Debian kernel
//! as dom0 with a busybox initramfs running xenstored, xenconsoled and xl,
//! and the same kernel as a PV domU that dom0 creates with `xl create`.
//!
//! dom0 is the client of two storage servers (qemu-nbd on the host, reached
//! at 10.0.2.2 through QEMU user-mode networking, `nbd-client -t 5` in dom0)
//! and hands /dev/nbd0 and /dev/nbd1 to the domU as `phy:` vbds xvdb and
//! xvdc, where md0 is a RAID1 over them.
//!
//! Control: the host runs steps in dom0 over the VM harness's step channel
//! (virtio-serial; dom0 sees QEMU's PCI devices), and steps in the domU
//! through dom0 over a test-only xenstore channel under the guest's
//! `data/test/` (tests/xen/guest/domu-ctl, domu-run).

use super::storage::{ImageFormat, StorageServer};
use super::vm::{Step, Vm};
use super::{b64_encode, mtime, repo};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const XEN_IGNORE_MSG: &str =
    "Xen test: run tests/xen/run.sh (provisions Xen, builds the images)";
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(600);
pub const DOMU_READY_TIMEOUT: Duration = Duration::from_secs(300);
pub const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// The domU's name in `xl create`.
pub const GUEST: &str = "guest";

pub struct XenAssets {
    pub xen: PathBuf,
    pub vmlinux: PathBuf,
    pub dom0_initramfs: PathBuf,
}

/// Find the assets, failing loudly when tests/xen/provision.sh has not run,
/// and (re)build the initramfs images when the mdguard binary under test,
/// the builder or a guest script is newer than them.
pub fn assets() -> &'static XenAssets {
    static ASSETS: OnceLock<XenAssets> = OnceLock::new();
    ASSETS.get_or_init(|| {
        let cache = std::env::var_os("MDGUARD_XEN_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo().join("tests/xen/.cache"));
        let vmcache = std::env::var_os("MDGUARD_VM_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo().join("tests/vm/.cache"));
        let xen = cache.join("xen");
        let vmlinux = vmcache.join("kernel/vmlinux");
        for p in [&xen, &vmlinux] {
            assert!(
                p.is_file(),
                "Xen test assets missing: no {p:?}. Run tests/xen/provision.sh (or tests/xen/run.sh) first."
            );
        }
        let dom0_initramfs = cache.join("dom0.cpio");
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_mdguard"));
        let mut inputs = vec![bin.clone(), repo().join("tests/xen/build-initramfs.sh")];
        for d in ["tests/xen/guest", "tests/vm/guest"] {
            for e in std::fs::read_dir(repo().join(d)).expect("guest scripts").flatten() {
                inputs.push(e.path());
            }
        }
        let built = mtime(&dom0_initramfs);
        if built.is_none() || inputs.iter().any(|p| mtime(p) > built) {
            eprintln!("xen: (re)building the initramfs images with {bin:?}");
            let st = Command::new("bash")
                .arg(repo().join("tests/xen/build-initramfs.sh"))
                .arg(&bin)
                .env("MDGUARD_XEN_CACHE", &cache)
                .env("MDGUARD_VM_CACHE", &vmcache)
                .status()
                .expect("bash");
            assert!(st.success(), "tests/xen/build-initramfs.sh failed");
        }
        XenAssets {
            xen,
            vmlinux,
            dom0_initramfs,
        }
    })
}

/// Stage timings of one lab, printed by [`XenLab::print_timings`].
#[derive(Debug, Default, Clone)]
pub struct Timings {
    /// QEMU start -> dom0 kernel's clock starts (wall clock minus dom0's
    /// uptime at READY): Xen's own boot and building dom0.
    pub xen_to_dom0_kernel: Duration,
    /// dom0 kernel start -> its /init ready (dom0 uptime at READY).
    pub dom0_init: Duration,
    /// nbd connect of both legs in dom0.
    pub nbd_connect: Duration,
    /// `xl create` -> returned.
    pub xl_create: Duration,
    /// `xl create` issued -> the domU's step channel answers.
    pub domu_ready: Duration,
    /// md0 created -> first resync done.
    pub initial_resync: Duration,
}

pub struct XenLab {
    // Drop order is field order: QEMU first, then the servers, then the dir.
    pub dom0: Vm,
    pub legs: Vec<StorageServer>,
    pub domid: u32,
    pub timings: Timings,
    /// Options of dom0's `nbd-client` (default `-t 5`).
    pub nbd_opts: String,
    name: String,
    started: Instant,
    ready_at: Duration,
    dir: tempfile::TempDir,
}

/// `nbd-client` line dom0 uses for leg `i`; `opts` go at the end.
pub fn nbd_connect_cmd(i: usize, port: u16, opts: &str) -> String {
    format!("nbd-client 10.0.2.2 {port} /dev/nbd{i} -N leg {opts}")
}

impl XenLab {
    /// Start two storage servers and boot Xen and dom0.
    pub fn boot(name: &str) -> XenLab {
        let assets = assets();
        let started = Instant::now();
        let run_id = std::env::var("MDGUARD_XEN_RUN_ID")
            .unwrap_or_else(|_| format!("p{}", std::process::id()));
        let dir = tempfile::Builder::new()
            .prefix(&format!("mdguard-xen-{run_id}-{name}-"))
            .tempdir()
            .expect("tempdir");
        let legs: Vec<StorageServer> = (0..2)
            .map(|i| StorageServer::create(dir.path(), &format!("leg{i}"), 64, ImageFormat::Raw))
            .collect();

        // QEMU's -initrd takes the multiboot modules comma-separated, each
        // "file args": dom0's kernel with its command line, then its initrd.
        let kernel = assets.vmlinux.display().to_string();
        let initrd = assets.dom0_initramfs.display().to_string();
        assert!(
            !kernel.contains(',') && !initrd.contains(','),
            "paths with commas cannot be multiboot modules"
        );
        // QEMU's CPU model (MDGUARD_XEN_CPU overrides). Not `max`: with it,
        // user programs in dom0 and the domU segfaulted at random under TCG
        // (busybox twice at the same instruction, libxenstore once: 2 and 3
        // of 3 scenarios lost their control channel in two runs); with
        // Nehalem (no AVX, no XSAVE) none did. See tests/xen/README.md.
        let cpu = std::env::var("MDGUARD_XEN_CPU").unwrap_or_else(|_| "Nehalem".into());
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-accel", "tcg", "-cpu", &cpu, "-m", "2048", "-smp", "2"])
            .arg("-kernel")
            .arg(&assets.xen)
            .args([
                "-append",
                "console=com1 com1=115200,8n1 dom0_mem=768M,max:768M loglvl=all guest_loglvl=all",
            ])
            .arg("-initrd")
            .arg(format!(
                "{kernel} console=hvc0 earlyprintk=xen rdinit=/init panic=-1,{initrd}"
            ));
        let dom0 = Vm::launch(cmd, dir.path(), BOOT_TIMEOUT);
        let timings = Timings {
            dom0_init: Duration::from_secs_f64(dom0.guest_ready_uptime),
            xen_to_dom0_kernel: dom0
                .boot_time
                .saturating_sub(Duration::from_secs_f64(dom0.guest_ready_uptime)),
            ..Timings::default()
        };
        let mut lab = XenLab {
            dom0,
            legs,
            domid: 0,
            timings: Timings::default(),
            nbd_opts: "-t 5".to_string(),
            name: name.to_string(),
            started,
            ready_at: Duration::ZERO,
            dir,
        };
        lab.dom0_sh("touch /etc/xen/xl.conf");
        lab.timings = timings;
        lab
    }

    /// [`boot`](Self::boot), then connect the legs, create the domU, build md0.
    pub fn start(name: &str) -> XenLab {
        let mut lab = XenLab::boot(name);
        lab.create_domu();
        lab
    }

    /// Connect the legs in dom0, `xl create` the domU with them as xvdb and
    /// xvdc, wait for it, build md0 and wait for its first resync.
    pub fn create_domu(&mut self) {
        self.connect_legs();
        self.create_domu_on(["/dev/nbd0", "/dev/nbd1"]);
    }

    /// Connect dom0's /dev/nbd0 and /dev/nbd1 to the two servers.
    pub fn connect_legs(&mut self) {
        let t = Instant::now();
        for i in 0..2 {
            self.connect_leg(i);
        }
        self.timings.nbd_connect = t.elapsed();
    }

    /// `xl create` the domU with dom0's block devices `disks` as xvdb and
    /// xvdc, wait for it, build md0 and wait for its first resync.
    pub fn create_domu_on(&mut self, disks: [&str; 2]) {
        let lab = self;
        let mut timings = lab.timings.clone();
        let cfg = format!(
            "name = \"{GUEST}\"\ntype = \"pv\"\nkernel = \"/boot/vmlinux\"\nramdisk = \"/boot/domu.cpio\"\n\
             extra = \"console=hvc0 rdinit=/init\"\nmemory = 256\nvcpus = 1\n\
             disk = [ \"phy:{},xvdb,w\", \"phy:{},xvdc,w\" ]\non_crash = \"preserve\"\n",
            disks[0], disks[1]
        );
        lab.dom0_sh(&format!("cat > /etc/xen/{GUEST}.cfg <<'EOF'\n{cfg}EOF"));
        let t = Instant::now();
        lab.xl_retrying_hotplug(&format!("xl create /etc/xen/{GUEST}.cfg"));
        timings.xl_create = t.elapsed();
        lab.domid = lab
            .dom0_sh(&format!("xl domid {GUEST}"))
            .trim()
            .parse()
            .expect("xl domid");
        let ready = format!("/local/domain/{}/data/test/ready", lab.domid);
        let deadline = Instant::now() + DOMU_READY_TIMEOUT;
        loop {
            let s = lab
                .dom0
                .run(&format!("xenstore-read {ready}"), STEP_TIMEOUT);
            if s.status == 0 {
                eprintln!("xen: domU ready (its uptime {} s)", s.stdout.trim());
                break;
            }
            if Instant::now() >= deadline {
                lab.fail("the domU never wrote data/test/ready");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        timings.domu_ready = t.elapsed();

        lab.domu_sh("for d in xvdb xvdc; do [ -b /dev/$d ] || exit 1; done");
        let t = Instant::now();
        lab.domu_sh(
            "mdadm --create /dev/md0 --run --level=1 --raid-devices=2 --metadata=1.2 \
             --bitmap=internal --bitmap-chunk=1024K /dev/xvdb /dev/xvdc",
        );
        lab.wait_domu(
            "md0 clean after the initial resync",
            Duration::from_secs(300),
            |l| l.md_clean("md0"),
        );
        timings.initial_resync = t.elapsed();
        lab.timings = timings;
        lab.ready_at = lab.started.elapsed();
        lab.print_timings();
    }

    /// Run an `xl` command that attaches the guest's disks (`create`,
    /// `restore`), again up to twice when libxl killed the block hotplug
    /// script for taking too long: under TCG on a loaded 2-core machine it
    /// sometimes does (`killing execution of /etc/xen/scripts/block add
    /// because of timeout`; the domain is destroyed and nothing is left).
    /// Any other failure fails the test.
    pub fn xl_retrying_hotplug(&mut self, cmd: &str) -> Step {
        for attempt in 1.. {
            let s = self.dom0.run(cmd, BOOT_TIMEOUT);
            if s.status == 0 {
                return s;
            }
            let hotplug = s.stderr.contains("scripts/block add because of timeout");
            if !hotplug || attempt == 3 {
                self.fail(&format!(
                    "{cmd} failed ({}): {}{}",
                    s.status, s.stdout, s.stderr
                ));
            }
            eprintln!("xen: {cmd}: the block hotplug script timed out (machine load); again");
        }
        unreachable!()
    }

    /// The domU's domid as xl knows it now (it changes with `xl restore` and
    /// `xl migrate`); domU steps go to it from now on.
    pub fn refresh_domid(&mut self) -> u32 {
        let id = self.dom0_sh(&format!("xl domid {GUEST}"));
        self.domid = id
            .trim()
            .parse()
            .unwrap_or_else(|_| self.fail(&format!("xl domid {GUEST}: {id:?}")));
        self.domid
    }

    /// Time from the lab's start to md0 built in the domU.
    pub fn ready_at(&self) -> Duration {
        self.ready_at
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn print_timings(&self) {
        let t = &self.timings;
        eprintln!(
            "timing {}: xen->dom0 kernel {:.1} s, dom0 /init {:.1} s, nbd connect {:.1} s, \
             xl create {:.1} s, xl create->domU ready {:.1} s, initial resync {:.1} s, lab ready at {:.1} s",
            self.name,
            t.xen_to_dom0_kernel.as_secs_f64(),
            t.dom0_init.as_secs_f64(),
            t.nbd_connect.as_secs_f64(),
            t.xl_create.as_secs_f64(),
            t.domu_ready.as_secs_f64(),
            t.initial_resync.as_secs_f64(),
            self.started.elapsed().as_secs_f64()
        );
    }

    /// Connect dom0's /dev/nbd`i` to leg `i`'s server and wait for its size.
    pub fn connect_leg(&mut self, i: usize) {
        let port = self.legs[i].port();
        self.dom0_sh(&format!(
            "{} && i=0; until [ \"$(cat /sys/block/nbd{i}/size)\" -gt 0 ]; do i=$((i+1)); [ $i -lt 100 ] || exit 1; usleep 100000; done",
            nbd_connect_cmd(i, port, &self.nbd_opts)
        ));
    }

    /// Run a dom0 step that must succeed; its stdout.
    pub fn dom0_sh(&mut self, script: &str) -> String {
        let s = self.dom0.run(script, STEP_TIMEOUT);
        s.stdout_if_ok("dom0", script)
            .unwrap_or_else(|e| self.fail(&e))
    }

    /// Run a script in the domU (through dom0 and the xenstore channel).
    pub fn domu(&mut self, script: &str, timeout: Duration) -> Step {
        let secs = timeout.as_secs().max(1);
        let s = self.dom0.try_run(
            &format!(
                "domu-run {} {secs} {}",
                self.domid,
                b64_encode(script.as_bytes())
            ),
            timeout + Duration::from_secs(60),
        );
        match s {
            Ok(s) if s.status == 124 || s.status == 125 => self.fail(&format!(
                "domU step channel: {}\nscript: {script}",
                s.stderr
            )),
            Ok(s) => s,
            Err(e) => self.fail(&format!(
                "dom0 did not finish a domU step: {e}\nscript: {script}"
            )),
        }
    }

    /// Run a domU script that must succeed; its stdout.
    pub fn domu_sh(&mut self, script: &str) -> String {
        let s = self.domu(script, STEP_TIMEOUT);
        s.stdout_if_ok("domU", script)
            .unwrap_or_else(|e| self.fail(&e))
    }

    /// md `md` in the domU is in sync with nothing running or queued.
    pub fn md_clean(&mut self, md: &str) -> bool {
        let s = self.domu(
            &format!(
                "cd /sys/block/{md}/md && echo $(cat degraded sync_action resync_start array_state)"
            ),
            STEP_TIMEOUT,
        );
        let w: Vec<&str> = s.stdout.split_whitespace().collect();
        s.status == 0
            && w.len() == 4
            && w[0] == "0"
            && w[1] == "idle"
            && w[2] == "none"
            && (w[3] == "clean" || w[3] == "active")
    }

    /// Poll `probe` until true, at most `timeout`.
    pub fn wait_domu(
        &mut self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut(&mut XenLab) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(100);
        loop {
            if probe(self) {
                return;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("timed out after {timeout:?} waiting for {what}"));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(1000));
        }
    }

    /// The domU's console as xenconsoled logged it in dom0, and what dom0
    /// knows about it.
    pub fn domu_console(&mut self) -> String {
        self.dom0
            .try_run(
                &format!(
                    "tail -n 60 /var/log/xen/console/guest-{GUEST}.log; echo '--- xl list'; xl list; \
                     echo '--- dom0 dmesg'; dmesg | tail -n 15; echo '--- xl log'; tail -n 10 /var/log/xen/xl-{GUEST}.log"
                ),
                Duration::from_secs(30),
            )
            .map(|s| s.stdout + &s.stderr)
            .unwrap_or_else(|e| format!("(cannot read it: {e})"))
    }

    /// Panic with the domU's and the machine's (Xen + dom0) console tails.
    pub fn fail(&mut self, msg: &str) -> ! {
        let domu = self.domu_console();
        self.dom0.fail(&format!(
            "{msg}\n--- domU console (xenconsoled log, last 60 lines) ---\n{domu}"
        ))
    }
}

/// `mdguard host status` in dom0: the guest's health word and the exit code.
pub fn host_status(lab: &mut XenLab) -> (String, i32, String) {
    let s = lab.dom0.run(
        // a generous ping timeout: the domU runs under TCG
        "mdguard host status --timeout 10; echo \"rc=$?\"",
        Duration::from_secs(60),
    );
    let rc = s
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("rc="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1);
    let health = s
        .stdout
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == GUEST))
        .and_then(|l| {
            ["ok", "recovering", "degraded", "failed", "unknown"]
                .into_iter()
                .find(|h| l.split_whitespace().any(|w| w.eq_ignore_ascii_case(h)))
        })
        .unwrap_or("none")
        .to_string();
    (health, rc, s.stdout + &s.stderr)
}

/// The guest's line in the text of `mdguard host status` ("" when it has none).
pub fn guest_line(text: &str) -> String {
    text.lines()
        .find(|l| {
            let mut w = l.split_whitespace();
            w.next().is_some_and(|id| id.parse::<u32>().is_ok()) && w.next() == Some(GUEST)
        })
        .unwrap_or("")
        .trim()
        .to_string()
}
