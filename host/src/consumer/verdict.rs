//! Carrying out a verdict of [`DeliveryRules::settle`](crate::policy::DeliveryRules::settle) for
//! one message: publish its outputs, write its dead letter, redeliver it after the backoff, or
//! pause the partition on it. The sequential, concurrent and share workers all go through here.

use super::batch_run::FirstCall;
use super::commits::{Flow, TransactionCommitter};
use super::handler_call::HandlerCall;
use super::state::PipelineState;
use crate::bindings::Message;
use crate::deadletter::{DeadLetter, DeadLetterWriter};
use crate::events::{
    DeadLetterFailed, DeadLettered, Observers, OutputWriteFailed, OutputsWritten, Paused,
    Redelivering, Resumed,
};
use crate::offsets::{Completion, TopicPartition};
use crate::output_writer::{to_kafka_record, QueuedWrite};
use crate::outputs::{OutputRecord, Outputs};
use crate::policy::Verdict;
use crate::stop::{retry_until_stopped, Attempts};
use crate::telemetry::spans::DeliveryTrace;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Seeing one message through: handler calls, redeliveries, dead-lettering, pausing.
pub(super) struct Delivery<'a> {
    /// Calling the handler: the pipeline, the partition, the rules, the stop.
    pub(super) call: HandlerCall<'a>,
    /// The partition's transactions (exactly once): outputs and dead letters are staged in the
    /// open one instead of written, and what settled before a message that must wait (for a
    /// redelivery, or paused) commits before the wait.
    pub(super) transactions: Option<&'a TransactionCommitter<'a>>,
    /// At least once: hand the confirmation of an attempt's outputs back to the worker
    /// ([`Done::write`]) instead of waiting for it.
    pub(super) pipeline_writes: bool,
}

/// A message seen through to its settlement.
pub(super) struct Done {
    pub(super) how: Completion,
    /// Outputs queued and not yet confirmed: the message is finished once they are.
    pub(super) write: Option<PendingWrite>,
}

impl Done {
    fn now(how: Completion) -> Self {
        Done { how, write: None }
    }
}

/// An attempt's outputs on their way to the broker.
pub(super) struct PendingWrite {
    pub(super) queued: QueuedWrite,
    /// Written again if the broker does not take them.
    pub(super) records: Vec<OutputRecord>,
    pub(super) attempt: u32,
    /// The delivery's spans, ended once the broker has the records.
    pub(super) trace: DeliveryTrace,
}

/// Why a message left the worker without being settled: it is abandoned to be read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Abandoned {
    /// The worker was stopped first (or the host failed): the next owner reads it again.
    Stopped,
    /// An aborted transaction rewound the partition to before it: it is delivered again.
    Rewound,
}

/// How a batch's first call settled its message if it needs nothing more, not even the message
/// itself: it committed or left it, with nothing to publish.
pub(super) fn settled_outright((_, called): &FirstCall) -> Option<Completion> {
    if called.publishes {
        return None;
    }
    match called.settled.verdict {
        Verdict::Commit => Some(Completion::Settled),
        Verdict::Leave => Some(Completion::Left),
        _ => None,
    }
}

impl Delivery<'_> {
    /// The message at `offset` settled `how`, its outputs (if any) published: exactly once, it
    /// is part of the open transaction.
    pub(super) fn settled(&self, offset: i64, how: Completion) -> Done {
        if let Some(c) = self.transactions {
            c.transactions.settled(offset);
        }
        Done::now(how)
    }

    /// Calls the handler until the message settles; `None` if the worker was stopped first.
    /// `first` is the first call's settlement when a batch call already handled it.
    ///
    /// A nacked message is redelivered from memory after the backoff rather than by seeking:
    /// the effect is the same (nothing after it in the partition is handled first, and it stays
    /// uncommitted, so a crash or a revoke re-reads it), without a refetch per nack.
    pub(super) async fn until_settled(
        &self,
        mut message: Message,
        mut first: Option<FirstCall>,
    ) -> Result<Done, Abandoned> {
        let shared = self.call.shared;
        let tp = self.call.tp;
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
                    // lands (a canary's on its partitions).
                    let pool = shared.plugin.for_partition(tp.partition);
                    let called = self
                        .call
                        .once(&pool, &message, tries)
                        .await
                        .ok_or(Abandoned::Stopped)?;
                    (pool, called)
                }
            };
            let (settled, publishes) = (called.settled, called.publishes);
            match settled.verdict {
                verdict @ (Verdict::Commit | Verdict::Leave) => {
                    let how = match verdict {
                        Verdict::Commit => Completion::Settled,
                        _ => Completion::Left,
                    };
                    if publishes {
                        if let Some(queued) = self.queue_write(&called.outputs) {
                            let write = PendingWrite {
                                queued,
                                records: std::mem::take(&mut called.outputs.records),
                                attempt,
                                trace: std::mem::take(&mut called.trace),
                            };
                            return Ok(Done {
                                how,
                                write: Some(write),
                            });
                        }
                        if !self.publish(offset, attempt, &called.outputs).await {
                            return Err(Abandoned::Stopped);
                        }
                    }
                    return Ok(self.settled(offset, how));
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
                        false => Err(Abandoned::Stopped),
                    };
                }
                Verdict::Pause => {
                    let reason = called.reason.map(|r| r.text).unwrap_or_default();
                    self.commit_before_waiting().await?;
                    let version = pool.plugin().version_shared();
                    if !self.pause(offset, attempt, version, &reason).await {
                        return Err(Abandoned::Stopped);
                    }
                    tries = 0;
                }
                Verdict::RedeliverAfter(wait) => {
                    Redelivering {
                        tp,
                        offset,
                        attempt,
                    }
                    .emit(&shared.recorder);
                    self.commit_before_waiting().await?;
                    if !self.sleep(wait).await {
                        return Err(Abandoned::Stopped);
                    }
                }
            }
            message.attempt += 1;
        }
    }

    /// Exactly once: commits what settled before this message, so a message that waits (for
    /// its redelivery, or paused) does not hold back the ones before it, nor keep their
    /// transaction open until the broker's timeout aborts it.
    async fn commit_before_waiting(&self) -> Result<(), Abandoned> {
        match self.transactions {
            None => Ok(()),
            Some(c) => match c.commit().await {
                Flow::Committed => Ok(()),
                Flow::Rewound => Err(Abandoned::Rewound),
                Flow::Stop => Err(Abandoned::Stopped),
            },
        }
    }

    fn observers(&self) -> Observers<'_> {
        self.call.observers()
    }

    /// At least once, in a sequential worker: queues the attempt's outputs, to be confirmed
    /// while the worker goes on. `None` when they are published here instead (exactly once, a
    /// concurrent worker, or a full local queue).
    fn queue_write(&self, outputs: &Outputs) -> Option<QueuedWrite> {
        if !self.pipeline_writes || self.transactions.is_some() {
            return None;
        }
        self.call
            .shared
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
        publish_at_least_once(&self.call, offset, attempt, outputs).await
    }

    /// Writes the dead letter, retrying until the broker has it; only then may the offset be
    /// committed. `false` if stopped first (the message stays uncommitted).
    async fn dead_letter(&self, writer: &DeadLetterWriter, letter: &DeadLetter<'_>) -> bool {
        write_dead_letter(&self.call, writer, letter).await
    }

    /// `max_attempts` is used up and there is no dead-letter topic: stop the partition on this
    /// message (never skip it) until a new plugin version arrives. `false` if stopped first.
    async fn pause(&self, offset: i64, attempt: u32, version: &Arc<str>, reason: &str) -> bool {
        let (shared, tp) = (self.call.shared, self.call.tp);
        Paused {
            tp,
            offset,
            attempt,
            reason,
        }
        .emit(&shared.recorder);
        let resumed = loop {
            if !self.sleep(PAUSE_POLL).await {
                break false;
            }
            if shared.plugin.for_partition(tp.partition).plugin().version() != &**version {
                break true;
            }
        };
        Resumed {
            tp,
            offset,
            by_new_version: resumed,
        }
        .emit(&shared.recorder);
        resumed
    }

    /// Sleeps unless stopped first; `false` if stopped.
    async fn sleep(&self, duration: Duration) -> bool {
        self.call.sleep(duration).await
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
    let recorder = &call.shared.recorder;
    // A write under way finishes even when the worker is told to stop (bounded by
    // `output_timeout`): a drain then commits the message instead of handling it again.
    let written = retry_until_stopped(
        call.stop,
        &call.shared.config.backoff,
        Attempts::RunToEnd,
        |_| writer.write(&outputs.records),
        |error, _| {
            OutputWriteFailed {
                tp: call.tp,
                offset,
                attempt,
                error: &error,
            }
            .emit(recorder)
        },
    )
    .await;
    if written.is_some() {
        OutputsWritten {
            records: &outputs.records,
        }
        .emit(recorder);
    }
    written.is_some()
}

/// Writes the dead letter, retrying until the broker has it; only then may the offset be
/// committed. `false` if stopped first (the message stays uncommitted).
pub(super) async fn write_dead_letter(
    call: &HandlerCall<'_>,
    writer: &DeadLetterWriter,
    letter: &DeadLetter<'_>,
) -> bool {
    let offset = letter.message.offset;
    let written_to = retry_until_stopped(
        call.stop,
        &call.shared.config.backoff,
        Attempts::Interruptible,
        |_| writer.write(letter),
        |error, _| {
            DeadLetterFailed {
                tp: call.tp,
                offset,
                attempts: letter.attempts,
                error: &error,
            }
            .emit(&call.observers())
        },
    )
    .await;
    let Some(written_to) = written_to else {
        return false;
    };
    DeadLettered {
        tp: call.tp,
        offset,
        dead_letter_topic: writer.topic(),
        written_to: Some(written_to),
        reason: letter.reason,
    }
    .emit(&call.observers());
    true
}

/// How often a paused partition checks for a new plugin version.
const PAUSE_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Waits until the broker has a pipelined attempt's outputs, writing them again (after the
/// pipeline's backoff) while it does not; `failing` counts the writes being retried, which
/// keeps the partition from taking new messages. `false` if stopped first: the message stays
/// uncommitted and is delivered again.
pub(super) async fn confirm_write(
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
    let PendingWrite {
        queued,
        records,
        attempt,
        trace,
    } = pending;
    let mut queued = Some(queued);
    let mut failed = false;
    // The queued write is confirmed once; each retry writes the records again.
    let written = retry_until_stopped(
        stop,
        &shared.config.backoff,
        Attempts::RunToEnd,
        |_| {
            let queued = queued.take();
            let records = &records;
            async move {
                match queued {
                    Some(queued) => writer.confirm(queued).await,
                    None => writer.write(records).await,
                }
            }
        },
        |error, failures| {
            if failures == 1 {
                failed = true;
                failing.send_modify(|n| *n += 1);
            }
            OutputWriteFailed {
                tp,
                offset,
                attempt,
                error: &error,
            }
            .emit(&shared.recorder);
        },
    )
    .await;
    if failed {
        failing.send_modify(|n| *n -= 1);
    }
    if written.is_some() {
        OutputsWritten { records: &records }.emit(&shared.recorder);
    }
    drop(trace);
    written.is_some()
}
