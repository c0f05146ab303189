//! What a handler call amounted to: the vocabulary shared by the plugin runtime (which produces
//! outcomes) and the policy engine (which turns them into offset actions).

use std::fmt;

/// How a message is settled, whether by the guest or by the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Done: the offset may be committed.
    Ack,
    /// Not done: deliver the message again after a backoff, before anything after it.
    Nack,
    /// Done but unprocessable: dead-letter it where configured, then commit.
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
    /// `retry`: transient, a redelivery may succeed.
    Retry,
    /// `fatal`: permanent; under `NACK_ON_ERROR` the message is rejected, not redelivered.
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
    Failed {
        /// `retry` or `fatal`.
        kind: ErrorKind,
        /// The handler's error text, cut to 2048 bytes.
        message: String,
    },
    /// The instance trapped; it has been discarded.
    Trapped {
        /// Why it trapped.
        kind: TrapKind,
        /// What happened, in its first line; for a trap in the call, the root cause followed by
        /// the full error with the guest's backtrace, cut to 2048 bytes.
        detail: String,
        /// What the guest wrote to stdout and stderr during the call, at most 2048 bytes; where
        /// [`Outcome::reason`] finds a Rust panic's message.
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
    /// How the call ended. For settling, `explicit` takes precedence over it.
    pub end: CallEnd,
}

impl Outcome {
    /// A call that returned `ok(decision)` without calling `acker`.
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

    /// Why the call ended as it did, in one line: the one text of an outcome for logs, dead-letter
    /// headers, `ackbar invoke` and the demo. A trap names its kind and what the guest said when it
    /// died (a Rust panic's message), else the trap's first line.
    pub fn reason(&self) -> String {
        match &self.end {
            CallEnd::Failed { message, .. } => message.clone(),
            CallEnd::Trapped {
                kind,
                detail,
                stderr,
            } => {
                let said = panic_message(stderr)
                    .unwrap_or_else(|| detail.lines().next().unwrap_or_default());
                format!("trap ({kind}): {said}")
            }
            CallEnd::Interrupted(d) => format!("interrupted with {d}"),
            CallEnd::Returned(Some(d)) => format!("returned {d}"),
            CallEnd::Returned(None) => match self.explicit {
                Some(d) => format!("settled with {d} by the handler"),
                None => "handled".into(),
            },
        }
    }

    /// Whether the ack policy sees a failure: a returned error or a trap. An interrupt is not
    /// one.
    pub fn is_failure(&self) -> bool {
        matches!(self.end, CallEnd::Failed { .. } | CallEnd::Trapped { .. })
    }
}

/// The message of a Rust panic in a guest's stderr: std prints "thread '…' panicked at FILE:LINE:"
/// and the message on the next line.
fn panic_message(stderr: &str) -> Option<&str> {
    let mut lines = stderr.lines().skip_while(|l| !l.contains("panicked at"));
    lines.next()?;
    lines.next().map(str::trim).filter(|m| !m.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trapped(detail: &str, stderr: &str) -> Outcome {
        Outcome {
            explicit: None,
            end: CallEnd::Trapped {
                kind: TrapKind::Panic,
                detail: detail.into(),
                stderr: stderr.into(),
            },
        }
    }

    #[test]
    fn a_trap_reason_is_the_panic_message_when_the_guest_printed_one() {
        let panicked = trapped(
            "wasm trap: wasm `unreachable` instruction executed\nbacktrace…",
            "thread '<unnamed>' panicked at src/lib.rs:9:5:\norder o10: cannot price item 'poison'\nnote: run with `RUST_BACKTRACE=1`",
        );
        assert_eq!(
            panicked.reason(),
            "trap (panic): order o10: cannot price item 'poison'"
        );
        let silent = trapped(
            "wasm trap: wasm `unreachable` instruction executed\nbacktrace…",
            "",
        );
        assert_eq!(
            silent.reason(),
            "trap (panic): wasm trap: wasm `unreachable` instruction executed"
        );
    }

    #[test]
    fn every_end_has_a_reason() {
        let explicit = Outcome {
            explicit: Some(Decision::Reject),
            end: CallEnd::Returned(None),
        };
        assert_eq!(explicit.reason(), "settled with reject by the handler");
        assert_eq!(Outcome::returned(None).reason(), "handled");
        assert_eq!(
            Outcome::returned(Some(Decision::Nack)).reason(),
            "returned nack"
        );
        let interrupted = Outcome {
            explicit: None,
            end: CallEnd::Interrupted(Decision::Ack),
        };
        assert_eq!(interrupted.reason(), "interrupted with ack");
    }
}
