//! [`GpuEngine`]: a whole EIE model on the GPU: per layer one `eie_spmv` dispatch (leading
//! non-zero detection, the column walk, bias, ReLU and the next layer's non-zero bitmap inside
//! it) or, where the layer's columns are split over several workgroups, that dispatch and an
//! `eie_reduce` dispatch adding the partial sums in slice order; or one `eie_spmv_rows`
//! dispatch for a layer walked by rows. Every layer in one compute pass and one submission, with
//! buffers, bind groups and pipelines built once.

use super::device::GpuContext;
use super::kernels;
use super::program::{
    bind, bind_at, storage_init, stride, uniform_init, zeroed, Dispatch, Encoding, InputBits,
    PipelineTiming, Program, Timing, TimingOptions,
};
use crate::error::{Error, Result};
use crate::fixed16::{self, FixedCodebook};
use crate::format::{
    encode_runs, encoded_len, entry_code, entry_run, Activation, EieLayer, Model, MAX_RUN,
};
use crate::reference::Precision;
use crate::schedule::{
    EieLayerPlan, PePlan, ScheduleOverride, Walk, EIE_BATCH_TILE, EIE_MAX_CODES, WORKGROUP_SIZE,
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

/// `Params` of `eie_spmv.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct EieParams {
    rows: u32,
    cols: u32,
    pes: u32,
    local_rows: u32,
    slices: u32,
    slice_cols: u32,
    x_stride: u32,
    x_bits_base: u32,
    x_bits_stride: u32,
    y_stride: u32,
    y_bits_base: u32,
    y_bits_stride: u32,
    codes: u32,
    bias_base: u32,
    ptr_base: u32,
    entries_base: u32,
    relu: u32,
    has_bias: u32,
    frac: u32,
    part_base: u32,
    shift: i32,
}

impl EieParams {
    /// The fields both walks share: shape, activation strides and bitmaps, the layer buffer's
    /// offsets, write-back flags; the walk-specific ones (PEs, slices, partial sums) zero.
    fn new(
        layer: &EieLayer,
        xl: ActLayout,
        yl: ActLayout,
        [bias_base, ptr_base, entries_base]: [usize; 3],
        frac: u32,
    ) -> Self {
        EieParams {
            rows: layer.rows() as u32,
            cols: layer.cols() as u32,
            pes: 0,
            local_rows: 0,
            slices: 0,
            slice_cols: 0,
            x_stride: xl.stride as u32,
            x_bits_base: xl.bits_base as u32,
            x_bits_stride: xl.bits_stride as u32,
            y_stride: yl.stride as u32,
            y_bits_base: yl.bits_base as u32,
            y_bits_stride: yl.bits_stride as u32,
            codes: layer.codebook().len() as u32,
            bias_base: bias_base as u32,
            ptr_base: ptr_base as u32,
            entries_base: entries_base as u32,
            relu: (layer.activation() == Activation::Relu) as u32,
            has_bias: layer.bias().is_some() as u32,
            frac,
            part_base: 0,
            shift: layer.fixed16_format().write_back_shift(),
        }
    }
}

/// The layout of one activation buffer of the EIE engine: `[batch][stride]` value words, then
/// `[batch][bits_stride]` non-zero bitmap words from word `bits_base`.
#[derive(Clone, Copy, Debug)]
struct ActLayout {
    stride: usize,
    bits_base: usize,
    bits_stride: usize,
    words: usize,
}

impl ActLayout {
    fn new(n: usize, batch: usize, encoding: Encoding) -> Self {
        // f16 values are packed two per word; stride() is even.
        let stride = stride(n) * encoding.bytes() / 4;
        let bits_stride = n.div_ceil(32);
        ActLayout {
            stride,
            bits_base: batch * stride,
            bits_stride,
            words: batch * (stride + bits_stride),
        }
    }
}

/// The layer buffer of `eie_spmv.wgsl`: codebook, bias, column pointers (absolute entry
/// indices, PE after PE) and the packed entries (8-bit `code | run << 4` for codebooks of at
/// most 16 entries, else 16-bit `code | run << 8`, little-endian in u32 words). Returns the
/// words, the bias, pointer and entry offsets, the fixed16 fraction bits and whether entries
/// are 16-bit.
fn layer_words(layer: &EieLayer, precision: Precision) -> (Vec<u32>, [usize; 3], u32, bool) {
    let (mut w, frac) = meta_words(layer, precision);
    let bias_base = layer.codebook().len();
    let ptr_base = w.len();
    let cols = layer.cols();
    let pe_ptr = layer.pe_ptr();
    w.extend(
        layer
            .col_ptr()
            .iter()
            .enumerate()
            .map(|(i, &c)| pe_ptr[i / (cols + 1)] + c),
    );
    let entries_base = w.len();
    let wide = layer.codebook().len() > 16;
    pack_entries(&mut w, layer.entries(), wide);
    (w, [bias_base, ptr_base, entries_base], frac, wide)
}

/// Appends entries packed for the kernels: 8-bit `code | run << 4` (four per word) or, `wide`,
/// 16-bit `code | run << 8` (two per word), little-endian; at least one word.
fn pack_entries(w: &mut Vec<u32>, entries: &[u16], wide: bool) {
    let base = w.len();
    let per_word = if wide { 2 } else { 4 };
    w.resize(base + entries.len().div_ceil(per_word).max(1), 0);
    for (i, &e) in entries.iter().enumerate() {
        let v = if wide {
            e as u32
        } else {
            entry_code(e) as u32 | (entry_run(e) as u32) << 4
        };
        w[base + i / per_word] |= v << ((i % per_word) * (32 / per_word));
    }
}

/// The layer buffer of `eie_spmv_rows.wgsl`: codebook, bias, row pointers `[rows + 1]`
/// (absolute entry indices) and the same codes re-encoded row by row, each entry's run counting
/// the zero columns before it in its row. Entries are 8-bit (`code | run << 4`, padding entries
/// for gaps over 15) or 16-bit (`code | run << 8`, padding only for gaps over 255): 16-bit for
/// codebooks of more than 16 entries, and wherever the padding that 4-bit runs need would
/// bring the 8-bit entries within [`EIE_ROW_WIDE_SHARE`](crate::schedule::EIE_ROW_WIDE_SHARE) of the 16-bit ones' bytes (sparse rows,
/// e.g. VGG-6 at 4 %, whose gaps average 25 columns: half of its 8-bit entries would be padding,
/// which every invocation walks).
fn row_words(layer: &EieLayer, precision: Precision) -> Result<(Vec<u32>, [usize; 3], u32, bool)> {
    let (mut w, frac) = meta_words(layer, precision);
    let bias_base = layer.codebook().len();
    let ptr_base = w.len();
    let (rows, codes) = (layer.rows(), layer.sparse_codes());
    // Counting pass from column order to row order: columns come out increasing in each row.
    let mut start = vec![0usize; rows + 1];
    for &r in &codes.row_idx {
        start[r as usize + 1] += 1;
    }
    for i in 0..rows {
        start[i + 1] += start[i];
    }
    let mut by_row = vec![(0usize, 0u8); codes.nnz()];
    let mut fill = start.clone();
    for j in 0..codes.cols {
        for k in codes.col_ptr[j]..codes.col_ptr[j + 1] {
            let r = codes.row_idx[k] as usize;
            by_row[fill[r]] = (j, codes.code[k]);
            fill[r] += 1;
        }
    }
    let row = |i: usize| by_row[start[i]..start[i + 1]].iter().copied();
    let count = |max_run: u8| -> usize {
        (0..rows)
            .map(|i| encoded_len(row(i).map(|(j, _)| j), max_run))
            .sum()
    };
    let wide = layer.codebook().len() > 16
        || count(u8::MAX) as f64 * 2.0
            <= count(MAX_RUN) as f64 * crate::schedule::EIE_ROW_WIDE_SHARE;
    let max_run = if wide { u8::MAX } else { MAX_RUN };
    let mut entries: Vec<u16> = Vec::with_capacity(codes.nnz() + codes.nnz() / 4);
    let mut ptrs = Vec::with_capacity(rows + 1);
    for i in 0..rows {
        ptrs.push(entries.len());
        encode_runs(row(i), max_run, &mut entries)?;
    }
    ptrs.push(entries.len());
    let words = ptrs.len() + entries.len() / 2;
    if words > u32::MAX as usize || entries.len() > u32::MAX as usize {
        return Err(Error::InvalidArgument(format!(
            "layer `{}`: {} row-ordered entries exceed the kernel's 32-bit indices",
            layer.name(),
            entries.len()
        )));
    }
    w.extend(ptrs.iter().map(|&p| p as u32));
    let entries_base = w.len();
    pack_entries(&mut w, &entries, wide);
    Ok((w, [bias_base, ptr_base, entries_base], frac, wide))
}

/// Codebook then bias, as the kernel's first words.
fn meta_words(layer: &EieLayer, precision: Precision) -> (Vec<u32>, u32) {
    let mut w = Vec::with_capacity(layer.codebook().len() + layer.rows());
    let mut frac = 0;
    match precision {
        Precision::Fixed16 => {
            let cb = FixedCodebook::new(layer.codebook());
            frac = cb.frac;
            w.extend(cb.values.iter().map(|&v| v as i32 as u32));
            if let Some(b) = layer.bias() {
                let acc_frac = layer.fixed16_format().acc_frac();
                w.extend(b.iter().map(|&v| fixed16::bias_to_acc(v, acc_frac) as u32));
            }
        }
        Precision::F32 => {
            w.extend(layer.codebook().iter().map(|v| v.to_bits()));
            if let Some(b) = layer.bias() {
                w.extend(b.iter().map(|v| v.to_bits()));
            }
        }
        Precision::F16 => {
            // Codebook rounded to f16 (the stored weight precision), bias kept in f32.
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

/// A layer buffer of `words` must fit one storage binding of the device (and the kernels'
/// 32-bit word indices); `pointers` names its pointers in the error.
fn check_binding(
    layer: &EieLayer,
    words: &[u32],
    pointers: &str,
    limits: &crate::schedule::DeviceLimits,
) -> Result<()> {
    if 4 * words.len() as u64 > limits.max_binding() || words.len() > u32::MAX as usize {
        return Err(Error::InvalidArgument(format!(
            "layer `{}`: {} bytes of codebook, {pointers} and entries exceed the device's \
             storage binding limit of {}",
            layer.name(),
            4 * words.len(),
            limits.max_binding()
        )));
    }
    Ok(())
}

/// The dispatches of one layer walked by rows (`eie_spmv_rows.wgsl`): one for a single input,
/// one for tiles of the plan's batched tile when the engine takes batches. Buffers go to
/// `buffers`.
#[allow(clippy::too_many_arguments)]
fn row_dispatches(
    ctx: &Arc<GpuContext>,
    layer: &EieLayer,
    opts: &EngineOptions,
    plan: &EieLayerPlan,
    (input, xl): (&wgpu::Buffer, ActLayout),
    (output, yl): (&wgpu::Buffer, ActLayout),
    lbl: &dyn Fn(&str) -> String,
    buffers: &mut Vec<wgpu::Buffer>,
) -> Result<Vec<Dispatch>> {
    let limits = ctx.device_limits();
    let (words, [bias_base, ptr_base, entries_base], frac, wide) =
        row_words(layer, opts.precision)?;
    check_binding(layer, &words, "row pointers", &limits)?;
    let groups = layer.rows().div_ceil(plan.rows_per_workgroup());
    if groups > limits.max_compute_workgroups_per_dimension as usize {
        return Err(Error::InvalidArgument(format!(
            "layer `{}`: {} rows need more workgroups than the device's {} per dimension",
            layer.name(),
            layer.rows(),
            limits.max_compute_workgroups_per_dimension
        )));
    }
    let lb = storage_init(ctx, &lbl("rows/layer"), bytemuck::cast_slice(&words));
    let tile = plan.batched.tile;
    let classes: &[(usize, usize, usize)] = if opts.max_batch > 1 {
        &[(1, 1, 1), (2, usize::MAX, tile)]
    } else {
        &[(1, 1, 1)]
    };
    let mut out = Vec::new();
    for &(lo, hi, tile) in classes {
        let params = EieParams {
            pes: 1,
            local_rows: layer.rows() as u32,
            slices: 1,
            slice_cols: 0,
            ..EieParams::new(layer, xl, yl, [bias_base, ptr_base, entries_base], frac)
        };
        let constants = [
            ("FIXED", (opts.precision == Precision::Fixed16) as u8 as f64),
            ("HALF", (opts.precision == Precision::F16) as u8 as f64),
            ("WIDE", wide as u8 as f64),
            ("TILE", tile as f64),
            ("LANES", plan.row_lanes as f64),
        ];
        let pipeline = ctx
            .pipelines()
            .get(ctx, kernels::EIE_SPMV_ROWS, &constants)?;
        let ub = uniform_init(
            ctx,
            &lbl(&format!("rows/tile-{tile}/params")),
            bytemuck::bytes_of(&params),
        );
        let bg = bind(
            ctx,
            &lbl(&format!("rows/tile-{tile}/bind-group")),
            &pipeline,
            &[&ub, &lb, input, output],
        );
        out.push(Dispatch {
            pipeline,
            bind_group: bg,
            x: groups as u32,
            batch_group: tile as u32,
            y_per_group: 1,
            batches: (lo, hi),
        });
        buffers.push(ub);
    }
    buffers.push(lb);
    Ok(out)
}

/// The dispatches of one layer walked by columns (`eie_spmv.wgsl`, and `eie_reduce.wgsl` after
/// it where the columns are split into slices): for a single input, and for tiles of inputs
/// when the engine takes batches (`padded`: the largest batch, whole tiles). `layer` is
/// interleaved over the plan's PEs. Buffers go to `buffers`.
#[allow(clippy::too_many_arguments)]
fn column_dispatches(
    ctx: &Arc<GpuContext>,
    layer: &EieLayer,
    opts: &EngineOptions,
    plan: &EieLayerPlan,
    padded: usize,
    (input, xl): (&wgpu::Buffer, ActLayout),
    (output, yl): (&wgpu::Buffer, ActLayout),
    lbl: &dyn Fn(&str) -> String,
    buffers: &mut Vec<wgpu::Buffer>,
) -> Result<Vec<Dispatch>> {
    let limits = ctx.device_limits();
    let (words, [bias_base, ptr_base, entries_base], frac, wide) =
        layer_words(layer, opts.precision);
    check_binding(layer, &words, "pointers", &limits)?;
    let lb = storage_init(ctx, &lbl("layer"), bytemuck::cast_slice(&words));
    let classes: &[(usize, usize)] = if opts.max_batch > 1 {
        &[(1, 1), (2, usize::MAX)]
    } else {
        &[(1, 1)]
    };
    // Partial sums [batch][slices][pes][local rows], for the largest batch a class serves.
    let partial_words = classes
        .iter()
        .map(|&(lo, _)| {
            let launch = plan.launch(lo);
            let batch = if lo == 1 { 1 } else { padded };
            if launch.slices > 1 {
                batch * launch.slices * plan.pes * plan.local_rows
            } else {
                0
            }
        })
        .max()
        .unwrap_or(0);
    let partials = zeroed(ctx, &lbl("partials"), partial_words)?;
    let fixed = (opts.precision == Precision::Fixed16) as u8 as f64;
    let half = (opts.precision == Precision::F16) as u8 as f64;
    let mut out = Vec::new();
    for &(lo, hi) in classes {
        let launch = plan.launch(lo);
        let params = EieParams {
            pes: plan.pes as u32,
            local_rows: plan.local_rows as u32,
            slices: launch.slices as u32,
            slice_cols: launch.slice_cols as u32,
            ..EieParams::new(layer, xl, yl, [bias_base, ptr_base, entries_base], frac)
        };
        let constants = [
            ("FIXED", fixed),
            ("HALF", half),
            ("WIDE", wide as u8 as f64),
            ("GROUPS", launch.groups as f64),
            ("TILE", launch.tile as f64),
            ("ACC_WORDS", launch.acc_words as f64),
        ];
        let pipeline = ctx.pipelines().get(ctx, kernels::EIE_SPMV, &constants)?;
        let tag = format!("tile-{}", launch.tile);
        let ub = uniform_init(
            ctx,
            &lbl(&format!("{tag}/params")),
            bytemuck::bytes_of(&params),
        );
        let bg = bind(
            ctx,
            &lbl(&format!("{tag}/bind-group")),
            &pipeline,
            &[&ub, &lb, input, output, &partials],
        );
        out.push(Dispatch {
            pipeline,
            bind_group: bg,
            x: (launch.slices * plan.pes) as u32,
            batch_group: launch.tile as u32,
            y_per_group: 1,
            batches: (lo, hi),
        });
        if launch.slices > 1 {
            let constants = [("FIXED", fixed), ("HALF", half)];
            let pipeline = ctx.pipelines().get(ctx, kernels::EIE_REDUCE, &constants)?;
            let bg = bind_at(
                ctx,
                &lbl(&format!("{tag}/reduce-bind-group")),
                &pipeline,
                &[(0, &ub), (1, &lb), (3, output), (4, &partials)],
            );
            // One invocation per row and input of every tile (padding inputs included, so that
            // no output slot keeps a stale value).
            out.push(Dispatch {
                pipeline,
                bind_group: bg,
                x: layer.rows().div_ceil(WORKGROUP_SIZE) as u32,
                batch_group: launch.tile as u32,
                y_per_group: launch.tile as u32,
                batches: (lo, hi),
            });
        }
        buffers.push(ub);
    }
    buffers.extend([lb, partials]);
    Ok(out)
}

/// An EIE model resident on the GPU. Cloning is cheap (the device state is shared), and one
/// engine serves many threads and tasks at once (`Send + Sync`).
#[derive(Clone)]
pub struct GpuEngine {
    inner: Arc<Resident>,
}

struct Resident {
    program: Program,
    plans: Vec<EieLayerPlan>,
    precision: Precision,
    forced_walk: Option<Walk>,
    // Buffers referenced by the bind groups, kept alive with the engine.
    _buffers: Vec<wgpu::Buffer>,
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
            return Err(Error::InvalidArgument(format!(
                "max_batch {} needs {tiles} workgroup rows, over the device's {wg_limit}",
                opts.max_batch
            )));
        }
        let encoding = match opts.precision {
            Precision::F16 => Encoding::F16,
            Precision::Fixed16 => Encoding::Fixed16,
            Precision::F32 => Encoding::F32,
        };
        // Every buffer holds whole tiles.
        let padded = tiles * EIE_BATCH_TILE;
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
            let ov = ScheduleOverride {
                walk: opts.walk.or(opts.schedule.walk),
                ..opts.schedule
            }
            .or(ScheduleOverride::from_env()?);
            for (li, layer) in layers.iter().enumerate() {
                if layer.codebook().len() > EIE_MAX_CODES {
                    return Err(Error::InvalidArgument(format!(
                        "layer `{}`: codebook of {} entries exceeds {EIE_MAX_CODES}",
                        layer.name(),
                        layer.codebook().len()
                    )));
                }
                let plan = EieLayerPlan::with_override(
                    opts.pes,
                    layer.rows(),
                    layer.cols(),
                    layer.pes(),
                    layer.entry_bytes(),
                    &limits,
                    &ov,
                )?;
                let lbl = |w: &str| format!("eie/gpu/layer-{li}/{w}");
                let (x, y) = ((&act[li], layouts[li]), (&act[li + 1], layouts[li + 1]));
                dispatches.push(match plan.walk {
                    Walk::Rows => {
                        row_dispatches(&ctx, layer, &opts, &plan, x, y, &lbl, &mut buffers)?
                    }
                    Walk::Columns => {
                        let layer: Cow<EieLayer> = if plan.pes == layer.pes() {
                            Cow::Borrowed(layer)
                        } else {
                            Cow::Owned(layer.with_pes(plan.pes)?)
                        };
                        column_dispatches(
                            &ctx,
                            &layer,
                            &opts,
                            &plan,
                            padded,
                            x,
                            y,
                            &lbl,
                            &mut buffers,
                        )?
                    }
                });
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
            program.input_bits = Some(InputBits {
                base: layouts[0].bits_base,
                stride: layouts[0].bits_stride,
                tile: plans.first().map_or(1, |p| p.batched.tile),
            });
            Ok(GpuEngine {
                inner: Arc::new(Resident {
                    program,
                    plans,
                    precision: opts.precision,
                    forced_walk: ov.walk,
                    _buffers: buffers,
                }),
            })
        })?
    }

    /// Each layer's schedule: PEs, rows per PE, and the launches at batch 1 and above.
    pub fn plans(&self) -> &[EieLayerPlan] {
        &self.inner.plans
    }

    /// PEs per layer.
    pub fn pes(&self) -> Vec<usize> {
        self.inner.plans.iter().map(|p| p.pes).collect()
    }

    /// The arithmetic.
    pub fn precision(&self) -> Precision {
        self.inner.precision
    }

    /// How each layer is walked.
    pub fn walks(&self) -> Vec<Walk> {
        self.inner.plans.iter().map(|p| p.walk).collect()
    }

    /// The kernel's name in reports: `gpu-eie/f32` when each layer is walked as the planner
    /// picks for the device, `gpu-eie-columns/f32` or `gpu-eie-rows/f32` when a walk is forced
    /// (by the options or the environment).
    pub fn name(&self) -> String {
        let walk = match self.inner.forced_walk {
            None => String::new(),
            Some(w) => format!("-{}", w.name()),
        };
        format!("gpu-eie{walk}/{}", self.inner.precision.name())
    }

    /// The device context.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.inner.program.ctx
    }

    /// Values per input vector.
    pub fn input_size(&self) -> usize {
        self.inner.program.in_size
    }

    /// Values per output vector.
    pub fn output_size(&self) -> usize {
        self.inner.program.out_size
    }

    /// Runs `input` (`batch * input_size` values), blocking; returns `batch * output_size`.
    pub fn run(&self, input: &[f32]) -> Result<Vec<f32>> {
        self.inner.program.run(input)
    }

    /// The same as [`run`](Self::run) without blocking the caller: usable from any async
    /// runtime (the device is polled by the context's own thread). Many concurrent calls on
    /// one engine are safe.
    pub async fn run_async(&self, input: &[f32]) -> Result<Vec<f32>> {
        self.inner.program.run_async(input).await
    }

    /// [`run_async`](Self::run_async) as an owned `'static` future (it holds a clone of the
    /// engine and the input), for `tokio::spawn` and the like.
    pub fn run_owned(
        &self,
        input: Vec<f32>,
    ) -> impl std::future::Future<Output = Result<Vec<f32>>> + Send + 'static {
        let engine = self.clone();
        async move { engine.inner.program.run_async(&input).await }
    }

    /// Times the model on `input` (see [`Timing`]).
    pub fn time(&self, input: &[f32], opts: &TimingOptions) -> Result<Timing> {
        self.inner.program.time(input, opts)
    }

    /// Pipelined single-frame runs with `in_flight` submissions outstanding.
    pub fn pipelined(
        &self,
        inputs: &[Vec<f32>],
        frames: usize,
        in_flight: usize,
    ) -> Result<PipelineTiming> {
        self.inner.program.pipelined(inputs, frames, in_flight)
    }
}
