//! Acknowledgements: which records this member holds, the acknowledgements waiting to be sent
//! (piggybacked on the next ShareFetch, or in ShareAcknowledge), lock renewals (ShareAcknowledge
//! v2 with IsRenewAck), and the [`AckReport`] bookkeeping of what the brokers answered.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::messages::ApiKey;
use uuid::Uuid;

use crate::consumer::Links;
use crate::error::{Error, Result};
use crate::session::SessionDelta;
use crate::state::State;
use crate::types::{AckFailure, AckKind, AckReport, RecordId, Tp};
use crate::wire::{self, AckResponse, PartitionAcks, TopicAcks, ACK_GAP};

const NOT_LEADER_OR_FOLLOWER: i16 = 6;

/// An acknowledgement. Besides the application's own there are two it never sees: offsets
/// without a record for it (GAP) and acquired offsets whose batch did not arrive whole
/// (released for redelivery).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ack {
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
pub(crate) struct Pending {
    pub ack: Ack,
    /// The broker the record was acquired from: acquisitions live in its share session.
    pub leader: i32,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Held {
    pub leader: i32,
}

/// Acknowledgements grouped by partition.
pub(crate) type PartitionPending = Vec<(Tp, Vec<(i64, Pending)>)>;

/// The acknowledgements of one ShareAcknowledge.
pub(crate) struct AckRequest {
    pub leader: i32,
    /// The session epoch at planning time; 0 if there is no session to send on.
    pub epoch: i32,
    pub acks: PartitionPending,
}

/// The request form of `acks`; `extra` partitions are listed without acknowledgements (a
/// fetch adding them to its session).
pub(crate) fn topic_acks(acks: &[(Tp, Vec<(i64, Pending)>)], extra: &[Tp]) -> TopicAcks {
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

impl State {
    /// Queues `kind` for a held record. Accept/Release/Reject end the hold; Renew keeps it.
    pub fn acknowledge(&mut self, record: &RecordId, kind: AckKind) -> Result<()> {
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

    /// Takes pending acknowledgements that `filter` selects, grouped by partition.
    pub fn take_pending(
        &mut self,
        mut filter: impl FnMut(&Tp, &Pending) -> bool,
    ) -> PartitionPending {
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

    /// The acknowledgements that can ride on the fetch of `delta` to `leader`. A fetch opening
    /// a session may carry none, and renewals go in ShareAcknowledge (a ShareFetch with
    /// IsRenewAck may not fetch).
    pub fn take_piggyback(&mut self, leader: i32, delta: &SessionDelta) -> PartitionPending {
        if delta.epoch == 0 {
            return Vec::new();
        }
        self.take_pending(|tp, p| {
            p.leader == leader && delta.want.contains(tp) && p.ack != Ack::User(AckKind::Renew)
        })
    }

    /// Whether acknowledgements must go out before this round's fetches: renewals, and acks
    /// whose partition is not fetched from the leader that holds them.
    pub fn must_flush(&self, desired: &BTreeMap<i32, BTreeSet<Tp>>) -> bool {
        self.pending.iter().any(|(tp, offsets)| {
            offsets.values().any(|p| {
                p.ack == Ack::User(AckKind::Renew)
                    || !desired.get(&p.leader).is_some_and(|s| s.contains(tp))
            })
        })
    }

    pub fn holds_anything_from(&self, leader: i32) -> bool {
        self.held
            .values()
            .any(|m| m.values().any(|h| h.leader == leader))
            || self
                .pending
                .values()
                .any(|m| m.values().any(|p| p.leader == leader))
    }

    /// Records the outcome of acknowledgements; internal ones (gaps, auto-releases) only log.
    pub fn settle(&mut self, acks: &[(i64, Pending)], tp: &Tp, error: Option<&Error>) {
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
                    // A failed renewal means the lock is gone: the record is no longer ours.
                    if kind == AckKind::Renew {
                        if let Some(h) = self.held.get_mut(tp) {
                            h.remove(offset);
                        }
                    }
                    let record = self.meta.record_id(tp, *offset);
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

    /// Settles every acknowledgement of `acks` as failed with `e`.
    pub fn fail_all(&mut self, acks: &PartitionPending, e: &Error) {
        for (tp, a) in acks {
            self.settle(a, tp, Some(e));
        }
    }

    /// Takes every pending acknowledgement, one request per leader; with `close`, also one for
    /// each open session without any, to close it.
    pub fn ack_requests(&mut self, close: bool) -> Vec<AckRequest> {
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
            for leader in self.sessions.open() {
                by_leader.entry(leader).or_default();
            }
        }
        by_leader
            .into_iter()
            .map(|(leader, acks)| AckRequest {
                leader,
                epoch: self.sessions.epoch(leader),
                acks,
            })
            .collect()
    }

    /// The ShareAcknowledge body for `req`; epoch -1 with `close`.
    pub fn encode_ack(&self, req: &AckRequest, close: bool) -> BytesMut {
        let renew = req
            .acks
            .iter()
            .any(|(_, a)| a.iter().any(|(_, p)| p.ack == Ack::User(AckKind::Renew)));
        wire::encode_share_ack(
            self.ack_version,
            &self.cfg.group_id,
            &self.member_id,
            if close { -1 } else { req.epoch },
            renew,
            &topic_acks(&req.acks, &[]),
        )
    }

    /// `req` has no session to go in: the records it names were released with that session.
    pub fn ack_unsendable(&mut self, req: &AckRequest) {
        let e = Error::SessionLost(format!(
            "no share session open on broker {}; the records it handed out were released",
            req.leader
        ));
        self.fail_all(&req.acks, &e);
    }

    /// `req` was not answered (`e`): its outcome is unknown and the session is lost.
    pub fn ack_failed(&mut self, req: &AckRequest, e: &Error) {
        self.fail_all(&req.acks, e);
        self.reset_session(req.leader, e);
    }

    /// Applies the broker's answer to `req`: per-partition outcomes into the report, the
    /// session epoch, lock duration and leader changes.
    pub fn handle_ack_response(
        &mut self,
        req: AckRequest,
        close: bool,
        peer: &str,
        resp: AckResponse,
    ) {
        let AckRequest {
            leader,
            epoch,
            acks,
        } = req;
        if resp.error_code != 0 {
            let e = Error::broker(
                peer,
                "ShareAcknowledge",
                resp.error_code,
                format!("group {}", self.cfg.group_id),
                resp.error_message.as_deref(),
            );
            self.fail_all(&acks, &e);
            self.reset_session(leader, &e);
            return;
        }
        self.sessions.acknowledged(leader, epoch, close);
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
                (
                    (p.topic_id, p.partition),
                    (p.error_code, p.error_message, p.leader_id),
                )
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
                    Some(Error::broker(
                        peer,
                        "ShareAcknowledge",
                        *code,
                        format!("partition {}-{}", self.meta.topic_name(&tp.0), tp.1),
                        msg.as_deref(),
                    ))
                }
                _ => None,
            };
            self.settle(a, tp, err.as_ref());
        }
    }

    /// Hands over the report and starts a new one.
    pub fn take_report(&mut self) -> AckReport {
        std::mem::take(&mut self.report)
    }
}

/// Sends all pending acknowledgements (ShareAcknowledge, one per leader: all written before
/// any response is read); with `close`, closes every share session (epoch -1).
pub(crate) async fn send(links: &mut Links, st: &mut State, close: bool) {
    let version = st.ack_version;
    let mut sent = Vec::new();
    for req in st.ack_requests(close) {
        if req.epoch == 0 || !links.conns.contains_key(&req.leader) {
            st.ack_unsendable(&req);
            continue;
        }
        let body = st.encode_ack(&req, close);
        let conn = links.conns.get_mut(&req.leader).expect("checked above");
        match conn.send(ApiKey::ShareAcknowledge, version, &body).await {
            Ok(correlation_id) => sent.push((req, correlation_id)),
            Err(e) => {
                st.ack_failed(&req, &e);
                links.conns.remove(&req.leader);
            }
        }
    }

    for (req, correlation_id) in sent {
        let conn = links.conns.get_mut(&req.leader).expect("sent on it");
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
        match resp {
            Ok(resp) => st.handle_ack_response(req, close, &peer, resp),
            Err(e) => {
                st.ack_failed(&req, &e);
                links.conns.remove(&req.leader);
            }
        }
    }
}
