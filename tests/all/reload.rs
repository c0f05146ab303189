//! Hot reload: plugin versions swapped under a running stream.

use crate::brokers::BrokerKind;
use crate::support::{guest, runtime, Cluster};
use ackbar::plugin::{version_id, PluginLimits};
use ackbar::policy::AckPolicy;
use ackbar::reload::{PluginSlot, Reloaded};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The fixture with a version tag: the same behaviour, another version.
pub(crate) fn variant(tag: u32) -> Vec<u8> {
    ackbar_tests::wasm::tag_component(&std::fs::read(guest("fixture")).unwrap(), tag)
}

/// Replaces a file the way deploy tools do: write a temporary file, then rename over.
pub(crate) fn replace_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Waits until `version` handles new messages; the 120 s bound only keeps a broken reload from
/// hanging the test (how fast a swap is, `make bench-reload` measures).
pub(crate) async fn wait_for_version(run: &crate::support::Running, version: &str) {
    let started = Instant::now();
    let handle = run.handle.as_ref().unwrap();
    while handle.plugin_version() != version {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "version {version} never went live"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_swaps_under_a_stream_lose_and_duplicate_nothing_and_refuse_a_bad_version() {
    ten_swaps(Cluster::new(2)).await;
}

crate::brokers::on_both_protocols! {
    ten_swaps_on_kafka_lose_and_duplicate_nothing_and_refuse_a_bad_version => |broker| async move {
        ten_swaps(Cluster::on(broker, 2).await).await;
    };
}

async fn ten_swaps(cluster: Cluster) {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("handler.wasm");
    let versions: Vec<Vec<u8>> = (0..=10).map(variant).collect();
    let ids: Vec<String> = versions.iter().map(|v| version_id(v)).collect();
    std::fs::write(&plugin, &versions[0]).unwrap();

    let mut config = cluster.config(AckPolicy::Ack);
    config.plugin = plugin.clone();
    let mut run = cluster.start(config);

    let bootstrap = cluster.bootstrap.clone();
    let topic = cluster.topic.clone();
    // The stream runs until every swap is done, then one more batch goes to the last version.
    let swapping = Arc::new(AtomicBool::new(true));
    let still_swapping = swapping.clone();
    let producer = tokio::spawn(async move {
        let mut produced = 0usize;
        while still_swapping.load(Ordering::Relaxed) {
            let batch: Vec<ackbar::kafka::Record> = (0..25)
                .map(|i| ackbar::kafka::Record::new(i % 2, "sleep:1"))
                .collect();
            ackbar::kafka::produce(&bootstrap, &topic, &batch)
                .await
                .unwrap();
            produced += batch.len();
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        produced
    });

    run.until(Duration::from_secs(120), |seen| seen.len() >= 50)
        .await;
    for (i, version) in versions.iter().enumerate().skip(1) {
        if i == 6 {
            // A broken deploy in the middle: refused, the running version stays.
            std::fs::write(&plugin, b"\0asm\x01\0\0\0 truncated").unwrap();
            tokio::time::sleep(Duration::from_millis(800)).await;
            assert_eq!(run.handle.as_ref().unwrap().plugin_version(), ids[5]);
        }
        if i % 2 == 0 {
            std::fs::write(&plugin, version).unwrap();
        } else {
            replace_atomically(&plugin, version);
        }
        wait_for_version(&run, &ids[i]).await;
        run.settle(Duration::from_millis(150)).await;
    }
    swapping.store(false, Ordering::Relaxed);
    let mut produced = producer.await.unwrap();
    let last_batch: Vec<(i32, &str)> = (0..20).map(|i| (i % 2, "ok")).collect();
    produced += cluster.produce(&last_batch).await.len();
    run.until(Duration::from_secs(120), |seen| seen.len() >= produced)
        .await;
    run.settle(Duration::from_millis(300)).await;
    run.stop().await;

    // Exactly once: every offset of both partitions, no duplicates.
    let mut count: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for r in &run.seen {
        *count.entry((r.partition, r.offset)).or_default() += 1;
    }
    assert_eq!(count.len(), produced, "every message handled");
    assert!(count.values().all(|n| *n == 1), "no message handled twice");
    // Versions only move forward, one switch point per swap and partition.
    let order: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, v)| (v.as_str(), i))
        .collect();
    for p in 0..2 {
        let mut by_offset: Vec<_> = run.seen.iter().filter(|r| r.partition == p).collect();
        by_offset.sort_by_key(|r| r.offset);
        let indices: Vec<usize> = by_offset
            .iter()
            .map(|r| order[&*r.plugin_version])
            .collect();
        assert!(
            indices.windows(2).all(|w| w[0] <= w[1]),
            "partition {p} went back a version: {indices:?}"
        );
        assert_eq!(
            indices.last(),
            Some(&10),
            "partition {p} ends on the last version"
        );
    }
    let used: std::collections::BTreeSet<usize> =
        run.seen.iter().map(|r| order[&*r.plugin_version]).collect();
    assert!(used.len() >= 3, "versions changed under traffic: {used:?}");
}

fn slot_for(path: &Path, smoke: Option<&str>) -> PluginSlot {
    PluginSlot::load(
        "t",
        "p",
        &runtime(),
        path,
        PluginLimits::default(),
        Default::default(),
        smoke.map(|s| s.as_bytes().to_vec()),
    )
    .unwrap()
}

#[test]
fn reload_of_an_unchanged_file_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.wasm");
    std::fs::write(&path, variant(1)).unwrap();
    let slot = slot_for(&path, None);
    let before = slot.current();
    assert_eq!(
        slot.reload().unwrap(),
        Reloaded::Unchanged {
            version: version_id(&variant(1))
        }
    );
    assert!(std::sync::Arc::ptr_eq(&before, &slot.current()));
}

#[test]
fn a_new_version_replaces_the_old_and_reports_both_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.wasm");
    std::fs::write(&path, variant(1)).unwrap();
    let slot = slot_for(&path, None);
    std::fs::write(&path, variant(2)).unwrap();
    match slot.reload().unwrap() {
        Reloaded::Swapped { from, to, .. } => {
            assert_eq!(from, version_id(&variant(1)));
            assert_eq!(to, version_id(&variant(2)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(slot.current().plugin().version(), version_id(&variant(2)));
}

#[test]
fn a_version_of_another_world_is_refused_and_the_old_one_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.wasm");
    std::fs::write(&path, variant(1)).unwrap();
    let slot = slot_for(&path, None);
    std::fs::write(&path, b"\0asm\x0d\0\x01\0").unwrap();
    let err = format!("{:#}", slot.reload().unwrap_err());
    assert!(err.contains("does not implement world `handler`"), "{err}");
    assert_eq!(slot.current().plugin().version(), version_id(&variant(1)));
    assert_eq!(slot.refusals.load(std::sync::atomic::Ordering::Relaxed), 1);
    // A later good version is picked up.
    std::fs::write(&path, variant(3)).unwrap();
    assert!(matches!(slot.reload().unwrap(), Reloaded::Swapped { .. }));
}

#[test]
fn a_version_that_traps_on_the_smoke_message_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.wasm");
    std::fs::write(&path, variant(1)).unwrap();
    // The fixture traps on the payload "trap": the smoke call of every version does.
    let err = PluginSlot::load(
        "t",
        "p",
        &runtime(),
        &path,
        PluginLimits::default(),
        Default::default(),
        Some(b"trap".to_vec()),
    )
    .err()
    .expect("refused");
    assert!(
        format!("{err:#}").contains("trapped (panic) on the smoke message"),
        "{err:#}"
    );
    let slot = slot_for(&path, Some("ok"));
    std::fs::write(&path, variant(2)).unwrap();
    assert!(matches!(slot.reload().unwrap(), Reloaded::Swapped { .. }));
}
