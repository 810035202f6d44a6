//! The CPU model: a dense oracle and EIE's sparse matrix-vector product computed straight from
//! the compressed format in hardware order, in f32 and in 16-bit fixed point.
//!
//! [`CpuEngine`] is the engine behind [`Engine`](crate::Engine)'s CPU device (one compressed
//! model shared by an engine per precision: [`CpuEngine::with_precision`]); [`DenseOracle`] is the dense yardstick and [`ErrorStats`] the
//! comparison [`crate::verify`] makes with it; [`row_order`] holds the row walk's copy.

mod column_walk;
mod dense;
mod eie;
pub mod row_order;

pub use crate::precision::Precision;
pub use dense::DenseOracle;
pub use eie::{
    cpu_engine_kernels, cpu_pes, layer_f32, layer_fixed16, CpuEngine, CpuWalk,
    FIXED16_ROW_SLOT_COST, PARALLEL_MIN_ENTRIES, ROW_SLOT_COST, ROW_SLOT_COST_TILE, SLICE_COST,
};

/// How far one result is from another.
///
/// Made by [`ErrorStats::compare`]; [`crate::verify::verify`] reports one per backend against
/// [`DenseOracle`], held to [`crate::verify::tolerance`].
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct ErrorStats {
    /// Largest absolute difference.
    pub max_abs: f64,
    /// Largest absolute difference divided by the largest magnitude of the reference
    /// (normwise relative error; 0 when both are all zero).
    pub max_rel: f64,
}

impl ErrorStats {
    /// Compares `got` against `reference`. Vectors of different lengths cannot agree: they
    /// compare as infinitely far apart (both errors `f64::INFINITY`, which fails any
    /// tolerance); [`Self::try_compare`] reports them as an error instead.
    pub fn compare(got: &[f32], reference: &[f32]) -> Self {
        Self::try_compare(got, reference).unwrap_or(ErrorStats {
            max_abs: f64::INFINITY,
            max_rel: f64::INFINITY,
        })
    }

    /// Compares `got` against `reference`; vectors of different lengths are
    /// [`crate::Error::Shape`].
    pub fn try_compare(got: &[f32], reference: &[f32]) -> crate::Result<Self> {
        if got.len() != reference.len() {
            return Err(crate::Error::Shape(format!(
                "compared vectors have {} and {} values",
                got.len(),
                reference.len()
            )));
        }
        let mut max_abs = 0f64;
        let mut scale = 0f64;
        for (&g, &r) in got.iter().zip(reference) {
            let d = (g as f64 - r as f64).abs();
            max_abs = if d.is_nan() {
                f64::INFINITY
            } else {
                max_abs.max(d)
            };
            scale = scale.max((r as f64).abs());
        }
        let max_rel = if max_abs == 0.0 {
            0.0
        } else if scale == 0.0 {
            f64::INFINITY
        } else {
            max_abs / scale
        };
        Ok(ErrorStats { max_abs, max_rel })
    }
}
