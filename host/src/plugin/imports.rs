//! The per-instance host state and the host side of the guest's imports (`acker`, `log`,
//! `producer`, `batch.finish`).

use super::batch::{nanos, returned, BatchCall, Finished, HandleResult};
use super::grants::{Grants, HttpGate};
use super::guest_log::{bounded_line, Admission, GuestLogBudget};
use super::stdio::OutputTail;
use crate::bindings::ackbar::plugin::producer::{self, OutputRecord, SendError};
use crate::bindings::ackbar::plugin::{acker, log, types};
use crate::bindings::{Level, WitDecision};
use crate::outcome::{Decision, Outcome};
use crate::outputs::{Outputs, SharedOutputRules};
use anyhow::Context;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{ResourceLimiter, StoreContextMut};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// How much of the guest's stdout/stderr is kept for trap reports.
const OUTPUT_TAIL_BYTES: usize = 8 * 1024;

/// The error a host import returns to end the guest's call with a decision (`acker.interrupt`).
#[derive(Debug, thiserror::Error)]
#[error("handler interrupted with {0}")]
pub struct Interrupt(pub Decision);

/// The error the memory limiter returns when a guest grows past its cap.
#[derive(Debug, thiserror::Error)]
#[error("memory limit exceeded: the guest asked for {desired} bytes, the cap is {cap} bytes")]
pub struct MemoryLimitExceeded {
    /// The size the guest asked its linear memory to grow to, in bytes.
    pub desired: usize,
    /// The instance's memory cap (`memory_mib`), in bytes.
    pub cap: usize,
}

/// Who calls the handler, from where: the same for every call of one partition's worker, so
/// the worker builds it once and an instance keeps it between calls. Guest log lines carry it.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// The pipeline's tenant.
    pub tenant: Arc<str>,
    /// The pipeline handling the message.
    pub pipeline: Arc<str>,
    /// The topic of the messages handled.
    pub topic: Arc<str>,
    /// Their partition.
    pub partition: i32,
    /// The tenant's allowance of log lines.
    pub guest_log: Arc<GuestLogBudget>,
    /// Where the pipeline's handler may send records, and how much per call.
    pub outputs: SharedOutputRules,
    /// Where the pipeline keeps its last guest log lines for the console.
    pub recent: Option<Arc<crate::recent::Recent>>,
}

/// The tenant of a call made for no configured tenant, and of a pipeline configured without one.
pub const DEFAULT_TENANT: &str = "default";

/// State of one call to `handle`.
#[derive(Debug)]
pub struct CallState {
    /// Replaced only when a call comes from another worker: a worker's calls touch no reference
    /// count that other cores write.
    pub context: Arc<CallContext>,
    /// The offset of the message being handled.
    pub offset: i64,
    /// The first decision made through `acker` during this call.
    pub explicit: Option<Decision>,
    /// What the call sent through `producer`.
    pub outputs: Outputs,
    /// Set only while a call is running: acker calls outside one are ignored.
    pub active: bool,
    /// When the running call (or instantiation) must end; in a batch, the current message.
    pub deadline: std::time::Instant,
    /// Set while a `handle-batch` call runs.
    pub batch: Option<BatchCall>,
}

impl Default for CallState {
    fn default() -> Self {
        CallState {
            context: Arc::default(),
            offset: 0,
            explicit: None,
            outputs: Outputs::default(),
            active: false,
            deadline: std::time::Instant::now(),
            batch: None,
        }
    }
}

impl CallState {
    fn record(&mut self, decision: Decision) {
        if !self.active {
            tracing::debug!(%decision, "acker call outside a handle call ignored");
            return;
        }
        match self.explicit {
            None => self.explicit = Some(decision),
            Some(first) => tracing::debug!(
                pipeline = %self.context.pipeline,
                offset = self.offset,
                %first,
                ignored = %decision,
                "message already settled; later decision ignored"
            ),
        }
    }
}

/// Caps a single instance's linear memory; a refusal becomes a trap that names the cap.
pub struct MemoryCap {
    pub max_bytes: usize,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                desired,
                cap: self.max_bytes,
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a million entries is far beyond any real guest.
        Ok(desired <= 1_000_000)
    }
}

/// Everything a `Store` holds for one plugin instance.
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    http_gate: HttpGate,
    table: ResourceTable,
    pub limiter: MemoryCap,
    pub call: CallState,
    pub output: OutputTail,
    /// The [`version_id`](crate::plugin::version_id) of the plugin this instance is of.
    pub plugin_version: Arc<str>,
}

impl HostState {
    /// A sandbox with only what `grants` allows: by default no files, no environment, no
    /// arguments, no network, no stdin; stdout and stderr go to a small in-memory tail.
    /// `deadline` caps the timeouts of granted HTTP requests.
    pub fn new(
        memory_cap_bytes: usize,
        grants: &Arc<Grants>,
        deadline: std::time::Duration,
        plugin_version: Arc<str>,
    ) -> anyhow::Result<Self> {
        let output = OutputTail::new(OUTPUT_TAIL_BYTES);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(output.clone())
            .stderr(output.clone())
            // Raw sockets stay closed even with an HTTP grant: `wasi:http` is the only way
            // out, and it checks the allow-list.
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        grants.apply(&mut wasi)?;
        Ok(HostState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            http_gate: HttpGate {
                grants: grants.clone(),
                deadline,
            },
            table: ResourceTable::new(),
            limiter: MemoryCap {
                max_bytes: memory_cap_bytes,
            },
            call: CallState::default(),
            output,
            plugin_version,
        })
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_gate,
        }
    }
}

impl types::Host for HostState {}

impl acker::Host for HostState {
    fn ack(&mut self) {
        self.call.record(Decision::Ack);
    }

    fn nack(&mut self) {
        self.call.record(Decision::Nack);
    }

    fn reject(&mut self) {
        self.call.record(Decision::Reject);
    }

    fn interrupt(&mut self, decision: WitDecision) -> wasmtime::Result<()> {
        Err(wasmtime::Error::new(Interrupt(decision.into())))
    }
}

impl producer::Host for HostState {
    fn send(&mut self, record: OutputRecord) -> Result<(), SendError> {
        if !self.call.active {
            return Err(SendError::NoMessage);
        }
        let rules = &self.call.context.outputs;
        self.call.outputs.accept(record, rules)
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: Level, text: String) {
        let level = match level {
            Level::Trace => tracing::Level::TRACE,
            Level::Debug => tracing::Level::DEBUG,
            Level::Info => tracing::Level::INFO,
            Level::Warn => tracing::Level::WARN,
            Level::Error => tracing::Level::ERROR,
        };
        // A line the host's filter drops costs nothing and uses none of the allowance.
        let enabled = match level {
            tracing::Level::TRACE => {
                tracing::enabled!(target: "ackbar::guest", tracing::Level::TRACE)
            }
            tracing::Level::DEBUG => {
                tracing::enabled!(target: "ackbar::guest", tracing::Level::DEBUG)
            }
            tracing::Level::INFO => {
                tracing::enabled!(target: "ackbar::guest", tracing::Level::INFO)
            }
            tracing::Level::WARN => {
                tracing::enabled!(target: "ackbar::guest", tracing::Level::WARN)
            }
            _ => tracing::enabled!(target: "ackbar::guest", tracing::Level::ERROR),
        };
        if !enabled {
            return;
        }
        let c = &*self.call.context;
        match c.guest_log.admit() {
            Admission::Write => {}
            Admission::Drop(None) => return,
            Admission::Drop(Some(suppressed)) => {
                tracing::warn!(
                    target: "ackbar::guest",
                    tenant = %c.tenant,
                    pipeline = %c.pipeline,
                    "{suppressed} guest log lines suppressed: tenant '{}' is over its limit of {} lines per second",
                    c.guest_log.tenant(),
                    c.guest_log.lines_per_sec()
                );
                return;
            }
        }
        let text = bounded_line(&text);
        macro_rules! emit {
            ($lvl:expr) => {
                tracing::event!(
                    target: "ackbar::guest",
                    $lvl,
                    tenant = %c.tenant,
                    pipeline = %c.pipeline,
                    plugin = %self.plugin_version,
                    topic = %c.topic,
                    partition = c.partition,
                    offset = self.call.offset,
                    "{text}"
                )
            };
        }
        let write = || match level {
            tracing::Level::TRACE => emit!(tracing::Level::TRACE),
            tracing::Level::DEBUG => emit!(tracing::Level::DEBUG),
            tracing::Level::INFO => emit!(tracing::Level::INFO),
            tracing::Level::WARN => emit!(tracing::Level::WARN),
            _ => emit!(tracing::Level::ERROR),
        };
        // A single call runs inside its message's span; a batch's lines go to the span of the
        // message they are about.
        match self.call.batch.as_ref().and_then(BatchCall::current_span) {
            Some(span) => span.in_scope(write),
            None => write(),
        }
        if let Some(recent) = &c.recent {
            let offset = self.call.batch.as_ref().and_then(BatchCall::current_offset);
            recent.log(level.as_str(), offset.unwrap_or(self.call.offset), &text);
        }
        let trace = self.call.batch.as_ref().map(BatchCall::current_trace);
        crate::telemetry::spans::guest_log(trace, level.as_str(), &text);
    }
}

/// The batch interface the host implements.
const BATCH_INTERFACE: &str = "ackbar:plugin/batch@0.1.0";

/// `batch.finish`: records the current message's result and starts the next one.
fn batch_finish(mut store: StoreContextMut<'_, HostState>, result: HandleResult) -> bool {
    let state = store.data_mut();
    let call = &mut state.call;
    let Some(batch) = call.batch.as_mut() else {
        // Inside `handle`, or after the batch ended: nothing is current.
        return false;
    };
    let Some(&(_, attempt)) = batch.messages.get(batch.finished) else {
        return false;
    };
    if batch.stopped {
        return false;
    }
    let outcome = Outcome {
        explicit: call.explicit.take(),
        end: returned(result),
    };
    let commits = batch
        .rules
        .settle(&outcome, 1, attempt)
        .lets_the_batch_go_on();
    let now = Instant::now();
    let started = batch.started;
    batch.report(Finished {
        outcome,
        outputs: std::mem::take(&mut call.outputs),
        started,
        elapsed: now - started,
        batched: true,
    });
    let Some(&(next_offset, _)) = batch.messages.get(batch.finished) else {
        batch.stopped = true;
        call.active = false;
        return false;
    };
    // Past its time a batch starts no further message: its call slot and the tenant's guest
    // time (charged when the call ends) are then held about as long as one call's.
    if !commits || batch.stop.is_cancelled() || now - batch.base >= batch.max_time {
        batch.stopped = true;
        call.active = false;
        return false;
    }
    batch.started = now;
    let deadline = now + batch.deadline;
    batch
        .deadline_nanos
        .store(nanos(deadline - batch.base), Ordering::Relaxed);
    call.deadline = deadline;
    call.offset = next_offset;
    let fuel = batch.fuel;
    if let Some(fuel) = fuel {
        // The runtime meters fuel whenever a plugin has a limit, so this cannot fail.
        let _ = store.set_fuel(fuel);
    }
    true
}

/// Links `batch.finish`, by hand rather than through bindgen: it needs the store, to give each
/// message its own fuel.
pub fn add_batch_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    linker
        .instance(BATCH_INTERFACE)
        .and_then(|mut batch| {
            batch.func_wrap(
                "finish",
                |store: StoreContextMut<'_, HostState>, (result,): (HandleResult,)| {
                    Ok((batch_finish(store, result),))
                },
            )
        })
        .map_err(anyhow::Error::from)
        .context("linking ackbar:plugin/batch")
}
