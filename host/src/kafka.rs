//! Kafka client helpers of the `produce` and `demo` commands: produce records and wait for the
//! broker to have them, read a group's committed offsets back.

use anyhow::{anyhow, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

/// One record to produce.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// The partition to write to; `None` leaves it to librdkafka's partitioner (by key hash when
    /// there is a key).
    pub partition: Option<i32>,
    /// `None` for a record without a key.
    pub key: Option<Vec<u8>>,
    /// The record value.
    pub payload: Vec<u8>,
    /// `(name, value)` headers, in order; each one has a value.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    /// A record for `partition` with `payload` and no key or headers.
    pub fn new(partition: i32, payload: impl Into<Vec<u8>>) -> Self {
        Record {
            partition: Some(partition),
            payload: payload.into(),
            ..Record::default()
        }
    }
}

/// A producer for the cluster at `bootstrap`: a delivery fails after 10 s
/// (`message.timeout.ms`), and batches wait up to 5 ms (`linger.ms`).
pub fn producer(bootstrap: &str) -> Result<FutureProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.timeout.ms", "10000")
        .set("linger.ms", "5")
        .create()
        .context("creating a Kafka producer")
}

/// Produces `records` to `topic` and waits until the broker has them all. Returns the offsets.
pub async fn produce(bootstrap: &str, topic: &str, records: &[Record]) -> Result<Vec<(i32, i64)>> {
    let producer = producer(bootstrap)?;
    let mut pending = Vec::with_capacity(records.len());
    for r in records {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &r.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(topic)
            .payload(&r.payload)
            .headers(headers);
        if let Some(key) = &r.key {
            record = record.key(key);
        }
        if let Some(p) = r.partition {
            record = record.partition(p);
        }
        let delivery = producer
            .send_result(record)
            .map_err(|(e, _)| anyhow!("producing to {topic}: {e}"))?;
        pending.push(delivery);
    }
    let mut offsets = Vec::with_capacity(pending.len());
    for delivery in pending {
        let delivered = delivery
            .await
            .map_err(|_| anyhow!("producer dropped a delivery"))?
            .map_err(|(e, _)| anyhow!("producing to {topic}: {e}"))?;
        offsets.push((delivered.partition, delivered.offset));
    }
    Ok(offsets)
}

/// The offsets `group` has committed for `partitions` of `topic`, read from the broker
/// (`None`: nothing committed).
pub fn committed_offsets(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> Result<Vec<(i32, Option<i64>)>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .context("creating an offset-reading consumer")?;
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, TIMEOUT)
        .with_context(|| format!("reading committed offsets of group {group}"))?;
    Ok(partitions
        .iter()
        .map(|&p| {
            let offset = committed
                .find_partition(topic, p)
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                });
            (p, offset)
        })
        .collect())
}
