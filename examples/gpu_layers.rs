//! GPU time per layer of the paper's benchmark layers (EIE Table III) for the EIE kernel (f32,
//! fixed16, f16) and the dense and CSR baselines on the same device, plus
//! AlexNet FC6 -> FC7 -> FC8 chained at batch 1 (per-layer times and pipelined frames/s).
//!
//! ```text
//! cargo run --release --example gpu_layers -- [--layers Alex-7,NT-We|all] [--reps K]
//!     [--samples S] [--pes N | --rows-per-pe R] [--no-baselines] [--no-alexnet] [--frames F] [--in-flight N]
//! ```
//! Times are medians over S submissions of K back-to-back runs (timestamp queries where the
//! adapter has them, else the submission's wall time), in microseconds.

use eie::gpu::{
    BaselineEngine, BaselineKind, DeviceOptions, EngineOptions, GpuContext, GpuEngine, PePlan,
    Precision, Timing, TimingOptions,
};
use eie::paper::{PaperLayer, DEFAULT_SEED, PAPER_LAYERS};
use std::sync::Arc;

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

/// GPU time of the whole run (timestamps) or the submission's wall time per run.
fn run_us(t: &Timing) -> f64 {
    t.gpu_us
        .as_deref()
        .map_or(median(&t.submit_wall_us), median)
}

struct Args {
    layers: Vec<&'static PaperLayer>,
    opts: TimingOptions,
    pes: PePlan,
    baselines: bool,
    alexnet: bool,
    frames: usize,
    in_flight: usize,
}

fn parse() -> eie::Result<Args> {
    let mut a = Args {
        layers: PAPER_LAYERS.iter().collect(),
        opts: TimingOptions {
            reps_per_submit: 20,
            samples: 10,
        },
        pes: PePlan::Auto,
        baselines: true,
        alexnet: true,
        frames: 2000,
        in_flight: 4,
    };
    let mut it = std::env::args().skip(1);
    let num = |v: Option<String>| -> eie::Result<usize> {
        v.and_then(|s| s.parse().ok())
            .ok_or_else(|| eie::Error::InvalidArgument("expected a number".into()))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--layers" => {
                let v = it.next().unwrap_or_default();
                if v != "all" {
                    a.layers = v
                        .split(',')
                        .map(eie::paper::find)
                        .collect::<eie::Result<_>>()?;
                }
            }
            "--reps" => a.opts.reps_per_submit = num(it.next())?,
            "--samples" => a.opts.samples = num(it.next())?,
            "--pes" => a.pes = PePlan::Fixed(num(it.next())?),
            "--rows-per-pe" => a.pes = PePlan::RowsPerPe(num(it.next())?),
            "--frames" => a.frames = num(it.next())?,
            "--in-flight" => a.in_flight = num(it.next())?,
            "--no-baselines" => a.baselines = false,
            "--no-alexnet" => a.alexnet = false,
            other => {
                return Err(eie::Error::InvalidArgument(format!(
                    "unknown argument `{other}`"
                )))
            }
        }
    }
    Ok(a)
}

fn main() -> eie::Result<()> {
    let a = parse()?;
    let ctx = GpuContext::new(&DeviceOptions::default())?;
    let info = ctx.adapter_info();
    println!(
        "device: {} ({:?}, driver {} {}); timestamps {}, per-layer timestamps {}, f16 {}",
        info.name,
        info.backend,
        info.driver,
        info.driver_info,
        ctx.has_timestamps(),
        ctx.has_timestamps_inside_passes(),
        ctx.has_f16()
    );
    println!(
        "timing: median of {} submissions of {} back-to-back runs, batch 1, µs",
        a.opts.samples, a.opts.reps_per_submit
    );
    println!(
        "{:<8} {:>6} {:>10} {:>12} {:>10} {:>10} {:>10} {:>10}",
        "layer", "PEs", "eie f32", "eie fixed16", "eie f16", "dense f32", "csr f32", "wall f32"
    );
    for l in &a.layers {
        let model = l.model(64, DEFAULT_SEED)?;
        let x = l.input(1, DEFAULT_SEED);
        let mut cells = Vec::new();
        let mut pes = Vec::new();
        let mut wall = f64::NAN;
        for precision in Precision::ALL {
            let opts = EngineOptions {
                precision,
                pes: a.pes,
                max_batch: 1,
                ..EngineOptions::default()
            };
            let e = GpuEngine::new(ctx.clone(), &model, opts)?;
            pes = e.pes();
            let t = e.time(&x, &a.opts)?;
            if precision == Precision::F32 {
                wall = median(&t.wall_us);
            }
            cells.push(run_us(&t));
        }
        for kind in [BaselineKind::Dense, BaselineKind::Csr] {
            if !a.baselines {
                cells.push(f64::NAN);
                continue;
            }
            let e = BaselineEngine::with_max_batch(ctx.clone(), &model, kind, 1)?;
            cells.push(run_us(&e.time(&x, &a.opts)?));
        }
        println!(
            "{:<8} {:>6} {:>10.2} {:>12.2} {:>10.2} {:>10.2} {:>10.2} {:>10.1}",
            l.name, pes[0], cells[0], cells[1], cells[2], cells[3], cells[4], wall
        );
    }
    if a.alexnet {
        alexnet(&ctx, &a)?;
    }
    Ok(())
}

fn alexnet(ctx: &Arc<GpuContext>, a: &Args) -> eie::Result<()> {
    let model = eie::paper::alexnet_fc(64, DEFAULT_SEED)?;
    let e = GpuEngine::new(
        ctx.clone(),
        &model,
        EngineOptions {
            pes: a.pes,
            max_batch: 1,
            ..EngineOptions::default()
        },
    )?;
    let inputs: Vec<Vec<f32>> = (0..8)
        .map(|i| PAPER_LAYERS[0].input(1, DEFAULT_SEED + i))
        .collect();
    let t = e.time(&inputs[0], &a.opts)?;
    let per_layer: Vec<String> = t.per_layer_us.as_ref().map_or(vec![], |p| {
        p.iter().map(|s| format!("{:.2}", median(s))).collect()
    });
    println!(
        "AlexNet FC6->FC7->FC8 (PEs {:?}), batch 1: {:.2} µs per run on the GPU (per layer [{}]), \
         {:.1} µs wall per blocking call",
        e.pes(),
        run_us(&t),
        per_layer.join(", "),
        median(&t.wall_us)
    );
    let p = e.pipelined(&inputs, a.frames, a.in_flight)?;
    println!(
        "AlexNet FC6->FC8 pipelined, {} frames, {} in flight: {:.0} frames/s, median latency {:.1} µs",
        a.frames,
        a.in_flight,
        p.frames_per_s,
        median(&p.latency_us)
    );
    Ok(())
}
