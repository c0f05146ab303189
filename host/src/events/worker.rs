//! What a worker does around its handler calls: taking and finishing messages, reading from the
//! broker, batch calls, waits after traps, redeliveries and pauses.

use super::{Observers, Recorder};
use crate::offsets::{Completion, TopicPartition};
use std::time::Duration;

/// After this many nacks of one message, each further one is logged as a warning.
const REPEATED_FAILURE_WARN_AT: u32 = 3;

/// Messages entered a worker: each is in flight until its [`MessageDone`] or [`SettledRun`].
pub(crate) struct MessageTaken {
    pub(crate) count: usize,
}

impl MessageTaken {
    pub(crate) fn emit(self, to: &Recorder) {
        to.metrics.in_flight.increment(self.count as f64);
    }
}

/// A message left its worker; `settled` unless the worker stopped first (it is read again).
pub(crate) struct MessageDone<'a> {
    pub(crate) tp: &'a TopicPartition,
    pub(crate) offset: i64,
    pub(crate) settled: bool,
}

impl MessageDone<'_> {
    /// No longer in flight; a settled message no longer holds its partition back, whatever
    /// failed on the way to settling it.
    pub(crate) fn emit(self, to: &Recorder) {
        to.metrics.in_flight.decrement(1);
        if self.settled {
            to.health.settled(self.tp, self.offset);
        }
    }
}

/// Messages of one partition that settled one after another left their worker together.
pub(crate) struct SettledRun<'a> {
    pub(crate) tp: &'a TopicPartition,
    pub(crate) offsets: &'a [(i64, Completion)],
}

impl SettledRun<'_> {
    /// As a [`MessageDone`] for each, settled, in one pass.
    pub(crate) fn emit(self, to: &Recorder) {
        to.metrics.in_flight.decrement(self.offsets.len() as f64);
        to.health
            .settled_any(self.tp, self.offsets.iter().map(|&(offset, _)| offset));
    }
}

/// Reading from the broker worked.
pub(crate) struct Consumed;

impl Consumed {
    /// Ends an episode of failing reads.
    pub(crate) fn emit(self, to: &Recorder) {
        to.consume_faults.recovered();
    }
}

/// Reading from the broker failed (librdkafka retries by itself).
pub(crate) struct ConsumeFailed<'a> {
    pub(crate) error: &'a dyn std::fmt::Display,
}

impl ConsumeFailed<'_> {
    /// Logs the failure once per episode.
    pub(crate) fn emit(self, to: &Recorder) {
        to.consume_faults.fault(self.error);
    }
}

/// A `handle-batch` call took `taken` messages.
pub(crate) struct BatchCalled {
    pub(crate) taken: u64,
}

impl BatchCalled {
    pub(crate) fn emit(self, to: &Observers<'_>) {
        to.topic.batch_calls.increment(1);
        to.topic.batched_messages.increment(self.taken);
    }
}

/// `streak` calls in a row trapped: the next call waits `wait` first.
pub(crate) struct TrapCoolDown<'a> {
    pub(crate) tp: &'a TopicPartition,
    pub(crate) streak: u32,
    /// The tenant's `pause_after_traps`: the first wait is logged, the longer ones only counted.
    pub(crate) threshold: u32,
    pub(crate) wait: Duration,
}

impl TrapCoolDown<'_> {
    pub(crate) fn emit(self, to: &Observers<'_>) {
        to.topic.trap_pauses.increment(1);
        if self.streak == self.threshold {
            let r = to.recorder;
            r.in_span(|| tracing::warn!(
                partition = %self.tp,
                "{} calls in a row trapped: each next call waits (backoff, {} ms now) until one does not trap",
                self.streak, self.wait.as_millis()
            ));
        }
    }
}

/// A message did not settle and waits in its partition for its next delivery.
pub(crate) struct Redelivering<'a> {
    pub(crate) tp: &'a TopicPartition,
    pub(crate) offset: i64,
    pub(crate) attempt: u32,
}

impl Redelivering<'_> {
    /// Marks the partition stuck on the message; from the third attempt on, warns each time.
    pub(crate) fn emit(self, to: &Recorder) {
        to.health.failing(self.tp, self.offset, self.attempt);
        if self.attempt >= REPEATED_FAILURE_WARN_AT {
            to.in_span(|| tracing::warn!(
                partition = %self.tp, offset = self.offset, attempt = self.attempt,
                "message keeps failing; the partition waits for it (nothing after it is handled)"
            ));
        }
    }
}

/// A message used up `max_attempts` with no dead-letter topic: its partition stops on it.
pub(crate) struct Paused<'a> {
    pub(crate) tp: &'a TopicPartition,
    pub(crate) offset: i64,
    pub(crate) attempt: u32,
    pub(crate) reason: &'a str,
}

impl Paused<'_> {
    pub(crate) fn emit(self, to: &Recorder) {
        to.health.paused(self.tp, self.offset, self.attempt);
        to.metrics.paused.increment(1);
        to.in_span(|| tracing::error!(
            partition = %self.tp, offset = self.offset, attempt = self.attempt,
            "PARTITION PAUSED: {}; there is no dead_letter_topic, so nothing after this message \
             is handled until a new plugin version is loaded (hot reload or SIGHUP) or the pipeline \
             gets a dead_letter_topic", self.reason
        ));
    }
}

/// A paused partition goes on: a new plugin version arrived (`by_new_version`), or the worker
/// is stopping.
pub(crate) struct Resumed<'a> {
    pub(crate) tp: &'a TopicPartition,
    pub(crate) offset: i64,
    pub(crate) by_new_version: bool,
}

impl Resumed<'_> {
    pub(crate) fn emit(self, to: &Recorder) {
        to.metrics.paused.decrement(1);
        if self.by_new_version {
            to.in_span(|| tracing::info!(partition = %self.tp, offset = self.offset, "new plugin version: resuming the paused partition"));
        }
    }
}

/// The pipeline got partitions (a rebalance, or its manual assignment): it consumes.
pub(crate) struct PartitionsAssigned<'a> {
    pub(crate) partitions: &'a [TopicPartition],
}

impl PartitionsAssigned<'_> {
    pub(crate) fn emit(self, to: &Recorder) {
        to.health.joined();
        to.metrics
            .partitions_assigned
            .increment(self.partitions.len() as u64);
        let partitions: Vec<String> = self.partitions.iter().map(ToString::to_string).collect();
        to.in_span(|| tracing::info!(?partitions, "partitions assigned"));
    }
}

/// A rebalance took partitions away; their workers drained first.
pub(crate) struct PartitionsRevoked<'a> {
    pub(crate) partitions: &'a [TopicPartition],
}

impl PartitionsRevoked<'_> {
    /// A revoked partition is no longer stuck on anything here.
    pub(crate) fn emit(self, to: &Recorder) {
        to.metrics
            .partitions_revoked
            .increment(self.partitions.len() as u64);
        for tp in self.partitions {
            to.health.moving(tp);
        }
    }
}
