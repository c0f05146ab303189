use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::share_fetch_response::{AcquiredRecords, ShareFetchResponse};
use kafka_protocol::messages::{ApiKey, MetadataRequest, TopicName};
use kafka_protocol::protocol::{Decodable, StrBytes};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::conn::{bootstrap_addrs, connect_any, Conn, ConnOpts};
use crate::error::{Error, Result};
use crate::membership::{Command, MemberState, Membership};
use crate::records;
use crate::wire::{self, FetchParams, PartitionAcks, TopicAcks, ACK_GAP};

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

/// Settings of a [`ShareConsumer`].
#[derive(Clone, Debug)]
pub struct ShareConsumerConfig {
    /// Comma-separated `host:port` list.
    pub bootstrap: String,
    pub group_id: String,
    pub topics: Vec<String>,
    pub client_id: String,
    /// How long a ShareFetch waits on the broker for records (MaxWaitMs).
    pub max_wait: Duration,
    /// Records per fetch and partition (MaxRecords, and BatchSize).
    pub max_records: u32,
    /// Bytes per fetch response (MaxBytes).
    pub max_bytes: u32,
    pub acquire_mode: AcquireMode,
    /// Limit for any single request, on top of `max_wait` for fetches.
    pub request_timeout: Duration,
}

impl ShareConsumerConfig {
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
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// 1 on first delivery; the broker archives the record once this reaches the group's
    /// delivery count limit without an Accept.
    pub delivery_count: u16,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// Record headers, in the order written (repeated keys included).
    pub headers: Vec<(String, Option<Bytes>)>,
    /// When the acquisition lock runs out at the latest (measured from when the fetch was
    /// sent, so slightly early); after it the broker may hand the record to another member.
    pub lock_deadline: Instant,
}

impl AcquiredRecord {
    pub fn id(&self) -> RecordId {
        RecordId {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
        }
    }
}

/// Names one delivered record for [`ShareConsumer::acknowledge`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecordId {
    pub topic: Arc<str>,
    pub partition: i32,
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
    fn code(self) -> i8 {
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
    pub accepted: u64,
    pub released: u64,
    pub rejected: u64,
    pub renewed: u64,
    pub failures: Vec<AckFailure>,
}

impl AckReport {
    fn count(&mut self, kind: AckKind) {
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
    pub record: RecordId,
    pub kind: AckKind,
    pub error: Error,
}

type Tp = (Uuid, i32);
/// Acknowledgements grouped by partition.
type PartitionPending = Vec<(Tp, Vec<(i64, Pending)>)>;

/// Acknowledgements the application never sees: offsets without a record for it (GAP) and
/// acquired offsets whose batch did not arrive whole (released for redelivery).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ack {
    User(AckKind),
    Gap,
    AutoRelease,
}

impl Ack {
    fn code(self) -> i8 {
        match self {
            Ack::User(k) => k.code(),
            Ack::Gap => ACK_GAP,
            Ack::AutoRelease => AckKind::Release.code(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    ack: Ack,
    /// The broker the record was acquired from: acquisitions live in its share session.
    leader: i32,
}

/// A record batch as decoded, kept per partition for the next fetch returning it.
struct DecodedBatch {
    base_offset: i64,
    last_offset: i64,
    /// The batch's length and CRC-32C (which covers everything after it): with the base
    /// offset, what tells that a batch fetched again is this one.
    crc: (usize, u32),
    /// A batch of transaction markers.
    control: bool,
    /// By offset.
    records: Vec<records::Record>,
}

/// The length and the CRC field of a v2 record batch (bytes 17..21).
fn batch_crc(batch: &Bytes) -> (usize, u32) {
    let crc = batch
        .get(17..21)
        .map_or(0, |b| u32::from_be_bytes(b.try_into().unwrap()));
    (batch.len(), crc)
}

#[derive(Clone, Copy, Debug)]
struct Held {
    leader: i32,
}

#[derive(Default)]
struct TopicMeta {
    name: Arc<str>,
    leaders: HashMap<i32, i32>,
}

#[derive(Default)]
struct Metadata {
    brokers: HashMap<i32, String>,
    topics: HashMap<Uuid, TopicMeta>,
    ids: HashMap<Arc<str>, Uuid>,
    stale: bool,
}

/// A share session on one broker. Epoch 0 means none is open.
#[derive(Default)]
struct Session {
    epoch: i32,
    partitions: BTreeSet<Tp>,
}

fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

const NOT_LEADER_OR_FOLLOWER: i16 = 6;

/// A member of a share group (KIP-932).
///
/// Records come from [`poll`](Self::poll) under an acquisition lock (the broker's
/// `group.share.record.lock.duration.ms`, 30 s by default, or the group's
/// `share.record.lock.duration.ms`). Each must be acknowledged with
/// [`acknowledge`](Self::acknowledge) before the lock runs out; otherwise the broker
/// redelivers it, possibly to another member, and a late Accept fails with
/// INVALID_RECORD_STATE. Acknowledgements travel with the next `poll` or with
/// [`flush_acks`](Self::flush_acks). A caller whose processing may outlast the lock either
/// keeps `max_records` small enough or renews locks with [`AckKind::Renew`] + `flush_acks`.
///
/// `poll` and `flush_acks` are not cancel-safe in the sense that a call dropped midway loses
/// its round: the affected share sessions are closed, and their records come back after
/// redelivery; the consumer itself stays usable.
///
/// Dropping the consumer without [`close`](Self::close) behaves like a crash: heartbeats stop
/// and connections close, the brokers release the records it held and the group drops the
/// member after its session timeout.
pub struct ShareConsumer {
    cfg: ShareConsumerConfig,
    member_id: String,
    bootstrap: Vec<String>,
    opts: ConnOpts,
    fetch_version: i16,
    ack_version: i16,
    meta: Metadata,
    meta_conn: Option<Conn>,
    conns: HashMap<i32, Conn>,
    sessions: HashMap<i32, Session>,
    held: HashMap<Tp, BTreeMap<i64, Held>>,
    /// The last decoded batch of each partition.
    decoded: HashMap<Tp, Arc<DecodedBatch>>,
    pending: HashMap<Tp, BTreeMap<i64, Pending>>,
    report: AckReport,
    lock_timeout: Option<Duration>,
    deferred: Option<Error>,
    member: watch::Receiver<MemberState>,
    commands: mpsc::Sender<Command>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for ShareConsumer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct SentFetch {
    leader: i32,
    correlation_id: i32,
    epoch: i32,
    want: BTreeSet<Tp>,
    added: Vec<Tp>,
    forgotten: Vec<Tp>,
    acks: PartitionPending,
    sent_at: Instant,
}

impl ShareConsumer {
    /// Checks that the cluster offers share groups, loads metadata, joins the group and
    /// starts heartbeating in the background (needs a Tokio runtime).
    pub async fn connect(cfg: ShareConsumerConfig) -> Result<ShareConsumer> {
        if cfg.group_id.is_empty() {
            return Err(Error::Usage("group_id is empty".into()));
        }
        if cfg.topics.is_empty() {
            return Err(Error::Usage("no topics to subscribe to".into()));
        }
        if cfg.max_records == 0 {
            return Err(Error::Usage("max_records must be at least 1".into()));
        }
        let bootstrap = bootstrap_addrs(&cfg.bootstrap)?;
        let opts = ConnOpts {
            client_id: cfg.client_id.clone(),
            request_timeout: cfg.request_timeout,
        };
        let conn = connect_any(&bootstrap, &opts).await?;
        let share_version = conn.features.get("share.version").copied().unwrap_or(0);
        if conn.supports(ApiKey::ShareGroupHeartbeat).is_none() || share_version < 1 {
            return Err(Error::Unsupported {
                broker: conn.peer.to_string(),
                detail: format!(
                    "share groups are not available: ShareGroupHeartbeat is {}offered and the \
                     finalized share.version feature is {share_version}; needs Kafka 4.1+ with \
                     share.version >= 1 (kafka-features.sh upgrade --feature share.version=1)",
                    if conn.supports(ApiKey::ShareGroupHeartbeat).is_some() {
                        ""
                    } else {
                        "not "
                    }
                ),
            });
        }
        let heartbeat_version = conn.version(ApiKey::ShareGroupHeartbeat, (1, 1))?;
        let fetch_version = conn.version(ApiKey::ShareFetch, (1, 2))?;
        let ack_version = conn.version(ApiKey::ShareAcknowledge, (1, 2))?;

        // The member id is the client's own (KIP-932), kept for the consumer's lifetime.
        let member_id = Uuid::new_v4().simple().to_string();
        let (mut membership, member) = Membership::new(
            cfg.group_id.clone(),
            member_id.clone(),
            cfg.topics.clone(),
            bootstrap.clone(),
            opts.clone(),
            heartbeat_version,
        );
        membership.join().await?;
        let (commands, rx) = mpsc::channel(1);
        let task = membership.spawn(rx);

        let mut consumer = ShareConsumer {
            cfg,
            member_id,
            bootstrap,
            opts,
            fetch_version,
            ack_version,
            meta: Metadata::default(),
            meta_conn: Some(conn),
            conns: HashMap::new(),
            sessions: HashMap::new(),
            held: HashMap::new(),
            decoded: HashMap::new(),
            pending: HashMap::new(),
            report: AckReport::default(),
            lock_timeout: None,
            deferred: None,
            member,
            commands,
            task: Some(task),
        };
        consumer.refresh_metadata().await?;
        Ok(consumer)
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// Whether lock renewal ([`AckKind::Renew`]) is available: ShareAcknowledge v2, Kafka 4.2+
    /// (the group may still disable it with `share.renew.acknowledge.enable=false`).
    pub fn supports_renew(&self) -> bool {
        self.ack_version >= 2
    }

    /// Records per fetch and partition from the next `poll` on (at least 1): a caller that
    /// handles a bounded number at once asks for no more than it has room for, so no record
    /// waits under its lock for a free slot.
    pub fn set_max_records(&mut self, max_records: u32) {
        self.cfg.max_records = max_records.max(1);
    }

    /// The acquisition lock duration the broker last reported.
    pub fn acquisition_lock_timeout(&self) -> Option<Duration> {
        self.lock_timeout
    }

    /// The member epoch from the last heartbeat; it grows with every group change this
    /// member takes part in (and restarts from 0 after fencing, until the rejoin completes).
    pub fn member_epoch(&self) -> i32 {
        self.member.borrow().member_epoch
    }

    /// The partitions currently assigned to this member.
    pub fn assignment(&self) -> Vec<(Arc<str>, i32)> {
        let state = self.member.borrow();
        let mut out = Vec::new();
        for (id, parts) in state.assignment.iter() {
            let name = match self.meta.topics.get(id) {
                Some(t) => t.name.clone(),
                None => Arc::from(id.to_string()),
            };
            out.extend(parts.iter().map(|p| (name.clone(), *p)));
        }
        out
    }

    /// Waits until the group assigned at least one partition to this member, or `timeout`.
    pub async fn wait_for_assignment(&mut self, timeout: Duration) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.check_member()?;
            if !self.member.borrow().assignment.is_empty() {
                return Ok(true);
            }
            match tokio::time::timeout_at(deadline, self.member.changed()).await {
                Err(_) => return Ok(false),
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    return Err(Error::MembershipStopped("membership task ended".into()));
                }
            }
        }
    }

    fn check_member(&self) -> Result<()> {
        match &self.member.borrow().stopped {
            Some(reason) => Err(Error::MembershipStopped(reason.clone())),
            None => Ok(()),
        }
    }

    /// Marks a delivered record. Accept/Release/Reject end this member's hold on it; Renew
    /// keeps it and restarts its lock once sent. Sent with the next `poll` (Renew: before
    /// that poll's fetch) or `flush_acks`.
    pub fn acknowledge(&mut self, record: &RecordId, kind: AckKind) -> Result<()> {
        if kind == AckKind::Renew && !self.supports_renew() {
            return Err(Error::Unsupported {
                broker: self.bootstrap.join(","),
                detail: format!(
                    "lock renewal needs ShareAcknowledge v2 (Kafka 4.2+); the broker offers v{}",
                    self.ack_version
                ),
            });
        }
        let not_held = || {
            Error::Usage(format!(
                "record {record} is not held by this consumer (never delivered to it, already \
                 acknowledged, or released when its share session ended)"
            ))
        };
        let topic_id = *self.meta.ids.get(&*record.topic).ok_or_else(not_held)?;
        let tp = (topic_id, record.partition);
        let held = self.held.get_mut(&tp).ok_or_else(not_held)?;
        let leader = held.get(&record.offset).ok_or_else(not_held)?.leader;
        if kind != AckKind::Renew {
            held.remove(&record.offset);
        }
        self.pending.entry(tp).or_default().insert(
            record.offset,
            Pending {
                ack: Ack::User(kind),
                leader,
            },
        );
        Ok(())
    }

    /// Acquires records from the assigned partitions' leaders (one ShareFetch per leader,
    /// sent concurrently), carrying pending acknowledgements.
    ///
    /// Transient trouble (leader moves, lost connections, share-session resets, coordinator
    /// moves) is handled inside and yields fewer or no records; the acknowledgements it
    /// voids show up in the next [`AckReport`]. Errors returned are the ones that need the
    /// caller (authorization, unsupported broker, a stopped membership).
    pub async fn poll(&mut self) -> Result<Vec<AcquiredRecord>> {
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        self.check_member()?;
        self.drop_interrupted();
        if self.member.borrow().assignment.is_empty() {
            if !self.pending.is_empty() {
                self.send_acks(false).await;
            }
            let _ = tokio::time::timeout(self.cfg.max_wait, self.member.changed()).await;
            self.check_member()?;
            if self.member.borrow().assignment.is_empty() {
                return Ok(Vec::new());
            }
        }
        let assignment = self.member.borrow().assignment.clone();
        // Batches kept for partitions this member no longer reads are of no more use.
        self.decoded
            .retain(|(id, p), _| assignment.get(id).is_some_and(|parts| parts.contains(p)));
        if self.meta.stale
            || assignment
                .keys()
                .any(|id| !self.meta.topics.contains_key(id))
        {
            if let Err(e) = self.refresh_metadata().await {
                tracing::warn!(error = %e, "metadata refresh failed");
            }
        }

        let mut desired: BTreeMap<i32, BTreeSet<Tp>> = BTreeMap::new();
        for (id, parts) in assignment.iter() {
            let Some(topic) = self.meta.topics.get(id) else {
                continue;
            };
            for p in parts {
                match topic.leaders.get(p) {
                    Some(&leader) if leader >= 0 => {
                        desired.entry(leader).or_default().insert((*id, *p));
                    }
                    _ => self.meta.stale = true,
                }
            }
        }

        // Renewals and acks that cannot ride on this round's fetches go first.
        let must_flush = self.pending.iter().any(|(tp, offsets)| {
            offsets.values().any(|p| {
                p.ack == Ack::User(AckKind::Renew)
                    || !desired.get(&p.leader).is_some_and(|s| s.contains(tp))
            })
        });
        if must_flush {
            self.send_acks(false).await;
        }

        // Sessions on brokers that lead none of our partitions and hold nothing of ours.
        let idle: Vec<i32> = self
            .sessions
            .keys()
            .copied()
            .filter(|l| !desired.contains_key(l) && !self.holds_anything_from(*l))
            .collect();
        for leader in idle {
            self.sessions.remove(&leader);
            self.conns.remove(&leader);
        }

        let records = self.fetch_round(desired).await;
        if let Some(e) = self.deferred.take() {
            if records.is_empty() {
                return Err(e);
            }
            self.deferred = Some(e);
        }
        Ok(records)
    }

    fn holds_anything_from(&self, leader: i32) -> bool {
        self.held
            .values()
            .any(|m| m.values().any(|h| h.leader == leader))
            || self
                .pending
                .values()
                .any(|m| m.values().any(|p| p.leader == leader))
    }

    async fn leader_conn(&mut self, leader: i32) -> Result<&mut Conn> {
        if !self.conns.contains_key(&leader) {
            let addr = self.meta.brokers.get(&leader).cloned().ok_or_else(|| {
                Error::Metadata(format!("broker {leader} is not in the cluster metadata"))
            })?;
            let conn = Conn::connect(&addr, Some(leader), &self.opts).await?;
            self.conns.insert(leader, conn);
        }
        Ok(self.conns.get_mut(&leader).expect("inserted above"))
    }

    /// Takes pending acknowledgements that `filter` selects, grouped by partition.
    fn take_pending(&mut self, mut filter: impl FnMut(&Tp, &Pending) -> bool) -> PartitionPending {
        let mut out = Vec::new();
        for (tp, offsets) in self.pending.iter_mut() {
            let taken: Vec<(i64, Pending)> = offsets
                .iter()
                .filter(|(_, p)| filter(tp, p))
                .map(|(o, p)| (*o, *p))
                .collect();
            for (o, _) in &taken {
                offsets.remove(o);
            }
            if !taken.is_empty() {
                out.push((*tp, taken));
            }
        }
        self.pending.retain(|_, m| !m.is_empty());
        out
    }

    fn topic_acks(acks: &[(Tp, Vec<(i64, Pending)>)], extra: &[Tp]) -> TopicAcks {
        let mut by_topic: BTreeMap<Uuid, BTreeMap<i32, Vec<(i64, i8)>>> = BTreeMap::new();
        for tp in extra {
            by_topic.entry(tp.0).or_default().entry(tp.1).or_default();
        }
        for (tp, offsets) in acks {
            by_topic
                .entry(tp.0)
                .or_default()
                .entry(tp.1)
                .or_default()
                .extend(offsets.iter().map(|(o, p)| (*o, p.ack.code())));
        }
        by_topic
            .into_iter()
            .map(|(id, parts)| {
                let parts = parts
                    .into_iter()
                    .map(|(partition, mut acks)| {
                        acks.sort_unstable_by_key(|a| a.0);
                        PartitionAcks {
                            partition,
                            batches: wire::ack_batches(acks),
                        }
                    })
                    .collect();
                (id, parts)
            })
            .collect()
    }

    fn record_id(&self, tp: &Tp, offset: i64) -> RecordId {
        RecordId {
            topic: self
                .meta
                .topics
                .get(&tp.0)
                .map(|t| t.name.clone())
                .unwrap_or_else(|| Arc::from(tp.0.to_string())),
            partition: tp.1,
            offset,
        }
    }

    /// Records the outcome of acknowledgements; internal ones (gaps, auto-releases) only log.
    fn settle(&mut self, acks: &[(i64, Pending)], tp: &Tp, error: Option<&Error>) {
        for (offset, p) in acks {
            let Ack::User(kind) = p.ack else {
                if let Some(e) = error {
                    tracing::debug!(error = %e, offset, "internal acknowledgement failed");
                }
                continue;
            };
            match error {
                None => self.report.count(kind),
                Some(e) => {
                    if kind == AckKind::Renew {
                        if let Some(h) = self.held.get_mut(tp) {
                            h.remove(offset);
                        }
                    }
                    let record = self.record_id(tp, *offset);
                    tracing::warn!(%record, ?kind, error = %e, "acknowledgement failed");
                    self.report.failures.push(AckFailure {
                        record,
                        kind,
                        error: e.clone(),
                    });
                }
            }
        }
    }

    /// Forgets the share session on `leader` after it was lost: the broker released what we
    /// held there, so held records and acknowledgements for them are void.
    fn reset_session(&mut self, leader: i32, drop_conn: bool, reason: &Error) {
        tracing::info!(leader, error = %reason, "share session reset");
        self.sessions.remove(&leader);
        if drop_conn {
            self.conns.remove(&leader);
        }
        for m in self.held.values_mut() {
            m.retain(|_, h| h.leader != leader);
        }
        self.held.retain(|_, m| !m.is_empty());
        let void = self.take_pending(|_, p| p.leader == leader);
        for (tp, acks) in void {
            self.settle(&acks, &tp, Some(reason));
        }
    }

    fn note_error(&mut self, e: Error) {
        if e.is_retriable() {
            tracing::warn!(error = %e, "share consumer: transient error");
        } else if self.deferred.is_none() {
            self.deferred = Some(e);
        }
    }

    /// A connection still waiting for a response belongs to a cancelled `poll` or
    /// `flush_acks`: its share session is in an unknown state, so it is closed (the broker
    /// then releases that session's records for redelivery).
    fn drop_interrupted(&mut self) {
        let interrupted: Vec<i32> = self
            .conns
            .iter()
            .filter(|(_, c)| c.awaiting_response())
            .map(|(l, _)| *l)
            .collect();
        for leader in interrupted {
            let e = Error::SessionLost(format!(
                "a cancelled request left the connection to broker {leader} in an unknown state"
            ));
            self.reset_session(leader, true, &e);
        }
        if self
            .meta_conn
            .as_ref()
            .is_some_and(|c| c.awaiting_response())
        {
            self.meta_conn = None;
        }
    }

    async fn fetch_round(&mut self, desired: BTreeMap<i32, BTreeSet<Tp>>) -> Vec<AcquiredRecord> {
        let mut sent: Vec<SentFetch> = Vec::new();
        for (leader, want) in desired {
            let session = self.sessions.entry(leader).or_default();
            let epoch = session.epoch;
            let (added, forgotten): (Vec<Tp>, Vec<Tp>) = if epoch == 0 {
                (want.iter().copied().collect(), Vec::new())
            } else {
                (
                    want.difference(&session.partitions).copied().collect(),
                    session.partitions.difference(&want).copied().collect(),
                )
            };
            // A session-opening fetch may not carry acknowledgements.
            let acks = if epoch == 0 {
                Vec::new()
            } else {
                self.take_pending(|tp, p| {
                    p.leader == leader && want.contains(tp) && p.ack != Ack::User(AckKind::Renew)
                })
            };
            let topics = Self::topic_acks(&acks, &added);
            let mut forgotten_by_topic: BTreeMap<Uuid, Vec<i32>> = BTreeMap::new();
            for (id, p) in &forgotten {
                forgotten_by_topic.entry(*id).or_default().push(*p);
            }
            let forgotten_list: Vec<(Uuid, Vec<i32>)> = forgotten_by_topic.into_iter().collect();
            let max_records = self.cfg.max_records.min(i32::MAX as u32) as i32;
            let params = FetchParams {
                group_id: &self.cfg.group_id,
                member_id: &self.member_id,
                session_epoch: epoch,
                max_wait_ms: self.cfg.max_wait.as_millis().min(i32::MAX as u128) as i32,
                min_bytes: 1,
                max_bytes: self.cfg.max_bytes.min(i32::MAX as u32) as i32,
                max_records,
                batch_size: max_records,
                acquire_mode: match self.cfg.acquire_mode {
                    AcquireMode::BatchOptimized => 0,
                    AcquireMode::RecordLimit => 1,
                },
            };
            let body =
                wire::encode_share_fetch(self.fetch_version, &params, &topics, &forgotten_list);
            let version = self.fetch_version;
            let sent_at = Instant::now();
            let result = match self.leader_conn(leader).await {
                Ok(conn) => conn.send(ApiKey::ShareFetch, version, &body).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(correlation_id) => sent.push(SentFetch {
                    leader,
                    correlation_id,
                    epoch,
                    want,
                    added,
                    forgotten,
                    acks,
                    sent_at,
                }),
                Err(e) => {
                    self.meta.stale = true;
                    for (tp, a) in &acks {
                        self.settle(a, tp, Some(&e));
                    }
                    self.reset_session(leader, true, &e);
                    self.note_error(e);
                }
            }
        }
        if sent.is_empty() {
            // Nothing reachable: do not spin.
            tokio::time::sleep(self.cfg.max_wait.min(Duration::from_millis(500))).await;
            return Vec::new();
        }

        let mut out = Vec::new();
        for s in sent {
            let version = self.fetch_version;
            let wait = self.cfg.max_wait;
            let conn = self.conns.get_mut(&s.leader).expect("sent on it");
            let peer = conn.peer.clone();
            let body = conn
                .recv(ApiKey::ShareFetch, version, s.correlation_id, wait)
                .await
                .and_then(|mut b| {
                    // v2 changed only the request; the response layout is v1's.
                    ShareFetchResponse::decode(&mut b, 1).map_err(|e| {
                        conn.protocol("ShareFetch", format!("decoding v{version}: {e}"))
                    })
                });
            match body {
                Ok(resp) => self.handle_fetch(s, &peer.to_string(), resp, &mut out),
                Err(e) => {
                    for (tp, a) in &s.acks {
                        self.settle(a, tp, Some(&e));
                    }
                    self.reset_session(s.leader, true, &e);
                    self.note_error(e);
                }
            }
        }
        out
    }

    fn handle_fetch(
        &mut self,
        s: SentFetch,
        peer: &str,
        resp: ShareFetchResponse,
        out: &mut Vec<AcquiredRecord>,
    ) {
        if resp.error_code != 0 {
            let e = Error::broker(
                peer,
                "ShareFetch",
                resp.error_code,
                format!("group {}", self.cfg.group_id),
                resp.error_message.as_deref(),
            );
            for (tp, a) in &s.acks {
                self.settle(a, tp, Some(&e));
            }
            // The broker may already have moved the epoch on; start over with a new session.
            self.reset_session(s.leader, false, &e);
            self.note_error(e);
            return;
        }
        let session = self.sessions.entry(s.leader).or_default();
        session.epoch = next_epoch(s.epoch);
        if s.epoch == 0 {
            session.partitions = s.want.clone();
        } else {
            session.partitions.extend(s.added.iter().copied());
            for tp in &s.forgotten {
                session.partitions.remove(tp);
            }
        }
        if resp.acquisition_lock_timeout_ms > 0 {
            self.lock_timeout = Some(Duration::from_millis(
                resp.acquisition_lock_timeout_ms as u64,
            ));
        }
        for ep in &resp.node_endpoints {
            self.meta
                .brokers
                .insert(ep.node_id.0, format!("{}:{}", ep.host.as_str(), ep.port));
        }
        let deadline = s.sent_at + self.lock_timeout.unwrap_or(Duration::ZERO);
        let mut acked: HashMap<Tp, Vec<(i64, Pending)>> = s.acks.into_iter().collect();

        for topic in resp.responses {
            let topic_id = topic.topic_id;
            let name = self
                .meta
                .topics
                .get(&topic_id)
                .map(|t| t.name.clone())
                .unwrap_or_else(|| Arc::from(topic_id.to_string()));
            for part in topic.partitions {
                let tp = (topic_id, part.partition_index);
                let context = format!("partition {name}-{}", part.partition_index);
                if let Some(acks) = acked.remove(&tp) {
                    let err = (part.acknowledge_error_code != 0).then(|| {
                        Error::broker(
                            peer,
                            "ShareFetch",
                            part.acknowledge_error_code,
                            context.clone(),
                            part.acknowledge_error_message.as_deref(),
                        )
                    });
                    self.settle(&acks, &tp, err.as_ref());
                }
                if part.error_code != 0 {
                    let e = Error::broker(
                        peer,
                        "ShareFetch",
                        part.error_code,
                        context,
                        part.error_message.as_deref(),
                    );
                    if e.is_retriable() {
                        // The response names the new leader (and its endpoint) when it knows
                        // it; otherwise the next poll refreshes metadata.
                        let new_leader = part.current_leader.leader_id;
                        match self.meta.topics.get_mut(&topic_id) {
                            Some(t)
                                if part.error_code == NOT_LEADER_OR_FOLLOWER
                                    && new_leader >= 0
                                    && self.meta.brokers.contains_key(&new_leader) =>
                            {
                                t.leaders.insert(part.partition_index, new_leader);
                            }
                            _ => self.meta.stale = true,
                        }
                    }
                    self.note_error(e);
                    continue;
                }
                if part.acquired_records.is_empty() {
                    continue;
                }
                self.take_acquired(
                    s.leader,
                    &name,
                    tp,
                    part.records.unwrap_or_default(),
                    &part.acquired_records,
                    deadline,
                    out,
                );
            }
        }
        // Partitions the response does not mention had nothing to report, errors included.
        for (tp, acks) in acked {
            self.settle(&acks, &tp, None);
        }
    }

    /// The records of `batch`, decoded, or taken from the partition's last decoded batch when
    /// it is the same one: a consumer taking a few records per fetch gets the same large batch
    /// again and again, and decoding all of it each time would cost more than the records'
    /// handling. `None` if it cannot be decoded (its records are then released).
    fn decode_batch(
        &mut self,
        topic: &Arc<str>,
        tp: Tp,
        batch: wire::RawBatch,
    ) -> Option<Arc<DecodedBatch>> {
        if let Some(cached) = self.decoded.get(&tp) {
            if cached.base_offset == batch.base_offset && cached.crc == batch_crc(&batch.bytes) {
                return Some(cached.clone());
            }
        }
        // Kept records would otherwise pin the whole fetch response (up to `max_bytes`) they
        // were cut from: the batch gets a buffer of its own, copied once per new batch.
        let bytes = Bytes::copy_from_slice(&batch.bytes);
        match records::decode(&bytes) {
            Ok(decoded) => {
                let decoded = Arc::new(DecodedBatch {
                    base_offset: batch.base_offset,
                    last_offset: batch.last_offset,
                    crc: batch_crc(&batch.bytes),
                    control: decoded.control,
                    records: decoded.records,
                });
                self.decoded.insert(tp, decoded.clone());
                Some(decoded)
            }
            Err(e) => {
                tracing::error!(
                    topic = %topic, partition = tp.1, base_offset = batch.base_offset, error = %e,
                    "undecodable record batch; its records are released"
                );
                None
            }
        }
    }

    /// Keeps the records inside the acquired ranges. Acquired offsets without a record for
    /// the application get a GAP acknowledgement; those whose batch was cut off are released.
    #[allow(clippy::too_many_arguments)]
    fn take_acquired(
        &mut self,
        leader: i32,
        topic: &Arc<str>,
        tp: Tp,
        records: Bytes,
        acquired: &[AcquiredRecords],
        deadline: Instant,
        out: &mut Vec<AcquiredRecord>,
    ) {
        let mut by_offset = BTreeMap::new();
        let mut spans = Vec::new();
        let acquired_in = |first: i64, last: i64| {
            acquired
                .iter()
                .any(|r| r.first_offset <= last && first <= r.last_offset)
        };
        for batch in wire::split_batches(records) {
            // The broker returns whole batches around the acquired records (record-limit mode
            // too); only batches holding some are decoded.
            if !acquired_in(batch.base_offset, batch.last_offset) {
                continue;
            }
            let Some(decoded) = self.decode_batch(topic, tp, batch) else {
                continue;
            };
            spans.push((decoded.base_offset, decoded.last_offset));
            for range in acquired {
                let from = decoded
                    .records
                    .partition_point(|r| r.offset < range.first_offset);
                for r in decoded.records[from..]
                    .iter()
                    .take_while(|r| r.offset <= range.last_offset)
                {
                    if !decoded.control {
                        by_offset.insert(r.offset, r.clone());
                    }
                }
            }
        }
        let in_span = |o: i64| spans.iter().any(|(a, b)| *a <= o && o <= *b);
        let held = self.held.entry(tp).or_default();
        let pending = self.pending.entry(tp).or_default();
        for range in acquired {
            let delivery_count = range.delivery_count.max(0) as u16;
            for offset in range.first_offset..=range.last_offset {
                if let Some(r) = by_offset.remove(&offset) {
                    held.insert(offset, Held { leader });
                    out.push(AcquiredRecord {
                        topic: topic.clone(),
                        partition: tp.1,
                        offset,
                        delivery_count,
                        timestamp: r.timestamp,
                        key: r.key,
                        value: r.value,
                        headers: r.headers,
                        lock_deadline: deadline,
                    });
                } else {
                    let ack = if in_span(offset) {
                        Ack::Gap
                    } else {
                        Ack::AutoRelease
                    };
                    pending.insert(offset, Pending { ack, leader });
                }
            }
        }
        if pending.is_empty() {
            self.pending.remove(&tp);
        }
    }

    /// Sends all pending acknowledgements now (ShareAcknowledge, one per broker, concurrently)
    /// and returns the outcome of every acknowledgement since the last report, including the
    /// ones that rode on fetches.
    pub async fn flush_acks(&mut self) -> Result<AckReport> {
        self.drop_interrupted();
        self.send_acks(false).await;
        Ok(std::mem::take(&mut self.report))
    }

    /// Sends pending acknowledgements; with `close`, closes every share session (epoch -1).
    async fn send_acks(&mut self, close: bool) {
        let mut by_leader: BTreeMap<i32, PartitionPending> = BTreeMap::new();
        for (tp, acks) in self.take_pending(|_, _| true) {
            let mut per: BTreeMap<i32, Vec<(i64, Pending)>> = BTreeMap::new();
            for (o, p) in acks {
                per.entry(p.leader).or_default().push((o, p));
            }
            for (leader, a) in per {
                by_leader.entry(leader).or_default().push((tp, a));
            }
        }
        if close {
            for (leader, s) in &self.sessions {
                if s.epoch > 0 {
                    by_leader.entry(*leader).or_default();
                }
            }
        }

        let version = self.ack_version;
        let mut sent = Vec::new();
        for (leader, acks) in by_leader {
            let epoch = self.sessions.get(&leader).map_or(0, |s| s.epoch);
            if epoch == 0 || !self.conns.contains_key(&leader) {
                let e = Error::SessionLost(format!(
                    "no share session open on broker {leader}; the records it handed out were \
                     released"
                ));
                for (tp, a) in &acks {
                    self.settle(a, tp, Some(&e));
                }
                continue;
            }
            let renew = acks
                .iter()
                .any(|(_, a)| a.iter().any(|(_, p)| p.ack == Ack::User(AckKind::Renew)));
            let topics = Self::topic_acks(&acks, &[]);
            let body = wire::encode_share_ack(
                version,
                &self.cfg.group_id,
                &self.member_id,
                if close { -1 } else { epoch },
                renew,
                &topics,
            );
            let conn = self.conns.get_mut(&leader).expect("checked above");
            match conn.send(ApiKey::ShareAcknowledge, version, &body).await {
                Ok(correlation_id) => sent.push((leader, correlation_id, epoch, acks)),
                Err(e) => {
                    for (tp, a) in &acks {
                        self.settle(a, tp, Some(&e));
                    }
                    self.reset_session(leader, true, &e);
                }
            }
        }

        for (leader, correlation_id, epoch, acks) in sent {
            let conn = self.conns.get_mut(&leader).expect("sent on it");
            let peer = conn.peer.to_string();
            let resp = conn
                .recv(
                    ApiKey::ShareAcknowledge,
                    version,
                    correlation_id,
                    Duration::ZERO,
                )
                .await
                .and_then(|b| {
                    wire::decode_share_ack_response(b, version).map_err(|d| {
                        conn.protocol("ShareAcknowledge", format!("decoding v{version}: {d}"))
                    })
                });
            let resp = match resp {
                Ok(r) => r,
                Err(e) => {
                    for (tp, a) in &acks {
                        self.settle(a, tp, Some(&e));
                    }
                    self.reset_session(leader, true, &e);
                    continue;
                }
            };
            if resp.error_code != 0 {
                let e = Error::broker(
                    &peer,
                    "ShareAcknowledge",
                    resp.error_code,
                    format!("group {}", self.cfg.group_id),
                    resp.error_message.as_deref(),
                );
                for (tp, a) in &acks {
                    self.settle(a, tp, Some(&e));
                }
                self.reset_session(leader, false, &e);
                continue;
            }
            if close {
                self.sessions.remove(&leader);
            } else if let Some(s) = self.sessions.get_mut(&leader) {
                s.epoch = next_epoch(epoch);
            }
            if let Some(ms) = resp.lock_timeout_ms.filter(|ms| *ms > 0) {
                self.lock_timeout = Some(Duration::from_millis(ms as u64));
            }
            for (node, host, port) in &resp.node_endpoints {
                self.meta.brokers.insert(*node, format!("{host}:{port}"));
            }
            let results: HashMap<Tp, (i16, Option<String>, i32)> = resp
                .partitions
                .into_iter()
                .map(|p| {
                    let tp = (p.topic_id, p.partition);
                    (tp, (p.error_code, p.error_message, p.leader_id))
                })
                .collect();
            for (tp, a) in &acks {
                let err = match results.get(tp) {
                    Some((code, msg, new_leader)) if *code != 0 => {
                        if *code == NOT_LEADER_OR_FOLLOWER {
                            self.meta.stale = true;
                            if let Some(t) = self.meta.topics.get_mut(&tp.0) {
                                if *new_leader >= 0 {
                                    t.leaders.insert(tp.1, *new_leader);
                                }
                            }
                        }
                        let name = self.record_id(tp, 0).topic;
                        Some(Error::broker(
                            &peer,
                            "ShareAcknowledge",
                            *code,
                            format!("partition {name}-{}", tp.1),
                            msg.as_deref(),
                        ))
                    }
                    _ => None,
                };
                self.settle(a, tp, err.as_ref());
            }
        }
    }

    async fn refresh_metadata(&mut self) -> Result<()> {
        let mut last = None;
        for _ in 0..2 {
            let conn = match self.meta_conn.take() {
                Some(c) => c,
                None => match connect_any(&self.bootstrap, &self.opts).await {
                    Ok(c) => c,
                    Err(e) => {
                        last = Some(e);
                        continue;
                    }
                },
            };
            let mut conn = conn;
            match self.metadata_from(&mut conn).await {
                Ok(()) => {
                    self.meta_conn = Some(conn);
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("tried"))
    }

    async fn metadata_from(&mut self, conn: &mut Conn) -> Result<()> {
        let version = conn.version(ApiKey::Metadata, (10, 12))?;
        let req = MetadataRequest::default().with_topics(Some(
            self.cfg
                .topics
                .iter()
                .map(|t| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
                })
                .collect(),
        ));
        let resp = conn.call(&req, version).await?;
        let mut meta = Metadata {
            brokers: resp
                .brokers
                .iter()
                .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
                .collect(),
            ..Metadata::default()
        };
        for t in &resp.topics {
            let Some(name) = t.name.as_ref() else {
                continue;
            };
            if t.error_code != 0 {
                tracing::debug!(
                    topic = name.0.as_str(),
                    error = %crate::error::code_name(t.error_code),
                    "topic metadata unavailable"
                );
                continue;
            }
            let name: Arc<str> = Arc::from(name.0.as_str());
            meta.ids.insert(name.clone(), t.topic_id);
            meta.topics.insert(
                t.topic_id,
                TopicMeta {
                    name,
                    leaders: t
                        .partitions
                        .iter()
                        .map(|p| (p.partition_index, p.leader_id.0))
                        .collect(),
                },
            );
        }
        self.meta = meta;
        Ok(())
    }

    /// Sends pending acknowledgements, closes the share sessions (releasing anything still
    /// held), and leaves the group so that its partitions are reassigned at once. Returns the
    /// outcome of all acknowledgements since the last report.
    pub async fn close(mut self) -> Result<AckReport> {
        self.drop_interrupted();
        self.send_acks(false).await;
        self.send_acks(true).await;
        let (reply, rx) = oneshot::channel();
        let left = if self.commands.send(Command::Leave(reply)).await.is_ok() {
            match tokio::time::timeout(self.cfg.request_timeout, rx).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => Err(Error::MembershipStopped("membership task ended".into())),
                Err(_) => Err(Error::Timeout {
                    broker: "group coordinator".into(),
                    api: "ShareGroupHeartbeat",
                    timeout_ms: self.cfg.request_timeout.as_millis() as u64,
                }),
            }
        } else {
            Ok(())
        };
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let report = std::mem::take(&mut self.report);
        left.map(|()| report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ackbar drives consumers from spawned tasks: the consumer and its futures must be Send.
    #[allow(dead_code)]
    fn futures_are_send(c: &mut ShareConsumer) {
        fn send<T: Send>(_: T) {}
        send(c.poll());
        send(c.flush_acks());
    }

    #[test]
    fn consumer_is_send() {
        fn send<T: Send>() {}
        send::<ShareConsumer>();
    }

    #[test]
    fn epochs_wrap_to_one() {
        assert_eq!(next_epoch(0), 1);
        assert_eq!(next_epoch(41), 42);
        assert_eq!(next_epoch(i32::MAX), 1);
    }
}
