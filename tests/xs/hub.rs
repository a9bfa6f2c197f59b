//! Many guests' rings carried by one thread, woken by xenstored's
//! notifications instead of looking at each ring: the fixture's bridge (a
//! thread per guest that looks at its ring every 200 µs) costs a core at a
//! few dozen guests, and the scale benchmark (benches/host_scale.rs) has a
//! thousand. The wire is the bridge's: per guest a unix socket whose client
//! speaks as that guest domain through its shared ring, one connection at a
//! time. xenstored's notifications to a guest come through the shim's FIFO
//! `notify-<port>` (tests/xs/shim.c), which this makes.
#![allow(dead_code)]

use super::fixture::{notify, ring_put, ring_space, ring_take, GuestRing, Xenstored};
use nix::poll::PollTimeout;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use std::fs;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// One guest as the hub carries it.
struct Carried {
    ring: fs::File,
    port: u32,
    /// The shim's notifications for this guest (read end, non-blocking).
    woken: fs::File,
    listener: UnixListener,
    client: Option<UnixStream>,
    /// The request ring was full: wait for xenstored's notification before
    /// reading the client again.
    full: bool,
}

/// The hub's thread; stopped (its guests' connections shut) when dropped.
pub struct Hub {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Hub {
    /// Carry `guests` (introduced by [`Xenstored::introduce_guest`]): the
    /// socket path of each, in the same order.
    pub fn start(xs: &Xenstored, guests: &[GuestRing]) -> (Hub, Vec<PathBuf>) {
        let dir = xs.dir.path();
        let evt = fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(xs.evtchn())
            .unwrap();
        let mut carried = Vec::new();
        let mut socks = Vec::new();
        for g in guests {
            let fifo = dir.join(format!("notify-{}", g.port));
            let _ = fs::remove_file(&fifo);
            nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
            // read-write: never an EOF while the shim has not opened it
            let woken = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(nix::libc::O_NONBLOCK)
                .open(&fifo)
                .unwrap();
            let sock = dir.join(format!("guest-{}.sock", g.domid));
            let _ = fs::remove_file(&sock);
            let listener = UnixListener::bind(&sock).unwrap();
            listener.set_nonblocking(true).unwrap();
            let ring = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&g.ring)
                .unwrap();
            carried.push(Carried {
                ring,
                port: g.port,
                woken,
                listener,
                client: None,
                full: false,
            });
            socks.push(sock);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || run(&mut carried, &evt, &stop2));
        (
            Hub {
                stop,
                thread: Some(thread),
            },
            socks,
        )
    }
}

/// Which of a guest's fds an epoll event is for: `3 * guest + kind`.
const LISTENER: u64 = 0;
const WOKEN: u64 = 1;
const CLIENT: u64 = 2;

fn watch(ep: &Epoll, fd: impl AsFd, data: u64) {
    ep.add(fd, EpollEvent::new(EpollFlags::EPOLLIN, data))
        .unwrap();
}

fn run(carried: &mut [Carried], evt: &fs::File, stop: &AtomicBool) {
    // epoll, not poll(2): a wake-up costs the same with a thousand guests
    let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
    for (i, g) in carried.iter().enumerate() {
        watch(&ep, &g.listener, 3 * i as u64 + LISTENER);
        watch(&ep, &g.woken, 3 * i as u64 + WOKEN);
    }
    let mut buf = [0u8; 1024];
    let mut events = vec![EpollEvent::empty(); 256];
    while !stop.load(Ordering::Relaxed) {
        let n = ep.wait(&mut events, PollTimeout::from(100u16)).unwrap_or(0);
        for e in &events[..n] {
            let (i, kind) = ((e.data() / 3) as usize, e.data() % 3);
            let g = &mut carried[i];
            match kind {
                LISTENER => {
                    if let Ok((s, _)) = g.listener.accept() {
                        s.set_nonblocking(true).unwrap();
                        if let Some(old) = g.client.take() {
                            let _ = ep.delete(&old);
                        }
                        watch(&ep, &s, 3 * i as u64 + CLIENT);
                        g.client = Some(s); // one guest connection at a time
                        g.full = false;
                    }
                }
                WOKEN => {
                    while matches!((&g.woken).read(&mut buf), Ok(n) if n > 0) {}
                    if std::mem::take(&mut g.full) {
                        if let Some(s) = &g.client {
                            watch(&ep, s, 3 * i as u64 + CLIENT);
                        }
                    }
                    let out = ring_take(&g.ring);
                    if !out.is_empty() {
                        if let Some(s) = g.client.as_mut() {
                            s.set_nonblocking(false).unwrap();
                            let _ = s.write_all(&out);
                            s.set_nonblocking(true).unwrap();
                        }
                        notify(evt, g.port);
                    }
                }
                _ => {
                    let Some(s) = g.client.as_mut() else { continue };
                    let space = ring_space(&g.ring);
                    if space == 0 {
                        // read again once xenstored took some
                        let _ = ep.delete(&*s);
                        g.full = true;
                        continue;
                    }
                    match s.read(&mut buf[..space.min(1024)]) {
                        Ok(0) => {
                            let _ = ep.delete(&*s);
                            g.client = None;
                        }
                        Ok(n) => {
                            ring_put(&g.ring, &buf[..n]);
                            notify(evt, g.port);
                        }
                        Err(_) => {}
                    }
                }
            }
        }
    }
    for g in carried {
        if let Some(s) = g.client.take() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
