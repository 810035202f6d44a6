//! Fitting a [`DeviceProfile`]'s five costs to measured runs (`cargo run --release --example
//! latency_fit`): a least-squares fit in log space (the error of a sample is
//! `ln(modelled / measured)`, so every layer counts alike whatever its size), by
//! Levenberg–Marquardt over the logarithms of the constants (so they stay positive), from a
//! fixed set of starting points; plus, for every kernel family, the fit without that family
//! and its prediction of it (the held-out check).
//!
//! The samples are the paper's nine layers (`PaperLayer::generate(64, 2016)`, the input
//! `eie bench` plans with) at the batch sizes measured, each with the work the cost module
//! computes for the kernel that ran ([`Family`]) and the measured median GPU time.
//!
//! [`samples`] reads the measurements ([`h100_sources`], [`lavapipe_sources`]) and [`fit`]
//! fits a [`DeviceProfile`] to them, with a [`FitReport`].

use super::history::{eie_gen1, eie_v2, Generation};
use super::latency::{combine, terms, DeviceProfile, LatencyWork};
use crate::error::{Error, Result};
use crate::kernel_id::{KernelId, KernelKind};
use crate::precision::Precision;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A GPU kernel in f32, as the recorded runs name them.
fn gpu(kind: KernelKind) -> KernelId {
    KernelId::gpu(kind, Precision::F32)
}

/// The kernel a measured figure belongs to, as the cost module models it.
///
/// [`Family::work`] models it; [`Sample::family`] holds its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// A first-generation EIE column walk (f32).
    Gen1(Generation),
    /// The second-generation column walk (f32) on a device aiming at `target` workgroups per
    /// dispatch with input tiles of `tile`.
    V2 {
        /// Workgroups the scheduler aimed for.
        target: usize,
        /// Inputs per workgroup at batch > 1.
        tile: usize,
    },
    /// The third-generation column walk (f32) as first scheduled (`105d1be`): a device aiming
    /// at `target` workgroups per dispatch with input tiles of `tile`, which also bound its
    /// column groups at batch 1.
    Eie {
        /// Workgroups the scheduler aimed for.
        target: usize,
        /// Inputs per workgroup at batch > 1.
        tile: usize,
    },
    /// The row walk (f32) with `lanes` invocations per row and input tiles of `tile`.
    Rows {
        /// Inputs per workgroup at batch > 1.
        tile: usize,
        /// Invocations per row.
        lanes: usize,
        /// Whether 16-bit row entries may be chosen for sparse rows (since `2a9ea3f`).
        wide: bool,
    },
    /// `gpu-dense/f32`.
    Dense,
    /// `gpu-csr/f32`.
    Csr,
}

impl Family {
    /// The family's name in fit reports.
    ///
    /// See [`FitError`].
    pub fn name(&self) -> String {
        match self {
            Family::Gen1(g) => format!("eie-{}", g.name()),
            Family::V2 { .. } => "eie-v2".into(),
            Family::Eie { .. } => "eie".into(),
            Family::Rows { lanes, .. } => format!("eie-rows-{lanes}"),
            Family::Dense => "dense".into(),
            Family::Csr => "csr".into(),
        }
    }

    /// The work of this kernel on `layer` for `input` on a device of `profile`.
    ///
    /// The work the [`super::latency`] model charges; [`samples`] computes it for every sample.
    pub fn work(
        &self,
        layer: &crate::format::EieLayer,
        input: &[f32],
        profile: &DeviceProfile,
    ) -> Result<LatencyWork> {
        let limits = profile.limits();
        let c = match *self {
            Family::Gen1(g) => eie_gen1(layer, input, g)?,
            Family::V2 { target, tile } => eie_v2(layer, input, Precision::F32, target, tile)?,
            Family::Eie { target, tile } => {
                // As `105d1be` scheduled it: accumulators of the default 2560 words and the
                // column groups the batched tile left (16 / tile), for a single input too.
                let limits = crate::schedule::DeviceLimits {
                    target_workgroups: target,
                    batch_tile: tile,
                    max_compute_workgroup_storage_size: 16384,
                    ..limits
                };
                let args = (layer.rows(), layer.cols(), layer.pes(), layer.entry_bytes());
                let pe_plan = super::super::PePlan::Auto;
                let auto =
                    super::EieLayerPlan::new(pe_plan, args.0, args.1, args.2, args.3, &limits)?;
                let mut groups = (crate::schedule::EIE_MAX_GROUPS / tile).max(1);
                while groups > 1 && groups * tile * auto.local_rows > crate::schedule::EIE_ACC_WORDS
                {
                    groups /= 2;
                }
                let ov = crate::schedule::ScheduleOverride {
                    groups: Some(groups),
                    tile: Some(tile),
                    ..Default::default()
                };
                let plan = super::EieLayerPlan::with_override(
                    pe_plan, args.0, args.1, args.2, args.3, &limits, &ov,
                )?;
                super::eie(&layer.with_pes(plan.pes)?, &plan, input, Precision::F32)?
            }
            Family::Rows { tile, lanes, wide } => {
                super::eie_rows_with(layer, input, tile, lanes, Precision::F32, wide)?
            }
            Family::Dense => super::dense(
                layer,
                input,
                super::super::dense_tiles(layer.rows(), layer.cols(), &limits)?.len(),
            )?,
            Family::Csr => super::csr(layer, input)?,
        };
        Ok(c.work)
    }
}

/// One measured run: a kernel on a layer at a batch size, its work and its time.
///
/// Read by [`samples`]; [`fit`] fits a profile to them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Kernel family ([`Family::name`]).
    pub family: String,
    /// Paper layer.
    pub layer: String,
    /// Inputs per run.
    pub batch: usize,
    /// What the model charges for.
    pub work: LatencyWork,
    /// Measured median µs per run (device time).
    pub measured_us: f64,
    /// Fastest and slowest measured sample, µs.
    pub spread_us: (f64, f64),
}

/// A measurement folder of `eie bench` (its `bench.json`) and what its kernels were.
///
/// Listed by [`h100_sources`] and [`lavapipe_sources`]; [`samples`] reads them.
#[derive(Clone, Debug)]
pub struct Source {
    /// Folder holding `bench.json`.
    pub dir: String,
    /// The kernels to take from it: the kernel `eie bench` named, and its family.
    pub kernels: Vec<(KernelId, Family)>,
}

/// The recorded H100 runs of 2026-11-27 under `measurements` (docs/measurements): the three
/// first-generation kernels, and the dense and CSR kernels of each run.
pub fn h100_sources(measurements: &Path) -> Vec<Source> {
    let d = |s: &str| measurements.join(s).to_string_lossy().into_owned();
    let base = |g: Generation| {
        vec![
            (gpu(KernelKind::Eie), Family::Gen1(g)),
            (gpu(KernelKind::Dense), Family::Dense),
            (gpu(KernelKind::Csr), Family::Csr),
        ]
    };
    vec![
        Source {
            dir: d("h100-bench-2026-11-27-before"),
            kernels: base(Generation::Atomics),
        },
        Source {
            dir: d("h100-bench-2026-11-27"),
            kernels: base(Generation::Partials),
        },
        Source {
            dir: d("h100-bench-2026-11-27-compaction"),
            kernels: base(Generation::Compaction),
        },
    ]
}

/// Folder of the lavapipe runs under docs/measurements.
pub const LAVAPIPE_RUNS: &str = "lavapipe-latency-2026-12-02";

/// The lavapipe runs under `measurements/LAVAPIPE_RUNS`: every subfolder holding a
/// `bench.json`, named `<kernel>-...` (`v2-...`: the second-generation column walk of
/// `517abbc`, its row walk at 32 lanes per row; `v3-...`: the third generation of `105d1be`,
/// its row walk at one lane per row with 8-bit entries), with its EIE column walk
/// (`gpu-eie/f32` at those commits), row walk, dense and CSR kernels, on the engine's
/// CPU-adapter schedule of those commits (32 workgroups, no input tiles).
///
/// See [`LAVAPIPE_RUNS`] and [`samples`].
pub fn lavapipe_sources(measurements: &Path) -> Vec<Source> {
    let root = measurements.join(LAVAPIPE_RUNS);
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("bench.json").is_file())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.into_iter()
        .filter_map(|d| {
            let name = d.file_name()?.to_string_lossy().into_owned();
            let target = crate::schedule::EIE_TARGET_WORKGROUPS_CPU;
            // v2's row walk had 32 lanes per row everywhere; v3's has one on CPU adapters.
            let (eie, lanes) = if name.starts_with("v2-") {
                (Family::V2 { target, tile: 1 }, 32)
            } else if name.starts_with("v3-") {
                (Family::Eie { target, tile: 1 }, 1)
            } else {
                return None;
            };
            Some(Source {
                dir: d.to_string_lossy().into_owned(),
                kernels: vec![
                    (gpu(KernelKind::Eie), eie),
                    (
                        gpu(KernelKind::EieRows),
                        Family::Rows {
                            tile: 1,
                            lanes,
                            wide: false,
                        },
                    ),
                    (gpu(KernelKind::Dense), Family::Dense),
                    (gpu(KernelKind::Csr), Family::Csr),
                ],
            })
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Reads the measured medians of `sources` and computes each one's work on the paper layer
/// it names, on a device of `profile`. A family measured in several folders (the dense and
/// CSR kernels of each H100 run) becomes one sample per layer and batch: the median of the
/// folders' medians, with their overall spread.
///
/// `examples/latency_fit.rs` calls it before [`fit`].
pub fn samples(sources: &[Source], profile: &DeviceProfile) -> Result<Vec<Sample>> {
    type Key = (String, String, usize);
    let mut measured: Vec<(Key, Family, f64, f64, f64)> = Vec::new();
    for s in sources {
        let path = Path::new(&s.dir).join("bench.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Parse {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let bad = |why: &str| Error::Parse {
            path: path.clone(),
            reason: why.to_string(),
        };
        for r in v["results"].as_array().ok_or_else(|| bad("no results"))? {
            let layer = r["name"]
                .as_str()
                .ok_or_else(|| bad("result without a name"))?;
            let batch = r["batch"]
                .as_u64()
                .ok_or_else(|| bad("result without a batch"))? as usize;
            for k in r["kernels"].as_array().ok_or_else(|| bad("no kernels"))? {
                let name = k["kernel"].as_str().unwrap_or_default();
                let Some((_, fam)) = s.kernels.iter().find(|(n, _)| n.to_string() == name) else {
                    continue;
                };
                let Some(t) = k["timings"]
                    .as_array()
                    .and_then(|ts| ts.iter().find(|t| t["metric"] == "gpu"))
                else {
                    continue;
                };
                let us = &t["us"];
                let (Some(med), Some(lo), Some(hi)) = (
                    us["median"].as_f64(),
                    us["min"].as_f64(),
                    us["max"].as_f64(),
                ) else {
                    return Err(bad("timing without median, min and max"));
                };
                measured.push(((fam.name(), layer.to_string(), batch), *fam, med, lo, hi));
            }
        }
    }
    let mut keys: Vec<(Key, Family)> = Vec::new();
    for (k, f, ..) in &measured {
        if !keys.iter().any(|(q, _)| q == k) {
            keys.push((k.clone(), *f));
        }
    }
    let mut out = Vec::new();
    let mut layers: Vec<(String, crate::format::EieLayer)> = Vec::new();
    for ((family, layer, batch), fam) in keys {
        let of: Vec<&(Key, Family, f64, f64, f64)> = measured
            .iter()
            .filter(|(k, ..)| k.0 == family && k.1 == layer && k.2 == batch)
            .collect();
        let med = median(of.iter().map(|m| m.2).collect());
        let lo = of.iter().map(|m| m.3).fold(f64::INFINITY, f64::min);
        let hi = of.iter().map(|m| m.4).fold(0.0, f64::max);
        let p = crate::paper::find(&layer)?;
        if !layers.iter().any(|(n, _)| *n == layer) {
            layers.push((layer.clone(), p.generate(64, crate::paper::DEFAULT_SEED)?));
        }
        let l = &layers
            .iter()
            .find(|(n, _)| *n == layer)
            .expect("just added")
            .1;
        let input = bench_input(l.cols(), p.act_density, batch);
        out.push(Sample {
            family,
            layer,
            batch,
            work: fam.work(l, &input, profile)?,
            measured_us: med,
            spread_us: (lo, hi),
        });
    }
    Ok(out)
}

/// The first input `eie bench` rotates through at `batch` (its plan's input).
///
/// See [`crate::paper::PaperLayer::input`]; `examples/latency_fit.rs` plans with it.
pub fn bench_input(cols: usize, density: f64, batch: usize) -> Vec<f32> {
    crate::synth::activations(
        cols * batch,
        density,
        crate::paper::DEFAULT_SEED.wrapping_add(batch as u64),
    )
}

/// How well a profile predicts a set of samples.
///
/// Returned by [`errors`]; part of a [`FitReport`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitError {
    /// Kernel family (or `all`).
    pub family: String,
    /// Samples.
    pub n: usize,
    /// Typical error: `exp(mean |ln(modelled / measured)|) − 1`, in %.
    pub mean_pct: f64,
    /// Largest error `exp(max |ln(modelled / measured)|) − 1`, in %.
    pub max_pct: f64,
    /// Bias: `exp(mean ln(modelled / measured)) − 1`, in % (positive: modelled slower).
    pub bias_pct: f64,
}

/// Prediction errors of `profile` on `samples`, per family and over all.
///
/// See [`FitError`].
pub fn errors(samples: &[Sample], profile: &DeviceProfile) -> Vec<FitError> {
    let mut fams: Vec<String> = Vec::new();
    for s in samples {
        if !fams.contains(&s.family) {
            fams.push(s.family.clone());
        }
    }
    let mut out: Vec<FitError> = fams
        .iter()
        .map(|f| {
            let of: Vec<&Sample> = samples.iter().filter(|s| &s.family == f).collect();
            error_of(f, &of, profile)
        })
        .collect();
    out.push(error_of(
        "all",
        &samples.iter().collect::<Vec<_>>(),
        profile,
    ));
    out
}

fn error_of(family: &str, samples: &[&Sample], profile: &DeviceProfile) -> FitError {
    let logs: Vec<f64> = samples
        .iter()
        .map(|s| (profile.modelled_us(&s.work) / s.measured_us).ln())
        .collect();
    let n = logs.len().max(1) as f64;
    let pct = |v: f64| 100.0 * (v.exp() - 1.0);
    FitError {
        family: family.to_string(),
        n: logs.len(),
        mean_pct: pct(logs.iter().map(|l| l.abs()).sum::<f64>() / n),
        max_pct: pct(logs.iter().map(|l| l.abs()).fold(0.0, f64::max)),
        bias_pct: pct(logs.iter().sum::<f64>() / n),
    }
}

/// Sum of squared log errors of the constants `c` on precomputed terms.
fn cost(terms: &[([f64; 5], f64)], c: &[f64; 5]) -> f64 {
    terms
        .iter()
        .map(|(t, y)| (combine(t, c).max(f64::MIN_POSITIVE).ln() - y.ln()).powi(2))
        .sum()
}

/// Solves the 5×5 system `a x = b` (Gaussian elimination with partial pivoting); `None` when
/// singular.
fn solve5(mut a: [[f64; 5]; 5], mut b: [f64; 5]) -> Option<[f64; 5]> {
    for col in 0..5 {
        let piv = (col..5).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[piv][col].abs() < 1e-300 {
            return None;
        }
        a.swap(col, piv);
        b.swap(col, piv);
        let pivot_row = a[col];
        for r in col + 1..5 {
            let f = a[r][col] / pivot_row[col];
            for (x, p) in a[r].iter_mut().zip(pivot_row).skip(col) {
                *x -= f * p;
            }
            b[r] -= f * b[col];
        }
    }
    let mut x = [0.0; 5];
    for r in (0..5).rev() {
        let s: f64 = (r + 1..5).map(|k| a[r][k] * x[k]).sum();
        x[r] = (b[r] - s) / a[r][r];
    }
    Some(x)
}

/// Levenberg–Marquardt on θ = ln c from `c0`, moving only the constants marked `free`, each
/// within `[lo, hi]` (bounds on θ).
fn lm(
    terms: &[([f64; 5], f64)],
    c0: [f64; 5],
    free: [bool; 5],
    lo: [f64; 5],
    hi: [f64; 5],
) -> ([f64; 5], f64) {
    let mut th: [f64; 5] = std::array::from_fn(|k| c0[k].ln().clamp(lo[k], hi[k]));
    let mut c = th.map(f64::exp);
    let mut f = cost(terms, &c);
    let mut lambda = 1e-3;
    for _ in 0..500 {
        let mut jtj = [[0.0; 5]; 5];
        let mut jtr = [0.0; 5];
        for (t, y) in terms {
            let m = combine(t, &c);
            if m <= 0.0 {
                continue;
            }
            let r = m.ln() - y.ln();
            // d ln m / d ln c_k: the dispatch term always, then whichever of paths and bytes
            // is the larger.
            let paths = t[1] * c[1] + t[2] * c[2] + t[3] * c[3];
            let bound = paths >= t[4] * c[4];
            let j: [f64; 5] = std::array::from_fn(|k| {
                let live = free[k] && (k == 0 || (k == 4) != bound);
                if live {
                    c[k] * t[k] / m
                } else {
                    0.0
                }
            });
            for a in 0..5 {
                jtr[a] += j[a] * r;
                for b in 0..5 {
                    jtj[a][b] += j[a] * j[b];
                }
            }
        }
        let mut improved = false;
        while lambda < 1e12 {
            let mut a = jtj;
            for (k, row) in a.iter_mut().enumerate() {
                row[k] += lambda * jtj[k][k] + 1e-12;
            }
            let Some(step) = solve5(a, jtr.map(|v| -v)) else {
                lambda *= 10.0;
                continue;
            };
            let nth: [f64; 5] = std::array::from_fn(|k| (th[k] + step[k]).clamp(lo[k], hi[k]));
            let nc = nth.map(f64::exp);
            let nf = cost(terms, &nc);
            if nf < f {
                let gain = f - nf;
                th = nth;
                c = nc;
                f = nf;
                lambda = (lambda / 3.0).max(1e-12);
                improved = gain > 1e-13 * f.max(1e-300);
                break;
            }
            lambda *= 4.0;
        }
        if !improved {
            break;
        }
    }
    (c, f)
}

/// How far (a factor e^12, about 1.6 × 10^5) a fitted constant may move from its starting
/// value either way. A constant the samples cannot resolve (its term never matters) ends at
/// the lower bound; [`FitReport::unresolved`] names it.
pub const FIT_RANGE: f64 = 12.0;

/// The constants of `shape` (its compute units, residency and lanes kept) that best fit
/// `samples` in log space, moving only those marked `free` (the others keep `shape`'s
/// values), each within [`FIT_RANGE`] of `shape`'s: Levenberg–Marquardt from the shape's own
/// constants and from each of them scaled by 1/30 and 30, the best result kept.
pub fn fit_profile(
    samples: &[Sample],
    shape: &DeviceProfile,
    free: [bool; 5],
) -> Result<DeviceProfile> {
    if samples.len() < 5 {
        return Err(Error::InvalidArgument(format!(
            "{} samples cannot fit five constants",
            samples.len()
        )));
    }
    if let Some(s) = samples
        .iter()
        .find(|s| !(s.measured_us.is_finite() && s.measured_us > 0.0))
    {
        return Err(Error::InvalidArgument(format!(
            "{} on {} at batch {}: measured {} µs",
            s.family, s.layer, s.batch, s.measured_us
        )));
    }
    let t: Vec<([f64; 5], f64)> = samples
        .iter()
        .map(|s| (terms(&s.work, shape), s.measured_us))
        .collect();
    let c0 = shape.constants();
    let lo = c0.map(|c| c.ln() - FIT_RANGE);
    let hi = c0.map(|c| c.ln() + FIT_RANGE);
    let mut starts = vec![c0];
    for k in (0..5).filter(|&k| free[k]) {
        for f in [1.0 / 30.0, 30.0] {
            let mut c = c0;
            c[k] *= f;
            starts.push(c);
        }
    }
    let (mut c, _) = starts
        .into_iter()
        .map(|c| lm(&t, c, free, lo, hi))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .expect("at least one start");
    // When no sample is bandwidth-bound the bandwidth is not determined (any higher value fits
    // as well): take the lowest that keeps every sample bound by its paths.
    let paths = |t: &[f64; 5]| t[1] * c[1] + t[2] * c[2] + t[3] * c[3];
    if free[4] && t.iter().all(|(t, _)| paths(t) > t[4] * c[4]) {
        if let Some(k) = t
            .iter()
            .filter(|(t, _)| t[4] > 0.0)
            .map(|(t, _)| paths(t) / t[4])
            .min_by(f64::total_cmp)
        {
            c[4] = k;
        }
    }
    Ok(shape.with_constants(c))
}

/// A fit and its checks.
///
/// Returned by [`fit`]; `examples/latency_fit.rs` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    /// Device profile name.
    pub device: String,
    /// The fitted constants: µs per dispatch, per round trip, per barrier, ns per lane step,
    /// GB/s.
    pub dispatch_us: f64,
    /// See `dispatch_us`.
    pub round_trip_us: f64,
    /// See `dispatch_us`.
    pub barrier_us: f64,
    /// See `dispatch_us`.
    pub step_ns: f64,
    /// See `dispatch_us`.
    pub bandwidth_gb_s: f64,
    /// Errors of the fit on its own samples, per family and over all.
    pub fit: Vec<FitError>,
    /// Per family: the error on it of the fit made without it.
    pub held_out: Vec<FitError>,
    /// Fitted constants the samples do not resolve (left at the lower end of their range:
    /// their terms never decide a sample's time).
    pub unresolved: Vec<String>,
}

/// Which constants a device's fit moves: all but the dispatch cost, which is measured alone
/// (the samples hold too few layers with a second dispatch to separate it from the paths):
/// on the H100 2.3 µs per dependent dispatch in a pass (a chain of 128 tiny dispatches, the
/// device README); on lavapipe 64 µs, the fastest kernel's median time on a one-workgroup
/// layer (`lavapipe-latency-2026-12-02/dispatch`: an upper bound).
///
/// See [`start_constants`] and [`fit`].
pub const FREE: [bool; 5] = [false, true, true, true, true];

/// Where a device's fit starts (µs per dispatch, per round trip, per barrier, per lane step,
/// per byte), the measured dispatch cost included; the fit is the same whatever constants
/// the profile in the code carries.
///
/// See [`FREE`] and [`fit`].
pub fn start_constants(shape: &DeviceProfile) -> [f64; 5] {
    if shape.cpu_adapter {
        [64.0, 1.0, 5.0, 0.02, 1e-3 / 5.0]
    } else {
        [2.3, 0.5, 0.05, 0.002, 1e-3 / 2000.0]
    }
}

/// Fits `shape`'s constants (from [`start_constants`], moving those [`FREE`]) to `samples`
/// and checks every family held out.
pub fn fit(samples: &[Sample], shape: &DeviceProfile) -> Result<(DeviceProfile, FitReport)> {
    let free = FREE;
    let start = shape.with_constants(start_constants(shape));
    let shape = &start;
    let p = fit_profile(samples, shape, free)?;
    let names = [
        "dispatch",
        "round trip",
        "barrier",
        "lane step",
        "bandwidth",
    ];
    let floor = shape.constants().map(|c| c * (-FIT_RANGE + 0.01).exp());
    let unresolved = (0..5)
        .filter(|&k| free[k] && p.constants()[k] <= floor[k])
        .map(|k| names[k].to_string())
        .collect();
    let mut held_out = Vec::new();
    let mut fams: Vec<&str> = Vec::new();
    for s in samples {
        if !fams.contains(&s.family.as_str()) {
            fams.push(&s.family);
        }
    }
    for f in fams {
        let rest: Vec<Sample> = samples.iter().filter(|s| s.family != f).cloned().collect();
        let of: Vec<&Sample> = samples.iter().filter(|s| s.family == f).collect();
        let q = fit_profile(&rest, shape, free)?;
        held_out.push(error_of(f, &of, &q));
    }
    Ok((
        p,
        FitReport {
            device: shape.name.to_string(),
            dispatch_us: p.dispatch_us,
            round_trip_us: p.round_trip_us,
            barrier_us: p.barrier_us,
            step_ns: p.step_ns,
            bandwidth_gb_s: p.bandwidth_gb_s,
            fit: errors(samples, &p),
            held_out,
            unresolved,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::cost::latency::{DispatchWork, WorkPath};

    #[test]
    fn recovers_constants_from_exact_data() {
        // The dispatch cost is not fitted: the truth has the starting one.
        let truth = DeviceProfile::H100.with_constants([2.3, 0.7, 0.02, 0.004, 1.0 / 2.5e6]);
        let mut samples = Vec::new();
        for i in 0..40u64 {
            let path = WorkPath {
                round_trips: (i % 7 + 1) as f64 * 3.0,
                barriers: (i % 5) as f64 * 40.0,
                lane_steps: ((i * 37) % 300) as f64,
                workgroup_steps: 256.0 * ((i * 37) % 300) as f64,
            };
            let work = LatencyWork {
                dispatches: (0..1 + i % 3)
                    .map(|_| DispatchWork::uniform(100 + 500 * (i % 4), path))
                    .collect(),
                // Every third sample bandwidth-bound.
                bytes: if i % 3 == 0 {
                    100_000_000 * (1 + i % 4)
                } else {
                    (i * i * 13_000) % 7_000_000
                },
            };
            let y = truth.modelled_us(&work);
            samples.push(Sample {
                family: format!("f{}", i % 4),
                layer: "x".into(),
                batch: 1,
                work,
                measured_us: y,
                spread_us: (y, y),
            });
        }
        let (p, report) = fit(&samples, &truth).unwrap();
        for (a, b) in p.constants().iter().zip(truth.constants()) {
            assert!((a / b - 1.0).abs() < 1e-3, "{a} vs {b}");
        }
        assert!(report.fit.iter().all(|e| e.max_pct < 0.1));
        assert!(report.held_out.iter().all(|e| e.max_pct < 1.0));
        assert!(fit_profile(&samples[..3], &DeviceProfile::H100, [true; 5]).is_err());
        // A fixed constant keeps its value.
        let q = fit_profile(
            &samples,
            &DeviceProfile::H100,
            [false, true, true, true, true],
        )
        .unwrap();
        assert_eq!(q.dispatch_us, DeviceProfile::H100.dispatch_us);
    }
}
