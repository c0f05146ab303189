//! Waiting that a stop cuts short: every backoff, pause and retry of a worker ends at once when
//! its pipeline stops, a partition is revoked, or the process shuts down. Every
//! retry-with-backoff loop of the host is [`retry_until_stopped`].

use crate::policy::Backoff;
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Sleeps for `duration` unless `stop` is cancelled first (or already); `false` if it was.
pub(crate) async fn sleep_unless_stopped(stop: &CancellationToken, duration: Duration) -> bool {
    tokio::select! {
        biased;
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(duration) => true,
    }
}

/// Whether a stop cuts an attempt under way short, or only the waits between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempts {
    /// A stop drops the attempt under way (nothing it started is left half done).
    Interruptible,
    /// An attempt under way finishes (bounded by its own timeout): a write the broker may
    /// already have should be known to have landed before the worker lets go of its message.
    RunToEnd,
}

/// Runs `attempt` until it succeeds, and returns its value; `None` if `stop` came first. The
/// n-th failure is handed to `failed` with n, then the retry waits `backoff.delay(n)`.
/// `attempt` is given the number of failures so far (0 the first time).
pub(crate) async fn retry_until_stopped<T, E, F, Fut>(
    stop: &CancellationToken,
    backoff: &Backoff,
    attempts: Attempts,
    mut attempt: F,
    mut failed: impl FnMut(E, u32),
) -> Option<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut failures = 0u32;
    loop {
        let result = match attempts {
            Attempts::RunToEnd => attempt(failures).await,
            Attempts::Interruptible => tokio::select! {
                biased;
                _ = stop.cancelled() => return None,
                result = attempt(failures) => result,
            },
        };
        match result {
            Ok(value) => return Some(value),
            Err(error) => {
                failures += 1;
                failed(error, failures);
                if !sleep_unless_stopped(stop, backoff.delay(failures)).await {
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stop_cuts_the_sleep_short() {
        let stop = CancellationToken::new();
        assert!(sleep_unless_stopped(&stop, Duration::from_millis(1)).await);
        let stopper = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            stopper.cancel();
        });
        // Were the stop ignored, this would sleep the full minute and say it had.
        assert!(!sleep_unless_stopped(&stop, Duration::from_secs(60)).await);
        assert!(
            !sleep_unless_stopped(&stop, Duration::ZERO).await,
            "a stopped worker does not wait, even for nothing"
        );
    }

    fn no_wait() -> Backoff {
        Backoff {
            initial_ms: 0,
            max_ms: 0,
            multiplier: 1.0,
        }
    }

    #[tokio::test]
    async fn retries_until_an_attempt_succeeds_reporting_each_failure() {
        let stop = CancellationToken::new();
        let mut failures_seen = Vec::new();
        let mut given = Vec::new();
        let value = retry_until_stopped(
            &stop,
            &no_wait(),
            Attempts::RunToEnd,
            |failures| {
                given.push(failures);
                async move {
                    match failures {
                        0 | 1 => Err(format!("failure {}", failures + 1)),
                        _ => Ok("written"),
                    }
                }
            },
            |error, n| failures_seen.push((error, n)),
        )
        .await;
        assert_eq!(value, Some("written"));
        assert_eq!(given, [0, 1, 2]);
        assert_eq!(
            failures_seen,
            [("failure 1".to_string(), 1), ("failure 2".to_string(), 2)]
        );
    }

    #[tokio::test]
    async fn a_stop_ends_the_retries_and_an_interruptible_attempt() {
        let stop = CancellationToken::new();
        stop.cancel();
        let mut calls = 0;
        let failing = retry_until_stopped(
            &stop,
            &no_wait(),
            Attempts::RunToEnd,
            |_| {
                calls += 1;
                async { Err::<(), _>("down") }
            },
            |_, _| {},
        )
        .await;
        assert_eq!(
            (failing, calls),
            (None, 1),
            "an attempt runs, no retry waits"
        );
        let hanging = retry_until_stopped(
            &stop,
            &no_wait(),
            Attempts::Interruptible,
            |_| std::future::pending::<Result<(), ()>>(),
            |_, _| {},
        )
        .await;
        assert_eq!(hanging, None, "a stop drops an interruptible attempt");
    }
}
