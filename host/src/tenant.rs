//! A tenant's shared budget at run time: how many guest calls and unsettled messages all of its
//! pipelines may have at once. Waiting for the budget is the tenant's backpressure: its workers
//! stop reading, librdkafka's bounded prefetch queue fills, and fetching for those partitions
//! stops. Other tenants have their own budgets and never wait on this one.

use crate::config::TenantLimits;
use std::sync::{Arc, Mutex};
use std::time::Duration;
// Tokio's clock, so tests can run the quota on paused time.
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub struct TenantBudget {
    name: Arc<str>,
    limits: TenantLimits,
    calls: Semaphore,
    in_flight: Semaphore,
    guest_time: Option<Mutex<GuestTime>>,
}

/// A token bucket of guest-call time: refilled at `guest_ms_per_sec`, holding at most one
/// second's worth. A call may overdraw it (a call cannot be cut short for the quota, only by
/// its deadline); the next calls then wait until it is positive again.
struct GuestTime {
    available_ms: f64,
    refilled: Instant,
}

impl TenantBudget {
    pub fn new(name: &str, limits: TenantLimits) -> Arc<Self> {
        Arc::new(TenantBudget {
            name: Arc::from(name),
            limits,
            calls: Semaphore::new(limits.max_instances),
            in_flight: Semaphore::new(limits.max_in_flight),
            guest_time: (limits.guest_ms_per_sec > 0).then(|| {
                Mutex::new(GuestTime {
                    available_ms: limits.guest_ms_per_sec as f64,
                    refilled: Instant::now(),
                })
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn limits(&self) -> TenantLimits {
        self.limits
    }

    /// Waits for a guest-call slot; `None` if stopped first. The slot is freed on drop.
    pub async fn call_slot(&self, stop: &CancellationToken) -> Option<SemaphorePermit<'_>> {
        tokio::select! {
            biased;
            _ = stop.cancelled() => None,
            permit = self.calls.acquire() => Some(permit.expect("never closed")),
        }
    }

    /// Waits while the tenant has used up its guest time (`guest_ms_per_sec`); `false` if
    /// stopped first.
    pub async fn wait_for_guest_time(&self, stop: &CancellationToken) -> bool {
        let Some(bucket) = &self.guest_time else {
            return true;
        };
        let rate = self.limits.guest_ms_per_sec as f64;
        loop {
            let wait_ms = {
                let mut b = bucket.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let refill = now.duration_since(b.refilled).as_secs_f64() * rate;
                b.available_ms = (b.available_ms + refill).min(rate);
                b.refilled = now;
                if b.available_ms > 0.0 {
                    return true;
                }
                // Until the bucket is positive again, at 1 s per `rate` ms.
                -b.available_ms / rate * 1000.0 + 1.0
            };
            tokio::select! {
                biased;
                _ = stop.cancelled() => return false,
                _ = tokio::time::sleep(Duration::from_secs_f64(wait_ms / 1000.0)) => {}
            }
        }
    }

    /// Charges a finished call's duration to the tenant's guest time.
    pub fn charge_guest_time(&self, elapsed: Duration) {
        if let Some(bucket) = &self.guest_time {
            let mut b = bucket.lock().unwrap_or_else(|e| e.into_inner());
            b.available_ms -= elapsed.as_secs_f64() * 1000.0;
        }
    }

    /// Waits until one more message may be in flight; `false` if stopped first. Each `true`
    /// must be paired with one [`message_done`](Self::message_done).
    pub async fn admit_message(&self, stop: &CancellationToken) -> bool {
        tokio::select! {
            biased;
            _ = stop.cancelled() => false,
            permit = self.in_flight.acquire() => {
                permit.expect("never closed").forget();
                true
            }
        }
    }

    pub fn message_done(&self) {
        self.in_flight.add_permits(1);
    }

    /// Guest calls running now.
    pub fn calls_running(&self) -> usize {
        self.limits.max_instances - self.calls.available_permits()
    }

    /// Messages received and not yet settled.
    pub fn messages_in_flight(&self) -> usize {
        self.limits.max_in_flight - self.in_flight.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn budget_is_shared_and_returned() {
        let limits = TenantLimits {
            max_instances: 1,
            max_in_flight: 2,
            ..TenantLimits::default()
        };
        let budget = TenantBudget::new("t", limits);
        let stop = CancellationToken::new();
        assert!(budget.admit_message(&stop).await);
        assert!(budget.admit_message(&stop).await);
        assert_eq!(budget.messages_in_flight(), 2);
        let third = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            budget.admit_message(&stop),
        )
        .await;
        assert!(third.is_err(), "a third message waits");
        budget.message_done();
        assert!(budget.admit_message(&stop).await);

        let slot = budget.call_slot(&stop).await.unwrap();
        assert_eq!(budget.calls_running(), 1);
        stop.cancel();
        assert!(
            budget.call_slot(&stop).await.is_none(),
            "stopping ends the wait"
        );
        drop(slot);
        assert_eq!(budget.calls_running(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn guest_time_quota_delays_calls_after_an_overdraw() {
        let limits = TenantLimits {
            guest_ms_per_sec: 100,
            ..TenantLimits::default()
        };
        let budget = TenantBudget::new("t", limits);
        let stop = CancellationToken::new();
        let started = tokio::time::Instant::now();
        assert!(budget.wait_for_guest_time(&stop).await);
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "a full bucket lets the call run"
        );
        // A 300 ms call overdraws the 100 ms bucket by 200 ms: 2 s at 100 ms per second.
        budget.charge_guest_time(Duration::from_millis(300));
        assert!(budget.wait_for_guest_time(&stop).await);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(2) && waited < Duration::from_millis(2100),
            "{waited:?}"
        );
        let unlimited = TenantBudget::new("u", TenantLimits::default());
        unlimited.charge_guest_time(Duration::from_secs(100));
        assert!(unlimited.wait_for_guest_time(&stop).await);
    }
}
