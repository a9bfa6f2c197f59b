//! The opt-in HTTP listener for Prometheus (`mdguard host run
//! --metrics-listen ADDR:PORT`): `GET /metrics` answered with what a render
//! function makes, on std's `TcpListener`, off the service's loop.
//!
//! A thread accepts; each connection gets a thread of its own, at most
//! [`Limits::connections`] at once (one more is answered 503 without being
//! read, and closed). A connection has [`Limits::read`] in all to send its
//! head (at most [`super::http::HEAD_MAX`] bytes: a client that trickles
//! bytes, sends too much or sends garbage gets 408, 431 or 400 and is
//! closed) and [`Limits::write`] in all to take the answer. One request per
//! connection. The render function is the caller's: the service's renders
//! from the last snapshot its loop published, so nothing here ever waits for
//! the loop, nor the loop for a client.

use super::http::{head_end, route, Head, Response};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Makes the metrics' text, on a connection's thread.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// What a client may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once.
    pub connections: usize,
    /// From the accept to the end of the request's head.
    pub read: Duration,
    /// To write the whole answer.
    pub write: Duration,
}

impl Default for Limits {
    /// 4 connections; 5 s to ask (a Prometheus scrape asks at once), 10 s to
    /// take the answer (Prometheus's default scrape timeout).
    fn default() -> Limits {
        Limits {
            connections: 4,
            read: Duration::from_secs(5),
            write: Duration::from_secs(10),
        }
    }
}

/// A running listener; dropping it stops accepting.
pub struct Listener {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Bind `addr` (port 0: any free one) and serve.
    pub fn start(addr: SocketAddr, render: Render, limits: Limits) -> io::Result<Listener> {
        let l = TcpListener::bind(addr)?;
        let addr = l.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::Builder::new()
            .name("metrics-listen".into())
            .spawn(move || accept(l, render, limits, st))?;
        Ok(Listener {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on (the port chosen for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // wake the accept
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One connection slot, freed when dropped.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn accept(l: TcpListener, render: Render, limits: Limits, stop: Arc<AtomicBool>) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in l.incoming() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let s = match conn {
            Ok(s) => s,
            Err(e) => {
                // out of file descriptors or a connection reset before the
                // accept: a moment's pause, never a busy loop
                if !matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                ) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                continue;
            }
        };
        if active.load(Ordering::Relaxed) >= limits.connections {
            busy(s);
            continue;
        }
        active.fetch_add(1, Ordering::Relaxed);
        let slot = Slot(active.clone());
        let render = render.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-conn".into())
            .spawn(move || {
                let _slot = slot;
                serve(s, &render, limits);
            });
        if spawned.is_err() {
            // the slot went with the closure, and the connection with it
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Too many connections: a 503, written without waiting, and closed. What
/// the client already sent is read away first (without waiting), so that
/// closing does not reset the connection before the 503 is read.
fn busy(mut s: TcpStream) {
    let _ = s.set_nonblocking(true);
    let _ = s.write(&Response::error(503, "too many connections").to_bytes());
    let _ = s.shutdown(Shutdown::Write);
    let mut sink = [0u8; 4096];
    for _ in 0..4 {
        if !matches!(s.read(&mut sink), Ok(n) if n > 0) {
            break;
        }
    }
}

/// Read one request's head within `limits.read`, answer within
/// `limits.write`, close.
fn serve(mut s: TcpStream, render: &Render, limits: Limits) {
    let _ = s.set_nodelay(true);
    let start = Instant::now();
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let response = loop {
        match head_end(&buf) {
            Head::Complete(n) => break Response::to(route(&buf[..n]), || render()),
            Head::TooLarge => break Response::error(431, "the request's head is too large"),
            Head::Incomplete => {}
        }
        let left = limits.read.saturating_sub(start.elapsed());
        if left.is_zero() {
            break Response::error(408, "the request took too long");
        }
        let _ = s.set_read_timeout(Some(left));
        match s.read(&mut chunk) {
            Ok(0) => return, // the client went away
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break Response::error(408, "the request took too long");
            }
            Err(_) => return,
        }
    };
    write_all(&mut s, &response.to_bytes(), limits.write);
    // what the client sent past its head (a POST's body) is read away for a
    // moment, so that closing does not reset the answer away
    let _ = s.shutdown(Shutdown::Write);
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut drained = 0;
    while drained < 64 * 1024 {
        match s.read(&mut chunk) {
            Ok(n) if n > 0 => drained += n,
            _ => break,
        }
    }
}

/// Write `bytes` within `deadline` in all, however slowly the client reads.
fn write_all(s: &mut TcpStream, bytes: &[u8], deadline: Duration) {
    let start = Instant::now();
    let mut done = 0;
    while done < bytes.len() {
        let left = deadline.saturating_sub(start.elapsed());
        if left.is_zero() {
            return;
        }
        let _ = s.set_write_timeout(Some(left));
        match s.write(&bytes[done..]) {
            Ok(0) => return,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::metrics::http::CONTENT_TYPE;

    fn serve_text(text: &str, limits: Limits) -> Listener {
        let t = text.to_string();
        Listener::start(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(move || t.clone()),
            limits,
        )
        .unwrap()
    }

    /// Send `req`, read the whole answer: status line and headers, body.
    fn ask(addr: SocketAddr, req: &[u8]) -> (String, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(req).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (head.to_string(), body.to_string())
    }

    /// A client with a 4 KiB receive buffer, set before any data (which
    /// stops autotuning): it takes next to nothing of an answer it does not
    /// read.
    fn narrow_client(addr: SocketAddr) -> TcpStream {
        use nix::sys::socket::{setsockopt, sockopt};
        let s = TcpStream::connect(addr).unwrap();
        setsockopt(&s, sockopt::RcvBuf, &4096).unwrap();
        s
    }

    fn get(addr: SocketAddr) -> (String, String) {
        ask(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    }

    const QUICK: Limits = Limits {
        connections: 2,
        read: Duration::from_millis(700),
        write: Duration::from_millis(1500),
    };

    #[test]
    fn metrics_not_found_and_method_not_allowed() {
        let l = serve_text("a 1\n", Limits::default());
        let (head, body) = get(l.local_addr());
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains(&format!("Content-Type: {CONTENT_TYPE}")),
            "{head}"
        );
        assert_eq!(body, "a 1\n");
        let (head, body) = ask(l.local_addr(), b"HEAD /metrics HTTP/1.0\r\n\r\n");
        assert!(head.contains("Content-Length: 4"), "{head}");
        assert_eq!(body, "");
        let (head, _) = ask(l.local_addr(), b"GET /other HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
        // a POST's body is read away: its 405 arrives whole
        let (head, body) = ask(
            l.local_addr(),
            format!(
                "POST /metrics HTTP/1.1\r\nContent-Length: 40000\r\n\r\n{}",
                "x".repeat(40000)
            )
            .as_bytes(),
        );
        assert!(head.starts_with("HTTP/1.1 405 "), "{head}");
        assert!(head.contains("Allow: GET, HEAD"), "{head}");
        assert!(body.starts_with("405 Method Not Allowed"), "{body}");
    }

    /// Garbage, a head that never ends, one byte at a time too slowly, a
    /// client that never reads its answer, more clients than slots: each gets
    /// its error or its deadline, and the next scrape is served.
    #[test]
    fn hostile_clients_get_their_error_and_the_next_scrape_is_served() {
        let big = "x".repeat(16 << 20);
        let l = serve_text(&big, QUICK);
        let addr = l.local_addr();
        let (head, _) = ask(
            addr,
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        );
        assert!(head.starts_with("HTTP/1.1 400 "), "TLS hello: {head}");
        let (head, _) = ask(addr, &[b'A'; 20000]);
        assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
        // (their threads end a moment after the answer)
        std::thread::sleep(Duration::from_millis(300));
        // slowloris: a byte every 100 ms, never a whole head
        let t = Instant::now();
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut answer = Vec::new();
        for b in b"GET /metrics HTTP/1.1\r\nX-Slow: ".iter().cycle() {
            if slow.write_all(&[*b]).is_err() || t.elapsed() > Duration::from_secs(3) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            slow.set_nonblocking(true).unwrap();
            let mut tmp = [0u8; 256];
            if let Ok(n) = slow.read(&mut tmp) {
                answer.extend_from_slice(&tmp[..n]);
                if n == 0 || answer.ends_with(b"\n") {
                    break;
                }
            }
            slow.set_nonblocking(false).unwrap();
        }
        let said = String::from_utf8_lossy(&answer);
        assert!(said.starts_with("HTTP/1.1 408 "), "{said}");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        // (its slot is held while the server reads away what follows: 100 ms)
        drop(slow);
        std::thread::sleep(Duration::from_millis(300));
        // two clients hold both slots (one never sends, one never reads
        // its 16 MiB, more than the sockets hold): the third is told 503 at once
        let idle = TcpStream::connect(addr).unwrap();
        let mut greedy = narrow_client(addr);
        greedy.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let (head, _) = get(addr);
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        // their deadlines free the slots: a scrape is served whole
        std::thread::sleep(Duration::from_millis(1600));
        let (head, body) = get(addr);
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        assert_eq!(body.len(), big.len());
        drop((idle, greedy));
    }

    #[test]
    fn dropped_it_listens_no_more() {
        let l = serve_text("a 1\n", Limits::default());
        let addr = l.local_addr();
        drop(l);
        assert!(TcpStream::connect(addr).is_err());
    }
}
