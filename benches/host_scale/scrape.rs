//! Scraping `mdguard host run`'s listener as Prometheus would (`GET
//! /metrics`, one request per connection), and a thread that scrapes every
//! so often and notes what each scrape showed: the time from a guest's write
//! to the start of the first scrape begun after it that shows it (an upper
//! bound: up to one scrape period late).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One scrape: the body, or what went wrong.
pub fn try_get(port: u16) -> Result<String, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8(out).map_err(|_| "not UTF-8".to_string())?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP answer")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head.to_string());
    }
    Ok(body.to_string())
}

/// The domid of a series line with a `domid` label whose value is `1`, if
/// the line is of `family` and carries `label` (`health="degraded"`).
pub fn domid_with(line: &str, family: &str, label: &str) -> Option<u32> {
    let rest = line.strip_prefix(family)?.strip_prefix('{')?;
    let (labels, value) = rest.rsplit_once("} ")?;
    if value.trim() != "1" || !labels.split(',').any(|l| l == label) {
        return None;
    }
    let id = labels.split(',').find_map(|l| l.strip_prefix("domid=\""))?;
    id.trim_end_matches('"').parse().ok()
}

/// A series to look for: its family and the label that must be there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mark {
    pub family: &'static str,
    pub label: &'static str,
}

#[derive(Debug, Default)]
pub struct Seen {
    /// Each scrape: when it began, and the marks it showed by domid.
    pub shown: Vec<(Instant, BTreeSet<(Mark, u32)>)>,
    pub scrapes: u64,
    /// Each scrape's wall time.
    pub took: Vec<Duration>,
    pub bytes: usize,
    /// Scrapes that failed, why.
    pub errors: Vec<String>,
}

/// Scrapes every `every` until dropped.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub seen: Arc<Mutex<Seen>>,
}

impl Watcher {
    pub fn start(port: u16, every: Duration, marks: Vec<Mark>) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let began = Instant::now();
                let body = match try_get(port) {
                    Ok(b) => b,
                    Err(e) => {
                        seen2.lock().unwrap().errors.push(e);
                        continue;
                    }
                };
                let took = began.elapsed();
                let mut shown = BTreeSet::new();
                for line in body.lines() {
                    for m in &marks {
                        if let Some(id) = domid_with(line, m.family, m.label) {
                            shown.insert((*m, id));
                        }
                    }
                }
                let mut s = seen2.lock().unwrap();
                s.shown.push((began, shown));
                s.scrapes += 1;
                s.took.push(took);
                s.bytes = body.len();
                drop(s);
                std::thread::sleep(every.saturating_sub(began.elapsed()));
            }
        });
        Watcher {
            stop,
            thread: Some(thread),
            seen,
        }
    }

    /// When the first scrape begun at `after` or later that shows `m` for
    /// `domid` began.
    pub fn first(&self, m: Mark, domid: u32, after: Instant) -> Option<Instant> {
        self.seen.lock().unwrap().first(m, domid, after)
    }
}

impl Seen {
    pub fn first(&self, m: Mark, domid: u32, after: Instant) -> Option<Instant> {
        self.shown
            .iter()
            .find(|(at, shown)| *at >= after && shown.contains(&(m, domid)))
            .map(|(at, _)| *at)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_names_its_guest_when_its_state_is_set() {
        let l = r#"mdguard_guest_health{domain="g7",domid="7",health="degraded"} 1"#;
        assert_eq!(
            domid_with(l, "mdguard_guest_health", r#"health="degraded""#),
            Some(7)
        );
        let off = r#"mdguard_guest_health{domain="g7",domid="7",health="degraded"} 0"#;
        assert_eq!(
            domid_with(off, "mdguard_guest_health", r#"health="degraded""#),
            None
        );
        assert_eq!(
            domid_with(l, "mdguard_guest_health", r#"health="ok""#),
            None
        );
        assert_eq!(domid_with(l, "mdguard_guest", r#"health="degraded""#), None);
    }
}
