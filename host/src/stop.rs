//! Waiting that a stop cuts short: every backoff, pause and retry of a worker ends at once when
//! its pipeline stops, a partition is revoked, or the process shuts down.

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
}
