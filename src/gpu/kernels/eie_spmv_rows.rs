//! `eie_spmv_rows`: the EIE codes walked by rows (`shaders/eie_spmv_rows.wgsl`, after the EIE
//! prelude), for layers whose inputs are mostly non-zero. A workgroup computes
//! `WORKGROUP_SIZE / LANES` rows for a tile of inputs; `LANES` invocations share a row.

use super::common::{
    check_binding, meta_words, pack_entries, ActLayout, EieParams, EieSpec, LayerWords, LAYER,
    PARAMS, SATURATIONS, X, Y,
};
use super::{dispatch, Binding, Grid, Kernel};
use crate::error::{Error, Result};
use crate::format::{encode_runs, encoded_len, EieLayer, MAX_RUN};
use crate::gpu::device::GpuContext;
use crate::gpu::program::{storage_init, uniform_init, Dispatch};
use crate::precision::Precision;
use crate::schedule::{EieLayerPlan, EIE_BATCH_TILE, EIE_ROW_LANES, EIE_ROW_WIDE_SHARE};

/// WGSL source.
pub(crate) const SOURCE: &str = include_str!("../../../shaders/eie_spmv_rows.wgsl");

/// Every binding, in order: the prelude's five, row pointers in the layer buffer.
pub(crate) const BINDINGS: &[Binding] = &[PARAMS, LAYER, X, Y, SATURATIONS];
/// The prelude's `Params` (`pes` 1: global rows).
pub(crate) use super::common::PARAMS_LAYOUT;
/// `MAX_TILE`, the most inputs per workgroup ([`EIE_BATCH_TILE`]): it sizes each
/// invocation's private sums, which cannot be override-sized.
pub(crate) const MIRRORED: &[(&str, usize)] = &[("MAX_TILE", EIE_BATCH_TILE)];

/// The override constants: the prelude's, the inputs per workgroup (`TILE`) and the
/// invocations per row (`LANES`).
pub(crate) fn constants(eie: EieSpec, tile: usize, lanes: usize) -> Vec<(&'static str, f64)> {
    let mut c = eie.constants();
    c.extend([("TILE", tile as f64), ("LANES", lanes as f64)]);
    c
}

/// [`constants`] for one input and [`EIE_ROW_LANES`] lanes per row.
pub(crate) fn example_constants() -> Vec<(&'static str, f64)> {
    constants(EieSpec::example(), 1, EIE_ROW_LANES)
}

/// The layer buffer of `eie_spmv_rows.wgsl`: codebook, bias, row pointers `[rows + 1]`
/// (absolute entry indices) and the same codes re-encoded row by row, each entry's run counting
/// the zero columns before it in its row. Entries are 8-bit (`code | run << 4`, padding entries
/// for gaps over 15) or 16-bit (`code | run << 8`, padding only for gaps over 255): 16-bit for
/// codebooks of more than 16 entries, and wherever the padding that 4-bit runs need would
/// bring the 8-bit entries within [`EIE_ROW_WIDE_SHARE`] of the 16-bit ones' bytes (sparse rows,
/// e.g. VGG-6 at 4 %, whose gaps average 25 columns: half of its 8-bit entries would be padding,
/// which every invocation walks).
pub(crate) fn row_words(layer: &EieLayer, precision: Precision) -> Result<LayerWords> {
    let (mut w, frac) = meta_words(layer, precision);
    let bias_base = layer.codebook().len();
    let ptr_base = w.len();
    let (rows, codes) = (layer.rows(), layer.sparse_codes().by_rows());
    let row = |i: usize| codes.row(i).map(|(j, c)| (j as usize, c));
    let count = |max_run: u8| -> usize {
        (0..rows)
            .map(|i| encoded_len(row(i).map(|(j, _)| j), max_run))
            .sum()
    };
    let wide = layer.codebook().len() > 16
        || count(u8::MAX) as f64 * 2.0 <= count(MAX_RUN) as f64 * EIE_ROW_WIDE_SHARE;
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
        return Err(Error::LimitExceeded {
            what: format!(
                "words of the row-ordered entries of layer `{}` (the kernel's 32-bit indices)",
                layer.name()
            ),
            value: words as u64,
            limit: u32::MAX as u64,
        });
    }
    w.extend(ptrs.iter().map(|&p| p as u32));
    let entries_base = w.len();
    pack_entries(&mut w, &entries, wide);
    Ok(LayerWords {
        words: w,
        bases: [bias_base, ptr_base, entries_base],
        frac,
        wide,
    })
}

/// The dispatches of one layer walked by rows: one per batch range of `classes` (a single
/// input, and tiles of the plan's batched tile when the engine takes batches). `layer` is layer
/// `index` of the model, whose fixed16 write-back saturations go to that layer's word of
/// `counters`. Buffers go to `buffers`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dispatches(
    ctx: &GpuContext,
    layer: &EieLayer,
    precision: Precision,
    plan: &EieLayerPlan,
    classes: &[(usize, usize)],
    (input, xl): (&wgpu::Buffer, ActLayout),
    (output, yl): (&wgpu::Buffer, ActLayout),
    (counters, index): (&wgpu::Buffer, usize),
    lbl: &dyn Fn(&str) -> String,
    buffers: &mut Vec<wgpu::Buffer>,
) -> Result<Vec<Dispatch>> {
    let limits = ctx.device_limits();
    let lw = row_words(layer, precision)?;
    check_binding(layer, &lw.words, "row pointers", &limits)?;
    let groups = layer.rows().div_ceil(plan.rows_per_workgroup());
    if groups > limits.max_compute_workgroups_per_dimension as usize {
        return Err(Error::LimitExceeded {
            what: format!(
                "row-walk workgroups of layer `{}` ({} rows; this device's workgroups per \
                 dimension)",
                layer.name(),
                layer.rows()
            ),
            value: groups as u64,
            limit: limits.max_compute_workgroups_per_dimension as u64,
        });
    }
    let lb = storage_init(ctx, &lbl("rows/layer"), bytemuck::cast_slice(&lw.words));
    let eie = EieSpec {
        precision,
        wide: lw.wide,
    };
    let mut out = Vec::new();
    for &(lo, hi) in classes {
        let tile = plan.launch(lo).tile;
        let params = EieParams {
            pes: 1,
            local_rows: layer.rows() as u32,
            slices: 1,
            slice_cols: 0,
            ..EieParams::new(layer, index, xl, yl, &lw)
        };
        let ub = uniform_init(
            ctx,
            &lbl(&format!("rows/tile-{tile}/params")),
            bytemuck::bytes_of(&params),
        );
        out.push(dispatch(
            ctx,
            Kernel::EieSpmvRows,
            &constants(eie, tile, plan.row_lanes),
            &lbl(&format!("rows/tile-{tile}/bind-group")),
            &[
                (PARAMS, &ub),
                (LAYER, &lb),
                (X, input),
                (Y, output),
                (SATURATIONS, counters),
            ],
            Grid {
                x: groups,
                batch_group: tile,
                y_per_group: 1,
                batches: (lo, hi),
            },
        )?);
        buffers.push(ub);
    }
    buffers.push(lb);
    Ok(out)
}
