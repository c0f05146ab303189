//! Process-wide settings: `[run]`, `[engine]` and `[embedded]`.

use super::Backoff;
use serde::Deserialize;
use std::path::PathBuf;

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
    /// Longest wait between restarts, in ms; at least `restart_initial_ms`.
    pub restart_max_ms: u64,
    /// The web console on `metrics_addr` (see [`ConsoleMode`]).
    pub console: ConsoleMode,
    /// The bearer token the console's actions need; `ACKBAR_CONSOLE_TOKEN` if unset.
    pub console_token: Option<String>,
}

/// Whether the console is served, and who may act in it.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ConsoleMode {
    /// Served; actions with the token if there is one, else read-only.
    #[default]
    Auto,
    /// Not served.
    Off,
    /// Served without actions, token or not.
    ReadOnly,
    /// Served with actions: with the token if there is one, else only on a loopback address.
    ReadWrite,
}

impl RunSettings {
    /// The restart delays as a [`Backoff`]: `restart_initial_ms` doubling up to
    /// `restart_max_ms`.
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
            console: ConsoleMode::Auto,
            console_token: None,
        }
    }
}

/// Largest `[engine] max_wasm_stack_kib`.
pub(super) const MAX_WASM_STACK_KIB: u64 = 4096;

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

/// The fleet's control plane (`[control]`): with it, `ackbar run` is a fleet member that runs
/// what tenants deploy (`ackbar deploy`) besides the pipelines of its file, and publishes its
/// status. Control clients use the file's brokers and `[kafka]` properties.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ControlSettings {
    /// Control topics are `<prefix>.<tenant>.pipelines`, `<prefix>.<tenant>.plugins` and
    /// `<prefix>.status`; an ACL on the prefixed name `<prefix>.<tenant>.` is one tenant's.
    pub prefix: String,
    /// How often the tenants' desired pipelines are looked at for a deploy, in ms: each tenant's
    /// topic is followed, so a look asks the broker nothing.
    pub poll_interval_ms: u64,
    /// How often the member's status is published besides on every change, in ms. A status
    /// older than three intervals is a member that is gone.
    pub status_interval_ms: u64,
    /// Pipelines one tenant may deploy to this member; more are refused. Sizes the instance
    /// pool with room for them.
    pub max_deployed_pipelines: usize,
    /// Credentials for the OCI registries deployed components come from, in the Docker
    /// `config.json` format (`auths`), relative to the config file. Unset: where `docker` and
    /// `podman` keep them (`$REGISTRY_AUTH_FILE`, `$DOCKER_CONFIG/config.json`,
    /// `~/.docker/config.json`).
    pub registry_auth_file: Option<PathBuf>,
    /// Registries (`HOST` for any port, or `HOST:PORT`) reached over plain HTTP although not on
    /// loopback; loopback registries always are, every other one over HTTPS.
    pub insecure_registries: Vec<String>,
}

impl Default for ControlSettings {
    fn default() -> Self {
        ControlSettings {
            prefix: "ackbar".into(),
            poll_interval_ms: 100,
            status_interval_ms: 5_000,
            max_deployed_pipelines: 4,
            registry_auth_file: None,
            insecure_registries: Vec::new(),
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

/// OpenTelemetry export (`[telemetry]`). Without an `endpoint` here, the standard
/// `OTEL_EXPORTER_OTLP_*` variables decide, and with neither nothing is exported.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// The collector's OTLP/HTTP address, e.g. "http://127.0.0.1:4318"; spans go to
    /// `/v1/traces` and metrics to `/v1/metrics` under it.
    pub endpoint: Option<String>,
    /// Share of the traces that start here to record, 0 to 1; a message whose producer
    /// recorded its trace is always recorded (parent-based). Unset: `OTEL_TRACES_SAMPLER`, else
    /// every trace.
    pub sample_ratio: Option<f64>,
    /// Export spans.
    pub traces: bool,
    /// Export the metrics `/metrics` serves.
    pub metrics: bool,
    /// How often metrics are exported, in ms. Unset: `OTEL_METRIC_EXPORT_INTERVAL`, else 60 s.
    pub metrics_interval_ms: Option<u64>,
    /// `service.name` of the spans and metrics. Unset: `OTEL_SERVICE_NAME`, else "ackbar".
    pub service_name: Option<String>,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            endpoint: None,
            sample_ratio: None,
            traces: true,
            metrics: true,
            metrics_interval_ms: None,
            service_name: None,
        }
    }
}
