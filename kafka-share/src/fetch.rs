//! ShareFetch: one request per leader carrying the session delta and piggybacked
//! acknowledgements, and the handling of its response - session epoch, acknowledgement
//! outcomes, leader changes, and the acquired records taken out of their record batches.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::share_fetch_response::{AcquiredRecords, ShareFetchResponse};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Decodable;
use uuid::Uuid;

use crate::acks::{topic_acks, Ack, Held, PartitionPending, Pending};
use crate::consumer::Links;
use crate::error::Error;
use crate::records;
use crate::session::SessionDelta;
use crate::state::State;
use crate::types::{AcquireMode, AcquiredRecord, Tp};
use crate::wire::{self, FetchParams};

const NOT_LEADER_OR_FOLLOWER: i16 = 6;

/// A record batch as decoded, kept per partition for the next fetch returning it.
pub(crate) struct DecodedBatch {
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

/// A ShareFetch about to be sent, kept until its response is handled.
pub(crate) struct FetchPlan {
    pub leader: i32,
    pub delta: SessionDelta,
    /// Acknowledgements riding on it.
    pub acks: PartitionPending,
    /// Lock deadlines count from here, so they err on the early side.
    pub sent_at: Instant,
}

impl State {
    /// Plans the fetch of `want` from `leader`: its session delta and the acknowledgements
    /// that ride on it. Returns the request body to send.
    pub fn plan_fetch(&mut self, leader: i32, want: BTreeSet<Tp>) -> (FetchPlan, BytesMut) {
        let delta = self.sessions.plan(leader, want);
        let acks = self.take_piggyback(leader, &delta);
        let topics = topic_acks(&acks, &delta.added);
        let mut forgotten: BTreeMap<Uuid, Vec<i32>> = BTreeMap::new();
        for (id, p) in &delta.forgotten {
            forgotten.entry(*id).or_default().push(*p);
        }
        let forgotten: Vec<(Uuid, Vec<i32>)> = forgotten.into_iter().collect();
        let max_records = self.cfg.max_records.min(i32::MAX as u32) as i32;
        let params = FetchParams {
            group_id: &self.cfg.group_id,
            member_id: &self.member_id,
            session_epoch: delta.epoch,
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
        let body = wire::encode_share_fetch(self.fetch_version, &params, &topics, &forgotten);
        let plan = FetchPlan {
            leader,
            delta,
            acks,
            sent_at: Instant::now(),
        };
        (plan, body)
    }

    /// The fetch got no response (`e`): its acknowledgements' outcome is unknown and the
    /// session is lost.
    pub fn fetch_failed(&mut self, plan: &FetchPlan, e: Error) {
        self.fail_all(&plan.acks, &e);
        self.reset_session(plan.leader, &e);
        self.note_error(e);
    }

    /// Applies a ShareFetch response to the state and returns the records acquired.
    pub fn handle_fetch(
        &mut self,
        plan: FetchPlan,
        peer: &str,
        resp: ShareFetchResponse,
    ) -> Vec<AcquiredRecord> {
        let mut out = Vec::new();
        if resp.error_code != 0 {
            let e = Error::broker(
                peer,
                "ShareFetch",
                resp.error_code,
                format!("group {}", self.cfg.group_id),
                resp.error_message.as_deref(),
            );
            self.fail_all(&plan.acks, &e);
            // The broker may already have moved the epoch on; start over with a new session.
            self.reset_session(plan.leader, &e);
            self.note_error(e);
            return out;
        }
        self.sessions.fetched(plan.leader, &plan.delta);
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
        let deadline = plan.sent_at + self.lock_timeout.unwrap_or(Duration::ZERO);
        let mut acked: HashMap<Tp, Vec<(i64, Pending)>> = plan.acks.into_iter().collect();

        for topic in resp.responses {
            let topic_id = topic.topic_id;
            let name = self.meta.topic_name(&topic_id);
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
                    plan.leader,
                    &name,
                    tp,
                    part.records.unwrap_or_default(),
                    &part.acquired_records,
                    deadline,
                    &mut out,
                );
            }
        }
        // Partitions the response does not mention had nothing to report, errors included.
        for (tp, acks) in acked {
            self.settle(&acks, &tp, None);
        }
        out
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
}

/// One fetch round: a ShareFetch to every leader in `desired`, all written before any
/// response is read, so that the leaders long-poll in parallel.
pub(crate) async fn round(
    links: &mut Links,
    st: &mut State,
    desired: BTreeMap<i32, BTreeSet<Tp>>,
) -> Vec<AcquiredRecord> {
    let version = st.fetch_version;
    let mut sent = Vec::new();
    for (leader, want) in desired {
        let (plan, body) = st.plan_fetch(leader, want);
        let result = match links.leader(leader, &st.meta.brokers).await {
            Ok(conn) => conn.send(ApiKey::ShareFetch, version, &body).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(correlation_id) => sent.push((plan, correlation_id)),
            Err(e) => {
                st.meta.stale = true;
                links.conns.remove(&leader);
                st.fetch_failed(&plan, e);
            }
        }
    }
    if sent.is_empty() {
        // Nothing reachable: do not spin.
        tokio::time::sleep(st.cfg.max_wait.min(Duration::from_millis(500))).await;
        return Vec::new();
    }

    let mut out = Vec::new();
    for (plan, correlation_id) in sent {
        let wait = st.cfg.max_wait;
        let conn = links.conns.get_mut(&plan.leader).expect("sent on it");
        let peer = conn.peer.to_string();
        let body = conn
            .recv(ApiKey::ShareFetch, version, correlation_id, wait)
            .await
            .and_then(|mut b| {
                // v2 changed only the request; the response layout is v1's.
                ShareFetchResponse::decode(&mut b, 1)
                    .map_err(|e| conn.protocol("ShareFetch", format!("decoding v{version}: {e}")))
            });
        match body {
            Ok(resp) => out.extend(st.handle_fetch(plan, &peer, resp)),
            Err(e) => {
                links.conns.remove(&plan.leader);
                st.fetch_failed(&plan, e);
            }
        }
    }
    out
}
