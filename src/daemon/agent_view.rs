//! The agent's view file: what the running agent knows beyond md, for the
//! guest's own `status` and `check`.

use super::Daemon;
use crate::log;
use crate::report::agent_state::{AgentView, ArrayView};

impl Daemon {
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
