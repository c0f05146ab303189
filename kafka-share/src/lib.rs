//! A Kafka share-group consumer (KIP-932, "Queues for Kafka") speaking the wire protocol
//! directly.
//!
//! Share groups hand records out individually: any number of members may read one partition,
//! each record is *acquired* by one member under a time-limited lock and is then accepted,
//! released (redelivered), rejected, or - on Kafka 4.2+ - has its lock renewed.
//!
//! Protocol used (Kafka 4.1+; share groups on by default from 4.2 via `share.version`):
//! ShareGroupHeartbeat v1 for membership (member id chosen by the client, epoch 0 joins,
//! -1 leaves), FindCoordinator (key type GROUP), Metadata (topic ids), ShareFetch v1/v2 with
//! piggybacked acknowledgements and a share session per leader, ShareAcknowledge v1/v2
//! (v2: RENEW).
//!
//! Design choices beyond a plain poll/ack loop:
//! - `acknowledge` is synchronous and checks that the record is still held; outcomes of
//!   acknowledgements, whether piggybacked on a fetch or sent by `flush_acks`, are collected
//!   in an [`AckReport`] returned by the next `flush_acks` or `close` (so `close` returns the
//!   report rather than `()`: final acknowledgement failures must not vanish).
//! - [`AcquireMode::RecordLimit`] is the default, which makes `max_records` a hard bound per
//!   fetch on Kafka 4.2+ (KIP-1206); v1 brokers may round up to whole batches.
//! - `poll` writes one ShareFetch to every leader before reading any response, so leaders
//!   long-poll in parallel without one task per broker.
//! - Transient failures (leader or coordinator moves, fencing, lost connections) are handled
//!   inside; `poll` returns only errors the caller must act on.
//!
//! ```no_run
//! # async fn run() -> Result<(), kafka_share::Error> {
//! use kafka_share::{AckKind, ShareConsumer, ShareConsumerConfig};
//! let mut consumer =
//!     ShareConsumer::connect(ShareConsumerConfig::new("127.0.0.1:9092", "workers", &["jobs"]))
//!         .await?;
//! loop {
//!     for record in consumer.poll().await? {
//!         // ... process ...
//!         consumer.acknowledge(&record.id(), AckKind::Accept)?;
//!     }
//! }
//! # }
//! ```

#![deny(missing_docs)]

mod acks;
pub mod admin;
mod conn;
mod consumer;
mod error;
mod fetch;
mod membership;
mod metadata;
mod records;
mod session;
mod state;
mod types;
mod wire;

pub use admin::Admin;
pub use consumer::ShareConsumer;
pub use error::{code_name, Error, Result};
pub use types::{
    AckFailure, AckKind, AckReport, AcquireMode, AcquiredRecord, RecordId, ShareConsumerConfig,
};
