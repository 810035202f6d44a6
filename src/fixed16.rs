//! EIE's 16-bit fixed-point arithmetic, as this crate defines it (the paper gives no Q-format).
//!
//! Every layer has its own activation format, chosen at compression time
//! ([`choose_formats`](crate::calibration::choose_formats)) and stored in the model file:
//!
//! * **Activations** are `i16` with `f` fraction bits, `f` in 0..=24 ([`MAX_ACT_FRAC`]):
//!   value = `q / 2^f`, range [-2^(15-f), 2^(15-f)), step 2^-f (Q(15-f).f; above 15 fraction
//!   bits the range is below ±1, for small activations). A layer's input format is the
//!   previous layer's output format (the model's first input format for layer 0), so each
//!   layer has an input fraction `fi` and an output fraction `fo` ([`LayerFormat`]). A float
//!   becomes `round(x * 2^f)` (half away from zero), saturated to the `i16` range. Files
//!   without stored formats (written before formats were stored) run with Q5.10 activations
//!   throughout ([`DEFAULT_ACT_FRAC`]), as they always did.
//! * **Codebook** entries are `i16` with a per-layer number of fraction bits `fc`: the largest
//!   `fc` in 0..=24 for which every `round(c * 2^fc)` fits in an `i16` (see [`codebook_frac`]).
//!   (Up to 24 rather than 15, so that a layer of small weights keeps 15 significant bits.)
//! * **Products** `a * c` are exact in `i32` (Q(fi + fc)) and are brought to the accumulator's
//!   format, Q(fi + 4) (4 guard bits below the input activation's LSB, [`GUARD_BITS`]), by an
//!   arithmetic right shift of `fc - 4` after adding half an LSB: round half up. For `fc < 4`
//!   the shift is to the left.
//! * The **accumulator** is `i32` with `fa = fi + 4` fraction bits and adds with two's-complement
//!   wrap-around. Wrapping addition is associative, so every summation order (CPU, simulator,
//!   GPU atomics) gives the same bits; results are exact as long as the true sum stays within
//!   ±2^(31 - fa). The CPU model counts the rows where it does not (accumulator overflows).
//! * **Bias** starts the accumulator at `round(b * 2^fa)` (saturated to `i32`).
//! * **Write-back** brings the accumulator to the output format: for `s = fa - fo > 0` it adds
//!   half an output LSB and shifts right by `s` (round half up), for `s <= 0` it shifts left by
//!   `-s`; the result saturates to `i16` and ReLU applies if the layer has it. The CPU model
//!   counts saturated outputs (a ReLU layer's negative ones excepted: ReLU zeroes them anyway).
//!
//! **Choosing the formats** ([`choose_formats`](crate::calibration::choose_formats)): with calibration inputs, the f32 forward pass
//! over them gives each layer's largest output magnitude `m` (after the activation function)
//! and the input's; each format takes the most fraction bits for which
//! `m * `[`CALIBRATION_HEADROOM`](crate::calibration::CALIBRATION_HEADROOM) still fits in an `i16`. Without calibration inputs the
//! magnitudes are bounded from the weights and bias by interval arithmetic, for inputs in
//! `[-`[`DEFAULT_INPUT_BOUND`]`, `[`DEFAULT_INPUT_BOUND`]`]` (pixels scaled to [0, 1] and
//! activations of that order): a row's range is `bias + Σ_j w_ij · [lo_j, hi_j]`, ReLU clips
//! it at 0, and the next layer takes these ranges as its inputs'. Inputs in range never exceed
//! such a bound, so nothing saturates (short of rounding at the very edge of a format), at the
//! cost of resolution where the bound is loose. Either way a layer's input format is also capped so that its accumulator holds the
//! largest pre-activation magnitude and bias (the same magnitudes, before the activation
//! function).
//!
//! A model's formats are chosen by [`choose_formats`](crate::calibration::choose_formats) (which
//! [`crate::compress::compress_model`] calls) and read with [`LayerFormat`]; the engines run
//! fixed16 when built with [`Precision::Fixed16`](crate::Precision::Fixed16). `docs/FIXED16.md`
//! has the measured accuracy.

pub use crate::format::fixed_point::{
    format_name, LayerFormat, DEFAULT_ACT_FRAC, GUARD_BITS, MAX_ACT_FRAC,
};
use crate::format::Model;

/// The input range [`crate::calibration::choose_formats`] assumes without calibration inputs: every input value
/// within `±DEFAULT_INPUT_BOUND`.
pub const DEFAULT_INPUT_BOUND: f32 = 1.0;

/// Converts a float activation to `frac` fraction bits (round half away from zero,
/// saturating); the flag says whether it saturated.
///
/// [`quantize_activation`] drops the flag.
#[inline]
pub fn quantize(x: f32, frac: u32) -> (i16, bool) {
    let q = (x * (1u32 << frac) as f32).round();
    let sat = !(i16::MIN as f32..=i16::MAX as f32).contains(&q);
    (q.clamp(i16::MIN as f32, i16::MAX as f32) as i16, sat)
}

/// Converts a float activation to `frac` fraction bits (round half away from zero,
/// saturating).
///
/// See [`quantize`]; [`dequantize_activation`] is the inverse.
#[inline]
pub fn quantize_activation(x: f32, frac: u32) -> i16 {
    quantize(x, frac).0
}

/// Converts an activation with `frac` fraction bits back to a float.
///
/// See [`quantize_activation`].
#[inline]
pub fn dequantize_activation(q: i16, frac: u32) -> f32 {
    q as f32 / (1u32 << frac) as f32
}

/// The most fraction bits (at most [`MAX_ACT_FRAC`]) with which `magnitude` still fits in an
/// `i16` (0 when it does not fit even with none).
pub fn frac_for(magnitude: f32) -> u32 {
    (0..=MAX_ACT_FRAC)
        .rev()
        .find(|&f| (magnitude as f64 * (1u64 << f) as f64).round() <= i16::MAX as f64)
        .unwrap_or(0)
}

/// Fraction bits used for a codebook: the largest `fc <= `[`MAX_ACT_FRAC`] with all entries
/// representable.
pub fn codebook_frac(codebook: &[f32]) -> u32 {
    let max = codebook.iter().fold(0f32, |m, c| m.max(c.abs()));
    frac_for(max)
}

/// A codebook in fixed point: the entries and their fraction bits.
///
/// Built per layer by the CPU engine and the simulator in fixed16; [`FixedCodebook::term`] is
/// the product, as [`product_term`] defines it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixedCodebook {
    /// Entries as `i16` with `frac` fraction bits; entry 0 is 0.
    pub values: Vec<i16>,
    /// Fraction bits (`fc`).
    pub frac: u32,
}

impl FixedCodebook {
    /// Quantises a float codebook (round half away from zero, saturating).
    ///
    /// Its fraction bits are [`codebook_frac`]'s.
    pub fn new(codebook: &[f32]) -> Self {
        let frac = codebook_frac(codebook);
        let values = codebook
            .iter()
            .map(|&c| quantize_activation(c, frac))
            .collect();
        FixedCodebook { values, frac }
    }

    /// One product `a * c` in the accumulator's format (Q(fi + 4) for inputs with `fi`
    /// fraction bits).
    ///
    /// See [`product_term`].
    #[inline]
    pub fn term(&self, a: i16, code: u8) -> i32 {
        product_term(a, self.values[code as usize], self.frac)
    }
}

/// `a * c` with `c` in Q(`frac`), rounded to the accumulator's format, `GUARD_BITS` below `a`'s
/// LSB (round half up).
///
/// See the [module docs](self) for the rounding.
#[inline]
pub fn product_term(a: i16, c: i16, frac: u32) -> i32 {
    let p = a as i32 * c as i32;
    if frac > GUARD_BITS {
        let s = frac - GUARD_BITS;
        (p + (1 << (s - 1))) >> s
    } else {
        p.wrapping_shl(GUARD_BITS - frac)
    }
}

/// A bias value as the accumulator's starting value with `acc_frac` fraction bits
/// (saturating).
///
/// See the [module docs](self) for the format; [`finish_row`] adds the row's sum.
#[inline]
pub fn bias_to_acc(b: f32, acc_frac: u32) -> i32 {
    bias_exact(b, acc_frac).clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

/// `round(b * 2^acc_frac)` in 64 bits (saturated there): the bias the accumulator would start
/// from with no 32-bit limit.
#[inline]
fn bias_exact(b: f32, acc_frac: u32) -> i64 {
    (b as f64 * (1u64 << acc_frac) as f64)
        .round()
        .clamp(-(2f64.powi(62)), 2f64.powi(62)) as i64
}

/// Write-back: the accumulator brought to the output format by `shift` (see
/// [`LayerFormat::write_back_shift`]; right with round half up, or left), saturated to `i16`,
/// then ReLU if asked. The flag says whether the output saturated (not counting a ReLU layer's
/// negative values, which ReLU sets to 0 anyway).
#[inline]
pub fn write_back(acc: i32, shift: i32, relu: bool) -> (i16, bool) {
    let acc = acc as i64;
    let y = if shift > 0 {
        (acc + (1 << (shift - 1))) >> shift
    } else {
        acc << -shift
    };
    let q = y.clamp(i16::MIN as i64, i16::MAX as i64) as i16;
    if relu {
        (q.max(0), y > i16::MAX as i64)
    } else {
        (q, q as i64 != y)
    }
}

/// Saturation counts of one layer in a fixed16 run.
///
/// One per layer in [`Saturations::layers`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LayerSaturations {
    /// Outputs clipped to the `i16` range on write-back (a ReLU layer's negative values,
    /// zeroed anyway, not counted).
    pub write_back: u64,
    /// Rows whose bias or sum did not fit the `i32` accumulator (the result wrapped around).
    /// Counted by the CPU model only: 0 in the GPU's counts.
    pub accumulator: u64,
}

/// Saturation counts of a fixed16 run (over every input of a batch), from the CPU model
/// ([`crate::CpuEngine::run_fixed16`]) or counted by the GPU kernels
/// (`GpuEngine::run_fixed16`, `gpu` feature). Every fixed16 backend gives the same bits, so the
/// same counts apply to each; the GPU counts inputs and write-back saturations as the CPU model
/// does but sees no accumulator overflow (its [`LayerSaturations::accumulator`] are 0).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Saturations {
    /// Input values clipped when quantised to the first layer's input format.
    pub input: u64,
    /// One entry per layer, in order.
    pub layers: Vec<LayerSaturations>,
}

impl Saturations {
    /// No saturations for a model of `layers` layers.
    ///
    /// See [`Saturations::add`].
    pub fn zero(layers: usize) -> Self {
        Saturations {
            input: 0,
            layers: vec![LayerSaturations::default(); layers],
        }
    }

    /// Adds `other`'s counts (a run over more inputs of the same model).
    ///
    /// See [`Saturations::total`].
    pub fn add(&mut self, other: &Saturations) {
        self.input += other.input;
        if self.layers.len() < other.layers.len() {
            self.layers
                .resize(other.layers.len(), LayerSaturations::default());
        }
        for (a, b) in self.layers.iter_mut().zip(&other.layers) {
            a.write_back += b.write_back;
            a.accumulator += b.accumulator;
        }
    }

    /// All saturations together.
    ///
    /// [`crate::NumericReport::is_clean`] checks it is zero.
    pub fn total(&self) -> u64 {
        self.input
            + self
                .layers
                .iter()
                .map(|l| l.write_back + l.accumulator)
                .sum::<u64>()
    }

    /// One line for reports, e.g. `input 0, fc1 0, fc2 3 (1 accumulator)`.
    ///
    /// See [`Saturations::total`].
    pub fn summary(&self, model: &Model) -> String {
        let mut parts = vec![format!("input {}", self.input)];
        for (l, s) in model.layers().iter().zip(&self.layers) {
            let name = if l.name().is_empty() {
                "layer"
            } else {
                l.name()
            };
            let mut p = format!("{name} {}", s.write_back);
            if s.accumulator > 0 {
                p += &format!(" (+{} accumulator overflows)", s.accumulator);
            }
            parts.push(p);
        }
        parts.join(", ")
    }
}

/// The accumulator of one output row from the sum of its product terms (each an `i32` from
/// [`product_term`], added in 64 bits) and its bias (0.0 without): the `i32` value every
/// backend computes (wrapping addition, bias saturated to `i32` by [`bias_to_acc`]) and
/// whether the true value did not fit in `i32` (an accumulator overflow).
#[inline]
pub fn finish_row(sum: i64, bias: f32, acc_frac: u32) -> (i32, bool) {
    let wrapped = (bias_to_acc(bias, acc_frac) as i64).wrapping_add(sum) as i32;
    let exact = bias_exact(bias, acc_frac).saturating_add(sum);
    (wrapped, exact != wrapped as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_round_trip_and_saturation() {
        assert_eq!(quantize_activation(1.0, 10), 1024);
        assert_eq!(quantize_activation(-0.5, 10), -512);
        assert_eq!(quantize(1e9, 10), (i16::MAX, true));
        assert_eq!(quantize(-1e9, 10), (i16::MIN, true));
        assert_eq!(quantize(31.0, 10), (31 * 1024, false));
        assert_eq!(
            dequantize_activation(quantize_activation(0.75, 10), 10),
            0.75
        );
        assert_eq!(quantize_activation(100.0, 7), 12800);
        assert_eq!(dequantize_activation(12800, 7), 100.0);
        assert_eq!(format_name(10), "Q5.10");
        assert_eq!(format_name(0), "Q15.0");
        assert_eq!(format_name(18), "Q-3.18");
    }

    #[test]
    fn codebook_fraction_bits_fit_the_largest_entry() {
        assert_eq!(codebook_frac(&[0.0, 0.5, -0.9]), 15);
        assert_eq!(codebook_frac(&[0.0, 1.5]), 14);
        assert_eq!(codebook_frac(&[0.0, 3.0]), 13);
        assert_eq!(codebook_frac(&[0.0; 4]), 24);
        assert_eq!(codebook_frac(&[0.0, 0.001, -0.0003]), 24);
        assert_eq!(codebook_frac(&[0.0, 0.01]), 21);
        assert_eq!(frac_for(148.0), 7);
        assert_eq!(frac_for(1.0), 14);
        assert_eq!(frac_for(1e9), 0);
    }

    #[test]
    fn products_round_half_up_into_the_accumulator() {
        // 1.0 * 0.5 with fc = 15: exact 2^13 in Q.14.
        assert_eq!(product_term(1024, 1 << 14, 15), 1 << 13);
        // smallest product: 1 * 1 in Q(25) -> 2^-25 rounds to 0 in Q.14
        assert_eq!(product_term(1, 1, 15), 0);
        // fc < 4 shifts left
        assert_eq!(product_term(3, 2, 1), 3 * 2 * 8);
        // fc = 24, the largest: shift 20, no overflow at the extremes.
        assert_eq!(product_term(i16::MIN, i16::MIN, 24), 1 << 10);
        // -32767 * 32768 / 2^20 = -1023.97 rounds to -1024.
        assert_eq!(product_term(i16::MAX, i16::MIN, 24), -1024);
    }

    #[test]
    fn write_back_shifts_either_way_and_saturates() {
        // Q.14 -> Q.10 (shift 4), round half up.
        assert_eq!(write_back(8, 4, false), (1, false));
        assert_eq!(write_back(7, 4, false), (0, false));
        assert_eq!(write_back(-8, 4, false), (0, false));
        assert_eq!(write_back(-9, 4, false), (-1, false));
        assert_eq!(write_back(-16 * 5, 4, true), (0, false));
        assert_eq!(write_back(i32::MAX, 4, false), (i16::MAX, true));
        assert_eq!(write_back(i32::MIN, 4, false), (i16::MIN, true));
        // A ReLU layer's negative saturation is not counted; its positive one is.
        assert_eq!(write_back(i32::MIN, 4, true), (0, false));
        assert_eq!(write_back(i32::MAX, 4, true), (i16::MAX, true));
        // Q.18 -> Q.7 (shift 11): 148.0 exactly.
        assert_eq!(write_back(148 << 18, 11, false), (148 << 7, false));
        // Q.4 -> Q.15 (shift -11): left, saturating.
        assert_eq!(write_back(3, -11, false), (3 << 11, false));
        assert_eq!(write_back(16, -11, false), (i16::MAX, true));
        assert_eq!(write_back(-16, -11, false), (i16::MIN, false));
        assert_eq!(write_back(-17, -11, false), (i16::MIN, true));
        assert_eq!(write_back(5, 0, false), (5, false));
        // The extremes: right by 28, left by 20.
        assert_eq!(write_back(3 << 27, 28, false), (2, false));
        assert_eq!(write_back(-1, -20, false), (i16::MIN, true));
        assert_eq!(write_back(0, -20, false), (0, false));
    }

    #[test]
    fn rows_that_overflow_the_accumulator_are_flagged() {
        assert_eq!(finish_row(5, 0.0, 14), (5, false));
        assert_eq!(finish_row(i32::MAX as i64, 0.0, 14), (i32::MAX, false));
        let (v, over) = finish_row(i32::MAX as i64 + 1, 0.0, 14);
        assert_eq!((v, over), (i32::MIN, true));
        // A bias beyond the accumulator saturates, and the row is flagged.
        assert!(finish_row(0, 1e6, 14).1);
        assert_eq!(finish_row(-16384, 1.0, 14), (0, false));
    }

    #[test]
    fn layer_formats_are_checked() {
        let f = LayerFormat::new(14, 7).unwrap();
        assert_eq!((f.acc_frac(), f.write_back_shift()), (18, 11));
        assert!(LayerFormat::new(25, 7).is_err());
        assert!(LayerFormat::new(7, 25).is_err());
        let f = LayerFormat::new(24, 0).unwrap();
        assert_eq!((f.acc_frac(), f.write_back_shift()), (28, 28));
        assert_eq!(LayerFormat::default(), LayerFormat::new(10, 10).unwrap());
    }
}
