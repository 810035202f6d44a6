//! Benchmark reports: a markdown table per batch size and a CSV with one row per measurement.

use super::{speedup, Metric, WorkloadResult};
use std::collections::BTreeSet;
use std::fmt::Write;

/// Formats microseconds with three significant digits.
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
fn columns(results: &[&WorkloadResult]) -> Vec<(String, Metric)> {
    let mut cols: Vec<(String, Metric)> = Vec::new();
    for r in results {
        for k in &r.kernels {
            for t in &k.timings {
                let c = (k.kernel.clone(), t.metric);
                if !cols.contains(&c) {
                    cols.push(c);
                }
            }
            if k.timings.is_empty() && !cols.iter().any(|(n, _)| n == &k.kernel) {
                cols.push((k.kernel.clone(), Metric::Wall));
            }
        }
    }
    cols
}

/// The kernel pairs whose speed-ups the summary states: (faster candidate, baseline).
const SPEEDUPS: [(&str, &str); 6] = [
    ("cpu-eie/f32", "cpu-dense/f32"),
    ("cpu-eie/f32", "cpu-csr/f32"),
    ("gpu-eie/f32", "gpu-dense/f32"),
    ("gpu-eie/f32", "gpu-csr/f32"),
    ("gpu-eie/fixed16", "gpu-dense/f32"),
    ("gpu-eie/f16", "gpu-dense/f32"),
];

/// A markdown report: devices, then per batch size a table of µs per call (median, with min–max),
/// reference columns (simulated ASIC, the paper's figures) and geometric-mean speed-ups.
pub fn markdown(results: &[WorkloadResult]) -> String {
    let mut s = String::new();
    let devices: BTreeSet<(String, String)> = results
        .iter()
        .flat_map(|r| {
            r.kernels
                .iter()
                .map(|k| (k.kernel.clone(), k.device.clone()))
        })
        .collect();
    let mut by_device: Vec<(String, Vec<String>)> = Vec::new();
    for (k, d) in devices {
        match by_device.iter_mut().find(|(dd, _)| *dd == d) {
            Some((_, ks)) => ks.push(k),
            None => by_device.push((d, vec![k])),
        }
    }
    for (d, ks) in &by_device {
        let _ = writeln!(s, "- **{d}**: {}", ks.join(", "));
    }
    let batches: BTreeSet<usize> = results.iter().map(|r| r.batch).collect();
    for b in batches {
        let rows: Vec<&WorkloadResult> = results.iter().filter(|r| r.batch == b).collect();
        let cols = columns(&rows);
        let has_sim = rows.iter().any(|r| r.sim_us.is_some());
        let has_paper = b == 1 && rows.iter().any(|r| r.paper.is_some());
        let _ = writeln!(
            s,
            "\n### Batch {b}: µs per call, median (min–max); `(gpu)` = device time from timestamps, `(wall)` = host wall time\n"
        );
        let mut header = vec!["layer".to_string()];
        header.extend(cols.iter().map(|(k, m)| match m {
            Metric::Wall if k.starts_with("cpu") => k.clone(),
            Metric::Wall => format!("{k} (wall)"),
            Metric::Gpu => format!("{k} (gpu)"),
        }));
        if has_sim {
            header.push("sim. ASIC".into());
        }
        if has_paper {
            header.extend(
                [
                    "paper EIE",
                    "paper CPU dense",
                    "paper CPU sparse",
                    "paper GPU dense",
                    "paper GPU sparse",
                ]
                .map(String::from),
            );
        }
        let _ = writeln!(s, "| {} |", header.join(" | "));
        let _ = writeln!(s, "|{}", "---|".repeat(header.len()));
        for r in &rows {
            let mut cells = vec![r.name.clone()];
            for (k, m) in &cols {
                let cell = match r.kernel(k) {
                    Some(kr) => match (&kr.failure, kr.timings.iter().find(|t| t.metric == *m)) {
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
            if has_sim {
                cells.push(r.sim_us.map_or("–".into(), fmt_us));
            }
            if has_paper {
                match &r.paper {
                    Some(p) => cells.extend(
                        [
                            p.eie_actual_us,
                            p.cpu_dense_us,
                            p.cpu_sparse_us,
                            p.gpu_dense_us,
                            p.gpu_sparse_us,
                        ]
                        .map(fmt_us),
                    ),
                    None => cells.extend(std::iter::repeat_n("–".to_string(), 5)),
                }
            }
            let _ = writeln!(s, "| {} |", cells.join(" | "));
        }
        let mut lines = Vec::new();
        for (fast, slow) in SPEEDUPS {
            if let Some(x) = speedup(results, b, fast, slow) {
                lines.push(format!("{fast} over {slow}: **{x:.2}×**"));
            }
        }
        if !lines.is_empty() {
            let _ = writeln!(
                s,
                "\nSpeed-up, geometric mean over the layers above (ratio of medians): {}",
                lines.join("; ")
            );
        }
    }
    s
}

/// A CSV with one row per (workload, batch, kernel, metric).
pub fn csv(results: &[WorkloadResult]) -> String {
    let mut s = String::from(
        "workload,batch,kernel,device,metric,median_us,min_us,max_us,samples,max_rel_error,failure\n",
    );
    let quote = |x: &str| format!("\"{}\"", x.replace('"', "\"\""));
    for r in results {
        for k in &r.kernels {
            let err = k
                .error
                .map_or(String::new(), |e| format!("{:.3e}", e.max_rel));
            let fail = k.failure.as_deref().map(quote).unwrap_or_default();
            if k.timings.is_empty() {
                let _ = writeln!(
                    s,
                    "{},{},{},{},,,,,,{err},{fail}",
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
                    "{},{},{},{},{metric},{:.3},{:.3},{:.3},{},{err},{fail}",
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
