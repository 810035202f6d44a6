//! `csr_spmv`: the plain CSR f32 SpMV baseline (`shaders/csr_spmv.wgsl`). A workgroup computes
//! [`ROWS_PER_WORKGROUP`] rows for [`BATCH_TILE`] inputs; `LANES` invocations share a row's
//! non-zeros.

use super::{dispatch, Access, Binding, Grid, Kernel};
use crate::baseline::CsrLayerF32;
use crate::error::{Error, Result};
use crate::format::{Activation, EieLayer};
use crate::gpu::device::GpuContext;
use crate::gpu::program::{storage_init, stride, uniform_init, Dispatch};
use crate::schedule::{BATCH_TILE, ROWS_PER_WORKGROUP, WORKGROUP_SIZE};

/// WGSL source.
pub(crate) const SOURCE: &str = include_str!("../../../shaders/csr_spmv.wgsl");

params_struct! {
    /// `Params` of `csr_spmv.wgsl`: the layer's shape and flags.
    struct CsrParams {
        rows: u32,
        x_stride: u32,
        y_stride: u32,
        relu: u32,
        has_bias: u32,
        pad0: u32,
        pad1: u32,
        pad2: u32,
    }
}

/// The host's layout of [`CsrParams`].
pub(crate) const PARAMS_LAYOUT: super::ParamsLayout = CsrParams::LAYOUT;

/// `params` (uniform): the layer's [`CsrParams`].
pub(crate) const PARAMS: Binding = Binding::new(0, "params", Access::Uniform);
/// `row_ptr`: `[rows + 1]` indices into `col_idx` and `values`.
pub(crate) const ROW_PTR: Binding = Binding::new(1, "row_ptr", Access::Read);
/// `col_idx`: the column of each non-zero, `[nnz]` u32.
pub(crate) const COL_IDX: Binding = Binding::new(2, "col_idx", Access::Read);
/// `values`: each non-zero, `[nnz]` f32.
pub(crate) const VALUES: Binding = Binding::new(3, "values", Access::Read);
/// `bias`: `[rows]` f32 (one zero when the layer has none).
pub(crate) const BIAS: Binding = Binding::new(4, "bias", Access::Read);
/// `x`: inputs `[batch padded to BATCH_TILE][x_stride]` f32.
pub(crate) const X: Binding = Binding::new(5, "x", Access::Read);
/// `y`: outputs `[batch padded to BATCH_TILE][y_stride]` f32.
pub(crate) const Y: Binding = Binding::new(6, "y", Access::ReadWrite);
/// Every binding, in order.
pub(crate) const BINDINGS: &[Binding] = &[PARAMS, ROW_PTR, COL_IDX, VALUES, BIAS, X, Y];

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

/// The dispatch of one layer, from `input` to `output` (f32 activation buffers of whole
/// [`BATCH_TILE`]s) with the layer's `bias` buffer. Buffers go to `buffers`.
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
    let csr = CsrLayerF32::new(layer);
    let workgroups = rows.div_ceil(ROWS_PER_WORKGROUP);
    if workgroups > limits.max_compute_workgroups_per_dimension as usize {
        return Err(Error::LimitExceeded {
            what: format!(
                "CSR workgroups of layer `{}` ({rows}x{cols}; this device's workgroups per \
                 dimension)",
                layer.name()
            ),
            value: workgroups as u64,
            limit: limits.max_compute_workgroups_per_dimension as u64,
        });
    }
    if 4 * csr.values().len() as u64 > limits.max_binding() {
        return Err(Error::LimitExceeded {
            what: format!(
                "bytes of the CSR values of layer `{}` ({rows}x{cols}; this device's storage \
                 binding)",
                layer.name()
            ),
            value: 4 * csr.values().len() as u64,
            limit: limits.max_binding(),
        });
    }
    let params = CsrParams {
        rows: rows as u32,
        x_stride: stride(cols) as u32,
        y_stride: stride(rows) as u32,
        relu: (layer.activation() == Activation::Relu) as u32,
        has_bias: layer.bias().is_some() as u32,
        pad0: 0,
        pad1: 0,
        pad2: 0,
    };
    let ub = uniform_init(ctx, &lbl("params"), bytemuck::bytes_of(&params));
    let rp = storage_init(ctx, &lbl("row-ptr"), bytemuck::cast_slice(csr.row_ptr()));
    let ci = storage_init(ctx, &lbl("col-idx"), bytemuck::cast_slice(csr.col_idx()));
    let vb = storage_init(ctx, &lbl("values"), bytemuck::cast_slice(csr.values()));
    let d = dispatch(
        ctx,
        Kernel::CsrSpmv,
        &constants(),
        &lbl("bind-group"),
        &[
            (PARAMS, &ub),
            (ROW_PTR, &rp),
            (COL_IDX, &ci),
            (VALUES, &vb),
            (BIAS, bias),
            (X, input),
            (Y, output),
        ],
        Grid {
            x: workgroups,
            batch_group: BATCH_TILE,
            y_per_group: 1,
            batches: (1, usize::MAX),
        },
    )?;
    buffers.extend([ub, rp, ci, vb]);
    Ok(vec![d])
}
