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
    let mut client = ClientConfig::new();
    for (key, value) in &config.kafka {
        if SHARED_PROPERTY_PREFIXES.iter().any(|p| key.starts_with(p)) {
            client.set(key, value);
        }
    }
    client
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", timeout.as_millis().to_string())
        .set("linger.ms", "5");
    client
}

/// The rdkafka record for an output.
pub(crate) fn to_kafka_record(record: &OutputRecord) -> FutureRecord<'_, [u8], [u8]> {
    let headers = record.headers.iter().fold(
        OwnedHeaders::new_with_capacity(record.headers.len()),
        |headers, h| {
            headers.insert(Header {
                key: &h.key,
                value: h.value.as_deref(),
            })
        },
    );
    let mut kafka: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&record.topic).headers(headers);
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

    /// Writes `records` and waits until the broker has acknowledged every one. They are all
    /// queued first, so one attempt's records travel in as few requests as possible; the
    /// idempotent producer keeps each partition's records in order and without duplicates on
    /// its own retries. On the first failure the error names the record and topic.
    pub async fn write(&self, records: &[OutputRecord]) -> Result<()> {
        let producer = self
            .producer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut deliveries = Vec::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            let queued = producer
                .send_result(to_kafka_record(record))
                .map_err(|(e, _)| e);
            let queued = match queued {
                Ok(delivery) => delivery,
                // A full local queue: wait for the broker to take what is queued, then retry once
                // without a bound on the wait.
                Err(_) => {
                    let sent = producer.send(to_kafka_record(record), Timeout::Never).await;
                    if let Err((error, _)) = sent {
                        return Err(self.failed(&producer, error, i, record));
                    }
                    continue;
                }
            };
            deliveries.push((i, queued));
        }
        for (i, delivery) in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => return Err(self.failed(&producer, error, i, &records[i])),
                Err(_canceled) => {
                    return Err(anyhow::anyhow!(
                        "writing output {} of {} to {}: the producer went away",
                        i + 1,
                        records.len(),
                        records[i].topic
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
            "writing output {} of the attempt to topic {}",
            index + 1,
            record.topic
        ))
    }
}
