//! `benches/gpu_measure.sh run` end to end in its quick mode (one small layer, batch 1, one
//! sample, one sweep setting) on whatever Vulkan adapter this machine has: what comes back
//! (summary.md, steps.tsv, results.tar.gz; at most 8 files), every step in the steps table with
//! its status, and the CUDA steps reported as skipped where there is no CUDA / PyTorch.
//!
//! Without an adapter the test is reported ignored (counted in the summary; `common::gpu::run`),
//! and with one that is not Vulkan it reports itself skipped in one line, except where a GPU is
//! required (`CI=true` or `EIE_REQUIRE_GPU=1`, as `.ci/run` sets): there either fails.

use eie::gpu::{DeviceOptions, GpuContext};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;

mod common;

// Under the harness of `common::gpu::run` (`harness = false`): without an adapter the test is
// reported ignored (counted in the summary), except where a GPU is required (then it fails).
common::gpu::gpu_main!(quick_measurement_run_records_every_step_and_packs_its_results);

fn gpu_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("EIE_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// Whether a Vulkan adapter is present (the script asks wgpu for Vulkan only).
fn vulkan_adapter() -> bool {
    let skip = |why: String| {
        assert!(
            !gpu_required(),
            "a Vulkan adapter is required here (CI / EIE_REQUIRE_GPU): {why}"
        );
        // Written past the test harness's capture, so it shows in `cargo test`.
        let _ = writeln!(
            std::io::stderr(),
            "gpu_measure test skipped: {why}; on Debian/Ubuntu \
             `apt-get install libvulkan1 mesa-vulkan-drivers` provides lavapipe"
        );
        false
    };
    match GpuContext::new(&DeviceOptions::default()) {
        Ok(ctx) if ctx.adapter_info().backend == eie::gpu::wgpu::Backend::Vulkan => true,
        Ok(ctx) => skip(format!(
            "adapter `{}` is {:?}, not Vulkan",
            ctx.adapter_info().name,
            ctx.adapter_info().backend
        )),
        Err(e) => skip(format!("no GPU adapter ({e})")),
    }
}

/// Whether PyTorch with a CUDA device is importable here (then the CUDA steps run).
fn cuda_here() -> bool {
    Command::new("python3")
        .args([
            "-c",
            "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)",
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// steps.tsv as step name -> (status, exit, seconds, note).
fn steps(path: &Path) -> BTreeMap<String, (String, String, f64, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("step\tstatus\texit\tseconds\tnote"),
        "{text}"
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 5, "malformed row `{l}`");
            let secs: f64 = f[3].parse().unwrap_or_else(|_| panic!("seconds in `{l}`"));
            (
                f[0].to_string(),
                (f[1].to_string(), f[2].to_string(), secs, f[4].to_string()),
            )
        })
        .collect()
}

fn quick_measurement_run_records_every_step_and_packs_its_results() {
    if !vulkan_adapter() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let (out, gl, work) = (
        tmp.path().join("out"),
        tmp.path().join("gl"),
        tmp.path().join("tmp"),
    );
    for d in [&gl, &work] {
        std::fs::create_dir_all(d).unwrap();
    }
    let bin = env!("CARGO_BIN_EXE_eie");
    let o = Command::new("bash")
        .arg(root.join("benches/gpu_measure.sh"))
        .arg("run")
        .env("OUT", &out)
        .env("EIE_MEASURE_QUICK", "1")
        .env("EIE_MEASURE_BIN", bin)
        .env("EIE_MEASURE_BEFORE_BIN", bin)
        // An empty folder instead of a prepared .gl/ in the checkout: nothing to unpack.
        .env("EIE_MEASURE_GL", &gl)
        .env("TMPDIR", &work)
        .env_remove("EIE_MEASURE_SWEEP")
        .env_remove("EIE_MEASURE_SWEEP_LAYERS")
        .env_remove("EIE_MEASURE_BUDGET_S")
        .output()
        .expect("bash runs");
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{log}");

    let files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.len() <= 8, "{files:?}");
    for f in ["summary.md", "steps.tsv", "results.tar.gz"] {
        assert!(
            files.iter().any(|g| g == f),
            "{f} missing: {files:?}\n{log}"
        );
    }
    // The work folder is packed and removed.
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0, "{log}");

    let steps = steps(&out.join("steps.tsv"));
    let cuda = cuda_here();
    for name in [
        "vulkan-loader",
        "devices",
        "cuda-b1",
        "cuda-b64",
        "plan-b1",
        "plan-b64",
        "verify",
        "verify-b4",
        "mnist",
        "bench-after",
        "bench-before",
        "sweep-target_256",
        "summary",
    ] {
        let (status, _, secs, note) = steps
            .get(name)
            .unwrap_or_else(|| panic!("step {name} not recorded: {steps:?}"));
        assert!(*secs >= 0.0, "{name}");
        let want = match name {
            // The system's loader is used where there is one; the empty .gl/ has no packages.
            "vulkan-loader" => "skipped",
            // 1000 images through every kernel take minutes on lavapipe.
            "mnist" => "skipped",
            "cuda-b1" | "cuda-b64" if !cuda => "skipped",
            _ => "ok",
        };
        assert_eq!(status, want, "step {name}: {note}\n{log}");
    }

    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    for want in [
        "# GPU measurement on ",
        "## Steps",
        "| bench-after | ok |",
        "### NT-We, batch 1",
        "gpu-eie/f32",
        "target=256",
    ] {
        assert!(summary.contains(want), "`{want}` missing from\n{summary}");
    }
    if !cuda {
        assert!(summary.contains("| cuda-b1 | skipped |"), "{summary}");
    }

    let listing = Command::new("tar")
        .arg("-tzf")
        .arg(out.join("results.tar.gz"))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    for want in [
        "./after/bench.json",
        "./before/bench.json",
        "./sweep/sweep-target_256/bench.json",
        "./plan-b1.json",
        "./steps.tsv",
        "./summary.md",
        "./logs/bench-after.log",
    ] {
        assert!(
            listing.lines().any(|l| l == want),
            "{want} not in\n{listing}"
        );
    }
}
