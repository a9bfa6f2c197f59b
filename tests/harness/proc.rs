//! Child processes that can never outlive the test.
//!
//! Every child gets its own process group (so a kill reaches anything it
//! forked) and `PR_SET_PDEATHSIG = SIGKILL` (so even a test binary killed
//! with SIGKILL, whose destructors never run, takes its children along).
//! [`Proc`]'s `Drop` SIGKILLs the group and reaps it: a panicking test
//! leaves nothing running. (The death signal follows the *thread* that
//! spawned the child: spawn from the test's own thread, not a helper thread
//! that ends early.)

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

pub struct Proc {
    name: String,
    child: Child,
    reaped: Option<ExitStatus>,
}

impl Proc {
    /// Spawn `cmd` in a new process group that dies with this thread's process.
    pub fn spawn(name: &str, cmd: &mut Command) -> io::Result<Proc> {
        cmd.process_group(0);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("spawning {name}: {e}")))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            reaped: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Send `sig` to the process (not its group).
    pub fn signal(&self, sig: libc::c_int) {
        if self.reaped.is_some() {
            panic!("{}: signal {sig} to a process already reaped", self.name);
        }
        // SAFETY: plain kill(2) on our own child's pid, which we have not reaped.
        let r = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(
            r,
            0,
            "{}: kill({}, {sig}): {}",
            self.name,
            self.pid(),
            io::Error::last_os_error()
        );
    }

    /// Has it exited? (Reaps it if so.)
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.reaped.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.reaped = Some(st);
            }
        }
        self.reaped
    }

    /// SIGKILL the whole group and reap the leader (bounded wait).
    pub fn kill(&mut self) -> Option<ExitStatus> {
        if self.reaped.is_none() {
            let pgid = self.child.id() as libc::pid_t;
            // SAFETY: kill(2) on the process group we created for this child.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(st)) = self.child.try_wait() {
                    self.reaped = Some(st);
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            if self.reaped.is_none() {
                eprintln!(
                    "harness: {} (pid {}) survived SIGKILL for 10 s",
                    self.name, pgid
                );
            }
        }
        self.reaped
    }

    /// SIGSTOP, as a hung server: connections stay open, nothing answers.
    /// Waits until the kernel shows it stopped.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
        assert!(
            super::wait_until(Duration::from_secs(5), || self.state() == Some('T')),
            "{}: not stopped after SIGSTOP",
            self.name
        );
    }

    /// SIGCONT after [`freeze`](Self::freeze), waiting until it runs again.
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
        assert!(
            super::wait_until(Duration::from_secs(5), || self.state() != Some('T')),
            "{}: still stopped after SIGCONT",
            self.name
        );
    }

    /// Process state letter from /proc/PID/stat (R, S, D, T, Z...).
    pub fn state(&self) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        // The comm field is parenthesised and may contain spaces: state follows ") ".
        stat.rsplit_once(") ")?.1.chars().next()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}
