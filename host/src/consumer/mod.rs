//! The Kafka side: one consumer per pipeline, one ordered worker per assigned partition.
//!
//! A pipeline is one consumer, one `PipelineState` its parts share,
//! and one worker per partition it owns:
//!
//! - `pipeline`: start (consumer, subscription, driver thread) and shutdown.
//! - `rebalance`: librdkafka's callbacks; assigns and revokes go to `assignment`.
//! - `assignment`: the life of an owned partition (consuming, draining, revoked) and the
//!   protocol of assign, revoke, lost and shutdown.
//! - `partition_queue`: a partition's librdkafka queue, popped one message or a batch at a time.
//! - `partition`: one partition's worker: takes messages from the partition's queue, hands
//!   them to the worker of the pipeline's ordering, `sequential` or `concurrent`, and gives
//!   them back settled or not, moving the commit point.
//! - `verdict`: carrying out what
//!   [`DeliveryRules::settle`](crate::policy::DeliveryRules::settle) decided for a message:
//!   publish, dead-letter, redeliver after the backoff, pause. Every worker goes through it.
//! - `commits`: the at-least-once commit ticker and a partition's exactly-once transactions.
//! - `handler_call`: one delivery's handler call under the tenant's limits, settled and
//!   recorded; both kinds of workers call through it.
//! - `share`: a share-group pipeline (`group_type = "share"`), in place of `rebalance`,
//!   `assignment` and `partition`: one task acquires records, handles each on a task of its
//!   own, and acknowledges it (accept, release, reject) as it settled.
//! - `state`: what they share, and the offset commit.

mod assignment;
mod batch_run;
mod commits;
mod concurrent;
mod handler_call;
mod partition;
mod partition_queue;
mod pipeline;
mod rebalance;
mod sequential;
mod share;
mod state;
mod verdict;
pub(crate) use handler_call::{settle_call, SettledCall};
pub use pipeline::{PartitionNow, Pipeline, PipelineHandle};
