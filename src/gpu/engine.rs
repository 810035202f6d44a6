//! [`GpuEngine`]: a whole EIE model on the GPU: per layer one `eie_spmv` dispatch (leading
//! non-zero detection, the column walk, bias, ReLU and the next layer's non-zero bitmap inside
//! it) or, where the layer's columns are split over several workgroups, that dispatch and an
//! `eie_reduce` dispatch adding the partial sums in slice order; or one `eie_spmv_rows`
//! dispatch for a layer walked by rows. Every layer in one compute pass and one submission, with
//! buffers, bind groups and pipelines built once. In fixed16 the write-backs also count the
//! outputs they clip, per layer, in a small counter buffer read back with each run's output
//! ([`GpuEngine::run_fixed16`]).

use super::device::GpuContext;
use super::kernels::{eie_spmv, eie_spmv_rows, ActLayout, RunCounters};
use super::program::{zeroed, Counters, Dispatch, Encoding, InputBits, Program, RunOutput};
#[cfg(not(target_arch = "wasm32"))]
use super::program::{PipelineTiming, Timing, TimingOptions};
use crate::error::{Error, Result};
use crate::fixed16::{LayerSaturations, Saturations};
use crate::format::{EieLayer, Model};
use crate::kernel_id::{KernelId, KernelKind};
use crate::precision::Precision;
use crate::schedule::{
    EieLayerPlan, PePlan, ScheduleOverride, Walk, EIE_BATCH_TILE, EIE_MAX_CODES,
};
use std::borrow::Cow;
use std::sync::Arc;

/// Options of [`GpuEngine::new`].
#[derive(Clone, Copy, Debug)]
pub struct EngineOptions {
    /// Arithmetic: f32, EIE's fixed16 (bit for bit equal to the CPU model), or f16 storage
    /// (codebook values and activations in f16, packed two per word; f32 products and sums).
    pub precision: Precision,
    /// PE count per layer (workgroups of the EIE kernel).
    pub pes: PePlan,
    /// Largest batch one submission carries; larger batches are split.
    pub max_batch: usize,
    /// How the layers are walked; `None`: as `schedule` or the environment's
    /// [`SCHEDULE_ENV`](crate::schedule::SCHEDULE_ENV) say, else by columns (EIE's dataflow).
    pub walk: Option<Walk>,
    /// Settings forced instead of the planner's choice for this device (walk, tile, slices,
    /// groups, lanes per row, workgroup target); what is not set here is taken from the
    /// environment's [`SCHEDULE_ENV`](crate::schedule::SCHEDULE_ENV), if any.
    pub schedule: ScheduleOverride,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            precision: Precision::F32,
            pes: PePlan::Auto,
            max_batch: 64,
            walk: None,
            schedule: ScheduleOverride::default(),
        }
    }
}

/// An EIE model resident on the GPU. Cloning is cheap (the device state is shared), and one
/// engine serves many threads and tasks at once (`Send + Sync`).
///
/// Built by [`GpuEngine::new`] on a [`GpuContext`] with [`EngineOptions`], or for most
/// applications through [`Engine::builder`](crate::Engine::builder) with a
/// [`Device::Gpu`](crate::Device::Gpu); `examples/gpu_layers.rs` times it layer by layer.
#[derive(Clone)]
pub struct GpuEngine {
    inner: Arc<Resident>,
}

struct Resident {
    program: Arc<Program>,
    plans: Vec<EieLayerPlan>,
    precision: Precision,
    forced_walk: Option<Walk>,
    // Buffers referenced by the bind groups, kept alive with the engine.
    _buffers: Vec<wgpu::Buffer>,
}

/// The dispatches of one EIE layer from `x` to `y` (activation buffers of `padded` rows) for
/// the batch `classes`, walked as the planner picks for the device (or as `ov` forces), the
/// layer re-interleaved over the plan's PE count where that differs from the file's, its
/// fixed16 write-back saturations counted in `counters` as the model's layer `index`
/// ([`RunCounters`]); and the plan. Buffers go to `buffers`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn layer_dispatches(
    ctx: &Arc<GpuContext>,
    layer: &EieLayer,
    precision: Precision,
    pes: PePlan,
    ov: &ScheduleOverride,
    classes: &[(usize, usize)],
    padded: usize,
    x: (&wgpu::Buffer, ActLayout),
    y: (&wgpu::Buffer, ActLayout),
    counters: (&wgpu::Buffer, usize),
    lbl: &dyn Fn(&str) -> String,
    buffers: &mut Vec<wgpu::Buffer>,
) -> Result<(Vec<Dispatch>, EieLayerPlan)> {
    if layer.codebook().len() > EIE_MAX_CODES {
        return Err(Error::LimitExceeded {
            what: format!(
                "the codebook entries of layer `{}` (the EIE kernel's)",
                layer.name()
            ),
            value: layer.codebook().len() as u64,
            limit: EIE_MAX_CODES as u64,
        });
    }
    let limits = ctx.device_limits();
    let plan = EieLayerPlan::with_override(
        pes,
        layer.rows(),
        layer.cols(),
        layer.pes(),
        layer.entry_bytes(),
        &limits,
        ov,
    )?;
    let dispatches = match plan.walk {
        Walk::Rows => eie_spmv_rows::dispatches(
            ctx, layer, precision, &plan, classes, x, y, counters, lbl, buffers,
        )?,
        Walk::Columns => {
            let layer: Cow<EieLayer> = if plan.pes == layer.pes() {
                Cow::Borrowed(layer)
            } else {
                Cow::Owned(layer.with_pes(plan.pes)?)
            };
            eie_spmv::dispatches(
                ctx, &layer, precision, &plan, classes, padded, x, y, counters, lbl, buffers,
            )?
        }
    };
    Ok((dispatches, plan))
}

impl GpuEngine {
    /// Uploads `model`, re-interleaving each layer over the PE count the plan gives it, and
    /// builds the pipelines, buffers and bind groups every later run reuses: one dispatch per
    /// layer and batch class (a single input, or tiles of [`EIE_BATCH_TILE`] inputs).
    pub fn new(ctx: Arc<GpuContext>, model: &Model, opts: EngineOptions) -> Result<GpuEngine> {
        if opts.max_batch == 0 {
            return Err(Error::InvalidArgument(
                "max_batch must be at least 1".into(),
            ));
        }
        let limits = ctx.device_limits();
        let tiles = opts.max_batch.div_ceil(EIE_BATCH_TILE);
        let wg_limit = limits.max_compute_workgroups_per_dimension as usize;
        if tiles > wg_limit {
            return Err(Error::LimitExceeded {
                what: format!(
                    "workgroup rows of max_batch {} (this device's workgroups per dimension)",
                    opts.max_batch
                ),
                value: tiles as u64,
                limit: wg_limit as u64,
            });
        }
        let encoding = Encoding::of(opts.precision);
        // Every buffer holds whole tiles.
        let padded = tiles * EIE_BATCH_TILE;
        // Each layer's dispatches are specialised for a single input and, when the engine
        // takes batches, for tiles of inputs.
        let classes: &[(usize, usize)] = if opts.max_batch > 1 {
            &[(1, 1), (2, usize::MAX)]
        } else {
            &[(1, 1)]
        };
        let c = ctx.clone();
        ctx.scoped("building the EIE engine", move || {
            let ctx = c;
            let mut buffers = Vec::new();
            let mut dispatches = Vec::new();
            let mut plans = Vec::new();
            let layers = model.layers();
            let sizes: Vec<usize> = std::iter::once(layers[0].cols())
                .chain(layers.iter().map(|l| l.rows()))
                .collect();
            let layouts: Vec<ActLayout> = sizes
                .iter()
                .map(|&n| ActLayout::new(n, padded, encoding))
                .collect();
            let act: Vec<wgpu::Buffer> = layouts
                .iter()
                .enumerate()
                .map(|(i, l)| zeroed(&ctx, &format!("eie/gpu/activations-{i}"), l.words))
                .collect::<Result<_>>()?;
            // Bound by every pipeline; started and read back with each run only in fixed16.
            let counted = RunCounters {
                layers: layers.len(),
            };
            let counters = zeroed(&ctx, "eie/gpu/saturations", counted.words())?;
            let ov = ScheduleOverride {
                walk: opts.walk.or(opts.schedule.walk),
                ..opts.schedule
            }
            .or(ScheduleOverride::from_env()?);
            for (li, layer) in layers.iter().enumerate() {
                let lbl = |w: &str| format!("eie/gpu/layer-{li}/{w}");
                let (d, plan) = layer_dispatches(
                    &ctx,
                    layer,
                    opts.precision,
                    opts.pes,
                    &ov,
                    classes,
                    padded,
                    (&act[li], layouts[li]),
                    (&act[li + 1], layouts[li + 1]),
                    (&counters, li),
                    &lbl,
                    &mut buffers,
                )?;
                dispatches.push(d);
                plans.push(plan);
            }
            let input = act[0].clone();
            let output = act[act.len() - 1].clone();
            buffers.extend(act);
            let mut program = Program::new(
                ctx.clone(),
                dispatches,
                input,
                output,
                model.input_size(),
                model.output_size(),
                opts.max_batch,
                encoding,
            );
            program.fixed16_fracs = (model.input_frac(), model.output_frac());
            if opts.precision == Precision::Fixed16 {
                program.counters = Some(Counters {
                    buffer: counters.clone(),
                    words: counted.words(),
                });
            }
            buffers.push(counters);
            program.input_bits = Some(InputBits {
                base: layouts[0].bits_base,
                stride: layouts[0].bits_stride,
                tile: plans.first().map_or(1, |p| p.batched.tile),
            });
            Ok(GpuEngine {
                inner: Arc::new(Resident {
                    program: Arc::new(program),
                    plans,
                    precision: opts.precision,
                    forced_walk: ov.walk,
                    _buffers: buffers,
                }),
            })
        })?
    }

    /// Each layer's schedule: PEs, rows per PE, and the launches at batch 1 and above.
    ///
    /// Each an [`EieLayerPlan`]; `eie plan` models them without a GPU.
    pub fn plans(&self) -> &[EieLayerPlan] {
        &self.inner.plans
    }

    /// PEs per layer.
    ///
    /// See [`GpuEngine::plans`].
    pub fn pes(&self) -> Vec<usize> {
        self.inner.plans.iter().map(|p| p.pes).collect()
    }

    /// The arithmetic.
    ///
    /// Set by [`EngineOptions`]; see [`Precision`].
    pub fn precision(&self) -> Precision {
        self.inner.precision
    }

    /// How each layer is walked.
    ///
    /// See [`Walk`] and [`GpuEngine::plans`].
    pub fn walks(&self) -> Vec<Walk> {
        self.inner.plans.iter().map(|p| p.walk).collect()
    }

    /// Which kernel variant this is: `gpu-eie/f32` when each layer is walked as the planner
    /// picks for the device, `gpu-eie-columns/f32` or `gpu-eie-rows/f32` when a walk is forced
    /// (by the options or the environment).
    ///
    /// See [`GpuEngine::walks`].
    pub fn id(&self) -> KernelId {
        let kind = match self.inner.forced_walk {
            None => KernelKind::Eie,
            Some(Walk::Columns) => KernelKind::EieColumns,
            Some(Walk::Rows) => KernelKind::EieRows,
        };
        KernelId::gpu(kind, self.inner.precision)
    }

    /// The device context.
    ///
    /// See [`GpuContext`].
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.inner.program.ctx
    }

    /// Values per input vector.
    ///
    /// See [`GpuEngine::run`].
    pub fn input_size(&self) -> usize {
        self.inner.program.in_size
    }

    /// Values per output vector.
    ///
    /// See [`GpuEngine::run`].
    pub fn output_size(&self) -> usize {
        self.inner.program.out_size
    }

    /// Runs `input` (`batch * input_size` values), blocking; returns `batch * output_size`.
    /// Not on the web, where nothing may block: use [`run_async`](Self::run_async).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run(&self, input: &[f32]) -> Result<Vec<f32>> {
        self.inner.program.run(input)
    }

    /// The same run as [`run`](Self::run) without blocking the caller: an owned `'static`
    /// future (it holds a clone of the engine and the buffer: `Vec<f32>`, `Arc<[f32]>`, ...),
    /// usable from any async runtime and `tokio::spawn` (the device is polled by the context's
    /// own thread). Many concurrent calls on one engine are safe.
    pub fn run_async<T>(
        &self,
        input: T,
    ) -> impl std::future::Future<Output = Result<Vec<f32>>> + Send + 'static
    where
        T: AsRef<[f32]> + Send + Sync + 'static,
    {
        let engine = self.clone();
        async move { engine.run_ref(input.as_ref()).await }
    }

    /// [`run_async`](Self::run_async) on a borrowed input, for [`crate::Engine::run_async`].
    pub(crate) async fn run_ref(&self, input: &[f32]) -> Result<Vec<f32>> {
        self.inner.program.run_async(input).await
    }

    /// Runs `input` in fixed16, blocking (as [`run`](Self::run)), and counts its saturations
    /// over the whole batch: input values clipped to the model's input format, and per layer
    /// the outputs the kernels clipped to the `i16` range on write-back (a ReLU layer's negative
    /// ones excepted), the same counts as [`CpuEngine::run_fixed16`](crate::CpuEngine::run_fixed16)
    /// since the outputs are the same bits. Accumulator overflows are not seen here: every
    /// [`LayerSaturations::accumulator`] is 0. The kernels' `i32` sums wrap exactly as the CPU
    /// model's do (so the outputs still agree bit for bit), but telling a wrapped sum from a
    /// true one would take wider sums in every kernel; the CPU model counts them.
    ///
    /// An [`Error::UnsupportedPrecision`] for an engine built in another precision.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_fixed16(&self, input: &[f32]) -> Result<(Vec<f32>, Saturations)> {
        self.check_fixed16()?;
        Ok(self.saturations(self.inner.program.run_counted(input)?))
    }

    /// [`run_fixed16`](Self::run_fixed16) without blocking the caller: an owned `'static`
    /// future, as [`run_async`](Self::run_async).
    pub fn run_fixed16_async<T>(
        &self,
        input: T,
    ) -> impl std::future::Future<Output = Result<(Vec<f32>, Saturations)>> + Send + 'static
    where
        T: AsRef<[f32]> + Send + Sync + 'static,
    {
        let engine = self.clone();
        async move { engine.run_fixed16_ref(input.as_ref()).await }
    }

    /// [`run_fixed16_async`](Self::run_fixed16_async) on a borrowed input, for
    /// [`crate::Engine::run_async`].
    pub(crate) async fn run_fixed16_ref(&self, input: &[f32]) -> Result<(Vec<f32>, Saturations)> {
        self.check_fixed16()?;
        Ok(self.saturations(self.inner.program.run_async_counted(input).await?))
    }

    fn check_fixed16(&self) -> Result<()> {
        if self.inner.precision != Precision::Fixed16 {
            return Err(Error::UnsupportedPrecision {
                backend: "saturation counting".into(),
                precision: self.inner.precision.name().into(),
                supported: "fixed16".into(),
            });
        }
        Ok(())
    }

    /// The outputs and [`Saturations`] of a fixed16 run.
    fn saturations(&self, run: RunOutput) -> (Vec<f32>, Saturations) {
        let layers = self.inner.plans.len();
        let mut counts = run.counts;
        counts.resize(layers, 0);
        let sat = Saturations {
            input: run.inputs_clipped,
            layers: counts
                .into_iter()
                .map(|write_back| LayerSaturations {
                    write_back,
                    accumulator: 0,
                })
                .collect(),
        };
        (run.output, sat)
    }

    /// The program the engine runs (for [`TimedBackend`](super::TimedBackend)).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn program(&self) -> &Program {
        &self.inner.program
    }

    /// Times the model on `input` (see [`Timing`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn time(&self, input: &[f32], opts: &TimingOptions) -> Result<Timing> {
        self.inner.program.time(&[input], opts)
    }

    /// Pipelined single-frame runs with `in_flight` submissions outstanding.
    ///
    /// Returns a [`PipelineTiming`]; [`GpuEngine::time`] times single runs instead.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn pipelined(
        &self,
        inputs: &[Vec<f32>],
        frames: usize,
        in_flight: usize,
    ) -> Result<PipelineTiming> {
        self.inner.program.pipelined(inputs, frames, in_flight)
    }
}
