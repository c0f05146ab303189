//! What happened, recorded once. Everything a pipeline does that someone may watch is a typed
//! event, and an event's `emit` is the only place that feeds the pipeline's Prometheus series
//! (and through them its `Stats`), its log lines, its [`Health`] and the
//! event stream that `ackbar demo` and the tests read. Workers decide; events record. (A
//! batch's deliveries that returned and committed are counted when the worker finishes their
//! run: [`MessageMetrics::finish_run`].)
//!
//! | event | when |
//! |---|---|
//! | [`DeliveryEvent`] | a handler call on a message ended and was settled |
//! | `BatchCalled`, `TrapCoolDown` | a `handle-batch` call started; a call waits after traps |
//! | `MessageTaken`, `MessageDone` | a message entered a worker; it left, settled or not |
//! | `SettledRun` | a run of a batch's messages left the worker settled |
//! | `Redelivering`, `Paused`, `Resumed` | a message waits for its next delivery, or stops its partition |
//! | `OutputsWritten`, `OutputWriteFailed`, `SendsRefused` | an attempt's outputs reached the broker, or did not |
//! | `DeadLettered`, `DeadLetterFailed` | a dead letter was written, or its write failed |
//! | `OffsetsCommitted`, `CommitFailed` | an at-least-once offset commit |
//! | `TransactionsReady`, `TransactionsUnavailable` | a partition's transactional producer started, or not yet |
//! | `TransactionCommitted`, `TransactionAborted`, `TransactionFailed` | an exactly-once transaction ended |
//! | `Consumed`, `ConsumeFailed` | reading from the broker works again, or failed |
//! | `PartitionsAssigned`, `PartitionsRevoked` | the pipeline's partitions changed |
//! | `ShareAcquired`, `ShareAcknowledged`, `AcknowledgeRefused` | share-group records acquired and acknowledged |

mod commits;
mod delivery;
mod share;
mod worker;
mod writes;

pub(crate) use commits::{
    CommitFailed, OffsetsCommitted, TransactionAborted, TransactionCommitted, TransactionFailed,
    TransactionsReady, TransactionsUnavailable,
};
pub use delivery::DeliveryEvent;
pub(crate) use share::{AcknowledgeRefused, ShareAcknowledged, ShareAcquired};
pub(crate) use worker::{
    BatchCalled, ConsumeFailed, Consumed, MessageDone, MessageTaken, PartitionsAssigned,
    PartitionsRevoked, Paused, Redelivering, Resumed, SettledRun, TrapCoolDown,
};
pub(crate) use writes::{
    DeadLetterFailed, DeadLettered, OutputWriteFailed, OutputsWritten, SendsRefused,
};

use crate::fault_log::FaultLog;
use crate::health::Health;
use crate::metrics::{MessageMetrics, OutputMetrics, PipelineMetrics, ShareMetrics};
use crate::stats::StatsSnapshot;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

/// Receives a [`DeliveryEvent`] for every delivery of every message.
pub type EventSink = UnboundedSender<DeliveryEvent>;

/// Where one pipeline's events are recorded: its series, its fault logs, its readiness and its
/// event stream.
pub(crate) struct Recorder {
    /// Names the tenant and the pipeline in every log line the pipeline writes.
    span: tracing::Span,
    metrics: PipelineMetrics,
    outputs: OutputMetrics,
    /// Only a share-group pipeline has these series.
    share: Option<ShareMetrics>,
    health: Arc<Health>,
    commit_faults: FaultLog,
    consume_faults: FaultLog,
    dead_letter_faults: FaultLog,
    output_faults: FaultLog,
    sink: Option<EventSink>,
    /// The newest consumer lag of each partition, from librdkafka's statistics.
    lags: std::sync::Mutex<std::collections::HashMap<(String, i32), i64>>,
    /// Names for the commit spans.
    tenant: String,
    pipeline: String,
    group: Option<String>,
}

impl Recorder {
    /// The recorder of `pipeline` of `tenant` in consumer group `group`, a share-group pipeline
    /// if `share`.
    pub(crate) fn new(
        tenant: &str,
        pipeline: &str,
        group: Option<&str>,
        share: bool,
        health: Arc<Health>,
        sink: Option<EventSink>,
    ) -> Self {
        let fault_log = |what| FaultLog::new(what, tenant, pipeline);
        Recorder {
            // ERROR level, so any level a filter keeps for Ackbar keeps it too: a warning must
            // name its pipeline. It is entered only to log, never across an await, so it costs
            // nothing per message.
            span: tracing::error_span!("pipeline", tenant, pipeline),
            metrics: PipelineMetrics::new(tenant, pipeline),
            outputs: OutputMetrics::new(tenant, pipeline),
            share: share.then(|| ShareMetrics::new(tenant, pipeline)),
            health,
            commit_faults: fault_log("offset commit"),
            consume_faults: fault_log("consuming"),
            dead_letter_faults: fault_log("dead-letter write"),
            output_faults: fault_log("output write"),
            sink,
            lags: Default::default(),
            tenant: tenant.to_string(),
            pipeline: pipeline.to_string(),
            group: group.map(str::to_string),
        }
    }

    /// Runs `log` (a log line) inside the pipeline's span, so the line names the tenant and the
    /// pipeline.
    pub(crate) fn in_span<R>(&self, log: impl FnOnce() -> R) -> R {
        self.span.in_scope(log)
    }

    /// The span that names the pipeline, for parts that log on their own.
    pub(crate) fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// The series of messages read from `topic`; a worker creates them once.
    pub(crate) fn topic(&self, topic: &str) -> MessageMetrics {
        self.metrics.message_metrics(topic)
    }

    /// Where a worker reading `topic` (whose series are `metrics`) records.
    pub(crate) fn observers<'a>(&'a self, metrics: &'a MessageMetrics) -> Observers<'a> {
        Observers {
            recorder: self,
            topic: metrics,
        }
    }

    /// The pipeline's readiness.
    pub(crate) fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// The pipeline's totals.
    pub(crate) fn stats(&self) -> StatsSnapshot {
        self.metrics.stats().snapshot()
    }

    /// Problems logged once per episode (commits, consuming, output writes), for the summary.
    pub(crate) fn faults_logged(&self) -> u64 {
        self.commit_faults.logged() + self.consume_faults.logged() + self.output_faults.logged()
    }

    /// Consumer lag from librdkafka's periodic statistics.
    pub(crate) fn lag(&self, topic: &str, partition: i32, lag: i64) {
        self.metrics.lag(topic, partition, lag);
        self.lags
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((topic.to_string(), partition), lag);
    }

    /// The summed consumer lag of `partitions`, of those with a figure; `None` before the first
    /// statistics.
    pub(crate) fn lag_of(&self, partitions: &[crate::offsets::TopicPartition]) -> Option<i64> {
        let lags = self.lags.lock().unwrap_or_else(|e| e.into_inner());
        let known: Vec<i64> = partitions
            .iter()
            .filter_map(|tp| lags.get(&(tp.topic.to_string(), tp.partition)).copied())
            .collect();
        (!known.is_empty()).then(|| known.iter().sum())
    }

    /// Copies counters kept by the plugin slot and its instance pools into the series.
    pub(crate) fn plugin_counters(&self, reloads: u64, refusals: u64, instances_created: u64) {
        self.metrics.reloads.absolute(reloads);
        self.metrics.reload_refusals.absolute(refusals);
        self.metrics.instances_created.absolute(instances_created);
    }
}

/// Where one worker's events are recorded: its pipeline's recorder and the series of the topic
/// it reads.
#[derive(Clone, Copy)]
pub(crate) struct Observers<'a> {
    pub(crate) recorder: &'a Recorder,
    pub(crate) topic: &'a MessageMetrics,
}
