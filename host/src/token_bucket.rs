//! A token bucket that holds at most one second of its rate: the shape of every per-second
//! allowance a tenant has (guest time, messages, guest log lines). Time is passed in, so the
//! arithmetic is tested without clocks.

use std::time::{Duration, Instant};

/// Tokens refill continuously at `rate` per second up to `rate`; a charge may overdraw the
/// bucket, and then nothing is admitted until it has refilled above zero.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    available: f64,
    refilled: Instant,
}

impl TokenBucket {
    /// A full bucket of `rate` tokens per second (`rate` > 0).
    pub fn new(rate: f64, now: Instant) -> Self {
        TokenBucket {
            rate,
            available: rate,
            refilled: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.available = (self.available + elapsed * self.rate).min(self.rate);
        self.refilled = now;
    }

    /// How long from `now` until the bucket holds tokens again; zero if it does now. Rounded up
    /// by a millisecond so that a wait of this long always ends with tokens.
    pub fn wait_needed(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.available > 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(-self.available / self.rate) + Duration::from_millis(1)
    }

    /// Takes `amount` tokens, overdrawing the bucket if it holds fewer.
    pub fn charge(&mut self, amount: f64) {
        self.available -= amount;
    }

    /// Takes `amount` tokens if the bucket holds them at `now`; otherwise takes nothing.
    pub fn try_take(&mut self, amount: f64, now: Instant) -> bool {
        self.refill(now);
        if self.available >= amount {
            self.available -= amount;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn an_overdrawn_bucket_waits_until_it_has_refilled_the_debt() {
        let t0 = Instant::now();
        // 100 guest-ms per second; a 300 ms call overdraws it by 200 ms: 2 s to pay back.
        let mut guest_ms = TokenBucket::new(100.0, t0);
        assert_eq!(guest_ms.wait_needed(t0), Duration::ZERO);
        guest_ms.charge(300.0);
        assert_eq!(guest_ms.wait_needed(t0), 2000 * MS + MS);
        assert_eq!(guest_ms.wait_needed(t0 + 1000 * MS), 1000 * MS + MS);
        assert_eq!(guest_ms.wait_needed(t0 + 2001 * MS), Duration::ZERO);
    }

    #[test]
    fn a_full_bucket_holds_one_second_of_its_rate() {
        let t0 = Instant::now();
        let mut messages = TokenBucket::new(10.0, t0);
        // Idle for a minute: still only 10 at once.
        let later = t0 + Duration::from_secs(60);
        let admitted = (0..30).filter(|_| messages.try_take(1.0, later)).count();
        assert_eq!(admitted, 10);
        // Then one per 100 ms.
        assert!(!messages.try_take(1.0, later + 99 * MS));
        assert!(messages.try_take(1.0, later + 100 * MS));
        assert!(!messages.try_take(1.0, later + 100 * MS));
    }
}
