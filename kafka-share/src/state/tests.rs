//! Unit tests of the share-session and acknowledgement state on responses built as a broker
//! sends them: each test plans requests, feeds the answers to `State` and checks what it
//! concluded, without a broker or a socket.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::share_fetch_response::{
    AcquiredRecords, PartitionData, ShareFetchResponse, ShareFetchableTopicResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use uuid::Uuid;

use crate::acks::{Ack, AckRequest};
use crate::error::Error;
use crate::metadata::{Metadata, TopicMeta};
use crate::state::State;
use crate::types::{AckKind, AcquiredRecord, RecordId, ShareConsumerConfig, Tp};
use crate::wire::{AckPartitionResult, AckResponse};

const TOPIC: Uuid = Uuid::from_u128(0x42);
const LEADER: i32 = 1;
const PEER: &str = "broker 1 (h1:9092)";
const INVALID_RECORD_STATE: i16 = 121;
const SHARE_SESSION_NOT_FOUND: i16 = 122;
const INVALID_SHARE_SESSION_EPOCH: i16 = 123;

/// Group "g", member "m", v2 APIs; topic "t" with partitions 0 and 1 led by broker 1.
fn state() -> State {
    let mut st = State::new(
        ShareConsumerConfig::new("h1:9092", "g", &["t"]),
        "m".into(),
        2,
        2,
    );
    st.meta = Metadata {
        brokers: [(1, "h1:9092".into()), (2, "h2:9092".into())].into(),
        topics: [(
            TOPIC,
            TopicMeta {
                name: "t".into(),
                leaders: [(0, LEADER), (1, LEADER)].into(),
            },
        )]
        .into(),
        ids: [("t".into(), TOPIC)].into(),
        stale: false,
    };
    st
}

fn tps(parts: &[i32]) -> BTreeSet<Tp> {
    parts.iter().map(|p| (TOPIC, *p)).collect()
}

fn id(partition: i32, offset: i64) -> RecordId {
    RecordId {
        topic: "t".into(),
        partition,
        offset,
    }
}

/// The session epoch of a request body: it follows the group id "g" and member id "m".
fn wire_epoch(body: &[u8]) -> i32 {
    assert_eq!(&body[..4], &[2, b'g', 2, b'm']);
    i32::from_be_bytes(body[4..8].try_into().unwrap())
}

/// One record batch holding `offsets` (transaction markers with `control`).
fn batch(offsets: RangeInclusive<i64>, control: bool) -> Bytes {
    let records: Vec<Record> = offsets
        .clone()
        .map(|offset| Record {
            transactional: control,
            control,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: if control { 7 } else { -1 },
            producer_epoch: if control { 0 } else { -1 },
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: (offset - offsets.start()) as i32,
            timestamp: 1_000 + offset,
            key: None,
            value: Some(Bytes::from(format!("v{offset}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let opts = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &opts).unwrap();
    buf.freeze()
}

fn acquired(partition: i32, offsets: RangeInclusive<i64>, delivery_count: i16) -> PartitionData {
    PartitionData::default()
        .with_partition_index(partition)
        .with_records(Some(batch(offsets.clone(), false)))
        .with_acquired_records(vec![AcquiredRecords::default()
            .with_first_offset(*offsets.start())
            .with_last_offset(*offsets.end())
            .with_delivery_count(delivery_count)])
}

fn response(parts: Vec<PartitionData>) -> ShareFetchResponse {
    ShareFetchResponse::default()
        .with_acquisition_lock_timeout_ms(30_000)
        .with_responses(vec![ShareFetchableTopicResponse::default()
            .with_topic_id(TOPIC)
            .with_partitions(parts)])
}

/// What one fetch sent and got: its wire epoch, the acknowledgements on it, the records.
struct Fetched {
    epoch: i32,
    acks: Vec<(i32, i64, Ack)>,
    records: Vec<AcquiredRecord>,
}

/// Plans a fetch of `parts` from the leader and hands it `resp` as the answer.
fn fetch(st: &mut State, parts: &[i32], resp: ShareFetchResponse) -> Fetched {
    let (plan, body) = st.plan_fetch(LEADER, tps(parts));
    let acks = plan
        .acks
        .iter()
        .flat_map(|(tp, a)| a.iter().map(|(o, p)| (tp.1, *o, p.ack)))
        .collect();
    Fetched {
        epoch: wire_epoch(&body),
        acks,
        records: st.handle_fetch(plan, PEER, resp),
    }
}

fn ack_ok(parts: &[i32], lock_timeout_ms: Option<i32>) -> AckResponse {
    AckResponse {
        lock_timeout_ms,
        partitions: parts
            .iter()
            .map(|p| AckPartitionResult {
                topic_id: TOPIC,
                partition: *p,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// The only ShareAcknowledge that flushing `st` plans.
fn one_ack_request(st: &mut State, close: bool) -> AckRequest {
    let mut reqs = st.ack_requests(close);
    assert_eq!(reqs.len(), 1);
    reqs.pop().unwrap()
}

fn is_not_held(r: crate::Result<()>) -> bool {
    matches!(r, Err(Error::Usage(m)) if m.contains("is not held by this consumer"))
}

#[test]
fn fetch_opens_the_session_and_holds_the_acquired_records() {
    let mut st = state();
    let (plan, body) = st.plan_fetch(LEADER, tps(&[0]));
    assert_eq!(wire_epoch(&body), 0);
    assert_eq!(plan.delta.added, vec![(TOPIC, 0)]);
    let sent_at = plan.sent_at;
    let records = st.handle_fetch(plan, PEER, response(vec![acquired(0, 10..=12, 2)]));

    let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![10, 11, 12]);
    assert_eq!(&*records[1].topic, "t");
    assert_eq!(records[1].delivery_count, 2);
    assert_eq!(records[1].value.as_deref(), Some(&b"v11"[..]));
    assert_eq!(records[1].lock_deadline, sent_at + Duration::from_secs(30));
    assert_eq!(st.lock_timeout, Some(Duration::from_secs(30)));
    assert_eq!(st.sessions.epoch(LEADER), 1);
    assert_eq!(
        st.held[&(TOPIC, 0)].keys().copied().collect::<Vec<_>>(),
        vec![10, 11, 12]
    );

    // The session is open: the next fetch moves the epoch on and adds nothing.
    let (plan, body) = st.plan_fetch(LEADER, tps(&[0]));
    assert_eq!(wire_epoch(&body), 1);
    assert!(plan.delta.added.is_empty() && plan.delta.forgotten.is_empty());
}

#[test]
fn acknowledging_a_record_not_held_is_refused() {
    let mut st = state();
    fetch(&mut st, &[0], response(vec![acquired(0, 10..=12, 1)]));

    assert!(is_not_held(st.acknowledge(&id(0, 13), AckKind::Accept)));
    assert!(is_not_held(st.acknowledge(&id(1, 10), AckKind::Accept)));
    let other_topic = RecordId {
        topic: "u".into(),
        ..id(0, 10)
    };
    assert!(is_not_held(st.acknowledge(&other_topic, AckKind::Accept)));

    st.acknowledge(&id(0, 10), AckKind::Accept).unwrap();
    let again = st.acknowledge(&id(0, 10), AckKind::Reject);
    assert!(is_not_held(again.clone()), "{again:?}");
    assert!(again
        .unwrap_err()
        .to_string()
        .starts_with("record t-0@10 is not held"));

    // A renewal keeps the hold: the record can be renewed again, then accepted.
    st.acknowledge(&id(0, 11), AckKind::Renew).unwrap();
    st.acknowledge(&id(0, 11), AckKind::Renew).unwrap();
    st.acknowledge(&id(0, 11), AckKind::Accept).unwrap();
}

#[test]
fn piggybacked_acks_and_their_errors_end_up_in_the_report() {
    let mut st = state();
    fetch(
        &mut st,
        &[0, 1],
        response(vec![acquired(0, 0..=2, 1), acquired(1, 5..=6, 1)]),
    );
    st.acknowledge(&id(0, 0), AckKind::Accept).unwrap();
    st.acknowledge(&id(0, 1), AckKind::Release).unwrap();
    st.acknowledge(&id(0, 2), AckKind::Reject).unwrap();
    st.acknowledge(&id(1, 5), AckKind::Accept).unwrap();
    st.acknowledge(&id(1, 6), AckKind::Accept).unwrap();

    // Partition 0 is not in the response: nothing to report means applied. Partition 1's
    // locks had run out.
    let lock_expired = PartitionData::default()
        .with_partition_index(1)
        .with_acknowledge_error_code(INVALID_RECORD_STATE)
        .with_acknowledge_error_message(Some(StrBytes::from_static_str("lock expired")));
    let f = fetch(&mut st, &[0, 1], response(vec![lock_expired]));
    assert_eq!(f.epoch, 1);
    let mut acks = f.acks;
    acks.sort_by_key(|a| (a.0, a.1));
    assert_eq!(
        acks,
        vec![
            (0, 0, Ack::User(AckKind::Accept)),
            (0, 1, Ack::User(AckKind::Release)),
            (0, 2, Ack::User(AckKind::Reject)),
            (1, 5, Ack::User(AckKind::Accept)),
            (1, 6, Ack::User(AckKind::Accept)),
        ]
    );
    assert!(st.pending.is_empty());
    assert_eq!(st.sessions.epoch(LEADER), 2);

    let report = st.take_report();
    assert_eq!(
        (report.accepted, report.released, report.rejected),
        (1, 1, 1)
    );
    let failed: Vec<(RecordId, AckKind, Option<i16>)> = report
        .failures
        .iter()
        .map(|f| (f.record.clone(), f.kind, f.error.code()))
        .collect();
    assert_eq!(
        failed,
        vec![
            (id(1, 5), AckKind::Accept, Some(INVALID_RECORD_STATE)),
            (id(1, 6), AckKind::Accept, Some(INVALID_RECORD_STATE)),
        ]
    );
    let text = report.failures[0].error.to_string();
    assert!(
        text.contains("INVALID_RECORD_STATE") && text.contains("partition t-1"),
        "{text}"
    );
    assert!(
        st.take_report().failures.is_empty(),
        "a report is handed out once"
    );
}

#[test]
fn share_session_errors_reset_the_session_and_void_its_records() {
    for code in [SHARE_SESSION_NOT_FOUND, INVALID_SHARE_SESSION_EPOCH] {
        let mut st = state();
        fetch(&mut st, &[0], response(vec![acquired(0, 0..=2, 1)]));
        st.acknowledge(&id(0, 0), AckKind::Accept).unwrap();
        let f = fetch(
            &mut st,
            &[0],
            ShareFetchResponse::default().with_error_code(code),
        );
        assert_eq!((f.epoch, f.acks.len()), (1, 1));
        assert!(f.records.is_empty());

        // The broker released the session's records: they are no longer ours to acknowledge.
        assert_eq!(st.sessions.epoch(LEADER), 0);
        assert!(st.held.is_empty());
        assert!(is_not_held(st.acknowledge(&id(0, 1), AckKind::Accept)));
        let report = st.take_report();
        assert_eq!(report.accepted, 0);
        assert_eq!(report.failures.len(), 1);
        assert_eq!(report.failures[0].record, id(0, 0));
        assert_eq!(report.failures[0].error.code(), Some(code));
        // Transient: handled by reopening, not returned by poll.
        assert!(st.deferred.is_none());

        let (plan, body) = st.plan_fetch(LEADER, tps(&[0]));
        assert_eq!(wire_epoch(&body), 0, "code {code}: a new session opens");
        assert_eq!(plan.delta.added, vec![(TOPIC, 0)]);
    }
}

#[test]
fn renewals_go_in_share_acknowledge_and_are_counted() {
    let mut st = state();
    fetch(&mut st, &[0], response(vec![acquired(0, 0..=1, 1)]));
    st.acknowledge(&id(0, 0), AckKind::Renew).unwrap();

    // A renewal cannot ride on a fetch, so it forces a flush first.
    assert!(st.must_flush(&[(LEADER, tps(&[0]))].into()));
    let req = one_ack_request(&mut st, false);
    let body = st.encode_ack(&req, false);
    assert_eq!(wire_epoch(&body), 1);
    assert_eq!(body[8], 1, "IsRenewAck");
    st.handle_ack_response(req, false, PEER, ack_ok(&[0], Some(45_000)));

    assert_eq!(st.report.renewed, 1);
    assert!(st.report.failures.is_empty());
    assert_eq!(st.sessions.epoch(LEADER), 2);
    assert_eq!(st.lock_timeout, Some(Duration::from_secs(45)));
    // Still held after the renewal.
    st.acknowledge(&id(0, 0), AckKind::Accept).unwrap();
}

#[test]
fn a_failed_renewal_is_reported_and_ends_the_hold() {
    let mut st = state();
    fetch(&mut st, &[0], response(vec![acquired(0, 0..=1, 1)]));
    st.acknowledge(&id(0, 0), AckKind::Renew).unwrap();
    let req = one_ack_request(&mut st, false);
    let mut resp = ack_ok(&[0], Some(30_000));
    resp.partitions[0].error_code = INVALID_RECORD_STATE;
    st.handle_ack_response(req, false, PEER, resp);

    let report = st.take_report();
    assert_eq!(report.renewed, 0);
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].record, id(0, 0));
    assert_eq!(report.failures[0].kind, AckKind::Renew);
    assert_eq!(report.failures[0].error.code(), Some(INVALID_RECORD_STATE));
    assert!(is_not_held(st.acknowledge(&id(0, 0), AckKind::Accept)));
    st.acknowledge(&id(0, 1), AckKind::Accept).unwrap();
}

#[test]
fn closing_sends_epoch_minus_one_and_ends_the_session() {
    let mut st = state();
    fetch(&mut st, &[0], response(vec![]));
    assert_eq!(st.sessions.epoch(LEADER), 1);
    // Nothing pending, but the open session still gets a closing request.
    assert!(st.ack_requests(false).is_empty());
    let req = one_ack_request(&mut st, true);
    assert!(req.acks.is_empty());
    assert_eq!(wire_epoch(&st.encode_ack(&req, true)), -1);
    st.handle_ack_response(req, true, PEER, AckResponse::default());
    assert_eq!(st.sessions.epoch(LEADER), 0);
    assert_eq!(st.sessions.open().count(), 0);
}

#[test]
fn an_unanswered_acknowledge_fails_its_acks_and_the_session() {
    let mut st = state();
    fetch(&mut st, &[0], response(vec![acquired(0, 0..=2, 1)]));
    st.acknowledge(&id(0, 0), AckKind::Accept).unwrap();
    let req = one_ack_request(&mut st, false);
    let lost = Error::Io {
        broker: PEER.into(),
        api: "ShareAcknowledge",
        kind: std::io::ErrorKind::ConnectionReset,
        message: "connection reset".into(),
    };
    st.ack_failed(&req, &lost);

    let report = st.take_report();
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].record, id(0, 0));
    assert!(matches!(report.failures[0].error, Error::Io { .. }));
    assert_eq!(st.sessions.epoch(LEADER), 0);
    assert!(is_not_held(st.acknowledge(&id(0, 1), AckKind::Accept)));

    // With no session, what is still pending cannot be sent and fails as SessionLost.
    let req = AckRequest {
        leader: 2,
        epoch: 0,
        acks: vec![(
            (TOPIC, 1),
            vec![(
                9,
                crate::acks::Pending {
                    ack: Ack::User(AckKind::Release),
                    leader: 2,
                },
            )],
        )],
    };
    st.ack_unsendable(&req);
    let report = st.take_report();
    assert_eq!(report.failures[0].record, id(1, 9));
    assert!(matches!(report.failures[0].error, Error::SessionLost(_)));
}

#[test]
fn acquired_offsets_without_records_are_acknowledged_internally() {
    let mut st = state();
    // 0..=1: transaction markers; 2..=3: records; 4..=5: their batch did not fit in the
    // response.
    let mut records = BytesMut::from(&batch(0..=1, true)[..]);
    records.extend_from_slice(&batch(2..=3, false));
    let part = PartitionData::default()
        .with_partition_index(0)
        .with_records(Some(records.freeze()))
        .with_acquired_records(vec![AcquiredRecords::default()
            .with_first_offset(0)
            .with_last_offset(5)
            .with_delivery_count(1)]);
    let f = fetch(&mut st, &[0], response(vec![part]));
    assert_eq!(
        f.records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![2, 3]
    );

    let f = fetch(&mut st, &[0], response(vec![]));
    let mut acks = f.acks;
    acks.sort_by_key(|a| a.1);
    assert_eq!(
        acks,
        vec![
            (0, 0, Ack::Gap),
            (0, 1, Ack::Gap),
            (0, 4, Ack::AutoRelease),
            (0, 5, Ack::AutoRelease),
        ]
    );
    // Internal acknowledgements are the consumer's business, not the application's.
    let report = st.take_report();
    assert_eq!((report.accepted, report.released), (0, 0));
    assert!(report.failures.is_empty());
}

#[test]
fn partition_errors_move_leaders_or_reach_the_caller() {
    let mut st = state();
    fetch(&mut st, &[0, 1], response(vec![acquired(0, 0..=0, 1)]));
    st.acknowledge(&id(0, 0), AckKind::Accept).unwrap();

    let not_leader = |partition, leader| {
        let mut p = PartitionData::default()
            .with_partition_index(partition)
            .with_error_code(6);
        p.current_leader.leader_id = leader;
        p
    };
    let f = fetch(
        &mut st,
        &[0, 1],
        response(vec![not_leader(0, 2), not_leader(1, 5)]),
    );
    assert_eq!(f.acks.len(), 1);
    // Partition 0 follows the leader the response names; broker 5 is unknown, so partition 1
    // waits for a metadata refresh.
    assert_eq!(st.meta.topics[&TOPIC].leaders[&0], 2);
    assert_eq!(st.meta.topics[&TOPIC].leaders[&1], LEADER);
    assert!(st.meta.stale);
    assert!(st.deferred.is_none());
    let desired = st.meta.by_leader(&[(TOPIC, vec![0, 1])].into());
    assert_eq!(desired[&2], tps(&[0]));
    assert_eq!(desired[&LEADER], tps(&[1]));

    // An error that needs the caller is kept for poll to return.
    let denied = PartitionData::default()
        .with_partition_index(1)
        .with_error_code(29);
    fetch(&mut st, &[1], response(vec![denied]));
    assert_eq!(st.deferred.as_ref().and_then(Error::code), Some(29));
}
