//! Sequence models on the GPU against the CPU engine, on seeded random LSTM and GRU layers
//! (stacked, with fully-connected layers between and after) and on the committed sequential
//! MNIST model: fixed16 bit for bit, f32 within rounding; batches, sequences longer than one
//! submission, initial states and the state left behind; typed errors.
//!
//! Under the harness of `common::gpu::run` (`harness = false`): without an adapter each is
//! reported ignored (the count in the summary), except where a GPU is required (`CI=true` or
//! `EIE_REQUIRE_GPU=1`, set by `.ci/run`): there a missing adapter fails them.

use eie::compress::{CompressPlan, DenseLayer, Setting};
use eie::format::CellKind;
use eie::gpu::{BaselineKind, GpuContext, GpuSequenceEngine, PePlan, SequenceOptions};
use eie::recurrent::{compress_stages, DenseRecurrent, DenseStage, SequenceEngine, SequenceState};
use eie::{Activation, Error, Precision, SequenceModel};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

mod common;
use common::gpu::{gpu, gpu_main};

gpu_main!(
    lstm_and_gru_stacks_match_the_cpu_engine,
    extreme_gates_and_states_give_the_cpu_bits,
    pe_counts_and_dense_matrices_give_the_same_bits,
    baseline_kernels_run_the_same_steps,
    the_sequential_mnist_lstm_matches_on_real_digits,
    bad_calls_are_typed_errors,
);

fn dense(rng: &mut ChaCha8Rng, name: &str, rows: usize, cols: usize, scale: f32) -> DenseLayer {
    DenseLayer {
        name: name.into(),
        rows,
        cols,
        weights: (0..rows * cols)
            .map(|_| rng.random_range(-scale..scale))
            .collect(),
        bias: Some((0..rows).map(|_| rng.random_range(-0.3f32..0.3)).collect()),
    }
}

fn cell(
    rng: &mut ChaCha8Rng,
    name: &str,
    kind: CellKind,
    (input, hidden): (usize, usize),
    scale: f32,
) -> DenseStage {
    let g = kind.gates() * hidden;
    let s = scale / (hidden as f32).sqrt();
    DenseStage::Recurrent(
        DenseRecurrent::new(
            name.into(),
            kind,
            dense(rng, &format!("{name}.weight_ih"), g, input, s),
            dense(rng, &format!("{name}.weight_hh"), g, hidden, s),
        )
        .unwrap(),
    )
}

/// A random model: an FC layer (ReLU), `kind` cells of `hidden` units, a second layer of
/// cells of the other kind, an FC classifier; pruned to `density` with 4-bit codebooks.
fn model(seed: u64, kind: CellKind, input: usize, hidden: usize, density: &str) -> SequenceModel {
    scaled_model(seed, kind, (input, hidden), density, 1.5)
}

/// [`model`] with the gate matrices' weights scaled by `scale / sqrt(hidden)`.
fn scaled_model(
    seed: u64,
    kind: CellKind,
    (input, hidden): (usize, usize),
    density: &str,
    scale: f32,
) -> SequenceModel {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let other = match kind {
        CellKind::Lstm => CellKind::Gru,
        CellKind::Gru => CellKind::Lstm,
    };
    let stages = vec![
        DenseStage::Fc(dense(&mut rng, "fc0.weight", 24, input, 0.5)),
        cell(&mut rng, "rnn0", kind, (24, hidden), scale),
        cell(&mut rng, "rnn1", other, (hidden, hidden / 2 + 3), scale),
        DenseStage::Fc(dense(&mut rng, "fc1.weight", 7, hidden / 2 + 3, 0.5)),
    ];
    let mut plan = CompressPlan::default();
    plan.set_from_list(Setting::Density, density).unwrap();
    plan.set_from_list(Setting::Bits, "4").unwrap();
    compress_stages(
        &stages,
        &plan,
        &[Activation::Relu, Activation::Identity],
        false,
    )
    .unwrap()
}

fn inputs(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            // A quarter of the inputs zero, as after a ReLU.
            if rng.random_bool(0.25) {
                0.0
            } else {
                rng.random_range(-1.0f32..1.0)
            }
        })
        .collect()
}

/// States drawn uniformly from `±bound`.
fn states(rng: &mut ChaCha8Rng, model: &SequenceModel, n: usize, bound: f32) -> Vec<SequenceState> {
    (0..n)
        .map(|_| {
            let v = (0..model.state_size())
                .map(|_| rng.random_range(-bound..bound))
                .collect();
            SequenceState::from_values(model, v).unwrap()
        })
        .collect()
}

/// Runs `batch` sequences of `steps` steps on both engines from the same random states and
/// compares outputs and final states: equal bits for fixed16, within `tol` (relative to the
/// largest value) for f32.
fn compare(
    ctx: &Arc<GpuContext>,
    model: &SequenceModel,
    precision: Precision,
    opts: SequenceOptions,
    batch: usize,
    steps: usize,
    seed: u64,
) {
    compare_from(ctx, model, precision, opts, (batch, steps), seed, 0.9);
}

/// [`compare`] from states drawn within `±bound`.
fn compare_from(
    ctx: &Arc<GpuContext>,
    model: &SequenceModel,
    precision: Precision,
    opts: SequenceOptions,
    (batch, steps): (usize, usize),
    seed: u64,
    bound: f32,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = inputs(&mut rng, batch * steps * model.input_size());
    let init = states(&mut rng, model, batch, bound);
    let cpu = SequenceEngine::new(model.clone(), precision).unwrap();
    let gpu =
        GpuSequenceEngine::new(ctx.clone(), model, SequenceOptions { precision, ..opts }).unwrap();
    let mut cs = init.clone();
    let mut gs = init;
    let want = cpu.run_batch(&x, batch, steps, &mut cs).unwrap();
    let got = gpu.run_batch(&x, batch, steps, &mut gs).unwrap();
    let what = format!("{precision:?}, batch {batch}, {steps} steps, {opts:?}");
    assert_eq!(got.len(), want.len(), "{what}");
    let close = |a: &[f32], b: &[f32], part: &str| {
        if precision == Precision::Fixed16 {
            assert_eq!(a, b, "{what}: {part} differ");
        } else {
            let scale = b.iter().map(|v| v.abs()).fold(1e-3f32, f32::max);
            let err = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(
                err <= 2e-5 * scale.max(1.0),
                "{what}: {part} max |diff| {err}"
            );
        }
    };
    close(&got, &want, "outputs");
    for (g, c) in gs.iter().zip(&cs) {
        close(g.values(), c.values(), "states");
    }
}

fn lstm_and_gru_stacks_match_the_cpu_engine() {
    let Some(ctx) = gpu() else { return };
    for (seed, kind) in [(1, CellKind::Lstm), (2, CellKind::Gru)] {
        let m = model(seed, kind, 13, 40, "0.4");
        for precision in [Precision::Fixed16, Precision::F32] {
            let opts = SequenceOptions::default();
            // One sequence of one step (single-input dispatches), a batch in one submission,
            // a batch over the tile, and more steps than one submission records.
            compare(&ctx, &m, precision, opts, 1, 1, 10);
            compare(&ctx, &m, precision, opts, 3, 9, 11);
            compare(&ctx, &m, precision, opts, 6, 5, 12);
            let short = SequenceOptions {
                max_steps: 4,
                max_batch: 2,
                ..opts
            };
            compare(&ctx, &m, precision, short, 5, 11, 13);
        }
    }
}

/// The edges of the fixed16 cell's 32-bit arithmetic: gate sums far beyond the tables' ±8
/// (large weights: few gate fraction bits), tiny weights (many gate fraction bits), `c` near its
/// ±512 limit and `h` at the ends of Q1.14 — the same bits as the CPU's 64-bit arithmetic.
fn extreme_gates_and_states_give_the_cpu_bits() {
    let Some(ctx) = gpu() else { return };
    for (seed, kind, scale) in [
        (30, CellKind::Lstm, 40.0),
        (31, CellKind::Gru, 40.0),
        (32, CellKind::Lstm, 0.02),
        (33, CellKind::Gru, 0.02),
    ] {
        let m = scaled_model(seed, kind, (11, 36), "0.6", scale);
        for bound in [1.99, 500.0] {
            compare_from(
                &ctx,
                &m,
                Precision::Fixed16,
                SequenceOptions::default(),
                (3, 7),
                seed,
                bound,
            );
        }
    }
}

fn pe_counts_and_dense_matrices_give_the_same_bits() {
    let Some(ctx) = gpu() else { return };
    let m = model(3, CellKind::Lstm, 9, 70, "1.0");
    for pes in [PePlan::Fixed(1), PePlan::Fixed(7), PePlan::Auto] {
        let opts = SequenceOptions {
            pes,
            ..SequenceOptions::default()
        };
        compare(&ctx, &m, Precision::Fixed16, opts, 2, 6, 20);
    }
}

/// The baseline kernels (dense GEMV/GEMM, CSR SpMV) in place of EIE's run the same steps: the
/// CPU engine's f32 results within rounding, single inputs, tiles and several submissions.
fn baseline_kernels_run_the_same_steps() {
    let Some(ctx) = gpu() else { return };
    let m = model(4, CellKind::Lstm, 11, 36, "0.5");
    for kind in [BaselineKind::Dense, BaselineKind::Csr] {
        let opts = SequenceOptions {
            baseline: Some(kind),
            ..SequenceOptions::default()
        };
        let e = GpuSequenceEngine::new(ctx.clone(), &m, opts).unwrap();
        assert_eq!(e.id().to_string(), format!("gpu-{}/f32", kind.name()));
        compare(&ctx, &m, Precision::F32, opts, 1, 1, 40);
        compare(&ctx, &m, Precision::F32, opts, 6, 5, 41);
        let short = SequenceOptions {
            max_steps: 3,
            max_batch: 2,
            ..opts
        };
        compare(&ctx, &m, Precision::F32, short, 3, 7, 42);
        // Baselines are f32 kernels.
        let fixed = SequenceOptions {
            precision: Precision::Fixed16,
            ..opts
        };
        assert!(matches!(
            GpuSequenceEngine::new(ctx.clone(), &m, fixed),
            Err(Error::UnsupportedPrecision { .. })
        ));
    }
}

fn the_sequential_mnist_lstm_matches_on_real_digits() {
    let Some(ctx) = gpu() else { return };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    let model = SequenceModel::load(dir.join("seqmnist/seqmnist-lstm.eie.safetensors")).unwrap();
    let (_, width, pixels) =
        eie::classify::read_images(&dir.join("lenet/test-images.npy")).unwrap();
    let n = 16;
    let x = &pixels[..n * width];
    let steps = width / model.input_size();
    for precision in [Precision::Fixed16, Precision::F32] {
        let cpu = SequenceEngine::new(model.clone(), precision).unwrap();
        let gpu = GpuSequenceEngine::new(
            ctx.clone(),
            &model,
            SequenceOptions {
                precision,
                ..SequenceOptions::default()
            },
        )
        .unwrap();
        let mut cs = vec![cpu.zero_state(); n];
        let mut gs = cs.clone();
        let want = cpu.run_batch(x, n, steps, &mut cs).unwrap();
        let got = gpu.run_batch(x, n, steps, &mut gs).unwrap();
        if precision == Precision::Fixed16 {
            assert_eq!(got, want);
        } else {
            let err = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(err < 1e-3, "f32 max |diff| {err}");
        }
        // The same digits read the same way.
        let out = model.output_size();
        let last = |v: &[f32], i: usize| {
            let s = &v[((i + 1) * steps - 1) * out..(i + 1) * steps * out];
            (0..out).max_by(|&a, &b| s[a].total_cmp(&s[b])).unwrap()
        };
        for i in 0..n {
            assert_eq!(last(&got, i), last(&want, i), "{precision:?} digit {i}");
        }
    }
}

fn bad_calls_are_typed_errors() {
    let Some(ctx) = gpu() else { return };
    let m = model(5, CellKind::Gru, 5, 8, "0.5");
    let f16 = GpuSequenceEngine::new(
        ctx.clone(),
        &m,
        SequenceOptions {
            precision: Precision::F16,
            ..SequenceOptions::default()
        },
    );
    assert!(matches!(f16, Err(Error::UnsupportedPrecision { .. })));
    // More workgroup rows than any device has: a limit, with the numbers.
    let huge = GpuSequenceEngine::new(
        ctx.clone(),
        &m,
        SequenceOptions {
            max_batch: 1 << 12,
            max_steps: 1 << 12,
            ..SequenceOptions::default()
        },
    );
    let limit = ctx.device_limits().max_compute_workgroups_per_dimension as u64;
    assert!(
        matches!(huge, Err(Error::LimitExceeded { value, limit: l, .. }) if value == 1 << 24 && l == limit)
    );
    let zero = GpuSequenceEngine::new(
        ctx.clone(),
        &m,
        SequenceOptions {
            max_steps: 0,
            ..SequenceOptions::default()
        },
    );
    assert!(matches!(zero, Err(Error::InvalidArgument(_))));
    let e = GpuSequenceEngine::new(ctx.clone(), &m, SequenceOptions::default()).unwrap();
    let mut s = e.zero_state();
    assert!(matches!(e.run(&[0.0; 9], 2, &mut s), Err(Error::Shape(_))));
    assert!(matches!(e.run(&[], 0, &mut s), Err(Error::Shape(_))));
    let mut x = vec![0.5; 10];
    x[3] = f32::NAN;
    assert!(matches!(e.run(&x, 2, &mut s), Err(Error::NonFinite { .. })));
    let mut two = vec![e.zero_state(); 2];
    assert!(matches!(
        e.run_batch(&[0.0; 10], 1, 2, &mut two),
        Err(Error::Shape(_))
    ));
    // After the errors the engine still runs, and the state is untouched by them.
    assert_eq!(s, e.zero_state());
    let y = e.run(&[0.25; 10], 2, &mut s).unwrap();
    assert_eq!(y.len(), 2 * m.output_size());
}
