//! uevstamp now | uevstamp DEVNAME TIMEOUT_S | uevstamp exec PROGRAM: guest-side
//! clock and uevent helper for the benchmark.
//!
//! `now` prints CLOCK_MONOTONIC in seconds (the clock mdguard's
//! MDGUARD_LOG_TIMESTAMPS log uses; /proc/uptime only has 10 ms steps).
//! `DEVNAME TIMEOUT_S` listens on the kernel's uevent socket, as udev and
//! mdguard do, prints `READY` once listening, then `<monotonic s> <ACTION>`
//! when the first block `add`/`change` uevent for DEVNAME arrives: the moment a
//! returning leg's node is announced. Exit 1 on timeout.
//! `exec PROGRAM` stands in for udev (the guest has none, and Debian's kernel
//! has no CONFIG_UEVENT_HELPER): for every block uevent it runs PROGRAM with
//! the event's fields (ACTION, DEVNAME, SUBSYSTEM, ...) in its environment, one
//! event at a time, as the kernel's uevent helper would be run.
//!
//! An example (`cargo build --release --example uevstamp`), never installed;
//! benches/run.sh puts it into the VM guest.

use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

fn mono() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write into
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("now") {
        println!("{:.6}", mono());
        return;
    }
    if args.len() < 3 {
        eprintln!("usage: uevstamp now | uevstamp DEVNAME TIMEOUT_S | uevstamp exec PROGRAM");
        std::process::exit(2);
    }
    let exec = args[1] == "exec";
    let (dev, timeout) = if exec {
        (&args[2], f64::MAX / 4.0)
    } else {
        (&args[1], args[2].parse::<f64>().expect("TIMEOUT_S"))
    };
    // SAFETY: plain socket/bind calls on a fresh fd, checked below
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_KOBJECT_UEVENT,
        )
    };
    assert!(
        fd >= 0,
        "uevent socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: zeroed sockaddr_nl is valid; we set the family and group 1 (kernel events)
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as u16;
    sa.nl_groups = 1;
    // SAFETY: sa is a sockaddr_nl of the given size
    let rc = unsafe {
        libc::bind(
            fd,
            &sa as *const libc::sockaddr_nl as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    assert!(rc == 0, "bind: {}", std::io::Error::last_os_error());
    // SAFETY: fd is ours; the File closes it
    let sock = unsafe { std::fs::File::from_raw_fd(fd) };
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 200_000,
    };
    // SAFETY: setting a receive timeout with a valid timeval
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    println!("READY");
    let end = Instant::now() + Duration::from_secs_f64(timeout.min(1e9));
    let mut buf = vec![0u8; 16384];
    while Instant::now() < end {
        let n = match std::io::Read::read(&mut &sock, &mut buf) {
            Ok(n) => n,
            Err(_) => continue,
        };
        let t = mono();
        let (mut action, mut subsystem, mut name) = ("", "", "");
        let mut env = Vec::new();
        for f in buf[..n].split(|b| *b == 0) {
            let f = std::str::from_utf8(f).unwrap_or("");
            if let Some((k, v)) = f.split_once('=') {
                env.push((k.to_string(), v.to_string()));
            }
            if let Some(v) = f.strip_prefix("ACTION=") {
                action = v;
            } else if let Some(v) = f.strip_prefix("SUBSYSTEM=") {
                subsystem = v;
            } else if let Some(v) = f.strip_prefix("DEVNAME=") {
                name = v;
            }
        }
        if exec {
            if subsystem == "block" {
                let _ = std::process::Command::new(dev).envs(env).status();
            }
            continue;
        }
        if subsystem == "block" && name == dev && (action == "add" || action == "change") {
            println!("{t:.6} {action}");
            return;
        }
    }
    std::process::exit(1);
}
