//! The control plane's plugin store on Apache Kafka: components larger than a broker message
//! go in as chunks and come back byte for byte, and a store that lies is refused.

use crate::brokers::BrokerKind;
use crate::support::*;
use ackbar::control::{chunk_key, PluginDigest, PluginStore, CHUNK_BYTES};
use ackbar::kafka::{self, Record};
use std::collections::BTreeMap;

async fn store_on(cluster: &Cluster) -> PluginStore {
    let properties = BTreeMap::from([("bootstrap.servers".to_string(), cluster.bootstrap.clone())]);
    let store = PluginStore::new(unique("ackbar-plugins"), properties);
    store
        .ensure_topic()
        .await
        .expect("create the store's topic");
    store
}

/// Bytes no compressor shrinks (xorshift), so each chunk is as large on the wire as on disk.
fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn get(store: &PluginStore, digest: &PluginDigest) -> anyhow::Result<Vec<u8>> {
    let (store, digest) = (store.clone(), digest.clone());
    tokio::task::spawn_blocking(move || store.get(&digest))
        .await
        .expect("the reader thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_larger_than_a_broker_message_round_trips_through_the_store() {
    let cluster = Cluster::on(BrokerKind::Kafka, 1).await;
    let store = store_on(&cluster).await;
    // Creating the topic again is not an error: every member does it on start.
    store
        .ensure_topic()
        .await
        .expect("the topic exists already");

    // 8 MiB and a bit: 17 chunks, each under the broker's default 1 MiB message limit.
    let large = incompressible(16 * CHUNK_BYTES + 1234, 7);
    let component = std::fs::read(guest("fixture")).expect("the fixture component");
    let large_digest = store.put(&large).await.expect("store the large component");
    let component_digest = store.put(&component).await.expect("store the fixture");
    assert_eq!(large_digest, PluginDigest::of(&large));
    assert_eq!(component_digest, PluginDigest::of(&component));

    assert!(
        get(&store, &large_digest).await.unwrap() == large,
        "the large component comes back whole"
    );
    assert_eq!(get(&store, &component_digest).await.unwrap(), component);

    // Stored again (another member deploying the same bytes): nothing changes for a reader.
    assert_eq!(store.put(&component).await.unwrap(), component_digest);
    assert_eq!(get(&store, &component_digest).await.unwrap(), component);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_lies_is_refused_with_the_reason() {
    let cluster = Cluster::on(BrokerKind::Kafka, 1).await;
    let store = store_on(&cluster).await;
    let bytes = incompressible(2 * CHUNK_BYTES + 10, 11);
    let digest = store.put(&bytes).await.unwrap();

    let unknown = PluginDigest::of(b"never stored");
    let missing = get(&store, &unknown).await.unwrap_err().to_string();
    assert!(missing.contains("is not in the plugin store"), "{missing}");
    assert!(missing.contains(unknown.as_str()), "{missing}");

    // A chunk replaced by other bytes of the same length: compaction keeps the newest record
    // of a key, so a reader sees the forgery, and must not accept it.
    let forged = Record {
        partition: Some(0),
        key: Some(chunk_key(&digest, 1).into_bytes()),
        payload: incompressible(CHUNK_BYTES, 99),
        headers: Vec::new(),
    };
    kafka::produce(&cluster.bootstrap, store.topic(), &[forged])
        .await
        .unwrap();
    let refused = get(&store, &digest).await.unwrap_err().to_string();
    assert!(
        refused.contains("the stored bytes have digest"),
        "{refused}"
    );
    assert!(refused.contains("refused"), "{refused}");

    // A manifest whose chunks never arrived (a writer that died half way through).
    let partial = PluginDigest::of(b"two chunks, one written");
    let records = [
        Record {
            partition: Some(0),
            key: Some(chunk_key(&partial, 0).into_bytes()),
            payload: b"two chunks, ".to_vec(),
            headers: Vec::new(),
        },
        Record {
            partition: Some(0),
            key: Some(partial.as_str().as_bytes().to_vec()),
            payload: br#"{"size":23,"chunks":2}"#.to_vec(),
            headers: Vec::new(),
        },
    ];
    kafka::produce(&cluster.bootstrap, store.topic(), &records)
        .await
        .unwrap();
    let incomplete = get(&store, &partial).await.unwrap_err().to_string();
    assert!(
        incomplete.contains("chunk 1 of 2 is missing"),
        "{incomplete}"
    );
}
