//! The CPU model: EIE SpMV in hardware order against the dense oracle, f32 and fixed16.

use eie::compress::{compress_layer, CompressConfig};
use eie::reference::{layer_f32, CpuWalk, ErrorStats};
use eie::{Activation, CpuEngine, DenseOracle, Error, Model, Precision};
use proptest::prelude::*;

mod common;

/// A seeded random model of `shapes`, compressed to `density` with 4-bit codebooks over `pes`
/// PEs ([`common::fixtures::random_model`]).
fn model(shapes: &[(usize, usize)], density: f64, pes: usize, seed: u64) -> Model {
    common::fixtures::random_model(shapes, density, 4, pes, seed)
}

#[test]
fn f32_engine_matches_the_oracle_on_a_three_layer_batch() {
    let m = model(&[(96, 80), (50, 96), (10, 50)], 0.2, 8, 11);
    let x = eie::synth::activations(80 * 5, 0.4, 3);
    let oracle = DenseOracle::new(&m).run(&x).unwrap();
    let got = CpuEngine::new(m.clone()).unwrap().run(&x).unwrap();
    let e = ErrorStats::compare(&got, &oracle);
    assert!(e.max_rel < 1e-5, "{e:?}");
    let fixed = CpuEngine::new(m)
        .unwrap()
        .with_precision(Precision::Fixed16)
        .run(&x)
        .unwrap();
    let e = ErrorStats::compare(&fixed, &oracle);
    assert!(e.max_rel < 2e-2 && e.max_abs > 0.0, "{e:?}");
}

#[test]
fn hardware_order_is_column_order_per_row() {
    // Summing each row's products in increasing column order, then bias, is exactly what
    // layer_f32 does: compare bit for bit with a straightforward loop in that order.
    let m = model(&[(33, 47)], 0.3, 5, 4);
    let l = &m.layers()[0];
    let w = l.dense_weights();
    let x = eie::synth::activations(47, 0.5, 9);
    let mut got = vec![0f32; 33];
    layer_f32(l, &x, &mut got).unwrap();
    for i in 0..33 {
        let mut s = 0f32;
        for j in 0..47 {
            if x[j] != 0.0 && w[i * 47 + j] != 0.0 {
                s += w[i * 47 + j] * x[j];
            }
        }
        assert_eq!(
            got[i],
            l.activation().apply(s + l.bias().unwrap()[i]),
            "row {i}"
        );
    }
}

#[test]
fn all_zero_input_gives_activation_of_bias() {
    let m = model(&[(20, 30)], 0.5, 3, 1);
    let out = CpuEngine::new(m.clone()).unwrap().run(&[0.0; 30]).unwrap();
    let bias = m.layers()[0].bias().unwrap();
    for (o, b) in out.iter().zip(bias) {
        assert_eq!(*o, *b); // identity activation
    }
}

#[test]
fn bad_inputs_are_typed_errors() {
    let m = model(&[(4, 6)], 0.5, 2, 1);
    let e = CpuEngine::new(m.clone()).unwrap();
    assert!(matches!(e.run(&[1.0; 5]), Err(Error::Shape(_))));
    assert!(matches!(e.run(&[]), Err(Error::Shape(_))));
    let mut x = vec![1.0; 12];
    x[7] = f32::NAN;
    assert!(matches!(
        e.with_precision(Precision::Fixed16).run(&x),
        Err(Error::NonFinite { index: 7, .. })
    ));
    assert!(DenseOracle::new(&m).run(&x).is_err());
}

#[test]
fn fixed16_is_independent_of_pe_count() {
    // Integer accumulation is order-independent, so re-interleaving cannot change one bit.
    let m = model(&[(70, 40), (30, 70)], 0.25, 4, 5);
    let x = eie::synth::activations(40 * 3, 0.5, 8);
    // `as_stored` runs each interleaving as it is (`new` would re-interleave both sides to
    // the same PE count).
    assert_eq!(m.layers()[0].pes(), 4);
    let a = CpuEngine::as_stored(m.clone())
        .with_precision(Precision::Fixed16)
        .run(&x)
        .unwrap();
    for pes in [1, 3, 64] {
        let other = m.with_pes(pes).unwrap();
        assert_eq!(other.layers()[0].pes(), pes);
        let b = CpuEngine::as_stored(other)
            .with_precision(Precision::Fixed16)
            .run(&x)
            .unwrap();
        assert_eq!(a, b, "pes = {pes}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn engine_tracks_oracle_on_random_layers(
        rows in 1usize..60, cols in 1usize..60, density in 0.05f64..=1.0,
        pes in 1usize..17, batch in 1usize..4, seed in 0u64..1000,
    ) {
        let m = model(&[(rows, cols)], density, pes, seed);
        let x = eie::synth::activations(cols * batch, 0.6, seed + 1);
        let oracle = DenseOracle::new(&m).run(&x).unwrap();
        let f = CpuEngine::new(m.clone()).unwrap().run(&x).unwrap();
        prop_assert!(ErrorStats::compare(&f, &oracle).max_rel < 1e-5);
        let q = CpuEngine::new(m).unwrap().with_precision(Precision::Fixed16).run(&x).unwrap();
        prop_assert!(ErrorStats::compare(&q, &oracle).max_abs < 2e-2);
    }
}

#[test]
fn row_and_column_walks_give_identical_results() {
    // The row-ordered walk sums each row's terms in the same (increasing column) order as the
    // column walk, one input or a tile of them, f32 or f16: every bit must agree, and agree
    // with the hardware-order reference at the file's PE count.
    use eie::reference::CpuWalk;
    let m = model(&[(203, 150), (77, 203), (9, 77)], 0.2, 6, 21);
    for batch in [1usize, 3, 16, 37] {
        for density in [0.05, 0.5, 1.0] {
            let x = eie::synth::activations(150 * batch, density, 5 + batch as u64);
            for p in [Precision::F32, Precision::F16] {
                let e = CpuEngine::new(m.clone()).unwrap();
                let cols = e
                    .clone()
                    .with_walk(CpuWalk::Columns)
                    .with_precision(p)
                    .run(&x)
                    .unwrap();
                let rows = e
                    .clone()
                    .with_walk(CpuWalk::Rows)
                    .with_precision(p)
                    .run(&x)
                    .unwrap();
                let auto = e.with_precision(p).run(&x).unwrap();
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&cols),
                    bits(&rows),
                    "batch {batch}, density {density}, {p:?}"
                );
                assert_eq!(
                    bits(&cols),
                    bits(&auto),
                    "batch {batch}, density {density}, {p:?}"
                );
            }
            // Against layer_f32 at the stored PE count, input by input, layer by layer.
            let f = CpuEngine::new(m.clone())
                .unwrap()
                .with_walk(CpuWalk::Rows)
                .run(&x)
                .unwrap();
            for b in 0..batch {
                let mut cur = x[b * 150..(b + 1) * 150].to_vec();
                for l in m.layers() {
                    let mut next = vec![0f32; l.rows()];
                    layer_f32(l, &cur, &mut next).unwrap();
                    cur = next;
                }
                assert_eq!(cur, f[b * 9..(b + 1) * 9], "input {b}");
            }
        }
    }
}

#[test]
fn row_walk_handles_wide_layers_and_empty_rows() {
    // More than 65 535 columns takes the 32-bit column indices; rows without weights and a
    // row count that is not a multiple of the row group still come out right.
    use eie::reference::CpuWalk;
    let m = model(&[(11, 70_000)], 0.001, 3, 2);
    let x = eie::synth::activations(70_000 * 2, 0.9, 4);
    let e = CpuEngine::new(m.clone()).unwrap();
    let cols = e.clone().with_walk(CpuWalk::Columns).run(&x).unwrap();
    let rows = e.with_walk(CpuWalk::Rows).run(&x).unwrap();
    assert_eq!(cols, rows);
    let oracle = DenseOracle::new(&m).run(&x).unwrap();
    assert!(ErrorStats::compare(&rows, &oracle).max_rel < 1e-5);
}

#[test]
fn column_walk_copy_spans_gaps_longer_than_its_runs() {
    // The engine's column copy holds 12-bit runs: a gap of 4096 rows or more still needs a
    // padding entry. Rows 0, 5000 and 9999 of column 0 and row 9999 of column 1 leave gaps of
    // over 4096 rows in each PE's slice at 1 and 2 PEs.
    use eie::format::SparseCodes;
    use eie::reference::CpuWalk;
    let codes = SparseCodes {
        rows: 10_000,
        cols: 3,
        col_ptr: vec![0, 3, 4, 4],
        row_idx: vec![0, 5000, 9999, 9999],
        code: vec![3, 15, 7, 1],
    };
    let codebook: Vec<f32> = (0..16)
        .map(|k| k as f32 * 0.25 - 1.5 * (k > 0) as i32 as f32)
        .collect();
    for pes in [1, 2, 3] {
        let layer =
            eie::EieLayer::encode(&codes, codebook.clone(), 4, pes, None, Activation::Identity)
                .unwrap();
        let m = Model::new(vec![layer]).unwrap();
        let x = [0.5f32, -2.0, 1.0];
        let mut want = vec![0f32; 10_000];
        layer_f32(&m.layers()[0], &x, &mut want).unwrap();
        for walk in [CpuWalk::Columns, CpuWalk::Rows, CpuWalk::Auto] {
            for e in [
                CpuEngine::new(m.clone()).unwrap(),
                CpuEngine::as_stored(m.clone()),
            ] {
                let got = e.with_walk(walk).run(&x).unwrap();
                assert_eq!(got, want, "pes {pes}, {walk:?}");
            }
        }
        assert_eq!(want[0], codebook[3] * 0.5);
        assert_eq!(want[5000], codebook[15] * 0.5);
        assert_eq!(want[9999], codebook[7] * 0.5 + codebook[1] * -2.0);
    }
}

/// A model compressed the way `eie compress` does (formats chosen from the weights), from
/// seeded Gaussian layers whose weights are scaled by `scale` (1.0: N(0, 1/cols)).
fn compressed(shapes: &[(usize, usize)], scale: f32, density: f64, seed: u64) -> Model {
    let n = shapes.len();
    let dense: Vec<eie::compress::DenseLayer> = shapes
        .iter()
        .enumerate()
        .map(|(i, &(rows, cols))| {
            let mut d =
                eie::synth::dense_layer(&format!("l{i}"), rows, cols, true, seed + i as u64);
            d.weights.iter_mut().for_each(|w| *w *= scale);
            d
        })
        .collect();
    let plan = eie::compress::CompressPlan::uniform(eie::compress::CompressConfig {
        density,
        pes: 4,
        ..Default::default()
    });
    let acts: Vec<Activation> = (0..n)
        .map(|i| {
            if i + 1 < n {
                Activation::Relu
            } else {
                Activation::Identity
            }
        })
        .collect();
    eie::compress::compress_model(&dense, &plan, &acts).unwrap()
}

#[test]
fn chosen_formats_keep_fixed16_within_1e_2_of_f32() {
    // Layers whose outputs Q5.10 could not hold (a 300 x 40 layer of N(0, 1) weights, a
    // classifier head with logits in the hundreds) or would resolve poorly (tiny weights).
    type Case = (&'static [(usize, usize)], f32, f64);
    let cases: &[Case] = &[
        (&[(300, 40)], 40f32.sqrt(), 1.0),
        (&[(300, 40)], 1.0, 0.5),
        (&[(300, 40)], 10.0 * 40f32.sqrt(), 1.0),
        (&[(10, 100)], 100.0, 0.3),
        (&[(64, 2000)], 0.01, 0.2),
        (&[(300, 784), (100, 300), (10, 100)], 2.0, 0.1),
    ];
    for (i, &(shapes, scale, density)) in cases.iter().enumerate() {
        let m = compressed(shapes, scale, density, 40 + i as u64);
        let x = eie::synth::activations(m.input_size() * 4, 0.5, 7);
        let oracle = DenseOracle::new(&m).run(&x).unwrap();
        let engine = CpuEngine::new(m.clone()).unwrap();
        let (q, sat) = engine
            .with_precision(Precision::Fixed16)
            .run_fixed16(&x)
            .unwrap();
        let err = ErrorStats::compare(&q, &oracle).max_rel;
        assert!(err <= 1e-2, "case {i}: fixed16 error {err:.2e}");
        // Inputs within ±1 never saturate with formats chosen from the weights.
        assert_eq!(sat.total(), 0, "case {i}: {sat:?}");
        // The same formats as Q5.10 everywhere: the cases above that it cannot hold fail.
        let mut q510 = m.clone();
        q510.set_fixed16_fracs(10, &vec![10; m.layers().len()])
            .unwrap();
        let (q, _) = CpuEngine::new(q510)
            .unwrap()
            .with_precision(Precision::Fixed16)
            .run_fixed16(&x)
            .unwrap();
        if i == 2 || i == 3 {
            assert!(ErrorStats::compare(&q, &oracle).max_rel > 0.1, "case {i}");
        }
        // Calibrating on the inputs themselves: no saturation either, and a closer result.
        let mut cal = m.clone();
        eie::calibration::choose_formats(&mut cal, Some(&x)).unwrap();
        let (qc, sat) = CpuEngine::new(cal)
            .unwrap()
            .with_precision(Precision::Fixed16)
            .run_fixed16(&x)
            .unwrap();
        assert_eq!(sat.total(), 0, "case {i} calibrated: {sat:?}");
        let cal_err = ErrorStats::compare(&qc, &oracle).max_rel;
        assert!(
            cal_err <= 1e-2,
            "case {i}: calibrated fixed16 error {cal_err:.2e}"
        );
    }
}

#[test]
fn saturations_are_counted_per_layer() {
    let mut m = model(&[(20, 30), (5, 20)], 0.5, 3, 9);
    m.set_fixed16_fracs(10, &[10, 10]).unwrap();
    let engine = CpuEngine::as_stored(m.clone());
    let mut x = eie::synth::activations(30 * 2, 0.5, 3);
    // Counting is a fixed16 run: an engine in another precision refuses it, typed.
    assert!(matches!(
        engine.run_fixed16(&x),
        Err(Error::UnsupportedPrecision { .. })
    ));
    let (_, sat) = engine
        .with_precision(Precision::Fixed16)
        .run_fixed16(&x)
        .unwrap();
    assert_eq!(sat, eie::fixed16::Saturations::zero(2));
    // Inputs beyond Q5.10's ±32 are clipped, one count each.
    x[0] = 100.0;
    x[31] = -40.0;
    let (y, sat) = engine
        .with_precision(Precision::Fixed16)
        .run_fixed16(&x)
        .unwrap();
    assert_eq!(sat.input, 2);
    assert_eq!(
        y,
        engine.with_precision(Precision::Fixed16).run(&x).unwrap()
    );
    // A narrow output format saturates on write-back (counted, over the whole batch).
    m.set_fixed16_fracs(10, &[15, 15]).unwrap();
    let (_, sat) = CpuEngine::as_stored(m.clone())
        .with_precision(Precision::Fixed16)
        .run_fixed16(&x)
        .unwrap();
    assert!(sat.layers.iter().any(|l| l.write_back > 0), "{sat:?}");
    let one: u64 = (0..2)
        .map(|b| {
            let (_, s) = CpuEngine::as_stored(m.clone())
                .with_precision(Precision::Fixed16)
                .run_fixed16(&x[b * 30..(b + 1) * 30])
                .unwrap();
            s.total()
        })
        .sum();
    assert_eq!(sat.total(), one);

    // An accumulator that cannot hold the sum: 5000 inputs of 0.99 times weights near 0.9,
    // with inputs in Q0.15 (accumulator Q.19: ±4096).
    let d = eie::compress::DenseLayer {
        name: "wide".into(),
        rows: 2,
        cols: 5000,
        weights: vec![0.9; 10_000],
        bias: None,
    };
    let config = CompressConfig {
        density: 1.0,
        bits: 2,
        pes: 1,
        ..CompressConfig::default()
    };
    let mut m = Model::new(vec![
        compress_layer(&d, &config, Activation::Identity).unwrap()
    ])
    .unwrap();
    m.set_fixed16_fracs(15, &[0]).unwrap();
    let (_, sat) = CpuEngine::as_stored(m.clone())
        .with_precision(Precision::Fixed16)
        .run_fixed16(&[0.99; 5000])
        .unwrap();
    assert_eq!(sat.layers[0].accumulator, 2);
    // The chooser gives the input fewer fraction bits so that the sum fits.
    eie::calibration::choose_formats(&mut m, None).unwrap();
    let (y, sat) = CpuEngine::as_stored(m)
        .with_precision(Precision::Fixed16)
        .run_fixed16(&[0.99; 5000])
        .unwrap();
    assert_eq!(sat.total(), 0);
    assert!((y[0] - 0.9 * 0.99 * 5000.0).abs() < 0.01 * 4455.0, "{y:?}");
}

#[test]
fn chooser_rejects_bad_calibration_and_bounds() {
    let mut m = model(&[(8, 6)], 0.5, 2, 1);
    let before = m.clone();
    assert!(matches!(
        eie::calibration::choose_formats(&mut m, Some(&[0.5; 7])),
        Err(Error::Shape(_))
    ));
    assert!(eie::calibration::choose_formats(&mut m, Some(&[])).is_err());
    assert!(eie::calibration::choose_formats(&mut m, Some(&[f32::NAN; 6])).is_err());
    assert!(eie::calibration::choose_formats_for_bound(&mut m, -1.0).is_err());
    assert!(eie::calibration::choose_formats_for_bound(&mut m, f32::INFINITY).is_err());
    assert_eq!(m, before);
    // A larger input range gives the input fewer fraction bits.
    eie::calibration::choose_formats_for_bound(&mut m, 1.0).unwrap();
    let narrow = m.input_frac();
    eie::calibration::choose_formats_for_bound(&mut m, 100.0).unwrap();
    assert_eq!(narrow - m.input_frac(), 6);
}

/// The hardware-order fixed16 model ([`eie::reference::layer_fixed16`]) one input at a time.
fn fixed16_one_by_one(m: &Model, x: &[f32]) -> Vec<f32> {
    let mut out = Vec::new();
    for xi in x.chunks_exact(m.input_size()) {
        let mut cur: Vec<i16> = xi
            .iter()
            .map(|&v| eie::fixed16::quantize_activation(v, m.input_frac()))
            .collect();
        for l in m.layers() {
            let mut next = vec![0i16; l.rows()];
            eie::reference::layer_fixed16(l, &cur, &mut next).unwrap();
            cur = next;
        }
        out.extend(
            cur.iter()
                .map(|&q| eie::fixed16::dequantize_activation(q, m.output_frac())),
        );
    }
    out
}

#[test]
fn fixed16_engine_walks_tiles_and_copies_equal_the_hardware_order_model() {
    // A 4-bit layer (walked on the engine's 12-bit-run copy, or by rows in AVX2) over a 6-bit
    // one (its own entries, or by rows in scalar code), sparse enough for zero runs longer
    // than 16 rows, at batch sizes that give one input, one partial tile, and full tiles with
    // a remainder, with each walk.
    let d1 = eie::synth::dense_layer("a", 300, 64, true, 31);
    let d2 = eie::synth::dense_layer("b", 40, 300, true, 32);
    let l1 = compress_layer(
        &d1,
        &CompressConfig {
            density: 0.03,
            bits: 4,
            pes: 2,
            ..CompressConfig::default()
        },
        Activation::Relu,
    )
    .unwrap();
    let l2 = compress_layer(
        &d2,
        &CompressConfig {
            density: 0.1,
            bits: 6,
            pes: 3,
            ..CompressConfig::default()
        },
        Activation::Identity,
    )
    .unwrap();
    let mut m = Model::new(vec![l1, l2]).unwrap();
    eie::calibration::choose_formats(&mut m, None).unwrap();
    assert!(m.layers()[0].padding_count() > 0);
    for batch in [1, 5, 16, 37] {
        let x = eie::synth::activations(64 * batch, 0.5, 40 + batch as u64);
        let want = fixed16_one_by_one(&m, &x);
        for engine in [
            CpuEngine::new(m.clone()).unwrap(),
            CpuEngine::as_stored(m.clone()),
        ] {
            for walk in [CpuWalk::Auto, CpuWalk::Columns, CpuWalk::Rows] {
                let e = engine.clone().with_walk(walk);
                let got = e.with_precision(Precision::Fixed16).run(&x).unwrap();
                assert_eq!(got, want, "batch {batch}, {walk:?}");
                assert_eq!(
                    e.with_precision(Precision::Fixed16)
                        .run_fixed16(&x)
                        .unwrap()
                        .0,
                    want,
                    "batch {batch}, {walk:?}"
                );
            }
        }
    }
}
