//! The ack-policy engine: pure functions from a delivery's outcome to what happens to it.
//!
//! This is the single place where a handler result (including a trap) becomes a commit, a dead
//! letter, a redelivery after a backoff, a pause or nothing. [`decide`] applies the policy table
//! (the contract in the README, "Ack policies"); [`DeliveryRules::settle`] adds the retry cap
//! (`max_attempts`), the dead-letter topic and the backoff, and its [`Settlement`] is what the
//! partition worker and `ackbar invoke` carry out.

use crate::config::Backoff;
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
    /// Every policy, in the order of the README's table. Parsing accepts exactly their
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
    pub fn commits_explicitly(self) -> bool {
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
    /// Whether what this attempt sent through `producer` is published (the outputs table in the
    /// README, next to the policy table): only when the handler did not fail and the message is
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

/// How a share-group member acknowledges a record to the broker (KIP-932) once its verdict is
/// carried out: the broker, not an offset, keeps each record's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareAcknowledgement {
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
    pub fn share_acknowledgement(&self) -> ShareAcknowledgement {
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
mod tests {
    use super::*;
    use crate::outcome::TrapKind;
    use AckPolicy::*;

    const BACKOFF: Backoff = Backoff {
        initial_ms: 100,
        max_ms: 1000,
        multiplier: 2.0,
    };

    fn rules(policy: AckPolicy, max_attempts: Option<u32>, dead_letters: bool) -> DeliveryRules {
        DeliveryRules {
            policy,
            max_attempts,
            dead_letters,
            backoff: BACKOFF,
        }
    }

    /// Every policy × outcome × (under the retry cap or at it) × (with a dead-letter topic or
    /// not). Columns: under the cap, under it with a dead-letter topic, at the cap, at it with a
    /// dead-letter topic. `R` is a redelivery after the third attempt's backoff.
    #[test]
    fn settlement_table() {
        const C: Verdict = Verdict::Commit;
        const D: Verdict = Verdict::DeadLetterThenCommit;
        const P: Verdict = Verdict::Pause;
        const L: Verdict = Verdict::Leave;
        const R: Verdict = Verdict::RedeliverAfter(Duration::from_millis(400));
        let outcomes: [(&str, Outcome); 6] = [
            ("ok", ok()),
            ("error", error()),
            ("fatal", fatal()),
            ("trap", trap(TrapKind::Deadline)),
            ("acker nack", with_explicit(ok(), Decision::Nack)),
            ("acker reject", with_explicit(ok(), Decision::Reject)),
        ];
        #[rustfmt::skip]
        let table: [(AckPolicy, [[Verdict; 4]; 6]); 5] = [
            //               ok            error         fatal         trap          nack          reject
            (Manual,        [[L, L, L, L], [L, L, L, L], [L, L, L, L], [L, L, L, L], [R, R, P, D], [C, D, C, D]]),
            (AckFirst,      [[L, L, L, L], [L, L, L, L], [L, L, L, L], [L, L, L, L], [R, R, P, D], [C, D, C, D]]),
            (Ack,           [[C, C, C, C], [C, C, C, C], [C, C, C, C], [C, C, C, C], [R, R, P, D], [C, D, C, D]]),
            (RejectOnError, [[C, C, C, C], [C, D, C, D], [C, D, C, D], [C, D, C, D], [R, R, P, D], [C, D, C, D]]),
            (NackOnError,   [[C, C, C, C], [R, R, P, D], [C, D, C, D], [R, R, P, D], [R, R, P, D], [C, D, C, D]]),
        ];
        for (policy, row) in table {
            for ((name, outcome), expected) in outcomes.iter().zip(row) {
                let cells = [
                    rules(policy, Some(5), false),
                    rules(policy, None, true),
                    rules(policy, Some(3), false),
                    rules(policy, Some(3), true),
                ];
                for (rules, expected) in cells.into_iter().zip(expected) {
                    // The third delivery: 100 ms × 2² of backoff before a fourth.
                    let settled = rules.settle(outcome, 3, 3);
                    assert_eq!(settled.verdict, expected, "{policy} {name} {rules:?}");
                    let capped = rules.max_attempts == Some(3);
                    assert_eq!(
                        settled.exhausted,
                        capped && decide(policy, outcome) == Action::Redeliver,
                        "{policy} {name} {rules:?}"
                    );
                }
            }
        }
    }

    /// Every policy × outcome, in a share group with a dead-letter topic and without: the
    /// acknowledgement. `A` accept, `R` release, `J` reject.
    #[test]
    fn share_acknowledgement_table() {
        use ShareAcknowledgement::{Accept as A, Reject as J, Release as R};
        let outcomes: [(&str, Outcome); 6] = [
            ("ok", ok()),
            ("error", error()),
            ("fatal", fatal()),
            ("trap", trap(TrapKind::Deadline)),
            ("acker nack", with_explicit(ok(), Decision::Nack)),
            ("acker reject", with_explicit(ok(), Decision::Reject)),
        ];
        #[rustfmt::skip]
        let table: [(AckPolicy, [[ShareAcknowledgement; 2]; 6]); 5] = [
            //               ok      error   fatal   trap    nack    reject
            (Manual,        [[R, R], [R, R], [R, R], [R, R], [R, R], [J, J]]),
            (AckFirst,      [[R, R], [R, R], [R, R], [R, R], [R, R], [J, J]]),
            (Ack,           [[A, A], [A, A], [A, A], [A, A], [R, R], [J, J]]),
            (RejectOnError, [[A, A], [J, J], [J, J], [J, J], [R, R], [J, J]]),
            (NackOnError,   [[A, A], [R, R], [J, J], [R, R], [R, R], [J, J]]),
        ];
        for (policy, row) in table {
            for ((name, outcome), expected) in outcomes.iter().zip(row) {
                let cells = [rules(policy, Some(5), false), rules(policy, Some(5), true)];
                for (rules, expected) in cells.into_iter().zip(expected) {
                    let settled = rules.settle(outcome, 1, 1);
                    assert_eq!(
                        settled.share_acknowledgement(),
                        expected,
                        "{policy} {name} {rules:?}"
                    );
                }
            }
        }
        // The delivery that uses up `max_attempts`: dead-lettered then rejected, or (without a
        // topic) released to come back.
        let exhausted = |dead_letters| {
            rules(NackOnError, Some(3), dead_letters)
                .settle(&error(), 3, 3)
                .share_acknowledgement()
        };
        assert_eq!((exhausted(true), exhausted(false)), (J, R));
    }

    /// Every policy × outcome: are the attempt's outputs published? `Y` yes, `-` no.
    #[test]
    fn outputs_table() {
        const Y: bool = true;
        const N: bool = false;
        let outcomes: [(&str, Outcome); 10] = [
            ("ok", ok()),
            ("returned ack", Outcome::returned(Some(Decision::Ack))),
            ("acker ack", with_explicit(ok(), Decision::Ack)),
            ("interrupt ack", interrupted(Decision::Ack)),
            ("acker nack", with_explicit(ok(), Decision::Nack)),
            ("interrupt nack", interrupted(Decision::Nack)),
            ("acker reject", with_explicit(ok(), Decision::Reject)),
            ("error", error()),
            ("fatal", fatal()),
            (
                "ack then trap",
                with_explicit(trap(TrapKind::Panic), Decision::Ack),
            ),
        ];
        #[rustfmt::skip]
        let table: [(AckPolicy, [bool; 10]); 5] = [
            //               ok returned acker interrupt nack  i-nack reject error fatal ack+trap
            (Manual,        [Y, Y,       Y,    Y,        N,    N,     N,     N,    N,    N]),
            (AckFirst,      [Y, Y,       Y,    Y,        N,    N,     N,     N,    N,    N]),
            (Ack,           [Y, Y,       Y,    Y,        N,    N,     N,     N,    N,    N]),
            (RejectOnError, [Y, Y,       Y,    Y,        N,    N,     N,     N,    N,    N]),
            (NackOnError,   [Y, Y,       Y,    Y,        N,    N,     N,     N,    N,    N]),
        ];
        for (policy, row) in table {
            for ((name, outcome), expected) in outcomes.iter().zip(row) {
                for dead_letters in [false, true] {
                    for max_attempts in [None, Some(1)] {
                        let settled =
                            rules(policy, max_attempts, dead_letters).settle(outcome, 1, 1);
                        assert_eq!(
                            settled.publishes_outputs(outcome),
                            expected,
                            "{policy} {name} dead_letters={dead_letters} max_attempts={max_attempts:?}: {settled:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn backoff_grows_with_the_attempt_and_a_new_count_starts_under_the_cap() {
        let rules = rules(NackOnError, Some(3), false);
        let verdicts: Vec<Verdict> = (1..=4)
            .map(|n| rules.settle(&error(), n, n).verdict)
            .collect();
        assert_eq!(
            verdicts[..2],
            [
                Verdict::RedeliverAfter(Duration::from_millis(100)),
                Verdict::RedeliverAfter(Duration::from_millis(200))
            ]
        );
        assert_eq!(verdicts[2], Verdict::Pause);
        // After a pause (a new plugin version) the count restarts while the attempt goes on.
        assert_eq!(
            rules.settle(&error(), 1, 4).verdict,
            Verdict::RedeliverAfter(Duration::from_millis(800))
        );
    }

    fn ok() -> Outcome {
        Outcome::returned(None)
    }
    fn error() -> Outcome {
        Outcome {
            explicit: None,
            end: CallEnd::Failed {
                kind: ErrorKind::Retry,
                message: "boom".into(),
            },
        }
    }
    fn fatal() -> Outcome {
        Outcome {
            explicit: None,
            end: CallEnd::Failed {
                kind: ErrorKind::Fatal,
                message: "bad data".into(),
            },
        }
    }
    fn trap(kind: TrapKind) -> Outcome {
        Outcome {
            explicit: None,
            end: CallEnd::Trapped {
                kind,
                detail: String::new(),
                stderr: String::new(),
            },
        }
    }
    fn interrupted(d: Decision) -> Outcome {
        Outcome {
            explicit: None,
            end: CallEnd::Interrupted(d),
        }
    }

    fn with_explicit(mut outcome: Outcome, d: Decision) -> Outcome {
        outcome.explicit = Some(d);
        outcome
    }

    /// The README's table ("Ack policies"), row by row: (policy, on success, on failure).
    const TABLE: [(AckPolicy, Action, Action); 5] = [
        (Manual, Action::Nothing, Action::Nothing),
        (AckFirst, Action::Nothing, Action::Nothing),
        (Ack, Action::Commit, Action::Commit),
        (RejectOnError, Action::Commit, Action::Reject),
        (NackOnError, Action::Commit, Action::Redeliver),
    ];

    #[test]
    fn success_column_matches_table() {
        for (policy, on_success, _) in TABLE {
            assert_eq!(decide(policy, &ok()), on_success, "{policy} on success");
        }
    }

    #[test]
    fn returned_error_column_matches_table() {
        for (policy, _, on_failure) in TABLE {
            assert_eq!(decide(policy, &error()), on_failure, "{policy} on error");
        }
    }

    #[test]
    fn every_trap_kind_is_a_failure() {
        for (policy, _, on_failure) in TABLE {
            for kind in TrapKind::ALL {
                assert_eq!(
                    decide(policy, &trap(kind)),
                    on_failure,
                    "{policy} on trap {kind}"
                );
            }
        }
    }

    #[test]
    fn explicit_ack_call_wins_over_every_policy_and_ending() {
        for policy in AckPolicy::ALL {
            for end in [ok(), error(), trap(TrapKind::Panic)] {
                let outcome = with_explicit(end, Decision::Ack);
                assert_eq!(decide(policy, &outcome), Action::Commit, "{policy}");
            }
        }
    }

    #[test]
    fn explicit_nack_call_redelivers_even_on_success_under_ack() {
        for policy in AckPolicy::ALL {
            assert_eq!(
                decide(policy, &with_explicit(ok(), Decision::Nack)),
                Action::Redeliver
            );
        }
    }

    #[test]
    fn explicit_reject_call_rejects() {
        for policy in AckPolicy::ALL {
            let outcome = with_explicit(error(), Decision::Reject);
            assert_eq!(decide(policy, &outcome), Action::Reject);
        }
    }

    #[test]
    fn explicit_call_wins_over_returned_decision() {
        let outcome = Outcome {
            explicit: Some(Decision::Ack),
            end: CallEnd::Returned(Some(Decision::Nack)),
        };
        assert_eq!(decide(NackOnError, &outcome), Action::Commit);
    }

    #[test]
    fn explicit_call_wins_over_interrupt() {
        let outcome = Outcome {
            explicit: Some(Decision::Nack),
            end: CallEnd::Interrupted(Decision::Ack),
        };
        assert_eq!(decide(Ack, &outcome), Action::Redeliver);
    }

    #[test]
    fn interrupt_settles_with_its_decision_and_is_not_a_failure() {
        for policy in AckPolicy::ALL {
            let ack = Outcome {
                explicit: None,
                end: CallEnd::Interrupted(Decision::Ack),
            };
            let nack = Outcome {
                explicit: None,
                end: CallEnd::Interrupted(Decision::Nack),
            };
            assert_eq!(decide(policy, &ack), Action::Commit, "{policy}");
            assert_eq!(decide(policy, &nack), Action::Redeliver, "{policy}");
            assert!(!ack.is_failure());
        }
    }

    #[test]
    fn returned_decision_overrides_policy() {
        for policy in AckPolicy::ALL {
            for (d, action) in [
                (Decision::Ack, Action::Commit),
                (Decision::Nack, Action::Redeliver),
                (Decision::Reject, Action::Reject),
            ] {
                assert_eq!(
                    decide(policy, &Outcome::returned(Some(d))),
                    action,
                    "{policy} {d}"
                );
            }
        }
    }

    #[test]
    fn fatal_error_rejects_instead_of_redelivering_under_nack_on_error() {
        assert_eq!(decide(NackOnError, &fatal()), Action::Reject);
        assert_eq!(decide(Ack, &fatal()), Action::Commit);
        assert_eq!(decide(RejectOnError, &fatal()), Action::Reject);
        assert_eq!(decide(Manual, &fatal()), Action::Nothing);
    }

    #[test]
    fn policy_names_parse_case_insensitively() {
        assert_eq!("nack_on_error".parse::<AckPolicy>(), Ok(NackOnError));
        assert_eq!("Reject-On-Error".parse::<AckPolicy>(), Ok(RejectOnError));
        assert_eq!("ACK_FIRST".parse::<AckPolicy>(), Ok(AckFirst));
        let err = "ack_last".parse::<AckPolicy>().unwrap_err();
        assert!(err.contains("unknown ack policy 'ack_last'"), "{err}");
    }

    #[test]
    fn only_ack_first_works_without_a_group() {
        for policy in AckPolicy::ALL {
            assert_eq!(policy.commits_explicitly(), policy != AckFirst);
        }
    }
}
