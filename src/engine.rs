//! [`Engine`]: one handle for applications over every backend: the EIE CPU engine or the GPU
//! kernels, in one [`Precision`]. It is cheap to clone and `Send + Sync` (the model and device
//! state are shared), runs blocking ([`Engine::run_blocking`]) or as an owned `'static` future
//! ([`Engine::run`], `async` feature) that works on any async runtime and in `tokio::spawn`, and
//! has async constructors that never block the caller's runtime.

#[cfg(feature = "async")]
use crate::error::Error;
use crate::error::Result;
#[cfg(feature = "async")]
use crate::format::check_batch;
use crate::format::Model;
use crate::reference::{CpuEngine, Precision};

#[cfg(all(feature = "gpu", feature = "async"))]
use crate::gpu::DeviceOptions;
#[cfg(feature = "gpu")]
use crate::gpu::{EngineOptions, GpuContext, GpuEngine};

/// A model ready to run on one backend in one precision.
#[derive(Clone)]
pub struct Engine {
    kind: Kind,
    input_size: usize,
    output_size: usize,
}

#[derive(Clone)]
enum Kind {
    Cpu(CpuEngine, Precision),
    #[cfg(feature = "gpu")]
    Gpu(GpuEngine),
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("name", &self.name())
            .field("input_size", &self.input_size)
            .field("output_size", &self.output_size)
            .finish()
    }
}

impl Engine {
    /// The EIE CPU engine (re-interleaved for this machine's threads) in `precision`.
    pub fn cpu(model: Model, precision: Precision) -> Result<Engine> {
        let (input_size, output_size) = (model.input_size(), model.output_size());
        Ok(Engine {
            kind: Kind::Cpu(CpuEngine::new(model)?, precision),
            input_size,
            output_size,
        })
    }

    /// The GPU kernels on `ctx` (see [`GpuEngine::new`]); `opts.precision` is the arithmetic.
    #[cfg(feature = "gpu")]
    pub fn gpu(
        ctx: std::sync::Arc<GpuContext>,
        model: &Model,
        opts: EngineOptions,
    ) -> Result<Engine> {
        Ok(Engine::from(GpuEngine::new(ctx, model, opts)?))
    }

    /// Opens the device `device` picks and builds the GPU engine on a thread of its own, so
    /// that an async caller is never blocked (device creation, re-interleaving and shader
    /// compilation take milliseconds to seconds).
    #[cfg(all(feature = "gpu", feature = "async"))]
    pub async fn gpu_async(
        device: DeviceOptions,
        model: Model,
        opts: EngineOptions,
    ) -> Result<Engine> {
        off_thread("building the GPU engine", move || {
            let ctx = GpuContext::new(&device)?;
            Engine::gpu(ctx, &model, opts)
        })
        .await
    }

    /// [`Engine::cpu`] on a thread of its own (re-interleaving a large model takes a while).
    #[cfg(feature = "async")]
    pub async fn cpu_async(model: Model, precision: Precision) -> Result<Engine> {
        off_thread("building the CPU engine", move || {
            Engine::cpu(model, precision)
        })
        .await
    }

    /// A short name for reports: `cpu-eie/f32`, `gpu-eie/fixed16`, ...
    pub fn name(&self) -> String {
        match &self.kind {
            Kind::Cpu(_, p) => format!("cpu-eie/{}", p.name()),
            #[cfg(feature = "gpu")]
            Kind::Gpu(g) => g.name(),
        }
    }

    /// The arithmetic.
    pub fn precision(&self) -> Precision {
        match &self.kind {
            Kind::Cpu(_, p) => *p,
            #[cfg(feature = "gpu")]
            Kind::Gpu(g) => g.precision(),
        }
    }

    /// Values per input vector.
    pub fn input_size(&self) -> usize {
        self.input_size
    }

    /// Values per output vector.
    pub fn output_size(&self) -> usize {
        self.output_size
    }

    /// Runs `input` (`batch * input_size` values) and returns `batch * output_size` values,
    /// blocking the calling thread. Do not call it on an async runtime's worker threads: use
    /// [`run`](Self::run) there.
    pub fn run_blocking(&self, input: &[f32]) -> Result<Vec<f32>> {
        match &self.kind {
            Kind::Cpu(e, p) => e.run(input, *p),
            #[cfg(feature = "gpu")]
            Kind::Gpu(g) => g.run(input),
        }
    }

    /// Runs `input` without blocking: an owned `'static` future (it holds a clone of the engine
    /// and the input), usable from `tokio::spawn` or any other executor. The CPU engine works
    /// on its thread pool, the GPU engine is polled by its context's own thread; the future
    /// only waits. Input errors (length, NaN) are reported when it is awaited.
    #[cfg(feature = "async")]
    pub fn run(
        &self,
        input: Vec<f32>,
    ) -> impl std::future::Future<Output = Result<Vec<f32>>> + Send + 'static {
        let engine = self.clone();
        async move {
            check_batch(engine.input_size, &input)?;
            match &engine.kind {
                Kind::Cpu(..) => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    let e = engine.clone();
                    rayon::spawn(move || {
                        let _ = tx.send(e.run_blocking(&input));
                    });
                    rx.await
                        .map_err(|_| Error::ShutDown("the CPU worker stopped".into()))?
                }
                #[cfg(feature = "gpu")]
                Kind::Gpu(g) => g.run_owned(input).await,
            }
        }
    }
}

#[cfg(feature = "gpu")]
impl From<GpuEngine> for Engine {
    fn from(g: GpuEngine) -> Engine {
        Engine {
            input_size: g.input_size(),
            output_size: g.output_size(),
            kind: Kind::Gpu(g),
        }
    }
}

impl From<CpuEngine> for Engine {
    /// The CPU engine in f32.
    fn from(e: CpuEngine) -> Engine {
        let model = e.model();
        Engine {
            input_size: model.input_size(),
            output_size: model.output_size(),
            kind: Kind::Cpu(e, Precision::F32),
        }
    }
}

/// Runs `f` on a new thread and waits for its result without blocking the caller.
#[cfg(feature = "async")]
async fn off_thread<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("eie-build".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| Error::InvalidArgument(format!("{what}: cannot start a thread: {e}")))?;
    rx.await
        .map_err(|_| Error::ShutDown(format!("{what}: the worker thread panicked")))?
}
