//! The operations endpoint: `/metrics` (Prometheus text), `/healthz` (the process is alive),
//! `/readyz` (every pipeline is assigned partitions and none is stuck on a message), and the
//! web console ([`crate::console`]) at `/`.

pub use crate::console::Watched;
use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What the endpoint reports on.
#[derive(Clone)]
pub struct Observed {
    /// Renders `/metrics` from the process-wide recorder ([`crate::metrics::install`]).
    pub prometheus: PrometheusHandle,
    /// Every pipeline running now; a fleet member adds and removes deployed ones.
    pub pipelines: Watched,
    /// `/readyz` fails once a partition has been stuck on one message this long
    /// (`ready_stall_threshold_ms`); a paused partition fails it at once.
    pub stall_threshold: Duration,
    /// The web console, unless `[run] console = "off"`.
    pub console: Option<Arc<crate::console::Console>>,
}

/// Takes the endpoint's address. `ackbar run` does it before any pipeline starts, so a port
/// in use ends the start with one error instead of tearing down pipelines half started.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("[run] metrics_addr {addr}: cannot listen"))
}

/// Serves on `listener` until the runtime shuts down; returns the bound address (useful with
/// port 0).
pub fn serve(listener: tokio::net::TcpListener, observed: Observed) -> Result<SocketAddr> {
    let bound = listener.local_addr()?;
    let console = observed.console.clone();
    let mut app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Arc::new(observed));
    if let Some(console) = console {
        app = app.merge(crate::console::routes(console));
    }
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("metrics endpoint stopped: {e}");
        }
    });
    Ok(bound)
}

async fn metrics(State(observed): State<Arc<Observed>>) -> String {
    observed.prometheus.render()
}

async fn readyz(State(observed): State<Arc<Observed>>) -> (StatusCode, String) {
    let problems: Vec<String> = observed
        .pipelines
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .flat_map(|p| p.health().problems(p.name(), observed.stall_threshold))
        .collect();
    if problems.is_empty() {
        (StatusCode::OK, "ready\n".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready:\n{}\n", problems.join("\n")),
        )
    }
}
