//! One partition's worker: reads its queue in order and sees each message through the plugin and
//! the policy to a commit or a redelivery.

use super::batch_run::{BatchRun, FirstCall};
use super::handler_call::{call_context, observers, HandlerCall};
use super::state::PipelineState;
use crate::bindings::{Header, Message};
use crate::config::DeliveryGuarantee;
use crate::config::Ordering;
use crate::deadletter::{DeadLetter, DeadLetterWriter};
use crate::events::{DeadLetterFailed, DeadLettered, Observers};
use crate::metrics::MessageMetrics;
use crate::offsets::{Completion, TopicPartition};
use crate::output_writer::{to_kafka_record, QueuedWrite};
use crate::outputs::{OutputRecord, Outputs};
use crate::plugin::CallContext;
use crate::policy::{DeliveryRules, Verdict};
use crate::transactions::{CommitError, PartitionTransactions};
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::ConsumerContext;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::Message as _;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{self, AtomicU32};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What a partition worker needs from its consumer beyond its queue: the group metadata that
/// fences a transaction's offsets, and a rewind after an aborted transaction.
pub(crate) trait GroupMember: Send + Sync + 'static {
    /// The consumer's current group metadata (generation, member id).
    fn group_metadata(&self) -> Option<rdkafka::consumer::ConsumerGroupMetadata>;
    /// Makes `offset` the next message the partition's queue delivers. Blocks briefly.
    fn rewind(&self, tp: &TopicPartition, offset: i64) -> anyhow::Result<()>;
}

/// After this many nacks of one message, each further one is logged as a warning.
const REPEATED_FAILURE_WARN_AT: u32 = 3;

/// Copies a Kafka message into the guest's `message` record.
pub(crate) fn to_guest_message(msg: &BorrowedMessage<'_>, attempt: u32) -> Message {
    let headers = msg
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| Header {
                    key: h.key.to_string(),
                    value: h.value.map(<[u8]>::to_vec),
                })
                .collect()
        })
        .unwrap_or_default();
    Message {
        topic: msg.topic().to_string(),
        partition: msg.partition(),
        offset: msg.offset(),
        timestamp: msg.timestamp().to_millis(),
        key: msg.key().map(<[u8]>::to_vec),
        payload: msg.payload().map(<[u8]>::to_vec),
        headers,
        attempt,
    }
}

pub(crate) async fn run<C: ConsumerContext + 'static>(
    shared: Arc<PipelineState>,
    tp: TopicPartition,
    queue: StreamPartitionQueue<C>,
    member: Arc<dyn GroupMember>,
    stop: CancellationToken,
) {
    tracing::debug!(tenant = %shared.tenant, pipeline = %shared.name, partition = %tp, "partition worker started");
    let metrics = Arc::new(shared.metrics.message_metrics(&tp.topic));
    if shared.config.ordering != Ordering::Partition {
        run_concurrent(&shared, &tp, queue, &stop, metrics).await;
        tracing::debug!(tenant = %shared.tenant, pipeline = %shared.name, partition = %tp, "partition worker stopped");
        return;
    }
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
    loop {
        let recovered = tokio::select! {
            biased;
            _ = stop.cancelled() => false,
            recovered = failing_watch.wait_for(|failing| *failing == 0) => recovered.is_ok(),
        };
        // Stopping still settles what a batch call under way handles, as a single call in
        // progress would be: no further message of it starts.
        if !recovered && batch.is_none() {
            break;
        }
        let delivery = Delivery {
            shared: &shared,
            rules: shared.delivery_rules(),
            tp: &tp,
            metrics: &metrics,
            stop: &stop,
            trap_streak: &trap_streak,
            context: &context,
            transactions: committer.as_ref(),
            pipeline_writes: true,
        };
        let handler = delivery.handler();
        let next = match &mut batch {
            Some(run) => run.next(&handler).await,
            None => None,
        };
        let (message, first_call) = match next {
            Some(next) => next,
            None if batch.take().is_some() => continue,
            None => {
                let commit_due = transactions.as_ref().and_then(|t| t.due_at());
                let message = match next_message(&shared, &tp, &queue, &stop, commit_due).await {
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
                let pool = shared.plugin.current();
                if !pool.batches() || shared.config.max_batch == 1 {
                    (message, None)
                } else {
                    let mut messages = vec![message];
                    take_waiting(&shared, &tp, &queue, &mut messages);
                    if messages.len() == 1 {
                        (messages.pop().expect("one message"), None)
                    } else {
                        if !handler.cool_down_after_traps().await {
                            for message in &messages {
                                finished(&shared, &tp, message.offset, None);
                            }
                            break;
                        }
                        batch = Some(BatchRun::start(&handler, pool, messages));
                        continue;
                    }
                }
            }
        };
        let offset = message.offset;
        let settled = delivery.until_settled(message, first_call).await;
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
        let rewound = matches!(settled, Err(Unsettled::Rewound));
        if rewound {
            release(&shared, &tp, batch.take());
        }
        if !finished(&shared, &tp, offset, settled.ok().map(|d| d.how)) && !rewound {
            break;
        }
        if let Some(c) = &committer {
            if c.transactions.full() {
                match c.commit().await {
                    Flow::Stop => break,
                    Flow::Rewound => release(&shared, &tp, batch.take()),
                    Flow::Committed => {}
                }
            }
        }
    }
    release(&shared, &tp, batch.take());
    // Revoked, stopping or shutting down: writes under way finish (their retries stop), and
    // what settled commits with its outputs.
    while writes.join_next().await.is_some() {}
    if let Some(c) = &committer {
        c.commit().await;
    }
    tracing::debug!(tenant = %shared.tenant, pipeline = %shared.name, partition = %tp, "partition worker stopped");
}

/// What waiting for the next message gave.
enum Next {
    /// A message, marked in flight.
    Message(Message),
    /// The open transaction is due (by age) before a message came.
    CommitDue,
    /// The worker is stopped, or the partition was revoked under it.
    Stopped,
}

/// Waits for the partition's next message and marks it in flight, or until `commit_due`.
async fn next_message<C: ConsumerContext + 'static>(
    shared: &PipelineState,
    tp: &TopicPartition,
    queue: &StreamPartitionQueue<C>,
    stop: &CancellationToken,
    commit_due: Option<Instant>,
) -> Next {
    // The tenant's in-flight budget: while it is used up, this partition is not read.
    if !shared.budget.admit_message(stop).await {
        return Next::Stopped;
    }
    let due = async {
        match commit_due {
            Some(at) => tokio::time::sleep_until(at.into()).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(due);
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
            received = queue.recv() => received,
        };
        match received {
            Ok(m) => {
                let Some(message) = begin(shared, tp, &m) else {
                    shared.budget.message_done();
                    return Next::Stopped;
                };
                return Next::Message(message);
            }
            Err(e) => {
                shared.consume_faults.fault(&format!("{tp}: {e}"));
            }
        }
    }
}

/// A message received: copied for the guest and marked in flight in the partition's progress.
/// `None` if the partition was revoked under the worker: the message is not ours to handle.
fn begin(shared: &PipelineState, tp: &TopicPartition, m: &BorrowedMessage<'_>) -> Option<Message> {
    shared.consume_faults.recovered();
    let message = to_guest_message(m, 1);
    shared
        .partitions
        .with_progress(tp, |progress| progress.begin(message.offset))?;
    shared.metrics.in_flight.increment(1);
    Some(message)
}

/// Lets go of the messages a batch took that the worker has not seen through: they stay
/// uncommitted, for the next owner or, after a rewind, for the queue to deliver again.
fn release(shared: &PipelineState, tp: &TopicPartition, batch: Option<BatchRun>) {
    for offset in batch.into_iter().flat_map(BatchRun::abandon) {
        finished(shared, tp, offset, None);
    }
}

/// A batch stops taking messages once it holds this many bytes (keys, payloads, headers): a
/// guest's memory limit is sized for single messages.
const MAX_BATCH_BYTES: usize = 64 * 1024;

/// Adds to `batch` the messages already waiting in the partition's queue, without waiting,
/// while the batch and the tenant's budget have room. Each is marked in flight.
fn take_waiting<C: ConsumerContext + 'static>(
    shared: &PipelineState,
    tp: &TopicPartition,
    queue: &StreamPartitionQueue<C>,
    batch: &mut Vec<Message>,
) {
    let mut bytes: usize = batch.iter().map(message_bytes).sum();
    while batch.len() < shared.config.max_batch && bytes < MAX_BATCH_BYTES {
        let Some(admission) = shared.budget.try_admit_message() else {
            return;
        };
        let mut recv = std::pin::pin!(queue.recv());
        let mut waiting = std::task::Context::from_waker(std::task::Waker::noop());
        let std::task::Poll::Ready(received) = recv.as_mut().poll(&mut waiting) else {
            return;
        };
        let m = match received {
            Ok(m) => m,
            Err(e) => {
                shared.consume_faults.fault(&format!("{tp}: {e}"));
                return;
            }
        };
        let Some(message) = begin(shared, tp, &m) else {
            return;
        };
        admission.taken();
        bytes += message_bytes(&message);
        batch.push(message);
    }
}

fn message_bytes(message: &Message) -> usize {
    let headers: usize = message
        .headers
        .iter()
        .map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len))
        .sum();
    message.key.as_ref().map_or(0, Vec::len)
        + message.payload.as_ref().map_or(0, Vec::len)
        + headers
}

/// A message left the worker: settled (or handled) messages may move the commit point; one
/// that did not settle (stopped, or the host failed) stays uncommitted and is read again by
/// whoever owns the partition next. Returns whether it settled.
fn finished(
    shared: &PipelineState,
    tp: &TopicPartition,
    offset: i64,
    settled: Option<Completion>,
) -> bool {
    shared.metrics.in_flight.decrement(1);
    shared.budget.message_done();
    let Some(how) = settled else {
        return false;
    };
    // A partition revoked meanwhile has no progress: the late settlement is dropped.
    shared
        .partitions
        .with_progress(tp, |progress| progress.complete(offset, how));
    shared.health.settled(tp, offset);
    true
}

/// `ordering = "key"` or `"unordered"`: up to `max_in_flight` messages of the partition at once,
/// each on its own task. Under `key`, a message waits until the previous message with the same
/// key has settled. Offsets are still committed only up to the first unfinished message.
async fn run_concurrent<C: ConsumerContext + 'static>(
    shared: &Arc<PipelineState>,
    tp: &TopicPartition,
    queue: StreamPartitionQueue<C>,
    stop: &CancellationToken,
    metrics: Arc<MessageMetrics>,
) {
    let by_key = shared.config.ordering == Ordering::Key;
    let permits = Arc::new(Semaphore::new(shared.config.max_in_flight));
    // The settled-signal of the latest message of each key. `true` once it settled; a sender
    // dropped without `true` means it never settled (stopped), so the key's later messages
    // must not run either.
    let mut lanes: HashMap<Option<Vec<u8>>, watch::Receiver<bool>> = HashMap::new();
    let mut tasks = JoinSet::new();
    let trap_streak = Arc::new(AtomicU32::new(0));
    let context = call_context(shared, tp);
    loop {
        let permit = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            permit = permits.clone().acquire_owned() => permit.expect("never closed"),
        };
        let Next::Message(message) = next_message(shared, tp, &queue, stop, None).await else {
            break;
        };
        let offset = message.offset;
        let (previous, settled_tx) = if by_key {
            if lanes.len() > 4 * shared.config.max_in_flight {
                // Forget keys whose last message settled: nothing waits on them.
                lanes.retain(|_, rx| !*rx.borrow() && rx.has_changed().is_ok());
            }
            let (tx, rx) = watch::channel(false);
            (lanes.insert(message.key.clone(), rx), Some(tx))
        } else {
            (None, None)
        };
        let (shared, tp, stop, metrics, trap_streak, context) = (
            shared.clone(),
            tp.clone(),
            stop.clone(),
            metrics.clone(),
            trap_streak.clone(),
            context.clone(),
        );
        tasks.spawn(async move {
            let _permit = permit;
            if let Some(mut previous) = previous {
                let ready = tokio::select! {
                    biased;
                    _ = stop.cancelled() => false,
                    settled = previous.wait_for(|settled| *settled) => settled.is_ok(),
                };
                if !ready {
                    finished(&shared, &tp, offset, None);
                    return;
                }
            }
            let delivery = Delivery {
                shared: &shared,
                rules: shared.delivery_rules(),
                tp: &tp,
                metrics: &metrics,
                stop: &stop,
                trap_streak: &trap_streak,
                context: &context,
                transactions: None,
                pipeline_writes: false,
            };
            let settled = delivery.until_settled(message, None).await;
            if finished(&shared, &tp, offset, settled.ok().map(|d| d.how)) {
                if let Some(tx) = settled_tx {
                    let _ = tx.send(true);
                }
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    // Stopping: let the messages in flight finish (their redeliveries stop at once).
    while tasks.join_next().await.is_some() {}
}

/// Seeing one message through: handler calls, redeliveries, dead-lettering, pausing.
struct Delivery<'a> {
    shared: &'a Arc<PipelineState>,
    rules: DeliveryRules,
    tp: &'a TopicPartition,
    metrics: &'a MessageMetrics,
    stop: &'a CancellationToken,
    /// Calls in a row that trapped in this partition.
    trap_streak: &'a AtomicU32,
    /// Who calls: the partition's context.
    context: &'a Arc<CallContext>,
    /// The partition's transactions (exactly once): outputs and dead letters are staged in the
    /// open one instead of written, and what settled before a message that must wait (for a
    /// redelivery, or paused) commits before the wait.
    transactions: Option<&'a TransactionCommitter<'a>>,
    /// At least once: hand the confirmation of an attempt's outputs back to the worker
    /// ([`Done::write`]) instead of waiting for it.
    pipeline_writes: bool,
}

/// A message seen through to its settlement.
struct Done {
    how: Completion,
    /// Outputs queued and not yet confirmed: the message is finished once they are.
    write: Option<PendingWrite>,
}

impl Done {
    fn now(how: Completion) -> Self {
        Done { how, write: None }
    }
}

/// An attempt's outputs on their way to the broker.
struct PendingWrite {
    queued: QueuedWrite,
    /// Written again if the broker does not take them.
    records: Vec<OutputRecord>,
    attempt: u32,
}

/// Why a message left the worker unsettled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unsettled {
    /// The worker was stopped first (or the host failed): the next owner reads it again.
    Stopped,
    /// An aborted transaction rewound the partition to before it: it is delivered again.
    Rewound,
}

impl Delivery<'_> {
    /// Calls the handler until the message settles; `None` if the worker was stopped first.
    /// `first` is the first call's settlement when a batch call already handled it.
    ///
    /// A nacked message is redelivered from memory after the backoff rather than by seeking:
    /// the effect is the same (nothing after it in the partition is handled first, and it stays
    /// uncommitted, so a crash or a revoke re-reads it), without a refetch per nack.
    async fn until_settled(
        &self,
        mut message: Message,
        mut first: Option<FirstCall>,
    ) -> Result<Done, Unsettled> {
        let shared = self.shared;
        let tp = self.tp;
        let offset = message.offset;
        // Deliveries counted against `max_attempts`; a new plugin version starts a new count.
        let mut tries = 0u32;
        loop {
            tries += 1;
            let attempt = message.attempt;
            let (pool, mut called) = match first.take() {
                Some(done) => done,
                None => {
                    // The version current when an attempt starts handles it, even if a reload
                    // lands.
                    let pool = shared.plugin.current();
                    let called = self
                        .handler()
                        .once(&pool, &message, tries)
                        .await
                        .ok_or(Unsettled::Stopped)?;
                    (pool, called)
                }
            };
            let (settled, publishes) = (called.settled, called.publishes);
            match settled.verdict {
                verdict @ (Verdict::Commit | Verdict::Leave) => {
                    let how = match verdict {
                        Verdict::Commit => Completion::Settled,
                        _ => Completion::Unsettled,
                    };
                    if publishes {
                        if let Some(queued) = self.queue_write(&called.outputs) {
                            let write = PendingWrite {
                                queued,
                                records: std::mem::take(&mut called.outputs.records),
                                attempt,
                            };
                            return Ok(Done {
                                how,
                                write: Some(write),
                            });
                        }
                        if !self.publish(offset, attempt, &called.outputs).await {
                            return Err(Unsettled::Stopped);
                        }
                    }
                    if let Some(c) = self.transactions {
                        c.transactions.settled(offset);
                    }
                    return Ok(Done::now(how));
                }
                Verdict::DeadLetterThenCommit => {
                    let (Some(writer), Some(letter)) =
                        (&shared.dead_letters, called.dead_letter(shared, &message))
                    else {
                        // The rules give this verdict only to a pipeline with a topic.
                        return Ok(Done::now(Completion::Settled));
                    };
                    if let Some(c) = self.transactions {
                        c.transactions
                            .stage(offset, letter.kafka_record(writer.topic()));
                        c.transactions.settled(offset);
                        DeadLettered {
                            tp,
                            offset,
                            dead_letter_topic: writer.topic(),
                            written_to: None,
                            reason: letter.reason,
                        }
                        .emit(&self.observers());
                        return Ok(Done::now(Completion::Settled));
                    }
                    return match self.dead_letter(writer, &letter).await {
                        true => Ok(Done::now(Completion::Settled)),
                        false => Err(Unsettled::Stopped),
                    };
                }
                Verdict::Pause => {
                    let reason = called.reason.map(|r| r.text).unwrap_or_default();
                    self.commit_before_waiting().await?;
                    let version = pool.plugin().version_shared();
                    if !self.pause(offset, attempt, version, &reason).await {
                        return Err(Unsettled::Stopped);
                    }
                    tries = 0;
                }
                Verdict::RedeliverAfter(wait) => {
                    shared.health.failing(tp, offset, attempt);
                    if attempt >= REPEATED_FAILURE_WARN_AT {
                        tracing::warn!(
                            tenant = %shared.tenant, pipeline = %shared.name, partition = %tp, offset, attempt,
                            "message keeps failing; the partition waits for it (nothing after it is handled)"
                        );
                    }
                    self.commit_before_waiting().await?;
                    if !self.sleep(wait).await {
                        return Err(Unsettled::Stopped);
                    }
                }
            }
            message.attempt += 1;
        }
    }

    /// Exactly once: commits what settled before this message, so a message that waits (for
    /// its redelivery, or paused) does not hold back the ones before it, nor keep their
    /// transaction open until the broker's timeout aborts it.
    async fn commit_before_waiting(&self) -> Result<(), Unsettled> {
        match self.transactions {
            None => Ok(()),
            Some(c) => match c.commit().await {
                Flow::Committed => Ok(()),
                Flow::Rewound => Err(Unsettled::Rewound),
                Flow::Stop => Err(Unsettled::Stopped),
            },
        }
    }

    fn handler(&self) -> HandlerCall<'_> {
        HandlerCall {
            shared: self.shared,
            rules: self.rules,
            tp: self.tp,
            metrics: self.metrics,
            stop: self.stop,
            trap_streak: self.trap_streak,
            context: self.context,
        }
    }

    fn observers(&self) -> Observers<'_> {
        observers(self.shared, self.metrics)
    }

    /// At least once, in a sequential worker: queues the attempt's outputs, to be confirmed
    /// while the worker goes on. `None` when they are published here instead (exactly once, a
    /// concurrent worker, or a full local queue).
    fn queue_write(&self, outputs: &Outputs) -> Option<QueuedWrite> {
        if !self.pipeline_writes || self.transactions.is_some() {
            return None;
        }
        self.shared
            .output_writer
            .as_ref()?
            .queue(&outputs.records)
            .ok()
    }

    /// Publishes what the attempt sent: staged in the open transaction (exactly once), or written
    /// and acknowledged by the broker, retrying with the pipeline's backoff while the partition
    /// waits (at least once); only then may the offset be committed. `false` if stopped first
    /// (the message stays uncommitted and is delivered again).
    async fn publish(&self, offset: i64, attempt: u32, outputs: &Outputs) -> bool {
        if let Some(c) = self.transactions {
            for record in &outputs.records {
                c.transactions.stage(offset, to_kafka_record(record));
            }
            return true;
        }
        publish_at_least_once(&self.handler(), offset, attempt, outputs).await
    }

    /// Writes the dead letter, retrying until the broker has it; only then may the offset be
    /// committed. `false` if stopped first (the message stays uncommitted).
    async fn dead_letter(&self, writer: &DeadLetterWriter, letter: &DeadLetter<'_>) -> bool {
        write_dead_letter(&self.handler(), writer, letter).await
    }

    /// `max_attempts` is used up and there is no dead-letter topic: stop the partition on this
    /// message (never skip it) until a new plugin version arrives. `false` if stopped first.
    async fn pause(&self, offset: i64, attempt: u32, version: &Arc<str>, reason: &str) -> bool {
        let shared = self.shared;
        shared.health.paused(self.tp, offset, attempt);
        shared.metrics.paused.increment(1);
        tracing::error!(
            pipeline = %shared.name, tenant = %shared.tenant, partition = %self.tp, offset, attempt,
            "PARTITION PAUSED: {reason}; there is no dead_letter_topic, so nothing after this message \
             is handled until a new plugin version is loaded (hot reload or SIGHUP) or the pipeline \
             gets a dead_letter_topic"
        );
        let resumed = loop {
            if !self.sleep(PAUSE_POLL).await {
                break false;
            }
            if shared.plugin.current().plugin().version() != &**version {
                tracing::info!(tenant = %shared.tenant, pipeline = %shared.name, partition = %self.tp, offset, "new plugin version: resuming the paused partition");
                break true;
            }
        };
        shared.metrics.paused.decrement(1);
        resumed
    }

    /// Sleeps unless stopped first; `false` if stopped.
    async fn sleep(&self, duration: Duration) -> bool {
        self.handler().sleep(duration).await
    }
}

/// Writes an attempt's outputs and waits for the broker to acknowledge them, retrying with the
/// pipeline's backoff while the message waits (at least once); only then may the message
/// settle. `false` if stopped first (the message stays unsettled and is delivered again).
pub(super) async fn publish_at_least_once(
    call: &HandlerCall<'_>,
    offset: i64,
    attempt: u32,
    outputs: &Outputs,
) -> bool {
    let Some(writer) = &call.shared.output_writer else {
        // A pipeline with outputs always has a writer or transactions.
        return true;
    };
    let mut failures = 0u32;
    loop {
        // A write under way finishes even when the worker is told to stop (bounded by
        // `output_timeout`): a drain then commits the message instead of handling it again.
        match writer.write(&outputs.records).await {
            Ok(()) => {
                written(call.shared, &outputs.records);
                return true;
            }
            Err(error) => {
                failures += 1;
                call.shared.output_metrics.write_errors.increment(1);
                call.shared.output_faults.fault(&format!(
                    "{}: offset {offset}: {error:#}; retrying, the offset waits",
                    call.tp
                ));
                call.shared.health.failing(call.tp, offset, attempt);
                if !call.sleep(call.shared.config.backoff.delay(failures)).await {
                    return false;
                }
            }
        }
    }
}

/// Writes the dead letter, retrying until the broker has it; only then may the offset be
/// committed. `false` if stopped first (the message stays uncommitted).
pub(super) async fn write_dead_letter(
    call: &HandlerCall<'_>,
    writer: &DeadLetterWriter,
    letter: &DeadLetter<'_>,
) -> bool {
    let mut failures = 0u32;
    loop {
        let written = tokio::select! {
            _ = call.stop.cancelled() => return false,
            written = writer.write(letter) => written,
        };
        match written {
            Ok(written_to) => {
                DeadLettered {
                    tp: call.tp,
                    offset: letter.message.offset,
                    dead_letter_topic: writer.topic(),
                    written_to: Some(written_to),
                    reason: letter.reason,
                }
                .emit(&call.observers());
                return true;
            }
            Err(error) => {
                failures += 1;
                DeadLetterFailed {
                    tp: call.tp,
                    offset: letter.message.offset,
                    error: &error,
                }
                .emit(&call.observers());
                call.shared
                    .health
                    .failing(call.tp, letter.message.offset, letter.attempts);
                if !call.sleep(call.shared.config.backoff.delay(failures)).await {
                    return false;
                }
            }
        }
    }
}

/// How often a paused partition checks for a new plugin version.
const PAUSE_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Starts the partition's transactional producer (fencing its previous owner), retrying with the
/// pipeline's backoff while the broker cannot; `None` if stopped first.
async fn start_transactions(
    shared: &PipelineState,
    tp: &TopicPartition,
    stop: &CancellationToken,
) -> Option<PartitionTransactions> {
    let mut failures = 0u32;
    loop {
        let started = tokio::select! {
            _ = stop.cancelled() => return None,
            started = PartitionTransactions::start(&shared.config, &shared.bootstrap, tp) => started,
        };
        match started {
            Ok(t) => {
                tracing::debug!(tenant = %shared.tenant, pipeline = %shared.name, partition = %tp, id = t.id(), "transactions ready");
                return Some(t);
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(tenant = %shared.tenant, pipeline = %shared.name, partition = %tp, "{e:#}; retrying");
                let wait = shared.config.backoff.delay(failures);
                tokio::select! {
                    _ = stop.cancelled() => return None,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Commits a partition's open transaction and handles what a commit can end in.
struct TransactionCommitter<'a> {
    shared: &'a PipelineState,
    tp: &'a TopicPartition,
    transactions: &'a PartitionTransactions,
    member: Arc<dyn GroupMember>,
    stop: &'a CancellationToken,
    aborts_in_a_row: AtomicU32,
}

/// What a transaction commit left the worker to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
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
    async fn commit(&self) -> Flow {
        let (shared, tp) = (self.shared, self.tp);
        let metrics = &shared.output_metrics;
        match self.transactions.commit(self.member.group_metadata()).await {
            Ok(None) => Flow::Committed,
            Ok(Some(committed)) => {
                self.aborts_in_a_row.store(0, atomic::Ordering::Relaxed);
                metrics.transactions_committed.increment(1);
                metrics
                    .transaction_commit
                    .record(committed.took.as_secs_f64());
                for (topic, (records, bytes)) in &committed.records {
                    metrics.published(topic, *records, *bytes);
                }
                shared.stats.commits.fetch_add(1, atomic::Ordering::Relaxed);
                shared.metrics.commits.increment(1);
                shared.commit_faults.recovered();
                tracing::debug!(tenant = %shared.tenant, pipeline = %shared.name, partition = %tp, messages = committed.messages, "transaction committed");
                Flow::Committed
            }
            Err(CommitError::Aborted { rewind_to, reason }) => {
                let aborts = self.aborts_in_a_row.fetch_add(1, atomic::Ordering::Relaxed) + 1;
                metrics.transactions_aborted.increment(1);
                shared.commit_faults.fault(&format!(
                    "{tp}: transaction aborted ({reason}); its messages from offset {rewind_to} are delivered again"
                ));
                if self.stop.is_cancelled() {
                    // Leaving the partition: its next owner reads from the last commit.
                    return Flow::Stop;
                }
                shared.health.failing(tp, rewind_to, aborts);
                let wait = shared.config.backoff.delay(aborts);
                tokio::select! {
                    _ = self.stop.cancelled() => return Flow::Stop,
                    _ = tokio::time::sleep(wait) => {}
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
                metrics.transactions_aborted.increment(1);
                if self.stop.is_cancelled() {
                    tracing::info!(tenant = %shared.tenant, pipeline = %shared.name, partition = %tp, "transaction not committed on leaving the partition ({reason}); its next owner handles those messages again");
                } else {
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

/// How long a rewind may take.
pub(crate) const REWIND_TIMEOUT: Duration = Duration::from_secs(10);

/// Counts written outputs, and ends an episode of failing writes.
fn written(shared: &PipelineState, records: &[OutputRecord]) {
    shared.output_metrics.published_records(records);
    shared.output_faults.recovered();
}

/// Waits until the broker has a pipelined attempt's outputs, writing them again (after the
/// pipeline's backoff) while it does not; `failing` counts the writes being retried, which
/// keeps the partition from taking new messages. `false` if stopped first: the message stays
/// uncommitted and is delivered again.
async fn confirm_write(
    shared: &PipelineState,
    tp: &TopicPartition,
    offset: i64,
    pending: PendingWrite,
    failing: &watch::Sender<u32>,
    stop: &CancellationToken,
) -> bool {
    let Some(writer) = &shared.output_writer else {
        return true;
    };
    let mut result = writer.confirm(pending.queued).await;
    let mut failures = 0u32;
    loop {
        match result {
            Ok(()) => {
                written(shared, &pending.records);
                if failures > 0 {
                    failing.send_modify(|n| *n -= 1);
                }
                return true;
            }
            Err(error) => {
                if failures == 0 {
                    failing.send_modify(|n| *n += 1);
                }
                failures += 1;
                shared.output_metrics.write_errors.increment(1);
                shared.output_faults.fault(&format!(
                    "{tp}: offset {offset}: {error:#}; retrying, the offset waits"
                ));
                shared.health.failing(tp, offset, pending.attempt);
                let wait = shared.config.backoff.delay(failures);
                let slept = tokio::select! {
                    _ = stop.cancelled() => false,
                    _ = tokio::time::sleep(wait) => true,
                };
                if !slept {
                    failing.send_modify(|n| *n -= 1);
                    return false;
                }
                result = writer.write(&pending.records).await;
            }
        }
    }
}
