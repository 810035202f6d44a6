//! Unstable, and hidden from the documentation: public for `eie bench`, `benches/` and the
//! crate's tests only, it may change in any release.
//!
//! Benchmarks: EIE against dense and plain-CSR kernels on the same device, over the paper's nine
//! layers or any model file, at several batch sizes.
//!
//! Every kernel under test (a [`Contender`]) first runs once and its output is checked against
//! the CPU model (f32 kernels within [`crate::verify::tolerance`] of the CPU EIE engine in f32,
//! fixed16 kernels bit for bit against the CPU engine in fixed16); only then is it timed. Timing
//! rotates through several inputs so a cache-resident hot loop does not flatter a kernel, and
//! reports the median and the spread (min, max) of the samples.
//!
//! Start with [`run()`]: [`Workload`]s (the paper's via [`Workload::paper_layers`]), a
//! [`BenchConfig`] and a function making the [`Contender`]s ([`cpu_contenders`], and with the
//! `gpu` feature `gpu::gpu_contenders`); [`report::markdown`] and [`report::csv`] write the
//! [`WorkloadResult`]s. `eie bench` does all of it.

#[cfg(feature = "charts")]
mod chart;
mod cpu;
// GPU timing waits on the device: native only.
#[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
pub mod gpu;
pub mod report;

#[cfg(feature = "charts")]
pub use chart::speedup_chart;
pub use cpu::{cpu_contenders, cpu_name, CPU_KERNELS};
pub use report::{csv, markdown};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::format::Model;
use crate::kernel_id::KernelId;
use crate::paper::PaperLayer;
use crate::reference::{CpuEngine, ErrorStats, Precision};
use std::time::Instant;

/// How much to measure.
///
/// Given to [`run()`]; [`BenchConfig::quick`] is the short variant.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchConfig {
    /// Batch sizes to measure at.
    pub batches: Vec<usize>,
    /// Timed samples per kernel and batch (the median and spread are over these).
    pub samples: usize,
    /// Untimed warm-up calls before sampling a host kernel (a GPU kernel warms up on at least
    /// 50 ms of device work instead).
    pub warmup: usize,
    /// Distinct inputs rotated through while timing.
    pub rotate: usize,
    /// Back-to-back runs per GPU submission when timing with timestamps (the K of "K runs in
    /// one submission, divided by K").
    pub gpu_reps: usize,
    /// Minimum wall time per CPU sample in seconds: short kernels are repeated within a sample
    /// until it lasts this long, and the sample is the mean per call.
    pub min_sample_s: f64,
    /// Seed of generated layers and inputs.
    pub seed: u64,
    /// Also simulate the EIE ASIC (64 PEs, FIFO 8, 800 MHz) at batch 1.
    pub simulate: bool,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            batches: vec![1, 64],
            samples: 15,
            warmup: 2,
            rotate: 4,
            gpu_reps: 20,
            min_sample_s: 0.01,
            seed: crate::paper::DEFAULT_SEED,
            simulate: true,
        }
    }
}

impl BenchConfig {
    /// A smoke run for CI: batch 1 only, one sample per kernel (so no spread), no warm-up.
    ///
    /// See [`BenchConfig`].
    pub fn quick() -> Self {
        BenchConfig {
            batches: vec![1],
            samples: 1,
            warmup: 0,
            rotate: 2,
            gpu_reps: 1,
            min_sample_s: 0.0,
            ..Self::default()
        }
    }

    /// Checks the settings.
    ///
    /// [`run()`] expects a valid one.
    pub fn validate(&self) -> Result<()> {
        if self.batches.is_empty() || self.batches.contains(&0) {
            return Err(Error::InvalidArgument(
                "batch sizes must be at least 1".into(),
            ));
        }
        if self.samples == 0 || self.rotate == 0 || self.gpu_reps == 0 {
            return Err(Error::InvalidArgument(
                "samples, rotated inputs and GPU repetitions must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Median and spread of timing samples, in microseconds.
///
/// The `us` of a [`Timing`]; made by [`Stat::new`].
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Stat {
    /// Median sample.
    pub median: f64,
    /// Fastest sample.
    pub min: f64,
    /// Slowest sample.
    pub max: f64,
    /// Number of samples.
    pub n: usize,
}

impl Stat {
    /// Summarises samples (at least one).
    ///
    /// [`time_wall`] builds one from its samples.
    pub fn new(samples: &[f64]) -> Result<Stat> {
        if samples.is_empty() || samples.iter().any(|s| !s.is_finite()) {
            return Err(Error::InvalidArgument(
                "no finite timing samples to summarise".into(),
            ));
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            0.5 * (s[n / 2 - 1] + s[n / 2])
        };
        Ok(Stat {
            median,
            min: s[0],
            max: s[n - 1],
            n,
        })
    }

    /// Spread as a fraction of the median: (max − min) / median.
    ///
    /// See [`Stat`].
    pub fn spread(&self) -> f64 {
        if self.median > 0.0 {
            (self.max - self.min) / self.median
        } else {
            0.0
        }
    }
}

/// What a timing measures.
///
/// See [`Timing`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Wall time of one call on the host (for GPU kernels: upload, run, read back).
    Wall,
    /// Device time from timestamp queries (K runs in one submission, divided by K).
    Gpu,
}

/// One timing of one kernel.
///
/// Listed in [`KernelResult::timings`]; [`KernelResult::best_timing`] picks one.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Timing {
    /// What was measured.
    pub metric: Metric,
    /// Microseconds per call (a call processes the whole batch).
    pub us: Stat,
}

/// A kernel under test: a [`Backend`] with the device it runs on and how it is timed.
///
/// [`cpu_contenders`] and (feature `gpu`) `gpu::gpu_contenders` build them, one per entry of
/// [`CPU_KERNELS`] and of [`KernelId::GPU`]; [`run()`] measures them.
pub struct Contender {
    id: KernelId,
    timer: Timer,
    device: String,
    library: Option<String>,
}

/// How a [`Contender`] is timed.
enum Timer {
    /// By wall clock on the host ([`time_wall`]).
    Wall(Box<dyn Backend>),
    /// With the device's timestamp queries and per-call wall time.
    #[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
    Device(Box<dyn crate::gpu::TimedBackend>),
}

impl Contender {
    /// A host runner timed by wall clock; `library` names the library or kernel behind it where
    /// its name alone does not say (e.g. the BLAS behind a dense baseline).
    pub fn wall(backend: Box<dyn Backend>, device: String, library: Option<String>) -> Self {
        Contender {
            id: backend.id(),
            timer: Timer::Wall(backend),
            device,
            library,
        }
    }

    /// A GPU runner timed with timestamp queries (and by wall time per call), reported as the
    /// variant `id` it was built as: a walk forced by `EIE_GPU_SCHEDULE` changes what runs, not
    /// the column it is reported in (the schedule sweeps of `benches/gpu_measure.sh` rely on it).
    #[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
    pub fn timed(id: KernelId, backend: Box<dyn crate::gpu::TimedBackend>, device: String) -> Self {
        Contender {
            id,
            timer: Timer::Device(backend),
            device,
            library: None,
        }
    }

    /// Which kernel variant ([`KernelResult::kernel`]).
    pub fn id(&self) -> KernelId {
        self.id
    }

    /// The device it runs on, e.g. the CPU model name ([`cpu_name`]) or the GPU adapter
    /// ([`KernelResult::device`]).
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The library or kernel that does the work, where the name alone does not say
    /// ([`KernelResult::library`]).
    pub fn library(&self) -> Option<&str> {
        self.library.as_deref()
    }

    /// Runs one batch, blocking; [`measure`] checks its output against [`references`].
    pub fn run(&self, input: &[f32]) -> Result<Vec<f32>> {
        match &self.timer {
            Timer::Wall(b) => b.run(input),
            #[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
            Timer::Device(b) => b.run(input),
        }
    }

    /// Times calls over `inputs` (each one batch), rotating through them: host runners with
    /// [`time_wall`], GPU runners with their device timing (one warm-up of at least 50 ms of
    /// device work, then `cfg.samples` samples of `cfg.gpu_reps` runs in one submission).
    pub fn time(&self, inputs: &[Vec<f32>], cfg: &BenchConfig) -> Result<Vec<Timing>> {
        match &self.timer {
            Timer::Wall(b) => Ok(vec![Timing {
                metric: Metric::Wall,
                us: time_wall(inputs, cfg, |x| b.run(x).map(drop))?,
            }]),
            #[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
            Timer::Device(b) => {
                let opts = crate::gpu::TimingOptions {
                    reps_per_submit: cfg.gpu_reps,
                    samples: cfg.samples,
                };
                let t = b.time(inputs, &opts)?;
                let mut out = Vec::new();
                if let Some(g) = t.gpu_us.filter(|g| !g.is_empty()) {
                    out.push(Timing {
                        metric: Metric::Gpu,
                        us: Stat::new(&g)?,
                    });
                }
                out.push(Timing {
                    metric: Metric::Wall,
                    us: Stat::new(&t.wall_us)?,
                });
                Ok(out)
            }
        }
    }
}

/// Wall-clock timing of a host call: `cfg.warmup` untimed calls, then `cfg.samples` samples,
/// each the mean over enough calls to last `cfg.min_sample_s`.
///
/// The one host timing loop: [`Contender::time`] uses it for host runners.
pub fn time_wall(
    inputs: &[Vec<f32>],
    cfg: &BenchConfig,
    mut call: impl FnMut(&[f32]) -> Result<()>,
) -> Result<Stat> {
    for k in 0..cfg.warmup {
        call(&inputs[k % inputs.len()])?;
    }
    let mut samples = Vec::with_capacity(cfg.samples);
    let mut k = 0usize;
    for _ in 0..cfg.samples {
        let start = Instant::now();
        let mut calls = 0u32;
        loop {
            call(&inputs[k % inputs.len()])?;
            k += 1;
            calls += 1;
            if start.elapsed().as_secs_f64() >= cfg.min_sample_s {
                break;
            }
        }
        samples.push(start.elapsed().as_secs_f64() * 1e6 / calls as f64);
    }
    Stat::new(&samples)
}

/// One kernel's result on one workload.
///
/// Listed in [`WorkloadResult`]; [`WorkloadResult::kernel`] finds one by name.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelResult {
    /// Which kernel (serialized as its name, `gpu-eie/f32`).
    pub kernel: KernelId,
    /// Device name.
    pub device: String,
    /// The library or kernel that does the work, where the kernel names one.
    pub library: Option<String>,
    /// Error of its checked output against the CPU model.
    pub error: Option<ErrorStats>,
    /// Timings (absent when the check failed).
    pub timings: Vec<Timing>,
    /// Why it was not timed, if it was not.
    pub failure: Option<String>,
}

impl KernelResult {
    /// The timing used for comparisons: device time when present, wall time otherwise.
    ///
    /// See [`Metric`].
    pub fn best_timing(&self) -> Option<&Timing> {
        self.timings
            .iter()
            .find(|t| t.metric == Metric::Gpu)
            .or_else(|| self.timings.iter().find(|t| t.metric == Metric::Wall))
    }
}

/// Results of every kernel on one workload (a layer or model at one batch size).
///
/// Returned by [`run()`]; [`report::markdown`] and [`report::csv`] write them out.
#[derive(Clone, Debug, serde::Serialize)]
pub struct WorkloadResult {
    /// Layer or model name.
    pub name: String,
    /// Batch size.
    pub batch: usize,
    /// Shape of each layer as (outputs, inputs).
    pub shapes: Vec<(usize, usize)>,
    /// Fraction of weights kept (over all layers).
    pub weight_density: f64,
    /// Fraction of non-zero input activations of the benchmark input.
    pub act_density: f64,
    /// Per-kernel results, in the order measured.
    pub kernels: Vec<KernelResult>,
    /// The simulated ASIC's time for batch 1 (µs), where simulated.
    pub sim_us: Option<f64>,
    /// The paper's published figures, for paper layers.
    pub paper: Option<PaperLayer>,
    /// Figures measured with cuBLAS / cuSPARSE on the same GPU, where supplied.
    pub cuda: Option<serde_json::Value>,
    /// The GPU kernels' modelled schedule on the same input (`eie plan`): per layer and
    /// kernel, workgroups, dispatches, bytes and entries per invocation.
    pub plan: Vec<crate::schedule::cost::KernelCost>,
}

impl WorkloadResult {
    /// The result of kernel `id`, if it was measured.
    ///
    /// See [`KernelResult`].
    pub fn kernel(&self, id: KernelId) -> Option<&KernelResult> {
        self.kernels.iter().find(|k| k.kernel == id)
    }

    /// Median µs per call of kernel `id` (device time where it has it).
    ///
    /// The median of [`KernelResult::best_timing`]; [`speedup`] compares two.
    pub fn median_us(&self, id: KernelId) -> Option<f64> {
        self.kernel(id)?.best_timing().map(|t| t.us.median)
    }
}

/// Checks a contender's output on `inputs[0]` against the CPU model's, then times it.
///
/// [`run()`] calls it for every contender; see the [module docs](self) for the check.
pub fn measure(
    c: &Contender,
    inputs: &[Vec<f32>],
    reference_f32: &[f32],
    reference_fixed16: &[f32],
    cfg: &BenchConfig,
) -> KernelResult {
    let mut result = KernelResult {
        kernel: c.id(),
        device: c.device().to_string(),
        library: c.library().map(str::to_string),
        error: None,
        timings: Vec::new(),
        failure: None,
    };
    let out = match c.run(&inputs[0]) {
        Ok(out) => out,
        Err(e) => {
            result.failure = Some(e.to_string());
            return result;
        }
    };
    let precision = c.id().precision;
    let (reference, exact) = match precision {
        Precision::Fixed16 => (reference_fixed16, true),
        _ => (reference_f32, false),
    };
    if out.len() != reference.len() {
        result.failure = Some(format!(
            "returned {} values, expected {}",
            out.len(),
            reference.len()
        ));
        return result;
    }
    let error = ErrorStats::compare(&out, reference);
    result.error = Some(error);
    let tolerance = crate::verify::tolerance(precision);
    let mismatch = if exact {
        (out != reference).then(|| {
            format!(
                "differs from the CPU fixed16 model (max abs {:.3e})",
                error.max_abs
            )
        })
    } else {
        (error.max_rel > tolerance).then(|| {
            format!(
                "relative error {:.3e} against the CPU model exceeds {tolerance:.0e}",
                error.max_rel
            )
        })
    };
    if let Some(m) = mismatch {
        result.failure = Some(m);
        return result;
    }
    match c.time(inputs, cfg) {
        Ok(t) => result.timings = t,
        Err(e) => result.failure = Some(e.to_string()),
    }
    result
}

/// A model (or single layer) to benchmark, with the input generator for it.
///
/// Given to [`run()`]; [`Workload::paper_layers`] makes the paper's.
pub struct Workload {
    /// Name in reports.
    pub name: String,
    /// The model.
    pub model: Model,
    /// Activation density of generated inputs.
    pub act_density: f64,
    /// The paper's figures when it is a paper layer.
    pub paper: Option<PaperLayer>,
}

impl Workload {
    /// The inputs to rotate through at `batch`, seeded.
    ///
    /// Passed to [`Contender`]s by [`run()`].
    pub fn inputs(&self, batch: usize, cfg: &BenchConfig) -> Vec<Vec<f32>> {
        (0..cfg.rotate)
            .map(|r| {
                let seed = cfg.seed.wrapping_add(1000 * r as u64 + batch as u64);
                crate::synth::activations(self.model.input_size() * batch, self.act_density, seed)
            })
            .collect()
    }

    /// Fraction of weights kept over all layers.
    ///
    /// See [`Workload`].
    pub fn weight_density(&self) -> f64 {
        let (nnz, total) = self
            .model
            .layers()
            .iter()
            .fold((0usize, 0usize), |(n, t), l| {
                (n + l.nnz(), t + l.rows() * l.cols())
            });
        nnz as f64 / total.max(1) as f64
    }

    /// The paper's nine layers (or the named subset) at `pes` PEs.
    ///
    /// The layers are [`crate::paper::PaperLayer`]s.
    pub fn paper_layers(names: &[String], pes: usize, seed: u64) -> Result<Vec<Workload>> {
        let selected: Vec<&PaperLayer> = if names.is_empty() {
            crate::paper::PAPER_LAYERS.iter().collect()
        } else {
            names
                .iter()
                .map(|n| crate::paper::find(n))
                .collect::<Result<_>>()?
        };
        selected
            .into_iter()
            .map(|l| {
                Ok(Workload {
                    name: l.name.to_string(),
                    model: l.model(pes, seed)?,
                    act_density: l.act_density,
                    paper: Some(*l),
                })
            })
            .collect()
    }
}

/// Runs the CPU model on one batch in both precisions: the references every kernel is checked
/// against.
///
/// [`run()`] checks every contender against them (see the [module docs](self)).
pub fn references(model: &Model, input: &[f32]) -> Result<(Vec<f32>, Vec<f32>)> {
    let engine = CpuEngine::new(model.clone())?;
    Ok((
        engine.run(input)?,
        engine.with_precision(Precision::Fixed16).run(input)?,
    ))
}

/// Builds the contenders for one model.
///
/// The `make` of [`run()`]; [`cpu_contenders`] fits it.
pub type MakeContenders<'a> = dyn FnMut(&Model) -> Result<Vec<Contender>> + 'a;

/// Measures every contender `make` builds for each workload, at every batch size of `cfg`.
///
/// `make` is called once per workload (contenders keep their device state across batch sizes);
/// `progress` is told what is being measured before each kernel.
///
/// Returns [`WorkloadResult`]s for [`report::markdown`] and [`report::csv`]; `eie bench` runs it.
pub fn run(
    workloads: &[Workload],
    cfg: &BenchConfig,
    make: &mut MakeContenders<'_>,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<WorkloadResult>> {
    cfg.validate()?;
    let mut results = Vec::new();
    for w in workloads {
        progress(&format!("{}: preparing kernels", w.name));
        let contenders = make(&w.model)?;
        for &batch in &cfg.batches {
            let inputs = w.inputs(batch, cfg);
            let (ref_f32, ref_fixed16) = references(&w.model, &inputs[0])?;
            let nonzero = inputs[0].iter().filter(|&&v| v != 0.0).count();
            let mut r = WorkloadResult {
                name: w.name.clone(),
                batch,
                shapes: w
                    .model
                    .layers()
                    .iter()
                    .map(|l| (l.rows(), l.cols()))
                    .collect(),
                weight_density: w.weight_density(),
                act_density: nonzero as f64 / inputs[0].len().max(1) as f64,
                kernels: Vec::with_capacity(contenders.len()),
                sim_us: None,
                paper: if batch == 1 { w.paper } else { None },
                cuda: None,
                plan: crate::schedule::cost::model_costs(
                    &w.model,
                    &inputs[0],
                    crate::schedule::PePlan::Auto,
                    &crate::schedule::DeviceLimits::default(),
                )?,
            };
            if batch == 1 && cfg.simulate {
                // The ASIC as the paper configures it: 64 PEs, FIFO depth 8, 800 MHz.
                let sim = crate::sim::simulate_model(
                    &w.model,
                    &inputs[0],
                    &crate::sim::SimConfig::default(),
                    Precision::Fixed16,
                )?;
                r.sim_us = Some(sim.time_us);
            }
            for c in &contenders {
                progress(&format!("{} batch {batch}: {}", w.name, c.id()));
                r.kernels
                    .push(measure(c, &inputs, &ref_f32, &ref_fixed16, cfg));
            }
            results.push(r);
        }
    }
    Ok(results)
}

/// Geometric mean of positive values (None when empty).
///
/// [`speedup`] and the reports average with it.
pub fn geomean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values
        .into_iter()
        .filter(|v| *v > 0.0 && v.is_finite())
        .fold((0.0, 0usize), |(s, n), v| (s + v.ln(), n + 1));
    (n > 0).then(|| (sum / n as f64).exp())
}

/// Geometric-mean speed-up of kernel `fast` over kernel `slow` across workloads at `batch`.
///
/// The kernels are [`KernelResult::kernel`]s; see [`WorkloadResult::median_us`].
pub fn speedup(
    results: &[WorkloadResult],
    batch: usize,
    fast: KernelId,
    slow: KernelId,
) -> Option<f64> {
    geomean(
        results
            .iter()
            .filter(|r| r.batch == batch)
            .filter_map(|r| Some(r.median_us(slow)? / r.median_us(fast)?)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_median_and_spread() {
        let s = Stat::new(&[3.0, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.5, 1.0, 10.0, 4));
        assert!((s.spread() - 3.6).abs() < 1e-12);
        assert!(Stat::new(&[]).is_err());
        assert!(Stat::new(&[f64::NAN]).is_err());
    }

    #[test]
    fn geomean_of_speedups() {
        assert!((geomean([2.0, 8.0]).unwrap() - 4.0).abs() < 1e-12);
        assert_eq!(geomean([]), None);
    }

    #[test]
    fn config_validation() {
        assert!(BenchConfig::default().validate().is_ok());
        let mut c = BenchConfig::quick();
        c.batches = vec![0];
        assert!(c.validate().is_err());
    }
}
