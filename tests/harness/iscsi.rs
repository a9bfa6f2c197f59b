//! iSCSI targets: one `tgtd` (Debian's tgt) per RAID leg, serving one target
//! (its IQN) with one LUN backed by an image file, on 127.0.0.1 with a free
//! port, reached by the guest at 10.0.2.2. Tests kill (SIGKILL), freeze
//! (SIGSTOP), resume (SIGCONT) and restart them with the same target, LUN,
//! backing file and SCSI identity, as [`super::StorageServer`] does for nbd.
//!
//! Each tgtd has its own management socket (`tgtd -C N`:
//! `/var/run/tgtd/socket.N`, N derived from the portal's port, which no other
//! target on the machine listens on; tgtd takes N up to 32767), so labs of
//! several test processes run side by side.
//! A tgtd listens on a scratch portal while tgtadm configures it; the leg's
//! portal is added last, so an initiator never logs in to a target whose LUN
//! is not there yet.

use super::proc::Proc;
use super::storage::{free_port, listening};
use super::wait_until;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The IQN of the target named `name`.
pub fn iqn(name: &str) -> String {
    format!("iqn.2026-12.org.mdguard.test:{name}")
}

/// What the LUN says it is in its INQUIRY data: tgt's `scsi_id` and `scsi_sn`
/// (VPD page 0x80, the unit serial number). tgt builds the NAA designator of
/// VPD page 0x83, which the kernel shows as `device/wwid`
/// (`naa.6000000000000000` + 16 hex digits), from `scsi_id`: each character a
/// hex digit, or 0 when it is none, right-aligned (seen with ids of up to 16
/// characters, the only ones used here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LunIdentity {
    /// Set by the harness, different for each target name (as real storage).
    Own { scsi_id: String, scsi_sn: String },
    /// tgt's defaults, derived from the target and LUN numbers alone:
    /// `IET     00010001` and `beaf11` for LUN 1 of tid 1 in every tgtd, so the
    /// wwid `naa.60000000000000000e00000000010001` for any such LUN.
    TgtDefault,
}

impl LunIdentity {
    /// An identity of its own for the target `name`: 16 hex digits hashed
    /// from the name (FNV-1a), so the wwid carries all of it.
    pub fn own(name: &str) -> LunIdentity {
        let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
        });
        LunIdentity::Own {
            scsi_id: format!("{h:016x}"),
            scsi_sn: format!("mdguard-{name}"),
        }
    }

    /// The `device/wwid` the guest's kernel shows for a LUN with this identity.
    pub fn wwid(&self) -> String {
        let id = match self {
            LunIdentity::Own { scsi_id, .. } => scsi_id.as_str(),
            LunIdentity::TgtDefault => "IET     00010001",
        };
        let digits: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_hexdigit() {
                    c.to_ascii_lowercase()
                } else {
                    '0'
                }
            })
            .collect();
        let tail = &digits[digits.len().saturating_sub(16)..];
        format!("naa.6000000000000000{tail:0>16}")
    }
}

pub struct IscsiTarget {
    name: String,
    iqn: String,
    image: PathBuf,
    identity: LunIdentity,
    log: PathBuf,
    /// Never written (tgtd writes it only when it daemonizes): it puts the
    /// lab's directory on tgtd's command line, where tests/vm/run.sh looks for
    /// processes of its run left behind.
    pidfile: PathBuf,
    port: u16,
    proc: Option<Proc>,
    starts: u32,
}

/// The tid and LUN every target uses (one per tgtd).
const TID: &str = "1";
const LUN: &str = "1";

impl IscsiTarget {
    /// Create a raw image of `size_mib` MiB in `dir` and serve it as the LUN of
    /// target `name`, with an identity of its own.
    pub fn create(dir: &Path, name: &str, size_mib: u64) -> IscsiTarget {
        let image = dir.join(format!("{name}.raw"));
        let f = std::fs::File::create(&image).expect("create image");
        f.set_len(size_mib << 20).expect("size image");
        Self::serve(dir, name, image, LunIdentity::own(name))
    }

    /// Serve an existing image as the LUN of target `name`.
    pub fn serve(dir: &Path, name: &str, image: PathBuf, identity: LunIdentity) -> IscsiTarget {
        let mut t = IscsiTarget {
            name: name.to_string(),
            iqn: iqn(name),
            image,
            identity,
            log: dir.join(format!("{name}.tgtd.log")),
            pidfile: dir.join(format!("{name}.tgtd.pid")),
            port: 0,
            proc: None,
            starts: 0,
        };
        // a free port can be taken between our probe and tgtd's bind: try a few
        for _ in 0..5 {
            t.port = free_port();
            if t.try_start() {
                return t;
            }
        }
        panic!("{}: tgtd did not start; see {:?}", t.name, t.log);
    }

    /// The management port of this target's tgtd (`-C`, 1..=32767; 0 is the
    /// system tgtd's): two portal ports in the ephemeral range never map to one.
    fn control(&self) -> String {
        (self.port % 32767 + 1).to_string()
    }

    /// `tgtadm` on this target's tgtd; Err with what it said.
    fn tgtadm(&self, args: &[&str]) -> Result<(), String> {
        let o = Command::new("tgtadm")
            .arg("-C")
            .arg(self.control())
            .args(["--lld", "iscsi"])
            .args(args)
            .output()
            .map_err(|e| format!("tgtadm: {e} (run tests/vm/provision.sh)"))?;
        if o.status.success() {
            Ok(())
        } else {
            Err(format!(
                "tgtadm {}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ))
        }
    }

    /// The target, its LUN, its identity, the ACL and at last the leg's portal.
    fn configure(&self, scratch: u16) -> Result<(), String> {
        let image = self.image.to_string_lossy();
        let portal = format!("portal=127.0.0.1:{}", self.port);
        let scratch = format!("portal=127.0.0.1:{scratch}");
        self.tgtadm(&[
            "--op", "new", "--mode", "target", "--tid", TID, "-T", &self.iqn,
        ])?;
        self.tgtadm(&[
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            TID,
            "--lun",
            LUN,
            "-b",
            &image,
        ])?;
        if let LunIdentity::Own { scsi_id, scsi_sn } = &self.identity {
            let params = format!("scsi_id={scsi_id},scsi_sn={scsi_sn}");
            self.tgtadm(&[
                "--op",
                "update",
                "--mode",
                "logicalunit",
                "--tid",
                TID,
                "--lun",
                LUN,
                "--params",
                &params,
            ])?;
        }
        self.tgtadm(&[
            "--op", "bind", "--mode", "target", "--tid", TID, "-I", "ALL",
        ])?;
        self.tgtadm(&["--op", "new", "--mode", "portal", "--param", &portal])?;
        self.tgtadm(&["--op", "delete", "--mode", "portal", "--param", &scratch])
    }

    fn try_start(&mut self) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("tgtd log");
        let scratch = free_port();
        let mut cmd = Command::new("tgtd");
        cmd.args(["-f", "-C", &self.control()])
            .arg("-p")
            .arg(&self.pidfile)
            .arg("--iscsi")
            .arg(format!("portal=127.0.0.1:{scratch}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let mut p = Proc::spawn(&format!("tgtd {}", self.name), &mut cmd)
            .expect("tgtd (run tests/vm/provision.sh)");
        let pid = p.pid();
        let up = wait_until(Duration::from_secs(10), || {
            listening(pid, scratch) || p.exited().is_some()
        });
        if !up || p.exited().is_some() {
            return false;
        }
        if let Err(e) = self.configure(scratch) {
            eprintln!("{}: configuring tgtd failed: {e}", self.name);
            return false;
        }
        let port = self.port;
        let up = wait_until(Duration::from_secs(10), || {
            listening(pid, port) || p.exited().is_some()
        });
        if up && p.exited().is_none() {
            self.starts += 1;
            self.proc = Some(p);
            true
        } else {
            false
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn iqn(&self) -> &str {
        &self.iqn
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn image(&self) -> &Path {
        &self.image
    }
    pub fn identity(&self) -> &LunIdentity {
        &self.identity
    }
    /// How many times a tgtd has been started for this target.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    fn proc(&self) -> &Proc {
        self.proc
            .as_ref()
            .unwrap_or_else(|| panic!("{}: target not running", self.name))
    }

    pub fn pid(&self) -> u32 {
        self.proc().pid()
    }

    pub fn is_running(&self) -> bool {
        self.proc.is_some()
    }

    /// SIGKILL, as a crashed target. Waits until it is reaped.
    pub fn kill(&mut self) {
        let mut p = self
            .proc
            .take()
            .unwrap_or_else(|| panic!("{}: kill: not running", self.name));
        p.signal(libc::SIGKILL);
        p.kill();
    }

    /// SIGSTOP, as a hung target: connections stay open, nothing answers.
    pub fn freeze(&self) {
        self.proc().freeze();
    }

    /// SIGCONT after [`freeze`](Self::freeze).
    pub fn resume(&self) {
        self.proc().resume();
    }

    /// Start a new tgtd with the same target, LUN, backing file, identity and
    /// port (killing any old one).
    pub fn restart(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
        for _ in 0..20 {
            if self.try_start() {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "{}: could not restart tgtd on port {}; see {:?}",
            self.name, self.port, self.log
        );
    }
}

impl Drop for IscsiTarget {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
        // tgtd leaves its management socket and lock file behind when killed;
        // remove ours unless another tgtd holds the lock (flock) by now
        let sock = format!("/var/run/tgtd/socket.{}", self.control());
        let lock = format!("{sock}.lock");
        if let Ok(f) = std::fs::File::open(&lock) {
            use std::os::fd::AsRawFd;
            // SAFETY: flock(2) on a file descriptor we own.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                let _ = std::fs::remove_file(&sock);
                let _ = std::fs::remove_file(&lock);
            }
        }
    }
}
