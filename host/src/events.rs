//! What happened, recorded once. Each delivery of a message becomes one [`DeliveryEvent`], and
//! each dead-letter write one [`DeadLettered`] or [`DeadLetterFailed`]; an event's `emit` is the
//! only place that feeds the pipeline's counters, its Prometheus series, its log line and the
//! event stream that `ackbar demo` and the tests read. Nothing else records a delivery.

use crate::fault_log::FaultLog;
use crate::metrics::MessageMetrics;
use crate::offsets::TopicPartition;
use crate::outcome::{CallEnd, Outcome};
use crate::policy::{Action, Settlement, Verdict};
use crate::stats::Stats;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// Receives a [`DeliveryEvent`] for every delivery of every message.
pub type EventSink = UnboundedSender<DeliveryEvent>;

/// Where one partition's events are recorded.
pub struct Observers<'a> {
    /// The pipeline's tenant, a field of every log line.
    pub tenant: &'a Arc<str>,
    /// The pipeline, a field of every log line.
    pub pipeline: &'a Arc<str>,
    /// The pipeline's counters, for summary lines and `ackbar demo`.
    pub stats: &'a Stats,
    /// The Prometheus series of the partition's topic.
    pub metrics: &'a MessageMetrics,
    /// Logs failing dead-letter writes once per episode, and their recovery.
    pub dead_letter_faults: &'a FaultLog,
    /// Gets every [`DeliveryEvent`] when something listens (`ackbar demo`, tests).
    pub sink: Option<&'a EventSink>,
}

/// One delivery of one message: how the handler call ended and how it settled.
#[derive(Debug, Clone)]
pub struct DeliveryEvent {
    /// The pipeline that consumed the message.
    pub pipeline: Arc<str>,
    /// The topic the message was read from.
    pub topic: Arc<str>,
    /// The message's partition.
    pub partition: i32,
    /// The message's offset in its partition.
    pub offset: i64,
    /// 1 for the first delivery, +1 for each redelivery.
    pub attempt: u32,
    /// The [`version_id`](crate::plugin::version_id) of the plugin that handled this delivery;
    /// after a hot reload, deliveries of one message may have different ones.
    pub plugin_version: Arc<str>,
    /// How the handler call ended, and the guest's explicit decision if it made one.
    pub outcome: Outcome,
    /// What the ack policy did with the offset.
    pub action: Action,
    /// What the pipeline does next (see [`Verdict`]).
    pub verdict: Verdict,
    /// This delivery used up `max_attempts`.
    pub exhausted: bool,
    /// Records the call sent through `producer` (accepted ones).
    pub outputs: usize,
    /// Whether those records are published (see
    /// [`Settlement::publishes_outputs`](crate::policy::Settlement::publishes_outputs)).
    pub outputs_published: bool,
    /// When this delivery's handler call started.
    pub started: Instant,
    /// Wall-clock time of the handler call, creating an instance included when none was idle.
    /// Charged to the tenant's guest time.
    pub elapsed: Duration,
}

impl DeliveryEvent {
    /// The event of a call on `tp`'s message at `offset` that ended in `outcome` and `settled`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        pipeline: &Arc<str>,
        tp: &TopicPartition,
        offset: i64,
        attempt: u32,
        plugin_version: &Arc<str>,
        outcome: Outcome,
        settled: Settlement,
        started: Instant,
        elapsed: Duration,
    ) -> Self {
        DeliveryEvent {
            pipeline: pipeline.clone(),
            topic: tp.topic.clone(),
            partition: tp.partition,
            offset,
            attempt,
            plugin_version: plugin_version.clone(),
            outcome,
            action: settled.action,
            verdict: settled.verdict,
            exhausted: settled.exhausted,
            outputs: 0,
            outputs_published: false,
            started,
            elapsed,
        }
    }

    /// Records the delivery in the counters, the metrics and the log (inside `span`, the
    /// message's span), then hands it to the sink if there is one.
    pub fn emit(self, to: &Observers<'_>, span: &tracing::Span) {
        to.stats.record(&self.outcome, self.action);
        to.metrics.record(&self.outcome, self.action, self.elapsed);
        if self.exhausted {
            to.metrics.exhausted.increment(1);
        }
        if matches!(self.verdict, Verdict::RedeliverAfter(_)) {
            to.metrics.redeliveries.increment(1);
        }
        if span.is_disabled() {
            self.log(to);
        } else {
            span.record("outcome", self.outcome.label());
            span.in_scope(|| self.log(to));
        }
        if let Some(sink) = to.sink {
            let _ = sink.send(self);
        }
    }

    fn log(&self, to: &Observers<'_>) {
        let (tenant, pipeline) = (&**to.tenant, &**to.pipeline);
        let partition = format_args!("{}/{}", self.topic, self.partition);
        let (offset, attempt) = (self.offset, self.attempt);
        let (action, verdict) = (self.action.name(), self.verdict.name());
        match &self.outcome.end {
            CallEnd::Trapped { kind, stderr, .. } => tracing::warn!(
                tenant, pipeline, %partition, offset, attempt, trap = %kind, %action, %verdict,
                guest_output = %stderr.trim_end(),
                "handler trapped; instance discarded: {}", self.outcome.reason()
            ),
            CallEnd::Failed { message, .. } => tracing::debug!(
                tenant, pipeline, %partition, offset, attempt, %action, %verdict, "handler error: {message}"
            ),
            _ => tracing::debug!(
                tenant, pipeline, %partition, offset, attempt, outcome = %self.outcome.label(), %action, %verdict, "handled"
            ),
        }
    }

    /// What became of the delivery, in the words of the logs and metrics: the action, and the
    /// verdict where it says more than the action does.
    pub fn settled_as(&self) -> String {
        let action = self.action.name();
        match self.verdict {
            Verdict::Pause => format!("{action}, pause (max_attempts used up)"),
            Verdict::DeadLetterThenCommit => format!("{action}, dead-letter then commit"),
            Verdict::Leave => format!("{action}, leave uncommitted"),
            Verdict::Commit | Verdict::RedeliverAfter(_) => action.to_string(),
        }
    }

    /// Why the message is dead-lettered or paused: the outcome's reason, prefixed with the
    /// attempt count when `max_attempts` was used up.
    pub fn settle_reason(&self) -> String {
        match self.exhausted {
            true => format!(
                "{} deliveries failed (max_attempts); last: {}",
                self.attempt,
                self.outcome.reason()
            ),
            false => self.outcome.reason(),
        }
    }
}

/// A message's dead letter is on the broker (at least once), or in its partition's open
/// transaction (exactly once); its offset may now be committed.
pub struct DeadLettered<'a> {
    /// The partition of the dead-lettered message.
    pub tp: &'a TopicPartition,
    /// The dead-lettered message's offset, now settled.
    pub offset: i64,
    /// Where the dead letter was written.
    pub dead_letter_topic: &'a str,
    /// `(partition, offset)` of the dead letter in `dead_letter_topic`; `None` inside a
    /// transaction, where it is known only once the transaction commits.
    pub written_to: Option<(i32, i64)>,
    /// Why the message was dead-lettered ([`DeliveryEvent::settle_reason`]).
    pub reason: &'a str,
}

impl DeadLettered<'_> {
    /// Counts the dead letter in the stats and metrics, ends a dead-letter fault episode, and logs
    /// it at info level.
    pub fn emit(self, to: &Observers<'_>) {
        to.metrics.dead_letters.increment(1);
        to.stats.dead_letters.fetch_add(1, Ordering::Relaxed);
        to.dead_letter_faults.recovered();
        match self.written_to {
            Some((partition, at)) => tracing::info!(
                tenant = %to.tenant, pipeline = %to.pipeline, partition = %self.tp, offset = self.offset,
                "dead-lettered to {}/{partition} at offset {at}: {}", self.dead_letter_topic, self.reason
            ),
            None => tracing::info!(
                tenant = %to.tenant, pipeline = %to.pipeline, partition = %self.tp, offset = self.offset,
                "dead-lettered to {} in the partition's transaction: {}", self.dead_letter_topic, self.reason
            ),
        }
    }
}

/// Writing a dead letter failed; it is retried, and the offset stays uncommitted meanwhile.
pub struct DeadLetterFailed<'a> {
    /// The partition of the message whose dead letter failed.
    pub tp: &'a TopicPartition,
    /// The message's offset; it stays uncommitted until a write succeeds.
    pub offset: i64,
    /// Why the write failed.
    pub error: &'a anyhow::Error,
}

impl DeadLetterFailed<'_> {
    /// Counts the failure in the stats and metrics, and logs it through the dead-letter fault log:
    /// once per episode, then a reminder at most every 30 s.
    pub fn emit(self, to: &Observers<'_>) {
        to.metrics.dead_letter_errors.increment(1);
        to.stats.dead_letter_errors.fetch_add(1, Ordering::Relaxed);
        to.dead_letter_faults.fault(&format_args!(
            "{}: offset {}: {:#}; the offset is not committed until it succeeds",
            self.tp, self.offset, self.error
        ));
    }
}
