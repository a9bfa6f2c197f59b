//! mdguard command line. See README.md for the contract of each command.

use mdguard::md::observe::{read_snapshot, ReadError};
use mdguard::report::agent_state::AgentView;
use mdguard::report::status as report;
use mdguard::root::Root;
use mdguard::{config, daemon};
use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

/// One command of the binary (the dom0 commands' text is `report::host::USAGE`).
/// `synopsis` is one line; mdguard(8)'s SYNOPSIS and OPTIONS list exactly these
/// options (tests/manuals.rs holds them to it, and to what the parser accepts).
struct CommandHelp {
    name: &'static str,
    synopsis: &'static str,
    /// One line for `mdguard help`.
    summary: &'static str,
    /// The rest of `mdguard CMD --help`: what it does, its options, exit codes.
    detail: &'static str,
}

const COMMANDS: &[CommandHelp] = &[
    CommandHelp {
        name: "status",
        synopsis: "mdguard status [--json | --format FORMAT] [--textfile PATH] [--root DIR]",
        summary: "show every md array (a table, JSON, or Prometheus series)",
        detail: "\
One line per array: name, level, health (ok, recovering, degraded, failed,
unknown), working legs, members, sync progress; then what could not be read.
With a running agent, what it knows beyond md (writes stalled, a flapping leg,
a refused leg and why) is shown too. Exit 0; 3 when /proc/mdstat exists but
cannot be read.

  --json            one JSON document instead of the table (--format=json)
  --format FORMAT   text (the table), json, or prometheus (the series for
                    node_exporter's textfile collector)
  --textfile PATH   write the Prometheus series to PATH atomically (implies
                    --format prometheus)
  --root DIR        read DIR/proc/mdstat and DIR/sys/... instead of /proc and /sys
  -h, --help        this text
",
    },
    CommandHelp {
        name: "check",
        synopsis: "mdguard check [--root DIR]",
        summary: "one line for Nagios/Icinga",
        detail: "\
A monitoring plugin: one line, worst array first, with perfdata. Exit 0 OK,
1 WARNING (recovering), 2 CRITICAL (degraded or failed), 3 UNKNOWN (md cannot
be read; also a usage error).

  --root DIR   read DIR/proc/mdstat and DIR/sys/... instead of /proc and /sys
  -h, --help   this text
",
    },
    CommandHelp {
        name: "run",
        synopsis: "mdguard run [--config PATH] [--root DIR] [--foreground] [--pidfile PATH] [--exit-after SECS]",
        summary: "the agent: watch, heal, throttle, report",
        detail: "\
The agent: watches md, re-adds legs that come back and prove they belong,
throttles the resync, reports to dom0 over xenstore. Logs to syslog.
Signals: TERM or INT stop it (after putting back the sync speed limits it
changed), HUP rereads the config, USR1 probes every failed leg now.
Exit 0 when stopped by a signal, 1 on a configuration it cannot use.

  --config PATH      the configuration (default /etc/mdguard/mdguard.toml, which
                     may be absent; a file named here must exist)
  --root DIR         read and write DIR/proc, DIR/sys, DIR/dev, DIR/run (tests)
  --foreground       log to stderr instead of syslog (/dev/log)
  --pidfile PATH     write the pid to PATH once the config is read, hold it
                     locked (a second agent refuses to start), remove it on exit
                     (for init scripts; the agent never forks)
  --exit-after SECS  stop after SECS seconds (tests and benchmarks)
  -h, --help         this text
",
    },
    CommandHelp {
        name: "version",
        synopsis: "mdguard version",
        summary: "print the version",
        detail: "Print `mdguard VERSION`. Also: mdguard --version, mdguard -V.\n",
    },
    CommandHelp {
        name: "help",
        synopsis: "mdguard help",
        summary: "this text",
        detail: "Print the usage of every command. Also: mdguard --help, mdguard -h.\n",
    },
];

/// `mdguard help`: every command, then dom0's.
fn usage() -> String {
    let mut s =
        String::from("mdguard: keeps Linux md RAID1 mirrors whole inside Xen guests\n\nUsage:\n");
    for c in COMMANDS {
        s.push_str(&format!("  {}\n      {}\n", c.synopsis, c.summary));
    }
    s.push_str("\nOn dom0 (mdguard host --help):\n");
    for line in mdguard::report::host::USAGE.lines() {
        let line = line.trim_start_matches("usage:").trim_start();
        s.push_str(&format!("  {line}\n"));
    }
    s.push_str(
        "\nEvery command takes --help. A usage error exits 2; `check` exits 3 (UNKNOWN),\n\
         as a monitoring plugin does. See mdguard(8), mdguard.toml(5), mdguard-xenstore(7).\n",
    );
    s
}

/// Exit code of a usage error (`check` uses 3, a plugin's UNKNOWN).
const EXIT_USAGE: u8 = 2;

/// `--root DIR` must name a directory.
fn root_arg(parser: &mut lexopt::Parser) -> Result<Root, lexopt::Error> {
    use lexopt::ValueExt;
    let dir = parser.value()?.string()?;
    if !Path::new(&dir).is_dir() {
        return Err(lexopt::Error::Custom(
            format!("--root {dir}: no such directory").into(),
        ));
    }
    Ok(Root::new(dir))
}

/// `mdguard CMD --help`: that command's text, on stdout, exit 0.
fn help(name: &str) -> ExitCode {
    match COMMANDS.iter().find(|c| c.name == name) {
        Some(c) => print!("Usage: {}\n\n{}", c.synopsis, c.detail),
        None => print!("{}", usage()),
    }
    ExitCode::SUCCESS
}

/// How `status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    Json,
    Prometheus,
}

/// Options shared by the read-side commands.
struct ReadOpts {
    format: Format,
    /// `--textfile PATH`: Prometheus's format, to a file.
    textfile: Option<std::path::PathBuf>,
    root: Root,
    help: bool,
}

fn parse_read_opts(
    parser: &mut lexopt::Parser,
    allow_json: bool,
) -> Result<ReadOpts, lexopt::Error> {
    use lexopt::prelude::*;
    let mut o = ReadOpts {
        format: Format::Text,
        textfile: None,
        root: Root::default(),
        help: false,
    };
    // the format named (--json or --format), if one was
    let mut named = None;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("json") if allow_json => named = Some(Format::Json),
            Long("format") if allow_json => {
                named = Some(match parser.value()?.string()?.as_str() {
                    "text" => Format::Text,
                    "json" => Format::Json,
                    "prometheus" => Format::Prometheus,
                    other => {
                        return Err(lexopt::Error::Custom(
                            format!("--format {other}: text, json or prometheus").into(),
                        ))
                    }
                })
            }
            Long("textfile") if allow_json => o.textfile = Some(parser.value()?.into()),
            Long("root") => o.root = root_arg(parser)?,
            Long("help") | Short('h') => o.help = true,
            _ => return Err(arg.unexpected()),
        }
    }
    // a textfile is for node_exporter: Prometheus's format, named or not
    o.format = match (named, &o.textfile) {
        (None, Some(_)) => Format::Prometheus,
        (Some(f), Some(_)) if f != Format::Prometheus => {
            return Err(lexopt::Error::Custom(
                "--textfile writes Prometheus's format; it goes with no other".into(),
            ))
        }
        (f, _) => f.unwrap_or(Format::Text),
    };
    Ok(o)
}

/// md's state, with what a running agent knows beyond it (stalled, flapping).
fn read_with_agent(root: &Root) -> Result<mdguard::md::model::Snapshot, ReadError> {
    let mut s = read_snapshot(root)?;
    if let Some(view) = AgentView::read(root) {
        view.apply(&mut s);
    }
    Ok(s)
}

/// `status --format=prometheus`: md's state and the live agent's view as
/// series, on stdout or atomically to `--textfile`. Without md there are no
/// arrays and nothing wrong; md that cannot be read exits 3 and writes
/// nothing (node_exporter shows the file's age).
fn cmd_metrics(o: &ReadOpts) -> ExitCode {
    use mdguard::report::metrics::{guest::guest_metrics, write_textfile};
    let snap = match read_snapshot(&o.root) {
        Ok(s) => s,
        Err(ReadError::NoMd(_)) => mdguard::md::model::Snapshot {
            arrays: vec![],
            problems: vec![],
        },
        Err(e) => {
            eprintln!("mdguard: {e}");
            return ExitCode::from(3);
        }
    };
    let text = guest_metrics(&snap, AgentView::read(&o.root).as_ref()).render();
    match &o.textfile {
        None => print!("{text}"),
        Some(p) => {
            if let Err(e) = write_textfile(p, &text) {
                eprintln!("mdguard: cannot write {}: {e}", p.display());
                return ExitCode::from(3);
            }
        }
    }
    ExitCode::SUCCESS
}

fn cmd_status(o: ReadOpts) -> ExitCode {
    if o.help {
        return help("status");
    }
    if o.format == Format::Prometheus {
        return cmd_metrics(&o);
    }
    let json = o.format == Format::Json;
    match read_with_agent(&o.root) {
        Ok(s) => {
            if json {
                println!("{}", report::status_json(&s));
            } else {
                print!("{}", report::status_text(&s));
            }
            ExitCode::SUCCESS
        }
        Err(e @ ReadError::NoMd(_)) => {
            if json {
                let none = mdguard::md::model::Snapshot {
                    arrays: vec![],
                    problems: vec![e.to_string()],
                };
                println!("{}", report::status_json(&none));
            } else {
                println!("no md arrays: {e}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mdguard: {e}");
            ExitCode::from(3)
        }
    }
}

fn cmd_check(o: ReadOpts) -> ExitCode {
    if o.help {
        return help("check");
    }
    match read_with_agent(&o.root) {
        Ok(s) => {
            let (code, line) = report::check_line(&s);
            println!("{line}");
            ExitCode::from(code as u8)
        }
        Err(e) => {
            println!("MDGUARD UNKNOWN - {e}");
            ExitCode::from(3)
        }
    }
}

fn cmd_run(parser: &mut lexopt::Parser) -> Result<ExitCode, lexopt::Error> {
    use lexopt::prelude::*;
    let mut opts = daemon::Options {
        root: Root::default(),
        config_path: config::DEFAULT_PATH.into(),
        foreground: false,
        max_runtime: None,
    };
    let mut config_given = false;
    let mut pidfile: Option<std::path::PathBuf> = None;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("root") => opts.root = root_arg(parser)?,
            Long("config") => {
                opts.config_path = parser.value()?.string()?.into();
                config_given = true;
            }
            Long("foreground") => opts.foreground = true,
            Long("pidfile") => pidfile = Some(parser.value()?.string()?.into()),
            Long("exit-after") => {
                opts.max_runtime = Some(std::time::Duration::from_secs(parser.value()?.parse()?))
            }
            Long("help") | Short('h') => return Ok(help("run")),
            _ => return Err(arg.unexpected()),
        }
    }
    mdguard::log::init(opts.foreground, Path::new("/dev/log"));
    // the default file may be absent (the defaults apply); a file named on the
    // command line must exist
    if config_given && !opts.config_path.exists() {
        mdguard::log::error(&format!(
            "{}: no such file; refusing to start",
            opts.config_path.display()
        ));
        return Ok(ExitCode::from(1));
    }
    let cfg = match config::Config::load(&opts.config_path) {
        Ok(c) => c,
        Err(e) => {
            mdguard::log::error(&format!("{e}; refusing to start"));
            return Ok(ExitCode::from(1));
        }
    };
    // the pid is written once the config is read: an init script that waits
    // for the file knows the start went through; kept until this returns
    let _pidfile = match pidfile
        .as_deref()
        .map(daemon::pidfile::Pidfile::create)
        .transpose()
    {
        Ok(held) => held,
        Err(e) => {
            mdguard::log::error(&format!("{e}; refusing to start"));
            return Ok(ExitCode::from(1));
        }
    };
    let r = daemon::Daemon::new(opts, cfg).and_then(|mut d| d.run());
    Ok(match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            mdguard::log::error(&format!("event loop failed: {e}"));
            ExitCode::from(1)
        }
    })
}

fn run(args: Vec<OsString>) -> Result<ExitCode, lexopt::Error> {
    use lexopt::prelude::*;
    if args.first().and_then(|a| a.to_str()) == Some("host") {
        let code = mdguard::report::host::main(args.into_iter().skip(1));
        return Ok(ExitCode::from(code.clamp(0, 255) as u8));
    }
    let mut parser = lexopt::Parser::from_args(args);
    let cmd = match parser.next()? {
        Some(lexopt::Arg::Value(v)) => v.string()?,
        Some(lexopt::Arg::Long("help")) | Some(lexopt::Arg::Short('h')) => "help".into(),
        Some(lexopt::Arg::Long("version")) | Some(lexopt::Arg::Short('V')) => "version".into(),
        Some(a) => return Err(a.unexpected()),
        None => {
            eprint!("{}", usage());
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    Ok(match cmd.as_str() {
        "status" => cmd_status(parse_read_opts(&mut parser, true)?),
        "check" => match parse_read_opts(&mut parser, false) {
            Ok(o) => cmd_check(o),
            // a monitoring plugin's usage error is UNKNOWN (3), on its one line
            Err(e) => {
                println!("MDGUARD UNKNOWN - usage: {e} (see mdguard check --help)");
                ExitCode::from(3)
            }
        },
        "run" => cmd_run(&mut parser)?,
        "version" | "help" => {
            // no options but --help
            if let Some(a) = parser.next()? {
                match a {
                    Long("help") | Short('h') => return Ok(help(&cmd)),
                    a => return Err(a.unexpected()),
                }
            }
            if cmd == "version" {
                println!("mdguard {}", env!("CARGO_PKG_VERSION"));
            } else {
                print!("{}", usage());
            }
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("mdguard: unknown command `{other}`\n\n{}", usage());
            ExitCode::from(EXIT_USAGE)
        }
    })
}

fn main() -> ExitCode {
    match run(std::env::args_os().skip(1).collect()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mdguard: {e}\n\n{}", usage());
            ExitCode::from(EXIT_USAGE)
        }
    }
}
