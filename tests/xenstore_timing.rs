//! Round-trip timings against the real xenstored (not a pass/fail test of
//! speed: it only checks the operations succeed and prints medians).
//! `cargo test --release --test xenstore_timing -- --include-ignored --nocapture`
#[path = "xs/fixture.rs"]
mod fixture;

use fixture::Xenstored;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() * 99 / 100]
}

#[test]
#[ignore = "needs xenstored: run tests/xs/provision.sh (scripts/test-all.sh does)"]
fn round_trip_timings() {
    let mut xs = Xenstored::start();
    let mut c = xs.client();
    let n = 1000;
    let mut w = Vec::with_capacity(n);
    let mut r = Vec::with_capacity(n);
    for i in 0..n {
        let v = format!("value-{i}");
        let t = Instant::now();
        c.write("/bench/k", v.as_bytes()).unwrap();
        w.push(t.elapsed());
        let t = Instant::now();
        assert_eq!(c.read("/bench/k").unwrap(), v.as_bytes());
        r.push(t.elapsed());
    }
    eprintln!(
        "mdguard client, socket: WRITE median {:?} p99 {:?}; READ median {:?} p99 {:?} ({n} ops each)",
        median(w.clone()),
        p99(w),
        median(r.clone()),
        p99(r)
    );

    // Standard tools: one process per operation (what a shell script pays).
    let m = 200;
    let mut tw = Vec::new();
    let mut tr = Vec::new();
    for i in 0..m {
        let v = format!("t{i}");
        let t = Instant::now();
        xs.tool_ok("xenstore-write", &["/bench/t", &v]);
        tw.push(t.elapsed());
        let t = Instant::now();
        assert_eq!(xs.tool_ok("xenstore-read", &["/bench/t"]), v);
        tr.push(t.elapsed());
    }
    eprintln!(
        "xenstore-write/-read, one process per op: WRITE median {:?}; READ median {:?} ({m} each)",
        median(tw),
        median(tr)
    );
    // Standard tools, many keys in one process (libxenstore's own round trip).
    let mut args: Vec<String> = Vec::new();
    for i in 0..n {
        args.push(format!("/bench/many/k{i}"));
        args.push(format!("v{i}"));
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let t = Instant::now();
    xs.tool_ok("xenstore-write", &a);
    let tw = t.elapsed();
    let keys: Vec<&str> = a.iter().step_by(2).copied().collect();
    let t = Instant::now();
    let out = xs.tool_ok("xenstore-read", &keys);
    let tr = t.elapsed();
    assert_eq!(out.lines().count(), n);
    eprintln!(
        "xenstore-write/-read, {n} keys in one process: WRITE {:?}/op; READ {:?}/op (incl. one exec)",
        tw / n as u32,
        tr / n as u32
    );

    // As a guest through the ring bridge (includes the bridge's polling).
    let sock = xs.add_guest(5, "bench");
    let mut g =
        mdguard::xenstore::Client::connect(mdguard::xenstore::Endpoint::Socket(sock)).unwrap();
    let mut gr = Vec::new();
    g.write("data/k", b"v").unwrap();
    for _ in 0..n {
        let t = Instant::now();
        g.read("data/k").unwrap();
        gr.push(t.elapsed());
    }
    eprintln!(
        "mdguard client as guest via test ring bridge: READ median {:?} p99 {:?}",
        median(gr.clone()),
        p99(gr)
    );
}
