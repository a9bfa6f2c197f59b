//! Helper threads: blocking work (a probe that may hang in the kernel, a reconnect
//! command) runs off the loop and reports back through a channel and a wake-up.

use super::kernel::probe_device;
use crate::heal::{Failure, Outcome, ProbeOutcome};
use crate::root::Root;
use std::io;
use std::process::{Command, Stdio};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

/// Results coming back from helper threads.
#[derive(Debug)]
pub enum Done {
    Probe {
        device: String,
        outcome: ProbeOutcome,
    },
    /// The leg read again right before its add, and the array's witness.
    Confirm {
        array: String,
        device: String,
        leg: ProbeOutcome,
        witness: ProbeOutcome,
    },
    Reconnect {
        device: String,
        outcome: Outcome,
    },
}

/// Probe on a thread; the result goes to `tx` and `wake` is poked. A thread stuck
/// in the kernel on a hung device is left behind; the loop times the probe out.
pub fn spawn_probe(root: Root, dev: String, tx: Sender<Done>, wake: impl Fn() + Send + 'static) {
    let r = std::thread::Builder::new()
        .name(format!("probe-{dev}"))
        .spawn(move || {
            let outcome = probe_device(&root, &dev);
            let _ = tx.send(Done::Probe {
                device: dev,
                outcome,
            });
            wake();
        });
    if let Err(e) = r {
        crate::log::warn(&format!("cannot start a probe thread: {e}"));
    }
}

/// Read a leg and then the array's witness member on a thread (see
/// [`crate::heal::Action::Confirm`]); like [`spawn_probe`] otherwise.
pub fn spawn_confirm(
    root: Root,
    array: String,
    dev: String,
    witness: String,
    tx: Sender<Done>,
    wake: impl Fn() + Send + 'static,
) {
    let r = std::thread::Builder::new()
        .name(format!("confirm-{dev}"))
        .spawn(move || {
            let leg = probe_device(&root, &dev);
            let witness = probe_device(&root, &witness);
            let _ = tx.send(Done::Confirm {
                array,
                device: dev,
                leg,
                witness,
            });
            wake();
        });
    if let Err(e) = r {
        crate::log::warn(&format!("cannot start a probe thread: {e}"));
    }
}

/// Run a reconnect command (no shell) with a timeout, on a thread.
pub fn spawn_reconnect(
    dev: String,
    argv: Vec<String>,
    timeout: Duration,
    tx: Sender<Done>,
    wake: impl Fn() + Send + 'static,
) {
    let r = std::thread::Builder::new()
        .name(format!("reconnect-{dev}"))
        .spawn(move || {
            let outcome = run_with_timeout(&argv, timeout);
            let _ = tx.send(Done::Reconnect {
                device: dev,
                outcome,
            });
            wake();
        });
    if let Err(e) = r {
        crate::log::warn(&format!("cannot start a reconnect thread: {e}"));
    }
}

/// Run argv; Done on exit 0, else Failed with the exit status and stderr's last line.
pub fn run_with_timeout(argv: &[String], timeout: Duration) -> Outcome {
    let Some((prog, args)) = argv.split_first() else {
        return Outcome::Failed(Failure::EmptyCommand);
    };
    let not_started = |e: io::Error| {
        Outcome::Failed(Failure::NotStarted {
            program: prog.clone(),
            error: e.to_string(),
        })
    };
    let mut child = match Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return not_started(e),
    };
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(st)) => {
                if st.success() {
                    return Outcome::Done;
                }
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = io::Read::read_to_string(&mut e, &mut err);
                }
                let last = err.lines().last().unwrap_or("").trim().to_string();
                return Outcome::Failed(Failure::Exited {
                    program: prog.clone(),
                    status: st,
                    stderr: last,
                });
            }
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Outcome::Failed(Failure::TimedOut {
                    program: prog.clone(),
                    after_s: timeout.as_secs(),
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return not_started(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_command_outcomes() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            run_with_timeout(&s(&["true"]), Duration::from_secs(5)),
            Outcome::Done
        );
        let failed = |o: Outcome| match o {
            Outcome::Failed(f) => f,
            o => panic!("{o:?}"),
        };
        let f = failed(run_with_timeout(
            &s(&["sh", "-c", "echo no route >&2; exit 3"]),
            Duration::from_secs(5),
        ));
        assert!(
            matches!(&f, Failure::Exited { program, status, stderr }
                if program == "sh" && status.code() == Some(3) && stderr == "no route"),
            "{f:?}"
        );
        // the log line: exit status, then stderr's last line
        assert_eq!(f.to_string(), "sh: exit status: 3: no route");
        let f = failed(run_with_timeout(
            &s(&["sleep", "5"]),
            Duration::from_millis(200),
        ));
        assert_eq!(
            f,
            Failure::TimedOut {
                program: "sleep".into(),
                after_s: 0
            }
        );
        assert_eq!(f.to_string(), "sleep: timed out after 0s");
        let f = failed(run_with_timeout(
            &s(&["/nonexistent/prog"]),
            Duration::from_secs(1),
        ));
        assert!(matches!(f, Failure::NotStarted { .. }), "{f:?}");
        assert!(f.to_string().starts_with("/nonexistent/prog: "), "{f}");
        assert_eq!(
            failed(run_with_timeout(&[], Duration::from_secs(1))),
            Failure::EmptyCommand
        );
    }
}
