//! mdguard(8) and the command line agree: every command and option that
//! `mdguard help`, `mdguard CMD --help` and `mdguard host --help` show is in the
//! manual's SYNOPSIS and OPTIONS, and the reverse; every option the help shows is
//! accepted by the parser; every option the parser knows (`Long("...")` and
//! `Short('.')` anywhere in src/) is in the manual. A command or option added to
//! the help or to the parser and not to the manual fails here.
//!
//! mdguard.toml(5) and mdguard-xenstore(7) are held to the code by unit tests
//! next to their types (src/config.rs, src/report/schema.rs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn page(name: &str) -> String {
    std::fs::read_to_string(repo().join("packaging/man").join(name)).unwrap()
}

fn mdguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mdguard"))
        .args(args)
        // a host command must not find a real xenstored here
        .env("XENSTORED_PATH", "/nonexistent-mdguard-xenstored")
        .output()
        .expect("run mdguard")
}

fn stdout_of(args: &[&str]) -> String {
    let o = mdguard(args);
    assert_eq!(o.status.code(), Some(0), "mdguard {args:?}: {o:?}");
    String::from_utf8(o.stdout).unwrap()
}

// ------------------------------------------------------------------ roff

/// The arguments of a roff request line: words, or "quoted words".
fn roff_args(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut started) = (false, false);
    for ch in s.chars() {
        match ch {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            ' ' if !quoted => {
                if started {
                    out.push(std::mem::take(&mut cur));
                }
                started = false;
            }
            c => {
                cur.push(c);
                started = true;
            }
        }
    }
    if started {
        out.push(cur);
    }
    out
}

fn unescape(s: &str) -> String {
    let mut t = s
        .replace("\\-", "-")
        .replace("\\&", "")
        .replace("\\e", "\\");
    for f in ["\\fB", "\\fI", "\\fR", "\\fP"] {
        t = t.replace(f, "");
    }
    t
}

/// One line of roff as the text it prints (font requests joined as groff does).
fn roff_text(line: &str) -> String {
    let Some(req) = line.strip_prefix('.') else {
        return unescape(line);
    };
    let (name, rest) = req.split_once(' ').unwrap_or((req, ""));
    let args = roff_args(rest);
    let joined = match name {
        "B" | "I" => args.join(" "),
        "BR" | "RB" | "BI" | "IB" | "IR" | "RI" => args.concat(),
        _ => String::new(),
    };
    unescape(&joined)
}

/// The lines of a `.SH` section.
fn section<'a>(page: &'a str, title: &str) -> Vec<&'a str> {
    let mut inside = false;
    let mut out = Vec::new();
    for l in page.lines() {
        if let Some(h) = l.strip_prefix(".SH ") {
            inside = unescape(h.trim_matches('"')) == title;
        } else if inside {
            out.push(l);
        }
    }
    assert!(!out.is_empty(), "no section {title}");
    out
}

// ------------------------------------------------------------------ synopses

/// One command's synopsis: its options, each with whether it takes a value
/// and whether it is required (not in brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Opt {
    value: bool,
    required: bool,
}

type Synopses = BTreeMap<String, BTreeMap<String, Opt>>;

/// `mdguard host set-budget --kbps N [--domain D]` -> ("host set-budget",
/// {--kbps: value required, --domain: value}).
fn parse_synopsis(line: &str) -> (String, BTreeMap<String, Opt>) {
    let toks: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(toks.first(), Some(&"mdguard"), "not a synopsis: {line}");
    let words: Vec<&str> = toks[1..]
        .iter()
        .take_while(|t| {
            t.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !t.starts_with('-')
        })
        .copied()
        .collect();
    let mut opts = BTreeMap::new();
    let rest = &toks[1 + words.len()..];
    // brackets open before a token: an option inside any is optional
    // (`[--domain D | --storage ID]`: both are)
    let mut depth = 0usize;
    for (i, t) in rest.iter().enumerate() {
        let name = t.trim_start_matches('[').trim_end_matches([']', '|', '.']);
        depth += t.matches('[').count();
        let inside = depth > 0;
        depth = depth.saturating_sub(t.matches(']').count());
        if !name.starts_with('-') {
            continue;
        }
        // `[--a | --b X]`: the `|` is no value
        let value = !t.ends_with(']')
            && rest
                .get(i + 1)
                .is_some_and(|n| !n.starts_with('[') && !n.starts_with('-') && *n != "|");
        opts.insert(
            name.to_string(),
            Opt {
                value,
                required: !inside,
            },
        );
    }
    (words.join(" "), opts)
}

/// The synopses `mdguard help` shows (dom0's included).
fn help_synopses() -> Synopses {
    let text = stdout_of(&["help"]);
    assert_eq!(text, stdout_of(&["--help"]), "help and --help differ");
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("mdguard "))
        .map(parse_synopsis)
        .collect()
}

/// mdguard(8)'s SYNOPSIS: entries separated by `.br`.
fn manual_synopses() -> Synopses {
    let page = page("mdguard.8");
    let mut entries = vec![String::new()];
    for l in section(&page, "SYNOPSIS") {
        if l == ".br" {
            entries.push(String::new());
        } else {
            let e = entries.last_mut().unwrap();
            e.push(' ');
            e.push_str(&roff_text(l));
        }
    }
    entries.iter().map(|e| parse_synopsis(e.trim())).collect()
}

/// mdguard(8)'s OPTIONS: the options each `.TP` tag names (`-d, --domain d`).
fn manual_options() -> Vec<String> {
    let page = page("mdguard.8");
    let lines = section(&page, "OPTIONS");
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if *l == ".TP" {
            let tag = roff_text(lines[i + 1]);
            for part in tag.split(", ") {
                let opt = part.split_whitespace().next().unwrap_or("");
                assert!(opt.starts_with('-'), "OPTIONS tag without an option: {tag}");
                out.push(opt.to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn help_and_manual_synopsis_list_the_same_commands_and_options() {
    let help = help_synopses();
    let manual = manual_synopses();
    assert!(
        help.contains_key("run") && help.contains_key("host status"),
        "{help:?}"
    );
    let names = |s: &Synopses| s.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&manual),
        names(&help),
        "commands: mdguard(8) SYNOPSIS vs mdguard help"
    );
    for (cmd, opts) in &help {
        assert_eq!(
            &manual[cmd], opts,
            "mdguard {cmd}: mdguard(8) SYNOPSIS vs mdguard help"
        );
    }
}

#[test]
fn each_command_help_agrees_with_the_synopsis() {
    let all = help_synopses();
    for (cmd, opts) in &all {
        let mut args: Vec<&str> = cmd.split(' ').collect();
        args.push("--help");
        let text = stdout_of(&args);
        // its own synopsis line (host prints all of dom0's)
        let own: Vec<_> = text
            .lines()
            .map(|l| {
                l.trim()
                    .trim_start_matches("Usage:")
                    .trim_start_matches("usage:")
                    .trim()
            })
            .filter(|l| l.starts_with("mdguard "))
            .map(parse_synopsis)
            .filter(|(c, _)| c == cmd)
            .collect();
        assert_eq!(own.len(), 1, "mdguard {cmd} --help: its synopsis\n{text}");
        assert_eq!(&own[0].1, opts, "mdguard {cmd} --help vs mdguard help");
        if !cmd.starts_with("host") {
            // the option list under it names each option of the synopsis, and --help
            let mut listed: Vec<String> = text
                .lines()
                .filter(|l| l.starts_with("  -"))
                .flat_map(|l| {
                    l.split("  ")
                        .find(|p| !p.is_empty())
                        .unwrap_or("")
                        .split(", ")
                })
                .map(|o| o.split_whitespace().next().unwrap_or("").to_string())
                .filter(|o| o.starts_with("--"))
                .collect();
            listed.sort();
            let mut want: Vec<String> = opts.keys().cloned().collect();
            if !want.is_empty() {
                want.push("--help".into());
            }
            want.sort();
            if !want.is_empty() {
                assert_eq!(
                    listed, want,
                    "mdguard {cmd} --help: its option list\n{text}"
                );
            }
        }
    }
}

#[test]
fn manual_options_are_the_options_of_the_synopses() {
    let mut long: Vec<String> = help_synopses()
        .values()
        .flat_map(|o| o.keys().cloned())
        .collect();
    long.extend(["--help".to_string(), "--version".to_string()]);
    long.sort();
    long.dedup();
    let manual: Vec<String> = manual_options()
        .into_iter()
        .filter(|o| o.starts_with("--"))
        .collect();
    assert_eq!(
        manual, long,
        "mdguard(8) OPTIONS vs the options in mdguard help"
    );
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// What the parser knows is documented: each `Long("x")` and `Short('x')`
/// the command line code matches (lexopt) is in mdguard(8)'s OPTIONS.
#[test]
fn every_option_the_parser_knows_is_in_the_manual() {
    let manual = manual_options();
    let mut files = vec![];
    sources(&repo().join("src"), &mut files);
    let mut seen = 0;
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (open, close, dashes) in [("Long(\"", "\")", "--"), ("Short('", "')", "-")] {
            for piece in text.split(open).skip(1) {
                let Some((name, _)) = piece.split_once(close) else {
                    continue;
                };
                let opt = format!("{dashes}{name}");
                assert!(
                    manual.contains(&opt),
                    "{}: the parser takes {opt}, mdguard(8) OPTIONS does not list it",
                    f.display()
                );
                seen += 1;
            }
        }
    }
    assert!(seen >= 15, "found only {seen} options in src/");
}

/// Every option the help shows is one the parser takes: run each command with
/// it (and what it requires), so that it ends at once without a usage error.
#[test]
fn every_option_in_the_help_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_string();
    let missing = "/nonexistent-mdguard/mdguard.toml".to_string();
    // a value each option takes (--budget-kbps from 1000, --silent-after from 20)
    let value_for = |metavar: &str| match metavar {
        "DIR" => root.clone(),
        "PATH" => missing.clone(),
        "N" => "1000".to_string(),
        "SECS" => "30".to_string(),
        "FORMAT" => "text".to_string(),
        "PROGRAM" => "/bin/true".to_string(),
        "EVENT" => "Fail".to_string(),
        "ADDR:PORT" => "127.0.0.1:0".to_string(),
        _ => "1".to_string(),
    };
    // options that go only with another (given with it)
    let needs = |o: &str| match o {
        "--hook-event" | "--hook-timeout" => Some("--hook"),
        _ => None,
    };
    let help = stdout_of(&["help"]);
    let metavars: BTreeMap<String, String> = help
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0].trim_start_matches('[').starts_with("--"))
        .map(|w| {
            (
                w[0].trim_start_matches('[').to_string(),
                w[1].trim_end_matches("...")
                    .trim_end_matches(']')
                    .to_string(),
            )
        })
        .collect();
    for (cmd, opts) in help_synopses() {
        let mut cases: Vec<Option<&str>> = opts.keys().map(|o| Some(o.as_str())).collect();
        cases.push(None);
        for case in cases {
            let mut args: Vec<String> = cmd.split(' ').map(String::from).collect();
            for (o, spec) in &opts {
                if spec.required || Some(o.as_str()) == case || case.and_then(needs) == Some(o) {
                    args.push(o.clone());
                    if spec.value {
                        args.push(value_for(&metavars[o]));
                    }
                }
            }
            // end at once: the agent refuses a named config that does not
            // exist (after parsing); the readers read an empty tree
            if cmd == "run" && case != Some("--config") {
                args.extend(["--config".into(), missing.clone()]);
            }
            if (cmd == "status" || cmd == "check") && case != Some("--root") {
                args.extend(["--root".into(), root.clone()]);
            }
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let o = mdguard(&refs);
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            assert_ne!(
                o.status.code(),
                Some(2),
                "mdguard {refs:?}: a usage error\n{said}"
            );
            for bad in [
                "invalid option",
                "missing argument",
                "unexpected argument",
                "usage:",
            ] {
                assert!(!said.contains(bad), "mdguard {refs:?}: {bad}\n{said}");
            }
        }
    }
}
