//! Fits the latency model's device profiles (`eie plan --device`) to measured runs and prints
//! the fit's table (BENCHMARKS.md "Latency model"):
//!
//! ```text
//! cargo run --release --example latency_fit -- [--measurements docs/measurements]
//!     [--out docs/measurements/latency-fit.json]
//! ```
//!
//! H100: the recorded runs of 2026-11-27 (three first-generation EIE kernels, dense, CSR;
//! nine layers, batch 1 and 64). lavapipe: the runs under `lavapipe-latency-2026-12-02/`
//! (`eie bench --quick --gpu-only --no-chain --samples 5`, repeated; see its README). For each
//! device it fits the five constants in log space, prints the error per kernel family and the
//! error on each family of the fit made without it, and writes everything (constants,
//! errors, every sample's work and times) to `--out`, which `tests/plan.rs` checks the fit
//! against. Last, what the h100 profile predicts for today's kernels on the nine layers, beside
//! the CSR kernel and cuBLAS as measured on the H100 (`h100-bench-2026-11-27/`).

use eie::kernel_id::{KernelId, KernelKind};
use eie::schedule::cost::fit::{self, FitReport, Sample};
use eie::schedule::cost::latency::DeviceProfile;
use eie::Precision;
use std::path::PathBuf;

fn main() -> eie::Result<()> {
    let mut measurements = PathBuf::from("docs/measurements");
    let mut out = PathBuf::from("docs/measurements/latency-fit.json");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--measurements" => measurements = args.next().map(PathBuf::from).unwrap_or_default(),
            "--out" => out = args.next().map(PathBuf::from).unwrap_or_default(),
            other => {
                return Err(eie::Error::InvalidArgument(format!(
                    "unknown argument `{other}` (expected --measurements DIR, --out FILE)"
                )))
            }
        }
    }
    let mut doc = serde_json::Map::new();
    let mut h100 = DeviceProfile::H100;
    for (shape, sources) in [
        (DeviceProfile::H100, fit::h100_sources(&measurements)),
        (
            DeviceProfile::LAVAPIPE,
            fit::lavapipe_sources(&measurements),
        ),
    ] {
        eprintln!("{}: computing the work of every sample", shape.name);
        let samples = fit::samples(&sources, &shape)?;
        eprintln!("{}: fitting {} samples", shape.name, samples.len());
        let (profile, report) = fit::fit(&samples, &shape)?;
        print_report(&report, &samples, &profile);
        if !shape.cpu_adapter {
            h100 = profile;
        }
        doc.insert(
            shape.name.to_string(),
            serde_json::json!({ "report": report, "samples": samples }),
        );
    }
    predictions(&measurements, &h100)?;
    let text = serde_json::to_string_pretty(&doc).expect("plain data serialises");
    std::fs::write(&out, text + "\n").map_err(|e| eie::Error::io(&out, e))?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

fn print_report(r: &FitReport, samples: &[Sample], p: &DeviceProfile) {
    println!(
        "\n### {}: {} samples\n\nFitted (dispatch measured alone): dispatch {:.3} µs, round trip {:.4} µs, barrier {:.4} µs, \
         lane step {:.3} ns, bandwidth {:.3} GB/s ({} compute units × {} resident workgroups, \
         {} lanes per unit).\n",
        r.device,
        samples.len(),
        r.dispatch_us,
        r.round_trip_us,
        r.barrier_us,
        r.step_ns,
        r.bandwidth_gb_s,
        p.compute_units,
        p.workgroups_per_cu,
        p.lanes_per_cu
    );
    if !r.unresolved.is_empty() {
        println!(
            "Not resolved by these samples (left at the low end of their range): {}.\n",
            r.unresolved.join(", ")
        );
    }
    println!("| family | samples | fit: typical error | fit: largest | fit: bias | held out: typical error | held out: largest | held out: bias |");
    println!("|---|---|---|---|---|---|---|---|");
    for e in &r.fit {
        let h = r.held_out.iter().find(|h| h.family == e.family);
        let cell = |v: Option<f64>| v.map_or("".to_string(), |v| format!("{v:.0} %"));
        println!(
            "| {} | {} | {:.0} % | {:.0} % | {:+.0} % | {} | {} | {} |",
            e.family,
            e.n,
            e.mean_pct,
            e.max_pct,
            e.bias_pct,
            cell(h.map(|h| h.mean_pct)),
            cell(h.map(|h| h.max_pct)),
            h.map_or("".to_string(), |h| format!("{:+.0} %", h.bias_pct)),
        );
    }
    println!("\n| family | layer | batch | measured µs | modelled µs |\n|---|---|---|---|---|");
    for s in samples {
        println!(
            "| {} | {} | {} | {:.1} | {:.1} |",
            s.family,
            s.layer,
            s.batch,
            s.measured_us,
            p.modelled_us(&s.work)
        );
    }
}

/// Geometric mean.
fn geomean(v: &[f64]) -> f64 {
    (v.iter().map(|x| x.ln()).sum::<f64>() / v.len().max(1) as f64).exp()
}

/// Today's kernels modelled on the fitted h100 profile `p` beside the H100's measured CSR
/// kernel and cuBLAS (in a CUDA graph) at batch 1 and 64.
fn predictions(measurements: &std::path::Path, p: &DeviceProfile) -> eie::Result<()> {
    let dir = measurements.join("h100-bench-2026-11-27");
    let path = dir.join("cuda.jsonl");
    let cuda = std::fs::read_to_string(&path).map_err(|e| eie::Error::io(&path, e))?;
    let cuda: Vec<serde_json::Value> = cuda
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let path = dir.join("bench.json");
    let bench = std::fs::read_to_string(&path).map_err(|e| eie::Error::io(&path, e))?;
    let bench: serde_json::Value = serde_json::from_str(&bench).map_err(|e| eie::Error::Parse {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let csr = KernelId::gpu(KernelKind::Csr, Precision::F32);
    let measured_csr = |layer: &str, batch: usize| -> Option<f64> {
        bench["results"].as_array()?.iter().find_map(|r| {
            if r["name"] != layer || r["batch"] != batch {
                return None;
            }
            r["kernels"].as_array()?.iter().find_map(|k| {
                (k["kernel"] == csr.to_string().as_str()).then(|| {
                    k["timings"]
                        .as_array()?
                        .iter()
                        .find_map(|t| (t["metric"] == "gpu").then(|| t["us"]["median"].as_f64())?)
                })?
            })
        })
    };
    for batch in [1usize, 64] {
        println!(
            "\n### Today's kernels on the h100 profile, batch {batch} (µs)\n\n\
             | layer | gpu-eie/f32 modelled | of which round trips / barriers / lane steps | dispatches | second generation modelled | gpu-eie-rows/f32 modelled | gpu-csr/f32 modelled | gpu-csr/f32 measured | cuBLAS f32 (graph) measured | eie ÷ csr (modelled) | cuBLAS ÷ eie |\n\
             |---|---|---|---|---|---|---|---|---|---|---|"
        );
        let (mut eies, mut cublas, mut faster_than_csr) = (Vec::new(), Vec::new(), 0);
        for l in &eie::paper::PAPER_LAYERS {
            let model = l.model(64, eie::paper::DEFAULT_SEED)?;
            let input = fit::bench_input(l.inputs, l.act_density, batch);
            let costs = eie::schedule::cost::model_costs_on(
                &model,
                &input,
                eie::schedule::PePlan::Auto,
                p,
            )?;
            let get = |k: KernelId| {
                let name = k.to_string();
                costs.iter().find(|c| c.kernel == name).expect("planned")
            };
            let (e, r, c) = (
                get(KernelId::gpu(KernelKind::Eie, Precision::F32)),
                get(KernelId::gpu(KernelKind::EieRows, Precision::F32)),
                get(csr),
            );
            let (eu, ru, cu) = (
                e.modelled_us.unwrap_or(f64::NAN),
                r.modelled_us.unwrap_or(f64::NAN),
                c.modelled_us.unwrap_or(f64::NAN),
            );
            let b = p.breakdown(&e.work);
            let v2 = p.modelled_us(
                &eie::schedule::cost::history::eie_v2(
                    &model.layers()[0],
                    &input,
                    eie::Precision::F32,
                    eie::schedule::EIE_TARGET_WORKGROUPS,
                    eie::schedule::EIE_BATCH_TILE,
                )?
                .work,
            );
            let cb = cuda
                .iter()
                .find(|v| v["layer"] == l.name && v["batch"] == batch)
                .and_then(|v| v["cublas_f32_graph_us"].as_f64());
            eies.push(eu);
            if let Some(cb) = cb {
                cublas.push(cb);
            }
            if eu < cu {
                faster_than_csr += 1;
            }
            let cell = |v: Option<f64>| v.map_or("".to_string(), |v| format!("{v:.1}"));
            println!(
                "| {} | {eu:.1} | {:.1} / {:.1} / {:.1} | {} | {v2:.1} | {ru:.1} | {cu:.1} | {} | {} | {:.2} | {} |",
                l.name,
                b.round_trip_us,
                b.barrier_us,
                b.step_us,
                e.dispatches,
                cell(measured_csr(l.name, batch)),
                cell(cb),
                eu / cu,
                cb.map_or("".to_string(), |cb| format!("{:.2}", cb / eu)),
            );
        }
        println!(
            "\nbatch {batch}: gpu-eie/f32 modelled faster than gpu-csr/f32 (modelled) on {faster_than_csr} of {} layers; geometric means: gpu-eie/f32 {:.1} µs modelled, cuBLAS f32 (graph) {:.1} µs measured: cuBLAS ÷ eie = {:.2}",
            eies.len(),
            geomean(&eies),
            geomean(&cublas),
            geomean(&cublas) / geomean(&eies)
        );
    }
    Ok(())
}
