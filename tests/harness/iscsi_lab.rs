//! A lab with iSCSI legs: two [`IscsiTarget`]s on the host (one tgtd each), a
//! guest booted with the iSCSI initramfs ([`Flavor::Iscsi`]) whose open-iscsi
//! (iscsid, iscsiadm) logs in to both, and md0, a RAID1 with a bitmap over the
//! two LUNs (sda, sdb). Dropped like a [`super::Lab`]: guest first, then the
//! targets, then the directory of images and logs.

use super::iscsi::IscsiTarget;
use super::vm::{self, Vm};
use super::{assets_for, Flavor, Snapshot};
use std::path::Path;
use std::time::{Duration, Instant};

/// Where the guest's iscsid logs (it runs in the foreground, to stderr).
pub const ISCSID_LOG: &str = "/tmp/iscsid.log";

#[derive(Debug, Clone)]
pub struct IscsiLabConfig {
    pub leg_mib: u64,
    /// `node.session.timeo.replacement_timeout` of every node: how long the
    /// initiator queues I/O while it tries to log in again before failing it.
    pub replacement_timeout_s: u32,
    /// `mdadm --bitmap-chunk` in KiB.
    pub bitmap_chunk_kib: u32,
}

impl Default for IscsiLabConfig {
    fn default() -> Self {
        IscsiLabConfig {
            leg_mib: 32,
            replacement_timeout_s: 5,
            bitmap_chunk_kib: 1024,
        }
    }
}

pub struct IscsiLab {
    // drop order is field order
    pub vm: Vm,
    pub targets: Vec<IscsiTarget>,
    pub cfg: IscsiLabConfig,
    name: String,
    started: Instant,
    dir: tempfile::TempDir,
}

impl IscsiLab {
    /// Start both targets, boot the guest, start iscsid, log in to both targets
    /// (leg 0 first: sda, then sdb) and create md0 over them (`--assume-clean`:
    /// both legs are new zero-filled images).
    pub fn start(name: &str, cfg: IscsiLabConfig) -> IscsiLab {
        let assets = assets_for(Flavor::Iscsi);
        let started = Instant::now();
        let run_id = std::env::var("MDGUARD_VM_RUN_ID")
            .unwrap_or_else(|_| format!("p{}", std::process::id()));
        let dir = tempfile::Builder::new()
            .prefix(&format!("mdguard-vm-{run_id}-{name}-"))
            .tempdir()
            .expect("tempdir");
        let targets = (0..2)
            .map(|i| IscsiTarget::create(dir.path(), &format!("leg{i}"), cfg.leg_mib))
            .collect();
        let vm = Vm::boot(assets, dir.path());
        let mut lab = IscsiLab {
            vm,
            targets,
            cfg,
            name: name.to_string(),
            started,
            dir,
        };
        lab.start_initiator();
        let mut devs = Vec::new();
        for i in 0..lab.targets.len() {
            let (iqn, port) = (lab.targets[i].iqn().to_string(), lab.targets[i].port());
            lab.add_node(&iqn, port);
            devs.push(format!("/dev/{}", lab.login(&iqn, port)));
        }
        lab.vm.sh(&format!(
            "echo {} > /proc/sys/dev/raid/speed_limit_min && echo {} > /proc/sys/dev/raid/speed_limit_max",
            super::DEFAULT_SPEED_MIN,
            super::DEFAULT_SPEED_MAX
        ));
        // the images are new sparse files, zeros on both legs: they already
        // agree, so no initial resync (each test ends with a `check`)
        lab.vm.sh(&format!(
            "mdadm --create /dev/md0 --run --level=1 --raid-devices=2 --metadata=1.2 \
             --assume-clean --bitmap=internal --bitmap-chunk={}K {}",
            lab.cfg.bitmap_chunk_kib,
            devs.join(" ")
        ));
        lab
    }

    /// [`IscsiLab::start`], then wait for md0's initial resync.
    pub fn start_clean(name: &str, cfg: IscsiLabConfig, timeout: Duration) -> IscsiLab {
        let mut lab = IscsiLab::start(name, cfg);
        super::wait_clean(&mut lab.vm, "md0", timeout);
        lab
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Load the iSCSI modules (not loaded at boot; an accelerated variant the
    /// emulated CPU lacks, crct10dif-pclmul, fails with ENODEV and its generic
    /// twin does the job), set the replacement timeout
    /// new node records get, start iscsid in the foreground with its log in
    /// [`ISCSID_LOG`].
    fn start_initiator(&mut self) {
        let t0 = Instant::now();
        self.vm.sh(&format!(
            "while read -r path params; do insmod \"$path\" $params || echo \"insmod $path failed\" >&2; done < /etc/modules.iscsi; \
             [ -d /sys/module/iscsi_tcp ] && [ -d /sys/module/sd_mod ] && \
             sed -i 's/^node.session.timeo.replacement_timeout = .*/node.session.timeo.replacement_timeout = {}/' /etc/iscsi/iscsid.conf && \
             grep -q '^node.session.timeo.replacement_timeout = {}$' /etc/iscsi/iscsid.conf && \
             (setsid iscsid -f </dev/null >{ISCSID_LOG} 2>&1 &)",
            self.cfg.replacement_timeout_s, self.cfg.replacement_timeout_s
        ));
        // iscsid in the foreground writes no pid file: wait for its control
        // socket (abstract, `@ISCSIADM_ABSTRACT_NAMESPACE`)
        let up = "grep -q ISCSIADM_ABSTRACT_NAMESPACE /proc/net/unix";
        let ok = super::wait_until(Duration::from_secs(30), || {
            self.vm.run(up, vm::STEP_TIMEOUT).status == 0
        });
        if !ok {
            let log = self.vm.sh(&format!("cat {ISCSID_LOG}; pidof iscsid; true"));
            self.vm.fail(&format!("iscsid did not come up:\n{log}"));
        }
        eprintln!(
            "iscsi lab {}: initiator up in {:.1} s",
            self.name,
            t0.elapsed().as_secs_f64()
        );
    }

    /// The portal of a target as the guest reaches it.
    pub fn portal(port: u16) -> String {
        format!("10.0.2.2:{port}")
    }

    /// Create the guest's node record for a target (it takes the replacement
    /// timeout from iscsid.conf) and check the timeout it got.
    pub fn add_node(&mut self, iqn: &str, port: u16) {
        let p = Self::portal(port);
        let rec = self.vm.sh(&format!(
            "iscsiadm -m node -o new -T {iqn} -p {p} >/dev/null && iscsiadm -m node -T {iqn} -p {p}"
        ));
        let want = format!(
            "node.session.timeo.replacement_timeout = {}",
            self.cfg.replacement_timeout_s
        );
        assert!(
            rec.lines().any(|l| l.trim() == want),
            "node record of {iqn} lacks `{want}`:\n{rec}"
        );
    }

    /// `iscsiadm --login` to a target; waits for its LUN's disk and returns its name.
    pub fn login(&mut self, iqn: &str, port: u16) -> String {
        let p = Self::portal(port);
        self.vm.sh(&format!(
            "iscsiadm -m node -T {iqn} -p {p} --login >/dev/null"
        ));
        self.wait_disk(iqn)
    }

    /// `iscsiadm --logout` from a target.
    pub fn logout(&mut self, iqn: &str, port: u16) -> String {
        let p = Self::portal(port);
        self.vm
            .sh(&format!("iscsiadm -m node -T {iqn} -p {p} --logout"))
    }

    /// Wait until the session to `iqn` has its LUN's disk, with a size; its name.
    pub fn wait_disk(&mut self, iqn: &str) -> String {
        let iqn = iqn.to_string();
        self.vm.wait_for(
            &format!("the disk of {iqn}"),
            Duration::from_secs(30),
            |vm| {
                let d = disk_of(vm, &iqn)?;
                let size = vm.read(&format!("/sys/block/{d}/size"))?;
                (size.parse::<u64>().unwrap_or(0) > 0).then_some(d)
            },
        )
    }

    /// The disk the session to target `iqn` shows now, if any.
    pub fn disk(&mut self, iqn: &str) -> Option<String> {
        disk_of(&mut self.vm, iqn)
    }

    /// The SCSI identity the kernel read from a disk (`device/wwid`).
    pub fn wwid(&mut self, disk: &str) -> String {
        self.vm
            .read(&format!("/sys/block/{disk}/device/wwid"))
            .unwrap_or_default()
    }

    /// The session's state and the SCSI device's (`LOGGED_IN running`,
    /// `FAILED transport-offline`...) of target `iqn`.
    pub fn session_state(&mut self, iqn: &str) -> String {
        self.vm
            .sh(&format!(
                "for s in /sys/class/iscsi_session/session*; do \
                   [ \"$(cat $s/targetname 2>/dev/null)\" = '{iqn}' ] || continue; \
                   st=$(cat $s/state); dev=$(cat $s/device/target*/*:1/state 2>/dev/null); \
                   echo \"$st $dev\"; \
                 done"
            ))
            .trim()
            .to_string()
    }

    pub fn snapshot(&mut self) -> Snapshot {
        super::snapshot(&mut self.vm)
    }
}

/// The disk (sdX) of the session to target `iqn`: the block device under the
/// session's SCSI target in sysfs.
fn disk_of(vm: &mut Vm, iqn: &str) -> Option<String> {
    let out = vm.sh(&format!(
        "for s in /sys/class/iscsi_session/session*; do \
           [ \"$(cat $s/targetname 2>/dev/null)\" = '{iqn}' ] || continue; \
           for b in $s/device/target*/*/block/*; do [ -e \"$b\" ] && echo \"${{b##*/}}\"; done; \
         done; true"
    ));
    out.split_whitespace().next().map(str::to_string)
}

impl Drop for IscsiLab {
    fn drop(&mut self) {
        eprintln!(
            "iscsi lab {}: {:.1} s in all (boot {:.1} s)",
            self.name,
            self.started.elapsed().as_secs_f64(),
            self.vm.boot_time.as_secs_f64()
        );
    }
}
