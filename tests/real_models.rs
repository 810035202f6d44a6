//! Per-layer compression settings, and the committed MNIST classifier (`assets/lenet`) really
//! classifying on the CPU.

use eie::classify::{self, LenetAssets};
use eie::compress::{compress_model, CompressPlan, DenseLayer, Setting};
use eie::{Activation, CpuEngine, Precision};
use std::path::Path;
mod common;
use common::{eie, s, write_safetensors};

// Under the harness of `common::gpu::run` (`harness = false`): without an adapter the GPU test
// is reported ignored (counted in the summary), except where a GPU is required.
common::gpu::gpu_main!(
    gpu: [committed_mnist_model_classifies_as_recorded_on_the_gpu],
    cpu: [
        each_layer_gets_its_own_density_bits_and_pes,
        an_unknown_layer_name_is_one_clear_error,
        committed_mnist_model_classifies_as_recorded,
        committed_model_is_the_scripts_quantised_network,
        committed_mnist_model_classifies_in_fixed16_on_the_cpu,
    ],
);

/// A two-layer model, 40 -> 48 -> 10, with seeded Gaussian weights, as `a.weight` / `b.weight`
/// (each with a bias) in a .safetensors file.
fn two_layers(dir: &Path) -> (Vec<DenseLayer>, std::path::PathBuf) {
    let mut a = eie::synth::dense_layer("a.weight", 48, 40, true, 11);
    let mut b = eie::synth::dense_layer("b.weight", 10, 48, true, 12);
    a.name = "a.weight".into();
    b.name = "b.weight".into();
    let path = dir.join("two.safetensors");
    let layers = vec![a, b];
    write_safetensors(&path, &layers);
    (layers, path)
}

fn info_layers(model: &Path) -> Vec<serde_json::Value> {
    let o = eie(&["info", s(model), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["layers"].as_array().unwrap().clone()
}

/// (name, density, bits, PEs) of every layer `eie info` reports.
fn settings(layers: &[serde_json::Value]) -> Vec<(String, f64, u64, u64)> {
    layers
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap().to_string(),
                l["density"].as_f64().unwrap(),
                l["bits"].as_u64().unwrap(),
                l["pes"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn each_layer_gets_its_own_density_bits_and_pes() {
    let dir = tempfile::tempdir().unwrap();
    let (dense, input) = two_layers(dir.path());
    let expected = vec![
        ("a.weight".to_string(), 0.25, 3, 4),
        ("b.weight".to_string(), 0.5, 5, 3),
    ];

    // Lists on the command line (a bare value is the default of the layers a list leaves out).
    let listed = dir.path().join("listed.safetensors");
    let o = eie(&[
        "compress",
        s(&input),
        "-o",
        s(&listed),
        "--density",
        "a.weight=0.25,b.weight=0.5",
        "--bits",
        "5,a.weight=3",
        "--pes",
        "b.weight=3,a.weight=4",
        "--activations",
        "relu,identity",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(settings(&info_layers(&listed)), expected);

    // The same from a plan file.
    let plan_path = dir.path().join("plan.json");
    std::fs::write(
        &plan_path,
        r#"{"default": {"bits": 5}, "layers": {
             "a.weight": {"density": 0.25, "bits": 3, "pes": 4},
             "b.weight": {"density": 0.5, "pes": 3}}}"#,
    )
    .unwrap();
    let planned = dir.path().join("planned.safetensors");
    let o = eie(&[
        "compress",
        s(&input),
        "-o",
        s(&planned),
        "--plan",
        s(&plan_path),
        "--activations",
        "relu,identity",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(settings(&info_layers(&planned)), expected);

    // The library gives the same model, and each layer holds its own settings.
    let plan = CompressPlan::load(&plan_path).unwrap();
    let model = compress_model(&dense, &plan, &[Activation::Relu, Activation::Identity]).unwrap();
    assert_eq!(model, eie::Model::load(&listed).unwrap());
    assert_eq!(model, eie::Model::load(&planned).unwrap());
    let l = model.layers();
    assert_eq!((l[0].nnz(), l[0].bits(), l[0].pes()), (480, 3, 4));
    assert_eq!((l[1].nnz(), l[1].bits(), l[1].pes()), (240, 5, 3));
    // At most 2^bits - 1 distinct shared weights per layer.
    for layer in l {
        let mut v: Vec<f32> = layer
            .dense_weights()
            .into_iter()
            .filter(|&w| w != 0.0)
            .collect();
        v.sort_by(f32::total_cmp);
        v.dedup();
        assert!(v.len() < 1 << layer.bits(), "{}", layer.name());
    }
}

fn an_unknown_layer_name_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (dense, input) = two_layers(dir.path());
    let out = dir.path().join("m.safetensors");
    let o = eie(&[
        "compress",
        s(&input),
        "-o",
        s(&out),
        "--density",
        "a.weight=0.2,fc9=0.3",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("`fc9`") && err.contains("a.weight, b.weight"),
        "{err}"
    );
    assert!(!out.exists());

    let plan_path = dir.path().join("plan.json");
    std::fs::write(&plan_path, r#"{"layers": {"c.weight": {"bits": 3}}}"#).unwrap();
    let o = eie(&[
        "compress",
        s(&input),
        "-o",
        s(&out),
        "--plan",
        s(&plan_path),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("`c.weight`"));

    let mut plan = CompressPlan::default();
    plan.set_from_list(Setting::Pes, "b=2").unwrap();
    let e = compress_model(&dense, &plan, &[]).unwrap_err().to_string();
    assert!(e.contains("`b`") && e.contains("a.weight, b.weight"), "{e}");

    // Out-of-range values name their layer.
    let o = eie(&["compress", s(&input), "-o", s(&out), "--bits", "b.weight=9"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("b.weight"), "{err}");
}

fn recorded_layers() -> serde_json::Value {
    let text = std::fs::read_to_string(LenetAssets::source_dir().join("results.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["layers"].clone()
}

fn committed_mnist_model_classifies_as_recorded() {
    let assets = LenetAssets::load(LenetAssets::source_dir()).unwrap();
    assert_eq!(assets.labels.len(), 1000);
    let (x, labels) = assets.first(200);
    let rec = &assets.recorded;

    // The compressed model on the CPU engine: within 0.5 points (one image of 200) of the
    // script's own figure for these images.
    let engine = CpuEngine::new(assets.model.clone()).unwrap();
    let y = engine.run(x).unwrap();
    let got = classify::correct(&classify::top1(&y, 10), labels);
    assert!(
        got.abs_diff(rec.correct_of_first_200.compressed) <= 1,
        "compressed: {got}/200 correct, the script recorded {}",
        rec.correct_of_first_200.compressed
    );
    // The dense weights, forward in f32.
    let yd = assets.dense_outputs(x).unwrap();
    let dense = classify::correct(&classify::top1(&yd, 10), labels);
    assert!(
        dense.abs_diff(rec.correct_of_first_200.dense) <= 1,
        "dense: {dense}/200 correct, the script recorded {}",
        rec.correct_of_first_200.dense
    );
    // And they are real classifiers: far above chance.
    assert!(got >= 190 && dense >= 190, "{got} {dense}");
}

fn committed_model_is_the_scripts_quantised_network() {
    let assets = LenetAssets::load(LenetAssets::source_dir()).unwrap();
    let recorded = recorded_layers();
    let plan = CompressPlan::load(LenetAssets::source_dir().join("plan.json")).unwrap();
    let acts: Vec<&str> = assets
        .model
        .layers()
        .iter()
        .map(|l| l.activation().name())
        .collect();
    assert_eq!(acts, ["relu", "relu", "identity"]);
    for l in assets.model.layers() {
        let r = &recorded[l.name()];
        let config = plan.config_for(l.name());
        assert_eq!(l.bits(), config.bits, "{}", l.name());
        assert_eq!(l.pes(), config.pes, "{}", l.name());
        assert_eq!(r["bits"].as_u64(), Some(config.bits as u64));
        assert_eq!(
            l.nnz(),
            (config.density * (l.rows() * l.cols()) as f64).round() as usize
        );
        assert_eq!(l.nnz() as u64, r["nonzeros"].as_u64().unwrap());
        // The codebook holds exactly the script's centroids (index 0 = zero).
        let centroids: Vec<f32> = r["centroids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let cb = l.codebook();
        assert_eq!(cb[0], 0.0);
        assert_eq!(&cb[1..=centroids.len()], &centroids[..], "{}", l.name());
        assert!(cb[centroids.len() + 1..].iter().all(|&c| c == 0.0));
    }
}

/// Normwise relative difference of `got` from `want`: the largest absolute difference over the
/// largest magnitude of `want` (as `eie verify`).
fn rel_diff(got: &[f32], want: &[f32]) -> f64 {
    eie::reference::ErrorStats::compare(got, want).max_rel
}

fn committed_mnist_model_classifies_in_fixed16_on_the_cpu() {
    let assets = LenetAssets::load(LenetAssets::source_dir()).unwrap();
    let rec = &assets.recorded;
    let engine = CpuEngine::new(assets.model.clone()).unwrap();
    // The stored formats are the chooser's, from the weights (what `eie compress` stores).
    let mut chosen = assets.model.clone();
    eie::calibration::choose_formats(&mut chosen, None).unwrap();
    assert_eq!(chosen, assets.model);
    let (x, labels) = assets.first(200);
    let (y, sat) = engine
        .with_precision(Precision::Fixed16)
        .run_fixed16(x)
        .unwrap();
    let got = classify::correct(&classify::top1(&y, 10), labels);
    assert!(
        got.abs_diff(rec.correct_of_first_200.compressed) <= 1,
        "fixed16: {got}/200 correct, the script recorded {}",
        rec.correct_of_first_200.compressed
    );
    assert_eq!(sat.total(), 0, "{sat:?}");
    // Within 1e-2 of f32 (normwise, per image and over all 1000 images).
    let all = &assets.images;
    let (yq, sat) = engine
        .with_precision(Precision::Fixed16)
        .run_fixed16(all)
        .unwrap();
    let yf = engine.run(all).unwrap();
    assert_eq!(sat.total(), 0, "{sat:?}");
    let worst = yq
        .chunks(10)
        .zip(yf.chunks(10))
        .map(|(q, f)| rel_diff(q, f))
        .fold(0f64, f64::max);
    assert!(worst <= 1e-2, "fixed16 differs from f32 by {worst:.2e}");
    assert!(rel_diff(&yq, &yf) <= 1e-2);
}

/// The shared GPU context, or `None` after one line saying why when this machine has no
/// adapter; where a GPU is required (`CI=true` or `EIE_REQUIRE_GPU=1`) a missing adapter fails.
#[cfg(feature = "gpu")]
fn gpu() -> Option<std::sync::Arc<eie::gpu::GpuContext>> {
    use std::io::Write;
    let required = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("EIE_REQUIRE_GPU").is_ok_and(|v| v == "1");
    match eie::gpu::GpuContext::new(&eie::gpu::DeviceOptions::default()) {
        Ok(ctx) => Some(ctx),
        Err(e) if !required => {
            let _ = writeln!(
                std::io::stderr(),
                "GPU tests skipped: no GPU adapter ({e}); on Debian/Ubuntu \
                 `apt-get install libvulkan1 mesa-vulkan-drivers` provides lavapipe"
            );
            None
        }
        Err(e) => panic!("a GPU adapter is required here (CI / EIE_REQUIRE_GPU): {e}"),
    }
}

#[cfg(feature = "gpu")]
fn committed_mnist_model_classifies_as_recorded_on_the_gpu() {
    use eie::gpu::{EngineOptions, GpuEngine};
    let Some(ctx) = gpu() else { return };
    let assets = LenetAssets::load(LenetAssets::source_dir()).unwrap();
    let rec = assets.recorded.correct_of_first_200.compressed;
    let (x, labels) = assets.first(200);
    let cpu = CpuEngine::new(assets.model.clone()).unwrap();
    for precision in [Precision::F32, Precision::Fixed16] {
        let opts = EngineOptions {
            precision,
            ..EngineOptions::default()
        };
        let e = GpuEngine::new(ctx.clone(), &assets.model, opts).unwrap();
        let y = e.run(x).unwrap();
        let got = classify::correct(&classify::top1(&y, 10), labels);
        assert!(
            got.abs_diff(rec) <= 1,
            "GPU {}: {got}/200 correct, the script recorded {rec}",
            precision.name()
        );
        let want = cpu.with_precision(precision).run(x).unwrap();
        if precision == Precision::Fixed16 {
            assert_eq!(y, want, "GPU fixed16 differs from the CPU model");
        } else {
            let d = rel_diff(&y, &want);
            assert!(d <= 1e-5, "GPU f32 differs from the CPU by {d:.2e}");
        }
    }
}
