//! Commits: the at-least-once commit ticker of a pipeline, and one partition's exactly-once
//! transactions (start, commit, abort and rewind).

use super::partition::GroupMember;
use super::rebalance::PipelineConsumer;
use super::state::PipelineState;
use crate::events::{
    TransactionAborted, TransactionCommitted, TransactionFailed, TransactionsReady,
    TransactionsUnavailable,
};
use crate::offsets::TopicPartition;
use crate::stop::{retry_until_stopped, sleep_unless_stopped, Attempts};
use crate::transactions::{CommitError, PartitionTransactions};
use std::sync::atomic::{self, AtomicU32};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Every `commit_interval`, commits the settled offsets that moved, in one request, on a
/// blocking thread: message handling never waits for a commit.
pub(super) async fn ticker(shared: Arc<PipelineState>, consumer: Arc<PipelineConsumer>) {
    let mut interval = tokio::time::interval(shared.config.commit_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            _ = interval.tick() => {
                let (shared, consumer) = (shared.clone(), consumer.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    shared.commit(&*consumer, None);
                    shared.publish_counters();
                })
                .await;
            }
        }
    }
}

/// Starts the partition's transactional producer (fencing its previous owner), retrying with the
/// pipeline's backoff while the broker cannot; `None` if stopped first.
pub(super) async fn start_transactions(
    shared: &PipelineState,
    tp: &TopicPartition,
    stop: &CancellationToken,
) -> Option<PartitionTransactions> {
    let recorder = &shared.recorder;
    let transactions = retry_until_stopped(
        stop,
        &shared.config.backoff,
        Attempts::Interruptible,
        |_| PartitionTransactions::start(&shared.config, &shared.bootstrap, tp),
        |error, _| TransactionsUnavailable { tp, error: &error }.emit(recorder),
    )
    .await?;
    TransactionsReady {
        tp,
        id: transactions.id(),
    }
    .emit(recorder);
    Some(transactions)
}

/// Commits a partition's open transaction and handles what a commit can end in.
pub(super) struct TransactionCommitter<'a> {
    pub(super) shared: &'a PipelineState,
    pub(super) tp: &'a TopicPartition,
    pub(super) transactions: &'a PartitionTransactions,
    pub(super) member: Arc<dyn GroupMember>,
    pub(super) stop: &'a CancellationToken,
    pub(super) aborts_in_a_row: AtomicU32,
}

/// What a transaction commit left the worker to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    /// Committed (or nothing was open): go on.
    Committed,
    /// Aborted, and the partition rewound to its first message: read on from there.
    Rewound,
    /// The producer was fenced or failed for good, or the worker is stopping.
    Stop,
}

impl TransactionCommitter<'_> {
    /// Commits the open transaction, if any. After an abort the partition is rewound to the
    /// transaction's first message (after the pipeline's backoff), so its messages are delivered
    /// again.
    pub(super) async fn commit(&self) -> Flow {
        let (shared, tp) = (self.shared, self.tp);
        let recorder = &shared.recorder;
        match self.transactions.commit(self.member.group_metadata()).await {
            Ok(None) => Flow::Committed,
            Ok(Some(committed)) => {
                self.aborts_in_a_row.store(0, atomic::Ordering::Relaxed);
                TransactionCommitted {
                    tp,
                    committed: &committed,
                }
                .emit(recorder);
                Flow::Committed
            }
            Err(CommitError::Aborted { rewind_to, reason }) => {
                let aborts = self.aborts_in_a_row.fetch_add(1, atomic::Ordering::Relaxed) + 1;
                let leaving = self.stop.is_cancelled();
                TransactionAborted {
                    tp,
                    rewind_to,
                    reason: &reason,
                    aborts,
                    leaving,
                }
                .emit(recorder);
                if leaving {
                    // Its next owner reads from the last commit.
                    return Flow::Stop;
                }
                let wait = shared.config.backoff.delay(aborts);
                if !sleep_unless_stopped(self.stop, wait).await {
                    return Flow::Stop;
                }
                // A seek waits for the broker: not on an async worker.
                let (member, at) = (self.member.clone(), tp.clone());
                let rewound = tokio::task::spawn_blocking(move || member.rewind(&at, rewind_to))
                    .await
                    .unwrap_or_else(|e| Err(anyhow::anyhow!("the seek thread failed: {e}")));
                if let Err(e) = rewound {
                    shared.crash(format!(
                        "partition {tp}: cannot rewind to offset {rewind_to} after an aborted transaction: {e:#}"
                    ));
                    return Flow::Stop;
                }
                Flow::Rewound
            }
            Err(CommitError::Fatal(reason)) => {
                let leaving = self.stop.is_cancelled();
                TransactionFailed {
                    tp,
                    reason: &reason,
                    leaving,
                }
                .emit(recorder);
                if !leaving {
                    shared.crash(format!(
                        "partition {tp}: transactional producer {}: {reason}",
                        self.transactions.id()
                    ));
                }
                Flow::Stop
            }
        }
    }
}
