//! Real-kernel tests: md RAID1 over nbd legs in a QEMU guest (tests/vm/README.md).
mod harness;

use harness::*;
use std::time::{Duration, Instant};

#[test]
#[ignore = "VM test: run tests/vm/provision.sh first (scripts/test-all.sh does)"]
fn smoke() {
    let t0 = Instant::now();
    let mut lab = Lab::start("smoke", LabConfig::default());
    let c = lab.capture("resync");
    assert_eq!(c.snapshot.must("md0", "sync_action"), "resync");
    lab.unthrottle();
    lab.wait_clean("md0", Duration::from_secs(120));
    lab.capture("clean");
    eprintln!("smoke: {:.1} s", t0.elapsed().as_secs_f64());
}
