//! Carrying the coordinator's writes out (`mdguard host run`): each guest's
//! `control/mdguard/` keys, `n0 r<domid>` on what is written (the guest may
//! read, never write), in as few transactions as the rules allow and none
//! so large that xenstored chokes on it.
//!
//! The admission's writes (grants, queued answers, budgets) stand together:
//! a grant freed and the next one given, a budget split again, are one
//! transaction, so no reader ever sees K + 1 guests holding a grant or the
//! shares adding up to more than the host budget. The other writes
//! (announcements, pings) bind nothing: they go guest by guest, at most
//! [`GUESTS_PER_TXN`] guests to a transaction. With 1000 guests the
//! announcement alone is 5000 requests; as one transaction a request of it
//! went unanswered past the service's 10 s, and the service retried the
//! whole of it every second for good (benches/host_scale.rs).

use super::admission::Write;
use crate::report::admission::CTL_COORDINATOR;
use crate::report::schema::{CONTROL_DIR, CTL_PING};
use crate::xenstore::{Access, Client, Error, Perm};
use std::collections::BTreeSet;

/// Most guests a transaction of writes that bind nothing touches.
pub const GUESTS_PER_TXN: usize = 25;

/// Keys whose writes bind nothing to other guests' writes.
fn free(key: &str) -> bool {
    key == CTL_COORDINATOR || key == CTL_PING
}

/// `writes` in the transactions that carry them out, in order: first every
/// guest with an admission write (all of that guest's writes, in one
/// transaction), then the other guests, [`GUESTS_PER_TXN`] at a time. A
/// guest's writes keep their order.
pub fn batches(writes: &[Write]) -> Vec<Vec<Write>> {
    let bound: BTreeSet<u32> = writes
        .iter()
        .filter(|w| !free(w.key))
        .map(|w| w.domid)
        .collect();
    let mut out = Vec::new();
    let first: Vec<Write> = writes
        .iter()
        .filter(|w| bound.contains(&w.domid))
        .cloned()
        .collect();
    if !first.is_empty() {
        out.push(first);
    }
    let mut batch: Vec<Write> = Vec::new();
    let mut guests: BTreeSet<u32> = BTreeSet::new();
    for w in writes.iter().filter(|w| !bound.contains(&w.domid)) {
        if !guests.contains(&w.domid) && guests.len() == GUESTS_PER_TXN {
            out.push(std::mem::take(&mut batch));
            guests.clear();
        }
        guests.insert(w.domid);
        batch.push(w.clone());
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    out
}

/// Carry `writes` out ([`batches`]). A guest whose home is gone is skipped:
/// nothing is created for it. The skipped guests. On an error the
/// transactions before it stand (every write is idempotent: the caller's
/// next plan writes them again).
pub fn write_plan(c: &mut Client, writes: &[Write]) -> Result<Vec<u32>, Error> {
    let mut skipped = Vec::new();
    for b in batches(writes) {
        skipped.extend(write_all(c, &b)?);
    }
    Ok(skipped)
}

/// Carry `writes` out in one transaction, `n0 r<domid>` on what is written
/// (the guest may read, never write). A guest whose home is gone is skipped:
/// nothing is created for it. The skipped guests.
fn write_all(c: &mut Client, writes: &[Write]) -> Result<Vec<u32>, Error> {
    c.transaction(|t| {
        let mut skipped: Vec<u32> = Vec::new();
        let mut ready: BTreeSet<u32> = BTreeSet::new();
        for w in writes {
            if skipped.contains(&w.domid) {
                continue;
            }
            let home = format!("/local/domain/{}", w.domid);
            let dir = format!("{home}/{CONTROL_DIR}");
            let path = format!("{dir}/{}", w.key);
            let perms = [Perm::new(0, Access::None), Perm::new(w.domid, Access::Read)];
            if !ready.contains(&w.domid) {
                // the directory is there (the usual case: one request), or
                // made, unless the guest is gone
                if t.try_read(&dir)?.is_none() {
                    if t.try_read(&home)?.is_none() {
                        skipped.push(w.domid);
                        continue;
                    }
                    if w.value.is_none() {
                        continue; // nothing there to remove
                    }
                    t.mkdir(&dir)?;
                    t.set_perms(&dir, &perms)?;
                }
                ready.insert(w.domid);
            }
            match &w.value {
                Some(v) => {
                    t.write(&path, v)?;
                    t.set_perms(&path, &perms)?;
                }
                None => match t.rm(&path) {
                    Err(e) if e.is_not_found() => {}
                    r => r?,
                },
            }
        }
        Ok(skipped)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::admission::CTL_GRANT;
    use crate::report::schema::CTL_BUDGET;

    fn w(domid: u32, key: &'static str, v: Option<&str>) -> Write {
        Write {
            domid,
            key,
            value: v.map(|v| v.as_bytes().to_vec()),
        }
    }

    #[test]
    fn announcing_to_a_thousand_guests_takes_many_small_transactions() {
        let writes: Vec<Write> = (1..=1000)
            .map(|id| w(id, CTL_COORDINATOR, Some("host-1")))
            .collect();
        let b = batches(&writes);
        assert_eq!(b.len(), 1000 / GUESTS_PER_TXN);
        assert!(b.iter().all(|b| b.len() == GUESTS_PER_TXN));
        // every write once, in order
        assert_eq!(b.concat(), writes);
    }

    #[test]
    fn the_admission_stands_together_and_comes_first() {
        // dom7's grant freed, dom9 granted with its budget, a new guest
        // announced, pings
        let writes = vec![
            w(3, CTL_PING, Some("p")),
            w(7, CTL_GRANT, None),
            w(7, CTL_BUDGET, None),
            w(8, CTL_COORDINATOR, Some("host-1")),
            w(9, CTL_COORDINATOR, Some("host-1")),
            w(9, CTL_BUDGET, Some("10000")),
            w(9, CTL_GRANT, Some("t-1")),
        ];
        let b = batches(&writes);
        assert_eq!(
            b,
            vec![
                vec![
                    w(7, CTL_GRANT, None),
                    w(7, CTL_BUDGET, None),
                    w(9, CTL_COORDINATOR, Some("host-1")),
                    w(9, CTL_BUDGET, Some("10000")),
                    w(9, CTL_GRANT, Some("t-1")),
                ],
                vec![
                    w(3, CTL_PING, Some("p")),
                    w(8, CTL_COORDINATOR, Some("host-1"))
                ],
            ]
        );
    }

    #[test]
    fn a_guests_writes_are_never_split() {
        let mut writes = Vec::new();
        for id in 1..=60 {
            writes.push(w(id, CTL_COORDINATOR, Some("host-1")));
            writes.push(w(id, CTL_PING, Some("p")));
        }
        for b in batches(&writes) {
            let guests: BTreeSet<u32> = b.iter().map(|w| w.domid).collect();
            assert!(guests.len() <= GUESTS_PER_TXN);
            for id in guests {
                assert_eq!(b.iter().filter(|w| w.domid == id).count(), 2);
            }
        }
        assert!(batches(&[]).is_empty());
    }
}
