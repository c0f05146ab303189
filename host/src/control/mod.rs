//! The fleet's control plane, kept in Kafka: what every member of a fleet reads to run the
//! same handlers. So far: the plugin store ([`PluginStore`]), content-addressed component bytes
//! in a compacted topic.

mod plugin_store;

pub use plugin_store::{chunk_key, PluginDigest, PluginStore, CHUNK_BYTES};
