//! Reusable instances of one plugin.

use super::batch::BatchCall;
use super::imports::CallContext;
use super::instance::PluginInstance;
use super::packed::{BatchMessages, PackedBatch};
use super::runtime::{IdlePool, Plugin};
use crate::bindings::Message;
use crate::outcome::{CallEnd, Outcome, TrapKind};
use crate::outputs::Outputs;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Idle instances, each with the [`affinity`] of the partition that used it last.
type IdleList = Mutex<Vec<(usize, PluginInstance)>>;

/// Identifies the partition a call is for, cheaply: each partition's worker has a context of its
/// own. A call takes the instance its partition used last when it is idle, so the guest's memory
/// is still in that core's cache instead of moving between cores with every call, and the
/// instance already holds the worker's context.
fn affinity(context: &Arc<CallContext>) -> usize {
    Arc::as_ptr(context) as usize
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl IdlePool for IdleList {
    fn idle(&self) -> usize {
        lock(self).len()
    }

    fn evict(&self) -> bool {
        lock(self).pop().is_some()
    }
}

/// Whether instantiating failed only because the pooling allocator's slots are all taken.
fn pool_is_full(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|cause| cause.is::<wasmtime::PoolConcurrencyLimitError>())
}

/// Idle instances of one plugin. A call takes one (or instantiates one when none is idle) and
/// gives it back unless it trapped, so the happy path never instantiates.
pub struct InstancePool {
    plugin: Arc<Plugin>,
    idle: Arc<IdleList>,
    created: AtomicU64,
}

impl InstancePool {
    /// An empty pool: the first call, or [`warm_up`](Self::warm_up), instantiates.
    pub fn new(plugin: Arc<Plugin>) -> Self {
        let idle = Arc::new(Mutex::new(Vec::new()));
        let as_pool: Arc<dyn IdlePool> = idle.clone();
        plugin
            .runtime
            .idle_instances()
            .register(Arc::downgrade(&as_pool));
        InstancePool {
            plugin,
            idle,
            created: AtomicU64::new(0),
        }
    }

    /// The plugin version this pool's instances are of.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// Creates one instance up front so configuration errors surface before consuming starts.
    pub async fn warm_up(&self) -> anyhow::Result<()> {
        let instance = self.instantiate().await?;
        lock(&self.idle).push((0, instance));
        Ok(())
    }

    /// Calls the handler for one message. The call ends by its deadline whatever the guest does;
    /// guest code runs in place on the polling thread and yields to the executor every epoch tick.
    pub async fn call(&self, message: &Message, context: &Arc<CallContext>) -> Outcome {
        self.call_with_outputs(message, context).await.0
    }

    /// Like [`call`](Self::call), with what the call sent through `producer` (whether it is
    /// published is the policy's decision).
    pub async fn call_with_outputs(
        &self,
        message: &Message,
        context: &Arc<CallContext>,
    ) -> (Outcome, Outputs) {
        let affinity = affinity(context);
        let mut instance = match self.take(affinity).await {
            Ok(instance) => instance,
            Err(outcome) => return (outcome, Outputs::default()),
        };
        let (outcome, outputs, reusable) = instance.call(message, context).await;
        if reusable {
            lock(&self.idle).push((affinity, instance));
        }
        (outcome, outputs)
    }

    /// Whether this pool's plugin takes several messages in one call (`handle-batch`).
    pub fn batches(&self) -> bool {
        self.plugin.batches()
    }

    /// Whether this pool's plugin takes a batch packed into one buffer
    /// ([`PackedBatch`]); otherwise as a list.
    pub fn packs(&self) -> bool {
        self.plugin.packs()
    }

    /// Calls the plugin's batch export on `messages` as `batch` says (see
    /// [`PluginInstance::call_batch`]), packing them first when the plugin takes them packed.
    /// Only for a plugin that [`batches`](Self::batches).
    pub async fn call_batch(
        &self,
        messages: &[Message],
        batch: BatchCall,
        context: &Arc<CallContext>,
    ) {
        if self.packs() {
            let (topic, partition) = messages
                .first()
                .map_or(("", 0), |m| (m.topic.as_str(), m.partition));
            let packed = PackedBatch::of(topic, partition, messages);
            self.call_prepared_batch(BatchMessages::Packed(&packed), batch, context)
                .await
        } else {
            self.call_prepared_batch(BatchMessages::Listed(messages), batch, context)
                .await
        }
    }

    /// Calls the plugin's batch export on `messages`, prepared in the form it
    /// [`packs`](Self::packs), each message handled going to the batch's sink as soon as it is.
    pub async fn call_prepared_batch(
        &self,
        messages: BatchMessages<'_>,
        batch: BatchCall,
        context: &Arc<CallContext>,
    ) {
        let affinity = affinity(context);
        let mut instance = match self.take(affinity).await {
            Ok(instance) => instance,
            Err(outcome) => {
                // The first message fails as its own call would; the rest wait for later calls.
                batch.fail_first(outcome);
                return;
            }
        };
        if instance.call_batch(messages, batch, context).await {
            lock(&self.idle).push((affinity, instance));
        }
    }

    /// An idle instance, the one `affinity` used last if it is idle, or a new one; a failure to
    /// instantiate is the call's outcome.
    async fn take(&self, affinity: usize) -> Result<PluginInstance, Outcome> {
        let taken = {
            let mut idle = lock(&self.idle);
            match idle.iter().rposition(|(last, _)| *last == affinity) {
                Some(at) => Some(idle.swap_remove(at).1),
                None => idle.pop().map(|(_, instance)| instance),
            }
        };
        if let Some(instance) = taken {
            return Ok(instance);
        }
        self.instantiate().await.map_err(|err| Outcome {
            explicit: None,
            end: CallEnd::Trapped {
                kind: TrapKind::Other,
                detail: format!("{err:#}"),
                stderr: String::new(),
            },
        })
    }

    async fn instantiate(&self) -> anyhow::Result<PluginInstance> {
        loop {
            match PluginInstance::new(&self.plugin).await {
                Ok(instance) => {
                    self.created.fetch_add(1, Ordering::Relaxed);
                    return Ok(instance);
                }
                Err(err)
                    if pool_is_full(&err) && self.plugin.runtime.idle_instances().evict_one() => {}
                Err(err) => return Err(err),
            }
        }
    }

    /// Instances created so far, including replacements after traps.
    pub fn instances_created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }

    /// Number of idle instances (for tests and metrics).
    pub fn idle_instances(&self) -> usize {
        lock(&self.idle).len()
    }
}
