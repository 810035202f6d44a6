//! The EIE prelude, `shaders/common/eie.wgsl`, compiled before each EIE kernel
//! (`eie_spmv`, `eie_reduce`, `eie_spmv_rows`): their overrides (arithmetic, entry width,
//! codebook size), `Params`, bindings 0-4 and the layout of what they hold (the layer buffer's
//! codebook, bias and entries; activations with their non-zero bitmaps; the fixed16 run
//! counters), and the set-up the walks share.

use super::{arithmetic, flag, Binding};
use super::{Access, ParamsLayout};
use crate::error::{Error, Result};
use crate::fixed16::{self, FixedCodebook};
use crate::format::{entry_code, entry_run, Activation, EieLayer};
use crate::gpu::program::{stride, Encoding};
use crate::precision::Precision;
use crate::schedule::{DeviceLimits, EIE_MAX_CODES, WORKGROUP_SIZE};

/// WGSL source.
pub(crate) const SOURCE: &str = include_str!("../../../shaders/common/eie.wgsl");

/// WGSL `const`s of the prelude that mirror host constants: `WG`, the invocations of every
/// EIE workgroup, which `@workgroup_size` repeats as a literal.
pub(crate) const MIRRORED: &[(&str, usize)] = &[("WG", WORKGROUP_SIZE)];

/// `params` (uniform): the layer's [`EieParams`].
pub(crate) const PARAMS: Binding = Binding::new(0, "params", Access::Uniform);
/// `layer`: the layer buffer (codebook, bias, pointers, packed entries; see
/// [`eie_spmv::layer_words`](super::eie_spmv::layer_words) and
/// [`eie_spmv_rows::row_words`](super::eie_spmv_rows::row_words)).
pub(crate) const LAYER: Binding = Binding::new(1, "layer", Access::Read);
/// `x`: the input activations and their non-zero bitmaps ([`ActLayout`]).
pub(crate) const X: Binding = Binding::new(2, "x", Access::Read);
/// `y`: the output activations and bitmaps, laid out as the input (`array<atomic<u32>>`).
pub(crate) const Y: Binding = Binding::new(3, "y", Access::ReadWrite);
/// `saturations`: the fixed16 run counters ([`RunCounters`]), bound by every EIE pipeline and
/// written by the fixed16 ones (`array<atomic<u32>>`).
pub(crate) const SATURATIONS: Binding = Binding::new(4, "saturations", Access::ReadWrite);

/// The words of the run counter buffer (binding [`SATURATIONS`]) of a model of `layers`
/// layers: word 0 the inputs of the run, which the host writes at the start of each
/// submission (the kernels count no saturation of a padding input, at or above it), then one
/// word per layer, zeroed with it, to which each write-back that clips an output to the `i16`
/// range adds 1 (`fixed16::write_back`'s rule: a ReLU layer's negative values not counted).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunCounters {
    /// Layers of the model.
    pub layers: usize,
}

impl RunCounters {
    /// Words of the buffer.
    pub(crate) fn words(self) -> usize {
        1 + self.layers
    }

    /// The word of layer `index`'s write-back saturations (`Params::sat_index`).
    pub(crate) fn layer_word(index: usize) -> u32 {
        1 + index as u32
    }
}

params_struct! {
    /// `Params` of the EIE prelude (`shaders/common/eie.wgsl`), shared by its three kernels.
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
        sat_index: u32,
        shift: i32,
    }
}

/// The host's layout of [`EieParams`].
pub(crate) const PARAMS_LAYOUT: ParamsLayout = EieParams::LAYOUT;

impl EieParams {
    /// The fields both walks share: shape, activation strides and bitmaps, the layer buffer's
    /// offsets, write-back flags, the saturation counter of the model's layer `index`; the
    /// walk-specific ones (PEs, slices) zero.
    pub(crate) fn new(
        layer: &EieLayer,
        index: usize,
        xl: ActLayout,
        yl: ActLayout,
        lw: &LayerWords,
    ) -> Self {
        let [bias_base, ptr_base, entries_base] = lw.bases;
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
            frac: lw.frac,
            sat_index: RunCounters::layer_word(index),
            shift: layer.fixed16_format().write_back_shift(),
        }
    }
}

/// The prelude's override constants: the arithmetic (`FIXED`, `HALF`), the entry width
/// (`WIDE`) and the largest codebook (`MAX_CODES`, [`EIE_MAX_CODES`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct EieSpec {
    /// f32, fixed16 or f16 storage.
    pub precision: Precision,
    /// 16-bit entries (`code | run << 8`) instead of 8-bit (`code | run << 4`).
    pub wide: bool,
}

impl EieSpec {
    /// `(override, value)` of every prelude override.
    pub(crate) fn constants(self) -> Vec<(&'static str, f64)> {
        let mut c = arithmetic(self.precision).to_vec();
        c.extend([
            ("WIDE", flag(self.wide)),
            ("MAX_CODES", EIE_MAX_CODES as f64),
        ]);
        c
    }

    /// f32 with 8-bit entries, for [`Kernel::example_constants`](super::Kernel).
    pub(crate) fn example() -> Self {
        EieSpec {
            precision: Precision::F32,
            wide: false,
        }
    }
}

/// The layout of one activation buffer of the EIE engine: `[batch][stride]` value words, then
/// `[batch][bits_stride]` non-zero bitmap words from word `bits_base`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ActLayout {
    pub stride: usize,
    pub bits_base: usize,
    pub bits_stride: usize,
    pub words: usize,
}

impl ActLayout {
    /// The layout of `batch` vectors of `n` values stored as `encoding`.
    pub(crate) fn new(n: usize, batch: usize, encoding: Encoding) -> Self {
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

/// A layer buffer of an EIE walk (binding [`LAYER`]): its words, the bias, pointer and entry
/// offsets, the fixed16 fraction bits of the codebook, and whether entries are 16-bit.
pub(crate) struct LayerWords {
    pub words: Vec<u32>,
    pub bases: [usize; 3],
    pub frac: u32,
    pub wide: bool,
}

/// Appends entries packed for the kernels: 8-bit `code | run << 4` (four per word) or, `wide`,
/// 16-bit `code | run << 8` (two per word), little-endian; at least one word.
pub(crate) fn pack_entries(w: &mut Vec<u32>, entries: &[u16], wide: bool) {
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

/// Codebook then bias, as the layer buffer's first words; and the codebook's fixed16 fraction
/// bits.
pub(crate) fn meta_words(layer: &EieLayer, precision: Precision) -> (Vec<u32>, u32) {
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
pub(crate) fn check_binding(
    layer: &EieLayer,
    words: &[u32],
    pointers: &str,
    limits: &DeviceLimits,
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
