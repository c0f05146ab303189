//! The policy table, the settlement table and the outputs table, cell by cell.

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

/// The columns of the settlement and share-acknowledgement tables.
fn table_outcomes() -> [(&'static str, Outcome); 6] {
    [
        ("ok", ok()),
        ("error", error()),
        ("fatal", fatal()),
        ("trap", trap(TrapKind::Deadline)),
        ("acker nack", with_explicit(ok(), Decision::Nack)),
        ("acker reject", with_explicit(ok(), Decision::Reject)),
    ]
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
    let outcomes = table_outcomes();
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

/// Checks `read` of the first delivery's settlement for every policy × outcome of
/// [`table_outcomes`], without a dead-letter topic and with one (`max_attempts` 5).
fn check_first_deliveries<T: PartialEq + std::fmt::Debug>(
    table: [(AckPolicy, [[T; 2]; 6]); 5],
    read: fn(&Settlement) -> T,
) {
    let outcomes = table_outcomes();
    for (policy, row) in table {
        for ((name, outcome), expected) in outcomes.iter().zip(row) {
            let cells = [rules(policy, Some(5), false), rules(policy, Some(5), true)];
            for (rules, expected) in cells.into_iter().zip(expected) {
                let settled = rules.settle(outcome, 1, 1);
                assert_eq!(read(&settled), expected, "{policy} {name} {rules:?}");
            }
        }
    }
}

/// Every policy × outcome, in a share group with a dead-letter topic and without: the
/// acknowledgement. `A` accept, `R` release, `J` reject.
#[test]
fn share_acknowledgement_table() {
    use ShareAcknowledgement::{Accept as A, Reject as J, Release as R};
    #[rustfmt::skip]
    let table: [(AckPolicy, [[ShareAcknowledgement; 2]; 6]); 5] = [
        //               ok      error   fatal   trap    nack    reject
        (Manual,        [[R, R], [R, R], [R, R], [R, R], [R, R], [J, J]]),
        (AckFirst,      [[R, R], [R, R], [R, R], [R, R], [R, R], [J, J]]),
        (Ack,           [[A, A], [A, A], [A, A], [A, A], [R, R], [J, J]]),
        (RejectOnError, [[A, A], [J, J], [J, J], [J, J], [R, R], [J, J]]),
        (NackOnError,   [[A, A], [R, R], [J, J], [R, R], [R, R], [J, J]]),
    ];
    check_first_deliveries(table, Settlement::share_acknowledgement);
    // The delivery that uses up `max_attempts`: dead-lettered then rejected, or (without a
    // topic) released to come back.
    let exhausted = |dead_letters| {
        rules(NackOnError, Some(3), dead_letters)
            .settle(&error(), 3, 3)
            .share_acknowledgement()
    };
    assert_eq!((exhausted(true), exhausted(false)), (J, R));
}

/// Every policy × outcome, on a first delivery, with a dead-letter topic and without: does a
/// batch call go on with its next message? `Y` yes, `-` no.
#[test]
fn batch_goes_on_table() {
    const Y: bool = true;
    const N: bool = false;
    #[rustfmt::skip]
    let table: [(AckPolicy, [[bool; 2]; 6]); 5] = [
        //               ok      error   fatal   trap    nack    reject
        (Manual,        [[Y, Y], [Y, Y], [Y, Y], [Y, Y], [N, N], [Y, N]]),
        (AckFirst,      [[Y, Y], [Y, Y], [Y, Y], [Y, Y], [N, N], [Y, N]]),
        (Ack,           [[Y, Y], [Y, Y], [Y, Y], [Y, Y], [N, N], [Y, N]]),
        (RejectOnError, [[Y, Y], [Y, N], [Y, N], [Y, N], [N, N], [Y, N]]),
        (NackOnError,   [[Y, Y], [N, N], [Y, N], [N, N], [N, N], [Y, N]]),
    ];
    check_first_deliveries(table, Settlement::lets_the_batch_go_on);
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
                    let settled = rules(policy, max_attempts, dead_letters).settle(outcome, 1, 1);
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
