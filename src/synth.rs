//! Unstable, and hidden from the documentation: public for the demo, `eie verify`, the benches
//! and the crate's tests only, it may change in any release.
//!
//! Seeded synthetic data: dense layers with Gaussian weights and ReLU-like activation vectors,
//! for the demo, `eie verify`'s default input and the tests. The same seed gives the same data
//! on every machine (ChaCha8).
//!
//! [`dense_layer`] makes a layer to compress, [`activations`] an input, [`rng`] the generator
//! both use.

use crate::dense::DenseLayer;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

/// A seeded random generator; use it for anything that must be reproducible.
///
/// [`dense_layer`] and [`activations`] are seeded the same way.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// A dense `rows x cols` layer with N(0, 1/cols) weights (He-style scale) and N(0, 0.01) bias.
///
/// Rows are generated in parallel from per-row seeds, so big layers are quick.
///
/// Compress it with [`crate::compress::compress_layer`].
pub fn dense_layer(name: &str, rows: usize, cols: usize, bias: bool, seed: u64) -> DenseLayer {
    let std = (1.0 / cols.max(1) as f64).sqrt();
    let normal = Normal::new(0.0, std).expect("std is finite and positive");
    let mut weights = vec![0f32; rows * cols];
    weights
        .par_chunks_mut(cols.max(1))
        .enumerate()
        .for_each(|(i, row)| {
            let mut r = rng(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            for w in row {
                *w = normal.sample(&mut r) as f32;
            }
        });
    let bias = bias.then(|| {
        let mut r = rng(seed.wrapping_add(1));
        let n = Normal::new(0.0, 0.1).expect("valid");
        (0..rows).map(|_| n.sample(&mut r) as f32).collect()
    });
    DenseLayer {
        name: name.to_string(),
        rows,
        cols,
        weights,
        bias,
    }
}

/// A ReLU-like activation vector: each value is non-zero with probability `density`, and
/// non-zero values are uniform in (0, 1].
///
/// An input for [`crate::verify::verify`] or an engine run.
pub fn activations(n: usize, density: f64, seed: u64) -> Vec<f32> {
    let mut r = rng(seed);
    (0..n)
        .map(|_| {
            if r.random_bool(density.clamp(0.0, 1.0)) {
                1.0 - r.random::<f32>()
            } else {
                0.0
            }
        })
        .collect()
}
