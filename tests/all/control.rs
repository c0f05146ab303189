//! The control plane on Apache Kafka: components larger than a broker message go through the
//! plugin store and come back byte for byte, a store that lies is refused, and a tenant's
//! desired pipelines are the newest record of each.

use crate::brokers::BrokerKind;
use crate::support::*;
use ackbar::control::{
    chunk_key, pipelines_topic, DesiredPipeline, DesiredState, PluginDigest, PluginStore,
    CHUNK_BYTES,
};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_desired_pipelines_are_the_newest_record_of_each() {
    let cluster = Cluster::on(BrokerKind::Kafka, 1).await;
    let properties = BTreeMap::from([("bootstrap.servers".to_string(), cluster.bootstrap.clone())]);
    let topic = pipelines_topic(&unique("ackbar"), "shop").unwrap();
    assert!(topic.ends_with(".shop.pipelines"), "{topic}");
    let dotted = pipelines_topic("ackbar", "shop.eu")
        .unwrap_err()
        .to_string();
    assert!(
        dotted.contains("letters, digits, '_' and '-' only"),
        "{dotted}"
    );
    let state = DesiredState::new(topic.clone(), properties);
    state.ensure_topic().await.unwrap();
    let read = |state: &DesiredState| {
        let state = state.clone();
        tokio::task::spawn_blocking(move || state.read())
    };
    assert!(
        read(&state).await.unwrap().unwrap().is_empty(),
        "a new tenant wants nothing"
    );

    let spec = "topics = [\"orders\"]\ngroup_id = \"g\"\nack_policy = \"ACK\"".to_string();
    let desired = |pipeline: &str, plugin: &[u8], generation| DesiredPipeline {
        pipeline: pipeline.to_string(),
        plugin: PluginDigest::of(plugin),
        source: None,
        spec: spec.clone(),
        generation,
        history: vec![],
        canary: None,
    };
    state.publish(&desired("orders", b"v1", 1)).await.unwrap();
    state.publish(&desired("returns", b"v1", 1)).await.unwrap();
    state.publish(&desired("orders", b"v2", 2)).await.unwrap();
    state.remove("returns").await.unwrap();
    let wanted = read(&state).await.unwrap().unwrap();
    assert_eq!(wanted.len(), 1, "{wanted:?}");
    assert_eq!(wanted["orders"], desired("orders", b"v2", 2));

    // A record no deploy wrote: the member is told which one, and keeps what it runs.
    let garbage = Record {
        partition: Some(0),
        key: Some(b"payments".to_vec()),
        payload: b"{\"plugin\":\"sha256:nope\",\"spec\":\"\",\"generation\":1}".to_vec(),
        headers: Vec::new(),
    };
    kafka::produce(&cluster.bootstrap, &topic, &[garbage])
        .await
        .unwrap();
    let error = format!("{:#}", read(&state).await.unwrap().unwrap_err());
    assert!(
        error.contains(&format!("{topic}: pipeline 'payments'")),
        "{error}"
    );
    assert!(error.contains("64 lower-case hex digits"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_topic_that_is_not_compacted_or_has_partitions_is_refused() {
    let cluster = Cluster::on(BrokerKind::Kafka, 1).await;
    let properties = BTreeMap::from([("bootstrap.servers".to_string(), cluster.bootstrap.clone())]);
    // Created beforehand by someone else, with the broker's defaults (delete policy).
    let (plain, split) = (unique("plain"), unique("split"));
    ackbar_tests::kafka::create_topic(&cluster.bootstrap, &plain, 1)
        .await
        .unwrap();
    ackbar_tests::kafka::create_topic(&cluster.bootstrap, &split, 3)
        .await
        .unwrap();
    let refused = |topic: &str| {
        let store = PluginStore::new(topic, properties.clone());
        async move { store.ensure_topic().await.unwrap_err().to_string() }
    };
    let not_compacted = refused(&plain).await;
    assert!(
        not_compacted.contains(&format!(
            "control topic {plain} exists with 1 partitions and cleanup.policy=delete"
        )),
        "{not_compacted}"
    );
    let spread = refused(&split).await;
    assert!(spread.contains("exists with 3 partitions"), "{spread}");
    assert!(
        spread.contains("needs 1 partition and cleanup.policy=compact"),
        "{spread}"
    );
}
