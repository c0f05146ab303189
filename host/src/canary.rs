//! Canary deploys: which partitions run the new version, what is counted on each side, and the
//! rule that promotes the new version or rolls it back. Pure: the fleet member carries the
//! verdict out (see `control::member`), the worker only asks [`runs_canary`] per partition.
//!
//! The rule, for each of three kinds of failure (trap, handler error, dead letter): with `x` of
//! `n` deliveries failing on each side, the Agresti–Caffo estimates are `p = (x + 1) / (n + 2)`
//! and the canary is *worse* when
//!
//! ```text
//! p_canary − p_stable − MARGIN  >  Z · √(p_canary(1 − p_canary)/(n_canary + 2) + p_stable(1 − p_stable)/(n_stable + 2))
//! ```
//!
//! with [`Z`] = 2.326 (one-sided, 99%) and [`MARGIN`] = 0.001 (0.1 percentage points): the new
//! version is rolled back when, for any kind, its rate is higher than the old one's by more than
//! the margin with 99% confidence. A handful of failures among few deliveries is not evidence
//! (one trap in three deliveries against none is promoted); 5% of 1,000 is (z ≈ 7). A side
//! without a delivery is compared against a rate of zero; a canary without one is rolled back:
//! nothing shows it works.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// One-sided 99% quantile of the normal distribution.
pub const Z: f64 = 2.326;
/// How much higher the canary's rate may be before it counts as worse: 0.1 percentage points.
pub const MARGIN: f64 = 0.001;
/// The largest share a canary takes: one partition in two.
pub const MAX_PERCENT: u32 = 50;

/// Partition `p` runs the canary when `p % every == 0`, with `every = round(100 / percent)`
/// (at least 2): 10% is one partition in ten, 25% one in four. Every member computes the same
/// rule from the deploy record, and partition 0 always runs the canary, so a topic of any
/// size has one.
pub fn every_nth(percent: u32) -> u32 {
    let percent = percent.clamp(1, MAX_PERCENT);
    ((100 + percent / 2) / percent).max(2)
}

/// Whether `partition` runs the canary of `every_nth`.
pub fn runs_canary(partition: i32, every: u32) -> bool {
    partition >= 0 && (partition as u32).is_multiple_of(every)
}

/// Deliveries of one version and how many of them failed, per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Handler calls, each redelivery counted again.
    pub deliveries: u64,
    /// Calls that trapped.
    pub traps: u64,
    /// Calls that returned a handler error.
    pub errors: u64,
    /// Deliveries the policy settled by dead-lettering the message.
    pub dead_letters: u64,
}

impl Tally {
    /// The sum of two tallies (of two members).
    pub fn plus(self, other: Tally) -> Tally {
        Tally {
            deliveries: self.deliveries + other.deliveries,
            traps: self.traps + other.traps,
            errors: self.errors + other.errors,
            dead_letters: self.dead_letters + other.dead_letters,
        }
    }

    /// Its failure rates, each a share of the deliveries (0 without a delivery).
    pub fn rates(&self) -> Rates {
        let rate = |x: u64| match self.deliveries {
            0 => 0.0,
            n => x as f64 / n as f64,
        };
        Rates {
            trap: rate(self.traps),
            error: rate(self.errors),
            dead_letter: rate(self.dead_letters),
        }
    }
}

/// Failure rates of one version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    /// Traps per delivery.
    pub trap: f64,
    /// Handler errors per delivery.
    pub error: f64,
    /// Dead letters per delivery.
    pub dead_letter: f64,
}

/// A [`Tally`] counted from many workers at once.
#[derive(Debug, Default)]
pub struct TallyCounter {
    deliveries: AtomicU64,
    traps: AtomicU64,
    errors: AtomicU64,
    dead_letters: AtomicU64,
}

impl TallyCounter {
    /// One delivery, and how it failed if it did.
    pub fn record(&self, trapped: bool, errored: bool, dead_lettered: bool) {
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        for (failed, counter) in [
            (trapped, &self.traps),
            (errored, &self.errors),
            (dead_lettered, &self.dead_letters),
        ] {
            if failed {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// What it counted so far.
    pub fn get(&self) -> Tally {
        Tally {
            deliveries: self.deliveries.load(Ordering::Relaxed),
            traps: self.traps.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            dead_letters: self.dead_letters.load(Ordering::Relaxed),
        }
    }
}

/// What becomes of a canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The new version runs everywhere.
    Promote,
    /// The old version runs everywhere again.
    RollBack,
}

impl Verdict {
    /// `promote` or `roll-back`, as metrics label it.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Promote => "promote",
            Verdict::RollBack => "roll-back",
        }
    }
}

/// A verdict and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    /// Promote or roll back.
    pub verdict: Verdict,
    /// The comparison in words, with the numbers.
    pub reason: String,
}

/// Whether a canary started at `started_ms` is due a verdict at `now_ms`: once both versions
/// have had `messages` deliveries in its window (`canary` and `stable` so far), or `max_ms`
/// after its start. The running version's count matters too: members report their counts on
/// their own schedules, and a comparison against a few of its deliveries could not tell a
/// failing canary from a good one.
pub fn due(
    canary: u64,
    stable: u64,
    messages: u64,
    started_ms: u64,
    max_ms: u64,
    now_ms: u64,
) -> bool {
    (canary >= messages && stable >= messages) || now_ms.saturating_sub(started_ms) >= max_ms
}

/// The rule of this module's documentation, over one window of both versions.
pub fn judge(canary: Tally, stable: Tally) -> Judgement {
    if canary.deliveries == 0 {
        return Judgement {
            verdict: Verdict::RollBack,
            reason: "no delivery reached the canary".into(),
        };
    }
    let kinds = [
        ("trap", canary.traps, stable.traps),
        ("error", canary.errors, stable.errors),
        ("dead-letter", canary.dead_letters, stable.dead_letters),
    ];
    let (c, s) = (canary.rates(), stable.rates());
    let rates = format!(
        "canary {} deliveries (traps {:.3}%, errors {:.3}%, dead letters {:.3}%), \
         stable {} (traps {:.3}%, errors {:.3}%, dead letters {:.3}%)",
        canary.deliveries,
        c.trap * 100.0,
        c.error * 100.0,
        c.dead_letter * 100.0,
        stable.deliveries,
        s.trap * 100.0,
        s.error * 100.0,
        s.dead_letter * 100.0,
    );
    for (kind, x_canary, x_stable) in kinds {
        let z = excess(x_canary, canary.deliveries, x_stable, stable.deliveries);
        if z > Z {
            return Judgement {
                verdict: Verdict::RollBack,
                reason: format!(
                    "{kind} rate worse than the stable version's (z = {z:.2} > {Z}): {rates}"
                ),
            };
        }
    }
    Judgement {
        verdict: Verdict::Promote,
        reason: format!("no rate worse than the stable version's: {rates}"),
    }
}

/// How many standard errors the canary's failure rate exceeds the stable one's plus the
/// margin (Agresti–Caffo); a stable side without deliveries counts as a rate of zero.
fn excess(x_canary: u64, n_canary: u64, x_stable: u64, n_stable: u64) -> f64 {
    let adjusted = |x: u64, n: u64| (x as f64 + 1.0) / (n as f64 + 2.0);
    let variance = |p: f64, n: u64| p * (1.0 - p) / (n as f64 + 2.0);
    let p_canary = adjusted(x_canary, n_canary);
    let (p_stable, v_stable) = match n_stable {
        0 => (0.0, 0.0),
        n => {
            let p = adjusted(x_stable, n);
            (p, variance(p, n))
        }
    };
    let se = (variance(p_canary, n_canary) + v_stable).sqrt();
    (p_canary - p_stable - MARGIN) / se
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(deliveries: u64, traps: u64) -> Tally {
        Tally {
            deliveries,
            traps,
            ..Tally::default()
        }
    }

    #[test]
    fn the_share_is_one_partition_in_round_100_over_percent() {
        assert_eq!(every_nth(10), 10);
        assert_eq!(every_nth(25), 4);
        assert_eq!(every_nth(30), 3);
        assert_eq!(every_nth(50), 2);
        assert_eq!(every_nth(90), 2);
        assert_eq!(every_nth(1), 100);
        let of_8: Vec<i32> = (0..8).filter(|&p| runs_canary(p, every_nth(25))).collect();
        assert_eq!(of_8, [0, 4]);
        assert!(runs_canary(0, every_nth(10)) && !runs_canary(3, every_nth(10)));
    }

    #[test]
    fn five_percent_traps_against_none_is_rolled_back() {
        let j = judge(tally(1_000, 50), tally(7_000, 0));
        assert_eq!(j.verdict, Verdict::RollBack, "{}", j.reason);
        assert!(j.reason.starts_with("trap rate worse"), "{}", j.reason);
        assert!(j.reason.contains("traps 5.000%"), "{}", j.reason);
    }

    #[test]
    fn a_few_failures_are_not_evidence() {
        // One bad message out of three.
        assert_eq!(judge(tally(3, 1), tally(9, 0)).verdict, Verdict::Promote);
        // 0.3% against none, within the margin's reach at this size.
        assert_eq!(
            judge(tally(1_000, 3), tally(7_000, 0)).verdict,
            Verdict::Promote
        );
        // 1% against none is not.
        assert_eq!(
            judge(tally(1_000, 10), tally(7_000, 0)).verdict,
            Verdict::RollBack
        );
    }

    #[test]
    fn the_same_rate_on_both_sides_is_promoted() {
        assert_eq!(
            judge(tally(1_000, 20), tally(7_000, 140)).verdict,
            Verdict::Promote
        );
        assert_eq!(
            judge(tally(1_000, 0), tally(7_000, 0)).verdict,
            Verdict::Promote
        );
    }

    #[test]
    fn each_kind_is_compared() {
        let canary = Tally {
            deliveries: 2_000,
            dead_letters: 100,
            ..Tally::default()
        };
        let j = judge(canary, tally(2_000, 0));
        assert_eq!(j.verdict, Verdict::RollBack);
        assert!(
            j.reason.starts_with("dead-letter rate worse"),
            "{}",
            j.reason
        );
        let errors = Tally {
            deliveries: 2_000,
            errors: 100,
            ..Tally::default()
        };
        assert!(judge(errors, tally(2_000, 0))
            .reason
            .starts_with("error rate worse"));
    }

    #[test]
    fn a_canary_without_deliveries_is_rolled_back_and_one_without_a_baseline_is_judged_alone() {
        assert_eq!(
            judge(Tally::default(), tally(100, 0)).verdict,
            Verdict::RollBack
        );
        assert_eq!(
            judge(tally(1_000, 0), Tally::default()).verdict,
            Verdict::Promote
        );
        assert_eq!(
            judge(tally(1_000, 50), Tally::default()).verdict,
            Verdict::RollBack
        );
    }

    #[test]
    fn a_verdict_is_due_after_the_messages_on_both_versions_or_the_time() {
        assert!(!due(999, 5_000, 1_000, 0, 60_000, 59_999));
        assert!(
            !due(5_000, 999, 1_000, 0, 60_000, 59_999),
            "the running version's too"
        );
        assert!(due(1_000, 1_000, 1_000, 0, 60_000, 1));
        assert!(due(0, 0, 1_000, 0, 60_000, 60_000));
    }
}
