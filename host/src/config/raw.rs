//! The file format as serde reads it, before validation: every field optional where the file may
//! leave it out. [`super::validate`] turns it into [`super::Config`].

use super::Backoff;
use super::{ControlSettings, EmbeddedSettings, EngineSettings, RunSettings, TelemetrySettings};
use super::{DeliveryGuarantee, GroupProtocol, GroupType, Ordering};
use crate::policy::AckPolicy;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) brokers: Option<String>,
    #[serde(default)]
    pub(super) kafka: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub(super) run: RunSettings,
    #[serde(default)]
    pub(super) embedded: EmbeddedSettings,
    #[serde(default)]
    pub(super) engine: EngineSettings,
    pub(super) control: Option<ControlSettings>,
    pub(super) telemetry: Option<TelemetrySettings>,
    #[serde(default, rename = "pipeline")]
    pub(super) pipelines: Vec<RawPipeline>,
    #[serde(default, rename = "tenant")]
    pub(super) tenants: Vec<RawTenant>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPipeline {
    pub(super) name: String,
    pub(super) tenant: Option<String>,
    pub(super) topics: Vec<String>,
    pub(super) group_id: Option<String>,
    #[serde(default)]
    pub(super) group_type: GroupType,
    #[serde(default)]
    pub(super) group_protocol: GroupProtocol,
    pub(super) group_instance_id: Option<String>,
    #[serde(default)]
    pub(super) ack_policy: AckPolicy,
    pub(super) plugin: PathBuf,
    #[serde(default = "default_true")]
    pub(super) watch_plugin: bool,
    pub(super) smoke_payload: Option<String>,
    pub(super) ordering: Option<Ordering>,
    pub(super) max_in_flight: Option<u32>,
    #[serde(default = "default_max_batch")]
    pub(super) max_batch: u32,
    #[serde(default = "default_commit_interval_ms")]
    pub(super) commit_interval_ms: u64,
    #[serde(default = "default_drain_timeout_ms")]
    pub(super) drain_timeout_ms: u64,
    #[serde(default = "default_connect_timeout_ms")]
    pub(super) connect_timeout_ms: u64,
    #[serde(default)]
    pub(super) limits: RawLimits,
    #[serde(default)]
    pub(super) backoff: Backoff,
    pub(super) max_attempts: Option<u32>,
    pub(super) dead_letter_topic: Option<String>,
    #[serde(default = "default_dead_letter_timeout_ms")]
    pub(super) dead_letter_timeout_ms: u64,
    #[serde(default)]
    pub(super) outputs: Vec<String>,
    #[serde(default)]
    pub(super) delivery: DeliveryGuarantee,
    pub(super) max_outputs_per_call: Option<u32>,
    pub(super) max_output_bytes_per_call: Option<u64>,
    #[serde(default = "default_output_timeout_ms")]
    pub(super) output_timeout_ms: u64,
    #[serde(default)]
    pub(super) transaction: RawTransactions,
    #[serde(default)]
    pub(super) kafka: BTreeMap<String, toml::Value>,
}

/// `[pipeline.transaction]`: how settled messages are grouped into transactions
/// (`delivery = "exactly-once"`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTransactions {
    pub(super) max_messages: Option<u32>,
    pub(super) max_ms: Option<u64>,
    pub(super) id_prefix: Option<String>,
}

pub(super) fn default_output_timeout_ms() -> u64 {
    30_000
}

pub(super) fn default_dead_letter_timeout_ms() -> u64 {
    30_000
}

pub(super) fn default_true() -> bool {
    true
}

pub(super) fn default_commit_interval_ms() -> u64 {
    1000
}

/// Default `max_batch`.
pub const DEFAULT_MAX_BATCH: usize = 64;

pub(super) fn default_max_batch() -> u32 {
    DEFAULT_MAX_BATCH as u32
}

pub(super) fn default_drain_timeout_ms() -> u64 {
    10_000
}

pub(super) fn default_connect_timeout_ms() -> u64 {
    10_000
}

/// A pipeline's own limits; unset ones come from its tenant, then from the defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLimits {
    pub(super) deadline_ms: Option<u64>,
    pub(super) memory_mib: Option<u64>,
    pub(super) fuel: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenant {
    pub name: String,
    /// Topics the tenant owns: exact names, or a prefix ending in `*`.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Owned topics other tenants may read: topic (or pattern) → tenant names.
    #[serde(default)]
    pub share: BTreeMap<String, Vec<String>>,
    /// Owned topics other tenants may write (outputs, dead letters): topic (or pattern) → tenant
    /// names.
    #[serde(default)]
    pub share_write: BTreeMap<String, Vec<String>>,
    /// OCI registries (`HOST` or `HOST:PORT`) the tenant's deploys may pull components from.
    #[serde(default)]
    pub registries: Vec<String>,
    #[serde(default)]
    pub limits: RawTenantLimits,
    #[serde(default)]
    pub grants: RawGrants,
    #[serde(default, rename = "pipeline")]
    pub pipelines: Vec<RawPipeline>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenantLimits {
    pub deadline_ms: Option<u64>,
    pub memory_mib: Option<u64>,
    pub fuel: Option<u64>,
    pub max_instances: Option<u32>,
    pub max_in_flight: Option<u32>,
    pub max_queued_kib: Option<u64>,
    pub pause_after_traps: Option<u32>,
    pub guest_ms_per_sec: Option<u64>,
    pub max_messages_per_sec: Option<u64>,
    pub log_lines_per_sec: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGrants {
    pub read_only_dir: Option<RawDir>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub http_hosts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDir {
    pub host: PathBuf,
    pub guest: String,
}
