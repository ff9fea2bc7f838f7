//! JSON string bodies from bytes that C printed verbatim (`printf("\"%s\"")`).
//!
//! C pmxcfs never escapes kv keys, node names, log idents and tags, and escapes only `"` in log
//! messages: such a string containing `"`, a control character or a stray backslash makes the
//! whole reply invalid JSON (status.md §7.3 #6, local.md Appendix C #6/#7). lwcfs keeps C's text
//! byte for byte wherever it already is a well-formed JSON string body, and escapes only what
//! would break it. So `\"` and `\u00e4` (which C's log escaping and Perl's `log_msg` produce on
//! purpose) pass through unchanged.
#![forbid(unsafe_code)]

use std::fmt::Write as _;

/// Append `bytes` (a C string's bytes, without its NUL) as the body of a JSON string.
///
/// - a backslash that starts a valid JSON escape (`\" \\ \/ \b \f \n \r \t`, `\u` + 4 hex
///   digits) is kept with that escape; any other backslash becomes `\\`;
/// - `"` becomes `\"`; control characters (< 0x20) become `\u00XX`;
/// - valid UTF-8 passes through; a byte that is not part of valid UTF-8 becomes `?` (as C's own
///   log escaping does for invalid input).
pub fn push_body(out: &mut String, bytes: &[u8]) {
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\\' => {
                let len = escape_len(&bytes[i..]);
                if len > 0 {
                    // Valid escapes are ASCII.
                    out.push_str(std::str::from_utf8(&bytes[i..i + len]).unwrap_or("?"));
                    i += len;
                } else {
                    out.push_str("\\\\");
                    i += 1;
                }
            }
            b'"' => {
                out.push_str("\\\"");
                i += 1;
            }
            0..=0x1f => {
                let _ = write!(out, "\\u{b:04x}");
                i += 1;
            }
            0x20..=0x7f => {
                out.push(b as char);
                i += 1;
            }
            _ => {
                let n = utf8_len(&bytes[i..]);
                match std::str::from_utf8(&bytes[i..i + n]) {
                    Ok(s) if n > 0 => out.push_str(s),
                    _ => out.push('?'),
                }
                i += n.max(1);
            }
        }
    }
}

/// C's escaping of guest config values (`_g_str_append_kv_jsonescaped`): every `\` and `"`
/// escaped; in addition control characters become `\u00XX` and bytes that are not valid UTF-8
/// `?` (C prints both raw).
pub fn push_escaped(out: &mut String, bytes: &[u8]) {
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            0..=0x1f => {
                let _ = write!(out, "\\u{b:04x}");
            }
            0x20..=0x7f => out.push(b as char),
            _ => {
                let n = utf8_len(&bytes[i..]);
                match std::str::from_utf8(&bytes[i..i + n]) {
                    Ok(s) if n > 0 => out.push_str(s),
                    _ => out.push('?'),
                }
                i += n.max(1);
                continue;
            }
        }
        i += 1;
    }
}

/// `"` + [`push_body`] + `"`.
pub fn push_quoted(out: &mut String, bytes: &[u8]) {
    out.push('"');
    push_body(out, bytes);
    out.push('"');
}

/// The bytes of a C string: everything before the first NUL.
pub fn c_str(bytes: &[u8]) -> &[u8] {
    match bytes.iter().position(|&b| b == 0) {
        Some(n) => &bytes[..n],
        None => bytes,
    }
}

/// Length of the valid JSON escape at the start of `s` (which starts with a backslash), or 0.
fn escape_len(s: &[u8]) -> usize {
    match s.get(1) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => 2,
        Some(b'u') => match hex4(&s[2..]) {
            // A surrogate is valid only as a high + low pair (JSON parsers refuse lone ones).
            Some(0xd800..=0xdbff) if s.get(6) == Some(&b'\\') && s.get(7) == Some(&b'u') => {
                match hex4(&s[8..]) {
                    Some(0xdc00..=0xdfff) => 12,
                    _ => 0,
                }
            }
            Some(0xd800..=0xdfff) | None => 0,
            Some(_) => 6,
        },
        _ => 0,
    }
}

fn hex4(s: &[u8]) -> Option<u32> {
    let digits = std::str::from_utf8(s.get(..4)?).ok()?;
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

/// Length of the UTF-8 sequence at the start of `s` if it is valid, else 0.
fn utf8_len(s: &[u8]) -> usize {
    let want = match s[0] {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return 0,
    };
    if s.len() >= want && std::str::from_utf8(&s[..want]).is_ok() {
        want
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(b: &[u8]) -> String {
        let mut s = String::new();
        push_body(&mut s, b);
        s
    }

    fn parses_to(b: &[u8], want: &str) {
        let text = format!("\"{}\"", body(b));
        let v: String = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(v, want, "{text}");
    }

    #[test]
    fn valid_c_text_is_unchanged() {
        for s in [
            &b"starting cluster log"[..],
            b"hello \\\"cluster\\\" log",
            b"caf\\u00e9",
            b"tab\\there",
            "grüße".as_bytes(),
            b"root@pam",
        ] {
            assert_eq!(body(s).as_bytes(), s);
        }
    }

    #[test]
    fn what_would_break_json_is_escaped() {
        assert_eq!(body(b"a\"b"), "a\\\"b");
        assert_eq!(body(b"a\nb"), "a\\u000ab");
        assert_eq!(body(b"C:\\x"), "C:\\\\x");
        assert_eq!(body(b"end\\"), "end\\\\");
        assert_eq!(body(b"\\u12"), "\\\\u12");
        assert_eq!(body(b"\\ud800x"), "\\\\ud800x");
        assert_eq!(body(b"\\ud83d\\ude00"), "\\ud83d\\ude00");
        assert_eq!(body(b"\xff\xc3"), "??");
        parses_to(b"a\"b\nc\\x\x01", "a\"b\nc\\x\u{1}");
        parses_to(b"\\\"q\\\"", "\"q\"");
        parses_to(b"\x7f", "\u{7f}");
    }

    #[test]
    fn values_escape_every_backslash() {
        let mut s = String::new();
        push_escaped(&mut s, b"a\\n\"b\tc\xff");
        assert_eq!(s, "a\\\\n\\\"b\\u0009c?");
    }

    #[test]
    fn c_str_stops_at_nul() {
        assert_eq!(c_str(b"ab\0cd"), b"ab");
        assert_eq!(c_str(b"ab"), b"ab");
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_give_a_json_string(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let text = format!("\"{}\"", body(&b));
            proptest::prop_assert!(serde_json::from_str::<String>(&text).is_ok(), "{}", text);
        }
    }
}
