//! Logging: one line per event to syslog (`/dev/log`, which the journal also
//! serves), or to stderr in `--foreground` or when there is no syslog socket.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

enum Sink {
    Stderr,
    /// syslog's socket at `path`; `sock` once connected. While there is no
    /// connection a line goes to stderr and the next line tries again, so a
    /// syslog daemon that starts after the agent, or restarts (sysvinit's
    /// rsyslog, unlike journald, makes a new /dev/log), is found.
    Syslog {
        path: PathBuf,
        sock: Option<UnixDatagram>,
    },
}

static SINK: Mutex<Option<Sink>> = Mutex::new(None);

fn connect(path: &Path) -> std::io::Result<UnixDatagram> {
    let s = UnixDatagram::unbound()?;
    s.connect(path)?;
    Ok(s)
}

/// Choose where log lines go. `foreground` forces stderr.
pub fn init(foreground: bool, dev_log: &Path) {
    let sink = if foreground {
        Sink::Stderr
    } else {
        let sock = connect(dev_log)
            .map_err(|e| {
                eprintln!(
                    "mdguard: no syslog at {} ({e}); logging to stderr until there is one",
                    dev_log.display()
                )
            })
            .ok();
        Sink::Syslog {
            path: dev_log.to_path_buf(),
            sock,
        }
    };
    if let Ok(mut g) = SINK.lock() {
        *g = Some(sink);
    }
}

/// Log one line. Control characters are replaced so a hostile value cannot forge
/// extra lines.
pub fn log(sev: Severity, msg: &str) {
    let clean = crate::text::one_line(msg);
    let word = match sev {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Notice => "notice",
        Severity::Info => "info",
        Severity::Debug => "debug",
    };
    let Ok(mut g) = SINK.lock() else { return };
    if let Some(Sink::Syslog { path, sock }) = g.as_mut() {
        // facility daemon (3)
        let pri = 3 * 8 + sev as u8;
        let line = format!("<{pri}>mdguard[{}]: {clean}", std::process::id());
        // a connection that fails is made again once, for this line
        for _ in 0..2 {
            if sock.is_none() {
                *sock = connect(path).ok();
            }
            match sock {
                Some(s) if s.send(line.as_bytes()).is_ok() => return,
                Some(_) => *sock = None,
                None => break,
            }
        }
    }
    if std::env::var_os("MDGUARD_LOG_TIMESTAMPS").is_some() {
        // seconds on the monotonic clock (= /proc/uptime): lets tests and
        // benchmarks time events against the kernel's own clock
        let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
            .unwrap_or(0.0);
        eprintln!("[{t:.3}] mdguard: {word}: {clean}");
    } else {
        eprintln!("mdguard: {word}: {clean}");
    }
}

pub fn error(msg: &str) {
    log(Severity::Error, msg)
}
pub fn warn(msg: &str) {
    log(Severity::Warning, msg)
}
pub fn notice(msg: &str) {
    log(Severity::Notice, msg)
}
pub fn info(msg: &str) {
    log(Severity::Info, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test: the sink is global.
    #[test]
    fn syslog_datagram_format_and_a_restarted_syslog() {
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("log");
        let server = UnixDatagram::bind(&sock).unwrap();
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        init(false, &sock);
        log(Severity::Warning, "md0: leg nbd1 failed\nFAKE LINE");
        let mut buf = [0u8; 512];
        let n = server.recv(&mut buf).unwrap();
        let got = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(got.starts_with("<28>mdguard["), "{got}");
        assert!(got.ends_with("]: md0: leg nbd1 failed?FAKE LINE"), "{got}");
        // syslog goes away (this line goes to stderr), then comes back at the
        // same path, as a restarted rsyslog does: the next line reaches it
        drop(server);
        std::fs::remove_file(&sock).unwrap();
        log(Severity::Notice, "while syslog is down");
        let server = UnixDatagram::bind(&sock).unwrap();
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        log(Severity::Notice, "after the restart");
        let n = server.recv(&mut buf).unwrap();
        let got = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(got.starts_with("<29>mdguard["), "{got}");
        assert!(got.ends_with("]: after the restart"), "{got}");
        // no syslog at start: stderr, and syslog once it is there
        std::fs::remove_file(&sock).unwrap();
        drop(server);
        init(false, &sock);
        log(Severity::Info, "before syslog");
        let server = UnixDatagram::bind(&sock).unwrap();
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        log(Severity::Info, "syslog started after the agent");
        let n = server.recv(&mut buf).unwrap();
        let got = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(got.ends_with("]: syslog started after the agent"), "{got}");
    }
}
