//! What one pipeline's parts share: its configuration, plugin, budget, observers and owned
//! partitions, and the offset commit.

use super::assignment::Assignments;
use crate::config::{DeliveryGuarantee, GroupType, PipelineConfig};
use crate::deadletter::DeadLetterWriter;
use crate::events::{CommitFailed, EventSink, OffsetsCommitted, Recorder};
use crate::health::Health;
use crate::offsets::TopicPartition;
use crate::output_writer::OutputWriter;
use crate::outputs::OutputRules;
use crate::policy::DeliveryRules;
use crate::reload::PluginSlot;
use crate::tenant::TenantBudget;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use tokio_util::sync::CancellationToken;

/// The producers a pipeline writes with.
pub(super) struct Writers {
    /// Writes dead letters; `None` without a `dead_letter_topic`.
    pub(super) dead_letters: Option<DeadLetterWriter>,
    /// Writes outputs at least once; `None` without outputs or under exactly-once.
    pub(super) outputs: Option<OutputWriter>,
    /// The cluster's bootstrap servers.
    pub(super) bootstrap: String,
}

/// What a pipeline's rebalance callbacks, partition workers and commit ticker share. Built once
/// per start of the pipeline and never replaced: what changes inside (the plugin version, the
/// owned partitions, the counters) changes behind its own lock or atomic.
pub(super) struct PipelineState {
    /// The pipeline's validated configuration.
    pub(super) config: PipelineConfig,
    /// The pipeline's name, a field of its log lines and metrics.
    pub(super) name: Arc<str>,
    /// The pipeline's tenant.
    pub(super) tenant: Arc<str>,
    /// Where everything the pipeline does is recorded ([`crate::events`]).
    pub(super) recorder: Recorder,
    /// Writes dead letters; `None` without a `dead_letter_topic`.
    pub(super) dead_letters: Option<DeadLetterWriter>,
    /// Writes outputs at least once; `None` without outputs or under exactly-once.
    pub(super) output_writer: Option<OutputWriter>,
    /// What the handler may send, shared by every call.
    pub(super) output_rules: Arc<OutputRules>,
    /// The cluster, for the per-partition transactional producers of an exactly-once pipeline.
    pub(super) bootstrap: String,
    /// The plugin version that handles new messages; hot reload swaps it.
    pub(super) plugin: Arc<PluginSlot>,
    /// Shared with the tenant's other pipelines.
    pub(super) budget: Arc<TenantBudget>,
    /// The runtime the workers run on, for librdkafka's threads to spawn them.
    pub(super) runtime: tokio::runtime::Handle,
    /// Cancelled when the pipeline is told to stop.
    pub(super) shutdown: CancellationToken,
    /// Cancelled when the pipeline can no longer work (a worker panicked, the consumer hit a
    /// fatal error): its supervisor then restarts it.
    pub(super) crashed: CancellationToken,
    crash_reason: OnceLock<String>,
    /// The partitions this pipeline owns, their workers and offset progress.
    pub(super) partitions: Assignments,
}

impl PipelineState {
    /// The state of a pipeline starting with `config`.
    pub(super) fn new(
        config: PipelineConfig,
        plugin: Arc<PluginSlot>,
        reports: Option<EventSink>,
        shutdown: CancellationToken,
        writers: Writers,
        budget: Arc<TenantBudget>,
        health: Arc<Health>,
    ) -> Self {
        let Writers {
            dead_letters,
            outputs: output_writer,
            bootstrap,
        } = writers;
        let share = config.group_type == GroupType::Share;
        let recorder = Recorder::new(
            &config.tenant,
            &config.name,
            config.group_id.as_deref(),
            share,
            health,
            reports,
        );
        let (name, tenant) = (
            Arc::from(config.name.as_str()),
            Arc::from(config.tenant.as_str()),
        );
        let partitions = Assignments::new(
            recorder.span().clone(),
            config.drain_timeout,
            shutdown.clone(),
        );
        PipelineState {
            name,
            tenant,
            recorder,
            output_rules: Arc::new(config.outputs.clone()),
            dead_letters,
            output_writer,
            bootstrap,
            config,
            plugin,
            budget,
            runtime: tokio::runtime::Handle::current(),
            shutdown,
            crashed: CancellationToken::new(),
            crash_reason: OnceLock::new(),
            partitions,
        }
    }

    /// Records the first reason the pipeline cannot go on and signals its supervisor.
    pub(super) fn crash(&self, reason: String) {
        if self.crash_reason.set(reason).is_ok() {
            let reason = self.crash_reason.get().map_or("", String::as_str);
            self.recorder
                .in_span(|| tracing::error!("pipeline crashed: {reason}"));
        }
        self.crashed.cancel();
    }

    /// How this pipeline settles deliveries.
    pub(super) fn delivery_rules(&self) -> DeliveryRules {
        DeliveryRules {
            policy: self.config.ack_policy,
            max_attempts: self.config.max_attempts,
            dead_letters: self.dead_letters.is_some(),
            backoff: self.config.backoff,
        }
    }

    pub(super) fn crash_reason(&self) -> Option<String> {
        self.crash_reason.get().cloned()
    }

    /// Copies counters kept elsewhere (the plugin slot, the instance pool) into the metrics.
    pub(super) fn publish_counters(&self) {
        self.recorder.plugin_counters(
            self.plugin.reloads.load(Ordering::Relaxed),
            self.plugin.refusals.load(Ordering::Relaxed),
            self.plugin.instances_created(),
        );
    }

    /// Commits the settled offsets of `only` (or of every partition when `None`) and waits for
    /// the broker's answer, so a confirmed offset is never sent again and a failed one is retried
    /// by the next call. Nothing is sent when nothing moved. Blocking: handlers never wait on it
    /// (the commit ticker runs it on a blocking thread).
    ///
    /// Why not `CommitMode::Async`: librdkafka reports the result of an asynchronous commit only
    /// to a configured `offset_commit_cb`, which rdkafka does not set, so failures would go unseen.
    pub(super) fn commit<C: ConsumerContext>(
        &self,
        consumer: &impl Consumer<C>,
        only: Option<&[TopicPartition]>,
    ) {
        // Exactly-once pipelines commit offsets inside their transactions only.
        if !self.config.ack_policy.commits_explicitly()
            || self.config.delivery == DeliveryGuarantee::ExactlyOnce
        {
            return;
        }
        let due: Vec<(TopicPartition, i64)> = self
            .partitions
            .progress()
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
                self.recorder.in_span(
                    || tracing::error!(partition = %tp, "bad commit offset {offset}: {e}"),
                );
            }
        }
        let started = std::time::Instant::now();
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                let mut progress = self.partitions.progress();
                for (tp, offset) in &due {
                    progress.confirm(tp, *offset);
                }
                OffsetsCommitted {
                    offsets: &due,
                    took: started.elapsed(),
                }
                .emit(&self.recorder);
            }
            Err(e) => CommitFailed { error: &e }.emit(&self.recorder),
        }
    }
}
