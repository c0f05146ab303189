//! What to export where: `[telemetry]` and the standard `OTEL_*` variables, resolved once at
//! start. The file wins over the environment for what it sets, as code configuration does in
//! OpenTelemetry SDKs.

use crate::config::TelemetrySettings;
use anyhow::{bail, Result};
use std::time::Duration;

/// Where each signal goes; `None` is off.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Endpoints {
    /// The full URL spans are posted to, e.g. `http://127.0.0.1:4318/v1/traces`.
    pub traces: Option<String>,
    /// The full URL metrics are posted to, e.g. `http://127.0.0.1:4318/v1/metrics`.
    pub metrics: Option<String>,
}

/// The export this process runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TelemetryPlan {
    /// Where spans and metrics go.
    pub endpoints: Endpoints,
    /// Parent-based ratio sampling; `None` leaves the sampler to `OTEL_TRACES_SAMPLER` (the
    /// SDK's default: parent-based, always on).
    pub sample_ratio: Option<f64>,
    /// How often metrics are exported; `None` leaves it to `OTEL_METRIC_EXPORT_INTERVAL` (60 s).
    pub metrics_interval: Option<Duration>,
    /// `service.name`; `None` leaves it to `OTEL_SERVICE_NAME`, else `ackbar`.
    pub service_name: Option<String>,
}

impl TelemetryPlan {
    /// The plan from `settings` and the environment as `var` reads it.
    pub fn from_env(
        settings: Option<&TelemetrySettings>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let var = |name: &str| {
            var(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(TelemetryPlan::default());
        }
        let defaults = TelemetrySettings::default();
        let settings = settings.unwrap_or(&defaults);
        let base = settings
            .endpoint
            .clone()
            .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"));
        let signal = |on: bool, name: &str, path: &str| -> Result<Option<String>> {
            let upper = name.to_ascii_uppercase();
            let exporter = format!("OTEL_{upper}_EXPORTER");
            if !on || var(&exporter).is_some_and(|v| v == "none") {
                return Ok(None);
            }
            if let Some(other) = var(&exporter).filter(|v| v != "otlp") {
                bail!("{exporter}={other}: only otlp (or none) is supported");
            }
            for protocol in [
                format!("OTEL_EXPORTER_OTLP_{upper}_PROTOCOL"),
                "OTEL_EXPORTER_OTLP_PROTOCOL".to_string(),
            ] {
                if let Some(p) = var(&protocol).filter(|p| p != "http/protobuf") {
                    bail!("{protocol}={p}: Ackbar exports OTLP over http/protobuf only; point it at the collector's HTTP port (4318)");
                }
            }
            // The file's endpoint is a base, as the environment's general one is; the
            // per-signal variable is the full URL.
            let endpoint = match (
                &settings.endpoint,
                var(&format!("OTEL_EXPORTER_OTLP_{upper}_ENDPOINT")),
            ) {
                (None, Some(full)) => Some(full),
                _ => base
                    .as_deref()
                    .map(|b| format!("{}/{path}", b.trim_end_matches('/'))),
            };
            if let Some(url) = &endpoint {
                check_url(url).map_err(anyhow::Error::msg)?;
            }
            Ok(endpoint)
        };
        let endpoints = Endpoints {
            traces: signal(settings.traces, "traces", "v1/traces")?,
            metrics: signal(settings.metrics, "metrics", "v1/metrics")?,
        };
        check_settings(settings).map_err(|e| anyhow::anyhow!("[telemetry] {e}"))?;
        Ok(TelemetryPlan {
            endpoints,
            sample_ratio: settings.sample_ratio,
            metrics_interval: settings.metrics_interval_ms.map(Duration::from_millis),
            service_name: settings
                .service_name
                .clone()
                .or_else(|| var("OTEL_SERVICE_NAME"))
                .or_else(|| Some("ackbar".into())),
        })
    }
}

/// An endpoint the exporter can reach: `http://host:port/...`. TLS to the collector is not built
/// in; a collector (or agent) next to the process forwards over TLS.
fn check_url(url: &str) -> Result<(), String> {
    match url.split_once("://") {
        Some(("http", rest)) if !rest.is_empty() => Ok(()),
        Some(("https", _)) => Err(format!(
            "OpenTelemetry endpoint {url}: https is not supported; export to a local collector over http"
        )),
        _ => Err(format!(
            "OpenTelemetry endpoint {url}: expected http://host:port (the collector's OTLP/HTTP port, 4318)"
        )),
    }
}

/// What `[telemetry]` itself may not say: an endpoint the exporter cannot reach, a ratio that
/// is not one, an interval of 0. The config's validation and the plan share it.
pub(crate) fn check_settings(settings: &TelemetrySettings) -> Result<(), String> {
    if let Some(endpoint) = &settings.endpoint {
        check_url(endpoint)?;
    }
    if let Some(ratio) = settings.sample_ratio.filter(|r| !(0.0..=1.0).contains(r)) {
        return Err(format!(
            "sample_ratio = {ratio}: it must be between 0 and 1"
        ));
    }
    if settings.metrics_interval_ms == Some(0) {
        return Err("metrics_interval_ms must be greater than 0".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn plan(settings: Option<&TelemetrySettings>, env: &[(&str, &str)]) -> Result<TelemetryPlan> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TelemetryPlan::from_env(settings, |name| env.get(name).cloned())
    }

    #[test]
    fn off_without_an_endpoint() {
        let p = plan(None, &[]).unwrap();
        assert_eq!(p.endpoints, Endpoints::default());
        let p = plan(Some(&TelemetrySettings::default()), &[]).unwrap();
        assert_eq!(p.endpoints, Endpoints::default());
    }

    #[test]
    fn the_general_endpoint_turns_both_signals_on() {
        let p = plan(None, &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")]).unwrap();
        assert_eq!(
            p.endpoints.traces.as_deref(),
            Some("http://c:4318/v1/traces")
        );
        assert_eq!(
            p.endpoints.metrics.as_deref(),
            Some("http://c:4318/v1/metrics")
        );
        assert_eq!(p.service_name.as_deref(), Some("ackbar"));
        assert_eq!(p.sample_ratio, None);
    }

    #[test]
    fn a_signal_endpoint_is_a_full_url_and_none_turns_a_signal_off() {
        let p = plan(
            None,
            &[
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:1/x"),
                ("OTEL_METRICS_EXPORTER", "none"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ],
        )
        .unwrap();
        assert_eq!(p.endpoints.traces.as_deref(), Some("http://t:1/x"));
        assert_eq!(p.endpoints.metrics, None);
    }

    #[test]
    fn the_file_wins_over_the_environment() {
        let settings = TelemetrySettings {
            endpoint: Some("http://file:4318".into()),
            sample_ratio: Some(0.25),
            metrics: false,
            service_name: Some("orders".into()),
            ..TelemetrySettings::default()
        };
        let p = plan(
            Some(&settings),
            &[
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://env:1/x"),
                ("OTEL_SERVICE_NAME", "env"),
            ],
        )
        .unwrap();
        assert_eq!(
            p.endpoints.traces.as_deref(),
            Some("http://file:4318/v1/traces")
        );
        assert_eq!(p.endpoints.metrics, None);
        assert_eq!(p.sample_ratio, Some(0.25));
        assert_eq!(p.service_name.as_deref(), Some("orders"));
    }

    #[test]
    fn what_cannot_be_honoured_is_an_error_naming_it() {
        let e = plan(
            None,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("OTEL_EXPORTER_OTLP_PROTOCOL=grpc"),
            "{e}"
        );
        let e = plan(None, &[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318")]).unwrap_err();
        assert!(e.to_string().contains("https is not supported"), "{e}");
        let bad_ratio = TelemetrySettings {
            sample_ratio: Some(1.5),
            ..TelemetrySettings::default()
        };
        let e = plan(Some(&bad_ratio), &[]).unwrap_err();
        assert!(e.to_string().contains("sample_ratio = 1.5"), "{e}");
    }

    #[test]
    fn sdk_disabled_wins() {
        let p = plan(
            None,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_SDK_DISABLED", "true"),
            ],
        )
        .unwrap();
        assert_eq!(p, TelemetryPlan::default());
    }
}
