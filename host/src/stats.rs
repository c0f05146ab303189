//! A pipeline's counters since it started, for the periodic summary line and `ackbar demo`.

use crate::outcome::{CallEnd, Outcome};
use crate::policy::Action;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one pipeline (monotonic).
#[derive(Debug, Default)]
pub struct Stats {
    /// Deliveries handled; each redelivery counts again.
    pub messages: AtomicU64,
    /// Calls that returned `ok`, with or without a decision.
    pub ok: AtomicU64,
    /// Calls that returned a handler error (`retry` or `fatal`).
    pub errors: AtomicU64,
    /// Calls that trapped, of any [`TrapKind`](crate::outcome::TrapKind).
    pub traps: AtomicU64,
    /// Calls ended by `acker.interrupt`.
    pub interrupts: AtomicU64,
    /// Deliveries whose action was [`Action::Commit`].
    pub commit_actions: AtomicU64,
    /// Deliveries whose action was [`Action::Redeliver`].
    pub redeliver_actions: AtomicU64,
    /// Deliveries whose action was [`Action::Reject`].
    pub reject_actions: AtomicU64,
    /// Deliveries whose action was [`Action::Nothing`].
    pub nothing_actions: AtomicU64,
    /// Successful commit requests; 0 under `ACK_FIRST`, whose commits librdkafka makes.
    pub commits: AtomicU64,
    /// Failed commit requests, retried on the next tick.
    pub commit_errors: AtomicU64,
    /// Dead letters the broker acknowledged.
    pub dead_letters: AtomicU64,
    /// Failed dead-letter writes, each retried.
    pub dead_letter_errors: AtomicU64,
    /// Handler calls that took several messages at once (`handle-batch`).
    pub batch_calls: AtomicU64,
    /// Messages those calls took, handled or not.
    pub batched_messages: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Deliveries handled; each redelivery counts again.
    pub messages: u64,
    /// Calls that returned `ok`, with or without a decision.
    pub ok: u64,
    /// Calls that returned a handler error (`retry` or `fatal`).
    pub errors: u64,
    /// Calls that trapped, of any [`TrapKind`](crate::outcome::TrapKind).
    pub traps: u64,
    /// Calls ended by `acker.interrupt`.
    pub interrupts: u64,
    /// Deliveries per [`Action`]: what the policy did with their offsets.
    pub commit_actions: u64,
    /// Deliveries whose action was [`Action::Redeliver`].
    pub redeliver_actions: u64,
    /// Deliveries whose action was [`Action::Reject`].
    pub reject_actions: u64,
    /// Deliveries whose action was [`Action::Nothing`].
    pub nothing_actions: u64,
    /// Successful commit requests; 0 under `ACK_FIRST`, whose commits librdkafka makes.
    pub commits: u64,
    /// Failed commit requests, retried on the next tick.
    pub commit_errors: u64,
    /// Dead letters the broker acknowledged.
    pub dead_letters: u64,
    /// Failed dead-letter writes, each retried.
    pub dead_letter_errors: u64,
    /// Handler calls that took several messages at once (`handle-batch`).
    pub batch_calls: u64,
    /// Messages those calls took, handled or not.
    pub batched_messages: u64,
}

impl Stats {
    /// Counts one delivery: its outcome and its action. Only
    /// [`DeliveryEvent::emit`](crate::events::DeliveryEvent::emit) calls it, so each delivery
    /// counts once.
    pub fn record(&self, outcome: &Outcome, action: Action) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        let counter = match outcome.end {
            CallEnd::Returned(_) => &self.ok,
            CallEnd::Failed { .. } => &self.errors,
            CallEnd::Trapped { .. } => &self.traps,
            CallEnd::Interrupted(_) => &self.interrupts,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        match action {
            Action::Commit => &self.commit_actions,
            Action::Redeliver => &self.redeliver_actions,
            Action::Reject => &self.reject_actions,
            Action::Nothing => &self.nothing_actions,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// Reads every counter. Each is read on its own, so while messages flow the copy may be off by
    /// the deliveries being recorded (`messages` ahead of the outcome counters).
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            messages: get(&self.messages),
            ok: get(&self.ok),
            errors: get(&self.errors),
            traps: get(&self.traps),
            interrupts: get(&self.interrupts),
            commit_actions: get(&self.commit_actions),
            redeliver_actions: get(&self.redeliver_actions),
            reject_actions: get(&self.reject_actions),
            nothing_actions: get(&self.nothing_actions),
            commits: get(&self.commits),
            commit_errors: get(&self.commit_errors),
            dead_letters: get(&self.dead_letters),
            dead_letter_errors: get(&self.dead_letter_errors),
            batch_calls: get(&self.batch_calls),
            batched_messages: get(&self.batched_messages),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::CallEnd;

    #[test]
    fn stats_count_outcomes_and_actions() {
        let stats = Stats::default();
        stats.record(&Outcome::returned(None), Action::Commit);
        stats.record(
            &Outcome {
                explicit: None,
                end: CallEnd::Failed {
                    kind: crate::outcome::ErrorKind::Retry,
                    message: String::new(),
                },
            },
            Action::Redeliver,
        );
        let s = stats.snapshot();
        assert_eq!(
            (
                s.messages,
                s.ok,
                s.errors,
                s.commit_actions,
                s.redeliver_actions
            ),
            (2, 1, 1, 1, 1)
        );
    }
}
