//! Every GPU kernel against the CPU model on seeded random layers: varied shapes (1x1, fewer
//! rows than PEs, rows not divisible by the PEs), densities (no kept weight, 100 %), PE counts,
//! batch sizes, all-zero activations, columns that need padding entries, wide codebooks and a
//! three-layer model; plus concurrency, timing, pipelining, compaction and typed errors.
//!
//! They run on whatever adapter wgpu finds (Vulkan, Metal, DX12, GL), under the harness of
//! `common::gpu::run` (`harness = false`). Without an adapter each is reported ignored (the count
//! in the summary, the reason in one line), except where a GPU is required (`CI=true` or
//! `EIE_REQUIRE_GPU=1`, set by `.ci/run`): there a missing or non-Vulkan adapter fails them.

use eie::format::{Activation, EieLayer, Model};
use eie::gpu::{
    compact_nonzeros, BaselineEngine, BaselineKind, DeviceOptions, EngineOptions, GpuContext,
    GpuEngine, PePlan, ScheduleOverride, TimingOptions, Walk,
};
use eie::{CpuEngine, Precision};
use proptest::prelude::*;
use std::sync::Arc;

mod heartbeat;

mod common;
// A seeded random layer drawn directly in EIE's format.
use common::fixtures::random_layer as layer;
use common::gpu::{gpu, gpu_main};

gpu_main!(
    shapes_densities_and_pe_counts,
    padding_entries_wide_codebooks_and_identity,
    batches_and_zero_activations,
    three_layer_model_in_one_submission,
    per_layer_fixed16_formats_are_bit_exact,
    paper_layer_fixed16_is_bit_exact,
    concurrent_async_requests_on_one_engine,
    timing_and_pipelined_frames,
    compaction_lists_nonzeros_in_order,
    bad_requests_are_typed_errors,
    split_columns_batches_and_repeatable_f32,
    one_column_layers_and_all_zero_layers_in_a_chain,
    engine_api_and_dynamic_batching_on_the_gpu,
    every_schedule_path_matches_the_cpu_model_at_every_batch,
    random_layers_and_schedules_match_the_cpu_model,
    runtime_workers_never_wait_on_the_gpu_engine,
);

fn ctx() -> Arc<GpuContext> {
    gpu().expect("callers check gpu() first")
}

fn one(l: EieLayer) -> Model {
    Model::new(vec![l]).unwrap()
}

/// Input with `density` non-zeros and a few negative values (the first layer's input need not
/// be a ReLU output).
fn input(n: usize, batch: usize, density: f64, seed: u64) -> Vec<f32> {
    let mut x = eie::synth::activations(n * batch, density, seed);
    for (i, v) in x.iter_mut().enumerate() {
        if i % 7 == 3 {
            *v = -*v;
        }
    }
    x
}

fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want
        .iter()
        .fold(0f64, |m, v| m.max(v.abs() as f64))
        .max(1e-6);
    got.iter()
        .zip(want)
        .map(|(g, w)| (*g as f64 - *w as f64).abs())
        .fold(0.0, f64::max)
        / scale
}

/// Runs every GPU variant on `model` and `x` and checks it against the CPU model.
fn check_all(model: &Model, x: &[f32], pes: PePlan, max_batch: usize) {
    let ctx = ctx();
    let cpu = CpuEngine::new(model.clone()).unwrap();
    let want_f32 = cpu.run(x).unwrap();
    let want_fixed = cpu.with_precision(Precision::Fixed16).run(x).unwrap();
    let want_f16 = cpu.with_precision(Precision::F16).run(x).unwrap();
    for (precision, walk) in Precision::ALL
        .into_iter()
        .flat_map(|p| [(p, Walk::Columns), (p, Walk::Rows)])
    {
        let opts = EngineOptions {
            precision,
            pes,
            max_batch,
            walk: Some(walk),
            ..EngineOptions::default()
        };
        let e = GpuEngine::new(ctx.clone(), model, opts).unwrap();
        let got = e.run(x).unwrap();
        match precision {
            Precision::Fixed16 => assert!(
                got.iter()
                    .zip(&want_fixed)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "fixed16 differs from the CPU model ({walk:?}, pes {:?})",
                e.pes()
            ),
            Precision::F32 => {
                let err = rel_err(&got, &want_f32);
                assert!(err <= 1e-5, "f32 error {err} ({walk:?}, pes {:?})", e.pes());
            }
            Precision::F16 => {
                let err = rel_err(&got, &want_f32);
                assert!(err <= 2e-2, "f16 error {err}");
                // The CPU engine stores the same f16 values; only summation order differs.
                let err = rel_err(&got, &want_f16);
                assert!(err <= 5e-3, "f16 error {err} against the CPU's f16");
            }
        }
    }
    for kind in [BaselineKind::Dense, BaselineKind::Csr] {
        let e = BaselineEngine::with_max_batch(ctx.clone(), model, kind, max_batch).unwrap();
        let err = rel_err(&e.run(x).unwrap(), &want_f32);
        assert!(err <= 1e-5, "{kind:?} error {err}");
    }
}

fn shapes_densities_and_pe_counts() {
    if gpu().is_none() {
        return;
    }
    let cases: &[(usize, usize, f64, usize, PePlan)] = &[
        (1, 1, 1.0, 1, PePlan::Auto),
        (1, 1, 1.0, 4, PePlan::File),
        (3, 10, 0.5, 8, PePlan::File),        // fewer rows than PEs
        (37, 53, 0.3, 5, PePlan::File),       // rows not divisible by PEs
        (37, 53, 0.3, 5, PePlan::Fixed(7)),   // re-interleaved on upload
        (64, 40, 0.0, 4, PePlan::Auto),       // no kept weight
        (50, 33, 1.0, 3, PePlan::Auto),       // every weight kept
        (300, 2500, 0.05, 2, PePlan::Auto),   // several compaction chunks
        (150, 40, 0.3, 10, PePlan::File),     // 15 rows per PE: two rounds of partial sums
        (150, 40, 0.3, 10, PePlan::Fixed(4)), // 38 rows per PE: shared accumulators
    ];
    for (i, &(rows, cols, density, pes, plan)) in cases.iter().enumerate() {
        let m = one(layer(
            rows,
            cols,
            density,
            4,
            pes,
            i % 2 == 0,
            Activation::Relu,
            i as u64,
        ));
        check_all(&m, &input(cols, 2, 0.6, 100 + i as u64), plan, 8);
    }
}

fn padding_entries_wide_codebooks_and_identity() {
    if gpu().is_none() {
        return;
    }
    // One PE over 200 rows at 3 % density: long zero runs need padding entries.
    let l = layer(200, 30, 0.03, 4, 1, true, Activation::Identity, 7);
    assert!(l.padding_count() > 0);
    check_all(&one(l), &input(30, 3, 0.8, 8), PePlan::File, 4);
    // 6-bit codebook: 16-bit entries.
    let l = layer(90, 70, 0.2, 6, 4, false, Activation::Relu, 9);
    check_all(&one(l), &input(70, 2, 0.5, 10), PePlan::Auto, 4);
}

fn batches_and_zero_activations() {
    if gpu().is_none() {
        return;
    }
    let m = one(layer(120, 80, 0.2, 4, 8, true, Activation::Relu, 11));
    // Batches below, at and above max_batch (split into several submissions).
    for batch in [1, 4, 9] {
        check_all(
            &m,
            &input(80, batch, 0.4, 12 + batch as u64),
            PePlan::Auto,
            4,
        );
    }
    // All-zero input: only the bias remains.
    check_all(&m, &vec![0.0; 80 * 3], PePlan::Auto, 4);
}

fn three_layer_model_in_one_submission() {
    if gpu().is_none() {
        return;
    }
    let m = Model::new(vec![
        layer(96, 150, 0.15, 4, 8, true, Activation::Relu, 21),
        layer(64, 96, 0.25, 4, 4, true, Activation::Relu, 22),
        layer(10, 64, 0.5, 4, 2, false, Activation::Identity, 23),
    ])
    .unwrap();
    check_all(&m, &input(150, 5, 0.5, 24), PePlan::Auto, 8);
    check_all(&m, &input(150, 2, 0.5, 25), PePlan::Fixed(3), 8);
}

fn per_layer_fixed16_formats_are_bit_exact() {
    if gpu().is_none() {
        return;
    }
    let base = Model::new(vec![
        layer(96, 150, 0.15, 4, 8, true, Activation::Relu, 31),
        layer(64, 96, 0.25, 6, 4, true, Activation::Relu, 32),
        layer(10, 64, 0.5, 4, 2, true, Activation::Identity, 33),
    ])
    .unwrap();
    let x = input(150, 4, 0.5, 34);
    // Write-back shifts right by 16, left by 5 and right by 1; the last layer's Q0.15 (range
    // ±1) saturates.
    let mut m = base.clone();
    m.set_fixed16_fracs(15, &[3, 12, 15]).unwrap();
    let (_, sat) = CpuEngine::new(m.clone())
        .unwrap()
        .with_precision(Precision::Fixed16)
        .run_fixed16(&x)
        .unwrap();
    assert!(sat.layers[2].write_back > 0, "{sat:?}");
    check_all(&m, &x, PePlan::Auto, 8);
    // The extremes: right by 19 (Q.19 to Q15.0), left by 11 (Q.4 to Q0.15, saturating).
    m.set_fixed16_fracs(15, &[0, 15, 15]).unwrap();
    let (_, sat) = CpuEngine::new(m.clone())
        .unwrap()
        .with_precision(Precision::Fixed16)
        .run_fixed16(&x)
        .unwrap();
    assert!(sat.layers[1].write_back > 0, "{sat:?}");
    check_all(&m, &x, PePlan::Auto, 8);
    // Beyond 15 fraction bits: right by 28 (Q.28 to Q15.0), left by 20 (Q.4 to ), and a
    // small identity output in.
    m.set_fixed16_fracs(24, &[0, 24, 20]).unwrap();
    check_all(&m, &x, PePlan::Auto, 8);
    // Equal formats (shift 4 as Q5.10 throughout, but elsewhere) and a zero shift.
    m.set_fixed16_fracs(7, &[7, 11, 15]).unwrap();
    check_all(&m, &x, PePlan::Fixed(3), 8);
    // The formats the chooser picks, from the weights and from calibration inputs.
    let mut m = base.clone();
    eie::calibration::choose_formats(&mut m, None).unwrap();
    check_all(&m, &x, PePlan::Auto, 8);
    eie::calibration::choose_formats(&mut m, Some(&x)).unwrap();
    check_all(&m, &x, PePlan::Auto, 8);
}

fn paper_layer_fixed16_is_bit_exact() {
    if gpu().is_none() {
        return;
    }
    let l = eie::paper::find("NT-LSTM")
        .unwrap()
        .generate(64, 5)
        .unwrap();
    let m = one(l);
    let x = eie::paper::find("NT-LSTM").unwrap().input(2, 6);
    let cpu = CpuEngine::new(m.clone())
        .unwrap()
        .with_precision(Precision::Fixed16)
        .run(&x)
        .unwrap();
    let e = GpuEngine::new(
        ctx(),
        &m,
        EngineOptions {
            precision: Precision::Fixed16,
            ..EngineOptions::default()
        },
    )
    .unwrap();
    assert_eq!(e.pes(), vec![e.plans()[0].pes]);
    assert_eq!(e.run(&x).unwrap(), cpu);
}

fn concurrent_async_requests_on_one_engine() {
    if gpu().is_none() {
        return;
    }
    let m = Model::new(vec![
        layer(70, 60, 0.3, 4, 4, true, Activation::Relu, 31),
        layer(20, 70, 0.3, 4, 4, true, Activation::Identity, 32),
    ])
    .unwrap();
    let engine = Arc::new(GpuEngine::new(ctx(), &m, EngineOptions::default()).unwrap());
    let cpu = CpuEngine::new(m).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async {
        let tasks: Vec<_> = (0..24u64)
            .map(|i| {
                let e = engine.clone();
                let x = input(60, 1 + (i as usize % 3), 0.5, 40 + i);
                tokio::spawn(async move {
                    let y = e.run_async(x.clone()).await.unwrap();
                    (x, y)
                })
            })
            .collect();
        for t in tasks {
            let (x, y) = t.await.unwrap();
            let want = cpu.run(&x).unwrap();
            assert!(rel_err(&y, &want) <= 1e-5);
        }
    });
    // Blocking calls from several threads at once.
    std::thread::scope(|s| {
        for i in 0..4u64 {
            let (e, cpu) = (&engine, &cpu);
            s.spawn(move || {
                let x = input(60, 2, 0.5, 80 + i);
                let want = cpu.run(&x).unwrap();
                assert!(rel_err(&e.run(&x).unwrap(), &want) <= 1e-5);
            });
        }
    });
}

fn timing_and_pipelined_frames() {
    if gpu().is_none() {
        return;
    }
    let m = Model::new(vec![
        layer(128, 96, 0.2, 4, 8, true, Activation::Relu, 51),
        layer(32, 128, 0.2, 4, 8, false, Activation::Identity, 52),
    ])
    .unwrap();
    let ctx = ctx();
    let e = GpuEngine::new(ctx.clone(), &m, EngineOptions::default()).unwrap();
    let x = input(96, 1, 0.5, 53);
    let t = e
        .time(
            &x,
            &TimingOptions {
                reps_per_submit: 3,
                samples: 2,
            },
        )
        .unwrap();
    assert_eq!(t.wall_us.len(), 2);
    assert_eq!(t.submit_wall_us.len(), 2);
    assert!(t.wall_us.iter().all(|v| v.is_finite() && *v > 0.0));
    assert_eq!(t.gpu_us.is_some(), ctx.has_timestamps());
    if let Some(g) = &t.gpu_us {
        assert_eq!(g.len(), 2);
        assert!(g.iter().all(|v| v.is_finite() && *v >= 0.0));
    }
    if let Some(p) = &t.per_layer_us {
        assert_eq!(p.len(), 2);
        assert!(p.iter().all(|s| s.len() == 2));
    }
    let frames: Vec<Vec<f32>> = (0..3).map(|i| input(96, 1, 0.5, 60 + i)).collect();
    let p = e.pipelined(&frames, 12, 3).unwrap();
    assert_eq!(p.latency_us.len(), 12);
    assert!(p.frames_per_s > 0.0);
    // The engine still computes correctly after timing runs.
    let want = CpuEngine::new(m).unwrap().run(&x).unwrap();
    assert!(rel_err(&e.run(&x).unwrap(), &want) <= 1e-5);
    let b = BaselineEngine::new(
        ctx,
        &eie::Model::new(vec![layer(16, 16, 0.5, 4, 2, false, Activation::Relu, 54)]).unwrap(),
        BaselineKind::Dense,
    )
    .unwrap();
    assert_eq!(
        b.time(
            &input(16, 2, 0.5, 55),
            &TimingOptions {
                reps_per_submit: 2,
                samples: 1
            }
        )
        .unwrap()
        .wall_us
        .len(),
        1
    );
}

fn compaction_lists_nonzeros_in_order() {
    if gpu().is_none() {
        return;
    }
    let n = 5000;
    let mut x = input(n, 3, 0.3, 70);
    x[n..2 * n].iter_mut().for_each(|v| *v = 0.0); // an all-zero vector
    x[7] = -0.0;
    let got = compact_nonzeros(&ctx(), &x, n).unwrap();
    assert_eq!(got.len(), 3);
    for (b, list) in got.iter().enumerate() {
        let want: Vec<(u32, f32)> = x[b * n..(b + 1) * n]
            .iter()
            .enumerate()
            .filter(|(_, v)| **v != 0.0)
            .map(|(j, v)| (j as u32, *v))
            .collect();
        assert_eq!(list, &want, "vector {b}");
    }
}

fn bad_requests_are_typed_errors() {
    if gpu().is_none() {
        return;
    }
    let ctx = ctx();
    let m = one(layer(10, 10, 0.5, 4, 2, false, Activation::Relu, 90));
    let e = GpuEngine::new(ctx.clone(), &m, EngineOptions::default()).unwrap();
    assert!(matches!(e.run(&[1.0; 11]), Err(eie::Error::Shape(_))));
    assert!(matches!(
        e.run(&[f32::NAN; 10]),
        Err(eie::Error::NonFinite { .. })
    ));
    let zero = EngineOptions {
        max_batch: 0,
        ..EngineOptions::default()
    };
    assert!(matches!(
        GpuEngine::new(ctx.clone(), &m, zero),
        Err(eie::Error::InvalidArgument(_))
    ));
    let huge = EngineOptions {
        max_batch: 1 << 20,
        ..EngineOptions::default()
    };
    assert!(matches!(
        GpuEngine::new(ctx.clone(), &m, huge),
        Err(eie::Error::LimitExceeded { value, limit, .. }) if value > limit
    ));
    let too_few = EngineOptions {
        pes: PePlan::Fixed(0),
        ..EngineOptions::default()
    };
    assert!(GpuEngine::new(ctx.clone(), &m, too_few).is_err());
    let none = DeviceOptions {
        adapter_name: Some("no such adapter anywhere".into()),
        ..DeviceOptions::default()
    };
    assert!(matches!(
        GpuContext::new(&none),
        Err(eie::Error::NoAdapter(_))
    ));
}

fn split_columns_batches_and_repeatable_f32() {
    if gpu().is_none() {
        return;
    }
    // Enough columns for many slices per PE (the last-workgroup reduction), PEs of 60 rows,
    // gaps over 15 rows (padding entries), at batch 1, 3 and 64.
    let l = layer(240, 3000, 0.03, 4, 4, true, Activation::Relu, 111);
    assert!(l.padding_count() > 0);
    let m = one(l);
    for (batch, max_batch) in [(1, 1), (1, 64), (3, 64), (64, 64)] {
        check_all(
            &m,
            &input(3000, batch, 0.4, 112 + batch as u64),
            PePlan::File,
            max_batch,
        );
    }
    let e = GpuEngine::new(
        ctx(),
        &m,
        EngineOptions {
            pes: PePlan::File,
            ..EngineOptions::default()
        },
    )
    .unwrap();
    assert!(e.plans()[0].single.slices > 1 || ctx().device_limits().target_workgroups < 64);
    // f32 sums run in a fixed order: bit-identical outputs from run to run.
    let x = input(3000, 5, 0.5, 120);
    let first = e.run(&x).unwrap();
    for _ in 0..3 {
        let again = e.run(&x).unwrap();
        assert!(first
            .iter()
            .zip(&again)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }
    let x1 = input(3000, 1, 0.5, 121);
    let y1 = e.run(&x1).unwrap();
    assert!(y1
        .iter()
        .zip(&e.run(&x1).unwrap())
        .all(|(a, b)| a.to_bits() == b.to_bits()));
}

fn one_column_layers_and_all_zero_layers_in_a_chain() {
    if gpu().is_none() {
        return;
    }
    // 1-column layer, then a layer with no kept weight (only its bias), then a normal one:
    // the second layer's output bitmap is all zero where ReLU clips the bias.
    let m = Model::new(vec![
        layer(33, 1, 1.0, 4, 2, true, Activation::Relu, 131),
        layer(40, 33, 0.0, 4, 3, true, Activation::Relu, 132),
        layer(7, 40, 0.6, 4, 2, false, Activation::Identity, 133),
    ])
    .unwrap();
    for batch in [1, 3] {
        check_all(&m, &input(1, batch, 1.0, 134), PePlan::Auto, 4);
        check_all(&m, &vec![0.0; batch], PePlan::Auto, 4);
    }
}

#[cfg(feature = "async")]
fn engine_api_and_dynamic_batching_on_the_gpu() {
    if gpu().is_none() {
        return;
    }
    use eie::batching::{BatchConfig, Batcher};
    let m = Model::new(vec![
        layer(90, 70, 0.3, 4, 4, true, Activation::Relu, 141),
        layer(12, 90, 0.3, 4, 4, false, Activation::Identity, 142),
    ])
    .unwrap();
    let cpu = CpuEngine::new(m.clone()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async {
        let opts = EngineOptions {
            max_batch: 16,
            ..EngineOptions::default()
        };
        let engine = eie::Engine::builder(m.clone())
            .device(eie::Device::Gpu(DeviceOptions::default()))
            .gpu_options(opts)
            .build_async()
            .await
            .unwrap();
        assert_eq!(engine.id().to_string(), "gpu-eie/f32");
        assert!(engine.device().is_gpu(), "{}", engine.device());
        // An owned future in tokio::spawn, its output shaped.
        let x = input(70, 3, 0.5, 143);
        let y = tokio::spawn(engine.run_async(x.clone(), 3))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((y.batch(), y.width()), (3, 12));
        assert!(y.report().is_clean());
        assert!(rel_err(y.as_slice(), &cpu.run(&x).unwrap()) <= 1e-5);
        // The blocking path (off the runtime's workers) gives the same shaped answer.
        let (e, xb) = (engine.clone(), x.clone());
        let blocking =
            tokio::task::spawn_blocking(move || e.run(eie::Inputs::new(&xb, 3, 70).unwrap()))
                .await
                .unwrap()
                .unwrap();
        assert_eq!(blocking, y);
        // fixed16 through the builder: clipped inputs and saturations are reported on the GPU
        // too (tests/gpu_saturations.rs checks the counts).
        let fixed = eie::Engine::builder(m.clone())
            .precision(Precision::Fixed16)
            .device(eie::Device::Gpu(DeviceOptions::default()))
            .build_async()
            .await
            .unwrap();
        let big: Vec<f32> = x.iter().map(|v| v * 1e6).collect();
        let r = fixed.run_async(big, 3).await.unwrap();
        assert!(r.report().inputs_clipped > 0, "{:?}", r.report());
        let s = r.report().saturations.as_ref().expect("counted in fixed16");
        assert_eq!((s.input, s.layers.len()), (r.report().inputs_clipped, 2));
        let config = BatchConfig {
            max_batch: 16,
            max_delay: std::time::Duration::from_millis(5),
            queue_capacity: 64,
        };
        let batcher = Batcher::new(engine.clone(), config).unwrap();
        let tasks: Vec<_> = (0..40u64)
            .map(|i| {
                let b = batcher.clone();
                let x = input(70, 1, 0.5, 150 + i);
                tokio::spawn(async move { (b.run_async(x.clone()).await.unwrap(), x) })
            })
            .collect();
        for t in tasks {
            let (y, x) = t.await.unwrap();
            assert!(rel_err(&y, &cpu.run(&x).unwrap()) <= 1e-5);
        }
        batcher.shutdown().await;
        let s = batcher.stats();
        assert_eq!(s.requests, 40);
        assert!(s.batches < 40, "{s:?}");
    });
}

/// The schedules any adapter's planner can pick, forced here (whatever this adapter would
/// pick): each walk × batch tile × one or several column slices (column walk) or one or 32
/// lanes per row (row walk), plus fewer lanes than inputs per tile and one column group.
const SCHEDULES: [&str; 10] = [
    "walk=columns,tile=1,slices=1",
    "walk=columns,tile=4,slices=1",
    "walk=columns,tile=1,slices=3",
    "walk=columns,tile=4,slices=5",
    "walk=columns,tile=4,slices=64,groups=1",
    "walk=columns,tile=1,slices=2,groups=16",
    "walk=rows,tile=1,lanes=1",
    "walk=rows,tile=4,lanes=1",
    "walk=rows,tile=4,lanes=2",
    "walk=rows,tile=4,lanes=32",
];

/// Every precision and forced schedule at batch 1, 3, 4, 5, 64 and 1000 on a two-layer model
/// (padding entries, a wide codebook, rows not divisible by the PEs) against the CPU model;
/// f32 also bit for bit against each input run alone.
fn every_schedule_path_matches_the_cpu_model_at_every_batch() {
    if gpu().is_none() {
        return;
    }
    let l1 = layer(150, 700, 0.03, 4, 4, true, Activation::Relu, 301);
    assert!(l1.padding_count() > 0);
    let l2 = layer(37, 150, 0.2, 5, 3, true, Activation::Identity, 302);
    let model = Model::new(vec![l1, l2]).unwrap();
    let cpu = CpuEngine::new(model.clone()).unwrap();
    let x = input(700, 1000, 0.4, 303);
    let want_f32 = cpu.run(&x).unwrap();
    let want_fixed = cpu.with_precision(Precision::Fixed16).run(&x).unwrap();
    let want_f16 = cpu.with_precision(Precision::F16).run(&x).unwrap();
    let out = model.output_size();
    for sched in SCHEDULES {
        let schedule: ScheduleOverride = sched.parse().unwrap();
        for precision in Precision::ALL {
            let opts = EngineOptions {
                precision,
                pes: PePlan::File,
                schedule,
                ..EngineOptions::default()
            };
            let e = GpuEngine::new(ctx(), &model, opts).unwrap();
            assert!(e.walks().iter().all(|&w| Some(w) == schedule.walk));
            let alone: Vec<f32> = (0..5)
                .flat_map(|i| e.run(&x[i * 700..(i + 1) * 700]).unwrap())
                .collect();
            for batch in [1, 3, 4, 5, 64, 1000] {
                let got = e.run(&x[..batch * 700]).unwrap();
                let n = batch * out;
                let what = format!("{sched}, {precision:?}, batch {batch}");
                match precision {
                    Precision::Fixed16 => assert!(
                        got.iter()
                            .zip(&want_fixed[..n])
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "fixed16 differs from the CPU model: {what}"
                    ),
                    Precision::F32 => {
                        let err = rel_err(&got, &want_f32[..n]);
                        assert!(err <= 1e-5, "f32 error {err}: {what}");
                        let k = batch.min(5) * out;
                        assert!(
                            got[..k]
                                .iter()
                                .zip(&alone[..k])
                                .all(|(a, b)| a.to_bits() == b.to_bits()),
                            "f32 depends on the rest of the batch: {what}"
                        );
                    }
                    Precision::F16 => {
                        let err = rel_err(&got, &want_f16[..n]);
                        assert!(err <= 5e-3, "f16 error {err} against the CPU's f16: {what}");
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// Small random layers, inputs, batches, PE counts and schedules: the GPU equals the CPU
    /// model (fixed16 bit for bit, f32 within 1e-5).
    fn random_layers_and_schedules_match_the_cpu_model(
        rows in 1usize..90,
        cols in 1usize..400,
        density in 0.0f64..0.6,
        bits in 2u8..7,
        pes in 1usize..9,
        batch in 1usize..10,
        sched in 0usize..SCHEDULES.len(),
        relu in any::<bool>(),
        seed in 0u64..1000,
    ) {
        if gpu().is_none() {
            return Ok(());
        }
        let act = if relu { Activation::Relu } else { Activation::Identity };
        let m = one(layer(rows, cols, density, bits, pes.min(rows), seed % 2 == 0, act, seed));
        let x = input(cols, batch, 0.5, seed + 1);
        let cpu = CpuEngine::new(m.clone()).unwrap();
        let schedule: ScheduleOverride = SCHEDULES[sched].parse().unwrap();
        for precision in [Precision::F32, Precision::Fixed16] {
            let opts = EngineOptions {
                precision,
                pes: PePlan::Fixed(pes),
                schedule,
                max_batch: 4,
                ..EngineOptions::default()
            };
            let got = GpuEngine::new(ctx(), &m, opts).unwrap().run(&x).unwrap();
            let want = cpu.with_precision(precision).run(&x).unwrap();
            if precision == Precision::Fixed16 {
                prop_assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));
            } else {
                prop_assert!(rel_err(&got, &want) <= 1e-5);
            }
        }
    }
}

/// Async GPU runs hand their uploads, submissions and mapping to the context's threads: a task
/// sleeping 1 ms on a 2-worker runtime beside 64 tasks calling the engine directly never waits
/// 50 ms past its wake-up (they used to hold the workers in the submit lock and the queue).
fn runtime_workers_never_wait_on_the_gpu_engine() {
    let Some(ctx) = gpu() else { return };
    let m = one(layer(512, 1024, 0.1, 4, 8, true, Activation::Relu, 171));
    let engine = eie::Engine::from(GpuEngine::new(ctx, &m, EngineOptions::default()).unwrap());
    let gap = heartbeat::gap(&engine);
    assert!(
        gap < std::time::Duration::from_millis(50),
        "a runtime worker was held for {gap:?}"
    );
}
