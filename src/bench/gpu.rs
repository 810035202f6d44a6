//! GPU contenders: the EIE kernel (f32, fixed16, f16) and the
//! dense and CSR baselines on the same adapter, timed with timestamp queries (K back-to-back runs
//! in one submission, divided by K) and by end-to-end wall time per call; and AlexNet's
//! FC6 → FC7 → FC8 chained at batch 1 with pipelined submissions.
//!
//! [`gpu_contenders`] makes them for [`super::run()`]; [`alexnet_chain`] times the chain.

use super::{BenchConfig, Contender, Stat};
use crate::error::{Error, Result};
use crate::format::Model;
use crate::gpu::{EngineOptions, GpuContext, GpuEngine, TimingOptions};
use crate::kernel_id::KernelId;
use crate::reference::{CpuEngine, ErrorStats, Precision};
use std::sync::Arc;

/// The adapter's name and API, e.g. `NVIDIA H100 80GB HBM3 (Vulkan)`.
///
/// The GPU counterpart of [`super::cpu_name`].
pub fn gpu_name(ctx: &GpuContext) -> String {
    let info = ctx.adapter_info();
    format!("{} ({:?})", info.name, info.backend)
}

/// Every GPU kernel for `model` on `ctx` (one per entry of
/// [`KernelId::GPU`](crate::kernel_id::KernelId::GPU), each built by
/// [`gpu_backend`](crate::gpu::gpu_backend) and reported as that id), each able to take
/// batches up to `max_batch`, baselines first as in the report's columns.
///
/// The GPU counterpart of [`super::cpu_contenders`]; [`super::run()`] measures them.
pub fn gpu_contenders(
    ctx: &Arc<GpuContext>,
    model: &Model,
    max_batch: usize,
) -> Result<Vec<Contender>> {
    let device = gpu_name(ctx);
    let mut ids = KernelId::GPU;
    ids.sort_by_key(|id| !id.kind.is_baseline());
    ids.iter()
        .map(|&id| {
            let backend = crate::gpu::gpu_backend(ctx, model, id, max_batch)?;
            Ok(Contender::timed(id, backend, device.clone()))
        })
        .collect()
}

/// AlexNet FC6 → FC7 → FC8 chained on the device at batch 1 with pipelined submissions.
///
/// Returned by [`alexnet_chain`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct ChainResult {
    /// The adapter.
    pub device: String,
    /// Arithmetic of the EIE kernel.
    pub precision: Precision,
    /// Frames run.
    pub frames: usize,
    /// Submissions kept in flight.
    pub in_flight: usize,
    /// Frames completed per second.
    pub frames_per_s: f64,
    /// Submit-to-result latency per frame on the host (µs).
    pub latency_us: Stat,
    /// GPU time of one frame through all three layers from timestamps (µs), where present.
    pub gpu_us: Option<Stat>,
    /// Error of the first frame against the CPU model.
    pub error: ErrorStats,
}

/// Runs AlexNet FC6 → FC8 (generated at the paper's densities) for `frames` frames, checking the
/// first frame against the CPU model before timing.
///
/// Uses [`crate::paper::alexnet_fc`]; `eie bench` prints the result.
pub fn alexnet_chain(
    ctx: &Arc<GpuContext>,
    cfg: &BenchConfig,
    frames: usize,
    in_flight: usize,
) -> Result<ChainResult> {
    let model = crate::paper::alexnet_fc(64, cfg.seed)?;
    let fc6 = &crate::paper::PAPER_LAYERS[0];
    let inputs: Vec<Vec<f32>> = (0..cfg.rotate.max(2))
        .map(|r| fc6.input(1, cfg.seed.wrapping_add(77 + r as u64)))
        .collect();
    let engine = GpuEngine::new(ctx.clone(), &model, EngineOptions::default())?;
    let got = engine.run(&inputs[0])?;
    let want = CpuEngine::new(model)?.run(&inputs[0])?;
    let error = ErrorStats::compare(&got, &want);
    let tolerance = crate::verify::tolerance(Precision::F32);
    if error.max_rel > tolerance {
        return Err(Error::InvalidArgument(format!(
            "AlexNet FC6-FC8 on the GPU differs from the CPU model: relative error {:.3e} > {tolerance:.0e}",
            error.max_rel
        )));
    }
    let t = engine.time(
        &inputs[0],
        &TimingOptions {
            reps_per_submit: cfg.gpu_reps,
            samples: cfg.samples,
        },
    )?;
    let p = engine.pipelined(&inputs, frames, in_flight)?;
    Ok(ChainResult {
        device: gpu_name(ctx),
        precision: Precision::F32,
        frames,
        in_flight,
        frames_per_s: p.frames_per_s,
        latency_us: Stat::new(&p.latency_us)?,
        gpu_us: t.gpu_us.as_deref().map(Stat::new).transpose()?,
        error,
    })
}
