//! Recurrent layers: PyTorch imports of every naming, LSTM and GRU against a plain reference
//! written here from PyTorch's equations, the model file, state carried across calls,
//! streaming and batches.

use eie::compress::{CompressConfig, CompressPlan, Setting};
use eie::format::file::{from_bytes, sequence_from_bytes, sequence_to_bytes};
use eie::format::{CellKind, SequenceModel, Stage};
use eie::recurrent::pytorch::load_dense_stages;
use eie::recurrent::{compress_stages, DenseStage, SequenceEngine, SequenceOracle, SequenceState};
use eie::{Activation, Error, Precision};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod common;

/// Named f32 tensors, written as a `.safetensors` file.
type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

fn write_safetensors(path: &Path, tensors: &Tensors) {
    let tensors: Vec<_> = tensors
        .iter()
        .map(|(n, (shape, v))| (n.clone(), shape.clone(), v.clone()))
        .collect();
    common::write_f32_tensors(path, &tensors);
}

/// Weights drawn from 201 distinct values (multiples of 1/256 in ±0.39), so an 8-bit codebook
/// holds them exactly and the compressed model computes with the very weights the reference
/// uses.
fn weights(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| rng.random_range(-100i32..=100) as f32 / 256.0)
        .collect()
}

/// Adds a recurrent layer's tensors as PyTorch names them: `{prefix}weight_ih{suffix}`, ...
fn add_cell(
    t: &mut Tensors,
    rng: &mut ChaCha8Rng,
    prefix: &str,
    suffix: &str,
    (gates, input, hidden): (usize, usize, usize),
    bias: bool,
) {
    let rows = gates * hidden;
    t.insert(
        format!("{prefix}weight_ih{suffix}"),
        (vec![rows, input], weights(rng, rows * input)),
    );
    t.insert(
        format!("{prefix}weight_hh{suffix}"),
        (vec![rows, hidden], weights(rng, rows * hidden)),
    );
    if bias {
        for b in ["bias_ih", "bias_hh"] {
            let v = (0..rows).map(|_| rng.random_range(-0.5f32..0.5)).collect();
            t.insert(format!("{prefix}{b}{suffix}"), (vec![rows], v));
        }
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// `W x + b` in f64 from a PyTorch tensor `[rows, cols]`.
fn affine(t: &Tensors, w: &str, b: &str, x: &[f64]) -> Vec<f64> {
    let (shape, w) = &t[w];
    let cols = shape[1];
    (0..shape[0])
        .map(|i| {
            let s: f64 = (0..cols).map(|j| w[i * cols + j] as f64 * x[j]).sum();
            s + t.get(b).map_or(0.0, |(_, b)| b[i] as f64)
        })
        .collect()
}

/// PyTorch's LSTM (gates i, f, g, o) or GRU (r, z, n; b_hn inside the reset product) written
/// out plainly from the documentation's equations, in f64: one layer over a sequence,
/// returning every step's h and the final (h, c).
fn reference_cell(
    t: &Tensors,
    prefix: &str,
    suffix: &str,
    xs: &[Vec<f64>],
    h0: Vec<f64>,
    c0: Vec<f64>,
) -> (Vec<Vec<f64>>, Vec<f64>, Vec<f64>) {
    let name = |w: &str| format!("{prefix}{w}{suffix}");
    let (rows, hidden) = {
        let s = &t[&name("weight_hh")].0;
        (s[0], s[1])
    };
    let (mut h, mut c) = (h0, c0);
    let mut out = Vec::new();
    for x in xs {
        let gi = affine(t, &name("weight_ih"), &name("bias_ih"), x);
        let gh = affine(t, &name("weight_hh"), &name("bias_hh"), &h);
        let hs = hidden;
        if rows == 4 * hidden {
            let mut nh = vec![0.0; hs];
            for u in 0..hs {
                let i = sigmoid(gi[u] + gh[u]);
                let f = sigmoid(gi[hs + u] + gh[hs + u]);
                let g = (gi[2 * hs + u] + gh[2 * hs + u]).tanh();
                let o = sigmoid(gi[3 * hs + u] + gh[3 * hs + u]);
                c[u] = f * c[u] + i * g;
                nh[u] = o * c[u].tanh();
            }
            h = nh;
        } else {
            let mut nh = vec![0.0; hs];
            for u in 0..hs {
                let r = sigmoid(gi[u] + gh[u]);
                let z = sigmoid(gi[hs + u] + gh[hs + u]);
                let n = (gi[2 * hs + u] + r * gh[2 * hs + u]).tanh();
                nh[u] = (1.0 - z) * n + z * h[u];
            }
            h = nh;
        }
        out.push(h.clone());
    }
    (out, h, c)
}

/// Normwise relative error: max |a − b| / max |b|.
fn rel_err(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let err = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y).abs())
        .fold(0.0, f64::max);
    err / b.iter().map(|v| v.abs()).fold(1e-30, f64::max)
}

/// A plan giving density and bits but no PE count (each matrix then stored at the count
/// that stores smallest; a divisor of H for gate matrices).
fn plan(density: &str, bits: &str) -> CompressPlan {
    let mut plan = CompressPlan::default();
    plan.set_from_list(Setting::Density, density).unwrap();
    plan.set_from_list(Setting::Bits, bits).unwrap();
    plan
}

/// Lossless compression: every weight kept, 8-bit codebooks (exact for [`weights`]).
fn lossless(stages: &[DenseStage], activations: &[Activation]) -> SequenceModel {
    compress_stages(stages, &plan("1.0", "8"), activations, false).unwrap()
}

fn tmp_file(dir: &tempfile::TempDir, name: &str, t: &Tensors) -> PathBuf {
    let p = dir.path().join(name);
    write_safetensors(&p, t);
    p
}

fn inputs(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn steps_of(x: &[f32], width: usize) -> Vec<Vec<f64>> {
    x.chunks(width)
        .map(|c| c.iter().map(|&v| v as f64).collect())
        .collect()
}

#[test]
fn every_pytorch_naming_is_imported_with_its_kind() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    // nn.LSTM with two layers under a prefix, a classifier after it.
    let mut t = Tensors::new();
    add_cell(&mut t, &mut rng, "encoder.lstm.", "_l0", (4, 5, 8), true);
    add_cell(&mut t, &mut rng, "encoder.lstm.", "_l1", (4, 8, 8), true);
    t.insert("fc.weight".into(), (vec![3, 8], weights(&mut rng, 24)));
    t.insert("fc.bias".into(), (vec![3], vec![0.1, 0.2, 0.3]));
    let stages = load_dense_stages(&tmp_file(&dir, "lstm.safetensors", &t), &[]).unwrap();
    let summary: Vec<(String, Option<CellKind>, usize, usize)> = stages
        .iter()
        .map(|s| match s {
            DenseStage::Recurrent(r) => (r.name.clone(), Some(r.kind), r.ih.cols, r.hidden()),
            DenseStage::Fc(l) => (l.name.clone(), None, l.cols, l.rows),
        })
        .collect();
    // "fc" sorts before "encoder..." only by name; the recurrent layers come first because
    // name order does not chain.
    assert_eq!(
        summary,
        vec![
            ("encoder.lstm.l0".into(), Some(CellKind::Lstm), 5, 8),
            ("encoder.lstm.l1".into(), Some(CellKind::Lstm), 8, 8),
            ("fc.weight".into(), None, 8, 3),
        ]
    );
    // nn.GRU without a prefix and without bias.
    let mut t = Tensors::new();
    add_cell(&mut t, &mut rng, "", "_l0", (3, 4, 6), false);
    let stages = load_dense_stages(&tmp_file(&dir, "gru.safetensors", &t), &[]).unwrap();
    match &stages[..] {
        [DenseStage::Recurrent(r)] => {
            assert_eq!(
                (r.name.as_str(), r.kind, r.hidden()),
                ("l0", CellKind::Gru, 6)
            );
            assert!(r.ih.bias.is_none() && r.hh.bias.is_none());
            assert_eq!(r.ih.name, "weight_ih_l0");
        }
        other => panic!("{other:?}"),
    }
    // nn.LSTMCell and nn.GRUCell, with and without a prefix.
    for (prefix, gates, kind, name) in [
        ("model.cell.", 4, CellKind::Lstm, "model.cell"),
        ("", 4, CellKind::Lstm, "cell"),
        ("rnn.", 3, CellKind::Gru, "rnn"),
        ("", 3, CellKind::Gru, "cell"),
    ] {
        let mut t = Tensors::new();
        add_cell(&mut t, &mut rng, prefix, "", (gates, 7, 4), true);
        let stages = load_dense_stages(&tmp_file(&dir, "cell.safetensors", &t), &[]).unwrap();
        match &stages[..] {
            [DenseStage::Recurrent(r)] => {
                assert_eq!((r.name.as_str(), r.kind, r.hidden()), (name, kind, 4));
                assert_eq!(r.hh.name, format!("{prefix}weight_hh"));
                assert_eq!(
                    r.ih.bias.as_ref().unwrap(),
                    &t[&format!("{prefix}bias_ih")].1
                );
            }
            other => panic!("{prefix}: {other:?}"),
        }
    }
}

#[test]
fn unsupported_or_inconsistent_recurrent_tensors_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let load = |t: &Tensors| load_dense_stages(&tmp_file(&dir, "bad.safetensors", t), &[]);
    // Bidirectional.
    let mut t = Tensors::new();
    add_cell(&mut t, &mut rng, "lstm.", "_l0", (4, 3, 4), true);
    add_cell(&mut t, &mut rng, "lstm.", "_l0_reverse", (4, 3, 4), true);
    assert!(matches!(load(&t), Err(Error::InvalidArgument(m)) if m.contains("bidirectional")));
    // Projection.
    let mut t = Tensors::new();
    add_cell(&mut t, &mut rng, "lstm.", "_l0", (4, 3, 4), true);
    t.insert("lstm.weight_hr_l0".into(), (vec![2, 4], vec![0.0; 8]));
    assert!(matches!(load(&t), Err(Error::InvalidArgument(m)) if m.contains("proj")));
    // weight_hh that is neither [4H, H] nor [3H, H].
    let mut t = Tensors::new();
    add_cell(&mut t, &mut rng, "x.", "", (2, 3, 4), false);
    assert!(matches!(load(&t), Err(Error::Shape(_))));
    // weight_ih with the wrong rows, a bias of the wrong length, a missing weight_ih.
    let mut t = Tensors::new();
    add_cell(&mut t, &mut rng, "x.", "", (4, 3, 4), true);
    let mut bad = t.clone();
    bad.insert("x.weight_ih".into(), (vec![12, 3], vec![0.0; 36]));
    assert!(matches!(load(&bad), Err(Error::Shape(_))));
    let mut bad = t.clone();
    bad.insert("x.bias_hh".into(), (vec![15], vec![0.0; 15]));
    assert!(matches!(load(&bad), Err(Error::Shape(_))));
    let mut bad = t.clone();
    bad.remove("x.weight_ih");
    assert!(matches!(load(&bad), Err(Error::InvalidArgument(_))));
    // NaN weights.
    let mut bad = t.clone();
    bad.get_mut("x.weight_hh").unwrap().1[3] = f32::NAN;
    assert!(matches!(load(&bad), Err(Error::NonFinite { .. })));
    // Stages that chain in no order.
    let mut bad = t.clone();
    bad.insert("fc.weight".into(), (vec![2, 5], vec![0.5; 10]));
    assert!(matches!(load(&bad), Err(Error::Shape(m)) if m.contains("--tensor")));
}

/// LSTM then GRU then FC, each against the plain reference; f32 within 1e-5.
#[test]
fn lstm_and_gru_match_the_pytorch_equations_at_f32() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for (gates, hidden, input, steps) in [(4, 16, 12, 9), (3, 12, 10, 7), (4, 30, 7, 5)] {
        let mut t = Tensors::new();
        add_cell(
            &mut t,
            &mut rng,
            "rnn.",
            "_l0",
            (gates, input, hidden),
            true,
        );
        let path = tmp_file(&dir, "m.safetensors", &t);
        let stages = load_dense_stages(&path, &[]).unwrap();
        let model = lossless(&stages, &[]);
        let x = inputs(&mut rng, steps * input);
        let (want, h, c) = reference_cell(
            &t,
            "rnn.",
            "_l0",
            &steps_of(&x, input),
            vec![0.0; hidden],
            vec![0.0; hidden],
        );
        let want: Vec<f64> = want.concat();
        let engine = SequenceEngine::new(model.clone(), Precision::F32).unwrap();
        let mut state = engine.zero_state();
        let got = engine.run(&x, steps, &mut state).unwrap();
        let err = rel_err(&got, &want);
        assert!(err <= 1e-5, "gates {gates}: f32 relative error {err}");
        let mut want_state = h.clone();
        if gates == 4 {
            want_state.extend(&c);
        }
        assert!(rel_err(state.values(), &want_state) <= 1e-5);
        // The dense f64 oracle agrees with the reference to rounding.
        let (oracle, oracle_state) = SequenceOracle::new(&model)
            .unwrap()
            .run(&x, steps, &SequenceState::zeros(&model))
            .unwrap();
        assert!(rel_err(&oracle, &want) <= 1e-6);
        assert!(rel_err(&oracle_state, &want_state) <= 1e-6);
        // f16 storage stays within its tolerance of the reference.
        let f16 = SequenceEngine::new(model.clone(), Precision::F16).unwrap();
        let got16 = f16.run(&x, steps, &mut f16.zero_state()).unwrap();
        let err16 = rel_err(&got16, &want);
        assert!(err16 <= 2e-2, "gates {gates}: f16 relative error {err16}");
        // fixed16 (table σ and tanh, Q1.14 h) within the fixed16 tolerance.
        let fixed = SequenceEngine::new(model.clone(), Precision::Fixed16).unwrap();
        let mut fixed_state = fixed.zero_state();
        let got_fixed = fixed.run(&x, steps, &mut fixed_state).unwrap();
        let err_fixed = rel_err(&got_fixed, &want);
        eprintln!("gates {gates}: f32 {err:.1e}, f16 {err16:.1e}, fixed16 {err_fixed:.1e}");
        assert!(
            err_fixed <= 1e-2,
            "gates {gates}: fixed16 relative error {err_fixed}"
        );
        assert!(rel_err(fixed_state.values(), &want_state) <= 1e-2);
    }
}

/// A two-layer LSTM with a nonzero initial state and a ReLU classifier.
#[test]
fn stacked_layers_with_a_classifier_and_an_initial_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let (input, hidden, steps) = (6, 10, 8);
    let mut t = Tensors::new();
    add_cell(
        &mut t,
        &mut rng,
        "layers.0.",
        "_l0",
        (4, input, hidden),
        true,
    );
    add_cell(
        &mut t,
        &mut rng,
        "layers.0.",
        "_l1",
        (4, hidden, hidden),
        true,
    );
    t.insert(
        "layers.1.weight".into(),
        (vec![4, hidden], weights(&mut rng, 4 * hidden)),
    );
    t.insert(
        "layers.1.bias".into(),
        (vec![4], vec![0.25, -0.25, 0.0, 0.5]),
    );
    let stages = load_dense_stages(&tmp_file(&dir, "m.safetensors", &t), &[]).unwrap();
    let model = lossless(&stages, &[Activation::Relu]);
    assert_eq!(model.state_size(), 4 * hidden);
    let x = inputs(&mut rng, steps * input);
    let init = inputs(&mut rng, 4 * hidden);
    let xs = steps_of(&x, input);
    let part = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
    let (h1, _, _) = reference_cell(
        &t,
        "layers.0.",
        "_l0",
        &xs,
        part(&init[..hidden]),
        part(&init[hidden..2 * hidden]),
    );
    let (h2, _, _) = reference_cell(
        &t,
        "layers.0.",
        "_l1",
        &h1,
        part(&init[2 * hidden..3 * hidden]),
        part(&init[3 * hidden..]),
    );
    let want: Vec<f64> = h2
        .iter()
        .flat_map(|h| {
            affine(&t, "layers.1.weight", "layers.1.bias", h)
                .into_iter()
                .map(|v| v.max(0.0))
        })
        .collect();
    let engine = SequenceEngine::new(model.clone(), Precision::F32).unwrap();
    let mut state = SequenceState::from_values(&model, init.clone()).unwrap();
    let got = engine.run(&x, steps, &mut state).unwrap();
    let err = rel_err(&got, &want);
    assert!(err <= 1e-5, "relative error {err}");
    // Wrong state lengths and NaN states are typed errors.
    assert!(matches!(
        SequenceState::from_values(&model, vec![0.0; 3]),
        Err(Error::Shape(_))
    ));
    let mut nan = init;
    nan[1] = f32::NAN;
    assert!(matches!(
        SequenceState::from_values(&model, nan),
        Err(Error::NonFinite { .. })
    ));
    // Wrong input lengths and NaN inputs too.
    let mut s = engine.zero_state();
    assert!(matches!(
        engine.run(&x[1..], steps, &mut s),
        Err(Error::Shape(_))
    ));
    assert!(matches!(engine.run(&x, 0, &mut s), Err(Error::Shape(_))));
    let mut xn = x.clone();
    xn[5] = f32::INFINITY;
    assert!(matches!(
        engine.run(&xn, steps, &mut s),
        Err(Error::NonFinite { .. })
    ));
}

/// A sequence split into two calls, the state carried, equals one call, bit for bit; so do
/// step-by-step streaming and a batch of sequences. Small layers, and layers large enough that
/// a streamed step runs its two products side by side.
#[test]
fn split_streamed_and_batched_sequences_equal_one_call() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for (gates, (input, hidden, steps), density) in [
        (4, (9, 12, 11), "0.3"),
        (3, (9, 12, 11), "0.3"),
        (4, (40, 96, 6), "0.8"),
        (3, (40, 96, 6), "0.8"),
    ] {
        let mut t = Tensors::new();
        add_cell(
            &mut t,
            &mut rng,
            "rnn.",
            "_l0",
            (gates, input, hidden),
            true,
        );
        t.insert(
            "rnn_out.weight".into(),
            (vec![5, hidden], weights(&mut rng, 5 * hidden)),
        );
        let stages = load_dense_stages(&tmp_file(&dir, "m.safetensors", &t), &[]).unwrap();
        // A pruned, 4-bit model this time: the engine must agree with itself whatever the
        // weights.
        let model =
            compress_stages(&stages, &plan(density, "4"), &[Activation::Identity], false).unwrap();
        let Stage::Recurrent(r) = &model.stages()[0] else {
            panic!("an LSTM or GRU first")
        };
        let entries = r.ih().entry_count() + r.hh().entry_count();
        assert_eq!(
            entries >= eie::reference::PARALLEL_MIN_ENTRIES,
            hidden > 12,
            "{entries} entries: the large layers must take the side-by-side step"
        );
        for precision in [Precision::F32, Precision::F16, Precision::Fixed16] {
            let engine = SequenceEngine::new(model.clone(), precision).unwrap();
            let x = inputs(&mut rng, steps * input);
            let mut whole_state = engine.zero_state();
            let whole = engine.run(&x, steps, &mut whole_state).unwrap();
            let split = 4;
            let mut state = engine.zero_state();
            let mut parts = engine.run(&x[..split * input], split, &mut state).unwrap();
            parts.extend(
                engine
                    .run(&x[split * input..], steps - split, &mut state)
                    .unwrap(),
            );
            assert_eq!(parts, whole, "{precision:?}: split");
            assert_eq!(state, whole_state);
            let mut stream = engine.stream();
            let streamed: Vec<f32> = x
                .chunks(input)
                .flat_map(|xt| stream.push(xt).unwrap())
                .collect();
            assert_eq!(streamed, whole, "{precision:?}: streamed");
            assert_eq!(stream.into_state(), whole_state);
            // A batch of three sequences, the middle one ours.
            let others = inputs(&mut rng, 2 * steps * input);
            let batch_x: Vec<f32> =
                [&others[..steps * input], &x, &others[steps * input..]].concat();
            let mut states = vec![engine.zero_state(); 3];
            let batched = engine.run_batch(&batch_x, 3, steps, &mut states).unwrap();
            let width = model.output_size();
            assert_eq!(&batched[steps * width..2 * steps * width], &whole[..]);
            assert_eq!(states[1], whole_state);
        }
    }
}

#[test]
fn recurrent_models_round_trip_through_the_file_and_own_their_gates_per_pe() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let mut t = Tensors::new();
    add_cell(&mut t, &mut rng, "a.", "_l0", (4, 5, 12), true);
    add_cell(&mut t, &mut rng, "b.", "", (3, 12, 12), false);
    t.insert("c.weight".into(), (vec![2, 12], weights(&mut rng, 24)));
    let stages = load_dense_stages(&tmp_file(&dir, "m.safetensors", &t), &[]).unwrap();
    let plan = plan("0.5", "4").with_layer(
        "a.weight_hh_l0",
        eie::compress::LayerSettings {
            pes: Some(4),
            ..Default::default()
        },
    );
    let model = compress_stages(&stages, &plan, &[Activation::Identity], false).unwrap();
    let kinds: Vec<Option<CellKind>> = model
        .stages()
        .iter()
        .map(|s| match s {
            Stage::Recurrent(r) => Some(r.kind()),
            Stage::Fc(_) => None,
        })
        .collect();
    assert_eq!(kinds, [Some(CellKind::Lstm), Some(CellKind::Gru), None]);
    // Each PE owns every gate of its hidden units: row g × H + u lies on PE u mod N.
    for r in model.recurrent_layers() {
        for m in [r.ih(), r.hh()] {
            let pes = m.pes();
            assert_eq!(r.hidden() % pes, 0, "{}", m.name());
            for g in 0..r.kind().gates() {
                for u in 0..r.hidden() {
                    assert_eq!((g * r.hidden() + u) % pes, u % pes);
                }
            }
        }
    }
    let Stage::Recurrent(a) = &model.stages()[0] else {
        panic!()
    };
    assert_eq!(a.hh().pes(), 4, "a PE count given in the plan is kept");
    let path = dir.path().join("m.eie");
    model.save(&path).unwrap();
    let back = SequenceModel::load(&path).unwrap();
    assert_eq!(back, model);
    let bytes = sequence_to_bytes(&model).unwrap();
    assert_eq!(sequence_from_bytes(&bytes).unwrap(), model);
    assert_eq!(eie::format::file::version_of(&path).unwrap(), "3");
    // The plain loader names what to do instead.
    match from_bytes(&bytes) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("SequenceModel"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A model without recurrent layers is written as version 2, and reads back as the same
    // model through either loader.
    let fc = eie::synth::dense_layer("fc.weight", 20, 12, true, 7);
    let config = CompressConfig {
        density: 0.3,
        ..CompressConfig::default()
    };
    let plain = eie::Model::new(vec![eie::compress::compress_layer(
        &fc,
        &config,
        Activation::Relu,
    )
    .unwrap()])
    .unwrap();
    let seq = SequenceModel::from(plain.clone());
    let plain_path = dir.path().join("plain.eie");
    seq.save(&plain_path).unwrap();
    assert_eq!(eie::format::file::version_of(&plain_path).unwrap(), "2");
    assert_eq!(eie::Model::load(&plain_path).unwrap(), plain);
    assert_eq!(SequenceModel::load(&plain_path).unwrap(), seq);
    // A PE count that does not divide H is refused.
    let bad = CompressPlan::uniform(CompressConfig {
        pes: 5,
        ..CompressConfig::default()
    });
    assert!(matches!(
        compress_stages(&stages, &bad, &[Activation::Identity], false),
        Err(Error::InvalidArgument(m)) if m.contains("divide")
    ));
}

/// The committed sequential-MNIST LSTM (`assets/seqmnist`) on the first 1000 MNIST test images
/// (`assets/lenet/test-images.npy`), each read as 28 steps of 28 pixels: as accurate as
/// `evaluate.py` recorded through `eie run --last`, in f32 and fixed16.
#[test]
fn the_committed_sequential_mnist_lstm_reads_digits_row_by_row() {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    let model = SequenceModel::load(assets.join("seqmnist/seqmnist-lstm.eie.safetensors")).unwrap();
    assert_eq!((model.input_size(), model.output_size()), (28, 10));
    let recorded: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(assets.join("seqmnist/results.json")).unwrap(),
    )
    .unwrap();
    let (n, width, pixels) =
        eie::classify::read_images(&assets.join("lenet/test-images.npy")).unwrap();
    assert_eq!((n, width), (1000, 784));
    let labels = eie::classify::read_labels(&assets.join("lenet/test-labels.npy"), 10).unwrap();
    for precision in [Precision::F32, Precision::Fixed16] {
        let engine = SequenceEngine::new(model.clone(), precision).unwrap();
        let mut states = vec![engine.zero_state(); n];
        let out = engine.run_batch(&pixels, n, 28, &mut states).unwrap();
        let correct = out
            .chunks(28 * 10)
            .zip(&labels)
            .filter(|(y, &label)| {
                let last = &y[27 * 10..];
                let best = (0..10)
                    .max_by(|&a, &b| last[a].total_cmp(&last[b]))
                    .unwrap();
                best == label
            })
            .count();
        let want = recorded[format!("eie_{}_correct_first_1000", precision.name())]
            .as_u64()
            .unwrap() as usize;
        eprintln!("{precision:?}: {correct}/1000 (recorded {want})");
        // The same engine as `eie run`; a few digits of slack for another platform's libm.
        assert!(correct + 3 >= want, "{precision:?}: {correct} < {want}");
    }
}
