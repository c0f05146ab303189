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

use super::topic::ControlTopic;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Bytes per chunk record.
pub const CHUNK_BYTES: usize = 512 * 1024;

/// The largest component the store takes or gives back (a Python component is about 40 MB).
pub const MAX_PLUGIN_BYTES: u64 = 256 << 20;

/// A component's content address: `sha256:` and the SHA-256 of its bytes in lower-case hex.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct PluginDigest(String);

impl PluginDigest {
    /// What every digest starts with.
    pub const PREFIX: &'static str = "sha256:";
}

impl TryFrom<String> for PluginDigest {
    type Error = anyhow::Error;
    fn try_from(text: String) -> Result<Self> {
        PluginDigest::parse(&text)
    }
}

impl From<PluginDigest> for String {
    fn from(digest: PluginDigest) -> String {
        digest.0
    }
}

impl PluginDigest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        PluginDigest(format!(
            "sha256:{}",
            crate::text::hex(&Sha256::digest(bytes))
        ))
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
    topic: ControlTopic,
}

impl PluginStore {
    /// The store in `topic`, reached with the librdkafka `properties` (which name
    /// `bootstrap.servers`, and credentials where the cluster needs them).
    pub fn new(topic: impl Into<String>, properties: BTreeMap<String, String>) -> Self {
        PluginStore {
            topic: ControlTopic::new(topic, properties),
        }
    }

    /// The topic the store lives in.
    pub fn topic(&self) -> &str {
        self.topic.name()
    }

    /// Creates the store's topic (compacted, one partition) unless it exists.
    pub async fn ensure_topic(&self) -> Result<()> {
        self.topic.ensure().await
    }

    /// Stores `bytes` and returns their digest once the broker has every record. Storing a
    /// component that is already there writes it again, harmlessly.
    pub async fn put(&self, bytes: &[u8]) -> Result<PluginDigest> {
        if bytes.len() as u64 > MAX_PLUGIN_BYTES {
            bail!(
                "a component of {} bytes is larger than the plugin store takes ({MAX_PLUGIN_BYTES})",
                bytes.len()
            );
        }
        let digest = PluginDigest::of(bytes);
        let chunks: Vec<&[u8]> = bytes.chunks(CHUNK_BYTES).collect();
        let manifest = Manifest {
            size: bytes.len() as u64,
            chunks: chunks.len() as u32,
        };
        let manifest = serde_json::to_vec(&manifest).expect("a manifest serializes");
        let keys: Vec<String> = (0..chunks.len())
            .map(|index| chunk_key(&digest, index))
            .collect();
        let records: Vec<(&str, Option<&[u8]>)> = keys
            .iter()
            .map(String::as_str)
            .zip(chunks.iter().map(|c| Some(*c)))
            .chain([(digest.as_str(), Some(manifest.as_slice()))])
            .collect();
        self.topic
            .write(&records)
            .await
            .with_context(|| format!("storing plugin {digest}"))?;
        Ok(digest)
    }

    /// Deletes the component `digest` from the store: its manifest first, so no reader ever
    /// finds a manifest whose chunks are gone, then its chunks. Compaction frees the space.
    pub async fn forget(&self, digest: &PluginDigest) -> Result<()> {
        let (topic, wanted) = (self.topic.clone(), digest.clone());
        let chunks = tokio::task::spawn_blocking(move || {
            let mut chunks = None;
            topic.read(|key, value| {
                if key == wanted.as_str() {
                    chunks = value
                        .and_then(|v| serde_json::from_slice::<Manifest>(v).ok())
                        .map(|m| {
                            m.chunks
                                .min((MAX_PLUGIN_BYTES / CHUNK_BYTES as u64) as u32 + 1)
                        });
                }
                Ok(())
            })?;
            anyhow::Ok(chunks)
        })
        .await
        .context("the plugin store's reader thread")??;
        let keys: Vec<String> = (0..chunks.unwrap_or(0) as usize)
            .map(|index| chunk_key(digest, index))
            .collect();
        let records: Vec<(&str, Option<&[u8]>)> = [(digest.as_str(), None)]
            .into_iter()
            .chain(keys.iter().map(|k| (k.as_str(), None)))
            .collect();
        self.topic
            .write(&records)
            .await
            .with_context(|| format!("deleting plugin {digest}"))
    }

    /// Reads the component `digest` back, checking it against its digest. Blocking: it reads
    /// the store's partition from its start to its end (run it off the async workers).
    pub fn get(&self, digest: &PluginDigest) -> Result<Vec<u8>> {
        let topic = self.topic.name();
        let prefix = format!("{digest}/");
        let mut manifest = None;
        let mut chunks: HashMap<usize, Vec<u8>> = HashMap::new();
        // The newest record of a key counts; a deletion removes what came before it.
        self.topic.read(|key, value| {
            if key == digest.as_str() {
                manifest = value.map(serde_json::from_slice::<Manifest>);
            } else if let Some(index) = key.strip_prefix(&prefix) {
                // Only what a manifest can ask for is kept: indexes below the most chunks a
                // component has, values no larger than a chunk.
                let max_chunks = MAX_PLUGIN_BYTES.div_ceil(CHUNK_BYTES as u64) as usize;
                let fits = value.is_none_or(|v| v.len() <= CHUNK_BYTES);
                if let Ok(index) = index.parse::<usize>().map_err(drop).and_then(|i| {
                    if i < max_chunks && fits {
                        Ok(i)
                    } else {
                        Err(())
                    }
                }) {
                    match value {
                        Some(v) => chunks.insert(index, v.to_vec()),
                        None => chunks.remove(&index),
                    };
                }
            }
            Ok(())
        })?;
        let Some(manifest) = manifest else {
            return unavailable(format!(
                "plugin {digest} is not in the plugin store {topic}"
            ));
        };
        let Ok(manifest) = manifest else {
            return unavailable(format!(
                "plugin {digest}: its manifest in {topic} is not valid"
            ));
        };
        // Nothing read from the topic is trusted before the digest matches: the manifest's
        // figures are checked before anything is sized by them.
        if manifest.size > MAX_PLUGIN_BYTES
            || manifest.size > manifest.chunks as u64 * CHUNK_BYTES as u64
        {
            return unavailable(format!(
                "plugin {digest}: its manifest in {topic} is not valid: {} bytes in {} chunks",
                manifest.size, manifest.chunks
            ));
        }
        let mut bytes = Vec::with_capacity(manifest.size as usize);
        for index in 0..manifest.chunks as usize {
            let Some(chunk) = chunks.get(&index) else {
                return unavailable(format!(
                    "plugin {digest}: chunk {index} of {} is missing from {topic}",
                    manifest.chunks
                ));
            };
            bytes.extend_from_slice(chunk);
        }
        if bytes.len() as u64 != manifest.size {
            return unavailable(format!(
                "plugin {digest}: its chunks hold {} bytes, its manifest says {}",
                bytes.len(),
                manifest.size
            ));
        }
        let found = PluginDigest::of(&bytes);
        if &found != digest {
            return unavailable(format!(
                "plugin {digest}: the stored bytes have digest {found}; refused"
            ));
        }
        Ok(bytes)
    }
}

/// The store does not hold the component whole and intact: reading again will not help.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PluginUnavailable(pub String);

fn unavailable<T>(why: String) -> Result<T> {
    Err(PluginUnavailable(why).into())
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
