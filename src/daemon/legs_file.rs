//! The legs' records ([`crate::heal::history`]) kept across agent restarts and
//! reboots:
//!
//! - `/run/mdguard/legs.json` on every change (tmpfs: no disk write, survives a
//!   crash or `kill -9` of the agent);
//! - `/var/lib/mdguard/legs.json` when a leg leaves its array and at a clean
//!   stop: the moments worth keeping across a reboot. Written by a helper
//!   thread, so a root file system that hangs (it may sit on the very array
//!   that lost a leg) never holds the loop; the latest content wins.
//!
//! At start the /run copy is read first (it is the newer), else the /var/lib one.
//! An unreadable file is logged and ignored: the superblock rules still judge.

use crate::heal::history::{History, LegRecord};
use crate::log;
use crate::root::Root;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

pub const RUN_PATH: &str = "/run/mdguard/legs.json";
pub const VAR_PATH: &str = "/var/lib/mdguard/legs.json";

#[derive(Debug, Serialize, Deserialize)]
struct LegsFile {
    version: u32,
    legs: Vec<LegRecord>,
}

/// Records kept by an earlier run, and the file they came from.
pub fn load(root: &Root) -> Option<(Vec<LegRecord>, PathBuf)> {
    for p in [RUN_PATH, VAR_PATH].map(|p| root.path(p)) {
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue;
        };
        match serde_json::from_str::<LegsFile>(&text) {
            Ok(f) if f.version == 1 => return Some((f.legs, p)),
            Ok(f) => log::warn(&format!(
                "{}: ignoring leg records of unknown version {}",
                p.display(),
                f.version
            )),
            Err(e) => log::warn(&format!(
                "{}: ignoring unreadable leg records: {e}",
                p.display()
            )),
        }
    }
    None
}

fn encode(history: &History) -> Vec<u8> {
    let f = LegsFile {
        version: 1,
        legs: history.records().cloned().collect(),
    };
    serde_json::to_vec(&f).unwrap_or_default()
}

/// Write `bytes` to `p` so a reader (or a crash) sees the old file or the new.
fn write_atomic(p: &Path, bytes: &[u8], durable: bool) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = p.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    if durable {
        f.sync_all()?;
    }
    std::fs::rename(&tmp, p)?;
    if durable {
        if let Some(dir) = p.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
    }
    Ok(())
}

/// The /var/lib copy's writer thread: the latest content waits in `slot`.
struct Durable {
    slot: Mutex<(Option<Vec<u8>>, bool)>,
    cond: Condvar,
}

/// Keeps both copies up to date with the engine's history.
pub struct Keeper {
    root: Root,
    run_generation: Option<u64>,
    var_generation: Option<u64>,
    durable: Arc<Durable>,
    started: bool,
}

impl Keeper {
    pub fn new(root: Root) -> Keeper {
        Keeper {
            root,
            run_generation: None,
            var_generation: None,
            durable: Arc::new(Durable {
                slot: Mutex::new((None, false)),
                cond: Condvar::new(),
            }),
            started: false,
        }
    }

    /// After `restore`: the files already say what the history says.
    pub fn loaded(&mut self, history: &History) {
        self.run_generation = Some(history.generation);
        self.var_generation = Some(history.left_generation);
    }

    /// Write what changed: /run on any change, /var/lib when a leg left (or
    /// `stopping`).
    pub fn keep(&mut self, history: &History, stopping: bool) {
        if self.run_generation != Some(history.generation) {
            let p = self.root.path(RUN_PATH);
            match write_atomic(&p, &encode(history), false) {
                Ok(()) => self.run_generation = Some(history.generation),
                Err(e) => log::warn(&format!("cannot write {}: {e}", p.display())),
            }
        }
        if stopping || self.var_generation != Some(history.left_generation) {
            self.var_generation = Some(history.left_generation);
            if history.records().next().is_some() {
                self.submit(encode(history));
            }
        }
    }

    fn submit(&mut self, bytes: Vec<u8>) {
        if !self.started {
            self.started = true;
            let d = self.durable.clone();
            let p = self.root.path(VAR_PATH);
            let r = std::thread::Builder::new()
                .name("legs-file".into())
                .spawn(move || durable_writer(&d, &p));
            if let Err(e) = r {
                log::warn(&format!("cannot start the leg records' writer: {e}"));
                return;
            }
        }
        let mut slot = self.durable.slot.lock().unwrap_or_else(|e| e.into_inner());
        slot.0 = Some(bytes);
        slot.1 = true;
        self.durable.cond.notify_all();
    }

    /// Wait up to `timeout` for the /var/lib copy to be written (at stop).
    pub fn flush(&self, timeout: Duration) -> bool {
        let slot = self.durable.slot.lock().unwrap_or_else(|e| e.into_inner());
        let (slot, _) = self
            .durable
            .cond
            .wait_timeout_while(slot, timeout, |s| s.1)
            .unwrap_or_else(|e| e.into_inner());
        !slot.1
    }
}

fn durable_writer(d: &Durable, p: &Path) {
    loop {
        let bytes = {
            let mut slot = d.slot.lock().unwrap_or_else(|e| e.into_inner());
            while slot.0.is_none() {
                slot = d.cond.wait(slot).unwrap_or_else(|e| e.into_inner());
            }
            slot.0.take().unwrap_or_default()
        };
        if let Err(e) = write_atomic(p, &bytes, true) {
            log::warn(&format!("cannot write {}: {e}", p.display()));
        }
        let mut slot = d.slot.lock().unwrap_or_else(|e| e.into_inner());
        if slot.0.is_none() {
            // nothing newer came while writing: written
            slot.1 = false;
            d.cond.notify_all();
        }
    }
}
