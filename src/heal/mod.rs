//! heal: decide (pure) and act.
//!
//! The daemon feeds the [`Engine`] what it observed (a snapshot, probe results, the
//! outcome of each action it carried out, block devices that appeared, dom0's hints)
//! with the current time, and gets back [`Action`]s to carry out. Nothing in the
//! decide modules touches the kernel, the clock or the network, so every rule is
//! unit-tested on its own; [`act`] carries the actions out, proven on a real kernel
//! in the VM harness.
//!
//! Decide, one rule per file: [`engine`] (state and the main step), [`lifecycle`]
//! (a leg's life), [`admission`] (when a proven leg is added: the start jitter,
//! or dom0's turn), [`membership`] (the superblock verdict), [`candidates`] (new
//! nodes), [`history`] (each leg's record while in sync, and the window a
//! returning leg must fit), [`reconnect`], [`throttle`], [`stall`]; the boundary types are in
//! [`action`] (actions, typed outcomes) and [`event`] (what the engine reports,
//! with the log line of each), a leg and its state machine in [`leg`].
//!
//! A leg's life in short (the full diagram, with each state's data and every
//! transition, is in [`leg`]'s module comment and `docs/leg-states.md`, held to
//! the enum by a unit test):
//!
//! ```text
//! healthy --fail--> failed --probe proves it--> waiting --> adding --added--> healthy
//!                     |  \--probe fails--> failed (back off)   \--re-add refused--> removing
//!                     \--reconnect configured--> removing --> reconnecting --> failed (probe)
//! a leg that fails again soon after each re-add is flapping: exponential backoff,
//! then no more re-adds until it stays healthy or dom0 asks for a probe.
//! ```

pub mod act;
pub mod action;
pub mod admission;
pub mod candidates;
pub mod confirm;
pub mod engine;
pub mod event;
pub mod history;
pub mod leg;
pub mod lifecycle;
pub mod membership;
pub mod reconnect;
pub mod stall;
pub mod throttle;

pub use action::{Action, Errno, Failure, LegFlags, Ms, Outcome, ProbeOutcome, SbFacts};
pub use admission::Turn;
pub use engine::{ArrayMem, Engine, Env};
pub use event::{Event, Flap, NotALeg};
pub use leg::{Attempt, CopyWatch, Episode, Leg, LegState, NextProbe, Phase, Start};
pub use membership::{verdict, Refusal};

#[cfg(test)]
mod tests;
