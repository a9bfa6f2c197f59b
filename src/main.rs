//! mdguard command line. See README.md for the contract of each command.

use mdguard::md::observe::{read_snapshot, ReadError};
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
  mdguard host status [--json]           dom0: every guest's health from xenstore
  mdguard host set-budget --kbps N [--domain D]   dom0: resync budget for guests
  mdguard host ping [--domain D]         dom0: ask guests' agents to answer
  mdguard host probe [--domain D]        dom0: tell guests storage is back
  mdguard version                        print the version
  mdguard help                           this text

--root DIR reads DIR/proc/mdstat and DIR/sys/... instead of /proc and /sys.
";

/// Options shared by the read-side commands.
struct ReadOpts {
    json: bool,
    root: Root,
}

fn parse_read_opts(
    parser: &mut lexopt::Parser,
    allow_json: bool,
) -> Result<ReadOpts, lexopt::Error> {
    use lexopt::prelude::*;
    let mut o = ReadOpts {
        json: false,
        root: Root::default(),
    };
    while let Some(arg) = parser.next()? {
        match arg {
            Long("json") if allow_json => o.json = true,
            Long("root") => o.root = Root::new(parser.value()?.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(o)
}

fn cmd_status(o: ReadOpts) -> ExitCode {
    match read_snapshot(&o.root) {
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
                println!(
                    "{}",
                    serde_json::json!({"arrays": [], "problems": [e.to_string()], "health": null})
                );
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
    match read_snapshot(&o.root) {
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
    while let Some(arg) = parser.next()? {
        match arg {
            Long("root") => opts.root = Root::new(parser.value()?.string()?),
            Long("config") => opts.config_path = parser.value()?.string()?.into(),
            Long("foreground") => opts.foreground = true,
            Long("exit-after") => {
                opts.max_runtime = Some(std::time::Duration::from_secs(parser.value()?.parse()?))
            }
            _ => return Err(arg.unexpected()),
        }
    }
    mdguard::log::init(opts.foreground, Path::new("/dev/log"));
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
            return Ok(ExitCode::from(2));
        }
    };
    Ok(match cmd.as_str() {
        "status" => cmd_status(parse_read_opts(&mut parser, true)?),
        "check" => cmd_check(parse_read_opts(&mut parser, false)?),
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
            ExitCode::from(2)
        }
    })
}

fn main() -> ExitCode {
    match run(std::env::args_os().skip(1).collect()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mdguard: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
