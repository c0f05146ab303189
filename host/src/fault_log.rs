//! A recurring fault (commits failing, the broker unreachable) logged once per episode.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
}
