//! Rebalances: a second member joins mid-stream and takes partitions. Everywhere nothing may be
//! skipped. On Apache Kafka the old owner's drained, settled offsets are committed in the revoke
//! callback, so nothing is handled twice. The embedded broker's coordinator refuses commits once
//! a rebalance has begun (Kafka accepts them until the rejoin), so there a new owner may re-handle
//! what the old one settled during the rebalance, as one contiguous run.

use crate::brokers::BrokerKind;
use crate::support::Cluster;
use ackbar::policy::AckPolicy;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_member_takes_partitions_without_gaps_on_the_embedded_broker() {
    second_member_joins(BrokerKind::Embedded, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_member_takes_partitions_without_gaps_or_duplicates_on_kafka() {
    second_member_joins(BrokerKind::Kafka, Some(0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_member_takes_partitions_without_gaps_on_kafka_with_kip_848() {
    // The consumer protocol revokes incrementally; settled offsets are committed on revoke too.
    second_member_joins(BrokerKind::KafkaConsumerProtocol, Some(0)).await;
}

/// Two members, 4 partitions, 240 slow messages; `max_duplicates` where the broker accepts the
/// commit made on revoke.
async fn second_member_joins(broker: BrokerKind, max_duplicates: Option<usize>) {
    let cluster = Cluster::on(broker, 4).await;
    let messages: Vec<(i32, &str)> = (0..240).map(|i| (i % 4, "sleep:15")).collect();
    cluster.produce(&messages).await;
    let config = cluster.config(AckPolicy::Ack);

    let mut first = cluster.start(config.clone());
    first
        .until(Duration::from_secs(30), |seen| seen.len() >= 20)
        .await;
    let mut second = cluster.start(config);
    let all_handled = |a: &[ackbar::report::MessageReport], b: &[ackbar::report::MessageReport]| {
        a.iter()
            .chain(b)
            .map(|r| (r.partition, r.offset))
            .collect::<BTreeSet<_>>()
            .len()
            == 240
    };
    // Both members make progress until every message was handled.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !all_handled(&first.seen, &second.seen) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all handled in time"
        );
        first.settle(Duration::from_millis(50)).await;
        second.settle(Duration::from_millis(50)).await;
    }
    let second_partitions: BTreeSet<i32> = second.seen.iter().map(|r| r.partition).collect();
    first.stop().await;
    second.stop().await;

    assert!(
        !second_partitions.is_empty(),
        "the second member got partitions"
    );
    for p in 0..4 {
        let offsets = |seen: &[ackbar::report::MessageReport]| -> BTreeSet<i64> {
            seen.iter()
                .filter(|r| r.partition == p)
                .map(|r| r.offset)
                .collect()
        };
        let (a, b) = (offsets(&first.seen), offsets(&second.seen));
        let all: BTreeSet<i64> = a.union(&b).copied().collect();
        assert_eq!(
            all,
            (0..60).collect(),
            "partition {p}: every message handled, none skipped"
        );
        // A new owner resumes at a committed offset: what it handles twice is a contiguous run
        // right after the old owner's last commit, never a hole.
        let twice: Vec<i64> = a.intersection(&b).copied().collect();
        if let (Some(first_dup), Some(last_dup)) = (twice.first(), twice.last()) {
            assert_eq!(
                twice.len() as i64,
                last_dup - first_dup + 1,
                "partition {p}: {twice:?}"
            );
        }
    }
    let mut deliveries: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for r in first.seen.iter().chain(second.seen.iter()) {
        *deliveries.entry((r.partition, r.offset)).or_default() += 1;
    }
    let duplicates = deliveries.values().filter(|n| **n > 1).count();
    if let Some(max) = max_duplicates {
        assert!(
            duplicates <= max,
            "{duplicates} messages handled twice on {broker:?}"
        );
    }
    assert!(
        deliveries.values().all(|n| *n <= 2),
        "no message handled more than twice"
    );
    assert_eq!(cluster.committed(), vec![Some(60); 4]);
}
