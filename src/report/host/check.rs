//! `mdguard host check`: one Nagios/Icinga line over every guest, as
//! `mdguard check` is over one guest's arrays. Pure.
//!
//! ```text
//! MDGUARD CRITICAL - db01 degraded (md1 degraded 1/2); app4 silent; 3 ok | guests=5 ok=3 warning=0 critical=1 unknown=1 no_data=1
//! ```
//! The code is [`host_code`]'s (the same as `host status`'s exit code): the
//! worst guest's, a silent or stopped agent UNKNOWN, UNKNOWN when no guest
//! publishes anything. Guests that need attention come first, worst first,
//! with why; then how many are ok. Guests without mdguard data are only
//! counted (`no_data`).

use super::guest::{host_code, GuestStatus, Verdict};
use crate::report::schema::Health;
use crate::report::status::CheckCode;
use crate::text::printable;

/// Guests named in the line at most; the rest are counted.
pub const LISTED_MAX: usize = 10;

/// Untrusted text for the plugin line: printable ASCII, bounded, and no `|`
/// (which would start the perfdata).
pub fn plugin_text(s: &str, max: usize) -> String {
    printable(s.as_bytes(), max).replace('|', "/")
}

/// Why a guest needs attention, in a few words.
fn why(g: &GuestStatus) -> Option<String> {
    let mut parts: Vec<String> = g
        .arrays
        .iter()
        .filter(|(_, a)| a.health != Health::Ok || !a.flags.is_empty())
        .map(|(n, a)| {
            let mut s = format!("{n} {} {}/{}", a.health, a.in_sync, a.disks);
            for f in &a.flags {
                s.push(' ');
                s.push_str(&plugin_text(f, 16));
            }
            s
        })
        .collect();
    parts.extend(g.errors.iter().take(3).map(|e| plugin_text(e, 60)));
    if g.errors.len() > 3 {
        parts.push(format!("{} more errors", g.errors.len() - 3));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The code and the one line.
pub fn check_line(guests: &[GuestStatus]) -> (CheckCode, String) {
    let code = host_code(guests.iter().map(GuestStatus::verdict));
    let mut count = [0usize; 4];
    let mut no_data = 0;
    let mut bad: Vec<&GuestStatus> = Vec::new();
    for g in guests {
        match g.verdict().code() {
            None => no_data += 1,
            Some(c) => {
                count[c as usize] += 1;
                if c != CheckCode::Ok {
                    bad.push(g);
                }
            }
        }
    }
    bad.sort_by_key(|g| (std::cmp::Reverse(g.verdict().severity()), g.domid));
    let mut parts: Vec<String> = bad
        .iter()
        .take(LISTED_MAX)
        .map(|g| {
            let v = g.verdict();
            let name = plugin_text(&g.name, 40);
            match (v, why(g)) {
                (Verdict::Health(_), Some(w)) => format!("{name} {} ({w})", v.word()),
                _ => format!("{name} {}", v.word()),
            }
        })
        .collect();
    if bad.len() > LISTED_MAX {
        parts.push(format!("{} more not ok", bad.len() - LISTED_MAX));
    }
    let ok = count[CheckCode::Ok as usize];
    let counted = guests.len() - no_data;
    if counted == 0 {
        parts.push("no guest publishes mdguard data".into());
    } else if ok > 0 {
        parts.push(if bad.is_empty() {
            format!("{ok} guest{} ok", if ok == 1 { "" } else { "s" })
        } else {
            format!("{ok} ok")
        });
    }
    let line = format!(
        "MDGUARD {} - {} | guests={counted} ok={ok} warning={} critical={} unknown={} no_data={no_data}",
        code.word(),
        parts.join("; "),
        count[CheckCode::Warning as usize],
        count[CheckCode::Critical as usize],
        count[CheckCode::Unknown as usize],
    );
    (code, line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::host::guest::AgentState;
    use crate::report::schema::ArrayJson;
    use Health::*;

    fn guest(domid: u32, name: &str, health: Option<Health>, agent: AgentState) -> GuestStatus {
        let mut g = GuestStatus::new(domid, name.into());
        g.health = health;
        g.agent = agent;
        g
    }

    fn with_array(mut g: GuestStatus, name: &str, health: Health, flags: &[&str]) -> GuestStatus {
        g.arrays.insert(
            name.into(),
            ArrayJson {
                health,
                level: "raid1".into(),
                disks: 2,
                in_sync: if health == Ok { 2 } else { 1 },
                members: vec![],
                sync: None,
                flags: flags.iter().map(|f| f.to_string()).collect(),
                more_members: 0,
                refused: vec![],
            },
        );
        g
    }

    #[test]
    fn all_ok() {
        let gs = [
            guest(1, "web01", Some(Ok), AgentState::Answering),
            guest(2, "web02", Some(Ok), AgentState::Answering),
            guest(3, "bare", None, AgentState::None),
        ];
        assert_eq!(
            check_line(&gs),
            (
                CheckCode::Ok,
                "MDGUARD OK - 2 guests ok | guests=2 ok=2 warning=0 critical=0 unknown=0 no_data=1"
                    .into()
            )
        );
    }

    #[test]
    fn worst_first_with_why() {
        let gs = [
            guest(1, "web01", Some(Ok), AgentState::Answering),
            with_array(
                guest(2, "web02", Some(Recovering), AgentState::Answering),
                "md0",
                Recovering,
                &[],
            ),
            guest(3, "app4", Some(Ok), AgentState::Silent),
            with_array(
                with_array(
                    guest(4, "db01", Some(Degraded), AgentState::Answering),
                    "md0",
                    Ok,
                    &[],
                ),
                "md1",
                Degraded,
                &["stalled"],
            ),
            guest(5, "old", Some(Ok), AgentState::Stopped),
        ];
        let (code, line) = check_line(&gs);
        assert_eq!(code, CheckCode::Critical);
        assert_eq!(
            line,
            "MDGUARD CRITICAL - db01 degraded (md1 degraded 1/2 stalled); app4 silent; old stopped; \
             web02 recovering (md0 recovering 1/2); 1 ok \
             | guests=5 ok=1 warning=1 critical=1 unknown=2 no_data=0"
        );
        // without the critical one: UNKNOWN beats WARNING
        let (code, line) = check_line(&gs[..3]);
        assert_eq!(code, CheckCode::Unknown);
        assert!(
            line.starts_with("MDGUARD UNKNOWN - app4 silent; web02 recovering"),
            "{line}"
        );
    }

    #[test]
    fn nobody_publishing_is_unknown() {
        let (code, line) = check_line(&[guest(3, "bare", None, AgentState::None)]);
        assert_eq!(code, CheckCode::Unknown);
        assert_eq!(
            line,
            "MDGUARD UNKNOWN - no guest publishes mdguard data | guests=0 ok=0 warning=0 critical=0 unknown=0 no_data=1"
        );
        let (code, line) = check_line(&[]);
        assert_eq!(code, CheckCode::Unknown);
        assert!(line.contains("no guest publishes"), "{line}");
    }

    #[test]
    fn hostile_text_cannot_break_the_line() {
        let mut g = guest(7, "evil|x=1\n", Some(Unknown), AgentState::Answering);
        g.errors = vec![
            "health: bad value \"ok|ok=9\"".into(),
            "e2".into(),
            "e3".into(),
            "e4".into(),
            "e5".into(),
        ];
        let (code, line) = check_line(&[g]);
        assert_eq!(code, CheckCode::Unknown);
        assert_eq!(line.lines().count(), 1);
        assert_eq!(line.matches('|').count(), 1, "{line}");
        assert!(
            line.starts_with(
                "MDGUARD UNKNOWN - evil/x=1\\x0a unknown (health: bad value \"ok/ok=9\", e2, e3, 2 more errors) |"
            ),
            "{line}"
        );
    }

    #[test]
    fn long_lists_are_cut() {
        let gs: Vec<GuestStatus> = (0..25)
            .map(|i| guest(i, &format!("g{i}"), Some(Degraded), AgentState::Answering))
            .collect();
        let (code, line) = check_line(&gs);
        assert_eq!(code, CheckCode::Critical);
        assert!(line.contains("g9 degraded; 15 more not ok |"), "{line}");
        assert!(!line.contains("g10 "), "{line}");
    }
}
