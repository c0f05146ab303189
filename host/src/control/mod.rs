//! The fleet's control plane, kept in Kafka: what every member of a fleet reads to run the
//! same handlers. Each part is a compacted control topic:
//!
//! - the plugin store ([`PluginStore`]): component bytes, content-addressed;
//! - the desired state ([`DesiredState`]): per tenant, the pipelines it deployed, each with its
//!   plugin's digest, its spec and a generation.

mod desired;
mod plugin_store;
mod topic;

pub use desired::{pipelines_topic, DesiredPipeline, DesiredState};
pub use plugin_store::{chunk_key, PluginDigest, PluginStore, CHUNK_BYTES, MAX_PLUGIN_BYTES};
