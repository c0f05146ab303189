//! Per-partition offset bookkeeping: which messages are in flight, which are done, and how far
//! the partition may be committed.
//!
//! Kafka commits are positions: committing `n` says "everything before `n` is done". So the
//! commit point of a partition is the low-watermark of contiguous finished messages, moved only
//! by a *settled* message (ack or reject). A message the policy leaves alone ("nothing") does not
//! move it, but does not block a later settled message either. A nacked message stays in flight
//! until its redelivery settles it, so the commit point cannot pass it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

/// A topic and partition, cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic name.
    pub topic: Arc<str>,
    /// The partition number within the topic, from 0.
    pub partition: i32,
}

impl TopicPartition {
    /// Copies `topic` into a new shared string: clone an existing `TopicPartition` instead of
    /// calling this per message.
    pub fn new(topic: &str, partition: i32) -> Self {
        TopicPartition {
            topic: Arc::from(topic),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// How a message finished, as far as offsets are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// Acked or rejected: the commit point may move past it.
    Settled,
    /// Left for a later commit (verdict `Leave`: `MANUAL`/`ACK_FIRST` without a decision): it
    /// does not hold back a later settled message, and does not move the commit point by itself.
    Left,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    InFlight,
    Done(Completion),
}

/// Progress of one partition.
#[derive(Debug, Default, Clone)]
pub struct PartitionProgress {
    /// Messages handed to the handler and not yet passed by the low-watermark.
    pending: BTreeMap<i64, State>,
    /// The next offset to commit (one past the last settled message of the finished prefix).
    committable: Option<i64>,
    /// The last commit the broker confirmed (or that was sent synchronously).
    committed: Option<i64>,
}

impl PartitionProgress {
    /// A message was handed to the handler.
    pub fn begin(&mut self, offset: i64) {
        self.pending.insert(offset, State::InFlight);
    }

    /// A message finished. Returns false if the offset was not in flight (e.g. its partition was
    /// reassigned meanwhile), in which case nothing changes.
    pub fn complete(&mut self, offset: i64, how: Completion) -> bool {
        match self.pending.get_mut(&offset) {
            Some(state @ State::InFlight) => *state = State::Done(how),
            _ => return false,
        }
        while let Some(entry) = self.pending.first_entry() {
            match *entry.get() {
                State::InFlight => break,
                State::Done(Completion::Settled) => {
                    self.committable = Some(entry.key() + 1);
                    entry.remove();
                }
                State::Done(Completion::Left) => {
                    entry.remove();
                }
            }
        }
        true
    }

    /// The offset to commit, if it is ahead of the last confirmed commit.
    pub(crate) fn commit_due(&self) -> Option<i64> {
        match (self.committable, self.committed) {
            (Some(next), Some(done)) if next <= done => None,
            (next, _) => next,
        }
    }

    /// The last commit the broker confirmed.
    pub fn committed(&self) -> Option<i64> {
        self.committed
    }

    /// Messages handed to the handler and not settled yet.
    pub fn in_flight(&self) -> usize {
        self.pending
            .values()
            .filter(|s| matches!(s, State::InFlight))
            .count()
    }

    /// The broker confirmed a commit of `offset`.
    pub fn confirm(&mut self, offset: i64) {
        self.committed = Some(self.committed.map_or(offset, |c| c.max(offset)));
    }
}

/// Progress of every partition a pipeline currently owns.
#[derive(Debug, Default)]
pub(crate) struct OffsetTracker {
    partitions: HashMap<TopicPartition, PartitionProgress>,
}

impl OffsetTracker {
    /// Start tracking a newly assigned partition from scratch: anything settled for it under an
    /// earlier assignment belongs to another generation and must not be committed.
    pub fn assign(&mut self, tp: TopicPartition) {
        self.partitions.insert(tp, PartitionProgress::default());
    }

    /// Stop tracking a revoked partition; later completions for it are dropped.
    pub fn revoke(&mut self, tp: &TopicPartition) -> Option<PartitionProgress> {
        self.partitions.remove(tp)
    }

    /// The progress of `tp`; `None` if it is not assigned (never was, or was revoked).
    pub(crate) fn get_mut(&mut self, tp: &TopicPartition) -> Option<&mut PartitionProgress> {
        self.partitions.get_mut(tp)
    }

    /// The progress of `tp`, if it is owned.
    pub(crate) fn get(&self, tp: &TopicPartition) -> Option<&PartitionProgress> {
        self.partitions.get(tp)
    }

    /// Partitions whose commit point moved since the last confirmed commit.
    pub(crate) fn due_commits(&self) -> Vec<(TopicPartition, i64)> {
        let mut due: Vec<_> = self
            .partitions
            .iter()
            .filter_map(|(tp, p)| p.commit_due().map(|o| (tp.clone(), o)))
            .collect();
        due.sort();
        due
    }

    /// Record a confirmed commit; ignored for partitions no longer owned.
    pub fn confirm(&mut self, tp: &TopicPartition, offset: i64) {
        if let Some(p) = self.partitions.get_mut(tp) {
            p.confirm(offset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn settled_messages_in_order_advance_the_commit_point() {
        let mut p = PartitionProgress::default();
        for o in 0..3 {
            p.begin(o);
            assert!(p.complete(o, Completion::Settled));
        }
        assert_eq!(p.commit_due(), Some(3));
    }

    #[test]
    fn later_success_never_commits_past_an_unfinished_message() {
        let mut p = PartitionProgress::default();
        p.begin(10);
        p.begin(11);
        p.begin(12);
        p.complete(11, Completion::Settled);
        p.complete(12, Completion::Settled);
        assert_eq!(p.commit_due(), None, "10 is still in flight");
        p.complete(10, Completion::Settled);
        assert_eq!(p.commit_due(), Some(13));
    }

    #[test]
    fn unsettled_message_neither_moves_nor_blocks_the_commit_point() {
        let mut p = PartitionProgress::default();
        p.begin(0);
        p.begin(1);
        p.complete(0, Completion::Left);
        assert_eq!(p.commit_due(), None);
        p.complete(1, Completion::Settled);
        assert_eq!(p.commit_due(), Some(2));
    }

    #[test]
    fn confirmed_commit_is_not_due_again() {
        let mut p = PartitionProgress::default();
        p.begin(5);
        p.complete(5, Completion::Settled);
        assert_eq!(p.commit_due(), Some(6));
        p.confirm(6);
        assert_eq!(p.commit_due(), None);
        p.confirm(4);
        assert_eq!(
            p.commit_due(),
            None,
            "an older confirmation does not move back"
        );
    }

    #[test]
    fn completing_an_unknown_offset_changes_nothing() {
        let mut p = PartitionProgress::default();
        assert!(!p.complete(3, Completion::Settled));
        assert_eq!(p.commit_due(), None);
    }

    #[test]
    fn reassignment_forgets_the_old_generation() {
        let tp = TopicPartition::new("t", 0);
        let mut t = OffsetTracker::default();
        t.assign(tp.clone());
        let p = t.get_mut(&tp).unwrap();
        p.begin(0);
        p.complete(0, Completion::Settled);
        assert_eq!(t.due_commits(), vec![(tp.clone(), 1)]);
        t.revoke(&tp);
        t.confirm(&tp, 1);
        assert!(t.due_commits().is_empty());
        t.assign(tp.clone());
        assert!(
            t.due_commits().is_empty(),
            "nothing settled in this generation yet"
        );
    }

    proptest! {
        /// Whatever the completion order, the commit point never passes a message that is still
        /// in flight, and once all are settled it is one past the last.
        #[test]
        fn commit_point_is_the_settled_low_watermark(order in Just((0..40i64).collect::<Vec<_>>()).prop_shuffle(), cut in 0usize..40) {
            let mut p = PartitionProgress::default();
            for o in 0..40 { p.begin(o); }
            for (i, &o) in order.iter().enumerate() {
                p.complete(o, Completion::Settled);
                if i + 1 == cut {
                    let unfinished = order[cut..].iter().min().copied();
                    if let (Some(c), Some(u)) = (p.commit_due(), unfinished) {
                        prop_assert!(c <= u, "committed {} past unfinished {}", c, u);
                    }
                }
            }
            prop_assert_eq!(p.commit_due(), Some(40));
        }
    }
}
