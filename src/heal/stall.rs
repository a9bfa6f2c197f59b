//! Writes that hang: an array left in `write-pending` past the stall timeout.

use super::action::{log, Action, Ms, SEC};
use super::engine::Engine;
use super::event::Event;
use crate::md::model::Array;

impl Engine {
    pub(super) fn track_stall(&mut self, a: &Array, now: Ms, out: &mut Vec<Action>) {
        let limit = self.config.heal.stall_timeout_s * SEC;
        let mem = self.arrays.entry(a.name.clone()).or_default();
        if a.array_state.as_deref() == Some("write-pending") {
            let since = *mem.write_pending_since.get_or_insert(now);
            if now.saturating_sub(since) >= limit && !mem.stalled {
                mem.stalled = true;
                out.push(log(Event::Stalled {
                    array: a.name.clone(),
                    after: now.saturating_sub(since),
                }));
            }
        } else {
            if mem.stalled {
                out.push(log(Event::WritesFlow {
                    array: a.name.clone(),
                }));
            }
            mem.write_pending_since = None;
            mem.stalled = false;
        }
    }
}
