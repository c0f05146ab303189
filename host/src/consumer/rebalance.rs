//! The rdkafka side of a pipeline: its consumer's context, which librdkafka calls for
//! rebalances (partitions assigned, revoked or lost) and statistics (consumer lag). What a
//! rebalance does to a partition is in [`super::assignment`].

use super::assignment::Release;
use super::partition::{self, GroupMember};
use super::partition_queue::PartitionQueue;
use super::state::PipelineState;
use crate::events::{PartitionsAssigned, PartitionsRevoked};
use crate::offsets::TopicPartition;
use rdkafka::consumer::{
    BaseConsumer, Consumer, ConsumerContext, ConsumerGroupMetadata, Rebalance, StreamConsumer,
};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

/// How long a rewind after an aborted transaction may take.
const REWIND_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) type PipelineConsumer = StreamConsumer<PipelineContext>;

pub(crate) fn partitions_of(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| TopicPartition::new(e.topic(), e.partition()))
        .collect()
}

/// The rdkafka context of a pipeline's consumer: librdkafka calls it on its driver thread for
/// rebalances and statistics.
pub(crate) struct PipelineContext {
    pub shared: Arc<PipelineState>,
    /// The consumer itself, to split partition queues off it on assign.
    consumer: OnceLock<Weak<PipelineConsumer>>,
}

impl PipelineContext {
    pub fn new(shared: Arc<PipelineState>) -> Self {
        PipelineContext {
            shared,
            consumer: OnceLock::new(),
        }
    }

    pub fn set_consumer(&self, consumer: &Arc<PipelineConsumer>) {
        let _ = self.consumer.set(Arc::downgrade(consumer));
    }

    /// Takes ownership of newly assigned partitions, each with a worker reading its own queue.
    pub fn start_consuming(&self, assigned: &[TopicPartition]) {
        let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
            return;
        };
        let shared = &self.shared;
        for tp in assigned {
            shared.partitions.assign(tp, |stop, done| {
                let Some(queue) = PartitionQueue::split(&consumer, tp) else {
                    shared.recorder.in_span(
                        || tracing::error!(partition = %tp, "cannot split the partition queue"),
                    );
                    return;
                };
                let member: Arc<dyn GroupMember> = Arc::new(Arc::downgrade(&consumer));
                let worker = shared.runtime.spawn(partition::run(
                    shared.clone(),
                    tp.clone(),
                    queue,
                    member,
                    stop,
                ));
                let (shared, tp) = (shared.clone(), tp.clone());
                shared.runtime.clone().spawn(async move {
                    // A panicking worker would leave its partition assigned and unread forever.
                    if let Err(e) = worker.await {
                        if e.is_panic() {
                            shared.crash(format!(
                                "the worker of partition {tp} panicked: {}",
                                panic_text(e)
                            ));
                        }
                    }
                    drop(done);
                });
            });
        }
    }
}

impl ClientContext for PipelineContext {
    /// librdkafka's periodic statistics carry the consumer lag of every assigned partition.
    fn stats(&self, statistics: rdkafka::Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // -1 is librdkafka's internal UA partition and unknown lags.
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.shared.recorder.lag(topic, *partition, p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for PipelineContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let shared = &self.shared;
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let revoked = partitions_of(tpl);
                shared.recorder.in_span(|| tracing::info!(partitions = ?revoked.iter().map(ToString::to_string).collect::<Vec<_>>(), "partitions revoked"));
                let how = match consumer.assignment_lost() {
                    true => Release::Lost,
                    false => Release::Revoke,
                };
                shared.partitions.release(&revoked, how, |revoked| {
                    shared.commit(consumer, Some(revoked))
                });
                PartitionsRevoked {
                    partitions: &revoked,
                }
                .emit(&shared.recorder);
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => {
                shared
                    .recorder
                    .in_span(|| tracing::warn!("rebalance error: {e}"));
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let assigned = partitions_of(tpl);
            // Recorded first: whoever sees the partitions consumed sees them counted.
            PartitionsAssigned {
                partitions: &assigned,
            }
            .emit(&self.shared.recorder);
            // librdkafka's assign() resets partition queues, so they are split after it.
            self.start_consuming(&assigned);
        }
    }
}

impl GroupMember for Weak<PipelineConsumer> {
    fn group_metadata(&self) -> Option<ConsumerGroupMetadata> {
        self.upgrade()?.group_metadata()
    }

    fn rewind(&self, tp: &TopicPartition, offset: i64) -> anyhow::Result<()> {
        let consumer = self
            .upgrade()
            .ok_or_else(|| anyhow::anyhow!("the consumer is gone"))?;
        consumer
            .seek(
                &tp.topic,
                tp.partition,
                Offset::Offset(offset),
                REWIND_TIMEOUT,
            )
            .map_err(|e| anyhow::anyhow!("seeking {tp} to {offset}: {e}"))
    }
}

fn panic_text(e: tokio::task::JoinError) -> String {
    let payload = e.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}
