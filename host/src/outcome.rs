//! What a handler call amounted to: the vocabulary shared by the plugin runtime (which produces
//! outcomes) and the policy engine (which turns them into offset actions).

use std::fmt;

/// How a message is settled, whether by the guest or by the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    Ack,
    Nack,
    Reject,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Decision::Ack => "ack",
            Decision::Nack => "nack",
            Decision::Reject => "reject",
        })
    }
}

/// The two kinds of error a handler can return (see `handler-error` in the WIT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Retry,
    Fatal,
}

/// Why an instance trapped. Every kind is a handler failure for the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrapKind {
    /// The guest panicked, aborted or reached `unreachable`.
    Panic,
    /// The per-call wall-clock deadline passed (epoch interruption).
    Deadline,
    /// The guest tried to grow memory past the per-instance cap.
    MemoryLimit,
    /// The guest overflowed its stack.
    StackOverflow,
    /// Out of fuel (instruction budget).
    Fuel,
    /// Any other trap: out-of-bounds access, bad conversion, a host import failing, ...
    Other,
}

impl TrapKind {
    /// Every kind, in a fixed order (metrics keep one counter per kind).
    pub const ALL: [TrapKind; 6] = [
        TrapKind::Panic,
        TrapKind::Deadline,
        TrapKind::MemoryLimit,
        TrapKind::StackOverflow,
        TrapKind::Fuel,
        TrapKind::Other,
    ];

    /// The name used in labels and logs: `panic`, `memory-limit`, ...
    pub fn name(self) -> &'static str {
        match self {
            TrapKind::Panic => "panic",
            TrapKind::Deadline => "deadline",
            TrapKind::MemoryLimit => "memory-limit",
            TrapKind::StackOverflow => "stack-overflow",
            TrapKind::Fuel => "fuel",
            TrapKind::Other => "other",
        }
    }
}

impl fmt::Display for TrapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the `handle` call ended.
#[derive(Debug, Clone, PartialEq)]
pub enum CallEnd {
    /// `ok(decision?)`.
    Returned(Option<Decision>),
    /// `err(handler-error)`.
    Failed { kind: ErrorKind, message: String },
    /// The instance trapped; it has been discarded.
    Trapped {
        kind: TrapKind,
        detail: String,
        stderr: String,
    },
    /// The guest called `interrupt(decision)`; the instance has been discarded.
    Interrupted(Decision),
}

/// Everything the policy needs to know about one call.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The first decision the guest made through the `acker` import during the call, if any.
    pub explicit: Option<Decision>,
    pub end: CallEnd,
}

impl Outcome {
    pub fn returned(decision: Option<Decision>) -> Self {
        Outcome {
            explicit: None,
            end: CallEnd::Returned(decision),
        }
    }

    /// A short label for logs and reports: `ok`, `error`, `trap:deadline`, `interrupt:nack`, ...
    pub fn label(&self) -> String {
        let end = match &self.end {
            CallEnd::Returned(None) => "ok".to_string(),
            CallEnd::Returned(Some(d)) => format!("returned:{d}"),
            CallEnd::Failed {
                kind: ErrorKind::Retry,
                ..
            } => "error".to_string(),
            CallEnd::Failed {
                kind: ErrorKind::Fatal,
                ..
            } => "fatal-error".to_string(),
            CallEnd::Trapped { kind, .. } => format!("trap:{kind}"),
            CallEnd::Interrupted(d) => format!("interrupt:{d}"),
        };
        match self.explicit {
            Some(d) => format!("{d}+{end}"),
            None => end,
        }
    }

    pub fn is_failure(&self) -> bool {
        matches!(self.end, CallEnd::Failed { .. } | CallEnd::Trapped { .. })
    }
}
