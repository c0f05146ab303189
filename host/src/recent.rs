//! A pipeline's recent past, as the console shows it: its last traps and errors with what the
//! guest said, its last guest log lines, and the plugin versions it has run. Bounded, kept across
//! restarts, and cheap on the message path: a delivery that went well costs one pointer compare.

use crate::control::now_ms;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Faults kept per pipeline.
const FAULTS: usize = 20;
/// Guest log lines kept per pipeline.
const LOG_LINES: usize = 50;
/// Plugin versions kept per pipeline.
const VERSIONS: usize = 20;
/// Longest text kept per entry.
const TEXT: usize = 2048;

/// A trap or a returned error.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    /// Milliseconds since the Unix epoch.
    pub at: u64,
    /// The message's topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The delivery that failed, from 1.
    pub attempt: u32,
    /// `trap:panic`, `error`, `fatal-error`, ...
    pub outcome: String,
    /// Why, in one line: the panic message, the handler's error text.
    pub reason: String,
    /// What the guest wrote to stdout and stderr during the call.
    pub guest_output: String,
    /// The plugin version that handled it.
    pub plugin_version: String,
}

/// A guest `log` line.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    /// Milliseconds since the Unix epoch.
    pub at: u64,
    /// `info`, `warn`, ...
    pub level: String,
    /// The offset of the message being handled.
    pub offset: i64,
    /// The line, cut at 2 KiB.
    pub line: String,
}

/// A plugin version the pipeline ran, from its first handled message.
#[derive(Debug, Clone, Serialize)]
pub struct VersionSeen {
    /// When its first message was handled, in milliseconds since the Unix epoch.
    pub at: u64,
    /// The version id.
    pub version: String,
}

/// One pipeline's recent past.
#[derive(Debug, Default)]
pub struct Recent {
    faults: Mutex<VecDeque<Fault>>,
    logs: Mutex<VecDeque<LogLine>>,
    versions: Mutex<VecDeque<VersionSeen>>,
    /// Where the version of the last handled message lives, to notice a new one without a lock
    /// (each version's text is one allocation shared by its deliveries).
    last_version: AtomicUsize,
}

impl Recent {
    /// A fault, newest kept.
    pub fn fault(&self, mut fault: Fault) {
        cut(&mut fault.reason);
        cut(&mut fault.guest_output);
        push(&self.faults, fault, FAULTS);
    }

    /// A guest log line, newest kept.
    pub fn log(&self, level: &str, offset: i64, line: &str) {
        let mut line = line.to_string();
        cut(&mut line);
        push(
            &self.logs,
            LogLine {
                at: now_ms(),
                level: level.to_string(),
                offset,
                line,
            },
            LOG_LINES,
        );
    }

    /// A message was handled by `version`: a version not among the last two seen is recorded
    /// (two: a canary runs beside the version before it).
    pub fn handled_by(&self, version: &Arc<str>) {
        let at = Arc::as_ptr(version) as *const u8 as usize;
        if self.last_version.load(Ordering::Relaxed) == at {
            return;
        }
        self.last_version.store(at, Ordering::Relaxed);
        let mut versions = lock(&self.versions);
        if versions
            .iter()
            .rev()
            .take(2)
            .any(|v| *v.version == **version)
        {
            return;
        }
        if versions.len() == VERSIONS {
            versions.pop_front();
        }
        versions.push_back(VersionSeen {
            at: now_ms(),
            version: version.to_string(),
        });
    }

    /// Why the last delivery of `tp`'s message at `offset` failed, if it is among the faults.
    pub fn last_reason(&self, tp: &crate::offsets::TopicPartition, offset: i64) -> Option<String> {
        lock(&self.faults)
            .iter()
            .rev()
            .find(|f| f.offset == offset && f.partition == tp.partition && *f.topic == *tp.topic)
            .map(|f| f.reason.clone())
    }

    /// The faults, oldest first.
    pub fn faults(&self) -> Vec<Fault> {
        lock(&self.faults).iter().cloned().collect()
    }

    /// The guest log lines, oldest first.
    pub fn logs(&self) -> Vec<LogLine> {
        lock(&self.logs).iter().cloned().collect()
    }

    /// The versions, oldest first.
    pub fn versions(&self) -> Vec<VersionSeen> {
        lock(&self.versions).iter().cloned().collect()
    }
}

fn push<T>(into: &Mutex<VecDeque<T>>, item: T, bound: usize) {
    let mut items = lock(into);
    if items.len() == bound {
        items.pop_front();
    }
    items.push_back(item);
}

fn cut(text: &mut String) {
    if text.len() > TEXT {
        let mut end = TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_list_keeps_its_newest_entries() {
        let recent = Recent::default();
        for i in 0..(LOG_LINES as i64 + 5) {
            recent.log("info", i, &format!("line {i}"));
        }
        let logs = recent.logs();
        assert_eq!(logs.len(), LOG_LINES);
        assert_eq!(logs[0].offset, 5);
        let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) = ("v1".into(), "v2".into(), "v3".into());
        for v in [&a, &a, &b, &a, &b, &c, &a] {
            recent.handled_by(v);
        }
        let seen: Vec<String> = recent.versions().into_iter().map(|v| v.version).collect();
        assert_eq!(seen, ["v1", "v2", "v3", "v1"]);
        recent.fault(Fault {
            at: 0,
            topic: "t".into(),
            partition: 0,
            offset: 1,
            attempt: 1,
            outcome: "trap:panic".into(),
            reason: "x".repeat(TEXT * 2),
            guest_output: String::new(),
            plugin_version: "v1".into(),
        });
        assert!(recent.faults()[0].reason.len() <= TEXT + '…'.len_utf8());
    }
}
