//! Small Kafka helpers used by the CLI (`produce`, `demo`) and the tests: produce records, read a
//! group's committed offsets back from the broker.

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

/// One record to produce.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    pub fn new(partition: i32, payload: impl Into<Vec<u8>>) -> Self {
        Record {
            partition: Some(partition),
            payload: payload.into(),
            ..Record::default()
        }
    }
}

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

/// Every message of `topic`, read from the beginning of each partition up to its high watermark
/// as it was when the read began: what is on the broker, not a count the caller expects, so an
/// extra message is seen. Fails if the end is not reached within `timeout`.
pub fn read_topic(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<rdkafka::message::OwnedMessage>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "ackbar-read-topic")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        // Transactional producers leave control records behind: skip aborted data.
        .set("isolation.level", "read_committed")
        .create()
        .context("creating a Kafka consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .with_context(|| format!("metadata of {topic}"))?;
    let mut tpl = TopicPartitionList::new();
    let mut remaining = std::collections::HashMap::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), TIMEOUT)
                .with_context(|| format!("watermarks of {topic}/{}", p.id()))?;
            if high > low {
                tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
                remaining.insert(p.id(), high);
            }
        }
    }
    if remaining.is_empty() {
        return Ok(Vec::new());
    }
    consumer.assign(&tpl)?;
    let deadline = std::time::Instant::now() + timeout;
    let mut read = Vec::new();
    while !remaining.is_empty() {
        if std::time::Instant::now() >= deadline {
            bail!(
                "reading {topic}: the end of partitions {:?} was not reached within {timeout:?}",
                remaining.keys()
            );
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let (partition, next) = (m.partition(), m.offset() + 1);
                if remaining.get(&partition).is_some_and(|high| next >= *high) {
                    remaining.remove(&partition);
                }
                read.push(m.detach());
            }
            Some(Err(e)) => return Err(anyhow!("reading {topic}: {e}")),
            None => {
                // Control records at the end leave no message to see: ask where we are.
                let position = consumer.position()?;
                for e in position.elements() {
                    if let Offset::Offset(at) = e.offset() {
                        if remaining
                            .get(&e.partition())
                            .is_some_and(|high| at >= *high)
                        {
                            remaining.remove(&e.partition());
                        }
                    }
                }
            }
        }
    }
    Ok(read)
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

/// The same component with a custom section appended: identical behaviour, another version id.
/// Used to exercise hot reload with many distinct versions.
pub fn tag_component(component: &[u8], tag: u32) -> Vec<u8> {
    const NAME: &[u8] = b"ackbar-version-tag";
    let payload = tag.to_le_bytes();
    let size = 1 + NAME.len() + payload.len();
    let mut bytes = component.to_vec();
    bytes.push(0); // custom section id
    bytes.push(size as u8); // LEB128 of a size < 128
    bytes.push(NAME.len() as u8);
    bytes.extend_from_slice(NAME);
    bytes.extend_from_slice(&payload);
    bytes
}

/// Creates a topic through the Admin API (on a real cluster; the embedded broker creates topics
/// with [`crate::embedded::EmbeddedBroker::create_topic`]).
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("creating an admin client")?;
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
        )
        .await
        .with_context(|| format!("creating topic {topic}"))?;
    for result in results {
        result.map_err(|(name, code)| anyhow!("creating topic {name}: {code}"))?;
    }
    Ok(())
}
