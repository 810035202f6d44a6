//! Accuracy-aware compression of sequence models: the search over small seeded LSTM and GRU
//! models with a classifier keeps its budget as the sequence engine measures it, shrinks the
//! model, keeps what the user fixed, and the command line runs it end to end with clear errors
//! for bad calibration files.

use eie::compress::{
    mean_cosine, Budget, CompressPlan, LayerSettings, SearchOptions, SearchResult, SearchSpace,
    Setting,
};
use eie::format::{CellKind, SequenceModel, Stage};
use eie::recurrent::{
    cell, compress_stages, search_sequence, DenseStage, SequenceEngine, SequenceState,
};
use eie::{Activation, Precision};
use std::path::Path;
mod common;
use common::{eie, s};

const IN: usize = 8;
const HIDDEN: usize = 12;
const CLASSES: usize = 5;
const N: usize = 48;
const T: usize = 6;

/// A recurrent layer `rnn` (PyTorch's `nn.LSTM` / `nn.GRU` names, `IN` inputs, `HIDDEN`
/// units) and a classifier `head` (`CLASSES` outputs), written as a `.safetensors` file.
fn write_model(path: &Path, kind: CellKind, seed: u64) {
    let gates = kind.gates() * HIDDEN;
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for (part, cols, k) in [("ih", IN, 0), ("hh", HIDDEN, 1)] {
        let l = eie::synth::dense_layer("x", gates, cols, true, seed * 10 + k);
        // Larger weights than the 1/sqrt(cols) default: gates that move with their inputs.
        let w: Vec<f32> = l.weights.iter().map(|w| 1.5 * w).collect();
        tensors.push((format!("rnn.weight_{part}_l0"), vec![gates, cols], w));
        tensors.push((format!("rnn.bias_{part}_l0"), vec![gates], l.bias.unwrap()));
    }
    let head = eie::synth::dense_layer("head.weight", CLASSES, HIDDEN, true, seed * 10 + 2);
    let w: Vec<f32> = head.weights.iter().map(|w| 3.0 * w).collect();
    tensors.push(("head.weight".into(), vec![CLASSES, HIDDEN], w));
    tensors.push(("head.bias".into(), vec![CLASSES], head.bias.unwrap()));
    common::write_f32_tensors(path, &tensors);
}

/// The model's stages as `eie compress` reads them, and seeded calibration sequences
/// `[N, T, IN]` with values in [-1, 1].
fn model(kind: CellKind, seed: u64) -> (Vec<DenseStage>, Vec<f32>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    write_model(&path, kind, seed);
    let stages = eie::recurrent::pytorch::load_dense_stages(&path, &[]).unwrap();
    let x = eie::synth::activations(N * T * IN, 0.8, seed + 100)
        .into_iter()
        .enumerate()
        .map(|(i, v)| if i % 3 == 0 { -v } else { v })
        .collect();
    (stages, x)
}

/// The uncompressed model's outputs at every step (`[N, T, CLASSES]`), in f64 from the dense
/// weights: the yardstick, computed apart from the search's own f32 evaluation.
fn dense_outputs(stages: &[DenseStage], x: &[f32]) -> Vec<f32> {
    let affine = |d: &eie::compress::DenseLayer, v: &[f64]| -> Vec<f64> {
        (0..d.rows)
            .map(|r| {
                let w = &d.weights[r * d.cols..(r + 1) * d.cols];
                let b = d.bias.as_ref().map_or(0.0, |b| b[r] as f64);
                w.iter().zip(v).fold(b, |s, (&w, &v)| s + w as f64 * v)
            })
            .collect()
    };
    let mut out = Vec::new();
    for seq in x.chunks_exact(T * IN) {
        let mut states: Vec<(Vec<f64>, Vec<f64>)> = stages
            .iter()
            .map(|s| (vec![0.0; s.output_size()], vec![0.0; s.output_size()]))
            .collect();
        for step in seq.chunks_exact(IN) {
            let mut v: Vec<f64> = step.iter().map(|&a| a as f64).collect();
            for (s, (h, c)) in stages.iter().zip(&mut states) {
                v = match s {
                    DenseStage::Fc(d) => affine(d, &v),
                    DenseStage::Recurrent(r) => {
                        let (gx, gh) = (affine(&r.ih, &v), affine(&r.hh, h));
                        cell::update(r.kind, &gx, &gh, h, c);
                        h.clone()
                    }
                };
            }
            out.extend(v.iter().map(|&a| a as f32));
        }
    }
    out
}

/// The compressed model's outputs at every step, from the f32 sequence engine itself.
fn engine_outputs(model: &SequenceModel, x: &[f32]) -> Vec<f32> {
    let engine = SequenceEngine::new(model.clone(), Precision::F32).unwrap();
    let mut states = vec![SequenceState::zeros(model); N];
    engine.run_batch(x, N, T, &mut states).unwrap()
}

/// The last step's output of each sequence.
fn last_steps(y: &[f32]) -> Vec<f32> {
    y.chunks_exact(T * CLASSES)
        .flat_map(|s| s[(T - 1) * CLASSES..].to_vec())
        .collect()
}

fn small_space() -> SearchOptions {
    SearchOptions {
        space: SearchSpace {
            densities: vec![0.1, 0.2, 0.3, 0.5, 1.0],
            bits: vec![2, 3, 4, 6],
        },
        ..SearchOptions::default()
    }
}

/// Every matrix at density 1 with `bits`-bit codebooks, stored at its smallest PE count (what
/// `eie compress --bits B` makes).
fn at_density_one(stages: &[DenseStage], bits: u8) -> SequenceModel {
    let mut plan = CompressPlan::default();
    plan.set_from_list(Setting::Bits, &bits.to_string())
        .unwrap();
    compress_stages(stages, &plan, &[Activation::Identity], false).unwrap()
}

fn model_bytes(m: &SequenceModel) -> usize {
    m.stages()
        .iter()
        .flat_map(Stage::matrices)
        .map(|l| l.compressed_bytes())
        .sum()
}

fn dense_bytes(m: &SequenceModel) -> usize {
    m.stages()
        .iter()
        .flat_map(Stage::matrices)
        .map(|l| l.dense_bytes())
        .sum()
}

fn search(
    stages: &[DenseStage],
    x: &[f32],
    budget: &Budget,
    options: &SearchOptions,
) -> eie::Result<SearchResult<SequenceModel>> {
    search_sequence(
        stages,
        &[Activation::Identity],
        x,
        T,
        budget,
        options,
        &mut |_| {},
    )
}

#[test]
fn cosine_budget_is_kept_by_the_sequence_engine_and_the_model_shrinks() {
    for (kind, seed) in [(CellKind::Lstm, 1), (CellKind::Gru, 2)] {
        let (stages, x) = model(kind, seed);
        let budget = 0.99;
        let r = search(&stages, &x, &Budget::MinCosine(budget), &small_space()).unwrap();
        // Every matrix is a layer of the search, named by its tensor.
        let names: Vec<&str> = r.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(
            names,
            ["rnn.weight_ih_l0", "rnn.weight_hh_l0", "head.weight"],
            "{kind:?}"
        );
        assert_eq!(r.sensitivity.len(), 3);
        assert!(r.sensitivity.iter().all(|s| s.points.len() == 20));
        // The budget, measured on the calibration inputs by the engine against the dense f64
        // model, over the outputs of every step.
        let dense = dense_outputs(&stages, &x);
        let y = engine_outputs(&r.model, &x);
        let cos = mean_cosine(&y, &dense, CLASSES);
        assert!(cos >= budget - 1e-4, "{kind:?}: cosine {cos}");
        assert!(
            (r.metric - cos).abs() < 1e-3,
            "{kind:?}: {} vs {cos}",
            r.metric
        );
        // Smaller than dense f32, and than every matrix at density 1 with the grid's largest
        // codebooks (6 bits), the least lossy setting.
        let bytes = model_bytes(&r.model);
        assert_eq!(bytes, r.layers.iter().map(|l| l.bytes).sum::<usize>());
        assert!(
            bytes * 3 < dense_bytes(&r.model) * 2,
            "{kind:?}: {bytes} of {}",
            dense_bytes(&r.model)
        );
        assert!(
            bytes < model_bytes(&at_density_one(&stages, 6)),
            "{kind:?}: {bytes} bytes"
        );
        // The gate matrices own whole hidden units per PE.
        for l in r.model.recurrent_layers() {
            assert_eq!(HIDDEN % l.ih().pes(), 0);
            assert_eq!(HIDDEN % l.hh().pes(), 0);
        }
        // A looser budget never needs more bytes, and one that plain density-1 compression
        // with 4-bit codebooks keeps is kept smaller than that.
        let loose = search(&stages, &x, &Budget::MinCosine(0.95), &small_space()).unwrap();
        let loose_bytes = model_bytes(&loose.model);
        assert!(loose_bytes <= bytes, "{kind:?}");
        let full = at_density_one(&stages, 4);
        let full_cos = mean_cosine(&engine_outputs(&full, &x), &dense, CLASSES);
        assert!(
            full_cos >= 0.95,
            "{kind:?}: density 1 at 4 bits: cosine {full_cos}"
        );
        assert!(
            loose_bytes < model_bytes(&full),
            "{kind:?}: {loose_bytes} vs {} at density 1",
            model_bytes(&full)
        );
        let cos = mean_cosine(&engine_outputs(&loose.model, &x), &dense, CLASSES);
        assert!(cos >= 0.95 - 1e-4, "{kind:?}: cosine {cos}");
        assert!(
            loose.layers.iter().any(|l| l.density < 1.0),
            "{:?}",
            loose.layers
        );
    }
}

#[test]
fn a_density_the_user_fixes_is_kept() {
    let (stages, x) = model(CellKind::Lstm, 3);
    let options = SearchOptions {
        plan: CompressPlan::default().with_layer(
            "rnn.weight_hh_l0",
            LayerSettings {
                density: Some(0.3),
                bits: None,
                pes: Some(3),
            },
        ),
        ..small_space()
    };
    let r = search(&stages, &x, &Budget::MinCosine(0.95), &options).unwrap();
    let hh = &r.layers[1];
    assert_eq!(
        (hh.name.as_str(), hh.density, hh.pes),
        ("rnn.weight_hh_l0", 0.3, 3)
    );
    assert!(r.sensitivity[1].points.iter().all(|p| p.density == 0.3));
    assert_eq!(r.sensitivity[1].points.len(), 4); // the bits are still the search's
    let layer = r.model.recurrent_layers().next().unwrap().hh();
    let weights = 4 * HIDDEN * HIDDEN;
    assert!(layer.nnz() <= (0.3 * weights as f64).round() as usize);
    assert!(layer.nnz() * 4 > weights, "{} of {weights}", layer.nnz());
    assert_eq!(layer.pes(), 3);
    // A PE count that does not divide the hidden units is an error before any search.
    let options = SearchOptions {
        plan: CompressPlan::default().with_layer(
            "rnn.weight_ih_l0",
            LayerSettings {
                pes: Some(5),
                ..LayerSettings::default()
            },
        ),
        ..small_space()
    };
    let e = search(&stages, &x, &Budget::MinCosine(0.95), &options).unwrap_err();
    assert!(e.to_string().contains("5 PEs do not divide"), "{e}");
}

#[test]
fn accuracy_budget_judges_the_last_step() {
    let (stages, x) = model(CellKind::Gru, 4);
    // Labels: the dense model's class at the last step, another class for one sequence in 8.
    let dense_last = last_steps(&dense_outputs(&stages, &x));
    let labels: Vec<usize> = eie::classify::top1(&dense_last, CLASSES)
        .into_iter()
        .enumerate()
        .map(|(i, c)| if i % 8 == 5 { (c + 1) % CLASSES } else { c })
        .collect();
    // 48 sequences: one sequence is 2.1 points, so the drop is taken as measured (no margin).
    let budget = Budget::MaxAccuracyDrop {
        points: 5.0,
        labels: labels.clone(),
    };
    let options = SearchOptions {
        margin: 0.0,
        ..small_space()
    };
    let r = search(&stages, &x, &budget, &options).unwrap();
    let dense_acc = eie::classify::accuracy_pct(&dense_last, CLASSES, &labels).unwrap();
    assert!(
        (r.dense_metric - dense_acc).abs() < 1e-9,
        "{}",
        r.dense_metric
    );
    let y = last_steps(&engine_outputs(&r.model, &x));
    let acc = eie::classify::accuracy_pct(&y, CLASSES, &labels).unwrap();
    assert!(dense_acc - acc <= 5.0 + 1e-9, "{dense_acc} -> {acc}");
    assert!(model_bytes(&r.model) * 2 < dense_bytes(&r.model));
    // One label per sequence, not per step.
    let per_step = Budget::MaxAccuracyDrop {
        points: 5.0,
        labels: vec![0; N * T],
    };
    let e = search(&stages, &x, &per_step, &small_space()).unwrap_err();
    assert!(
        e.to_string().contains(&format!("{} labels for {N}", N * T)),
        "{e}"
    );
}

#[test]
fn bad_calibration_sequences_are_shape_errors() {
    let (stages, x) = model(CellKind::Lstm, 5);
    let budget = Budget::MinCosine(0.9);
    // Not whole sequences of T steps of IN inputs.
    let e = search(&stages, &x[..x.len() - 1], &budget, &small_space()).unwrap_err();
    assert!(matches!(e, eie::Error::Shape(_)), "{e}");
    let mut nan = x.clone();
    nan[17] = f32::NAN;
    let e = search(&stages, &nan, &budget, &small_space()).unwrap_err();
    assert!(matches!(e, eie::Error::NonFinite { .. }), "{e}");
}

/// Runs `eie` and returns (success, stdout, stderr).
fn eie_out(args: &[&str]) -> (bool, String, String) {
    let o = eie(args);
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn command_line_searches_a_recurrent_model() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("lstm.safetensors");
    write_model(&weights, CellKind::Lstm, 6);
    let (stages, x) = model(CellKind::Lstm, 6);
    let xs = dir.path().join("x.npy");
    eie::import::write_npy(&xs, &[N, T, IN], &x).unwrap();
    let out_model = dir.path().join("m.eie");
    let (ok, out, err) = eie_out(&[
        "compress",
        s(&weights),
        "-o",
        s(&out_model),
        "--calibration",
        s(&xs),
        "--min-cosine",
        "0.98",
        "--bits",
        "rnn.weight_hh_l0=5",
    ]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("48 sequences of 6 steps")
            && out.contains("rnn.weight_ih_l0")
            && out.contains("rnn.weight_hh_l0")
            && out.contains("head.weight")
            && out.contains("cosine alone"),
        "{out}"
    );
    assert!(dir.path().join("m.eie.sensitivity.svg").exists());
    let model = SequenceModel::load(&out_model).unwrap();
    assert_eq!(model.recurrent_layers().next().unwrap().hh().bits(), 5);
    let cos = mean_cosine(
        &engine_outputs(&model, &x),
        &dense_outputs(&stages, &x),
        CLASSES,
    );
    assert!(cos >= 0.98 - 1e-4, "cosine {cos}");

    // Bad calibration files and --bias: one clear error each, and no model written.
    let wide = dir.path().join("wide.npy");
    eie::import::write_npy(&wide, &[N, T / 2, 2 * IN], &x).unwrap();
    let flat = dir.path().join("flat.npy");
    eie::import::write_npy(&flat, &[N * T, IN], &x).unwrap();
    let nan = dir.path().join("nan.npy");
    let mut bad = x.clone();
    bad[5] = f32::NAN;
    eie::import::write_npy(&nan, &[N, T, IN], &bad).unwrap();
    let never = dir.path().join("never.eie");
    for (calibration, extra, want) in [
        (
            &wide,
            vec![],
            "have 16 values each; the first layer `rnn.weight_ih_l0` takes 8",
        ),
        (&flat, vec![], "takes calibration sequences [n, steps, 8]"),
        (&nan, vec![], "NaN"),
        (&xs, vec!["--bias", "rnn.bias_ih_l0"], "bias_ih and bias_hh"),
        (&xs, vec!["--balance"], "--balance"),
    ] {
        let mut args = vec![
            "compress",
            s(&weights),
            "-o",
            s(&never),
            "--calibration",
            s(calibration),
            "--min-cosine",
            "0.9",
        ];
        args.extend(extra.iter());
        let (ok, out, err) = eie_out(&args);
        assert!(!ok && err.contains(want), "{args:?}: {out}{err}");
        assert!(!never.exists(), "{args:?} wrote a model");
    }
}
