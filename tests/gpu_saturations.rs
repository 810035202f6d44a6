//! fixed16 saturations counted by the GPU kernels against the CPU model's counts, on seeded
//! random models whose formats make layers clip (positive and negative, a ReLU layer, biases
//! that clip on their own so that a tile's padding inputs would too): per layer the same
//! write-back counts for one input and for batches that the tiles pad, through both walks (one
//! and several column slices, one and several lanes per row), none where nothing saturates;
//! each of concurrent runs on one engine gets its own counts; and `Engine`'s report carries them
//! on the GPU on the blocking and the async path.
//!
//! They run on whatever adapter wgpu finds, under the harness of `common::gpu::run` (`harness =
//! false`). Without one each is reported ignored (the count in the summary, the reason in one
//! line), except where a GPU is required (`CI=true` or `EIE_REQUIRE_GPU=1`, set by `.ci/run`):
//! there a missing or non-Vulkan adapter fails them.

use eie::fixed16::Saturations;
use eie::format::{Activation, EieLayer, Model};
use eie::gpu::{DeviceOptions, EngineOptions, GpuEngine, PePlan, ScheduleOverride};
use eie::{CpuEngine, Precision};

mod common;
use common::gpu::{gpu, gpu_main};

gpu_main!(
    write_back_counts_equal_the_cpu_model_on_every_walk_and_batch,
    nothing_saturates_nothing_is_counted,
    concurrent_runs_on_one_engine_each_get_their_own_counts,
    engine_reports_gpu_saturations_blocking_and_async,
);

/// A seeded random layer with 4-bit codes and a bias ([`common::fixtures::random_layer`]):
/// each weight kept with probability `density`, codes uniform over the non-zero codebook
/// indices, codebook of 16 entries in (-1, 1), bias in (-0.5, 0.5).
fn layer(
    rows: usize,
    cols: usize,
    density: f64,
    pes: usize,
    act: Activation,
    seed: u64,
) -> EieLayer {
    common::fixtures::random_layer(rows, cols, density, 4, pes, true, act, seed)
}

/// Three layers (ReLU, identity, ReLU) and `batch` inputs of 150 values in [0, 1), a few
/// negative.
fn model() -> Model {
    Model::new(vec![
        layer(96, 150, 0.15, 8, Activation::Relu, 41),
        layer(64, 96, 0.25, 4, Activation::Identity, 42),
        layer(10, 64, 0.5, 2, Activation::Relu, 43),
    ])
    .unwrap()
}

fn input(batch: usize, scale: f32, seed: u64) -> Vec<f32> {
    let mut x = eie::synth::activations(150 * batch, 0.5, seed);
    for (i, v) in x.iter_mut().enumerate() {
        *v *= if i % 7 == 3 { -scale } else { scale };
    }
    x
}

/// The model with formats that clip: inputs in Q3.12 (±8, so inputs scaled by 20 clip too),
/// the ReLU layer's outputs in Q3.12 (sums beyond 8 clip, negative ones do not count), the
/// identity layer's in Q-2.17 (±0.25: sums of either sign clip, and so do the biases beyond
/// ±0.25 of a zero input, as a padding input of a tile is), the last ReLU layer's in Q0.15.
fn saturating() -> Model {
    let mut m = model();
    m.set_fixed16_fracs(12, &[12, 17, 15]).unwrap();
    m
}

/// The CPU model's counts as the GPU reports them: no accumulator overflows.
fn cpu_counts(m: &Model, x: &[f32]) -> (Vec<f32>, Saturations) {
    let (y, mut s) = CpuEngine::new(m.clone())
        .unwrap()
        .with_precision(Precision::Fixed16)
        .run_fixed16(x)
        .unwrap();
    for l in &mut s.layers {
        l.accumulator = 0;
    }
    (y, s)
}

/// Forced schedules: the column walk with one slice (write-back in `eie_spmv`) and with several
/// (write-back in `eie_reduce`), batch tiles of 1 (no padding) and 4; the row walk with one and
/// with several lanes per row.
const SCHEDULES: [&str; 5] = [
    "walk=columns,tile=1,slices=1",
    "walk=columns,tile=4,slices=1",
    "walk=columns,tile=4,slices=3",
    "walk=rows,tile=4,lanes=1",
    "walk=rows,tile=4,lanes=8",
];

fn engine(m: &Model, schedule: &str, max_batch: usize) -> GpuEngine {
    let opts = EngineOptions {
        precision: Precision::Fixed16,
        pes: PePlan::File,
        max_batch,
        schedule: schedule.parse::<ScheduleOverride>().unwrap(),
        ..EngineOptions::default()
    };
    GpuEngine::new(gpu().unwrap(), m, opts).unwrap()
}

fn write_back_counts_equal_the_cpu_model_on_every_walk_and_batch() {
    if gpu().is_none() {
        return;
    }
    let m = saturating();
    let x = input(17, 20.0, 44);
    // The formats do what they are chosen for: every layer clips, inputs too, and the zero
    // input's biases alone clip in the identity layer.
    let (_, all) = cpu_counts(&m, &x);
    assert!(all.input > 0, "{all:?}");
    assert!(all.layers.iter().all(|l| l.write_back > 0), "{all:?}");
    let (_, zero) = cpu_counts(&m, &[0.0; 150]);
    assert!(zero.layers[1].write_back > 0, "{zero:?}");
    for sched in SCHEDULES {
        // 64: one submission for every batch; 8: 17 inputs in chunks of 8, 8 and 1.
        for max_batch in [64, 8] {
            let e = engine(&m, sched, max_batch);
            for batch in [1, 5, 17] {
                let xb = &x[..batch * 150];
                let (want_y, want) = cpu_counts(&m, xb);
                let (y, got) = e.run_fixed16(xb).unwrap();
                let what = format!("{sched}, max_batch {max_batch}, batch {batch}");
                assert!(
                    y.iter()
                        .zip(&want_y)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "outputs differ from the CPU model: {what}"
                );
                assert_eq!(got, want, "{what}");
            }
        }
    }
}

fn nothing_saturates_nothing_is_counted() {
    if gpu().is_none() {
        return;
    }
    // Formats chosen for inputs within ±1, and such inputs: the CPU model counts nothing.
    let mut m = model();
    eie::calibration::choose_formats(&mut m, None).unwrap();
    let x = input(17, 1.0, 45);
    let (_, want) = cpu_counts(&m, &x);
    assert_eq!(want, Saturations::zero(3));
    for sched in SCHEDULES {
        let e = engine(&m, sched, 64);
        for batch in [1, 5, 17] {
            let (_, got) = e.run_fixed16(&x[..batch * 150]).unwrap();
            assert_eq!(got, Saturations::zero(3), "{sched}, batch {batch}");
        }
    }
    // A saturating run on the same engine leaves nothing behind for the next one.
    let m = saturating();
    let e = engine(&m, SCHEDULES[2], 64);
    let (_, s) = e.run_fixed16(&input(5, 20.0, 46)).unwrap();
    assert!(s.total() > 0, "{s:?}");
    let (_, s) = e.run_fixed16(&[0.0; 150]).unwrap();
    assert_eq!(s, cpu_counts(&m, &[0.0; 150]).1);
    // f32 engines do not count; asking is a typed error.
    let f32_engine = GpuEngine::new(gpu().unwrap(), &m, EngineOptions::default()).unwrap();
    assert!(matches!(
        f32_engine.run_fixed16(&[0.0; 150]),
        Err(eie::Error::UnsupportedPrecision { .. })
    ));
}

fn concurrent_runs_on_one_engine_each_get_their_own_counts() {
    if gpu().is_none() {
        return;
    }
    let m = saturating();
    let e = engine(&m, SCHEDULES[2], 8);
    // Threads with inputs of different scales (none, some and many saturations), blocking and
    // async, each checking every one of its runs against the CPU model.
    std::thread::scope(|s| {
        for t in 0..6u64 {
            let (e, m) = (e.clone(), m.clone());
            s.spawn(move || {
                for i in 0..4u64 {
                    let scale = [0.1, 5.0, 40.0][((t + i) % 3) as usize];
                    let batch = [1, 5, 11][(t % 3) as usize];
                    let x = input(batch, scale, 100 + 10 * t + i);
                    let got = if t % 2 == 0 {
                        e.run_fixed16(&x).unwrap()
                    } else {
                        block_on(e.run_fixed16_async(x.clone())).unwrap()
                    };
                    assert_eq!(got, cpu_counts(&m, &x), "thread {t}, run {i}");
                }
            });
        }
    });
}

/// Blocks on a future with a current-thread tokio runtime (the engine's futures need no
/// particular runtime).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn engine_reports_gpu_saturations_blocking_and_async() {
    if gpu().is_none() {
        return;
    }
    let m = saturating();
    let build = |precision| {
        eie::Engine::builder(m.clone())
            .precision(precision)
            .device(eie::Device::Gpu(DeviceOptions::default()))
            .gpu_options(EngineOptions {
                schedule: SCHEDULES[1].parse().unwrap(),
                ..EngineOptions::default()
            })
            .build()
            .unwrap()
    };
    let fixed = build(Precision::Fixed16);
    assert!(fixed.device().is_gpu(), "{}", fixed.device());
    let x = input(5, 20.0, 47);
    let (want_y, want) = cpu_counts(&m, &x);
    let blocking = fixed.run(eie::Inputs::new(&x, 5, 150).unwrap()).unwrap();
    assert_eq!(blocking.as_slice(), &want_y[..]);
    assert_eq!(blocking.report().saturations.as_ref(), Some(&want));
    assert_eq!(blocking.report().inputs_clipped, want.input);
    assert!(!blocking.report().is_clean());
    #[cfg(feature = "async")]
    {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let outputs = rt.block_on(async {
            let tasks: Vec<_> = (0..8u64)
                .map(|i| {
                    let x = input(5, [0.1, 20.0][i as usize % 2], 200 + i);
                    let run = fixed.run_async(x.clone(), 5);
                    tokio::spawn(async move { (run.await.unwrap(), x) })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        });
        for (y, x) in outputs {
            let (want_y, want) = cpu_counts(&m, &x);
            assert_eq!(y.as_slice(), &want_y[..]);
            assert_eq!(y.report().saturations.as_ref(), Some(&want));
            assert_eq!(y.report().inputs_clipped, want.input);
        }
    }
    // A GPU engine built by hand reports the same (inputs clipped included).
    let by_hand = eie::Engine::from(engine(&m, SCHEDULES[3], 64));
    let r = by_hand.run(eie::Inputs::new(&x, 5, 150).unwrap()).unwrap();
    assert_eq!(r.report().saturations.as_ref(), Some(&want));
    assert_eq!(r.report().inputs_clipped, want.input);
    // f32 on the GPU: no fixed16 counts.
    let f = build(Precision::F32).run(&x[..150]).unwrap();
    assert_eq!(f.report().saturations, None);
}
