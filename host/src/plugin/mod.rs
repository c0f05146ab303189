//! The Wasm side: one engine per process, plugins compiled once, instances reused between
//! messages and replaced after a trap.
//!
//! - [`PluginRuntime`] owns the `wasmtime::Engine`, the linker (WASI with nothing granted plus the
//!   Ackbar imports) and the epoch ticker that enforces per-call deadlines.
//! - [`Plugin`] is a compiled, linked component ready to instantiate (`InstancePre`).
//! - [`InstancePool`] hands out instances, calls `handle` and turns the result into an
//!   [`Outcome`](crate::outcome::Outcome).

mod batch;
mod cache;
mod check;
mod grants;
mod guest_log;
mod imports;
mod instance;
mod instance_pool;
mod packed;
mod pooling_allocator;
mod runtime;
mod stdio;

pub use batch::{BatchCall, Finished, FinishedSink, MAX_BATCH_TIME};
pub use cache::{default_cache_dir, CacheOutcome, CompiledCache};
pub use check::{inspect, PluginReport};
pub use grants::{DirGrant, Grants};
pub(crate) use guest_log::DEFAULT_LINES_PER_SEC;
pub use guest_log::{GuestLogBudget, MAX_LOG_LINE};
pub use imports::CallContext;
pub(crate) use imports::DEFAULT_TENANT;
pub use instance::PluginInstance;
pub use instance_pool::InstancePool;
pub use packed::{BatchMessages, PackedBatch};
pub use pooling_allocator::PoolSizing;
pub(crate) use runtime::DEFAULT_MAX_WASM_STACK;
pub use runtime::{block_on, version_id, EngineOptions, Plugin, PluginLimits, PluginRuntime};
