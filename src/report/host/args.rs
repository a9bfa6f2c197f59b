//! `mdguard host ...`'s command line, parsed into a [`Command`]. Pure.

use super::admission::Settings;
use super::service::Options;
use super::storage::StoragePattern;
use crate::report::admission::REQUEST_REFRESH_S;
use crate::report::hooks::HookName;
use crate::report::schema;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "\
usage: mdguard host status [--json] [--no-ping] [--timeout SECS] [--by-storage | --storage ID]
       mdguard host check [--no-ping] [--timeout SECS]
       mdguard host metrics [--no-ping] [--timeout SECS] [--textfile PATH]
       mdguard host set-budget --kbps N [--domain D]
       mdguard host ping [--domain D] [--timeout SECS]
       mdguard host probe [--domain D | --storage ID]
       mdguard host run [--per-storage K] [--budget-kbps N] [--storage-group ID]... [--silent-after SECS] [--metrics-listen ADDR:PORT] [--hook PROGRAM] [--hook-event EVENT]... [--hook-timeout SECS] [--ping-every SECS] [--foreground]";

/// `host run`: at most this many recoveries per storage unless told.
pub const PER_STORAGE: u32 = 2;
/// `host run`: an agent not heard from for this long is silent (its request
/// is rewritten every [`REQUEST_REFRESH_S`]).
pub const SILENT_AFTER_S: u64 = 30;

/// `host run`: how often the agents are pinged (with `--hook` or
/// `--metrics-listen`), and how long a hook may run.
pub const PING_EVERY_S: u64 = 30;
pub const HOOK_TIMEOUT_S: u64 = 30;

/// How long `status` and `check` wait for the agents' answers: they are what
/// a monitoring system runs.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `ping` waits.
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Whom a write addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every guest (every domain but dom0).
    All,
    /// `--domain D`: a domid or a domain name.
    Domain(String),
    /// `--storage ID`: every guest with a dom0 backend on that storage.
    Storage(StoragePattern),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Status {
        json: bool,
        /// `None`: `--no-ping`.
        ping: Option<Duration>,
        /// The storage view: `--by-storage` (every storage) or `--storage
        /// ID` (one, [`Some`]).
        by_storage: bool,
        storage: Option<StoragePattern>,
    },
    Check {
        ping: Option<Duration>,
    },
    /// Every guest's series in Prometheus's text format, on stdout or
    /// written atomically to `textfile` (node_exporter's textfile collector).
    Metrics {
        ping: Option<Duration>,
        textfile: Option<PathBuf>,
    },
    SetBudget {
        kbps: u64,
        domain: Option<String>,
    },
    Probe {
        target: Target,
    },
    Ping {
        domain: Option<String>,
        timeout: Duration,
    },
    /// The dom0 service: resync admission, storage-back hints, and on
    /// request the metrics listener and hooks.
    Run {
        settings: Settings,
        options: Options,
    },
}

/// A usage error, and whether it is `host check`'s (a plugin's usage error is
/// UNKNOWN, 3, on its one line; the other commands exit 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub check: bool,
    pub msg: String,
}

const COMMANDS: [&str; 7] = [
    "status",
    "check",
    "metrics",
    "set-budget",
    "ping",
    "probe",
    "run",
];

/// Parse the arguments after `host`.
pub fn parse(args: Vec<OsString>) -> Result<Command, Usage> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let usage = |check: bool| move |msg: String| Usage { check, msg };
    let cmd = match p.next().map_err(|e| usage(false)(e.to_string()))? {
        Some(Value(v)) => v.string().map_err(|e| usage(false)(e.to_string()))?,
        Some(Long("help")) | Some(Short('h')) => return Ok(Command::Help),
        Some(a) => return Err(usage(false)(a.unexpected().to_string())),
        None => return Err(usage(false)("missing command".into())),
    };
    if !COMMANDS.contains(&cmd.as_str()) {
        return Err(usage(false)(format!("unknown command {cmd:?}")));
    }
    let err = usage(cmd == "check");
    let lex = |e: lexopt::Error| err(e.to_string());
    let mut json = false;
    let mut no_ping = false;
    let mut by_storage = false;
    let mut kbps: Option<u64> = None;
    let mut domain: Option<String> = None;
    let mut storage: Option<StoragePattern> = None;
    let mut per_storage = PER_STORAGE;
    let mut budget: Option<u64> = None;
    let mut groups: Vec<StoragePattern> = Vec::new();
    let mut silent_after = SILENT_AFTER_S;
    let mut foreground = false;
    let mut listen: Option<std::net::SocketAddr> = None;
    let mut hook: Option<String> = None;
    let mut hook_events: Vec<String> = Vec::new();
    let mut hook_timeout: Option<u64> = None;
    let mut ping_every: Option<u64> = None;
    let mut timeout = if cmd == "ping" {
        PING_TIMEOUT
    } else {
        STATUS_TIMEOUT
    };
    let mut textfile: Option<PathBuf> = None;
    let reads = cmd == "status" || cmd == "check" || cmd == "metrics";
    while let Some(a) = p.next().map_err(lex)? {
        match a {
            Long("help") | Short('h') => return Ok(Command::Help),
            Long("json") if cmd == "status" => json = true,
            Long("by-storage") if cmd == "status" => by_storage = true,
            Long("no-ping") if reads => no_ping = true,
            Long("timeout") if reads || cmd == "ping" => {
                let v: f64 = p.value().map_err(lex)?.parse().map_err(lex)?;
                if !(0.0..=3600.0).contains(&v) {
                    return Err(err("--timeout: 0..3600 seconds".into()));
                }
                timeout = Duration::from_secs_f64(v);
            }
            Long("kbps") if cmd == "set-budget" => {
                let v = p.value().map_err(lex)?.string().map_err(lex)?;
                let n = schema::parse_u64(v.as_bytes()).map_err(|e| err(format!("--kbps: {e}")))?;
                if n > schema::BUDGET_MAX_KBPS {
                    return Err(err(format!("--kbps: at most {}", schema::BUDGET_MAX_KBPS)));
                }
                kbps = Some(n);
            }
            Long("per-storage") if cmd == "run" => {
                let v = p.value().map_err(lex)?.string().map_err(lex)?;
                per_storage = schema::parse_u64(v.as_bytes())
                    .ok()
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| err(format!("--per-storage {v:?}: 1..1000 recoveries")))?;
            }
            Long("budget-kbps") if cmd == "run" => {
                let v = p.value().map_err(lex)?.string().map_err(lex)?;
                let n = schema::parse_u64(v.as_bytes())
                    .map_err(|e| err(format!("--budget-kbps: {e}")))?;
                if !(1000..=schema::BUDGET_MAX_KBPS).contains(&n) {
                    return Err(err(format!(
                        "--budget-kbps: 1000..{} KiB/s",
                        schema::BUDGET_MAX_KBPS
                    )));
                }
                budget = Some(n);
            }
            Long("storage-group") if cmd == "run" => {
                let v = p.value().map_err(lex)?.string().map_err(lex)?;
                groups.push(
                    StoragePattern::parse(&v)
                        .map_err(|e| err(e.replace("--storage", "--storage-group")))?,
                );
            }
            Long("silent-after") if cmd == "run" => {
                let v = p.value().map_err(lex)?.string().map_err(lex)?;
                let min = 2 * REQUEST_REFRESH_S;
                silent_after = schema::parse_u64(v.as_bytes())
                    .ok()
                    .filter(|n| (min..=3600).contains(n))
                    .ok_or_else(|| {
                        err(format!(
                            "--silent-after {v:?}: {min}..3600 seconds (an agent shows it lives every {REQUEST_REFRESH_S} s)"
                        ))
                    })?;
            }
            Long("foreground") if cmd == "run" => foreground = true,
            Long("metrics-listen") if cmd == "run" => {
                let v = p.value().map_err(lex)?.string().map_err(lex)?;
                listen = Some(v.parse().map_err(|_| {
                    err(format!(
                        "--metrics-listen {v:?}: ADDR:PORT, e.g. 127.0.0.1:9857 or [::1]:9857"
                    ))
                })?);
            }
            Long("hook") if cmd == "run" => {
                let v = p.value().map_err(lex)?.string().map_err(lex)?;
                if !v.starts_with('/') {
                    return Err(err(format!(
                        "--hook {v:?}: an absolute path, e.g. /usr/local/sbin/mdguard-host-hook"
                    )));
                }
                hook = Some(v);
            }
            Long("hook-event") if cmd == "run" => {
                let v = p.value().map_err(lex)?.string().map_err(lex)?;
                if !HookName::parse(&v).is_some_and(|n| HookName::DOM0.contains(&n)) {
                    let known: Vec<&str> = HookName::DOM0.iter().map(|n| n.as_str()).collect();
                    return Err(err(format!(
                        "--hook-event {v:?}: dom0's events are {}",
                        known.join(", ")
                    )));
                }
                hook_events.push(v);
            }
            Long("hook-timeout") if cmd == "run" => {
                let v = p.value().map_err(lex)?.string().map_err(lex)?;
                hook_timeout = Some(
                    schema::parse_u64(v.as_bytes())
                        .ok()
                        .filter(|n| (1..=3600).contains(n))
                        .ok_or_else(|| err(format!("--hook-timeout {v:?}: 1..3600 seconds")))?,
                );
            }
            Long("ping-every") if cmd == "run" => {
                let v = p.value().map_err(lex)?.string().map_err(lex)?;
                ping_every = Some(
                    schema::parse_u64(v.as_bytes())
                        .ok()
                        .filter(|n| (2..=3600).contains(n))
                        .ok_or_else(|| {
                            err(format!(
                                "--ping-every {v:?}: 2..3600 seconds (an agent has 2 s to answer)"
                            ))
                        })?,
                );
            }
            Long("domain") | Short('d') if !reads && cmd != "run" => {
                domain = Some(p.value().map_err(lex)?.string().map_err(lex)?);
            }
            Long("storage") if cmd == "probe" || cmd == "status" => {
                let v = p.value().map_err(lex)?.string().map_err(lex)?;
                storage = Some(StoragePattern::parse(&v).map_err(err)?);
            }
            Long("textfile") if cmd == "metrics" => {
                let v = PathBuf::from(p.value().map_err(lex)?);
                if v.file_name().is_none() || v.as_os_str().is_empty() {
                    return Err(err("--textfile: a file name, e.g. /var/lib/prometheus/node-exporter/mdguard.prom".into()));
                }
                textfile = Some(v);
            }
            a => return Err(err(a.unexpected().to_string())),
        }
    }
    let ping = (!no_ping).then_some(timeout);
    Ok(match cmd.as_str() {
        "status" => Command::Status {
            json,
            ping,
            by_storage: by_storage || storage.is_some(),
            storage,
        },
        "check" => Command::Check { ping },
        "metrics" => Command::Metrics { ping, textfile },
        "set-budget" => Command::SetBudget {
            kbps: kbps.ok_or_else(|| err("set-budget needs --kbps N".into()))?,
            domain,
        },
        "ping" => Command::Ping { domain, timeout },
        "run" => {
            if hook.is_none() && (!hook_events.is_empty() || hook_timeout.is_some()) {
                return Err(err(
                    "--hook-event and --hook-timeout need --hook PROGRAM".into()
                ));
            }
            let hooks = hook.map(|program| crate::config::Hooks {
                program,
                events: hook_events,
                timeout_s: hook_timeout.unwrap_or(HOOK_TIMEOUT_S),
                ..crate::config::Hooks::default()
            });
            // the agents are pinged when something uses their liveness
            let ping = ping_every
                .or((hooks.is_some() || listen.is_some()).then_some(PING_EVERY_S))
                .map(Duration::from_secs);
            Command::Run {
                settings: Settings {
                    per_storage,
                    budget_kbps: budget,
                    silent_after: silent_after * 1000,
                    groups,
                },
                options: Options {
                    foreground,
                    listen,
                    hooks,
                    ping_every: ping,
                },
            }
        }
        _ => Command::Probe {
            target: match (domain, storage) {
                (Some(_), Some(_)) => {
                    return Err(err("--domain and --storage exclude each other".into()))
                }
                (Some(d), None) => Target::Domain(d),
                (None, Some(s)) => Target::Storage(s),
                (None, None) => Target::All,
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, Usage> {
        parse(args.iter().map(OsString::from).collect())
    }

    fn bad(args: &[&str]) -> (bool, String) {
        let u = p(args).unwrap_err();
        (u.check, u.msg)
    }

    #[test]
    fn commands_and_their_options() {
        assert_eq!(
            p(&["status"]),
            Ok(Command::Status {
                json: false,
                ping: Some(STATUS_TIMEOUT),
                by_storage: false,
                storage: None
            })
        );
        assert_eq!(
            p(&["status", "--json", "--by-storage", "--timeout", "0.5"]),
            Ok(Command::Status {
                json: true,
                ping: Some(Duration::from_millis(500)),
                by_storage: true,
                storage: None
            })
        );
        // one storage: the storage view, grouped under the pattern
        assert_eq!(
            p(&["status", "--storage", "/dev/vg_storage2/*"]),
            Ok(Command::Status {
                json: false,
                ping: Some(STATUS_TIMEOUT),
                by_storage: true,
                storage: Some(StoragePattern::parse("/dev/vg_storage2/*").unwrap())
            })
        );
        assert_eq!(
            p(&["check", "--no-ping"]),
            Ok(Command::Check { ping: None })
        );
        assert_eq!(
            p(&["check", "--timeout", "3"]),
            Ok(Command::Check {
                ping: Some(Duration::from_secs(3))
            })
        );
        assert_eq!(
            p(&["metrics"]),
            Ok(Command::Metrics {
                ping: Some(STATUS_TIMEOUT),
                textfile: None
            })
        );
        assert_eq!(
            p(&[
                "metrics",
                "--no-ping",
                "--textfile",
                "/var/lib/x/mdguard.prom"
            ]),
            Ok(Command::Metrics {
                ping: None,
                textfile: Some("/var/lib/x/mdguard.prom".into())
            })
        );
        assert_eq!(
            p(&["set-budget", "--kbps", "5000", "-d", "web"]),
            Ok(Command::SetBudget {
                kbps: 5000,
                domain: Some("web".into())
            })
        );
        assert_eq!(
            p(&["ping"]),
            Ok(Command::Ping {
                domain: None,
                timeout: PING_TIMEOUT
            })
        );
        assert_eq!(
            p(&["probe"]),
            Ok(Command::Probe {
                target: Target::All
            })
        );
        assert_eq!(
            p(&["probe", "--domain", "7"]),
            Ok(Command::Probe {
                target: Target::Domain("7".into())
            })
        );
        assert_eq!(
            p(&["probe", "--storage", "/dev/nbd*"]),
            Ok(Command::Probe {
                target: Target::Storage(StoragePattern::parse("/dev/nbd*").unwrap())
            })
        );
        for help in [
            &["--help"][..],
            &["-h"],
            &["status", "--help"],
            &["check", "-h"],
            &["probe", "--storage", "x", "--help"],
        ] {
            assert_eq!(p(help), Ok(Command::Help), "{help:?}");
        }
    }

    #[test]
    fn usage_errors_say_what_and_whose() {
        assert_eq!(bad(&[]), (false, "missing command".into()));
        assert_eq!(
            bad(&["frobnicate"]),
            (false, "unknown command \"frobnicate\"".into())
        );
        assert_eq!(
            bad(&["--bogus"]),
            (false, "invalid option '--bogus'".into())
        );
        assert_eq!(
            bad(&["status", "--bogus"]),
            (false, "invalid option '--bogus'".into())
        );
        // options of another command are not taken
        assert!(!bad(&["status", "--domain", "7"]).0);
        assert!(!bad(&["ping", "--by-storage"]).0);
        assert!(!bad(&["set-budget", "--storage", "x", "--kbps", "1"]).0);
        // check's errors are check's: UNKNOWN on its line
        assert_eq!(
            bad(&["check", "--bogus"]),
            (true, "invalid option '--bogus'".into())
        );
        assert_eq!(
            bad(&["check", "--json"]),
            (true, "invalid option '--json'".into())
        );
        assert!(bad(&["check", "--by-storage"]).0);
        assert!(bad(&["check", "--storage", "x"]).0);
        assert!(bad(&["check", "--domain", "7"]).0);
        assert_eq!(
            bad(&["check", "--timeout", "-1"]),
            (true, "--timeout: 0..3600 seconds".into())
        );
        assert!(bad(&["check", "--timeout"]).0);
        assert!(bad(&["check", "extra"]).0);
        assert_eq!(
            bad(&["set-budget"]),
            (false, "set-budget needs --kbps N".into())
        );
        assert!(bad(&["set-budget", "--kbps", "-5"])
            .1
            .starts_with("--kbps: "));
        assert_eq!(
            bad(&["set-budget", "--kbps", "100000001"]),
            (false, "--kbps: at most 100000000".into())
        );
        assert_eq!(
            bad(&["probe", "--domain", "7", "--storage", "x"]),
            (false, "--domain and --storage exclude each other".into())
        );
        assert_eq!(
            bad(&["probe", "--storage", ""]).1,
            "--storage: 1 to 1024 printable characters"
        );
        assert!(!bad(&["ping", "--timeout", "x"]).0);
        assert!(bad(&["metrics", "--textfile", "/"])
            .1
            .starts_with("--textfile: "));
        assert!(!bad(&["metrics", "--json"]).0);
        assert!(!bad(&["status", "--textfile", "x"]).0);
    }

    #[test]
    fn run_and_its_options() {
        assert_eq!(
            p(&["run"]),
            Ok(Command::Run {
                settings: Settings {
                    per_storage: PER_STORAGE,
                    budget_kbps: None,
                    silent_after: SILENT_AFTER_S * 1000,
                    groups: vec![],
                },
                options: Options::default(),
            })
        );
        assert_eq!(
            p(&[
                "run",
                "--per-storage",
                "3",
                "--budget-kbps",
                "20000",
                "--storage-group",
                "/dev/vg_storage2/*",
                "--storage-group",
                "/dev/disk/by-path/ip-10.0.0.3:*",
                "--silent-after",
                "60",
                "--foreground"
            ]),
            Ok(Command::Run {
                settings: Settings {
                    per_storage: 3,
                    budget_kbps: Some(20000),
                    silent_after: 60_000,
                    groups: vec![
                        StoragePattern::parse("/dev/vg_storage2/*").unwrap(),
                        StoragePattern::parse("/dev/disk/by-path/ip-10.0.0.3:*").unwrap()
                    ],
                },
                options: Options {
                    foreground: true,
                    ..Options::default()
                }
            })
        );
        // the listener and the hooks: the agents are pinged then
        let Ok(Command::Run { options, .. }) = p(&[
            "run",
            "--metrics-listen",
            "127.0.0.1:9857",
            "--hook",
            "/usr/local/sbin/h",
            "--hook-event",
            "AgentSilent",
            "--hook-event",
            "Fail",
            "--hook-timeout",
            "5",
        ]) else {
            panic!()
        };
        assert_eq!(options.listen, Some("127.0.0.1:9857".parse().unwrap()));
        let h = options.hooks.unwrap();
        assert_eq!(
            (h.program.as_str(), h.events, h.timeout_s, h.max_concurrent),
            (
                "/usr/local/sbin/h",
                vec!["AgentSilent".to_string(), "Fail".to_string()],
                5,
                4
            )
        );
        assert_eq!(options.ping_every, Some(Duration::from_secs(PING_EVERY_S)));
        let Ok(Command::Run { options, .. }) =
            p(&["run", "--metrics-listen", "[::1]:0", "--ping-every", "2"])
        else {
            panic!()
        };
        assert_eq!(options.listen, Some("[::1]:0".parse().unwrap()));
        assert!(options.hooks.is_none());
        assert_eq!(options.ping_every, Some(Duration::from_secs(2)));
        assert_eq!(p(&["run", "--help"]), Ok(Command::Help));
        for (args, msg) in [
            (
                &["run", "--per-storage", "0"][..],
                "--per-storage \"0\": 1..1000 recoveries",
            ),
            (
                &["run", "--per-storage", "x"],
                "--per-storage \"x\": 1..1000 recoveries",
            ),
            (
                &["run", "--budget-kbps", "999"],
                "--budget-kbps: 1000..100000000 KiB/s",
            ),
            (
                &["run", "--budget-kbps", "1e6"],
                "--budget-kbps: not a decimal number: 1e6",
            ),
            (
                &["run", "--silent-after", "10"],
                "--silent-after \"10\": 20..3600 seconds (an agent shows it lives every 10 s)",
            ),
            (
                &["run", "--storage-group", ""],
                "--storage-group: 1 to 1024 printable characters",
            ),
            (
                &["run", "--metrics-listen", "9857"],
                "--metrics-listen \"9857\": ADDR:PORT, e.g. 127.0.0.1:9857 or [::1]:9857",
            ),
            (
                &["run", "--metrics-listen", "localhost:9857"],
                "--metrics-listen \"localhost:9857\": ADDR:PORT, e.g. 127.0.0.1:9857 or [::1]:9857",
            ),
            (
                &["run", "--hook", "hook.sh"],
                "--hook \"hook.sh\": an absolute path, e.g. /usr/local/sbin/mdguard-host-hook",
            ),
            (
                &["run", "--hook", "/h", "--hook-event", "ReAdded"],
                "--hook-event \"ReAdded\": dom0's events are AgentSilent, AgentBack, Fail, DegradedArray, RebuildStarted, RebuildFinished, Refused, Flapping, Stalled",
            ),
            (
                &["run", "--hook-event", "Fail"],
                "--hook-event and --hook-timeout need --hook PROGRAM",
            ),
            (
                &["run", "--hook", "/h", "--hook-timeout", "0"],
                "--hook-timeout \"0\": 1..3600 seconds",
            ),
            (
                &["run", "--ping-every", "1"],
                "--ping-every \"1\": 2..3600 seconds (an agent has 2 s to answer)",
            ),
            (&["run", "--json"], "invalid option '--json'"),
            (&["run", "--domain", "7"], "invalid option '--domain'"),
            (&["run", "extra"], "unexpected argument \"extra\""),
        ] {
            assert_eq!(bad(args), (false, msg.to_string()), "{args:?}");
        }
        // the other commands do not take run's options
        assert!(!bad(&["status", "--per-storage", "2"]).0);
        assert!(!bad(&["probe", "--foreground"]).0);
    }
}
