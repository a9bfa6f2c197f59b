//! Prometheus's text exposition format (version 0.0.4), written and read back.
//! Pure.
//!
//! What the format asks, and what [`Families`] guarantees so that a reader
//! (node_exporter's textfile collector, `promtool check metrics`, Prometheus)
//! takes the whole output:
//!
//! - every sample of a family is on consecutive lines, after its `# HELP` and
//!   `# TYPE` lines, and each family appears once;
//! - a family never has two samples with the same label set: a reader drops
//!   or refuses the repeat (node_exporter 1.5 drops it and logs an error at
//!   every scrape), so a repeated label set is kept once and counted
//!   ([`Families::dropped`]);
//! - label values escape `\` as `\\`, `"` as `\"` and a newline as `\n` (one
//!   newline left raw makes node_exporter drop the whole file, every guest's
//!   series with it: `node_textfile_scrape_error 1`, seen with 1.5); `# HELP`
//!   text escapes `\` and newlines; metric and label names are checked against
//!   `[a-zA-Z_:][a-zA-Z0-9_:]*` / `[a-zA-Z_][a-zA-Z0-9_]*` (a programming error
//!   otherwise: names are constants here);
//! - values are finite numbers (an integer prints without a decimal point).
//!
//! [`parse`] reads the format back (the subset this module writes: no
//! timestamps, histograms or summaries), checking each of these rules; the
//! tests use it on everything mdguard prints.

use std::collections::BTreeSet;
use std::fmt::Write as _;

/// A family's type (`# TYPE`); mdguard's series are all gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
        }
    }
}

/// One sample: its label pairs, in order, and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq)]
struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    samples: Vec<Sample>,
    seen: BTreeSet<Vec<(String, String)>>,
}

/// Metric families in the order they were first named, each with its samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Families {
    families: Vec<Family>,
    dropped: usize,
}

/// Is `s` a valid metric name?
pub fn valid_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

/// Is `s` a valid label name (and not one of the reserved `__` names)?
pub fn valid_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    !s.starts_with("__")
        && matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// A label value as the format writes it between quotes.
pub fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A value as the format writes it: integers without a point, `NaN` and
/// `+Inf`/`-Inf` spelled as Go's parser reads them.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

impl Families {
    pub fn new() -> Families {
        Families::default()
    }

    /// Add one sample to family `name` (declared by its first use, with its
    /// help text). A label set the family already has is dropped and counted.
    pub fn push(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        assert!(valid_metric_name(name), "metric name {name:?}");
        let labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| {
                assert!(valid_label_name(k), "label name {k:?}");
                (k.to_string(), v.to_string())
            })
            .collect();
        let fam = match self.families.iter().position(|f| f.name == name) {
            Some(i) => &mut self.families[i],
            None => {
                self.families.push(Family {
                    name,
                    help,
                    kind: Kind::Gauge,
                    samples: Vec::new(),
                    seen: BTreeSet::new(),
                });
                self.families.last_mut().expect("just pushed")
            }
        };
        let mut key = labels.clone();
        key.sort();
        if !fam.seen.insert(key) {
            self.dropped += 1;
            return;
        }
        fam.samples.push(Sample { labels, value });
    }

    /// Samples dropped because their family already had their label set.
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    /// The samples of family `name` (for tests and callers that look before
    /// printing).
    pub fn samples(&self, name: &str) -> &[Sample] {
        self.families
            .iter()
            .find(|f| f.name == name)
            .map_or(&[], |f| &f.samples)
    }

    /// The text: each family's `# HELP`, `# TYPE`, then its samples.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.families {
            let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(f.help));
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.as_str());
            for s in &f.samples {
                out.push_str(f.name);
                if !s.labels.is_empty() {
                    out.push('{');
                    for (i, (k, v)) in s.labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{k}=\"{}\"", escape_label_value(v));
                    }
                    out.push('}');
                }
                let _ = writeln!(out, " {}", format_value(s.value));
            }
        }
        out
    }
}

/// One sample read back: its family's name, labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Parsed {
    /// The value of label `k`, if the sample has it.
    pub fn label(&self, k: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}

/// Read exposition text back, checking what [`Families::render`] promises:
/// valid names, `# TYPE` before a family's samples, families contiguous and
/// once, no repeated label set, escapes that the format defines and nothing
/// else. `Err` names the line and what is wrong.
pub fn parse(text: &str) -> Result<Vec<Parsed>, String> {
    let mut out = Vec::new();
    let mut typed: BTreeSet<String> = BTreeSet::new();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut series: BTreeSet<(String, Vec<(String, String)>)> = BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let err = |m: &str| Err(format!("line {}: {m}: {line:?}", n + 1));
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut w = rest.splitn(3, ' ');
            let (word, name) = (w.next().unwrap_or(""), w.next().unwrap_or(""));
            if word != "HELP" && word != "TYPE" {
                continue; // a comment
            }
            if !valid_metric_name(name) {
                return err("bad metric name");
            }
            if current.as_deref() != Some(name) {
                if done.contains(name) {
                    return err("family seen before, not contiguous");
                }
                if let Some(c) = current.take() {
                    done.insert(c);
                }
                current = Some(name.to_string());
            }
            if word == "TYPE" {
                let t = w.next().unwrap_or("");
                if !["gauge", "counter", "untyped"].contains(&t) {
                    return err("unknown type");
                }
                if !typed.insert(name.to_string()) {
                    return err("second TYPE line");
                }
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        if !valid_metric_name(name) {
            return err("bad metric name");
        }
        if current.as_deref() != Some(name) {
            return err("sample outside its family's HELP/TYPE block");
        }
        if !typed.contains(name) {
            return err("sample before its TYPE line");
        }
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(r) = rest.strip_prefix('{') {
            rest = r;
            loop {
                if let Some(r) = rest.strip_prefix('}') {
                    rest = r;
                    break;
                }
                let eq = rest.find('=').ok_or(format!("line {}: no `=`", n + 1))?;
                let k = &rest[..eq];
                if !valid_label_name(k) {
                    return err("bad label name");
                }
                let Some(r) = rest[eq + 1..].strip_prefix('"') else {
                    return err("label value not quoted");
                };
                let mut v = String::new();
                let mut chars = r.char_indices();
                let end = loop {
                    match chars.next() {
                        None => return err("unterminated label value"),
                        Some((i, '"')) => break i,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, '\\')) => v.push('\\'),
                            Some((_, '"')) => v.push('"'),
                            Some((_, 'n')) => v.push('\n'),
                            _ => return err("unknown escape in a label value"),
                        },
                        Some((_, c)) => v.push(c),
                    }
                };
                if labels.iter().any(|(x, _): &(String, String)| x == k) {
                    return err("label repeated");
                }
                labels.push((k.to_string(), v));
                rest = &r[end + 1..];
                if let Some(r) = rest.strip_prefix(',') {
                    rest = r;
                } else if !rest.starts_with('}') {
                    return err("expected `,` or `}` after a label");
                }
            }
        }
        let Some(v) = rest.strip_prefix(' ') else {
            return err("no space before the value");
        };
        let value = match v {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => match v.parse::<f64>() {
                Ok(x) if !v.contains(' ') => x,
                _ => return err("bad value"),
            },
        };
        let mut key = labels.clone();
        key.sort();
        if !series.insert((name.to_string(), key)) {
            return err("a label set repeated in its family");
        }
        out.push(Parsed {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_families_contiguous_with_help_and_type() {
        let mut f = Families::new();
        f.push("mdguard_a", "A thing.", &[("array", "md0")], 1.0);
        f.push("mdguard_b", "B\\thing\nsecond line", &[], 0.25);
        f.push("mdguard_a", "A thing.", &[("array", "md1")], 2.0);
        assert_eq!(
            f.render(),
            "# HELP mdguard_a A thing.\n# TYPE mdguard_a gauge\n\
             mdguard_a{array=\"md0\"} 1\nmdguard_a{array=\"md1\"} 2\n\
             # HELP mdguard_b B\\\\thing\\nsecond line\n# TYPE mdguard_b gauge\n\
             mdguard_b 0.25\n"
        );
        let back = parse(&f.render()).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[1].label("array"), Some("md1"));
        assert_eq!(back[2].value, 0.25);
    }

    /// Every character a guest could put in a name survives the round trip,
    /// and none can end the value, the sample or the line early.
    #[test]
    fn hostile_label_values_are_escaped_and_read_back_exactly() {
        let hostile = [
            "plain",
            "quote\"}evil 1\nmdguard_agent_up 1",
            "back\\slash\\",
            "\\\"",
            "new\nline",
            "trailing\\n literal",
            "utf-8 ünïcødé ☃",
            "tab\tcr\rnul\0esc\x1b[2J",
            "",
            "} 1\n# TYPE x counter",
        ];
        let mut f = Families::new();
        for (i, h) in hostile.iter().enumerate() {
            let idx = i.to_string();
            f.push("mdguard_t", "t", &[("i", &idx), ("v", h)], i as f64);
        }
        let text = f.render();
        // one line per sample plus HELP and TYPE: nothing broke a line
        assert_eq!(text.lines().count(), hostile.len() + 2, "{text}");
        let back = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        for (i, h) in hostile.iter().enumerate() {
            assert_eq!(back[i].label("v"), Some(*h));
            assert_eq!(back[i].value, i as f64);
        }
    }

    #[test]
    fn a_repeated_label_set_is_dropped_and_counted() {
        let mut f = Families::new();
        f.push("mdguard_x", "x", &[("a", "1"), ("b", "2")], 1.0);
        f.push("mdguard_x", "x", &[("b", "2"), ("a", "1")], 5.0);
        f.push("mdguard_x", "x", &[("a", "1"), ("b", "3")], 1.0);
        assert_eq!(f.dropped(), 1);
        assert_eq!(f.samples("mdguard_x").len(), 2);
        assert_eq!(f.samples("mdguard_x")[0].value, 1.0, "the first one wins");
        assert!(parse(&f.render()).is_ok());
    }

    #[test]
    fn values_print_as_the_format_reads_them() {
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(0.425), "0.425");
        assert_eq!(format_value(1e20), "100000000000000000000");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(-f64::INFINITY), "-Inf");
        assert_eq!("100000000000000000000".parse::<f64>().unwrap(), 1e20);
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_metric_name("node_md_disks"));
        assert!(valid_metric_name("a:b_c9"));
        assert!(!valid_metric_name("9a"));
        assert!(!valid_metric_name("a-b"));
        assert!(!valid_metric_name(""));
        assert!(valid_label_name("domid"));
        assert!(!valid_label_name("__name__"));
        assert!(!valid_label_name("a:b"));
    }

    /// The reader refuses what node_exporter and promtool refuse.
    #[test]
    fn the_reader_refuses_broken_text() {
        let ok = "# HELP m h\n# TYPE m gauge\nm{a=\"1\"} 1\n";
        assert!(parse(ok).is_ok());
        for bad in [
            "m 1\n",                                                      // no TYPE
            "# TYPE m gauge\nm{a=\"1\"} 1\nm{a=\"1\"} 2\n",               // repeated
            "# TYPE m gauge\nm 1\n# TYPE n gauge\nn 1\n# TYPE m gauge\n", // not contiguous
            "# TYPE m gauge\n# TYPE n gauge\nm 1\n", // sample after another family
            "# TYPE m gauge\nm{a=\"x\\t\"} 1\n",     // unknown escape
            "# TYPE m gauge\nm{a=\"x} 1\n",          // unterminated
            "# TYPE m gauge\nm{a=x} 1\n",            // unquoted
            "# TYPE m gauge\nm{a=\"1\",a=\"2\"} 1\n", // label twice
            "# TYPE m gauge\nm one\n",               // bad value
            "# TYPE m gauge\nm{__x=\"1\"} 1\n",      // reserved label
            "# TYPE m-x gauge\n",                    // bad name
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
