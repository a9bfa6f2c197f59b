//! The state file: speed limits mdguard changed and must put back, kept in
//! /run/mdguard so a crash or `kill -9` does not lose them.

use super::{Daemon, SavedSpeeds};
use crate::log;
use crate::report::agent_state::{AgentView, ArrayView};
use std::io;
use std::path::PathBuf;

impl Daemon {
    fn state_path(&self) -> PathBuf {
        self.opts.root.path("/run/mdguard/speed-limits.json")
    }

    /// The limits mdguard must put back survive a crash or `kill -9`: they are kept
    /// in /run/mdguard and read back at start.
    pub(super) fn load_saved_speeds(&mut self) {
        let p = self.state_path();
        let Ok(text) = std::fs::read_to_string(&p) else {
            return;
        };
        match serde_json::from_str::<SavedSpeeds>(&text) {
            Ok(m) => {
                log::notice(&format!(
                    "found speed limits a previous mdguard changed ({}); they will be restored",
                    p.display()
                ));
                self.engine.preload_saved_speeds(m.clone());
                self.saved_written = m;
            }
            Err(e) => log::warn(&format!("{}: ignoring unreadable state: {e}", p.display())),
        }
    }

    pub(super) fn persist_saved_speeds(&mut self) {
        let now = self.engine.saved_speeds();
        if now == self.saved_written {
            return;
        }
        let p = self.state_path();
        let r = if now.is_empty() {
            std::fs::remove_file(&p).or_else(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
        } else {
            let tmp = p.with_extension("tmp");
            p.parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|_| std::fs::write(&tmp, serde_json::to_vec(&now).unwrap_or_default()))
                .and_then(|_| std::fs::rename(&tmp, &p))
        };
        match r {
            Ok(()) => self.saved_written = now,
            Err(e) => log::warn(&format!(
                "cannot record speed limits in {}: {e}",
                p.display()
            )),
        }
    }

    /// Keep /run/mdguard/agent.json (what the agent knows beyond md, for the
    /// guest's own `status` and `check`) up to date; written only on change.
    pub(super) fn write_agent_view(&mut self) {
        let view = AgentView::new(
            std::process::id(),
            self.snap
                .arrays
                .iter()
                .map(|a| (a.name.clone(), ArrayView::of(&self.engine, &a.name))),
        );
        if self.view_written.as_ref() == Some(&view) {
            return;
        }
        match view.write(&self.opts.root) {
            Ok(()) => self.view_written = Some(view),
            Err(e) => log::warn(&format!("cannot write the agent's view: {e}")),
        }
    }
}
