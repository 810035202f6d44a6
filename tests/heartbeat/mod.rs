//! A heartbeat beside an engine's async runs: whether they ever hold a runtime worker.

use eie::Engine;
use std::sync::Arc;
use std::time::Duration;

/// The longest a task sleeping 1 ms at a time waited past its wake-up on a 2-worker runtime
/// while 64 tasks awaited `engine.run` (8 times each).
pub fn gap(engine: &Engine) -> Duration {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let beat = tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                let t = std::time::Instant::now();
                tokio::time::sleep(Duration::from_millis(1)).await;
                worst = worst.max(t.elapsed().saturating_sub(Duration::from_millis(1)));
            }
            worst
        });
        let width = engine.input_size();
        let tasks: Vec<_> = (0..64u64)
            .map(|i| {
                let e = engine.clone();
                tokio::spawn(async move {
                    for k in 0..8u64 {
                        let x = eie::synth::activations(width, 0.5, 1000 + i * 8 + k);
                        e.run_async(x, 1).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        beat.await.unwrap()
    })
}
