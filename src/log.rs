//! Logging: one line per event to syslog (`/dev/log`, which the journal also
//! serves), or to stderr in `--foreground` or when there is no syslog socket.

use std::os::unix::net::UnixDatagram;
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
    Syslog(UnixDatagram),
}

static SINK: Mutex<Option<Sink>> = Mutex::new(None);

/// Choose where log lines go. `foreground` forces stderr.
pub fn init(foreground: bool, dev_log: &std::path::Path) {
    let sink = if foreground {
        Sink::Stderr
    } else {
        match UnixDatagram::unbound().and_then(|s| s.connect(dev_log).map(|_| s)) {
            Ok(s) => Sink::Syslog(s),
            Err(e) => {
                eprintln!(
                    "mdguard: no syslog at {} ({e}); logging to stderr",
                    dev_log.display()
                );
                Sink::Stderr
            }
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
    match g.as_mut() {
        Some(Sink::Syslog(s)) => {
            // facility daemon (3)
            let pri = 3 * 8 + sev as u8;
            let line = format!("<{pri}>mdguard[{}]: {clean}", std::process::id());
            if s.send(line.as_bytes()).is_err() {
                eprintln!("mdguard: {word}: {clean}");
            }
        }
        _ => {
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

    #[test]
    fn syslog_datagram_format() {
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("log");
        let server = UnixDatagram::bind(&sock).unwrap();
        init(false, &sock);
        log(Severity::Warning, "md0: leg nbd1 failed\nFAKE LINE");
        let mut buf = [0u8; 512];
        let n = server.recv(&mut buf).unwrap();
        let got = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(got.starts_with("<28>mdguard["), "{got}");
        assert!(got.ends_with("]: md0: leg nbd1 failed?FAKE LINE"), "{got}");
    }
}
