//! Readiness of a pipeline: has it been assigned partitions, and is any partition stuck on one
//! message (being redelivered, or paused after `max_attempts`) for longer than a threshold?

use crate::offsets::TopicPartition;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Stuck {
    offset: i64,
    since: Instant,
    attempts: u32,
    paused: bool,
}

/// A partition stuck on one message, as the console shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StuckNow {
    /// The message's offset.
    pub offset: i64,
    /// Deliveries of it so far.
    pub attempts: u32,
    /// Since when, in seconds.
    pub seconds: u64,
    /// Stopped after `max_attempts` with nowhere to go, rather than being redelivered.
    pub paused: bool,
    /// Why its last delivery failed, when the pipeline's recent faults still hold it.
    pub reason: Option<String>,
}

/// Readiness of one pipeline, for `/readyz`: updated by its supervisor and partition workers,
/// read through [`problems`](Self::problems). One per pipeline, kept across restarts.
#[derive(Debug, Default)]
pub struct Health {
    joined: AtomicBool,
    /// Why the pipeline is not running (the supervisor is restarting it).
    down: Mutex<Option<String>>,
    stuck: Mutex<HashMap<TopicPartition, Stuck>>,
    /// What the operator holds (paused from the console); not a readiness problem.
    pub holds: crate::holds::Holds,
    /// The pipeline's last faults, guest log lines and plugin versions, for the console.
    pub recent: std::sync::Arc<crate::recent::Recent>,
}

impl Health {
    /// The pipeline stopped or failed to start; the supervisor is bringing it back.
    pub fn down(&self, why: String) {
        *self.down.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        self.joined.store(false, Ordering::Relaxed);
        self.lock().clear();
    }

    /// A pipeline being (re)started: not joined yet, nothing stuck. Why it was down stays the
    /// answer until the start succeeds, so a retry under way does not hide the failure.
    pub fn starting(&self) {
        self.joined.store(false, Ordering::Relaxed);
        self.lock().clear();
    }

    /// The pipeline started: it is no longer down, and waits for its assignment.
    pub fn started(&self) {
        *self.down.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The pipeline has received its (first) assignment and consumes.
    pub fn joined(&self) {
        self.joined.store(true, Ordering::Relaxed);
    }

    /// A delivery of `offset` failed to settle and the message will be delivered again.
    pub fn failing(&self, tp: &TopicPartition, offset: i64, attempts: u32) {
        let mut stuck = self.lock();
        let entry = stuck.entry(tp.clone()).or_insert(Stuck {
            offset,
            since: Instant::now(),
            attempts,
            paused: false,
        });
        if entry.offset != offset {
            *entry = Stuck {
                offset,
                since: Instant::now(),
                attempts,
                paused: false,
            };
        }
        entry.attempts = attempts;
    }

    /// The partition stopped on `offset`: it used up its attempts and has nowhere to go.
    pub fn paused(&self, tp: &TopicPartition, offset: i64, attempts: u32) {
        self.failing(tp, offset, attempts);
        if let Some(entry) = self.lock().get_mut(tp) {
            entry.paused = true;
        }
    }

    /// The message at `offset` settled: if it was the one the partition was stuck on, the
    /// partition moves again.
    pub fn settled(&self, tp: &TopicPartition, offset: i64) {
        self.settled_any(tp, std::iter::once(offset));
    }

    /// The messages at `offsets` settled: if the partition was stuck on one of them, it moves
    /// again.
    pub fn settled_any(&self, tp: &TopicPartition, mut offsets: impl Iterator<Item = i64>) {
        let mut stuck = self.lock();
        if stuck
            .get(tp)
            .is_some_and(|s| offsets.any(|o| o == s.offset))
        {
            stuck.remove(tp);
        }
    }

    /// The partition is no longer ours.
    pub fn moving(&self, tp: &TopicPartition) {
        let mut stuck = self.lock();
        if !stuck.is_empty() {
            stuck.remove(tp);
        }
    }

    /// Why the pipeline is not ready, if it is not: one line per problem.
    pub fn problems(&self, pipeline: &str, threshold: Duration) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(why) = &*self.down.lock().unwrap_or_else(|e| e.into_inner()) {
            problems.push(format!("pipeline {pipeline}: down: {why}"));
            return problems;
        }
        if !self.joined.load(Ordering::Relaxed) {
            problems.push(format!("pipeline {pipeline}: no partition assignment yet"));
        }
        let mut stuck: Vec<(TopicPartition, Stuck)> =
            self.lock().iter().map(|(tp, s)| (tp.clone(), *s)).collect();
        stuck.sort_by(|a, b| a.0.cmp(&b.0));
        for (tp, s) in stuck {
            let waited = s.since.elapsed();
            if s.paused || waited >= threshold {
                problems.push(format!(
                    "pipeline {pipeline}: partition {tp} {} at offset {} for {} s after {} attempts",
                    if s.paused { "paused" } else { "stuck" },
                    s.offset,
                    waited.as_secs(),
                    s.attempts
                ));
            }
        }
        problems
    }

    /// The message `tp` is stuck on, if it is.
    pub fn stuck_on(&self, tp: &TopicPartition) -> Option<StuckNow> {
        self.lock().get(tp).map(|s| StuckNow {
            offset: s.offset,
            attempts: s.attempts,
            seconds: s.since.elapsed().as_secs(),
            paused: s.paused,
            reason: self.recent.last_reason(tp, s.offset),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TopicPartition, Stuck>> {
        self.stuck.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_until_a_restart_succeeds() {
        let health = Health::default();
        health.down("failed to start: bad plugin".into());
        health.starting();
        let problems = health.problems("p", Duration::from_secs(1));
        assert_eq!(
            problems,
            vec!["pipeline p: down: failed to start: bad plugin"]
        );
        health.started();
        let problems = health.problems("p", Duration::from_secs(1));
        assert_eq!(problems, vec!["pipeline p: no partition assignment yet"]);
    }

    #[test]
    fn ready_once_joined_and_while_failures_are_recent() {
        let health = Health::default();
        let tp = TopicPartition::new("t", 0);
        assert_eq!(health.problems("p", Duration::from_secs(1)).len(), 1);
        health.joined();
        assert!(health.problems("p", Duration::from_secs(1)).is_empty());
        health.failing(&tp, 5, 2);
        assert!(health.problems("p", Duration::from_secs(60)).is_empty());
        let problems = health.problems("p", Duration::ZERO);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("pipeline p: partition t/0 stuck at offset 5 for ")
                && problems[0].ends_with(" s after 2 attempts"),
            "{problems:?}"
        );
        health.settled(&tp, 4);
        assert_eq!(
            health.problems("p", Duration::ZERO).len(),
            1,
            "another message settled"
        );
        health.settled(&tp, 5);
        assert!(health.problems("p", Duration::ZERO).is_empty());
        health.paused(&tp, 7, 3);
        assert!(health.problems("p", Duration::from_secs(60))[0].contains("paused at offset 7"));
    }
}
