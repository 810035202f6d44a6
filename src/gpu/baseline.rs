//! GPU baselines on the dequantised weights of a model: a dense f32 GEMV/GEMM (row tiles across
//! bindings when a matrix exceeds the binding limit) and a plain f32 CSR SpMV.

use super::device::GpuContext;
use super::kernels::{csr_spmv, dense_gemv, Kernel};
use super::program::{activations, storage_init, Encoding, Program};
#[cfg(not(target_arch = "wasm32"))]
use super::program::{PipelineTiming, Timing, TimingOptions};
use crate::error::{Error, Result};
use crate::format::Model;
use crate::kernel_id::{KernelId, KernelKind};
use crate::precision::Precision;
use crate::schedule::BATCH_TILE;
use std::sync::Arc;

/// Which baseline kernel.
///
/// Given to [`BaselineEngine::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum BaselineKind {
    /// Dense f32 GEMV/GEMM (`dense_gemv.wgsl`).
    Dense,
    /// CSR f32 SpMV (`csr_spmv.wgsl`).
    Csr,
}

impl BaselineKind {
    /// Its [`KernelKind`] (whose name, `dense` or `csr`, reports use).
    ///
    /// See [`BaselineEngine::id`].
    pub fn kernel_kind(self) -> KernelKind {
        match self {
            BaselineKind::Dense => KernelKind::Dense,
            BaselineKind::Csr => KernelKind::Csr,
        }
    }

    /// `dense` or `csr`, as [`KernelKind::name`] spells it.
    ///
    /// See [`BaselineEngine::kind`].
    pub fn name(self) -> &'static str {
        self.kernel_kind().name()
    }

    /// The kernel.
    ///
    /// See [`Kernel`].
    pub fn kernel(self) -> Kernel {
        match self {
            BaselineKind::Dense => Kernel::DenseGemv,
            BaselineKind::Csr => Kernel::CsrSpmv,
        }
    }
}

/// The dispatches of one layer on baseline kernel `kind`, from `input` to `output` (f32
/// activation buffers of whole [`BATCH_TILE`]s), with the layer's bias uploaded. Buffers go to
/// `buffers`. [`BaselineEngine`] and the GPU sequence engine's baselines build their layers
/// with it.
pub(crate) fn layer_dispatches(
    ctx: &GpuContext,
    kind: BaselineKind,
    layer: &crate::format::EieLayer,
    io: (&wgpu::Buffer, &wgpu::Buffer),
    lbl: &dyn Fn(&str) -> String,
    buffers: &mut Vec<wgpu::Buffer>,
) -> Result<Vec<super::program::Dispatch>> {
    let zero = [0f32];
    let bias = storage_init(
        ctx,
        &lbl("bias"),
        bytemuck::cast_slice(layer.bias().unwrap_or(&zero)),
    );
    let d = match kind {
        BaselineKind::Dense => dense_gemv::dispatches(ctx, layer, &bias, io, lbl, buffers)?,
        BaselineKind::Csr => csr_spmv::dispatches(ctx, layer, &bias, io, lbl, buffers)?,
    };
    buffers.push(bias);
    Ok(d)
}

/// A model on the GPU as dense or CSR f32 matrices.
///
/// Built by [`BaselineEngine::new`] on a [`GpuContext`]; `examples/gpu_layers.rs` times it
/// beside the [`GpuEngine`](super::GpuEngine).
#[derive(Clone)]
pub struct BaselineEngine {
    program: Arc<Program>,
    kind: BaselineKind,
    _buffers: Arc<Vec<wgpu::Buffer>>,
}

/// Inputs per submission of a baseline engine built by [`BaselineEngine::new`].
pub const BASELINE_MAX_BATCH: usize = 64;

impl BaselineEngine {
    /// Uploads every layer of `model` in the form `kind` needs, with up to 64 inputs per
    /// submission (see [`BaselineEngine::with_max_batch`]).
    pub fn new(ctx: Arc<GpuContext>, model: &Model, kind: BaselineKind) -> Result<Self> {
        Self::with_max_batch(ctx, model, kind, BASELINE_MAX_BATCH)
    }

    /// As [`new`](Self::new) with a chosen largest batch per submission.
    pub fn with_max_batch(
        ctx: Arc<GpuContext>,
        model: &Model,
        kind: BaselineKind,
        max_batch: usize,
    ) -> Result<Self> {
        if max_batch == 0 {
            return Err(Error::InvalidArgument(
                "max_batch must be at least 1".into(),
            ));
        }
        let limits = ctx.device_limits();
        let rows = max_batch.div_ceil(BATCH_TILE);
        if rows > limits.max_compute_workgroups_per_dimension as usize {
            return Err(Error::LimitExceeded {
                what: format!(
                    "workgroup rows of max_batch {max_batch} (this device's workgroups per \
                     dimension)"
                ),
                value: rows as u64,
                limit: limits.max_compute_workgroups_per_dimension as u64,
            });
        }
        // Buffers hold whole groups of BATCH_TILE inputs: the kernels compute four at a time.
        let padded_batch = max_batch.next_multiple_of(BATCH_TILE);
        let c = ctx.clone();
        ctx.scoped("building the baseline engine", move || {
            let ctx = c;
            let label = kind.name();
            let layers = model.layers();
            let act: Vec<wgpu::Buffer> = std::iter::once(layers[0].cols())
                .chain(layers.iter().map(|l| l.rows()))
                .enumerate()
                .map(|(i, n)| {
                    activations(
                        &ctx,
                        &format!("eie/gpu/{label}/activations-{i}"),
                        padded_batch,
                        n,
                        Encoding::F32,
                    )
                })
                .collect::<Result<_>>()?;
            let mut buffers = Vec::new();
            let mut dispatches = Vec::new();
            for (li, layer) in layers.iter().enumerate() {
                let lbl = |w: &str| format!("eie/gpu/{label}/layer-{li}/{w}");
                let io = (&act[li], &act[li + 1]);
                dispatches.push(layer_dispatches(&ctx, kind, layer, io, &lbl, &mut buffers)?);
            }
            let input = act[0].clone();
            let output = act[act.len() - 1].clone();
            buffers.extend(act);
            Ok(BaselineEngine {
                program: Arc::new(Program::new(
                    ctx.clone(),
                    dispatches,
                    input,
                    output,
                    model.input_size(),
                    model.output_size(),
                    max_batch,
                    Encoding::F32,
                )),
                kind,
                _buffers: Arc::new(buffers),
            })
        })?
    }

    /// Which baseline this is.
    ///
    /// See [`BaselineKind`].
    pub fn kind(&self) -> BaselineKind {
        self.kind
    }

    /// Runs `input` (`batch * input_size` values), blocking (native only).
    ///
    /// [`BaselineEngine::time`] measures it.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run(&self, input: &[f32]) -> Result<Vec<f32>> {
        self.program.run(input)
    }

    /// The same run as [`run`](Self::run) without blocking the caller: an owned `'static`
    /// future (it holds a clone of the engine and the buffer), as
    /// [`GpuEngine::run_async`](super::GpuEngine::run_async).
    pub fn run_async<T>(
        &self,
        input: T,
    ) -> impl std::future::Future<Output = Result<Vec<f32>>> + Send + 'static
    where
        T: AsRef<[f32]> + Send + Sync + 'static,
    {
        let engine = self.clone();
        async move { engine.program.run_async(input.as_ref()).await }
    }

    /// Which kernel variant this is: `gpu-dense/f32` or `gpu-csr/f32`.
    ///
    /// See [`BaselineEngine::kind`].
    pub fn id(&self) -> KernelId {
        KernelId::gpu(self.kind.kernel_kind(), Precision::F32)
    }

    /// The program the engine runs (for [`TimedBackend`](super::TimedBackend)).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn program(&self) -> &Program {
        &self.program
    }

    /// Times the model on `input` (see [`Timing`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn time(&self, input: &[f32], opts: &TimingOptions) -> Result<Timing> {
        self.program.time(&[input], opts)
    }

    /// Pipelined single-frame runs with `in_flight` submissions outstanding.
    ///
    /// Returns a [`PipelineTiming`]; see [`GpuEngine::pipelined`](super::GpuEngine::pipelined).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn pipelined(
        &self,
        inputs: &[Vec<f32>],
        frames: usize,
        in_flight: usize,
    ) -> Result<PipelineTiming> {
        self.program.pipelined(inputs, frames, in_flight)
    }
}
