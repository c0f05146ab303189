//! Consume-transform-produce under crashes, black-box: `ackbar run` on Apache Kafka forwards
//! each of 20,000 inputs (4 partitions) to an output topic, is killed with SIGKILL five times
//! mid-stream and restarted, and finishes with a second member joining (a rebalance). A
//! `read_committed` reader of the output then sees every input's output exactly once under
//! `delivery = "exactly-once"`, and at least once under the default.

use crate::brokers::BrokerKind;
use crate::crash::{count, random_delay, start_ackbar};
use crate::support::{guest, unique, Cluster};
use rdkafka::Message as _;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MESSAGES: i64 = 20_000;
const PARTITIONS: i32 = 4;
const KILLS: usize = 5;

/// How many times the output of each input (`PARTITION/OFFSET`) is visible.
async fn outputs_after_kills_and_a_rebalance(
    broker: BrokerKind,
    delivery: &str,
) -> BTreeMap<String, usize> {
    let cluster = Cluster::on(broker, PARTITIONS).await;
    let out = unique("enriched");
    cluster.add_topic(&out, PARTITIONS).await;
    let payload = format!("send:{out}/sleep:1");
    let records: Vec<ackbar::kafka::Record> = (0..MESSAGES)
        .map(|i| ackbar::kafka::Record::new((i % PARTITIONS as i64) as i32, payload.as_str()))
        .collect();
    ackbar::kafka::produce(&cluster.bootstrap, &cluster.topic, &records)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ackbar.toml");
    std::fs::write(
        &config,
        format!(
            "brokers = \"{}\"\n[run]\nsummary_interval_secs = 0\n[kafka]\n{}\
             [[pipeline]]\nname = \"ctp\"\ntopics = [\"{}\"]\ngroup_id = \"{}\"\nack_policy = \"ACK\"\n\
             plugin = \"{}\"\ncommit_interval_ms = 200\noutputs = [\"{out}\"]\ndelivery = \"{delivery}\"\n{}",
            cluster.bootstrap,
            broker.kafka_toml(),
            cluster.topic,
            cluster.group,
            guest("fixture").display(),
            broker.pipeline_toml()
        ),
    )
    .unwrap();
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("{delivery} kill -9 test seed {seed}");
    for cycle in 1..=KILLS {
        let (mut child, settled) = start_ackbar(&config);
        let deadline = Instant::now() + Duration::from_secs(120);
        while count(&settled) == 0 {
            if let Some(status) = child.0.try_wait().unwrap() {
                panic!("ackbar exited early ({status}) in cycle {cycle}");
            }
            assert!(
                Instant::now() < deadline,
                "ackbar handled nothing in cycle {cycle}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(random_delay(&mut seed, 100, 800)).await;
        child.kill_and_read_all();
    }
    // One member, then a second one joins: the partitions move between them mid-stream.
    let (first, settled) = start_ackbar(&config);
    let deadline = Instant::now() + Duration::from_secs(300);
    while count(&settled) == 0 {
        assert!(
            Instant::now() < deadline,
            "the first member handled nothing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (second, _) = start_ackbar(&config);
    let done = vec![Some(MESSAGES / PARTITIONS as i64); PARTITIONS as usize];
    cluster
        .until_committed(&done, deadline.saturating_duration_since(Instant::now()))
        .await;
    for member in [&first, &second] {
        Command::new("kill")
            .args(["-TERM", &member.0.id().to_string()])
            .status()
            .unwrap();
    }
    for mut member in [first, second] {
        assert!(
            member.0.wait().unwrap().success(),
            "clean exit after SIGTERM"
        );
    }
    let mut times: BTreeMap<String, usize> = BTreeMap::new();
    let written =
        ackbar_tests::kafka::read_topic(&cluster.bootstrap, &out, Duration::from_secs(60)).unwrap();
    for m in &written {
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
        *times.entry(key).or_default() += 1;
    }
    let missing = (0..MESSAGES)
        .filter(|i| !times.contains_key(&format!("{}/{}", i % 4, i / 4)))
        .count();
    let duplicated: usize = times.values().map(|n| n - 1).sum();
    println!(
        "{delivery}: {KILLS} kill -9 cycles and a rebalance: {} outputs read, {missing} missing, {duplicated} duplicated",
        written.len()
    );
    assert_eq!(missing, 0, "every input's output is there");
    assert_eq!(times.len() as i64, MESSAGES, "and nothing else");
    times
}

/// No output twice for a `read_committed` reader: the transactions' fencing holds across kills
/// and rebalances (with the consumer protocol, across member epochs).
async fn exactly_once(broker: BrokerKind) {
    let times = outputs_after_kills_and_a_rebalance(broker, "exactly-once").await;
    let duplicated: Vec<(&String, &usize)> = times.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicated.is_empty(),
        "{} outputs seen more than once by a read_committed reader, e.g. {:?}",
        duplicated.len(),
        &duplicated[..duplicated.len().min(5)]
    );
}

crate::brokers::on_both_protocols! {
    exactly_once_outputs_survive_kill_nine_and_a_rebalance => exactly_once;
    at_least_once_outputs_survive_kill_nine_and_a_rebalance => |broker| async move {
        outputs_after_kills_and_a_rebalance(broker, "at-least-once").await;
    };
}
