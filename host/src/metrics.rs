//! Prometheus metrics. Every series carries `tenant` and `pipeline`; per-message series also
//! `topic`. Only consumer lag has a `partition` label: the assignment bounds it.
//!
//! Handles are created once per partition worker and pipeline, so the per-message cost is a few
//! atomic adds, not a registry lookup.

use crate::outcome::{CallEnd, Outcome, TrapKind};
use crate::policy::Action;
use crate::stats::{tallied, Stats};
use ::metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use anyhow::{Context, Result};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Handler duration buckets, in seconds: 10 µs (a small Rust guest) to 10 s (a deadline).
const DURATION_BUCKETS: &[f64] = &[
    0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0,
];

/// Installs the process-wide recorders (once): Prometheus when `prometheus` (returning the
/// handle that renders it), and `otel` (OpenTelemetry export) beside it. Series created before
/// this go nowhere, so it runs before any pipeline starts.
pub fn install(
    prometheus: bool,
    otel: Option<crate::telemetry::OtelMetrics>,
) -> Result<Option<PrometheusHandle>> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let prometheus = match prometheus {
        true => Some(
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(
                        "ackbar_handler_duration_seconds".into(),
                    ),
                    DURATION_BUCKETS,
                )
                .context("configuring histogram buckets")?
                .build_recorder(),
        ),
        false => None,
    };
    let handle = prometheus.as_ref().map(|p| p.handle());
    let installed = match (prometheus, otel) {
        (Some(prometheus), Some(otel)) => ::metrics::set_global_recorder(
            metrics_util::layers::FanoutBuilder::default()
                .add_recorder(prometheus)
                .add_recorder(otel)
                .build(),
        )
        .map_err(|e| e.to_string()),
        (Some(prometheus), None) => {
            ::metrics::set_global_recorder(prometheus).map_err(|e| e.to_string())
        }
        (None, Some(otel)) => ::metrics::set_global_recorder(otel).map_err(|e| e.to_string()),
        (None, None) => return Ok(None),
    };
    installed
        .map_err(anyhow::Error::msg)
        .context("installing the metrics recorder")?;
    describe();
    let _ = HANDLE.set(handle.clone());
    Ok(handle)
}

/// Bucket boundaries of the histograms that have their own, by name.
pub(crate) fn histogram_boundaries() -> std::collections::HashMap<&'static str, Vec<f64>> {
    [("ackbar_handler_duration_seconds", DURATION_BUCKETS.to_vec())].into()
}

fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "ackbar_messages_total",
        "Handler calls, by outcome: ok, error, trap, interrupt."
    );
    describe_counter!(
        "ackbar_traps_total",
        "Handler traps, by kind: panic, deadline, memory-limit, stack-overflow, fuel, other."
    );
    describe_counter!(
        "ackbar_actions_total",
        "What the ack policy did with each call, by action: commit, redeliver, reject, nothing."
    );
    describe_counter!(
        "ackbar_redeliveries_total",
        "Messages delivered again after a nack (Ackbar redelivers from memory instead of seeking)."
    );
    describe_counter!(
        "ackbar_dead_letters_total",
        "Messages written to the dead-letter topic."
    );
    describe_counter!(
        "ackbar_dead_letter_errors_total",
        "Failed dead-letter writes (each is retried; the offset waits)."
    );
    describe_counter!(
        "ackbar_exhausted_total",
        "Messages that used up max_attempts."
    );
    describe_histogram!(
        "ackbar_handler_duration_seconds",
        Unit::Seconds,
        "Duration of one handle call."
    );
    describe_gauge!(
        "ackbar_in_flight",
        "Messages being handled (including waiting for redelivery)."
    );
    describe_gauge!(
        "ackbar_tenant_calls_running",
        "Guest calls running now over all the tenant's pipelines (limit: max_instances)."
    );
    describe_gauge!(
        "ackbar_tenant_in_flight",
        "Messages received and not yet settled over all the tenant's pipelines (limit: max_in_flight)."
    );
    describe_counter!(
        "ackbar_pipeline_restarts_total",
        "Restarts of a pipeline that failed to start or crashed."
    );
    describe_counter!(
        "ackbar_trap_pauses_total",
        "Pauses before a call because the partition's previous calls trapped in a row (tenant limit pause_after_traps)."
    );
    describe_gauge!(
        "ackbar_partitions_paused",
        "Partitions paused on a message that used up max_attempts with no dead-letter topic."
    );
    describe_counter!(
        "ackbar_output_records_total",
        "Records published to output topics (at least once: acknowledged by the broker; exactly once: in a committed transaction), by topic."
    );
    describe_counter!(
        "ackbar_output_bytes_total",
        "Key and value bytes of the records in ackbar_output_records_total, by topic."
    );
    describe_counter!(
        "ackbar_send_errors_total",
        "producer.send calls refused to the guest, by reason: undeclared-topic, over-limit, invalid."
    );
    describe_counter!(
        "ackbar_output_write_errors_total",
        "Failed writes of an attempt's outputs (each is retried; the offset waits)."
    );
    describe_counter!(
        "ackbar_transactions_total",
        "Transactions of exactly-once pipelines, by result: committed, aborted."
    );
    describe_histogram!(
        "ackbar_transaction_commit_seconds",
        Unit::Seconds,
        "Duration of one transaction commit (offsets and commit calls)."
    );
    describe_counter!(
        "ackbar_batch_calls_total",
        "handle-batch calls (plugins of world batch-handler)."
    );
    describe_counter!(
        "ackbar_batched_messages_total",
        "Messages taken by handle-batch calls; divided by ackbar_batch_calls_total, the mean batch."
    );
    describe_counter!("ackbar_commits_total", "Successful offset commits.");
    describe_counter!(
        "ackbar_commit_errors_total",
        "Failed offset commits (retried on the next tick)."
    );
    describe_gauge!("ackbar_consumer_lag", "Messages between the committed offset and the end of the partition (librdkafka statistics).");
    describe_counter!("ackbar_reloads_total", "Plugin versions swapped in.");
    describe_counter!(
        "ackbar_reload_refusals_total",
        "Plugin versions refused (did not load or failed the smoke call)."
    );
    describe_counter!(
        "ackbar_instances_created_total",
        "Plugin instances created (a trap or interrupt replaces one)."
    );
    describe_counter!(
        "ackbar_share_acquired_total",
        "Records a share pipeline acquired from the broker (each delivery counts)."
    );
    describe_counter!(
        "ackbar_share_acknowledged_total",
        "Share-group acknowledgements the broker applied, by kind: accept, release, reject, renew."
    );
    describe_counter!(
        "ackbar_share_lock_expiries_total",
        "Records whose acquisition lock ran out before their acknowledgement was applied (the broker delivers them again)."
    );
}

/// The series of a share pipeline's acquisitions and acknowledgements.
pub struct ShareMetrics {
    /// `ackbar_share_acquired_total`.
    pub acquired: Counter,
    /// `ackbar_share_acknowledged_total{kind="accept"}`.
    pub accepted: Counter,
    /// `ackbar_share_acknowledged_total{kind="release"}`.
    pub released: Counter,
    /// `ackbar_share_acknowledged_total{kind="reject"}`.
    pub rejected: Counter,
    /// `ackbar_share_acknowledged_total{kind="renew"}`.
    pub renewed: Counter,
    /// `ackbar_share_lock_expiries_total`.
    pub lock_expiries: Counter,
}

impl ShareMetrics {
    /// The share series of `pipeline` of `tenant`.
    pub fn new(tenant: &str, pipeline: &str) -> Self {
        let labels = [
            ("tenant", tenant.to_string()),
            ("pipeline", pipeline.to_string()),
        ];
        let acknowledged = |kind: &'static str| {
            let mut l = labels.to_vec();
            l.push(("kind", kind.to_string()));
            counter!("ackbar_share_acknowledged_total", &l)
        };
        ShareMetrics {
            acquired: counter!("ackbar_share_acquired_total", &labels),
            accepted: acknowledged("accept"),
            released: acknowledged("release"),
            rejected: acknowledged("reject"),
            renewed: acknowledged("renew"),
            lock_expiries: counter!("ackbar_share_lock_expiries_total", &labels),
        }
    }
}

/// Per-message series of one partition worker.
pub struct MessageMetrics {
    ok: Counter,
    error: Counter,
    trap: Counter,
    interrupt: Counter,
    traps: [Counter; 6],
    commit: Counter,
    redeliver: Counter,
    reject: Counter,
    nothing: Counter,
    duration: Histogram,
    /// `ackbar_redeliveries_total`: deliveries whose verdict is a redelivery.
    pub redeliveries: Counter,
    /// `ackbar_dead_letters_total`: dead letters the broker acknowledged.
    pub dead_letters: Counter,
    /// `ackbar_dead_letter_errors_total`: failed dead-letter writes, each retried.
    pub dead_letter_errors: Counter,
    /// `ackbar_exhausted_total`: deliveries that used up `max_attempts`.
    pub exhausted: Counter,
    /// `ackbar_trap_pauses_total`: waits before a call because `pause_after_traps` calls in a row
    /// trapped.
    pub trap_pauses: Counter,
    /// `ackbar_batch_calls_total`: `handle-batch` calls.
    pub batch_calls: Counter,
    /// `ackbar_batched_messages_total`: messages those calls took.
    pub batched_messages: Counter,
    /// Deliveries of a batch that returned and committed, counted by
    /// [`record_in_run`](Self::record_in_run) and not yet added to `ok` and `commit`.
    ok_commits_in_run: AtomicU64,
}

impl MessageMetrics {
    /// The series of `topic` in one pipeline, counted in the pipeline's `stats` too. Labels are
    /// resolved here, once per partition worker, so recording a message costs a few atomic adds.
    pub fn new(tenant: &str, pipeline: &str, topic: &str, stats: &Stats) -> Self {
        let base = [
            ("tenant", tenant.to_string()),
            ("pipeline", pipeline.to_string()),
            ("topic", topic.to_string()),
        ];
        let with = |key: &'static str, value: &'static str| {
            let mut labels = base.to_vec();
            labels.push((key, value.to_string()));
            labels
        };
        let outcome = |v, total| {
            tallied(
                counter!("ackbar_messages_total", &with("outcome", v)),
                total,
            )
        };
        let action = |v: Action, total| {
            tallied(
                counter!("ackbar_actions_total", &with("action", v.name())),
                total,
            )
        };
        let trap = |kind: TrapKind| counter!("ackbar_traps_total", &with("kind", kind.name()));
        let base_tallied = |name: &'static str, total| tallied(counter!(name, &base), total);
        MessageMetrics {
            ok: outcome("ok", &stats.ok),
            error: outcome("error", &stats.errors),
            trap: outcome("trap", &stats.traps),
            interrupt: outcome("interrupt", &stats.interrupts),
            traps: TrapKind::ALL.map(trap),
            commit: action(Action::Commit, &stats.commit_actions),
            redeliver: action(Action::Redeliver, &stats.redeliver_actions),
            reject: action(Action::Reject, &stats.reject_actions),
            nothing: action(Action::Nothing, &stats.nothing_actions),
            duration: histogram!("ackbar_handler_duration_seconds", &base),
            redeliveries: counter!("ackbar_redeliveries_total", &base),
            dead_letters: base_tallied("ackbar_dead_letters_total", &stats.dead_letters),
            dead_letter_errors: base_tallied(
                "ackbar_dead_letter_errors_total",
                &stats.dead_letter_errors,
            ),
            exhausted: counter!("ackbar_exhausted_total", &base),
            trap_pauses: counter!("ackbar_trap_pauses_total", &base),
            batch_calls: base_tallied("ackbar_batch_calls_total", &stats.batch_calls),
            batched_messages: base_tallied(
                "ackbar_batched_messages_total",
                &stats.batched_messages,
            ),
            ok_commits_in_run: AtomicU64::new(0),
        }
    }

    /// [`record`](Self::record) for a delivery of a batch: one that returned and committed,
    /// nearly every one, is added to its two counters with the rest of its run of settled
    /// messages ([`finish_run`](Self::finish_run)) instead of on its own. Its duration is its
    /// own, so the histogram still gets it now.
    pub fn record_in_run(&self, outcome: &Outcome, action: Action, elapsed: Duration) {
        if matches!(outcome.end, CallEnd::Returned(_)) && action == Action::Commit {
            self.ok_commits_in_run.fetch_add(1, Ordering::Relaxed);
            self.duration.record(elapsed.as_secs_f64());
        } else {
            self.record(outcome, action, elapsed);
        }
    }

    /// Adds the deliveries [`record_in_run`](Self::record_in_run) counted to the series: the
    /// worker does it where it finishes a run of settled messages, before anything that can
    /// wait, so the series never lag behind by more than a run.
    pub fn finish_run(&self) {
        let count = self.ok_commits_in_run.swap(0, Ordering::Relaxed);
        if count > 0 {
            self.ok.increment(count);
            self.commit.increment(count);
        }
    }

    /// Counts one delivery: its outcome (`ackbar_messages_total`, and `ackbar_traps_total` by kind
    /// for a trap), its action (`ackbar_actions_total`) and its duration
    /// (`ackbar_handler_duration_seconds`).
    pub fn record(&self, outcome: &Outcome, action: Action, elapsed: Duration) {
        match &outcome.end {
            CallEnd::Returned(_) => self.ok.increment(1),
            CallEnd::Failed { .. } => self.error.increment(1),
            CallEnd::Trapped { kind, .. } => {
                self.trap.increment(1);
                self.traps[trap_index(*kind)].increment(1);
            }
            CallEnd::Interrupted(_) => self.interrupt.increment(1),
        }
        match action {
            Action::Commit => self.commit.increment(1),
            Action::Redeliver => self.redeliver.increment(1),
            Action::Reject => self.reject.increment(1),
            Action::Nothing => self.nothing.increment(1),
        }
        self.duration.record(elapsed.as_secs_f64());
    }
}

impl Drop for MessageMetrics {
    /// A worker that stops mid-run still counts what it handled.
    fn drop(&mut self) {
        self.finish_run();
    }
}

fn trap_index(kind: TrapKind) -> usize {
    TrapKind::ALL
        .iter()
        .position(|k| *k == kind)
        .expect("ALL lists every kind")
}

/// A pipeline's output series: what it publishes and what its guests were refused.
pub struct OutputMetrics {
    labels: [(&'static str, String); 2],
    /// Records and bytes per output topic, created on first use (topics are bounded by the
    /// pipeline's `outputs`).
    by_topic: std::sync::Mutex<std::collections::HashMap<String, (Counter, Counter)>>,
    undeclared_topic: Counter,
    over_limit: Counter,
    invalid: Counter,
    /// `ackbar_output_write_errors_total`.
    pub write_errors: Counter,
    /// `ackbar_transactions_total{result="committed"}`.
    pub transactions_committed: Counter,
    /// `ackbar_transactions_total{result="aborted"}`.
    pub transactions_aborted: Counter,
    /// `ackbar_transaction_commit_seconds`.
    pub transaction_commit: Histogram,
}

impl OutputMetrics {
    /// The output series of `pipeline` of `tenant`.
    pub fn new(tenant: &str, pipeline: &str) -> Self {
        let labels = [
            ("tenant", tenant.to_string()),
            ("pipeline", pipeline.to_string()),
        ];
        let with = |key: &'static str, value: &str| {
            let mut l = labels.to_vec();
            l.push((key, value.to_string()));
            l
        };
        OutputMetrics {
            undeclared_topic: counter!(
                "ackbar_send_errors_total",
                &with("reason", "undeclared-topic")
            ),
            over_limit: counter!("ackbar_send_errors_total", &with("reason", "over-limit")),
            invalid: counter!("ackbar_send_errors_total", &with("reason", "invalid")),
            write_errors: counter!("ackbar_output_write_errors_total", &labels),
            transactions_committed: counter!(
                "ackbar_transactions_total",
                &with("result", "committed")
            ),
            transactions_aborted: counter!("ackbar_transactions_total", &with("result", "aborted")),
            transaction_commit: histogram!("ackbar_transaction_commit_seconds", &labels),
            by_topic: Default::default(),
            labels,
        }
    }

    /// Counts sends refused to the guest during one call.
    pub fn refused(&self, refused: &crate::outputs::SendRefusals) {
        self.undeclared_topic
            .increment(refused.undeclared_topic.into());
        self.over_limit.increment(refused.over_limit.into());
        self.invalid.increment(refused.invalid.into());
    }

    /// Counts `records` of `bytes` published to `topic`.
    pub fn published(&self, topic: &str, records: u64, bytes: u64) {
        let mut by_topic = self.by_topic.lock().unwrap_or_else(|e| e.into_inner());
        Self::count(&self.labels, &mut by_topic, topic, records, bytes);
    }

    /// Counts one attempt's written outputs (key and value bytes), under one lock.
    pub fn published_records(&self, records: &[crate::outputs::OutputRecord]) {
        let mut by_topic = self.by_topic.lock().unwrap_or_else(|e| e.into_inner());
        for r in records {
            let bytes = r.key.as_ref().map_or(0, Vec::len) + r.payload.as_ref().map_or(0, Vec::len);
            Self::count(&self.labels, &mut by_topic, &r.topic, 1, bytes as u64);
        }
    }

    fn count(
        labels: &[(&'static str, String); 2],
        by_topic: &mut std::collections::HashMap<String, (Counter, Counter)>,
        topic: &str,
        records: u64,
        bytes: u64,
    ) {
        if !by_topic.contains_key(topic) {
            let mut l = labels.to_vec();
            l.push(("topic", topic.to_string()));
            let series = (
                counter!("ackbar_output_records_total", &l),
                counter!("ackbar_output_bytes_total", &l),
            );
            by_topic.insert(topic.to_string(), series);
        }
        let (r, b) = &by_topic[topic];
        r.increment(records);
        b.increment(bytes);
    }
}

/// Per-pipeline series, and the pipeline's [`Stats`] that its counters add to.
pub struct PipelineMetrics {
    tenant: String,
    pipeline: String,
    stats: Stats,
    /// `ackbar_in_flight`: messages taken from the partitions and not finished yet, those waiting
    /// for a redelivery included.
    pub in_flight: Gauge,
    /// `ackbar_partitions_paused`: partitions stopped on a message that used up `max_attempts`
    /// with no dead-letter topic.
    pub paused: Gauge,
    /// `ackbar_commits_total`: successful commit requests (one may cover several partitions).
    pub commits: Counter,
    /// `ackbar_commit_errors_total`: failed commit requests; the next tick retries them.
    pub commit_errors: Counter,
    /// `ackbar_reloads_total`: plugin versions swapped in, copied from the plugin slot.
    pub reloads: Counter,
    /// `ackbar_reload_refusals_total`: plugin versions refused, copied from the plugin slot.
    pub reload_refusals: Counter,
    /// `ackbar_instances_created_total`: instances created by every plugin version, copied from
    /// the plugin slot.
    pub instances_created: Counter,
    /// `ackbar_partitions_assigned_total`: partitions the group gave the pipeline; how often
    /// its partitions move shows in it and the next one.
    pub partitions_assigned: Counter,
    /// `ackbar_partitions_revoked_total`: partitions a rebalance took away.
    pub partitions_revoked: Counter,
}

impl PipelineMetrics {
    /// The per-pipeline series of `pipeline` of `tenant`.
    pub fn new(tenant: &str, pipeline: &str) -> Self {
        let labels = [
            ("tenant", tenant.to_string()),
            ("pipeline", pipeline.to_string()),
        ];
        let stats = Stats::default();
        PipelineMetrics {
            tenant: tenant.to_string(),
            pipeline: pipeline.to_string(),
            commits: tallied(counter!("ackbar_commits_total", &labels), &stats.commits),
            commit_errors: tallied(
                counter!("ackbar_commit_errors_total", &labels),
                &stats.commit_errors,
            ),
            partitions_assigned: tallied(
                counter!("ackbar_partitions_assigned_total", &labels),
                &stats.partitions_assigned,
            ),
            partitions_revoked: tallied(
                counter!("ackbar_partitions_revoked_total", &labels),
                &stats.partitions_revoked,
            ),
            stats,
            in_flight: gauge!("ackbar_in_flight", &labels),
            paused: gauge!("ackbar_partitions_paused", &labels),
            reloads: counter!("ackbar_reloads_total", &labels),
            reload_refusals: counter!("ackbar_reload_refusals_total", &labels),
            instances_created: counter!("ackbar_instances_created_total", &labels),
        }
    }

    /// The per-message series of `topic`, with this pipeline's labels.
    pub fn message_metrics(&self, topic: &str) -> MessageMetrics {
        MessageMetrics::new(&self.tenant, &self.pipeline, topic, &self.stats)
    }

    /// The pipeline's totals, read from the counters above.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Records consumer lag from librdkafka's periodic statistics.
    pub fn lag(&self, topic: &str, partition: i32, lag: i64) {
        gauge!(
            "ackbar_consumer_lag",
            "tenant" => self.tenant.clone(),
            "pipeline" => self.pipeline.clone(),
            "topic" => topic.to_string(),
            "partition" => partition.to_string()
        )
        .set(lag as f64);
    }
}
