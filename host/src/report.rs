//! What happened to each message, as events for observers (the demo, tests) and as counters for
//! the periodic summary line.

use crate::outcome::{CallEnd, Outcome};
use crate::policy::Action;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// The fate of one delivery of one message.
#[derive(Debug, Clone)]
pub struct MessageReport {
    pub pipeline: Arc<str>,
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub attempt: u32,
    pub plugin_version: Arc<str>,
    pub outcome: Outcome,
    pub action: Action,
    /// When this delivery's handler call started.
    pub started: Instant,
    pub elapsed: Duration,
}

/// Receives a [`MessageReport`] for every handled message.
pub type ReportSink = UnboundedSender<MessageReport>;

/// Counters of one pipeline (monotonic).
#[derive(Debug, Default)]
pub struct Stats {
    pub messages: AtomicU64,
    pub ok: AtomicU64,
    pub errors: AtomicU64,
    pub traps: AtomicU64,
    pub interrupts: AtomicU64,
    pub commits_requested: AtomicU64,
    pub redeliveries: AtomicU64,
    pub rejects: AtomicU64,
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
    pub acks: u64,
    pub nacks: u64,
    pub rejects: u64,
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
            Action::Commit => self.commits_requested.fetch_add(1, Ordering::Relaxed),
            Action::Redeliver => self.redeliveries.fetch_add(1, Ordering::Relaxed),
            Action::Reject => self.rejects.fetch_add(1, Ordering::Relaxed),
            Action::Nothing => 0,
        };
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            messages: get(&self.messages),
            ok: get(&self.ok),
            errors: get(&self.errors),
            traps: get(&self.traps),
            interrupts: get(&self.interrupts),
            acks: get(&self.commits_requested),
            nacks: get(&self.redeliveries),
            rejects: get(&self.rejects),
            commits: get(&self.commits),
            commit_errors: get(&self.commit_errors),
            dead_letters: get(&self.dead_letters),
            dead_letter_errors: get(&self.dead_letter_errors),
        }
    }
}

/// Logs a recurring fault once per episode instead of once per occurrence: the first
/// occurrence, then at most one reminder per `interval` with a count, then the recovery.
pub struct FaultLog {
    what: &'static str,
    tenant: Arc<str>,
    pipeline: Arc<str>,
    logged: AtomicU64,
    interval: Duration,
    state: Mutex<Option<Episode>>,
}

struct Episode {
    last_logged: Instant,
    suppressed: u64,
}

impl FaultLog {
    /// A fault log for `what` (e.g. "offset commit") of one pipeline.
    pub fn new(what: &'static str, tenant: &str, pipeline: &str) -> Self {
        FaultLog {
            what,
            tenant: Arc::from(tenant),
            pipeline: Arc::from(pipeline),
            logged: AtomicU64::new(0),
            interval: Duration::from_secs(30),
            state: Mutex::new(None),
        }
    }

    /// Records one occurrence; returns true if it was logged.
    pub fn fault(&self, detail: &dyn std::fmt::Display) -> bool {
        let (tenant, pipeline) = (&*self.tenant, &*self.pipeline);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.as_mut() {
            None => {
                tracing::warn!(tenant, pipeline, "{} failing: {detail}", self.what);
                self.logged.fetch_add(1, Ordering::Relaxed);
                *state = Some(Episode {
                    last_logged: Instant::now(),
                    suppressed: 0,
                });
                true
            }
            Some(ep) if ep.last_logged.elapsed() >= self.interval => {
                tracing::warn!(
                    tenant,
                    pipeline,
                    repeats = ep.suppressed,
                    "{} still failing: {detail}",
                    self.what
                );
                ep.last_logged = Instant::now();
                ep.suppressed = 0;
                self.logged.fetch_add(1, Ordering::Relaxed);
                true
            }
            Some(ep) => {
                ep.suppressed += 1;
                false
            }
        }
    }

    /// How many warnings this log has written.
    pub fn logged(&self) -> u64 {
        self.logged.load(Ordering::Relaxed)
    }

    /// Records a success; ends the episode (logged) if one was running.
    pub fn recovered(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.take().is_some() {
            let (tenant, pipeline) = (&*self.tenant, &*self.pipeline);
            tracing::info!(tenant, pipeline, "{} recovered", self.what);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_log_logs_once_per_episode() {
        let log = FaultLog::new("commit", "t", "p");
        assert!(log.fault(&"boom"));
        assert!(!log.fault(&"boom"));
        assert!(!log.fault(&"boom"));
        log.recovered();
        assert!(log.fault(&"boom again"), "a new episode is logged");
    }

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
            (s.messages, s.ok, s.errors, s.acks, s.nacks),
            (2, 1, 1, 1, 1)
        );
    }
}
