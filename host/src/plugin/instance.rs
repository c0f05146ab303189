//! One instance of a plugin: its own `Store`, called once per message, discarded after a trap.
//!
//! How a deadline holds whatever the guest does: every call runs on a fiber (wasmtime's async
//! calls). While the guest runs its own code, each epoch tick enters a callback that yields to
//! the executor and, once the deadline has passed, traps (`trap:deadline` with the guest's
//! backtrace). While it waits inside a host call (a sleep, a clock poll, an HTTP response, a
//! file read) it is a suspended future, and the call's timeout drops it at the deadline. Either
//! way the call ends within its deadline plus one tick, and the instance is discarded.

use super::batch::{self, BatchCall};
use super::imports::{CallContext, HostState, Interrupt, MemoryLimitExceeded};
use super::packed::{self, BatchMessages, PackedBatch};
use super::runtime::{BatchExport, Plugin};
use crate::bindings::{Handler, Message};
use crate::outcome::{CallEnd, Decision, Outcome, TrapKind};
use crate::outputs::Outputs;
use crate::text::MAX_REPORT_TEXT;
use anyhow::{Context, Result};
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};
use wasmtime::component::Func;
use wasmtime::{Store, Trap, UpdateDeadline};

/// One instance of a [`Plugin`] in a `Store` of its own (memory, WASI context, call state).
/// Called once per message; discarded after a trap, an interrupt or a deadline.
pub struct PluginInstance {
    store: Store<HostState>,
    handler: Handler,
    /// The batch export, when the plugin has one (its type checked at instantiation).
    handle_batch: Option<BatchFunc>,
    fuel: Option<u64>,
    deadline: Duration,
}

impl PluginInstance {
    /// Instantiates `plugin` with its limits and grants; the guest's start code runs under the call
    /// deadline. Fails, naming the file, if the sandbox cannot be prepared (a granted directory is
    /// gone), instantiation traps, or the deadline passes.
    pub async fn new(plugin: &Plugin) -> Result<Self> {
        let limits = plugin.limits();
        let shown = plugin.path().display();
        let state = HostState::new(
            limits.memory_bytes,
            plugin.grants(),
            limits.deadline,
            plugin.version_shared().clone(),
        )
        .with_context(|| format!("plugin {shown}: preparing its sandbox"))?;
        let mut store = Store::new(plugin.runtime.engine(), state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_callback(|store| {
            Ok(if Instant::now() >= store.data().call.deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        if let Some(fuel) = limits.fuel {
            store
                .set_fuel(fuel)
                .map_err(anyhow::Error::from)
                .context("setting the fuel limit")?;
        }
        // Instantiation runs guest start code: bound it too.
        store.data_mut().call.deadline = Instant::now() + limits.deadline;
        store.set_epoch_deadline(1);
        let instantiated =
            tokio::time::timeout(limits.deadline, plugin.pre.instantiate_async(&mut store))
                .await
                .with_context(|| {
                    format!(
                        "plugin {shown}: instantiation did not finish within the deadline of {} ms",
                        limits.deadline.as_millis()
                    )
                })?;
        let instance = instantiated
            .map_err(anyhow::Error::from)
            .with_context(|| format!("plugin {shown}: instantiation failed"))?;
        let handler = plugin
            .exports
            .load(&mut store, &instance)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("plugin {shown}: its `handle` export"))?;
        let handle_batch = match plugin.batch_export {
            None => None,
            Some(export) => Some(BatchFunc::load(export, &mut store, &instance, &shown)?),
        };
        Ok(PluginInstance {
            store,
            handler,
            handle_batch,
            fuel: limits.fuel,
            deadline: limits.deadline,
        })
    }

    /// Calls `handle`. Returns the outcome, what the call sent, and whether this instance may be
    /// used again: after a trap, an interrupt or a deadline the guest's state is unknown (and
    /// wasmtime refuses re-entry after a trap).
    pub async fn call(
        &mut self,
        message: &Message,
        context: &Arc<CallContext>,
    ) -> (Outcome, Outputs, bool) {
        let deadline = Instant::now() + self.deadline;
        self.start_call(context, message.offset, deadline, None);
        let result = {
            let mut call = std::pin::pin!(self.handler.call_handle(&mut self.store, message));
            // Most calls end without waiting on a host future or reaching a tick: no timer for them.
            let first = std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await;
            match first {
                Poll::Ready(result) => Ok(result),
                Poll::Pending => {
                    tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), call).await
                }
            }
        };

        let (explicit, outputs, _) = self.end_call();
        let state = self.store.data_mut();
        let Ok(result) = result else {
            // Dropped while suspended in a host call: guest code would have trapped at a tick.
            let end = cut_off_in_host_call(self.deadline, state.output.take());
            return (Outcome { explicit, end }, outputs, false);
        };
        let (end, reusable) = match result {
            Ok(returned) => (batch::returned(returned), true),
            Err(err) => {
                let end = classify(&err, state.output.take());
                (end, false)
            }
        };
        if reusable {
            // Output of successful calls is not reported; keep the tail for the next trap only.
            self.store.data().output.clear();
        }
        (Outcome { explicit, end }, outputs, reusable)
    }

    /// Calls `handle-batch` on `messages` (the plugin must export it), each message under its
    /// own deadline, fuel and output bounds, and reports each to `batch`'s sink as soon as the
    /// guest has finished it. The batch stops at the first message that does not commit, and at
    /// a trap. Returns whether this instance may be used again.
    pub async fn call_batch(
        &mut self,
        messages: BatchMessages<'_>,
        mut batch: BatchCall,
        context: &Arc<CallContext>,
    ) -> bool {
        let (Some(func), Some(first_offset)) = (self.handle_batch, messages.first_offset()) else {
            return true;
        };
        batch.begin(self.deadline, self.fuel);
        let current_deadline = batch.deadline_watch();
        let mut deadline = current_deadline.get();
        self.start_call(context, first_offset, deadline, Some(batch));
        let result = {
            let store = &mut self.store;
            let call = async move {
                match (func, messages) {
                    (BatchFunc::Packed(func), BatchMessages::Packed(packed)) => {
                        let PackedBatch {
                            topic,
                            partition,
                            count,
                            records,
                            ..
                        } = packed;
                        let args = (topic.as_str(), *partition, *count, records.as_slice());
                        func.typed::<(&str, i32, u32, &[u8]), ()>(&*store)?
                            .call_async(&mut *store, args)
                            .await
                    }
                    (BatchFunc::Listed(func), BatchMessages::Listed(messages)) => {
                        func.typed::<(&[Message],), ()>(&*store)?
                            .call_async(&mut *store, (messages,))
                            .await
                    }
                    // The pool prepares each batch for its plugin's export.
                    (func, _) => Err(wasmtime::format_err!(
                        "host error: a batch was prepared for another export than `{}`",
                        func.name()
                    )),
                }
            };
            let mut call = std::pin::pin!(call);
            // `finish` moves the deadline on with each message: a timeout that fires early is
            // armed again for the message now running.
            loop {
                let at = tokio::time::Instant::from_std(deadline);
                match tokio::time::timeout_at(at, call.as_mut()).await {
                    Ok(result) => break Some(result),
                    Err(_) => {
                        let moved = current_deadline.get();
                        if moved <= deadline {
                            break None;
                        }
                        deadline = moved;
                    }
                }
            }
        };

        let (explicit, outputs, batch) = self.end_call();
        let mut batch = batch.expect("set by start_call");
        let state = self.store.data_mut();
        let reusable = match result {
            Some(Ok(())) if batch.stopped => true,
            Some(Ok(())) => {
                let end = CallEnd::Trapped {
                    kind: TrapKind::Other,
                    detail: format!(
                        "`{}` returned without calling `batch.finish` for this message",
                        func.name()
                    ),
                    stderr: String::new(),
                };
                batch.end_current(Outcome { explicit, end }, outputs);
                false
            }
            Some(Err(err)) => {
                let end = classify(&err, state.output.take());
                batch.end_current(Outcome { explicit, end }, outputs);
                false
            }
            None => {
                let end = cut_off_in_host_call(self.deadline, state.output.take());
                batch.end_current(Outcome { explicit, end }, outputs);
                false
            }
        };
        if reusable {
            self.store.data().output.clear();
        }
        reusable
    }

    /// Prepares the store for a call (`batch`: a `handle-batch` call) from `context`, starting
    /// at the message at `offset`, which must end by `deadline`, with the full fuel budget.
    fn start_call(
        &mut self,
        context: &Arc<CallContext>,
        offset: i64,
        deadline: Instant,
        batch: Option<BatchCall>,
    ) {
        let call = &mut self.store.data_mut().call;
        if !Arc::ptr_eq(&call.context, context) {
            call.context = context.clone();
        }
        call.offset = offset;
        call.explicit = None;
        call.outputs = Outputs::default();
        call.active = true;
        call.deadline = deadline;
        call.batch = batch;
        // The callback decides at every tick: yield, or trap once the deadline has passed.
        self.store.set_epoch_deadline(1);
        if let Some(fuel) = self.fuel {
            // Each call gets the full budget; an error here means fuel is not metered, which
            // loading the plugin already ruled out.
            let _ = self.store.set_fuel(fuel);
        }
    }

    /// Ends a call: what the current message decided and sent, and the batch state.
    fn end_call(&mut self) -> (Option<Decision>, Outputs, Option<BatchCall>) {
        let call = &mut self.store.data_mut().call;
        call.active = false;
        let outputs = std::mem::take(&mut call.outputs);
        (call.explicit.take(), outputs, call.batch.take())
    }
}

/// A plugin's batch export, its type checked.
#[derive(Clone, Copy)]
enum BatchFunc {
    Packed(Func),
    Listed(Func),
}

impl BatchFunc {
    fn name(self) -> &'static str {
        match self {
            BatchFunc::Packed(_) => packed::PACKED_EXPORT,
            BatchFunc::Listed(_) => batch::BATCH_EXPORT,
        }
    }

    /// The batch export of `instance`, refused when it does not have its world's type.
    fn load(
        export: BatchExport,
        store: &mut Store<HostState>,
        instance: &wasmtime::component::Instance,
        shown: &dyn std::fmt::Display,
    ) -> Result<Self> {
        let (index, name, world) = match export {
            BatchExport::Packed(index) => (index, packed::PACKED_EXPORT, "packed-batch-handler"),
            BatchExport::Listed(index) => (index, batch::BATCH_EXPORT, "batch-handler"),
        };
        let func = instance
            .get_func(&mut *store, index)
            .with_context(|| format!("plugin {shown}: `{name}` is not a function"))?;
        let typed = match export {
            BatchExport::Packed(_) => func
                .typed::<(&str, i32, u32, &[u8]), ()>(&*store)
                .map(|_| BatchFunc::Packed(func)),
            BatchExport::Listed(_) => func
                .typed::<(&[Message],), ()>(&*store)
                .map(|_| BatchFunc::Listed(func)),
        };
        typed.map_err(anyhow::Error::from).with_context(|| {
            format!("plugin {shown}: `{name}` does not have the type of world `{world}`")
        })
    }
}

/// A call dropped at its `deadline` while the guest waited in a host call.
fn cut_off_in_host_call(deadline: Duration, output: String) -> CallEnd {
    CallEnd::Trapped {
        kind: TrapKind::Deadline,
        detail: format!(
            "deadline of {} ms exceeded while the guest waited in a host call (a sleep, a poll, \
             I/O); the call was cut off",
            deadline.as_millis()
        ),
        stderr: crate::text::keep_end(&output, MAX_REPORT_TEXT).to_string(),
    }
}

/// Turns the error of a failed call into what happened.
fn classify(err: &wasmtime::Error, output: String) -> CallEnd {
    if let Some(Interrupt(decision)) = err.downcast_ref::<Interrupt>() {
        return CallEnd::Interrupted(*decision);
    }
    let kind = if err.downcast_ref::<MemoryLimitExceeded>().is_some() {
        TrapKind::MemoryLimit
    } else {
        match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => TrapKind::Deadline,
            Some(Trap::StackOverflow) => TrapKind::StackOverflow,
            Some(Trap::OutOfFuel) => TrapKind::Fuel,
            Some(Trap::UnreachableCodeReached) => TrapKind::Panic,
            _ => TrapKind::Other,
        }
    };
    // The root cause ("wasm `unreachable` instruction executed") first, then the backtrace.
    let detail = format!("{}\n{err:?}", err.root_cause());
    CallEnd::Trapped {
        kind,
        detail: crate::text::truncate(&detail, MAX_REPORT_TEXT).to_string(),
        stderr: crate::text::keep_end(&output, MAX_REPORT_TEXT).to_string(),
    }
}
