//! A pipeline's totals since it started, for the periodic summary line, `ackbar demo` and the
//! tests. Nothing adds to them directly: each is fed by the Prometheus counter of the same
//! meaning (`metrics.rs` builds those counters with `tallied`), so one increment feeds both.

use ::metrics::{Counter, CounterFn};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One total, shared with the counters that add to it.
pub(crate) type Total = Arc<AtomicU64>;

/// A Prometheus series that also adds to one of the pipeline's totals: one increment feeds
/// both, so the summary line and `/metrics` cannot disagree.
struct Tallied {
    series: Counter,
    total: Total,
}

impl CounterFn for Tallied {
    fn increment(&self, value: u64) {
        self.series.increment(value);
        self.total.fetch_add(value, Ordering::Relaxed);
    }

    /// Tallied counters are only ever incremented: a total adds up several series, so one
    /// series' absolute value says nothing about it. Only the series is set.
    fn absolute(&self, value: u64) {
        debug_assert!(false, "a tallied counter is set absolutely");
        self.series.absolute(value);
    }
}

/// `series`, also counted in `total`.
pub(crate) fn tallied(series: Counter, total: &Total) -> Counter {
    Counter::from_arc(Arc::new(Tallied {
        series,
        total: total.clone(),
    }))
}

/// Totals of one pipeline (monotonic), over all its topics.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) ok: Total,
    pub(crate) errors: Total,
    pub(crate) traps: Total,
    pub(crate) interrupts: Total,
    pub(crate) commit_actions: Total,
    pub(crate) redeliver_actions: Total,
    pub(crate) reject_actions: Total,
    pub(crate) nothing_actions: Total,
    pub(crate) commits: Total,
    pub(crate) commit_errors: Total,
    pub(crate) dead_letters: Total,
    pub(crate) dead_letter_errors: Total,
    pub(crate) batch_calls: Total,
    pub(crate) batched_messages: Total,
    pub(crate) partitions_assigned: Total,
    pub(crate) partitions_revoked: Total,
}

/// A point-in-time copy of `Stats`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
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
    /// Deliveries per `Action`: what the policy did with their offsets.
    pub commit_actions: u64,
    /// Deliveries whose action was `Action::Redeliver`.
    pub redeliver_actions: u64,
    /// Deliveries whose action was `Action::Reject`.
    pub reject_actions: u64,
    /// Deliveries whose action was `Action::Nothing`.
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
    /// Partitions the group gave the pipeline, one per partition per rebalance.
    pub partitions_assigned: u64,
    /// Partitions a rebalance took away.
    pub partitions_revoked: u64,
}

impl Stats {
    /// Reads every total. Each is read on its own, so while messages flow the copy may be off by
    /// the deliveries being recorded.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &Total| c.load(Ordering::Relaxed);
        let (ok, errors, traps, interrupts) = (
            get(&self.ok),
            get(&self.errors),
            get(&self.traps),
            get(&self.interrupts),
        );
        StatsSnapshot {
            messages: ok + errors + traps + interrupts,
            ok,
            errors,
            traps,
            interrupts,
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
            partitions_assigned: get(&self.partitions_assigned),
            partitions_revoked: get(&self.partitions_revoked),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::metrics::PipelineMetrics;
    use crate::outcome::{CallEnd, ErrorKind, Outcome};
    use crate::policy::Action;
    use std::time::Duration;

    fn retryable_error() -> Outcome {
        Outcome {
            explicit: None,
            end: CallEnd::Failed {
                kind: ErrorKind::Retry,
                message: String::new(),
            },
        }
    }

    /// The totals are the counters' own: recording a delivery in a topic's series moves them.
    #[test]
    fn stats_read_the_counters_of_every_topic() {
        let pipeline = PipelineMetrics::new("shop", "orders");
        let (orders, returns) = (
            pipeline.message_metrics("orders"),
            pipeline.message_metrics("returns"),
        );
        orders.record(&Outcome::returned(None), Action::Commit, Duration::ZERO);
        let failed = retryable_error();
        returns.record(&failed, Action::Redeliver, Duration::ZERO);
        pipeline.commits.increment(1);
        let s = pipeline.stats().snapshot();
        assert_eq!(
            (
                s.messages,
                s.ok,
                s.errors,
                s.commit_actions,
                s.redeliver_actions,
                s.commits
            ),
            (2, 1, 1, 1, 1, 1)
        );
    }

    /// A batch's deliveries that returned and committed count once their run is finished (or
    /// the worker's series are dropped); any other counts at once.
    #[test]
    fn a_runs_deliveries_count_when_the_run_is_finished() {
        let pipeline = PipelineMetrics::new("shop", "orders");
        let orders = pipeline.message_metrics("orders");
        let counted = || {
            let s = pipeline.stats().snapshot();
            (s.ok, s.commit_actions, s.errors, s.redeliver_actions)
        };
        for _ in 0..3 {
            orders.record_in_run(&Outcome::returned(None), Action::Commit, Duration::ZERO);
        }
        let failed = retryable_error();
        orders.record_in_run(&failed, Action::Redeliver, Duration::ZERO);
        assert_eq!(counted(), (0, 0, 1, 1));
        orders.finish_run();
        assert_eq!(counted(), (3, 3, 1, 1));
        orders.finish_run();
        assert_eq!(counted(), (3, 3, 1, 1), "counted once");
        orders.record_in_run(&Outcome::returned(None), Action::Commit, Duration::ZERO);
        drop(orders);
        assert_eq!(counted(), (4, 4, 1, 1));
    }
}
