//! The supervisor on Apache Kafka: a pipeline that hits a fatal Kafka error is restarted with
//! backoff and reported, and the restarted pipeline goes on from the committed offsets.

use crate::brokers::BrokerKind;
use crate::support::{guest, runtime, Cluster};
use ackbar::config::Backoff;
use ackbar::policy::AckPolicy;
use ackbar::supervisor::{Launch, Supervised};
use ackbar::tenant::TenantBudget;
use std::time::{Duration, Instant};

/// The group's committed offset of partition 0; `None` also while the coordinator is not
/// known yet for a new group.
fn committed(cluster: &Cluster) -> Option<i64> {
    ackbar::kafka::committed_offsets(&cluster.bootstrap, &cluster.group, &cluster.topic, &[0])
        .ok()
        .and_then(|offsets| offsets[0].1)
}

/// Two members of one group claiming the same static `group.instance.id`: the broker fences
/// the older one, which librdkafka reports as a fatal error. Its supervisor restarts it (and then
/// the other one is fenced in turn): each restart is counted and reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_static_member_is_restarted_by_its_supervisor() {
    let cluster = Cluster::on(BrokerKind::Kafka, 1).await;
    cluster.produce(&[(0, "ok"), (0, "ok")]).await;
    let mut config = cluster.config(AckPolicy::Ack);
    config.plugin = guest("fixture");
    config
        .kafka
        .insert("group.instance.id".into(), "same-member".into());
    let launch = || Launch {
        bootstrap: cluster.bootstrap.clone(),
        runtime: runtime(),
        budget: TenantBudget::new("default", config.tenant_limits),
        backoff: Backoff {
            initial_ms: 200,
            max_ms: 1000,
            multiplier: 2.0,
        },
    };
    let first = Supervised::spawn(config.clone(), launch());
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed(&cluster) != Some(2) {
        assert!(Instant::now() < deadline, "the first member commits");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut second_config = config.clone();
    second_config.name = format!("{}-twin", config.name);
    let second = Supervised::spawn(second_config, launch());
    while first.restarts() + second.restarts() == 0 {
        assert!(
            Instant::now() < deadline,
            "a fenced member is restarted within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fenced = if first.restarts() > 0 {
        &first
    } else {
        &second
    };
    let failure = fenced.last_failure().unwrap();
    assert!(
        failure.starts_with("crashed: fatal Kafka error FencedInstanceId"),
        "{failure}"
    );
    // Nothing is lost or skipped: the group's offset stays at the end.
    cluster.produce(&[(0, "ok")]).await;
    while committed(&cluster) != Some(3) {
        assert!(
            Instant::now() < deadline + Duration::from_secs(30),
            "the third message commits"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
}
