//! The `metrics` series exported through OpenTelemetry at the cost of an atomic add per update,
//! as Prometheus's are: updates land in atomics, and the SDK reads counters and gauges when it
//! exports (observable instruments). Histogram samples are handed to the SDK's histograms by a
//! thread of their own, off the consumers' path.

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use opentelemetry::metrics::Meter;
use opentelemetry::KeyValue;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often histogram samples are handed to the SDK.
const HISTOGRAM_DRAIN: Duration = Duration::from_millis(500);

/// Installed beside the Prometheus recorder (see [`crate::metrics::install`]).
pub struct OtelMetrics {
    shared: Arc<Shared>,
}

struct Shared {
    registry: Registry<Key, AtomicStorage>,
    meter: Meter,
    /// Every name with an instrument; histograms keep theirs to record into.
    instruments: Mutex<HashMap<String, Option<opentelemetry::metrics::Histogram<f64>>>>,
    descriptions: Mutex<HashMap<String, (Option<Unit>, SharedString)>>,
    /// Histogram buckets by name (`[telemetry]`-independent: those of `/metrics`).
    boundaries: HashMap<&'static str, Vec<f64>>,
    stopped: AtomicBool,
}

/// Stops the histogram thread after a last drain; dropped before the meter provider shuts down.
pub struct HistogramDrain {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for HistogramDrain {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

impl OtelMetrics {
    /// A recorder exporting through `meter`, with `boundaries` for the named histograms.
    pub fn new(
        meter: Meter,
        boundaries: HashMap<&'static str, Vec<f64>>,
    ) -> (OtelMetrics, HistogramDrain) {
        let shared = Arc::new(Shared {
            registry: Registry::atomic(),
            meter,
            instruments: Mutex::default(),
            descriptions: Mutex::default(),
            boundaries,
            stopped: AtomicBool::new(false),
        });
        let drainer = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ackbar-otel-histograms".into())
            .spawn(move || loop {
                let stopping = drainer.stopped.load(Ordering::Relaxed);
                drainer.drain_histograms();
                if stopping {
                    break;
                }
                std::thread::park_timeout(HISTOGRAM_DRAIN);
            })
            .ok();
        (
            OtelMetrics {
                shared: shared.clone(),
            },
            HistogramDrain { shared, thread },
        )
    }
}

impl Shared {
    fn describe(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        lock(&self.descriptions).insert(key.as_str().to_string(), (unit, description));
    }

    /// Creates `name`'s instrument the first time a series of it is registered.
    fn instrument(self: &Arc<Self>, name: &str, kind: Kind) {
        let mut instruments = lock(&self.instruments);
        if instruments.contains_key(name) {
            return;
        }
        let (unit, description) = lock(&self.descriptions)
            .get(name)
            .map(|(unit, d)| (unit.map(|u| u.as_canonical_label()), d.to_string()))
            .unwrap_or_default();
        let owned = name.to_string();
        let histogram = match kind {
            Kind::Counter => {
                let shared = Arc::downgrade(self);
                let mut builder = self
                    .meter
                    .u64_observable_counter(owned.clone())
                    .with_description(description);
                if let Some(unit) = unit {
                    builder = builder.with_unit(unit);
                }
                builder
                    .with_callback(move |observer| {
                        let Some(shared) = shared.upgrade() else {
                            return;
                        };
                        shared.registry.visit_counters(|key, value| {
                            if key.name() == owned {
                                observer.observe(value.load(Ordering::Relaxed), &labels(key));
                            }
                        });
                    })
                    .build();
                None
            }
            Kind::Gauge => {
                let shared = Arc::downgrade(self);
                let mut builder = self
                    .meter
                    .f64_observable_gauge(owned.clone())
                    .with_description(description);
                if let Some(unit) = unit {
                    builder = builder.with_unit(unit);
                }
                builder
                    .with_callback(move |observer| {
                        let Some(shared) = shared.upgrade() else {
                            return;
                        };
                        shared.registry.visit_gauges(|key, value| {
                            if key.name() == owned {
                                let value = f64::from_bits(value.load(Ordering::Relaxed));
                                observer.observe(value, &labels(key));
                            }
                        });
                    })
                    .build();
                None
            }
            Kind::Histogram => {
                let mut builder = self
                    .meter
                    .f64_histogram(owned)
                    .with_description(description);
                if let Some(unit) = unit {
                    builder = builder.with_unit(unit);
                }
                if let Some(boundaries) = self.boundaries.get(name) {
                    builder = builder.with_boundaries(boundaries.clone());
                }
                Some(builder.build())
            }
        };
        instruments.insert(name.to_string(), histogram);
    }

    /// Hands the samples recorded since the last drain to the SDK's histograms.
    fn drain_histograms(&self) {
        let instruments = lock(&self.instruments);
        self.registry.visit_histograms(|key, bucket| {
            let Some(Some(histogram)) = instruments.get(key.name()) else {
                return;
            };
            let labels = labels(key);
            bucket.clear_with(|samples| {
                for sample in samples {
                    histogram.record(*sample, &labels);
                }
            });
        });
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

fn labels(key: &Key) -> Vec<KeyValue> {
    key.labels()
        .map(|l| KeyValue::new(l.key().to_string(), l.value().to_string()))
        .collect()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Recorder for OtelMetrics {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.shared.describe(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.shared.describe(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.shared.describe(key, unit, description);
    }

    fn register_counter(&self, key: &Key, _metadata: &Metadata<'_>) -> Counter {
        self.shared.instrument(key.name(), Kind::Counter);
        self.shared
            .registry
            .get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }

    fn register_gauge(&self, key: &Key, _metadata: &Metadata<'_>) -> Gauge {
        self.shared.instrument(key.name(), Kind::Gauge);
        self.shared
            .registry
            .get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }

    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> Histogram {
        self.shared.instrument(key.name(), Kind::Histogram);
        self.shared
            .registry
            .get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}
