//! The sequential worker (`ordering = "partition"`): one message of the partition at a time.

use super::batch_run::BatchRun;
use super::commits::{start_transactions, Flow, TransactionCommitter};
use super::handler_call::call_context;
use super::handler_call::HandlerCall;
use super::partition::{begin_all, finished, finished_run, next_message, GroupMember, Next};
use super::partition_queue::{PartitionQueue, Taken};
use super::state::PipelineState;
use super::verdict::{confirm_write, settled_outright, Abandoned, Delivery, Done};
use crate::bindings::MessageFields;
use crate::config::DeliveryGuarantee;
use crate::events::ConsumeFailed;
use crate::metrics::MessageMetrics;
use crate::offsets::{Completion, TopicPartition};
use crate::tenant::Admission;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// `ordering = "partition"`: one message at a time, in offset order. A batch call takes the
/// messages already waiting, and the worker sees them through one by one as the guest finishes
/// each; exactly once, settled messages commit in the partition's transactions.
pub(super) async fn run(
    shared: Arc<PipelineState>,
    tp: TopicPartition,
    mut queue: PartitionQueue,
    member: Arc<dyn GroupMember>,
    stop: CancellationToken,
    metrics: Arc<MessageMetrics>,
) {
    let transactions = match shared.config.delivery {
        DeliveryGuarantee::AtLeastOnce => None,
        DeliveryGuarantee::ExactlyOnce => match start_transactions(&shared, &tp, &stop).await {
            Some(t) => Some(t),
            None => return,
        },
    };
    let committer = transactions.as_ref().map(|t| TransactionCommitter {
        shared: &shared,
        tp: &tp,
        transactions: t,
        member: member.clone(),
        stop: &stop,
        aborts_in_a_row: AtomicU32::new(0),
    });
    let trap_streak = AtomicU32::new(0);
    let context = call_context(&shared, &tp);
    // At least once, outputs are confirmed by the broker on tasks of their own while the worker
    // goes on; a message's offset is committed only after its outputs are written. While one of
    // those writes is failing (retried), the partition takes no new message.
    let mut writes = JoinSet::new();
    let (failing_writes, mut failing_watch) = watch::channel(0u32);
    let failing_writes = Arc::new(failing_writes);
    // A batch call under way: the worker sees its messages through in order, each as soon as
    // the guest has finished it, before the queue is read again.
    let mut batch: Option<BatchRun> = None;
    // At least once, a batch's messages that settle one after another move the commit point
    // together: the run is finished before anything that can wait (the guest, a redelivery, a
    // write), so a commit never lags behind what settled by more than that. Exactly once,
    // each settles into the transaction as it comes.
    let mut settled_run: Vec<(i64, Completion)> = Vec::new();
    let runs_settle = transactions.is_none();
    loop {
        let recovered = if stop.is_cancelled() {
            false
        } else if *failing_watch.borrow() == 0 {
            true
        } else {
            // Waits for failing writes to recover: the run finishes first.
            finished_run(&shared, &tp, &mut settled_run, &metrics);
            tokio::select! {
                biased;
                _ = stop.cancelled() => false,
                recovered = failing_watch.wait_for(|failing| *failing == 0) => recovered.is_ok(),
            }
        };
        // Stopping still settles what a batch call under way handles, as a single call in
        // progress would be: no further message of it starts.
        if !recovered && batch.is_none() {
            break;
        }
        let delivery = Delivery {
            call: HandlerCall::new(&shared, &tp, &metrics, &stop, &trap_streak, &context),
            transactions: committer.as_ref(),
            pipeline_writes: true,
        };
        let handler = delivery.call;
        let next = match &mut batch {
            Some(run) => {
                if run.would_wait() {
                    finished_run(&shared, &tp, &mut settled_run, &metrics);
                }
                run.next(&handler).await
            }
            None => None,
        };
        let (taken, first_call) = match next {
            Some(next) => next,
            None if batch.take().is_some() => {
                finished_run(&shared, &tp, &mut settled_run, &metrics);
                continue;
            }
            None => {
                let commit_due = transactions.as_ref().and_then(|t| t.due_at());
                let message = match next_message(&shared, &tp, &mut queue, &stop, commit_due).await
                {
                    Next::Message(message) => message,
                    Next::CommitDue => {
                        if let Some(c) = &committer {
                            if c.commit().await == Flow::Stop {
                                break;
                            }
                        }
                        continue;
                    }
                    Next::Stopped => break,
                };
                let pool = shared.plugin.for_partition(tp.partition);
                if !pool.batches() || shared.config.max_batch == 1 {
                    (Taken::Copied(message), None)
                } else {
                    let mut messages = vec![Taken::Copied(message)];
                    take_waiting(&shared, &tp, &mut queue, &mut messages);
                    if messages.len() == 1 {
                        (messages.pop().expect("one message"), None)
                    } else {
                        if !handler.cool_down_after_traps().await {
                            for message in &messages {
                                finished(&shared, &tp, message.offset(), None);
                            }
                            break;
                        }
                        batch = Some(BatchRun::start(&handler, pool, messages));
                        continue;
                    }
                }
            }
        };
        let offset = taken.offset();
        // A message whose first call settled it outright needs nothing more: not even a copy
        // of its own. Any other waits (for a call, a redelivery, a write) once the run is out.
        let settled = match first_call.as_ref().and_then(settled_outright) {
            Some(how) => {
                // Its spans end now, and librdkafka gets its message back.
                drop((taken, first_call));
                Ok(delivery.settled(offset, how))
            }
            None => {
                finished_run(&shared, &tp, &mut settled_run, &metrics);
                // It may wait: the batch's messages still held are copied out, so that a pause
                // or a backoff does not hold librdkafka's fetch buffers, which its prefetch
                // bound no longer counts.
                if let Some(run) = &mut batch {
                    run.copy_out_held(&tp);
                }
                let message = taken.into_message(&tp);
                delivery.until_settled(message, first_call).await
            }
        };
        if let Ok(Done { how, write: None }) = &settled {
            if runs_settle && batch.is_some() {
                settled_run.push((offset, *how));
                continue;
            }
        }
        finished_run(&shared, &tp, &mut settled_run, &metrics);
        if let Ok(Done {
            how,
            write: Some(pending),
        }) = settled
        {
            let (shared, tp, stop, failing) = (
                shared.clone(),
                tp.clone(),
                stop.clone(),
                failing_writes.clone(),
            );
            writes.spawn(async move {
                let written = confirm_write(&shared, &tp, offset, pending, &failing, &stop).await;
                finished(&shared, &tp, offset, written.then_some(how));
            });
            while writes.try_join_next().is_some() {}
            continue;
        }
        let rewound = matches!(settled, Err(Abandoned::Rewound));
        if rewound {
            release(&shared, &tp, batch.take());
            queue.forget_popped();
        }
        if !finished(&shared, &tp, offset, settled.ok().map(|d| d.how)) && !rewound {
            break;
        }
        if let Some(c) = &committer {
            if c.transactions.full() {
                match c.commit().await {
                    Flow::Stop => break,
                    Flow::Rewound => {
                        release(&shared, &tp, batch.take());
                        queue.forget_popped();
                    }
                    Flow::Committed => {}
                }
            }
        }
    }
    finished_run(&shared, &tp, &mut settled_run, &metrics);
    release(&shared, &tp, batch.take());
    // Revoked, stopping or shutting down: writes under way finish (their retries stop), and
    // what settled commits with its outputs.
    while writes.join_next().await.is_some() {}
    if let Some(c) = &committer {
        c.commit().await;
    }
}

/// Lets go of the messages a batch took that the worker has not seen through: they stay
/// uncommitted, for the next owner or, after a rewind, for the queue to deliver again.
pub(super) fn release(shared: &PipelineState, tp: &TopicPartition, batch: Option<BatchRun>) {
    for offset in batch.into_iter().flat_map(BatchRun::abandon) {
        finished(shared, tp, offset, None);
    }
}

/// A batch stops taking messages once it holds this many bytes (keys, payloads, headers): a
/// guest's memory limit is sized for single messages.
pub(super) const MAX_BATCH_BYTES: usize = 64 * 1024;

/// Adds to `batch` the messages already waiting in the partition's queue, without waiting,
/// while the batch and the tenant's budget have room. They are marked in flight together.
pub(super) fn take_waiting(
    shared: &PipelineState,
    tp: &TopicPartition,
    queue: &mut PartitionQueue,
    batch: &mut Vec<Taken>,
) {
    let first_taken = batch.len();
    let admissions = take_waiting_unbegun(shared, tp, queue, batch);
    if admissions.is_empty() {
        return;
    }
    if begin_all(shared, tp, batch[first_taken..].iter().map(Taken::offset)) {
        admissions.into_iter().for_each(Admission::taken);
    } else {
        // Revoked meanwhile: these are not ours to handle, and their admissions go back.
        batch.truncate(first_taken);
    }
}

/// The messages of [`take_waiting`], not yet in flight, and the tenant's admission of each.
fn take_waiting_unbegun<'a>(
    shared: &'a PipelineState,
    tp: &TopicPartition,
    queue: &mut PartitionQueue,
    batch: &mut Vec<Taken>,
) -> Vec<Admission<'a>> {
    let mut admissions = Vec::new();
    let max_batch = shared.config.max_batch;
    let mut bytes: usize = batch.iter().map(Taken::bytes).sum();
    while batch.len() < max_batch && bytes < MAX_BATCH_BYTES {
        let Some(admission) = shared.budget.try_admit_message() else {
            break;
        };
        let Some(received) = queue.next_waiting(max_batch - batch.len()) else {
            break;
        };
        let message = match received {
            Ok(m) => m,
            Err(e) => {
                ConsumeFailed {
                    error: &format_args!("{tp}: {e}"),
                }
                .emit(&shared.recorder);
                break;
            }
        };
        admissions.push(admission);
        bytes += message.bytes();
        batch.push(message);
    }
    admissions
}
