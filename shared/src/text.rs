//! Checks on free text every credential and upload field shares.

/// Free text we store or hash must not hold control characters: U+0000 cannot be
/// stored at all (PostgreSQL's `text` and `jsonb` refuse it, which would be a 500),
/// and the others only ever come from a broken or hostile client.
pub fn has_control_chars(text: &str) -> bool {
    if text.is_ascii() {
        // The common case, byte by byte: C0 controls and DEL.
        text.bytes().any(|b| b < 0x20 || b == 0x7f)
    } else {
        text.chars().any(char::is_control)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_found_in_ascii_and_in_any_text() {
        for c in ['\u{0}', '\u{1f}', '\u{7f}', '\u{80}', '\u{9f}'] {
            assert!(has_control_chars(&format!("ab{c}")), "{c:?}");
            assert!(has_control_chars(&format!("é{c}")), "{c:?} after é");
        }
        for text in ["abc ~", "é", "\u{a0}", "日本", ""] {
            assert!(!has_control_chars(text), "{text:?}");
        }
    }
}
