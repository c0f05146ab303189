//! The share-group client (`kafka-share`, KIP-932) against Apache Kafka 4.4.

use crate::brokers::{external, BrokerKind};
use ackbar::kafka::Record;
use kafka_share::{AckKind, AcquiredRecord, Admin, ShareConsumer, ShareConsumerConfig};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const INVALID_RECORD_STATE: i16 = 121;

#[tokio::test]
async fn freshly_formatted_cluster_has_share_groups() {
    let admin = Admin::connect(&broker()).await.unwrap();
    let level = admin.finalized_feature("share.version");
    assert!(
        level.unwrap_or(0) >= 1,
        "share.version finalized level: {level:?}"
    );
}

/// One member accepts everything; nothing is delivered again, to it or to a new member, and
/// the group's persisted start offset moved past every record.
#[tokio::test]
async fn accepted_records_are_not_delivered_again() {
    let (topic, group) = (unique("accept"), unique("g-accept"));
    let mut admin = setup(&topic, 1, &group, &[]).await;
    produce(&topic, (0..20).map(|i| format!("v{i}"))).await;

    let mut c1 = consumer(&group, &topic).await;
    let got = poll_until(&mut c1, 20).await;
    assert_eq!(offsets(&got), (0..20).collect::<Vec<_>>());
    for r in &got {
        assert_eq!(r.delivery_count, 1, "{r:?}");
        assert_eq!(
            r.value.as_deref(),
            Some(format!("v{}", r.offset).as_bytes())
        );
        assert_eq!(&*r.topic, topic);
        c1.acknowledge(&r.id(), AckKind::Accept).unwrap();
    }
    let report = c1.flush_acks().await.unwrap();
    assert_eq!(report.accepted, 20, "{report:?}");
    assert!(report.failures.is_empty(), "{report:?}");
    // An accepted record is no longer held.
    assert!(c1.acknowledge(&got[0].id(), AckKind::Accept).is_err());

    assert!(poll_rounds(&mut c1, 3).await.is_empty());
    let mut c2 = consumer(&group, &topic).await;
    assert!(c2.wait_for_assignment(PATIENCE).await.unwrap());
    assert!(poll_rounds(&mut c2, 3).await.is_empty());
    c2.close().await.unwrap();
    let report = c1.close().await.unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    confirm_all_done(&mut admin, &group, &topic, 20).await;
}

/// RELEASE hands the record out again with delivery count 2; REJECT never.
#[tokio::test]
async fn release_redelivers_and_reject_discards() {
    let (topic, group) = (unique("release"), unique("g-release"));
    let mut admin = setup(&topic, 1, &group, &[]).await;
    produce(&topic, ["a".to_owned(), "b".to_owned()]).await;

    let mut c = consumer(&group, &topic).await;
    let got = poll_until(&mut c, 2).await;
    assert_eq!(offsets(&got), vec![0, 1]);
    assert!(got.iter().all(|r| r.delivery_count == 1));
    let (a, b) = if got[0].offset == 0 {
        (&got[0], &got[1])
    } else {
        (&got[1], &got[0])
    };
    c.acknowledge(&a.id(), AckKind::Release).unwrap();
    c.acknowledge(&b.id(), AckKind::Reject).unwrap();
    let report = c.flush_acks().await.unwrap();
    assert_eq!((report.released, report.rejected), (1, 1), "{report:?}");
    assert!(report.failures.is_empty(), "{report:?}");

    let again = poll_until(&mut c, 1).await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].offset, 0);
    assert_eq!(again[0].delivery_count, 2);
    assert_eq!(again[0].value.as_deref(), Some(&b"a"[..]));
    c.acknowledge(&again[0].id(), AckKind::Accept).unwrap();
    // The rejected record never comes back.
    assert!(poll_rounds(&mut c, 4).await.is_empty());
    let report = c.flush_acks().await.unwrap();
    assert_eq!(report.accepted, 1, "{report:?}");
    assert!(report.failures.is_empty(), "{report:?}");
    c.close().await.unwrap();
    confirm_all_done(&mut admin, &group, &topic, 2).await;
}

/// A record released over and over is archived once it reaches the group's delivery count
/// limit (share.delivery.count.limit=3 for this group).
#[tokio::test]
async fn delivery_count_limit_archives_a_record() {
    let (topic, group) = (unique("limit"), unique("g-limit"));
    let mut admin = setup(&topic, 1, &group, &[("share.delivery.count.limit", "3")]).await;
    produce(&topic, ["poison".to_owned()]).await;

    let mut c = consumer(&group, &topic).await;
    let mut counts = Vec::new();
    for _ in 0..3 {
        let got = poll_until(&mut c, 1).await;
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].offset, 0);
        counts.push(got[0].delivery_count);
        c.acknowledge(&got[0].id(), AckKind::Release).unwrap();
        let report = c.flush_acks().await.unwrap();
        assert_eq!(report.released, 1, "{report:?}");
        assert!(report.failures.is_empty(), "{report:?}");
    }
    assert_eq!(counts, vec![1, 2, 3]);
    assert!(poll_rounds(&mut c, 4).await.is_empty());
    c.close().await.unwrap();
    // Archived counts as done.
    confirm_all_done(&mut admin, &group, &topic, 1).await;
}

/// A consumer taking a few records per fetch from one large batch gets each record once, with
/// its own value, though every fetch returns the whole batch (decoded once, then reused).
#[tokio::test]
async fn a_large_batch_is_handed_out_a_few_records_at_a_time() {
    let (topic, group) = (unique("batch"), unique("g-batch"));
    let mut admin = setup(&topic, 1, &group, &[]).await;
    // One produce call: the records travel, and are stored, in one batch.
    produce(&topic, (0..100).map(|i| format!("v{i}"))).await;
    let mut cfg = config(&group, &topic);
    cfg.max_records = 7;
    let mut c = ShareConsumer::connect(cfg).await.unwrap();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while got.len() < 100 && tokio::time::Instant::now() < deadline {
        let records = c.poll().await.unwrap();
        assert!(records.len() <= 7, "{} records in one fetch", records.len());
        for r in &records {
            assert_eq!(
                r.value.as_deref(),
                Some(format!("v{}", r.offset).as_bytes())
            );
            c.acknowledge(&r.id(), AckKind::Accept).unwrap();
        }
        got.extend(records);
    }
    assert_eq!(offsets(&got), (0..100).collect::<Vec<_>>());
    let report = c.close().await.unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    confirm_all_done(&mut admin, &group, &topic, 100).await;
}

/// Batches compressed with each codec a producer may use arrive decoded, and a record's
/// headers arrive in the order written, repeated keys included.
#[tokio::test]
async fn compressed_batches_and_repeated_headers_arrive_whole() {
    let (topic, group) = (unique("codecs"), unique("g-codecs"));
    let mut admin = setup(&topic, 1, &group, &[]).await;
    let codecs = ["gzip", "snappy", "lz4", "zstd"];
    for codec in codecs {
        let records: Vec<Record> = (0..10)
            .map(|i| Record {
                partition: Some(0),
                payload: format!("{codec}-{i}").into_bytes(),
                headers: vec![
                    ("h".into(), b"1".to_vec()),
                    ("h".into(), b"2".to_vec()),
                    ("codec".into(), codec.as_bytes().to_vec()),
                ],
                ..Record::default()
            })
            .collect();
        produce_compressed(&topic, codec, &records).await;
    }
    let mut c = consumer(&group, &topic).await;
    let got = poll_until(&mut c, 40).await;
    assert_eq!(offsets(&got), (0..40).collect::<Vec<_>>());
    for r in &got {
        let codec = codecs[r.offset as usize / 10];
        let value = format!("{codec}-{}", r.offset % 10);
        assert_eq!(r.value.as_deref(), Some(value.as_bytes()), "{r:?}");
        let headers: Vec<(&str, Option<&[u8]>)> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        assert_eq!(
            headers,
            vec![
                ("h", Some(&b"1"[..])),
                ("h", Some(&b"2"[..])),
                ("codec", Some(codec.as_bytes()))
            ]
        );
        c.acknowledge(&r.id(), AckKind::Accept).unwrap();
    }
    let report = c.close().await.unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    confirm_all_done(&mut admin, &group, &topic, 40).await;
}

/// Two members of one group read the same single partition; every record goes to exactly one.
#[tokio::test]
async fn two_members_share_one_partition() {
    let (topic, group) = (unique("two"), unique("g-two"));
    let mut admin = setup(&topic, 1, &group, &[]).await;
    let mut cfg = config(&group, &topic);
    cfg.max_records = 5;
    let mut c1 = kafka_share::ShareConsumer::connect(cfg.clone())
        .await
        .unwrap();
    let mut c2 = kafka_share::ShareConsumer::connect(cfg).await.unwrap();
    assert!(c1.wait_for_assignment(PATIENCE).await.unwrap());
    assert!(c2.wait_for_assignment(PATIENCE).await.unwrap());
    assert_eq!(c1.assignment(), vec![(topic.as_str().into(), 0)]);
    assert_eq!(c2.assignment(), vec![(topic.as_str().into(), 0)]);
    for batch in 0..20 {
        produce(&topic, (0..5).map(|i| format!("v{}", batch * 5 + i))).await;
    }

    let (mut got1, mut got2) = (Vec::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while got1.len() + got2.len() < 100 && tokio::time::Instant::now() < deadline {
        for (c, got) in [(&mut c1, &mut got1), (&mut c2, &mut got2)] {
            let recs = c.poll().await.unwrap();
            for r in &recs {
                c.acknowledge(&r.id(), AckKind::Accept).unwrap();
            }
            got.extend(recs);
        }
    }
    let r1 = c1.flush_acks().await.unwrap();
    let r2 = c2.flush_acks().await.unwrap();
    assert!(
        r1.failures.is_empty() && r2.failures.is_empty(),
        "{r1:?} {r2:?}"
    );
    // Most of these rode on fetches: their outcomes are reported too.
    assert_eq!(r1.accepted + r2.accepted, 100, "{r1:?} {r2:?}");
    assert!(!got1.is_empty(), "member 1 got nothing");
    assert!(!got2.is_empty(), "member 2 got nothing");
    let all: Vec<i64> = offsets(&[got1.clone(), got2.clone()].concat());
    assert_eq!(
        all,
        (0..100).collect::<Vec<_>>(),
        "each record exactly once"
    );
    assert!(got1.iter().chain(&got2).all(|r| r.delivery_count == 1));
    c1.close().await.unwrap();
    c2.close().await.unwrap();
    confirm_all_done(&mut admin, &group, &topic, 100).await;
}

/// A member that dies holding records (dropped without close or acks) loses them to another
/// member, which sees delivery count 2; nothing is lost.
#[tokio::test]
async fn records_of_a_crashed_member_are_redelivered() {
    let (topic, group) = (unique("crash"), unique("g-crash"));
    // Long enough that the new holder acknowledges inside its own lock on a loaded machine.
    let mut admin = setup(
        &topic,
        1,
        &group,
        &[("share.record.lock.duration.ms", "5000")],
    )
    .await;
    produce(&topic, (0..10).map(|i| format!("v{i}"))).await;

    let mut c1 = consumer(&group, &topic).await;
    let held = poll_until(&mut c1, 10).await;
    assert_eq!(offsets(&held), (0..10).collect::<Vec<_>>());
    drop(c1);

    let mut c2 = consumer(&group, &topic).await;
    let got = poll_until(&mut c2, 10).await;
    assert_eq!(offsets(&got), (0..10).collect::<Vec<_>>());
    for r in &got {
        assert_eq!(r.delivery_count, 2, "{r:?}");
        c2.acknowledge(&r.id(), AckKind::Accept).unwrap();
    }
    let report = c2.flush_acks().await.unwrap();
    assert_eq!(report.accepted, 10, "{report:?}");
    c2.close().await.unwrap();
    confirm_all_done(&mut admin, &group, &topic, 10).await;
}

/// A live member that sits on records past the acquisition lock (5 s for this group) loses
/// them to another member; its late Accept, while the other member holds them, comes back as
/// INVALID_RECORD_STATE and does not disturb the new holder.
#[tokio::test]
async fn expired_lock_moves_records_and_late_ack_fails() {
    let (topic, group) = (unique("stall"), unique("g-stall"));
    // The late Accept must reach the broker while the new holder's lock runs.
    let mut admin = setup(
        &topic,
        1,
        &group,
        &[("share.record.lock.duration.ms", "5000")],
    )
    .await;
    produce(&topic, (0..5).map(|i| format!("v{i}"))).await;

    let mut slow = consumer(&group, &topic).await;
    let held = poll_until(&mut slow, 5).await;
    assert_eq!(offsets(&held), (0..5).collect::<Vec<_>>());
    assert_eq!(
        slow.acquisition_lock_timeout(),
        Some(std::time::Duration::from_millis(5000))
    );

    let mut other = consumer(&group, &topic).await;
    let got = poll_until(&mut other, 5).await;
    assert_eq!(offsets(&got), (0..5).collect::<Vec<_>>());
    assert!(got.iter().all(|r| r.delivery_count == 2), "{got:?}");

    for r in &held {
        slow.acknowledge(&r.id(), AckKind::Accept).unwrap();
    }
    let report = slow.flush_acks().await.unwrap();
    assert_eq!(report.accepted, 0, "{report:?}");
    let failed: BTreeSet<i64> = report.failures.iter().map(|f| f.record.offset).collect();
    assert_eq!(failed, (0..5).collect());
    for f in &report.failures {
        assert_eq!(f.error.code(), Some(INVALID_RECORD_STATE), "{}", f.error);
        assert_eq!(f.kind, AckKind::Accept);
    }

    for r in &got {
        other.acknowledge(&r.id(), AckKind::Accept).unwrap();
    }
    let report = other.flush_acks().await.unwrap();
    assert_eq!(report.accepted, 5, "{report:?}");
    assert!(report.failures.is_empty(), "{report:?}");
    other.close().await.unwrap();
    slow.close().await.unwrap();
    confirm_all_done(&mut admin, &group, &topic, 5).await;
}

/// RENEW (KIP-1222) keeps records locked well past the lock duration (5 s for this group)
/// while another member keeps polling; the final Accept then succeeds.
#[tokio::test]
async fn renew_keeps_records_past_the_lock_duration() {
    let (topic, group) = (unique("renew"), unique("g-renew"));
    let mut admin = setup(
        &topic,
        1,
        &group,
        &[("share.record.lock.duration.ms", "5000")],
    )
    .await;
    produce(&topic, (0..3).map(|i| format!("v{i}"))).await;

    // Both members join first, so the holder renews right after it acquires.
    let mut holder = consumer(&group, &topic).await;
    assert!(
        holder.supports_renew(),
        "Kafka 4.4 offers ShareAcknowledge v2"
    );
    let mut other = consumer(&group, &topic).await;
    assert!(holder.wait_for_assignment(PATIENCE).await.unwrap());
    assert!(other.wait_for_assignment(PATIENCE).await.unwrap());
    let held = poll_until(&mut holder, 3).await;
    assert_eq!(offsets(&held), vec![0, 1, 2]);
    let started = std::time::Instant::now();
    let lock = std::time::Duration::from_millis(5000);
    // Keep going until twice the lock duration has passed, renewing before every poll of the
    // other member.
    while started.elapsed() < 2 * lock {
        for r in &held {
            holder.acknowledge(&r.id(), AckKind::Renew).unwrap();
        }
        let report = holder.flush_acks().await.unwrap();
        assert_eq!(report.renewed, 3, "{report:?}");
        assert!(report.failures.is_empty(), "{report:?}");
        let stolen = poll_rounds(&mut other, 1).await;
        assert!(
            stolen.is_empty(),
            "renewed records were handed out: {stolen:?}"
        );
    }
    for r in &held {
        holder.acknowledge(&r.id(), AckKind::Accept).unwrap();
    }
    let report = holder.flush_acks().await.unwrap();
    assert_eq!(report.accepted, 3, "{report:?}");
    assert!(report.failures.is_empty(), "{report:?}");
    assert!(poll_rounds(&mut other, 2).await.is_empty());
    other.close().await.unwrap();
    holder.close().await.unwrap();
    confirm_all_done(&mut admin, &group, &topic, 3).await;
}

pub(crate) fn broker() -> String {
    external(BrokerKind::Kafka).bootstrap.clone()
}

fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates `topic`, and sets `group`'s configs: reading from the earliest offset (share groups
/// start at the latest by default), and `extra`.
async fn setup(topic: &str, partitions: i32, group: &str, extra: &[(&str, &str)]) -> Admin {
    ackbar_tests::kafka::create_topic(&broker(), topic, partitions)
        .await
        .expect("create topic");
    configure_group(group, extra).await
}

/// Sets `group`'s configs: reading from the earliest offset, and `extra`.
pub(crate) async fn configure_group(group: &str, extra: &[(&str, &str)]) -> Admin {
    let mut admin = Admin::connect(&broker()).await.expect("admin connect");
    let mut configs = vec![("share.auto.offset.reset", "earliest")];
    configs.extend_from_slice(extra);
    admin
        .set_group_config(group, &configs)
        .await
        .expect("set group config");
    admin
}

/// Writes `values` to partition 0 of `topic`, in order.
pub(crate) async fn produce(topic: &str, values: impl IntoIterator<Item = String>) {
    let records: Vec<Record> = values
        .into_iter()
        .map(|v| Record {
            partition: Some(0),
            payload: v.into_bytes(),
            ..Record::default()
        })
        .collect();
    ackbar::kafka::produce(&broker(), topic, &records)
        .await
        .expect("produce");
}

/// Writes `records` to `topic`, in order, with a producer that compresses its batches with
/// `codec` (`gzip`, `snappy`, `lz4` or `zstd`).
pub(crate) async fn produce_compressed(topic: &str, codec: &str, records: &[Record]) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("compression.type", codec)
        .set("linger.ms", "20")
        .create()
        .expect("a compressing producer");
    let sends: Vec<_> = records
        .iter()
        .map(|r| {
            let headers = r
                .headers
                .iter()
                .fold(OwnedHeaders::new(), |h, (key, value)| {
                    h.insert(Header {
                        key,
                        value: Some(value),
                    })
                });
            let mut record = FutureRecord::<[u8], _>::to(topic)
                .payload(&r.payload)
                .headers(headers);
            if let Some(p) = r.partition {
                record = record.partition(p);
            }
            producer.send(record, Duration::from_secs(10))
        })
        .collect();
    for sent in sends {
        sent.await.expect("produced");
    }
}

fn config(group: &str, topic: &str) -> ShareConsumerConfig {
    let mut c = ShareConsumerConfig::new(broker(), group, &[topic]);
    c.client_id = "kafka-share-test".into();
    c.max_wait = Duration::from_millis(500);
    c
}

pub(crate) async fn consumer(group: &str, topic: &str) -> ShareConsumer {
    ShareConsumer::connect(config(group, topic))
        .await
        .expect("connect share consumer")
}

/// Liveness bound for waiting loops; no test asserts on how long anything takes.
pub(crate) const PATIENCE: Duration = Duration::from_secs(90);

/// Polls until at least `n` records arrived (or PATIENCE ran out) and returns them.
pub(crate) async fn poll_until(c: &mut ShareConsumer, n: usize) -> Vec<AcquiredRecord> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut got = Vec::new();
    while got.len() < n && tokio::time::Instant::now() < deadline {
        got.extend(c.poll().await.expect("poll"));
    }
    got
}

/// Polls `rounds` times and returns everything delivered.
pub(crate) async fn poll_rounds(c: &mut ShareConsumer, rounds: usize) -> Vec<AcquiredRecord> {
    let mut got = Vec::new();
    for _ in 0..rounds {
        got.extend(c.poll().await.expect("poll"));
    }
    got
}

/// Waits until the group's persisted start offset for partition 0 reaches `want`; returns
/// the last value seen.
pub(crate) async fn wait_start_offset(
    admin: &mut Admin,
    group: &str,
    topic: &str,
    want: i64,
) -> i64 {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut last = i64::MIN;
    while tokio::time::Instant::now() < deadline {
        let offsets = admin
            .share_group_start_offsets(group, topic)
            .await
            .expect("describe share group offsets");
        last = offsets
            .iter()
            .find(|(p, _)| *p == 0)
            .map_or(i64::MIN, |(_, o)| *o);
        if last == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    last
}

pub(crate) fn offsets(records: &[AcquiredRecord]) -> Vec<i64> {
    let mut o: Vec<i64> = records.iter().map(|r| r.offset).collect();
    o.sort_unstable();
    o
}

/// Confirms on the broker that every offset below `n` is done (acknowledged or archived):
/// a fresh member gets only a new sentinel record at offset `n`, and once it accepts that,
/// the group's persisted start offset reaches `n`. (Kafka persists the start offset it had
/// before applying an acknowledgement, so the persisted value trails by one write: the
/// sentinel's acknowledgement is that write.)
pub(crate) async fn confirm_all_done(admin: &mut Admin, group: &str, topic: &str, n: i64) {
    let left = still_available(group, topic, n).await;
    assert!(left.is_empty(), "only the sentinel is left: {left:?}");
    assert_eq!(wait_start_offset(admin, group, topic, n).await, n);
}

/// The records below offset `n` the broker still hands out, as (offset, delivery count): a
/// sentinel is written at offset `n` and a fresh member polls until it has it, then accepts
/// everything it got.
pub(crate) async fn still_available(group: &str, topic: &str, n: i64) -> Vec<(i64, u16)> {
    produce(topic, ["sentinel".to_owned()]).await;
    let mut c = consumer(group, topic).await;
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !got.iter().any(|r: &AcquiredRecord| r.offset == n) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no sentinel: {got:?}"
        );
        got.extend(c.poll().await.expect("poll"));
    }
    got.extend(poll_rounds(&mut c, 1).await);
    let sentinels = got.iter().filter(|r| r.offset == n).count();
    assert_eq!(sentinels, 1, "{got:?}");
    for r in &got {
        c.acknowledge(&r.id(), AckKind::Accept).unwrap();
    }
    let report = c.flush_acks().await.unwrap();
    assert_eq!(report.accepted, got.len() as u64, "{report:?}");
    assert!(poll_rounds(&mut c, 2).await.is_empty());
    c.close().await.unwrap();
    let mut left: Vec<(i64, u16)> = got
        .iter()
        .filter(|r| r.offset < n)
        .map(|r| (r.offset, r.delivery_count))
        .collect();
    left.sort_unstable();
    left
}
