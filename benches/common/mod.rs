//! Helpers shared by the benchmarks that run against a broker.

/// An environment variable parsed as `T`, or `default` when it is unset or does not parse.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub use ackbar_tests::repo_root;
