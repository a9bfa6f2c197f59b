//! What the tests do inside a guest, written once for both kinds of guest: the
//! VM harness's [`Vm`] (tests/vm) and the Xen domU of a [`XenLab`] (tests/xen).
//! Both run shell steps that must succeed and poll until something holds; the
//! [`Guest`] trait is that much, and the helpers below are generic over it.

use super::vm::Vm;
use super::xen::XenLab;
use std::time::Duration;

/// A guest the helpers can drive.
pub trait Guest {
    /// Run a script in the guest that must succeed; its stdout.
    fn sh(&mut self, script: &str) -> String;
    /// Poll `probe` until it holds; fail the test (with the guest's console)
    /// after `timeout`.
    fn poll(&mut self, what: &str, timeout: Duration, probe: impl FnMut(&mut Self) -> bool);
}

impl Guest for Vm {
    fn sh(&mut self, script: &str) -> String {
        Vm::sh(self, script)
    }

    fn poll(&mut self, what: &str, timeout: Duration, mut probe: impl FnMut(&mut Self) -> bool) {
        self.wait_for(what, timeout, |vm| probe(vm).then_some(()))
    }
}

/// The domU (its steps go through dom0).
impl Guest for XenLab {
    fn sh(&mut self, script: &str) -> String {
        self.domu_sh(script)
    }

    fn poll(&mut self, what: &str, timeout: Duration, probe: impl FnMut(&mut Self) -> bool) {
        self.wait_domu(what, timeout, probe)
    }
}

/// Where the agent logs in the guest.
pub const AGENT_LOG: &str = "/tmp/mdguard.log";

/// Write `cfg` to the guest's /etc/mdguard/mdguard.toml, start `mdguard {args}`
/// in the background (log timestamps on, output to [`AGENT_LOG`], pid in
/// /tmp/mdguard.pid) and wait up to `timeout` until it watches the md arrays.
pub fn start_agent(g: &mut impl Guest, cfg: &str, args: &str, timeout: Duration) {
    g.sh(&format!(
        "mkdir -p /etc/mdguard && cat > /etc/mdguard/mdguard.toml <<'EOF'\n{cfg}EOF"
    ));
    g.sh(&format!(
        "MDGUARD_LOG_TIMESTAMPS=1 setsid mdguard {args} \
         </dev/null >{AGENT_LOG} 2>&1 & echo $! > /tmp/mdguard.pid"
    ));
    g.poll("mdguard started", timeout, |g| {
        agent_log(g).contains("watching md arrays")
    });
}

/// The agent's log so far.
pub fn agent_log(g: &mut impl Guest) -> String {
    g.sh(&format!("cat {AGENT_LOG}"))
}

/// `[12.345] mdguard: ...` lines containing `needle`: their timestamps.
pub fn log_times(log: &str, needle: &str) -> Vec<f64> {
    log.lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect()
}

/// Write `mib` MiB of random data at `seek_mib` into the array; its sha256.
pub fn write_data(g: &mut impl Guest, md: &str, seek_mib: u32, mib: u32) -> String {
    g.sh(&format!(
        "dd if=/dev/urandom of=/tmp/data.{md} bs=1M count={mib} 2>/dev/null && \
         dd if=/tmp/data.{md} of=/dev/{md} bs=1M seek={seek_mib} oflag=direct conv=notrunc,fsync 2>/dev/null; \
         sha256sum < /tmp/data.{md} | cut -d' ' -f1"
    ))
    .trim()
    .to_string()
}

/// sha256 of `mib` MiB of the array from `skip_mib` on (read past the page cache).
pub fn read_sha(g: &mut impl Guest, md: &str, skip_mib: u32, mib: u32) -> String {
    g.sh(&format!(
        "dd if=/dev/{md} bs=1M skip={skip_mib} count={mib} iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1"
    ))
    .trim()
    .to_string()
}

/// Run a `check` on the array (waiting up to `timeout` for it to end) and
/// return mismatch_cnt.
pub fn check_mismatches(g: &mut impl Guest, md: &str, timeout: Duration) -> u64 {
    g.sh(&format!("echo check > /sys/block/{md}/md/sync_action"));
    g.poll(&format!("{md} check done"), timeout, |g| {
        g.sh(&format!("cat /sys/block/{md}/md/sync_action")).trim() == "idle"
    });
    g.sh(&format!("cat /sys/block/{md}/md/mismatch_cnt"))
        .trim()
        .parse()
        .unwrap()
}

/// Where md's data starts on a leg, in sectors (`mdadm --examine`'s Data Offset).
pub fn data_offset(g: &mut impl Guest, dev: &str) -> u64 {
    let out = g.sh(&format!("mdadm --examine /dev/{dev}"));
    out.lines()
        .filter_map(|l| l.split_once(" : "))
        .find(|(k, _)| k.trim() == "Data Offset")
        .and_then(|(_, v)| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no Data Offset in mdadm --examine /dev/{dev}:\n{out}"))
}

/// sha256 of what a leg holds of the array's `mib` MiB from `seek_mib` on, read
/// below md from the leg's block device with O_DIRECT (whole-MiB offsets: md's
/// data offsets are).
pub fn leg_sha(g: &mut impl Guest, dev: &str, seek_mib: u32, mib: u32) -> String {
    let off = data_offset(g, dev);
    assert_eq!(
        off % 2048,
        0,
        "{dev}: data offset {off} sectors is not whole MiB"
    );
    g.sh(&format!(
        "dd if=/dev/{dev} bs=1M skip={} count={mib} iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1",
        off / 2048 + seek_mib as u64
    ))
    .trim()
    .to_string()
}
