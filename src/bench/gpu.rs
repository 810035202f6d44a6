//! GPU contenders: the EIE kernel (f32, fixed16, f16) and the
//! dense and CSR baselines on the same adapter, timed with timestamp queries (K back-to-back runs
//! in one submission, divided by K) and by end-to-end wall time per call; and AlexNet's
//! FC6 → FC7 → FC8 chained at batch 1 with pipelined submissions.
//!
//! [`gpu_contenders`] makes them for [`super::run()`]; [`alexnet_chain`] times the chain.

use super::{BenchConfig, Contender, Metric, Stat, Timing};
use crate::error::{Error, Result};
use crate::format::Model;
use crate::gpu::{
    BaselineEngine, BaselineKind, EngineOptions, GpuContext, GpuEngine, Timing as GpuTiming,
    TimingOptions,
};
use crate::reference::{CpuEngine, ErrorStats, Precision};
use std::sync::Arc;

/// The adapter's name and API, e.g. `NVIDIA H100 80GB HBM3 (Vulkan)`.
///
/// The GPU counterpart of [`super::cpu_name`].
pub fn gpu_name(ctx: &GpuContext) -> String {
    let info = ctx.adapter_info();
    format!("{} ({:?})", info.name, info.backend)
}

enum Kernel {
    Eie(GpuEngine),
    Baseline(Box<BaselineEngine>),
}

impl Kernel {
    fn run(&self, input: &[f32]) -> Result<Vec<f32>> {
        match self {
            Kernel::Eie(e) => e.run(input),
            Kernel::Baseline(b) => b.run(input),
        }
    }
    fn time(&self, input: &[f32], opts: &TimingOptions) -> Result<GpuTiming> {
        match self {
            Kernel::Eie(e) => e.time(input, opts),
            Kernel::Baseline(b) => b.time(input, opts),
        }
    }
}

struct GpuContender {
    name: String,
    device: String,
    precision: Precision,
    kernel: Kernel,
}

impl Contender for GpuContender {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn device(&self) -> String {
        self.device.clone()
    }
    fn precision(&self) -> Precision {
        self.precision
    }
    fn run(&mut self, input: &[f32]) -> Result<Vec<f32>> {
        self.kernel.run(input)
    }
    fn time(&mut self, inputs: &[Vec<f32>], cfg: &BenchConfig) -> Result<Vec<Timing>> {
        let opts = TimingOptions {
            reps_per_submit: cfg.gpu_reps,
            samples: 1,
        };
        for k in 0..cfg.warmup {
            self.kernel.time(&inputs[k % inputs.len()], &opts)?;
        }
        let (mut gpu, mut wall) = (Vec::new(), Vec::new());
        for s in 0..cfg.samples {
            let t = self.kernel.time(&inputs[s % inputs.len()], &opts)?;
            if let Some(g) = t.gpu_us {
                gpu.extend(g);
            }
            wall.extend(t.wall_us);
        }
        let mut out = Vec::new();
        if !gpu.is_empty() {
            out.push(Timing {
                metric: Metric::Gpu,
                us: Stat::new(&gpu)?,
            });
        }
        out.push(Timing {
            metric: Metric::Wall,
            us: Stat::new(&wall)?,
        });
        Ok(out)
    }
}

/// Every GPU kernel for `model` on `ctx`, each able to take batches up to `max_batch`.
///
/// The GPU counterpart of [`super::cpu_contenders`]; [`super::run()`] measures them.
pub fn gpu_contenders(
    ctx: &Arc<GpuContext>,
    model: &Model,
    max_batch: usize,
) -> Result<Vec<Box<dyn Contender>>> {
    let device = gpu_name(ctx);
    let mut v: Vec<Box<dyn Contender>> = Vec::new();
    for kind in [BaselineKind::Dense, BaselineKind::Csr] {
        let b = BaselineEngine::with_max_batch(ctx.clone(), model, kind, max_batch)?;
        v.push(Box::new(GpuContender {
            name: format!("gpu-{}/f32", kind.name()),
            device: device.clone(),
            precision: Precision::F32,
            kernel: Kernel::Baseline(Box::new(b)),
        }));
    }
    for precision in Precision::ALL {
        let opts = EngineOptions {
            precision,
            max_batch,
            ..EngineOptions::default()
        };
        let e = GpuEngine::new(ctx.clone(), model, opts)?;
        v.push(Box::new(GpuContender {
            name: format!("gpu-eie/{}", precision.name()),
            device: device.clone(),
            precision,
            kernel: Kernel::Eie(e),
        }));
    }
    // Both walks forced on every layer, beside the planner's choice above, so that each
    // device shows where one beats the other.
    for walk in [crate::gpu::Walk::Columns, crate::gpu::Walk::Rows] {
        let opts = EngineOptions {
            max_batch,
            walk: Some(walk),
            ..EngineOptions::default()
        };
        v.push(Box::new(GpuContender {
            name: format!("gpu-eie-{}/f32", walk.name()),
            device: device.clone(),
            precision: Precision::F32,
            kernel: Kernel::Eie(GpuEngine::new(ctx.clone(), model, opts)?),
        }));
    }
    Ok(v)
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
    let want = CpuEngine::new(model)?.run(&inputs[0], Precision::F32)?;
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
