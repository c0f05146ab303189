//! A pipeline's spans, after OpenTelemetry's messaging conventions: `process {topic}` per
//! delivery (kind CONSUMER, child of the record's `traceparent`), `send {topic}` per output and
//! dead letter (kind PRODUCER, its context written into the record's `traceparent`), `commit`
//! and `commit transaction` (kind CLIENT, roots of their own traces).
//!
//! With tracing off every function here is one load of an empty cell. With it on, a delivery
//! the sampler drops costs a span id and a context, and no attributes: they are set only on
//! spans that record.

use crate::bindings::{Header, Message};
use crate::outcome::{CallEnd, ErrorKind, Outcome};
use crate::outputs::OutputRecord;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, Span};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Makes `tracer` the one every pipeline of this process records with.
pub(super) fn install(tracer: SdkTracer) {
    let _ = TRACER.set(tracer);
}

fn tracer() -> Option<&'static SdkTracer> {
    TRACER.get()
}

/// Who handles a delivery: the names every span of a pipeline carries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Handler<'a> {
    pub tenant: &'a str,
    pub pipeline: &'a str,
    /// The consumer group; `None` for a pipeline that assigns partitions itself.
    pub group: Option<&'a str>,
    pub plugin_version: &'a str,
}

/// The `process` span of one delivery and the `send` spans of its outputs or dead letter. They
/// end when this is dropped, once those records are written.
#[derive(Default)]
pub(crate) struct DeliveryTrace {
    /// The recording `process` span; `None` with tracing off or when the sampler dropped it.
    cx: Option<Context>,
    /// What a delivery the sampler dropped passes on to its outputs: the unrecorded span's ids.
    unsampled: Option<SpanContext>,
    /// Recording `send` spans.
    sends: Vec<Context>,
    /// The dead letter's `traceparent` (and `tracestate`).
    dead_letter_headers: Vec<Header>,
}

impl DeliveryTrace {
    /// Whether deliveries are traced: tracing is on in this process.
    pub(crate) fn on() -> bool {
        tracer().is_some()
    }

    /// Starts the `process {topic}` span of `message`'s delivery, now or (for a message a batch
    /// call handled) at `started`.
    pub(crate) fn start(
        handler: &Handler<'_>,
        message: &Message,
        started: Option<SystemTime>,
    ) -> Self {
        let Some(tracer) = tracer() else {
            return DeliveryTrace::default();
        };
        let parent = TraceContextPropagator::new()
            .extract_with_context(&Context::new(), &HeaderExtractor(&message.headers));
        // Named in full only once it records: most deliveries are not sampled.
        let mut builder = tracer.span_builder("process").with_kind(SpanKind::Consumer);
        if let Some(started) = started {
            builder = builder.with_start_time(started);
        }
        let mut span = tracer.build_with_context(builder, &parent);
        if !span.is_recording() {
            return DeliveryTrace {
                unsampled: Some(span.span_context().clone()),
                ..DeliveryTrace::default()
            };
        }
        span.update_name(format!("process {}", message.topic));
        {
            let mut attributes = vec![
                KeyValue::new("messaging.system", "kafka"),
                KeyValue::new("messaging.operation.type", "process"),
                KeyValue::new("messaging.operation.name", "process"),
                KeyValue::new("messaging.destination.name", message.topic.clone()),
                KeyValue::new(
                    "messaging.destination.partition.id",
                    message.partition.to_string(),
                ),
                KeyValue::new("messaging.kafka.offset", message.offset),
                KeyValue::new(
                    "messaging.message.body.size",
                    message.payload.as_ref().map_or(0, Vec::len) as i64,
                ),
                KeyValue::new("ackbar.tenant", handler.tenant.to_string()),
                KeyValue::new("ackbar.pipeline", handler.pipeline.to_string()),
                KeyValue::new("ackbar.plugin.version", handler.plugin_version.to_string()),
                KeyValue::new("ackbar.attempt", i64::from(message.attempt)),
            ];
            if let Some(group) = handler.group {
                attributes.push(KeyValue::new(
                    "messaging.consumer.group.name",
                    group.to_string(),
                ));
            }
            // Only a key that is text: binary keys are not attribute material.
            if let Some(key) = message
                .key
                .as_deref()
                .and_then(|k| std::str::from_utf8(k).ok())
            {
                attributes.push(KeyValue::new(
                    "messaging.kafka.message.key",
                    key.to_string(),
                ));
            }
            span.set_attributes(attributes);
        }
        DeliveryTrace {
            cx: Some(parent.with_span(span)),
            ..DeliveryTrace::default()
        }
    }

    /// The context to run the handler call in, so the guest's log lines become span events.
    pub(crate) fn context(&self) -> Option<&Context> {
        self.cx.as_ref()
    }

    /// Records how the delivery ended: `ackbar.verdict`, `ackbar.outcome`, and for a returned
    /// error or a trap `error.type` and an error status.
    pub(crate) fn settled(&self, outcome: &Outcome, verdict: &str) {
        let Some(cx) = &self.cx else { return };
        let span = cx.span();
        span.set_attribute(KeyValue::new("ackbar.verdict", verdict.to_string()));
        span.set_attribute(KeyValue::new("ackbar.outcome", outcome.label()));
        let error_type = match &outcome.end {
            CallEnd::Trapped { kind, .. } => Some(kind.to_string()),
            CallEnd::Failed {
                kind: ErrorKind::Retry,
                ..
            } => Some("handler_error".to_string()),
            CallEnd::Failed {
                kind: ErrorKind::Fatal,
                ..
            } => Some("handler_fatal_error".to_string()),
            CallEnd::Returned(_) | CallEnd::Interrupted(_) => None,
        };
        if let Some(error_type) = error_type {
            span.set_attribute(KeyValue::new("error.type", error_type));
            span.set_status(Status::error(outcome.reason()));
        }
    }

    /// Starts a `send` span for each of `records` (an attempt's outputs to be published) and
    /// writes its context into the record's `traceparent`, replacing any the guest set. A
    /// delivery the sampler dropped passes its own context on unrecorded, so the next pipeline
    /// does not start a trace of its own either.
    pub(crate) fn sending(&mut self, records: &mut [OutputRecord], handler: &Handler<'_>) {
        if let Some(unsampled) = self.unsampled_context() {
            for record in records {
                inject(&unsampled, &mut record.headers);
            }
            return;
        }
        let Some(cx) = &self.cx else { return };
        for record in records {
            let send = send_span(cx, &record.topic, record.partition, handler, false);
            inject(&send, &mut record.headers);
            self.sends.push(send);
        }
    }

    /// The context a delivery the sampler dropped passes on.
    fn unsampled_context(&self) -> Option<Context> {
        let unsampled = self.unsampled.clone()?;
        Some(Context::new().with_remote_span_context(unsampled))
    }

    /// Starts the `send` span of a dead letter to `topic`; the headers that carry it on are
    /// [`dead_letter_headers`](Self::dead_letter_headers).
    pub(crate) fn dead_letter(&mut self, topic: &str, handler: &Handler<'_>) {
        if let Some(unsampled) = self.unsampled_context() {
            inject(&unsampled, &mut self.dead_letter_headers);
            return;
        }
        let Some(cx) = &self.cx else { return };
        let send = send_span(cx, topic, None, handler, true);
        inject(&send, &mut self.dead_letter_headers);
        self.sends.push(send);
    }

    /// The `traceparent` (and `tracestate`) a dead letter carries instead of its message's.
    pub(crate) fn dead_letter_headers(&self) -> &[Header] {
        &self.dead_letter_headers
    }
}

/// A `send {topic}` span under `parent` (a recording `process` span), as a context.
fn send_span(
    parent: &Context,
    topic: &str,
    partition: Option<i32>,
    handler: &Handler<'_>,
    dead_letter: bool,
) -> Context {
    let mut attributes = vec![
        KeyValue::new("messaging.system", "kafka"),
        KeyValue::new("messaging.operation.type", "send"),
        KeyValue::new("messaging.operation.name", "send"),
        KeyValue::new("messaging.destination.name", topic.to_string()),
        KeyValue::new("ackbar.tenant", handler.tenant.to_string()),
        KeyValue::new("ackbar.pipeline", handler.pipeline.to_string()),
        KeyValue::new("ackbar.dead_letter", dead_letter),
    ];
    if let Some(partition) = partition {
        attributes.push(KeyValue::new(
            "messaging.destination.partition.id",
            partition.to_string(),
        ));
    }
    let Some(tracer) = tracer() else {
        return parent.clone();
    };
    let span = tracer
        .span_builder(format!("send {topic}"))
        .with_kind(SpanKind::Producer)
        .with_attributes(attributes)
        .start_with_context(tracer, parent);
    parent.with_span(span)
}

/// An offset commit of `pipeline` that took `took` and ended now: the `commit` span, the root
/// of its own trace (a commit covers many deliveries).
pub(crate) fn commit(
    tenant: &str,
    pipeline: &str,
    group: Option<&str>,
    offsets: &[(crate::offsets::TopicPartition, i64)],
    took: Duration,
) {
    let Some(mut span) = client_span("commit", tenant, pipeline, group, took) else {
        return;
    };
    let committed: Vec<String> = offsets
        .iter()
        .map(|(tp, offset)| format!("{tp}@{offset}"))
        .collect();
    span.set_attribute(KeyValue::new("ackbar.offsets", committed.join(",")));
    span.end();
}

/// A transaction of `pipeline`'s partition `partition` that committed `messages` messages and
/// `records` output records: the `commit transaction` span.
pub(crate) fn transaction(
    tenant: &str,
    pipeline: &str,
    group: Option<&str>,
    partition: &crate::offsets::TopicPartition,
    messages: u64,
    records: u64,
    took: Duration,
) {
    let Some(mut span) = client_span("commit transaction", tenant, pipeline, group, took) else {
        return;
    };
    span.set_attributes([
        KeyValue::new("messaging.destination.name", partition.topic.to_string()),
        KeyValue::new(
            "messaging.destination.partition.id",
            partition.partition.to_string(),
        ),
        KeyValue::new("messaging.batch.message_count", messages as i64),
        KeyValue::new("ackbar.records", records as i64),
    ]);
    span.end();
}

fn client_span(
    name: &'static str,
    tenant: &str,
    pipeline: &str,
    group: Option<&str>,
    took: Duration,
) -> Option<Span> {
    let tracer = tracer()?;
    let start = SystemTime::now()
        .checked_sub(took)
        .unwrap_or_else(SystemTime::now);
    let mut span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Client)
        .with_start_time(start)
        .start_with_context(tracer, &Context::new());
    if !span.is_recording() {
        return None;
    }
    span.set_attributes([
        KeyValue::new("messaging.system", "kafka"),
        KeyValue::new("messaging.operation.type", "settle"),
        KeyValue::new("messaging.operation.name", name),
        KeyValue::new("ackbar.tenant", tenant.to_string()),
        KeyValue::new("ackbar.pipeline", pipeline.to_string()),
    ]);
    if let Some(group) = group {
        span.set_attribute(KeyValue::new(
            "messaging.consumer.group.name",
            group.to_string(),
        ));
    }
    Some(span)
}

/// A guest log line, as an event on the span of the delivery it was written in (if that span
/// records): `batch` is the current message's span in a batch call (`Some(None)` if it has
/// none), else the call runs in its span.
pub(crate) fn guest_log(batch: Option<Option<&Context>>, level: &str, line: &str) {
    if tracer().is_none() {
        return;
    }
    let add = |cx: &Context| {
        let span = cx.span();
        if span.is_recording() {
            span.add_event(
                "log",
                vec![
                    KeyValue::new("log.severity", level.to_string()),
                    KeyValue::new("log.message", line.to_string()),
                ],
            );
        }
    };
    match batch {
        Some(Some(cx)) => add(cx),
        Some(None) => {}
        None => Context::map_current(add),
    }
}

/// Writes `cx`'s `traceparent` (and `tracestate`) into `headers`, replacing what is there.
fn inject(cx: &Context, headers: &mut Vec<Header>) {
    let mut injector = HeaderInjector(headers);
    TraceContextPropagator::new().inject_context(cx, &mut injector);
}

struct HeaderExtractor<'a>(&'a [Header]);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|h| h.key.eq_ignore_ascii_case(key))
            .and_then(|h| h.value.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|h| h.key.as_str()).collect()
    }
}

struct HeaderInjector<'a>(&'a mut Vec<Header>);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.retain(|h| !h.key.eq_ignore_ascii_case(key));
        self.0.push(Header {
            key: key.to_string(),
            value: Some(value.into_bytes()),
        });
    }
}
