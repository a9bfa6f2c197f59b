//! The little HTTP/1.x that `mdguard host run --metrics-listen` speaks, pure:
//! where a request's head ends ([`head_end`], bounded by [`HEAD_MAX`]), what
//! it asks ([`route`], strict), and each answer's bytes ([`Response`]). One
//! request per connection, answered with `Connection: close`; no body is read.
//! The I/O, deadlines and the bound on connections are
//! [`super::listener`]'s.

/// The most a request's head (request line and headers) may take; a client
/// that sends more gets 431.
pub const HEAD_MAX: usize = 8192;
/// Most header lines.
const HEADERS_MAX: usize = 64;
/// Longest request target.
const TARGET_MAX: usize = 2048;
/// The one path served.
pub const METRICS_PATH: &str = "/metrics";
/// Prometheus's text format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How much of a head `buf` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// The head ends at this many bytes (its blank line included).
    Complete(usize),
    /// Not yet: read more.
    Incomplete,
    /// More than [`HEAD_MAX`] and no end.
    TooLarge,
}

/// Where the head in `buf` ends: at the first blank line (CRLF CRLF, or a
/// bare LF LF as some clients send).
pub fn head_end(buf: &[u8]) -> Head {
    let window = &buf[..buf.len().min(HEAD_MAX)];
    let crlf = window
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = window.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match crlf.into_iter().chain(lf).min() {
        Some(n) => Head::Complete(n),
        None if buf.len() >= HEAD_MAX => Head::TooLarge,
        None => Head::Incomplete,
    }
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /metrics` (`head`: `HEAD /metrics`, the same without the body).
    Metrics { head: bool },
    /// Another path.
    NotFound,
    /// Another method.
    MethodNotAllowed,
    /// Not a request this server reads, and why.
    BadRequest(&'static str),
}

fn token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// What the complete head `head` asks. Strict: a request line of exactly a
/// method, an origin-form target and `HTTP/1.0` or `HTTP/1.1`, then header
/// lines `name: value`, printable ASCII only. The query string is ignored
/// (Prometheus sends none).
pub fn route(head: &[u8]) -> Route {
    let Ok(text) = std::str::from_utf8(head) else {
        return Route::BadRequest("not text");
    };
    if !text.is_ascii() {
        return Route::BadRequest("not ASCII");
    }
    if text
        .bytes()
        .any(|b| b.is_ascii_control() && !matches!(b, b'\r' | b'\n' | b'\t'))
    {
        return Route::BadRequest("control characters");
    }
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request = lines.next().unwrap_or("");
    let parts: Vec<&str> = request.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Route::BadRequest("request line");
    };
    if !token(method) || method.len() > 16 {
        return Route::BadRequest("method");
    }
    if !target.starts_with('/')
        || target.len() > TARGET_MAX
        || !target.bytes().all(|b| b.is_ascii_graphic())
    {
        return Route::BadRequest("target");
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Route::BadRequest("version");
    }
    let mut headers = 0;
    for l in lines.take_while(|l| !l.is_empty()) {
        headers += 1;
        if headers > HEADERS_MAX {
            return Route::BadRequest("too many headers");
        }
        match l.split_once(':') {
            Some((name, _)) if token(name) => {}
            _ => return Route::BadRequest("header line"),
        }
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Route::MethodNotAllowed,
    };
    let path = target.split('?').next().unwrap_or(target);
    if path == METRICS_PATH {
        Route::Metrics { head: head_only }
    } else {
        Route::NotFound
    }
}

/// One answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Leave the body out (a `HEAD`), its length still said.
    pub head_only: bool,
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

impl Response {
    /// The metrics, `text` in Prometheus's text format.
    pub fn metrics(text: String, head_only: bool) -> Response {
        Response {
            status: 200,
            content_type: CONTENT_TYPE,
            body: text.into_bytes(),
            head_only,
        }
    }

    /// An error with a one-line plain text body.
    pub fn error(status: u16, why: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{status} {}: {why}\n", reason(status)).into_bytes(),
            head_only: false,
        }
    }

    /// The answer to `route`; `render` makes the metrics' text (called only
    /// for them).
    pub fn to(route: Route, render: impl FnOnce() -> String) -> Response {
        match route {
            Route::Metrics { head } => Response::metrics(render(), head),
            Route::NotFound => Response::error(404, "only /metrics is served"),
            Route::MethodNotAllowed => Response::error(405, "only GET and HEAD"),
            Route::BadRequest(why) => Response::error(400, why),
        }
    }

    /// The bytes on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        if self.status == 405 {
            out.push_str("Allow: GET, HEAD\r\n");
        }
        out.push_str("\r\n");
        let mut b = out.into_bytes();
        if !self.head_only {
            b.extend_from_slice(&self.body);
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_a_head_ends() {
        assert_eq!(head_end(b""), Head::Incomplete);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), Head::Incomplete);
        assert_eq!(
            head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody"),
            Head::Complete(27)
        );
        assert_eq!(head_end(b"GET / HTTP/1.0\n\n"), Head::Complete(16));
        let big = vec![b'a'; HEAD_MAX];
        assert_eq!(head_end(&big), Head::TooLarge);
        let mut late = vec![b'a'; HEAD_MAX - 2];
        late.extend_from_slice(b"\r\n\r\n");
        assert_eq!(head_end(&late), Head::TooLarge, "the end past the bound");
    }

    #[test]
    fn what_a_request_asks() {
        let r = |s: &str| route(s.as_bytes());
        assert_eq!(
            r("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9\r\nAccept: text/plain;version=0.0.4;q=1,*/*;q=0.1\r\nAccept-Encoding: gzip\r\nUser-Agent: Prometheus/2.42.0\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n"),
            Route::Metrics { head: false }
        );
        assert_eq!(
            r("HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Route::Metrics { head: true }
        );
        assert_eq!(r("GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(r("GET /metrics/ HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(
            r("POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\n"),
            Route::MethodNotAllowed
        );
        assert_eq!(r("DELETE /x HTTP/1.1\r\n\r\n"), Route::MethodNotAllowed);
        for (bad, why) in [
            ("\r\n\r\n", "request line"),
            ("GET /metrics\r\n\r\n", "request line"),
            ("GET  /metrics HTTP/1.1\r\n\r\n", "request line"),
            ("GET /metrics HTTP/2.0\r\n\r\n", "version"),
            ("GET metrics HTTP/1.1\r\n\r\n", "target"),
            ("GET http://x/metrics HTTP/1.1\r\n\r\n", "target"),
            ("G(T /metrics HTTP/1.1\r\n\r\n", "method"),
            ("GET /metrics HTTP/1.1\r\nno colon\r\n\r\n", "header line"),
            ("GET /metrics HTTP/1.1\r\n: empty\r\n\r\n", "header line"),
            ("GET /m\u{1b}[2J HTTP/1.1\r\n\r\n", "control characters"),
            ("GET /métrics HTTP/1.1\r\n\r\n", "not ASCII"),
        ] {
            assert_eq!(r(bad), Route::BadRequest(why), "{bad:?}");
        }
        assert_eq!(
            route(b"GET /\xff HTTP/1.1\r\n\r\n"),
            Route::BadRequest("not text")
        );
        let many = format!("GET /metrics HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(65));
        assert_eq!(r(&many), Route::BadRequest("too many headers"));
    }

    #[test]
    fn answers_on_the_wire() {
        let ok = Response::to(Route::Metrics { head: false }, || "a 1\n".into());
        assert_eq!(
            String::from_utf8(ok.to_bytes()).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: 4\r\nConnection: close\r\n\r\na 1\n"
        );
        let head = Response::to(Route::Metrics { head: true }, || "a 1\n".into());
        assert!(String::from_utf8(head.to_bytes())
            .unwrap()
            .ends_with("Content-Length: 4\r\nConnection: close\r\n\r\n"));
        let mut rendered = false;
        let nf = Response::to(Route::NotFound, || {
            rendered = true;
            String::new()
        });
        assert!(!rendered, "metrics rendered for a 404");
        assert_eq!(nf.status, 404);
        let na = String::from_utf8(Response::to(Route::MethodNotAllowed, String::new).to_bytes())
            .unwrap();
        assert!(
            na.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{na}"
        );
        assert!(na.contains("\r\nAllow: GET, HEAD\r\n"), "{na}");
        assert_eq!(
            Response::to(Route::BadRequest("x"), String::new).status,
            400
        );
    }
}
