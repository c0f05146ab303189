//! Hostile guests beside a well-behaved tenant in one process, on Apache Kafka: every attack is
//! contained in its own instance, settled by the policy with a precise reason, and the
//! well-behaved tenant keeps handling its messages, at nearly the rate it has alone.

use crate::brokers::BrokerKind;
use crate::support::{guest, unique, Cluster, Running};
use ackbar::outcome::CallEnd;
use ackbar::policy::{AckPolicy, Action};
use ackbar::report::MessageReport;
use ackbar::tools::{self, Record};
use std::time::Duration;

/// (payload, expected outcome label, text the error or trap reason must contain)
const ATTACKS: [(&str, &str, &str); 14] = [
    ("loop", "trap:deadline", "interrupt"),
    ("clock-loop", "trap:deadline", "interrupt"),
    ("recurse", "trap:stack-overflow", "call stack exhausted"),
    ("alloc:64", "trap:memory-limit", "memory limit exceeded"),
    // 14 bytes of payload copied 10⁸ times.
    ("echo:100000000", "trap:memory-limit", "the guest asked for"),
    ("big-error:4", "error", "xxxx"),
    ("ack-many:10000", "ack+ok", ""),
    (
        "interrupt-raw:7",
        "trap:other",
        "unexpected discriminant: 7",
    ),
    ("open:/etc/passwd", "error", "refused"),
    ("write:/tmp/ackbar-hostile", "error", "refused"),
    ("env", "error", "refused"),
    ("connect:127.0.0.1:22", "error", "refused"),
    ("http:127.0.0.1:9", "error", "HttpRequestDenied"),
    ("trap", "trap:panic", "unreachable"),
];

/// Messages of the well-behaved tenant: JSON orders over two partitions.
async fn produce_orders(cluster: &Cluster, count: usize) {
    let orders: Vec<String> = (0..count)
        .map(|i| format!(r#"{{"id":"o{i}","item":"book","quantity":1}}"#))
        .collect();
    let records: Vec<Record> = orders
        .iter()
        .enumerate()
        .map(|(i, o)| Record::new(i as i32 % 2, o.as_bytes()))
        .collect();
    tools::produce(&cluster.bootstrap, &cluster.topic, &records)
        .await
        .unwrap();
}

/// The well-behaved tenant: `orders` under ACK, in a group of its own.
fn good_tenant(cluster: &Cluster) -> Running {
    let mut config = cluster.config(AckPolicy::Ack);
    config.tenant = "good".into();
    config.group_id = Some(unique("good-group"));
    config.plugin = guest("orders");
    cluster.start(config)
}

/// A hostile tenant on its own topic: ACK, 300 ms deadline, 16 MiB of memory, and the default
/// backoff (which spaces out calls after repeated traps).
async fn hostile_tenant(cluster: &Cluster, payloads: &[&str], quota: bool) -> Running {
    let topic = unique("hostile");
    cluster.add_topic(&topic, 1).await;
    let records: Vec<Record> = payloads
        .iter()
        .map(|p| Record::new(0, p.as_bytes()))
        .collect();
    tools::produce(&cluster.bootstrap, &topic, &records)
        .await
        .unwrap();
    let mut config = cluster.config(AckPolicy::Ack);
    config.tenant = "hostile".into();
    config.topics = vec![topic];
    config.group_id = Some(unique("hostile-group"));
    config.limits.deadline = Duration::from_millis(300);
    config.limits.memory_bytes = 16 << 20;
    config.backoff = ackbar::config::Backoff::default();
    if quota {
        config.tenant_limits.guest_ms_per_sec = 250;
        config.tenant_limits.max_messages_per_sec = 1000;
    }
    cluster.start(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_is_contained_and_the_neighbour_keeps_going() {
    let cluster = Cluster::on(BrokerKind::Kafka, 2).await;
    produce_orders(&cluster, 2000).await;
    let payloads: Vec<&str> = ATTACKS.iter().map(|(p, _, _)| *p).collect();
    let mut attacked = hostile_tenant(&cluster, &payloads, false).await;
    let mut good = good_tenant(&cluster);
    let good_group = good.handle.as_ref().unwrap().config().group_id.clone();
    let hostile_config = attacked.handle.as_ref().unwrap().config().clone();

    good.until(Duration::from_secs(60), |seen| seen.len() >= 2000)
        .await;
    attacked
        .until(Duration::from_secs(90), |seen| seen.len() >= ATTACKS.len())
        .await;
    attacked.settle(Duration::from_millis(300)).await;
    good.stop().await;
    attacked.stop().await;

    for (offset, (payload, label, reason)) in ATTACKS.iter().enumerate() {
        let reports = attacked.deliveries(0, offset as i64);
        assert_eq!(reports.len(), 1, "{payload}: delivered once");
        let report = reports[0];
        assert_eq!(report.outcome.label(), *label, "{payload}");
        assert_eq!(report.action, Action::Commit, "{payload}: settled by ACK");
        let text = match &report.outcome.end {
            CallEnd::Trapped { detail, .. } => detail.clone(),
            CallEnd::Failed { message, .. } => message.clone(),
            _ => String::new(),
        };
        assert!(text.contains(reason), "{payload}: {text:.200}");
        assert!(text.len() <= 2048, "{payload}: report text is bounded");
    }
    assert!(good
        .seen
        .iter()
        .all(|r| r.outcome.label() == "ok" && r.action == Action::Commit));
    let committed = tools::committed_offsets(
        &cluster.bootstrap,
        hostile_config.group_id.as_deref().unwrap(),
        &hostile_config.topics[0],
        &[0],
    )
    .unwrap();
    assert_eq!(committed, vec![(0, Some(ATTACKS.len() as i64))]);
    let committed = tools::committed_offsets(
        &cluster.bootstrap,
        good_group.as_deref().unwrap(),
        &cluster.topic,
        &[0, 1],
    )
    .unwrap();
    assert_eq!(committed, vec![(0, Some(1000)), (1, Some(1000))]);
}

/// Messages per second over the span of the reports (first call start to last call end).
fn rate(reports: &[MessageReport]) -> f64 {
    let first = reports.iter().map(|r| r.started).min().unwrap();
    let last = reports.iter().map(|r| r.started + r.elapsed).max().unwrap();
    reports.len() as f64 / (last - first).as_secs_f64()
}

/// The good tenant's rate over `count` messages, beside whatever else runs.
async fn good_rate(cluster: &Cluster, count: usize) -> f64 {
    let mut good = good_tenant(cluster);
    good.until(Duration::from_secs(120), |seen| seen.len() >= count)
        .await;
    good.stop().await;
    assert!(good.seen.iter().all(|r| r.outcome.label() == "ok"));
    rate(&good.seen[..count])
}

/// The good tenant's throughput alone and beside each attack, repeated by a hostile tenant
/// limited to 250 ms of guest time and 1,000 messages per second. The bound is generous because
/// other tests share the machine; `make bench-tenants` measures it with more runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_good_tenant_keeps_its_throughput_beside_each_attack() {
    const ORDERS: usize = 10_000;
    const REPEATS: usize = 3000;
    let cluster = Cluster::on(BrokerKind::Kafka, 2).await;
    produce_orders(&cluster, ORDERS).await;
    // Other tests share the machine: the reference is the median of three runs alone, and each
    // case the better of two runs.
    let mut alone = vec![good_rate(&cluster, ORDERS).await];
    let mut beside = Vec::new();
    for (i, (attack, _, _)) in ATTACKS.into_iter().enumerate() {
        let mut hostile = hostile_tenant(&cluster, &[attack; REPEATS], true).await;
        // The attack is under way before the measurement starts.
        hostile
            .until(Duration::from_secs(60), |seen| !seen.is_empty())
            .await;
        let first = good_rate(&cluster, ORDERS).await;
        let second = good_rate(&cluster, ORDERS).await;
        hostile.stop().await;
        beside.push((attack, first.max(second)));
        if i == ATTACKS.len() / 2 {
            alone.push(good_rate(&cluster, ORDERS).await);
        }
    }
    alone.push(good_rate(&cluster, ORDERS).await);
    alone.sort_by(f64::total_cmp);
    let reference = alone[1];
    eprintln!("good tenant alone: {alone:.0?} msg/s");
    for (attack, good) in &beside {
        eprintln!(
            "beside {attack:<26} {good:>8.0} msg/s  {:>5.1}%",
            100.0 * good / reference
        );
    }
    for (attack, good) in &beside {
        assert!(
            *good >= 0.5 * reference,
            "beside {attack}: {good:.0} msg/s, alone {reference:.0} msg/s"
        );
    }
}
