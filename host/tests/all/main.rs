//! Integration tests: the host against real components and the embedded Kafka broker.

mod support;

mod cli;
mod delivery;
mod plugin;
mod policies;
mod rebalance;
mod reload;
