use crate::error::Result;
use crate::format::{check_batch, Activation, Model};
use rayon::prelude::*;

/// The dense oracle: every layer's dequantised weights as a dense matrix, evaluated with `f64`
/// accumulation. The yardstick every other backend is compared against.
///
/// Built by [`DenseOracle::try_new`]; [`crate::verify::verify`] compares every backend with it
/// ([`crate::reference::ErrorStats`]).
pub struct DenseOracle {
    layers: Vec<DenseLayer>,
    input_size: usize,
}

struct DenseLayer {
    rows: usize,
    cols: usize,
    weights: Vec<f32>,
    bias: Option<Vec<f32>>,
    activation: Activation,
}

impl DenseOracle {
    /// Expands every layer of `model` to dense weights, reporting [`crate::Error::Allocation`]
    /// when they do not fit in memory.
    pub fn try_new(model: &Model) -> Result<Self> {
        Ok(DenseOracle {
            input_size: model.input_size(),
            layers: model
                .layers()
                .iter()
                .map(|l| {
                    Ok(DenseLayer {
                        rows: l.rows(),
                        cols: l.cols(),
                        weights: l.try_dense_weights()?,
                        bias: l.bias().map(<[f32]>::to_vec),
                        activation: l.activation(),
                    })
                })
                .collect::<Result<_>>()?,
        })
    }

    /// Expands every layer of `model` to dense weights. Aborts, as any infallible allocation
    /// does, when they do not fit in memory; [`Self::try_new`] reports that as an error.
    pub fn new(model: &Model) -> Self {
        DenseOracle {
            input_size: model.input_size(),
            layers: model
                .layers()
                .iter()
                .map(|l| DenseLayer {
                    rows: l.rows(),
                    cols: l.cols(),
                    weights: l.dense_weights(),
                    bias: l.bias().map(<[f32]>::to_vec),
                    activation: l.activation(),
                })
                .collect(),
        }
    }

    /// Runs a batch (`input.len()` a multiple of the input size); returns the outputs back to back.
    ///
    /// Compare with [`crate::reference::ErrorStats::compare`].
    pub fn run(&self, input: &[f32]) -> Result<Vec<f32>> {
        check_batch(self.input_size, input)?;
        let mut x = input.to_vec();
        for l in &self.layers {
            let batch = x.len() / l.cols;
            let len = batch.checked_mul(l.rows).ok_or(crate::Error::Allocation {
                what: format!("{batch} outputs of {} values", l.rows),
                bytes: u64::MAX,
            })?;
            let mut y = crate::error::try_filled(len, 0f32, "oracle outputs")?;
            y.par_chunks_mut(l.rows)
                .zip(x.par_chunks(l.cols))
                .for_each(|(yb, xb)| {
                    yb.par_iter_mut().enumerate().for_each(|(i, yi)| {
                        let w = &l.weights[i * l.cols..(i + 1) * l.cols];
                        let mut s: f64 = l.bias.as_ref().map_or(0.0, |b| b[i] as f64);
                        for (wj, xj) in w.iter().zip(xb) {
                            s += *wj as f64 * *xj as f64;
                        }
                        *yi = l.activation.apply(s as f32);
                    })
                });
            x = y;
        }
        Ok(x)
    }
}
