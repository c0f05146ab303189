//! Rebalances: settled offsets are committed before partitions move, so the new owner starts
//! exactly where the old one stopped.

use crate::support::Cluster;
use ackbar::policy::AckPolicy;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_member_takes_partitions_without_duplicates_or_gaps() {
    let cluster = Cluster::new(4);
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
    let mut deliveries: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for r in first.seen.iter().chain(second.seen.iter()) {
        *deliveries.entry((r.partition, r.offset)).or_default() += 1;
    }
    let duplicates: Vec<_> = deliveries.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicates.is_empty(),
        "revoke committed synchronously, yet {duplicates:?} were handled twice"
    );
    assert_eq!(cluster.committed(), vec![Some(60); 4]);
}
