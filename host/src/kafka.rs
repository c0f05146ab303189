//! Kafka client helpers of the `produce` and `demo` commands: produce records and wait for the
//! broker to have them, read a group's committed offsets back.

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::VecDeque;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

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

/// A producer for the cluster at `bootstrap`: a delivery fails after 30 s
/// (`message.timeout.ms`), and batches wait up to 5 ms (`linger.ms`).
pub fn producer(bootstrap: &str) -> Result<FutureProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.timeout.ms", "30000")
        .set("linger.ms", "5")
        .create()
        .context("creating a Kafka producer")
}

/// Produces `records` to `topic`, in order, and waits until the broker has them all. Returns
/// where each one was written. When librdkafka's local queue is full, it waits for the oldest
/// delivery instead of failing, so any number of records can be produced. On the first record the
/// broker does not take, stops and says which one and how many were delivered before it.
pub async fn produce(bootstrap: &str, topic: &str, records: &[Record]) -> Result<Vec<(i32, i64)>> {
    let producer = producer(bootstrap)?;
    let mut pending = VecDeque::new();
    let mut offsets = Vec::with_capacity(records.len());
    let delivered = |offsets: &Vec<(i32, i64)>| {
        format!("{} of {} records delivered", offsets.len(), records.len())
    };
    let settle = |index: usize, delivery: DeliveryFuture, offsets: &mut Vec<(i32, i64)>| {
        let summary = delivered(offsets);
        async move {
            match delivery.await {
                Ok(Ok(d)) => Ok((d.partition, d.offset)),
                Ok(Err((e, _))) => Err(anyhow!(
                    "producing record {} to {topic}: {e} ({summary})",
                    index + 1
                )),
                Err(_) => Err(anyhow!(
                    "producing record {} to {topic}: the producer dropped it ({summary})",
                    index + 1
                )),
            }
        }
    };
    for (index, r) in records.iter().enumerate() {
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
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push_back((index, delivery));
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    // Backpressure: the oldest record in the queue leaves it first.
                    record = returned;
                    match pending.pop_front() {
                        Some((i, delivery)) => {
                            let at = settle(i, delivery, &mut offsets).await?;
                            offsets.push(at);
                        }
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                Err((e, _)) => {
                    bail!(
                        "producing record {} to {topic}: {e} ({})",
                        index + 1,
                        delivered(&offsets)
                    )
                }
            }
        }
    }
    while let Some((i, delivery)) = pending.pop_front() {
        let at = settle(i, delivery, &mut offsets).await?;
        offsets.push(at);
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
