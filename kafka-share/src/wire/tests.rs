//! The hand-written codecs against kafka-protocol's encoding, and record-batch splitting.

use super::*;
use kafka_protocol::messages::share_acknowledge_request as sa;
use kafka_protocol::messages::share_fetch_request as sf;
use kafka_protocol::messages::{ShareAcknowledgeRequest, ShareFetchRequest};
use kafka_protocol::protocol::{Encodable, StrBytes};

fn sample_acks() -> TopicAcks {
    let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
    vec![(
        id,
        vec![
            PartitionAcks {
                partition: 0,
                batches: ack_batches([(5, 1), (6, 1), (7, 2), (10, 3)]),
            },
            PartitionAcks {
                partition: 3,
                batches: vec![],
            },
        ],
    )]
}

#[test]
fn batches_merge_consecutive_offsets() {
    let b = ack_batches([(5, 1), (6, 1), (7, 2), (10, 3), (11, 3)]);
    assert_eq!(
        b,
        vec![
            AckBatch {
                first: 5,
                last: 7,
                types: vec![1, 1, 2]
            },
            AckBatch {
                first: 10,
                last: 11,
                types: vec![3]
            },
        ]
    );
}

#[test]
fn share_fetch_v1_matches_kafka_protocol() {
    let topics = sample_acks();
    let forgotten = vec![(Uuid::from_u128(9), vec![1, 2])];
    let params = FetchParams {
        group_id: "g",
        member_id: "m-1",
        session_epoch: 7,
        max_wait_ms: 500,
        min_bytes: 1,
        max_bytes: 1 << 20,
        max_records: 50,
        batch_size: 50,
        acquire_mode: 1,
    };
    let ours = encode_share_fetch(1, &params, &topics, &forgotten);

    let req = ShareFetchRequest::default()
        .with_group_id(Some(StrBytes::from("g").into()))
        .with_member_id(Some(StrBytes::from("m-1")))
        .with_share_session_epoch(7)
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_max_records(50)
        .with_batch_size(50)
        .with_topics(
            topics
                .iter()
                .map(|(id, parts)| {
                    sf::FetchTopic::default()
                        .with_topic_id(*id)
                        .with_partitions(
                            parts
                                .iter()
                                .map(|p| {
                                    sf::FetchPartition::default()
                                        .with_partition_index(p.partition)
                                        .with_acknowledgement_batches(
                                            p.batches
                                                .iter()
                                                .map(|b| {
                                                    sf::AcknowledgementBatch::default()
                                                        .with_first_offset(b.first)
                                                        .with_last_offset(b.last)
                                                        .with_acknowledge_types(b.types.clone())
                                                })
                                                .collect(),
                                        )
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
        .with_forgotten_topics_data(vec![sf::ForgottenTopic::default()
            .with_topic_id(Uuid::from_u128(9))
            .with_partitions(vec![1, 2])]);
    let mut theirs = BytesMut::new();
    req.encode(&mut theirs, 1).unwrap();
    assert_eq!(ours, theirs);

    // v2 inserts ShareAcquireMode and IsRenewAck after BatchSize and nothing else.
    let v2 = encode_share_fetch(2, &params, &topics, &forgotten);
    let prefix = 2 + 4 + 4 * 6; // group, member, then six int32s
    assert_eq!(v2.len(), ours.len() + 2);
    assert_eq!(&v2[..prefix], &ours[..prefix]);
    assert_eq!(&v2[prefix..prefix + 2], &[1, 0]);
    assert_eq!(&v2[prefix + 2..], &ours[prefix..]);
}

#[test]
fn share_ack_v1_matches_kafka_protocol() {
    let topics = sample_acks();
    let ours = encode_share_ack(1, "g", "m-1", 3, false, &topics);
    let req = ShareAcknowledgeRequest::default()
        .with_group_id(Some(StrBytes::from("g").into()))
        .with_member_id(Some(StrBytes::from("m-1")))
        .with_share_session_epoch(3)
        .with_topics(
            topics
                .iter()
                .map(|(id, parts)| {
                    sa::AcknowledgeTopic::default()
                        .with_topic_id(*id)
                        .with_partitions(
                            parts
                                .iter()
                                .map(|p| {
                                    sa::AcknowledgePartition::default()
                                        .with_partition_index(p.partition)
                                        .with_acknowledgement_batches(
                                            p.batches
                                                .iter()
                                                .map(|b| {
                                                    sa::AcknowledgementBatch::default()
                                                        .with_first_offset(b.first)
                                                        .with_last_offset(b.last)
                                                        .with_acknowledge_types(b.types.clone())
                                                })
                                                .collect(),
                                        )
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let mut theirs = BytesMut::new();
    req.encode(&mut theirs, 1).unwrap();
    assert_eq!(ours, theirs);

    let v2 = encode_share_ack(2, "g", "m-1", 3, true, &topics);
    let prefix = 2 + 4 + 4;
    assert_eq!(&v2[..prefix], &ours[..prefix]);
    assert_eq!(v2[prefix], 1);
    assert_eq!(&v2[prefix + 1..], &ours[prefix..]);
}

#[test]
fn decodes_share_ack_response_v2() {
    let id = Uuid::from_u128(42);
    let mut b = BytesMut::new();
    b.put_i32(0); // throttle
    b.put_i16(0); // error
    b.put_u8(0); // null message
    b.put_i32(15000); // lock timeout (v2)
    b.put_u8(2); // one topic
    b.put_slice(id.as_bytes());
    b.put_u8(2); // one partition
    b.put_i32(4);
    b.put_i16(121);
    b.put_u8(4);
    b.put_slice(b"bad");
    b.put_i32(1); // leader id
    b.put_i32(0); // leader epoch
    b.put_u8(0); // leader tags
    b.put_u8(1); // partition tags: one tagged field of 2 bytes
    b.put_u8(9);
    b.put_u8(2);
    b.put_u16(0xffff);
    b.put_u8(0); // topic tags
    b.put_u8(2); // one endpoint
    b.put_i32(1);
    b.put_u8(10);
    b.put_slice(b"127.0.0.1");
    b.put_i32(9092);
    b.put_u8(0); // null rack
    b.put_u8(0);
    b.put_u8(0); // top-level tags
    let r = decode_share_ack_response(b.freeze(), 2).unwrap();
    assert_eq!(r.lock_timeout_ms, Some(15000));
    assert_eq!(r.partitions.len(), 1);
    assert_eq!(r.partitions[0].topic_id, id);
    assert_eq!(r.partitions[0].partition, 4);
    assert_eq!(r.partitions[0].error_code, 121);
    assert_eq!(r.partitions[0].error_message.as_deref(), Some("bad"));
    assert_eq!(r.node_endpoints, vec![(1, "127.0.0.1".to_owned(), 9092)]);
}

#[test]
fn truncated_response_is_an_error_not_a_panic() {
    let mut b = BytesMut::new();
    b.put_i32(0);
    b.put_i16(0);
    assert!(decode_share_ack_response(b.freeze(), 1).is_err());
}

#[test]
fn split_drops_a_truncated_tail() {
    use kafka_protocol::records::*;
    let recs: Vec<Record> = (0..3)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 10 + i,
            // The encoder batches records whose offset - sequence is constant.
            sequence: i as i32,
            timestamp: 0,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let opts = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, recs.iter(), &opts).unwrap();
    let one = buf.len();
    RecordBatchEncoder::encode(&mut buf, recs.iter(), &opts).unwrap();
    let whole = buf.freeze();
    let batches = split_batches(whole.slice(..one + 20));
    assert_eq!(batches.len(), 1);
    assert_eq!((batches[0].base_offset, batches[0].last_offset), (10, 12));
    assert_eq!(split_batches(whole).len(), 2);
}
