use eie::bench::{self, BenchConfig, Contender, Workload, WorkloadResult};
use eie::kernel_id::KernelId;
use eie::{Model, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// A model file to benchmark; default: the paper's nine layers, generated at their sizes
    /// and densities.
    model: Option<PathBuf>,
    /// Only these paper layers (comma-separated, e.g. `Alex-6,NT-We`).
    #[arg(long, value_delimiter = ',')]
    layers: Vec<String>,
    /// PEs of the generated paper layers.
    #[arg(long, default_value_t = 64)]
    pes: usize,
    /// Batch sizes (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 64])]
    batch: Vec<usize>,
    /// Timed samples per kernel (median and min–max are over these).
    #[arg(long)]
    samples: Option<usize>,
    /// Input activation density for a model file's random inputs.
    #[arg(long, default_value_t = 0.35)]
    input_density: f64,
    /// A smoke run for CI: batch 1, one sample per kernel, 4 chained frames.
    #[arg(long)]
    quick: bool,
    /// Runs recorded back to back in one GPU submission per sample (default 20, 1 with
    /// --quick); fewer keep slow adapters (lavapipe) under the poll timeout.
    #[arg(long)]
    gpu_reps: Option<usize>,
    /// Measure the CPU only.
    #[arg(long)]
    cpu_only: bool,
    /// Measure the GPU only (the CPU model still checks every output).
    #[arg(long)]
    gpu_only: bool,
    /// Skip AlexNet FC6 → FC8 chained on the GPU (run by default with the full paper set).
    #[arg(long)]
    no_chain: bool,
    /// Folder for bench.md, bench.csv, bench.json and the speed-up charts.
    #[arg(long, default_value = "eie-bench")]
    out: PathBuf,
    /// JSON lines from `benches/cuda_baselines.py` (cuBLAS / cuSPARSE on the same GPU) to carry into
    /// the report.
    #[arg(long)]
    cuda: Option<PathBuf>,
    /// Seed of generated layers and inputs.
    #[arg(long, default_value_t = eie::paper::DEFAULT_SEED)]
    seed: u64,
}

fn config(a: &BenchArgs) -> BenchConfig {
    let mut cfg = if a.quick {
        BenchConfig::quick()
    } else {
        BenchConfig {
            batches: a.batch.clone(),
            ..BenchConfig::default()
        }
    };
    if let Some(s) = a.samples {
        cfg.samples = s;
    }
    if let Some(r) = a.gpu_reps {
        cfg.gpu_reps = r;
    }
    cfg.seed = a.seed;
    cfg
}

fn workloads(a: &BenchArgs) -> Result<Vec<Workload>> {
    match &a.model {
        Some(path) => {
            if !a.layers.is_empty() {
                return Err(eie::Error::InvalidArgument(
                    "--layers selects paper layers; it cannot be used with a model file".into(),
                ));
            }
            let name = path
                .file_name()
                .map_or("model".into(), |n| n.to_string_lossy().into_owned());
            Ok(vec![Workload {
                name,
                model: Model::load(path)?,
                act_density: a.input_density,
                paper: None,
            }])
        }
        None => {
            let sp = super::spinner("generating the paper's layers");
            let w = Workload::paper_layers(&a.layers, a.pes, a.seed);
            sp.finish_and_clear();
            w
        }
    }
}

/// Reads `cuda_baselines.py` output (one JSON object per line; the first names the GPU) and
/// attaches each layer's figures to the matching result.
fn attach_cuda(path: &Path, results: &mut [WorkloadResult]) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| eie::Error::io(path, e))?;
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with('{'))
    {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| eie::Error::Parse {
            path: path.to_path_buf(),
            reason: format!("line {}: {e}", n + 1),
        })?;
        let (Some(layer), Some(batch)) = (v["layer"].as_str(), v["batch"].as_u64()) else {
            continue;
        };
        for r in results
            .iter_mut()
            .filter(|r| r.name == layer && r.batch as u64 == batch)
        {
            r.cuda = Some(v.clone());
        }
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    eie::format::file::write_atomic(path, text.as_bytes())
}

/// The devices a benchmark runs on.
pub struct Devices {
    /// Measure the CPU kernels.
    pub cpu: bool,
    /// The GPU, when measured.
    #[cfg(feature = "gpu")]
    pub gpu: Option<std::sync::Arc<eie::gpu::GpuContext>>,
}

impl Devices {
    /// Opens the default GPU when `gpu` is set (an error if there is none).
    pub fn open(cpu: bool, gpu: bool) -> Result<Devices> {
        #[cfg(feature = "gpu")]
        {
            let gpu = if gpu {
                let sp = super::spinner("opening the GPU");
                let ctx = eie::gpu::GpuContext::new(&eie::gpu::DeviceOptions::default());
                sp.finish_and_clear();
                Some(ctx.map_err(|e| {
                    eie::Error::InvalidArgument(format!(
                        "{e} (pass --cpu-only to measure the CPU alone)"
                    ))
                })?)
            } else {
                None
            };
            Ok(Devices { cpu, gpu })
        }
        #[cfg(not(feature = "gpu"))]
        {
            if gpu {
                eprintln!("note: this build has no GPU backend (cargo feature `gpu`); CPU only");
            }
            Ok(Devices { cpu })
        }
    }

    /// The CPU, plus the default GPU when there is a hardware one (a software adapter such as
    /// lavapipe is skipped with a note: it would take minutes). Never fails.
    pub fn open_hardware() -> Devices {
        #[cfg(feature = "gpu")]
        {
            let gpu = match eie::gpu::GpuContext::new(&eie::gpu::DeviceOptions::default()) {
                Ok(ctx) if ctx.adapter_info().device_type == eie::gpu::wgpu::DeviceType::Cpu => {
                    eprintln!(
                        "note: {} is a software adapter; its GPU timings are left to `eie bench`",
                        ctx.adapter_info().name
                    );
                    None
                }
                Ok(ctx) => Some(ctx),
                Err(e) => {
                    eprintln!("note: no GPU timings: {e}");
                    None
                }
            };
            Devices { cpu: true, gpu }
        }
        #[cfg(not(feature = "gpu"))]
        Devices { cpu: true }
    }

    fn kernels_per_workload(&self) -> usize {
        #[cfg(feature = "gpu")]
        let gpu = self.gpu.as_ref().map_or(0, |_| KernelId::GPU.len());
        #[cfg(not(feature = "gpu"))]
        let gpu = 0;
        bench::CPU_KERNELS.len() * usize::from(self.cpu) + gpu
    }

    fn contenders(&self, m: &Model, max_batch: usize) -> Result<Vec<Contender>> {
        #[cfg_attr(not(feature = "gpu"), allow(unused_mut))] // GPU contenders join below
        let mut c = if self.cpu {
            bench::cpu_contenders(m)?
        } else {
            Vec::new()
        };
        #[cfg(feature = "gpu")]
        if let Some(g) = &self.gpu {
            c.extend(bench::gpu::gpu_contenders(g, m, max_batch)?);
        }
        let _ = max_batch;
        Ok(c)
    }
}

/// Measures every kernel on `devices` over `workloads`, with a progress bar.
pub fn measure(
    workloads: &[Workload],
    cfg: &BenchConfig,
    devices: &Devices,
) -> Result<Vec<WorkloadResult>> {
    let pb = super::bar(
        (workloads.len() * cfg.batches.len() * devices.kernels_per_workload()) as u64,
        "benchmarking",
    );
    let max_batch = cfg.batches.iter().copied().max().unwrap_or(1);
    let mut make = |m: &Model| devices.contenders(m, max_batch);
    let mut progress = |msg: &str| {
        if !msg.ends_with("preparing kernels") {
            pb.inc(1);
        }
        pb.set_message(msg.to_string());
    };
    let results = bench::run(workloads, cfg, &mut make, &mut progress);
    pb.finish_and_clear();
    results
}

/// AlexNet FC6 → FC8 chained on the GPU, as JSON and a markdown paragraph (None without a GPU).
#[allow(unused_variables)]
pub fn chain(
    devices: &Devices,
    cfg: &BenchConfig,
    frames: usize,
) -> Result<Option<(serde_json::Value, String)>> {
    #[cfg(feature = "gpu")]
    if let Some(g) = &devices.gpu {
        let sp = super::spinner(format!("AlexNet FC6-FC8 chained, {frames} frames"));
        let r = bench::gpu::alexnet_chain(g, cfg, frames, 4);
        sp.finish_and_clear();
        let r = r?;
        let gpu = r.gpu_us.map_or(String::from("no timestamps"), |s| {
            format!(
                "GPU time per frame {} µs ({}–{})",
                bench::report::fmt_us(s.median),
                bench::report::fmt_us(s.min),
                bench::report::fmt_us(s.max)
            )
        });
        let md = format!(
            "\n### AlexNet FC6 → FC7 → FC8 chained on the device, batch 1\n\n{}: **{} frames/s** with {} submissions in flight over {} frames; latency per frame (submit to result on the host) median {} µs ({}–{}); {gpu}; relative error vs the CPU model {:.1e}.\n",
            r.device,
            bench::report::fmt_us(r.frames_per_s),
            r.in_flight,
            r.frames,
            bench::report::fmt_us(r.latency_us.median),
            bench::report::fmt_us(r.latency_us.min),
            bench::report::fmt_us(r.latency_us.max),
            r.error.max_rel
        );
        return Ok(Some((serde_json::to_value(&r).expect("plain data"), md)));
    }
    Ok(None)
}

pub fn run(a: &BenchArgs) -> Result<ExitCode> {
    let cfg = config(a);
    cfg.validate()?;
    if a.cpu_only && a.gpu_only {
        return Err(eie::Error::InvalidArgument(
            "--cpu-only and --gpu-only exclude each other".into(),
        ));
    }
    let devices = Devices::open(!a.gpu_only, !a.cpu_only)?;
    let workloads = workloads(a)?;
    let mut results = measure(&workloads, &cfg, &devices)?;
    let chain = if a.model.is_none() && a.layers.is_empty() && !a.no_chain {
        chain(&devices, &cfg, if a.quick { 4 } else { 5000 })?
    } else {
        None
    };
    if let Some(c) = &a.cuda {
        attach_cuda(c, &mut results)?;
    }
    let mut md = bench::markdown(&results);
    if let Some((_, text)) = &chain {
        md.push_str(text);
    }
    println!("{md}");
    std::fs::create_dir_all(&a.out).map_err(|e| eie::Error::io(&a.out, e))?;
    write(&a.out.join("bench.md"), &md)?;
    write(&a.out.join("bench.csv"), &bench::csv(&results))?;
    let json = serde_json::json!({
        "config": cfg,
        "results": results,
        "alexnet_chain": chain.map(|(j, _)| j),
    });
    write(
        &a.out.join("bench.json"),
        &serde_json::to_string_pretty(&json).expect("plain data serialises"),
    )?;
    let mut written = String::from("bench.md, bench.csv, bench.json");
    for &b in &cfg.batches {
        let name = format!("speedup_batch{b}.svg");
        match bench::speedup_chart(&results, b, &a.out.join(&name)) {
            Ok(()) => written.push_str(&format!(", {name}")),
            Err(e) => eprintln!("no chart for batch {b}: {e}"),
        }
    }
    eprintln!("wrote {written} to {}", a.out.display());
    let failed: Vec<String> = results
        .iter()
        .flat_map(|r| {
            r.kernels
                .iter()
                .filter(|k| k.failure.is_some())
                .map(move |k| format!("{} batch {}: {}", r.name, r.batch, k.kernel))
        })
        .collect();
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: kernels that failed their check: {}",
            failed.join("; ")
        );
        Ok(ExitCode::FAILURE)
    }
}
