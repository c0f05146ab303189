//! Redelivery, ordering, commit points, limits and restarts on the embedded broker.

use crate::support::{settled, Cluster};
use ackbar::events::DeliveryEvent;
use ackbar::outcome::{CallEnd, TrapKind};
use ackbar::policy::{AckPolicy, Action};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

fn position(seen: &[DeliveryEvent], partition: i32, offset: i64, attempt: u32) -> usize {
    seen.iter()
        .position(|r| r.partition == partition && r.offset == offset && r.attempt == attempt)
        .unwrap_or_else(|| panic!("no delivery {partition}@{offset} attempt {attempt}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_on_error_redelivers_in_order_with_growing_backoff_until_success() {
    let cluster = Cluster::new(1);
    cluster
        .produce(&[(0, "fail-until:3"), (0, "ok"), (0, "ok")])
        .await;
    let mut config = cluster.config(AckPolicy::NackOnError);
    config.backoff.initial_ms = 200;
    config.backoff.max_ms = 2000;
    let mut run = cluster.start(config);
    run.until(WAIT, |seen| seen.iter().filter(|r| settled(r)).count() == 3)
        .await;
    run.stop().await;

    let first: Vec<&DeliveryEvent> = run.deliveries(0, 0);
    let attempts: Vec<u32> = first.iter().map(|r| r.attempt).collect();
    assert_eq!(attempts, [1, 2, 3], "{:?}", run.summary());
    assert_eq!(first[0].action, Action::Redeliver);
    assert_eq!(first[1].action, Action::Redeliver);
    assert_eq!(first[2].action, Action::Commit);
    // Nothing after the failing message is handled before it succeeds.
    assert!(position(&run.seen, 0, 1, 1) > position(&run.seen, 0, 0, 3));
    assert_eq!(run.deliveries(0, 1).len(), 1);
    assert_eq!(run.deliveries(0, 2).len(), 1);
    assert_eq!(cluster.committed(), vec![Some(3)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_is_waited_between_redeliveries() {
    let cluster = Cluster::new(1);
    cluster.produce(&[(0, "fail-until:3")]).await;
    let mut config = cluster.config(AckPolicy::NackOnError);
    config.backoff.initial_ms = 300;
    config.backoff.max_ms = 5000;
    let mut run = cluster.start(config);
    run.until(WAIT, |seen| seen.len() >= 3).await;
    run.stop().await;
    // From the end of one call to the start of the next: the backoff, 300 ms then 600 ms.
    let d = run.deliveries(0, 0);
    let gap = |a: usize| d[a + 1].started - (d[a].started + d[a].elapsed);
    assert!(
        gap(0) >= Duration::from_millis(300),
        "first backoff {:?}",
        gap(0)
    );
    assert!(
        gap(1) >= Duration::from_millis(600),
        "second backoff {:?}",
        gap(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_success_never_commits_past_an_earlier_failing_message() {
    let cluster = Cluster::new(1);
    cluster
        .produce(&[
            (0, "ok"),
            (0, "ok"),
            (0, "fail-until:1000"),
            (0, "ok"),
            (0, "ok"),
        ])
        .await;
    let mut config = cluster.config(AckPolicy::NackOnError);
    config.backoff.initial_ms = 100;
    config.backoff.max_ms = 100;
    let mut run = cluster.start(config);
    // While offset 2 keeps failing, the commit point reaches 2 ...
    run.until(WAIT, |seen| {
        seen.iter().any(|r| r.offset == 2 && r.attempt == 2)
    })
    .await;
    cluster.until_committed(&[Some(2)], WAIT).await;
    // ... and stays exactly there.
    run.until(WAIT, |seen| {
        seen.iter().any(|r| r.offset == 2 && r.attempt == 4)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cluster.committed(), vec![Some(2)], "after attempt 4");
    // ... and a graceful stop does not move it either.
    run.stop().await;
    assert_eq!(cluster.committed(), vec![Some(2)]);
    assert!(
        run.seen.iter().all(|r| r.offset <= 2),
        "nothing after the failing message ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_explicit_decision_wins_over_later_ones_and_over_errors() {
    let cluster = Cluster::new(1);
    cluster
        .produce(&[
            (0, "ack-then-error"),
            (0, "ack-then-trap"),
            (0, "nack-then-ack"),
        ])
        .await;
    let mut run = cluster.start(cluster.config(AckPolicy::NackOnError));
    run.until(WAIT, |seen| {
        seen.iter().any(|r| r.offset == 2 && r.attempt == 2)
    })
    .await;
    run.stop().await;
    assert_eq!(
        run.deliveries(0, 0).len(),
        1,
        "ack then error is settled as ack"
    );
    assert_eq!(run.deliveries(0, 0)[0].action, Action::Commit);
    assert_eq!(
        run.deliveries(0, 1).len(),
        1,
        "ack then trap is settled as ack"
    );
    assert!(matches!(
        run.deliveries(0, 1)[0].outcome.end,
        CallEnd::Trapped { .. }
    ));
    assert_eq!(
        run.deliveries(0, 2)[0].action,
        Action::Redeliver,
        "nack then ack is a nack"
    );
    assert_eq!(cluster.committed(), vec![Some(2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fatal_error_is_rejected_not_retried_under_nack_on_error() {
    let cluster = Cluster::new(1);
    cluster.produce(&[(0, "fatal"), (0, "ok")]).await;
    let mut run = cluster.start(cluster.config(AckPolicy::NackOnError));
    run.until(WAIT, |seen| seen.len() >= 2).await;
    run.settle(Duration::from_millis(300)).await;
    run.stop().await;
    assert_eq!(run.deliveries(0, 0).len(), 1);
    assert_eq!(run.deliveries(0, 0)[0].action, Action::Reject);
    assert_eq!(cluster.committed(), vec![Some(2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_traps_a_looping_handler_and_the_next_message_runs_on_a_fresh_instance() {
    let cluster = Cluster::new(1);
    cluster.produce(&[(0, "loop"), (0, "ok"), (0, "ok")]).await;
    let mut config = cluster.config(AckPolicy::Ack);
    // Also the deadline of the `ok` calls on fresh instances: far above what they take.
    config.limits.deadline = Duration::from_millis(1000);
    let mut run = cluster.start(config);
    run.until(WAIT, |seen| seen.len() >= 3).await;
    run.stop().await;
    let trapped = run.deliveries(0, 0)[0];
    assert!(
        matches!(
            trapped.outcome.end,
            CallEnd::Trapped {
                kind: TrapKind::Deadline,
                ..
            }
        ),
        "{:?}",
        trapped.outcome
    );
    assert!(
        trapped.elapsed >= Duration::from_millis(1000),
        "{:?}",
        trapped.elapsed
    );
    assert_eq!(
        trapped.action,
        Action::Commit,
        "a trap is an error, and ACK commits errors"
    );
    assert_eq!(run.deliveries(0, 1)[0].outcome.label(), "ok");
    assert_eq!(run.deliveries(0, 2)[0].outcome.label(), "ok");
    assert_eq!(cluster.committed(), vec![Some(3)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_cap_traps_an_allocating_handler_per_policy() {
    let cluster = Cluster::new(1);
    cluster
        .produce(&[(0, "alloc:8"), (0, "alloc:64"), (0, "ok")])
        .await;
    let mut config = cluster.config(AckPolicy::RejectOnError);
    config.limits.memory_bytes = 32 << 20;
    let mut run = cluster.start(config);
    run.until(WAIT, |seen| seen.len() >= 3).await;
    run.stop().await;
    assert_eq!(
        run.deliveries(0, 0)[0].outcome.label(),
        "returned:ack",
        "8 MiB fits in 32"
    );
    let hog = run.deliveries(0, 1)[0];
    match &hog.outcome.end {
        CallEnd::Trapped { kind, detail, .. } => {
            assert_eq!(*kind, TrapKind::MemoryLimit, "{detail}");
            assert!(detail.contains("memory limit exceeded"), "{detail}");
        }
        other => panic!("expected a memory-limit trap, got {other:?}"),
    }
    assert_eq!(hog.action, Action::Reject);
    assert_eq!(run.deliveries(0, 2)[0].outcome.label(), "ok");
    assert_eq!(cluster.committed(), vec![Some(3)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_are_consumed_concurrently_each_in_order() {
    let cluster = Cluster::new(3);
    let mut messages = Vec::new();
    for i in 0..30 {
        messages.push((i % 3, "sleep:20"));
    }
    cluster.produce(&messages).await;
    // One partition stalls on a failing message; the others must not wait for it.
    cluster.produce(&[(0, "fail-until:1000")]).await;
    let mut run = cluster.start(cluster.config(AckPolicy::NackOnError));
    run.until(WAIT, |seen| {
        seen.iter()
            .filter(|r| settled(r) && r.partition != 0)
            .count()
            == 20
            && seen
                .iter()
                .filter(|r| r.partition == 0 && r.offset == 10)
                .count()
                >= 2
    })
    .await;
    run.stop().await;
    for p in 0..3 {
        let offsets: Vec<i64> = run
            .seen
            .iter()
            .filter(|r| r.partition == p && settled(r))
            .map(|r| r.offset)
            .collect();
        let mut sorted = offsets.clone();
        sorted.sort();
        assert_eq!(offsets, sorted, "partition {p} handled out of order");
    }
    assert_eq!(cluster.committed(), vec![Some(10), Some(10), Some(10)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_stream_resumes_at_the_committed_offset_without_skipping() {
    let cluster = Cluster::new(2);
    // Each message takes at least 10 ms, so the first run cannot reach the end of either
    // partition (200 × 10 ms) before it is stopped after 100 messages, however fast the machine.
    let messages: Vec<(i32, &str)> = (0..400).map(|i| (i % 2, "sleep:10")).collect();
    cluster.produce(&messages).await;
    let config = cluster.config(AckPolicy::Ack);

    let mut first = cluster.start(config.clone());
    first.until(WAIT, |seen| seen.len() >= 100).await;
    first.stop().await;
    let committed = cluster.committed();
    // Per partition: one past the last offset the first run handled (None: it handled none).
    let handled_first: BTreeMap<i32, Option<i64>> = (0..2)
        .map(|p| {
            (
                p,
                first
                    .seen
                    .iter()
                    .filter(|r| r.partition == p)
                    .map(|r| r.offset + 1)
                    .max(),
            )
        })
        .collect();
    // A graceful stop commits everything it handled.
    assert_eq!(committed, vec![handled_first[&0], handled_first[&1]]);
    assert!(
        handled_first.values().flatten().sum::<i64>() < 400,
        "stopped mid-stream"
    );

    let mut second = cluster.start(config);
    second
        .until(WAIT, |seen| {
            seen.iter()
                .map(|r| (r.partition, r.offset))
                .collect::<BTreeSet<_>>()
                .len() as i64
                == 400 - handled_first.values().flatten().sum::<i64>()
        })
        .await;
    second.stop().await;
    for p in 0..2 {
        let resumed_at = second
            .seen
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| r.offset)
            .min();
        assert_eq!(
            resumed_at,
            Some(committed[p as usize].unwrap_or(0)),
            "partition {p} resumes exactly at its commit"
        );
    }
    let all: BTreeSet<(i32, i64)> = first
        .seen
        .iter()
        .chain(second.seen.iter())
        .map(|r| (r.partition, r.offset))
        .collect();
    assert_eq!(all.len(), 400, "every message handled at least once");
    assert_eq!(
        first.seen.len() + second.seen.len(),
        400,
        "and none twice after a graceful stop"
    );
    assert_eq!(cluster.committed(), vec![Some(200), Some(200)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_first_commits_through_librdkafka_auto_commit() {
    let cluster = Cluster::new(1);
    cluster
        .produce(&[(0, "error"), (0, "trap"), (0, "ok")])
        .await;
    let mut run = cluster.start(cluster.config(AckPolicy::AckFirst));
    run.until(WAIT, |seen| seen.len() >= 3).await;
    run.settle(Duration::from_millis(300)).await;
    run.stop().await;
    assert_eq!(
        run.seen.len(),
        3,
        "at most once: failures are not redelivered"
    );
    assert!(run.seen.iter().all(|r| r.action == Action::Nothing));
    assert_eq!(cluster.committed(), vec![Some(3)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_group_ack_first_reads_every_partition_from_the_start() {
    let cluster = Cluster::new(2);
    cluster.produce(&[(0, "ok"), (1, "ok"), (1, "ok")]).await;
    let mut config = cluster.config(AckPolicy::AckFirst);
    config.group_id = None;
    let mut run = cluster.start(config);
    run.until(WAIT, |seen| seen.len() >= 3).await;
    run.stop().await;
    let got: BTreeSet<(i32, i64)> = run.seen.iter().map(|r| (r.partition, r.offset)).collect();
    assert_eq!(got, BTreeSet::from([(0, 0), (1, 0), (1, 1)]));
}
