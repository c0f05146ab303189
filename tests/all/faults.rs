//! Faults injected into the embedded broker, and bad input: Ackbar keeps running, logs once per
//! episode, resumes and loses nothing.

use crate::support::{settled, Cluster};
use ackbar::policy::{AckPolicy, Action};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use std::collections::BTreeSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

fn all_handled(seen: &[ackbar::events::DeliveryEvent], n: usize) -> bool {
    seen.iter()
        .filter(|r| settled(r))
        .map(|r| (r.partition, r.offset))
        .collect::<BTreeSet<_>>()
        .len()
        == n
}

async fn wait_committed(cluster: &Cluster, expected: Vec<Option<i64>>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while cluster.committed() != expected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "committed {:?}, expected {expected:?}",
            cluster.committed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_commits_are_retried_and_logged_once_per_episode() {
    let cluster = Cluster::new(2);
    let messages: Vec<(i32, &str)> = (0..100).map(|i| (i % 2, "sleep:5")).collect();
    cluster.produce(&messages).await;
    let broker = cluster.embedded.as_ref().unwrap();
    broker
        .request_errors(
            RDKafkaApiKey::OffsetCommit,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS; 6],
        )
        .unwrap();
    let mut run = cluster.start(cluster.config(AckPolicy::Ack));
    run.until(WAIT, |seen| all_handled(seen, 100)).await;
    wait_committed(&cluster, vec![Some(50), Some(50)]).await;
    let handle = run.handle.as_ref().unwrap();
    let stats = handle.stats();
    assert!(stats.commit_errors >= 6, "{stats:?}");
    assert!(
        handle.fault_warnings() <= 2,
        "one warning per episode, got {}",
        handle.fault_warnings()
    );
    run.stop().await;
    assert_eq!(run.seen.len(), 100, "commit failures cause no redelivery");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_member_on_commit_rejoins_and_loses_nothing() {
    let cluster = Cluster::new(2);
    let messages: Vec<(i32, &str)> = (0..60).map(|i| (i % 2, "sleep:5")).collect();
    cluster.produce(&messages).await;
    let mut run = cluster.start(cluster.config(AckPolicy::Ack));
    run.until(WAIT, |seen| seen.len() >= 10).await;
    cluster
        .embedded
        .as_ref()
        .unwrap()
        .request_errors(
            RDKafkaApiKey::OffsetCommit,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID; 2],
        )
        .unwrap();
    run.until(WAIT, |seen| all_handled(seen, 60)).await;
    wait_committed(&cluster, vec![Some(30), Some(30)]).await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_then_up_mid_stream_resumes_without_loss() {
    let cluster = Cluster::new(2);
    let messages: Vec<(i32, &str)> = (0..200).map(|i| (i % 2, "sleep:5")).collect();
    cluster.produce(&messages).await;
    let mut run = cluster.start(cluster.config(AckPolicy::Ack));
    run.until(WAIT, |seen| seen.len() >= 20).await;
    let broker = cluster.embedded.as_ref().unwrap();
    broker.broker_down(1).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    broker.broker_up(1).unwrap();
    run.until(WAIT, |seen| all_handled(seen, 200)).await;
    wait_committed(&cluster, vec![Some(100), Some(100)]).await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_errors_are_survived() {
    let cluster = Cluster::new(1);
    let messages: Vec<(i32, &str)> = (0..40).map(|_| (0, "ok")).collect();
    cluster.produce(&messages).await;
    let broker = cluster.embedded.as_ref().unwrap();
    broker
        .broker_request_errors(
            1,
            RDKafkaApiKey::Fetch,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 4],
        )
        .unwrap();
    assert_eq!(
        broker
            .pending_broker_errors(1, RDKafkaApiKey::Fetch)
            .unwrap(),
        4
    );
    let mut run = cluster.start(cluster.config(AckPolicy::Ack));
    run.until(WAIT, |seen| all_handled(seen, 40)).await;
    wait_committed(&cluster, vec![Some(40)]).await;
    run.stop().await;
    assert_eq!(
        broker
            .pending_broker_errors(1, RDKafkaApiKey::Fetch)
            .unwrap(),
        0,
        "every injected fetch error was served to the pipeline's fetches"
    );
    assert_eq!(run.seen.len(), 40, "no message handled twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_stalls_its_partition_with_backoff_instead_of_spinning() {
    let cluster = Cluster::new(1);
    cluster.produce(&[(0, "ok"), (0, "trap"), (0, "ok")]).await;
    let mut config = cluster.config(AckPolicy::NackOnError);
    config.backoff.initial_ms = 100;
    config.backoff.max_ms = 800;
    let config_backoff = config.backoff;
    let mut run = cluster.start(config);
    run.until(WAIT, |seen| {
        seen.iter().filter(|r| r.offset == 1).count() >= 2
    })
    .await;
    run.settle(Duration::from_secs(3)).await;
    run.stop().await;
    // Each redelivery waits its backoff (100, 200, 400, 800, 800, ... ms) after the call before:
    // a wait is never shorter, however loaded the machine, so the partition cannot spin.
    let poison = run.deliveries(0, 1);
    assert!(poison.len() >= 2, "{} deliveries", poison.len());
    for (nack, pair) in (1u32..).zip(poison.windows(2)) {
        let waited = pair[1].started - (pair[0].started + pair[0].elapsed);
        assert!(
            waited >= config_backoff.delay(nack),
            "redelivery {nack} after {waited:?}"
        );
        assert_eq!(pair[1].attempt, pair[0].attempt + 1);
    }
    assert!(run
        .deliveries(0, 1)
        .iter()
        .all(|r| r.action == Action::Redeliver));
    assert!(
        run.deliveries(0, 2).is_empty(),
        "nothing after the poison message is handled"
    );
    assert_eq!(
        cluster.committed(),
        vec![Some(1)],
        "the poison message is never committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_a_clear_startup_error() {
    let cluster = Cluster::new(1);
    let mut config = cluster.config(AckPolicy::Ack);
    config.connect_timeout = Duration::from_millis(1500);
    let err =
        ackbar::consumer::Pipeline::start(config, "127.0.0.1:1", &crate::support::runtime(), None)
            .err()
            .expect("refused");
    let err = format!("{err:#}");
    assert!(
        err.contains("cannot reach Kafka at 127.0.0.1:1 within 1500 ms"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_is_not_a_component_refuses_to_start_and_commits_nothing() {
    let cluster = Cluster::new(1);
    cluster.produce(&[(0, "ok")]).await;
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("core.wasm");
    std::fs::write(&plugin, b"\0asm\x01\0\0\0").unwrap();
    let mut config = cluster.config(AckPolicy::Ack);
    config.plugin = plugin.clone();
    let name = config.name.clone();
    let err = ackbar::consumer::Pipeline::start(
        config,
        &cluster.bootstrap,
        &crate::support::runtime(),
        None,
    )
    .err()
    .expect("refused");
    let err = format!("{err:#}");
    assert!(
        err.starts_with(&format!(
            "pipeline '{name}': plugin {}: is a core WebAssembly module",
            plugin.display()
        )),
        "{err}"
    );
    assert_eq!(cluster.committed(), vec![None]);
    // The same group with a component in the same place handles and commits the message: the
    // check above reads the group that a started pipeline would have committed to.
    std::fs::copy(crate::support::guest("fixture"), &plugin).unwrap();
    let mut config = cluster.config(AckPolicy::Ack);
    config.plugin = plugin;
    let mut run = cluster.start(config);
    run.until(WAIT, |seen| all_handled(seen, 1)).await;
    wait_committed(&cluster, vec![Some(1)]).await;
    run.stop().await;
}
