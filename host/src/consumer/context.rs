//! State shared by a pipeline's consumer callbacks, partition workers and commit ticker, and the
//! rdkafka `ConsumerContext` that reacts to rebalances and commit results.

use super::partition;
use crate::config::PipelineConfig;
use crate::deadletter::DeadLetterWriter;
use crate::events::EventSink;
use crate::fault_log::FaultLog;
use crate::health::Health;
use crate::metrics::PipelineMetrics;
use crate::offsets::{OffsetTracker, TopicPartition};
use crate::policy::DeliveryRules;
use crate::reload::PluginSlot;
use crate::stats::Stats;
use crate::tenant::TenantBudget;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub(crate) type PipelineConsumer = StreamConsumer<PipelineContext>;

/// A running partition worker.
struct Worker {
    stop: CancellationToken,
    /// Disconnects when the worker has finished (its sender is dropped on exit).
    done: mpsc::Receiver<()>,
}

pub(crate) struct Shared {
    pub config: PipelineConfig,
    pub name: Arc<str>,
    pub tenant: Arc<str>,
    pub metrics: PipelineMetrics,
    pub health: Arc<Health>,
    pub dead_letters: Option<DeadLetterWriter>,
    pub plugin: Arc<PluginSlot>,
    /// Shared with the tenant's other pipelines.
    pub budget: Arc<TenantBudget>,
    pub stats: Stats,
    pub reports: Option<EventSink>,
    pub runtime: tokio::runtime::Handle,
    pub shutdown: CancellationToken,
    /// Cancelled when the pipeline can no longer work (a worker panicked, the consumer hit a
    /// fatal error): its supervisor then restarts it.
    pub crashed: CancellationToken,
    crash_reason: OnceLock<String>,
    pub commit_faults: FaultLog,
    pub consume_faults: FaultLog,
    pub dead_letter_faults: FaultLog,
    tracker: Mutex<OffsetTracker>,
    workers: Mutex<HashMap<TopicPartition, Worker>>,
    consumer: OnceLock<Weak<PipelineConsumer>>,
}

impl Shared {
    pub fn new(
        config: PipelineConfig,
        plugin: Arc<PluginSlot>,
        reports: Option<EventSink>,
        shutdown: CancellationToken,
        dead_letters: Option<DeadLetterWriter>,
        budget: Arc<TenantBudget>,
        health: Arc<Health>,
    ) -> Self {
        let fault_log = |what| FaultLog::new(what, &config.tenant, &config.name);
        let (commit_faults, consume_faults, dead_letter_faults) = (
            fault_log("offset commit"),
            fault_log("consuming"),
            fault_log("dead-letter write"),
        );
        Shared {
            name: Arc::from(config.name.as_str()),
            tenant: Arc::from(config.tenant.as_str()),
            metrics: PipelineMetrics::new(&config.tenant, &config.name),
            health,
            dead_letters,
            config,
            plugin,
            budget,
            stats: Stats::default(),
            reports,
            runtime: tokio::runtime::Handle::current(),
            shutdown,
            crashed: CancellationToken::new(),
            crash_reason: OnceLock::new(),
            commit_faults,
            consume_faults,
            dead_letter_faults,
            tracker: Mutex::new(OffsetTracker::default()),
            workers: Mutex::new(HashMap::new()),
            consumer: OnceLock::new(),
        }
    }

    /// Records the first reason the pipeline cannot go on and signals its supervisor.
    pub fn crash(&self, reason: String) {
        if self.crash_reason.set(reason).is_ok() {
            let reason = self.crash_reason.get().map_or("", String::as_str);
            tracing::error!(tenant = %self.tenant, pipeline = %self.name, "pipeline crashed: {reason}");
        }
        self.crashed.cancel();
    }

    /// How this pipeline settles deliveries.
    pub fn delivery_rules(&self) -> DeliveryRules {
        DeliveryRules {
            policy: self.config.ack_policy,
            max_attempts: self.config.max_attempts,
            dead_letters: self.dead_letters.is_some(),
            backoff: self.config.backoff,
        }
    }

    pub fn crash_reason(&self) -> Option<String> {
        self.crash_reason.get().cloned()
    }

    pub fn tracker(&self) -> MutexGuard<'_, OffsetTracker> {
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_consumer(&self, consumer: &Arc<PipelineConsumer>) {
        let _ = self.consumer.set(Arc::downgrade(consumer));
    }

    pub fn consumer(&self) -> Option<Arc<PipelineConsumer>> {
        self.consumer.get().and_then(Weak::upgrade)
    }

    /// Starts a worker for each newly assigned partition.
    pub fn start_workers_for(self: &Arc<Self>, assigned: &[TopicPartition]) {
        let Some(consumer) = self.consumer() else {
            return;
        };
        for tp in assigned {
            // A partition assigned again without a revoke in between: retire the old worker.
            self.stop_workers(std::slice::from_ref(tp), self.config.drain_timeout);
            self.tracker().assign(tp.clone());
            let Some(queue) = consumer.split_partition_queue(&tp.topic, tp.partition) else {
                tracing::error!(tenant = %self.tenant, pipeline = %self.name, partition = %tp, "cannot split the partition queue");
                continue;
            };
            let stop = self.shutdown.child_token();
            let (done_tx, done) = mpsc::channel();
            self.workers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(
                    tp.clone(),
                    Worker {
                        stop: stop.clone(),
                        done,
                    },
                );
            let shared = self.clone();
            let tp = tp.clone();
            let worker =
                self.runtime
                    .spawn(partition::run(shared.clone(), tp.clone(), queue, stop));
            self.runtime.spawn(async move {
                // A panicking worker would leave its partition assigned and unread forever.
                if let Err(e) = worker.await {
                    if e.is_panic() {
                        shared.crash(format!(
                            "the worker of partition {tp} panicked: {}",
                            panic_text(e)
                        ));
                    }
                }
                drop(done_tx);
            });
        }
    }

    /// Stops the workers of `partitions` and waits (blocking, up to `timeout` in all) for their
    /// in-flight messages to finish. Returns the partitions whose worker did not finish in time.
    pub fn stop_workers(
        &self,
        partitions: &[TopicPartition],
        timeout: Duration,
    ) -> Vec<TopicPartition> {
        let stopping: Vec<(TopicPartition, Worker)> = {
            let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
            partitions
                .iter()
                .filter_map(|tp| workers.remove(tp).map(|w| (tp.clone(), w)))
                .collect()
        };
        for (_, worker) in &stopping {
            worker.stop.cancel();
        }
        let deadline = Instant::now() + timeout;
        let mut late = Vec::new();
        for (tp, worker) in stopping {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Err(mpsc::RecvTimeoutError::Timeout) = worker.done.recv_timeout(left) {
                tracing::warn!(
                    tenant = %self.tenant, pipeline = %self.name, partition = %tp,
                    "in-flight message did not finish within the drain timeout; it stays uncommitted and will be read again"
                );
                late.push(tp);
            }
        }
        late
    }

    /// Copies counters kept elsewhere (the plugin slot, the instance pool) into the metrics.
    pub fn publish_counters(&self) {
        self.metrics
            .reloads
            .absolute(self.plugin.reloads.load(Ordering::Relaxed));
        self.metrics
            .reload_refusals
            .absolute(self.plugin.refusals.load(Ordering::Relaxed));
        self.metrics
            .instances_created
            .absolute(self.plugin.instances_created());
    }

    pub fn assigned_partitions(&self) -> Vec<TopicPartition> {
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Commits the settled offsets of `only` (or of every partition when `None`) and waits for
    /// the broker's answer, so a confirmed offset is never sent again and a failed one is retried
    /// by the next call. Nothing is sent when nothing moved. Blocking: handlers never wait on it
    /// (the commit ticker runs it on a blocking thread).
    ///
    /// Why not `CommitMode::Async`: librdkafka reports the result of an asynchronous commit only
    /// to a configured `offset_commit_cb`, which rdkafka does not set, so failures would go unseen.
    pub fn commit(
        &self,
        consumer: &impl Consumer<PipelineContext>,
        only: Option<&[TopicPartition]>,
    ) {
        if !self.config.ack_policy.commits_explicitly() {
            return;
        }
        let due: Vec<(TopicPartition, i64)> = self
            .tracker()
            .due_commits()
            .into_iter()
            .filter(|(tp, _)| only.is_none_or(|only| only.contains(tp)))
            .collect();
        if due.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (tp, offset) in &due {
            if let Err(e) =
                tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*offset))
            {
                tracing::error!(tenant = %self.tenant, pipeline = %self.name, partition = %tp, "bad commit offset {offset}: {e}");
            }
        }
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                let mut tracker = self.tracker();
                for (tp, offset) in &due {
                    tracker.confirm(tp, *offset);
                }
                self.stats.commits.fetch_add(1, Ordering::Relaxed);
                self.metrics.commits.increment(1);
                self.commit_faults.recovered();
                tracing::debug!(tenant = %self.tenant, pipeline = %self.name, ?due, "committed");
            }
            Err(e) => {
                self.stats.commit_errors.fetch_add(1, Ordering::Relaxed);
                self.metrics.commit_errors.increment(1);
                self.commit_faults.fault(&format!("{e}; will retry"));
            }
        }
    }
}

pub(crate) fn partitions_of(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| TopicPartition::new(e.topic(), e.partition()))
        .collect()
}

/// The rdkafka context of a pipeline's consumer.
pub(crate) struct PipelineContext {
    pub shared: Arc<Shared>,
}

impl ClientContext for PipelineContext {
    /// librdkafka's periodic statistics carry the consumer lag of every assigned partition.
    fn stats(&self, statistics: rdkafka::Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // -1 is librdkafka's internal UA partition and unknown lags.
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.shared.metrics.lag(topic, *partition, p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for PipelineContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let shared = &self.shared;
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let revoked = partitions_of(tpl);
                tracing::info!(tenant = %shared.tenant, pipeline = %shared.name, partitions = ?revoked.iter().map(ToString::to_string).collect::<Vec<_>>(), "partitions revoked");
                shared.stop_workers(&revoked, shared.config.drain_timeout);
                if consumer.assignment_lost() {
                    tracing::warn!(tenant = %shared.tenant, pipeline = %shared.name, "assignment lost: settled offsets of revoked partitions are dropped, not committed");
                } else {
                    shared.commit(consumer, Some(&revoked));
                }
                let mut tracker = shared.tracker();
                for tp in &revoked {
                    tracker.revoke(tp);
                    shared.health.moving(tp);
                }
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => {
                tracing::warn!(tenant = %shared.tenant, pipeline = %shared.name, "rebalance error: {e}");
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let assigned = partitions_of(tpl);
            tracing::info!(tenant = %self.shared.tenant, pipeline = %self.shared.name, partitions = ?assigned.iter().map(ToString::to_string).collect::<Vec<_>>(), "partitions assigned");
            // librdkafka's assign() resets partition queues, so they are split after it.
            self.shared.start_workers_for(&assigned);
            self.shared.health.joined();
        }
    }
}

fn panic_text(e: tokio::task::JoinError) -> String {
    let payload = e.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}
