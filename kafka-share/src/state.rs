//! What the consumer knows, free of I/O: metadata, share sessions, held records, pending
//! acknowledgements and their report. The I/O code sends what this state plans and hands the
//! responses back to it (`fetch`, `acks`), so every decision can be tested on recorded
//! responses without a broker (`state/tests.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::acks::{Held, Pending};
use crate::error::Error;
use crate::fetch::DecodedBatch;
use crate::metadata::Metadata;
use crate::session::Sessions;
use crate::types::{AckReport, ShareConsumerConfig, Tp};

pub(crate) struct State {
    pub cfg: ShareConsumerConfig,
    /// Chosen by the client (KIP-932) and kept for the consumer's lifetime.
    pub member_id: String,
    pub fetch_version: i16,
    pub ack_version: i16,
    pub meta: Metadata,
    pub sessions: Sessions,
    /// Delivered records not yet acknowledged (a Renew keeps them), with the leader whose
    /// share session holds their acquisition.
    pub held: HashMap<Tp, BTreeMap<i64, Held>>,
    /// Acknowledgements not yet sent.
    pub pending: HashMap<Tp, BTreeMap<i64, Pending>>,
    /// Outcomes since the last `flush_acks`/`close`.
    pub report: AckReport,
    /// The last decoded batch of each partition.
    pub decoded: HashMap<Tp, Arc<DecodedBatch>>,
    /// The acquisition lock duration the broker last reported.
    pub lock_timeout: Option<Duration>,
    /// An error the caller must see, kept for the next `poll`.
    pub deferred: Option<Error>,
}

impl State {
    pub fn new(
        cfg: ShareConsumerConfig,
        member_id: String,
        fetch_version: i16,
        ack_version: i16,
    ) -> State {
        State {
            cfg,
            member_id,
            fetch_version,
            ack_version,
            meta: Metadata::default(),
            sessions: Sessions::default(),
            held: HashMap::new(),
            pending: HashMap::new(),
            report: AckReport::default(),
            decoded: HashMap::new(),
            lock_timeout: None,
            deferred: None,
        }
    }

    /// Keeps the first error the caller must act on; transient ones are only logged, since
    /// the next poll retries.
    pub fn note_error(&mut self, e: Error) {
        if e.is_retriable() {
            tracing::warn!(error = %e, "share consumer: transient error");
        } else if self.deferred.is_none() {
            self.deferred = Some(e);
        }
    }

    /// Forgets the share session on `leader` after it was lost: the broker released what we
    /// held there, so held records and acknowledgements for them are void. The caller drops
    /// the connection too when it is in doubt.
    pub fn reset_session(&mut self, leader: i32, reason: &Error) {
        tracing::info!(leader, error = %reason, "share session reset");
        self.sessions.remove(leader);
        for m in self.held.values_mut() {
            m.retain(|_, h| h.leader != leader);
        }
        self.held.retain(|_, m| !m.is_empty());
        let void = self.take_pending(|_, p| p.leader == leader);
        for (tp, acks) in void {
            self.settle(&acks, &tp, Some(reason));
        }
    }

    /// Sessions on brokers that lead none of the `desired` partitions and hold nothing of
    /// ours: they can be dropped.
    pub fn idle_leaders(&self, desired: &BTreeMap<i32, BTreeSet<Tp>>) -> Vec<i32> {
        self.sessions
            .leaders()
            .filter(|l| !desired.contains_key(l) && !self.holds_anything_from(*l))
            .collect()
    }
}

#[cfg(test)]
mod tests;
