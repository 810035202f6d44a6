//! Benchmark reports: a markdown table per batch size and a CSV with one row per measurement.
//!
//! [`markdown`] and [`csv`] take the results of [`super::run()`].

use super::{speedup, Metric, WorkloadResult};
use crate::kernel_id::{KernelId, KernelKind, Place};
use crate::precision::Precision;
use std::collections::BTreeSet;
use std::fmt::Write;

/// Formats microseconds with three significant digits.
///
/// Used by [`markdown`] and [`csv`].
pub fn fmt_us(us: f64) -> String {
    if us >= 100.0 {
        format!("{us:.0}")
    } else if us >= 10.0 {
        format!("{us:.1}")
    } else {
        format!("{us:.2}")
    }
}

/// The (kernel, metric) columns present in `results`, in the order first measured.
fn columns(results: &[&WorkloadResult]) -> Vec<(KernelId, Metric)> {
    let mut cols: Vec<(KernelId, Metric)> = Vec::new();
    for r in results {
        for k in &r.kernels {
            for t in &k.timings {
                let c = (k.kernel, t.metric);
                if !cols.contains(&c) {
                    cols.push(c);
                }
            }
            if k.timings.is_empty() && !cols.iter().any(|(n, _)| *n == k.kernel) {
                cols.push((k.kernel, Metric::Wall));
            }
        }
    }
    cols
}

/// The kernel pairs whose speed-ups the summary states: (faster candidate, baseline).
const SPEEDUPS: [(KernelId, KernelId); 8] = {
    use KernelKind::{Csr, Dense, Eie, EieColumns, EieRows};
    use Precision::{Fixed16, F16, F32};
    let (cpu, gpu) = (KernelId::cpu, KernelId::gpu);
    [
        (cpu(Eie, F32), cpu(Dense, F32)),
        (cpu(Eie, F32), cpu(Csr, F32)),
        (gpu(Eie, F32), gpu(Dense, F32)),
        (gpu(Eie, F32), gpu(Csr, F32)),
        (gpu(EieColumns, F32), gpu(Csr, F32)),
        (gpu(EieRows, F32), gpu(Csr, F32)),
        (gpu(Eie, Fixed16), gpu(Dense, F32)),
        (gpu(Eie, F16), gpu(Dense, F32)),
    ]
};

/// `gpu-eie/f32`, the kernel compared with the ASIC and with CUDA's libraries.
const GPU_EIE_F32: KernelId = KernelId::gpu(KernelKind::Eie, Precision::F32);

/// A reference column: its header and how to read it off a result.
type Reference = (&'static str, fn(&WorkloadResult) -> Option<f64>);

fn cuda(r: &WorkloadResult, key: &str) -> Option<f64> {
    r.cuda.as_ref()?.get(key)?.as_f64()
}

/// Reference columns beside the CPU kernels.
const CPU_REFERENCES: [Reference; 2] = [
    ("paper: i7 MKL dense", |r| {
        r.paper.as_ref().map(|p| p.cpu_dense_us)
    }),
    ("paper: i7 MKL sparse", |r| {
        r.paper.as_ref().map(|p| p.cpu_sparse_us)
    }),
];

/// Reference columns beside the GPU kernels.
const GPU_REFERENCES: [Reference; 7] = [
    ("cuBLAS f32 (graph)", |r| cuda(r, "cublas_f32_graph_us")),
    ("cuSPARSE CSR f32 (graph)", |r| {
        cuda(r, "cusparse_csr_f32_graph_us")
    }),
    ("cuBLAS f16", |r| cuda(r, "cublas_f16_us")),
    ("sim. ASIC", |r| r.sim_us),
    ("paper: EIE", |r| r.paper.as_ref().map(|p| p.eie_actual_us)),
    ("paper: Titan X cuBLAS", |r| {
        r.paper.as_ref().map(|p| p.gpu_dense_us)
    }),
    ("paper: Titan X cuSPARSE", |r| {
        r.paper.as_ref().map(|p| p.gpu_sparse_us)
    }),
];

/// One table: a row per workload, a column per (kernel, metric) whose kernel runs on `place`,
/// then the reference columns that have any value.
fn table(s: &mut String, rows: &[&WorkloadResult], place: Place, refs: &[Reference]) {
    let cols: Vec<(KernelId, Metric)> = columns(rows)
        .into_iter()
        .filter(|(k, _)| k.place == place)
        .collect();
    if cols.is_empty() {
        return;
    }
    let refs: Vec<&Reference> = refs
        .iter()
        .filter(|(_, f)| rows.iter().any(|r| f(r).is_some()))
        .collect();
    let mut header = vec!["layer".to_string()];
    header.extend(cols.iter().map(|(k, m)| match m {
        Metric::Wall if place == Place::Cpu => k.to_string(),
        Metric::Wall => format!("{k} (wall)"),
        Metric::Gpu => format!("{k} (gpu)"),
    }));
    header.extend(refs.iter().map(|(h, _)| h.to_string()));
    let _ = writeln!(s, "| {} |", header.join(" | "));
    let _ = writeln!(s, "|{}", "---|".repeat(header.len()));
    for r in rows {
        let mut cells = vec![r.name.clone()];
        for (k, m) in &cols {
            let cell = match r.kernel(*k) {
                Some(kr) => match (&kr.failure, kr.timings.iter().find(|t| t.metric == *m)) {
                    // One sample (`--quick`) has no spread to show.
                    (_, Some(t)) if t.us.n == 1 => fmt_us(t.us.median),
                    (_, Some(t)) => format!(
                        "{} ({}–{})",
                        fmt_us(t.us.median),
                        fmt_us(t.us.min),
                        fmt_us(t.us.max)
                    ),
                    (Some(f), None) => format!("FAILED: {f}"),
                    (None, None) => "–".into(),
                },
                None => "–".into(),
            };
            cells.push(cell);
        }
        cells.extend(refs.iter().map(|(_, f)| f(r).map_or("–".into(), fmt_us)));
        let _ = writeln!(s, "| {} |", cells.join(" | "));
    }
}

/// A markdown report: the devices, then per batch size a table of the CPU kernels and one of the
/// GPU kernels in µs per call (median, with min–max), with reference columns (the paper's
/// figures, cuBLAS / cuSPARSE where supplied, the simulated ASIC) and geometric-mean speed-ups.
///
/// The results come from [`super::run()`].
pub fn markdown(results: &[WorkloadResult]) -> String {
    let mut s = String::new();
    let mut by_device: Vec<(String, Vec<String>)> = Vec::new();
    for r in results {
        for k in &r.kernels {
            let name = k.kernel.to_string();
            match by_device.iter_mut().find(|(d, _)| *d == k.device) {
                Some((_, ks)) if ks.contains(&name) => {}
                Some((_, ks)) => ks.push(name),
                None => by_device.push((k.device.clone(), vec![name])),
            }
        }
    }
    for (d, ks) in &by_device {
        let _ = writeln!(s, "- **{d}**: {}", ks.join(", "));
    }
    let mut libraries: Vec<(KernelId, &str)> = Vec::new();
    for r in results {
        for k in &r.kernels {
            if let Some(l) = &k.library {
                if !libraries.iter().any(|(n, _)| *n == k.kernel) {
                    libraries.push((k.kernel, l));
                }
            }
        }
    }
    for (k, l) in libraries {
        let _ = writeln!(s, "  - `{k}`: {l}");
    }
    let batches: BTreeSet<usize> = results.iter().map(|r| r.batch).collect();
    for b in batches {
        let rows: Vec<&WorkloadResult> = results.iter().filter(|r| r.batch == b).collect();
        let _ = writeln!(
            s,
            "\n### Batch {b}: µs per call, median (min–max)\n\n`(gpu)`: device time from timestamp queries, K runs in one submission divided by K; `(wall)`: one call on the host, upload to read-back.\n"
        );
        table(&mut s, &rows, Place::Cpu, &CPU_REFERENCES);
        let _ = writeln!(s);
        table(&mut s, &rows, Place::Gpu, &GPU_REFERENCES);
        let mut lines = Vec::new();
        for (fast, slow) in SPEEDUPS {
            if let Some(x) = speedup(results, b, fast, slow) {
                lines.push(format!("{fast} over {slow}: **{x:.2}×**"));
            }
        }
        for (key, label) in [
            ("cublas_f32_graph_us", "cuBLAS f32 (graph)"),
            ("cusparse_csr_f32_graph_us", "cuSPARSE CSR f32 (graph)"),
        ] {
            for eie in [GPU_EIE_F32, KernelId::gpu(KernelKind::Eie, Precision::F16)] {
                let x = super::geomean(
                    rows.iter()
                        .filter_map(|r| Some(cuda(r, key)? / r.median_us(eie)?)),
                );
                if let Some(x) = x {
                    lines.push(format!("{eie} over {label}: **{x:.2}×**"));
                }
            }
        }
        let slower: Vec<String> = rows
            .iter()
            .filter_map(|r| {
                let eie = r.median_us(GPU_EIE_F32)?;
                let asic = r.paper.as_ref()?.eie_actual_us;
                (eie > asic).then(|| format!("{} ({} vs {} µs)", r.name, fmt_us(eie), fmt_us(asic)))
            })
            .collect();
        if rows
            .iter()
            .any(|r| r.paper.is_some() && r.median_us(GPU_EIE_F32).is_some())
        {
            lines.push(if slower.is_empty() {
                format!("{GPU_EIE_F32} is at least as fast as the EIE ASIC on every layer")
            } else {
                format!(
                    "{GPU_EIE_F32} slower than the EIE ASIC on: {}",
                    slower.join(", ")
                )
            });
        }
        if !lines.is_empty() {
            let _ = writeln!(
                s,
                "\nSpeed-up, geometric mean over the layers above (ratio of medians; device time where measured): {}",
                lines.join("; ")
            );
        }
    }
    s
}

/// A CSV with one row per (workload, batch, kernel, metric).
///
/// The results come from [`super::run()`].
pub fn csv(results: &[WorkloadResult]) -> String {
    let mut s = String::from(
        "workload,batch,kernel,device,library,metric,median_us,min_us,max_us,samples,max_rel_error,failure\n",
    );
    let quote = |x: &str| format!("\"{}\"", x.replace('"', "\"\""));
    for r in results {
        for k in &r.kernels {
            let err = k
                .error
                .map_or(String::new(), |e| format!("{:.3e}", e.max_rel));
            let fail = k.failure.as_deref().map(quote).unwrap_or_default();
            let lib = quote(k.library.as_deref().unwrap_or(""));
            if k.timings.is_empty() {
                let _ = writeln!(
                    s,
                    "{},{},{},{},{lib},,,,,,{err},{fail}",
                    quote(&r.name),
                    r.batch,
                    k.kernel,
                    quote(&k.device)
                );
            }
            for t in &k.timings {
                let metric = match t.metric {
                    Metric::Wall => "wall",
                    Metric::Gpu => "gpu",
                };
                let _ = writeln!(
                    s,
                    "{},{},{},{},{lib},{metric},{:.3},{:.3},{:.3},{},{err},{fail}",
                    quote(&r.name),
                    r.batch,
                    k.kernel,
                    quote(&k.device),
                    t.us.median,
                    t.us.min,
                    t.us.max,
                    t.us.n
                );
            }
        }
    }
    s
}
