//! "Storage servers": one `qemu-nbd` per RAID leg, on 127.0.0.1 with a free
//! port, reached by the guest at 10.0.2.2 through QEMU user-mode networking.
//! Tests kill (SIGKILL), freeze (SIGSTOP), resume (SIGCONT) and restart them.

use super::proc::Proc;
use super::wait_until;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The NBD export name every server uses (`nbd-client ... -N leg`).
pub const EXPORT: &str = "leg";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Raw,
    Qcow2,
}

impl ImageFormat {
    fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Raw => "raw",
            ImageFormat::Qcow2 => "qcow2",
        }
    }
}

pub struct StorageServer {
    name: String,
    image: PathBuf,
    format: ImageFormat,
    log: PathBuf,
    port: u16,
    proc: Option<Proc>,
    starts: u32,
}

/// A port nobody listens on right now (the kernel's choice for port 0).
pub(super) fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// Is process `pid` listening on 127.0.0.1:port? Read /proc rather than
/// connecting (a probe connection would take one of the server's client
/// slots), and match the socket's inode against the process's fds so another
/// test's server that got the same port is not taken for ours.
pub(super) fn listening(pid: u32, port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    let Ok(tcp) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let inodes: Vec<String> = tcp
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 9 && f[1] == want && f[3] == "0A").then(|| format!("socket:[{}]", f[9]))
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .map(|l| inodes.iter().any(|i| l.as_os_str() == i.as_str()))
            .unwrap_or(false)
    })
}

impl StorageServer {
    /// Create an image of `size_mib` MiB in `dir` and serve it.
    pub fn create(dir: &Path, name: &str, size_mib: u64, format: ImageFormat) -> StorageServer {
        let image = dir.join(format!("{name}.{}", format.as_str()));
        let st = Command::new("qemu-img")
            .args(["create", "-q", "-f", format.as_str()])
            .arg(&image)
            .arg(format!("{size_mib}M"))
            .status()
            .expect("qemu-img (run tests/vm/provision.sh)");
        assert!(st.success(), "qemu-img create {image:?} failed");
        Self::serve(dir, name, image, format)
    }

    /// Serve an existing image (e.g. one the test partitioned).
    pub fn serve(dir: &Path, name: &str, image: PathBuf, format: ImageFormat) -> StorageServer {
        let mut s = StorageServer {
            name: name.to_string(),
            image,
            format,
            log: dir.join(format!("{name}.qemu-nbd.log")),
            port: 0,
            proc: None,
            starts: 0,
        };
        // A free port can be taken between our probe and qemu-nbd's bind:
        // try a few ports.
        for _ in 0..5 {
            s.port = free_port();
            if s.try_start() {
                return s;
            }
        }
        panic!("{}: qemu-nbd did not start; see {:?}", s.name, s.log);
    }

    fn try_start(&mut self) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("qemu-nbd log");
        let mut cmd = Command::new("qemu-nbd");
        cmd.args([
            "--persistent",
            "--shared=4",
            "-x",
            EXPORT,
            "-b",
            "127.0.0.1",
        ])
        .arg(format!("--port={}", self.port))
        .arg(format!("--format={}", self.format.as_str()))
        .arg("--cache=writeback")
        .arg(&self.image)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
        let mut p = Proc::spawn(&format!("qemu-nbd {}", self.name), &mut cmd)
            .expect("qemu-nbd (run tests/vm/provision.sh)");
        let (port, pid) = (self.port, p.pid());
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
    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn image(&self) -> &Path {
        &self.image
    }
    /// How many times a qemu-nbd process has been started for this leg.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    fn proc(&self) -> &Proc {
        self.proc
            .as_ref()
            .unwrap_or_else(|| panic!("{}: server not running", self.name))
    }

    pub fn pid(&self) -> u32 {
        self.proc().pid()
    }

    pub fn is_running(&self) -> bool {
        self.proc.is_some()
    }

    /// SIGKILL, as a crashed storage server. Waits until it is reaped.
    pub fn kill(&mut self) {
        let mut p = self
            .proc
            .take()
            .unwrap_or_else(|| panic!("{}: kill: not running", self.name));
        p.signal(libc::SIGKILL);
        p.kill();
    }

    /// SIGSTOP, as a hung storage server: connections stay open, nothing answers.
    pub fn freeze(&self) {
        self.proc().freeze();
    }

    /// SIGCONT after [`freeze`](Self::freeze).
    pub fn resume(&self) {
        self.proc().resume();
    }

    /// Start a new qemu-nbd on the same port and image (killing any old one).
    pub fn restart(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
        // The port was ours a moment ago; qemu-nbd sets SO_REUSEADDR, but
        // retry a little in case the kernel still holds it.
        for _ in 0..20 {
            if self.try_start() {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "{}: could not restart qemu-nbd on port {}; see {:?}",
            self.name, self.port, self.log
        );
    }
}

/// Write an MBR partition table with the given partitions (start and size in
/// MiB, type 0xfd "Linux raid autodetect") into a raw image.
pub fn write_mbr(image: &Path, parts: &[(u64, u64)]) {
    use std::io::{Seek, SeekFrom, Write};
    assert!(parts.len() <= 4);
    let mut mbr = [0u8; 512];
    for (i, &(start_mib, size_mib)) in parts.iter().enumerate() {
        let e = &mut mbr[446 + 16 * i..446 + 16 * (i + 1)];
        e[0] = 0x00; // not bootable
        e[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]); // CHS: use LBA
        e[4] = 0xfd;
        e[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
        let lba = (start_mib * 2048) as u32;
        let len = (size_mib * 2048) as u32;
        e[8..12].copy_from_slice(&lba.to_le_bytes());
        e[12..16].copy_from_slice(&len.to_le_bytes());
    }
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(image)
        .expect("open image");
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(&mbr).unwrap();
}
