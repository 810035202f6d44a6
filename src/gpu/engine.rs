//! [`GpuEngine`]: a whole EIE model on the GPU, two dispatches per layer (`compact_columns`, which
//! lists the non-zero columns of each input vector once, then `eie_spmv`), all layers in one
//! compute pass and one submission, with buffers, bind groups and pipelines built once.

use super::device::GpuContext;
use super::kernels;
use super::program::{
    activations, bind, storage_init, stride, uniform_init, Dispatch, Encoding, PipelineTiming,
    Program, Timing, TimingOptions,
};
use crate::error::{Error, Result};
use crate::fixed16::{self, FixedCodebook};
use crate::format::{entry_code, entry_run, Activation, EieLayer, Model};
use crate::schedule::{plan_pes, PePlan, EIE_MAX_CODES};
use std::borrow::Cow;
use std::sync::Arc;

/// Arithmetic of the GPU EIE kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize)]
pub enum GpuPrecision {
    /// f32 codebook, activations and accumulators.
    #[default]
    F32,
    /// EIE's 16-bit fixed point ([`crate::fixed16`]): bit-for-bit equal to the CPU model.
    Fixed16,
    /// f16 codebook, activations and products with f32 row sums (needs `SHADER_F16`).
    F16,
}

impl GpuPrecision {
    /// The arithmetic `ctx` can run: f32 and fixed16 everywhere, f16 where the adapter has
    /// `SHADER_F16`.
    pub fn available(ctx: &GpuContext) -> Vec<GpuPrecision> {
        let mut v = vec![GpuPrecision::F32, GpuPrecision::Fixed16];
        if ctx.has_f16() {
            v.push(GpuPrecision::F16);
        }
        v
    }

    /// Name used in backend names and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            GpuPrecision::F32 => "f32",
            GpuPrecision::Fixed16 => "fixed16",
            GpuPrecision::F16 => "f16",
        }
    }

    /// The crate-wide precision it is verified as.
    pub fn precision(self) -> crate::Precision {
        match self {
            GpuPrecision::F32 => crate::Precision::F32,
            GpuPrecision::Fixed16 => crate::Precision::Fixed16,
            GpuPrecision::F16 => crate::Precision::F16,
        }
    }
}

/// Options of [`GpuEngine::new`].
#[derive(Clone, Copy, Debug)]
pub struct EngineOptions {
    /// Arithmetic.
    pub precision: GpuPrecision,
    /// PE count per layer (workgroups of the EIE kernel).
    pub pes: PePlan,
    /// Largest batch one submission carries; larger batches are split.
    pub max_batch: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            precision: GpuPrecision::F32,
            pes: PePlan::Auto,
            max_batch: 64,
        }
    }
}

/// `Params` of `eie_spmv.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct EieParams {
    rows: u32,
    cols: u32,
    pes: u32,
    local_rows: u32,
    x_stride: u32,
    y_stride: u32,
    relu: u32,
    has_bias: u32,
    frac: u32,
    codes: u32,
    pad: [u32; 2],
}

/// `Params` of `compact_columns.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct CompactParams {
    n: u32,
    x_stride: u32,
    list_stride: u32,
    pad: u32,
}

/// Packs a layer's entries for the kernel: 8-bit `code | run << 4` (codebooks of at most 16
/// entries) or 16-bit `code | run << 8`, little-endian in u32 words; and the per-PE column
/// pointers made absolute (indices into the packed entries).
fn pack_layer(layer: &EieLayer) -> (Vec<u32>, Vec<u32>, bool) {
    let wide = layer.codebook().len() > 16;
    let entries = layer.entries();
    let per_word = if wide { 2 } else { 4 };
    let mut words = vec![0u32; entries.len().div_ceil(per_word).max(1)];
    for (i, &e) in entries.iter().enumerate() {
        let v = if wide {
            e as u32
        } else {
            entry_code(e) as u32 | (entry_run(e) as u32) << 4
        };
        let shift = (i % per_word) * (32 / per_word);
        words[i / per_word] |= v << shift;
    }
    let cols = layer.cols();
    let pe_ptr = layer.pe_ptr();
    let col_ptr = layer
        .col_ptr()
        .iter()
        .enumerate()
        .map(|(i, &c)| pe_ptr[i / (cols + 1)] + c)
        .collect();
    (words, col_ptr, wide)
}

/// Codebook then bias, as the kernel's `meta` words.
fn meta_words(layer: &EieLayer, precision: GpuPrecision) -> (Vec<u32>, u32) {
    let mut w = Vec::with_capacity(layer.codebook().len() + layer.rows());
    let mut frac = 0;
    match precision {
        GpuPrecision::Fixed16 => {
            let cb = FixedCodebook::new(layer.codebook());
            frac = cb.frac;
            w.extend(cb.values.iter().map(|&v| v as i32 as u32));
            if let Some(b) = layer.bias() {
                w.extend(b.iter().map(|&v| fixed16::bias_to_acc(v) as u32));
            }
        }
        GpuPrecision::F32 => {
            w.extend(layer.codebook().iter().map(|v| v.to_bits()));
            if let Some(b) = layer.bias() {
                w.extend(b.iter().map(|v| v.to_bits()));
            }
        }
        GpuPrecision::F16 => {
            // Codebook rounded to f16 (the kernel multiplies in f16), bias kept in f32.
            w.extend(
                layer
                    .codebook()
                    .iter()
                    .map(|&v| half::f16::from_f32(v).to_f32().to_bits()),
            );
            if let Some(b) = layer.bias() {
                w.extend(b.iter().map(|v| v.to_bits()));
            }
        }
    }
    (w, frac)
}

/// An EIE model resident on the GPU.
pub struct GpuEngine {
    program: Program,
    pes: Vec<usize>,
    precision: GpuPrecision,
    // Buffers referenced by the bind groups, kept alive with the engine.
    _buffers: Vec<wgpu::Buffer>,
}

impl GpuEngine {
    /// Uploads `model`, re-interleaving each layer over the PE count the plan gives it, and
    /// builds the pipelines, buffers and bind groups every later run reuses.
    pub fn new(ctx: Arc<GpuContext>, model: &Model, opts: EngineOptions) -> Result<GpuEngine> {
        if opts.max_batch == 0 {
            return Err(Error::InvalidArgument(
                "max_batch must be at least 1".into(),
            ));
        }
        let wg_limit = ctx.device_limits().max_compute_workgroups_per_dimension as usize;
        if opts.max_batch > wg_limit {
            return Err(Error::InvalidArgument(format!(
                "max_batch {} exceeds the device's {wg_limit} workgroups per dimension",
                opts.max_batch
            )));
        }
        let (kernel, encoding) = match opts.precision {
            GpuPrecision::F16 => {
                if !ctx.has_f16() {
                    return Err(Error::MissingFeature {
                        feature: "SHADER_F16".into(),
                        adapter: ctx.adapter_info().name.clone(),
                    });
                }
                (kernels::EIE_SPMV_F16, Encoding::F16)
            }
            GpuPrecision::Fixed16 => (kernels::EIE_SPMV, Encoding::Fixed16),
            GpuPrecision::F32 => (kernels::EIE_SPMV, Encoding::F32),
        };
        let limits = ctx.device_limits();
        let c = ctx.clone();
        ctx.scoped("building the EIE engine", move || {
            let ctx = c;
            let mut buffers = Vec::new();
            let mut dispatches = Vec::new();
            let mut pes = Vec::new();
            let layers = model.layers();
            let act: Vec<wgpu::Buffer> = std::iter::once(layers[0].cols())
                .chain(layers.iter().map(|l| l.rows()))
                .enumerate()
                .map(|(i, n)| {
                    activations(
                        &ctx,
                        &format!("eie/gpu/activations-{i}"),
                        opts.max_batch,
                        n,
                        encoding,
                    )
                })
                .collect::<Result<_>>()?;
            for (li, layer) in layers.iter().enumerate() {
                let p = plan_pes(opts.pes, layer.rows(), layer.cols(), layer.pes(), &limits)?;
                if layer.codebook().len() > EIE_MAX_CODES {
                    return Err(Error::InvalidArgument(format!(
                        "layer `{}`: codebook of {} entries exceeds {EIE_MAX_CODES}",
                        layer.name(),
                        layer.codebook().len()
                    )));
                }
                let layer: Cow<EieLayer> = if p == layer.pes() {
                    Cow::Borrowed(layer)
                } else {
                    Cow::Owned(layer.with_pes(p)?)
                };
                let (words, col_ptr, wide) = pack_layer(&layer);
                let (meta, frac) = meta_words(&layer, opts.precision);
                for (what, n) in [("entries", words.len()), ("column pointers", col_ptr.len())] {
                    if 4 * n as u64 > limits.max_binding() {
                        return Err(Error::InvalidArgument(format!(
                            "layer `{}`: {what} take {} bytes, over the device's storage binding \
                             limit of {}",
                            layer.name(),
                            4 * n,
                            limits.max_binding()
                        )));
                    }
                }
                let params = EieParams {
                    rows: layer.rows() as u32,
                    cols: layer.cols() as u32,
                    pes: p as u32,
                    local_rows: layer.rows().div_ceil(p) as u32,
                    x_stride: stride(layer.cols()) as u32,
                    y_stride: stride(layer.rows()) as u32,
                    relu: (layer.activation() == Activation::Relu) as u32,
                    has_bias: layer.bias().is_some() as u32,
                    frac,
                    codes: layer.codebook().len() as u32,
                    pad: [0; 2],
                };
                let constants: Vec<(&str, f64)> = match opts.precision {
                    GpuPrecision::F16 => vec![("WIDE", wide as u8 as f64)],
                    p => vec![
                        ("FIXED", (p == GpuPrecision::Fixed16) as u8 as f64),
                        ("WIDE", wide as u8 as f64),
                    ],
                };
                let pipeline = ctx.pipelines().get(&ctx, kernel, &constants)?;
                let lbl = |w: &str| format!("eie/gpu/layer-{li}/{w}");
                let ub = uniform_init(&ctx, &lbl("params"), bytemuck::bytes_of(&params));
                let eb = storage_init(&ctx, &lbl("entries"), bytemuck::cast_slice(&words));
                let cb = storage_init(&ctx, &lbl("col-ptr"), bytemuck::cast_slice(&col_ptr));
                let mb = storage_init(&ctx, &lbl("meta"), bytemuck::cast_slice(&meta));
                // Non-zero column list of each input vector: [max_batch][cols + 1] words.
                let list_stride = layer.cols() + 1;
                let list_bytes = (4 * opts.max_batch * list_stride) as u64;
                if list_bytes > limits.max_binding() {
                    return Err(Error::InvalidArgument(format!(
                        "layer `{}`: {list_bytes} bytes of non-zero column lists exceed the \
                         device's storage binding limit; lower max_batch",
                        layer.name()
                    )));
                }
                let nz = ctx.device().create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&lbl("nonzero-columns")),
                    size: list_bytes.max(16),
                    usage: wgpu::BufferUsages::STORAGE,
                    mapped_at_creation: false,
                });
                let compact_params = CompactParams {
                    n: layer.cols() as u32,
                    x_stride: stride(layer.cols()) as u32,
                    list_stride: list_stride as u32,
                    pad: 0,
                };
                let compact = ctx.pipelines().get(
                    &ctx,
                    kernels::COMPACT_COLUMNS,
                    &[("HALF", (encoding == Encoding::F16) as u8 as f64)],
                )?;
                let cub = uniform_init(
                    &ctx,
                    &lbl("compact-params"),
                    bytemuck::bytes_of(&compact_params),
                );
                let compact_bg = bind(
                    &ctx,
                    &lbl("compact-bind-group"),
                    &compact,
                    &[&cub, &act[li], &nz],
                );
                let bg = bind(
                    &ctx,
                    &lbl("bind-group"),
                    &pipeline,
                    &[&ub, &eb, &cb, &mb, &act[li], &act[li + 1], &nz],
                );
                dispatches.push(vec![
                    Dispatch {
                        pipeline: compact,
                        bind_group: compact_bg,
                        x: 1,
                        batch_group: 1,
                    },
                    Dispatch {
                        pipeline,
                        bind_group: bg,
                        x: p as u32,
                        batch_group: 1,
                    },
                ]);
                buffers.extend([ub, eb, cb, mb, cub, nz]);
                pes.push(p);
            }
            let input = act[0].clone();
            let output = act[act.len() - 1].clone();
            buffers.extend(act);
            Ok(GpuEngine {
                program: Program::new(
                    ctx.clone(),
                    dispatches,
                    input,
                    output,
                    model.input_size(),
                    model.output_size(),
                    opts.max_batch,
                    encoding,
                ),
                pes,
                precision: opts.precision,
                _buffers: buffers,
            })
        })?
    }

    /// PEs (workgroups) per layer.
    pub fn pes(&self) -> Vec<usize> {
        self.pes.clone()
    }

    /// The arithmetic.
    pub fn precision(&self) -> GpuPrecision {
        self.precision
    }

    /// The device context.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.program.ctx
    }

    /// Runs `input` (`batch * input_size` values), blocking; returns `batch * output_size`.
    pub fn run(&self, input: &[f32]) -> Result<Vec<f32>> {
        self.program.run(input)
    }

    /// The same as [`run`](Self::run) without blocking the caller: usable from any async
    /// runtime (the device is polled by the context's own thread). Many concurrent calls on
    /// one engine are safe.
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
