//! A pipeline's dead letters, as the console browses and replays them. The dead-letter topic
//! may be shared: a letter is the pipeline's when its `ackbar-tenant` and `ackbar-pipeline`
//! headers say so. Replaying produces the original record (key, payload, headers without the
//! `ackbar-*` ones) to its original topic with an idempotent `acks=all` producer and waits for
//! the broker: at least once. The letter stays in its topic; replaying it again sends it again.

use crate::config::PipelineConfig;
use crate::output_writer::{connection_config, producer_config};
use anyhow::{bail, Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Serialize;
use std::time::{Duration, Instant};

/// How long reading the topic may take before the console answers with an error.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Payload bytes shown.
const PREVIEW: usize = 512;

/// One dead letter.
#[derive(Debug, Clone, Serialize)]
pub struct Letter {
    /// Where it is in the dead-letter topic.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// The original key, as text (lossy).
    pub key: Option<String>,
    /// Every header, as text (lossy): the original ones and the `ackbar-*` ones with the reason.
    pub headers: Vec<(String, String)>,
    /// The first bytes of the payload, as text (lossy).
    pub payload_preview: String,
    /// The payload's size in bytes.
    pub payload_bytes: usize,
}

/// Reads the newest `limit` letters of each partition of `config`'s dead-letter topic that are
/// this pipeline's, oldest first. Blocks: run it off the runtime.
pub fn browse(config: &PipelineConfig, bootstrap: &str, limit: usize) -> Result<Vec<Letter>> {
    let mut letters = Vec::new();
    read(config, bootstrap, Some(limit), |m| {
        letters.push(letter(m));
        true
    })?;
    Ok(letters)
}

/// Replays the pipeline's letter at `at` (partition, offset), or every one of its letters with
/// `None`, to the original topic; returns how many the broker took.
pub async fn replay(
    config: PipelineConfig,
    bootstrap: String,
    at: Option<(i32, i64)>,
) -> Result<usize> {
    let reading = config.clone();
    let chosen = tokio::task::spawn_blocking(move || {
        let mut chosen = Vec::new();
        read(&reading, &bootstrap.clone(), None, |m| {
            if at.is_none_or(|(p, o)| m.partition() == p && m.offset() == o) {
                chosen.push(m.detach());
            }
            true
        })
        .map(|()| (chosen, bootstrap))
    })
    .await??;
    let (chosen, bootstrap) = chosen;
    let config = &config;
    if let Some((partition, offset)) = at {
        if chosen.is_empty() {
            bail!("no dead letter of this pipeline at partition {partition} offset {offset}");
        }
    }
    let producer: FutureProducer = producer_config(config, &bootstrap, Duration::from_secs(30))
        .create()
        .context("creating the replay producer")?;
    let mut replayed = 0;
    for m in &chosen {
        let topic = header(m.headers(), "ackbar-original-topic")
            .context("a dead letter without ackbar-original-topic")?;
        if !config.topics.contains(&topic) {
            bail!(
                "dead letter at {}@{}: its topic {topic} is not one this pipeline reads",
                m.partition(),
                m.offset()
            );
        }
        let source = format!("{}/{}@{}", m.topic(), m.partition(), m.offset());
        let mut headers = OwnedHeaders::new();
        for h in m.headers().into_iter().flat_map(|hs| hs.iter()) {
            if !h.key.starts_with("ackbar-") {
                headers = headers.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
        headers = headers.insert(Header {
            key: "ackbar-replayed-from",
            value: Some(source.as_bytes()),
        });
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic).headers(headers);
        if let Some(key) = m.key() {
            record = record.key(key);
        }
        if let Some(payload) = m.payload() {
            record = record.payload(payload);
        }
        producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .with_context(|| format!("replaying {source} to {topic}"))?;
        replayed += 1;
    }
    Ok(replayed)
}

/// Calls `each` with every letter of the pipeline in its dead-letter topic, up to each
/// partition's end when the read began (only the last `limit` of each partition with a limit).
fn read(
    config: &PipelineConfig,
    bootstrap: &str,
    limit: Option<usize>,
    mut each: impl FnMut(&rdkafka::message::BorrowedMessage<'_>) -> bool,
) -> Result<()> {
    let Some(topic) = &config.dead_letter_topic else {
        bail!("pipeline '{}' has no dead_letter_topic", config.name);
    };
    let consumer: BaseConsumer = connection_config(config, bootstrap)
        .set("group.id", format!("ackbar-console-{}", config.name))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("isolation.level", "read_committed")
        .create()
        .context("creating the dead-letter reader")?;
    let metadata = consumer
        .fetch_metadata(Some(topic), READ_TIMEOUT)
        .with_context(|| format!("reading the metadata of {topic}"))?;
    let mut assignment = TopicPartitionList::new();
    let mut ends = std::collections::HashMap::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition.id(), READ_TIMEOUT)
            .with_context(|| format!("reading the end of {topic}/{}", partition.id()))?;
        if high <= low {
            continue;
        }
        let from = match limit {
            Some(limit) => low.max(high - limit as i64),
            None => low,
        };
        assignment.add_partition_offset(topic, partition.id(), Offset::Offset(from))?;
        ends.insert(partition.id(), high);
    }
    if ends.is_empty() {
        return Ok(());
    }
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + READ_TIMEOUT;
    while !ends.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "reading {topic}: not at its end after {} s",
                READ_TIMEOUT.as_secs()
            );
        }
        let Some(m) = consumer.poll(left) else {
            continue;
        };
        let m = m.with_context(|| format!("reading {topic}"))?;
        let (partition, offset) = (m.partition(), m.offset());
        let ours = header(m.headers(), "ackbar-pipeline").as_deref() == Some(&config.name)
            && header(m.headers(), "ackbar-tenant").as_deref() == Some(&config.tenant);
        if ours && !each(&m) {
            return Ok(());
        }
        if ends.get(&partition).is_some_and(|end| offset + 1 >= *end) {
            ends.remove(&partition);
        }
    }
    Ok(())
}

fn letter(m: &rdkafka::message::BorrowedMessage<'_>) -> Letter {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let payload = m.payload().unwrap_or_default();
    let mut preview = &payload[..payload.len().min(PREVIEW)];
    while std::str::from_utf8(preview).is_err() && !preview.is_empty() && payload.len() > PREVIEW {
        preview = &preview[..preview.len() - 1];
    }
    Letter {
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(text),
        headers: m
            .headers()
            .into_iter()
            .flat_map(|hs| hs.iter())
            .map(|h| (h.key.to_string(), h.value.map(text).unwrap_or_default()))
            .collect(),
        payload_preview: text(preview),
        payload_bytes: payload.len(),
    }
}

fn header<H: Headers>(headers: Option<&H>, key: &str) -> Option<String> {
    headers?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}
