//! The process-wide engine, the linker, and loading components.

use super::cache::{default_cache_dir, CacheOutcome, CompiledCache};
use super::grants::Grants;
use super::imports::HostState;
use super::pooling_allocator::PoolSizing;
use crate::bindings::{Handler, HandlerIndices};
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::component::{Component, ComponentExportIndex, HasSelf, InstancePre, Linker};
use wasmtime::{Config, Engine};

/// How a plugin takes several messages in one call.
#[derive(Debug, Clone, Copy)]
pub(crate) enum BatchExport {
    /// `handle-packed-batch` (world `packed-batch-handler`): the batch as one buffer.
    Packed(ComponentExportIndex),
    /// `handle-batch` (world `batch-handler`): the batch as a list of messages.
    Listed(ComponentExportIndex),
}

impl BatchExport {
    /// The batch export of `component`, the packed one when it has both. Its type is checked at
    /// instantiation.
    fn of(component: &Component) -> Option<Self> {
        let export = |name| component.get_export_index(None, name);
        export(super::packed::PACKED_EXPORT)
            .map(BatchExport::Packed)
            .or_else(|| export(super::batch::BATCH_EXPORT).map(BatchExport::Listed))
    }
}

/// Resolution of per-call deadlines: the epoch advances this often, and guest code yields to the
/// executor at each tick.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Per-instance limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PluginLimits {
    /// Wall-clock time one `handle` call may take.
    pub deadline: Duration,
    /// Largest linear memory one instance may grow to.
    pub memory_bytes: usize,
    /// Fuel (roughly, Wasm instructions) one `handle` call may burn, when the runtime meters
    /// fuel. A deterministic bound next to the wall-clock deadline.
    pub fuel: Option<u64>,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            deadline: Duration::from_secs(5),
            memory_bytes: 64 << 20,
            fuel: None,
        }
    }
}

/// Wasm stack a guest call may use before it traps with a stack overflow (wasmtime's default).
pub(crate) const DEFAULT_MAX_WASM_STACK: usize = 512 << 10;

/// Native stack left to host functions on a call's fiber, above the guest's Wasm stack
/// (wasmtime's default: 2 MiB fibers for a 512 KiB Wasm stack).
const HOST_STACK_HEADROOM: usize = (2 << 20) - DEFAULT_MAX_WASM_STACK;

/// The fiber stack a call runs on.
pub(crate) fn async_stack_size(max_wasm_stack: usize) -> usize {
    max_wasm_stack + HOST_STACK_HEADROOM
}

/// Engine-wide choices: they change the compiled code or the allocator, so they are made once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineOptions {
    /// Count fuel, so plugins may have a fuel limit. Metering instruments the compiled code
    /// (it costs guest speed), so it is on only when some pipeline asks for it.
    pub metered: bool,
    /// Preallocated instance slots; `None` allocates each instance on demand.
    pub pooling: Option<PoolSizing>,
    /// Bytes of Wasm stack per call.
    pub max_wasm_stack: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            metered: false,
            pooling: None,
            max_wasm_stack: DEFAULT_MAX_WASM_STACK,
        }
    }
}

/// Advances the engine's epoch on a dedicated thread until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ackbar-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawn epoch ticker thread");
        EpochTicker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One instance pool's idle instances, as the runtime sees them.
pub(crate) trait IdlePool: Send + Sync {
    /// How many instances are idle.
    fn idle(&self) -> usize;
    /// Drops one idle instance; `false` when none is idle.
    fn evict(&self) -> bool;
}

/// The idle instances of every pool of one engine. They are a cache: when the pooling allocator
/// has no free slot for a new instance, an idle one of some pool is dropped to make room. The
/// allocator is sized for the calls that can run at once (the tenants' call slots) plus a warm
/// instance per pipeline, not for every instance every pool might keep idle.
#[derive(Default)]
pub(crate) struct IdleInstances {
    pools: std::sync::Mutex<Vec<std::sync::Weak<dyn IdlePool>>>,
}

impl IdleInstances {
    /// Adds a pool; it leaves when dropped.
    pub(crate) fn register(&self, pool: std::sync::Weak<dyn IdlePool>) {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools.retain(|pool| pool.strong_count() > 0);
        pools.push(pool);
    }

    /// Drops an idle instance of the pool that holds the most; `false` when none is idle.
    pub(crate) fn evict_one(&self) -> bool {
        let pools: Vec<Arc<dyn IdlePool>> = (self.pools.lock())
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .collect();
        pools
            .iter()
            .max_by_key(|pool| pool.idle())
            .is_some_and(|fullest| fullest.evict())
    }
}

/// The process-wide Wasm runtime: create one and share it (it is cheap to clone).
#[derive(Clone)]
pub struct PluginRuntime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<HostState>,
    cache: Option<CompiledCache>,
    metered: bool,
    idle: IdleInstances,
    _ticker: EpochTicker,
}

impl PluginRuntime {
    /// A runtime that caches compiled components in [`default_cache_dir`].
    pub fn new() -> Result<Self> {
        Self::with_cache_dir(default_cache_dir())
    }

    /// A runtime that caches compiled components in `cache_dir`, or compiles every load when `None`.
    pub fn with_cache_dir(cache_dir: Option<PathBuf>) -> Result<Self> {
        Self::with_options(cache_dir, false)
    }

    /// `metered`: count fuel (see [`EngineOptions::metered`]).
    pub fn with_options(cache_dir: Option<PathBuf>, metered: bool) -> Result<Self> {
        Self::with_engine(
            cache_dir,
            EngineOptions {
                metered,
                ..EngineOptions::default()
            },
        )
    }

    /// A runtime with every engine-wide choice made by the caller.
    pub fn with_engine(cache_dir: Option<PathBuf>, options: EngineOptions) -> Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.consume_fuel(options.metered);
        config.max_wasm_stack(options.max_wasm_stack);
        // Calls run on fibers of this size: the guest's Wasm stack plus room for host functions.
        config.async_stack_size(async_stack_size(options.max_wasm_stack));
        // Deadlines: a call gets N ticks of the epoch before it traps.
        config.epoch_interruption(true);
        // `ACKBAR_PERF_MAP=1`: wasmtime writes `/tmp/perf-<pid>.map`, so `perf report` names the
        // guest's functions instead of bare `[JIT]` addresses.
        if std::env::var_os("ACKBAR_PERF_MAP").is_some_and(|v| v == "1") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        if let Some(pooling) = &options.pooling {
            pooling.apply(&mut config)?;
        }
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("creating the Wasm engine")?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking WASI")?;
        // Always linked so a guest that imports it loads; each request checks the tenant's
        // allow-list, which is empty unless granted.
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking wasi:http")?;
        Handler::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |state| state)
            .map_err(anyhow::Error::from)
            .context("linking the Ackbar imports")?;
        super::imports::add_batch_to_linker(&mut linker)?;

        let cache = cache_dir.map(|dir| CompiledCache::new(&engine, dir));
        let ticker = EpochTicker::start(engine.clone());
        Ok(PluginRuntime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                cache,
                metered: options.metered,
                idle: IdleInstances::default(),
                _ticker: ticker,
            }),
        })
    }

    /// The process-wide engine; code loaded into this runtime must be compiled by it.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The idle instances of every pool, to drop one when the instance pool is full.
    pub(crate) fn idle_instances(&self) -> &IdleInstances {
        &self.inner.idle
    }

    /// Whether this runtime meters fuel (see [`with_options`](Self::with_options)).
    pub fn metered(&self) -> bool {
        self.inner.metered
    }

    /// The compiled-component cache; `None` when caching is off (`ACKBAR_CACHE_DIR=off`, or no
    /// directory was given).
    pub fn cache(&self) -> Option<&CompiledCache> {
        self.inner.cache.as_ref()
    }

    /// Reads, compiles and links a plugin file. Errors name the file and what is wrong with it.
    pub fn load(&self, path: &Path, limits: PluginLimits) -> Result<Plugin> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("plugin {}: cannot read the file", path.display()))?;
        self.load_bytes(path, &bytes, limits)
    }

    /// Compiles and links plugin bytes; `path` is only used in messages.
    pub(crate) fn load_bytes(
        &self,
        path: &Path,
        bytes: &[u8],
        limits: PluginLimits,
    ) -> Result<Plugin> {
        self.load_granted(path, bytes, limits, Arc::default())
    }

    /// Like `load_bytes`, for a guest granted `grants`.
    pub fn load_granted(
        &self,
        path: &Path,
        bytes: &[u8],
        limits: PluginLimits,
        grants: Arc<Grants>,
    ) -> Result<Plugin> {
        let shown = path.display();
        if limits.fuel.is_some() && !self.inner.metered {
            bail!("plugin {shown}: a fuel limit needs a runtime that meters fuel");
        }
        ensure_component(path, bytes)?;
        let started = std::time::Instant::now();
        let (component, cached) = self.compile(bytes, &shown)?;
        tracing::debug!(
            "plugin {shown}: compiled in {:?} ({cached:?})",
            started.elapsed()
        );
        let instance_pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!("plugin {shown}: imports something Ackbar does not provide")
            })?;
        let exports = HandlerIndices::new(&instance_pre)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "plugin {shown}: does not implement world `handler` of {} (no matching `handle` export)",
                    crate::bindings::WIT_PACKAGE
                )
            })?;
        let batch_export = BatchExport::of(&component);
        Ok(Plugin {
            runtime: self.clone(),
            path: path.to_path_buf(),
            version: Arc::from(version_id(bytes)),
            component,
            pre: instance_pre,
            exports,
            batch_export,
            limits,
            grants,
            cached,
        })
    }

    fn compile(
        &self,
        bytes: &[u8],
        shown: &dyn std::fmt::Display,
    ) -> Result<(Component, CacheOutcome)> {
        let engine = &self.inner.engine;
        match &self.inner.cache {
            Some(cache) => cache.load_or_compile(engine, bytes, shown),
            None => {
                let component = Component::from_binary(engine, bytes)
                    .map_err(anyhow::Error::from)
                    .with_context(|| format!("plugin {shown}: not a valid component"))?;
                Ok((component, CacheOutcome::Uncached))
            }
        }
    }
}

/// Runs a plugin future (instantiation, a smoke call) to its end from synchronous code such as
/// loading and reloading, which run off the executor: on the current Tokio runtime when there is
/// a multi-threaded one, else on a small runtime of its own.
pub fn block_on<F>(future: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    use tokio::runtime::{Handle, RuntimeFlavor};
    static FALLBACK: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let fallback = || {
        FALLBACK.get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("starting a Tokio runtime")
        })
    };
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(future))
        }
        // A single-threaded runtime cannot be blocked in place: drive it from another thread.
        Ok(_) => std::thread::scope(|scope| {
            scope
                .spawn(|| fallback().block_on(future))
                .join()
                .expect("plugin future panicked")
        }),
        Err(_) => fallback().block_on(future),
    }
}

/// Refuses, with a precise message, files that are not components at all.
fn ensure_component(path: &Path, bytes: &[u8]) -> Result<()> {
    let shown = path.display();
    if wasmtime::wasmparser::Parser::is_component(bytes) {
        return Ok(());
    }
    if wasmtime::wasmparser::Parser::is_core_wasm(bytes) {
        bail!(
            "plugin {shown}: is a core WebAssembly module, not a component; build it for \
             wasm32-wasip2 or wrap it with `wasm-tools component new`"
        );
    }
    bail!("plugin {shown}: is not a WebAssembly file (no `\\0asm` header)")
}

/// A short content hash that identifies a plugin version in logs and reports.
pub fn version_id(bytes: &[u8]) -> String {
    crate::text::hex(&Sha256::digest(bytes)[..6])
}

/// A compiled and linked plugin: instantiating it is cheap.
pub struct Plugin {
    pub(crate) runtime: PluginRuntime,
    path: PathBuf,
    version: Arc<str>,
    component: Component,
    pub(crate) pre: InstancePre<HostState>,
    /// Where `handle` is in an instance.
    pub(crate) exports: HandlerIndices,
    /// Where the plugin's batch export is, when it has one.
    pub(crate) batch_export: Option<BatchExport>,
    limits: PluginLimits,
    grants: Arc<Grants>,
    cached: CacheOutcome,
}

impl Plugin {
    /// The file the plugin was loaded from; for
    /// `load_bytes`, the path its messages name.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Short content hash of the component file.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The version as a shared string, for per-message reports without an allocation.
    pub(crate) fn version_shared(&self) -> &Arc<str> {
        &self.version
    }

    /// The per-call limits every instance of this plugin gets.
    pub fn limits(&self) -> PluginLimits {
        self.limits
    }

    /// What the plugin's sandbox may reach.
    pub fn grants(&self) -> &Arc<Grants> {
        &self.grants
    }

    /// The compiled component, for inspecting its imports and exports.
    pub fn component(&self) -> &Component {
        &self.component
    }

    /// Whether the plugin takes several messages in one call (it exports `handle-packed-batch`
    /// or `handle-batch`).
    pub fn batches(&self) -> bool {
        self.batch_export.is_some()
    }

    /// Whether the plugin takes a batch packed into one buffer (`handle-packed-batch`).
    pub fn packs(&self) -> bool {
        matches!(self.batch_export, Some(BatchExport::Packed(_)))
    }

    /// Whether the compiled code came from the on-disk cache.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.cached
    }
}
