//! Ackbar: a WebAssembly plugin host for Kafka consumers.
//!
//! A message flows one way: the [`consumer`] reads it from Kafka, the [`plugin`] runtime calls the
//! guest's `handle`, the [`policy`] engine turns the [`outcome`] into an action, and the
//! [`offsets`] tracker turns actions into commits.

pub mod bindings;
pub mod cli;
pub mod config;
pub mod consumer;
pub mod deadletter;
pub mod embedded;
pub mod events;
pub mod fault_log;
pub mod health;
pub mod kafka;
pub mod metrics;
pub mod offsets;
pub mod ops_endpoint;
pub mod outcome;
pub mod plugin;
pub mod policy;
pub mod reload;
pub mod stats;
pub mod supervisor;
pub mod tenant;
pub mod trace_context;
