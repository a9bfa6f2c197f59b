//! What mdguard shows: the human status table, JSON, and the one-line check.

use crate::md::model::{Array, Health, Member, MemberCondition, Snapshot, SyncState};
use std::fmt::Write as _;

/// JSON for `mdguard status --json`. The stable contract is documented in README.
/// The shape's version: `version` in the JSON, raised on any change a reader
/// could trip over (a key removed or its meaning changed; new keys do not).
pub const STATUS_JSON_VERSION: u32 = 1;

pub fn status_json(s: &Snapshot) -> String {
    let v = serde_json::json!({
        "version": STATUS_JSON_VERSION,
        "arrays": s.arrays,
        "problems": s.problems,
        // no array is unhealthy: `ok`, as `check` and xenstore say
        "health": s.worst().unwrap_or(Health::Ok).as_str(),
    });
    serde_json::to_string_pretty(&v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// One member as a short word: `nbd0p1 in_sync`, `nbd1p1 FAULTY`.
fn member_word(m: &Member) -> String {
    let state = match m.condition() {
        // shouted, so a failed leg stands out in the table
        MemberCondition::Faulty => "FAULTY".to_string(),
        // the kernel's own words say more than "unknown"
        MemberCondition::Unknown => m.states.join(","),
        c => c.as_str().to_string(),
    };
    let extra: Vec<&str> = m
        .states
        .iter()
        .map(String::as_str)
        .filter(|w| {
            matches!(
                *w,
                "write_mostly" | "blocked" | "write_error" | "want_replacement"
            )
        })
        .collect();
    if extra.is_empty() || state.contains(',') {
        format!("{} {state}", m.device)
    } else {
        format!("{} {state}+{}", m.device, extra.join("+"))
    }
}

/// `1h02m`, `4m10s`, `12s`.
pub fn human_duration(secs: u64) -> String {
    if secs >= 3600 {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    } else if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

/// `12.3 MiB/s` from KiB/s.
pub fn human_speed(kbps: u64) -> String {
    if kbps >= 1024 {
        format!("{:.1} MiB/s", kbps as f64 / 1024.0)
    } else {
        format!("{kbps} KiB/s")
    }
}

fn sync_text(a: &Array) -> String {
    let Some(s) = &a.sync else {
        return "-".into();
    };
    match s.state {
        SyncState::Delayed => format!("{} delayed", s.action.as_str()),
        SyncState::Pending => format!("{} pending (read-only)", s.action.as_str()),
        SyncState::Remote => format!("{} on remote node", s.action.as_str()),
        SyncState::Running => {
            let mut t = s.action.as_str().to_string();
            if let Some(f) = s.fraction() {
                let _ = write!(t, " {:.1}%", f * 100.0);
            }
            if let Some(v) = s.speed_kbps {
                let _ = write!(t, " {}", human_speed(v));
            }
            if let Some(e) = s.eta_secs() {
                let _ = write!(t, " eta {}", human_duration(e));
            }
            t
        }
    }
}

fn slots_text(a: &Array) -> String {
    match (a.raid_disks, a.degraded) {
        (Some(n), Some(d)) => format!("{}/{}", n.saturating_sub(d), n),
        (Some(n), None) => format!("?/{n}"),
        _ => "-".into(),
    }
}

/// The table for humans: one line per array, then any reading problems.
pub fn status_text(s: &Snapshot) -> String {
    let mut out = String::new();
    if s.arrays.is_empty() {
        out.push_str("no md arrays\n");
    } else {
        let rows: Vec<[String; 6]> = s
            .arrays
            .iter()
            .map(|a| {
                let health = match a.health {
                    Health::Ok => "ok".to_string(),
                    h => h.as_str().to_uppercase(),
                };
                [
                    a.name.clone(),
                    a.level.clone().unwrap_or_else(|| "?".into()),
                    health,
                    slots_text(a),
                    if a.members.is_empty() {
                        "-".into()
                    } else {
                        a.members
                            .iter()
                            .map(member_word)
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                    sync_text(a),
                ]
            })
            .collect();
        let head = ["ARRAY", "LEVEL", "HEALTH", "LEGS", "MEMBERS", "SYNC"];
        let mut w = head.map(str::len);
        for r in &rows {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let line = |cells: [&str; 6]| {
            let mut l = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i == 5 {
                    l.push_str(c);
                } else {
                    let _ = write!(l, "{c:<width$}  ", width = w[i]);
                }
            }
            l.trim_end().to_string() + "\n"
        };
        out.push_str(&line(head));
        for r in &rows {
            out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]]));
        }
        // why an array needs attention (recovering says it in its SYNC column)
        for a in s
            .arrays
            .iter()
            .filter(|a| !matches!(a.health, Health::Ok | Health::Recovering))
        {
            let _ = writeln!(out, "{}: {}", a.name, a.reason);
        }
    }
    for p in &s.problems {
        let _ = writeln!(out, "warning: {p}");
    }
    out
}

/// One line for systemd's STATUS=.
pub fn status_line(s: &Snapshot) -> String {
    if s.arrays.is_empty() {
        return "no md arrays".into();
    }
    s.arrays
        .iter()
        .map(|a| format!("{} {}", a.name, a.health))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Nagios/Icinga plugin result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckCode {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl CheckCode {
    pub fn word(self) -> &'static str {
        match self {
            CheckCode::Ok => "OK",
            CheckCode::Warning => "WARNING",
            CheckCode::Critical => "CRITICAL",
            CheckCode::Unknown => "UNKNOWN",
        }
    }

    /// Severity for "worst first": CRITICAL > UNKNOWN > WARNING > OK (the usual
    /// plugin precedence; the exit codes themselves do not sort that way).
    pub fn rank(self) -> u8 {
        match self {
            CheckCode::Ok => 0,
            CheckCode::Warning => 1,
            CheckCode::Unknown => 2,
            CheckCode::Critical => 3,
        }
    }
}

impl Health {
    /// The plugin code of this health: ok 0, recovering 1, degraded and failed 2,
    /// unknown 3. `mdguard check` and `mdguard host status` both exit with it.
    pub fn check_code(self) -> CheckCode {
        match self {
            Health::Ok => CheckCode::Ok,
            Health::Recovering => CheckCode::Warning,
            Health::Degraded | Health::Failed => CheckCode::Critical,
            Health::Unknown => CheckCode::Unknown,
        }
    }
}

/// Worst code: CRITICAL > UNKNOWN > WARNING > OK (the usual plugin precedence).
pub fn worst_code(codes: impl IntoIterator<Item = CheckCode>) -> CheckCode {
    codes
        .into_iter()
        .max_by_key(|c| c.rank())
        .unwrap_or(CheckCode::Ok)
}

/// One line and the exit code for `mdguard check`.
pub fn check_line(s: &Snapshot) -> (CheckCode, String) {
    let code = worst_code(s.arrays.iter().map(|a| a.health.check_code()));
    let mut parts: Vec<String> = Vec::new();
    // The arrays that need attention first, with why.
    let mut bad: Vec<_> = s.arrays.iter().filter(|a| a.health != Health::Ok).collect();
    bad.sort_by_key(|a| std::cmp::Reverse(a.health.check_code().rank()));
    for a in bad {
        parts.push(format!("{} {} ({})", a.name, a.health, a.reason));
    }
    let ok: Vec<&str> = s
        .arrays
        .iter()
        .filter(|a| a.health == Health::Ok)
        .map(|a| a.name.as_str())
        .collect();
    if !ok.is_empty() {
        parts.push(format!("{} ok", ok.join(" ")));
    }
    if s.arrays.is_empty() {
        parts.push("no md arrays".into());
    }
    let mut line = format!("MDGUARD {} - {}", code.word(), parts.join("; "));
    if !s.problems.is_empty() {
        let _ = write!(
            line,
            "; {} reading problem{} (see mdguard status)",
            s.problems.len(),
            if s.problems.len() == 1 { "" } else { "s" }
        );
    }
    let perf: Vec<String> = s
        .arrays
        .iter()
        .map(|a| format!("{}_degraded={}", a.name, a.degraded.unwrap_or(0)))
        .collect();
    if !perf.is_empty() {
        let _ = write!(line, " | {}", perf.join(" "));
    }
    (code, line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_speeds() {
        assert_eq!(human_duration(12), "12s");
        assert_eq!(human_duration(250), "4m10s");
        assert_eq!(human_duration(3720), "1h02m");
        assert_eq!(human_speed(512), "512 KiB/s");
        assert_eq!(human_speed(17578), "17.2 MiB/s");
    }

    #[test]
    fn code_precedence() {
        use CheckCode::*;
        assert_eq!(worst_code([Ok, Warning]), Warning);
        assert_eq!(worst_code([Unknown, Warning]), Unknown);
        assert_eq!(worst_code([Unknown, Critical, Ok]), Critical);
        assert_eq!(worst_code([]), Ok);
    }
}
