//! The guest: qemu-system-x86_64 (TCG) booting the Debian kernel with the
//! test initramfs, and the step channel to its /init.
//!
//! Channel: a virtio-serial port named `org.mdguard.ctl`, backed on the host
//! by a unix socket the test listens on before QEMU starts (QEMU connects as
//! the client, so there is no race). Protocol (see tests/vm/guest/ctl-loop):
//! host sends `RUN <id> <base64 script>`; the guest answers `OUT <id>`,
//! base64 lines, `ERR <id>`, base64 lines, `END <id> <status>`. Lines of an
//! older step (one that timed out on our side) are skipped by id.

use super::proc::Proc;
use super::{b64_decode, b64_encode, Assets};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// What a guest step printed and how it exited.
#[derive(Debug, Clone)]
pub struct Step {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Step {
    /// The stdout of a step that had to succeed; otherwise what the test
    /// failure says: `who` (guest, dom0, domU) ran `script` and how it failed.
    pub fn stdout_if_ok(self, who: &str, script: &str) -> Result<String, String> {
        if self.status == 0 {
            return Ok(self.stdout);
        }
        Err(format!(
            "{who} step failed (status {}): {script}\nstdout: {}\nstderr: {}",
            self.status, self.stdout, self.stderr
        ))
    }
}

pub struct Vm {
    proc: Proc,
    stream: UnixStream,
    buf: Vec<u8>,
    console: PathBuf,
    next_id: u64,
    /// Wall-clock time from spawning QEMU to the guest's READY line.
    pub boot_time: Duration,
    /// The guest's own uptime when it said READY.
    pub guest_ready_uptime: f64,
}

impl Vm {
    /// Boot a guest whose files (socket, console log) live in `dir`.
    pub fn boot(assets: &Assets, dir: &Path) -> Vm {
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-accel", "tcg", "-m", "256", "-smp", "1"])
            .arg("-kernel")
            .arg(&assets.vmlinux)
            .arg("-initrd")
            .arg(&assets.initramfs)
            // no_timer_check: a TCG guest starved by a busy host fails the
            // kernel's IO-APIC timer check at boot and panics ("IO-APIC +
            // timer doesn't work", seen in the soak); hypervisors' guests
            // skip that check the same way
            .args([
                "-append",
                "console=ttyS0 panic=-1 no_timer_check rdinit=/init",
            ]);
        Vm::launch(cmd, dir, BOOT_TIMEOUT)
    }

    /// Start `cmd` (qemu-system-x86_64 with the machine, kernel and initrd
    /// chosen) with what every guest of the harness gets: no display, the
    /// first serial port in `dir/console.log`, user-mode networking on
    /// virtio-net, and the step channel (virtio-serial port
    /// `org.mdguard.ctl` on `dir/ctl.sock`); wait for READY within `timeout`.
    pub fn launch(mut cmd: Command, dir: &Path, timeout: Duration) -> Vm {
        let sock = dir.join("ctl.sock");
        let console = dir.join("console.log");
        let listener = UnixListener::bind(&sock).expect("bind control socket");
        listener.set_nonblocking(true).unwrap();
        cmd.args([
            "-nographic",
            "-nodefaults",
            "-monitor",
            "none",
            "-no-reboot",
        ])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .args([
            "-netdev",
            "user,id=n0",
            "-device",
            "virtio-net-pci,netdev=n0",
        ])
        .args(["-device", "virtio-serial-pci"])
        .arg("-chardev")
        .arg(format!("socket,id=ctl,path={}", sock.display()))
        .args(["-device", "virtserialport,chardev=ctl,name=org.mdguard.ctl"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("qemu.stderr")).expect("qemu stderr file"));
        let t0 = Instant::now();
        let mut proc = Proc::spawn("qemu-system-x86_64", &mut cmd)
            .expect("qemu-system-x86_64 (run tests/vm/provision.sh)");
        let stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("accept on control socket: {e}"),
            }
            if let Some(st) = proc.exited() {
                let err = std::fs::read_to_string(dir.join("qemu.stderr")).unwrap_or_default();
                panic!("qemu exited ({st}) before connecting: {err}");
            }
            assert!(t0.elapsed() < timeout, "qemu never connected");
            std::thread::sleep(Duration::from_millis(10));
        };
        stream.set_nonblocking(false).unwrap();
        let mut vm = Vm {
            proc,
            stream,
            buf: Vec::new(),
            console,
            next_id: 1,
            boot_time: Duration::ZERO,
            guest_ready_uptime: 0.0,
        };
        let deadline = t0 + timeout;
        loop {
            let line = vm
                .read_line(deadline)
                .unwrap_or_else(|e| vm.fail(&format!("no READY from the guest: {e}")));
            if let Some(up) = line.strip_prefix("READY ") {
                vm.guest_ready_uptime = up.trim().parse().unwrap_or(0.0);
                break;
            }
        }
        vm.boot_time = t0.elapsed();
        eprintln!(
            "vm: guest ready in {:.1} s wall clock (guest uptime {:.2} s)",
            vm.boot_time.as_secs_f64(),
            vm.guest_ready_uptime
        );
        vm
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Read one line from the channel, failing at `deadline`.
    fn read_line(&mut self, deadline: Instant) -> Result<String, String> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Ok(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err("timed out".into());
            }
            self.stream
                .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))
                .unwrap();
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err("control channel closed (guest died?)".into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut
                        || e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("control channel: {e}")),
            }
        }
    }

    /// Run a sh script in the guest; `Err` on timeout or a dead channel.
    pub fn try_run(&mut self, script: &str, timeout: Duration) -> Result<Step, String> {
        let id = self.next_id;
        self.next_id += 1;
        let line = format!("RUN {id} {}\n", b64_encode(script.as_bytes()));
        self.stream
            .write_all(line.as_bytes())
            .map_err(|e| format!("sending step: {e}"))?;
        let deadline = Instant::now() + timeout;
        let (mut out, mut err) = (String::new(), String::new());
        let mut cur: Option<bool> = None; // Some(true) = stdout, Some(false) = stderr
        loop {
            let l = self
                .read_line(deadline)
                .map_err(|e| format!("step {id} ({script:?}): {e}"))?;
            let mut w = l.split_whitespace();
            let (tag, lid) = (w.next().unwrap_or(""), w.next().unwrap_or(""));
            match tag {
                "OUT" | "ERR" | "END" if lid != id.to_string() => cur = None,
                "OUT" => cur = Some(true),
                "ERR" => cur = Some(false),
                "END" => {
                    let status = w.next().and_then(|s| s.parse().ok()).unwrap_or(-1);
                    return Ok(Step {
                        status,
                        stdout: String::from_utf8_lossy(&b64_decode(&out)).into_owned(),
                        stderr: String::from_utf8_lossy(&b64_decode(&err)).into_owned(),
                    });
                }
                _ => match cur {
                    Some(true) => out.push_str(l.trim()),
                    Some(false) => err.push_str(l.trim()),
                    None => {}
                },
            }
        }
    }

    /// Run a script; panic (with the console tail) on timeout.
    pub fn run(&mut self, script: &str, timeout: Duration) -> Step {
        match self.try_run(script, timeout) {
            Ok(s) => s,
            Err(e) => self.fail(&e),
        }
    }

    /// Run a script that must succeed; its stdout.
    pub fn sh(&mut self, script: &str) -> String {
        let s = self.run(script, STEP_TIMEOUT);
        s.stdout_if_ok("guest", script)
            .unwrap_or_else(|e| self.fail(&e))
    }

    /// Read a guest file (trimmed); None if it cannot be read.
    pub fn read(&mut self, path: &str) -> Option<String> {
        let s = self.run(&format!("cat {path}"), STEP_TIMEOUT);
        (s.status == 0).then(|| s.stdout.trim().to_string())
    }

    /// Guest uptime in seconds (the guest's clock; handy for kernel timings).
    pub fn uptime(&mut self) -> f64 {
        self.sh("cut -d' ' -f1 /proc/uptime")
            .trim()
            .parse()
            .unwrap()
    }

    /// Poll `probe` (which may run guest steps) until it returns Some, at most `timeout`.
    pub fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut(&mut Vm) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(50);
        loop {
            if let Some(v) = probe(self) {
                return v;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("timed out after {timeout:?} waiting for {what}"));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// The last `n` lines of the serial console.
    pub fn console_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.console).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub fn console_path(&self) -> &Path {
        &self.console
    }

    /// Panic with context from the guest's console.
    pub fn fail(&self, msg: &str) -> ! {
        panic!(
            "{msg}\n--- guest console (last 40 lines of {:?}) ---\n{}",
            self.console,
            self.console_tail(40)
        )
    }
}
