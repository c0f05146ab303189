//! W3C Trace Context: the `traceparent` header a producer attaches so consumers join its trace.

/// The ids of a valid `traceparent` value (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent<'a> {
    /// 32 lowercase hex digits, not all zero: the trace the message belongs to.
    pub trace_id: &'a str,
    /// 16 lowercase hex digits, not all zero: the producer's span, parent of the consumer's.
    pub parent_id: &'a str,
}

/// Parses a `traceparent` header value; anything malformed (or all-zero ids) is `None`, as the
/// specification requires a receiver to ignore it.
pub fn parse_traceparent(value: &[u8]) -> Option<TraceParent<'_>> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let mut parts = value.split('-');
    let (version, trace_id, parent_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    let zero = |s: &str| s.bytes().all(|b| b == b'0');
    if !hex(version, 2) || version == "ff" || !hex(flags, 2) {
        return None;
    }
    // Version 00 has exactly four fields; later versions may append more.
    if version == "00" && parts.next().is_some() {
        return None;
    }
    if !hex(trace_id, 32) || !hex(parent_id, 16) || zero(trace_id) || zero(parent_id) {
        return None;
    }
    Some(TraceParent {
        trace_id,
        parent_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_specification_example() {
        let tp =
            parse_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(tp.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.parent_id, "00f067aa0ba902b7");
    }

    #[test]
    fn ignores_malformed_values() {
        for bad in [
            &b""[..],
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            b"\xff\xfe",
        ] {
            assert_eq!(
                parse_traceparent(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
