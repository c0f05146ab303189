//! Cutting text to a byte budget on character boundaries, for what guests print and send.

/// Longest trap detail or guest error text kept in a report.
pub const MAX_REPORT_TEXT: usize = 2048;

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
}
