//! Test fixture: one real xenstored (Debian's xen-utils-4.17) per test, run as a
//! plain process under the LD_PRELOAD shim in tests/xs/shim.c, on a socket in
//! a temp dir. Killed on drop. Also a "guest domain" bridge: a unix socket
//! whose clients act as an introduced domain, by carrying their bytes over the
//! xenstore shared ring that the shim maps from a file.
//!
//! Fails loudly when xenstored is missing: run tests/xs/provision.sh.
#![allow(dead_code)]

use mdguard::xenstore::{Client, Endpoint};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const XENSTORED: &str = "/usr/lib/xen-4.17/bin/xenstored";

/// Build the shim once per test binary (cc -shared -fPIC).
pub fn shim() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        assert!(
            Path::new(XENSTORED).exists(),
            "{XENSTORED} is missing: run tests/xs/provision.sh (scripts/test-all.sh does)"
        );
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/xs/shim.c");
        let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let out = out_dir.join("xs-shim.so");
        let tmp = out_dir.join(format!("xs-shim.so.{}", std::process::id()));
        let st = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o"])
            .arg(&tmp)
            .arg(&src)
            .arg("-ldl")
            .status()
            .expect("cc not found: run tests/xs/provision.sh");
        assert!(st.success(), "building {} failed", src.display());
        fs::rename(&tmp, &out).unwrap();
        out
    })
}

pub struct Xenstored {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    extra_args: Vec<String>,
    bridges: Vec<GuestBridge>,
}

impl Xenstored {
    pub fn start() -> Xenstored {
        Self::start_with(&[])
    }

    /// Start with extra xenstored options (e.g. quotas: `-S 100`).
    pub fn start_with(args: &[&str]) -> Xenstored {
        let dir = tempfile::Builder::new()
            .prefix("mdguard-xs-")
            .tempdir()
            .unwrap();
        fs::create_dir(dir.path().join("run")).unwrap();
        let socket = dir.path().join("run/socket");
        let mut x = Xenstored {
            child: None,
            dir,
            socket,
            extra_args: args.iter().map(|s| s.to_string()).collect(),
            bridges: Vec::new(),
        };
        x.spawn();
        x
    }

    fn spawn(&mut self) {
        let shim = shim();
        let d = self.dir.path();
        let _ = fs::remove_file(&self.socket);
        // A fresh daemon gets fresh guest rings.
        for e in fs::read_dir(d).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("ring-") || n.starts_with("port-") {
                let _ = fs::remove_file(e.path());
            }
        }
        let log = fs::File::create(d.join("xenstored.log")).unwrap();
        let child = Command::new(XENSTORED)
            .arg("-N")
            .arg("-F")
            .arg(d.join("xenstored.pid"))
            .args(&self.extra_args)
            .env("LD_PRELOAD", shim)
            .env("XS_SHIM_DIR", d)
            .env("XENSTORED_RUNDIR", d.join("run"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {XENSTORED}: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        // The socket file appears at bind(), before listen(): wait until a
        // connection is accepted, not just for the file.
        while UnixStream::connect(&self.socket).is_err() {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("xenstored exited ({st}) at start: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "xenstored socket did not accept a connection: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("xenstored.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint::Socket(self.socket.clone())
    }

    /// A dom0 client over the socket.
    pub fn client(&self) -> Client {
        connect(self.endpoint())
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for b in self.bridges.drain(..) {
            b.stop();
        }
    }

    /// Kill and start a fresh xenstored on the same socket path (empty store).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Run a standard tool (xenstore-read, ...) against this daemon.
    pub fn tool(&self, name: &str, args: &[&str]) -> Output {
        self.tool_at(&self.socket, name, args)
    }

    pub fn tool_at(&self, socket: &Path, name: &str, args: &[&str]) -> Output {
        Command::new(name)
            .args(args)
            .env("XENSTORED_PATH", socket)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {name}: {e} (run tests/xs/provision.sh)"))
    }

    /// `mdguard host ARGS...` (dom0's command) against this daemon.
    pub fn mdguard_host(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_mdguard"))
            .arg("host")
            .args(args)
            .env("XENSTORED_PATH", &self.socket)
            .output()
            .unwrap()
    }

    /// Standard tool that must succeed; returns trimmed stdout.
    pub fn tool_ok(&self, name: &str, args: &[&str]) -> String {
        let o = self.tool(name, args);
        assert!(
            o.status.success(),
            "{name} {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap().trim_end().to_string()
    }

    /// Introduce guest `domid` the way a toolstack would (home dir owned by
    /// dom0 and readable by the guest, `data/` owned by the guest,
    /// `control/` dom0's), and return a socket path whose clients speak as
    /// that guest through the shared ring.
    pub fn add_guest(&mut self, domid: u32, name: &str) -> PathBuf {
        use mdguard::xenstore::{Access, Perm};
        let mut c = self.client();
        let home = format!("/local/domain/{domid}");
        c.mkdir(&home).unwrap();
        c.set_perms(
            &home,
            &[Perm::new(0, Access::None), Perm::new(domid, Access::Read)],
        )
        .unwrap();
        c.write(&format!("{home}/name"), name.as_bytes()).unwrap();
        c.mkdir(&format!("{home}/data")).unwrap();
        c.set_perms(&format!("{home}/data"), &[Perm::new(domid, Access::None)])
            .unwrap();
        c.mkdir(&format!("{home}/control")).unwrap();
        c.set_perms(
            &format!("{home}/control"),
            &[Perm::new(0, Access::None), Perm::new(domid, Access::Read)],
        )
        .unwrap();
        c.introduce(domid, 0, 1).unwrap();
        let ring = self.dir.path().join(format!("ring-{domid}"));
        assert!(ring.exists(), "shim did not map a ring for dom{domid}");
        let sock = self.dir.path().join(format!("guest-{domid}.sock"));
        let b = GuestBridge::start(&ring, &self.dir.path().join("evtchn"), &sock);
        self.bridges.push(b);
        sock
    }
}

impl Drop for Xenstored {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------- guest ring

const RING: u64 = 1024;
const REQ: u64 = 0;
const RSP: u64 = 1024;
const REQ_CONS: u64 = 2048;
const REQ_PROD: u64 = 2052;
const RSP_CONS: u64 = 2056;
const RSP_PROD: u64 = 2060;

struct GuestBridge {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn get(f: &fs::File, off: u64) -> u32 {
    let mut b = [0u8; 4];
    f.read_exact_at(&mut b, off).unwrap();
    u32::from_le_bytes(b)
}

fn put(f: &fs::File, off: u64, v: u32) {
    f.write_all_at(&v.to_le_bytes(), off).unwrap();
}

fn notify(evt: &fs::File) {
    // Any port wakes xenstored, which then checks every domain's ring.
    let _ = (&*evt).write(&7u32.to_le_bytes());
}

impl GuestBridge {
    fn start(ring: &Path, evtchn: &Path, sock: &Path) -> GuestBridge {
        let ring = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(ring)
            .unwrap();
        // Non-blocking: if the FIFO is full, xenstored has wake-ups pending anyway.
        let evt = fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(evtchn)
            .unwrap();
        let _ = fs::remove_file(sock);
        let l = UnixListener::bind(sock).unwrap();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut client: Option<UnixStream> = None;
            let mut buf = [0u8; 1024];
            while !stop2.load(Ordering::Relaxed) {
                let mut busy = false;
                if let Ok((s, _)) = l.accept() {
                    s.set_nonblocking(true).unwrap();
                    client = Some(s); // one guest connection at a time
                }
                if let Some(s) = client.as_mut() {
                    // Guest -> ring (requests), as much as fits.
                    let cons = get(&ring, REQ_CONS);
                    let prod = get(&ring, REQ_PROD);
                    let space = (RING as u32 - prod.wrapping_sub(cons)) as usize;
                    if space > 0 {
                        match s.read(&mut buf[..space]) {
                            Ok(0) => client = None,
                            Ok(n) => {
                                for (i, b) in buf[..n].iter().enumerate() {
                                    let at = (prod as u64 + i as u64) % RING;
                                    ring.write_all_at(&[*b], REQ + at).unwrap();
                                }
                                put(&ring, REQ_PROD, prod.wrapping_add(n as u32));
                                notify(&evt);
                                busy = true;
                            }
                            Err(_) => {}
                        }
                    }
                }
                // Ring -> guest (replies, watch events).
                let cons = get(&ring, RSP_CONS);
                let prod = get(&ring, RSP_PROD);
                if prod != cons {
                    let n = prod.wrapping_sub(cons) as usize;
                    let mut out = vec![0u8; n];
                    for (i, b) in out.iter_mut().enumerate() {
                        let at = (cons as u64 + i as u64) % RING;
                        let mut one = [0u8; 1];
                        ring.read_exact_at(&mut one, RSP + at).unwrap();
                        *b = one[0];
                    }
                    if let Some(s) = client.as_mut() {
                        s.set_nonblocking(false).unwrap();
                        let _ = s.write_all(&out);
                        s.set_nonblocking(true).unwrap();
                    }
                    put(&ring, RSP_CONS, prod);
                    notify(&evt);
                    busy = true;
                }
                if !busy {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            // shutdown(), not just close: a copy of this fd inherited by a
            // child that another test is spawning right now would otherwise
            // keep the guest's connection open for a moment.
            if let Some(s) = client {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        });
        GuestBridge {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for GuestBridge {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A client of `endpoint` whose requests time out after 5 s.
fn connect(endpoint: Endpoint) -> Client {
    let mut c = Client::connect(endpoint).unwrap();
    c.set_timeout(Duration::from_secs(5));
    c
}

/// A client of the guest socket that [`Xenstored::add_guest`] returned: it
/// acts as that guest domain.
pub fn guest(sock: &Path) -> Client {
    connect(Endpoint::Socket(sock.to_path_buf()))
}

/// Guest `domid`'s entry in the output of `mdguard host status --json`.
pub fn status_guest(status: &serde_json::Value, domid: u64) -> Option<&serde_json::Value> {
    status["guests"]
        .as_array()?
        .iter()
        .find(|g| g["domid"] == domid)
}

/// Poll `f` until it returns Some, at most `timeout`.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
