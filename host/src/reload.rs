//! Hot reload: the plugin of a running pipeline is replaced without a restart and without losing
//! or double-handling a message.
//!
//! The swap protocol: the new file is read once it stops changing, compiled and instantiated off
//! the hot path, optionally smoke-called, and only then published with one atomic pointer swap.
//! Each message takes the plugin current when it starts, so every message is handled by exactly
//! one version; calls in flight finish on the old version, whose instances are dropped with the
//! last reference to it. A file that does not load is refused and the old version keeps running.

use crate::bindings::Message;
use crate::canary::{runs_canary, Tally, TallyCounter};
use crate::outcome::CallEnd;
use crate::plugin::{Grants, InstancePool, PluginLimits, PluginRuntime};
use anyhow::{bail, Context, Result};
use arc_swap::{ArcSwap, ArcSwapOption};
use notify_debouncer_mini::{new_debouncer, DebounceEventResult, Debouncer};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Events closer together than this are one change (editors and `cp` write in several steps).
const DEBOUNCE: Duration = Duration::from_millis(150);
/// A file is read only after its size and mtime held still this long.
const STABLE_FOR: Duration = Duration::from_millis(50);
const STABLE_WITHIN: Duration = Duration::from_secs(5);

/// What a reload did.
#[derive(Debug, Clone, PartialEq)]
pub enum Reloaded {
    /// The file holds the version already running.
    Unchanged {
        /// The running version.
        version: String,
    },
    /// The new version is live.
    Swapped {
        /// The version that was running.
        from: String,
        /// The version now live.
        to: String,
        /// From the start of the reload to the swap: waiting for the file to settle, compiling,
        /// instantiating and the smoke call.
        took: Duration,
    },
}

/// The live plugin of one pipeline, replaceable while messages flow.
pub struct PluginSlot {
    tenant: Arc<str>,
    pipeline: Arc<str>,
    runtime: PluginRuntime,
    /// The plugin file; a config reload may point the slot at another one.
    path: Mutex<PathBuf>,
    limits: PluginLimits,
    grants: Arc<Grants>,
    smoke_payload: Option<Vec<u8>>,
    current: ArcSwap<InstancePool>,
    /// A canary deploy's version and the partitions it handles; `None` outside a canary.
    canary: ArcSwapOption<CanaryArm>,
    /// Serialises reloads: a watcher event and a signal may arrive together.
    reloading: Mutex<()>,
    /// Versions swapped in so far.
    pub reloads: AtomicU64,
    /// Versions refused so far: they did not load, or trapped on the smoke payload. The running
    /// version stayed.
    pub refusals: AtomicU64,
    /// Instances created by versions no longer current.
    retired_instances: AtomicU64,
}

impl PluginSlot {
    /// Loads the first version. Fails, naming the file, if it does not load.
    pub fn load(
        tenant: &str,
        pipeline: &str,
        runtime: &PluginRuntime,
        path: &Path,
        limits: PluginLimits,
        grants: Arc<Grants>,
        smoke_payload: Option<Vec<u8>>,
    ) -> Result<Self> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("plugin {}: cannot read the file", path.display()))?;
        let pool = prepare(
            runtime,
            path,
            &bytes,
            limits,
            &grants,
            smoke_payload.as_deref(),
        )?;
        Ok(PluginSlot {
            tenant: Arc::from(tenant),
            pipeline: Arc::from(pipeline),
            runtime: runtime.clone(),
            path: Mutex::new(path.to_path_buf()),
            limits,
            grants,
            smoke_payload,
            current: ArcSwap::from_pointee(pool),
            canary: ArcSwapOption::empty(),
            reloading: Mutex::new(()),
            reloads: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            retired_instances: AtomicU64::new(0),
        })
    }

    /// The plugin a message that starts now is handled by.
    pub fn current(&self) -> Arc<InstancePool> {
        self.current.load_full()
    }

    /// The plugin that handles a message of `partition` starting now: the canary's on its
    /// partitions, else the current one.
    pub fn for_partition(&self, partition: i32) -> Arc<InstancePool> {
        if let Some(arm) = &*self.canary.load() {
            if runs_canary(partition, arm.every) {
                return arm.pool.clone();
            }
        }
        self.current()
    }

    /// Counts one delivery by `version` on its side of a running canary; nothing outside one.
    pub fn count(&self, version: &str, trapped: bool, errored: bool, dead_lettered: bool) {
        if let Some(arm) = &*self.canary.load() {
            let side = match arm.pool.plugin().version() == version {
                true => &arm.canary,
                false => &arm.stable,
            };
            side.record(trapped, errored, dead_lettered);
        }
    }

    /// The running canary: its version and what each side counted since it started.
    pub fn canary(&self) -> Option<CanaryNow> {
        self.canary.load().as_ref().map(|arm| CanaryNow {
            version: arm.pool.plugin().version().to_string(),
            path: arm.path.clone(),
            every: arm.every,
            canary: arm.canary.get(),
            stable: arm.stable.get(),
        })
    }

    /// Runs the plugin at `path` on the partitions `runs_canary(partition, every)` picks, the
    /// current version on the others, and counts both from zero; `None` ends a canary. The
    /// canary version is compiled and smoke-tested first, as a reload is: one that does not
    /// load is refused and nothing changes. The same canary again is a no-op. Blocking.
    pub fn set_canary(&self, canary: Option<(&Path, u32)>) -> Result<()> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let Some((path, every)) = canary else {
            if let Some(old) = self.canary.swap(None) {
                self.retired_instances
                    .fetch_add(old.pool.instances_created(), Ordering::Relaxed);
            }
            return Ok(());
        };
        if let Some(arm) = &*self.canary.load() {
            if arm.path == path && arm.every == every {
                return Ok(());
            }
        }
        let bytes = std::fs::read(path)
            .with_context(|| format!("plugin {}: cannot read the file", path.display()))?;
        let pool = self.prepare(path, &bytes)?;
        tracing::info!(
            tenant = %self.tenant,
            pipeline = %self.pipeline,
            "canary {} on one partition in {every}, {} on the others",
            pool.plugin().version(),
            self.current().plugin().version()
        );
        let old = self.canary.swap(Some(Arc::new(CanaryArm {
            pool: Arc::new(pool),
            every,
            path: path.to_path_buf(),
            canary: TallyCounter::default(),
            stable: TallyCounter::default(),
        })));
        if let Some(old) = old {
            self.retired_instances
                .fetch_add(old.pool.instances_created(), Ordering::Relaxed);
        }
        Ok(())
    }

    /// Instances created by every version so far.
    pub fn instances_created(&self) -> u64 {
        let canary = self
            .canary
            .load()
            .as_ref()
            .map_or(0, |arm| arm.pool.instances_created());
        self.retired_instances.load(Ordering::Relaxed) + self.current().instances_created() + canary
    }

    /// The file [`reload`](Self::reload) reads; after a `switch_to` that
    /// succeeded, the new one.
    pub fn path(&self) -> PathBuf {
        self.path.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-reads the plugin file and swaps it in if it changed and is valid. Blocking (it may
    /// compile for seconds): call it off the async executor. On error the old version stays.
    pub fn reload(&self) -> Result<Reloaded> {
        self.reload_from(None)
    }

    /// Like [`reload`](Self::reload), from another file (the config now names it). The slot
    /// follows the new path only if its plugin loads.
    pub(crate) fn switch_to(&self, path: &Path) -> Result<Reloaded> {
        self.reload_from(Some(path))
    }

    fn reload_from(&self, new_path: Option<&Path>) -> Result<Reloaded> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let path = new_path.map_or_else(|| self.path(), Path::to_path_buf);
        let result = self.try_reload(&path, started);
        if result.is_ok() {
            *self.path.lock().unwrap_or_else(|e| e.into_inner()) = path;
        }
        match &result {
            Ok(Reloaded::Swapped { from, to, took }) => {
                self.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    tenant = %self.tenant,
                    pipeline = %self.pipeline,
                    "reloaded pipeline {}: {from} → {to} in {} ms",
                    self.pipeline,
                    took.as_millis()
                );
            }
            Ok(Reloaded::Unchanged { .. }) => {}
            Err(e) => {
                self.refusals.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    tenant = %self.tenant,
                    pipeline = %self.pipeline,
                    running = self.current().plugin().version(),
                    "refused new plugin version, the running one stays: {e:#}"
                );
            }
        }
        result
    }

    /// A version of this slot's plugin, ready to swap in (see [`prepare`]).
    fn prepare(&self, path: &Path, bytes: &[u8]) -> Result<InstancePool> {
        prepare(
            &self.runtime,
            path,
            bytes,
            self.limits,
            &self.grants,
            self.smoke_payload.as_deref(),
        )
    }

    fn try_reload(&self, path: &Path, started: Instant) -> Result<Reloaded> {
        let bytes = read_when_stable(path)?;
        let from = self.current().plugin().version().to_string();
        if crate::plugin::version_id(&bytes) == from {
            return Ok(Reloaded::Unchanged { version: from });
        }
        let pool = self.prepare(path, &bytes)?;
        let to = pool.plugin().version().to_string();
        let old = self.current.swap(Arc::new(pool));
        self.retired_instances
            .fetch_add(old.instances_created(), Ordering::Relaxed);
        Ok(Reloaded::Swapped {
            from,
            to,
            took: started.elapsed(),
        })
    }
}

/// A canary's version beside a slot's current one.
struct CanaryArm {
    pool: Arc<InstancePool>,
    every: u32,
    path: PathBuf,
    canary: TallyCounter,
    stable: TallyCounter,
}

/// A running canary at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryNow {
    /// The canary's version.
    pub version: String,
    /// Its file.
    pub path: PathBuf,
    /// Its partitions: see [`crate::canary::every_nth`].
    pub every: u32,
    /// Deliveries by the canary since it started.
    pub canary: Tally,
    /// Deliveries by the current version since the canary started.
    pub stable: Tally,
}

/// Compiles, links, instantiates and (if configured) smoke-calls a plugin version.
fn prepare(
    runtime: &PluginRuntime,
    path: &Path,
    bytes: &[u8],
    limits: PluginLimits,
    grants: &Arc<Grants>,
    smoke_payload: Option<&[u8]>,
) -> Result<InstancePool> {
    let plugin = runtime.load_granted(path, bytes, limits, grants.clone())?;
    let pool = InstancePool::new(Arc::new(plugin));
    crate::plugin::block_on(async {
        pool.warm_up().await?;
        if let Some(payload) = smoke_payload {
            let outcome = pool.call(&smoke_message(payload), &Arc::default()).await;
            if let CallEnd::Trapped { kind, detail, .. } = &outcome.end {
                bail!(
                    "plugin {}: trapped ({kind}) on the smoke message: {}",
                    path.display(),
                    detail.lines().next().unwrap_or_default()
                );
            }
        }
        Ok(())
    })?;
    Ok(pool)
}

fn smoke_message(payload: &[u8]) -> Message {
    Message {
        topic: "__ackbar_smoke".into(),
        partition: -1,
        offset: -1,
        timestamp: None,
        key: None,
        payload: Some(payload.to_vec()),
        headers: Vec::new(),
        attempt: 1,
    }
}

/// Reads a file once its size and modification time stop changing, so a copy in progress is
/// not mistaken for a (broken) new version.
fn read_when_stable(path: &Path) -> Result<Vec<u8>> {
    let stamp = |p: &Path| -> Result<(u64, SystemTime)> {
        let m =
            std::fs::metadata(p).with_context(|| format!("plugin {}: cannot read", p.display()))?;
        Ok((m.len(), m.modified()?))
    };
    let give_up = Instant::now() + STABLE_WITHIN;
    let mut last = stamp(path)?;
    loop {
        std::thread::sleep(STABLE_FOR);
        let now = stamp(path)?;
        if now == last || Instant::now() > give_up {
            return std::fs::read(path)
                .with_context(|| format!("plugin {}: cannot read the file", path.display()));
        }
        last = now;
    }
}

/// Watches a slot's plugin file and reloads it when it changes. Stops when dropped.
pub(crate) struct PluginWatcher {
    _debouncer: Debouncer<notify::RecommendedWatcher>,
}

impl PluginWatcher {
    /// Watches the folder the slot's plugin file is in now (editors and `mv` replace the file's
    /// inode) and reloads the slot when the file changes. Events within 150 ms are one change; a
    /// deleted file is not a new version.
    pub fn start(slot: Arc<PluginSlot>) -> Result<Self> {
        let file = slot.path();
        let dir = file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let file_name = file.file_name().map(ToOwned::to_owned);
        let mut debouncer = new_debouncer(DEBOUNCE, move |events: DebounceEventResult| {
            let Ok(events) = events else { return };
            let ours = events
                .iter()
                .any(|e| e.path.file_name().map(ToOwned::to_owned) == file_name);
            // Deleting the file (the first half of some replace patterns) is not a new version.
            if ours && slot.path().is_file() {
                let _ = slot.reload();
            }
        })
        .context("starting the plugin file watcher")?;
        // Watch the folder, not the file: editors and `mv` replace the file's inode.
        debouncer
            .watcher()
            .watch(&dir, notify::RecursiveMode::NonRecursive)
            .with_context(|| format!("watching {}", dir.display()))?;
        Ok(PluginWatcher {
            _debouncer: debouncer,
        })
    }
}
