//! `eie_reduce`: the second dispatch of a layer whose columns the column walk splits into
//! slices (`shaders/eie_reduce.wgsl`, after the EIE prelude): one invocation per row and input
//! adds the slices' partial sums in slice order and writes the row back. It binds the column
//! walk's params, layer, output and run counter buffers and reads its partial sums.

use super::common::{EieSpec, LAYER, PARAMS, SATURATIONS, Y};
use super::{dispatch, Access, Binding, Grid, Kernel};
use crate::error::Result;
use crate::gpu::device::GpuContext;
use crate::gpu::program::Dispatch;
use crate::precision::Precision;
use crate::schedule::WORKGROUP_SIZE;

/// WGSL source.
pub(crate) const SOURCE: &str = include_str!("../../../shaders/eie_reduce.wgsl");

/// `partials`: the column walk's partial sums `[batch][slices][PEs][local rows]`, read.
pub(crate) const PARTIALS: Binding = Binding::new(5, "partials", Access::Read);
/// Every binding, in order (the input `x` is not read).
pub(crate) const BINDINGS: &[Binding] = &[PARAMS, LAYER, Y, SATURATIONS, PARTIALS];
/// The prelude's `Params`.
pub(crate) use super::common::PARAMS_LAYOUT;
/// No `const` of its own mirrors a host constant (the prelude's `WG` does).
pub(crate) const MIRRORED: &[(&str, usize)] = &[];

/// The override constants: the prelude's (the reduction reads no entries, so `WIDE` is
/// always off and one pipeline serves both entry widths).
pub(crate) fn constants(precision: Precision) -> Vec<(&'static str, f64)> {
    EieSpec {
        precision,
        wide: false,
    }
    .constants()
}

/// [`constants`] in f32.
pub(crate) fn example_constants() -> Vec<(&'static str, f64)> {
    constants(EieSpec::example().precision)
}

/// The reduction of a column-walk dispatch over `rows` rows with tiles of `tile` inputs,
/// binding its `[params, layer, output, counters, partials]`: one invocation per row and input of every
/// tile (padding inputs included, so that no output slot keeps a stale value).
pub(crate) fn dispatch_reduce(
    ctx: &GpuContext,
    precision: Precision,
    label: &str,
    [params, layer, output, counters, partials]: [&wgpu::Buffer; 5],
    rows: usize,
    tile: usize,
    batches: (usize, usize),
) -> Result<Dispatch> {
    dispatch(
        ctx,
        Kernel::EieReduce,
        &constants(precision),
        label,
        &[
            (PARAMS, params),
            (LAYER, layer),
            (Y, output),
            (SATURATIONS, counters),
            (PARTIALS, partials),
        ],
        Grid {
            x: rows.div_ceil(WORKGROUP_SIZE),
            batch_group: tile,
            y_per_group: tile,
            batches,
        },
    )
}
