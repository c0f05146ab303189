//! A pipeline's counters since it started, for the periodic summary line and `ackbar demo`.

use crate::outcome::{CallEnd, Outcome};
use crate::policy::Action;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one pipeline (monotonic).
#[derive(Debug, Default)]
pub struct Stats {
    pub messages: AtomicU64,
    pub ok: AtomicU64,
    pub errors: AtomicU64,
    pub traps: AtomicU64,
    pub interrupts: AtomicU64,
    pub commit_actions: AtomicU64,
    pub redeliver_actions: AtomicU64,
    pub reject_actions: AtomicU64,
    pub nothing_actions: AtomicU64,
    pub commits: AtomicU64,
    pub commit_errors: AtomicU64,
    pub dead_letters: AtomicU64,
    pub dead_letter_errors: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub messages: u64,
    pub ok: u64,
    pub errors: u64,
    pub traps: u64,
    pub interrupts: u64,
    /// Deliveries per [`Action`]: what the policy did with their offsets.
    pub commit_actions: u64,
    pub redeliver_actions: u64,
    pub reject_actions: u64,
    pub nothing_actions: u64,
    pub commits: u64,
    pub commit_errors: u64,
    pub dead_letters: u64,
    pub dead_letter_errors: u64,
}

impl Stats {
    pub fn record(&self, outcome: &Outcome, action: Action) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        let counter = match outcome.end {
            CallEnd::Returned(_) => &self.ok,
            CallEnd::Failed { .. } => &self.errors,
            CallEnd::Trapped { .. } => &self.traps,
            CallEnd::Interrupted(_) => &self.interrupts,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        match action {
            Action::Commit => &self.commit_actions,
            Action::Redeliver => &self.redeliver_actions,
            Action::Reject => &self.reject_actions,
            Action::Nothing => &self.nothing_actions,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            messages: get(&self.messages),
            ok: get(&self.ok),
            errors: get(&self.errors),
            traps: get(&self.traps),
            interrupts: get(&self.interrupts),
            commit_actions: get(&self.commit_actions),
            redeliver_actions: get(&self.redeliver_actions),
            reject_actions: get(&self.reject_actions),
            nothing_actions: get(&self.nothing_actions),
            commits: get(&self.commits),
            commit_errors: get(&self.commit_errors),
            dead_letters: get(&self.dead_letters),
            dead_letter_errors: get(&self.dead_letter_errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::CallEnd;

    #[test]
    fn stats_count_outcomes_and_actions() {
        let stats = Stats::default();
        stats.record(&Outcome::returned(None), Action::Commit);
        stats.record(
            &Outcome {
                explicit: None,
                end: CallEnd::Failed {
                    kind: crate::outcome::ErrorKind::Retry,
                    message: String::new(),
                },
            },
            Action::Redeliver,
        );
        let s = stats.snapshot();
        assert_eq!(
            (
                s.messages,
                s.ok,
                s.errors,
                s.commit_actions,
                s.redeliver_actions
            ),
            (2, 1, 1, 1, 1)
        );
    }
}
