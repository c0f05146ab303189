//! Guest log lines on the host's log, bounded so that no guest can flood it: each line is cut at
//! [`MAX_LOG_LINE`] bytes (and says so), and each tenant writes at most its rate of lines per
//! second. Lines over the rate are dropped and counted; a summary line says how many, at most
//! once a second while it goes on.

use crate::token_bucket::TokenBucket;
use metrics::{counter, Counter};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest guest log line written; the rest is cut and the line marked as truncated.
pub const MAX_LOG_LINE: usize = 4096;

/// Default lines per second per tenant. The host's log writer manages about 50,000 lines a
/// second on one core; at 1,000 a tenant uses at most 2% of it (4 MiB/s of 4 KiB lines), while
/// a handler that logs a line now and then, or a burst of a thousand at start-up, never loses one.
pub(crate) const DEFAULT_LINES_PER_SEC: u32 = 1000;

/// How often, at most, a "lines suppressed" summary is written while a flood goes on.
const SUMMARY_EVERY: Duration = Duration::from_secs(1);

/// One tenant's allowance of guest log lines, shared by all of its instances.
pub struct GuestLogBudget {
    tenant: String,
    lines_per_sec: u32,
    state: Mutex<State>,
    suppressed_total: Counter,
}

struct State {
    /// Lines that may be written now.
    lines: Option<TokenBucket>,
    /// Dropped since the last summary line.
    suppressed: u64,
    last_summary: Instant,
}

/// Whether a guest log line may be written.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    Write,
    /// Over the rate: drop the line. `Some(n)` when a summary of `n` dropped lines is due.
    Drop(Option<u64>),
}

impl GuestLogBudget {
    /// `lines_per_sec` = 0 turns the limit off.
    pub fn new(tenant: &str, lines_per_sec: u32) -> Self {
        let now = Instant::now();
        GuestLogBudget {
            tenant: tenant.to_string(),
            lines_per_sec,
            state: Mutex::new(State {
                lines: (lines_per_sec > 0).then(|| TokenBucket::new(lines_per_sec as f64, now)),
                suppressed: 0,
                last_summary: now,
            }),
            suppressed_total: counter!(
                "ackbar_guest_log_lines_suppressed_total",
                "tenant" => tenant.to_string()
            ),
        }
    }

    /// The tenant whose allowance this is, named in the summary of dropped lines.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The allowance, in lines per second; 0 is unlimited.
    pub(crate) fn lines_per_sec(&self) -> u32 {
        self.lines_per_sec
    }

    /// Takes one line's allowance.
    pub(crate) fn admit(&self) -> Admission {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Admission {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(lines) = &mut state.lines else {
            return Admission::Write;
        };
        if lines.try_take(1.0, now) {
            return Admission::Write;
        }
        state.suppressed += 1;
        self.suppressed_total.increment(1);
        if now.saturating_duration_since(state.last_summary) < SUMMARY_EVERY {
            return Admission::Drop(None);
        }
        state.last_summary = now;
        Admission::Drop(Some(std::mem::take(&mut state.suppressed)))
    }
}

impl std::fmt::Debug for GuestLogBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestLogBudget")
            .field("tenant", &self.tenant)
            .field("lines_per_sec", &self.lines_per_sec)
            .finish()
    }
}

impl Default for GuestLogBudget {
    fn default() -> Self {
        GuestLogBudget::new(super::DEFAULT_TENANT, DEFAULT_LINES_PER_SEC)
    }
}

/// `text` cut to [`MAX_LOG_LINE`] bytes on a character boundary, marked when it was cut.
pub(crate) fn bounded_line(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_LOG_LINE {
        return text.into();
    }
    let kept = crate::text::truncate(text, MAX_LOG_LINE);
    format!("{kept}… [truncated: {} bytes in all]", text.len()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_the_rate_and_summarised_once_a_second() {
        let budget = GuestLogBudget::new("t", 10);
        let start = Instant::now();
        let written = (0..100)
            .filter(|_| budget.admit_at(start) == Admission::Write)
            .count();
        assert_eq!(written, 10, "one second's worth at once");
        // Half a second later five more lines are allowed; no summary yet.
        let later = start + Duration::from_millis(500);
        let results: Vec<Admission> = (0..10).map(|_| budget.admit_at(later)).collect();
        assert_eq!(
            results.iter().filter(|a| **a == Admission::Write).count(),
            5
        );
        assert!(!results
            .iter()
            .any(|a| matches!(a, Admission::Drop(Some(_)))));
        // A second after the start the summary counts every dropped line: 90 + 5 + this one,
        // which comes after the ten refilled lines are used.
        let second = start + Duration::from_millis(1000);
        let mut summary = None;
        for _ in 0..20 {
            if let Admission::Drop(Some(n)) = budget.admit_at(second) {
                summary = Some(n);
                break;
            }
        }
        assert_eq!(summary, Some(90 + 5 + 1));
    }

    #[test]
    fn zero_turns_the_limit_off() {
        let budget = GuestLogBudget::new("t", 0);
        assert!((0..10_000).all(|_| budget.admit() == Admission::Write));
    }

    #[test]
    fn long_lines_are_cut_and_marked() {
        let line = "é".repeat(5000);
        let bounded = bounded_line(&line);
        assert!(bounded.len() < MAX_LOG_LINE + 64);
        assert!(
            bounded.ends_with("… [truncated: 10000 bytes in all]"),
            "{bounded:.40}"
        );
        assert_eq!(bounded_line("short"), "short");
    }
}
