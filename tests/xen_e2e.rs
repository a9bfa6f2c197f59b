//! mdguard end to end in real Xen (issue 6): Xen 4.17 under QEMU, mdguard
//! inside a PV domU over md RAID1 whose legs are vbds dom0 backs with nbd
//! from two storage servers. See tests/xen/README.md.

mod harness;

use harness::xen::{XenLab, XEN_IGNORE_MSG};
use std::time::Duration;

#[test]
#[ignore = "Xen test: run tests/xen/run.sh (provisions Xen, builds the images)"]
fn explore() {
    let _ = XEN_IGNORE_MSG;
    let mut lab = XenLab::boot("explore");
    lab.nbd_opts = std::env::var("NBD_OPTS").unwrap_or("-t 5".into());
    lab.create_domu();
    let port = lab.legs[1].port();
    eprintln!(
        "{}",
        lab.dom0_sh("ps | grep nbd-client; cat /sys/block/nbd1/pid 2>&1; true")
    );
    lab.legs[1].kill();
    let s = lab.domu("dd if=/dev/urandom of=/dev/md0 bs=1M count=2 seek=4 oflag=direct conv=fsync; cat /proc/mdstat", Duration::from_secs(60));
    eprintln!("domU after kill: {s:?}");
    eprintln!("{}", lab.dom0_sh("dmesg | tail -8; ps | grep nbd-client; cat /sys/block/nbd1/size /sys/block/nbd1/pid 2>&1; true"));
    lab.legs[1].restart();
    let s = lab.dom0.run("sleep 4; dmesg | tail -5; ps | grep nbd-client; cat /sys/block/nbd1/size /sys/block/nbd1/pid; dd if=/dev/nbd1 of=/dev/null bs=4096 count=1 iflag=direct", Duration::from_secs(60));
    eprintln!("dom0 after restart: {s:?}");
    if std::env::var("MANUAL").is_ok() {
        let s = lab.dom0.run(&format!("nbd-client -d /dev/nbd1; nbd-client 10.0.2.2 {port} /dev/nbd1 -N leg {}; echo rc=$?; sleep 2; dmesg | tail -5; cat /sys/block/nbd1/size; ps | grep nbd-cl; dd if=/dev/nbd1 of=/dev/null bs=4096 count=1 iflag=direct", lab.nbd_opts), Duration::from_secs(60));
        eprintln!("dom0 manual reconnect: {s:?}");
    }
    let s = lab.domu("dd if=/dev/xvdc bs=4096 count=1 iflag=direct skip=1 | od -c | head -3; cat /proc/mdstat; dmesg | tail -3", Duration::from_secs(60));
    eprintln!("domU probe: {s:?}");
}
