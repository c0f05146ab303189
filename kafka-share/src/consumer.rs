//! The share consumer itself: joining the group, the poll / acknowledge / flush / close
//! cycle, and the connections it drives; the protocol decisions are in `state` and the
//! modules that extend it (`fetch`, `acks`, `session`, `metadata`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::acks;
use crate::conn::{bootstrap_addrs, connect_any, Conn, ConnOpts};
use crate::error::{Error, Result};
use crate::fetch;
use crate::membership::{Command, MemberState, Membership};
use crate::metadata;
use crate::state::State;
use crate::types::{AckKind, AckReport, AcquiredRecord, RecordId, ShareConsumerConfig};

/// The consumer's connections: the bootstrap connection kept for metadata and one per leader.
pub(crate) struct Links {
    pub bootstrap: Vec<String>,
    pub opts: ConnOpts,
    pub meta_conn: Option<Conn>,
    pub conns: HashMap<i32, Conn>,
}

impl Links {
    /// The connection to broker `leader`, opened at the address `brokers` gives for it.
    pub async fn leader(
        &mut self,
        leader: i32,
        brokers: &HashMap<i32, String>,
    ) -> Result<&mut Conn> {
        if !self.conns.contains_key(&leader) {
            let addr = brokers.get(&leader).cloned().ok_or_else(|| {
                Error::Metadata(format!("broker {leader} is not in the cluster metadata"))
            })?;
            let conn = Conn::connect(&addr, Some(leader), &self.opts).await?;
            self.conns.insert(leader, conn);
        }
        Ok(self.conns.get_mut(&leader).expect("inserted above"))
    }
}

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
    st: State,
    links: Links,
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
            st: State::new(cfg, member_id, fetch_version, ack_version),
            links: Links {
                bootstrap,
                opts,
                meta_conn: Some(conn),
                conns: HashMap::new(),
            },
            member,
            commands,
            task: Some(task),
        };
        consumer.refresh_metadata().await?;
        Ok(consumer)
    }

    /// This member's id in the group (chosen by the client, fixed for its lifetime).
    pub fn member_id(&self) -> &str {
        &self.st.member_id
    }

    /// Whether lock renewal ([`AckKind::Renew`]) is available: ShareAcknowledge v2, Kafka 4.2+
    /// (the group may still disable it with `share.renew.acknowledge.enable=false`).
    pub fn supports_renew(&self) -> bool {
        self.st.ack_version >= 2
    }

    /// Records per fetch and partition from the next `poll` on (at least 1): a caller that
    /// handles a bounded number at once asks for no more than it has room for, so no record
    /// waits under its lock for a free slot.
    pub fn set_max_records(&mut self, max_records: u32) {
        self.st.cfg.max_records = max_records.max(1);
    }

    /// The acquisition lock duration the broker last reported.
    pub fn acquisition_lock_timeout(&self) -> Option<Duration> {
        self.st.lock_timeout
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
            let name = self.st.meta.topic_name(id);
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
                broker: self.links.bootstrap.join(","),
                detail: format!(
                    "lock renewal needs ShareAcknowledge v2 (Kafka 4.2+); the broker offers v{}",
                    self.st.ack_version
                ),
            });
        }
        self.st.acknowledge(record, kind)
    }

    /// Acquires records from the assigned partitions' leaders (one ShareFetch per leader,
    /// sent concurrently), carrying pending acknowledgements.
    ///
    /// Transient trouble (leader moves, lost connections, share-session resets, coordinator
    /// moves) is handled inside and yields fewer or no records; the acknowledgements it
    /// voids show up in the next [`AckReport`]. Errors returned are the ones that need the
    /// caller (authorization, unsupported broker, a stopped membership).
    pub async fn poll(&mut self) -> Result<Vec<AcquiredRecord>> {
        if let Some(e) = self.st.deferred.take() {
            return Err(e);
        }
        self.check_member()?;
        self.drop_interrupted();
        if self.member.borrow().assignment.is_empty() {
            if !self.st.pending.is_empty() {
                acks::send(&mut self.links, &mut self.st, false).await;
            }
            let _ = tokio::time::timeout(self.st.cfg.max_wait, self.member.changed()).await;
            self.check_member()?;
            if self.member.borrow().assignment.is_empty() {
                return Ok(Vec::new());
            }
        }
        let assignment = self.member.borrow().assignment.clone();
        // Batches kept for partitions this member no longer reads are of no more use.
        self.st
            .decoded
            .retain(|(id, p), _| assignment.get(id).is_some_and(|parts| parts.contains(p)));
        if self.st.meta.needs_refresh(&assignment) {
            if let Err(e) = self.refresh_metadata().await {
                tracing::warn!(error = %e, "metadata refresh failed");
            }
        }
        let desired = self.st.meta.by_leader(&assignment);

        // Renewals and acks that cannot ride on this round's fetches go first.
        if self.st.must_flush(&desired) {
            acks::send(&mut self.links, &mut self.st, false).await;
        }
        for leader in self.st.idle_leaders(&desired) {
            self.st.sessions.remove(leader);
            self.links.conns.remove(&leader);
        }

        let records = fetch::round(&mut self.links, &mut self.st, desired).await;
        if let Some(e) = self.st.deferred.take() {
            if records.is_empty() {
                return Err(e);
            }
            self.st.deferred = Some(e);
        }
        Ok(records)
    }

    /// A connection still waiting for a response belongs to a cancelled `poll` or
    /// `flush_acks`: its share session is in an unknown state, so it is closed (the broker
    /// then releases that session's records for redelivery).
    fn drop_interrupted(&mut self) {
        let interrupted: Vec<i32> = self
            .links
            .conns
            .iter()
            .filter(|(_, c)| c.awaiting_response())
            .map(|(l, _)| *l)
            .collect();
        for leader in interrupted {
            let e = Error::SessionLost(format!(
                "a cancelled request left the connection to broker {leader} in an unknown state"
            ));
            self.links.conns.remove(&leader);
            self.st.reset_session(leader, &e);
        }
        if self
            .links
            .meta_conn
            .as_ref()
            .is_some_and(|c| c.awaiting_response())
        {
            self.links.meta_conn = None;
        }
    }

    async fn refresh_metadata(&mut self) -> Result<()> {
        self.st.meta = metadata::refresh(&mut self.links, &self.st.cfg.topics).await?;
        Ok(())
    }

    /// Sends all pending acknowledgements now (ShareAcknowledge, one per broker, concurrently)
    /// and returns the outcome of every acknowledgement since the last report, including the
    /// ones that rode on fetches.
    pub async fn flush_acks(&mut self) -> Result<AckReport> {
        self.drop_interrupted();
        acks::send(&mut self.links, &mut self.st, false).await;
        Ok(self.st.take_report())
    }

    /// Sends pending acknowledgements, closes the share sessions (releasing anything still
    /// held), and leaves the group so that its partitions are reassigned at once. Returns the
    /// outcome of all acknowledgements since the last report.
    pub async fn close(mut self) -> Result<AckReport> {
        self.drop_interrupted();
        acks::send(&mut self.links, &mut self.st, false).await;
        acks::send(&mut self.links, &mut self.st, true).await;
        let timeout = self.st.cfg.request_timeout;
        let (reply, rx) = oneshot::channel();
        let left = if self.commands.send(Command::Leave(reply)).await.is_ok() {
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => Err(Error::MembershipStopped("membership task ended".into())),
                Err(_) => Err(Error::Timeout {
                    broker: "group coordinator".into(),
                    api: "ShareGroupHeartbeat",
                    timeout_ms: timeout.as_millis() as u64,
                }),
            }
        } else {
            Ok(())
        };
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let report = self.st.take_report();
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
}
