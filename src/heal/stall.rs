//! Writes that hang: an array left in `write-pending` past the stall timeout.

use super::action::{log, Action, Level, Ms, SEC};
use super::engine::Engine;
use crate::md::model::Array;

impl Engine {
    pub(super) fn track_stall(&mut self, a: &Array, now: Ms, out: &mut Vec<Action>) {
        let limit = self.config.heal.stall_timeout_s * SEC;
        let mem = self.arrays.entry(a.name.clone()).or_default();
        if a.array_state.as_deref() == Some("write-pending") {
            let since = *mem.write_pending_since.get_or_insert(now);
            if now.saturating_sub(since) >= limit && !mem.stalled {
                mem.stalled = true;
                out.push(log(
                    Level::Error,
                    format!(
                        "{}: writes stalled for {}s (a leg's storage hangs without a transport timeout?)",
                        a.name,
                        now.saturating_sub(since) / SEC
                    ),
                ));
            }
        } else {
            if mem.stalled {
                out.push(log(Level::Info, format!("{}: writes flow again", a.name)));
            }
            mem.write_pending_since = None;
            mem.stalled = false;
        }
    }
}
