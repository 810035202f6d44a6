//! A model server speaking the Open Inference Protocol (KServe v2, the protocol of Triton and
//! MLServer) over HTTP/REST and gRPC, so that Triton's clients (`tritonclient`), KServe and
//! the load testers built for them drive it unchanged (feature `serve`; `eie serve` runs it).
//!
//! * Every model has one input, `input` (FP32 `[-1, in]`; FP16 and UINT8 accepted and widened
//!   as `eie run` reads `.npy` files), and one output, `output` (FP32 `[-1, out]`); it is served
//!   as version `1` on the platform `eie`.
//! * Requests from every client go through a dynamic [`Batcher`](crate::batching::Batcher) per
//!   engine; a model may have one engine per GPU ([`Devices`]), and each request goes to the one
//!   with the fewest inputs in flight. An answer is bit for bit what [`Engine::run`]
//!   gives for the same input alone.
//! * Bad input is the protocol's error (HTTP 400 / 404 / 413, gRPC `INVALID_ARGUMENT` /
//!   `NOT_FOUND` / `RESOURCE_EXHAUSTED`) and costs no other request; a full queue is HTTP 503 /
//!   gRPC `UNAVAILABLE` at once; [`Server::stop`] stops accepting, answers every accepted
//!   request and lets [`Server::wait`] return.
//! * Prometheus metrics at `GET /metrics` (see the table in the `metrics` module's source:
//!   requests, failures, latency and batch-size histograms, queue depth, inferences per
//!   second, devices).
//!
//! ```no_run
//! # async fn serve() -> eie::Result<()> {
//! use eie::serve::{ModelSpec, ServeConfig, Server};
//! let model = eie::Model::load("assets/lenet/lenet-300-100.eie.safetensors")?;
//! let config = ServeConfig::new(vec![ModelSpec::new("lenet", model)]);
//! let server = Server::start(config).await?;
//! println!("HTTP on {:?}, gRPC on {:?}", server.http_addr(), server.grpc_addr());
//! server.wait().await // until `stop` is called from elsewhere (eie serve: SIGTERM)
//! # }
//! ```

mod error;
mod grpc;
mod http;
mod metrics;
mod models;
mod tensor;

pub use error::{ErrorKind, ServeError};
pub use grpc::proto;
pub use http::HEADER_LENGTH;
pub use models::MODEL_VERSION;
pub use tensor::{DataType, INPUT_NAME, OUTPUT_NAME};

use crate::batching::BatchConfig;
use crate::engine::{Device, Engine};
use crate::error::{Error, Result};
use crate::format::Model;
use crate::gpu::DeviceOptions;
use crate::reference::Precision;
use metrics::Metrics;
use models::ServedModel;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The server's name in its metadata.
///
/// Returned by `GET /v2` and gRPC `ServerMetadata` ([`proto::ServerMetadataResponse`]).
pub const SERVER_NAME: &str = "eie";
/// Every model's platform in its metadata.
///
/// Returned in the model metadata ([`proto::ModelMetadataResponse::platform`]).
pub const PLATFORM: &str = "eie";
/// The protocol extensions the server supports.
///
/// Returned in the server metadata ([`proto::ServerMetadataResponse::extensions`]); see
/// [`HEADER_LENGTH`] for `binary_tensor_data`.
pub const EXTENSIONS: &[&str] = &["binary_tensor_data"];

/// Which engine serves the models.
///
/// The `backend` of a [`ServeConfig`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// The EIE CPU engine.
    Cpu,
    /// The GPU kernels; an error when there is no adapter.
    Gpu,
    /// The GPU when there is a hardware adapter, else the CPU engine.
    #[default]
    Auto,
}

/// Which GPUs serve each model (one engine per adapter).
///
/// The `devices` of a [`ServeConfig`]; `eie devices` lists the positions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Devices {
    /// Every hardware adapter of the best backend (Vulkan, Metal or DX12 before OpenGL).
    #[default]
    All,
    /// These adapters, by their position in `eie devices`' list.
    List(Vec<usize>),
}

/// A model to serve under a name.
///
/// The `models` of a [`ServeConfig`]; see the [module example](self).
#[derive(Clone, Debug)]
pub struct ModelSpec {
    /// The name clients use.
    pub name: String,
    /// The model.
    pub model: Model,
}

impl ModelSpec {
    /// `model` served as `name`.
    ///
    /// See the [module example](self).
    pub fn new(name: impl Into<String>, model: Model) -> Self {
        ModelSpec {
            name: name.into(),
            model,
        }
    }
}

/// How to serve.
///
/// Given to [`Server::start`]; [`ServeConfig::new`] fills in the defaults (see the
/// [module example](self)).
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The models (at least one, distinct names).
    pub models: Vec<ModelSpec>,
    /// Where the REST endpoints listen (`None`: no HTTP). Default `127.0.0.1:8000`.
    pub http: Option<SocketAddr>,
    /// Where the gRPC service listens (`None`: no gRPC). Default `127.0.0.1:8001`.
    pub grpc: Option<SocketAddr>,
    /// Which engine (default [`Backend::Auto`]).
    pub backend: Backend,
    /// Which GPUs, for [`Backend::Gpu`] and [`Backend::Auto`] (default all).
    pub devices: Devices,
    /// The arithmetic (default f32).
    pub precision: Precision,
    /// Dynamic batching per engine; `max_batch` is also the most inputs one request may carry,
    /// `queue_capacity` the most inputs waiting per engine before requests get 503 /
    /// `UNAVAILABLE`. Default: 64 inputs, 500 µs, 1024.
    pub batch: BatchConfig,
    /// The largest request body (HTTP) or message (gRPC) in bytes (default 64 MiB).
    pub max_body: usize,
}

impl ServeConfig {
    /// `models` with every default.
    ///
    /// See the [module example](self); set the other fields afterwards.
    pub fn new(models: Vec<ModelSpec>) -> Self {
        ServeConfig {
            models,
            http: Some(SocketAddr::from(([127, 0, 0, 1], 8000))),
            grpc: Some(SocketAddr::from(([127, 0, 0, 1], 8001))),
            backend: Backend::Auto,
            devices: Devices::All,
            precision: Precision::F32,
            batch: BatchConfig {
                max_batch: 64,
                max_delay: Duration::from_micros(500),
                queue_capacity: 1024,
            },
            max_body: 64 << 20,
        }
    }
}

/// What the transports share: the models, the metrics, the limits.
pub(crate) struct State {
    models: HashMap<String, ServedModel>,
    metrics: Arc<Metrics>,
    max_body: usize,
    stopping: AtomicBool,
}

impl State {
    fn model(&self, name: &str) -> std::result::Result<&ServedModel, ServeError> {
        self.models.get(name).ok_or_else(|| {
            let mut names: Vec<&str> = self.models.keys().map(String::as_str).collect();
            names.sort_unstable();
            ServeError::not_found(format!(
                "no model `{name}`; this server has {}",
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }

    /// The label `/metrics` counts a request for `name` under: the name of a model this server
    /// has, else `""` (so that clients cannot create labels at will).
    fn model_label(&self, name: &str) -> String {
        if self.models.contains_key(name) {
            name.to_string()
        } else {
            String::new()
        }
    }

    fn is_ready(&self) -> bool {
        !self.stopping.load(Ordering::Relaxed)
    }

    fn server_metadata(&self) -> serde_json::Value {
        serde_json::json!({
            "name": SERVER_NAME,
            "version": env!("CARGO_PKG_VERSION"),
            "extensions": EXTENSIONS,
        })
    }
}

/// A model as loaded: its name and the engines serving it.
///
/// Listed by [`Server::models`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedModel {
    /// The model's name.
    pub name: String,
    /// Values per input and per output.
    pub shape: (usize, usize),
    /// Each engine's name and device.
    pub engines: Vec<(String, String)>,
}

/// A running server.
///
/// Started by [`Server::start`] (see the [module example](self)), stopped by [`Server::stop`] or
/// a [`Stopper`], awaited with [`Server::wait`]; `examples/serve_load.rs` drives one.
pub struct Server {
    state: Arc<State>,
    http_addr: Option<SocketAddr>,
    grpc_addr: Option<SocketAddr>,
    loaded: Vec<LoadedModel>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<Result<()>>>,
}

impl Server {
    /// Builds every model's engines (off the async threads), binds the listeners and starts
    /// serving. Fails on a bad configuration, an engine that cannot be built or an address
    /// that cannot be bound; nothing keeps running then.
    ///
    /// See the [module example](self); [`Server::wait`] awaits the end.
    pub async fn start(config: ServeConfig) -> Result<Server> {
        if config.models.is_empty() {
            return Err(Error::InvalidArgument("no model to serve".into()));
        }
        if config.http.is_none() && config.grpc.is_none() {
            return Err(Error::InvalidArgument(
                "neither HTTP nor gRPC is enabled: nothing would listen".into(),
            ));
        }
        if config.max_body == 0 {
            return Err(Error::InvalidArgument(
                "the body limit must be at least 1 byte".into(),
            ));
        }
        let metrics = Arc::new(Metrics::default());
        let mut models = HashMap::new();
        let mut loaded = Vec::new();
        for spec in config.models {
            if spec.name.is_empty() || spec.name.contains('/') {
                return Err(Error::InvalidArgument(format!(
                    "model name `{}` must be non-empty and without `/`",
                    spec.name
                )));
            }
            if models.contains_key(&spec.name) {
                return Err(Error::InvalidArgument(format!(
                    "model name `{}` given twice",
                    spec.name
                )));
            }
            let engines = build_engines(
                &spec.model,
                config.backend,
                &config.devices,
                config.precision,
            )
            .await?;
            loaded.push(LoadedModel {
                name: spec.name.clone(),
                shape: (spec.model.input_size(), spec.model.output_size()),
                engines: engines
                    .iter()
                    .map(|e| (e.id().to_string(), e.device().to_string()))
                    .collect(),
            });
            let served = ServedModel::new(&spec.name, engines, config.batch, &metrics)?;
            models.insert(spec.name, served);
        }
        let state = Arc::new(State {
            models,
            metrics,
            max_body: config.max_body,
            stopping: AtomicBool::new(false),
        });
        let (stop, stopped) = watch::channel(false);
        let bind = |addr: SocketAddr, what: &'static str| async move {
            tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                Error::InvalidArgument(format!("cannot listen for {what} on {addr}: {e}"))
            })
        };
        let http_listener = match config.http {
            Some(a) => Some(bind(a, "HTTP").await?),
            None => None,
        };
        let grpc_listener = match config.grpc {
            Some(a) => Some(bind(a, "gRPC").await?),
            None => None,
        };
        let local = |l: &tokio::net::TcpListener| l.local_addr().ok();
        let http_addr = http_listener.as_ref().and_then(local);
        let grpc_addr = grpc_listener.as_ref().and_then(local);
        let mut tasks = Vec::new();
        if let Some(listener) = http_listener {
            let app = http::router(state.clone());
            let signal = until_stopped(stopped.clone());
            tasks.push(tokio::spawn(async move {
                use axum::serve::ListenerExt;
                // Answers are small: send them at once rather than wait on Nagle's algorithm.
                let listener = listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                axum::serve(listener, app)
                    .with_graceful_shutdown(signal)
                    .await
                    .map_err(|e| Error::InvalidArgument(format!("the HTTP server failed: {e}")))
            }));
        }
        if let Some(listener) = grpc_listener {
            let service = grpc::InferenceService::new(state.clone());
            let signal = until_stopped(stopped.clone());
            tasks.push(tokio::spawn(async move {
                tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming_shutdown(
                        tokio_stream::StreamExt::map(
                            tokio_stream::wrappers::TcpListenerStream::new(listener),
                            |tcp| {
                                tcp.inspect(|t| {
                                    let _ = t.set_nodelay(true);
                                })
                            },
                        ),
                        signal,
                    )
                    .await
                    .map_err(|e| Error::InvalidArgument(format!("the gRPC server failed: {e}")))
            }));
        }
        tasks.push(tokio::spawn(per_second(state.clone(), stopped)));
        Ok(Server {
            state,
            http_addr,
            grpc_addr,
            loaded,
            stop,
            tasks,
        })
    }

    /// Where the REST endpoints listen (the bound address: port 0 becomes the port taken).
    ///
    /// See [`ServeConfig::http`].
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Where the gRPC service listens.
    ///
    /// See [`ServeConfig::grpc`]; [`proto`] has the messages.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_addr
    }

    /// The models and their engines.
    ///
    /// Each a [`LoadedModel`].
    pub fn models(&self) -> &[LoadedModel] {
        &self.loaded
    }

    /// A handle that stops the server from anywhere (a signal handler, a test).
    ///
    /// See [`Stopper`].
    pub fn stopper(&self) -> Stopper {
        Stopper {
            state: self.state.clone(),
            stop: self.stop.clone(),
        }
    }

    /// Stops accepting connections and requests; requests already accepted are answered.
    ///
    /// [`Server::wait`] returns once they are; [`Server::stopper`] gives a handle that can do the
    /// same from elsewhere.
    pub fn stop(&self) {
        self.stopper().stop();
    }

    /// Waits until the server has stopped (after [`stop`](Self::stop)): every accepted request
    /// answered, every batcher drained.
    pub async fn wait(self) -> Result<()> {
        let mut first_error = None;
        for t in self.tasks {
            let r = t
                .await
                .map_err(|e| Error::InvalidArgument(format!("a server task failed: {e}")))
                .and_then(|r| r);
            if let Err(e) = r {
                first_error.get_or_insert(e);
            }
        }
        for m in self.state.models.values() {
            m.shutdown().await;
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Stops a [`Server`]; cheap to clone.
#[derive(Clone)]
pub struct Stopper {
    state: Arc<State>,
    stop: watch::Sender<bool>,
}

impl Stopper {
    /// Stops accepting; accepted requests are still answered.
    ///
    /// See [`Server::stop`].
    pub fn stop(&self) {
        self.state.stopping.store(true, Ordering::Relaxed);
        let _ = self.stop.send(true);
    }
}

async fn until_stopped(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// Sets `eie_inferences_per_second` once a second until the server stops.
async fn per_second(state: Arc<State>, mut stopped: watch::Receiver<bool>) -> Result<()> {
    let mut last: HashMap<String, u64> = state
        .models
        .iter()
        .map(|(n, m)| (n.clone(), m.answered()))
        .collect();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut at = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.wait_for(|s| *s) => return Ok(()),
        }
        let now = tokio::time::Instant::now();
        let dt = (now - at).as_secs_f64().max(1e-3);
        at = now;
        for (name, m) in &state.models {
            let n = m.answered();
            let before = last.insert(name.clone(), n).unwrap_or(n);
            state
                .metrics
                .per_second
                .get_or_create(&metrics::ModelLabels {
                    model: name.clone(),
                })
                .set(n.saturating_sub(before) as f64 / dt);
        }
    }
}

/// The engines for one model: one per chosen GPU, or the CPU engine.
async fn build_engines(
    model: &Model,
    backend: Backend,
    devices: &Devices,
    precision: Precision,
) -> Result<Vec<Engine>> {
    let builder = |device: Device| {
        Engine::builder(model.clone())
            .precision(precision)
            .device(device)
    };
    if backend == Backend::Cpu {
        return Ok(vec![builder(Device::Cpu).build_async().await?]);
    }
    let indices = match devices {
        Devices::List(v) => v.clone(),
        Devices::All => {
            let adapters = tokio::task::spawn_blocking(hardware_adapters)
                .await
                .map_err(|e| Error::InvalidArgument(format!("listing GPU adapters: {e}")))?;
            if adapters.is_empty() {
                // Auto falls back to the CPU engine and says why; Gpu takes the default
                // adapter (a CPU adapter such as lavapipe when that is all there is).
                let device = match backend {
                    Backend::Auto => Device::Auto,
                    _ => Device::Gpu(DeviceOptions::default()),
                };
                return Ok(vec![builder(device).build_async().await?]);
            }
            adapters
        }
    };
    if indices.is_empty() {
        return Err(Error::InvalidArgument("the list of GPUs is empty".into()));
    }
    let mut engines = Vec::with_capacity(indices.len());
    for i in indices {
        let opts = DeviceOptions {
            adapter_index: Some(i),
            adapter_name: None,
            ..DeviceOptions::default()
        };
        engines.push(builder(Device::Gpu(opts)).build_async().await?);
    }
    Ok(engines)
}

/// The positions (in [`crate::gpu::list_adapters`]) of every hardware adapter of the best
/// backend present: the same GPU seen through Vulkan and OpenGL is counted once.
fn hardware_adapters() -> Vec<usize> {
    let adapters = crate::gpu::list_adapters();
    let hardware: Vec<(usize, &crate::gpu::AdapterSummary)> = adapters
        .iter()
        .enumerate()
        .filter(|(_, a)| a.device_type != "Cpu")
        .collect();
    let native = |a: &crate::gpu::AdapterSummary| a.backend != "gl";
    let best: Vec<usize> = hardware
        .iter()
        .filter(|(_, a)| native(a))
        .map(|(i, _)| *i)
        .collect();
    if best.is_empty() {
        hardware.iter().map(|(i, _)| *i).collect()
    } else {
        best
    }
}
