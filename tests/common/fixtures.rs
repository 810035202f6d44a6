//! Seeded models for the tests: random dense layers compressed the Deep Compression way, random
//! layers drawn directly in EIE's format, and the committed LeNet-300-100.
//!
//! Every builder is a pure function of its arguments (the generators are seeded), so a test
//! checks the same model on every run and on every machine.

use eie::compress::{compress_layer, CompressConfig};
use eie::format::SparseCodes;
use eie::{Activation, EieLayer, Model};
use rand::Rng;
use std::path::{Path, PathBuf};

/// One compression setting: prune to `density`, share weights through a `2^bits`-entry
/// codebook, interleave over `pes` PEs (the rest as [`CompressConfig::default`]).
pub fn config(density: f64, bits: u8, pes: usize) -> CompressConfig {
    CompressConfig {
        density,
        bits,
        pes,
        ..CompressConfig::default()
    }
}

/// A seeded random dense `rows x cols` layer named `name` ([`eie::synth::dense_layer`]:
/// N(0, 1/cols) weights, and an N(0, 0.01) bias where `bias`), compressed with `config` and
/// followed by `act`.
pub fn compressed_layer(
    name: &str,
    rows: usize,
    cols: usize,
    bias: bool,
    seed: u64,
    config: &CompressConfig,
    act: Activation,
) -> EieLayer {
    let dense = eie::synth::dense_layer(name, rows, cols, bias, seed);
    compress_layer(&dense, config, act).unwrap()
}

/// A chain of [`compressed_layer`]s, one per `(name, rows, cols, bias)` of `layers`, first
/// layer first: layer `i` from seed `seed + i`, all compressed with `config`, ReLU after each
/// layer but the last, identity after the last.
pub fn compressed_model(
    layers: &[(&str, usize, usize, bool)],
    seed: u64,
    config: &CompressConfig,
) -> Model {
    let n = layers.len();
    Model::new(
        layers
            .iter()
            .enumerate()
            .map(|(i, &(name, rows, cols, bias))| {
                let act = if i + 1 < n {
                    Activation::Relu
                } else {
                    Activation::Identity
                };
                compressed_layer(name, rows, cols, bias, seed + i as u64, config, act)
            })
            .collect(),
    )
    .unwrap()
}

/// A [`compressed_model`] of `shapes` (`(rows, cols)` of each layer, first layer first): layer
/// `i` is named `l{i}` and has a bias, every layer is compressed to `density` with `bits`-bit
/// codebooks over `pes` PEs.
pub fn random_model(
    shapes: &[(usize, usize)],
    density: f64,
    bits: u8,
    pes: usize,
    seed: u64,
) -> Model {
    let names: Vec<String> = (0..shapes.len()).map(|i| format!("l{i}")).collect();
    let layers: Vec<(&str, usize, usize, bool)> = names
        .iter()
        .zip(shapes)
        .map(|(name, &(rows, cols))| (name.as_str(), rows, cols, true))
        .collect();
    compressed_model(&layers, seed, &config(density, bits, pes))
}

/// A seeded random layer drawn directly in EIE's format (no dense weights, no compression):
/// each weight kept with probability `density`, its code uniform over the non-zero codebook
/// indices; a codebook of `2^bits` entries in (-1, 1) (entry 0 is 0); where `bias`, a bias in
/// (-0.5, 0.5); interleaved over `pes` PEs and followed by `act`.
#[allow(clippy::too_many_arguments)]
pub fn random_layer(
    rows: usize,
    cols: usize,
    density: f64,
    bits: u8,
    pes: usize,
    bias: bool,
    act: Activation,
    seed: u64,
) -> EieLayer {
    let mut r = eie::synth::rng(seed);
    let n = 1usize << bits;
    let codes: Vec<u8> = (0..rows * cols)
        .map(|_| {
            if r.random_bool(density) {
                r.random_range(1..n) as u8
            } else {
                0
            }
        })
        .collect();
    let mut codebook: Vec<f32> = (0..n).map(|_| r.random_range(-1.0f32..1.0)).collect();
    codebook[0] = 0.0;
    let bias = bias.then(|| (0..rows).map(|_| r.random_range(-0.5f32..0.5)).collect());
    let sc = SparseCodes::from_dense(rows, cols, &codes).unwrap();
    EieLayer::encode(&sc, codebook, bits, pes, bias, act).unwrap()
}

/// The path of `name` among the committed LeNet-300-100 assets (`assets/lenet/`: the model,
/// MNIST test images and labels).
pub fn lenet_asset(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/lenet")
        .join(name)
}

/// The committed LeNet-300-100 model (784 inputs, 10 outputs), loaded from its file.
pub fn lenet() -> Model {
    Model::load(lenet_asset("lenet-300-100.eie.safetensors")).unwrap()
}
