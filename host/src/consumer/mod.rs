//! The Kafka side: one consumer per pipeline, one ordered worker per assigned partition.
//!
//! # Lifecycle of a pipeline
//! - **Assign** (rebalance callback, after librdkafka's assign): the partition's offset state is
//!   reset, its fetch queue is split off the consumer and a worker task starts reading it in order.
//! - **Consume** (worker): message → plugin call →
//!   [`DeliveryRules::settle`](crate::policy::DeliveryRules::settle) → the commit point moves
//!   (after a dead letter where there is one), or the message is redelivered after a backoff
//!   (nothing after it in the partition runs first), or the partition pauses on it.
//! - **Commit** (ticker): every `commit_interval` the settled low-watermarks that moved are
//!   committed in one request, off the handlers' path.
//! - **Revoke** (rebalance callback, before librdkafka's unassign): the partition's worker stops
//!   reading, its in-flight message finishes (up to `drain_timeout`), the settled offset is
//!   committed synchronously and the partition's state is dropped, so nothing settled in this
//!   generation is committed by a later one.
//! - **Shutdown**: every worker drains as on revoke, a final synchronous commit, then the consumer
//!   leaves the group.

mod context;
mod partition;
mod pipeline;

pub use pipeline::{Pipeline, PipelineHandle};
