//! A tenant's budget is shared by all its pipelines and by nobody else.

use crate::brokers::BrokerKind;
use crate::support::{unique, Cluster, Running};
use ackbar::config::{Ordering, TenantLimits};
use ackbar::events::DeliveryEvent;
use ackbar::kafka::Record;
use ackbar::policy::AckPolicy;
use ackbar::tenant::TenantBudget;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MESSAGES: usize = 8;

/// A key-ordered pipeline of `tenant` on an empty topic of its own.
async fn sleepy_pipeline(cluster: &Cluster, tenant: &str, budget: &Arc<TenantBudget>) -> Running {
    let topic = unique("sleepy");
    cluster.add_topic(&topic, 1).await;
    let mut config = cluster.config(AckPolicy::Ack);
    config.tenant = tenant.into();
    config.topics = vec![topic];
    config.group_id = Some(unique("sleepy-group"));
    config.ordering = Ordering::Key;
    config.max_in_flight = 8;
    // Far above the longest sleep, however loaded the machine is.
    config.limits.deadline = Duration::from_secs(10);
    // The embedded broker answers an empty fetch only after this wait, even when data arrives
    // meanwhile: keep it short so both pipelines start on their messages together.
    config.kafka.insert("fetch.wait.max.ms".into(), "10".into());
    cluster.start_in(config, budget.clone())
}

/// Once both pipelines have their partition: `MESSAGES` calls of `sleep_ms`, different keys, to
/// each.
async fn feed(cluster: &Cluster, pipelines: [&Running; 2], sleep_ms: u64) {
    for running in pipelines {
        let handle = running.handle.as_ref().unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while handle.assigned_partitions().is_empty() {
            assert!(Instant::now() < deadline, "partition assigned");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for running in pipelines {
        let topic = running.handle.as_ref().unwrap().config().topics[0].clone();
        let records: Vec<Record> = (0..MESSAGES)
            .map(|i| {
                let mut record = Record::new(0, format!("sleep:{sleep_ms}"));
                record.key = Some(format!("k{i}").into_bytes());
                record
            })
            .collect();
        ackbar::kafka::produce(&cluster.bootstrap, &topic, &records)
            .await
            .unwrap();
    }
}

/// The most calls that were running at the same moment.
pub(crate) fn peak_concurrency(reports: &[&DeliveryEvent]) -> usize {
    let mut edges: Vec<(Instant, i32)> = reports
        .iter()
        .flat_map(|r| [(r.started, 1), (r.started + r.elapsed, -1)])
        .collect();
    edges.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, delta) in edges {
        now += delta;
        peak = peak.max(now);
    }
    peak as usize
}

async fn run_both(first: &mut Running, second: &mut Running) {
    first
        .until(Duration::from_secs(120), |seen| seen.len() >= MESSAGES)
        .await;
    second
        .until(Duration::from_secs(120), |seen| seen.len() >= MESSAGES)
        .await;
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenants_pipelines_share_its_call_and_in_flight_limits() {
    tenant_limits(Cluster::new(1)).await;
}

crate::brokers::on_both_protocols! {
    a_tenants_pipelines_share_its_call_and_in_flight_limits_on_kafka => |broker| async move {
        tenant_limits(Cluster::on(broker, 1).await).await;
    };
}

async fn tenant_limits(cluster: Cluster) {
    for limits in [
        TenantLimits {
            max_instances: 1,
            ..TenantLimits::default()
        },
        TenantLimits {
            max_in_flight: 1,
            ..TenantLimits::default()
        },
    ] {
        let budget = TenantBudget::new("narrow", limits);
        let mut first = sleepy_pipeline(&cluster, "narrow", &budget).await;
        let mut second = sleepy_pipeline(&cluster, "narrow", &budget).await;
        feed(&cluster, [&first, &second], 40).await;
        run_both(&mut first, &mut second).await;
        let all: Vec<&DeliveryEvent> = first.seen.iter().chain(&second.seen).collect();
        assert_eq!(all.len(), 2 * MESSAGES);
        assert_eq!(
            peak_concurrency(&all),
            1,
            "{limits:?}: one call at a time over both pipelines"
        );
        assert_eq!(budget.calls_running(), 0);
        assert_eq!(
            budget.messages_in_flight(),
            0,
            "every admitted message was returned"
        );
    }

    // Two tenants with one call each: each is limited, but they run beside each other. Each has
    // 8 s of calls, so the second tenant's first call starts during the first tenant's run
    // however long producing to its topic and fetching take on a loaded machine.
    let limits = TenantLimits {
        max_instances: 1,
        ..TenantLimits::default()
    };
    let mut first = sleepy_pipeline(&cluster, "a", &TenantBudget::new("a", limits)).await;
    let mut second = sleepy_pipeline(&cluster, "b", &TenantBudget::new("b", limits)).await;
    feed(&cluster, [&first, &second], 1000).await;
    run_both(&mut first, &mut second).await;
    let first_seen: Vec<&DeliveryEvent> = first.seen.iter().collect();
    let second_seen: Vec<&DeliveryEvent> = second.seen.iter().collect();
    assert_eq!(peak_concurrency(&first_seen), 1);
    assert_eq!(peak_concurrency(&second_seen), 1);
    let all: Vec<&DeliveryEvent> = first.seen.iter().chain(&second.seen).collect();
    assert_eq!(
        peak_concurrency(&all),
        2,
        "different tenants do not wait on each other"
    );
}
