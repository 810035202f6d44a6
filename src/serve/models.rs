//! The models a server holds: for each, one engine per device ("replica"), each behind its own
//! dynamic batcher; a request's inputs go to the replica with the fewest inputs in flight.

use super::error::{ErrorKind, ServeError};
use super::metrics::{DeviceLabels, Metrics, ModelLabels, ReplicaLabels};
use super::tensor::{InputShape, INPUT_NAME, OUTPUT_NAME};
use crate::batching::{BatchConfig, Batcher};
use crate::engine::Engine;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The one version every model is served as.
///
/// See [`super::LoadedModel`] and [`super::proto::ModelReadyRequest::version`].
pub const MODEL_VERSION: &str = "1";

/// One engine of a model, behind its batcher.
struct Replica {
    batcher: Batcher,
    in_flight: Arc<AtomicUsize>,
    labels: ReplicaLabels,
}

/// A model being served.
pub struct ServedModel {
    name: String,
    input_size: usize,
    output_size: usize,
    max_batch: usize,
    replicas: Vec<Replica>,
    labels: ModelLabels,
}

/// One input row of a request, shared without copying.
struct Row {
    data: Arc<[f32]>,
    start: usize,
    len: usize,
}

impl AsRef<[f32]> for Row {
    fn as_ref(&self) -> &[f32] {
        &self.data[self.start..self.start + self.len]
    }
}

impl ServedModel {
    /// Serves `name` on `engines` (at least one, all of the same model), each behind a batcher
    /// with `config`; requests carry at most `config.max_batch` inputs.
    pub fn new(
        name: &str,
        engines: Vec<Engine>,
        config: BatchConfig,
        metrics: &Arc<Metrics>,
    ) -> crate::Result<ServedModel> {
        let Some(first) = engines.first() else {
            return Err(crate::Error::InvalidArgument(format!(
                "model `{name}`: no engine to serve it on"
            )));
        };
        let (input_size, output_size) = (first.input_size(), first.output_size());
        let labels = ModelLabels {
            model: name.to_string(),
        };
        let mut replicas = Vec::with_capacity(engines.len());
        for (i, engine) in engines.into_iter().enumerate() {
            metrics
                .devices
                .get_or_create(&DeviceLabels {
                    model: name.to_string(),
                    replica: i.to_string(),
                    engine: engine.id().to_string(),
                    device: engine.device().to_string(),
                })
                .set(1);
            let (m, l) = (metrics.clone(), labels.clone());
            let batcher = Batcher::observed(engine, config, move |run| {
                m.batch_size.get_or_create(&l).observe(run.size as f64);
            })?;
            replicas.push(Replica {
                batcher,
                in_flight: Arc::new(AtomicUsize::new(0)),
                labels: ReplicaLabels {
                    model: name.to_string(),
                    replica: i.to_string(),
                },
            });
        }
        Ok(ServedModel {
            name: name.to_string(),
            input_size,
            output_size,
            max_batch: config.max_batch,
            replicas,
            labels,
        })
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Values per input vector.
    pub fn input_size(&self) -> usize {
        self.input_size
    }

    /// Values per output vector.
    pub fn output_size(&self) -> usize {
        self.output_size
    }

    /// Checks a request's model version: empty (any) or [`MODEL_VERSION`].
    pub fn check_version(&self, version: &str) -> Result<(), ServeError> {
        if version.is_empty() || version == MODEL_VERSION {
            Ok(())
        } else {
            Err(ServeError::not_found(format!(
                "model `{}` has no version `{version}`; it is served as version {MODEL_VERSION}",
                self.name
            )))
        }
    }

    /// Checks the outputs a request asks for: none (all) or `output`.
    pub fn check_outputs<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), ServeError> {
        for n in names {
            if n != OUTPUT_NAME {
                return Err(ServeError::bad_request(format!(
                    "model `{}` has no output `{n}`; its one output is `{OUTPUT_NAME}`",
                    self.name
                )));
            }
        }
        Ok(())
    }

    /// Checks a request's input tensors: exactly one, named `input`.
    pub fn check_input_names<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), ServeError> {
        let names: Vec<&str> = names.into_iter().collect();
        match names.as_slice() {
            [n] if *n == INPUT_NAME => Ok(()),
            [n] => Err(ServeError::bad_request(format!(
                "model `{}` has no input `{n}`; its one input is `{INPUT_NAME}`",
                self.name
            ))),
            _ => Err(ServeError::bad_request(format!(
                "model `{}` takes one input tensor (`{INPUT_NAME}`), got {}",
                self.name,
                names.len()
            ))),
        }
    }

    /// Checks an input shape against the model.
    pub fn check_shape(&self, shape: &[i64]) -> Result<InputShape, ServeError> {
        InputShape::check(shape, self.input_size, self.max_batch)
    }

    /// Runs `shape.batch` inputs (`values`, row after row) through the batcher of the least
    /// busy replica and returns the outputs, row after row. A full queue fails at once.
    pub async fn infer(
        &self,
        values: Vec<f32>,
        shape: InputShape,
        metrics: &Metrics,
    ) -> Result<Vec<f32>, ServeError> {
        debug_assert_eq!(values.len(), shape.batch * self.input_size);
        let replica = self
            .replicas
            .iter()
            .min_by_key(|r| r.in_flight.load(Ordering::Relaxed))
            .ok_or_else(|| ServeError::new(ErrorKind::Internal, "no replica"))?;
        let n = shape.batch;
        let depth = metrics.queue_depth.get_or_create_owned(&self.labels);
        replica.in_flight.fetch_add(n, Ordering::Relaxed);
        depth.inc_by(n as i64);
        // Undone however this future ends (answered, failed or dropped by a gone client).
        let _in_flight = InFlight {
            count: &replica.in_flight,
            depth: &depth,
            n,
        };
        let data: Arc<[f32]> = values.into();
        let rows: Vec<Row> = (0..n)
            .map(|i| Row {
                data: data.clone(),
                start: i * self.input_size,
                len: self.input_size,
            })
            .collect();
        let answers = replica.batcher.try_run_all(rows)?.await?;
        let out = answers.concat();
        metrics
            .inferences
            .get_or_create(&self.labels)
            .inc_by(n as u64);
        metrics
            .replica_inferences
            .get_or_create(&replica.labels)
            .inc_by(n as u64);
        Ok(out)
    }

    /// Input vectors answered so far (for the per-second gauge).
    pub fn answered(&self) -> u64 {
        self.replicas
            .iter()
            .map(|r| r.batcher.stats().requests)
            .sum()
    }

    /// Refuses new requests and waits until every accepted one is answered.
    pub async fn shutdown(&self) {
        for r in &self.replicas {
            r.batcher.shutdown().await;
        }
    }
}

struct InFlight<'a> {
    count: &'a AtomicUsize,
    depth: &'a prometheus_client::metrics::gauge::Gauge,
    n: usize,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(self.n, Ordering::Relaxed);
        self.depth.dec_by(self.n as i64);
    }
}
