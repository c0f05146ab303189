//! Plugin bytes kept in Kafka, so a fleet needs nothing but its cluster to share a component.
//!
//! A component is addressed by its content: `sha256:<64 hex digits>`. It is cut into chunks of
//! [`CHUNK_BYTES`], well under the broker's default `message.max.bytes` (1 MiB), so a 50 MB
//! component needs no broker setting. The store is one compacted topic with one partition,
//! written in order by an idempotent producer:
//!
//! | key | value |
//! |---|---|
//! | `sha256:<hex>/<index>` (index in 6 digits) | the chunk's bytes |
//! | `sha256:<hex>` | the manifest, written last: `{"size": bytes, "chunks": count}` |
//!
//! A manifest therefore follows every chunk it counts, and compaction keeps the newest record
//! of each key: writing the same component again changes nothing a reader sees. A reader checks
//! the bytes it reassembles against the digest; a store that lies (a chunk replaced, one
//! missing) is refused, never run.

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

/// Bytes per chunk record.
pub const CHUNK_BYTES: usize = 512 * 1024;

/// How long one request to the broker may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A component's content address: `sha256:` and the SHA-256 of its bytes in lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PluginDigest(String);

impl PluginDigest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        let hex: String = Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        PluginDigest(format!("sha256:{hex}"))
    }

    /// Parses `sha256:<64 hex digits>`, naming what is wrong otherwise.
    pub fn parse(text: &str) -> Result<Self> {
        let Some(hex) = text.strip_prefix("sha256:") else {
            bail!("plugin digest {text:?} does not start with \"sha256:\"");
        };
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            bail!("plugin digest {text:?}: expected 64 lower-case hex digits after \"sha256:\"");
        }
        Ok(PluginDigest(text.to_string()))
    }

    /// The digest as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PluginDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a component's last record says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    size: u64,
    chunks: u32,
}

/// The plugin store of one cluster: a compacted topic and the client settings to reach it.
#[derive(Debug, Clone)]
pub struct PluginStore {
    topic: String,
    /// librdkafka properties of every client (`bootstrap.servers`, credentials).
    properties: BTreeMap<String, String>,
}

impl PluginStore {
    /// The store in `topic`, reached with the librdkafka `properties` (which name
    /// `bootstrap.servers`, and credentials where the cluster needs them).
    pub fn new(topic: impl Into<String>, properties: BTreeMap<String, String>) -> Self {
        PluginStore {
            topic: topic.into(),
            properties,
        }
    }

    /// The topic the store lives in.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    /// Creates the store's topic (compacted, one partition) unless it exists.
    pub async fn ensure_topic(&self) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = self
            .client_config()
            .create()
            .context("creating an admin client")?;
        let topic = NewTopic::new(&self.topic, 1, TopicReplication::Fixed(-1))
            .set("cleanup.policy", "compact");
        let results = admin
            .create_topics(
                &[topic],
                &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
            )
            .await
            .with_context(|| format!("creating the plugin store topic {}", self.topic))?;
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => bail!("creating the plugin store topic {name}: {code}"),
            }
        }
        Ok(())
    }

    /// Stores `bytes` and returns their digest once the broker has every record. Storing a
    /// component that is already there writes it again, harmlessly.
    pub async fn put(&self, bytes: &[u8]) -> Result<PluginDigest> {
        let digest = PluginDigest::of(bytes);
        let producer: FutureProducer = self
            .client_config()
            .set("enable.idempotence", "true")
            .set("compression.type", "zstd")
            .set("message.timeout.ms", "60000")
            .create()
            .context("creating the plugin store's producer")?;
        let chunks: Vec<&[u8]> = bytes.chunks(CHUNK_BYTES).collect();
        let manifest = Manifest {
            size: bytes.len() as u64,
            chunks: chunks.len() as u32,
        };
        let manifest = serde_json::to_vec(&manifest).expect("a manifest serializes");
        let keys: Vec<String> = (0..chunks.len())
            .map(|index| chunk_key(&digest, index))
            .collect();
        let records = keys
            .iter()
            .map(String::as_str)
            .zip(chunks.iter().copied())
            .chain([(digest.as_str(), manifest.as_slice())]);
        let mut deliveries = Vec::new();
        for (key, value) in records {
            let record = FutureRecord::to(&self.topic)
                .partition(0)
                .key(key)
                .payload(value);
            let delivery = producer
                .send_result(record)
                .map_err(|(e, _)| anyhow!("storing plugin {digest} in {}: {e}", self.topic))?;
            deliveries.push((key.to_string(), delivery));
        }
        for (key, delivery) in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => bail!("storing {key} in {}: {e}", self.topic),
                Err(_) => bail!("storing {key} in {}: the producer dropped it", self.topic),
            }
        }
        Ok(digest)
    }

    /// Reads the component `digest` back, checking it against its digest. Blocking: it reads
    /// the store's partition from its start to its end (run it off the async workers).
    pub fn get(&self, digest: &PluginDigest) -> Result<Vec<u8>> {
        let consumer: BaseConsumer = self
            .client_config()
            .set("enable.auto.commit", "false")
            .set("group.id", "ackbar-plugin-store-reader")
            .create()
            .context("creating the plugin store's reader")?;
        let (low, high) = consumer
            .fetch_watermarks(&self.topic, 0, TIMEOUT)
            .with_context(|| format!("reading the plugin store {}", self.topic))?;
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&self.topic, 0, Offset::Offset(low))?;
        consumer.assign(&assignment)?;
        let prefix = format!("{digest}/");
        let mut manifest = None;
        let mut chunks: HashMap<usize, Vec<u8>> = HashMap::new();
        let mut next = low;
        let mut last_progress = Instant::now();
        while next < high {
            let Some(received) = consumer.poll(Duration::from_millis(500)) else {
                if last_progress.elapsed() > TIMEOUT {
                    bail!(
                        "reading the plugin store {}: no record for {} s at offset {next} of {high}",
                        self.topic,
                        TIMEOUT.as_secs()
                    );
                }
                continue;
            };
            let m = received.with_context(|| format!("reading the plugin store {}", self.topic))?;
            next = m.offset() + 1;
            last_progress = Instant::now();
            let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                continue;
            };
            let value = m.payload().unwrap_or_default();
            if key == digest.as_str() {
                manifest = Some(serde_json::from_slice::<Manifest>(value).with_context(|| {
                    format!(
                        "plugin {digest}: its manifest in {} is not valid",
                        self.topic
                    )
                })?);
            } else if let Some(index) = key.strip_prefix(&prefix) {
                if let Ok(index) = index.parse::<usize>() {
                    chunks.insert(index, value.to_vec());
                }
            }
        }
        let Some(manifest) = manifest else {
            bail!("plugin {digest} is not in the plugin store {}", self.topic);
        };
        let mut bytes = Vec::with_capacity(manifest.size as usize);
        for index in 0..manifest.chunks as usize {
            let chunk = chunks.get(&index).ok_or_else(|| {
                anyhow!(
                    "plugin {digest}: chunk {index} of {} is missing from {}",
                    manifest.chunks,
                    self.topic
                )
            })?;
            bytes.extend_from_slice(chunk);
        }
        if bytes.len() as u64 != manifest.size {
            bail!(
                "plugin {digest}: its chunks hold {} bytes, its manifest says {}",
                bytes.len(),
                manifest.size
            );
        }
        let found = PluginDigest::of(&bytes);
        if &found != digest {
            bail!("plugin {digest}: the stored bytes have digest {found}; refused");
        }
        Ok(bytes)
    }
}

/// The key of chunk `index` of `digest`.
pub fn chunk_key(digest: &PluginDigest, index: usize) -> String {
    format!("{digest}/{index:06}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_is_the_sha256_of_the_bytes_and_parses_back() {
        let digest = PluginDigest::of(b"abc");
        assert_eq!(
            digest.as_str(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(PluginDigest::parse(digest.as_str()).unwrap(), digest);
        let no_prefix = PluginDigest::parse("ba7816bf").unwrap_err().to_string();
        assert!(
            no_prefix.contains("does not start with \"sha256:\""),
            "{no_prefix}"
        );
        let short = PluginDigest::parse("sha256:ba78").unwrap_err().to_string();
        assert!(short.contains("64 lower-case hex digits"), "{short}");
        assert!(
            PluginDigest::parse(&digest.as_str().to_uppercase().replace("SHA256", "sha256"))
                .is_err()
        );
    }

    #[test]
    fn chunk_keys_sort_in_chunk_order() {
        let digest = PluginDigest::of(b"x");
        let (nine, ten) = (chunk_key(&digest, 9), chunk_key(&digest, 10));
        assert!(nine < ten, "{nine} < {ten}");
        assert!(nine.starts_with(&format!("{digest}/")));
    }
}
