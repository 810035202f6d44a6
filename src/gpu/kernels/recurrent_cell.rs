//! `recurrent_cell`: the element-wise step of a layer of LSTM or GRU cells
//! (`shaders/recurrent_cell.wgsl`), between the EIE products of its gate matrices: the new `c`
//! and `h` of every unit, written where the next step's `W_hh h` product reads `h` (with its
//! non-zero bitmap) and into the layer's output sequence. f32, or EIE's fixed16 with the
//! sigmoid and tanh tables of [`crate::recurrent::cell`] uploaded as they are, so that the GPU
//! gives the CPU engine's bits.

use super::common::ActLayout;
use super::{arithmetic, dispatch, Access, Binding, Grid, Kernel};
use crate::error::Result;
use crate::format::CellKind;
use crate::gpu::device::GpuContext;
use crate::gpu::program::{uniform_init, Dispatch};
use crate::precision::Precision;
use crate::recurrent::cell;

/// WGSL source.
pub(crate) const SOURCE: &str = include_str!("../../../shaders/recurrent_cell.wgsl");

/// Invocations per workgroup (`WG` in the WGSL): each handles 32 units of one sequence.
pub(crate) const CELL_WORKGROUP: usize = 64;

params_struct! {
    /// `Params` of `recurrent_cell.wgsl`: the step, the layer, and the strides of the buffers
    /// it reads and writes. One per step, fixed when the program is built.
    struct CellParams {
        step: u32,
        hidden: u32,
        lstm: u32,
        gate_frac: u32,
        gx_stride: u32,
        gh_stride: u32,
        h_stride: u32,
        h_bits_base: u32,
        h_bits_stride: u32,
        out_stride: u32,
        out_bits_base: u32,
        out_bits_stride: u32,
    }
}

/// `Call` of `recurrent_cell.wgsl` (binding [`CALL`]): the steps and sequences of one
/// submission, written before each.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct CellCall {
    pub(crate) steps: u32,
    pub(crate) batch: u32,
    pub(crate) pad0: u32,
    pub(crate) pad1: u32,
}

/// The host's layout of [`CellParams`].
pub(crate) const PARAMS_LAYOUT: super::ParamsLayout = CellParams::LAYOUT;

/// `params` (uniform): [`CellParams`].
pub(crate) const PARAMS: Binding = Binding::new(0, "params", Access::Uniform);
/// `call` (uniform): [`CellCall`].
pub(crate) const CALL: Binding = Binding::new(1, "call", Access::Uniform);
/// `gx`: the input part's gate pre-activations, row `b × steps + t` ([`ActLayout`]).
pub(crate) const GX: Binding = Binding::new(2, "gx", Access::Read);
/// `gh`: the hidden part's gate pre-activations, row `b`.
pub(crate) const GH: Binding = Binding::new(3, "gh", Access::Read);
/// `h`: each sequence's `h` and its bitmap (the `W_hh` product's input).
pub(crate) const H: Binding = Binding::new(4, "h", Access::ReadWrite);
/// `c`: each sequence's cell state, `[batch][hidden]` (LSTM).
pub(crate) const C: Binding = Binding::new(5, "c", Access::ReadWrite);
/// `out`: the layer's output sequence, row `b × steps + t`, and its bitmaps.
pub(crate) const OUT: Binding = Binding::new(6, "out", Access::ReadWrite);
/// `tables`: fixed16 sigmoid then tanh table ([`cell::fixed16_tables`]).
pub(crate) const TABLES: Binding = Binding::new(7, "tables", Access::Read);
/// Every binding, in order.
pub(crate) const BINDINGS: &[Binding] = &[PARAMS, CALL, GX, GH, H, C, OUT, TABLES];

/// WGSL `const`s that mirror host constants: `WG` and the fixed16 tables' shape.
pub(crate) const MIRRORED: &[(&str, usize)] = &[
    ("WG", CELL_WORKGROUP),
    ("TABLE_LEN", cell::TABLE_LEN),
    ("TABLE_RANGE", cell::TABLE_RANGE as usize),
    ("POS_FRAC", cell::POS_FRAC as usize),
    ("STEP_BITS", cell::STEP_BITS as usize),
    ("C_LIMIT", cell::C_LIMIT as usize),
];

/// The override constants: the arithmetic's `FIXED` ([`arithmetic`]); the cell has no f16
/// path (the GPU runs models with recurrent layers in f32 or fixed16).
pub(crate) fn constants(precision: Precision) -> Vec<(&'static str, f64)> {
    debug_assert_ne!(
        precision,
        Precision::F16,
        "the recurrent cell has no f16 path"
    );
    let [fixed, _half] = arithmetic(precision);
    vec![fixed]
}

/// [`constants`] for f32.
pub(crate) fn example_constants() -> Vec<(&'static str, f64)> {
    constants(Precision::F32)
}

/// The buffers one recurrent layer's cell dispatches bind, with their layouts.
pub(crate) struct CellBuffers<'a> {
    pub call: &'a wgpu::Buffer,
    pub gx: (&'a wgpu::Buffer, ActLayout),
    pub gh: (&'a wgpu::Buffer, ActLayout),
    pub h: (&'a wgpu::Buffer, ActLayout),
    pub c: &'a wgpu::Buffer,
    pub out: (&'a wgpu::Buffer, ActLayout),
    pub tables: &'a wgpu::Buffer,
}

/// One dispatch per step `0..max_steps` of a layer of `hidden` cells of `kind` (each with its
/// own params, the step fixed in them), over as many sequences as the call has. Buffers go to
/// `buffers`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dispatches(
    ctx: &GpuContext,
    kind: CellKind,
    hidden: usize,
    precision: Precision,
    gate_frac: u32,
    max_steps: usize,
    b: &CellBuffers<'_>,
    lbl: &dyn Fn(&str) -> String,
    buffers: &mut Vec<wgpu::Buffer>,
) -> Result<Vec<Dispatch>> {
    let words = hidden.div_ceil(32);
    (0..max_steps)
        .map(|t| {
            let params = CellParams {
                step: t as u32,
                hidden: hidden as u32,
                lstm: (kind == CellKind::Lstm) as u32,
                gate_frac,
                gx_stride: b.gx.1.stride as u32,
                gh_stride: b.gh.1.stride as u32,
                h_stride: b.h.1.stride as u32,
                h_bits_base: b.h.1.bits_base as u32,
                h_bits_stride: b.h.1.bits_stride as u32,
                out_stride: b.out.1.stride as u32,
                out_bits_base: b.out.1.bits_base as u32,
                out_bits_stride: b.out.1.bits_stride as u32,
            };
            let ub = uniform_init(
                ctx,
                &lbl(&format!("cell/step-{t}/params")),
                bytemuck::bytes_of(&params),
            );
            let d = dispatch(
                ctx,
                Kernel::RecurrentCell,
                &constants(precision),
                &lbl(&format!("cell/step-{t}")),
                &[
                    (PARAMS, &ub),
                    (CALL, b.call),
                    (GX, b.gx.0),
                    (GH, b.gh.0),
                    (H, b.h.0),
                    (C, b.c),
                    (OUT, b.out.0),
                    (TABLES, b.tables),
                ],
                Grid {
                    x: words.div_ceil(CELL_WORKGROUP),
                    batch_group: 1,
                    y_per_group: 1,
                    batches: (1, usize::MAX),
                },
            )?;
            buffers.push(ub);
            Ok(d)
        })
        .collect()
}
