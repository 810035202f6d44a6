//! [`Engine`]: one handle for applications over every backend: the EIE CPU engine or the GPU
//! kernels, in one [`Precision`].
//!
//! * **One builder**: [`Engine::builder`] with a [`Precision`] and a [`Device`]
//!   ([`Device::Auto`]: a hardware GPU when there is one, else the CPU engine;
//!   [`Engine::device`] says which was taken and why), built blocking ([`EngineBuilder::build`])
//!   or without blocking an async caller ([`EngineBuilder::build_async`]; on the web, the only
//!   way to open the browser's GPU).
//! * **Shaped, borrowed inputs**: [`Inputs`] is a borrowed batch of `batch` rows of
//!   `width` values; [`Outputs`] carries its shape ([`Outputs::rows`]) and a [`NumericReport`]
//!   (fixed16 saturations on every backend, non-finite outputs).
//! * **Blocking or async**: [`Engine::run`] on plain threads; [`Engine::run_async`]
//!   (`async` feature) is an owned `'static` future over any owned buffer (`Vec<f32>`,
//!   `Arc<[f32]>`, ...) that works on any async runtime and in `tokio::spawn`.
//!
//! The engine is cheap to clone and `Send + Sync` (the model and device state are shared).
//!
//! The [crate-level guide](crate) walks through these steps with examples.

#[cfg(feature = "async")]
use crate::error::Error;
use crate::error::{check_finite, Result};
use crate::fixed16;
use crate::format::Model;
use crate::kernel_id::{KernelId, KernelKind};
use crate::reference::{CpuEngine, Precision};

#[cfg(feature = "gpu")]
use crate::gpu::{DeviceOptions, EngineOptions, GpuContext, GpuEngine};
#[cfg(feature = "gpu")]
use std::sync::Arc;

/// Where [`Engine::builder`] builds the engine.
#[derive(Clone, Debug, Default)]
pub enum Device {
    /// A hardware GPU when one is found (with the `gpu` feature), else the CPU engine. A CPU
    /// adapter (lavapipe, WARP) is not taken: the CPU engine is faster than a GPU emulated on
    /// the same cores.
    #[default]
    Auto,
    /// The EIE CPU engine (re-interleaved for this machine's threads).
    Cpu,
    /// The GPU kernels on the adapter these options pick; an error when there is none.
    #[cfg(feature = "gpu")]
    Gpu(DeviceOptions),
}

/// Where a built engine runs ([`Engine::device`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineDevice {
    /// The CPU engine.
    Cpu {
        /// Worker threads.
        threads: usize,
        /// Why [`Device::Auto`] did not take a GPU (`None` when the CPU was asked for).
        fallback: Option<String>,
    },
    /// A GPU adapter.
    Gpu {
        /// The adapter's name.
        adapter: String,
        /// The graphics API (`Vulkan`, `Metal`, ...).
        backend: String,
        /// Whether the adapter is a CPU adapter (lavapipe, WARP).
        cpu_adapter: bool,
    },
}

impl EngineDevice {
    /// Whether the engine runs on a GPU adapter.
    ///
    /// [`Engine::device`] returns this; the [guide](crate#build-an-engine) prints it.
    pub fn is_gpu(&self) -> bool {
        matches!(self, EngineDevice::Gpu { .. })
    }
}

impl std::fmt::Display for EngineDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineDevice::Cpu { threads, fallback } => {
                write!(f, "CPU ({threads} threads)")?;
                if let Some(why) = fallback {
                    write!(f, "; no GPU taken: {why}")?;
                }
                Ok(())
            }
            EngineDevice::Gpu {
                adapter,
                backend,
                cpu_adapter,
            } => {
                write!(f, "GPU `{adapter}` ({backend}")?;
                if *cpu_adapter {
                    write!(f, ", a CPU adapter")?;
                }
                write!(f, ")")
            }
        }
    }
}

/// What a run does with NaN or infinite outputs (which a finite input can produce: a model's
/// weights or an f16 overflow).
///
/// Set with [`EngineBuilder::non_finite`]; [`Outputs::report`] counts what was returned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NonFinite {
    /// Return them, counted in [`NumericReport::non_finite`].
    #[default]
    Report,
    /// Fail the run with [`crate::Error::NonFinite`] naming the first one.
    Error,
}

/// Builds an [`Engine`]: `Engine::builder(model).precision(..).device(..).build()`.
#[derive(Clone, Debug)]
pub struct EngineBuilder {
    model: Model,
    precision: Precision,
    device: Device,
    non_finite: NonFinite,
    #[cfg(feature = "gpu")]
    gpu: EngineOptions,
}

impl EngineBuilder {
    /// The arithmetic (default f32).
    ///
    /// See [`Precision`] and the [guide](crate#build-an-engine); [`Engine::precision`] reads it
    /// back.
    pub fn precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// Where to run (default [`Device::Auto`]).
    pub fn device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// What a run does with non-finite outputs (default: report them).
    ///
    /// See [`NonFinite`].
    pub fn non_finite(mut self, policy: NonFinite) -> Self {
        self.non_finite = policy;
        self
    }

    /// GPU settings (PEs, largest batch per submission, forced schedule) used when the engine
    /// runs on a GPU; their `precision` is replaced by [`precision`](Self::precision).
    #[cfg(feature = "gpu")]
    pub fn gpu_options(mut self, options: EngineOptions) -> Self {
        self.gpu = options;
        self
    }

    /// Builds the engine on the calling thread (opening a GPU, re-interleaving and compiling
    /// shaders take milliseconds to seconds: from async code use
    /// [`build_async`](Self::build_async)). On the web a GPU cannot be opened this way:
    /// [`Device::Gpu`] is [`crate::Error::NoAdapter`] there and
    /// [`Device::Auto`] the CPU engine.
    pub fn build(self) -> Result<Engine> {
        self.build_with(
            #[cfg(feature = "gpu")]
            open_gpu,
        )
    }

    /// [`build`](Self::build) with `open` opening the GPU a [`Device`] asks for.
    fn build_with(
        self,
        #[cfg(feature = "gpu")] open: impl FnOnce(&DeviceOptions) -> Result<Arc<GpuContext>>,
    ) -> Result<Engine> {
        let EngineBuilder {
            model,
            precision,
            device,
            non_finite,
            #[cfg(feature = "gpu")]
            gpu,
        } = self;
        #[cfg(feature = "gpu")]
        let gpu = EngineOptions { precision, ..gpu };
        let input_frac = input_frac(&model, precision);
        let (kind, device) = match device {
            Device::Cpu => cpu_kind(model, precision, None)?,
            #[cfg(feature = "gpu")]
            Device::Gpu(options) => {
                let ctx = open(&options)?;
                gpu_kind(ctx, &model, gpu)?
            }
            #[cfg(feature = "gpu")]
            Device::Auto => match open(&DeviceOptions::default()) {
                Ok(ctx) if ctx.adapter_info().device_type != wgpu::DeviceType::Cpu => {
                    gpu_kind(ctx, &model, gpu)?
                }
                Ok(ctx) => {
                    let why = format!(
                        "the only adapter, `{}`, is a CPU adapter",
                        ctx.adapter_info().name
                    );
                    cpu_kind(model, precision, Some(why))?
                }
                Err(e) => cpu_kind(model, precision, Some(e.to_string()))?,
            },
            #[cfg(not(feature = "gpu"))]
            Device::Auto => cpu_kind(
                model,
                precision,
                Some("built without the `gpu` feature".into()),
            )?,
        };
        let (input_size, output_size) = kind.sizes();
        Ok(Engine {
            kind,
            device,
            non_finite,
            input_size,
            output_size,
            input_frac,
        })
    }

    /// [`build`](Self::build) on a thread of its own, so that an async caller is never
    /// blocked.
    #[cfg(all(feature = "async", not(target_arch = "wasm32")))]
    pub async fn build_async(self) -> Result<Engine> {
        off_thread("building the engine", move || self.build()).await
    }

    /// On the web: opens the browser's GPU (WebGPU) without blocking, then builds on the
    /// calling thread. [`Device::Auto`] takes the CPU engine when the browser has no WebGPU
    /// or no adapter, and [`Engine::device`] says why.
    #[cfg(all(feature = "async", target_arch = "wasm32"))]
    pub async fn build_async(self) -> Result<Engine> {
        #[cfg(feature = "gpu")]
        {
            let opened = match &self.device {
                Device::Cpu => None,
                Device::Gpu(options) => Some(GpuContext::new_async(options).await),
                Device::Auto => Some(GpuContext::new_async(&DeviceOptions::default()).await),
            };
            self.build_with(move |_| {
                opened.unwrap_or_else(|| Err(Error::NoAdapter("no GPU was asked for".into())))
            })
        }
        #[cfg(not(feature = "gpu"))]
        self.build()
    }
}

/// Opens the GPU `options` describe, blocking.
#[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
fn open_gpu(options: &DeviceOptions) -> Result<Arc<GpuContext>> {
    GpuContext::new(options)
}

/// On the web a GPU opens only as a future ([`EngineBuilder::build_async`]).
#[cfg(all(feature = "gpu", target_arch = "wasm32"))]
fn open_gpu(_options: &DeviceOptions) -> Result<Arc<GpuContext>> {
    Err(crate::Error::NoAdapter(
        "a blocking build cannot open the browser's GPU: use `EngineBuilder::build_async`".into(),
    ))
}

fn cpu_kind(
    model: Model,
    precision: Precision,
    fallback: Option<String>,
) -> Result<(Kind, EngineDevice)> {
    Ok((
        Kind::Cpu(CpuEngine::new(model)?.with_precision(precision)),
        cpu_device(fallback),
    ))
}

#[cfg(feature = "gpu")]
fn gpu_kind(
    ctx: std::sync::Arc<GpuContext>,
    model: &Model,
    opts: EngineOptions,
) -> Result<(Kind, EngineDevice)> {
    let device = gpu_device(ctx.adapter_info());
    let engine = GpuEngine::new(ctx, model, opts)?;
    Ok((Kind::Gpu(engine), device))
}

/// Where an engine on the adapter `info` runs.
#[cfg(feature = "gpu")]
fn gpu_device(info: &wgpu::AdapterInfo) -> EngineDevice {
    EngineDevice::Gpu {
        adapter: info.name.clone(),
        backend: format!("{:?}", info.backend),
        cpu_adapter: info.device_type == wgpu::DeviceType::Cpu,
    }
}

/// Where the CPU engine runs; `fallback`: why [`Device::Auto`] took no GPU.
fn cpu_device(fallback: Option<String>) -> EngineDevice {
    EngineDevice::Cpu {
        threads: rayon::current_num_threads(),
        fallback,
    }
}

/// A borrowed batch of input vectors: `batch` rows of `width` values, row after row.
///
/// Made by [`Inputs::new`], or from a plain slice ([`Inputs::one`]); [`Engine::run`]
/// takes it. The [guide](crate#run) runs a batch of eight.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Inputs<'a> {
    data: &'a [f32],
    batch: usize,
    width: usize,
}

impl<'a> Inputs<'a> {
    /// `batch` rows of `width` values; a [`crate::Error::Shape`] unless `data` holds exactly
    /// that many and both are at least 1.
    pub fn new(data: &'a [f32], batch: usize, width: usize) -> Result<Self> {
        if batch == 0 || width == 0 {
            return Err(crate::Error::Shape(format!(
                "a batch of {batch} rows of {width} values is empty: both must be at least 1"
            )));
        }
        if batch.checked_mul(width) != Some(data.len()) {
            return Err(crate::Error::Shape(format!(
                "{} values are not {batch} rows of {width}",
                data.len()
            )));
        }
        Ok(Inputs { data, batch, width })
    }

    /// One input vector.
    ///
    /// What `From<&[f32]>` gives, so [`Engine::run`] takes a plain slice.
    pub fn one(data: &'a [f32]) -> Self {
        Inputs {
            data,
            batch: 1,
            width: data.len(),
        }
    }

    /// Rows.
    ///
    /// See [`Inputs::new`].
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Values per row.
    ///
    /// A run wants [`Engine::input_size`] of them; see [`Inputs::new`].
    pub fn width(&self) -> usize {
        self.width
    }

    /// The values, row after row.
    ///
    /// See [`Inputs::rows`] for the rows one by one.
    pub fn as_slice(&self) -> &'a [f32] {
        self.data
    }

    /// The rows.
    ///
    /// Each has [`Inputs::width`] values.
    pub fn rows(&self) -> std::slice::ChunksExact<'a, f32> {
        self.data.chunks_exact(self.width.max(1))
    }
}

impl<'a> From<&'a [f32]> for Inputs<'a> {
    /// One input vector.
    fn from(data: &'a [f32]) -> Self {
        Inputs::one(data)
    }
}

impl<'a> From<&'a Vec<f32>> for Inputs<'a> {
    /// One input vector.
    fn from(data: &'a Vec<f32>) -> Self {
        Inputs::one(data)
    }
}

#[cfg(feature = "ndarray")]
impl<'a> TryFrom<ndarray::ArrayView2<'a, f32>> for Inputs<'a> {
    type Error = crate::Error;

    /// A `[batch, width]` view in standard (row-major, contiguous) layout, without a copy.
    fn try_from(view: ndarray::ArrayView2<'a, f32>) -> Result<Self> {
        let (batch, width) = view.dim();
        let data = view.to_slice().ok_or_else(|| {
            crate::Error::Shape(format!(
                "a [{batch}, {width}] view that is not row-major and contiguous: \
                 `.as_standard_layout()` makes one"
            ))
        })?;
        Inputs::new(data, batch, width)
    }
}

/// How a run's numbers went, beside its [`Outputs`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NumericReport {
    /// fixed16: input values clipped to the first layer's input format (every backend).
    pub inputs_clipped: u64,
    /// fixed16, on every backend: input values clipped, and per layer the outputs clipped on
    /// write-back and the accumulator overflows. The GPU kernels count their write-back
    /// saturations themselves (the same counts as the CPU engine, whose outputs they equal bit
    /// for bit) but cannot see accumulator overflows, which they report as 0 (their `i32` sums
    /// wrap exactly as the CPU engine's do; see `GpuEngine::run_fixed16`). `None` in f32 and
    /// f16.
    pub saturations: Option<fixed16::Saturations>,
    /// Output values that are NaN or infinite.
    pub non_finite: usize,
}

impl NumericReport {
    /// Whether nothing was clipped and every output is finite.
    ///
    /// A run's report is [`Outputs::report`]; the [guide](crate#run) checks it.
    pub fn is_clean(&self) -> bool {
        self.inputs_clipped == 0
            && self.non_finite == 0
            && self.saturations.as_ref().is_none_or(|s| s.total() == 0)
    }
}

/// The outputs of a run: `batch` rows of `width` values and the run's [`NumericReport`].
#[derive(Clone, Debug, PartialEq)]
pub struct Outputs {
    data: Vec<f32>,
    batch: usize,
    width: usize,
    report: NumericReport,
}

impl Outputs {
    /// Rows (the inputs' batch).
    ///
    /// See [`Inputs::batch`].
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Values per row (the model's output size).
    ///
    /// See [`Engine::output_size`].
    pub fn width(&self) -> usize {
        self.width
    }

    /// The rows.
    ///
    /// Each has [`Outputs::width`] values; [`Outputs::row`] picks one.
    pub fn rows(&self) -> std::slice::ChunksExact<'_, f32> {
        self.data.chunks_exact(self.width.max(1))
    }

    /// Row `i`, if there is one.
    ///
    /// See [`Outputs::rows`] for all of them.
    pub fn row(&self, i: usize) -> Option<&[f32]> {
        (i < self.batch).then(|| &self.data[i * self.width..(i + 1) * self.width])
    }

    /// The index of each row's largest value (a classifier's answer; the first on ties, NaN
    /// never chosen).
    ///
    /// The [guide](crate#run) classifies MNIST digits with it.
    pub fn argmax(&self) -> Vec<usize> {
        self.rows()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                        if v > bv {
                            (i, v)
                        } else {
                            (bi, bv)
                        }
                    })
                    .0
            })
            .collect()
    }

    /// The values, row after row.
    ///
    /// [`Outputs::into_vec`] takes them without a copy.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// The values, row after row, without a copy.
    ///
    /// [`Outputs::as_slice`] borrows them instead.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// The values as a `[batch, width]` array (a copy; the report stays here).
    ///
    /// The input side is `Inputs::try_from(ArrayView2<f32>)` ([`Inputs`]).
    #[cfg(feature = "ndarray")]
    pub fn to_array(&self) -> ndarray::Array2<f32> {
        ndarray::Array2::from_shape_fn((self.batch, self.width), |(i, j)| {
            self.data[i * self.width + j]
        })
    }

    /// How the run's numbers went.
    ///
    /// See [`NumericReport::is_clean`].
    pub fn report(&self) -> &NumericReport {
        &self.report
    }
}

/// A model ready to run on one backend in one precision.
///
/// Built by [`Engine::builder`] and run by [`Engine::run`] (or, with the `async`
/// feature, `Engine::run_async`); the [crate-level guide](crate) walks through both. It is a
/// [`Backend`](crate::backend::Backend) too.
#[derive(Clone)]
pub struct Engine {
    kind: Kind,
    device: EngineDevice,
    non_finite: NonFinite,
    input_size: usize,
    output_size: usize,
    /// fixed16: the first layer's input format (fraction bits), to count clipped inputs.
    input_frac: Option<u32>,
}

#[derive(Clone)]
enum Kind {
    Cpu(CpuEngine),
    #[cfg(feature = "gpu")]
    Gpu(GpuEngine),
}

impl Kind {
    /// Input and output size.
    fn sizes(&self) -> (usize, usize) {
        match self {
            Kind::Cpu(e) => (e.model().input_size(), e.model().output_size()),
            #[cfg(feature = "gpu")]
            Kind::Gpu(g) => (g.input_size(), g.output_size()),
        }
    }
}

/// fixed16: the first layer's input format (fraction bits), to count clipped inputs.
fn input_frac(model: &Model, precision: Precision) -> Option<u32> {
    (precision == Precision::Fixed16)
        .then(|| {
            model
                .layers()
                .first()
                .map(|l| l.fixed16_format().input_frac())
        })
        .flatten()
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("kernel", &self.id().to_string())
            .field("device", &self.device)
            .field("input_size", &self.input_size)
            .field("output_size", &self.output_size)
            .finish()
    }
}

impl Engine {
    /// A builder for `model`: f32 on [`Device::Auto`] unless told otherwise.
    pub fn builder(model: Model) -> EngineBuilder {
        EngineBuilder {
            model,
            precision: Precision::F32,
            device: Device::Auto,
            non_finite: NonFinite::Report,
            #[cfg(feature = "gpu")]
            gpu: EngineOptions::default(),
        }
    }

    /// Where the engine runs, and why when [`Device::Auto`] fell back to the CPU.
    pub fn device(&self) -> &EngineDevice {
        &self.device
    }

    /// Which kernel variant runs; its `Display` is the name reports use: `cpu-eie/f32`,
    /// `gpu-eie/fixed16`, ...
    ///
    /// The [guide](crate#build-an-engine) prints it beside [`Engine::device`].
    pub fn id(&self) -> KernelId {
        match &self.kind {
            Kind::Cpu(e) => KernelId::cpu(KernelKind::Eie, e.precision()),
            #[cfg(feature = "gpu")]
            Kind::Gpu(g) => g.id(),
        }
    }

    /// The arithmetic.
    ///
    /// Set by [`EngineBuilder::precision`].
    pub fn precision(&self) -> Precision {
        self.id().precision
    }

    /// Values per input vector.
    ///
    /// The [`Inputs::width`] a run takes ([`Model::input_size`]).
    pub fn input_size(&self) -> usize {
        self.input_size
    }

    /// Values per output vector.
    ///
    /// The [`Outputs::width`] of a run ([`Model::output_size`]).
    pub fn output_size(&self) -> usize {
        self.output_size
    }

    /// The shape check of every run: `input`'s rows must be this model's input size and its
    /// values finite.
    fn check(&self, input: &Inputs<'_>) -> Result<()> {
        if input.width() != self.input_size {
            return Err(crate::Error::Shape(format!(
                "the input rows have {} values; this model takes {}",
                input.width(),
                self.input_size
            )));
        }
        check_finite("input", input.as_slice())
    }

    /// Runs `input` (a borrowed [`Inputs`]; a plain `&[f32]` is one input vector) and returns
    /// its outputs, blocking the calling thread. Do not call it on an async runtime's worker
    /// threads: use [`run_async`](Self::run_async) there. On the web a GPU engine cannot
    /// block: there it is [`crate::Error::InvalidArgument`], use [`run_async`](Self::run_async).
    pub fn run<'a>(&self, input: impl Into<Inputs<'a>>) -> Result<Outputs> {
        let input = input.into();
        self.check(&input)?;
        let (data, saturations) = match &self.kind {
            Kind::Cpu(e) if e.precision() == Precision::Fixed16 => {
                let (y, s) = e.run_fixed16(input.as_slice())?;
                (y, Some(s))
            }
            Kind::Cpu(e) => (e.run(input.as_slice())?, None),
            #[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
            Kind::Gpu(g) if g.precision() == Precision::Fixed16 => {
                let (y, s) = g.run_fixed16(input.as_slice())?;
                (y, Some(s))
            }
            #[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
            Kind::Gpu(g) => (g.run(input.as_slice())?, None),
            #[cfg(all(feature = "gpu", target_arch = "wasm32"))]
            Kind::Gpu(_) => {
                return Err(crate::Error::InvalidArgument(
                    "a GPU engine cannot run blocking on the web: use `Engine::run_async`".into(),
                ))
            }
        };
        self.finish(input, data, saturations)
    }

    /// The report of a run and the non-finite policy.
    fn finish(
        &self,
        input: Inputs<'_>,
        data: Vec<f32>,
        saturations: Option<fixed16::Saturations>,
    ) -> Result<Outputs> {
        let inputs_clipped = match (&saturations, self.input_frac) {
            (Some(s), _) => s.input,
            (None, Some(frac)) => input
                .as_slice()
                .iter()
                .filter(|&&x| fixed16::quantize(x, frac).1)
                .count() as u64,
            (None, None) => 0,
        };
        let non_finite = data.iter().filter(|v| !v.is_finite()).count();
        if non_finite > 0 && self.non_finite == NonFinite::Error {
            check_finite("output", &data)?;
        }
        Ok(Outputs {
            batch: input.batch(),
            width: self.output_size,
            data,
            report: NumericReport {
                inputs_clipped,
                saturations,
                non_finite,
            },
        })
    }

    /// Runs `batch` input vectors held in `input` (any owned buffer: `Vec<f32>`,
    /// `Arc<[f32]>`, `Box<[f32]>`, ...) without blocking: an owned `'static` future (it holds a
    /// clone of the engine and the buffer, no copy), usable from `tokio::spawn` or any other
    /// executor. The CPU engine works on its thread pool, the GPU engine on its context's own
    /// thread; the future only waits. Shape and NaN errors are reported when it is awaited.
    ///
    /// The [guide](crate#run) describes it; [`Engine::run`] is the blocking form.
    #[cfg(feature = "async")]
    pub fn run_async<T>(
        &self,
        input: T,
        batch: usize,
    ) -> impl std::future::Future<Output = Result<Outputs>> + Send + 'static
    where
        T: AsRef<[f32]> + Send + Sync + 'static,
    {
        let engine = self.clone();
        async move {
            let width = input.as_ref().len() / batch.max(1);
            let shaped = Inputs::new(input.as_ref(), batch, width)?;
            engine.check(&shaped)?;
            match &engine.kind {
                // The web has one thread (rayon runs its pool on the caller there, and a job
                // spawned onto it would never run): the CPU engine runs in the future itself.
                #[cfg(target_arch = "wasm32")]
                Kind::Cpu(..) => engine.run(shaped),
                #[cfg(not(target_arch = "wasm32"))]
                Kind::Cpu(..) => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    let e = engine.clone();
                    rayon::spawn(move || {
                        let x = input.as_ref();
                        let shaped = Inputs::new(x, batch, x.len() / batch);
                        let _ = tx.send(shaped.and_then(|i| e.run(i)));
                    });
                    rx.await
                        .map_err(|_| Error::ShutDown("the CPU worker stopped".into()))?
                }
                #[cfg(feature = "gpu")]
                Kind::Gpu(g) if g.precision() == Precision::Fixed16 => {
                    let (data, s) = g.run_fixed16_ref(shaped.as_slice()).await?;
                    engine.finish(shaped, data, Some(s))
                }
                #[cfg(feature = "gpu")]
                Kind::Gpu(g) => {
                    let data = g.run_ref(shaped.as_slice()).await?;
                    engine.finish(shaped, data, None)
                }
            }
        }
    }
}

impl crate::backend::Backend for Engine {
    fn id(&self) -> KernelId {
        Engine::id(self)
    }
    /// [`Engine::run`] on `input` as a batch of rows of [`Engine::input_size`] values (as
    /// every [`Backend`](crate::backend::Backend) takes a flat batch; [`Engine::run`] itself
    /// takes shaped [`Inputs`], where a plain slice is one input), without its report.
    fn run(&self, input: &[f32]) -> Result<Vec<f32>> {
        let batch = crate::format::check_batch(self.input_size, input)?;
        Ok(Engine::run(self, Inputs::new(input, batch, self.input_size)?)?.into_vec())
    }
}

#[cfg(feature = "gpu")]
impl From<GpuEngine> for Engine {
    /// A GPU engine built by hand ([`GpuEngine::new`]), as an [`Engine`].
    fn from(g: GpuEngine) -> Engine {
        let device = gpu_device(g.context().adapter_info());
        let kind = Kind::Gpu(g);
        let (input_size, output_size) = kind.sizes();
        Engine {
            kind,
            device,
            non_finite: NonFinite::Report,
            input_size,
            output_size,
            // Counted by the engine itself in fixed16 (its `Saturations::input`).
            input_frac: None,
        }
    }
}

impl From<CpuEngine> for Engine {
    /// The CPU engine, in its precision.
    fn from(e: CpuEngine) -> Engine {
        let kind = Kind::Cpu(e);
        let (input_size, output_size) = kind.sizes();
        Engine {
            kind,
            device: cpu_device(None),
            non_finite: NonFinite::Report,
            input_size,
            output_size,
            input_frac: None,
        }
    }
}

/// Runs `f` on a new thread and waits for its result without blocking the caller.
#[cfg(all(feature = "async", not(target_arch = "wasm32")))]
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
