//! Hostile guests beside a well-behaved tenant in one process, on Apache Kafka: every attack is
//! contained in its own instance, settled by the policy with a precise reason, and the
//! well-behaved tenant handles all of its messages while the attacks go on.

use crate::brokers::BrokerKind;
use crate::support::{guest, unique, Cluster, Running};
use ackbar::config::PipelineConfig;
use ackbar::kafka::{self, Record};
use ackbar::outcome::CallEnd;
use ackbar::policy::{AckPolicy, Action};
use std::time::Duration;

/// (payload, expected outcome label, text the error or trap reason must contain)
const ATTACKS: [(&str, &str, &str); 18] = [
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
    // Blocked in a host call: cut off at the deadline, not when the sleep ends.
    ("sleep:15000", "trap:deadline", "waited in a host call"),
    // Most of the lines are dropped by the tenant's log rate; the call itself is fine.
    ("log-flood:20000", "ok", ""),
    ("big-log:8", "ok", ""),
    ("exit:0", "trap:other", "Exited with i32 exit status 0"),
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
    kafka::produce(&cluster.bootstrap, &cluster.topic, &records)
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

/// The deadline of the pipelines whose every attack's outcome is asserted: the attacks that
/// must be cut off (`loop`, `sleep:15000`) are cut off at any deadline, while the work of the
/// others (an 8 MiB log line, 10,000 acks, 20,000 log calls) must finish inside it on a loaded
/// 2-core machine, so it is far above what that work takes.
const ASSERTED_DEADLINE: Duration = Duration::from_secs(3);

/// A hostile tenant's pipeline on its own topic holding `payloads`: ACK, 300 ms deadline,
/// 16 MiB of memory, and the default backoff (which spaces out calls after repeated traps).
async fn hostile_config(cluster: &Cluster, payloads: &[&str]) -> PipelineConfig {
    let topic = unique("hostile");
    cluster.add_topic(&topic, 1).await;
    let records: Vec<Record> = payloads
        .iter()
        .map(|p| Record::new(0, p.as_bytes()))
        .collect();
    kafka::produce(&cluster.bootstrap, &topic, &records)
        .await
        .unwrap();
    let mut config = cluster.config(AckPolicy::Ack);
    config.tenant = "hostile".into();
    config.topics = vec![topic];
    config.group_id = Some(unique("hostile-group"));
    config.limits.deadline = Duration::from_millis(300);
    config.limits.memory_bytes = 16 << 20;
    config.backoff = ackbar::config::Backoff::default();
    config
}

/// Every attack in one hostile pipeline (`shape` adjusts its config) beside the good tenant on
/// a topic of two partitions, until both have handled everything: the two runs, stopped, the
/// hostile pipeline's config and the good tenant's group.
async fn attacks_beside_the_good_tenant(
    cluster: &Cluster,
    shape: impl FnOnce(&mut PipelineConfig),
) -> (Running, Running, PipelineConfig, String) {
    produce_orders(cluster, 2000).await;
    let payloads: Vec<&str> = ATTACKS.iter().map(|(p, _, _)| *p).collect();
    let mut config = hostile_config(cluster, &payloads).await;
    config.limits.deadline = ASSERTED_DEADLINE;
    shape(&mut config);
    let mut attacked = cluster.start(config.clone());
    let mut good = good_tenant(cluster);
    let good_group = good.handle.as_ref().unwrap().config().group_id.clone();
    good.until(Duration::from_secs(120), |seen| seen.len() >= 2000)
        .await;
    attacked
        .until(Duration::from_secs(90), |seen| seen.len() >= ATTACKS.len())
        .await;
    attacked.settle(Duration::from_millis(300)).await;
    good.stop().await;
    attacked.stop().await;
    (
        attacked,
        good,
        config,
        good_group.expect("the good tenant's group"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_is_contained_and_the_neighbour_keeps_going() {
    let cluster = Cluster::on(BrokerKind::Kafka, 2).await;
    let (attacked, good, hostile_config, good_group) =
        attacks_beside_the_good_tenant(&cluster, |_| {}).await;
    assert_every_attack_settled_once(&attacked);
    let committed = kafka::committed_offsets(
        &cluster.bootstrap,
        hostile_config.group_id.as_deref().unwrap(),
        &hostile_config.topics[0],
        &[0],
    )
    .unwrap();
    assert_eq!(committed, vec![(0, Some(ATTACKS.len() as i64))]);
    assert_all_orders_handled_and_committed(&cluster, &good, &good_group);
}

/// Each attack was delivered once, ended as expected with its reason (bounded), and was
/// settled by ACK.
fn assert_every_attack_settled_once(attacked: &Running) {
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
}

/// The same attacks on a share pipeline (several at once): each is contained and accepted, the
/// broker has nothing left of them, and the neighbour on a classic group handles everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_is_contained_on_a_share_pipeline() {
    let cluster = Cluster::on(BrokerKind::Kafka, 2).await;
    let (attacked, good, hostile_config, good_group) =
        attacks_beside_the_good_tenant(&cluster, |config| {
            config.group_type = ackbar::config::GroupType::Share;
            config.ordering = ackbar::config::Ordering::Unordered;
            config.max_in_flight = 4;
            config.kafka.clear();
        })
        .await;
    assert_every_attack_settled_once(&attacked);
    let left = crate::share_group::still_available(
        hostile_config.group_id.as_deref().unwrap(),
        &hostile_config.topics[0],
        ATTACKS.len() as i64,
    )
    .await;
    assert!(left.is_empty(), "{left:?}");
    assert_all_orders_handled_and_committed(&cluster, &good, &good_group);
}

/// The good tenant handled each of the 2,000 orders once, successfully, and committed them all.
fn assert_all_orders_handled_and_committed(cluster: &Cluster, good: &Running, group: &str) {
    assert_eq!(good.seen.len(), 2000, "each order handled once");
    assert!(good
        .seen
        .iter()
        .all(|r| r.outcome.label() == "ok" && r.action == Action::Commit));
    let committed =
        kafka::committed_offsets(&cluster.bootstrap, group, &cluster.topic, &[0, 1]).unwrap();
    assert_eq!(committed, vec![(0, Some(1000)), (1, Some(1000))]);
}

/// Each attack runs in its own pipeline of one hostile tenant, all at once, limited to 250 ms of
/// guest time and 100 messages per second over the tenant; meanwhile the good tenant handles
/// every one of its orders and commits them. What is asserted does not depend on the machine's
/// speed: the good tenant's work is complete, each attack was under way before it started and
/// still had messages left when it finished, and the hostile tenant stayed within its quotas
/// over the time it ran. Throughput beside each attack is `make bench-tenants`' business.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_good_tenant_handles_everything_while_every_attack_runs() {
    const ORDERS: usize = 2000;
    const REPEATS: usize = 3000;
    // Low enough that no attack can get through its 3,000 messages in less than 30 s, however
    // long the good tenant takes to join and finish on a loaded machine.
    const MESSAGES_PER_SEC: u64 = 100;
    const GUEST_MS_PER_SEC: u64 = 250;
    let cluster = Cluster::on(BrokerKind::Kafka, 2).await;
    produce_orders(&cluster, ORDERS).await;
    let limits = ackbar::config::TenantLimits {
        guest_ms_per_sec: GUEST_MS_PER_SEC,
        max_messages_per_sec: MESSAGES_PER_SEC,
        ..ackbar::config::TenantLimits::default()
    };
    let budget = ackbar::tenant::TenantBudget::new("hostile", limits);
    let started = std::time::Instant::now();
    let mut attacks = Vec::new();
    for (attack, _, _) in ATTACKS {
        let mut config = hostile_config(&cluster, &[attack; REPEATS]).await;
        config.tenant_limits = limits;
        attacks.push((attack, cluster.start_in(config, budget.clone())));
    }
    for (attack, running) in &mut attacks {
        running
            .until(Duration::from_secs(120), |seen| !seen.is_empty())
            .await;
        assert!(!running.seen.is_empty(), "{attack} is under way");
    }
    let mut good = good_tenant(&cluster);
    let good_group = good.handle.as_ref().unwrap().config().group_id.clone();
    good.until(Duration::from_secs(120), |seen| seen.len() >= ORDERS)
        .await;
    good.stop().await;
    let mut calls = 0usize;
    let mut guest_time = Duration::ZERO;
    for (attack, running) in &mut attacks {
        running.stop().await;
        assert!(
            running.seen.len() < REPEATS,
            "{attack} still had messages left when the good tenant finished"
        );
        calls += running.seen.len();
        guest_time += running.seen.iter().map(|r| r.elapsed).sum::<Duration>();
    }
    let ran_for = started.elapsed().as_secs_f64();

    assert_all_orders_handled_and_committed(&cluster, &good, good_group.as_deref().unwrap());
    // A bucket starts full (one second's worth) and each pipeline may pass it once more while
    // another is being charged; a guest-time charge comes after the call, so each running call
    // may overdraw it by one deadline.
    let pipelines = ATTACKS.len() as f64;
    let max_calls = MESSAGES_PER_SEC as f64 * (1.0 + ran_for) + pipelines;
    assert!(
        calls as f64 <= max_calls,
        "{calls} hostile calls in {ran_for:.1} s (quota {MESSAGES_PER_SEC}/s)"
    );
    let max_guest_ms = GUEST_MS_PER_SEC as f64 * (1.0 + ran_for) + pipelines * 300.0;
    assert!(
        guest_time.as_secs_f64() * 1000.0 <= max_guest_ms,
        "{guest_time:?} of hostile guest time in {ran_for:.1} s (quota {GUEST_MS_PER_SEC} ms/s)"
    );
}
