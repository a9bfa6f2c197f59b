//! Time, in the two forms mdguard uses: a monotonic clock for the engine's timers
//! ([`Clock`], milliseconds since start), and the wall clock in unix seconds for
//! what is published to dom0 ([`unix_now`]).

use crate::heal::Ms;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the daemon started: the engine's clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    pub fn start() -> Clock {
        Clock(Instant::now())
    }

    pub fn now(&self) -> Ms {
        self.0.elapsed().as_millis() as Ms
    }

    pub fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

/// Time since the unix epoch (zero if the clock is set before it).
pub fn unix_time() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Unix time in whole seconds.
pub fn unix_now() -> u64 {
    unix_time().as_secs()
}
