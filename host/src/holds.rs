//! What an operator holds from the console: a whole pipeline, or single partitions, paused until
//! released. A held partition's worker takes no new message (the one in flight settles and
//! commits as usual) and librdkafka stops fetching once its queue is full; releasing it goes on
//! from the next message, so nothing is skipped or read twice. Holds outlive restarts and
//! rebalances: they belong to the pipeline, not to a consumer.

use crate::offsets::TopicPartition;
use std::collections::BTreeSet;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The holds of one pipeline.
#[derive(Debug)]
pub struct Holds {
    held: watch::Sender<Held>,
}

/// What is held now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    /// Every partition of the pipeline.
    pub pipeline: bool,
    /// These partitions.
    pub partitions: BTreeSet<TopicPartition>,
}

impl Held {
    /// Whether `tp` may not take a new message.
    pub fn holds(&self, tp: &TopicPartition) -> bool {
        self.pipeline || self.partitions.contains(tp)
    }
}

impl Default for Holds {
    fn default() -> Self {
        Holds {
            held: watch::channel(Held::default()).0,
        }
    }
}

impl Holds {
    /// Holds `partition`, or the whole pipeline with `None`. Returns whether anything changed.
    pub fn hold(&self, partition: Option<TopicPartition>) -> bool {
        self.held.send_if_modified(|held| match partition {
            None => !std::mem::replace(&mut held.pipeline, true),
            Some(tp) => held.partitions.insert(tp),
        })
    }

    /// Releases `partition`, or the whole pipeline (and every partition held alone) with `None`.
    /// Returns whether anything changed.
    pub fn release(&self, partition: Option<TopicPartition>) -> bool {
        self.held.send_if_modified(|held| match partition {
            None => {
                let changed = held.pipeline || !held.partitions.is_empty();
                *held = Held::default();
                changed
            }
            Some(tp) => held.partitions.remove(&tp),
        })
    }

    /// What is held now.
    pub fn now(&self) -> Held {
        self.held.borrow().clone()
    }

    /// Waits while `tp` is held; `false` if stopped first.
    pub(crate) async fn until_released(
        &self,
        tp: &TopicPartition,
        stop: &CancellationToken,
    ) -> bool {
        let mut held = self.held.subscribe();
        tokio::select! {
            biased;
            _ = stop.cancelled() => false,
            released = held.wait_for(|h| !h.holds(tp)) => released.is_ok(),
        }
    }

    /// Waits until `tp` is held (forever if it never is).
    pub(crate) async fn until_held(&self, tp: &TopicPartition) {
        let mut held = self.held.subscribe();
        if held.wait_for(|h| h.holds(tp)).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Whether `tp` is held now (no waiting).
    pub(crate) fn holds(&self, tp: &TopicPartition) -> bool {
        self.held.borrow().holds(tp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_held_partition_waits_until_released_and_others_do_not() {
        let holds = std::sync::Arc::new(Holds::default());
        let (a, b) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
        let stop = CancellationToken::new();
        assert!(holds.hold(Some(a.clone())));
        assert!(
            !holds.hold(Some(a.clone())),
            "holding twice changes nothing"
        );
        assert!(holds.until_released(&b, &stop).await);
        let waiting = {
            let (holds, a, stop) = (holds.clone(), a.clone(), stop.clone());
            tokio::spawn(async move { holds.until_released(&a, &stop).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert!(holds.release(Some(a.clone())));
        assert!(waiting.await.unwrap());
    }

    #[tokio::test]
    async fn the_whole_pipeline_holds_every_partition_and_a_stop_ends_the_wait() {
        let holds = Holds::default();
        let tp = TopicPartition::new("t", 3);
        holds.hold(None);
        assert!(holds.holds(&tp));
        let stop = CancellationToken::new();
        stop.cancel();
        assert!(!holds.until_released(&tp, &stop).await);
        assert!(holds.release(None));
        assert!(!holds.holds(&tp));
        assert_eq!(holds.now(), Held::default());
    }
}
