//! Share-group membership: ShareGroupHeartbeat on the broker's interval from a background
//! task, so that a caller that is slow between polls is not fenced.
//!
//! KIP-932 membership has no revocation step: the assignment in a heartbeat response is the
//! member's assignment from then on, and several members may share a partition.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::{
    FindCoordinatorRequest, ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use uuid::Uuid;

use crate::conn::{connect_any, Conn, ConnOpts};
use crate::error::{Error, Result};

const NOT_COORDINATOR: i16 = 16;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const UNKNOWN_MEMBER_ID: i16 = 25;
const FENCED_MEMBER_EPOCH: i16 = 110;

/// What the membership task publishes to the consumer.
#[derive(Clone, Debug, Default)]
pub(crate) struct MemberState {
    pub member_epoch: i32,
    /// Topic id -> assigned partitions.
    pub assignment: Arc<BTreeMap<Uuid, Vec<i32>>>,
    /// Set when the task stopped on an error it cannot recover from.
    pub stopped: Option<String>,
}

pub(crate) enum Command {
    Leave(oneshot::Sender<Result<()>>),
}

pub(crate) struct Membership {
    pub group_id: String,
    pub member_id: String,
    pub topics: Vec<String>,
    pub bootstrap: Vec<String>,
    pub opts: ConnOpts,
    pub heartbeat_version: i16,
    coordinator: Option<Conn>,
    epoch: i32,
    interval: Duration,
    state: watch::Sender<MemberState>,
}

enum Next {
    /// Heartbeat again after the interval.
    Interval,
    /// Retry soon (coordinator moved or unavailable, connection lost).
    Backoff,
    /// Fenced: rejoin with epoch 0 at once.
    Rejoin,
}

impl Membership {
    pub fn new(
        group_id: String,
        member_id: String,
        topics: Vec<String>,
        bootstrap: Vec<String>,
        opts: ConnOpts,
        heartbeat_version: i16,
    ) -> (Membership, watch::Receiver<MemberState>) {
        let (state, rx) = watch::channel(MemberState::default());
        (
            Membership {
                group_id,
                member_id,
                topics,
                bootstrap,
                opts,
                heartbeat_version,
                coordinator: None,
                epoch: 0,
                interval: Duration::from_secs(5),
                state,
            },
            rx,
        )
    }

    /// Joins the group (member epoch 0), retrying transient errors for up to the request
    /// timeout, so that `ShareConsumer::connect` fails on a real problem only.
    pub async fn join(&mut self) -> Result<()> {
        let deadline = Instant::now() + self.opts.request_timeout;
        loop {
            let err = match self.heartbeat().await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            match self.classify(&err) {
                Next::Backoff | Next::Rejoin if Instant::now() < deadline => {
                    tracing::debug!(error = %err, "joining share group, retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                _ => return Err(err),
            }
        }
    }

    pub fn spawn(mut self, mut commands: mpsc::Receiver<Command>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut next = Instant::now() + self.interval;
            loop {
                tokio::select! {
                    cmd = commands.recv() => match cmd {
                        Some(Command::Leave(reply)) => {
                            let _ = reply.send(self.leave().await);
                            return;
                        }
                        // The consumer is gone without leaving: stop heartbeating.
                        None => return,
                    },
                    _ = tokio::time::sleep_until(next) => {}
                }
                let wait = match self.heartbeat().await {
                    Ok(()) => self.interval,
                    Err(e) => match self.classify(&e) {
                        Next::Interval => self.interval,
                        Next::Backoff => {
                            tracing::warn!(group = %self.group_id, error = %e, "share group heartbeat failed, retrying");
                            self.interval.min(Duration::from_millis(500))
                        }
                        Next::Rejoin => {
                            tracing::warn!(group = %self.group_id, error = %e, "member fenced, rejoining");
                            Duration::ZERO
                        }
                    },
                };
                if let Some(reason) = self.state.borrow().stopped.clone() {
                    tracing::error!(group = %self.group_id, %reason, "share group membership stopped");
                    return;
                }
                next = Instant::now() + wait;
            }
        })
    }

    /// Decides what an error means for membership; publishes fatal errors.
    fn classify(&mut self, e: &Error) -> Next {
        match e {
            Error::Io { .. } | Error::Timeout { .. } => {
                self.coordinator = None;
                Next::Backoff
            }
            Error::Broker { code, .. }
                if *code == NOT_COORDINATOR || *code == COORDINATOR_NOT_AVAILABLE =>
            {
                self.coordinator = None;
                Next::Backoff
            }
            Error::Broker { code, .. } if *code == COORDINATOR_LOAD_IN_PROGRESS => Next::Backoff,
            Error::Broker { code, .. }
                if *code == UNKNOWN_MEMBER_ID || *code == FENCED_MEMBER_EPOCH =>
            {
                // The member lost its partitions; it rejoins with the same member id.
                self.epoch = 0;
                self.state.send_modify(|s| {
                    s.member_epoch = 0;
                    s.assignment = Arc::default();
                });
                Next::Rejoin
            }
            e if e.is_retriable() => Next::Backoff,
            e => {
                let reason = e.to_string();
                self.state.send_modify(|s| {
                    s.stopped = Some(reason);
                    s.assignment = Arc::default();
                });
                Next::Interval
            }
        }
    }

    async fn coordinator(&mut self) -> Result<&mut Conn> {
        if self.coordinator.is_none() {
            let mut conn = connect_any(&self.bootstrap, &self.opts).await?;
            let version =
                conn.version(kafka_protocol::messages::ApiKey::FindCoordinator, (4, 6))?;
            // Share groups live on the group coordinator: key type 0 (GROUP), not 2 (SHARE,
            // which addresses share-partition state on the share coordinator).
            let req = FindCoordinatorRequest::default()
                .with_key_type(0)
                .with_coordinator_keys(vec![StrBytes::from_string(self.group_id.clone())]);
            let resp = conn.call(&req, version).await?;
            let c = resp.coordinators.first().ok_or_else(|| {
                conn.protocol("FindCoordinator", "no coordinator in the response".into())
            })?;
            if c.error_code != 0 {
                return Err(Error::broker(
                    &conn.peer,
                    "FindCoordinator",
                    c.error_code,
                    format!("group {}", self.group_id),
                    c.error_message.as_deref(),
                ));
            }
            let addr = format!("{}:{}", c.host.as_str(), c.port);
            tracing::debug!(group = %self.group_id, node = c.node_id.0, %addr, "found group coordinator");
            self.coordinator = Some(Conn::connect(&addr, Some(c.node_id.0), &self.opts).await?);
        }
        Ok(self.coordinator.as_mut().expect("set above"))
    }

    async fn send_heartbeat(&mut self, epoch: i32) -> Result<ShareGroupHeartbeatResponse> {
        // The subscription goes with the joining heartbeat; later ones send null ("unchanged").
        let subscribed = (epoch == 0).then(|| {
            self.topics
                .iter()
                .map(|t| TopicName(StrBytes::from_string(t.clone())))
                .collect()
        });
        let req = ShareGroupHeartbeatRequest::default()
            .with_group_id(StrBytes::from_string(self.group_id.clone()).into())
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_member_epoch(epoch)
            .with_subscribed_topic_names(subscribed);
        let version = self.heartbeat_version;
        let group = self.group_id.clone();
        let conn = self.coordinator().await?;
        let resp = conn.call(&req, version).await?;
        if resp.error_code != 0 {
            return Err(Error::broker(
                &conn.peer,
                "ShareGroupHeartbeat",
                resp.error_code,
                format!("group {group}"),
                resp.error_message.as_deref(),
            ));
        }
        Ok(resp)
    }

    async fn heartbeat(&mut self) -> Result<()> {
        let resp = self.send_heartbeat(self.epoch).await?;
        if let Some(id) = resp.member_id.as_ref() {
            if id.as_str() != self.member_id {
                tracing::debug!(ours = %self.member_id, theirs = %id.as_str(), "coordinator renamed member");
                self.member_id = id.as_str().to_owned();
            }
        }
        self.epoch = resp.member_epoch;
        if resp.heartbeat_interval_ms > 0 {
            self.interval = Duration::from_millis(resp.heartbeat_interval_ms as u64);
        }
        let epoch = self.epoch;
        self.state.send_if_modified(|s| {
            let mut changed = s.member_epoch != epoch;
            s.member_epoch = epoch;
            if let Some(a) = &resp.assignment {
                let mut map: BTreeMap<Uuid, Vec<i32>> = BTreeMap::new();
                for tp in &a.topic_partitions {
                    let parts = map.entry(tp.topic_id).or_default();
                    parts.extend(&tp.partitions);
                    parts.sort_unstable();
                }
                if *s.assignment != map {
                    tracing::debug!(epoch, assignment = ?map, "new share group assignment");
                    s.assignment = Arc::new(map);
                    changed = true;
                }
            }
            changed
        });
        Ok(())
    }

    /// Leaves the group (member epoch -1) so that the coordinator reassigns at once instead
    /// of after the session timeout.
    async fn leave(&mut self) -> Result<()> {
        if self.epoch == 0 && self.state.borrow().stopped.is_some() {
            return Ok(());
        }
        let r = self.send_heartbeat(-1).await.map(|_| ());
        self.state.send_modify(|s| {
            s.assignment = Arc::default();
            s.stopped = Some("the consumer left the group".into());
        });
        r
    }
}
