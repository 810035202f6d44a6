//! The server's Prometheus metrics, served as text at `GET /metrics`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `eie_requests_total` | counter | `model`, `protocol` (`http`, `grpc`) |
//! | `eie_request_failures_total` | counter | `model`, `protocol`, `reason` |
//! | `eie_request_duration_seconds` | histogram | `model`, `protocol` |
//! | `eie_inferences_total` | counter | `model` (input vectors answered) |
//! | `eie_inferences_per_second` | gauge | `model` (over the last second) |
//! | `eie_batch_size` | histogram | `model` (inputs per engine call) |
//! | `eie_queue_depth` | gauge | `model` (inputs waiting or running) |
//! | `eie_replica_inferences_total` | counter | `model`, `replica` (input vectors per engine) |
//! | `eie_device_info` | gauge (1) | `model`, `replica`, `engine`, `device` |
//!
//! Requests naming a model the server does not have are counted under `model=""`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// A request's model and transport.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The model's name.
    pub model: String,
    /// `http` or `grpc`.
    pub protocol: &'static str,
}

/// A failed request's model, transport and reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// The model's name.
    pub model: String,
    /// `http` or `grpc`.
    pub protocol: &'static str,
    /// `bad_request`, `not_found`, `too_large`, `unavailable` or `internal`.
    pub reason: &'static str,
}

/// A model.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    /// The model's name.
    pub model: String,
}

/// One engine of a model, by position.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplicaLabels {
    /// The model's name.
    pub model: String,
    /// The replica's position.
    pub replica: String,
}

/// One engine serving a model.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeviceLabels {
    /// The model's name.
    pub model: String,
    /// The replica's position.
    pub replica: String,
    /// The engine (`cpu-eie/f32`, `gpu-eie/f32`, ...).
    pub engine: String,
    /// Where it runs.
    pub device: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs to about 13 s.
    Histogram::new(exponential_buckets(50e-6, 2.0, 19))
}

fn batch_histogram() -> Histogram {
    // 1, 2, 4, ..., 1024.
    Histogram::new(exponential_buckets(1.0, 2.0, 11))
}

/// Every metric of the server.
pub struct Metrics {
    registry: Registry,
    /// Requests received.
    pub requests: Family<RequestLabels, Counter>,
    /// Requests answered with an error.
    pub failures: Family<FailureLabels, Counter>,
    /// Request latency from the body's arrival to the answer.
    pub duration: Histograms<RequestLabels>,
    /// Input vectors answered.
    pub inferences: Family<ModelLabels, Counter>,
    /// Input vectors answered over the last second.
    pub per_second: Family<ModelLabels, Gauge<f64, AtomicU64>>,
    /// Inputs per engine call.
    pub batch_size: Histograms<ModelLabels>,
    /// Input vectors answered per engine.
    pub replica_inferences: Family<ReplicaLabels, Counter>,
    /// Inputs waiting or running.
    pub queue_depth: Family<ModelLabels, Gauge>,
    /// 1 per engine, labelled with its device.
    pub devices: Family<DeviceLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("eie");
        let requests = Family::<RequestLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let duration = Histograms::<RequestLabels>::new_with_constructor(latency_histogram);
        let inferences = Family::<ModelLabels, Counter>::default();
        let per_second = Family::<ModelLabels, Gauge<f64, AtomicU64>>::default();
        let batch_size = Histograms::<ModelLabels>::new_with_constructor(batch_histogram);
        let queue_depth = Family::<ModelLabels, Gauge>::default();
        let replica_inferences = Family::<ReplicaLabels, Counter>::default();
        let devices = Family::<DeviceLabels, Gauge>::default();
        registry.register("requests", "Inference requests received", requests.clone());
        registry.register(
            "request_failures",
            "Inference requests answered with an error",
            failures.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Inference request latency, body received to answer ready",
            duration.clone(),
        );
        registry.register("inferences", "Input vectors answered", inferences.clone());
        registry.register(
            "inferences_per_second",
            "Input vectors answered over the last second",
            per_second.clone(),
        );
        registry.register(
            "batch_size",
            "Input vectors per engine call",
            batch_size.clone(),
        );
        registry.register(
            "queue_depth",
            "Input vectors waiting or running",
            queue_depth.clone(),
        );
        registry.register(
            "replica_inferences",
            "Input vectors answered by each engine of a model",
            replica_inferences.clone(),
        );
        registry.register(
            "device_info",
            "The engines serving each model (value 1)",
            devices.clone(),
        );
        Metrics {
            registry,
            requests,
            failures,
            duration,
            inferences,
            per_second,
            batch_size,
            replica_inferences,
            queue_depth,
            devices,
        }
    }
}

impl Metrics {
    /// Counts an inference request for `model` (a name the server serves, else `""`) arriving
    /// over `protocol`; the labels it returns go to [`answered`](Self::answered) or
    /// [`failed`](Self::failed).
    pub fn arrived(&self, model: String, protocol: &'static str) -> RequestLabels {
        let labels = RequestLabels { model, protocol };
        self.requests.get_or_create(&labels).inc();
        labels
    }

    /// Records how long a request took from `started`, and its failure if it failed.
    pub fn answered<T>(
        &self,
        labels: &RequestLabels,
        started: std::time::Instant,
        result: &Result<T, super::ServeError>,
    ) {
        self.duration
            .get_or_create(labels)
            .observe(started.elapsed().as_secs_f64());
        if let Err(e) = result {
            self.failed(labels, e);
        }
    }

    /// Counts a request's failure under its reason.
    pub fn failed(&self, labels: &RequestLabels, e: &super::ServeError) {
        self.failures
            .get_or_create(&FailureLabels {
                model: labels.model.clone(),
                protocol: labels.protocol,
                reason: e.label(),
            })
            .inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
