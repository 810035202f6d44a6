//! The GPU schedule without a GPU (`eie plan`): on the paper's nine layers at batch 1 the EIE
//! kernel is one dispatch per layer, or two where its columns are split (the reduction), and
//! reads no more metadata than entries; and the command's JSON has the documented shape.

use eie::schedule::cost::model_costs;
use eie::schedule::{DeviceLimits, PePlan};
use std::process::Command;

#[test]
fn paper_layers_one_dispatch_and_metadata_within_entries() {
    let limits = DeviceLimits::default();
    for p in &eie::paper::PAPER_LAYERS {
        let model = p.model(64, eie::paper::DEFAULT_SEED).unwrap();
        let x = p.input(1, eie::paper::DEFAULT_SEED);
        let costs = model_costs(&model, &x, PePlan::Auto, &limits).unwrap();
        let eie = costs
            .iter()
            .find(|c| c.kernel == "gpu-eie/f32")
            .expect("the f32 EIE kernel is planned");
        let (_, slices) = eie.pes_slices.expect("EIE rows carry PEs and slices");
        assert_eq!(eie.dispatches, 1 + (slices > 1) as u32, "{}", p.name);
        assert!(eie.bytes.entries > 0, "{}", p.name);
        assert!(
            eie.bytes.metadata <= eie.bytes.entries,
            "{}: metadata {} > entries {}",
            p.name,
            eie.bytes.metadata,
            eie.bytes.entries
        );
        // The plain CSR kernel reads every weight; EIE only the non-zero columns' entries.
        let csr = costs.iter().find(|c| c.kernel == "gpu-csr/f32").unwrap();
        assert!(eie.bytes.entries < csr.bytes.entries, "{}", p.name);
    }
}

#[test]
fn plan_command_prints_the_documented_json() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.npy");
    let m = dir.path().join("m.eie");
    let dense = eie::synth::dense_layer("fc", 96, 200, true, 3);
    eie::import::write_npy(&w, &[96, 200], &dense.weights).unwrap();
    let eie_bin = env!("CARGO_BIN_EXE_eie");
    let ok = Command::new(eie_bin)
        .args(["compress", w.to_str().unwrap(), "-o", m.to_str().unwrap()])
        .args(["--density", "0.2", "--relu"])
        .status()
        .unwrap();
    assert!(ok.success());
    let out = Command::new(eie_bin)
        .args(["plan", m.to_str().unwrap(), "--batch", "3", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(
        layers.len(),
        6,
        "three EIE precisions, the row walk, dense and CSR"
    );
    for l in layers {
        assert_eq!(l["batch"], 3);
        assert!(l["workgroups"].as_u64().unwrap() > 0);
        for k in ["entries", "metadata", "activations", "output"] {
            assert!(l["bytes"][k].is_u64(), "{k}");
        }
        assert!(l["entries_per_lane"]["max"].is_u64());
        assert!(l["entries_per_lane"]["mean"].is_f64());
    }
    assert_eq!(layers[0]["kernel"], "gpu-eie/f32");
    assert!([1, 2].contains(&layers[0]["dispatches"].as_u64().unwrap()));
    // Bad arguments are one-line errors.
    let bad = Command::new(eie_bin)
        .args(["plan", m.to_str().unwrap(), "--batch", "0"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}
