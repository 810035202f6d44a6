//! EIE's 16-bit fixed-point arithmetic, as this crate defines it (the paper gives no Q-format).
//!
//! * **Activations** are `i16` in Q5.10: value = `q / 2^10`, range [-32, 32), step 2^-10.
//!   A float becomes `round(x * 2^10)` (half away from zero), saturated to the `i16` range.
//! * **Codebook** entries are `i16` with a per-layer number of fraction bits `fc`: the largest
//!   `fc` in 0..=15 for which every `round(c * 2^fc)` fits in an `i16` (see [`codebook_frac`]).
//! * **Products** `a * c` are exact in `i32` (Q(10 + fc)) and are brought to the accumulator's
//!   Q.14 format (4 guard bits below the activation's LSB) by an arithmetic right shift of
//!   `fc - 4` after adding half an LSB: round half up. For `fc < 4` the shift is to the left.
//! * The **accumulator** is `i32`, Q17.14, and adds with two's-complement wrap-around. Wrapping
//!   addition is associative, so every summation order (CPU, simulator, GPU atomics) gives the
//!   same bits; results are exact as long as the true sum stays within ±2^17.
//! * **Bias** starts the accumulator at `round(b * 2^14)` (saturated to `i32`).
//! * **Write-back** rounds the accumulator to Q5.10 (add 8, shift right 4), saturates to `i16`,
//!   then applies ReLU if the layer has it.

/// Fraction bits of an activation (Q5.10).
pub const ACT_FRAC: u32 = 10;
/// Guard bits the accumulator keeps below the activation's least significant bit.
pub const GUARD_BITS: u32 = 4;
/// Fraction bits of the accumulator (Q17.14).
pub const ACC_FRAC: u32 = ACT_FRAC + GUARD_BITS;

/// Converts a float activation to Q5.10 (round half away from zero, saturating).
#[inline]
pub fn quantize_activation(x: f32) -> i16 {
    let q = (x * (1u32 << ACT_FRAC) as f32).round();
    q.clamp(i16::MIN as f32, i16::MAX as f32) as i16
}

/// Converts a Q5.10 activation back to a float.
#[inline]
pub fn dequantize_activation(q: i16) -> f32 {
    q as f32 / (1u32 << ACT_FRAC) as f32
}

/// Fraction bits used for a codebook: the largest `fc <= 15` with all entries representable.
pub fn codebook_frac(codebook: &[f32]) -> u32 {
    let max = codebook.iter().fold(0f32, |m, c| m.max(c.abs()));
    (0..=15u32)
        .rev()
        .find(|&f| (max * (1u32 << f) as f32).round() <= i16::MAX as f32)
        .unwrap_or(0)
}

/// A codebook in fixed point: the entries and their fraction bits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixedCodebook {
    /// Entries as `i16` with `frac` fraction bits; entry 0 is 0.
    pub values: Vec<i16>,
    /// Fraction bits (`fc`).
    pub frac: u32,
}

impl FixedCodebook {
    /// Quantises a float codebook (round half away from zero, saturating).
    pub fn new(codebook: &[f32]) -> Self {
        let frac = codebook_frac(codebook);
        let scale = (1u32 << frac) as f32;
        let values = codebook
            .iter()
            .map(|c| (c * scale).round().clamp(i16::MIN as f32, i16::MAX as f32) as i16)
            .collect();
        FixedCodebook { values, frac }
    }

    /// One product `a * c` in accumulator format (Q.14).
    #[inline]
    pub fn term(&self, a: i16, code: u8) -> i32 {
        product_term(a, self.values[code as usize], self.frac)
    }
}

/// `a * c` with `c` in Q(`frac`), rounded to the accumulator's Q.14 (round half up).
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

/// A bias value as the accumulator's starting value (Q.14, saturating).
#[inline]
pub fn bias_to_acc(b: f32) -> i32 {
    (b as f64 * (1u64 << ACC_FRAC) as f64)
        .round()
        .clamp(i32::MIN as f64, i32::MAX as f64) as i32
}

/// Write-back: accumulator to Q5.10 (round half up, saturate), then ReLU if asked.
#[inline]
pub fn write_back(acc: i32, relu: bool) -> i16 {
    let y = (acc as i64 + (1 << (GUARD_BITS - 1))) >> GUARD_BITS;
    let y = y.clamp(i16::MIN as i64, i16::MAX as i64) as i16;
    if relu {
        y.max(0)
    } else {
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_round_trip_and_saturation() {
        assert_eq!(quantize_activation(1.0), 1024);
        assert_eq!(quantize_activation(-0.5), -512);
        assert_eq!(quantize_activation(1e9), i16::MAX);
        assert_eq!(quantize_activation(-1e9), i16::MIN);
        assert_eq!(dequantize_activation(quantize_activation(0.75)), 0.75);
    }

    #[test]
    fn codebook_fraction_bits_fit_the_largest_entry() {
        assert_eq!(codebook_frac(&[0.0, 0.5, -0.9]), 15);
        assert_eq!(codebook_frac(&[0.0, 1.5]), 14);
        assert_eq!(codebook_frac(&[0.0, 3.0]), 13);
        assert_eq!(codebook_frac(&[0.0; 4]), 15);
    }

    #[test]
    fn products_round_half_up_into_the_accumulator() {
        // 1.0 * 0.5 with fc = 15: exact 2^13 in Q.14.
        assert_eq!(product_term(1024, 1 << 14, 15), 1 << 13);
        // smallest product: 1 * 1 in Q(25) -> 2^-25 rounds to 0 in Q.14
        assert_eq!(product_term(1, 1, 15), 0);
        // fc < 4 shifts left
        assert_eq!(product_term(3, 2, 1), 3 * 2 * 8);
        assert_eq!(write_back(8, false), 1);
        assert_eq!(write_back(7, false), 0);
        assert_eq!(write_back(-8, false), 0);
        assert_eq!(write_back(-9, false), -1);
        assert_eq!(write_back(-16 * 5, true), 0);
        assert_eq!(write_back(i32::MAX, false), i16::MAX);
    }
}
