//! Deep Compression: pruning, weight sharing and the whole pipeline.

use eie::compress::{compress_layer, prune_by_magnitude, share_weights, DenseLayer};
use eie::{Activation, Error};
use proptest::prelude::*;

mod common;
use common::fixtures::config;

#[test]
fn quantised_layer_re_encodes_losslessly() {
    // A layer quantised elsewhere to 15 distinct values survives a 4-bit compression exactly.
    let levels: Vec<f32> = (1..=15).map(|i| (i as f32 - 8.5) * 0.037).collect();
    let weights: Vec<f32> = (0..30 * 20)
        .map(|i| {
            if i % 3 == 0 {
                0.0
            } else {
                levels[(i * 7) % 15]
            }
        })
        .collect();
    let layer = DenseLayer {
        name: "q".into(),
        rows: 30,
        cols: 20,
        weights: weights.clone(),
        bias: None,
    };
    let l = compress_layer(&layer, &config(1.0, 4, 7), Activation::Identity).unwrap();
    assert_eq!(l.dense_weights(), weights);
}

#[test]
fn exact_density_and_reconstruction_error_of_a_gaussian_layer() {
    let layer = eie::synth::dense_layer("g", 256, 128, false, 3);
    let l = compress_layer(&layer, &config(0.09, 4, 64), Activation::Relu).unwrap();
    assert_eq!(l.nnz(), (0.09f64 * 256.0 * 128.0).round() as usize);
    // Every kept weight is within half a codebook step of its original value.
    let w = l.dense_weights();
    let cb = l.codebook();
    let max_gap = cb[1..16]
        .windows(2)
        .map(|p| p[1] - p[0])
        .fold(0f32, f32::max);
    for (q, o) in w.iter().zip(&layer.weights) {
        if *q != 0.0 {
            assert!((q - o).abs() <= max_gap, "{o} -> {q}");
        }
    }
    // The kept weights are the largest ones.
    let smallest_kept = layer
        .weights
        .iter()
        .zip(&w)
        .filter(|(_, q)| **q != 0.0)
        .map(|(o, _)| o.abs())
        .fold(f32::INFINITY, f32::min);
    let largest_dropped = layer
        .weights
        .iter()
        .zip(&w)
        .filter(|(_, q)| **q == 0.0)
        .map(|(o, _)| o.abs())
        .fold(0f32, f32::max);
    assert!(smallest_kept >= largest_dropped);
}

#[test]
fn invalid_settings_are_rejected() {
    let layer = eie::synth::dense_layer("g", 4, 4, false, 3);
    for c in [
        config(0.0, 4, 4),
        config(1.01, 4, 4),
        config(f64::NAN, 4, 4),
        config(0.5, 1, 4),
        config(0.5, 9, 4),
        config(0.5, 4, 0),
    ] {
        assert!(
            matches!(
                compress_layer(&layer, &c, Activation::Relu),
                Err(Error::InvalidArgument(_))
            ),
            "{c:?} accepted"
        );
    }
}

#[test]
fn non_finite_weights_are_rejected() {
    let mut layer = eie::synth::dense_layer("g", 4, 4, true, 3);
    layer.weights[5] = f32::NAN;
    assert!(matches!(
        compress_layer(&layer, &config(0.5, 4, 2), Activation::Relu),
        Err(Error::NonFinite { index: 5, .. })
    ));
    let mut layer = eie::synth::dense_layer("g", 4, 4, true, 3);
    layer.bias.as_mut().unwrap()[1] = f32::INFINITY;
    assert!(matches!(
        compress_layer(&layer, &config(0.5, 4, 2), Activation::Relu),
        Err(Error::NonFinite { index: 1, .. })
    ));
}

#[test]
fn all_zero_layer_compresses_to_no_entries() {
    let layer = DenseLayer {
        name: "z".into(),
        rows: 5,
        cols: 3,
        weights: vec![0.0; 15],
        bias: None,
    };
    let l = compress_layer(&layer, &config(0.5, 4, 2), Activation::Relu).unwrap();
    assert_eq!(l.entry_count(), 0);
    assert!(l.dense_weights().iter().all(|&w| w == 0.0));
}

proptest! {
    #[test]
    fn pruning_keeps_exactly_the_requested_count(
        w in proptest::collection::vec(-1.0f32..1.0, 1..300),
        density in 0.01f64..=1.0,
    ) {
        let kept = prune_by_magnitude(&w, density).unwrap();
        let nonzero = w.iter().filter(|&&x| x != 0.0).count();
        let want = ((density * w.len() as f64).round() as usize).min(nonzero);
        prop_assert_eq!(kept.len(), want);
        prop_assert!(kept.windows(2).all(|p| p[0] < p[1]));
    }

    #[test]
    fn codes_point_at_the_nearest_centroid(
        v in proptest::collection::vec(prop_oneof![-3.0f32..-0.001, 0.001f32..3.0], 1..400),
        bits in 2u8..=8,
    ) {
        let s = share_weights(&v, bits, 100).unwrap();
        prop_assert_eq!(s.codebook.len(), 1 << bits);
        prop_assert_eq!(s.codebook[0], 0.0);
        let mut distinct = v.clone();
        distinct.sort_by(f32::total_cmp);
        distinct.dedup();
        let used = ((1usize << bits) - 1).min(distinct.len());
        for (&x, &c) in v.iter().zip(&s.codes) {
            prop_assert!(c >= 1);
            let d = (s.codebook[c as usize] - x).abs();
            for other in &s.codebook[1..=used] {
                prop_assert!(d <= (other - x).abs() + 1e-6, "{} coded {} but {} is nearer", x, s.codebook[c as usize], other);
            }
        }
    }
}
