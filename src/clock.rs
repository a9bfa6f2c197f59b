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

/// Unix seconds as a UTC date and time, `2026-12-02 01:23:45 UTC` (for log
/// lines that quote a superblock's update time).
pub fn utc(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // days since 1970-01-01 to a civil date (proleptic Gregorian), by eras of
    // 400 years counted from 0000-03-01
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        // `date -u -d @1796174851`
        assert_eq!(utc(1_796_174_851), "2026-12-02 01:27:31 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(4_107_542_399), "2100-02-28 23:59:59 UTC");
    }
}
