//! An OTLP/HTTP receiver: an HTTP server on a free local port that decodes the protobuf an
//! OpenTelemetry exporter posts to `/v1/traces` and `/v1/metrics`, and keeps what it got.

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use prost::Message as _;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One span as received, ids in lowercase hex.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// `SPAN_KIND_CONSUMER`, `SPAN_KIND_PRODUCER`, ...
    pub kind: String,
    pub attributes: BTreeMap<String, String>,
    /// `(name, attributes)` of each event.
    pub events: Vec<(String, BTreeMap<String, String>)>,
    /// `STATUS_CODE_UNSET`, `STATUS_CODE_OK` or `STATUS_CODE_ERROR`, and the message.
    pub status: (String, String),
    /// The resource's attributes (`service.name`, ...).
    pub resource: BTreeMap<String, String>,
}

/// One data point of a sum or gauge, as received.
#[derive(Debug, Clone)]
pub struct ReceivedPoint {
    pub metric: String,
    pub attributes: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Default)]
struct Received {
    /// Only count what arrives (a benchmark's receiver).
    count_only: bool,
    span_count: usize,
    spans: Vec<ReceivedSpan>,
    points: Vec<ReceivedPoint>,
    /// Requests that did not decode.
    malformed: usize,
}

/// The receiver; stops when dropped.
pub struct OtlpReceiver {
    /// `http://127.0.0.1:PORT`, the base an exporter's endpoint is.
    pub endpoint: String,
    received: Arc<Mutex<Received>>,
    _runtime: tokio::runtime::Runtime,
}

impl OtlpReceiver {
    /// A receiver that keeps every span and data point.
    pub fn start() -> Result<Self> {
        Self::start_keeping(true)
    }

    /// A receiver that decodes and counts spans, and keeps nothing.
    pub fn start_counting() -> Result<Self> {
        Self::start_keeping(false)
    }

    fn start_keeping(keep: bool) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let received = Arc::new(Mutex::new(Received {
            count_only: !keep,
            ..Received::default()
        }));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .context("binding the OTLP receiver")?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new()
            .route("/v1/traces", post(traces))
            .route("/v1/metrics", post(metrics))
            .with_state(received.clone());
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(OtlpReceiver {
            endpoint,
            received,
            _runtime: runtime,
        })
    }

    /// Spans received so far.
    pub fn span_count(&self) -> usize {
        self.received.lock().unwrap().span_count
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.lock().unwrap().spans.clone()
    }

    /// Every data point received so far, oldest first.
    pub fn points(&self) -> Vec<ReceivedPoint> {
        self.received.lock().unwrap().points.clone()
    }

    /// Requests whose body was not OTLP protobuf.
    pub fn malformed(&self) -> usize {
        self.received.lock().unwrap().malformed
    }

    /// Waits until `done` holds for the spans received (at most `timeout`); returns them.
    pub fn wait_for_spans(
        &self,
        timeout: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) || Instant::now() > deadline {
                return spans;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

async fn traces(State(received): State<Arc<Mutex<Received>>>, body: Bytes) -> &'static str {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        received.lock().unwrap().malformed += 1;
        return "";
    };
    let mut received = received.lock().unwrap();
    if received.count_only {
        received.span_count += request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum::<usize>();
        return "";
    }
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                received.span_count += 1;
                let kind = span.kind().as_str_name().to_string();
                let status = span.status.clone().unwrap_or_default();
                received.spans.push(ReceivedSpan {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    kind,
                    name: span.name,
                    attributes: attributes(&span.attributes),
                    events: span
                        .events
                        .iter()
                        .map(|e| (e.name.clone(), attributes(&e.attributes)))
                        .collect(),
                    status: (status.code().as_str_name().to_string(), status.message),
                    resource: resource.clone(),
                });
            }
        }
    }
    ""
}

async fn metrics(State(received): State<Arc<Mutex<Received>>>, body: Bytes) -> &'static str {
    let Ok(request) = ExportMetricsServiceRequest::decode(body) else {
        received.lock().unwrap().malformed += 1;
        return "";
    };
    let mut received = received.lock().unwrap();
    for resource_metrics in request.resource_metrics {
        for scope in resource_metrics.scope_metrics {
            for m in scope.metrics {
                let points = match m.data {
                    Some(metric::Data::Sum(sum)) => sum.data_points,
                    Some(metric::Data::Gauge(gauge)) => gauge.data_points,
                    _ => continue,
                };
                for point in points {
                    let value = match point.value {
                        Some(number_data_point::Value::AsDouble(v)) => v,
                        Some(number_data_point::Value::AsInt(v)) => v as f64,
                        None => continue,
                    };
                    received.points.push(ReceivedPoint {
                        metric: m.name.clone(),
                        attributes: attributes(&point.attributes),
                        value,
                    });
                }
            }
        }
    }
    ""
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(text).unwrap_or_default(),
            )
        })
        .collect()
}

fn text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
