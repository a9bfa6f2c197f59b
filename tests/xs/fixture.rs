//! Test fixture: one real xenstored (Debian's xen-utils-4.17) per test, run as a
//! plain process (the C xenstored, or the OCaml oxenstored when
//! `MDGUARD_XENSTORED=oxenstored`) under the LD_PRELOAD shim in tests/xs/shim.c, on a socket in
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
pub const OXENSTORED: &str = "/usr/lib/xen-4.17/bin/oxenstored";

/// Which xenstore daemon the tests run against: `MDGUARD_XENSTORED` unset or
/// `xenstored` is the C daemon, `oxenstored` the OCaml one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Daemon {
    C,
    OCaml,
}

impl Daemon {
    pub fn from_env() -> Daemon {
        match std::env::var("MDGUARD_XENSTORED").as_deref() {
            Err(_) | Ok("") | Ok("xenstored") => Daemon::C,
            Ok("oxenstored") => Daemon::OCaml,
            Ok(other) => panic!("MDGUARD_XENSTORED={other}: expected xenstored or oxenstored"),
        }
    }

    pub fn binary(self) -> &'static str {
        match self {
            Daemon::C => XENSTORED,
            Daemon::OCaml => OXENSTORED,
        }
    }
}

/// oxenstored's configuration for a run in `dir`: no persistence, its log in
/// `dir`, dom0's ring files in `dir`, and the C daemon's quota options
/// (`-S` value bytes, `-E` entries per domain, `-W` watches, `-t`
/// transactions) carried over to the keys that mean the same.
fn oxenstored_conf(dir: &Path, c_args: &[String]) -> String {
    let d = dir.display();
    let mut conf = format!(
        "pid-file = {d}/xenstored.pid\n\
         persistent = false\n\
         xenstored-log-file = {d}/oxenstored.log\n\
         xenstored-log-level = info\n\
         xenstored-kva = {d}/xsd_kva\n\
         xenstored-port = {d}/xsd_port\n\
         quota-activate = true\n"
    );
    let mut it = c_args.iter();
    while let Some(opt) = it.next() {
        let key = match opt.as_str() {
            "-S" => "quota-maxsize",
            "-E" => "quota-maxentity",
            "-W" => "quota-maxwatch",
            "-t" => "quota-transaction",
            other => panic!("no oxenstored equivalent known for xenstored option {other}"),
        };
        let v = it.next().unwrap_or_else(|| panic!("{opt} needs a value"));
        conf.push_str(&format!("{key} = {v}\n"));
    }
    conf
}

/// Build the shim once per test binary (cc -shared -fPIC).
pub fn shim() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        let daemon = Daemon::from_env().binary();
        assert!(
            Path::new(daemon).exists(),
            "{daemon} is missing: run tests/xs/provision.sh (scripts/test-all.sh does)"
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
    pub daemon: Daemon,
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
            daemon: Daemon::from_env(),
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
        let mut cmd = Command::new(self.daemon.binary());
        match self.daemon {
            Daemon::C => {
                cmd.arg("-N")
                    .arg("-F")
                    .arg(d.join("xenstored.pid"))
                    .args(&self.extra_args);
            }
            Daemon::OCaml => {
                // oxenstored reads dom0's event channel port (a bare
                // integer, no newline) and ring from the files its
                // configuration names; its socket directory is compiled in
                // and the shim moves it to d/run.
                fs::write(d.join("xsd_port"), "1").unwrap();
                fs::write(d.join("xsd_kva"), [0u8; 4096]).unwrap();
                let conf = d.join("oxenstored.conf");
                fs::write(&conf, oxenstored_conf(d, &self.extra_args)).unwrap();
                cmd.arg("--no-fork")
                    .arg("--no-access-log")
                    .arg("--config-file")
                    .arg(&conf);
            }
        }
        let daemon = self.daemon.binary();
        let child = cmd
            .env("LD_PRELOAD", shim)
            .env("XS_SHIM_DIR", d)
            .env("XENSTORED_RUNDIR", d.join("run"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {daemon}: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        // The socket file appears at bind(), before listen(): wait until a
        // connection is accepted, not just for the file.
        while UnixStream::connect(&self.socket).is_err() {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("{daemon} exited ({st}) at start: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "{daemon} socket did not accept a connection: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The daemon's output (and oxenstored's own log file).
    pub fn log(&self) -> String {
        let d = self.dir.path();
        let mut s = fs::read_to_string(d.join("xenstored.log")).unwrap_or_default();
        s.push_str(&fs::read_to_string(d.join("oxenstored.log")).unwrap_or_default());
        s
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
        let r = self.introduce_guest(domid, name);
        let sock = self.dir.path().join(format!("guest-{domid}.sock"));
        let b = GuestBridge::start(&r.ring, &self.evtchn(), r.port, &sock);
        self.bridges.push(b);
        sock
    }

    /// The toolstack's part of [`Xenstored::add_guest`] alone: guest `domid`
    /// created ([`Xenstored::guest_home`]) and introduced, with no bridge to
    /// its ring.
    pub fn introduce_guest(&self, domid: u32, name: &str) -> GuestRing {
        self.guest_home(domid, name);
        self.introduce(domid)
    }

    /// Guest `domid`'s home as a toolstack writes it (owned by dom0 and
    /// readable by the guest, `data/` owned by the guest, `control/` dom0's),
    /// not yet introduced.
    pub fn guest_home(&self, domid: u32, name: &str) {
        use mdguard::xenstore::{Access, Perm};
        let home = format!("/local/domain/{domid}");
        let guest_reads = [Perm::new(0, Access::None), Perm::new(domid, Access::Read)];
        self.client()
            .transaction(|t| {
                t.mkdir(&home)?;
                t.set_perms(&home, &guest_reads)?;
                t.write(&format!("{home}/name"), name.as_bytes())?;
                t.mkdir(&format!("{home}/data"))?;
                t.set_perms(&format!("{home}/data"), &[Perm::new(domid, Access::None)])?;
                t.mkdir(&format!("{home}/control"))?;
                t.set_perms(&format!("{home}/control"), &guest_reads)
            })
            .unwrap();
    }

    /// Introduce guest `domid` (its home made): xenstored maps its ring
    /// (through the shim) and binds a port for it. Those, to carry its
    /// bytes (a caller with many guests does it itself:
    /// benches/host_scale.rs).
    pub fn introduce(&self, domid: u32) -> GuestRing {
        self.client().introduce(domid, 0, 1).unwrap();
        let ring = self.dir.path().join(format!("ring-{domid}"));
        assert!(ring.exists(), "shim did not map a ring for dom{domid}");
        // The port xenstored bound for this guest: oxenstored only looks at
        // the ring of the domain whose port fired.
        let port: u32 = fs::read_to_string(self.dir.path().join(format!("port-{domid}")))
            .expect("shim records the guest's port")
            .trim()
            .parse()
            .unwrap();
        GuestRing { domid, ring, port }
    }

    /// The FIFO that notifies xenstored (a 4-byte port number per wake-up).
    pub fn evtchn(&self) -> PathBuf {
        self.dir.path().join("evtchn")
    }
}

/// An introduced guest domain: the file the shim maps as its xenstore ring,
/// and the event channel port xenstored bound for it.
#[derive(Debug, Clone)]
pub struct GuestRing {
    pub domid: u32,
    pub ring: PathBuf,
    pub port: u32,
}

impl Xenstored {
    /// Give guest `domid` a disk the way xl does (libxl `device_disk_add` and
    /// `libxl__device_generic_add`), as dom0 in one transaction: the backend
    /// `/local/domain/0/backend/<kind>/<domid>/<devid>/` owned by dom0 and
    /// readable by the guest (`n0 r<domid>`) with `frontend`, `params`,
    /// `script` (vbd), `frontend-id`, `online`, `removable`, `bootable`,
    /// `state`, `dev`, `type`, `mode`, `device-type`, `discard-enable`; and
    /// the frontend `device/vbd/<devid>/` owned by the guest (`n<domid> r0`)
    /// with `backend`, `backend-id`, `state`, `virtual-device`,
    /// `device-type`. `kind` is `vbd` (blkback, `type` phy, `params` the
    /// path) or `qdisk` (`params` `aio:<path>`). The backend's `state` is 4:
    /// connected, as blkback leaves it. Returns the devid.
    pub fn add_vbd(&self, domid: u32, kind: &str, vdev: &str, target: &str) -> u32 {
        use mdguard::xenstore::{Access, Perm};
        let devid = xvd_devid(vdev);
        let be = format!("/local/domain/0/backend/{kind}/{domid}/{devid}");
        let fe = format!("/local/domain/{domid}/device/vbd/{devid}");
        let be_perms = [Perm::new(0, Access::None), Perm::new(domid, Access::Read)];
        let fe_perms = [Perm::new(domid, Access::None), Perm::new(0, Access::Read)];
        let (type_, params) = match kind {
            "vbd" => ("phy", target.to_string()),
            "qdisk" => ("qdisk", format!("aio:{target}")),
            other => panic!("backend kind {other}"),
        };
        let mut back: Vec<(&str, String)> = vec![("frontend", fe.clone()), ("params", params)];
        if kind == "vbd" {
            back.push(("script", "/etc/xen/scripts/block".into()));
        }
        for (k, v) in [
            ("frontend-id", domid.to_string()),
            ("online", "1".into()),
            ("removable", "0".into()),
            ("bootable", "1".into()),
            ("state", "4".into()),
            ("dev", vdev.into()),
            ("type", type_.into()),
            ("mode", "w".into()),
            ("device-type", "disk".into()),
            ("discard-enable", "1".into()),
        ] {
            back.push((k, v));
        }
        let front: Vec<(&str, String)> = vec![
            ("backend", be.clone()),
            ("backend-id", "0".into()),
            ("state", "1".into()),
            ("virtual-device", devid.to_string()),
            ("device-type", "disk".into()),
        ];
        let mut c = self.client();
        c.transaction(|t| {
            t.mkdir(&be)?;
            t.set_perms(&be, &be_perms)?;
            for (k, v) in &back {
                t.write(&format!("{be}/{k}"), v.as_bytes())?;
            }
            t.mkdir(&fe)?;
            t.set_perms(&fe, &fe_perms)?;
            for (k, v) in &front {
                t.write(&format!("{fe}/{k}"), v.as_bytes())?;
                t.set_perms(&format!("{fe}/{k}"), &fe_perms)?;
            }
            Ok(())
        })
        .unwrap();
        devid
    }
}

/// The devid of a vdev `xvd<letters>` (Xen's vbd interface: `202 << 8 |
/// disk << 4` for the first 16 disks, `1 << 28 | disk << 8` after).
pub fn xvd_devid(vdev: &str) -> u32 {
    let letters = vdev.strip_prefix("xvd").expect("an xvd name");
    // bijective base 26: a = 0, ..., z = 25, aa = 26, ...
    let mut n = 0u32;
    for b in letters.bytes() {
        assert!(b.is_ascii_lowercase(), "{vdev}");
        n = n * 26 + u32::from(b - b'a') + 1;
    }
    let disk = n - 1;
    if disk < 16 {
        (202 << 8) | (disk << 4)
    } else {
        (1 << 28) | (disk << 8)
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

/// Tell xenstored that guest `port`'s ring moved.
pub fn notify(evt: &fs::File, port: u32) {
    let _ = (&*evt).write(&port.to_le_bytes());
}

/// How many request bytes the guest's ring takes now.
pub fn ring_space(ring: &fs::File) -> usize {
    let cons = get(ring, REQ_CONS);
    let prod = get(ring, REQ_PROD);
    (RING as u32 - prod.wrapping_sub(cons)) as usize
}

/// Append `bytes` (at most [`ring_space`]) to the guest's requests.
pub fn ring_put(ring: &fs::File, bytes: &[u8]) {
    let prod = get(ring, REQ_PROD);
    let at = prod as u64 % RING;
    let first = bytes.len().min((RING - at) as usize);
    ring.write_all_at(&bytes[..first], REQ + at).unwrap();
    ring.write_all_at(&bytes[first..], REQ).unwrap();
    put(ring, REQ_PROD, prod.wrapping_add(bytes.len() as u32));
}

/// Take every reply and watch event xenstored wrote to the guest's ring
/// (empty: nothing new).
pub fn ring_take(ring: &fs::File) -> Vec<u8> {
    let cons = get(ring, RSP_CONS);
    let prod = get(ring, RSP_PROD);
    let n = prod.wrapping_sub(cons) as usize;
    let mut out = vec![0u8; n];
    if n > 0 {
        let at = cons as u64 % RING;
        let first = n.min((RING - at) as usize);
        ring.read_exact_at(&mut out[..first], RSP + at).unwrap();
        ring.read_exact_at(&mut out[first..], RSP).unwrap();
        put(ring, RSP_CONS, prod);
    }
    out
}

impl GuestBridge {
    fn start(ring: &Path, evtchn: &Path, port: u32, sock: &Path) -> GuestBridge {
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
                    let space = ring_space(&ring);
                    if space > 0 {
                        match s.read(&mut buf[..space.min(1024)]) {
                            Ok(0) => client = None,
                            Ok(n) => {
                                ring_put(&ring, &buf[..n]);
                                notify(&evt, port);
                                busy = true;
                            }
                            Err(_) => {}
                        }
                    }
                }
                // Ring -> guest (replies, watch events).
                let out = ring_take(&ring);
                if !out.is_empty() {
                    if let Some(s) = client.as_mut() {
                        s.set_nonblocking(false).unwrap();
                        let _ = s.write_all(&out);
                        s.set_nonblocking(true).unwrap();
                    }
                    notify(&evt, port);
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

/// A guest's agent reduced to what dom0 sees of it: it publishes `arrays`
/// once (as the agent's publisher writes them) and answers every ping until
/// dropped. Used where dom0 must find an agent `answering`.
pub struct AnsweringAgent {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u32>>,
}

impl AnsweringAgent {
    pub fn start(
        sock: &Path,
        arrays: Vec<mdguard::report::schema::ArraySummary>,
    ) -> AnsweringAgent {
        use mdguard::report::publisher::{Op, Publisher};
        use mdguard::report::schema::{ControlEvent, ControlState};
        let sock = sock.to_path_buf();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut g = guest(&sock);
            let mut p = Publisher::default();
            p.publish(&mut g, &arrays, 1_700_000_000).unwrap();
            let mut st = ControlState::default();
            g.watch("control/mdguard", "ctl").unwrap();
            ready_tx.send(()).unwrap();
            let mut answered = 0;
            while !stop2.load(Ordering::Relaxed) {
                for _ev in g.wait_events(Duration::from_millis(50)).unwrap() {
                    let raw = g.try_read("control/mdguard/ping").unwrap();
                    if let Ok(Some(ControlEvent::Ping(tok))) = st.update("ping", raw.as_deref()) {
                        if let Op::Write { path, value } = p.pong_op(&tok) {
                            g.write(&path, &value).unwrap();
                            answered += 1;
                        }
                    }
                }
            }
            answered
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the agent published and watches");
        AnsweringAgent {
            stop,
            thread: Some(thread),
        }
    }

    /// Stop it; how many pings it answered.
    pub fn stop(mut self) -> u32 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().unwrap())
    }
}

impl Drop for AnsweringAgent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
