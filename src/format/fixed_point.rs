//! The fixed-point formats a model file stores: per layer, the fraction bits of its input and
//! output activations ([`LayerFormat`]). The arithmetic that uses them is
//! [`crate::fixed16`]'s, which re-exports these items.

use crate::error::{Error, Result};

/// Fraction bits of the default activation format, Q5.10: files that store no formats use it
/// for every activation.
///
/// See [`LayerFormat`].
pub const DEFAULT_ACT_FRAC: u32 = 10;
/// The most fraction bits an activation format, or a codebook, may have (Q-9.24: range
/// ±2^-9, step 2^-24). Products stay exact in `i32` and the largest accumulator (Q.28) still
/// holds ±8.
///
/// [`LayerFormat::new`] checks against it.
pub const MAX_ACT_FRAC: u32 = 24;
/// Guard bits the accumulator keeps below the input activation's least significant bit.
///
/// [`LayerFormat::acc_frac`] adds it.
pub const GUARD_BITS: u32 = 4;
/// The fixed-point formats of one layer's activations: fraction bits of its input and of its
/// output (each in 0..=[`MAX_ACT_FRAC`]). The accumulator has `input_frac + GUARD_BITS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct LayerFormat {
    input_frac: u32,
    output_frac: u32,
}

impl Default for LayerFormat {
    /// Q5.10 in and out.
    fn default() -> Self {
        LayerFormat {
            input_frac: DEFAULT_ACT_FRAC,
            output_frac: DEFAULT_ACT_FRAC,
        }
    }
}

impl LayerFormat {
    /// A layer format; [`Error::InvalidArgument`] if a fraction is above [`MAX_ACT_FRAC`].
    pub fn new(input_frac: u32, output_frac: u32) -> Result<Self> {
        for (what, f) in [("input", input_frac), ("output", output_frac)] {
            if f > MAX_ACT_FRAC {
                return Err(Error::InvalidArgument(format!(
                    "fixed16 {what} fraction bits {f} outside 0..={MAX_ACT_FRAC}"
                )));
            }
        }
        Ok(LayerFormat {
            input_frac,
            output_frac,
        })
    }
    /// Fraction bits of the input activations.
    ///
    /// See [`crate::fixed16`] and [`crate::Model::input_frac`].
    pub fn input_frac(self) -> u32 {
        self.input_frac
    }
    /// Fraction bits of the output activations.
    ///
    /// See [`crate::fixed16`] and [`crate::Model::output_frac`].
    pub fn output_frac(self) -> u32 {
        self.output_frac
    }
    /// Fraction bits of the accumulator: `input_frac + GUARD_BITS`.
    ///
    /// The input's fraction plus [`GUARD_BITS`].
    pub fn acc_frac(self) -> u32 {
        self.input_frac + GUARD_BITS
    }
    /// The write-back's right shift from the accumulator to the output format (negative: a
    /// left shift).
    ///
    /// Given to [`crate::fixed16::write_back`].
    pub fn write_back_shift(self) -> i32 {
        self.acc_frac() as i32 - self.output_frac as i32
    }
}

/// The name of an activation format, e.g. `Q5.10` for 10 fraction bits (`Q-3.18` for 18).
///
/// [`crate::Model::new`] names formats this way in its errors; see [`LayerFormat`].
pub fn format_name(frac: u32) -> String {
    format!("Q{}.{frac}", 15 - frac as i64)
}
