//! The command line with recurrent models: compress PyTorch LSTM/GRU tensors, info, and run
//! over sequences with --last, --state-in and --state-out.

use eie::format::SequenceModel;
use eie::recurrent::{SequenceEngine, SequenceState};
use eie::Precision;
use std::path::{Path, PathBuf};
mod common;
use common::{eie, s};

fn ok(args: &[&str]) -> String {
    let o = eie(args);
    assert!(
        o.status.success(),
        "eie {args:?} failed: {}\nstdout:\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(args: &[&str]) -> String {
    let o = eie(args);
    assert!(!o.status.success(), "eie {args:?} unexpectedly succeeded");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A GRU as `nn.GRU` names it (`rnn.weight_ih_l0`, ..., 6 inputs, 8 hidden units) and a
/// classifier `head` (3 outputs), as PyTorch's state dict names them.
fn write_gru_model(path: &Path) {
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for (part, cols, seed) in [("ih", 6, 1), ("hh", 8, 2)] {
        let l = eie::synth::dense_layer("x", 24, cols, true, seed);
        tensors.push((format!("rnn.weight_{part}_l0"), vec![24, cols], l.weights));
        tensors.push((format!("rnn.bias_{part}_l0"), vec![24], l.bias.unwrap()));
    }
    let head = eie::synth::dense_layer("head.weight", 3, 8, true, 3);
    tensors.push(("head.weight".into(), vec![3, 8], head.weights));
    tensors.push(("head.bias".into(), vec![3], head.bias.unwrap()));
    common::write_f32_tensors(path, &tensors);
}

fn read(p: &Path) -> (Vec<usize>, Vec<f32>) {
    let t = eie::import::read_npy(p).unwrap();
    (t.shape, t.data)
}

#[test]
fn compress_info_and_run_a_recurrent_model() {
    let dir = tempfile::tempdir().unwrap();
    let root: PathBuf = dir.path().into();
    let weights = root.join("gru.safetensors");
    write_gru_model(&weights);
    let model_path = root.join("gru.eie");
    let out = ok(&[
        "compress",
        s(&weights),
        "-o",
        s(&model_path),
        "--density",
        "0.5,rnn.weight_hh_l0=0.3",
        "--bits",
        "5",
    ]);
    assert!(
        out.contains("rnn.l0: GRU layer, 6 inputs, 8 hidden units"),
        "{out}"
    );
    let model = SequenceModel::load(&model_path).unwrap();
    let hh = model.recurrent_layers().next().unwrap().hh();
    assert_eq!(
        (hh.nnz(), hh.bits()),
        ((0.3f64 * 192.0).round() as usize, 5)
    );
    // info, as a table and as JSON.
    let info = ok(&["info", s(&model_path)]);
    assert!(
        info.contains("stage rnn.l0: GRU, 6 inputs -> 8 hidden units (state: h)"),
        "{info}"
    );
    assert!(
        info.contains("gru W_hh") && info.contains("format version 3"),
        "{info}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["info", s(&model_path), "--json"])).unwrap();
    assert_eq!(json["stages"][0]["kind"], "gru");
    assert_eq!(json["stages"][1]["kind"], "fc");
    assert_eq!(json["state_values"], 8);
    assert_eq!(json["layers"].as_array().unwrap().len(), 3);

    // run: one sequence [T, in] -> [T, out], as the library computes it.
    let (steps, n_in) = (7, 6);
    let x: Vec<f32> = (0..steps * n_in)
        .map(|i| ((i * 37 % 17) as f32 - 8.0) / 8.0)
        .collect();
    let input = root.join("x.npy");
    eie::import::write_npy(&input, &[steps, n_in], &x).unwrap();
    let y = root.join("y.npy");
    let state = root.join("state.npy");
    ok(&[
        "run",
        s(&model_path),
        "--input",
        s(&input),
        "--output",
        s(&y),
        "--state-out",
        s(&state),
    ]);
    let engine = SequenceEngine::new(model.clone(), Precision::F32).unwrap();
    let mut want_state = engine.zero_state();
    let want = engine.run(&x, steps, &mut want_state).unwrap();
    assert_eq!(read(&y), (vec![steps, 3], want.clone()));
    assert_eq!(read(&state), (vec![8], want_state.values().to_vec()));
    // --last, and the sequence in two calls with the state carried.
    let first = root.join("x1.npy");
    let second = root.join("x2.npy");
    eie::import::write_npy(&first, &[3, n_in], &x[..3 * n_in]).unwrap();
    eie::import::write_npy(&second, &[4, n_in], &x[3 * n_in..]).unwrap();
    let mid = root.join("mid.npy");
    ok(&[
        "run",
        s(&model_path),
        "--input",
        s(&first),
        "--output",
        s(&y),
        "--state-out",
        s(&mid),
    ]);
    ok(&[
        "run",
        s(&model_path),
        "--input",
        s(&second),
        "--output",
        s(&y),
        "--state-in",
        s(&mid),
        "--last",
    ]);
    assert_eq!(read(&y), (vec![3], want[(steps - 1) * 3..].to_vec()));
    // A batch [B, T, in] of two sequences, the second from a given state.
    let batch_x: Vec<f32> = [x.clone(), x.iter().map(|v| -v).collect()].concat();
    let bx = root.join("bx.npy");
    eie::import::write_npy(&bx, &[2, steps, n_in], &batch_x).unwrap();
    let init: Vec<f32> = (0..16).map(|i| (i as f32 - 8.0) / 10.0).collect();
    let bs = root.join("bs.npy");
    eie::import::write_npy(&bs, &[2, 8], &init).unwrap();
    ok(&[
        "run",
        s(&model_path),
        "--input",
        s(&bx),
        "--output",
        s(&y),
        "--state-in",
        s(&bs),
    ]);
    let mut s2 = SequenceState::from_values(&model, init[8..].to_vec()).unwrap();
    let want2 = engine
        .run(&batch_x[steps * n_in..], steps, &mut s2)
        .unwrap();
    let (shape, got) = read(&y);
    assert_eq!(shape, vec![2, steps, 3]);
    assert_eq!(&got[steps * 3..], &want2[..]);
    // --f16 and --fixed16 run on the CPU for recurrent models, as the library does.
    for flag in ["--f16", "--fixed16"] {
        ok(&[
            "run",
            s(&model_path),
            "--input",
            s(&input),
            "--output",
            s(&y),
            flag,
        ]);
    }
    let fixed = SequenceEngine::new(model.clone(), Precision::Fixed16).unwrap();
    let want_fixed = fixed.run(&x, steps, &mut fixed.zero_state()).unwrap();
    assert_eq!(read(&y), (vec![steps, 3], want_fixed.clone()));
    // Where a GPU is required (CI), the GPU runs it too: fixed16 the CPU's bits.
    let gpu = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("EIE_REQUIRE_GPU").is_ok_and(|v| v == "1");
    if gpu {
        ok(&[
            "run",
            s(&model_path),
            "--input",
            s(&input),
            "--output",
            s(&y),
            "--fixed16",
            "--backend",
            "gpu",
        ]);
        assert_eq!(read(&y), (vec![steps, 3], want_fixed));
    }
    // verify: every precision within its tolerance of the f64 oracle, on the CPU and, where
    // there is one, the GPU.
    let v = ok(&["verify", s(&model_path), "--steps", "12"]);
    assert!(v.contains("cpu-eie/fixed16") && !v.contains("FAIL"), "{v}");
    let mut args = vec!["verify", s(&model_path), "--json"];
    if gpu {
        args.push("--require-gpu");
    }
    let json: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
    let rows = json.as_array().unwrap();
    assert!(rows.len() == 3 || rows.len() == 5, "{json}");
    if gpu {
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[4]["backend"], "gpu-eie/fixed16");
    }
    assert!(rows.iter().all(|r| r["passed"] == true), "{json}");

    // Bad shapes, states and options are one-line errors.
    let flat = root.join("flat.npy");
    eie::import::write_npy(&flat, &[n_in], &x[..n_in]).unwrap();
    let e = fails(&[
        "run",
        s(&model_path),
        "--input",
        s(&flat),
        "--output",
        s(&y),
    ]);
    assert!(e.contains("[steps, 6] or [batch, steps, 6]"), "{e}");
    let e = fails(&[
        "run",
        s(&model_path),
        "--input",
        s(&input),
        "--output",
        s(&y),
        "--state-in",
        s(&bs),
    ]);
    assert!(e.contains("take [8]"), "{e}");
    let e = fails(&[
        "run",
        s(&model_path),
        "--input",
        s(&input),
        "--output",
        s(&y),
        "--pes",
        "4",
    ]);
    assert!(e.contains("--pes applies to --backend gpu"), "{e}");
    let mut nan = x.clone();
    nan[4] = f32::NAN;
    eie::import::write_npy(&input, &[steps, n_in], &nan).unwrap();
    let e = fails(&[
        "run",
        s(&model_path),
        "--input",
        s(&input),
        "--output",
        s(&y),
    ]);
    assert!(e.contains("non-finite"), "{e}");
    // --state-in on a model without recurrent layers.
    let fc = root.join("fc.npy");
    let l = eie::synth::dense_layer("w", 4, 6, true, 9);
    eie::import::write_npy(&fc, &[4, 6], &l.weights).unwrap();
    let fc_model = root.join("fc.eie");
    ok(&["compress", s(&fc), "-o", s(&fc_model)]);
    let e = fails(&[
        "run",
        s(&fc_model),
        "--input",
        s(&flat),
        "--output",
        s(&y),
        "--state-in",
        s(&bs),
    ]);
    assert!(e.contains("recurrent"), "{e}");
    // A per-layer setting for a name that is not a matrix of the file lists the names.
    let e = fails(&[
        "compress",
        s(&weights),
        "-o",
        s(&model_path),
        "--bits",
        "rnn.weight=4",
    ]);
    assert!(e.contains("rnn.weight_ih_l0"), "{e}");
}

#[test]
fn sim_reports_cycles_per_step_of_a_recurrent_model() {
    let dir = tempfile::tempdir().unwrap();
    let root: PathBuf = dir.path().into();
    let weights = root.join("gru.safetensors");
    write_gru_model(&weights);
    let model_path = root.join("gru.eie");
    ok(&[
        "compress",
        s(&weights),
        "-o",
        s(&model_path),
        "--density",
        "0.5",
    ]);
    let model = SequenceModel::load(&model_path).unwrap();
    let (steps, n_in) = (5, 6);
    let x: Vec<f32> = (0..steps * n_in)
        .map(|i| ((i * 29 % 13) as f32 - 6.0) / 6.0)
        .collect();
    let input = root.join("x.npy");
    eie::import::write_npy(&input, &[steps, n_in], &x).unwrap();
    let y = root.join("y.npy");
    let args = [
        "sim",
        s(&model_path),
        "--input",
        s(&input),
        "--pes",
        "4",
        "--output",
        s(&y),
    ];
    let table = ok(&args);
    assert!(
        table.contains("per step:") && table.contains("cell update"),
        "{table}"
    );
    let engine = SequenceEngine::new(model, Precision::F32).unwrap();
    let want = engine.run(&x, steps, &mut engine.zero_state()).unwrap();
    assert_eq!(read(&y), (vec![steps, 3], want));
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let json: serde_json::Value = serde_json::from_str(&ok(&json_args)).unwrap();
    assert_eq!(json["steps"], steps);
    assert_eq!(json["stages"][0]["kind"], "gru");
    assert_eq!(json["stages"][0]["matrices"].as_array().unwrap().len(), 2);
    let per_step: Vec<u64> = json["step_cycles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(per_step.len(), steps);
    assert_eq!(
        json["cycles"].as_u64().unwrap(),
        per_step.iter().sum::<u64>()
    );
    // 3 PEs cannot own whole hidden units of an 8-unit GRU.
    let err = fails(&["sim", s(&model_path), "--input", s(&input), "--pes", "3"]);
    assert!(err.contains("must divide"), "{err}");
}
