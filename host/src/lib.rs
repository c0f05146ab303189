//! Ackbar: a WebAssembly plugin host for Kafka consumers.
//!
//! # The way of a message, from fetch to commit
//!
//! 1. **Configuration.** [`config::Config::load`] reads and validates the TOML file: pipelines,
//!    tenants with their limits and grants. `ackbar run` ([`cli`]) starts each pipeline under a
//!    [`supervisor`], which restarts it when it crashes; the pipelines of one tenant share one
//!    [`tenant::TenantBudget`].
//! 2. **Consumer.** [`consumer::Pipeline`] creates the pipeline's rdkafka consumer and subscribes.
//!    On each rebalance the partitions it gains and loses go through one protocol (assign,
//!    revoke, lost, shutdown) in `consumer/assignment.rs`; each owned partition gets a worker
//!    (`consumer/partition.rs`) that reads its own queue in order, one message at a time
//!    (`consumer/sequential.rs`) or several (`consumer/concurrent.rs`).
//! 3. **Handler call.** The worker takes the plugin version current now from the
//!    [`reload::PluginSlot`] (hot reload swaps it without losing a message) and calls the guest's
//!    `handle` through [`plugin::InstancePool`]: a warm [`plugin::PluginInstance`] runs it in
//!    its sandbox under the call's deadline, memory cap and fuel. What happened — returned,
//!    failed, trapped, interrupted, and any explicit ack/nack/reject — is an
//!    [`outcome::Outcome`]; what it sent to output topics (`producer.send`, bounded per call)
//!    is its [`outputs::Outputs`].
//! 4. **Settlement.** [`policy::DeliveryRules::settle`] is the one place an outcome becomes
//!    what happens next: the ack policy's action, then the retry cap, the dead-letter topic and
//!    the backoff give one [`policy::Verdict`] — commit, dead-letter then commit, redeliver after a
//!    wait, pause, or leave. This is where a trap becomes a redelivery.
//! 5. **Record.** The delivery becomes one [`events::DeliveryEvent`]; its `emit` feeds the
//!    Prometheus series (which the [`stats`] read), the log line and the event stream the demo
//!    and tests read. Everything else a pipeline does (output writes, dead letters, commits,
//!    transactions, pauses, share acknowledgements) is an event of [`events`] too.
//! 6. **Carry out.** The worker does what the verdict says (`consumer/verdict.rs`): publishes the attempt's outputs if
//!    [`policy::Settlement::publishes_outputs`] says so (`output_writer`, at least once),
//!    writes the `deadletter`, waits and calls again (nothing after the message runs first),
//!    pauses the partition, or marks the message finished in the partition's
//!    [`offsets::PartitionProgress`].
//! 7. **Commit.** Every `commit_interval` the pipeline commits each partition's low-watermark of
//!    settled messages (`consumer/commits.rs`); a revoke or shutdown drains the workers and
//!    commits synchronously. An exactly-once pipeline instead commits each partition's settled messages in Kafka
//!    `transactions` holding their outputs, dead letters and offset. A share-group pipeline
//!    (`group_type = "share"`, `consumer/share.rs`) has no offsets: steps 2 and 7 become
//!    acquiring records and acknowledging each one (accept, release, reject) as it settled.
//!
//! Around that path: [`embedded`] (an in-process Kafka-protocol broker for demos and tests),
//! [`kafka`] (producing records, reading committed offsets), [`health`] and `ops_endpoint`
//! (`/metrics`, `/healthz`, `/readyz`), [`console`] (the web console, with [`holds`] and
//! [`recent`]), [`telemetry`] (OpenTelemetry), `fault_log`, `trace_context` (`traceparent`),
//! [`oci`] (components in OCI registries), and [`bindings`] (the guest contract generated from
//! `wit/`).

#![deny(missing_docs)]

pub mod bindings;
pub mod canary;
pub mod cli;
pub mod config;
pub mod console;
pub mod consumer;
pub mod control;
mod deadletter;
pub mod embedded;
pub mod events;
mod fault_log;
pub mod health;
pub mod holds;
pub mod kafka;
mod metrics;
pub mod oci;
pub mod offsets;
mod ops_endpoint;
pub mod outcome;
mod output_writer;
pub mod outputs;
pub mod plugin;
pub mod policy;
pub mod recent;
pub mod reload;
pub mod stats;
mod stop;
pub mod supervisor;
pub mod telemetry;
pub mod tenant;
mod text;
mod tls;
mod token_bucket;
mod trace_context;
mod transactions;
