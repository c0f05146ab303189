//! Native test harness: run a handler on a message and see what it did.
//!
//! ```ignore
//! let run = ackbar_guest::testing::run::<MyHandler>(testing::message(br#"{"id":"o1"}"#));
//! assert_eq!(run.settled(), Some(Decision::Ack));
//! assert!(run.logged("o1"));
//! ```

use crate::{Decision, Guest, HandlerError, Level, Message, OutputRecord, SendError};
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A message with the given payload and defaults for everything else (attempt 1).
pub fn message(payload: &[u8]) -> Message {
    Message {
        topic: "test".into(),
        partition: 0,
        offset: 0,
        timestamp: None,
        key: None,
        payload: Some(payload.to_vec()),
        headers: Vec::new(),
        attempt: 1,
    }
}

/// How the `handle` call ended.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    /// `handle` returned.
    Returned(Result<Option<Decision>, HandlerError>),
    /// The handler called [`interrupt`](crate::interrupt).
    Interrupted(Decision),
    /// The handler panicked: a trap for the host. Holds the panic message.
    Trapped(String),
}

/// Everything one call did.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// How the `handle` call ended.
    pub end: End,
    /// Every `ack`/`nack`/`reject` call, in order (the host keeps only the first).
    pub decisions: Vec<Decision>,
    /// Every `log` call (level and text), in order.
    pub logs: Vec<(Level, String)>,
    /// Every record sent, in order (the host publishes them only if the attempt succeeds).
    pub sent: Vec<OutputRecord>,
}

impl Run {
    /// The payloads sent to `topic`, in order.
    pub fn sent_to(&self, topic: &str) -> Vec<&[u8]> {
        self.sent
            .iter()
            .filter(|r| r.topic == topic)
            .filter_map(|r| r.payload.as_deref())
            .collect()
    }

    /// The decision the host would settle the message with, if the handler made one: the first
    /// acker call, else an interrupt, else a returned decision. `None` leaves it to the policy.
    pub fn settled(&self) -> Option<Decision> {
        if let Some(first) = self.decisions.first() {
            return Some(*first);
        }
        match &self.end {
            End::Interrupted(d) | End::Returned(Ok(Some(d))) => Some(*d),
            _ => None,
        }
    }

    /// Whether any log line contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.logs.iter().any(|(_, line)| line.contains(text))
    }
}

#[derive(Default)]
struct Recorder {
    decisions: Vec<Decision>,
    logs: Vec<(Level, String)>,
    sent: Vec<OutputRecord>,
}

thread_local! {
    static RECORDER: RefCell<Option<Recorder>> = const { RefCell::new(None) };
}

/// The panic payload that carries an interrupt out of the handler.
struct InterruptSignal(Decision);

/// Calls `H::handle(msg)` natively, recording acker and log calls; panics and interrupts are
/// caught and reported, so a test can assert on traps too.
pub fn run<H: Guest>(msg: Message) -> Run {
    RECORDER.with(|r| *r.borrow_mut() = Some(Recorder::default()));
    let result = catch_unwind(AssertUnwindSafe(|| H::handle(msg)));
    let recorder = RECORDER.with(|r| r.borrow_mut().take()).unwrap_or_default();
    let end = match result {
        Ok(returned) => End::Returned(returned),
        Err(payload) => match payload.downcast::<InterruptSignal>() {
            Ok(signal) => End::Interrupted(signal.0),
            Err(payload) => End::Trapped(panic_text(payload)),
        },
    };
    Run {
        end,
        decisions: recorder.decisions,
        logs: recorder.logs,
        sent: recorder.sent,
    }
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .unwrap_or_else(|| "panic".into()),
    }
}

fn with_recorder(f: impl FnOnce(&mut Recorder)) {
    RECORDER.with(|r| match r.borrow_mut().as_mut() {
        Some(recorder) => f(recorder),
        None => panic!("ackbar_guest: acker and log calls need testing::run outside Wasm"),
    })
}

pub(crate) fn record_decision(decision: Decision) {
    with_recorder(|r| r.decisions.push(decision));
}

pub(crate) fn record_log(level: Level, text: &str) {
    with_recorder(|r| r.logs.push((level, text.to_string())));
}

pub(crate) fn record_send(record: OutputRecord) -> Result<(), SendError> {
    if record.topic.is_empty() {
        return Err(SendError::Invalid("the topic is empty".into()));
    }
    with_recorder(|r| r.sent.push(record));
    Ok(())
}

pub(crate) fn interrupt(decision: Decision) -> ! {
    std::panic::resume_unwind(Box::new(InterruptSignal(decision)))
}
