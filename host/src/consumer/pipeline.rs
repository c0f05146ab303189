//! Starting and stopping one pipeline: consumer, driver thread, commit ticker.

use super::commits;
use super::rebalance::{partitions_of, PipelineConsumer, PipelineContext};
use super::share;
use super::state::{PipelineState, Writers};
use crate::config::{DeliveryGuarantee, GroupType, PipelineConfig};
use crate::deadletter::DeadLetterWriter;
use crate::events::{ConsumeFailed, EventSink, PartitionsAssigned};
use crate::health::Health;
use crate::offsets::TopicPartition;
use crate::output_writer::OutputWriter;
use crate::plugin::PluginRuntime;
use crate::reload::{PluginSlot, PluginWatcher, Reloaded};
use crate::stats::StatsSnapshot;
use crate::tenant::TenantBudget;
use anyhow::{bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::{Message as _, Offset, TopicPartitionList};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds and starts pipelines.
pub struct Pipeline;

/// One partition of a running pipeline at one moment.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartitionNow {
    /// The partition's topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The last offset commit the broker confirmed (the next offset to read); `None` before
    /// the first, and for a pipeline that commits in transactions or leaves it to librdkafka.
    pub committed: Option<i64>,
    /// Messages handed to the handler and not settled yet.
    pub in_flight: usize,
    /// From librdkafka's statistics; `None` before the first.
    pub lag: Option<i64>,
    /// Held by the operator (see [`crate::holds`]).
    pub held: bool,
    /// The message it is stuck on, being redelivered or paused.
    pub stuck: Option<crate::health::StuckNow>,
}

/// A running pipeline. Call [`PipelineHandle::shutdown`] to stop it gracefully.
pub struct PipelineHandle {
    shared: Arc<PipelineState>,
    consumer: Option<Arc<PipelineConsumer>>,
    driver: Option<JoinHandle<()>>,
    driver_stop: CancellationToken,
    /// The commit ticker, or a share pipeline's worker.
    background: Option<tokio::task::JoinHandle<()>>,
    watcher: std::sync::Mutex<Option<PluginWatcher>>,
}

impl Pipeline {
    /// Loads the plugin, connects to Kafka and starts consuming, with a budget of its own
    /// (its `tenant_limits`). Must run inside a Tokio runtime.
    pub fn start(
        config: PipelineConfig,
        bootstrap_servers: &str,
        runtime: &PluginRuntime,
        reports: Option<EventSink>,
    ) -> Result<PipelineHandle> {
        let budget = TenantBudget::new(&config.tenant, config.tenant_limits);
        let health = Arc::new(Health::default());
        Self::start_in(config, bootstrap_servers, runtime, reports, budget, health)
    }

    /// Like [`start`](Self::start), sharing `budget` with the tenant's other pipelines and
    /// reporting readiness through `health` (which outlives restarts).
    pub fn start_in(
        config: PipelineConfig,
        bootstrap_servers: &str,
        runtime: &PluginRuntime,
        reports: Option<EventSink>,
        budget: Arc<TenantBudget>,
        health: Arc<Health>,
    ) -> Result<PipelineHandle> {
        let plugin = Arc::new(
            PluginSlot::load(
                &config.tenant,
                &config.name,
                runtime,
                &config.plugin,
                config.limits,
                config.grants.clone(),
                config.smoke_payload.clone(),
            )
            .with_context(|| format!("pipeline '{}'", config.name))?,
        );
        if let Some(canary) = &config.canary {
            plugin
                .set_canary(Some((&canary.path, canary.every)))
                .with_context(|| format!("pipeline '{}': the canary", config.name))?;
        }
        let watcher = if config.watch_plugin {
            Some(
                PluginWatcher::start(plugin.clone())
                    .with_context(|| format!("pipeline '{}'", config.name))?,
            )
        } else {
            None
        };
        tracing::info!(
            tenant = %config.tenant,
            pipeline = %config.name,
            plugin = %config.plugin.display(),
            version = plugin.current().plugin().version(),
            policy = %config.ack_policy,
            group_type = config.group_type.name(),
            topics = ?config.topics,
            "starting pipeline"
        );

        let writers = Writers {
            dead_letters: DeadLetterWriter::for_pipeline(&config, bootstrap_servers)?,
            outputs: OutputWriter::for_pipeline(&config, bootstrap_servers)?,
            bootstrap: bootstrap_servers.to_string(),
        };
        let shared = Arc::new(PipelineState::new(
            config,
            plugin,
            reports,
            CancellationToken::new(),
            writers,
            budget,
            health,
        ));
        if shared.config.group_type == GroupType::Share {
            // The share group's consumer lives on the pipeline's one task, which stops itself
            // (draining, acknowledging, leaving the group) on shutdown.
            let task = shared.runtime.spawn(share::run(shared.clone()));
            return Ok(PipelineHandle {
                shared,
                consumer: None,
                driver: None,
                driver_stop: CancellationToken::new(),
                background: Some(task),
                watcher: std::sync::Mutex::new(watcher),
            });
        }
        let client_config = client_config(&shared.config, bootstrap_servers);
        let consumer: Arc<PipelineConsumer> = Arc::new(
            client_config
                .create_with_context(PipelineContext::new(shared.clone()))
                .with_context(|| {
                    format!("pipeline '{}': creating the Kafka consumer", shared.name)
                })?,
        );
        consumer.context().set_consumer(&consumer);

        let topics: Vec<&str> = shared.config.topics.iter().map(String::as_str).collect();
        // Fail fast, with the address, when the cluster cannot be reached at all.
        if let Err(e) = consumer.fetch_metadata(None, shared.config.connect_timeout) {
            bail!(
                "pipeline '{}': cannot reach Kafka at {bootstrap_servers} within {} ms: {e}",
                shared.name,
                shared.config.connect_timeout.as_millis()
            );
        }
        if shared.config.group_id.is_some() {
            consumer.subscribe(&topics).with_context(|| {
                format!("pipeline '{}': subscribing to {topics:?}", shared.name)
            })?;
        } else {
            assign_all(&shared, &consumer, &topics)?;
        }

        let driver_stop = CancellationToken::new();
        let driver = spawn_driver(shared.clone(), consumer.clone(), driver_stop.clone())?;
        let ticker = shared
            .runtime
            .spawn(commits::ticker(shared.clone(), consumer.clone()));
        Ok(PipelineHandle {
            shared,
            consumer: Some(consumer),
            driver: Some(driver),
            driver_stop,
            background: Some(ticker),
            watcher: std::sync::Mutex::new(watcher),
        })
    }
}

/// Ackbar's `fetch.queue.backoff.ms` unless the pipeline sets it (see `client_config`).
const FETCH_QUEUE_BACKOFF_MS: &str = "20";

/// librdkafka settings: the user's properties, then what the ack policy requires.
fn client_config(config: &PipelineConfig, bootstrap_servers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("auto.offset.reset", "earliest");
    for (key, value) in &config.kafka {
        c.set(key, value);
    }
    c.set("bootstrap.servers", bootstrap_servers);
    c.set("enable.partition.eof", "false");
    if config.delivery == DeliveryGuarantee::ExactlyOnce {
        // Skips aborted input, and makes the fetch of committed offsets wait for a pending
        // transactional commit (KIP-447): a new owner starts where the last transaction ended.
        c.set("isolation.level", "read_committed");
    }
    // The tenant's bound on each partition's prefetch queue: a tenant that stops reading stops
    // fetching instead of growing memory.
    if !config.kafka.contains_key("queued.max.messages.kbytes") {
        c.set(
            "queued.max.messages.kbytes",
            config.tenant_limits.max_queued_kib.to_string(),
        );
    }
    // A full prefetch queue stops fetching for this long. librdkafka's 1,000 ms lets a fast
    // handler empty a full queue and then wait for the rest of the second; 20 ms refills it
    // first, and re-checking a full queue is local (no request to the broker).
    if !config.kafka.contains_key("fetch.queue.backoff.ms") {
        c.set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS);
    }
    // Consumer lag for the metrics comes from librdkafka's statistics.
    if !config.kafka.contains_key("statistics.interval.ms") {
        c.set("statistics.interval.ms", "5000");
    }
    // ACK_FIRST leaves storing and committing to librdkafka; every other policy commits itself.
    let auto_commit = if config.ack_policy.commits_explicitly() {
        "false"
    } else {
        "true"
    };
    match &config.group_id {
        Some(group) => {
            c.set("group.id", group);
            c.set("group.protocol", config.group_protocol.name());
            if let Some(id) = &config.group_instance_id {
                c.set("group.instance.id", id);
            }
            c.set("enable.auto.commit", auto_commit);
            c.set("enable.auto.offset.store", auto_commit);
            c.set(
                "auto.commit.interval.ms",
                config.commit_interval.as_millis().to_string(),
            );
        }
        // Without a group nothing is committed. librdkafka still wants a group id for
        // `assign`; this one is never joined because the pipeline assigns instead of subscribing.
        None => {
            c.set("group.id", format!("ackbar-unjoined-{}", config.name));
            c.set("enable.auto.commit", "false");
        }
    }
    c
}

/// Without a consumer group: read every partition of the topics from `auto.offset.reset`.
fn assign_all(
    shared: &Arc<PipelineState>,
    consumer: &Arc<PipelineConsumer>,
    topics: &[&str],
) -> Result<()> {
    let start = match shared
        .config
        .kafka
        .get("auto.offset.reset")
        .map(String::as_str)
    {
        Some("latest") | Some("largest") | Some("end") => Offset::End,
        _ => Offset::Beginning,
    };
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), METADATA_TIMEOUT)
            .with_context(|| {
                format!(
                    "pipeline '{}': reading metadata of topic {topic}",
                    shared.name
                )
            })?;
        let partitions = metadata
            .topics()
            .first()
            .map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
            .unwrap_or_default();
        if partitions.is_empty() {
            bail!(
                "pipeline '{}': topic {topic} has no partitions (does it exist?)",
                shared.name
            );
        }
        for p in partitions {
            tpl.add_partition_offset(topic, p, start)?;
        }
    }
    consumer.assign(&tpl)?;
    let assigned = partitions_of(&tpl);
    consumer.context().start_consuming(&assigned);
    PartitionsAssigned {
        partitions: &assigned,
    }
    .emit(&shared.recorder);
    Ok(())
}

/// Polls the consumer's main queue on a dedicated thread. That is where librdkafka runs the
/// rebalance and commit callbacks; a revoke blocks there while partitions drain, so it must not
/// hold an executor thread.
fn spawn_driver(
    shared: Arc<PipelineState>,
    consumer: Arc<PipelineConsumer>,
    stop: CancellationToken,
) -> Result<JoinHandle<()>> {
    let runtime = shared.runtime.clone();
    let thread = std::thread::Builder::new()
        .name(format!("ackbar-{}", shared.name))
        .spawn(move || {
            runtime.block_on(async move {
                loop {
                    let received = tokio::select! {
                        _ = stop.cancelled() => break,
                        received = consumer.recv() => received,
                    };
                    match received {
                        // Only possible for messages fetched before the partition's queue was split:
                        // send the partition back to it so its worker reads it in order.
                        Ok(m) => {
                            let (topic, partition, offset) = (m.topic().to_string(), m.partition(), m.offset());
                            drop(m);
                            shared.recorder.in_span(|| tracing::warn!(%topic, partition, offset, "message arrived on the main queue; re-reading it through its partition"));
                            if let Err(e) = consumer.seek(&topic, partition, Offset::Offset(offset), Duration::from_secs(10)) {
                                shared.recorder.in_span(|| tracing::error!("seek after main-queue message failed: {e}"));
                            }
                        }
                        Err(e) => {
                            ConsumeFailed { error: &e }.emit(&shared.recorder);
                            if let Some((code, reason)) = consumer.client().fatal_error() {
                                shared.crash(format!("fatal Kafka error {code:?}: {reason}"));
                            }
                        }
                    }
                }
            })
        })
        .context("spawning the consumer driver thread")?;
    Ok(thread)
}

impl PipelineHandle {
    /// The pipeline's `name` from the configuration.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Cancelled when the pipeline crashed; see [`crash_reason`](Self::crash_reason).
    pub(crate) fn crash_signal(&self) -> CancellationToken {
        self.shared.crashed.clone()
    }

    /// Why the pipeline crashed, once it has.
    pub(crate) fn crash_reason(&self) -> Option<String> {
        self.shared.crash_reason()
    }

    /// Readiness of this pipeline, for `/readyz`.
    pub fn health(&self) -> Arc<Health> {
        self.shared.recorder.health().clone()
    }

    /// The pipeline's counters since it started.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.recorder.stats()
    }

    /// Plugin instances created so far, over every version (`ackbar_instances_created_total`).
    pub fn instances_created(&self) -> u64 {
        self.shared.plugin.instances_created()
    }

    /// Warnings logged about commit, consume and output-write faults: one per episode, not per
    /// failure.
    pub fn fault_warnings(&self) -> u64 {
        self.shared.recorder.faults_logged()
    }

    /// The version (short content hash) of the plugin that handles new messages.
    pub fn plugin_version(&self) -> String {
        self.shared.plugin.current().plugin().version().to_string()
    }

    /// Re-reads the plugin file and swaps it in if it changed (what the file watcher and SIGHUP
    /// do). A version that does not load is refused and the running one stays.
    pub async fn reload(&self) -> Result<Reloaded> {
        let slot = self.shared.plugin.clone();
        tokio::task::spawn_blocking(move || slot.reload()).await?
    }

    /// Runs `canary` beside the current version, or ends the canary (`None`); see
    /// [`PluginSlot::set_canary`](crate::reload::PluginSlot::set_canary).
    pub async fn set_canary(&self, canary: Option<crate::config::CanaryPlugin>) -> Result<()> {
        let slot = self.shared.plugin.clone();
        tokio::task::spawn_blocking(move || {
            slot.set_canary(canary.as_ref().map(|c| (c.path.as_path(), c.every)))
        })
        .await?
    }

    /// The running canary, if there is one.
    pub fn canary(&self) -> Option<crate::reload::CanaryNow> {
        self.shared.plugin.canary()
    }

    /// Points the pipeline at another plugin file (a config reload changed `plugin`) and swaps
    /// it in; the watcher follows the new file. A file that does not load is refused and the
    /// running version and path stay.
    pub async fn switch_plugin(&self, path: std::path::PathBuf) -> Result<Reloaded> {
        let slot = self.shared.plugin.clone();
        let reloaded = tokio::task::spawn_blocking(move || slot.switch_to(&path)).await??;
        if self.shared.config.watch_plugin {
            let watcher = PluginWatcher::start(self.shared.plugin.clone())?;
            *self.watcher.lock().unwrap_or_else(|e| e.into_inner()) = Some(watcher);
            // A change to the new file between the swap and the watcher's start would be missed:
            // check once more now that the watcher is running (a no-op if nothing changed).
            let _ = self.reload().await;
        }
        Ok(reloaded)
    }

    /// The configuration the pipeline was started with.
    pub fn config(&self) -> &PipelineConfig {
        &self.shared.config
    }

    /// The plugin file the pipeline currently runs.
    pub(crate) fn plugin_path(&self) -> std::path::PathBuf {
        self.shared.plugin.path()
    }

    /// Partitions this pipeline currently consumes.
    pub fn assigned_partitions(&self) -> Vec<TopicPartition> {
        self.shared.partitions.consuming()
    }

    /// Every partition consumed now: its commit, messages in flight, lag, and whether it is
    /// stuck or held.
    pub fn partitions_now(&self) -> Vec<PartitionNow> {
        let consuming = self.shared.partitions.consuming();
        let health = self.shared.recorder.health();
        let held = health.holds.now();
        let progress = self.shared.partitions.progress();
        consuming
            .into_iter()
            .map(|tp| {
                let p = progress.get(&tp);
                PartitionNow {
                    committed: p.and_then(|p| p.committed()),
                    in_flight: p.map_or(0, |p| p.in_flight()),
                    lag: self.shared.recorder.lag_of(std::slice::from_ref(&tp)),
                    held: held.holds(&tp),
                    stuck: health.stuck_on(&tp),
                    topic: tp.topic.to_string(),
                    partition: tp.partition,
                }
            })
            .collect()
    }

    /// The consumer lag of `partitions` summed, from librdkafka's statistics (every 5 s by
    /// default); `None` before the first.
    pub fn consumer_lag(&self, partitions: &[TopicPartition]) -> Option<i64> {
        self.shared.recorder.lag_of(partitions)
    }

    /// Stops fetching, lets in-flight messages finish (up to the drain timeout), commits what is
    /// settled synchronously, and leaves the group.
    pub async fn shutdown(mut self) -> Result<StatsSnapshot> {
        self.shared.shutdown.cancel();
        if let Some(task) = self.background.take() {
            let _ = task.await;
        }
        let shared = self.shared.clone();
        let consumer = self.consumer.take();
        let driver = self.driver.take();
        let driver_stop = self.driver_stop.clone();
        tokio::task::spawn_blocking(move || {
            shared.partitions.release_all(|_| {
                if let Some(consumer) = &consumer {
                    shared.commit(&**consumer, None);
                }
            });
            driver_stop.cancel();
            if let Some(driver) = driver {
                let _ = driver.join();
            }
            // Dropping the last reference closes the consumer and leaves the group.
            drop(consumer);
        })
        .await
        .context("shutting down the pipeline")?;
        self.shared
            .recorder
            .in_span(|| tracing::info!("pipeline stopped"));
        Ok(self.shared.recorder.stats())
    }
}

impl Drop for PipelineHandle {
    fn drop(&mut self) {
        // A handle dropped without `shutdown` still stops its threads and tasks.
        self.shared.shutdown.cancel();
        self.driver_stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with(kafka: &[(&str, &str)]) -> ClientConfig {
        let mut config = PipelineConfig::new("p", &["t"], "p.wasm");
        for (key, value) in kafka {
            config.kafka.insert(key.to_string(), value.to_string());
        }
        client_config(&config, "127.0.0.1:9092")
    }

    #[test]
    fn prefetch_defaults_are_ackbars_unless_the_pipeline_sets_them() {
        let defaults = config_with(&[]);
        assert_eq!(defaults.get("fetch.queue.backoff.ms"), Some("20"));
        assert_eq!(defaults.get("queued.max.messages.kbytes"), Some("16384"));

        let set = config_with(&[
            ("fetch.queue.backoff.ms", "1000"),
            ("queued.max.messages.kbytes", "1024"),
        ]);
        assert_eq!(set.get("fetch.queue.backoff.ms"), Some("1000"));
        assert_eq!(set.get("queued.max.messages.kbytes"), Some("1024"));
    }
}
