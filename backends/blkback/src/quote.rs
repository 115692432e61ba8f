//! Strings a frontend chose (xenstore values, paths under its directory), made fit for our
//! console lines and xenstore nodes: escaped (no control characters or terminal escape
//! sequences reach `xl console` or a log viewer) and cut (a 4000-byte value costs a line,
//! not 4000 bytes on every connect attempt).

use alloc::string::String;
use core::fmt::Write as _;

/// Characters of frontend text a message keeps.
pub const MAX_QUOTED: usize = 64;

/// `s` quoted and escaped (like Rust's `{:?}` for ASCII), cut after `MAX_QUOTED` characters with the
/// original length noted: `"abc..." (4000 bytes)`.
pub fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    let mut chars = s.chars();
    for c in chars.by_ref().take(MAX_QUOTED) {
        // Printable ASCII as it is; everything else as `\u{..}` (ASCII only: no Unicode
        // tables in the image, and nothing a terminal could take for a control sequence).
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            '\n' => out.push_str("\\n"),
            '\0' => out.push_str("\\0"),
            _ => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    out.push('"');
    if chars.next().is_some() {
        let _ = write!(out, "... ({} bytes)", s.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_quoted_whole() {
        assert_eq!(quote("x86_64-abi"), "\"x86_64-abi\"");
        assert_eq!(quote(""), "\"\"");
    }

    #[test]
    fn control_characters_are_escaped() {
        let q = quote("a\u{1b}[2J\nb\0");
        assert!(!q.chars().any(char::is_control), "{q}");
        assert_eq!(q, "\"a\\u{1b}[2J\\nb\\0\"");
    }

    #[test]
    fn long_text_is_cut_with_its_length() {
        let long = "p".repeat(4000);
        let q = quote(&long);
        assert!(q.len() < 100, "{} bytes", q.len());
        assert!(q.ends_with("... (4000 bytes)"), "{q}");
        assert!(q.starts_with(&alloc::format!("\"{}\"", "p".repeat(MAX_QUOTED))));
    }
}
