//! `cargo bench --bench gpu`: the GPU kernels (EIE f32 / fixed16 / f16, dense, CSR) on the
//! paper's nine layers at batch 1, each checked against the CPU model and then timed with
//! timestamp queries. `EIE_BENCH_LAYERS=Alex-7,NT-We` picks layers; `eie bench` is the full
//! tool (CPU kernels, batch 64, reports).

use eie::bench::{self, BenchConfig, Workload};
use eie::gpu::{DeviceOptions, GpuContext};
use std::process::ExitCode;

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        // `cargo test --benches` runs bench targets in test mode: nothing to time there.
        return ExitCode::SUCCESS;
    }
    match measure() {
        Ok(md) => {
            println!("{md}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn measure() -> eie::Result<String> {
    let ctx = GpuContext::new(&DeviceOptions::default())?;
    let cfg = BenchConfig {
        batches: vec![1],
        simulate: false,
        ..BenchConfig::default()
    };
    let names: Vec<String> = std::env::var("EIE_BENCH_LAYERS")
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let workloads = Workload::paper_layers(&names, 64, cfg.seed)?;
    let results = bench::run(
        &workloads,
        &cfg,
        &mut |m| bench::gpu::gpu_contenders(&ctx, m, 1),
        &mut |msg| eprintln!("{msg}"),
    )?;
    Ok(bench::markdown(&results))
}
