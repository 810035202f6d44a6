use eie::bench::{self, BenchConfig, Contender, Workload, WorkloadResult};
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
    /// A short run (batch 1, 3 samples) for CI.
    #[arg(long)]
    quick: bool,
    /// Measure the CPU only.
    #[arg(long)]
    cpu_only: bool,
    /// Folder for bench.md, bench.csv, bench.json and the speed-up charts.
    #[arg(long, default_value = "eie-bench")]
    out: PathBuf,
    /// JSON lines from `cuda_baselines.py` (cuBLAS / cuSPARSE on the same GPU) to carry into
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

pub fn run(a: &BenchArgs) -> Result<ExitCode> {
    let cfg = config(a);
    cfg.validate()?;
    let workloads = workloads(a)?;
    let per_workload = 4 + if a.cpu_only { 0 } else { 5 };
    let pb = super::bar(
        (workloads.len() * cfg.batches.len() * per_workload) as u64,
        "benchmarking",
    );
    let mut make = |m: &Model| -> Result<Vec<Box<dyn Contender>>> {
        let mut c = bench::cpu_contenders(m);
        if !a.cpu_only {
            c.extend(gpu_contenders(m)?);
        }
        Ok(c)
    };
    let mut progress = |msg: &str| {
        if !msg.ends_with("preparing kernels") {
            pb.inc(1);
        }
        pb.set_message(msg.to_string());
    };
    let mut results = bench::run(&workloads, &cfg, &mut make, &mut progress)?;
    pb.finish_and_clear();
    if let Some(c) = &a.cuda {
        attach_cuda(c, &mut results)?;
    }
    let md = bench::markdown(&results);
    println!("{md}");
    std::fs::create_dir_all(&a.out).map_err(|e| eie::Error::io(&a.out, e))?;
    write(&a.out.join("bench.md"), &md)?;
    write(&a.out.join("bench.csv"), &bench::csv(&results))?;
    let json = serde_json::json!({ "config": cfg, "results": results });
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

/// GPU contenders (none in a build without the `gpu` feature).
fn gpu_contenders(_model: &Model) -> Result<Vec<Box<dyn Contender>>> {
    Ok(Vec::new())
}
