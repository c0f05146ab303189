//! Kafka helpers of the tests and benchmarks: read a topic back to its end, create a topic on a
//! real cluster.

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

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

/// Creates a topic through the Admin API (on a real cluster; the embedded broker creates topics
/// with [`ackbar::embedded::EmbeddedBroker::create_topic`]).
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<()> {
    create_topic_as(bootstrap, &[], topic, partitions).await
}

/// [`create_topic`] with librdkafka `properties` (credentials).
pub async fn create_topic_as(
    bootstrap: &str,
    properties: &[(&str, &str)],
    topic: &str,
    partitions: i32,
) -> Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (key, value) in properties {
        config.set(*key, *value);
    }
    let admin: AdminClient<DefaultClientContext> =
        config.create().context("creating an admin client")?;
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
