//! Cross-checking backends: run every backend on the same input and compare each against the
//! dense oracle of the quantised weights.
//!
//! Start with [`verify()`] over a list of backends ([`crate::backend::cpu_backends`]), each
//! held to [`tolerance`]; [`verify_sequence`] does the same for sequence models. `eie verify`
//! runs both.

use crate::backend::Backend;
use crate::error::Result;
use crate::fixed16::Saturations;
use crate::format::Model;
use crate::kernel_id::{KernelId, KernelKind};
use crate::reference::{DenseOracle, ErrorStats, Precision};
use std::time::Instant;

/// Largest normwise relative error (see [`ErrorStats::max_rel`]) a backend may show against the
/// dense oracle: f32 differs only by summation order and f32 vs f64 accumulation; fixed16 adds
/// the quantisation of the codebook, the inputs and every layer's outputs to each layer's
/// stored format (chosen so that it stays within 1e-2; files without stored formats run Q5.10
/// throughout, which fails this where outputs leave ±32 or are small); f16 rounds the codebook, the inputs, the products and every layer's outputs
/// to 11 significant bits.
pub fn tolerance(precision: Precision) -> f64 {
    match precision {
        Precision::F32 => 1e-4,
        Precision::Fixed16 => 1e-2,
        Precision::F16 => 2e-2,
    }
}

/// One backend's verdict.
///
/// Returned by [`verify`]; held to [`tolerance`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct BackendReport {
    /// Which backend (its `Display` is the name reports print).
    pub backend: KernelId,
    /// Its arithmetic.
    pub precision: Precision,
    /// Error against the dense oracle (absent if the backend failed).
    pub error: Option<ErrorStats>,
    /// The relative tolerance it is held to.
    pub tolerance: f64,
    /// Whether it ran and stayed within tolerance.
    pub passed: bool,
    /// Wall time of the run in seconds.
    pub seconds: f64,
    /// The error message if the backend failed to run.
    pub failure: Option<String>,
    /// fixed16 backends: the saturations of the run, from the CPU model (every fixed16 backend
    /// gives its bits); absent for other precisions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saturations: Option<Saturations>,
}

/// Runs the oracle and every backend on `input`; returns one report per backend, in order.
/// When a backend runs fixed16, the CPU model also counts that run's saturations for the
/// fixed16 reports.
/// `on_done` is called after each backend (for progress display).
///
/// The backends come from [`crate::backend::cpu_backends`] (and, with the `gpu` feature,
/// `gpu::gpu_backends`); `eie verify` prints the reports.
pub fn verify(
    model: &Model,
    input: &[f32],
    backends: &[Box<dyn Backend>],
    mut on_done: impl FnMut(&BackendReport),
) -> Result<Vec<BackendReport>> {
    model.check_input(input)?;
    let oracle = DenseOracle::try_new(model)?.run(input)?;
    let saturations = if backends.iter().any(|b| b.precision() == Precision::Fixed16) {
        Some(
            crate::CpuEngine::as_stored(model.clone())
                .with_precision(Precision::Fixed16)
                .run_fixed16(input)?
                .1,
        )
    } else {
        None
    };
    let mut reports = Vec::with_capacity(backends.len());
    for b in backends {
        let start = Instant::now();
        let result = b.run(input);
        let seconds = start.elapsed().as_secs_f64();
        let tolerance = tolerance(b.precision());
        let report = match result {
            Ok(out) if out.len() == oracle.len() => {
                let error = ErrorStats::compare(&out, &oracle);
                BackendReport {
                    backend: b.id(),
                    precision: b.precision(),
                    passed: error.max_rel <= tolerance,
                    error: Some(error),
                    tolerance,
                    seconds,
                    failure: None,
                    saturations: None,
                }
            }
            Ok(out) => BackendReport {
                backend: b.id(),
                precision: b.precision(),
                error: None,
                tolerance,
                passed: false,
                seconds,
                failure: Some(format!(
                    "returned {} values, expected {}",
                    out.len(),
                    oracle.len()
                )),
                saturations: None,
            },
            Err(e) => BackendReport {
                backend: b.id(),
                precision: b.precision(),
                error: None,
                tolerance,
                passed: false,
                seconds,
                failure: Some(e.to_string()),
                saturations: None,
            },
        };
        let report = BackendReport {
            saturations: (report.precision == Precision::Fixed16)
                .then(|| saturations.clone())
                .flatten(),
            ..report
        };
        on_done(&report);
        reports.push(report);
    }
    Ok(reports)
}

/// One sequence engine's verdict against the dense f64 oracle of a sequence model.
///
/// Returned by [`verify_sequence`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct SequenceReport {
    /// Which engine (its `Display` is the name, e.g. `cpu-eie/fixed16`).
    pub backend: KernelId,
    /// Its arithmetic.
    pub precision: Precision,
    /// Error of every step's output against the oracle (absent if the engine failed).
    pub error: Option<ErrorStats>,
    /// Error of the final recurrent state against the oracle's.
    pub state_error: Option<ErrorStats>,
    /// The relative tolerance it is held to ([`tolerance`]).
    pub tolerance: f64,
    /// Whether it ran and both errors stayed within tolerance.
    pub passed: bool,
    /// The error message if the engine failed to run.
    pub failure: Option<String>,
}

/// Runs a model with recurrent layers over one sequence of `steps` steps (`input`: `steps ×
/// input_size` values) from the zero state on the CPU sequence engine in every precision, and
/// compares each step's outputs and the final state with the dense f64 oracle
/// ([`crate::recurrent::SequenceOracle`]).
pub fn verify_sequence(
    model: &crate::format::SequenceModel,
    input: &[f32],
    steps: usize,
) -> Result<Vec<SequenceReport>> {
    use crate::recurrent::{SequenceEngine, SequenceOracle, SequenceState};
    let zero = SequenceState::zeros(model);
    let oracle = SequenceOracle::new(model)?.run(input, steps, &zero)?;
    Ok(Precision::ALL
        .iter()
        .map(|&precision| {
            let run = SequenceEngine::new(model.clone(), precision).and_then(|e| {
                let mut state = e.zero_state();
                e.run(input, steps, &mut state).map(|y| (y, state))
            });
            sequence_report(KernelId::cpu(KernelKind::Eie, precision), run, &oracle)
        })
        .collect())
}

/// [`verify_sequence`] on the GPU sequence engine ([`crate::gpu::GpuSequenceEngine`]) of
/// `ctx`, in the precisions it runs (f32 and fixed16).
#[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
pub fn verify_sequence_gpu(
    model: &crate::format::SequenceModel,
    input: &[f32],
    steps: usize,
    ctx: &std::sync::Arc<crate::gpu::GpuContext>,
) -> Result<Vec<SequenceReport>> {
    use crate::gpu::{GpuSequenceEngine, SequenceOptions};
    use crate::recurrent::{SequenceOracle, SequenceState};
    let zero = SequenceState::zeros(model);
    let oracle = SequenceOracle::new(model)?.run(input, steps, &zero)?;
    Ok([Precision::F32, Precision::Fixed16]
        .iter()
        .map(|&precision| {
            let opts = SequenceOptions {
                precision,
                ..SequenceOptions::default()
            };
            let run = GpuSequenceEngine::new(ctx.clone(), model, opts).and_then(|e| {
                let mut state = e.zero_state();
                e.run(input, steps, &mut state).map(|y| (y, state))
            });
            sequence_report(KernelId::gpu(KernelKind::Eie, precision), run, &oracle)
        })
        .collect())
}

/// The report of one sequence run against the oracle's outputs and final state.
fn sequence_report(
    id: KernelId,
    run: Result<(Vec<f32>, crate::recurrent::SequenceState)>,
    (oracle, oracle_state): &(Vec<f32>, Vec<f32>),
) -> SequenceReport {
    let (backend, precision) = (id, id.precision);
    let tolerance = tolerance(precision);
    match run {
        Ok((y, state)) => {
            let error = ErrorStats::compare(&y, oracle);
            let state_error = ErrorStats::compare(state.values(), oracle_state);
            SequenceReport {
                backend,
                precision,
                passed: error.max_rel <= tolerance && state_error.max_rel <= tolerance,
                error: Some(error),
                state_error: Some(state_error),
                tolerance,
                failure: None,
            }
        }
        Err(e) => SequenceReport {
            backend,
            precision,
            error: None,
            state_error: None,
            tolerance,
            passed: false,
            failure: Some(e.to_string()),
        },
    }
}
