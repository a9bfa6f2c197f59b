//! A leg whose storage comes back under the same vbd: dom0 puts
//! device-mapper between blkback and the nbd transport. A dead nbd device
//! that blkback holds cannot be reconnected in place (tests/xen/README.md);
//! one that only a dm table holds can be left behind: dom0 connects a fresh
//! nbd device to the returning server and points the table at it, and the
//! domU's node (xvdc) never changes.
//!
//! Two layers, so the storage can return with or without an event on the
//! backend's own device:
//!
//! ```text
//!  blkback (vbd xvdc, physical-device = leg<i>'s number)
//!    -> /dev/mapper/leg<i>       linear over the lower device
//!       -> /dev/mapper/leg<i>-t<k>  linear over /dev/nbd<n>
//! ```
//!
//! - [`Swap::Lower`]: the lower table is pointed at the new nbd device. The
//!   kernel says `change` for the lower device only; nothing happens to the
//!   device blkback holds (as an iSCSI session recovering under an LV).
//! - [`Swap::Backend`]: a new lower device over the new nbd device, then
//!   `leg<i>`'s own table is swapped to it: the kernel says `change` for the
//!   device blkback holds (as multipathd reinstating a path).
//!
//! dmsetup runs without udev (`DM_DISABLE_UDEV=1`: libdevmapper makes the
//! /dev/mapper nodes itself).

use super::xen::{nbd_connect_cmd, XenLab};

/// Which table is swapped when the storage is back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swap {
    /// The lower device's: no event on the backend's device.
    Lower,
    /// The backend device's own: a `change` uevent for it in dom0.
    Backend,
}

/// Leg `leg`'s dm stack in dom0.
pub struct DmLeg {
    leg: usize,
    /// The nbd device under it now.
    nbd: u32,
    /// The lower device's generation (`leg<i>-t<k>`).
    gen: u32,
    /// Its size in 512-byte sectors.
    sectors: u64,
}

const DM: &str = "export DM_DISABLE_UDEV=1";

impl DmLeg {
    /// Build the stack over /dev/nbd`nbd` (connected to server `leg`).
    pub fn create(lab: &mut XenLab, leg: usize, nbd: u32) -> DmLeg {
        let sectors: u64 = lab
            .dom0_sh(&format!("cat /sys/block/nbd{nbd}/size"))
            .trim()
            .parse()
            .expect("nbd size");
        let d = DmLeg {
            leg,
            nbd,
            gen: 1,
            sectors,
        };
        let (top, lower) = (d.top(), d.lower());
        lab.dom0_sh(&format!(
            "{DM}; dmsetup create {lower} --table '0 {sectors} linear /dev/nbd{nbd} 0' && \
             dmsetup create {top} --table '0 {sectors} linear /dev/mapper/{lower} 0' && \
             ls -l /dev/mapper/{top}"
        ));
        d
    }

    fn top(&self) -> String {
        format!("leg{}", self.leg)
    }

    fn lower(&self) -> String {
        format!("leg{}-t{}", self.leg, self.gen)
    }

    /// The device the vbd is given (`phy:` target).
    pub fn path(&self) -> String {
        format!("/dev/mapper/{}", self.top())
    }

    /// The server is back: connect a fresh nbd device to it, swap `how`, let
    /// the old nbd device go. Returns dom0's CLOCK_REALTIME (s) read right
    /// after the resume that made the leg usable returned, and the whole
    /// step's output.
    pub fn bring_back(&mut self, lab: &mut XenLab, how: Swap) -> (f64, String) {
        // nbd<leg> and nbd<leg+2> in turn (dom0 has 16)
        let old = self.nbd;
        let new = if old == self.leg as u32 {
            old + 2
        } else {
            self.leg as u32
        };
        let port = lab.legs[self.leg].port();
        let connect = nbd_connect_cmd(new as usize, port, &lab.nbd_opts);
        let (top, lower, s) = (self.top(), self.lower(), self.sectors);
        let swap = match how {
            Swap::Lower => format!(
                "dmsetup suspend {lower} && dmsetup reload {lower} --table '0 {s} linear /dev/nbd{new} 0' && \
                 dmsetup resume {lower}"
            ),
            Swap::Backend => {
                self.gen += 1;
                let next = self.lower();
                format!(
                    "dmsetup create {next} --table '0 {s} linear /dev/nbd{new} 0' && \
                     dmsetup suspend {top} && dmsetup reload {top} --table '0 {s} linear /dev/mapper/{next} 0' && \
                     dmsetup resume {top}"
                )
            }
        };
        let drop_lower = match how {
            Swap::Lower => String::new(),
            Swap::Backend => format!("dmsetup remove {lower}; "),
        };
        // bash: $EPOCHREALTIME is read without a fork
        let script = format!(
            "{DM}; {connect} || exit 1; i=0; until [ \"$(cat /sys/block/nbd{new}/size)\" -gt 0 ]; do \
             i=$((i+1)); [ $i -lt 100 ] || exit 1; usleep 100000; done; \
             {swap} || exit 1; echo usable=$EPOCHREALTIME; \
             {drop_lower}nbd-client -d /dev/nbd{old} >/dev/null 2>&1; dmsetup table"
        );
        let out = lab.dom0_sh(&format!("bash -c {}", shell_quote(&script)));
        self.nbd = new;
        let usable = out
            .lines()
            .find_map(|l| l.strip_prefix("usable="))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| lab.fail(&format!("no usable= stamp from dom0:\n{out}")));
        (usable, out)
    }
}

/// `s` as one single-quoted shell word.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
