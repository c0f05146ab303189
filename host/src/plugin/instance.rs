//! One instance of a plugin: its own `Store`, called once per message, discarded after a trap.

use super::host::{CallContext, HostState, Interrupt, MemoryLimitExceeded};
use super::runtime::Plugin;
use crate::bindings::{Handler, HandlerError, Message};
use crate::outcome::{CallEnd, ErrorKind, Outcome, TrapKind};
use anyhow::{Context, Result};
use wasmtime::{Store, Trap};

/// Longest trap detail or guest error text kept in a report.
const MAX_REPORT_TEXT: usize = 2048;

pub struct PluginInstance {
    store: Store<HostState>,
    handler: Handler,
    fuel: Option<u64>,
}

impl PluginInstance {
    pub fn new(plugin: &Plugin) -> Result<Self> {
        let limits = plugin.limits();
        let state = HostState::new(limits.memory_bytes, plugin.grants(), limits.deadline)
            .with_context(|| {
                format!("plugin {}: preparing its sandbox", plugin.path().display())
            })?;
        let mut store = Store::new(plugin.runtime.engine(), state);
        store.limiter(|state| &mut state.limiter);
        // Instantiation runs guest start code: bound it too.
        store.set_epoch_deadline(limits.deadline_ticks());
        store.epoch_deadline_trap();
        if let Some(fuel) = limits.fuel {
            store
                .set_fuel(fuel)
                .map_err(anyhow::Error::from)
                .context("setting the fuel limit")?;
        }
        let handler = plugin
            .pre
            .instantiate(&mut store)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("plugin {}: instantiation failed", plugin.path().display()))?;
        Ok(PluginInstance {
            store,
            handler,
            fuel: limits.fuel,
        })
    }

    /// Calls `handle`. Returns the outcome and whether this instance may be used again: after a
    /// trap or an interrupt the guest's state is unknown (and wasmtime refuses re-entry).
    pub fn call(
        &mut self,
        message: &Message,
        context: CallContext,
        deadline_ticks: u64,
    ) -> (Outcome, bool) {
        let state = self.store.data_mut();
        state.call.context = context;
        state.call.explicit = None;
        state.call.active = true;
        self.store.set_epoch_deadline(deadline_ticks);
        if let Some(fuel) = self.fuel {
            // Each call gets the full budget; an error here means fuel is not metered, which
            // loading the plugin already ruled out.
            let _ = self.store.set_fuel(fuel);
        }

        let result = self.handler.call_handle(&mut self.store, message);

        let state = self.store.data_mut();
        state.call.active = false;
        let explicit = state.call.explicit.take();
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
        (Outcome { explicit, end }, reusable)
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
        stderr: super::truncate(&output, MAX_REPORT_TEXT).to_string(),
    }
}
