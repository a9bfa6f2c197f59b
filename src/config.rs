//! `/etc/mdguard/mdguard.toml`: every key optional, with a safe default; no file at
//! all is a valid configuration.

use crate::md::identity::{on_disk, same_uuid};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_PATH: &str = "/etc/mdguard/mdguard.toml";

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Arrays to manage by name (`md0`) or UUID; empty = every RAID1 array.
    pub arrays: Vec<String>,
    /// Arrays never to touch (name or UUID); wins over `arrays`.
    pub ignore: Vec<String>,
    /// Log what would be done, change nothing.
    pub dry_run: bool,
    pub probe: Probe,
    pub heal: Heal,
    pub throttle: Throttle,
    pub report: Report,
    pub hooks: Hooks,
    /// Per-leg reconnect commands (e.g. nbd-client), run after the faulty member is
    /// removed and before it is added back.
    pub reconnect: Vec<Reconnect>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(default, deny_unknown_fields)]
pub struct Probe {
    /// A probe read that takes longer than this counts as failed.
    pub timeout_ms: u64,
    /// First probe this long after a leg fails, doubling up to `max_interval_s`
    /// for reconnect commands...
    pub initial_interval_s: u64,
    pub max_interval_s: u64,
    /// ...and up to this for probe reads, which are cheap: a leg that comes
    /// back without any event (a vbd whose storage returns under it) is found
    /// within this of being readable, however long the outage. Taken within
    /// `initial_interval_s..=max_interval_s` ([`Probe::read_cap_s`]).
    pub max_read_interval_s: u64,
}

impl Probe {
    /// How far the interval between probe reads grows:
    /// `max_read_interval_s`, never below `initial_interval_s` nor above
    /// `max_interval_s`.
    pub fn read_cap_s(&self) -> u64 {
        self.max_read_interval_s
            .max(self.initial_interval_s)
            .min(self.max_interval_s)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(default, deny_unknown_fields)]
pub struct Heal {
    /// Take a returning leg back with a full recovery when a bitmap-scoped re-add
    /// is not possible: the array has no write-intent bitmap, or md refuses the
    /// re-add for another reason than old events (a leg older than the bitmap is
    /// never overwritten). An array left degraded is the worse risk.
    pub full_recovery: bool,
    /// A leg that fails again within this window after a re-add is flapping.
    pub flap_window_s: u64,
    /// Back off exponentially from this after each flap...
    pub flap_backoff_s: u64,
    pub flap_backoff_max_s: u64,
    /// ...and stop re-adding after this many flaps in a row, reporting `flapping`
    /// until the leg stays healthy or dom0 asks for a probe.
    pub flap_limit: u32,
    /// A write stuck this long (array_state write-pending, no progress) is `stalled`.
    pub stall_timeout_s: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(default, deny_unknown_fields)]
pub struct Throttle {
    /// Ceiling for each recovering array's sync_speed_max, KiB/s (0: leave the
    /// kernel's limits alone unless dom0 sets a budget).
    pub max_kbps: u64,
    /// Floor: sync_speed_min while recovering, KiB/s.
    pub min_kbps: u64,
    /// While the guest's own I/O is busy (`busy_pressure`, or `busy_kbps` without
    /// PSI), the ceiling is divided by this.
    pub busy_divisor: u64,
    /// `some avg10` of /proc/pressure/io (percent) at or above which the guest is
    /// busy.
    pub busy_pressure: f64,
    /// Without /proc/pressure/io: KiB/s of the guest's own reads and writes
    /// through its md arrays (/proc/diskstats) at or above which it is busy.
    pub busy_kbps: u64,
    /// Random delay before re-adding, up to this many seconds, so a host's guests do
    /// not all start resyncing against a returned server in the same second.
    pub jitter_s: u64,
    /// With a coordinator in dom0 (`mdguard host run`) a leg asks for its turn
    /// instead of the jitter, and waits up to this long for an answer (and past
    /// each sign of the coordinator's life while queued) before it falls back
    /// to the jitter. 0: never ask.
    pub grant_timeout_s: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(default, deny_unknown_fields)]
pub struct Report {
    /// Publish to xenstore when available.
    pub xenstore: bool,
    /// During a resync, publish progress at most this often.
    pub progress_interval_s: u64,
}

/// A program run on events, mdadm --monitor's PROGRAM way (docs/hooks.md).
#[cfg_attr(test, derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Hooks {
    /// Absolute path of the program, run without a shell as `PROGRAM EVENT
    /// MD-DEVICE [COMPONENT]` with `MDGUARD_*` in its environment; empty: no
    /// hook.
    pub program: String,
    /// The events to run it on (`Fail`, `DegradedArray`, ...); empty: every
    /// event.
    pub events: Vec<String>,
    /// A hook still running after this long is killed, with its children.
    pub timeout_s: u64,
    /// Hooks running at once at most; the rest wait their turn, one at a time
    /// per array, in order.
    pub max_concurrent: u32,
}

impl Hooks {
    /// Is a hook wanted for this event?
    pub fn wants(&self, event: &str) -> bool {
        !self.program.is_empty()
            && (self.events.is_empty() || self.events.iter().any(|e| e == event))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields)]
pub struct Reconnect {
    /// Kernel device name of the leg, e.g. `nbd1`.
    pub device: String,
    /// Program and arguments, run without a shell.
    pub command: Vec<String>,
    #[serde(default = "default_reconnect_timeout")]
    pub timeout_s: u64,
}

fn default_reconnect_timeout() -> u64 {
    30
}

impl Default for Probe {
    fn default() -> Self {
        Probe {
            timeout_ms: 5000,
            initial_interval_s: 2,
            max_interval_s: 60,
            max_read_interval_s: 4,
        }
    }
}

impl Default for Heal {
    fn default() -> Self {
        Heal {
            full_recovery: true,
            flap_window_s: 300,
            flap_backoff_s: 30,
            flap_backoff_max_s: 1800,
            flap_limit: 5,
            stall_timeout_s: 60,
        }
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            max_kbps: 0,
            min_kbps: 0,
            busy_divisor: 4,
            busy_pressure: 20.0,
            busy_kbps: 1024,
            jitter_s: 10,
            grant_timeout_s: 10,
        }
    }
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            program: String::new(),
            events: Vec::new(),
            timeout_s: 30,
            max_concurrent: 4,
        }
    }
}

impl Default for Report {
    fn default() -> Self {
        Report {
            xenstore: true,
            progress_interval_s: 10,
        }
    }
}

/// A configuration that could not be used: file and line, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.path.display(), l, self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Parse config text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let c: Config = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            ConfigError {
                path: path.to_path_buf(),
                line,
                message: e.message().to_string(),
            }
        })?;
        c.validate(path)?;
        Ok(c)
    }

    /// Load from a file; a missing file gives the defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(t) => Config::parse(&t, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(ConfigError {
                path: path.to_path_buf(),
                line: None,
                message: format!("cannot read: {e}"),
            }),
        }
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let err = |m: String| {
            Err(ConfigError {
                path: path.to_path_buf(),
                line: None,
                message: m,
            })
        };
        if self.probe.timeout_ms == 0 {
            return err("probe.timeout_ms must be above 0".into());
        }
        if self.probe.initial_interval_s == 0
            || self.probe.max_interval_s < self.probe.initial_interval_s
        {
            return err(
                "probe.initial_interval_s must be above 0 and at most probe.max_interval_s".into(),
            );
        }
        if self.heal.flap_backoff_max_s < self.heal.flap_backoff_s {
            return err("heal.flap_backoff_max_s must be at least heal.flap_backoff_s".into());
        }
        if self.throttle.busy_divisor == 0 {
            return err("throttle.busy_divisor must be at least 1".into());
        }
        if self.throttle.min_kbps > 0
            && self.throttle.max_kbps > 0
            && self.throttle.min_kbps > self.throttle.max_kbps
        {
            return err("throttle.min_kbps must not exceed throttle.max_kbps".into());
        }
        let h = &self.hooks;
        if !h.program.is_empty() && !Path::new(&h.program).is_absolute() {
            return err(format!(
                "hooks.program `{}`: an absolute path, e.g. /usr/local/sbin/mdguard-hook",
                h.program
            ));
        }
        for e in &h.events {
            use crate::report::hooks::HookName;
            if !HookName::parse(e).is_some_and(|n| HookName::GUEST.contains(&n)) {
                let known: Vec<&str> = HookName::GUEST.iter().map(|n| n.as_str()).collect();
                return err(format!(
                    "hooks.events: no event `{e}`; the events are {}",
                    known.join(", ")
                ));
            }
        }
        if h.timeout_s == 0 || h.max_concurrent == 0 {
            return err("hooks.timeout_s and hooks.max_concurrent must be at least 1".into());
        }
        let refresh = crate::report::admission::QUEUED_REFRESH_S;
        if self.throttle.grant_timeout_s != 0 && self.throttle.grant_timeout_s <= refresh {
            return err(format!(
                "throttle.grant_timeout_s must be 0 (never ask dom0) or above {refresh} (dom0's coordinator shows it lives every {refresh} s)"
            ));
        }
        for r in &self.reconnect {
            if r.command.is_empty() {
                return err(format!("reconnect for `{}`: command is empty", r.device));
            }
            if r.device.is_empty() || r.device.contains('/') {
                return err(format!(
                    "reconnect device `{}`: expected a kernel name like `nbd1`",
                    r.device
                ));
            }
        }
        Ok(())
    }

    /// Does the config say to manage this array?
    pub fn manages(&self, name: &str, uuid: Option<&str>, level: Option<&str>) -> bool {
        let hit = |list: &Vec<String>| {
            list.iter()
                .any(|x| x == name || uuid.is_some_and(|u| same_uuid(x, u)))
        };
        if hit(&self.ignore) {
            return false;
        }
        if self.arrays.is_empty() {
            level == Some("raid1")
        } else {
            hit(&self.arrays)
        }
    }

    /// The reconnect command for a leg: configured for its disk (`nbd1`) and used
    /// for the disk and its partitions (`nbd1p2`).
    pub fn reconnect_for(&self, device: &str) -> Option<&Reconnect> {
        self.reconnect.iter().find(|r| on_disk(device, &r.device))
    }

    pub fn probe_timeout(&self) -> Duration {
        Duration::from_millis(self.probe.timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_defaults() {
        let c = Config::parse("", Path::new("x.toml")).unwrap();
        assert_eq!(c, Config::default());
        assert!(c.heal.full_recovery);
        assert!(!c.dry_run);
    }

    #[test]
    fn missing_file_is_the_defaults() {
        let c = Config::load(Path::new("/nonexistent/mdguard.toml")).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn full_config() {
        let t = r#"
arrays = ["md0", "md1"]
ignore = ["md9"]
dry_run = true
[probe]
timeout_ms = 2000
[heal]
full_recovery = false
flap_limit = 3
[throttle]
max_kbps = 50000
jitter_s = 0
[[reconnect]]
device = "nbd1"
command = ["nbd-client", "10.0.2.2", "10809", "/dev/nbd1", "-t", "10"]
"#;
        let c = Config::parse(t, Path::new("x.toml")).unwrap();
        assert_eq!(c.arrays, vec!["md0", "md1"]);
        assert!(c.dry_run && !c.heal.full_recovery);
        assert_eq!(c.heal.flap_limit, 3);
        assert_eq!(c.probe.timeout_ms, 2000);
        assert_eq!(c.probe.max_interval_s, 60, "unset keys keep defaults");
        assert_eq!(c.throttle.max_kbps, 50000);
        assert_eq!(c.reconnect_for("nbd1").unwrap().command[0], "nbd-client");
        assert_eq!(c.reconnect_for("nbd1").unwrap().timeout_s, 30);
        assert!(c.manages("md0", None, Some("raid5")));
        assert!(!c.manages("md9", None, Some("raid1")));
        assert!(!c.manages("md2", None, Some("raid1")));
        assert!(!c.hooks.wants("Fail"), "no program, no hook");
    }

    #[test]
    fn hooks_run_on_the_events_named() {
        let c = Config::parse(
            "[hooks]\nprogram = \"/usr/local/sbin/hook\"\nevents = [\"Fail\", \"SpareActive\"]\ntimeout_s = 5\n",
            Path::new("m.toml"),
        )
        .unwrap();
        assert!(c.hooks.wants("Fail") && c.hooks.wants("SpareActive"));
        assert!(!c.hooks.wants("ReAdded"));
        assert_eq!((c.hooks.timeout_s, c.hooks.max_concurrent), (5, 4));
        let every =
            Config::parse("[hooks]\nprogram = \"/bin/true\"\n", Path::new("m.toml")).unwrap();
        assert!(every.hooks.wants("ReAdded") && every.hooks.wants("Stalled"));
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = Config::parse(
            "dry_run = true\n[probe]\ntimeout_ms = \"soon\"\n",
            Path::new("/etc/m.toml"),
        )
        .unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.to_string().starts_with("/etc/m.toml:3:"), "{e}");
        let e = Config::parse("\n\nfrobnicate = 1\n", Path::new("m.toml")).unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("frobnicate"), "{e}");
        let e = Config::parse("[probe]\ntimeout_ms = 0\n", Path::new("m.toml")).unwrap_err();
        assert!(e.message.contains("timeout_ms"), "{e}");
        let e = Config::parse("[hooks]\nevents = [\"Fial\"]\n", Path::new("m.toml")).unwrap_err();
        assert!(
            e.message
                .starts_with("hooks.events: no event `Fial`; the events are Fail, DegradedArray,"),
            "{e}"
        );
        // dom0's events are no agent's
        let e = Config::parse("[hooks]\nevents = [\"AgentSilent\"]\n", Path::new("m.toml"))
            .unwrap_err();
        assert!(
            e.message
                .starts_with("hooks.events: no event `AgentSilent`;")
                && e.message.ends_with("Stalled, WritesFlow"),
            "{e}"
        );
        let e = Config::parse("[hooks]\nprogram = \"hook.sh\"\n", Path::new("m.toml")).unwrap_err();
        assert!(e.message.contains("an absolute path"), "{e}");
        let e = Config::parse("[hooks]\nmax_concurrent = 0\n", Path::new("m.toml")).unwrap_err();
        assert!(e.message.contains("hooks.max_concurrent"), "{e}");
        let e = Config::parse(
            "[[reconnect]]\ndevice = \"nbd1\"\ncommand = []\n",
            Path::new("m.toml"),
        )
        .unwrap_err();
        assert!(e.message.contains("command is empty"), "{e}");
    }

    #[test]
    fn default_manages_raid1_only_and_ignore_wins() {
        let c = Config::default();
        assert!(c.manages("md0", None, Some("raid1")));
        assert!(!c.manages("md0", None, Some("raid5")));
        let c = Config::parse(
            "ignore = [\"0fbf5f2c-add2-43c2-bd78-a4be3ab709ef\"]",
            Path::new("m.toml"),
        )
        .unwrap();
        assert!(!c.manages(
            "md1",
            Some("0fbf5f2c:add243c2:bd78a4be:3ab709ef"),
            Some("raid1")
        ));
    }

    /// The config file the packages install as /etc/mdguard/mdguard.toml.
    const SHIPPED: &str = include_str!("../packaging/mdguard.toml");

    /// `#key = value` and `#[table]` lines of the shipped file with the `#` removed
    /// (prose comments are `# ...`).
    fn uncommented(text: &str) -> String {
        text.lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if !rest.is_empty() && !rest.starts_with([' ', '#']) => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn keys(t: &toml::Table, prefix: &str, out: &mut Vec<String>) {
        for (k, v) in t {
            let name = format!("{prefix}{k}");
            match v {
                toml::Value::Table(sub) => keys(sub, &format!("{name}."), out),
                toml::Value::Array(a) if a.iter().all(|x| x.is_table()) && !a.is_empty() => {
                    for x in a {
                        keys(x.as_table().unwrap(), &format!("{name}[]."), out)
                    }
                }
                _ => out.push(name),
            }
        }
        out.sort();
        out.dedup();
    }

    #[test]
    fn shipped_config_is_the_defaults() {
        let c = Config::parse(SHIPPED, Path::new("packaging/mdguard.toml")).unwrap();
        assert_eq!(c, Config::default(), "the shipped file must change nothing");
    }

    #[test]
    fn shipped_config_documents_every_option_with_its_default() {
        let text = uncommented(SHIPPED);
        let mut c = Config::parse(&text, Path::new("uncommented mdguard.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        // the one example that is not a default
        assert_eq!(c.reconnect.len(), 1);
        assert_eq!(c.reconnect[0].device, "nbd1");
        assert_eq!(c.reconnect[0].timeout_s, default_reconnect_timeout());
        c.reconnect.clear();
        assert_eq!(
            c,
            Config::default(),
            "a commented-out value is not the default"
        );
        // the same keys as the reference in README.md
        let readme = include_str!("../README.md");
        let start = readme
            .find("## Configuration: `/etc/mdguard/mdguard.toml`")
            .expect("README config section");
        let block = readme[start..]
            .split("```toml\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .expect("README config block");
        let (mut documented, mut shipped) = (vec![], vec![]);
        keys(&toml::from_str(block).unwrap(), "", &mut documented);
        keys(&toml::from_str(&text).unwrap(), "", &mut shipped);
        assert_eq!(shipped, documented, "packaging/mdguard.toml vs README.md");
        assert!(shipped.len() >= 20, "{shipped:?}");
    }

    /// Every key the code takes, with its default (`None`: required), from the
    /// types themselves: `table.key`, `reconnect[].key`.
    fn code_keys() -> Vec<(String, Option<serde_json::Value>)> {
        let mut out = Vec::new();
        let top = serde_json::to_value(Config::default()).unwrap();
        for (k, v) in top.as_object().unwrap() {
            match v {
                serde_json::Value::Object(t) => {
                    for (kk, vv) in t {
                        out.push((format!("{k}.{kk}"), Some(vv.clone())));
                    }
                }
                _ if k == "reconnect" => {}
                _ => out.push((k.clone(), Some(v.clone()))),
            }
        }
        // a [[reconnect]] table with only what it cannot do without: a key
        // whose removal makes the table unusable is required
        let minimal = "[[reconnect]]\ndevice = \"nbd1\"\ncommand = [\"true\"]\n";
        let c = Config::parse(minimal, Path::new("m.toml")).unwrap();
        let r = serde_json::to_value(&c.reconnect[0]).unwrap();
        for (k, v) in r.as_object().unwrap() {
            let without: String = minimal
                .lines()
                .filter(|l| !l.starts_with(&format!("{k} =")))
                .map(|l| format!("{l}\n"))
                .collect();
            let required = Config::parse(&without, Path::new("m.toml")).is_err();
            out.push((format!("reconnect[].{k}"), (!required).then(|| v.clone())));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// mdguard.toml(5): each key is a `.TP` entry `.B key = default` (or
    /// `.B key` and `(required)`) under the `.SH` of its table.
    fn manual_keys(page: &str) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        let mut prefix: Option<String> = None;
        let lines: Vec<&str> = page.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if let Some(h) = l.strip_prefix(".SH ") {
                let h = h.trim_matches('"').replace("\\-", "-");
                prefix = if h == "TOP-LEVEL KEYS" {
                    Some(String::new())
                } else if let Some(t) = h.strip_prefix("[[").and_then(|t| t.strip_suffix("]]")) {
                    Some(format!("{t}[]."))
                } else {
                    h.strip_prefix('[')
                        .and_then(|t| t.strip_suffix(']'))
                        .map(|t| format!("{t}."))
                };
            }
            let (Some(p), true) = (&prefix, *l == ".TP") else {
                continue;
            };
            let Some(entry) = lines.get(i + 1).and_then(|e| e.strip_prefix(".B ")) else {
                panic!("mdguard.toml(5) line {}: a .TP without `.B key`", i + 2);
            };
            let entry = entry.trim_matches('"');
            let (key, default) = match entry.split_once(" = ") {
                Some((k, d)) => (k, Some(d.to_string())),
                None => {
                    let next = lines.get(i + 2).copied().unwrap_or("");
                    assert_eq!(
                        next, "(required)",
                        "mdguard.toml(5): `{entry}` has no default"
                    );
                    (entry, None)
                }
            };
            out.push((format!("{p}{key}"), default));
        }
        out.sort();
        out
    }

    #[test]
    fn the_manual_describes_every_key_with_its_default() {
        let page = include_str!("../packaging/man/mdguard.toml.5");
        let code = code_keys();
        let manual = manual_keys(page);
        let names = |v: Vec<String>| v.join(", ");
        assert_eq!(
            names(manual.iter().map(|k| k.0.clone()).collect()),
            names(code.iter().map(|k| k.0.clone()).collect()),
            "the keys of mdguard.toml(5) vs the code (src/config.rs)"
        );
        for ((key, text), (_, default)) in manual.iter().zip(&code) {
            let Some(text) = text else {
                assert_eq!(
                    default, &None,
                    "{key}: the manual says required, the code has a default"
                );
                continue;
            };
            let v: toml::Table = toml::from_str(&format!("x = {}", text.replace("\\-", "-")))
                .unwrap_or_else(|e| panic!("{key} = {text}: not a TOML value: {e}"));
            let documented = serde_json::to_value(&v["x"]).unwrap();
            assert_eq!(
                Some(documented),
                default.clone(),
                "{key}: the default in mdguard.toml(5)"
            );
        }
        assert!(code.len() >= 22, "{code:?}");
    }

    #[test]
    fn the_shipped_file_has_every_key_of_the_code() {
        let mut shipped = vec![];
        keys(
            &toml::from_str(&uncommented(SHIPPED)).unwrap(),
            "",
            &mut shipped,
        );
        let code: Vec<String> = code_keys().into_iter().map(|k| k.0).collect();
        assert_eq!(shipped, code, "packaging/mdguard.toml vs src/config.rs");
    }
}
