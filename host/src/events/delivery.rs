//! A delivery: one handler call on one message, and how it settled.

use super::Observers;
use crate::offsets::TopicPartition;
use crate::outcome::{CallEnd, Outcome};
use crate::policy::{Action, Settlement, Verdict};
use crate::recent::Fault;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// A `handle-batch` call handled it.
    pub batched: bool,
}

impl DeliveryEvent {
    /// The event of a call on `tp`'s message at `offset` that ended in `outcome` and `settled`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
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
            batched: false,
        }
    }

    /// Records the delivery in the metrics and the log (inside `span`, the message's span),
    /// then hands it to the sink if there is one.
    pub(crate) fn emit(self, to: &Observers<'_>, span: &tracing::Span) {
        match self.batched {
            // Counted with the rest of its run, once the run is finished.
            true => to
                .topic
                .record_in_run(&self.outcome, self.action, self.elapsed),
            false => to.topic.record(&self.outcome, self.action, self.elapsed),
        }
        let recent = &to.recorder.health().recent;
        recent.handled_by(&self.plugin_version);
        if let CallEnd::Trapped { .. } | CallEnd::Failed { .. } = &self.outcome.end {
            recent.fault(self.fault());
        }
        if self.exhausted {
            to.topic.exhausted.increment(1);
        }
        if matches!(self.verdict, Verdict::RedeliverAfter(_)) {
            to.topic.redeliveries.increment(1);
        }
        if span.is_disabled() {
            // The message's span is filtered out: the pipeline's names the tenant instead, but
            // it is entered only for a line that is written, not for every delivery.
            let trapped = matches!(self.outcome.end, CallEnd::Trapped { .. });
            let written = match trapped {
                true => tracing::enabled!(tracing::Level::WARN),
                false => tracing::enabled!(tracing::Level::DEBUG),
            };
            if written {
                to.recorder.in_span(|| self.log());
            }
        } else {
            span.record("outcome", self.outcome.label());
            span.in_scope(|| self.log());
        }
        if let Some(sink) = &to.recorder.sink {
            let _ = sink.send(self);
        }
    }

    /// The delivery as a fault the console lists.
    fn fault(&self) -> Fault {
        let guest_output = match &self.outcome.end {
            CallEnd::Trapped { stderr, .. } => stderr.clone(),
            _ => String::new(),
        };
        Fault {
            at: crate::control::now_ms(),
            topic: self.topic.to_string(),
            partition: self.partition,
            offset: self.offset,
            attempt: self.attempt,
            outcome: self.outcome.label(),
            reason: self.outcome.reason(),
            guest_output,
            plugin_version: self.plugin_version.to_string(),
        }
    }

    fn log(&self) {
        let partition = format_args!("{}/{}", self.topic, self.partition);
        let (offset, attempt) = (self.offset, self.attempt);
        let (action, verdict) = (self.action.name(), self.verdict.name());
        match &self.outcome.end {
            CallEnd::Trapped { kind, stderr, .. } => tracing::warn!(
                %partition, offset, attempt, trap = %kind, %action, %verdict,
                guest_output = %stderr.trim_end(),
                "handler trapped; instance discarded: {}", self.outcome.reason()
            ),
            CallEnd::Failed { message, .. } => tracing::debug!(
                %partition, offset, attempt, %action, %verdict, "handler error: {message}"
            ),
            _ => tracing::debug!(
                %partition, offset, attempt, outcome = %self.outcome.label(), %action, %verdict, "handled"
            ),
        }
    }

    /// What became of the delivery, in the words of the logs and metrics: the action, and the
    /// verdict where it says more than the action does.
    pub(crate) fn settled_as(&self) -> String {
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
    pub(crate) fn settle_reason(&self) -> String {
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
