//! Integration tests: the host against real components and the embedded Kafka broker.

mod brokers;
mod support;

mod batch;
mod canary;
mod cli;
mod console;
mod control;
mod crash;
mod delivery;
mod docs;
mod exactly_once;
mod faults;
mod fleet;
mod fleet_acl;
mod fleet_oci;
mod grants;
mod hostile;
mod languages;
mod new_project;
mod oci;
mod operations;
mod ordering;
mod outputs;
mod plugin;
mod policies;
mod rebalance;
mod reload;
mod share_group;
mod share_pipeline;
mod supervisor;
mod telemetry;
mod tenants;
