//! The Kafka client of the control plane: one producer per set of client properties, kept for
//! the life of the process. Being idempotent, it acquires its producer id once (a round trip
//! that librdkafka may delay by half a second), not on every write; its client also answers
//! metadata and watermark requests on connections already open. Readers have their own
//! consumers: each reads a topic once, from its start.

use anyhow::{Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::producer::FutureProducer;
use std::collections::BTreeMap;
use std::sync::Mutex;

type Properties = BTreeMap<String, String>;

fn config(properties: &Properties) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in properties {
        config.set(key, value);
    }
    config
}

/// The producer for `properties`: idempotent, so the records of one write land in order and
/// once; zstd, because plugin chunks compress. Its own thread polls it.
pub(crate) fn producer(properties: &Properties) -> Result<FutureProducer> {
    static PRODUCERS: Mutex<BTreeMap<Properties, FutureProducer>> = Mutex::new(BTreeMap::new());
    let mut producers = PRODUCERS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(producer) = producers.get(properties) {
        return Ok(producer.clone());
    }
    let producer: FutureProducer = config(properties)
        .set("enable.idempotence", "true")
        .set("compression.type", "zstd")
        .set("message.timeout.ms", "60000")
        // Its metadata requests must not create a control topic with the broker's defaults
        // (cleanup.policy=delete) before a member creates it compacted.
        .set("allow.auto.create.topics", "false")
        .create()
        .context("creating a control topic producer")?;
    producers.insert(properties.clone(), producer.clone());
    Ok(producer)
}

/// Starts the client for `properties` now, so the first write does not wait for the
/// producer's id: a command calls it before its local work, a member when it joins.
pub fn warm_up(properties: &Properties) -> Result<()> {
    producer(properties).map(drop)
}
