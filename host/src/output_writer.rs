//! At-least-once outputs: an attempt's records are written with an idempotent `acks=all`
//! producer, and its input offset may be committed only once the broker has every one of them.
//! A failed write is retried by the partition worker (with the pipeline's backoff) while the
//! partition waits; a crash before the commit writes them again.

use crate::config::PipelineConfig;
use crate::outputs::OutputRecord;
use anyhow::{Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use std::sync::Mutex;
use std::time::Duration;

/// Connection properties a pipeline's producers share with its consumer.
const SHARED_PROPERTY_PREFIXES: &[&str] = &[
    "security.",
    "sasl.",
    "ssl.",
    "socket.",
    "client.dns.lookup",
    "broker.address.family",
    "client.id",
];

/// A producer config for one of `config`'s producers: the consumer's connection and security
/// properties, idempotence and `acks=all`, and `timeout` for a delivery.
pub fn producer_config(
    config: &PipelineConfig,
    bootstrap: &str,
    timeout: Duration,
) -> ClientConfig {
    let mut client = connection_config(config, bootstrap);
    client
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", timeout.as_millis().to_string())
        .set("linger.ms", "5");
    client
}

/// A client config reaching `bootstrap` with the connection and security properties of
/// `config`'s consumer, and nothing else.
pub(crate) fn connection_config(config: &PipelineConfig, bootstrap: &str) -> ClientConfig {
    let mut client = ClientConfig::new();
    for (key, value) in &config.kafka {
        if SHARED_PROPERTY_PREFIXES.iter().any(|p| key.starts_with(p)) {
            client.set(key, value);
        }
    }
    client.set("bootstrap.servers", bootstrap);
    client
}

/// The rdkafka record for an output.
pub(crate) fn to_kafka_record(record: &OutputRecord) -> FutureRecord<'_, [u8], [u8]> {
    let mut kafka: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&record.topic);
    // Most outputs have no headers: no librdkafka header list for them.
    if !record.headers.is_empty() {
        let headers = record.headers.iter().fold(
            OwnedHeaders::new_with_capacity(record.headers.len()),
            |headers, h| {
                headers.insert(Header {
                    key: &h.key,
                    value: h.value.as_deref(),
                })
            },
        );
        kafka = kafka.headers(headers);
    }
    if let Some(key) = &record.key {
        kafka = kafka.key(key.as_slice());
    }
    if let Some(payload) = &record.payload {
        kafka = kafka.payload(payload.as_slice());
    }
    if let Some(partition) = record.partition {
        kafka = kafka.partition(partition);
    }
    kafka
}

/// An attempt's records, queued on the producer; [`OutputWriter::confirm`] waits for the
/// broker's acknowledgements.
pub struct QueuedWrite {
    deliveries: Vec<(usize, String, rdkafka::producer::DeliveryFuture)>,
    producer: FutureProducer,
}

/// Writes one pipeline's outputs.
pub struct OutputWriter {
    config: ClientConfig,
    /// Replaced after a fatal producer error (an idempotent producer cannot recover from one).
    producer: Mutex<FutureProducer>,
    tenant: String,
    pipeline: String,
}

impl OutputWriter {
    /// The pipeline's writer, or `None` for a pipeline without `outputs` or one that writes
    /// them in transactions.
    pub fn for_pipeline(config: &PipelineConfig, bootstrap: &str) -> Result<Option<Self>> {
        if config.outputs.topics.is_empty()
            || config.delivery == crate::config::DeliveryGuarantee::ExactlyOnce
        {
            return Ok(None);
        }
        let client = producer_config(config, bootstrap, config.output_timeout);
        let producer = client.create().with_context(|| {
            format!(
                "tenant '{}': pipeline '{}': creating the output producer",
                config.tenant, config.name
            )
        })?;
        Ok(Some(OutputWriter {
            config: client,
            producer: Mutex::new(producer),
            tenant: config.tenant.clone(),
            pipeline: config.name.clone(),
        }))
    }

    /// Queues `records` for writing without waiting: the broker's acknowledgements come with
    /// [`QueuedWrite::confirmed`]. Records queued one after the other keep their order per
    /// partition (the idempotent producer), so a partition worker can go on to its next message
    /// while they travel. Fails (queueing nothing more) when librdkafka's local queue is full.
    pub fn queue(&self, records: &[OutputRecord]) -> Result<QueuedWrite> {
        let producer = self
            .producer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut deliveries = Vec::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            match producer.send_result(to_kafka_record(record)) {
                Ok(delivery) => deliveries.push((i, record.topic.clone(), delivery)),
                Err((error, _)) => return Err(self.failed(&producer, error, i, record)),
            }
        }
        Ok(QueuedWrite {
            deliveries,
            producer,
        })
    }

    /// Writes `records` and waits until the broker has acknowledged every one. When the local
    /// queue is full, waits for the broker to take what is queued instead of failing. On the
    /// first failure the error names the record and topic.
    pub async fn write(&self, records: &[OutputRecord]) -> Result<()> {
        match self.queue(records) {
            Ok(queued) => self.confirm(queued).await,
            Err(_) => {
                // A full local queue (or a fatal producer, replaced by now): one at a time,
                // each waiting for room.
                let producer = self
                    .producer
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                for (i, record) in records.iter().enumerate() {
                    let sent = producer.send(to_kafka_record(record), Timeout::Never).await;
                    if let Err((error, _)) = sent {
                        return Err(self.failed(&producer, error, i, record));
                    }
                }
                Ok(())
            }
        }
    }

    /// Waits until the broker has acknowledged every record of `queued`.
    pub async fn confirm(&self, queued: QueuedWrite) -> Result<()> {
        let count = queued.deliveries.len();
        for (i, topic, delivery) in queued.deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => {
                    return Err(self.failed_at(&queued.producer, error, i, &topic))
                }
                Err(_canceled) => {
                    return Err(anyhow::anyhow!(
                        "writing output {} of {count} to {topic}: the producer went away",
                        i + 1
                    ))
                }
            }
        }
        Ok(())
    }

    fn failed(
        &self,
        producer: &FutureProducer,
        error: rdkafka::error::KafkaError,
        index: usize,
        record: &OutputRecord,
    ) -> anyhow::Error {
        self.failed_at(producer, error, index, &record.topic)
    }

    fn failed_at(
        &self,
        producer: &FutureProducer,
        error: rdkafka::error::KafkaError,
        index: usize,
        topic: &str,
    ) -> anyhow::Error {
        if let Some(fatal) = producer.client().fatal_error() {
            tracing::warn!(
                tenant = %self.tenant, pipeline = %self.pipeline,
                "output producer hit a fatal error ({fatal:?}); creating a new one"
            );
            if let Ok(fresh) = self.config.create::<FutureProducer>() {
                *self.producer.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
            }
        }
        anyhow::Error::new(error).context(format!(
            "writing output {} of the attempt to topic {topic}",
            index + 1
        ))
    }
}
