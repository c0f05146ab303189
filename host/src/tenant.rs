//! A tenant's shared budget at run time: how many guest calls and unsettled messages all of its
//! pipelines may have at once. Waiting for the budget is the tenant's backpressure: its workers
//! stop reading, librdkafka's bounded prefetch queue fills, and fetching for those partitions
//! stops. Other tenants have their own budgets and never wait on this one.

use crate::config::TenantLimits;
use crate::plugin::GuestLogBudget;
use std::sync::{Arc, Mutex};
use std::time::Duration;
// Tokio's clock, so tests can run the quota on paused time.
use metrics::{gauge, Gauge};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One tenant's run-time budget, shared by all of its pipelines: guest calls at once
/// (`max_instances`), unsettled messages (`max_in_flight`), guest time and messages per second,
/// and guest log lines.
pub struct TenantBudget {
    limits: TenantLimits,
    calls: Semaphore,
    in_flight: Semaphore,
    calls_gauge: Gauge,
    in_flight_gauge: Gauge,
    /// Milliseconds of guest-call time.
    guest_time: Option<Mutex<Bucket>>,
    /// Messages admitted.
    message_rate: Option<Mutex<Bucket>>,
    /// Guest log lines written to the host's log.
    pub guest_log: Arc<GuestLogBudget>,
}

/// A token bucket refilled at `rate` units per second, holding at most one second's worth.
/// A charge may overdraw it (a call cannot be cut short for the quota, only by its deadline);
/// whoever waits next waits until it is positive again.
struct Bucket {
    rate: f64,
    available: f64,
    refilled: Instant,
}

impl Bucket {
    fn new(rate: u64) -> Option<Mutex<Bucket>> {
        (rate > 0).then(|| {
            Mutex::new(Bucket {
                rate: rate as f64,
                available: rate as f64,
                refilled: Instant::now(),
            })
        })
    }

    /// How long until the bucket is positive; zero if it is now.
    fn wait_needed(&mut self) -> Duration {
        let now = Instant::now();
        let refill = now.duration_since(self.refilled).as_secs_f64() * self.rate;
        self.available = (self.available + refill).min(self.rate);
        self.refilled = now;
        if self.available > 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(-self.available / self.rate) + Duration::from_millis(1)
    }
}

/// Waits until `bucket` (if any) is positive; `false` if stopped first.
async fn wait_for(bucket: &Option<Mutex<Bucket>>, stop: &CancellationToken) -> bool {
    let Some(bucket) = bucket else {
        return true;
    };
    loop {
        let wait = bucket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .wait_needed();
        if wait.is_zero() {
            return true;
        }
        tokio::select! {
            biased;
            _ = stop.cancelled() => return false,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

fn charge(bucket: &Option<Mutex<Bucket>>, amount: f64) {
    if let Some(bucket) = bucket {
        bucket.lock().unwrap_or_else(|e| e.into_inner()).available -= amount;
    }
}

impl TenantBudget {
    /// The budget of tenant `name` (the label of its gauges) under `limits`; a rate of 0 is
    /// unlimited.
    pub fn new(name: &str, limits: TenantLimits) -> Arc<Self> {
        Arc::new(TenantBudget {
            limits,
            calls: Semaphore::new(limits.max_instances),
            in_flight: Semaphore::new(limits.max_in_flight),
            calls_gauge: gauge!("ackbar_tenant_calls_running", "tenant" => name.to_string()),
            in_flight_gauge: gauge!("ackbar_tenant_in_flight", "tenant" => name.to_string()),
            guest_time: Bucket::new(limits.guest_ms_per_sec),
            message_rate: Bucket::new(limits.max_messages_per_sec),
            guest_log: Arc::new(GuestLogBudget::new(name, limits.log_lines_per_sec)),
        })
    }

    /// Waits for a guest-call slot; `None` if stopped first. The slot is freed on drop.
    pub async fn call_slot(&self, stop: &CancellationToken) -> Option<CallSlot<'_>> {
        let permit = tokio::select! {
            biased;
            _ = stop.cancelled() => return None,
            permit = self.calls.acquire() => permit.expect("never closed"),
        };
        self.calls_gauge.increment(1);
        Some(CallSlot {
            _permit: permit,
            gauge: &self.calls_gauge,
        })
    }

    /// Waits while the tenant has used up its guest time (`guest_ms_per_sec`); `false` if
    /// stopped first.
    pub async fn wait_for_guest_time(&self, stop: &CancellationToken) -> bool {
        wait_for(&self.guest_time, stop).await
    }

    /// Charges a finished call's duration to the tenant's guest time.
    pub fn charge_guest_time(&self, elapsed: Duration) {
        charge(&self.guest_time, elapsed.as_secs_f64() * 1000.0);
    }

    /// Waits until one more message may be in flight (and the tenant's message rate allows
    /// one more); `false` if stopped first. Each `true` must be paired with one
    /// [`message_done`](Self::message_done).
    pub async fn admit_message(&self, stop: &CancellationToken) -> bool {
        if !wait_for(&self.message_rate, stop).await {
            return false;
        }
        charge(&self.message_rate, 1.0);
        tokio::select! {
            biased;
            _ = stop.cancelled() => false,
            permit = self.in_flight.acquire() => {
                permit.expect("never closed").forget();
                self.in_flight_gauge.increment(1);
                true
            }
        }
    }

    /// Gives back the place of one message admitted by [`admit_message`](Self::admit_message):
    /// exactly once per admitted message, settled or not.
    pub fn message_done(&self) {
        self.in_flight.add_permits(1);
        self.in_flight_gauge.decrement(1);
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

/// A running guest call's share of the tenant's `max_instances`.
pub struct CallSlot<'a> {
    _permit: SemaphorePermit<'a>,
    gauge: &'a Gauge,
}

impl Drop for CallSlot<'_> {
    fn drop(&mut self) {
        self.gauge.decrement(1);
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
    async fn guest_time_and_message_rate_quotas_delay_work() {
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
        let limited = TenantBudget::new(
            "r",
            TenantLimits {
                max_messages_per_sec: 10,
                ..TenantLimits::default()
            },
        );
        let started = tokio::time::Instant::now();
        for _ in 0..30 {
            assert!(limited.admit_message(&stop).await);
            limited.message_done();
        }
        // 10 at once (the bucket holds a second's worth), then one each 100 ms.
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(1890) && waited < Duration::from_millis(2000),
            "{waited:?}"
        );
        let unlimited = TenantBudget::new("u", TenantLimits::default());
        unlimited.charge_guest_time(Duration::from_secs(100));
        assert!(unlimited.wait_for_guest_time(&stop).await);
    }
}
