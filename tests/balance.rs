//! Load-balance-aware pruning (ESE): every PE keeps the same number of weights, and the
//! simulated ASIC's load-balance efficiency rises accordingly.

use eie::compress::{compress_layer, compress_layer_balanced, CompressConfig, DenseLayer};
use eie::sim::{SimConfig, Simulator};
use eie::{Activation, Model, Precision};

/// A layer whose rows on PE 0 (of 8) carry far larger weights: magnitude pruning keeps most
/// of its weights there.
fn skewed_layer() -> DenseLayer {
    let mut d = eie::synth::dense_layer("skewed", 256, 512, false, 3);
    for (k, w) in d.weights.iter_mut().enumerate() {
        let row = k / 512;
        if row % 8 == 0 {
            *w *= 4.0;
        }
    }
    d
}

fn nnz_per_pe(l: &eie::EieLayer) -> Vec<usize> {
    let codes = l.sparse_codes();
    let mut per = vec![0; l.pes()];
    for &r in &codes.row_idx {
        per[r as usize % l.pes()] += 1;
    }
    per
}

#[test]
fn balanced_pruning_gives_every_pe_the_same_work() {
    let d = skewed_layer();
    let config = CompressConfig {
        density: 0.1,
        bits: 4,
        pes: 8,
        ..CompressConfig::default()
    };
    let plain = compress_layer(&d, &config, Activation::Relu).unwrap();
    let balanced = compress_layer_balanced(&d, &config, Activation::Relu).unwrap();
    let (p, b) = (nnz_per_pe(&plain), nnz_per_pe(&balanced));
    assert_eq!(b, vec![(0.1f64 * 256.0 * 512.0 / 8.0).round() as usize; 8]);
    assert!(p[0] > 2 * p[1], "{p:?}");
    // round(d × n) in all against round(d × n / pes) per PE.
    let (tp, tb) = (p.iter().sum::<usize>(), b.iter().sum::<usize>());
    assert!(tp.abs_diff(tb) <= 4, "{tp} {tb}");
    // The simulated ASIC (8 PEs) on a dense input: the balanced layer keeps every PE busy.
    let x = vec![0.5f32; 512];
    let sim = SimConfig {
        pes: 8,
        ..SimConfig::default()
    };
    let run = |l: eie::EieLayer| {
        let m = Model::new(vec![l]).unwrap();
        Simulator::new(&m, &sim, Precision::F32)
            .unwrap()
            .run(&x)
            .unwrap()
    };
    let (rp, rb) = (run(plain), run(balanced));
    eprintln!(
        "load-balance efficiency: magnitude pruning {:.3} ({} cycles), balanced {:.3} ({} cycles)",
        rp.load_balance_efficiency, rp.cycles, rb.load_balance_efficiency, rb.cycles
    );
    assert!(
        rb.load_balance_efficiency > 0.95,
        "{}",
        rb.load_balance_efficiency
    );
    assert!(
        rp.load_balance_efficiency < 0.6,
        "{}",
        rp.load_balance_efficiency
    );
    assert!(rb.cycles < rp.cycles);
}
