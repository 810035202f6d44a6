use eie::backend::{Backend, CpuBackend};
use eie::{Model, Precision, Result};
use std::path::PathBuf;
use std::process::ExitCode;

/// Where a model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// The EIE CPU engine (multi-threaded, straight from the compressed format).
    Cpu,
    /// The EIE kernels on the GPU (wgpu; WGPU_BACKEND / WGPU_ADAPTER_NAME pick the adapter).
    #[cfg(feature = "gpu")]
    Gpu,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// The model file.
    model: PathBuf,
    /// Input activations: .npy of shape [in] or [batch, in]; for a model with recurrent layers
    /// a sequence [steps, in] or a batch of sequences [batch, steps, in].
    #[arg(long)]
    input: PathBuf,
    /// Where to write the float32 output (.npy, [out] or [batch, out]; for a model with
    /// recurrent layers every step's output, [steps, out] or [batch, steps, out]).
    #[arg(long)]
    output: PathBuf,
    /// Recurrent models: write the last step's output only ([out] or [batch, out]).
    #[arg(long)]
    last: bool,
    /// Recurrent models: the initial state (.npy, [S] or [batch, S]: for each recurrent layer
    /// in order, h and then, for an LSTM, c); zero by default.
    #[arg(long, value_name = "STATE.npy")]
    state_in: Option<PathBuf>,
    /// Recurrent models: where to write the state after the last step (.npy, as --state-in).
    #[arg(long, value_name = "STATE.npy")]
    state_out: Option<PathBuf>,
    /// Where to run.
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
    backend: BackendKind,
    /// Use EIE's 16-bit fixed-point arithmetic (each layer's formats as stored in the model)
    /// instead of f32; also prints the saturations per layer.
    #[arg(long, conflicts_with = "f16")]
    fixed16: bool,
    /// f16 activations and codebook (f32 arithmetic): on the CPU, and on the GPU for
    /// fully-connected models (models with recurrent layers run it on the CPU only).
    #[arg(long)]
    f16: bool,
    /// GPU only: PEs (workgroups) per layer; default: chosen for the device.
    #[arg(long)]
    pes: Option<usize>,
}

pub fn run(a: &RunArgs) -> Result<ExitCode> {
    // clap refuses --fixed16 with --f16.
    let precision = match (a.fixed16, a.f16) {
        (true, _) => Precision::Fixed16,
        (_, true) => Precision::F16,
        _ => Precision::F32,
    };
    if super::sequence::is_sequence_file(&a.model)? {
        if a.backend == BackendKind::Cpu && a.pes.is_some() {
            return Err(eie::Error::InvalidArgument(
                "--pes applies to --backend gpu only".into(),
            ));
        }
        return super::sequence::run(&super::sequence::SequenceRun {
            gpu: a.backend != BackendKind::Cpu,
            pes: a.pes,
            model: &a.model,
            input: &a.input,
            output: &a.output,
            precision,
            last: a.last,
            state_in: a.state_in.as_deref(),
            state_out: a.state_out.as_deref(),
        });
    }
    if a.last || a.state_in.is_some() || a.state_out.is_some() {
        return Err(eie::Error::InvalidArgument(
            "--last, --state-in and --state-out apply to models with recurrent layers".into(),
        ));
    }
    let model = Model::load(&a.model)?;
    let input = eie::import::read_npy(&a.input)?;
    let one_input = input.shape.len() == 1;
    let (batch, values) = eie::import::input_batch(input, &a.input, model.input_size())?;
    let backend: Box<dyn Backend> = match a.backend {
        BackendKind::Cpu => {
            if a.pes.is_some() {
                return Err(eie::Error::InvalidArgument(
                    "--pes applies to --backend gpu only".into(),
                ));
            }
            Box::new(CpuBackend::new(model.clone(), precision)?)
        }
        #[cfg(feature = "gpu")]
        BackendKind::Gpu => {
            use eie::gpu::{DeviceOptions, EngineOptions, GpuContext, GpuEngine};
            let sp = super::spinner("opening the GPU and uploading the model");
            let ctx = GpuContext::new(&DeviceOptions::default())?;
            let opts = EngineOptions {
                precision,
                pes: a
                    .pes
                    .map_or(eie::schedule::PePlan::Auto, eie::schedule::PePlan::Fixed),
                ..EngineOptions::default()
            };
            let engine = GpuEngine::new(ctx.clone(), &model, opts)?;
            sp.finish_and_clear();
            eprintln!(
                "GPU: {} ({:?}), PEs per layer {:?}",
                ctx.adapter_info().name,
                ctx.adapter_info().backend,
                engine.pes()
            );
            Box::new(engine)
        }
    };
    let sp = super::spinner(format!("running on {}", backend.id()));
    let start = std::time::Instant::now();
    let out = backend.run(&values)?;
    let elapsed = start.elapsed();
    sp.finish_and_clear();
    let shape = if one_input {
        vec![model.output_size()]
    } else {
        vec![batch, model.output_size()]
    };
    eie::import::write_npy(&a.output, &shape, &out)?;
    eprintln!(
        "{}: batch {batch}, {:.3} ms, wrote {} {:?}",
        backend.id(),
        elapsed.as_secs_f64() * 1e3,
        a.output.display(),
        shape
    );
    if a.fixed16 {
        // Every fixed16 backend gives the CPU model's bits, so its counts hold for all.
        let (_, sat) = eie::CpuEngine::as_stored(model.clone())
            .with_precision(eie::Precision::Fixed16)
            .run_fixed16(&values)?;
        eprintln!(
            "fixed16 saturations (input {}, outputs {}): {}",
            eie::fixed16::format_name(model.input_frac()),
            eie::fixed16::format_name(model.output_frac()),
            sat.summary(&model)
        );
    }
    Ok(ExitCode::SUCCESS)
}
