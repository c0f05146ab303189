//! `handle-batch`: several messages in one sandbox call, each still handled, bounded and settled
//! as if it had a call of its own: the state of a running batch. The host function
//! `batch.finish` that moves it on is one of the guest's imports (`imports.rs`).
//!
//! The guest reports each message's result through `finish` as soon as it is known, so a trap,
//! an interrupt or a deadline in the middle of a batch ends only the message that was running:
//! those before it keep their results, those after it were never handled and are delivered
//! again. `finish` also starts the next message's deadline, fuel and output bounds, and stops
//! the batch at the first message that does not simply commit (a nack waits for its
//! redelivery before anything after it is handled).

use crate::bindings::{HandlerError, MessageFields, WitDecision};
use crate::outcome::{CallEnd, ErrorKind, Outcome};
use crate::outputs::Outputs;
use crate::policy::DeliveryRules;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The export of world `batch-handler`.
pub const BATCH_EXPORT: &str = "handle-batch";

/// A batch that has run this long starts no further message; the rest wait for the next call.
/// Batches pay off for messages that take microseconds; a few such calls a second cost
/// nothing.
pub const MAX_BATCH_TIME: Duration = Duration::from_millis(10);

/// What `finish` takes: what `handle` returns.
pub(super) type HandleResult = Result<Option<WitDecision>, HandlerError>;

/// One message of a batch, handled.
#[derive(Debug)]
pub struct Finished {
    /// How its handling ended.
    pub outcome: Outcome,
    /// What it sent through `producer`.
    pub outputs: Outputs,
    /// When its handling started.
    pub started: Instant,
    /// How long it took.
    pub elapsed: Duration,
    /// A `handle-batch` call handled it.
    pub batched: bool,
}

/// Where a batch's messages go as the guest finishes them.
pub type FinishedSink = mpsc::UnboundedSender<Finished>;

/// The state of a running `handle-batch` call.
#[derive(Debug)]
pub struct BatchCall {
    /// Offset and attempt of each message of the batch, in order.
    pub(super) messages: Vec<(i64, u32)>,
    /// The spans the messages' guest log lines belong to.
    pub(super) spans: Arc<[tracing::Span]>,
    /// The messages' `process` spans (OpenTelemetry), where their guest log lines become events.
    pub(super) traces: Arc<[Option<opentelemetry::Context>]>,
    pub(super) rules: DeliveryRules,
    /// Once the worker is told to stop, no further message of the batch starts.
    pub(super) stop: CancellationToken,
    /// Nor once the batch has run this long.
    pub(super) max_time: Duration,
    /// Each message's own deadline and fuel, set by the instance.
    pub(super) deadline: Duration,
    pub(super) fuel: Option<u64>,
    /// Messages finished so far.
    pub(super) finished: usize,
    pub(super) sink: FinishedSink,
    /// When the current message started.
    pub(super) started: Instant,
    /// The host said stop: no message is current any more.
    pub stopped: bool,
    /// The current message's deadline in nanoseconds after `base`, for the host's timeout
    /// while the guest waits in a host call.
    pub(super) deadline_nanos: Arc<AtomicU64>,
    pub(super) base: Instant,
}

impl BatchCall {
    /// A batch of `messages` (their `spans` for the guest's log lines), settled by `rules`
    /// to decide whether the next message may start, each finished message going to `sink`;
    /// the instance that runs it sets its deadline and fuel.
    pub fn new<M: MessageFields>(
        messages: &[M],
        spans: Arc<[tracing::Span]>,
        rules: DeliveryRules,
        stop: CancellationToken,
        sink: FinishedSink,
    ) -> Self {
        let now = Instant::now();
        BatchCall {
            messages: messages.iter().map(|m| (m.offset(), m.attempt())).collect(),
            spans,
            traces: Arc::new([]),
            rules,
            stop,
            max_time: MAX_BATCH_TIME,
            deadline: Duration::ZERO,
            fuel: None,
            finished: 0,
            sink,
            started: now,
            stopped: false,
            deadline_nanos: Arc::new(AtomicU64::new(0)),
            base: now,
        }
    }

    /// Starts no further message once the batch has run for `max_time` instead of
    /// [`MAX_BATCH_TIME`].
    pub fn with_max_time(mut self, max_time: Duration) -> Self {
        self.max_time = max_time;
        self
    }

    /// Starts the first message now, under `deadline` and `fuel`.
    pub fn begin(&mut self, deadline: Duration, fuel: Option<u64>) {
        let now = Instant::now();
        self.deadline = deadline;
        self.fuel = fuel;
        self.base = now;
        self.started = now;
        self.deadline_nanos
            .store(nanos(deadline), Ordering::Relaxed);
    }

    /// Follows the current message's deadline from outside the store, while the call runs.
    pub fn deadline_watch(&self) -> DeadlineWatch {
        DeadlineWatch {
            base: self.base,
            nanos: self.deadline_nanos.clone(),
        }
    }

    /// The span of the current message, if one is current.
    pub fn current_span(&self) -> Option<&tracing::Span> {
        if self.stopped {
            return None;
        }
        self.spans.get(self.finished)
    }

    /// With the messages' `process` spans, in order.
    pub(crate) fn with_traces(mut self, traces: Arc<[Option<opentelemetry::Context>]>) -> Self {
        self.traces = traces;
        self
    }

    /// The current message's `process` span.
    pub(crate) fn current_trace(&self) -> Option<&opentelemetry::Context> {
        if self.stopped {
            return None;
        }
        self.traces.get(self.finished)?.as_ref()
    }

    /// The current message's offset, if one is current.
    pub fn current_offset(&self) -> Option<i64> {
        if self.stopped {
            return None;
        }
        self.messages.get(self.finished).map(|(offset, _)| *offset)
    }

    /// Ends the current message with `end` (a trap, an interrupt, a deadline, a return without
    /// `finish`), with what it decided and sent. Nothing if no message is current.
    pub fn end_current(&mut self, outcome: Outcome, outputs: Outputs) {
        if self.current_offset().is_none() {
            return;
        }
        let elapsed = self.started.elapsed();
        self.report(Finished {
            outcome,
            outputs,
            started: self.started,
            elapsed,
            batched: true,
        });
        self.stopped = true;
    }

    /// The batch could not start (no instance): its first message ends with `outcome`, as its
    /// own call would; the rest wait for later calls.
    pub fn fail_first(mut self, outcome: Outcome) {
        self.report(Finished {
            outcome,
            outputs: Outputs::default(),
            started: self.started,
            elapsed: self.started.elapsed(),
            batched: true,
        });
    }

    pub(super) fn report(&mut self, finished: Finished) {
        self.finished += 1;
        // The worker may have let go of the batch (a rewind): nobody wants the result then.
        let _ = self.sink.send(finished);
    }
}

/// The deadline of a batch's current message, read while the call holds the store.
pub struct DeadlineWatch {
    base: Instant,
    nanos: Arc<AtomicU64>,
}

impl DeadlineWatch {
    /// When the current message must end.
    pub fn get(&self) -> Instant {
        self.base + Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }
}

pub(super) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// A handler's returned result as the call's end.
pub fn returned(result: HandleResult) -> CallEnd {
    match result {
        Ok(decision) => CallEnd::Returned(decision.map(Into::into)),
        Err(error) => {
            let (kind, message) = match error {
                HandlerError::Retry(m) => (ErrorKind::Retry, m),
                HandlerError::Fatal(m) => (ErrorKind::Fatal, m),
            };
            let message = crate::text::truncate(&message, crate::text::MAX_REPORT_TEXT).to_string();
            CallEnd::Failed { kind, message }
        }
    }
}
