//! The application API: `eie::Engine` (one builder, shaped inputs and outputs with a numeric
//! report, cheap clones, owned `'static` futures, async construction) and the dynamic-batching front end (`eie::batching`): answers equal to
//! unbatched runs, batches bounded by `max_batch`, backpressure, cancellation, shutdown.
#![cfg(feature = "async")]

use eie::batching::{BatchConfig, Batcher};
use eie::{Device, Engine, Error, Inputs, Model, NonFinite, Precision};
use std::sync::Arc;
use std::time::Duration;

mod common;
mod heartbeat;

/// Two seeded random layers, `fc1` (`rows x cols`, ReLU) and `fc2` (`10 x rows`), with biases,
/// compressed to 30 % with 4-bit codebooks over 4 PEs.
fn model(rows: usize, cols: usize, seed: u64) -> Model {
    common::fixtures::compressed_model(
        &[("fc1", rows, cols, true), ("fc2", 10, rows, true)],
        seed,
        &common::fixtures::config(0.3, 4, 4),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

fn assert_send_sync_static<T: Send + Sync + Clone + 'static>() {}

#[test]
fn engine_is_shared_and_runs_as_an_owned_future() {
    assert_send_sync_static::<Engine>();
    assert_send_sync_static::<Batcher>();
    let m = model(40, 30, 1);
    let rt = runtime();
    rt.block_on(async {
        let engine = Engine::builder(m.clone())
            .device(Device::Cpu)
            .build_async()
            .await
            .unwrap();
        assert_eq!(engine.id().to_string(), "cpu-eie/f32");
        assert_eq!((engine.input_size(), engine.output_size()), (30, 10));
        let tasks: Vec<_> = (0..16u64)
            .map(|i| {
                let batch = 1 + i as usize % 3;
                let x = eie::synth::activations(30 * batch, 0.5, 10 + i);
                // The future owns everything it needs (here a shared buffer, not copied): no
                // borrow of `engine`.
                let shared: Arc<[f32]> = x.clone().into();
                let fut = engine.run_async(shared, batch);
                (x, batch, tokio::spawn(fut))
            })
            .collect();
        for (x, batch, t) in tasks {
            let y = t.await.unwrap().unwrap();
            assert_eq!((y.batch(), y.width(), y.rows().count()), (batch, 10, batch));
            let want = engine.run(Inputs::new(&x, batch, 30).unwrap()).unwrap();
            assert_eq!(y, want);
            // Row by row, alone: the same answers.
            for (r, xr) in y.rows().zip(x.chunks(30)) {
                assert_eq!(r, engine.run(xr).unwrap().as_slice());
            }
        }
        // Input errors come back from the future.
        assert!(matches!(
            engine.run_async(vec![1.0; 29], 1).await,
            Err(Error::Shape(_))
        ));
        assert!(matches!(
            engine.run_async(vec![1.0; 60], 0).await,
            Err(Error::Shape(_))
        ));
        assert!(matches!(
            engine.run_async(vec![f32::NAN; 30], 1).await,
            Err(Error::NonFinite { .. })
        ));
    });
    // Every precision on the CPU, f16 close to f32.
    let x = eie::synth::activations(30, 0.5, 3);
    let cpu = |p| {
        Engine::builder(m.clone())
            .precision(p)
            .device(Device::Cpu)
            .build()
            .unwrap()
    };
    let f32_out = cpu(Precision::F32).run(&x).unwrap().into_vec();
    let f16_out = cpu(Precision::F16).run(&x).unwrap().into_vec();
    let scale = f32_out.iter().fold(0f32, |a, v| a.max(v.abs()));
    let err = f16_out
        .iter()
        .zip(&f32_out)
        .fold(0f32, |a, (p, q)| a.max((p - q).abs()));
    assert!(err <= 2e-2 * scale, "f16 error {err} of {scale}");
    assert_ne!(f16_out, f32_out, "f16 storage rounds");
}

#[test]
fn batched_answers_equal_single_runs() {
    let m = model(64, 50, 2);
    let engine = Engine::builder(m)
        .precision(Precision::Fixed16)
        .device(Device::Cpu)
        .build()
        .unwrap();
    let config = BatchConfig {
        max_batch: 8,
        max_delay: Duration::from_millis(20),
        queue_capacity: 256,
    };
    let batcher = Batcher::new(engine.clone(), config).unwrap();
    let rt = runtime();
    rt.block_on(async {
        let tasks: Vec<_> = (0..64u64)
            .map(|i| {
                let b = batcher.clone();
                let x = eie::synth::activations(50, 0.5, 100 + i);
                tokio::spawn(async move {
                    let y = b.run_async(x.clone()).await.unwrap();
                    (x, y)
                })
            })
            .collect();
        for t in tasks {
            let (x, y) = t.await.unwrap();
            // fixed16 is bit-exact whatever the batch it ran in.
            assert_eq!(y, engine.run(&x).unwrap().into_vec());
        }
        batcher.shutdown().await;
    });
    let s = batcher.stats();
    assert_eq!((s.requests, s.abandoned), (64, 0));
    assert!(s.batches >= 8, "at most 8 inputs per batch: {s:?}");
    assert!(s.batches < 64, "requests were batched: {s:?}");
}

#[test]
fn backpressure_cancellation_and_shutdown() {
    let m = model(32, 20, 3);
    let engine = Engine::builder(m).device(Device::Cpu).build().unwrap();
    let rt = runtime();
    rt.block_on(async {
        // The worker holds the first request for up to 300 ms waiting for a second batch
        // member, so two requests fill a queue of two.
        let config = BatchConfig {
            max_batch: 8,
            max_delay: Duration::from_millis(300),
            queue_capacity: 2,
        };
        let batcher = Batcher::new(engine.clone(), config).unwrap();
        let x = eie::synth::activations(20, 0.5, 7);
        let a = batcher.try_run(x.clone()).unwrap();
        let b = batcher.try_run(x.clone()).unwrap();
        assert!(matches!(
            batcher.try_run(x.clone()).map(|_| ()),
            Err(Error::QueueFull(2))
        ));
        // A caller that gives up loses only its own answer.
        drop(b);
        let want = engine.run(&x).unwrap().into_vec();
        assert_eq!(a.await.unwrap(), want);
        // Its slot came back: a waiting `run` gets through.
        assert_eq!(batcher.run_async(x.clone()).await.unwrap(), want);

        // Shutdown answers every accepted request, then refuses new ones.
        let pending: Vec<_> = (0..2)
            .map(|_| batcher.try_run(x.clone()).unwrap())
            .collect();
        batcher.shutdown().await;
        for p in pending {
            assert_eq!(p.await.unwrap(), want);
        }
        // The caller that gave up is counted apart from the answered ones.
        let s = batcher.stats();
        assert_eq!((s.requests, s.abandoned), (4, 1), "{s:?}");
        assert!(matches!(
            batcher.run_async(x.clone()).await,
            Err(Error::ShutDown(_))
        ));
        assert!(matches!(
            batcher.try_run(x.clone()).map(|_| ()),
            Err(Error::ShutDown(_))
        ));
        batcher.shutdown().await;
        // Bad requests and settings are typed errors.
        assert!(matches!(
            Batcher::new(
                engine.clone(),
                BatchConfig {
                    max_batch: 0,
                    ..config
                }
            ),
            Err(Error::InvalidArgument(_))
        ));
        let live = Batcher::new(engine.clone(), BatchConfig::default()).unwrap();
        assert!(matches!(
            live.run_async(vec![0.0; 40]).await,
            Err(Error::Shape(_))
        ));
        assert!(matches!(
            live.run_async(vec![f32::INFINITY; 20]).await,
            Err(Error::NonFinite { .. })
        ));
        live.shutdown().await;
    });
}

#[test]
fn builder_auto_device_shapes_and_numeric_reports() {
    let m = model(24, 16, 4);
    // Auto takes a hardware GPU or the CPU engine, and says which.
    let auto = Engine::builder(m.clone()).build().unwrap();
    let d = auto.device().to_string();
    if !auto.device().is_gpu() {
        assert!(d.starts_with("CPU (") && d.contains("no GPU taken"), "{d}");
    }
    let cpu = Engine::builder(m.clone())
        .device(Device::Cpu)
        .build()
        .unwrap();
    assert!(!cpu.device().to_string().contains("no GPU taken"));
    assert!(format!("{cpu:?}").contains("cpu-eie/f32"));

    // Shapes: rows of the model's input size, at least one.
    let x = eie::synth::activations(16 * 3, 0.5, 9);
    let y = cpu.run(Inputs::new(&x, 3, 16).unwrap()).unwrap();
    assert_eq!((y.batch(), y.width(), y.as_slice().len()), (3, 10, 30));
    assert_eq!(y.row(2).unwrap(), &y.as_slice()[20..30]);
    assert!(y.row(3).is_none());
    assert_eq!(y.argmax().len(), 3);
    assert!(y.report().is_clean(), "{:?}", y.report());
    for (data, batch, width) in [(&x[..], 2, 16), (&x[..], 0, 48), (&x[..0], 1, 0)] {
        let e = Inputs::new(data, batch, width).unwrap_err().to_string();
        assert!(e.contains("rows") || e.contains("empty"), "{e}");
    }
    let e = cpu
        .run(Inputs::new(&x, 2, 24).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("24 values") && e.contains("takes 16"), "{e}");
    let e = cpu.run(&x[..0]).unwrap_err().to_string();
    assert!(e.contains("16"), "{e}");

    // fixed16: unscaled inputs are clipped, and the report says so (the CPU engine also
    // counts the layers' saturations).
    let fixed = Engine::builder(m.clone())
        .precision(Precision::Fixed16)
        .device(Device::Cpu)
        .build()
        .unwrap();
    let big: Vec<f32> = x.iter().map(|v| v * 1e6).collect();
    let r = fixed.run(Inputs::new(&big, 3, 16).unwrap()).unwrap();
    assert!(r.report().inputs_clipped > 0, "{:?}", r.report());
    assert!(r.report().saturations.is_some());
    assert!(!r.report().is_clean());

    // Non-finite outputs from finite inputs: activations beyond f16's range; reported, or an
    // error on request.
    let huge: Vec<f32> = x.iter().map(|v| v * 1e6).collect();
    let f16 = |policy| {
        Engine::builder(m.clone())
            .precision(Precision::F16)
            .device(Device::Cpu)
            .non_finite(policy)
            .build()
            .unwrap()
    };
    let r = f16(NonFinite::Report)
        .run(Inputs::new(&huge, 3, 16).unwrap())
        .unwrap();
    assert!(r.report().non_finite > 0, "{:?}", r.report());
    assert_eq!(
        r.report().non_finite,
        r.as_slice().iter().filter(|v| !v.is_finite()).count()
    );
    let e = f16(NonFinite::Error).run(Inputs::new(&huge, 3, 16).unwrap());
    assert!(
        matches!(e, Err(Error::NonFinite { ref what, .. }) if what == "output"),
        "{e:?}"
    );
}

#[test]
fn runtime_workers_never_wait_on_the_cpu_engine() {
    let engine = Engine::builder(model(512, 1500, 5))
        .device(Device::Cpu)
        .build()
        .unwrap();
    let gap = heartbeat::gap(&engine);
    assert!(
        gap < Duration::from_millis(50),
        "a runtime worker was held for {gap:?}"
    );
}

#[cfg(feature = "ndarray")]
#[test]
fn ndarray_views_in_and_arrays_out() {
    let engine = Engine::builder(model(24, 16, 6))
        .device(Device::Cpu)
        .build()
        .unwrap();
    let x = eie::synth::activations(16 * 3, 0.5, 11);
    let a = ndarray::Array2::from_shape_vec((3, 16), x.clone()).unwrap();
    let y = engine.run(Inputs::try_from(a.view()).unwrap()).unwrap();
    assert_eq!(y, engine.run(Inputs::new(&x, 3, 16).unwrap()).unwrap());
    let out = y.to_array();
    assert_eq!(out.dim(), (3, 10));
    for (i, row) in y.rows().enumerate() {
        assert_eq!(out.row(i).to_vec(), row);
    }
    // A transposed view is not row-major: a shape error, no copy made behind the caller.
    let t = ndarray::Array2::from_shape_vec((16, 3), x).unwrap();
    let e = Inputs::try_from(t.t()).unwrap_err().to_string();
    assert!(e.contains("row-major"), "{e}");
}
