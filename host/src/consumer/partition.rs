//! One partition's worker: takes the partition's messages from its queue and hands them to the
//! worker of the pipeline's ordering ([`sequential`] or [`concurrent`]), which sees each through
//! the plugin and the policy ([`verdict`]) and gives it back here, settled or not, to move the
//! partition's commit point.

use super::partition_queue::PartitionQueue;
use super::state::PipelineState;
use super::{concurrent, sequential};
use crate::bindings::Message;
use crate::config::Ordering;
use crate::events::{ConsumeFailed, Consumed, MessageDone, MessageTaken, SettledRun};
use crate::metrics::MessageMetrics;
use crate::offsets::{Completion, TopicPartition};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// What a partition worker needs from its consumer beyond its queue: the group metadata that
/// fences a transaction's offsets, and a rewind after an aborted transaction.
pub(crate) trait GroupMember: Send + Sync + 'static {
    /// The consumer's current group metadata (generation, member id).
    fn group_metadata(&self) -> Option<rdkafka::consumer::ConsumerGroupMetadata>;
    /// Makes `offset` the next message the partition's queue delivers. Blocks briefly.
    fn rewind(&self, tp: &TopicPartition, offset: i64) -> anyhow::Result<()>;
}

/// Runs the partition's worker for the pipeline's ordering until it is stopped or revoked.
pub(crate) async fn run(
    shared: Arc<PipelineState>,
    tp: TopicPartition,
    queue: PartitionQueue,
    member: Arc<dyn GroupMember>,
    stop: CancellationToken,
) {
    shared
        .recorder
        .in_span(|| tracing::debug!(partition = %tp, "partition worker started"));
    let metrics = Arc::new(shared.recorder.topic(&tp.topic));
    match shared.config.ordering {
        Ordering::Partition => {
            sequential::run(shared.clone(), tp.clone(), queue, member, stop, metrics).await
        }
        Ordering::Key | Ordering::Unordered => {
            concurrent::run(&shared, &tp, queue, &stop, metrics).await
        }
    }
    shared
        .recorder
        .in_span(|| tracing::debug!(partition = %tp, "partition worker stopped"));
}

/// What waiting for the next message gave.
pub(super) enum Next {
    /// A message, marked in flight.
    Message(Message),
    /// The open transaction is due (by age) before a message came.
    CommitDue,
    /// The worker is stopped, or the partition was revoked under it.
    Stopped,
}

/// Waits for the partition's next message and marks it in flight, or until `commit_due`.
pub(super) async fn next_message(
    shared: &PipelineState,
    tp: &TopicPartition,
    queue: &mut PartitionQueue,
    stop: &CancellationToken,
    commit_due: Option<Instant>,
) -> Next {
    let holds = &shared.recorder.health().holds;
    let due = async {
        match commit_due {
            Some(at) => tokio::time::sleep_until(at.into()).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(due);
    'admitted: loop {
        // An operator's hold: no new message until it is released (an open transaction still
        // commits when due).
        if holds.holds(tp) {
            tokio::select! {
                biased;
                released = holds.until_released(tp, stop) => if !released {
                    return Next::Stopped;
                },
                () = &mut due => return Next::CommitDue,
            }
        }
        // The tenant's in-flight budget: while it is used up, this partition is not read.
        if !shared.budget.admit_message(stop).await {
            return Next::Stopped;
        }
        loop {
            let received = tokio::select! {
                biased;
                _ = stop.cancelled() => {
                    shared.budget.message_done();
                    return Next::Stopped;
                }
                _ = &mut due => {
                    shared.budget.message_done();
                    return Next::CommitDue;
                }
                // A hold that comes while waiting applies to the next message already.
                () = holds.until_held(tp) => {
                    shared.budget.message_done();
                    continue 'admitted;
                }
                received = queue.recv(tp) => received,
            };
            match received {
                Ok(message) => {
                    let Some(message) = begin(shared, tp, message) else {
                        shared.budget.message_done();
                        return Next::Stopped;
                    };
                    return Next::Message(message);
                }
                Err(e) => {
                    ConsumeFailed {
                        error: &format_args!("{tp}: {e}"),
                    }
                    .emit(&shared.recorder);
                }
            }
        }
    }
}

/// A message received, marked in flight in the partition's progress. `None` if the partition
/// was revoked under the worker: the message is not ours to handle.
pub(super) fn begin(
    shared: &PipelineState,
    tp: &TopicPartition,
    message: Message,
) -> Option<Message> {
    begin_all(shared, tp, std::iter::once(message.offset)).then_some(message)
}

/// Messages taken together, marked in flight under one lock of the pipeline's progress. `false` if
/// the partition was revoked under the worker: none of them is ours to handle.
pub(super) fn begin_all(
    shared: &PipelineState,
    tp: &TopicPartition,
    offsets: impl ExactSizeIterator<Item = i64>,
) -> bool {
    Consumed.emit(&shared.recorder);
    let count = offsets.len();
    let begun = shared
        .partitions
        .with_progress(tp, |progress| {
            for offset in offsets {
                progress.begin(offset);
            }
        })
        .is_some();
    if begun {
        MessageTaken { count }.emit(&shared.recorder);
    }
    begun
}

/// [`finished`] for messages that settled one after another: the commit point moves once for
/// the run, under one lock, and the run's deliveries are added to the worker's series
/// (`metrics`) at once. Empties `run`.
pub(super) fn finished_run(
    shared: &PipelineState,
    tp: &TopicPartition,
    run: &mut Vec<(i64, Completion)>,
    metrics: &MessageMetrics,
) {
    metrics.finish_run();
    if run.is_empty() {
        return;
    }
    shared.budget.messages_done(run.len());
    shared.partitions.with_progress(tp, |progress| {
        for &(offset, how) in run.iter() {
            progress.complete(offset, how);
        }
    });
    SettledRun { tp, offsets: run }.emit(&shared.recorder);
    run.clear();
}

/// A message left the worker: settled (or handled) messages may move the commit point; one
/// that did not settle (stopped, or the host failed) stays uncommitted and is read again by
/// whoever owns the partition next. Returns whether it settled.
pub(super) fn finished(
    shared: &PipelineState,
    tp: &TopicPartition,
    offset: i64,
    settled: Option<Completion>,
) -> bool {
    shared.budget.message_done();
    if let Some(how) = settled {
        // A partition revoked meanwhile has no progress: the late settlement is dropped.
        shared
            .partitions
            .with_progress(tp, |progress| progress.complete(offset, how));
    }
    MessageDone {
        tp,
        offset,
        settled: settled.is_some(),
    }
    .emit(&shared.recorder);
    settled.is_some()
}
