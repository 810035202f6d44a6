//! `eie_spmv`: EIE's column walk (`shaders/eie_spmv.wgsl`, after the EIE prelude). The
//! dispatch is `(slices × PEs, tiles)`: workgroup `(s, p, t)` is PE `p` walking column slice `s`
//! for tile `t` of the batch, from the input's non-zero bitmap; with one slice it writes the
//! layer's output back, otherwise it stores partial sums that [`eie_reduce`](super::eie_reduce)
//! adds in the next dispatch.

use super::common::{
    check_binding, meta_words, pack_entries, ActLayout, EieParams, EieSpec, LayerWords, LAYER,
    PARAMS, SATURATIONS, X, Y,
};
use super::{dispatch, eie_reduce, Access, Binding, Grid, Kernel};
use crate::error::Result;
use crate::format::EieLayer;
use crate::gpu::device::GpuContext;
use crate::gpu::program::{storage_init, uniform_init, zeroed, Dispatch};
use crate::precision::Precision;
use crate::schedule::{EieLaunch, EieLayerPlan, EIE_ACC_WORDS, EIE_LIST_WORDS, EIE_MAX_GROUPS};

/// WGSL source.
pub(crate) const SOURCE: &str = include_str!("../../../shaders/eie_spmv.wgsl");

/// `partials`: partial sums `[batch][slices][PEs][local rows]` of a layer whose columns are
/// split into slices (read by `eie_reduce`).
pub(crate) const PARTIALS: Binding = Binding::new(5, "partials", Access::ReadWrite);
/// Every binding, in order.
pub(crate) const BINDINGS: &[Binding] = &[PARAMS, LAYER, X, Y, SATURATIONS, PARTIALS];
/// The prelude's `Params`.
pub(crate) use super::common::PARAMS_LAYOUT;
/// No `const` of its own mirrors a host constant (the prelude's `WG` does).
pub(crate) const MIRRORED: &[(&str, usize)] = &[];

/// Words of the non-zero bitmap of one chunk of listed columns (`MAX_CHUNK_WORDS`): a chunk
/// is at most [`EIE_LIST_WORDS`] columns.
pub(crate) const CHUNK_WORDS: usize = EIE_LIST_WORDS / 32;

/// The override constants of a pipeline for `launch`: the prelude's, the column groups and
/// the tile (`GROUPS`, `TILE`), and the workgroup arrays' sizes: accumulator words
/// (`ACC_WORDS`, per layer), listed columns (`LIST_WORDS`, [`EIE_LIST_WORDS`]), bitmap words
/// of a chunk (`MAX_CHUNK_WORDS`, [`CHUNK_WORDS`]) and group counts (`MAX_GROUPS`,
/// [`EIE_MAX_GROUPS`]).
pub(crate) fn constants(eie: EieSpec, launch: &EieLaunch) -> Vec<(&'static str, f64)> {
    let mut c = eie.constants();
    c.extend([
        ("GROUPS", launch.groups as f64),
        ("TILE", launch.tile as f64),
        ("ACC_WORDS", launch.acc_words as f64),
        ("LIST_WORDS", EIE_LIST_WORDS as f64),
        ("MAX_CHUNK_WORDS", CHUNK_WORDS as f64),
        ("MAX_GROUPS", EIE_MAX_GROUPS as f64),
    ]);
    c
}

/// [`constants`] for one input, [`EIE_MAX_GROUPS`] groups and [`EIE_ACC_WORDS`].
pub(crate) fn example_constants() -> Vec<(&'static str, f64)> {
    constants(
        EieSpec::example(),
        &EieLaunch {
            tile: 1,
            groups: EIE_MAX_GROUPS,
            lanes: crate::schedule::WORKGROUP_SIZE / EIE_MAX_GROUPS,
            slices: 1,
            slice_cols: 32,
            acc_words: EIE_ACC_WORDS,
        },
    )
}

/// The layer buffer of `eie_spmv.wgsl`: codebook, bias, column pointers (absolute entry
/// indices, PE after PE) and the packed entries (8-bit `code | run << 4` for codebooks of at
/// most 16 entries, else 16-bit `code | run << 8`, little-endian in u32 words).
pub(crate) fn layer_words(layer: &EieLayer, precision: Precision) -> LayerWords {
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
    LayerWords {
        words: w,
        bases: [bias_base, ptr_base, entries_base],
        frac,
        wide,
    }
}

/// The dispatches of one layer walked by columns (`eie_spmv.wgsl`, and `eie_reduce.wgsl` after
/// it where the columns are split into slices), one set per batch range of `classes` (a
/// single input, and tiles of inputs when the engine takes batches; `padded`: the largest
/// batch, whole tiles). `layer` is interleaved over the plan's PEs and is layer `index` of the
/// model, whose fixed16 write-back saturations go to that layer's word of `counters`
/// ([`RunCounters`](super::common::RunCounters)). Buffers go to `buffers`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dispatches(
    ctx: &GpuContext,
    layer: &EieLayer,
    precision: Precision,
    plan: &EieLayerPlan,
    classes: &[(usize, usize)],
    padded: usize,
    (input, xl): (&wgpu::Buffer, ActLayout),
    (output, yl): (&wgpu::Buffer, ActLayout),
    (counters, index): (&wgpu::Buffer, usize),
    lbl: &dyn Fn(&str) -> String,
    buffers: &mut Vec<wgpu::Buffer>,
) -> Result<Vec<Dispatch>> {
    let limits = ctx.device_limits();
    let lw = layer_words(layer, precision);
    check_binding(layer, &lw.words, "pointers", &limits)?;
    let lb = storage_init(ctx, &lbl("layer"), bytemuck::cast_slice(&lw.words));
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
    let eie = EieSpec {
        precision,
        wide: lw.wide,
    };
    let mut out = Vec::new();
    for &(lo, hi) in classes {
        let launch = plan.launch(lo);
        let params = EieParams {
            pes: plan.pes as u32,
            local_rows: plan.local_rows as u32,
            slices: launch.slices as u32,
            slice_cols: launch.slice_cols as u32,
            ..EieParams::new(layer, index, xl, yl, &lw)
        };
        let tag = format!("tile-{}", launch.tile);
        let ub = uniform_init(
            ctx,
            &lbl(&format!("{tag}/params")),
            bytemuck::bytes_of(&params),
        );
        out.push(dispatch(
            ctx,
            Kernel::EieSpmv,
            &constants(eie, launch),
            &lbl(&format!("{tag}/bind-group")),
            &[
                (PARAMS, &ub),
                (LAYER, &lb),
                (X, input),
                (Y, output),
                (SATURATIONS, counters),
                (PARTIALS, &partials),
            ],
            Grid {
                x: launch.slices * plan.pes,
                batch_group: launch.tile,
                y_per_group: 1,
                batches: (lo, hi),
            },
        )?);
        if launch.slices > 1 {
            out.push(eie_reduce::dispatch_reduce(
                ctx,
                precision,
                &lbl(&format!("{tag}/reduce-bind-group")),
                [&ub, &lb, output, counters, &partials],
                layer.rows(),
                launch.tile,
                (lo, hi),
            )?);
        }
        buffers.push(ub);
    }
    buffers.extend([lb, partials]);
    Ok(out)
}
