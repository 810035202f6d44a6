//! The command line's handling of models with recurrent layers (format version 3): `compress`
//! of PyTorch recurrent tensors, `info`, and `run` over sequences with state in and out.

use eie::compress::CompressPlan;
use eie::format::{SequenceModel, Stage};
use eie::kernel_id::{KernelId, KernelKind};
use eie::recurrent::{compress_stages, DenseStage, SequenceEngine, SequenceState};
use eie::{Activation, Error, Precision, Result};
use std::path::Path;
use std::process::ExitCode;

/// Whether a `.safetensors` input holds recurrent tensors (`…weight_hh[_l{k}]`).
pub fn has_recurrent_tensors(path: &Path) -> Result<bool> {
    if !eie::import::is_safetensors(path) {
        return Ok(false);
    }
    let f = eie::import::SafetensorsFile::open(path)?;
    Ok(!eie::recurrent::pytorch::find_recurrent(&f.names())?.is_empty())
}

/// Whether a model file is a version-3 file (recurrent layers). A file whose version cannot
/// be read is not: the plain loader then reports what is wrong with it.
pub fn is_sequence_file(path: &Path) -> Result<bool> {
    Ok(eie::format::file::version_of(path).is_ok_and(|v| v == "3"))
}

/// Reads the stages of a file with recurrent tensors for `eie compress`: checks the plan's
/// matrix names and returns the stages with one activation per fully-connected stage
/// (`relu`: ReLU on all; else `activations`, identity where it gives none).
pub fn load_stages(
    input: &Path,
    order: &[String],
    plan: &CompressPlan,
    relu: bool,
    activations: &[Activation],
) -> Result<(Vec<DenseStage>, Vec<Activation>)> {
    let sp = super::spinner(format!("reading {}", input.display()));
    let stages = eie::recurrent::pytorch::load_dense_stages(input, order)?;
    sp.finish_and_clear();
    let names: Vec<&str> = stages
        .iter()
        .flat_map(|s| s.matrices().into_iter().map(|m| m.name.as_str()))
        .collect();
    plan.check_names(&names)?;
    let fc = stages
        .iter()
        .filter(|s| matches!(s, DenseStage::Fc(_)))
        .count();
    if !activations.is_empty() && activations.len() != fc {
        return Err(Error::InvalidArgument(format!(
            "--activations lists {} functions for {fc} fully-connected layers (recurrent \
             layers take none)",
            activations.len()
        )));
    }
    let acts: Vec<Activation> = (0..fc)
        .map(|i| {
            if relu {
                Activation::Relu
            } else {
                activations.get(i).copied().unwrap_or_default()
            }
        })
        .collect();
    Ok((stages, acts))
}

/// `eie compress` of a file with recurrent tensors: every stage compressed with the plan's
/// settings by matrix name; `acts` one per fully-connected stage.
pub fn compress(
    stages: &[DenseStage],
    acts: &[Activation],
    output: &Path,
    plan: &CompressPlan,
    balance: bool,
) -> Result<ExitCode> {
    let sp = super::spinner("compressing");
    let model = compress_stages(stages, plan, acts, balance)?;
    sp.finish_and_clear();
    model.save(output)?;
    for s in model.stages() {
        if let Stage::Recurrent(r) = s {
            println!(
                "{}: {} layer, {} inputs, {} hidden units",
                r.name(),
                r.kind().name().to_uppercase(),
                r.input_size(),
                r.hidden()
            );
        }
        for l in s.matrices() {
            println!(
                "  {}: {}x{} -> density {:.2} %, {} bits, {} PEs, {} entries ({} padding), {} -> {} ({:.1}x)",
                l.name(),
                l.rows(),
                l.cols(),
                100.0 * l.density(),
                l.bits(),
                l.pes(),
                l.entry_count(),
                l.padding_count(),
                super::human_bytes(l.dense_bytes()),
                super::human_bytes(l.compressed_bytes()),
                l.dense_bytes() as f64 / l.compressed_bytes() as f64
            );
        }
    }
    println!("wrote {}", output.display());
    Ok(ExitCode::SUCCESS)
}

#[derive(serde::Serialize)]
struct MatrixInfo {
    name: String,
    /// `fc`, or the cell kind and part: `lstm W_ih`, `gru W_hh`, ...
    kind: String,
    /// The stage (layer) the matrix belongs to.
    stage: String,
    outputs: usize,
    inputs: usize,
    density: f64,
    bits: u8,
    pes: usize,
    activation: &'static str,
    bias: bool,
    nonzeros: usize,
    padding_entries: usize,
    dense_f32_bytes: usize,
    compressed_bytes: usize,
    compression_ratio: f64,
}

/// `eie info` of a version-3 file: the stages, then a row per matrix.
pub fn info(path: &Path, json: bool) -> Result<ExitCode> {
    let model = SequenceModel::load(path)?;
    let file_bytes = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len() as usize;
    let mut infos = Vec::new();
    for s in model.stages() {
        let parts: Vec<String> = match s {
            Stage::Fc(_) => vec!["fc".into()],
            Stage::Recurrent(r) => vec![
                format!("{} W_ih", r.kind().name()),
                format!("{} W_hh", r.kind().name()),
            ],
        };
        for (l, kind) in s.matrices().into_iter().zip(parts) {
            infos.push(MatrixInfo {
                name: l.name().to_string(),
                kind,
                stage: s.name().to_string(),
                outputs: l.rows(),
                inputs: l.cols(),
                density: l.density(),
                bits: l.bits(),
                pes: l.pes(),
                activation: l.activation().name(),
                bias: l.bias().is_some(),
                nonzeros: l.nnz(),
                padding_entries: l.padding_count(),
                dense_f32_bytes: l.dense_bytes(),
                compressed_bytes: l.compressed_bytes(),
                compression_ratio: l.dense_bytes() as f64 / l.compressed_bytes() as f64,
            });
        }
    }
    let stages: Vec<serde_json::Value> = model
        .stages()
        .iter()
        .map(|s| match s {
            Stage::Fc(l) => serde_json::json!({
                "name": l.name(), "kind": "fc", "inputs": l.cols(), "outputs": l.rows(),
            }),
            Stage::Recurrent(r) => serde_json::json!({
                "name": r.name(), "kind": r.kind().name(), "inputs": r.input_size(),
                "hidden": r.hidden(), "outputs": r.hidden(), "state_values": r.state_size(),
            }),
        })
        .collect();
    let dense: usize = infos.iter().map(|i| i.dense_f32_bytes).sum();
    let comp: usize = infos.iter().map(|i| i.compressed_bytes).sum();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "stages": stages,
                "layers": infos,
                "state_values": model.state_size(),
                "file_bytes": file_bytes,
                "format_version": "3",
                "dense_f32_bytes": dense,
            }))
            .expect("plain data serialises")
        );
        return Ok(ExitCode::SUCCESS);
    }
    for s in model.stages() {
        match s {
            Stage::Fc(l) => println!(
                "stage {}: fully connected, {} -> {}",
                l.name(),
                l.cols(),
                l.rows()
            ),
            Stage::Recurrent(r) => println!(
                "stage {}: {}, {} inputs -> {} hidden units (state: {})",
                r.name(),
                r.kind().name().to_uppercase(),
                r.input_size(),
                r.hidden(),
                if r.kind().has_cell_state() {
                    "h, c"
                } else {
                    "h"
                }
            ),
        }
    }
    println!(
        "{:<22} {:>9} {:>12} {:>8} {:>4} {:>5} {:>9} {:>10} {:>10} {:>11} {:>7}",
        "matrix",
        "kind",
        "out x in",
        "density",
        "bits",
        "PEs",
        "act",
        "padding",
        "dense f32",
        "stored",
        "ratio"
    );
    for i in &infos {
        println!(
            "{:<22} {:>9} {:>12} {:>7.2}% {:>4} {:>5} {:>9} {:>10} {:>10} {:>11} {:>6.1}x",
            i.name,
            i.kind,
            format!("{}x{}", i.outputs, i.inputs),
            100.0 * i.density,
            i.bits,
            i.pes,
            i.activation,
            i.padding_entries,
            super::human_bytes(i.dense_f32_bytes),
            super::human_bytes(i.compressed_bytes),
            i.compression_ratio
        );
    }
    println!(
        "total: {} -> {} ({:.1}x)",
        super::human_bytes(dense),
        super::human_bytes(comp),
        dense as f64 / comp as f64
    );
    println!(
        "file: {} on disk, format version 3 ({:.1}x smaller than dense f32)",
        super::human_bytes(file_bytes),
        dense as f64 / file_bytes as f64
    );
    Ok(ExitCode::SUCCESS)
}

/// What `eie run` was asked, for a sequence model.
pub struct SequenceRun<'a> {
    /// On the GPU (f32 or fixed16) instead of the CPU engine.
    pub gpu: bool,
    /// GPU: PEs per matrix.
    pub pes: Option<usize>,
    pub model: &'a Path,
    pub input: &'a Path,
    pub output: &'a Path,
    pub precision: Precision,
    pub last: bool,
    pub state_in: Option<&'a Path>,
    pub state_out: Option<&'a Path>,
}

/// `eie run` of a model with recurrent layers on the CPU (f32, f16 or fixed16) or the GPU (f32
/// or fixed16): input `[T, in]` (one sequence) or
/// `[B, T, in]`; output `[T, out]` / `[B, T, out]`, or `[out]` / `[B, out]` with `--last`;
/// state `[S]` / `[B, S]` in and out.
pub fn run(a: &SequenceRun<'_>) -> Result<ExitCode> {
    let model = SequenceModel::load(a.model)?;
    let (n_in, n_out, n_state) = (model.input_size(), model.output_size(), model.state_size());
    let x = eie::import::read_npy(a.input)?;
    let (batched, batch, steps) = match x.shape.as_slice() {
        [t, n] if *n == n_in && *t > 0 => (false, 1, *t),
        [b, t, n] if *n == n_in && *t > 0 && *b > 0 => (true, *b, *t),
        other => {
            return Err(Error::Shape(format!(
                "input {} has shape {other:?}; a sequence model takes [steps, {n_in}] or \
                 [batch, steps, {n_in}]",
                a.input.display()
            )))
        }
    };
    eie::error::check_finite(&format!("input {}", a.input.display()), &x.data)?;
    let mut states = match a.state_in {
        None => vec![SequenceState::zeros(&model); batch],
        Some(p) => {
            let s = eie::import::read_npy(p)?;
            let ok = if batched {
                s.shape == [batch, n_state]
            } else {
                s.shape == [n_state]
            };
            if !ok {
                return Err(Error::Shape(format!(
                    "state {} has shape {:?}; this model and input take {}",
                    p.display(),
                    s.shape,
                    if batched {
                        format!("[{batch}, {n_state}]")
                    } else {
                        format!("[{n_state}]")
                    }
                )));
            }
            s.data
                .chunks(n_state)
                .map(|c| SequenceState::from_values(&model, c.to_vec()))
                .collect::<Result<_>>()?
        }
    };
    let precision = a.precision;
    let (out, elapsed, name) = if a.gpu {
        gpu_run(&model, precision, a.pes, &x.data, batch, steps, &mut states)?
    } else {
        let engine = SequenceEngine::new(model, precision)?;
        let start = std::time::Instant::now();
        let out = engine.run_batch(&x.data, batch, steps, &mut states)?;
        (
            out,
            start.elapsed(),
            KernelId::cpu(KernelKind::Eie, precision).to_string(),
        )
    };
    let (values, shape) = if a.last {
        let v: Vec<f32> = out
            .chunks(steps * n_out)
            .flat_map(|s| s[(steps - 1) * n_out..].to_vec())
            .collect();
        (
            v,
            if batched {
                vec![batch, n_out]
            } else {
                vec![n_out]
            },
        )
    } else {
        (
            out,
            if batched {
                vec![batch, steps, n_out]
            } else {
                vec![steps, n_out]
            },
        )
    };
    eie::import::write_npy(a.output, &shape, &values)?;
    if let Some(p) = a.state_out {
        let flat: Vec<f32> = states
            .into_iter()
            .flat_map(SequenceState::into_values)
            .collect();
        let shape = if batched {
            vec![batch, n_state]
        } else {
            vec![n_state]
        };
        eie::import::write_npy(p, &shape, &flat)?;
    }
    eprintln!(
        "{name}: {batch} sequence(s) of {steps} steps, {:.3} ms ({:.1} µs per sequence \
         step), wrote {} {:?}",
        elapsed.as_secs_f64() * 1e3,
        elapsed.as_secs_f64() * 1e6 / (batch * steps) as f64,
        a.output.display(),
        shape
    );
    Ok(ExitCode::SUCCESS)
}

/// `eie verify` of a model with recurrent layers: one sequence (`input` `[T, in]`, or a seeded
/// random one of `steps` steps) on the CPU sequence engine in every precision, then on the GPU
/// in f32 and fixed16 when one can be opened (else an error if `require_gpu`, or a note),
/// against the dense f64 oracle.
pub fn verify(
    path: &Path,
    input: Option<&Path>,
    steps: usize,
    density: f64,
    seed: u64,
    json: bool,
    require_gpu: bool,
) -> Result<ExitCode> {
    let model = SequenceModel::load(path)?;
    let n = model.input_size();
    let (steps, x) = match input {
        Some(p) => {
            let t = eie::import::read_npy(p)?;
            match t.shape.as_slice() {
                [s, w] if *w == n && *s > 0 => (*s, t.data),
                other => {
                    return Err(Error::Shape(format!(
                        "input {} has shape {other:?}; expected [steps, {n}]",
                        p.display()
                    )))
                }
            }
        }
        None if steps == 0 => {
            return Err(Error::InvalidArgument("--steps must be at least 1".into()))
        }
        None => (steps, eie::synth::activations(n * steps, density, seed)),
    };
    let mut reports = eie::verify::verify_sequence(&model, &x, steps)?;
    #[cfg(feature = "gpu")]
    {
        let sp = super::spinner("opening the GPU and uploading the model");
        let ctx = eie::gpu::GpuContext::new(&eie::gpu::DeviceOptions::default());
        sp.finish_and_clear();
        match ctx {
            Ok(ctx) => reports.extend(eie::verify::verify_sequence_gpu(&model, &x, steps, &ctx)?),
            Err(e) if !require_gpu => eprintln!("note: GPU kernels skipped: {e}"),
            Err(e) => return Err(e),
        }
    }
    #[cfg(not(feature = "gpu"))]
    if require_gpu {
        return Err(Error::InvalidArgument(
            "this build has no GPU backend (cargo feature `gpu`)".into(),
        ));
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reports).expect("plain data serialises")
        );
    } else {
        println!(
            "{:<18} {:>12} {:>12} {:>12} {:>10}  result",
            "backend", "max abs", "max rel", "state rel", "tolerance"
        );
        for r in &reports {
            match (&r.error, &r.state_error) {
                (Some(e), Some(s)) => println!(
                    "{:<18} {:>12.3e} {:>12.3e} {:>12.3e} {:>10.0e}  {}",
                    r.backend,
                    e.max_abs,
                    e.max_rel,
                    s.max_rel,
                    r.tolerance,
                    if r.passed { "ok" } else { "FAIL" }
                ),
                _ => println!(
                    "{:<18} failed: {}",
                    r.backend,
                    r.failure.as_deref().unwrap_or("")
                ),
            }
        }
        println!("(one sequence of {steps} steps from the zero state)");
    }
    Ok(if reports.iter().all(|r| r.passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The GPU sequence engine's run (opening the device and uploading the model first): outputs,
/// the run's time (upload excluded) and the engine's name.
#[cfg(feature = "gpu")]
fn gpu_run(
    model: &SequenceModel,
    precision: Precision,
    pes: Option<usize>,
    x: &[f32],
    batch: usize,
    steps: usize,
    states: &mut [SequenceState],
) -> Result<(Vec<f32>, std::time::Duration, String)> {
    use eie::gpu::{DeviceOptions, GpuContext, GpuSequenceEngine, SequenceOptions};
    let sp = super::spinner("opening the GPU and uploading the model");
    let engine = GpuContext::new(&DeviceOptions::default()).and_then(|ctx| {
        GpuSequenceEngine::new(
            ctx,
            model,
            SequenceOptions {
                precision,
                pes: pes.map_or(eie::schedule::PePlan::Auto, eie::schedule::PePlan::Fixed),
                ..SequenceOptions::default()
            },
        )
    });
    sp.finish_and_clear();
    let engine = engine?;
    let ctx = engine.context();
    eprintln!(
        "GPU: {} ({:?})",
        ctx.adapter_info().name,
        ctx.adapter_info().backend
    );
    let start = std::time::Instant::now();
    let out = engine.run_batch(x, batch, steps, states)?;
    Ok((out, start.elapsed(), engine.id().to_string()))
}

#[cfg(not(feature = "gpu"))]
fn gpu_run(
    _: &SequenceModel,
    _: Precision,
    _: Option<usize>,
    _: &[f32],
    _: usize,
    _: usize,
    _: &mut [SequenceState],
) -> Result<(Vec<f32>, std::time::Duration, String)> {
    Err(Error::InvalidArgument(
        "this eie was built without the `gpu` feature".into(),
    ))
}
