//! Guest I/O pressure: `some avg10` of /proc/pressure/io (PSI), the throttle's
//! "is the guest busy" input.

use crate::root::Root;

/// `some avg10=12.34 ...` of /proc/pressure/io.
pub fn read_io_pressure(root: &Root) -> Option<f64> {
    let s = std::fs::read_to_string(root.path("/proc/pressure/io")).ok()?;
    parse_pressure(&s)
}

pub fn parse_pressure(s: &str) -> Option<f64> {
    let line = s.lines().find(|l| l.starts_with("some "))?;
    let v = line
        .split_whitespace()
        .find_map(|t| t.strip_prefix("avg10="))?;
    v.parse().ok().filter(|x: &f64| x.is_finite() && *x >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_lines() {
        let s = "some avg10=12.50 avg60=3.00 avg300=1.00 total=123\nfull avg10=1.00 avg60=0.00 avg300=0.00 total=5\n";
        assert_eq!(parse_pressure(s), Some(12.5));
        assert_eq!(parse_pressure("full avg10=1.00"), None);
        assert_eq!(parse_pressure("some avg10=nan"), None);
        assert_eq!(parse_pressure("some avg10=-3"), None);
    }
}
