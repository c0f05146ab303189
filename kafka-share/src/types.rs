//! The public vocabulary of the consumer: its configuration, the records it hands out, how
//! they are acknowledged and the report of what the brokers made of those acknowledgements.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use uuid::Uuid;

use crate::error::Error;

/// A partition by topic id, as the share APIs name it.
pub(crate) type Tp = (Uuid, i32);

/// How the broker sizes an acquisition (ShareFetch v2, KIP-1206).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcquireMode {
    /// The broker may exceed `max_records` to acquire whole record batches (the only mode of
    /// ShareFetch v1).
    BatchOptimized,
    /// At most `max_records` records per partition and fetch. Needs Kafka 4.2+; against an
    /// older broker the consumer falls back to `BatchOptimized`.
    RecordLimit,
}

/// Settings of a [`ShareConsumer`](crate::ShareConsumer).
#[derive(Clone, Debug)]
pub struct ShareConsumerConfig {
    /// Comma-separated `host:port` list.
    pub bootstrap: String,
    /// The share group to join.
    pub group_id: String,
    /// The topics to subscribe to.
    pub topics: Vec<String>,
    /// Sent with every request; shows up in broker logs and quotas.
    pub client_id: String,
    /// How long a ShareFetch waits on the broker for records (MaxWaitMs).
    pub max_wait: Duration,
    /// Records per fetch and partition (MaxRecords, and BatchSize).
    pub max_records: u32,
    /// Bytes per fetch response (MaxBytes).
    pub max_bytes: u32,
    /// How the broker sizes acquisitions; see [`AcquireMode`].
    pub acquire_mode: AcquireMode,
    /// Limit for any single request, on top of `max_wait` for fetches.
    pub request_timeout: Duration,
}

impl ShareConsumerConfig {
    /// A configuration with defaults: client id `kafka-share`, 500 ms max wait, 500 records
    /// and 50 MiB per fetch, [`AcquireMode::RecordLimit`], 30 s request timeout.
    pub fn new(bootstrap: impl Into<String>, group_id: impl Into<String>, topics: &[&str]) -> Self {
        ShareConsumerConfig {
            bootstrap: bootstrap.into(),
            group_id: group_id.into(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            client_id: "kafka-share".into(),
            max_wait: Duration::from_millis(500),
            max_records: 500,
            max_bytes: 50 * 1024 * 1024,
            acquire_mode: AcquireMode::RecordLimit,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// A record this member holds under an acquisition lock until it acknowledges it or the
/// lock times out.
#[derive(Clone, Debug)]
pub struct AcquiredRecord {
    /// Topic name.
    pub topic: Arc<str>,
    /// Partition index.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// 1 on first delivery; the broker archives the record once this reaches the group's
    /// delivery count limit without an Accept.
    pub delivery_count: u16,
    /// Record timestamp (ms since the epoch): create time, or log-append time if the topic
    /// uses it.
    pub timestamp: i64,
    /// Record key.
    pub key: Option<Bytes>,
    /// Record value.
    pub value: Option<Bytes>,
    /// Record headers, in the order written (repeated keys included).
    pub headers: Vec<(String, Option<Bytes>)>,
    /// When the acquisition lock runs out at the latest (measured from when the fetch was
    /// sent, so slightly early); after it the broker may hand the record to another member.
    pub lock_deadline: Instant,
}

impl AcquiredRecord {
    /// The id to acknowledge this record with.
    pub fn id(&self) -> RecordId {
        RecordId {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
        }
    }
}

/// Names one delivered record for [`ShareConsumer::acknowledge`](crate::ShareConsumer::acknowledge).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecordId {
    /// Topic name.
    pub topic: Arc<str>,
    /// Partition index.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
}

impl std::fmt::Display for RecordId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}@{}", self.topic, self.partition, self.offset)
    }
}

/// What to do with a delivered record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AckKind {
    /// Processed: never delivered again.
    Accept,
    /// Give it back for redelivery (to any member); counts towards the delivery limit.
    Release,
    /// Unprocessable: never delivered again.
    Reject,
    /// Keep it and restart its acquisition lock (KIP-1222, Kafka 4.2+).
    Renew,
}

impl AckKind {
    /// The AcknowledgeType on the wire.
    pub(crate) fn code(self) -> i8 {
        match self {
            AckKind::Accept => 1,
            AckKind::Release => 2,
            AckKind::Reject => 3,
            AckKind::Renew => 4,
        }
    }
}

/// Outcome of acknowledgements sent since the previous report: piggybacked on fetches by
/// `poll`, or sent by `flush_acks`/`close`.
#[derive(Clone, Debug, Default)]
pub struct AckReport {
    /// Accepts the broker applied.
    pub accepted: u64,
    /// Releases the broker applied.
    pub released: u64,
    /// Rejects the broker applied.
    pub rejected: u64,
    /// Lock renewals the broker applied.
    pub renewed: u64,
    /// Acknowledgements that were not applied, in the order their outcome arrived.
    pub failures: Vec<AckFailure>,
}

impl AckReport {
    pub(crate) fn count(&mut self, kind: AckKind) {
        match kind {
            AckKind::Accept => self.accepted += 1,
            AckKind::Release => self.released += 1,
            AckKind::Reject => self.rejected += 1,
            AckKind::Renew => self.renewed += 1,
        }
    }
}

/// An acknowledgement the broker did not apply. For INVALID_RECORD_STATE the acquisition lock
/// had already expired (the record is, or will be, delivered again).
#[derive(Clone, Debug)]
pub struct AckFailure {
    /// The record acknowledged.
    pub record: RecordId,
    /// How it was acknowledged.
    pub kind: AckKind,
    /// Why it failed: the broker's error, or the share session it was held in ending.
    pub error: Error,
}
