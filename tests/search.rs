//! Accuracy-aware compression: the search keeps its budget on a small seeded classifier, is
//! deterministic, and turns bad settings into one clear error (library and command line).

use eie::classify;
use eie::compress::{
    mean_cosine, search, Budget, CompressPlan, DenseLayer, LayerSettings, SearchOptions,
    SearchResult, SearchSpace, Setting,
};
use eie::{Activation, CpuEngine, Error};
use std::path::Path;
mod common;
use common::{eie, s, write_safetensors};

const IN: usize = 48;
const HIDDEN: usize = 40;
const CLASSES: usize = 6;
const N: usize = 300;

/// A seeded 48 -> 40 -> 6 ReLU classifier, its calibration inputs (ReLU-like: a third zero)
/// and labels: the uncompressed network's own class, flipped to another class for one input
/// in ten (so the uncompressed network is not perfect).
fn classifier() -> (Vec<DenseLayer>, Vec<Activation>, Vec<f32>, Vec<usize>) {
    let layers = vec![
        eie::synth::dense_layer("hidden.weight", HIDDEN, IN, true, 21),
        eie::synth::dense_layer("out.weight", CLASSES, HIDDEN, true, 22),
    ];
    let acts = vec![Activation::Relu, Activation::Identity];
    let x = eie::synth::activations(N * IN, 0.66, 23);
    let y = classify::dense_forward(&layers, &acts, &x).unwrap();
    let labels = classify::top1(&y, CLASSES)
        .into_iter()
        .enumerate()
        .map(|(i, c)| if i % 10 == 3 { (c + 1) % CLASSES } else { c })
        .collect();
    (layers, acts, x, labels)
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

fn run(budget: &Budget, options: &SearchOptions) -> eie::Result<SearchResult> {
    let (layers, acts, x, _) = classifier();
    search(&layers, &acts, &x, budget, options, &mut |_| {})
}

/// The model's outputs on the calibration inputs, from the EIE CPU engine itself.
fn engine_outputs(r: &SearchResult, x: &[f32]) -> Vec<f32> {
    CpuEngine::new(r.model.clone()).unwrap().run(x).unwrap()
}

#[test]
fn accuracy_budget_is_kept_by_the_real_engine_and_the_model_shrinks() {
    let (layers, acts, x, labels) = classifier();
    let budget = Budget::MaxAccuracyDrop {
        points: 6.0,
        labels: labels.clone(),
    };
    let r = run(&budget, &small_space()).unwrap();
    let dense_y = classify::dense_forward(&layers, &acts, &x).unwrap();
    let dense_acc = classify::accuracy_pct(&dense_y, CLASSES, &labels).unwrap();
    let acc = classify::accuracy_pct(&engine_outputs(&r, &x), CLASSES, &labels).unwrap();
    assert!((r.dense_metric - dense_acc).abs() < 1e-9);
    assert!(
        dense_acc - acc <= 6.0 + 1e-9,
        "drop {} > 6 points",
        dense_acc - acc
    );
    // The loss it reports includes the margin, so the drop itself is smaller.
    assert!(r.loss <= 6.0 && dense_acc - r.metric <= r.loss + 1e-9);
    // It compressed: well below dense f32, and below every layer at its largest grid point.
    let bytes: usize = r.layers.iter().map(|c| c.bytes).sum();
    let dense_bytes: usize = r.layers.iter().map(|c| c.dense_bytes).sum();
    let largest: usize = r
        .sensitivity
        .iter()
        .map(|s| s.points.iter().map(|p| p.bytes).max().unwrap())
        .sum();
    assert!(bytes * 3 < dense_bytes * 2, "{bytes} of {dense_bytes}");
    assert!(bytes * 3 < largest * 2, "{bytes} of {largest}");
    assert!(r.layers.iter().any(|c| c.density < 1.0), "{:?}", r.layers);
    // Its fixed16 formats come from the calibration inputs.
    let mut chosen = r.model.clone();
    eie::calibration::choose_formats(&mut chosen, Some(&x)).unwrap();
    assert_eq!(chosen.layers(), r.model.layers());
    // Every chosen setting is on the grid and recorded in the sensitivity table.
    for (c, s) in r.layers.iter().zip(&r.sensitivity) {
        assert_eq!(c.name, s.name);
        assert_eq!(s.points.len(), 20);
        assert!(s
            .points
            .iter()
            .any(|p| p.density == c.density && p.bits == c.bits));
    }
}

#[test]
fn cosine_budget_is_kept_by_the_real_engine() {
    let (layers, acts, x, _) = classifier();
    let r = run(&Budget::MinCosine(0.995), &small_space()).unwrap();
    let dense_y = classify::dense_forward(&layers, &acts, &x).unwrap();
    let cos = mean_cosine(&engine_outputs(&r, &x), &dense_y, CLASSES);
    assert!(cos >= 0.995 - 1e-6, "cosine {cos}");
    assert!((r.metric - cos).abs() < 1e-4, "{} vs {cos}", r.metric);
    // A looser budget never needs more bytes.
    let loose = run(&Budget::MinCosine(0.95), &small_space()).unwrap();
    let total = |r: &SearchResult| r.layers.iter().map(|c| c.bytes).sum::<usize>();
    assert!(
        total(&loose) <= total(&r),
        "{} > {}",
        total(&loose),
        total(&r)
    );
}

#[test]
fn the_search_is_deterministic() {
    let (_, _, _, labels) = classifier();
    let budget = Budget::MaxAccuracyDrop {
        points: 4.0,
        labels,
    };
    let a = run(&budget, &small_space()).unwrap();
    let b = run(&budget, &small_space()).unwrap();
    assert_eq!(a.layers, b.layers);
    assert_eq!(a.sensitivity, b.sensitivity);
    assert_eq!(a.model.layers(), b.model.layers());
}

#[test]
fn fixed_settings_are_kept() {
    // The plan `compress_model` takes is what the search keeps: here one layer's settings.
    let plan = CompressPlan::default().with_layer(
        "out.weight",
        LayerSettings {
            density: Some(1.0),
            bits: Some(6),
            pes: Some(2),
        },
    );
    let options = SearchOptions {
        plan: plan.clone(),
        ..small_space()
    };
    let r = run(&Budget::MinCosine(0.99), &options).unwrap();
    let out = &r.layers[1];
    assert_eq!((out.density, out.bits, out.pes), (1.0, 6, 2));
    assert_eq!(r.sensitivity[1].points.len(), 1);
    assert_eq!(r.model.layers()[1].pes(), 2);
    // A plan's given default fixes that setting for every layer it does not name.
    let mut uniform_bits = plan;
    uniform_bits.set_from_list(Setting::Bits, "5").unwrap();
    let options = SearchOptions {
        plan: uniform_bits,
        ..small_space()
    };
    let r = run(&Budget::MinCosine(0.9), &options).unwrap();
    assert_eq!((r.layers[0].bits, r.layers[1].bits), (5, 6));
}

#[test]
fn bad_settings_get_one_clear_error() {
    let (_, _, _, labels) = classifier();
    // A budget no setting meets: a perfect cosine with 2-bit codebooks at 10 % density.
    let options = SearchOptions {
        space: SearchSpace {
            densities: vec![0.1],
            bits: vec![2],
        },
        ..SearchOptions::default()
    };
    let e = run(&Budget::MinCosine(1.0), &options).unwrap_err();
    assert!(matches!(e, Error::BudgetUnreachable(_)), "{e}");
    assert!(e.to_string().contains("cosine"), "{e}");
    // Labels of the wrong length, and out of range.
    let short = Budget::MaxAccuracyDrop {
        points: 1.0,
        labels: labels[..N - 1].to_vec(),
    };
    let e = run(&short, &small_space()).unwrap_err();
    assert!(e.to_string().contains("299 labels for 300"), "{e}");
    let mut wrong = labels.clone();
    wrong[7] = CLASSES;
    let e = run(
        &Budget::MaxAccuracyDrop {
            points: 1.0,
            labels: wrong,
        },
        &small_space(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("label 7 is 6"), "{e}");
    // An unknown layer in the fixed settings; budgets out of range.
    let options = SearchOptions {
        plan: CompressPlan::default().with_layer("nope", LayerSettings::default()),
        ..small_space()
    };
    let e = run(&Budget::MinCosine(0.9), &options).unwrap_err();
    assert!(e.to_string().contains("`nope`"), "{e}");
    for b in [
        Budget::MinCosine(1.5),
        Budget::MinCosine(f64::NAN),
        Budget::MaxAccuracyDrop {
            points: -1.0,
            labels,
        },
    ] {
        assert!(run(&b, &small_space()).is_err(), "{b:?} accepted");
    }
}

/// A `.npy` of little-endian i64 values, shape `[n]`.
fn write_labels(path: &Path, labels: &[usize]) {
    let mut header = format!(
        "{{'descr': '<i8', 'fortran_order': False, 'shape': ({},), }}",
        labels.len()
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for &l in labels {
        bytes.extend_from_slice(&(l as i64).to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn command_line_search_writes_model_table_and_chart() {
    let dir = tempfile::tempdir().unwrap();
    let (layers, _, x, labels) = classifier();
    let weights = dir.path().join("w.safetensors");
    write_safetensors(&weights, &layers);
    let xs = dir.path().join("x.npy");
    eie::import::write_npy(&xs, &[N, IN], &x).unwrap();
    let ls = dir.path().join("labels.npy");
    write_labels(&ls, &labels);
    let model = dir.path().join("m.eie");
    let base = [
        "compress",
        s(&weights),
        "-o",
        s(&model),
        "--activations",
        "relu,identity",
        "--calibration",
        s(&xs),
    ];

    let mut args = base.to_vec();
    args.extend([
        "--labels",
        s(&ls),
        "--max-accuracy-drop",
        "8",
        "--bits",
        "4",
    ]);
    let o = eie(&args);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("hidden.weight") && out.contains("out.weight"),
        "{out}"
    );
    assert!(
        out.contains("top-1 % alone") && out.contains("smaller"),
        "{out}"
    );
    let chart = std::fs::read_to_string(dir.path().join("m.eie.sensitivity.svg")).unwrap();
    assert!(chart.contains("<svg") && chart.contains("hidden.weight"));
    let m = eie::Model::load(&model).unwrap();
    // `--bits 4` fixed the bits of every layer.
    assert!(m.layers().iter().all(|l| l.bits() == 4));

    // Bad combinations: one clear error each, and no model written.
    let bad = dir.path().join("bad.npy");
    write_labels(&bad, &labels[..10]);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![], "needs a budget"),
        (
            vec!["--labels", s(&bad), "--max-accuracy-drop", "1"],
            "10 labels for 300",
        ),
        (
            vec!["--min-cosine", "1.0", "--bits", "2", "--density", "0.1"],
            "no compression setting meets",
        ),
        (
            vec!["--min-cosine", "0.9", "--density", "zz.weight=0.1"],
            "zz.weight",
        ),
    ];
    for (extra, want) in cases {
        let out_model = dir.path().join("never.eie");
        let mut args = base.to_vec();
        args[3] = s(&out_model);
        args.extend(extra.iter());
        let o = eie(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains(want),
            "{extra:?}: {err}"
        );
        assert!(!out_model.exists(), "{extra:?} wrote a model");
    }
}
