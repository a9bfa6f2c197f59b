//! Untrusted text made safe to show: values from xenstore, mdstat lines, anything
//! that reaches a log line or a terminal. Each helper says what it is for.

/// A short, printable rendering of untrusted bytes for messages and terminals:
/// control characters and non-ASCII are escaped, length bounded.
pub fn printable(v: &[u8], max: usize) -> String {
    let mut s = String::new();
    for &b in v.iter().take(max) {
        if (0x20..0x7f).contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    if v.len() > max {
        s.push_str("...");
    }
    s
}

/// Same for a string (chars, not bytes).
pub fn printable_str(v: &str, max: usize) -> String {
    let mut s = String::new();
    for c in v.chars().take(max) {
        if c.is_control() {
            s.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            s.push(c);
        }
    }
    if v.chars().count() > max {
        s.push_str("...");
    }
    s
}

/// A value kept in published data: control characters dropped, at most `max`
/// characters.
pub fn strip_controls(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// A line quoted in a message: at most 80 characters, then `…`.
pub fn ellipsize(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(MAX).collect();
        t.push('…');
        t
    }
}

/// One log line: control characters become `?`, so a hostile value cannot forge
/// extra lines.
pub fn one_line(msg: &str) -> String {
    msg.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_terminal_controls() {
        assert_eq!(printable(b"ok\x1b[2J", 32), "ok\\x1b[2J");
        assert_eq!(printable(b"abcdef", 3), "abc...");
        assert_eq!(printable_str("a\u{1b}b", 8), "a\\u{1b}b");
    }

    #[test]
    fn lines_and_values_lose_their_controls() {
        assert_eq!(one_line("a\nb\x1b"), "a?b?");
        assert_eq!(strip_controls("md0\n\x07x", 3), "md0");
        assert_eq!(ellipsize(&"x".repeat(81)).chars().count(), 81);
        assert_eq!(ellipsize("short"), "short");
    }
}
