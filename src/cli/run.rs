use eie::backend::{Backend, CpuBackend};
use eie::{Model, Precision, Result};
use std::path::PathBuf;
use std::process::ExitCode;

/// Where a model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// The EIE CPU engine (multi-threaded, straight from the compressed format).
    Cpu,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// The model file.
    model: PathBuf,
    /// Input activations: .npy of shape [in] or [batch, in].
    #[arg(long)]
    input: PathBuf,
    /// Where to write the float32 output (.npy, [out] or [batch, out]).
    #[arg(long)]
    output: PathBuf,
    /// Where to run.
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
    backend: BackendKind,
    /// Use EIE's 16-bit fixed-point arithmetic instead of f32.
    #[arg(long)]
    fixed16: bool,
}

pub fn run(a: &RunArgs) -> Result<ExitCode> {
    let model = Model::load(&a.model)?;
    let input = eie::import::read_npy(&a.input)?;
    let (batch, values) = eie::import::read_input(&a.input, model.input_size())?;
    let precision = if a.fixed16 {
        Precision::Fixed16
    } else {
        Precision::F32
    };
    let backend: Box<dyn Backend> = match a.backend {
        BackendKind::Cpu => Box::new(CpuBackend::new(model.clone(), precision)),
    };
    let sp = super::spinner(format!("running on {}", backend.name()));
    let start = std::time::Instant::now();
    let out = backend.run(&values)?;
    let elapsed = start.elapsed();
    sp.finish_and_clear();
    let shape = if input.shape.len() == 1 {
        vec![model.output_size()]
    } else {
        vec![batch, model.output_size()]
    };
    eie::import::write_npy(&a.output, &shape, &out)?;
    eprintln!(
        "{}: batch {batch}, {:.3} ms, wrote {} {:?}",
        backend.name(),
        elapsed.as_secs_f64() * 1e3,
        a.output.display(),
        shape
    );
    Ok(ExitCode::SUCCESS)
}
