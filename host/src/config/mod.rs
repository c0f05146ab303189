//! The TOML configuration (`ackbar run ackbar.toml`) and its validation.
//!
//! Every error names the file, and where it applies the pipeline and the field.

mod pipeline;
mod raw;
mod settings;
mod tenant;
#[cfg(test)]
mod tests;
mod validate;

pub(crate) use crate::plugin::DEFAULT_TENANT;
pub use crate::policy::Backoff;
pub use pipeline::{
    CanaryPlugin, DeliveryGuarantee, GroupProtocol, GroupType, Ordering, PipelineConfig,
    TransactionSizing, DEFAULT_MAX_IN_FLIGHT,
};
pub(crate) use pipeline::{
    DEFAULT_SHARE_MAX_ATTEMPTS, DEFAULT_TRANSACTION_MESSAGES, DEFAULT_TRANSACTION_MS,
    MAX_BATCH_LIMIT,
};
pub use settings::{
    ConsoleMode, ControlSettings, EmbeddedSettings, EngineSettings, RunSettings, TelemetrySettings,
};
pub use tenant::{TenantConfig, TenantLimits};

use std::fmt;

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

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where Kafka is: `brokers`, or `[kafka]` `bootstrap.servers`; with neither, the embedded
    /// broker.
    pub brokers: Brokers,
    /// `[run]`: summary lines, the ops endpoint, pipeline restarts.
    pub run: RunSettings,
    /// `[embedded]`; used only with [`Brokers::Embedded`].
    pub embedded: EmbeddedSettings,
    /// `[engine]`: the Wasm engine every tenant shares.
    pub engine: EngineSettings,
    /// `[control]`: present when this process is a fleet member.
    pub control: Option<ControlSettings>,
    /// `[telemetry]`: OpenTelemetry export, besides what `OTEL_*` variables say.
    pub telemetry: Option<TelemetrySettings>,
    /// Every tenant: the declared ones, then those only named by a pipeline.
    pub tenants: Vec<TenantConfig>,
    /// Every pipeline: the top-level `[[pipeline]]`s, then those under `[[tenant.pipeline]]`.
    /// Names are unique.
    pub pipelines: Vec<PipelineConfig>,
    /// What a pipeline deployed later is checked against: the file's tenants as written and
    /// its `[kafka]` properties.
    bounds: validate::DeployBounds,
}

impl Config {
    /// The librdkafka properties of a control client reaching `bootstrap`: the connection and
    /// security properties of the file's `[kafka]` (credentials, TLS), with `bootstrap`.
    /// Consumer settings stay with the pipelines.
    pub fn control_properties(
        &self,
        bootstrap: &str,
    ) -> std::collections::BTreeMap<String, String> {
        const CONNECTION: [&str; 9] = [
            "security.",
            "sasl.",
            "ssl.",
            "ssl_",
            "socket.",
            "client.",
            "broker.",
            "reconnect.",
            "enable.ssl",
        ];
        let mut properties: std::collections::BTreeMap<String, String> = self
            .bounds
            .kafka()
            .iter()
            .filter(|(key, _)| CONNECTION.iter().any(|c| key.starts_with(c)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        properties.insert("bootstrap.servers".into(), bootstrap.into());
        properties
    }

    /// The tenants declared in the file: those a deploy may add pipelines to.
    pub fn declared_tenants(&self) -> impl Iterator<Item = &str> {
        self.bounds.declared_tenants()
    }

    /// The engine this configuration needs: fuel metering if any pipeline has a fuel limit, and
    /// an instance pool with room for every tenant's pipelines.
    pub fn engine_options(&self) -> crate::plugin::EngineOptions {
        // A member keeps room for what its tenants may deploy: pipelines held to their
        // tenant's limits.
        let deployable = self
            .control
            .as_ref()
            .map_or(0, |c| c.max_deployed_pipelines);
        let pooling = self.engine.pooling.then(|| {
            let tenants = self.tenants.iter().map(|t| {
                let pipelines = self.pipelines.iter().filter(|p| p.tenant == t.name).count();
                (pipelines + deployable, t.limits.max_instances)
            });
            let deployed_memory = self
                .bounds
                .deployed_memory_bytes()
                .filter(|_| deployable > 0);
            let max_memory = self
                .pipelines
                .iter()
                .map(|p| p.limits.memory_bytes)
                .chain(deployed_memory)
                .max()
                .unwrap_or(0);
            crate::plugin::PoolSizing::for_tenants(tenants, max_memory)
        });
        crate::plugin::EngineOptions {
            metered: self.pipelines.iter().any(|p| p.limits.fuel.is_some())
                || (deployable > 0 && self.bounds.any_tenant_meters_fuel()),
            pooling,
            max_wasm_stack: (self.engine.max_wasm_stack_kib as usize) << 10,
        }
    }
}
