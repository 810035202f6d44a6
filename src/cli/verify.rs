use eie::backend::Backend;
use eie::verify::BackendReport;
use eie::{Model, Result};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The model file.
    model: PathBuf,
    /// Input activations (.npy, [in] or [batch, in]); default: a seeded random ReLU-like batch.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Batch size of the random input.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Fraction of non-zero values in the random input.
    #[arg(long, default_value_t = 0.5)]
    input_density: f64,
    /// Seed of the random input.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Models with recurrent layers: steps of the random input sequence.
    #[arg(long, default_value_t = 16)]
    steps: usize,
    /// Fail when no GPU can be opened (by default the GPU kernels are then skipped with a note).
    #[arg(long)]
    require_gpu: bool,
}

/// Every backend this build can run `model` on: the CPU backends, then every GPU kernel
/// variant when a GPU can be opened (else an error if `require_gpu`, or a note on stderr).
pub fn available_backends(model: &Model, require_gpu: bool) -> Result<Vec<Box<dyn Backend>>> {
    #[allow(unused_mut)]
    let mut v = eie::backend::cpu_backends(model)?;
    #[cfg(feature = "gpu")]
    {
        let sp = super::spinner("opening the GPU and uploading the model");
        let gpu = eie::gpu::gpu_backends(model);
        sp.finish_and_clear();
        match gpu {
            Ok(g) => v.extend(g),
            Err(e) if !require_gpu => eprintln!("note: GPU kernels skipped: {e}"),
            Err(e) => return Err(e),
        }
    }
    #[cfg(not(feature = "gpu"))]
    if require_gpu {
        return Err(eie::Error::InvalidArgument(
            "this build has no GPU backend (cargo feature `gpu`)".into(),
        ));
    }
    Ok(v)
}

pub fn run(a: &VerifyArgs) -> Result<ExitCode> {
    if super::sequence::is_sequence_file(&a.model)? {
        return super::sequence::verify(
            &a.model,
            a.input.as_deref(),
            a.steps,
            a.input_density,
            a.seed,
            a.json,
            a.require_gpu,
        );
    }
    let model = Model::load(&a.model)?;
    let input = match &a.input {
        Some(p) => eie::import::read_input(p, model.input_size())?.1,
        None => {
            if a.batch == 0 {
                return Err(eie::Error::InvalidArgument(
                    "--batch must be at least 1".into(),
                ));
            }
            eie::synth::activations(model.input_size() * a.batch, a.input_density, a.seed)
        }
    };
    let backends = available_backends(&model, a.require_gpu)?;
    let reports = check(&model, &input, &backends)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reports).expect("plain data serialises")
        );
    } else {
        print_reports(&reports);
        print_saturations(&model, &reports);
    }
    Ok(if reports.iter().all(|r| r.passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs the verification with a progress bar.
pub fn check(
    model: &Model,
    input: &[f32],
    backends: &[Box<dyn Backend>],
) -> Result<Vec<BackendReport>> {
    let pb = super::bar(backends.len() as u64, "verifying (dense oracle first)");
    let reports = eie::verify::verify(model, input, backends, |r| {
        pb.set_message(format!("verified {}", r.backend));
        pb.inc(1);
    })?;
    pb.finish_and_clear();
    Ok(reports)
}

/// Prints the fixed16 saturations (the same for every fixed16 backend) under the table.
pub fn print_saturations(model: &Model, reports: &[BackendReport]) {
    if let Some(s) = reports.iter().find_map(|r| r.saturations.as_ref()) {
        println!(
            "fixed16 saturations (input {}, outputs {}): {}",
            eie::fixed16::format_name(model.input_frac()),
            eie::fixed16::format_name(model.output_frac()),
            s.summary(model)
        );
    }
}

/// Prints one line per backend.
pub fn print_reports(reports: &[BackendReport]) {
    println!(
        "{:<22} {:>12} {:>12} {:>10} {:>10}  result",
        "backend", "max abs err", "max rel err", "tolerance", "time ms"
    );
    for r in reports {
        let (abs, rel) = r.error.map_or(("-".into(), "-".into()), |e| {
            (format!("{:.3e}", e.max_abs), format!("{:.3e}", e.max_rel))
        });
        let verdict = match (&r.failure, r.passed) {
            (Some(f), _) => format!("FAILED: {f}"),
            (None, true) => "ok".into(),
            (None, false) => "FAILED: error above tolerance".into(),
        };
        println!(
            "{:<22} {:>12} {:>12} {:>10.0e} {:>10.3}  {verdict}",
            r.backend,
            abs,
            rel,
            r.tolerance,
            r.seconds * 1e3
        );
    }
}
