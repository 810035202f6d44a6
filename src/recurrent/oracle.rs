//! The dense f64 oracle of sequence models.

use super::cell;
use super::engine::SequenceState;
use crate::error::{check_finite, Error, Result};
use crate::format::{Activation, CellKind, EieLayer, SequenceModel, Stage};

/// One matrix's dequantised weights in f64.
struct Dense {
    rows: usize,
    cols: usize,
    weights: Vec<f64>,
    bias: Vec<f64>,
}

impl Dense {
    fn new(l: &EieLayer) -> Result<Self> {
        Ok(Dense {
            rows: l.rows(),
            cols: l.cols(),
            weights: l.try_dense_weights()?.into_iter().map(f64::from).collect(),
            bias: match l.bias() {
                Some(b) => b.iter().map(|&v| f64::from(v)).collect(),
                None => vec![0.0; l.rows()],
            },
        })
    }

    fn apply(&self, x: &[f64]) -> Vec<f64> {
        (0..self.rows)
            .map(|i| {
                let w = &self.weights[i * self.cols..(i + 1) * self.cols];
                w.iter().zip(x).fold(self.bias[i], |s, (a, b)| s + a * b)
            })
            .collect()
    }
}

enum OracleStage {
    Fc(Dense, Activation),
    Recurrent(CellKind, Dense, Dense),
}

/// The dense oracle of a [`SequenceModel`]: every matrix's dequantised weights as a dense f64
/// matrix, f64 accumulation, and the cell update ([`cell::update`]) and state in f64. The
/// yardstick the sequence engines are compared against.
pub struct SequenceOracle {
    stages: Vec<OracleStage>,
    input_size: usize,
    state_size: usize,
}

impl SequenceOracle {
    /// Expands every matrix of `model` ([`Error::Allocation`] when they do not fit in memory).
    pub fn new(model: &SequenceModel) -> Result<Self> {
        let stages = model
            .stages()
            .iter()
            .map(|s| match s {
                Stage::Fc(l) => Ok(OracleStage::Fc(Dense::new(l)?, l.activation())),
                Stage::Recurrent(r) => Ok(OracleStage::Recurrent(
                    r.kind(),
                    Dense::new(r.ih())?,
                    Dense::new(r.hh())?,
                )),
            })
            .collect::<Result<_>>()?;
        Ok(SequenceOracle {
            stages,
            input_size: model.input_size(),
            state_size: model.state_size(),
        })
    }

    /// Runs one sequence of `steps` steps from `state` (see [`super::SequenceEngine::run`]):
    /// returns the outputs of every step and the state after the last.
    pub fn run(
        &self,
        input: &[f32],
        steps: usize,
        state: &SequenceState,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        if steps == 0 || steps.checked_mul(self.input_size) != Some(input.len()) {
            return Err(Error::Shape(format!(
                "input has {} values for {steps} steps of {}",
                input.len(),
                self.input_size
            )));
        }
        if state.values().len() != self.state_size {
            return Err(Error::Shape(format!(
                "a state of {} values for a model whose state has {}",
                state.values().len(),
                self.state_size
            )));
        }
        check_finite("input", input)?;
        let mut st: Vec<f64> = state.values().iter().map(|&v| f64::from(v)).collect();
        let mut outputs = Vec::new();
        for t in 0..steps {
            let mut x: Vec<f64> = input[t * self.input_size..(t + 1) * self.input_size]
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let mut offset = 0;
            for s in &self.stages {
                x = match s {
                    OracleStage::Fc(d, act) => d
                        .apply(&x)
                        .into_iter()
                        .map(|v| match act {
                            Activation::Relu => v.max(0.0),
                            Activation::Identity => v,
                        })
                        .collect(),
                    OracleStage::Recurrent(kind, ih, hh) => {
                        let n = hh.cols;
                        let size = if kind.has_cell_state() { 2 * n } else { n };
                        let (h, c) = st[offset..offset + size].split_at_mut(n);
                        offset += size;
                        let (gx, gh) = (ih.apply(&x), hh.apply(h));
                        cell::update(*kind, &gx, &gh, h, c);
                        h.to_vec()
                    }
                };
            }
            outputs.extend(x.iter().map(|&v| v as f32));
        }
        Ok((outputs, st.into_iter().map(|v| v as f32).collect()))
    }
}
