//! Criterion benchmarks of the CPU kernels on two of the paper's layers at batch 1: the EIE
//! engine (f32, fixed16) against dense f32 (OpenBLAS, or the `gemm` crate without the `openblas`
//! feature) and plain CSR. `cargo bench --bench cpu`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use eie::backend::cpu_backends;
use eie::paper;
use std::hint::black_box;

fn cpu_kernels(c: &mut Criterion) {
    for name in ["Alex-7", "NT-LSTM"] {
        let layer = paper::find(name).expect("a paper layer");
        let model = layer.model(64, paper::DEFAULT_SEED).expect("generated");
        let inputs: Vec<Vec<f32>> = (0..4).map(|s| layer.input(1, s)).collect();
        let mut group = c.benchmark_group(name);
        for backend in cpu_backends(&model).expect("CPU backends") {
            let mut k = 0usize;
            group.bench_function(BenchmarkId::from_parameter(backend.id()), |b| {
                b.iter(|| {
                    k += 1;
                    black_box(backend.run(&inputs[k % inputs.len()]).expect("runs"))
                })
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = cpu_kernels
}
criterion_main!(benches);
