//! Text the host makes of bytes: cut to a byte budget on character boundaries (what guests
//! print and send), and hex (content hashes).

/// Longest trap detail or guest error text kept in a report.
pub const MAX_REPORT_TEXT: usize = 2048;

/// `bytes` in lower-case hex, two digits each.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]])
        .map(char::from)
        .collect()
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The last `max` bytes of `text` at most, from a character boundary: what a guest printed
/// just before it died (a panic message comes last) is the part worth keeping.
pub fn keep_end(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_text_keeps_the_start_of_a_message_and_the_end_of_guest_output() {
        let output = format!("{}\npanicked: the reason", "é".repeat(3000));
        let kept = keep_end(&output, 2048);
        assert!(kept.len() <= 2048 && kept.ends_with("panicked: the reason"));
        assert!(kept.starts_with('é'), "cut on a character boundary");
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(keep_end("short", 2048), "short");
    }

    #[test]
    fn hex_is_two_lower_case_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(hex(&[]), "");
    }
}
