//! One clock for dom0 and the domU. Their clocks are not set from each
//! other's: in this tier a freshly created domU's CLOCK_REALTIME read 14-33 s
//! behind dom0's. What both follow is Xen's system time (the `xen`
//! clocksource of a PV kernel; no NTP runs in either), so dom0's
//! CLOCK_REALTIME minus the domU's CLOCK_MONOTONIC (the clock of mdguard's
//! `MDGUARD_LOG_TIMESTAMPS` lines) is a constant. [`Link`] measures it as
//! NTP does, without trusting either side's delays: dom0 reads its clock,
//! writes a ping over xenstore, the domU (tests/xen/guest/domu-clock) reads
//! its monotonic clock and answers, dom0 reads its clock again once the answer
//! is there. The constant lies between (dom0's first reading - the domU's)
//! and (dom0's second - the domU's); every exchange of a run is such a
//! bracket, and all must overlap. Their intersection is the estimate and half
//! its width the error bound; an empty intersection (the clocks drift apart)
//! fails the test.
//!
//! All readings are shell builtins (`$EPOCHREALTIME` in dom0's bash, a `read`
//! of /proc/timer_list's `now at` line in the domU's), so no fork sits inside
//! a reading; the forks of `xenstore-write` and `xenstore-read` sit between
//! the readings and only widen a bracket.

use super::xen::XenLab;
use serde::Serialize;

/// CLOCK_REALTIME minus CLOCK_MONOTONIC within one domain, in seconds, and
/// half the width of the realtime readings around the monotonic one.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Offset {
    pub offset_s: f64,
    pub err_s: f64,
}

impl Offset {
    /// A monotonic time (s) of that domain on its realtime clock.
    pub fn real(&self, mono_s: f64) -> f64 {
        mono_s + self.offset_s
    }
}

/// dom0's realtime minus its monotonic (for dom0's mdguard logs): a pair of
/// readings in one bash.
pub fn dom0(lab: &mut XenLab) -> Offset {
    let out = lab.dom0_sh(
        "bash -c 'r1=$EPOCHREALTIME; { read -r _; read -r _; read -r l; } </proc/timer_list; \
         r2=$EPOCHREALTIME; echo \"$r1 $l $r2\"'",
    );
    let w: Vec<&str> = out.split_whitespace().collect();
    let parsed = match w.as_slice() {
        [r1, "now", "at", ns, "nsecs", r2] => (|| {
            let (r1, r2): (f64, f64) = (r1.parse().ok()?, r2.parse().ok()?);
            let mono = ns.parse::<u64>().ok()? as f64 / 1e9;
            Some(Offset {
                offset_s: (r1 + r2) / 2.0 - mono,
                err_s: (r2 - r1) / 2.0,
            })
        })(),
        _ => None,
    };
    parsed.unwrap_or_else(|| lab.fail(&format!("dom0 clock pair: {out:?}")))
}

/// One exchange: dom0's realtime before the ping and after the pong, the
/// domU's monotonic clock in between (s).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Exchange {
    pub dom0_before: f64,
    pub domu_mono: f64,
    pub dom0_after: f64,
}

/// The exchanges of one lab.
#[derive(Debug, Default, Serialize)]
pub struct Link {
    pub exchanges: Vec<Exchange>,
}

impl Link {
    /// Start the domU's half.
    pub fn start(lab: &mut XenLab) -> Link {
        lab.domu_sh("setsid domu-clock </dev/null >/tmp/domu-clock.log 2>&1 &");
        Link::default()
    }

    /// `n` more exchanges; fails the test when the brackets stop overlapping.
    pub fn exchange(&mut self, lab: &mut XenLab, n: u32) {
        let base = format!("/local/domain/{}/data/test/clk", lab.domid);
        let script = format!(
            "for i in $(seq 1 {n}); do v=$i.$$.$RANDOM; a=$EPOCHREALTIME; \
             xenstore-write {base}/ping $v || exit 1; j=0; \
             until p=$(xenstore-read {base}/pong 2>/dev/null) && [ \"${{p%% *}}\" = $v ]; do \
             j=$((j+1)); [ $j -lt 30000 ] || exit 1; usleep 1000; done; \
             b=$EPOCHREALTIME; echo \"$a $p $b\"; done"
        );
        let out = lab.dom0_sh(&format!("bash -c '{script}'"));
        for line in out.lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            let e = match w.as_slice() {
                [a, _v, "now", "at", ns, "nsecs", b] => (|| {
                    Some(Exchange {
                        dom0_before: a.parse().ok()?,
                        domu_mono: ns.parse::<u64>().ok()? as f64 / 1e9,
                        dom0_after: b.parse().ok()?,
                    })
                })(),
                _ => None,
            };
            match e {
                Some(e) => self.exchanges.push(e),
                None => lab.fail(&format!("clock exchange: {line:?} in\n{out}")),
            }
        }
        let (lo, hi) = self.bounds();
        if lo > hi {
            lab.fail(&format!(
                "dom0's CLOCK_REALTIME minus the domU's CLOCK_MONOTONIC is not constant: \
                 the exchanges' brackets do not overlap ({lo:.6} > {hi:.6}): {:?}",
                self.exchanges
            ));
        }
    }

    /// The intersection of every bracket: (lowest, highest) possible constant.
    pub fn bounds(&self) -> (f64, f64) {
        self.exchanges
            .iter()
            .fold((f64::MIN, f64::MAX), |(lo, hi), e| {
                (
                    lo.max(e.dom0_before - e.domu_mono),
                    hi.min(e.dom0_after - e.domu_mono),
                )
            })
    }

    /// The estimate: the domU's monotonic time (s) on dom0's realtime clock
    /// is `mono + offset`, within `err` either way.
    pub fn offset(&self) -> Offset {
        let (lo, hi) = self.bounds();
        Offset {
            offset_s: (lo + hi) / 2.0,
            err_s: (hi - lo) / 2.0,
        }
    }

    /// Round trips (s), shortest first.
    pub fn round_trips(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self
            .exchanges
            .iter()
            .map(|e| e.dom0_after - e.dom0_before)
            .collect();
        v.sort_by(f64::total_cmp);
        v
    }
}
