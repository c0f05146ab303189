//! The TOML configuration (`ackbar run ackbar.toml`) and its validation.
//!
//! Every error names the file, and where it applies the pipeline and the field.

mod tenant;

pub use tenant::{pattern_matches, TenantConfig, TenantLimits};

use crate::plugin::{Grants, PluginLimits};
use crate::policy::AckPolicy;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tenant::RawTenant;

/// librdkafka properties Ackbar sets itself from the ack policy; configuring them would break
/// the policy's guarantees.
const MANAGED_PROPERTIES: [(&str, &str); 3] = [
    ("enable.auto.commit", "it follows from ack_policy"),
    ("enable.auto.offset.store", "it follows from ack_policy"),
    ("group.id", "use the pipeline's `group_id`"),
];

/// A configuration error, already phrased for a person.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Where Ackbar finds Kafka.
#[derive(Debug, Clone, PartialEq)]
pub enum Brokers {
    /// librdkafka's in-process mock cluster: zero setup, for demos and tests.
    Embedded,
    /// A real cluster's bootstrap servers.
    Bootstrap(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    brokers: Option<String>,
    #[serde(default)]
    kafka: BTreeMap<String, toml::Value>,
    #[serde(default)]
    run: RunSettings,
    #[serde(default)]
    embedded: EmbeddedSettings,
    #[serde(default)]
    engine: EngineSettings,
    #[serde(default, rename = "pipeline")]
    pipelines: Vec<RawPipeline>,
    #[serde(default, rename = "tenant")]
    tenants: Vec<RawTenant>,
}

/// Process-wide settings (`[run]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RunSettings {
    /// Seconds between summary lines at info level; 0 turns them off.
    pub summary_interval_secs: u64,
    /// Where to serve `/metrics` (Prometheus), `/healthz` and `/readyz`, e.g. "127.0.0.1:9464".
    /// Off when unset.
    pub metrics_addr: Option<String>,
    /// `/readyz` fails while a partition has been stuck on one message (redelivered or paused)
    /// for longer than this.
    pub ready_stall_threshold_ms: u64,
    /// A pipeline that failed to start or crashed is restarted after this long, doubling on
    /// each further failure up to `restart_max_ms`.
    pub restart_initial_ms: u64,
    pub restart_max_ms: u64,
}

impl RunSettings {
    pub fn restart_backoff(&self) -> Backoff {
        Backoff {
            initial_ms: self.restart_initial_ms,
            max_ms: self.restart_max_ms,
            multiplier: 2.0,
        }
    }
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            summary_interval_secs: 10,
            metrics_addr: None,
            ready_stall_threshold_ms: 60_000,
            restart_initial_ms: 1_000,
            restart_max_ms: 60_000,
        }
    }
}

/// Largest `[engine] max_wasm_stack_kib`.
const MAX_WASM_STACK_KIB: u64 = 4096;

/// The Wasm engine (`[engine]`), shared by every tenant.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSettings {
    /// Preallocate instance slots sized from the tenants' limits (see `plugin::PoolSizing`).
    pub pooling: bool,
    /// Wasm stack per call; deeper recursion traps as a stack overflow.
    pub max_wasm_stack_kib: u64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            pooling: true,
            max_wasm_stack_kib: (crate::plugin::DEFAULT_MAX_WASM_STACK >> 10) as u64,
        }
    }
}

/// Settings of the embedded broker (`[embedded]`), used when `brokers = "embedded"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedSettings {
    /// Partitions of each topic the embedded broker creates for the pipelines.
    pub partitions: i32,
}

impl Default for EmbeddedSettings {
    fn default() -> Self {
        EmbeddedSettings { partitions: 3 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    name: String,
    tenant: Option<String>,
    topics: Vec<String>,
    group_id: Option<String>,
    #[serde(default)]
    ack_policy: AckPolicy,
    plugin: PathBuf,
    #[serde(default = "default_true")]
    watch_plugin: bool,
    smoke_payload: Option<String>,
    #[serde(default)]
    ordering: Ordering,
    max_in_flight: Option<u32>,
    #[serde(default = "default_commit_interval_ms")]
    commit_interval_ms: u64,
    #[serde(default = "default_drain_timeout_ms")]
    drain_timeout_ms: u64,
    #[serde(default = "default_connect_timeout_ms")]
    connect_timeout_ms: u64,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    backoff: Backoff,
    max_attempts: Option<u32>,
    dead_letter_topic: Option<String>,
    #[serde(default = "default_dead_letter_timeout_ms")]
    dead_letter_timeout_ms: u64,
    #[serde(default)]
    kafka: BTreeMap<String, toml::Value>,
}

fn default_dead_letter_timeout_ms() -> u64 {
    30_000
}

fn default_true() -> bool {
    true
}

fn default_commit_interval_ms() -> u64 {
    1000
}

fn default_drain_timeout_ms() -> u64 {
    10_000
}

fn default_connect_timeout_ms() -> u64 {
    10_000
}

/// A pipeline's own limits; unset ones come from its tenant, then from the defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    deadline_ms: Option<u64>,
    memory_mib: Option<u64>,
    fuel: Option<u64>,
}

/// Redelivery backoff after a nack: `initial_ms`, multiplied by `multiplier` on each further
/// nack of the same message, capped at `max_ms`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Backoff {
    pub initial_ms: u64,
    pub max_ms: u64,
    pub multiplier: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial_ms: 100,
            max_ms: 10_000,
            multiplier: 2.0,
        }
    }
}

impl Backoff {
    /// The wait before redelivering a message that has been nacked `nacks` times (≥ 1).
    pub fn delay(&self, nacks: u32) -> Duration {
        let exponent = nacks.saturating_sub(1).min(64) as i32;
        let ms = self.initial_ms as f64 * self.multiplier.powi(exponent);
        Duration::from_millis(ms.min(self.max_ms as f64) as u64)
    }
}

/// Which messages of a partition keep their order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ordering {
    /// One message at a time, in offset order (Kafka's usual guarantee).
    #[default]
    Partition,
    /// Messages with the same key in offset order; different keys concurrently. Messages
    /// without a key are ordered among themselves.
    Key,
    /// Any message concurrently with any other.
    Unordered,
}

/// `max_in_flight` when `ordering` allows concurrency and the config names none.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 16;

/// The tenant of a pipeline that names none.
pub const DEFAULT_TENANT: &str = "default";

/// One validated pipeline: topics → group → plugin → policy.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineConfig {
    pub name: String,
    /// The team the pipeline belongs to: a label on its logs and metrics.
    pub tenant: String,
    pub topics: Vec<String>,
    pub group_id: Option<String>,
    pub ack_policy: AckPolicy,
    /// Absolute, or relative to the working directory (resolved against the config file's folder).
    pub plugin: PathBuf,
    /// Reload the plugin when its file changes.
    pub watch_plugin: bool,
    /// Which messages of a partition must be handled one after the other.
    pub ordering: Ordering,
    /// Messages of one partition handled at the same time (`ordering` other than `partition`).
    pub max_in_flight: usize,
    /// A payload each new plugin version is called with before it goes live; a trap refuses it.
    pub smoke_payload: Option<Vec<u8>>,
    pub commit_interval: Duration,
    pub drain_timeout: Duration,
    /// How long startup waits for the cluster to answer before failing.
    pub connect_timeout: Duration,
    pub limits: PluginLimits,
    pub backoff: Backoff,
    /// Deliveries of one message before it counts as exhausted (dead-lettered, or the partition
    /// pauses when there is no dead-letter topic). `None`: redelivered until it succeeds.
    pub max_attempts: Option<u32>,
    /// Rejected and exhausted messages are written here before their offset is committed.
    pub dead_letter_topic: Option<String>,
    /// How long one dead-letter write may take before it is retried.
    pub dead_letter_timeout: Duration,
    /// librdkafka properties for this pipeline: the global `[kafka]` table with this pipeline's
    /// `[pipeline.kafka]` overrides applied.
    pub kafka: BTreeMap<String, String>,
    /// What the tenant's guests may reach (files, environment, HTTP hosts).
    pub grants: Arc<Grants>,
    /// The tenant's shared limits; pipelines of one tenant share one budget at run time.
    pub tenant_limits: TenantLimits,
}

impl PipelineConfig {
    /// A pipeline with defaults for everything but what must be given.
    pub fn new(name: &str, topics: &[&str], plugin: impl Into<PathBuf>) -> Self {
        PipelineConfig {
            name: name.to_string(),
            tenant: DEFAULT_TENANT.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            group_id: None,
            ack_policy: AckPolicy::default(),
            plugin: plugin.into(),
            watch_plugin: true,
            ordering: Ordering::Partition,
            max_in_flight: 1,
            smoke_payload: None,
            commit_interval: Duration::from_millis(default_commit_interval_ms()),
            drain_timeout: Duration::from_millis(default_drain_timeout_ms()),
            connect_timeout: Duration::from_millis(default_connect_timeout_ms()),
            limits: PluginLimits::default(),
            backoff: Backoff::default(),
            max_attempts: None,
            dead_letter_topic: None,
            dead_letter_timeout: Duration::from_millis(default_dead_letter_timeout_ms()),
            kafka: BTreeMap::new(),
            grants: Arc::default(),
            tenant_limits: TenantLimits::default(),
        }
    }
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub brokers: Brokers,
    pub run: RunSettings,
    pub embedded: EmbeddedSettings,
    pub engine: EngineSettings,
    /// Every tenant: the declared ones, then those only named by a pipeline.
    pub tenants: Vec<TenantConfig>,
    pub pipelines: Vec<PipelineConfig>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, &path.display().to_string(), base)
    }

    /// Parses and validates config text; `origin` names it in errors, plugin paths are resolved
    /// against `base`.
    pub fn parse(text: &str, origin: &str, base: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| ConfigError(format!("{origin}: {}", e.to_string().trim_end())))?;
        let err = |msg: String| ConfigError(format!("{origin}: {msg}"));

        let global_kafka = properties(&raw.kafka).map_err(|m| err(format!("[kafka]: {m}")))?;
        check_managed(&global_kafka).map_err(|m| err(format!("[kafka]: {m}")))?;
        let brokers = match (&raw.brokers, global_kafka.get("bootstrap.servers")) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "both `brokers` and [kafka] `bootstrap.servers` are set; keep one".into(),
                ))
            }
            (Some(b), None) if b.trim().eq_ignore_ascii_case("embedded") => Brokers::Embedded,
            (Some(b), None) if b.trim().is_empty() => {
                return Err(err(
                    "`brokers` is empty; use \"embedded\" or host:port".into()
                ))
            }
            (Some(b), None) => Brokers::Bootstrap(b.trim().to_string()),
            (None, Some(b)) => Brokers::Bootstrap(b.clone()),
            (None, None) => Brokers::Embedded,
        };
        if !(64..=MAX_WASM_STACK_KIB).contains(&raw.engine.max_wasm_stack_kib) {
            return Err(err(format!(
                "[engine]: field `max_wasm_stack_kib` must be between 64 and {MAX_WASM_STACK_KIB}"
            )));
        }
        if raw.run.restart_initial_ms == 0 || raw.run.restart_initial_ms > raw.run.restart_max_ms {
            return Err(err(
                "[run]: field `restart_initial_ms` must be greater than 0 and at most `restart_max_ms`".into(),
            ));
        }
        if raw.embedded.partitions < 1 {
            return Err(err(
                "[embedded]: field `partitions` must be at least 1".into()
            ));
        }
        if let Some(addr) = &raw.run.metrics_addr {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                return Err(err(format!(
                    "[run]: field `metrics_addr` must be host:port with an IP address, e.g. \"127.0.0.1:9464\", not {addr:?}"
                )));
            }
        }
        // Declared tenants first, then the ones pipelines only name.
        let mut tenants = Vec::new();
        for t in &raw.tenants {
            let terr = |field: &str, msg: String| {
                format!("{origin}: tenant '{}': field `{field}` {msg}", t.name)
            };
            if t.name.trim().is_empty() {
                return Err(err("a [[tenant]] has an empty `name`".into()));
            }
            if tenants
                .iter()
                .any(|known: &TenantConfig| known.name == t.name)
            {
                return Err(ConfigError(terr(
                    "name",
                    "is used by another tenant".into(),
                )));
            }
            tenants.push(tenant::validate_tenant(t, base, &terr).map_err(ConfigError)?);
        }
        let mut raw_pipelines: Vec<(RawPipeline, bool)> =
            raw.pipelines.into_iter().map(|p| (p, false)).collect();
        for t in &raw.tenants {
            for p in &t.pipelines {
                if p.tenant.as_ref().is_some_and(|named| named != &t.name) {
                    return Err(err(format!(
                        "tenant '{}': pipeline '{}': field `tenant` names another tenant; leave it out under [[tenant.pipeline]]",
                        t.name, p.name
                    )));
                }
                let mut p = p.clone();
                p.tenant = Some(t.name.clone());
                raw_pipelines.push((p, true));
            }
        }
        if raw_pipelines.is_empty() {
            return Err(err(
                "no [[pipeline]] defined; a config needs at least one pipeline".into(),
            ));
        }
        for (p, _) in &raw_pipelines {
            if let Some(name) = p.tenant.as_deref().filter(|n| !n.trim().is_empty()) {
                if !tenants.iter().any(|t| t.name == name) {
                    tenants.push(TenantConfig::implicit(name));
                }
            }
        }
        if !tenants.iter().any(|t| t.name == DEFAULT_TENANT)
            && raw_pipelines.iter().any(|(p, _)| p.tenant.is_none())
        {
            tenants.push(TenantConfig::implicit(DEFAULT_TENANT));
        }
        tenant::check_ownership_between(&tenants).map_err(err)?;

        let mut names = HashSet::new();
        let mut pipelines = Vec::new();
        for (p, nested) in raw_pipelines {
            let tenant_name = p
                .tenant
                .clone()
                .unwrap_or_else(|| DEFAULT_TENANT.to_string());
            let perr = |field: &str, msg: String| {
                let scope = if nested {
                    format!("tenant '{tenant_name}': ")
                } else {
                    String::new()
                };
                ConfigError(format!(
                    "{origin}: {scope}pipeline '{}': field `{field}` {msg}",
                    p.name
                ))
            };
            if p.name.trim().is_empty() {
                return Err(err("a pipeline has an empty `name`".into()));
            }
            if !names.insert(p.name.clone()) {
                return Err(perr("name", "is used by another pipeline".into()));
            }
            if p.topics.is_empty() || p.topics.iter().any(|t| t.trim().is_empty()) {
                return Err(perr(
                    "topics",
                    "must list at least one non-empty topic".into(),
                ));
            }
            let group_id = p.group_id.clone().filter(|g| !g.trim().is_empty());
            if group_id.is_none() && p.ack_policy.requires_group() {
                return Err(perr(
                    "group_id",
                    format!(
                        "is required by ack_policy {} (offsets are committed to the consumer group)",
                        p.ack_policy
                    ),
                ));
            }
            let tenant = match &p.tenant {
                Some(t) if t.trim().is_empty() => return Err(perr("tenant", "is empty".into())),
                _ => tenants
                    .iter()
                    .find(|t| t.name == tenant_name)
                    .expect("every named tenant is known")
                    .clone(),
            };
            for topic in &p.topics {
                if let Some(why) = tenant::read_refusal(&tenants, &tenant.name, topic) {
                    return Err(perr("topics", why));
                }
            }
            if let Some(dlq) = &p.dead_letter_topic {
                if let Some(why) = tenant::write_refusal(&tenants, &tenant.name, dlq) {
                    return Err(perr("dead_letter_topic", why));
                }
            }
            let limits = pipeline_limits(&p.limits, &raw_tenant_limits(&raw.tenants, &tenant.name))
                .map_err(|(field, msg)| perr(field, msg))?;
            if p.commit_interval_ms == 0 {
                return Err(perr("commit_interval_ms", "must be greater than 0".into()));
            }
            if !(p.backoff.multiplier >= 1.0 && p.backoff.multiplier.is_finite()) {
                return Err(perr("backoff.multiplier", "must be a number ≥ 1".into()));
            }
            if p.backoff.initial_ms > p.backoff.max_ms {
                return Err(perr(
                    "backoff.initial_ms",
                    format!(
                        "({}) exceeds backoff.max_ms ({})",
                        p.backoff.initial_ms, p.backoff.max_ms
                    ),
                ));
            }
            if p.max_attempts == Some(0) {
                return Err(perr("max_attempts", "must be at least 1".into()));
            }
            let dead_letter_topic = match &p.dead_letter_topic {
                Some(t) if t.trim().is_empty() => {
                    return Err(perr("dead_letter_topic", "is empty".into()))
                }
                Some(t) if p.topics.contains(t) => {
                    return Err(perr(
                        "dead_letter_topic",
                        format!("`{t}` is also a topic the pipeline reads: dead letters would be handled again"),
                    ))
                }
                other => other.clone(),
            };
            if dead_letter_topic.is_some() && !p.ack_policy.commits_explicitly() {
                return Err(perr(
                    "dead_letter_topic",
                    format!(
                        "needs a policy that commits after handling; {} commits before",
                        p.ack_policy
                    ),
                ));
            }
            if p.dead_letter_timeout_ms == 0 {
                return Err(perr(
                    "dead_letter_timeout_ms",
                    "must be greater than 0".into(),
                ));
            }
            let max_in_flight = match (p.ordering, p.max_in_flight) {
                (_, Some(0)) => return Err(perr("max_in_flight", "must be at least 1".into())),
                (Ordering::Partition, Some(n)) if n > 1 => {
                    return Err(perr(
                        "max_in_flight",
                        format!("is {n}, but ordering = \"partition\" handles one message at a time; use ordering = \"key\" or \"unordered\""),
                    ))
                }
                (Ordering::Partition, _) => 1,
                (_, Some(n)) => n as usize,
                (_, None) => DEFAULT_MAX_IN_FLIGHT,
            };
            let overrides = properties(&p.kafka).map_err(|m| perr("kafka", m))?;
            check_managed(&overrides).map_err(|m| perr("kafka", m))?;
            let mut kafka = global_kafka.clone();
            kafka.extend(overrides);
            kafka.remove("bootstrap.servers");

            // `join` keeps an absolute path as it is.
            let plugin = base.join(&p.plugin);
            if !plugin.is_file() {
                return Err(perr(
                    "plugin",
                    format!("points at {}, which is not a file", plugin.display()),
                ));
            }
            pipelines.push(PipelineConfig {
                name: p.name.clone(),
                tenant: tenant.name.clone(),
                topics: p.topics.clone(),
                group_id,
                ack_policy: p.ack_policy,
                plugin,
                watch_plugin: p.watch_plugin,
                ordering: p.ordering,
                max_in_flight,
                smoke_payload: p.smoke_payload.clone().map(String::into_bytes),
                commit_interval: Duration::from_millis(p.commit_interval_ms),
                drain_timeout: Duration::from_millis(p.drain_timeout_ms),
                connect_timeout: Duration::from_millis(p.connect_timeout_ms),
                limits,
                backoff: p.backoff,
                max_attempts: p.max_attempts,
                dead_letter_topic,
                dead_letter_timeout: Duration::from_millis(p.dead_letter_timeout_ms),
                kafka,
                grants: tenant.grants.clone(),
                tenant_limits: tenant.limits,
            });
        }
        Ok(Config {
            brokers,
            run: raw.run,
            embedded: raw.embedded,
            engine: raw.engine,
            tenants,
            pipelines,
        })
    }
}

impl Config {
    /// The engine this configuration needs: fuel metering if any pipeline has a fuel limit, and
    /// an instance pool with room for every tenant's pipelines.
    pub fn engine_options(&self) -> crate::plugin::EngineOptions {
        let pooling = self.engine.pooling.then(|| {
            let tenants = self.tenants.iter().map(|t| {
                let pipelines = self.pipelines.iter().filter(|p| p.tenant == t.name).count();
                (pipelines, t.limits.max_instances)
            });
            let max_memory = self
                .pipelines
                .iter()
                .map(|p| p.limits.memory_bytes)
                .max()
                .unwrap_or(0);
            crate::plugin::PoolSizing::for_tenants(tenants, max_memory)
        });
        crate::plugin::EngineOptions {
            metered: self.pipelines.iter().any(|p| p.limits.fuel.is_some()),
            pooling,
            max_wasm_stack: (self.engine.max_wasm_stack_kib as usize) << 10,
        }
    }
}

fn raw_tenant_limits(tenants: &[RawTenant], name: &str) -> tenant::RawTenantLimits {
    tenants
        .iter()
        .find(|t| t.name == name)
        .map(|t| t.limits.clone())
        .unwrap_or_default()
}

/// A pipeline's limits: its own, else its tenant's, else the defaults. A pipeline may tighten
/// its tenant's limits, never loosen them. Errors are (field, message).
fn pipeline_limits(
    own: &RawLimits,
    tenant: &tenant::RawTenantLimits,
) -> Result<PluginLimits, (&'static str, String)> {
    let defaults = PluginLimits::default();
    let pick = |field: &'static str, own: Option<u64>, tenant: Option<u64>| match (own, tenant) {
        (Some(0), _) | (None, Some(0)) if field == "limits.memory_mib" => {
            Err((field, "must be between 1 and 4096".to_string()))
        }
        (Some(0), _) | (None, Some(0)) => Err((field, "must be greater than 0".to_string())),
        (Some(o), Some(t)) if o > t => {
            Err((field, format!("is {o}, above its tenant's limit of {t}")))
        }
        (o, t) => Ok(o.or(t)),
    };
    let deadline_ms = pick("limits.deadline_ms", own.deadline_ms, tenant.deadline_ms)?
        .unwrap_or(defaults.deadline.as_millis() as u64);
    let memory_mib = pick("limits.memory_mib", own.memory_mib, tenant.memory_mib)?
        .unwrap_or((defaults.memory_bytes >> 20) as u64);
    if memory_mib > 4096 {
        return Err(("limits.memory_mib", "must be between 1 and 4096".into()));
    }
    let fuel = pick("limits.fuel", own.fuel, tenant.fuel)?;
    Ok(PluginLimits {
        deadline: Duration::from_millis(deadline_ms),
        memory_bytes: (memory_mib as usize) << 20,
        fuel,
    })
}

/// librdkafka takes every property as a string; TOML may give numbers and booleans.
fn properties(table: &BTreeMap<String, toml::Value>) -> Result<BTreeMap<String, String>, String> {
    table
        .iter()
        .map(|(k, v)| {
            let value = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(format!(
                        "property `{k}` must be a string, number or boolean, not a {}",
                        other.type_str()
                    ))
                }
            };
            Ok((k.clone(), value))
        })
        .collect()
}

fn check_managed(props: &BTreeMap<String, String>) -> Result<(), String> {
    for (key, why) in MANAGED_PROPERTIES {
        if props.contains_key(key) {
            return Err(format!("property `{key}` is managed by Ackbar: {why}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in(dir: &Path, text: &str) -> Result<Config, ConfigError> {
        std::fs::write(dir.join("plugin.wasm"), b"\0asm").unwrap();
        Config::parse(text, "ackbar.toml", dir)
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        parse_in(dir.path(), text)
    }

    const MINIMAL: &str = r#"
[[pipeline]]
name = "orders"
topics = ["orders"]
group_id = "g"
ack_policy = "nack_on_error"
plugin = "plugin.wasm"
"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.brokers, Brokers::Embedded);
        let p = &c.pipelines[0];
        assert_eq!(p.ack_policy, AckPolicy::NackOnError);
        assert_eq!(p.limits.deadline, Duration::from_secs(5));
        assert_eq!(p.limits.memory_bytes, 64 << 20);
        assert_eq!(p.commit_interval, Duration::from_secs(1));
        assert_eq!(p.backoff, Backoff::default());
        assert!(p.plugin.is_absolute() || p.plugin.starts_with(std::env::temp_dir()));
    }

    #[test]
    fn kafka_properties_pass_through_with_overrides() {
        let c = parse(
            r#"
[kafka]
"bootstrap.servers" = "k1:9092"
"session.timeout.ms" = 6000
"security.protocol" = "plaintext"
[[pipeline]]
name = "p"
topics = ["t"]
plugin = "plugin.wasm"
[pipeline.kafka]
"session.timeout.ms" = "7000"
"#,
        )
        .unwrap();
        assert_eq!(c.brokers, Brokers::Bootstrap("k1:9092".into()));
        let k = &c.pipelines[0].kafka;
        assert_eq!(k["session.timeout.ms"], "7000");
        assert_eq!(k["security.protocol"], "plaintext");
        assert!(!k.contains_key("bootstrap.servers"));
    }

    #[test]
    fn ack_without_group_names_file_pipeline_and_field() {
        let err = parse(
            r#"
[[pipeline]]
name = "orders"
topics = ["orders"]
ack_policy = "ACK"
plugin = "plugin.wasm"
"#,
        )
        .unwrap_err();
        assert_eq!(
            err.0,
            "ackbar.toml: pipeline 'orders': field `group_id` is required by ack_policy ACK \
             (offsets are committed to the consumer group)"
        );
    }

    #[test]
    fn ack_first_needs_no_group() {
        let c = parse("[[pipeline]]\nname = \"p\"\ntopics = [\"t\"]\nplugin = \"plugin.wasm\"\n")
            .unwrap();
        assert_eq!(c.pipelines[0].ack_policy, AckPolicy::AckFirst);
        assert_eq!(c.pipelines[0].group_id, None);
    }

    #[test]
    fn unknown_key_is_reported_with_its_line() {
        let err = parse(&format!("{MINIMAL}retries = 3\n")).unwrap_err();
        assert!(
            err.0.starts_with("ackbar.toml: TOML parse error at line"),
            "{err}"
        );
        assert!(err.0.contains("unknown field `retries`"), "{err}");
    }

    #[test]
    fn unknown_policy_is_reported() {
        let err = parse(&MINIMAL.replace("nack_on_error", "sometimes")).unwrap_err();
        assert!(err.0.contains("unknown ack policy 'sometimes'"), "{err}");
        assert!(err.0.contains("line 6"), "{err}");
    }

    #[test]
    fn missing_plugin_file_is_reported() {
        let err = parse(&MINIMAL.replace("plugin.wasm", "missing.wasm")).unwrap_err();
        assert!(
            err.0
                .contains("pipeline 'orders': field `plugin` points at"),
            "{err}"
        );
        assert!(err.0.contains("missing.wasm, which is not a file"), "{err}");
    }

    #[test]
    fn managed_property_is_refused() {
        let err = parse(&format!(
            "[kafka]\n\"enable.auto.commit\" = true\n{MINIMAL}"
        ))
        .unwrap_err();
        assert_eq!(
            err.0,
            "ackbar.toml: [kafka]: property `enable.auto.commit` is managed by Ackbar: it follows from ack_policy"
        );
    }

    #[test]
    fn duplicate_pipeline_names_are_refused() {
        let err = parse(&format!("{MINIMAL}{MINIMAL}")).unwrap_err();
        assert_eq!(
            err.0,
            "ackbar.toml: pipeline 'orders': field `name` is used by another pipeline"
        );
    }

    #[test]
    fn brokers_and_bootstrap_servers_conflict() {
        let err = parse(&format!(
            "brokers = \"a:1\"\n[kafka]\n\"bootstrap.servers\" = \"b:2\"\n{MINIMAL}"
        ))
        .unwrap_err();
        assert!(
            err.0
                .contains("both `brokers` and [kafka] `bootstrap.servers`"),
            "{err}"
        );
    }

    #[test]
    fn limits_are_validated() {
        let text = format!("{MINIMAL}[pipeline.limits]\nmemory_mib = 0\n");
        let err = parse(&text).unwrap_err();
        assert_eq!(
            err.0,
            "ackbar.toml: pipeline 'orders': field `limits.memory_mib` must be between 1 and 4096"
        );
        let text = format!("{MINIMAL}[pipeline.limits]\ndeadline_ms = 250\nmemory_mib = 16\n");
        let p = &parse(&text).unwrap().pipelines[0];
        assert_eq!(p.limits.deadline, Duration::from_millis(250));
        assert_eq!(p.limits.memory_bytes, 16 << 20);
    }

    #[test]
    fn empty_config_needs_a_pipeline() {
        let err = parse("brokers = \"embedded\"\n").unwrap_err();
        assert!(err.0.contains("no [[pipeline]] defined"), "{err}");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff::default();
        let delays: Vec<u64> = (1..=9).map(|n| b.delay(n).as_millis() as u64).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]
        );
        assert_eq!(b.delay(1000), Duration::from_secs(10));
    }

    #[test]
    fn operations_settings_are_validated_with_their_field() {
        let c = parse(&format!(
            "[run]\nmetrics_addr = \"127.0.0.1:9464\"\n{MINIMAL}tenant = \"shop\"\nmax_attempts = 5\ndead_letter_topic = \"orders-dlq\"\n"
        ))
        .unwrap();
        let p = &c.pipelines[0];
        assert_eq!(p.tenant, "shop");
        assert_eq!(p.max_attempts, Some(5));
        assert_eq!(p.dead_letter_topic.as_deref(), Some("orders-dlq"));
        assert_eq!(c.run.metrics_addr.as_deref(), Some("127.0.0.1:9464"));
        assert_eq!(parse(MINIMAL).unwrap().pipelines[0].tenant, DEFAULT_TENANT);

        let err = |extra: &str| parse(&format!("{MINIMAL}{extra}")).unwrap_err().to_string();
        assert!(err("dead_letter_topic = \"orders\"\n")
            .contains("field `dead_letter_topic` `orders` is also a topic"));
        assert!(err("max_attempts = 0\n")
            .contains("pipeline 'orders': field `max_attempts` must be at least 1"));
        assert!(err("tenant = \" \"\n").contains("field `tenant` is empty"));
        let first = parse(&format!("[run]\nmetrics_addr = \"localhost\"\n{MINIMAL}")).unwrap_err();
        assert!(
            first
                .to_string()
                .contains("field `metrics_addr` must be host:port"),
            "{first}"
        );
        let ack_first = MINIMAL.replace("nack_on_error", "ack_first");
        let e = parse(&format!("{ack_first}dead_letter_topic = \"dlq\"\n")).unwrap_err();
        assert!(
            e.to_string()
                .contains("needs a policy that commits after handling"),
            "{e}"
        );
    }

    #[test]
    fn ordering_and_max_in_flight_are_validated() {
        let p = |extra: &str| parse(&format!("{MINIMAL}{extra}"));
        let default = p("").unwrap();
        assert_eq!(default.pipelines[0].ordering, Ordering::Partition);
        assert_eq!(default.pipelines[0].max_in_flight, 1);
        let key = p("ordering = \"key\"\n").unwrap();
        assert_eq!(key.pipelines[0].ordering, Ordering::Key);
        assert_eq!(key.pipelines[0].max_in_flight, DEFAULT_MAX_IN_FLIGHT);
        let unordered = p("ordering = \"unordered\"\nmax_in_flight = 4\n").unwrap();
        assert_eq!(unordered.pipelines[0].max_in_flight, 4);
        let e = p("max_in_flight = 8\n").unwrap_err().to_string();
        assert!(
            e.contains("field `max_in_flight` is 8, but ordering = \"partition\""),
            "{e}"
        );
        let e = p("ordering = \"key\"\nmax_in_flight = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("field `max_in_flight` must be at least 1"),
            "{e}"
        );
        let e = p("ordering = \"random\"\n").unwrap_err().to_string();
        assert!(e.contains("unknown variant `random`"), "{e}");
    }

    /// The README's three-tenant example, with its files in place.
    fn readme_example(dir: &Path) -> String {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("<!-- example: three tenants -->\n```toml\n")
            .expect("README has the example");
        let body = &readme[start..];
        let body = &body[body.find("```toml\n").unwrap() + 8..];
        let text = &body[..body.find("```").unwrap()];
        std::fs::create_dir_all(dir.join("plugins")).unwrap();
        std::fs::create_dir_all(dir.join("reference-data")).unwrap();
        for plugin in ["orders", "stats", "webhooks"] {
            std::fs::write(dir.join(format!("plugins/{plugin}.wasm")), b"\0asm").unwrap();
        }
        // A variable every environment has, in place of the example's.
        text.replace("SHOP_REGION", "PATH")
    }

    #[test]
    fn readme_three_tenant_example_loads() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::parse(&readme_example(dir.path()), "ackbar.toml", dir.path()).unwrap();
        let names: Vec<&str> = c.tenants.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["shop", "analytics", "notify"]);
        let stats = c
            .pipelines
            .iter()
            .find(|p| p.name == "order-stats")
            .unwrap();
        assert_eq!(stats.tenant, "analytics");
        assert_eq!(stats.limits.deadline, Duration::from_millis(500));
        assert_eq!(stats.limits.memory_bytes, 32 << 20);
        assert_eq!(stats.limits.fuel, Some(50_000_000));
        assert_eq!(stats.tenant_limits.max_instances, 4);
        assert_eq!(stats.tenant_limits.pause_after_traps, 2);
        let dir_grant = stats.grants.read_only_dir.as_ref().unwrap();
        assert_eq!(dir_grant.guest, "/data");
        assert!(dir_grant.host.ends_with("reference-data"));
        let orders = c.pipelines.iter().find(|p| p.name == "orders").unwrap();
        assert_eq!(orders.grants.env[0].0, "PATH");
        assert_eq!(orders.tenant_limits.max_in_flight, 2048);
        let webhooks = c.pipelines.iter().find(|p| p.name == "webhooks").unwrap();
        assert_eq!(webhooks.grants.http_hosts, ["hooks.example.com:443"]);
        assert!(webhooks.grants.env.is_empty());
        assert_eq!(webhooks.limits.deadline, Duration::from_secs(5));
        let engine = c.engine_options();
        assert!(engine.metered);
        // shop 1 × (2×16+1) + analytics 1 × (2×4+1) + notify 1 × (2×8+1)
        assert_eq!(engine.pooling.unwrap().instances, 33 + 9 + 17);
        assert_eq!(engine.pooling.unwrap().max_memory_bytes, 64 << 20);
    }

    #[test]
    fn tenant_rules_are_enforced_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let example = readme_example(dir.path());
        let refused = |from: &str, to: &str| {
            assert!(example.contains(from), "{from}");
            Config::parse(&example.replacen(from, to, 1), "ackbar.toml", dir.path())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refused("topics = [\"orders\", \"clicks\"]", "topics = [\"orders.eu\"]"),
            "ackbar.toml: tenant 'analytics': pipeline 'order-stats': field `topics` reads `orders.eu`, owned by tenant 'shop'; it can be shared with `share = { \"orders.eu\" = [\"analytics\"] }` in that tenant"
        );
        assert!(refused("topics = [\"clicks\"]", "topics = [\"orders.eu\"]")
            .contains("tenant 'shop': field `topics` has \"orders.*\", which overlaps \"orders.eu\" of tenant 'analytics'"));
        assert!(refused(
            "share = { orders = [\"analytics\"] }",
            "share = { orders = [\"analytic\"] }"
        )
        .contains("shares \"orders\" with 'analytic', which is not a tenant"));
        assert!(refused("share = { orders = [\"analytics\"] }", "share = { payments = [\"analytics\"] }")
            .contains("tenant 'shop': field `share` shares \"payments\", which is not among the tenant's `topics`"));
        assert!(refused("plugin = \"plugins/stats.wasm\"", "plugin = \"plugins/stats.wasm\"\ndead_letter_topic = \"orders.dead\"")
            .contains("pipeline 'order-stats': field `dead_letter_topic` `orders.dead` is owned by tenant 'shop'"));
        assert!(refused("max_in_flight = 32", "max_in_flight = 32\n[tenant.pipeline.limits]\nmemory_mib = 64")
            .contains("pipeline 'order-stats': field `limits.memory_mib` is 64, above its tenant's limit of 32"));
        assert!(refused("env = [\"PATH\"]", "env = [\"ACKBAR_SURELY_UNSET_VARIABLE\"]")
            .contains("tenant 'shop': field `grants.env` grants ACKBAR_SURELY_UNSET_VARIABLE, which is not set"));
        assert!(
            refused("host = \"reference-data\"", "host = \"missing-data\"")
                .contains("tenant 'analytics': field `grants.read_only_dir.host` points at")
        );
        assert!(refused("guest = \"/data\"", "guest = \"data\"")
            .contains("field `grants.read_only_dir.guest` must be an absolute guest path"));
        assert!(refused(
            "http_hosts = [\"hooks.example.com:443\"]",
            "http_hosts = [\"https://hooks.example.com\"]"
        )
        .contains("field `grants.http_hosts` has \"https://hooks.example.com\""));
        assert!(refused("max_instances = 8", "max_instances = 0")
            .contains("tenant 'notify': field `limits.max_instances` must be at least 1"));
        assert!(refused("name = \"notify\"", "name = \"shop\"")
            .contains("tenant 'shop': field `name` is used by another tenant"));
        assert!(
            refused("max_wasm_stack_kib = 512", "max_wasm_stack_kib = 8")
                .contains("[engine]: field `max_wasm_stack_kib` must be between 64 and 4096")
        );
        // A top-level pipeline of the default tenant cannot read a tenant's topic either.
        let top_level = format!(
            "{example}\n{}",
            MINIMAL.replace("\"orders\"\ntopics", "\"legacy\"\ntopics")
        );
        let err = Config::parse(&top_level, "ackbar.toml", dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "pipeline 'legacy': field `topics` reads `orders`, owned by tenant 'shop'"
            ),
            "{err}"
        );
    }
}
