//! The application API: `eie::Engine` (cheap clones, owned `'static` futures, async
//! constructors) and the dynamic-batching front end (`eie::batching`): answers equal to
//! unbatched runs, batches bounded by `max_batch`, backpressure, cancellation, shutdown.
#![cfg(feature = "async")]

use eie::batching::{BatchConfig, Batcher};
use eie::compress::{compress_layer, CompressConfig};
use eie::{Activation, Engine, Error, Model, Precision};
use std::time::Duration;

fn model(rows: usize, cols: usize, seed: u64) -> Model {
    let config = CompressConfig {
        density: 0.3,
        bits: 4,
        pes: 4,
        ..CompressConfig::default()
    };
    let l1 = eie::synth::dense_layer("fc1", rows, cols, true, seed);
    let l2 = eie::synth::dense_layer("fc2", 10, rows, true, seed + 1);
    Model::new(vec![
        compress_layer(&l1, &config, Activation::Relu).unwrap(),
        compress_layer(&l2, &config, Activation::Identity).unwrap(),
    ])
    .unwrap()
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
        let engine = Engine::cpu_async(m.clone(), Precision::F32).await.unwrap();
        assert_eq!(engine.name(), "cpu-eie/f32");
        assert_eq!((engine.input_size(), engine.output_size()), (30, 10));
        let tasks: Vec<_> = (0..16u64)
            .map(|i| {
                let x = eie::synth::activations(30 * (1 + i as usize % 3), 0.5, 10 + i);
                // The future owns everything it needs: no Arc, no borrow of `engine`.
                let fut = engine.run(x.clone());
                (x, tokio::spawn(fut))
            })
            .collect();
        for (x, t) in tasks {
            let y = t.await.unwrap().unwrap();
            assert_eq!(y, engine.run_blocking(&x).unwrap());
        }
        // Input errors come back from the future.
        assert!(matches!(
            engine.run(vec![1.0; 29]).await,
            Err(Error::Shape(_))
        ));
        assert!(matches!(
            engine.run(vec![f32::NAN; 30]).await,
            Err(Error::NonFinite { .. })
        ));
    });
    // Every precision on the CPU, f16 close to f32.
    let x = eie::synth::activations(30, 0.5, 3);
    let f32_out = Engine::cpu(m.clone(), Precision::F32)
        .unwrap()
        .run_blocking(&x)
        .unwrap();
    let f16_out = Engine::cpu(m, Precision::F16)
        .unwrap()
        .run_blocking(&x)
        .unwrap();
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
    let engine = Engine::cpu(m, Precision::Fixed16).unwrap();
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
                    let y = b.run(x.clone()).await.unwrap();
                    (x, y)
                })
            })
            .collect();
        for t in tasks {
            let (x, y) = t.await.unwrap();
            // fixed16 is bit-exact whatever the batch it ran in.
            assert_eq!(y, engine.run_blocking(&x).unwrap());
        }
        batcher.shutdown().await;
    });
    let s = batcher.stats();
    assert_eq!(s.requests, 64);
    assert!(s.batches >= 8, "at most 8 inputs per batch: {s:?}");
    assert!(s.batches < 64, "requests were batched: {s:?}");
}

#[test]
fn backpressure_cancellation_and_shutdown() {
    let m = model(32, 20, 3);
    let engine = Engine::cpu(m, Precision::F32).unwrap();
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
        let want = engine.run_blocking(&x).unwrap();
        assert_eq!(a.await.unwrap(), want);
        // Its slot came back: a waiting `run` gets through.
        assert_eq!(batcher.run(x.clone()).await.unwrap(), want);

        // Shutdown answers every accepted request, then refuses new ones.
        let pending: Vec<_> = (0..2)
            .map(|_| batcher.try_run(x.clone()).unwrap())
            .collect();
        batcher.shutdown().await;
        for p in pending {
            assert_eq!(p.await.unwrap(), want);
        }
        assert!(matches!(
            batcher.run(x.clone()).await,
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
            live.run(vec![0.0; 40]).await,
            Err(Error::Shape(_))
        ));
        assert!(matches!(
            live.run(vec![f32::INFINITY; 20]).await,
            Err(Error::NonFinite { .. })
        ));
        live.shutdown().await;
    });
}
