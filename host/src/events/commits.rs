//! Offsets reaching the broker: at-least-once commits and exactly-once transactions.

use super::Recorder;
use crate::offsets::TopicPartition;
use crate::telemetry::spans;
use crate::transactions::Committed;

/// A partition's transactional producer is ready (its previous owner fenced).
pub(crate) struct TransactionsReady<'a> {
    pub(crate) tp: &'a TopicPartition,
    pub(crate) id: &'a str,
}

impl TransactionsReady<'_> {
    pub(crate) fn emit(self, to: &Recorder) {
        to.in_span(|| tracing::debug!(partition = %self.tp, id = self.id, "transactions ready"));
    }
}

/// A partition's transactional producer could not start; it is retried after the backoff.
pub(crate) struct TransactionsUnavailable<'a> {
    pub(crate) tp: &'a TopicPartition,
    pub(crate) error: &'a anyhow::Error,
}

impl TransactionsUnavailable<'_> {
    pub(crate) fn emit(self, to: &Recorder) {
        to.in_span(|| tracing::warn!(partition = %self.tp, "{:#}; retrying", self.error));
    }
}

/// The broker confirmed an offset commit request.
pub(crate) struct OffsetsCommitted<'a> {
    pub(crate) offsets: &'a [(TopicPartition, i64)],
    /// How long the commit request took.
    pub(crate) took: std::time::Duration,
}

impl OffsetsCommitted<'_> {
    /// Counts the commit, traces it, and ends an episode of failing commits.
    pub(crate) fn emit(self, to: &Recorder) {
        spans::commit(
            &to.tenant,
            &to.pipeline,
            to.group.as_deref(),
            self.offsets,
            self.took,
        );
        to.metrics.commits.increment(1);
        to.commit_faults.recovered();
        to.in_span(|| tracing::debug!(offsets = ?self.offsets, "committed"));
    }
}

/// An offset commit request failed; the next tick sends it again.
pub(crate) struct CommitFailed<'a> {
    pub(crate) error: &'a dyn std::fmt::Display,
}

impl CommitFailed<'_> {
    /// Counts the failure and logs it once per episode.
    pub(crate) fn emit(self, to: &Recorder) {
        to.metrics.commit_errors.increment(1);
        to.commit_faults
            .fault(&format_args!("{}; will retry", self.error));
    }
}

/// A partition's transaction committed: its outputs, dead letters and offset together.
pub(crate) struct TransactionCommitted<'a> {
    pub(crate) tp: &'a TopicPartition,
    pub(crate) committed: &'a Committed,
}

impl TransactionCommitted<'_> {
    /// Counts the transaction, its duration, the records it published, and the commit, and
    /// traces it.
    pub(crate) fn emit(self, to: &Recorder) {
        let committed = self.committed;
        spans::transaction(
            &to.tenant,
            &to.pipeline,
            to.group.as_deref(),
            self.tp,
            committed.messages as u64,
            committed
                .records
                .values()
                .map(|(records, _)| *records)
                .sum(),
            committed.took,
        );
        to.outputs.transactions_committed.increment(1);
        to.outputs
            .transaction_commit
            .record(committed.took.as_secs_f64());
        for (topic, (records, bytes)) in &committed.records {
            to.outputs.published(topic, *records, *bytes);
        }
        to.metrics.commits.increment(1);
        to.commit_faults.recovered();
        to.in_span(|| tracing::debug!(partition = %self.tp, messages = committed.messages, "transaction committed"));
    }
}

/// A partition's transaction was aborted; its messages from `rewind_to` are delivered again.
pub(crate) struct TransactionAborted<'a> {
    pub(crate) tp: &'a TopicPartition,
    pub(crate) rewind_to: i64,
    pub(crate) reason: &'a str,
    /// Aborts in a row, this one included.
    pub(crate) aborts: u32,
    /// The worker is leaving the partition: its next owner reads from the last commit.
    pub(crate) leaving: bool,
}

impl TransactionAborted<'_> {
    /// Counts the abort, logs it once per episode and, unless the worker is leaving, marks the
    /// partition stuck on its first uncommitted message.
    pub(crate) fn emit(self, to: &Recorder) {
        to.outputs.transactions_aborted.increment(1);
        to.commit_faults.fault(&format_args!(
            "{}: transaction aborted ({}); its messages from offset {} are delivered again",
            self.tp, self.reason, self.rewind_to
        ));
        if !self.leaving {
            to.health.failing(self.tp, self.rewind_to, self.aborts);
        }
    }
}

/// A partition's transactional producer failed for good (fenced, or a fatal error).
pub(crate) struct TransactionFailed<'a> {
    pub(crate) tp: &'a TopicPartition,
    pub(crate) reason: &'a str,
    /// The worker is leaving the partition, so this is expected: its next owner handles the
    /// transaction's messages again. Otherwise the pipeline crashes (and its supervisor logs why).
    pub(crate) leaving: bool,
}

impl TransactionFailed<'_> {
    /// Counts the transaction as aborted, and logs a failure on leaving.
    pub(crate) fn emit(self, to: &Recorder) {
        to.outputs.transactions_aborted.increment(1);
        if self.leaving {
            to.in_span(|| tracing::info!(partition = %self.tp, "transaction not committed on leaving the partition ({}); its next owner handles those messages again", self.reason));
        }
    }
}
