//! Per-step latency at batch 1 of an LSTM on the CPU: the EIE sequence engine
//! (`SequenceEngine::stream`, one `push` per step: `W_ih x_t`, `W_hh h_{t−1}` and the cell
//! update; and `SequenceEngine::run` over 100 steps in one call, per step) beside a dense LSTM step through the crate's dense CPU baseline (`DenseLayerF32`: the
//! fused `[W_ih | W_hh]` GEMV over `[x_t; h_{t−1}]`, then the same gate arithmetic,
//! `eie::recurrent::cell::update`), and the simulated ASIC's cycles per step.
//!
//! Two models:
//! * NT-LSTM as a real cell: hidden 600, input 600, each gate matrix pruned to the paper's
//!   NT-LSTM weight density (`eie::paper::find("NT-LSTM")`, 10 %), 4-bit codebooks, seeded
//!   random weights (the trained ones are not public) and a dense random input (the paper's
//!   NT-LSTM activation density is 100 %);
//! * `assets/seqmnist` (LSTM of 64 units over 28 pixels, then a 10-way classifier at every
//!   step), on the rows of the committed MNIST test images; the dense step adds the classifier's
//!   dense GEMV.
//!
//! With `--gpu`, also the GPU sequence engine (`eie::gpu::GpuSequenceEngine`) on the default
//! adapter: a sequence of 100 steps in one submission (µs per step), and one step per call, with
//! EIE's kernels (f32, fixed16) and with the same steps on the dense (cuBLAS-style GEMV/GEMM)
//! and CSR baseline kernels (`SequenceOptions::baseline`).
//!
//! Run: `cargo run --release --example lstm_step` (`-- --quick` for fewer samples, `-- --gpu`
//! for the GPU rows). Each figure is the median (min–max) over samples, a sample timing
//! consecutive steps (or sequences) for at least 20 ms.

use eie::baseline::DenseLayerF32;
use eie::compress::{CompressConfig, CompressPlan};
use eie::format::{CellKind, SequenceModel, Stage};
use eie::recurrent::{cell, compress_stages, DenseRecurrent, DenseStage, SequenceEngine};
use eie::sim::{simulate_sequence, SimConfig};
use eie::{Activation, Precision};
use std::path::Path;
use std::time::Instant;

/// Median, min and max of per-step µs over `samples` samples of `run` (which runs `k` steps).
fn measure(samples: usize, mut run: impl FnMut(usize)) -> (f64, f64, f64) {
    // Warm up and find a k that takes at least 20 ms.
    let mut k = 1;
    loop {
        let t = Instant::now();
        run(k);
        if t.elapsed().as_secs_f64() >= 0.02 {
            break;
        }
        k *= 2;
    }
    let mut v: Vec<f64> = (0..samples)
        .map(|_| {
            let t = Instant::now();
            run(k);
            t.elapsed().as_secs_f64() * 1e6 / k as f64
        })
        .collect();
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// A dense LSTM step (and optional dense classifier) through the dense CPU baseline.
struct DenseStep {
    fused: DenseLayerF32,
    head: Option<DenseLayerF32>,
    /// `W_hh h` is inside the fused product: the cell update's second part is zero.
    zeros: Vec<f32>,
    hidden: usize,
    inputs: usize,
}

impl DenseStep {
    /// The fused `[W_ih | W_hh]` (bias `b_ih + b_hh`) of the compressed layer's decoded weights
    /// (the same values, stored dense), and the classifier expanded.
    fn new(model: &SequenceModel) -> eie::Result<Self> {
        let Stage::Recurrent(r) = &model.stages()[0] else {
            return Err(eie::Error::InvalidArgument(
                "the first stage must be an LSTM".into(),
            ));
        };
        let (rows, ni, h) = (r.ih().rows(), r.input_size(), r.hidden());
        let (wi, wh) = (r.ih().try_dense_weights()?, r.hh().try_dense_weights()?);
        let mut w = Vec::with_capacity(rows * (ni + h));
        for i in 0..rows {
            w.extend_from_slice(&wi[i * ni..(i + 1) * ni]);
            w.extend_from_slice(&wh[i * h..(i + 1) * h]);
        }
        let bias: Vec<f32> = (0..rows)
            .map(|i| r.ih().bias().map_or(0.0, |b| b[i]) + r.hh().bias().map_or(0.0, |b| b[i]))
            .collect();
        let fused = DenseLayerF32::from_weights(rows, ni + h, w, Some(bias), Activation::Identity)?;
        let head = match model.stages().get(1) {
            Some(Stage::Fc(l)) => Some(DenseLayerF32::new(l)),
            _ => None,
        };
        Ok(DenseStep {
            fused,
            head,
            zeros: vec![0.0; rows],
            hidden: h,
            inputs: ni,
        })
    }

    /// One step from `(h, c)`; returns the step's output.
    fn step(&self, x: &[f32], h: &mut [f32], c: &mut [f32], xh: &mut Vec<f32>) -> Vec<f32> {
        xh.clear();
        xh.extend_from_slice(x);
        xh.extend_from_slice(h);
        let gates = self.fused.forward(xh);
        cell::update(CellKind::Lstm, &gates, &self.zeros, h, c);
        match &self.head {
            Some(l) => l.forward(h),
            None => h.to_vec(),
        }
    }
}

fn nt_lstm(balance: bool) -> eie::Result<SequenceModel> {
    let paper = eie::paper::find("NT-LSTM")?;
    let (hidden, inputs) = (600, 600);
    let r = DenseRecurrent::new(
        "nt_lstm".into(),
        CellKind::Lstm,
        eie::synth::dense_layer("w_ih", 4 * hidden, inputs, true, 2016),
        eie::synth::dense_layer("w_hh", 4 * hidden, hidden, true, 2017),
    )?;
    compress_stages(
        &[DenseStage::Recurrent(r)],
        &CompressPlan::uniform(CompressConfig {
            density: paper.weight_density,
            bits: 4,
            pes: 60,
            ..CompressConfig::default()
        }),
        &[],
        balance,
    )
}

/// The GPU sequence engine's rows: 100 steps in one submission, and one step per call.
fn gpu_rows(
    ctx: &std::sync::Arc<eie::gpu::GpuContext>,
    model: &SequenceModel,
    xs: &[f32],
    samples: usize,
) -> eie::Result<()> {
    use eie::gpu::{BaselineKind, GpuSequenceEngine, SequenceOptions};
    let n_in = model.input_size();
    let steps = xs.len() / n_in;
    let seq: Vec<f32> = (0..100)
        .flat_map(|t| xs[(t % steps) * n_in..(t % steps + 1) * n_in].to_vec())
        .collect();
    for (precision, baseline) in [
        (Precision::F32, None),
        (Precision::Fixed16, None),
        (Precision::F32, Some(BaselineKind::Dense)),
        (Precision::F32, Some(BaselineKind::Csr)),
    ] {
        let opts = SequenceOptions {
            precision,
            max_batch: 1,
            baseline,
            ..SequenceOptions::default()
        };
        let engine = GpuSequenceEngine::new(ctx.clone(), model, opts)?;
        let mut state = engine.zero_state();
        let (med, lo, hi) = measure(samples, |k| {
            for _ in 0..k {
                let y = engine.run(&seq, 100, &mut state);
                std::hint::black_box(y.expect("a valid sequence"));
            }
        });
        println!(
            "| {} ({}), 100 steps in one submission | {:.1} ({:.1}–{:.1}) |",
            engine.id(),
            ctx.adapter_info().name,
            med / 100.0,
            lo / 100.0,
            hi / 100.0
        );
        let mut t = 0;
        let (med, lo, hi) = measure(samples, |k| {
            for _ in 0..k {
                let x = &xs[(t % steps) * n_in..(t % steps + 1) * n_in];
                std::hint::black_box(engine.run(x, 1, &mut state).expect("a valid step"));
                t += 1;
            }
        });
        println!(
            "| {} ({}), one step per call | {med:.1} ({lo:.1}–{hi:.1}) |",
            engine.id(),
            ctx.adapter_info().name,
        );
    }
    Ok(())
}

fn report(name: &str, model: &SequenceModel, xs: &[f32], samples: usize) -> eie::Result<()> {
    let n_in = model.input_size();
    let steps = xs.len() / n_in;
    let dense = DenseStep::new(model)?;
    assert_eq!(dense.inputs, n_in);
    println!("### {name}");
    for precision in [Precision::F32, Precision::Fixed16] {
        let engine = SequenceEngine::new(model.clone(), precision)?;
        let mut stream = engine.stream();
        let mut t = 0;
        let (med, lo, hi) = measure(samples, |k| {
            for _ in 0..k {
                let y = stream.push(&xs[(t % steps) * n_in..(t % steps + 1) * n_in]);
                std::hint::black_box(y.expect("a valid step"));
                t += 1;
            }
        });
        println!(
            "| EIE CPU engine, {} | {med:.1} ({lo:.1}–{hi:.1}) |",
            precision.name()
        );
    }
    // A whole sequence of 100 steps in one call (`W_ih x_t` for every step as one batched
    // product ahead of the chain), per step.
    let seq: Vec<f32> = (0..100)
        .flat_map(|t| xs[(t % steps) * n_in..(t % steps + 1) * n_in].to_vec())
        .collect();
    let engine = SequenceEngine::new(model.clone(), Precision::F32)?;
    let mut state = engine.zero_state();
    let (med, lo, hi) = measure(samples, |k| {
        for _ in 0..k {
            std::hint::black_box(engine.run(&seq, 100, &mut state).expect("a valid sequence"));
        }
    });
    println!(
        "| EIE CPU engine, f32, 100 steps in one call | {:.1} ({:.1}–{:.1}) |",
        med / 100.0,
        lo / 100.0,
        hi / 100.0
    );
    // Where the EIE step's time goes: each gate matrix alone on the CPU engine, and the cell
    // update alone.
    if let Stage::Recurrent(r) = &model.stages()[0] {
        let ih = eie::CpuEngine::new(eie::Model::new(vec![r.ih().clone()])?)?;
        let hh = eie::CpuEngine::new(eie::Model::new(vec![r.hh().clone()])?)?;
        let x = &xs[..n_in];
        let hv = vec![0.5f32; r.hidden()];
        let (a, _, _) = measure(samples, |k| {
            for _ in 0..k {
                std::hint::black_box(ih.run(x).expect("valid"));
            }
        });
        let (b, _, _) = measure(samples, |k| {
            for _ in 0..k {
                std::hint::black_box(hh.run(&hv).expect("valid"));
            }
        });
        let gx = vec![0.1f32; 4 * r.hidden()];
        let (mut hc, mut cc) = (hv.clone(), vec![0.0f32; r.hidden()]);
        let (u, _, _) = measure(samples, |k| {
            for _ in 0..k {
                cell::update(CellKind::Lstm, &gx, &gx, &mut hc, &mut cc);
                std::hint::black_box(&hc);
            }
        });
        println!(
            "| f32 parts alone: W_ih·x {a:.1}, W_hh·h {b:.1}, cell update {u:.2} (medians) | |"
        );
    }
    let (mut h, mut c, mut xh) = (
        vec![0f32; dense.hidden],
        vec![0f32; dense.hidden],
        Vec::new(),
    );
    let mut t = 0;
    let (dmed, dlo, dhi) = measure(samples, |k| {
        for _ in 0..k {
            let x = &xs[(t % steps) * n_in..(t % steps + 1) * n_in];
            std::hint::black_box(dense.step(x, &mut h, &mut c, &mut xh));
            t += 1;
        }
    });
    println!(
        "| dense step ({}) | {dmed:.1} ({dlo:.1}–{dhi:.1}) |",
        eie::baseline::dense_library()
    );
    if std::env::args().any(|a| a == "--gpu") {
        let ctx = eie::gpu::GpuContext::new(&eie::gpu::DeviceOptions::default())?;
        gpu_rows(&ctx, model, xs, samples)?;
    }
    Ok(())
}

fn main() -> eie::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let samples = if quick { 5 } else { 15 };
    println!(
        "rayon threads {}, load average {}",
        rayon::current_num_threads(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    // NT-LSTM: a dense random input (activation density 100 %), 32 steps cycled.
    let nt = nt_lstm(false)?;
    let xs = eie::paper::find("NT-LSTM")?.input(32, 7);
    let xs: Vec<f32> = xs.chunks(1201).flat_map(|c| c[..600].to_vec()).collect();
    report(
        "NT-LSTM cell (600 hidden, 600 inputs, 10 % weights), µs per step",
        &nt,
        &xs,
        samples,
    )?;
    // The simulated ASIC, with and without load-balance-aware pruning.
    let cfg = SimConfig {
        pes: 60,
        ..SimConfig::default()
    };
    for (label, balance) in [("magnitude pruning", false), ("--balance", true)] {
        let m = if balance { nt_lstm(true)? } else { nt.clone() };
        let r = simulate_sequence(&m, &xs[..8 * 600], 8, &cfg, Precision::F32)?;
        println!(
            "simulated ASIC, 60 PEs, {label}: {:.0} cycles per step ({:.2} µs at 800 MHz), \
             load-balance efficiency {:.3}",
            r.cycles_per_step, r.time_per_step_us, r.load_balance_efficiency
        );
    }

    // assets/seqmnist on the first 32 test images' rows.
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    let model = SequenceModel::load(assets.join("seqmnist/seqmnist-lstm.eie.safetensors"))?;
    let (_, _, pixels) = eie::classify::read_images(&assets.join("lenet/test-images.npy"))?;
    let xs = &pixels[..32 * 784];
    report(
        "assets/seqmnist (LSTM 64 hidden over 28 pixels + 10-way classifier), µs per step",
        &model,
        xs,
        samples,
    )?;
    let r = simulate_sequence(
        &model,
        &xs[..784],
        28,
        &SimConfig::default(),
        Precision::F32,
    )?;
    println!(
        "simulated ASIC, 64 PEs: {:.0} cycles per step ({:.3} µs at 800 MHz), load-balance \
         efficiency {:.3}",
        r.cycles_per_step, r.time_per_step_us, r.load_balance_efficiency
    );
    Ok(())
}
