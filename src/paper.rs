//! The paper's nine benchmark layers (EIE, Table III) and its published latencies (Table IV), with
//! a seeded generator that builds each layer at the paper's weight density and a ReLU-like input
//! at its activation density.
//!
//! The generated weights are random (the paper's trained weights are not public): each column
//! keeps every row with probability equal to the weight density, and each kept weight gets a
//! uniformly drawn non-zero index into a 4-bit codebook of 15 linearly spaced centroids scaled so
//! that outputs stay of order one. Sizes, densities and therefore the work per layer match the
//! paper.
//!
//! [`PAPER_LAYERS`] lists them ([`find`] by name); [`PaperLayer::generate`] and
//! [`PaperLayer::input`] build a layer and its input, which [`crate::sim::paper`] and the
//! benchmarks (`eie bench`) run.

use crate::error::{Error, Result};
use crate::format::{Activation, EieLayer, Model, SparseCodes};
use crate::synth;
use rand::Rng;
use rayon::prelude::*;

/// One benchmark layer of the paper with its published figures (batch 1, microseconds).
///
/// One of [`PAPER_LAYERS`] (see [`find`]); [`PaperLayer::generate`] builds it and
/// [`PaperLayer::input`] an input for it; [`crate::sim::paper`] and the benchmarks run them.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct PaperLayer {
    /// The paper's name, e.g. `"Alex-6"`.
    pub name: &'static str,
    /// Input count (columns of W).
    pub inputs: usize,
    /// Output count (rows of W).
    pub outputs: usize,
    /// Fraction of weights kept.
    pub weight_density: f64,
    /// Fraction of non-zero input activations.
    pub act_density: f64,
    /// Core i7-5930k, MKL dense GEMV (µs).
    pub cpu_dense_us: f64,
    /// Core i7-5930k, MKL CSRMV (µs).
    pub cpu_sparse_us: f64,
    /// Titan X, cuBLAS GEMV (µs).
    pub gpu_dense_us: f64,
    /// Titan X, cuSPARSE CSRMV (µs).
    pub gpu_sparse_us: f64,
    /// EIE's theoretical time: work including padding / (64 PEs × 800 MHz) (µs).
    pub eie_theoretical_us: f64,
    /// EIE's measured ("actual") time from the authors' cycle-level simulator (µs).
    pub eie_actual_us: f64,
}

macro_rules! layer {
    ($name:expr, $in:expr, $out:expr, $wd:expr, $ad:expr, $cd:expr, $cs:expr, $gd:expr, $gs:expr, $et:expr, $ea:expr) => {
        PaperLayer {
            name: $name,
            inputs: $in,
            outputs: $out,
            weight_density: $wd,
            act_density: $ad,
            cpu_dense_us: $cd,
            cpu_sparse_us: $cs,
            gpu_dense_us: $gd,
            gpu_sparse_us: $gs,
            eie_theoretical_us: $et,
            eie_actual_us: $ea,
        }
    };
}

/// The nine layers of Table III with the latencies of Table IV.
///
/// See [`find`] and [`PaperLayer`].
pub const PAPER_LAYERS: [PaperLayer; 9] = [
    layer!("Alex-6", 9216, 4096, 0.09, 0.351, 7516.2, 3066.5, 541.5, 134.8, 28.1, 30.3),
    layer!("Alex-7", 4096, 4096, 0.09, 0.353, 6187.1, 1282.1, 243.0, 65.8, 11.7, 12.2),
    layer!("Alex-8", 4096, 1000, 0.25, 0.375, 1134.9, 890.5, 80.5, 54.6, 8.9, 9.9),
    layer!("VGG-6", 25088, 4096, 0.04, 0.183, 35022.8, 3774.3, 1467.8, 167.0, 28.1, 34.4),
    layer!("VGG-7", 4096, 4096, 0.04, 0.375, 5372.8, 545.1, 243.0, 39.8, 7.9, 8.7),
    layer!("VGG-8", 4096, 1000, 0.23, 0.411, 774.2, 777.3, 80.5, 48.0, 7.3, 8.4),
    layer!("NT-We", 4096, 600, 0.10, 1.0, 605.0, 261.2, 65.0, 17.7, 5.2, 8.0),
    layer!("NT-Wd", 600, 8791, 0.11, 1.0, 1361.4, 437.4, 90.1, 41.1, 13.0, 13.9),
    layer!("NT-LSTM", 1201, 2400, 0.10, 1.0, 470.5, 260.0, 51.9, 18.5, 6.5, 7.5),
];

/// Finds a paper layer by name (case-insensitive, e.g. `alex-7`).
///
/// See [`PAPER_LAYERS`].
pub fn find(name: &str) -> Result<&'static PaperLayer> {
    PAPER_LAYERS
        .iter()
        .find(|l| l.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            let names: Vec<_> = PAPER_LAYERS.iter().map(|l| l.name).collect();
            Error::InvalidArgument(format!(
                "no paper layer `{name}` (expected one of {})",
                names.join(", ")
            ))
        })
}

/// The default seed of the paper benchmarks.
///
/// See [`PaperLayer::generate`] and [`PaperLayer::input`].
pub const DEFAULT_SEED: u64 = 2016;

impl PaperLayer {
    /// Builds the layer at the paper's size and weight density, encoded over `pes` PEs with a
    /// 4-bit codebook and ReLU, from `seed`.
    ///
    /// [`PaperLayer::model`] wraps it in a [`Model`]; the command line's `--seed`
    /// defaults to [`DEFAULT_SEED`].
    pub fn generate(&self, pes: usize, seed: u64) -> Result<EieLayer> {
        let (rows, cols, density) = (self.outputs, self.inputs, self.weight_density);
        let columns: Vec<(Vec<u32>, Vec<u8>)> = (0..cols)
            .into_par_iter()
            .map(|j| {
                let mut r = synth::rng(seed ^ (j as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let mut rows_kept = Vec::with_capacity((rows as f64 * density * 1.2) as usize + 4);
                let mut codes = Vec::with_capacity(rows_kept.capacity());
                for i in 0..rows {
                    if r.random_bool(density) {
                        rows_kept.push(i as u32);
                        codes.push(r.random_range(1..16u8));
                    }
                }
                (rows_kept, codes)
            })
            .collect();
        let mut col_ptr = Vec::with_capacity(cols + 1);
        col_ptr.push(0usize);
        let nnz: usize = columns.iter().map(|(r, _)| r.len()).sum();
        let mut row_idx = Vec::with_capacity(nnz);
        let mut code = Vec::with_capacity(nnz);
        for (r, c) in columns {
            row_idx.extend_from_slice(&r);
            code.extend_from_slice(&c);
            col_ptr.push(row_idx.len());
        }
        let codes = SparseCodes {
            rows,
            cols,
            col_ptr,
            row_idx,
            code,
        };
        // Centroids linearly spaced over ±2.5 σ, σ chosen so that a row's dot product with a
        // unit-scale input has variance about one.
        let sigma = (1.0 / (density * cols as f64 * self.act_density.max(0.01))).sqrt();
        let mut codebook = vec![0f32; 16];
        for (k, c) in codebook.iter_mut().enumerate().skip(1) {
            // Linear spacing over [-1, 1] with the middle point moved off zero.
            let t = if k == 8 {
                1.0 / 14.0
            } else {
                (k as f64 - 8.0) / 7.0
            };
            *c = (2.5 * sigma * t) as f32;
        }
        let mut layer = EieLayer::encode(&codes, codebook, 4, pes, None, Activation::Relu)?;
        layer.set_name(self.name);
        Ok(layer)
    }

    /// A ReLU-like input of the paper's activation density (`batch` vectors, row-major).
    ///
    /// See [`PaperLayer::generate`].
    pub fn input(&self, batch: usize, seed: u64) -> Vec<f32> {
        (0..batch)
            .flat_map(|b| {
                synth::activations(
                    self.inputs,
                    self.act_density,
                    seed.wrapping_add(1 + b as u64),
                )
            })
            .collect()
    }

    /// The layer as a one-layer model.
    ///
    /// See [`PaperLayer::generate`].
    pub fn model(&self, pes: usize, seed: u64) -> Result<Model> {
        Model::new(vec![self.generate(pes, seed)?])
    }
}

/// AlexNet's FC6 → FC7 → FC8 as one three-layer model (the last layer without ReLU).
///
/// See [`PAPER_LAYERS`].
pub fn alexnet_fc(pes: usize, seed: u64) -> Result<Model> {
    let mut layers = Vec::with_capacity(3);
    for (k, l) in PAPER_LAYERS[..3].iter().enumerate() {
        let mut layer = l.generate(pes, seed.wrapping_add(k as u64))?;
        if k == 2 {
            layer.set_activation(Activation::Identity);
        }
        layers.push(layer);
    }
    Model::new(layers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_layer_has_paper_shape_and_density() {
        let l = find("nt-lstm").unwrap();
        let layer = l.generate(64, 1).unwrap();
        assert_eq!((layer.rows(), layer.cols()), (2400, 1201));
        assert!(
            (layer.density() - 0.10).abs() < 0.005,
            "{}",
            layer.density()
        );
        assert_eq!(layer.name(), "NT-LSTM");
        let x = l.input(2, 3);
        assert_eq!(x.len(), 2 * 1201);
        let nz = x.iter().filter(|&&v| v != 0.0).count();
        assert_eq!(nz, x.len(), "NT layers have dense input");
        assert!(find("Alex-9").is_err());
    }

    #[test]
    fn codebook_is_increasing_without_zero() {
        let layer = find("Alex-8").unwrap().generate(4, 1).unwrap();
        let cb = layer.codebook();
        assert_eq!(cb[0], 0.0);
        for k in 1..16 {
            assert!(cb[k] != 0.0);
            assert!(cb[k] > cb[k - 1] || k == 1);
        }
        assert!((cb[1] + cb[15]).abs() < 1e-6, "spans ±2.5 σ");
    }

    #[test]
    fn alexnet_chain_connects() {
        // Shapes only; small PE count keeps the pointer arrays small.
        let m = alexnet_fc(8, 1).unwrap();
        assert_eq!(m.input_size(), 9216);
        assert_eq!(m.output_size(), 1000);
        assert_eq!(m.layers()[2].activation(), Activation::Identity);
    }
}
