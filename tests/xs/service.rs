//! `mdguard host run` in dom0 as the xenstored tier runs it: started on the
//! fixture's xenstored, its log (stderr) in a file, SIGKILLed on drop
//! (tests/xenstore_admission.rs, tests/xenstore_host_run.rs and the
//! prometheus tier).
#![allow(dead_code)]

use super::fixture::{wait_for, Xenstored};
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// `mdguard host run` in dom0, its log (stderr) in a file; SIGKILLed on drop.
pub struct Service {
    child: Option<Child>,
    log: PathBuf,
}

impl Service {
    /// The port `--metrics-listen` took, from its log line.
    pub fn metrics_port(&self) -> u16 {
        self.wait_log("serving the metrics on http://");
        let log = self.log();
        let at = log.find("serving the metrics on http://").unwrap();
        let rest = &log[at..];
        let addr = rest.split_whitespace().nth(4).unwrap();
        let port = addr
            .trim_end_matches("/metrics")
            .rsplit(':')
            .next()
            .unwrap();
        port.parse()
            .unwrap_or_else(|_| panic!("no port in {rest:?}"))
    }

    pub fn start(xs: &Xenstored, args: &[&str]) -> Service {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let log = xs.dir.path().join(format!(
            "host-run-{}.log",
            RUNS.fetch_add(1, Ordering::Relaxed)
        ));
        let child = Command::new(env!("CARGO_BIN_EXE_mdguard"))
            .args(["host", "run", "--foreground"])
            .args(args)
            .env("XENSTORED_PATH", &xs.socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let s = Service {
            child: Some(child),
            log,
        };
        s.wait_log("coordinating resyncs");
        s
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn wait_log(&self, needle: &str) {
        let seen = wait_for(Duration::from_secs(20), || {
            self.log().contains(needle).then_some(())
        });
        assert!(seen.is_some(), "no {needle:?} in:\n{}", self.log());
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGTERM, as systemd stops it; it must exit 0.
    pub fn stop(&mut self) {
        let mut c = self.child.take().expect("running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let st = c.wait().unwrap();
        assert!(st.success(), "{st}:\n{}", self.log());
    }

    pub fn kill9(&mut self) {
        let mut c = self.child.take().expect("running");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// CPU time used so far (utime + stime, clock ticks).
    pub fn cpu_ticks(&self) -> u64 {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let rest = stat.rsplit_once(')').unwrap().1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
