//! The measurement behind the CPU engine's choice of walk ([`eie::reference::ROW_SLOT_COST`],
//! [`eie::reference::SLICE_COST`]): on each of the paper's nine layers, the engine forced to
//! EIE's column walk, forced to the row-ordered walk, and left to choose, with the CPU baselines
//! beside them; every walk's output is checked equal to the column walk's bit for bit.
//!
//! `cargo bench --bench cpu_walks [-- BATCH [LAYER,LAYER...]]` (default batch 1, all layers).
//! Each figure is the fastest of many single calls (µs), three rounds interleaved, so that a
//! machine shared with other work still shows the kernels' own speed.

use eie::kernel_id::{KernelId, KernelKind};
use eie::reference::{CpuEngine, CpuWalk};
use eie::Precision;
use std::time::Instant;

/// Fastest single call of `f` over at least 10 calls and about 0.1 s, in µs.
fn fastest(f: &mut dyn FnMut()) -> f64 {
    let mut best = f64::MAX;
    let start = Instant::now();
    let mut n = 0;
    while n < 10 || (start.elapsed().as_secs_f64() < 0.1 && n < 1000) {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64() * 1e6);
        n += 1;
    }
    best
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let batch: usize = args.first().map_or(1, |s| s.parse().expect("a batch size"));
    let only: Vec<&str> = args.get(1).map_or(Vec::new(), |s| s.split(',').collect());
    println!(
        "batch {batch}, {} threads; µs, fastest call",
        rayon::current_num_threads()
    );
    println!("| layer | columns | rows | auto | fixed16 | cpu-dense/f32 | cpu-csr/f32 |");
    println!("|---|---|---|---|---|---|---|");
    for l in eie::paper::PAPER_LAYERS.iter() {
        if !only.is_empty() && !only.contains(&l.name) {
            continue;
        }
        let model = l
            .model(64, eie::paper::DEFAULT_SEED)
            .expect("a paper layer");
        let engine = CpuEngine::new(model.clone()).expect("an engine");
        let x = l.input(batch, 7);
        let want = engine
            .clone()
            .with_walk(CpuWalk::Columns)
            .run(&x)
            .expect("runs");
        let baselines = eie::backend::cpu_backends(&model).expect("CPU backends");
        let mut t = [f64::MAX; 6];
        for _round in 0..3 {
            for (k, walk) in [CpuWalk::Columns, CpuWalk::Rows, CpuWalk::Auto]
                .into_iter()
                .enumerate()
            {
                let e = engine.clone().with_walk(walk);
                assert!(e.run(&x).expect("runs") == want, "{walk:?}");
                t[k] = t[k].min(fastest(&mut || {
                    std::hint::black_box(e.run(&x).expect("runs"));
                }));
            }
            let fixed = engine.with_precision(Precision::Fixed16);
            t[3] = t[3].min(fastest(&mut || {
                std::hint::black_box(fixed.run(&x).expect("runs"));
            }));
            for (k, kind) in [(4, KernelKind::Dense), (5, KernelKind::Csr)] {
                let id = KernelId::cpu(kind, Precision::F32);
                let b = baselines.iter().find(|b| b.id() == id).expect("a baseline");
                t[k] = t[k].min(fastest(&mut || {
                    std::hint::black_box(b.run(&x).expect("runs"));
                }));
            }
        }
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            l.name, t[0], t[1], t[2], t[3], t[4], t[5]
        );
    }
}
