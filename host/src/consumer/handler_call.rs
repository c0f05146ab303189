//! One delivery's handler call: the tenant's budget, the sandboxed call, its settlement and its
//! event. A partition's worker and a share group's worker both call the handler through here,
//! and differ only in what they do with the [`Called`] settlement.

use super::state::PipelineState;
use crate::bindings::{Message, MessageFields};
use crate::deadletter::DeadLetter;
use crate::events::{DeliveryEvent, Observers, SendsRefused, TrapCoolDown};
use crate::metrics::MessageMetrics;
use crate::offsets::TopicPartition;
use crate::outcome::CallEnd;
use crate::outputs::Outputs;
use crate::plugin::{CallContext, Finished, InstancePool};
use crate::policy::{DeliveryRules, Settlement, Verdict};
use crate::telemetry::spans::{DeliveryTrace, Handler};
use crate::trace_context::parse_traceparent;
use std::sync::atomic::{self, AtomicU32};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// What a worker calls its handler with.
#[derive(Clone, Copy)]
pub(crate) struct HandlerCall<'a> {
    pub shared: &'a Arc<PipelineState>,
    pub rules: DeliveryRules,
    pub tp: &'a TopicPartition,
    pub metrics: &'a MessageMetrics,
    pub stop: &'a CancellationToken,
    /// Calls in a row that trapped in this partition (or share worker).
    pub trap_streak: &'a AtomicU32,
    /// Who calls: built once per partition ([`call_context`]).
    pub context: &'a Arc<CallContext>,
}

impl<'a> HandlerCall<'a> {
    /// A worker's calls for `tp`, under the pipeline's delivery rules.
    pub fn new(
        shared: &'a Arc<PipelineState>,
        tp: &'a TopicPartition,
        metrics: &'a MessageMetrics,
        stop: &'a CancellationToken,
        trap_streak: &'a AtomicU32,
        context: &'a Arc<CallContext>,
    ) -> Self {
        HandlerCall {
            shared,
            rules: shared.delivery_rules(),
            tp,
            metrics,
            stop,
            trap_streak,
            context,
        }
    }
}

/// The context of every call for `tp` in this pipeline.
pub(crate) fn call_context(shared: &PipelineState, tp: &TopicPartition) -> Arc<CallContext> {
    Arc::new(CallContext {
        tenant: shared.tenant.clone(),
        pipeline: shared.name.clone(),
        topic: tp.topic.clone(),
        partition: tp.partition,
        guest_log: shared.budget.guest_log.clone(),
        outputs: shared.output_rules.clone(),
        recent: Some(shared.recorder.health().recent.clone()),
    })
}

/// One call, settled and recorded.
pub(crate) struct Called {
    pub settled: Settlement,
    /// What the call sent through `producer`.
    pub outputs: Outputs,
    /// Whether those outputs are to be published (and there are some).
    pub publishes: bool,
    /// For a dead letter or a pause: why, and by which plugin version.
    pub reason: Option<SettleReason>,
    /// The delivery's `process` span and the `send` spans of its outputs or dead letter; they
    /// end when this is dropped, after those are written.
    pub trace: DeliveryTrace,
}

/// Why a message is dead-lettered or paused.
pub(crate) struct SettleReason {
    pub text: String,
    /// The outcome's label.
    pub outcome: String,
    /// The plugin version that handled the call.
    pub version: Arc<str>,
}

impl Called {
    /// The dead letter of `message` after this call, for a dead-letter verdict (which always
    /// comes with a reason).
    pub fn dead_letter<'a>(
        &'a self,
        shared: &'a PipelineState,
        message: &'a Message,
    ) -> Option<DeadLetter<'a>> {
        let reason = self.reason.as_ref()?;
        Some(DeadLetter {
            message,
            reason: &reason.text,
            outcome: &reason.outcome,
            attempts: message.attempt,
            plugin_version: &reason.version,
            tenant: &shared.tenant,
            pipeline: &shared.name,
            trace_headers: self.trace.dead_letter_headers(),
        })
    }
}

impl HandlerCall<'_> {
    /// Calls the handler of `pool` (the plugin version current when this attempt started) on
    /// `message` once, `tries` deliveries counted against `max_attempts` (this one included),
    /// under the tenant's limits; settles the outcome with the pipeline's rules and emits its
    /// [`DeliveryEvent`]. `None` if stopped before the call.
    pub async fn once(&self, pool: &InstancePool, message: &Message, tries: u32) -> Option<Called> {
        let shared = self.shared;
        let tp = self.tp;
        let version = pool.plugin().version_shared();
        let span = message_span(shared, tp, message, version);
        let trace = DeliveryTrace::start(&self.handler(version), message, None);
        if !self.cool_down_after_traps().await {
            return None;
        }
        // The tenant's guest-time quota and its bound on calls running at once, over all its
        // pipelines.
        if !shared.budget.wait_for_guest_time(self.stop).await {
            return None;
        }
        let call_slot = shared.budget.call_slot(self.stop).await?;
        let started = call_slot.started();
        // Guest log lines land inside the message's span.
        let call = pool.call_with_outputs(message, self.context);
        // ... and become events of its `process` span.
        let call = async {
            match trace.context() {
                Some(cx) => opentelemetry::context::FutureExt::with_context(call, cx.clone()).await,
                None => call.await,
            }
        };
        let (outcome, outputs) = if span.is_disabled() {
            call.await
        } else {
            call.instrument(span.clone()).await
        };
        let elapsed = started.elapsed();
        drop(call_slot);
        let done = Finished {
            outcome,
            outputs,
            started,
            elapsed,
            batched: false,
        };
        Some(self.record(version, message, &span, trace, tries, done))
    }

    /// Who handles this worker's deliveries, as its spans name it.
    pub fn handler<'v>(&'v self, version: &'v str) -> Handler<'v> {
        let shared = &**self.shared;
        Handler {
            tenant: &shared.tenant,
            pipeline: &shared.name,
            group: shared.config.group_id.as_deref(),
            plugin_version: version,
        }
    }

    /// Settles a call's outcome with the pipeline's rules and emits its [`DeliveryEvent`].
    pub fn record(
        &self,
        version: &Arc<str>,
        message: &dyn MessageFields,
        span: &tracing::Span,
        mut trace: DeliveryTrace,
        tries: u32,
        done: Finished,
    ) -> Called {
        let shared = self.shared;
        if matches!(done.outcome.end, CallEnd::Trapped { .. }) {
            self.trap_streak.fetch_add(1, atomic::Ordering::Relaxed);
        } else {
            self.trap_streak.store(0, atomic::Ordering::Relaxed);
        }
        let SettledCall {
            settled,
            event,
            mut outputs,
            publishes,
        } = settle_call(
            &self.rules,
            &shared.name,
            self.tp,
            message,
            version,
            tries,
            done,
        );
        SendsRefused {
            refused: &outputs.refused,
        }
        .emit(&shared.recorder);
        shared.plugin.count(
            version,
            matches!(event.outcome.end, CallEnd::Trapped { .. }),
            matches!(event.outcome.end, CallEnd::Failed { .. }),
            settled.verdict == Verdict::DeadLetterThenCommit,
        );
        // Only a dead letter or a pause needs the reason spelled out: no allocation otherwise.
        let reason = matches!(
            settled.verdict,
            Verdict::DeadLetterThenCommit | Verdict::Pause
        )
        .then(|| SettleReason {
            text: event.settle_reason(),
            outcome: event.outcome.label(),
            version: version.clone(),
        });
        trace.settled(&event.outcome, settled.verdict.name());
        let handler = self.handler(version);
        match &shared.dead_letters {
            _ if publishes => trace.sending(&mut outputs.records, &handler),
            Some(writer) if settled.verdict == Verdict::DeadLetterThenCommit => {
                trace.dead_letter(writer.topic(), &handler)
            }
            _ => {}
        }
        event.emit(&self.observers(), span);
        Called {
            settled,
            outputs,
            publishes,
            reason,
            trace,
        }
    }

    /// Where this worker's events are recorded.
    pub fn observers(&self) -> Observers<'_> {
        self.shared.recorder.observers(self.metrics)
    }

    /// A worker whose calls keep trapping (an endless loop, a memory bomb) waits before its
    /// next call, longer each time (the pipeline's backoff), so one broken guest cannot keep a
    /// CPU busy with doomed calls. The message is still handled, just later. `false` if stopped
    /// while waiting.
    pub async fn cool_down_after_traps(&self) -> bool {
        let threshold = self.shared.config.tenant_limits.pause_after_traps;
        let streak = self.trap_streak.load(atomic::Ordering::Relaxed);
        if threshold == 0 || streak < threshold {
            return true;
        }
        let wait = self.shared.config.backoff.delay(streak - threshold + 1);
        TrapCoolDown {
            tp: self.tp,
            streak,
            threshold,
            wait,
        }
        .emit(&self.observers());
        self.sleep(wait).await
    }

    /// Sleeps unless stopped first; `false` if stopped.
    pub async fn sleep(&self, duration: Duration) -> bool {
        crate::stop::sleep_unless_stopped(self.stop, duration).await
    }
}

/// A finished handler call settled by a pipeline's rules, not yet recorded: what a worker
/// records and carries out, and what `ackbar invoke` prints.
pub(crate) struct SettledCall {
    pub settled: Settlement,
    /// The delivery, settled.
    pub event: DeliveryEvent,
    /// What the call sent through `producer`.
    pub outputs: Outputs,
    /// Whether those outputs are to be published (and there are some).
    pub publishes: bool,
}

/// Settles `done`, a call on `message` of `tp` by plugin `version`, with `rules`: `tries`
/// deliveries counted against `max_attempts` (this one included).
pub(crate) fn settle_call(
    rules: &DeliveryRules,
    pipeline: &Arc<str>,
    tp: &TopicPartition,
    message: &dyn MessageFields,
    version: &Arc<str>,
    tries: u32,
    done: Finished,
) -> SettledCall {
    let Finished {
        outcome,
        outputs,
        started,
        elapsed,
        batched,
    } = done;
    let settled = rules.settle(&outcome, tries, message.attempt());
    let publishes = settled.publishes_outputs(&outcome) && !outputs.records.is_empty();
    let mut event = DeliveryEvent::new(
        pipeline,
        tp,
        message.offset(),
        message.attempt(),
        version,
        outcome,
        settled,
        started,
        elapsed,
    );
    event.outputs = outputs.records.len();
    event.outputs_published = publishes;
    event.batched = batched;
    SettledCall {
        settled,
        event,
        outputs,
        publishes,
    }
}

/// One span per delivery, joined to the producer's trace when the message carries a
/// `traceparent` header.
pub(crate) fn message_span(
    shared: &PipelineState,
    tp: &TopicPartition,
    message: &(impl MessageFields + ?Sized),
    version: &str,
) -> tracing::Span {
    use tracing::field::Empty;
    let span = tracing::info_span!(
        "message",
        tenant = %shared.tenant,
        pipeline = %shared.name,
        topic = %tp.topic,
        partition = tp.partition,
        offset = message.offset(),
        attempt = message.attempt(),
        plugin = version,
        outcome = Empty,
        trace_id = Empty,
        parent_id = Empty,
    );
    if !span.is_disabled() {
        let parent = message.header("traceparent").and_then(parse_traceparent);
        if let Some(parent) = parent {
            span.record("trace_id", parent.trace_id);
            span.record("parent_id", parent.parent_id);
        }
    }
    span
}
