//! OpenTelemetry: traces and metrics exported over OTLP/HTTP (protobuf).
//!
//! Off unless an endpoint is named, by `[telemetry] endpoint` or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or the per-signal `..._TRACES_ENDPOINT`/`..._METRICS_ENDPOINT`),
//! as OpenTelemetry SDKs do. Export runs on the SDK's own threads with a blocking client, so a
//! slow or absent collector never holds up a consumer: spans beyond the queue are dropped.
//!
//! - Traces: one `process {topic}` span per delivery, child of the record's `traceparent`;
//!   `send {topic}` spans for outputs and dead letters, whose records carry the `traceparent`
//!   on; a span per offset commit or transaction ([`spans`]).
//! - Metrics: every Prometheus series of [`crate::metrics`], under the same names, through a
//!   second `metrics` recorder beside the Prometheus one that the SDK reads when it exports.

mod metrics_bridge;
mod settings;
pub(crate) mod spans;

pub use metrics_bridge::OtelMetrics;

pub(crate) use settings::check_settings;
pub use settings::{Endpoints, TelemetryPlan};

use crate::config::TelemetrySettings;
use anyhow::{Context as _, Result};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use std::time::Duration;

/// The instrumentation scope of every span and metric.
const SCOPE: &str = "ackbar";

/// Exporters running for this process; [`Telemetry::shutdown`] flushes them.
#[derive(Default)]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
    metrics: Option<(SdkMeterProvider, metrics_bridge::HistogramDrain)>,
}

impl Telemetry {
    /// Starts what `settings` and the environment turn on. Returns the running exporters and,
    /// when metrics are exported, the `metrics` recorder that feeds them (to install beside the
    /// Prometheus one, before any pipeline creates its series).
    pub fn start(settings: Option<&TelemetrySettings>) -> Result<(Telemetry, Option<OtelMetrics>)> {
        let plan = TelemetryPlan::from_env(settings, |name| std::env::var(name).ok())?;
        // The exporters' HTTP clients need it even for plain HTTP.
        crate::tls::install_provider();
        let mut telemetry = Telemetry::default();
        let resource = resource(&plan);
        if let Some(endpoint) = &plan.endpoints.traces {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(endpoint.as_str())
                .build()
                .with_context(|| format!("OpenTelemetry traces to {endpoint}"))?;
            let mut builder = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource.clone());
            if let Some(ratio) = plan.sample_ratio {
                builder = builder.with_sampler(Sampler::ParentBased(Box::new(
                    Sampler::TraceIdRatioBased(ratio),
                )));
            }
            let provider = builder.build();
            spans::install(provider.tracer(SCOPE));
            telemetry.traces = Some(provider);
        }
        let mut recorder = None;
        if let Some(endpoint) = &plan.endpoints.metrics {
            let exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_endpoint(endpoint.as_str())
                .build()
                .with_context(|| format!("OpenTelemetry metrics to {endpoint}"))?;
            let mut reader = PeriodicReader::builder(exporter);
            if let Some(interval) = plan.metrics_interval {
                reader = reader.with_interval(interval);
            }
            let provider = SdkMeterProvider::builder()
                .with_reader(reader.build())
                .with_resource(resource)
                .build();
            use opentelemetry::metrics::MeterProvider as _;
            let (bridge, drain) = OtelMetrics::new(
                provider.meter(SCOPE),
                crate::metrics::histogram_boundaries(),
            );
            recorder = Some(bridge);
            telemetry.metrics = Some((provider, drain));
        }
        if telemetry.traces.is_some() || telemetry.metrics.is_some() {
            tracing::info!(
                traces = plan.endpoints.traces.as_deref().unwrap_or("off"),
                metrics = plan.endpoints.metrics.as_deref().unwrap_or("off"),
                sample_ratio = plan
                    .sample_ratio
                    .map_or("from OTEL_TRACES_SAMPLER or 1".into(), |r| r.to_string()),
                "OpenTelemetry export on"
            );
        }
        Ok((telemetry, recorder))
    }

    /// Exports what is buffered and stops, waiting at most `timeout` per signal.
    pub fn shutdown(self, timeout: Duration) {
        if let Some(traces) = self.traces {
            if let Err(e) = traces.shutdown_with_timeout(timeout) {
                tracing::warn!("OpenTelemetry traces: last export failed: {e}");
            }
        }
        if let Some((metrics, histograms)) = self.metrics {
            // The last samples first.
            drop(histograms);
            if let Err(e) = metrics.shutdown_with_timeout(timeout) {
                tracing::warn!("OpenTelemetry metrics: last export failed: {e}");
            }
        }
    }
}

/// `service.name` (`ackbar` unless `[telemetry] service_name` or `OTEL_SERVICE_NAME` says
/// otherwise), `OTEL_RESOURCE_ATTRIBUTES`, the host and the process.
fn resource(plan: &TelemetryPlan) -> Resource {
    let mut builder = Resource::builder();
    if let Some(name) = &plan.service_name {
        builder = builder.with_service_name(name.clone());
    }
    builder
        .with_attributes([
            KeyValue::new("host.name", crate::control::host_name()),
            KeyValue::new("process.pid", i64::from(std::process::id())),
        ])
        .build()
}
