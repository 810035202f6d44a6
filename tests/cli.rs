//! The `eie` command line: happy paths and every kind of bad input.

use std::path::{Path, PathBuf};
mod common;
use common::{eie, s};

// Under the harness of `common::gpu::run` (`harness = false`): without an adapter the GPU test
// is reported ignored (counted in the summary), except where a GPU is required.
common::gpu::gpu_main!(
    gpu: [gpu_devices_run_and_verify],
    cpu: [
        compress_info_run_verify,
        run_f16_on_the_cpu_is_the_cpu_engine_in_f16,
        multi_layer_safetensors_in_natural_order,
        bad_settings_are_refused_with_messages,
        compress_never_overwrites_its_input,
        bad_inputs_and_models,
        compress_stores_each_layer_at_its_smallest_interleaving_unless_pes_is_given,
        fixed16_formats_and_saturations_are_reported,
    ],
);

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

/// Runs a command expected to fail; returns its stderr.
fn fails(args: &[&str]) -> String {
    let o = eie(args);
    assert!(!o.status.success(), "eie {args:?} unexpectedly succeeded");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

struct Fixture {
    _dir: tempfile::TempDir,
    weights: PathBuf,
    model: PathBuf,
    input: PathBuf,
    root: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let layer = eie::synth::dense_layer("w", 48, 40, false, 5);
    let weights = root.join("w.npy");
    eie::import::write_npy(&weights, &[48, 40], &layer.weights).unwrap();
    let model = root.join("m.safetensors");
    ok(&[
        "compress",
        s(&weights),
        "-o",
        s(&model),
        "--density",
        "0.2",
        "--pes",
        "6",
        "--relu",
    ]);
    let input = root.join("x.npy");
    let x = eie::synth::activations(3 * 40, 0.5, 2);
    eie::import::write_npy(&input, &[3, 40], &x).unwrap();
    Fixture {
        _dir: dir,
        weights,
        model,
        input,
        root,
    }
}

fn compress_info_run_verify() {
    let f = fixture();
    let info = ok(&["info", s(&f.model)]);
    assert!(info.contains("48x40"), "{info}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["info", s(&f.model), "--json"])).unwrap();
    let l = &json["layers"][0];
    assert_eq!(l["outputs"], 48);
    assert_eq!(l["pes"], 6);
    assert_eq!(l["nonzeros"], 384); // round(0.2 * 48 * 40)
    let out = f.root.join("y.npy");
    ok(&[
        "run",
        s(&f.model),
        "--input",
        s(&f.input),
        "--output",
        s(&out),
    ]);
    let y = eie::import::read_npy(&out).unwrap();
    assert_eq!(y.shape, [3, 48]);
    let model = eie::Model::load(&f.model).unwrap();
    let x = eie::import::read_npy(&f.input).unwrap().data;
    let expect = eie::CpuEngine::new(model)
        .unwrap()
        .with_precision(eie::Precision::F32)
        .run(&x)
        .unwrap();
    assert_eq!(y.data, expect);
    ok(&[
        "run",
        s(&f.model),
        "--input",
        s(&f.input),
        "--output",
        s(&out),
        "--fixed16",
    ]);
    let verify = ok(&["verify", s(&f.model), "--batch", "2"]);
    assert!(verify.contains("cpu-eie/f32") && verify.contains("cpu-eie/fixed16"));
    let verify: serde_json::Value = serde_json::from_str(&ok(&[
        "verify",
        s(&f.model),
        "--input",
        s(&f.input),
        "--json",
    ]))
    .unwrap();
    assert!(verify
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["passed"] == true));
}

fn run_f16_on_the_cpu_is_the_cpu_engine_in_f16() {
    let f = fixture();
    let out = f.root.join("y16.npy");
    let run = |extra: &[&'static str]| {
        let mut args = vec![
            "run",
            s(&f.model),
            "--input",
            s(&f.input),
            "--output",
            s(&out),
        ];
        args.extend_from_slice(extra);
        args
    };
    ok(&run(&["--f16"]));
    let y = eie::import::read_npy(&out).unwrap();
    assert_eq!(y.shape, [3, 48]);
    let model = eie::Model::load(&f.model).unwrap();
    let x = eie::import::read_npy(&f.input).unwrap().data;
    let engine = eie::CpuEngine::new(model).unwrap();
    assert_eq!(
        y.data,
        engine.with_precision(eie::Precision::F16).run(&x).unwrap()
    );
    assert_ne!(
        y.data,
        engine.with_precision(eie::Precision::F32).run(&x).unwrap()
    );
    ok(&run(&["--f16", "--backend", "cpu"]));
    assert_eq!(eie::import::read_npy(&out).unwrap().data, y.data);
    // --pes stays the GPU's; --f16 and --fixed16 exclude each other.
    let err = fails(&run(&["--f16", "--pes", "4"]));
    assert!(err.contains("--pes applies to --backend gpu"), "{err}");
    let err = fails(&run(&["--f16", "--fixed16"]));
    assert!(err.contains("cannot be used with"), "{err}");
}

fn multi_layer_safetensors_in_natural_order() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("net.safetensors");
    let a = eie::synth::dense_layer("a", 16, 12, true, 1);
    let b = eie::synth::dense_layer("b", 8, 16, true, 2);
    let t = |n: &str, shape: Vec<usize>, v: &[f32]| (n.to_string(), shape, v.to_vec());
    common::write_f32_tensors(
        &p,
        &[
            t("layers.2.weight", vec![16, 12], &a.weights),
            t("layers.2.bias", vec![16], a.bias.as_ref().unwrap()),
            t("layers.10.weight", vec![8, 16], &b.weights),
            t("layers.10.bias", vec![8], b.bias.as_ref().unwrap()),
        ],
    );
    let m = dir.path().join("net.eie");
    ok(&[
        "compress",
        s(&p),
        "-o",
        s(&m),
        "--density",
        "0.5",
        "--activations",
        "relu,identity",
    ]);
    let json: serde_json::Value = serde_json::from_str(&ok(&["info", s(&m), "--json"])).unwrap();
    assert_eq!(json["layers"][0]["name"], "layers.2.weight");
    assert_eq!(json["layers"][0]["activation"], "relu");
    assert_eq!(json["layers"][1]["name"], "layers.10.weight");
    assert_eq!(json["layers"][1]["bias"], true);
    ok(&["verify", s(&m)]);
    let err = fails(&[
        "compress",
        s(&p),
        "-o",
        s(&m),
        "--tensor",
        "layers.3.weight",
    ]);
    assert!(
        err.contains("layers.3.weight") && err.contains("not found"),
        "{err}"
    );
}

fn bad_settings_are_refused_with_messages() {
    let f = fixture();
    let out = f.root.join("o.safetensors");
    for (flag, value, needle) in [
        ("--density", "0", "density"),
        ("--density", "1.5", "density"),
        ("--bits", "9", "bits"),
        ("--bits", "1", "bits"),
        ("--pes", "0", "PE"),
    ] {
        let err = fails(&["compress", s(&f.weights), "-o", s(&out), flag, value]);
        assert!(err.contains(needle), "{flag} {value}: {err}");
    }
    assert!(!out.exists());
    let err = fails(&["compress", "/no/such/file.npy", "-o", s(&out)]);
    assert!(err.contains("/no/such/file.npy"), "{err}");
}

fn compress_never_overwrites_its_input() {
    let f = fixture();
    let before = std::fs::read(&f.weights).unwrap();
    let err = fails(&["compress", s(&f.weights), "-o", s(&f.weights)]);
    assert!(err.contains("refusing"), "{err}");
    assert_eq!(std::fs::read(&f.weights).unwrap(), before);
}

fn bad_inputs_and_models() {
    let f = fixture();
    let out = f.root.join("y.npy");
    let wrong = f.root.join("wrong.npy");
    eie::import::write_npy(&wrong, &[41], &[0.5; 41]).unwrap();
    let err = fails(&[
        "run",
        s(&f.model),
        "--input",
        s(&wrong),
        "--output",
        s(&out),
    ]);
    assert!(err.contains("shape"), "{err}");
    let nan = f.root.join("nan.npy");
    let mut x = vec![0.5; 40];
    x[3] = f32::NAN;
    eie::import::write_npy(&nan, &[40], &x).unwrap();
    let err = fails(&["run", s(&f.model), "--input", s(&nan), "--output", s(&out)]);
    assert!(err.contains("non-finite"), "{err}");
    assert!(!out.exists());
    let mut bytes = std::fs::read(&f.model).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0xff;
    let bad = f.root.join("bad.safetensors");
    std::fs::write(&bad, &bytes).unwrap();
    let err = fails(&["info", s(&bad)]);
    assert!(err.contains("corrupt model"), "{err}");
    std::fs::write(&bad, &bytes[..n / 2]).unwrap();
    let err = fails(&["verify", s(&bad)]);
    assert!(err.contains("corrupt model"), "{err}");
}

#[cfg(feature = "gpu")]
fn gpu_devices_run_and_verify() {
    let f = fixture();
    let required = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("EIE_REQUIRE_GPU").is_ok_and(|v| v == "1");
    if let Err(e) = eie::gpu::GpuContext::new(&eie::gpu::DeviceOptions::default()) {
        assert!(
            !required,
            "a GPU adapter is required here (CI / EIE_REQUIRE_GPU): {e}"
        );
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "GPU CLI test skipped: no GPU adapter ({e}); on Debian/Ubuntu \
             `apt-get install libvulkan1 mesa-vulkan-drivers` provides lavapipe"
        );
        return;
    }
    let devices = ok(&["devices"]);
    assert!(devices.contains("features: timestamps"), "{devices}");
    let listed: serde_json::Value = serde_json::from_str(&ok(&["devices", "--json"])).unwrap();
    assert!(!listed.as_array().unwrap().is_empty());
    let model = eie::Model::load(&f.model).unwrap();
    let x = eie::import::read_npy(&f.input).unwrap().data;
    let out = f.root.join("y_gpu.npy");
    // fixed16 on the GPU writes exactly the CPU model's values.
    ok(&[
        "run",
        s(&f.model),
        "--input",
        s(&f.input),
        "--output",
        s(&out),
        "--backend",
        "gpu",
        "--fixed16",
        "--pes",
        "4",
    ]);
    let y = eie::import::read_npy(&out).unwrap();
    assert_eq!(y.shape, [3, 48]);
    let expect = eie::CpuEngine::new(model)
        .unwrap()
        .with_precision(eie::Precision::Fixed16)
        .run(&x)
        .unwrap();
    assert_eq!(y.data, expect);
    let verify = ok(&["verify", s(&f.model), "--batch", "3", "--require-gpu"]);
    for name in [
        "gpu-eie/f32",
        "gpu-eie/fixed16",
        "gpu-dense/f32",
        "gpu-csr/f32",
    ] {
        assert!(verify.contains(name), "{name} missing from\n{verify}");
    }
    let err = fails(&[
        "run",
        s(&f.model),
        "--input",
        s(&f.input),
        "--output",
        s(&out),
        "--pes",
        "4",
    ]);
    assert!(err.contains("--backend gpu"), "{err}");
}

fn compress_stores_each_layer_at_its_smallest_interleaving_unless_pes_is_given() {
    let f = fixture();
    let by_default = f.root.join("small.safetensors");
    ok(&[
        "compress",
        s(&f.weights),
        "-o",
        s(&by_default),
        "--density",
        "0.05",
    ]);
    let model = eie::Model::load(&by_default).unwrap();
    let l = &model.layers()[0];
    assert!(l.pes() <= l.rows());
    assert_eq!(l.pes(), l.smallest_pes());
    let at_64 = l.with_pes(64).unwrap();
    assert!(l.compressed_bytes() < at_64.compressed_bytes());
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["info", s(&by_default), "--json"])).unwrap();
    assert_eq!(json["format_version"], "2");
    assert_eq!(json["layers"][0]["pes"], l.pes());
    assert_eq!(json["layers"][0]["compressed_bytes"], l.compressed_bytes());
    // An explicit count is kept, bare or for the named layer, or from a plan file.
    for pes in ["8", "w=8"] {
        let given = f.root.join("given.safetensors");
        ok(&[
            "compress",
            s(&f.weights),
            "-o",
            s(&given),
            "--density",
            "0.05",
            "--pes",
            pes,
        ]);
        assert_eq!(eie::Model::load(&given).unwrap().layers()[0].pes(), 8);
    }
    let plan = f.root.join("plan.json");
    std::fs::write(&plan, r#"{"default": {"pes": 5}, "layers": {}}"#).unwrap();
    let planned = f.root.join("planned.safetensors");
    ok(&[
        "compress",
        s(&f.weights),
        "-o",
        s(&planned),
        "--plan",
        s(&plan),
    ]);
    assert_eq!(eie::Model::load(&planned).unwrap().layers()[0].pes(), 5);
}

fn fixed16_formats_and_saturations_are_reported() {
    let f = fixture();
    // `eie compress` stored formats chosen from the weights; `eie info` shows them.
    let model = eie::Model::load(&f.model).unwrap();
    assert_eq!(model.input_frac(), 14);
    let info = ok(&["info", s(&f.model)]);
    assert!(info.contains("fixed16 formats: input Q1.14, w Q"), "{info}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["info", s(&f.model), "--json"])).unwrap();
    assert_eq!(json["fixed16_input"], "Q1.14");
    assert!(json["layers"][0]["fixed16_output"]
        .as_str()
        .unwrap()
        .starts_with('Q'));

    // `eie run --fixed16` prints the saturations: none for inputs in range, some for inputs
    // far outside it.
    let out = f.root.join("y.npy");
    let run = |input: &Path| {
        let o = eie(&[
            "run",
            s(&f.model),
            "--input",
            s(input),
            "--output",
            s(&out),
            "--fixed16",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let err = run(&f.input);
    assert!(
        err.contains("fixed16 saturations (input Q1.14, outputs Q") && err.contains("input 0, w 0"),
        "{err}"
    );
    let big = f.root.join("big.npy");
    let mut x = eie::import::read_npy(&f.input).unwrap().data;
    x.iter_mut().for_each(|v| *v *= 100.0);
    eie::import::write_npy(&big, &[3, 40], &x).unwrap();
    let err = run(&big);
    assert!(!err.contains("input 0,"), "{err}");

    // `eie verify` prints them under its table and in each fixed16 report of its JSON.
    // (Saturated, fixed16 is far off: verify fails.)
    let o = eie(&["verify", s(&f.model), "--input", s(&big)]);
    let verify = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success(), "{verify}");
    assert!(
        verify.contains("fixed16 saturations") && !verify.contains("input 0,"),
        "{verify}"
    );
    let o = eie(&["verify", s(&f.model), "--input", s(&f.input), "--json"]);
    let reports: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for r in reports.as_array().unwrap() {
        if r["precision"] == "fixed16" {
            assert_eq!(r["saturations"]["input"], 0, "{r}");
            assert_eq!(r["saturations"]["layers"][0]["write_back"], 0, "{r}");
        } else {
            assert!(r.get("saturations").is_none(), "{r}");
        }
    }
}
