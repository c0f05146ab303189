//! A tenant's shared budget at run time: how many guest calls and unsettled messages all of its
//! pipelines may have at once. Waiting for the budget is the tenant's backpressure: its workers
//! stop reading, librdkafka's bounded prefetch queue fills, and fetching for those partitions
//! stops. Other tenants have their own budgets and never wait on this one.

use crate::config::TenantLimits;
use crate::plugin::GuestLogBudget;
use crate::token_bucket::TokenBucket;
use metrics::{gauge, Gauge};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, SemaphorePermit};
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
    guest_time: Option<Mutex<TokenBucket>>,
    /// Messages admitted.
    message_rate: Option<Mutex<TokenBucket>>,
    /// Guest log lines written to the host's log.
    pub guest_log: Arc<GuestLogBudget>,
}

fn bucket(rate: u64) -> Option<Mutex<TokenBucket>> {
    (rate > 0).then(|| Mutex::new(TokenBucket::new(rate as f64, Instant::now())))
}

/// Waits until `bucket` holds tokens again; `false` if stopped first.
async fn wait_for(bucket: &Option<Mutex<TokenBucket>>, stop: &CancellationToken) -> bool {
    let Some(bucket) = bucket else {
        return true;
    };
    loop {
        let wait = bucket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .wait_needed(Instant::now());
        if wait.is_zero() {
            return true;
        }
        if !crate::stop::sleep_unless_stopped(stop, wait).await {
            return false;
        }
    }
}

fn charge(bucket: &Option<Mutex<TokenBucket>>, amount: f64) {
    if let Some(bucket) = bucket {
        bucket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .charge(amount);
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
            guest_time: bucket(limits.guest_ms_per_sec),
            message_rate: bucket(limits.max_messages_per_sec),
            guest_log: Arc::new(GuestLogBudget::new(name, limits.log_lines_per_sec)),
        })
    }

    /// Waits for a guest-call slot; `None` if stopped first. The slot is freed on drop, and the
    /// time it was held is then charged to the tenant's guest time, however the call ended
    /// (also when its future was dropped mid-call).
    pub(crate) async fn call_slot(&self, stop: &CancellationToken) -> Option<CallSlot<'_>> {
        let permit = tokio::select! {
            biased;
            _ = stop.cancelled() => return None,
            permit = self.calls.acquire() => permit.expect("never closed"),
        };
        self.calls_gauge.increment(1);
        Some(CallSlot {
            _permit: permit,
            budget: self,
            started: Instant::now(),
        })
    }

    /// Waits while the tenant has used up its guest time (`guest_ms_per_sec`); `false` if
    /// stopped first.
    pub(crate) async fn wait_for_guest_time(&self, stop: &CancellationToken) -> bool {
        wait_for(&self.guest_time, stop).await
    }

    /// Charges a finished call's duration to the tenant's guest time (a [`CallSlot`] does, when
    /// dropped).
    pub(crate) fn charge_guest_time(&self, elapsed: Duration) {
        charge(&self.guest_time, elapsed.as_secs_f64() * 1000.0);
    }

    /// Waits until one more message may be in flight (and the tenant's message rate allows
    /// one more); `false` if stopped first. Each `true` must be paired with one
    /// [`message_done`](Self::message_done).
    pub(crate) async fn admit_message(&self, stop: &CancellationToken) -> bool {
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
    pub(crate) fn message_done(&self) {
        self.messages_done(1);
    }

    /// [`message_done`](Self::message_done) for `count` messages at once.
    pub(crate) fn messages_done(&self, count: usize) {
        self.in_flight.add_permits(count);
        self.in_flight_gauge.decrement(count as f64);
    }

    /// Room for one more message in flight right now, without waiting: `None` when the tenant's
    /// in-flight budget or message rate has none. Dropping the [`Admission`] gives the room
    /// back; [`Admission::taken`] keeps it for a message received.
    pub(crate) fn try_admit_message(&self) -> Option<Admission<'_>> {
        if let Some(rate) = &self.message_rate {
            let wait = rate
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .wait_needed(Instant::now());
            if !wait.is_zero() {
                return None;
            }
        }
        let permit = self.in_flight.try_acquire().ok()?;
        Some(Admission {
            budget: self,
            permit,
        })
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

/// A running guest call's share of the tenant's `max_instances`, and of its guest time.
pub(crate) struct CallSlot<'a> {
    _permit: SemaphorePermit<'a>,
    budget: &'a TenantBudget,
    started: Instant,
}

impl CallSlot<'_> {
    /// When the slot was taken: the call's start.
    pub fn started(&self) -> Instant {
        self.started
    }
}

impl Drop for CallSlot<'_> {
    fn drop(&mut self) {
        self.budget.calls_gauge.decrement(1);
        self.budget.charge_guest_time(self.started.elapsed());
    }
}

/// Room for one message in flight, held while the message is looked for.
pub(crate) struct Admission<'a> {
    budget: &'a TenantBudget,
    permit: SemaphorePermit<'a>,
}

impl Admission<'_> {
    /// A message came: it is in flight until [`TenantBudget::message_done`].
    pub fn taken(self) {
        self.permit.forget();
        charge(&self.budget.message_rate, 1.0);
        self.budget.in_flight_gauge.increment(1);
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

    #[tokio::test]
    async fn a_call_slot_charges_the_time_it_was_held_when_dropped() {
        let limits = TenantLimits {
            guest_ms_per_sec: 1,
            ..TenantLimits::default()
        };
        let budget = TenantBudget::new("t", limits);
        let stop = CancellationToken::new();
        let slot = budget.call_slot(&stop).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        // Dropped as a call future dropped mid-call drops it: the 30 ms are charged anyway.
        drop(slot);
        stop.cancel();
        assert!(
            !budget.wait_for_guest_time(&stop).await,
            "overdrawn by the time the slot was held"
        );
    }

    #[tokio::test]
    async fn an_exhausted_quota_waits_and_a_stop_ends_the_wait() {
        let limits = TenantLimits {
            guest_ms_per_sec: 100,
            ..TenantLimits::default()
        };
        let budget = TenantBudget::new("t", limits);
        let stop = CancellationToken::new();
        assert!(budget.wait_for_guest_time(&stop).await, "a full bucket");
        // Overdrawn by 10 s of quota: the wait ends only by the stop.
        budget.charge_guest_time(Duration::from_secs(1));
        stop.cancel();
        assert!(!budget.wait_for_guest_time(&stop).await);
        let unlimited = TenantBudget::new("u", TenantLimits::default());
        unlimited.charge_guest_time(Duration::from_secs(100));
        assert!(
            unlimited
                .wait_for_guest_time(&CancellationToken::new())
                .await
        );
    }
}
