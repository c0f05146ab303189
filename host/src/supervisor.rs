//! Keeps each pipeline running: a pipeline that fails to start (Kafka unreachable, a plugin
//! that does not load) or crashes (a worker panicked, a fatal Kafka error) is restarted with
//! backoff and reported, while every other pipeline goes on.
//!
//! A restart is as safe as a rebalance: only settled offsets were committed, so whatever was
//! in flight is read again.

use crate::config::{Backoff, PipelineConfig};
use crate::consumer::{Pipeline, PipelineHandle};
use crate::health::Health;
use crate::plugin::PluginRuntime;
use crate::reload::Reloaded;
use crate::stats::StatsSnapshot;
use crate::tenant::TenantBudget;
use anyhow::Result;
use metrics::counter;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A pipeline that ran this long before crashing starts its backoff over.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// A supervised pipeline.
pub struct Supervised {
    name: String,
    tenant: String,
    health: Arc<Health>,
    config: Mutex<PipelineConfig>,
    running: tokio::sync::Mutex<Option<PipelineHandle>>,
    restarts: AtomicU64,
    last_failure: Mutex<Option<String>>,
    retry_now: Notify,
    stop: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A running pipeline at one moment.
#[derive(Debug, Clone)]
pub struct RunningNow {
    /// The version of the plugin that handles new messages.
    pub plugin_version: String,
    /// The partitions it consumes.
    pub partitions: Vec<crate::offsets::TopicPartition>,
    /// Their consumer lag summed, once librdkafka's statistics have it.
    pub lag: Option<i64>,
    /// Its counters since it started.
    pub stats: StatsSnapshot,
    /// A canary running beside the plugin.
    pub canary: Option<crate::reload::CanaryNow>,
}

/// What a supervised pipeline is started with.
pub struct Launch {
    /// The cluster's `bootstrap.servers` (the embedded broker's when there is one).
    pub bootstrap: String,
    /// The process-wide Wasm runtime.
    pub runtime: PluginRuntime,
    /// The budget of the pipeline's tenant, shared with the tenant's other pipelines.
    pub budget: Arc<TenantBudget>,
    /// Delays between restarts: `[run] restart_initial_ms`, doubling up to `restart_max_ms`. A
    /// pipeline that ran for 60 s before it crashed starts over at the first delay.
    pub backoff: Backoff,
}

impl Supervised {
    /// Starts supervising: the first start happens on the returned task.
    pub fn spawn(config: PipelineConfig, launch: Launch) -> Arc<Self> {
        let supervised = Arc::new(Supervised {
            name: config.name.clone(),
            tenant: config.tenant.clone(),
            health: Arc::new(Health::default()),
            config: Mutex::new(config),
            running: tokio::sync::Mutex::new(None),
            restarts: AtomicU64::new(0),
            last_failure: Mutex::new(None),
            retry_now: Notify::new(),
            stop: CancellationToken::new(),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(supervised.clone().supervise(launch));
        *supervised.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        supervised
    }

    /// The pipeline's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pipeline's readiness: one [`Health`] across restarts, so `/readyz` also reports a
    /// pipeline that is down.
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// The pipeline's tenant.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The configuration it runs with now.
    pub fn config(&self) -> PipelineConfig {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Its partitions now; empty while it is down.
    pub async fn partitions_now(&self) -> Vec<crate::consumer::PartitionNow> {
        self.running
            .lock()
            .await
            .as_ref()
            .map(|handle| handle.partitions_now())
            .unwrap_or_default()
    }

    /// What the running incarnation is: its plugin's version and the partitions it consumes;
    /// `None` while the pipeline is down.
    pub async fn running(&self) -> Option<RunningNow> {
        self.running.lock().await.as_ref().map(|handle| {
            let partitions = handle.assigned_partitions();
            RunningNow {
                plugin_version: handle.plugin_version(),
                lag: handle.consumer_lag(&partitions),
                partitions,
                stats: handle.stats(),
                canary: handle.canary(),
            }
        })
    }

    /// Swaps the plugin at `path` in as hot reload does (compiled and smoke-tested off the hot
    /// path; calls in flight finish on the old version), and keeps it for later restarts. A
    /// plugin that does not load is refused with the reason and the running one stays. While
    /// the pipeline is down, its next start takes `path` (and retries now).
    pub async fn switch_plugin(&self, path: std::path::PathBuf) -> Result<Reloaded> {
        let running = self.running.lock().await;
        let reloaded = match running.as_ref() {
            Some(handle) => handle.switch_plugin(path.clone()).await?,
            None => Reloaded::Unchanged {
                version: String::new(),
            },
        };
        // Stored before a retry is asked for, and read by a start only under `running`.
        self.config.lock().unwrap_or_else(|e| e.into_inner()).plugin = path;
        if running.is_none() {
            self.retry_now.notify_one();
        }
        Ok(reloaded)
    }

    /// Runs `canary` beside the plugin on its partitions, or ends the canary (`None`), and
    /// keeps it for later restarts. A canary that does not load is refused with the reason and
    /// nothing changes. While the pipeline is down, its next start takes it.
    pub async fn set_canary(&self, canary: Option<crate::config::CanaryPlugin>) -> Result<()> {
        let running = self.running.lock().await;
        if let Some(handle) = running.as_ref() {
            handle.set_canary(canary.clone()).await?;
        }
        self.config.lock().unwrap_or_else(|e| e.into_inner()).canary = canary;
        Ok(())
    }

    /// Restarts so far (failed starts and crashes).
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Why the pipeline last failed to start or crashed.
    pub fn last_failure(&self) -> Option<String> {
        self.last_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Counters of the running incarnation; `None` while it is down.
    pub async fn stats(&self) -> Option<StatsSnapshot> {
        self.running
            .lock()
            .await
            .as_ref()
            .map(PipelineHandle::stats)
    }

    /// SIGHUP: follow a new plugin path or re-read the plugin file. A pipeline that is down
    /// retries its start now instead of waiting out its backoff.
    pub async fn reload(&self, wanted: Option<&PipelineConfig>) {
        let running = self.running.lock().await;
        let Some(handle) = running.as_ref() else {
            if let Some(new) = wanted {
                self.config.lock().unwrap_or_else(|e| e.into_inner()).plugin = new.plugin.clone();
            }
            self.retry_now.notify_one();
            return;
        };
        match wanted {
            Some(new) if new.plugin != handle.plugin_path() => {
                if let Ok(Reloaded::Swapped { .. }) = handle.switch_plugin(new.plugin.clone()).await
                {
                    self.config.lock().unwrap_or_else(|e| e.into_inner()).plugin =
                        new.plugin.clone();
                }
            }
            _ => {
                let _ = handle.reload().await;
            }
        }
        if let Some(new) = wanted {
            let mut same = new.clone();
            same.plugin = handle.config().plugin.clone();
            if &same != handle.config() {
                tracing::warn!(
                    tenant = %self.tenant, pipeline = %self.name,
                    "config changes other than `plugin` apply after a restart"
                );
            }
        }
    }

    /// Stops supervising and shuts the running incarnation down gracefully.
    pub async fn shutdown(&self) -> Result<Option<StatsSnapshot>> {
        self.stop.cancel();
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        match self.running.lock().await.take() {
            Some(handle) => Ok(Some(handle.shutdown().await?)),
            None => Ok(None),
        }
    }

    async fn supervise(self: Arc<Self>, launch: Launch) {
        let restarts = counter!(
            "ackbar_pipeline_restarts_total",
            "tenant" => self.tenant.clone(),
            "pipeline" => self.name.clone()
        );
        let mut failures = 0u32;
        while !self.stop.is_cancelled() {
            self.health.starting();
            // Held while starting, so a reload or shutdown meanwhile waits for the outcome; the
            // config is read under it, so a plugin switched just before is the one started.
            let mut running = self.running.lock().await;
            let config = self
                .config
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let started = Instant::now();
            let (bootstrap, runtime, budget, health) = (
                launch.bootstrap.clone(),
                launch.runtime.clone(),
                launch.budget.clone(),
                self.health.clone(),
            );
            // Starting blocks (plugin compilation, metadata requests): off the async workers.
            let start = tokio::task::spawn_blocking(move || {
                Pipeline::start_in(config, &bootstrap, &runtime, None, budget, health)
            })
            .await;
            let reason = match start {
                Ok(Ok(handle)) => {
                    self.health.started();
                    let crashed = handle.crash_signal();
                    *running = Some(handle);
                    drop(running);
                    tokio::select! {
                        _ = self.stop.cancelled() => return,
                        _ = crashed.cancelled() => {}
                    }
                    let handle = self.running.lock().await.take();
                    let mut reason = String::from("crashed");
                    if let Some(handle) = handle {
                        reason = format!("crashed: {}", handle.crash_reason().unwrap_or_default());
                        if let Err(e) = handle.shutdown().await {
                            tracing::warn!(tenant = %self.tenant, pipeline = %self.name, "after the crash, shutting down failed: {e:#}");
                        }
                    }
                    if started.elapsed() >= STABLE_AFTER {
                        failures = 0;
                    }
                    reason
                }
                Ok(Err(e)) => {
                    drop(running);
                    format!("failed to start: {e:#}")
                }
                Err(e) => {
                    drop(running);
                    format!("failed to start: {e}")
                }
            };
            failures += 1;
            *self.last_failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.clone());
            self.restarts.fetch_add(1, Ordering::Relaxed);
            restarts.increment(1);
            let delay = launch.backoff.delay(failures);
            tracing::error!(
                tenant = %self.tenant, pipeline = %self.name, attempt = failures,
                "pipeline {reason}; restarting in {} ms (other pipelines are not affected)",
                delay.as_millis()
            );
            self.health.down(format!(
                "{reason}; restart {failures} in {} ms",
                delay.as_millis()
            ));
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
                _ = self.retry_now.notified() => {}
            }
        }
    }
}
