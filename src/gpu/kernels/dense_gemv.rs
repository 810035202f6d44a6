//! `dense_gemv`: the dense f32 GEMV/GEMM baseline (`shaders/dense_gemv.wgsl`). A workgroup
//! computes [`ROWS_PER_WORKGROUP`] rows of one row tile for [`BATCH_TILE`] inputs, `LANES`
//! invocations per row; a matrix larger than one storage binding is split into row tiles
//! ([`dense_tiles`]), each with its own weight buffer and dispatch.

use super::{dispatch, Access, Binding, Grid, Kernel};
use crate::error::Result;
use crate::format::{Activation, EieLayer};
use crate::gpu::device::GpuContext;
use crate::gpu::program::{storage_init, stride, uniform_init, Dispatch};
use crate::schedule::{dense_tiles, BATCH_TILE, ROWS_PER_WORKGROUP, WORKGROUP_SIZE};

/// WGSL source.
pub(crate) const SOURCE: &str = include_str!("../../../shaders/dense_gemv.wgsl");

params_struct! {
    /// `Params` of `dense_gemv.wgsl`: one row tile's shape and flags.
    struct DenseParams {
        tile_rows: u32,
        row_offset: u32,
        cols4: u32,
        x_stride4: u32,
        y_stride: u32,
        relu: u32,
        has_bias: u32,
        pad0: u32,
    }
}

/// The host's layout of [`DenseParams`].
pub(crate) const PARAMS_LAYOUT: super::ParamsLayout = DenseParams::LAYOUT;

/// `params` (uniform): the tile's [`DenseParams`].
pub(crate) const PARAMS: Binding = Binding::new(0, "params", Access::Uniform);
/// `w`: the tile's weights, `[tile rows][cols4]` `vec4<f32>`, row-major.
pub(crate) const WEIGHTS: Binding = Binding::new(1, "w", Access::Read);
/// `bias`: the layer's bias, `[rows]` f32 (one zero when it has none).
pub(crate) const BIAS: Binding = Binding::new(2, "bias", Access::Read);
/// `x`: inputs `[batch padded to BATCH_TILE][x_stride4]` `vec4<f32>`.
pub(crate) const X: Binding = Binding::new(3, "x", Access::Read);
/// `y`: outputs `[batch padded to BATCH_TILE][y_stride]` f32.
pub(crate) const Y: Binding = Binding::new(4, "y", Access::ReadWrite);
/// Every binding, in order.
pub(crate) const BINDINGS: &[Binding] = &[PARAMS, WEIGHTS, BIAS, X, Y];

/// WGSL `const`s that mirror host constants: `WG` (`@workgroup_size` repeats it) and
/// `BATCH_TILE`, the inputs per workgroup (one per `vec4` component).
pub(crate) const MIRRORED: &[(&str, usize)] = &[("WG", WORKGROUP_SIZE), ("BATCH_TILE", BATCH_TILE)];

/// Invocations per row.
pub(crate) const LANES: usize = WORKGROUP_SIZE / ROWS_PER_WORKGROUP;
const _: () = assert!(
    LANES * ROWS_PER_WORKGROUP == WORKGROUP_SIZE && LANES.is_power_of_two() && LANES >= BATCH_TILE,
    "a row's lanes reduce in a tree and the first BATCH_TILE of them write its outputs"
);

/// The override constants: rows per workgroup (`ROWS`, [`ROWS_PER_WORKGROUP`]) and
/// invocations per row (`LANES`).
pub(crate) fn constants() -> Vec<(&'static str, f64)> {
    vec![("ROWS", ROWS_PER_WORKGROUP as f64), ("LANES", LANES as f64)]
}

/// [`constants`] (there is one pipeline).
pub(crate) fn example_constants() -> Vec<(&'static str, f64)> {
    constants()
}

/// The dispatches of one layer (one per row tile), from `input` to `output` (f32 activation
/// buffers of whole [`BATCH_TILE`]s) with the layer's `bias` buffer. Buffers go to `buffers`.
pub(crate) fn dispatches(
    ctx: &GpuContext,
    layer: &EieLayer,
    bias: &wgpu::Buffer,
    (input, output): (&wgpu::Buffer, &wgpu::Buffer),
    lbl: &dyn Fn(&str) -> String,
    buffers: &mut Vec<wgpu::Buffer>,
) -> Result<Vec<Dispatch>> {
    let limits = ctx.device_limits();
    let (rows, cols) = (layer.rows(), layer.cols());
    let w = layer.dense_weights();
    let cols4 = cols.div_ceil(4);
    let mut out = Vec::new();
    for (ti, tile) in dense_tiles(rows, cols, &limits)?.into_iter().enumerate() {
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
            relu: (layer.activation() == Activation::Relu) as u32,
            has_bias: layer.bias().is_some() as u32,
            pad0: 0,
        };
        let ub = uniform_init(
            ctx,
            &lbl(&format!("tile-{ti}/params")),
            bytemuck::bytes_of(&params),
        );
        let wb = storage_init(
            ctx,
            &lbl(&format!("tile-{ti}/weights")),
            bytemuck::cast_slice(&padded),
        );
        out.push(dispatch(
            ctx,
            Kernel::DenseGemv,
            &constants(),
            &lbl(&format!("tile-{ti}/bind-group")),
            &[
                (PARAMS, &ub),
                (WEIGHTS, &wb),
                (BIAS, bias),
                (X, input),
                (Y, output),
            ],
            Grid {
                x: tile.rows.div_ceil(ROWS_PER_WORKGROUP),
                batch_group: BATCH_TILE,
                y_per_group: 1,
                batches: (1, usize::MAX),
            },
        )?);
        buffers.extend([ub, wb]);
    }
    Ok(out)
}
