//! Small Kafka helpers used by the CLI (`produce`, `demo`) and the tests: produce records, read a
//! group's committed offsets back from the broker.

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

/// Reads the first `count` messages of every partition of `topic` (no consumer group), waiting
/// up to `timeout` for them; fewer are returned if they do not arrive in time.
pub fn read_topic(
    bootstrap: &str,
    topic: &str,
    count: usize,
    timeout: Duration,
) -> Result<Vec<rdkafka::message::OwnedMessage>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "ackbar-read-topic")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .context("creating a Kafka consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .with_context(|| format!("metadata of {topic}"))?;
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        }
    }
    consumer.assign(&tpl)?;
    let deadline = std::time::Instant::now() + timeout;
    let mut read = Vec::new();
    while read.len() < count && std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => read.push(m.detach()),
            Some(Err(e)) => return Err(anyhow!("reading {topic}: {e}")),
            None => {}
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
