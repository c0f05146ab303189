//! Helpers shared by the benchmarks.

// Each benchmark uses part of this module.
#![allow(dead_code, unused_imports)]

/// An environment variable parsed as `T`, or `default` when it is unset or does not parse.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub use ackbar_tests::repo_root;

/// The size of the end-to-end benchmark's orders.
pub const PAYLOAD_BYTES: usize = 1024;

/// Order `i` as JSON, padded to [`PAYLOAD_BYTES`]; every 20th order's warehouse is offline when
/// `failing` (5%: under NACK_ON_ERROR the `orders` handler fails it twice, then it succeeds).
pub fn order(i: usize, failing: bool) -> Vec<u8> {
    let warehouse = if failing && i.is_multiple_of(20) {
        "offline"
    } else {
        "north"
    };
    let head =
        format!(r#"{{"id":"o{i}","item":"book","quantity":2,"warehouse":"{warehouse}","note":""#);
    let pad = PAYLOAD_BYTES.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad)).into_bytes()
}
