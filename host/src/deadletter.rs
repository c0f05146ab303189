//! Dead-letter topics: a rejected or exhausted message is copied, with what happened to it, to
//! the pipeline's `dead_letter_topic` before its offset may be committed.
//!
//! The producer is idempotent with `acks=all`, so a write counts only once every in-sync replica
//! has it; a write that fails is retried by the caller and the source offset waits, so a message
//! is never committed without its dead letter (it may be dead-lettered twice after a crash).

use crate::bindings::Message;
use crate::config::PipelineConfig;
use crate::output_writer::producer_config;
use anyhow::{Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use std::sync::Mutex;

/// What is known about a message when it is dead-lettered.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    /// The message as the guest saw it: its key, payload, timestamp and headers are copied, and
    /// the `ackbar-*` headers follow its own.
    pub message: &'a Message,
    /// The handler's error text, the trap reason, or why it was rejected.
    pub reason: &'a str,
    /// The outcome label of the last delivery (`returned:reject`, `trap:panic`, ...).
    pub outcome: &'a str,
    /// Deliveries of the message, the last one included (`ackbar-attempts`).
    pub attempts: u32,
    /// The plugin version of the last delivery (`ackbar-plugin-version`).
    pub plugin_version: &'a str,
    /// The pipeline's tenant (`ackbar-tenant`).
    pub tenant: &'a str,
    /// The pipeline that gave up on the message (`ackbar-pipeline`).
    pub pipeline: &'a str,
    /// The dead letter's own `traceparent` (and `tracestate`), in place of the message's.
    pub trace_headers: &'a [crate::bindings::Header],
}

impl DeadLetter<'_> {
    /// The record written to `topic`: the message's key, payload, timestamp and headers, then the
    /// `ackbar-*` headers.
    pub(crate) fn kafka_record<'b>(&'b self, topic: &'b str) -> FutureRecord<'b, [u8], [u8]> {
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(topic).headers(self.headers());
        if let Some(key) = &self.message.key {
            record = record.key(key.as_slice());
        }
        if let Some(payload) = &self.message.payload {
            record = record.payload(payload.as_slice());
        }
        if let Some(ts) = self.message.timestamp {
            record = record.timestamp(ts);
        }
        record
    }

    /// The original headers, then `ackbar-*` headers describing the failure.
    fn headers(&self) -> OwnedHeaders {
        let m = self.message;
        let replaced = |key: &str| {
            self.trace_headers
                .iter()
                .any(|t| t.key.eq_ignore_ascii_case(key))
        };
        let original = m
            .headers
            .iter()
            .filter(|h| !replaced(&h.key))
            .chain(self.trace_headers)
            .fold(
                OwnedHeaders::new_with_capacity(m.headers.len() + 10),
                |headers, h| {
                    headers.insert(Header {
                        key: &h.key,
                        value: h.value.as_deref(),
                    })
                },
            );
        let partition = m.partition.to_string();
        let offset = m.offset.to_string();
        let timestamp = m.timestamp.map(|t| t.to_string());
        let attempts = self.attempts.to_string();
        [
            ("ackbar-original-topic", Some(m.topic.as_str())),
            ("ackbar-original-partition", Some(&partition)),
            ("ackbar-original-offset", Some(&offset)),
            ("ackbar-original-timestamp", timestamp.as_deref()),
            ("ackbar-outcome", Some(self.outcome)),
            ("ackbar-reason", Some(self.reason)),
            ("ackbar-attempts", Some(&attempts)),
            ("ackbar-plugin-version", Some(self.plugin_version)),
            ("ackbar-tenant", Some(self.tenant)),
            ("ackbar-pipeline", Some(self.pipeline)),
        ]
        .into_iter()
        // A message without a timestamp gets no timestamp header.
        .filter_map(|(key, value)| Some((key, value?)))
        .fold(original, |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(value),
            })
        })
    }
}

/// Writes one pipeline's dead letters to its `dead_letter_topic`, with an idempotent `acks=all`
/// producer that shares the consumer's connection and security properties.
pub struct DeadLetterWriter {
    topic: String,
    config: ClientConfig,
    /// Replaced after a fatal producer error (an idempotent producer cannot recover from one).
    producer: Mutex<FutureProducer>,
}

impl DeadLetterWriter {
    /// The pipeline's writer, or `None` without a `dead_letter_topic`.
    pub fn for_pipeline(config: &PipelineConfig, bootstrap: &str) -> Result<Option<Self>> {
        let Some(topic) = &config.dead_letter_topic else {
            return Ok(None);
        };
        let client = producer_config(config, bootstrap, config.dead_letter_timeout);
        let producer = client.create().with_context(|| {
            format!(
                "pipeline '{}': creating the dead-letter producer for topic {topic}",
                config.name
            )
        })?;
        Ok(Some(DeadLetterWriter {
            topic: topic.clone(),
            config: client,
            producer: Mutex::new(producer),
        }))
    }

    /// The `dead_letter_topic` written to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Writes one dead letter and waits for the broker's acknowledgement.
    pub async fn write(&self, letter: &DeadLetter<'_>) -> Result<(i32, i64)> {
        let producer = self
            .producer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let result = producer
            .send(letter.kafka_record(&self.topic), Timeout::Never)
            .await;
        match result {
            Ok(delivery) => Ok((delivery.partition, delivery.offset)),
            Err((error, _)) => {
                if let Some(fatal) = producer.client().fatal_error() {
                    tracing::warn!(
                        tenant = %letter.tenant, pipeline = %letter.pipeline,
                        "dead-letter producer hit a fatal error ({fatal:?}); creating a new one"
                    );
                    if let Ok(fresh) = self.config.create::<FutureProducer>() {
                        *self.producer.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
                    }
                }
                Err(anyhow::Error::new(error)
                    .context(format!("writing to dead-letter topic {}", self.topic)))
            }
        }
    }
}
