//! mdguard command line. See README.md for the contract of each command.

use mdguard::md::observe::{read_snapshot, ReadError};
use mdguard::report::agent_state::AgentView;
use mdguard::report::status as report;
use mdguard::root::Root;
use mdguard::{config, daemon};
use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

const USAGE: &str = "\
mdguard: keeps Linux md RAID1 mirrors whole inside Xen guests

Usage:
  mdguard status [--json] [--root DIR]   show every md array (a table, or JSON)
  mdguard check [--root DIR]             one line for Nagios/Icinga; exit 0 OK,
                                         1 WARNING, 2 CRITICAL, 3 UNKNOWN
  mdguard run [--config PATH] [--root DIR] [--foreground] [--exit-after SECS]
                                         the agent: watch, heal, throttle, report
                                         (config default /etc/mdguard/mdguard.toml)
  mdguard host status [--json] [--no-ping] [--timeout SECS]
                                         dom0: every guest's health from xenstore;
                                         an agent that does not answer is `silent`
  mdguard host set-budget --kbps N [--domain D]   dom0: resync budget for guests
  mdguard host ping [--domain D]         dom0: ask guests' agents to answer
  mdguard host probe [--domain D]        dom0: tell guests storage is back
  mdguard version                        print the version
  mdguard help                           this text

--root DIR reads DIR/proc/mdstat and DIR/sys/... instead of /proc and /sys.
Every command takes --help. A usage error exits 2; `check` exits 3 (UNKNOWN),
as a monitoring plugin does.
";

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

/// The command's own `--help`: the usage, on stdout, exit 0.
fn help() -> ExitCode {
    print!("{USAGE}");
    ExitCode::SUCCESS
}

/// Options shared by the read-side commands.
struct ReadOpts {
    json: bool,
    root: Root,
    help: bool,
}

fn parse_read_opts(
    parser: &mut lexopt::Parser,
    allow_json: bool,
) -> Result<ReadOpts, lexopt::Error> {
    use lexopt::prelude::*;
    let mut o = ReadOpts {
        json: false,
        root: Root::default(),
        help: false,
    };
    while let Some(arg) = parser.next()? {
        match arg {
            Long("json") if allow_json => o.json = true,
            Long("root") => o.root = root_arg(parser)?,
            Long("help") | Short('h') => o.help = true,
            _ => return Err(arg.unexpected()),
        }
    }
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

fn cmd_status(o: ReadOpts) -> ExitCode {
    if o.help {
        return help();
    }
    match read_with_agent(&o.root) {
        Ok(s) => {
            if o.json {
                println!("{}", report::status_json(&s));
            } else {
                print!("{}", report::status_text(&s));
            }
            ExitCode::SUCCESS
        }
        Err(e @ ReadError::NoMd(_)) => {
            if o.json {
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
        return help();
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
    while let Some(arg) = parser.next()? {
        match arg {
            Long("root") => opts.root = root_arg(parser)?,
            Long("config") => {
                opts.config_path = parser.value()?.string()?.into();
                config_given = true;
            }
            Long("foreground") => opts.foreground = true,
            Long("exit-after") => {
                opts.max_runtime = Some(std::time::Duration::from_secs(parser.value()?.parse()?))
            }
            Long("help") | Short('h') => return Ok(help()),
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
            eprint!("{USAGE}");
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
        "version" => {
            println!("mdguard {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        "help" => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("mdguard: unknown command `{other}`\n\n{USAGE}");
            ExitCode::from(EXIT_USAGE)
        }
    })
}

fn main() -> ExitCode {
    match run(std::env::args_os().skip(1).collect()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mdguard: {e}\n\n{USAGE}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
