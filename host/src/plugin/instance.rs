//! One instance of a plugin: its own `Store`, called once per message, discarded after a trap.
//!
//! How a deadline holds whatever the guest does: every call runs on a fiber (wasmtime's async
//! calls). While the guest runs its own code, each epoch tick enters a callback that yields to
//! the executor and, once the deadline has passed, traps (`trap:deadline` with the guest's
//! backtrace). While it waits inside a host call (a sleep, a clock poll, an HTTP response, a
//! file read) it is a suspended future, and the call's timeout drops it at the deadline. Either
//! way the call ends within its deadline plus one tick, and the instance is discarded.

use super::imports::{CallContext, HostState, Interrupt, MemoryLimitExceeded};
use super::runtime::Plugin;
use crate::bindings::{Handler, HandlerError, Message};
use crate::outcome::{CallEnd, ErrorKind, Outcome, TrapKind};
use crate::outputs::Outputs;
use anyhow::{Context, Result};
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};
use wasmtime::{Store, Trap, UpdateDeadline};

/// Longest trap detail or guest error text kept in a report.
const MAX_REPORT_TEXT: usize = 2048;

/// One instance of a [`Plugin`] in a `Store` of its own (memory, WASI context, call state).
/// Called once per message; discarded after a trap, an interrupt or a deadline.
pub struct PluginInstance {
    store: Store<HostState>,
    handler: Handler,
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
        let handler = instantiated
            .map_err(anyhow::Error::from)
            .with_context(|| format!("plugin {shown}: instantiation failed"))?;
        Ok(PluginInstance {
            store,
            handler,
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
        let state = self.store.data_mut();
        if !Arc::ptr_eq(&state.call.context, context) {
            state.call.context = context.clone();
        }
        state.call.offset = message.offset;
        state.call.explicit = None;
        state.call.outputs = Outputs::default();
        state.call.active = true;
        let deadline = Instant::now() + self.deadline;
        state.call.deadline = deadline;
        // The callback decides at every tick: yield, or trap once the deadline has passed.
        self.store.set_epoch_deadline(1);
        if let Some(fuel) = self.fuel {
            // Each call gets the full budget; an error here means fuel is not metered, which
            // loading the plugin already ruled out.
            let _ = self.store.set_fuel(fuel);
        }

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

        let state = self.store.data_mut();
        state.call.active = false;
        let explicit = state.call.explicit.take();
        let outputs = std::mem::take(&mut state.call.outputs);
        let Ok(result) = result else {
            // Dropped while suspended in a host call: guest code would have trapped at a tick.
            let detail = format!(
                "deadline of {} ms exceeded while the guest waited in a host call (a sleep, a \
                 poll, I/O); the call was cut off",
                self.deadline.as_millis()
            );
            let end = CallEnd::Trapped {
                kind: TrapKind::Deadline,
                detail,
                stderr: super::keep_end(&state.output.take(), MAX_REPORT_TEXT).to_string(),
            };
            return (Outcome { explicit, end }, outputs, false);
        };
        let (end, reusable) = match result {
            Ok(Ok(decision)) => (CallEnd::Returned(decision.map(Into::into)), true),
            Ok(Err(error)) => {
                let (kind, message) = match error {
                    HandlerError::Retry(m) => (ErrorKind::Retry, m),
                    HandlerError::Fatal(m) => (ErrorKind::Fatal, m),
                };
                let message = super::truncate(&message, MAX_REPORT_TEXT).to_string();
                (CallEnd::Failed { kind, message }, true)
            }
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
        detail: super::truncate(&detail, MAX_REPORT_TEXT).to_string(),
        stderr: super::keep_end(&output, MAX_REPORT_TEXT).to_string(),
    }
}
