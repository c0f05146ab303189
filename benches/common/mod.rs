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

/// `fetch.wait.max.ms` for the consumers whose rate a benchmark measures. A run drains a backlog
/// and ends at its last message: the first partition to reach its end long-polls the broker for
/// this long in librdkafka's one fetch to that broker, which holds back refetching the partitions
/// still being read. At librdkafka's 500 ms that adds up to half a second to some runs and not
/// others. Lowered for the benchmarks only: in Ackbar it would make every idle consumer fetch
/// 50 times as often.
pub const BENCH_FETCH_WAIT_MAX_MS: &str = "10";

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
