//! Command-line front end: one module per subcommand, each with its clap `Args` and a `run`.

mod bench;
mod compress;
mod demo;
#[cfg(feature = "gpu")]
mod devices;
mod info;
mod plan;
mod run;
mod serve;
mod sim;
mod verify;

// Models with recurrent layers (format version 3) in compress, info, run and verify.
mod sequence;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::process::ExitCode;
use std::time::Duration;

/// EIE: compress fully-connected layers (pruning + weight sharing) into EIE's interleaved CSC
/// format and run them on the CPU model or the GPU.
#[derive(Parser)]
#[command(name = "eie", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prune, weight-share and encode dense weights (.npy / .safetensors) into a model file.
    ///
    /// The model file also stores every activation's fixed16 format (used by `eie run
    /// --fixed16`, `eie verify` and `eie sim --fixed16`), chosen from the weights and bias for
    /// inputs within ±1 (`eie::fixed16::DEFAULT_INPUT_BOUND`): interval arithmetic bounds each
    /// layer's outputs, and each format takes the most fraction bits that hold its bound, so
    /// inputs in that range never saturate.
    Compress(compress::CompressArgs),
    /// Describe a model file: shapes, densities, storage and compression ratio.
    Info(info::InfoArgs),
    /// Run a model on an input batch (.npy) and write the output (.npy, float32).
    Run(run::RunArgs),
    /// Run every available backend on one input and compare each with the dense oracle.
    Verify(verify::VerifyArgs),
    /// Benchmark EIE against dense and CSR kernels on the paper's nine layers (or a model file)
    /// on this machine's CPU and GPU.
    Bench(bench::BenchArgs),
    /// The GPU schedule without a GPU: per layer and kernel, workgroups, dispatches, modelled
    /// bytes read and entries per invocation.
    Plan(plan::PlanArgs),
    /// Serve models over the Open Inference Protocol (KServe v2 / Triton): REST on --http,
    /// gRPC on --grpc, dynamic batching, Prometheus metrics at /metrics. Stops on SIGTERM or
    /// Ctrl-C after answering every accepted request.
    Serve(serve::ServeArgs),
    /// List the GPU adapters wgpu finds, with backend, features and limits.
    #[cfg(feature = "gpu")]
    Devices(devices::DevicesArgs),
    /// Built-in demo: an Alex-7-shaped layer (4096x4096, 9 % weights, 4-bit codebook) is
    /// generated, compressed, saved, reloaded, run and verified; with `--mnist`, the committed
    /// LeNet-300-100 classifier's accuracy on every backend.
    Demo(demo::DemoArgs),
    /// Cycle-level simulation of the EIE ASIC: a model on an input, or the paper's nine layers
    /// (`--paper`) beside the published latencies, or the paper's FIFO / PE sweeps.
    Sim(sim::SimArgs),
}

/// Entry point: parses arguments, runs the command, maps errors to a message and exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Compress(a) => compress::run(a),
        Command::Info(a) => info::run(a),
        Command::Run(a) => run::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Sim(a) => sim::run(a),
        Command::Plan(a) => plan::run(a),
        Command::Serve(a) => serve::run(a),
        #[cfg(feature = "gpu")]
        Command::Devices(a) => devices::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A spinner with a message, for steps that can take over a second (hidden when stderr is not
/// a terminal).
pub fn spinner(msg: impl Into<String>) -> ProgressBar {
    let pb = ProgressBar::new_spinner().with_message(msg.into());
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("valid template"),
    );
    pb.enable_steady_tick(Duration::from_millis(100));
    pb
}

/// A progress bar over `len` steps.
pub fn bar(len: u64, msg: impl Into<String>) -> ProgressBar {
    let pb = ProgressBar::new(len).with_message(msg.into());
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} [{elapsed}]")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.enable_steady_tick(Duration::from_millis(100));
    pb
}

/// Formats a byte count for people.
pub fn human_bytes(n: usize) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.2} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} kB", n / 1e3)
    } else {
        format!("{n} B")
    }
}
