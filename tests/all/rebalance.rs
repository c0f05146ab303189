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

/// Two members, 4 partitions of 50 ms messages: the second member joins mid-stream, and once it
/// has partitions as many messages again arrive, so both have work after the rebalance however
/// long it took; `max_duplicates` where the broker accepts the commit made on revoke.
async fn second_member_joins(broker: BrokerKind, max_duplicates: Option<usize>) {
    const PER_PARTITION: i64 = 120;
    const TOTAL: usize = 4 * PER_PARTITION as usize;
    let cluster = Cluster::on(broker, 4).await;
    let messages: Vec<(i32, &str)> = (0..TOTAL / 2).map(|i| (i as i32 % 4, "sleep:50")).collect();
    cluster.produce(&messages).await;
    let config = cluster.config(AckPolicy::Ack);

    let mut first = cluster.start(config.clone());
    first
        .until(Duration::from_secs(120), |seen| seen.len() >= 20)
        .await;
    let mut second = cluster.start(config);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while second
        .handle
        .as_ref()
        .unwrap()
        .assigned_partitions()
        .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second member got no partitions"
        );
        first.settle(Duration::from_millis(50)).await;
    }
    cluster.produce(&messages).await;
    let all_handled = |a: &[ackbar::events::DeliveryEvent], b: &[ackbar::events::DeliveryEvent]| {
        a.iter()
            .chain(b)
            .map(|r| (r.partition, r.offset))
            .collect::<BTreeSet<_>>()
            .len()
            == TOTAL
    };
    // Both members make progress until every message was handled.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    while !all_handled(&first.seen, &second.seen) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all handled in time"
        );
        first.settle(Duration::from_millis(50)).await;
        second.settle(Duration::from_millis(50)).await;
    }
    let second_partitions: BTreeSet<i32> = second.seen.iter().map(|r| r.partition).collect();
    // Everything settled gets committed while both members run. (Stopping one rebalances the
    // other; on the embedded broker a commit made during that rebalance is refused.) Both must
    // also be idle: a late commit of the old owner can show 60 while the new owner still handles
    // the run after the offset it started from, and its own commits then move the offset back
    // until it catches up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let before = first.seen.len() + second.seen.len();
        first.settle(Duration::from_millis(100)).await;
        second.settle(Duration::from_millis(100)).await;
        let idle = first.seen.len() + second.seen.len() == before;
        if idle && cluster.committed() == vec![Some(PER_PARTITION); 4] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "committed {:?}",
            cluster.committed()
        );
    }
    first.stop().await;
    second.stop().await;

    assert!(
        !second_partitions.is_empty(),
        "the second member got partitions"
    );
    for p in 0..4 {
        let offsets = |seen: &[ackbar::events::DeliveryEvent]| -> BTreeSet<i64> {
            seen.iter()
                .filter(|r| r.partition == p)
                .map(|r| r.offset)
                .collect()
        };
        let (a, b) = (offsets(&first.seen), offsets(&second.seen));
        let all: BTreeSet<i64> = a.union(&b).copied().collect();
        assert_eq!(
            all,
            (0..PER_PARTITION).collect(),
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
    // How often one message is handled depends on how often its partition changed owner, which
    // the group decides: a member slowed down by a loaded machine can be rebalanced out and back
    // in, and each move re-reads from the last commit (at-least-once). Bounded per broker where
    // one move is certain (`max_duplicates`); everywhere, nothing is skipped and the run of
    // re-handled messages is contiguous (checked above).
    assert_eq!(cluster.committed(), vec![Some(PER_PARTITION); 4]);
}

/// The partitions each member owns.
fn owned(members: &[crate::support::Running]) -> Vec<BTreeSet<i32>> {
    members
        .iter()
        .map(|m| {
            m.handle
                .as_ref()
                .unwrap()
                .assigned_partitions()
                .iter()
                .map(|tp| tp.partition)
                .collect()
        })
        .collect()
}

crate::brokers::on_both_protocols! {
    three_members_split_partitions_and_one_leaving_loses_nothing_on_kafka => three_members;
}

/// Scale-out on Apache Kafka: three members split six partitions; one leaves mid-stream (a
/// graceful stop commits what it settled) and the other two take over its partitions.
async fn three_members(broker: BrokerKind) {
    const TOTAL: usize = 1200;
    let cluster = Cluster::on(broker, 6).await;
    let messages: Vec<(i32, &str)> = (0..TOTAL).map(|i| ((i % 6) as i32, "sleep:40")).collect();
    cluster.produce(&messages).await;
    let config = cluster.config(AckPolicy::Ack);
    let mut members = vec![
        cluster.start(config.clone()),
        cluster.start(config.clone()),
        cluster.start(config),
    ];
    // Wait until all three own partitions and are working.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        for m in members.iter_mut() {
            m.settle(Duration::from_millis(50)).await;
        }
        // Each member reads its assignment when its own rebalance callback ran, which may lag
        // behind the others'.
        let split = owned(&members).iter().map(BTreeSet::len).sum::<usize>() == 6;
        if split && members.iter().all(|m| !m.seen.is_empty()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every member got partitions: {:?}",
            owned(&members)
        );
    }
    let owned = owned(&members);
    assert_eq!(
        owned.iter().map(BTreeSet::len).sum::<usize>(),
        6,
        "partitions are split: {owned:?}"
    );
    assert!(owned.iter().all(|o| !o.is_empty()), "{owned:?}");

    let mut leaving = members.remove(0);
    leaving.stop().await;
    let handled = |ms: &[crate::support::Running], gone: &crate::support::Running| {
        ms.iter()
            .flat_map(|m| m.seen.iter())
            .chain(gone.seen.iter())
            .map(|r| (r.partition, r.offset))
            .collect::<BTreeSet<_>>()
            .len()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    while handled(&members, &leaving) < TOTAL {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {TOTAL} handled",
            handled(&members, &leaving)
        );
        for m in members.iter_mut() {
            m.settle(Duration::from_millis(50)).await;
        }
    }
    for m in members.iter_mut() {
        m.stop().await;
    }
    let deliveries = members
        .iter()
        .chain(std::iter::once(&leaving))
        .map(|m| m.seen.len())
        .sum::<usize>();
    // The leaver drained and committed on its way out: nothing it settled is handled again.
    assert_eq!(deliveries, TOTAL, "{} duplicates", deliveries - TOTAL);
    assert_eq!(cluster.committed(), vec![Some(200); 6]);
}

crate::brokers::on_both_protocols! {
    a_restarted_static_member_gets_its_partitions_back_without_moving_the_others => static_restart;
}

/// Static membership (KIP-345): member B restarts; with a `group_instance_id` it gets its
/// partitions back and member A sees no revocation and no new partition. The control: without
/// one, B's partitions go to A while B is away and come back through a revocation in A, so the
/// check can fail.
async fn static_restart(broker: BrokerKind) {
    let cluster = Cluster::on(broker, 4).await;
    let mut config = cluster.config(AckPolicy::Ack);
    if broker == BrokerKind::Kafka {
        // Far longer than a restart takes, however loaded the machine (the consumer
        // protocol's session is the broker's).
        config
            .kafka
            .insert("session.timeout.ms".into(), "45000".into());
    }
    let (mut a, mut b) = (config.clone(), config);
    a.group_instance_id = Some(format!("a-{}", cluster.group));
    b.group_instance_id = Some(format!("b-{}", cluster.group));
    let moved = restart_second(&cluster, a, b, Restart::Static).await;
    assert_eq!(
        moved,
        (0, 0),
        "A saw (revoked, assigned) partitions beyond its first"
    );

    let cluster = Cluster::on(broker, 4).await;
    let config = cluster.config(AckPolicy::Ack);
    let (revoked, assigned) =
        restart_second(&cluster, config.clone(), config, Restart::Dynamic).await;
    assert!(
        assigned >= 2,
        "a dynamic restart: A saw {revoked} revoked, {assigned} assigned"
    );
    // Which protocol ran shows here: the consumer protocol revokes only the two partitions B
    // takes back; the classic one revokes all of A's, twice.
    match broker {
        BrokerKind::KafkaConsumerProtocol => assert_eq!(revoked, 2, "incremental"),
        _ => assert!(revoked >= 4, "eager: A saw {revoked} revoked"),
    }
}

#[derive(PartialEq)]
enum Restart {
    /// B comes back at once and must get its own partitions back.
    Static,
    /// B comes back once A owns every partition, and gets some.
    Dynamic,
}

/// Starts A, then B; once they split the partitions, restarts B as `restart` says and waits
/// until the two split them again. Returns what A saw meanwhile: partitions revoked, and
/// assigned beyond its first assignment.
async fn restart_second(
    cluster: &Cluster,
    a: ackbar::config::PipelineConfig,
    b: ackbar::config::PipelineConfig,
    restart: Restart,
) -> (u64, u64) {
    let first = cluster.start(a);
    let mut second = cluster.start(b.clone());
    let assigned =
        |run: &crate::support::Running| run.handle.as_ref().unwrap().assigned_partitions();
    let split = |x: &crate::support::Running, y: &crate::support::Running| {
        let (x, y) = (assigned(x), assigned(y));
        (!x.is_empty() && !y.is_empty() && x.len() + y.len() == 4).then_some(y)
    };
    let until = |what: &'static str| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        move || assert!(tokio::time::Instant::now() < deadline, "{what}")
    };
    let in_time = until("no split");
    let before = loop {
        if let Some(b_owns) = split(&first, &second) {
            break b_owns;
        }
        in_time();
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let at_split = first.handle.as_ref().unwrap().stats();
    let kept = assigned(&first);
    second.stop().await;
    if restart == Restart::Static {
        // Longer than a few heartbeats (500 ms), well inside the session: B's partitions wait
        // for it instead of moving to A.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            assigned(&first),
            kept,
            "B's partitions moved while it was away"
        );
    }
    let in_time = until("A did not take over");
    while restart == Restart::Dynamic && assigned(&first).len() < 4 {
        in_time();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = cluster.start(b);
    let in_time = until("B did not get partitions back");
    loop {
        match split(&first, &second) {
            Some(after) if restart == Restart::Dynamic || after == before => break,
            _ => {}
        }
        in_time();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let now = first.handle.as_ref().unwrap().stats();
    (
        now.partitions_revoked - at_split.partitions_revoked,
        now.partitions_assigned - at_split.partitions_assigned,
    )
}
