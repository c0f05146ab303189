//! Reusable instances of one plugin.

use super::imports::CallContext;
use super::instance::PluginInstance;
use super::runtime::Plugin;
use crate::bindings::Message;
use crate::outcome::{CallEnd, Outcome, TrapKind};
use crate::outputs::Outputs;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Idle instances of one plugin. A call takes one (or instantiates one when none is idle) and
/// gives it back unless it trapped, so the happy path never instantiates.
pub struct InstancePool {
    plugin: Arc<Plugin>,
    idle: Mutex<Vec<PluginInstance>>,
    created: AtomicU64,
}

impl InstancePool {
    /// An empty pool: the first call, or [`warm_up`](Self::warm_up), instantiates.
    pub fn new(plugin: Arc<Plugin>) -> Self {
        InstancePool {
            plugin,
            idle: Mutex::new(Vec::new()),
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
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(instance);
        Ok(())
    }

    /// Calls the handler for one message. The call ends by its deadline whatever the guest does;
    /// guest code runs in place on the polling thread and yields to the executor every epoch tick.
    pub async fn call(&self, message: &Message, context: CallContext) -> Outcome {
        self.call_with_outputs(message, context).await.0
    }

    /// Like [`call`](Self::call), with what the call sent through `producer` (whether it is
    /// published is the policy's decision).
    pub async fn call_with_outputs(
        &self,
        message: &Message,
        context: CallContext,
    ) -> (Outcome, Outputs) {
        let taken = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut instance = match taken {
            Some(instance) => instance,
            None => match self.instantiate().await {
                Ok(instance) => instance,
                Err(err) => {
                    let outcome = Outcome {
                        explicit: None,
                        end: CallEnd::Trapped {
                            kind: TrapKind::Other,
                            detail: format!("{err:#}"),
                            stderr: String::new(),
                        },
                    };
                    return (outcome, Outputs::default());
                }
            },
        };
        let (outcome, outputs, reusable) = instance.call(message, context).await;
        if reusable {
            self.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(instance);
        }
        (outcome, outputs)
    }

    async fn instantiate(&self) -> anyhow::Result<PluginInstance> {
        let instance = PluginInstance::new(&self.plugin).await?;
        self.created.fetch_add(1, Ordering::Relaxed);
        Ok(instance)
    }

    /// Instances created so far, including replacements after traps.
    pub fn instances_created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }

    /// Number of idle instances (for tests and metrics).
    pub fn idle_instances(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}
