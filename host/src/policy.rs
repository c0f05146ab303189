//! The ack-policy engine: pure functions from a delivery's outcome to what happens to it.
//!
//! This is the single place where a handler result (including a trap) becomes a commit, a dead
//! letter, a redelivery after a backoff, a pause or nothing. [`decide`] applies the policy table
//! (the contract in `docs/src/ack-policies.md`); [`DeliveryRules::settle`] adds the retry cap
//! (`max_attempts`), the dead-letter topic and the backoff, and its [`Settlement`] is what the
//! workers (`consumer/verdict.rs`) and `ackbar invoke` carry out. A share group acknowledges
//! each record as `Settlement::share_acknowledgement` says.
//!
//! # Words
//!
//! One vocabulary, used by every worker, event and log line:
//!
//! 1. **outcome** ([`Outcome`]): how one handler call ended (returned, failed, trapped,
//!    interrupted) and the guest's explicit decision, if it made one;
//! 2. **action** ([`Action`]): what the ack policy does with the offset: commit, redeliver,
//!    reject, or nothing ([`decide`]);
//! 3. **verdict** ([`Verdict`]): what the pipeline does next, once the retry cap, the
//!    dead-letter topic and the backoff have had their say: commit, dead-letter then commit,
//!    redeliver after a wait, pause, or leave for a later commit. Action and verdict together are
//!    the delivery's **settlement** ([`Settlement`], from [`DeliveryRules::settle`]).
//!
//! A worker **carries out** the verdict; the message is then **settled** (its offset may be
//! committed: `Completion::Settled`) or **left** for a later commit (`Completion::Left`). A
//! message whose worker stops before that is **abandoned**: it stays uncommitted and is read
//! again by the partition's next owner.

use crate::outcome::{CallEnd, Decision, ErrorKind, Outcome};
use serde::Deserialize;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// FastStream's Kafka ack policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AckPolicy {
    /// Only the guest's own decisions move offsets.
    Manual,
    /// librdkafka auto-commit on fetch: at-most-once.
    #[default]
    AckFirst,
    /// Commit after the handler, whatever happened.
    Ack,
    /// Like `Ack`; failures are rejected (dead-lettered where configured).
    RejectOnError,
    /// Commit on success, redeliver on failure.
    NackOnError,
}

impl AckPolicy {
    /// Every policy, in the order of the policy table. Parsing accepts exactly their
    /// [`name`](Self::name)s (case-insensitive, `-` for `_`).
    pub const ALL: [AckPolicy; 5] = [
        AckPolicy::Manual,
        AckPolicy::AckFirst,
        AckPolicy::Ack,
        AckPolicy::RejectOnError,
        AckPolicy::NackOnError,
    ];

    /// Whether Ackbar commits offsets itself, to the consumer group (all but `ACK_FIRST`, which
    /// leaves it to librdkafka): such a policy needs a `group_id`.
    pub(crate) fn commits_explicitly(self) -> bool {
        self != AckPolicy::AckFirst
    }

    /// The name in configs, logs and errors: `MANUAL`, `ACK_FIRST`, `ACK`, `REJECT_ON_ERROR` or
    /// `NACK_ON_ERROR`.
    pub fn name(self) -> &'static str {
        match self {
            AckPolicy::Manual => "MANUAL",
            AckPolicy::AckFirst => "ACK_FIRST",
            AckPolicy::Ack => "ACK",
            AckPolicy::RejectOnError => "REJECT_ON_ERROR",
            AckPolicy::NackOnError => "NACK_ON_ERROR",
        }
    }
}

impl fmt::Display for AckPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AckPolicy {
    type Err = String;

    /// Case-insensitive; `-` and `_` are interchangeable (`nack-on-error`, `NACK_ON_ERROR`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_uppercase().replace('-', "_");
        AckPolicy::ALL
            .into_iter()
            .find(|p| p.name() == wanted)
            .ok_or_else(|| {
                format!(
                    "unknown ack policy '{s}', expected one of MANUAL, ACK_FIRST, ACK, REJECT_ON_ERROR, NACK_ON_ERROR"
                )
            })
    }
}

impl<'de> Deserialize<'de> for AckPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What to do with a message's offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Settled: commit it (as part of the partition's low-watermark).
    Commit,
    /// Settled as unprocessable: dead-letter where configured, then commit.
    Reject,
    /// Not settled: deliver it again after a backoff, before anything after it in the partition.
    Redeliver,
    /// Processed but not settled by anyone: the offset moves only when a later message commits.
    Nothing,
}

impl Action {
    /// The action in reports: `commit`, `reject`, `redeliver` or `nothing`.
    pub fn name(self) -> &'static str {
        match self {
            Action::Commit => "commit",
            Action::Reject => "reject",
            Action::Redeliver => "redeliver",
            Action::Nothing => "nothing",
        }
    }
}

fn settle(decision: Decision) -> Action {
    match decision {
        Decision::Ack => Action::Commit,
        Decision::Nack => Action::Redeliver,
        Decision::Reject => Action::Reject,
    }
}

/// Decides what happens to a message's offset.
///
/// Precedence: the guest's first explicit `acker` call, then an interrupt, then a returned
/// decision, and only then the policy's automatic step.
pub fn decide(policy: AckPolicy, outcome: &Outcome) -> Action {
    if let Some(decision) = outcome.explicit {
        return settle(decision);
    }
    match &outcome.end {
        CallEnd::Interrupted(decision) | CallEnd::Returned(Some(decision)) => settle(*decision),
        CallEnd::Returned(None) => match policy {
            AckPolicy::Manual | AckPolicy::AckFirst => Action::Nothing,
            AckPolicy::Ack | AckPolicy::RejectOnError | AckPolicy::NackOnError => Action::Commit,
        },
        failure @ (CallEnd::Failed { .. } | CallEnd::Trapped { .. }) => match policy {
            AckPolicy::Manual | AckPolicy::AckFirst => Action::Nothing,
            AckPolicy::Ack => Action::Commit,
            AckPolicy::RejectOnError => Action::Reject,
            AckPolicy::NackOnError => match failure {
                // Redelivery cannot fix what the handler called permanent.
                CallEnd::Failed {
                    kind: ErrorKind::Fatal,
                    ..
                } => Action::Reject,
                _ => Action::Redeliver,
            },
        },
    }
}

/// What is done with a delivered message, all rules applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Settled: the offset is committed with the partition's low-watermark.
    Commit,
    /// Settled as unprocessable: a dead letter is written, and the offset is committed once the
    /// broker has it.
    DeadLetterThenCommit,
    /// Not settled: delivered again after this wait, before anything after it in the partition.
    RedeliverAfter(Duration),
    /// `max_attempts` is used up and there is no dead-letter topic: the partition stops on this
    /// message (it is never skipped) until a new plugin version is loaded.
    Pause,
    /// Handled but settled by nobody: the offset moves only when a later message commits.
    Leave,
}

impl Verdict {
    /// The verdict in logs and reports: `commit`, `dead-letter`, `redeliver`, `pause`, `leave`.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Commit => "commit",
            Verdict::DeadLetterThenCommit => "dead-letter",
            Verdict::RedeliverAfter(_) => "redeliver",
            Verdict::Pause => "pause",
            Verdict::Leave => "leave",
        }
    }
}

/// The outcome of one delivery, settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    /// What the policy made of the outcome, after the retry cap (an exhausted message with a
    /// dead-letter topic is rejected). Counted in stats and metrics.
    pub action: Action,
    /// What is done.
    pub verdict: Verdict,
    /// The delivery used up `max_attempts` while the policy wanted another.
    pub exhausted: bool,
}

impl Settlement {
    /// Whether what this attempt sent through `producer` is published (the outputs table in
    /// `docs/src/handlers-that-produce.md`): only when the handler did not fail and the message is
    /// settled as handled — an ack, explicit or by the policy, or left to a later commit under
    /// `MANUAL`/`ACK_FIRST`. A nack, a reject (the dead letter goes instead), an error or a trap
    /// (even one after an explicit ack, and even where the policy commits it) publishes none of
    /// it: its outputs may be partial, and a redelivery sends its own.
    pub fn publishes_outputs(&self, outcome: &Outcome) -> bool {
        !outcome.is_failure()
            && matches!(self.action, Action::Commit | Action::Nothing)
            && matches!(self.verdict, Verdict::Commit | Verdict::Leave)
    }
}

impl Settlement {
    /// Whether a `handle-batch` call goes on at once with its next message: only when this one
    /// commits, or is left to a later commit. Anything else (a redelivery, a dead letter, a
    /// pause) must be carried out before what follows it in the partition, so the batch stops
    /// there and the worker takes over.
    pub(crate) fn lets_the_batch_go_on(&self) -> bool {
        matches!(self.verdict, Verdict::Commit | Verdict::Leave)
    }
}

/// How a share-group member acknowledges a record to the broker (KIP-932) once its verdict is
/// carried out: the broker, not an offset, keeps each record's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShareAcknowledgement {
    /// Handled: the record is done.
    Accept,
    /// Delivered again, to any member, with the delivery count one higher.
    Release,
    /// Unprocessable: archived.
    Reject,
}

impl Settlement {
    /// The acknowledgement that carries out this settlement in a share group: a commit is an
    /// ACCEPT (a REJECT when the message was rejected), a dead letter is followed by a REJECT,
    /// and whatever is to be delivered again, or was settled by nobody, is RELEASEd after its
    /// wait. A pause becomes a release too: other members may take the record meanwhile.
    pub(crate) fn share_acknowledgement(&self) -> ShareAcknowledgement {
        match self.verdict {
            Verdict::Commit if self.action == Action::Reject => ShareAcknowledgement::Reject,
            Verdict::Commit => ShareAcknowledgement::Accept,
            Verdict::DeadLetterThenCommit => ShareAcknowledgement::Reject,
            Verdict::RedeliverAfter(_) | Verdict::Pause | Verdict::Leave => {
                ShareAcknowledgement::Release
            }
        }
    }
}

/// Redelivery backoff after a nack: `initial_ms`, multiplied by `multiplier` on each further
/// nack of the same message, capped at `max_ms`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Backoff {
    /// Wait before the first redelivery, in ms (default 100); at most `max_ms`.
    pub initial_ms: u64,
    /// Longest wait, in ms (default 10 000).
    pub max_ms: u64,
    /// Growth factor per further nack (default 2.0); finite and at least 1.
    pub multiplier: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial_ms: 100,
            max_ms: 10_000,
            multiplier: 2.0,
        }
    }
}

impl Backoff {
    /// The wait before redelivering a message that has been nacked `nacks` times (≥ 1).
    pub fn delay(&self, nacks: u32) -> Duration {
        let exponent = nacks.saturating_sub(1).min(64) as i32;
        let ms = self.initial_ms as f64 * self.multiplier.powi(exponent);
        Duration::from_millis(ms.min(self.max_ms as f64) as u64)
    }
}

/// A pipeline's rules for settling deliveries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeliveryRules {
    /// Turns an outcome into an [`Action`] ([`decide`]).
    pub policy: AckPolicy,
    /// Deliveries counted before a message that keeps asking for redelivery is exhausted.
    pub max_attempts: Option<u32>,
    /// Whether rejected and exhausted messages have a dead-letter topic to go to.
    pub dead_letters: bool,
    /// The wait before a redelivery, growing with the delivery's `attempt` number.
    pub backoff: Backoff,
}

impl DeliveryRules {
    /// Settles a delivery: `tries` deliveries counted against `max_attempts` so far (this one
    /// included), `attempt` its number since the message was first delivered.
    pub fn settle(&self, outcome: &Outcome, tries: u32, attempt: u32) -> Settlement {
        let mut action = decide(self.policy, outcome);
        let exhausted =
            action == Action::Redeliver && self.max_attempts.is_some_and(|max| tries >= max);
        if exhausted && self.dead_letters {
            action = Action::Reject;
        }
        let verdict = match action {
            Action::Commit => Verdict::Commit,
            Action::Nothing => Verdict::Leave,
            Action::Reject if self.dead_letters => Verdict::DeadLetterThenCommit,
            // Without a dead-letter topic a rejected message is settled by its commit alone.
            Action::Reject => Verdict::Commit,
            Action::Redeliver if exhausted => Verdict::Pause,
            Action::Redeliver => Verdict::RedeliverAfter(self.backoff.delay(attempt)),
        };
        Settlement {
            action,
            verdict,
            exhausted,
        }
    }
}

#[cfg(test)]
mod tests;
