//! The partitions a pipeline owns, and the protocol that moves them through their life. Every
//! change of ownership goes through [`Assignments`]; nothing else starts or stops a worker or
//! creates or drops a partition's offset progress.
//!
//! ```text
//!   assign ──► Consuming ──revoke / lost / shutdown──► Draining { until } ──► Revoked
//! ```
//!
//! - **Assign** (after librdkafka's assign, so the partition's queue can be split off): the
//!   partition gets fresh offset progress and a worker, and is `Consuming`. A partition assigned
//!   again without a revoke in between first has its old worker drained.
//! - **Consume**: the worker records each message it takes ([`PartitionProgress::begin`]) and
//!   each that settles ([`PartitionProgress::complete`]) in the partition's progress; the commit
//!   ticker commits the low-watermark of settled messages.
//! - **Revoke** (before librdkafka's unassign): the worker is told to stop and the partition is
//!   `Draining` until its in-flight message finishes or `drain_timeout` passes. Then what settled
//!   is committed synchronously, and the partition is `Revoked`: its progress is dropped.
//! - **Lost** (the group moved on without us: session timeout, fenced): as revoke, but nothing is
//!   committed; the new owner has already started from the last committed offset.
//! - **Shutdown**: every partition drains as on revoke, then one final commit of all of them; the
//!   consumer leaves the group after that.
//! - **Late settlements are dropped**: a worker that finishes after the drain timeout finds no
//!   progress for its partition, so a message settled in an old generation is never committed by
//!   a later one. It stays uncommitted and is read again by the partition's next owner.

use crate::offsets::{OffsetTracker, PartitionProgress, TopicPartition};
use std::collections::HashMap;
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Where an owned partition is in its life. A revoked partition is not owned any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Its worker reads and handles messages.
    Consuming,
    /// Its worker was told to stop; its in-flight message may finish until then.
    Draining { until: Instant },
}

/// One owned partition: its phase and the means to stop and await its worker.
struct Owned {
    /// Tells this ownership apart from a later one of the same partition.
    generation: u64,
    phase: Phase,
    stop: CancellationToken,
    /// Disconnects when the worker has finished (the worker drops its [`WorkerDone`]); taken
    /// by the drain that waits for it.
    done: Option<mpsc::Receiver<()>>,
}

/// Held by a running worker; dropping it tells [`Assignments`] that the worker has finished.
pub(crate) struct WorkerDone(#[allow(dead_code)] mpsc::Sender<()>);

/// How a partition stops being owned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    /// Revoked by a rebalance, or the pipeline shuts down: commit what settled.
    Revoke,
    /// The group took the partition away already: commit nothing.
    Lost,
}

/// Every partition a pipeline owns: its worker and its offset progress.
pub(crate) struct Assignments {
    /// Cancelled at shutdown; every worker's stop token is its child.
    shutdown: CancellationToken,
    /// The pipeline's span, for the log lines of rebalances.
    span: tracing::Span,
    drain_timeout: Duration,
    owned: Mutex<HashMap<TopicPartition, Owned>>,
    generations: std::sync::atomic::AtomicU64,
    progress: Mutex<OffsetTracker>,
}

impl Assignments {
    pub fn new(span: tracing::Span, drain_timeout: Duration, shutdown: CancellationToken) -> Self {
        Assignments {
            shutdown,
            span,
            drain_timeout,
            owned: Mutex::new(HashMap::new()),
            generations: Default::default(),
            progress: Mutex::new(OffsetTracker::default()),
        }
    }

    /// Takes ownership of `tp` with fresh progress and starts its worker: `start` gets the token
    /// that stops the worker and the guard the worker drops when it has finished.
    pub fn assign(&self, tp: &TopicPartition, start: impl FnOnce(CancellationToken, WorkerDone)) {
        // Assigned again without a revoke in between: the old worker's generation ends first.
        self.drain(std::slice::from_ref(tp));
        self.progress().assign(tp.clone());
        let stop = self.shutdown.child_token();
        let (done_tx, done) = mpsc::channel();
        self.owned_map().insert(
            tp.clone(),
            Owned {
                generation: self
                    .generations
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                phase: Phase::Consuming,
                stop: stop.clone(),
                done: Some(done),
            },
        );
        start(stop, WorkerDone(done_tx));
    }

    /// Ends ownership of `partitions`: drains them (blocking, up to the drain timeout in all),
    /// then `commit`s what settled unless the assignment was lost, then drops their progress.
    /// Returns the partitions whose worker did not finish in time.
    pub fn release(
        &self,
        partitions: &[TopicPartition],
        how: Release,
        commit: impl FnOnce(&[TopicPartition]),
    ) -> Vec<TopicPartition> {
        let late = self.drain(partitions);
        match how {
            Release::Revoke => commit(partitions),
            Release::Lost => self.span.in_scope(|| {
                tracing::warn!(
                    "assignment lost: settled offsets of revoked partitions are dropped, not committed"
                )
            }),
        }
        let mut progress = self.progress();
        for tp in partitions {
            progress.revoke(tp);
        }
        late
    }

    /// Releases every owned partition (shutdown).
    pub fn release_all(&self, commit: impl FnOnce(&[TopicPartition])) -> Vec<TopicPartition> {
        let all = self.consuming();
        self.release(&all, Release::Revoke, commit)
    }

    /// Consuming → Draining → gone from the owned map, waiting for each worker until the drain
    /// deadline. Returns the partitions whose worker was still running at the deadline.
    fn drain(&self, partitions: &[TopicPartition]) -> Vec<TopicPartition> {
        let until = Instant::now() + self.drain_timeout;
        type Draining = (TopicPartition, u64, Option<mpsc::Receiver<()>>);
        let draining: Vec<Draining> = {
            let mut owned = self.owned_map();
            partitions
                .iter()
                .filter_map(|tp| {
                    let p = owned.get_mut(tp)?;
                    p.phase = Phase::Draining { until };
                    p.stop.cancel();
                    Some((tp.clone(), p.generation, p.done.take()))
                })
                .collect()
        };
        let mut late = Vec::new();
        for (tp, generation, done) in draining {
            let left = until.saturating_duration_since(Instant::now());
            let timed_out = done.is_some_and(|done| {
                matches!(
                    done.recv_timeout(left),
                    Err(mpsc::RecvTimeoutError::Timeout)
                )
            });
            if timed_out {
                self.span.in_scope(|| tracing::warn!(
                    partition = %tp,
                    "in-flight message did not finish within the drain timeout; it stays uncommitted and will be read again"
                ));
                late.push(tp.clone());
            }
            let mut owned = self.owned_map();
            // A new assignment of the partition may have replaced this one meanwhile.
            if owned.get(&tp).is_some_and(|p| p.generation == generation) {
                owned.remove(&tp);
            }
        }
        late
    }

    /// The partitions being consumed now, sorted.
    pub fn consuming(&self) -> Vec<TopicPartition> {
        let mut consuming: Vec<TopicPartition> = self
            .owned_map()
            .iter()
            .filter(|(_, p)| p.phase == Phase::Consuming)
            .map(|(tp, _)| tp.clone())
            .collect();
        consuming.sort();
        consuming
    }

    /// The offset progress of every owned partition. A partition's progress exists from its
    /// assign to its release; a worker that finds none has lost its partition.
    pub fn progress(&self) -> MutexGuard<'_, OffsetTracker> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on `tp`'s progress if the partition is still owned; `None` if it is not.
    pub fn with_progress<T>(
        &self,
        tp: &TopicPartition,
        f: impl FnOnce(&mut PartitionProgress) -> T,
    ) -> Option<T> {
        self.progress().get_mut(tp).map(f)
    }

    fn owned_map(&self) -> MutexGuard<'_, HashMap<TopicPartition, Owned>> {
        self.owned.lock().unwrap_or_else(|e| e.into_inner())
    }
}
