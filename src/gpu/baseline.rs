//! GPU baselines on the dequantised weights of a model: a dense f32 GEMV/GEMM (row tiles across
//! bindings when a matrix exceeds the binding limit) and a plain f32 CSR SpMV.

use super::device::GpuContext;
use super::kernels;
use super::program::{
    activations, bind, storage_init, stride, uniform_init, Dispatch, Encoding, PipelineTiming,
    Program, Timing, TimingOptions,
};
use crate::baseline::CsrLayerF32;
use crate::error::{Error, Result};
use crate::format::{Activation, Model};
use crate::schedule::{dense_tiles, BATCH_TILE, ROWS_PER_WORKGROUP};
use std::sync::Arc;

/// Which baseline kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum BaselineKind {
    /// Dense f32 GEMV/GEMM (`dense_gemv.wgsl`).
    Dense,
    /// CSR f32 SpMV (`csr_spmv.wgsl`).
    Csr,
}

impl BaselineKind {
    /// Name used in backend names.
    pub fn name(self) -> &'static str {
        match self {
            BaselineKind::Dense => "dense",
            BaselineKind::Csr => "csr",
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct DenseParams {
    tile_rows: u32,
    row_offset: u32,
    cols4: u32,
    x_stride4: u32,
    y_stride: u32,
    relu: u32,
    has_bias: u32,
    pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct CsrParams {
    rows: u32,
    x_stride: u32,
    y_stride: u32,
    relu: u32,
    has_bias: u32,
    pad: [u32; 3],
}

/// A model on the GPU as dense or CSR f32 matrices.
pub struct BaselineEngine {
    program: Program,
    kind: BaselineKind,
    _buffers: Vec<wgpu::Buffer>,
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
        if max_batch.div_ceil(BATCH_TILE) > limits.max_compute_workgroups_per_dimension as usize {
            return Err(Error::InvalidArgument(format!(
                "max_batch {max_batch} needs too many workgroups for this device"
            )));
        }
        // Buffers hold whole groups of BATCH_TILE inputs: the kernels compute four at a time.
        let padded_batch = max_batch.next_multiple_of(BATCH_TILE);
        let c = ctx.clone();
        ctx.scoped("building the baseline engine", move || {
            let ctx = c;
            let (kernel, label) = match kind {
                BaselineKind::Dense => (kernels::DENSE_GEMV, "dense"),
                BaselineKind::Csr => (kernels::CSR_SPMV, "csr"),
            };
            let pipeline = ctx.pipelines().get(&ctx, kernel, &[])?;
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
                let zero = [0f32];
                let bias = storage_init(
                    &ctx,
                    &lbl("bias"),
                    bytemuck::cast_slice(layer.bias().unwrap_or(&zero)),
                );
                let relu = (layer.activation() == Activation::Relu) as u32;
                let has_bias = layer.bias().is_some() as u32;
                let (rows, cols) = (layer.rows(), layer.cols());
                let mut layer_dispatches = Vec::new();
                match kind {
                    BaselineKind::Dense => {
                        let w = layer.dense_weights();
                        let cols4 = cols.div_ceil(4);
                        for (ti, tile) in dense_tiles(rows, cols, &limits)?.into_iter().enumerate()
                        {
                            let mut padded = vec![0f32; tile.rows * cols4 * 4];
                            for r in 0..tile.rows {
                                let src = &w[(tile.start + r) * cols..(tile.start + r + 1) * cols];
                                padded[r * cols4 * 4..r * cols4 * 4 + cols].copy_from_slice(src);
                            }
                            let params = DenseParams {
                                tile_rows: tile.rows as u32,
                                row_offset: tile.start as u32,
                                cols4: cols4 as u32,
                                x_stride4: (stride(cols) / 4) as u32,
                                y_stride: stride(rows) as u32,
                                relu,
                                has_bias,
                                pad: 0,
                            };
                            let ub = uniform_init(
                                &ctx,
                                &lbl(&format!("tile-{ti}/params")),
                                bytemuck::bytes_of(&params),
                            );
                            let wb = storage_init(
                                &ctx,
                                &lbl(&format!("tile-{ti}/weights")),
                                bytemuck::cast_slice(&padded),
                            );
                            let bg = bind(
                                &ctx,
                                &lbl(&format!("tile-{ti}/bind-group")),
                                &pipeline,
                                &[&ub, &wb, &bias, &act[li], &act[li + 1]],
                            );
                            layer_dispatches.push(Dispatch {
                                pipeline: pipeline.clone(),
                                bind_group: bg,
                                x: tile.rows.div_ceil(ROWS_PER_WORKGROUP) as u32,
                                y_per_group: 1,
                                batch_group: BATCH_TILE as u32,
                                batches: (1, usize::MAX),
                            });
                            buffers.extend([ub, wb]);
                        }
                    }
                    BaselineKind::Csr => {
                        let csr = CsrLayerF32::new(layer);
                        let workgroups = rows.div_ceil(ROWS_PER_WORKGROUP);
                        if workgroups > limits.max_compute_workgroups_per_dimension as usize
                            || 4 * csr.values().len() as u64 > limits.max_binding()
                        {
                            return Err(Error::InvalidArgument(format!(
                                "layer `{}` ({rows}x{cols}, {} non-zeros) exceeds this device's \
                                 limits for the CSR kernel",
                                layer.name(),
                                csr.values().len()
                            )));
                        }
                        let params = CsrParams {
                            rows: rows as u32,
                            x_stride: stride(cols) as u32,
                            y_stride: stride(rows) as u32,
                            relu,
                            has_bias,
                            pad: [0; 3],
                        };
                        let ub = uniform_init(&ctx, &lbl("params"), bytemuck::bytes_of(&params));
                        let rp = storage_init(
                            &ctx,
                            &lbl("row-ptr"),
                            bytemuck::cast_slice(csr.row_ptr()),
                        );
                        let ci = storage_init(
                            &ctx,
                            &lbl("col-idx"),
                            bytemuck::cast_slice(csr.col_idx()),
                        );
                        let vb =
                            storage_init(&ctx, &lbl("values"), bytemuck::cast_slice(csr.values()));
                        let bg = bind(
                            &ctx,
                            &lbl("bind-group"),
                            &pipeline,
                            &[&ub, &rp, &ci, &vb, &bias, &act[li], &act[li + 1]],
                        );
                        layer_dispatches.push(Dispatch {
                            pipeline: pipeline.clone(),
                            bind_group: bg,
                            x: workgroups as u32,
                            y_per_group: 1,
                            batch_group: BATCH_TILE as u32,
                            batches: (1, usize::MAX),
                        });
                        buffers.extend([ub, rp, ci, vb]);
                    }
                }
                buffers.push(bias);
                dispatches.push(layer_dispatches);
            }
            let input = act[0].clone();
            let output = act[act.len() - 1].clone();
            buffers.extend(act);
            Ok(BaselineEngine {
                program: Program::new(
                    ctx.clone(),
                    dispatches,
                    input,
                    output,
                    model.input_size(),
                    model.output_size(),
                    max_batch,
                    Encoding::F32,
                ),
                kind,
                _buffers: buffers,
            })
        })?
    }

    /// Which baseline this is.
    pub fn kind(&self) -> BaselineKind {
        self.kind
    }

    /// Runs `input` (`batch * input_size` values), blocking.
    pub fn run(&self, input: &[f32]) -> Result<Vec<f32>> {
        self.program.run(input)
    }

    /// Non-blocking form of [`run`](Self::run).
    pub async fn run_async(&self, input: &[f32]) -> Result<Vec<f32>> {
        self.program.run_async(input).await
    }

    /// Times the model on `input` (see [`Timing`]).
    pub fn time(&self, input: &[f32], opts: &TimingOptions) -> Result<Timing> {
        self.program.time(input, opts)
    }

    /// Pipelined single-frame runs with `in_flight` submissions outstanding.
    pub fn pipelined(
        &self,
        inputs: &[Vec<f32>],
        frames: usize,
        in_flight: usize,
    ) -> Result<PipelineTiming> {
        self.program.pipelined(inputs, frames, in_flight)
    }
}
