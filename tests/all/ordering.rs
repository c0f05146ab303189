//! `ordering = "key"` and `"unordered"`: concurrency inside a partition, order per key, and
//! commits that never pass an unfinished message.

use crate::support::Cluster;
use ackbar::config::Ordering;
use ackbar::events::DeliveryEvent;
use ackbar::kafka::{self, Record};
use ackbar::policy::AckPolicy;
use std::time::{Duration, Instant};

fn interval(r: &DeliveryEvent) -> (Instant, Instant) {
    (r.started, r.started + r.elapsed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_ordering_keeps_each_keys_order_and_handles_keys_concurrently() {
    let cluster = Cluster::new(1);
    let records: Vec<Record> = (0..24)
        .map(|i| Record {
            partition: Some(0),
            key: Some(format!("k{}", i % 4).into_bytes()),
            payload: b"sleep:40".to_vec(),
            headers: Vec::new(),
        })
        .collect();
    kafka::produce(&cluster.bootstrap, &cluster.topic, &records)
        .await
        .unwrap();
    let mut config = cluster.config(AckPolicy::Ack);
    config.ordering = Ordering::Key;
    config.max_in_flight = 8;
    let mut run = cluster.start(config);
    run.until(Duration::from_secs(120), |seen| seen.len() >= 24)
        .await;
    run.stop().await;

    let of_key = |k: i64| -> Vec<&DeliveryEvent> {
        let mut reports: Vec<&DeliveryEvent> =
            run.seen.iter().filter(|r| r.offset % 4 == k).collect();
        reports.sort_by_key(|r| r.started);
        reports
    };
    for k in 0..4 {
        let reports = of_key(k);
        let offsets: Vec<i64> = reports.iter().map(|r| r.offset).collect();
        let expected: Vec<i64> = (0..6).map(|i| i * 4 + k).collect();
        assert_eq!(offsets, expected, "key k{k} handled in offset order");
        for pair in reports.windows(2) {
            assert!(
                interval(pair[1]).0 >= interval(pair[0]).1,
                "key k{k}: offset {} started before offset {} ended",
                pair[1].offset,
                pair[0].offset
            );
        }
    }
    let overlapping = run.seen.iter().any(|a| {
        run.seen.iter().any(|b| {
            a.offset % 4 != b.offset % 4 && {
                let (a0, a1) = interval(a);
                let (b0, b1) = interval(b);
                a0 < b1 && b0 < a1
            }
        })
    });
    assert!(overlapping, "different keys ran at the same time");
    assert_eq!(cluster.committed(), vec![Some(24)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unordered_commits_stop_at_the_first_unfinished_message() {
    let cluster = Cluster::new(1);
    let mut messages = vec![(0, "fail-until:3")];
    messages.extend(std::iter::repeat_n((0, "ok"), 5));
    cluster.produce(&messages).await;
    let mut config = cluster.config(AckPolicy::NackOnError);
    config.ordering = Ordering::Unordered;
    config.max_in_flight = 4;
    // Offset 0 succeeds at its third attempt, 6 s after its first: long after offsets 1-5 are
    // done and the offset below is read, however slow the machine.
    config.backoff.initial_ms = 3000;
    config.backoff.max_ms = 3000;
    let mut run = cluster.start(config);
    run.until(Duration::from_secs(120), |seen| {
        (1..6).all(|o| seen.iter().any(|r| r.offset == o))
    })
    .await;
    // Offsets 1-5 are done; offset 0 waits for its redelivery. Commits run every 100 ms.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let committed = cluster.committed();
    let read_at = std::time::Instant::now();
    run.until(Duration::from_secs(120), |seen| {
        seen.iter().any(|r| r.offset == 0 && r.attempt == 3)
    })
    .await;
    run.stop().await;
    let success = run
        .seen
        .iter()
        .find(|r| r.offset == 0 && r.outcome.label() == "ok")
        .expect("offset 0 succeeded");
    assert!(
        success.started > read_at,
        "offset 0 finished too early to test anything"
    );
    assert_eq!(committed, vec![None], "committed past offset 0");
    assert_eq!(cluster.committed(), vec![Some(6)]);
}
