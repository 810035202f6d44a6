//! Recurrent layers on the simulated ASIC: a step's cycles are the sum of its parts, the
//! outputs equal the CPU engine's, and load-balance-aware pruning raises the load-balance
//! efficiency of the gate matrices.

use eie::compress::{CompressConfig, CompressPlan, DenseLayer};
use eie::format::{CellKind, SequenceModel, Stage};
use eie::recurrent::{compress_stages, DenseRecurrent, DenseStage, SequenceEngine};
use eie::sim::sequence::{cell_update_cycles, simulate_sequence, GRU_CELL_LATENCY};
use eie::sim::{SimConfig, Simulator};
use eie::{Activation, Error, Model, Precision};

fn plan(density: f64, pes: usize) -> CompressPlan {
    CompressPlan::uniform(CompressConfig {
        density,
        bits: 4,
        pes,
        ..CompressConfig::default()
    })
}

fn model(kind: CellKind, hidden: usize, inputs: usize, pes: usize) -> SequenceModel {
    let g = kind.gates();
    let r = DenseRecurrent::new(
        "cell".into(),
        kind,
        eie::synth::dense_layer("w_ih", g * hidden, inputs, true, 11),
        eie::synth::dense_layer("w_hh", g * hidden, hidden, true, 12),
    )
    .unwrap();
    let head = eie::synth::dense_layer("fc", 5, hidden, true, 13);
    compress_stages(
        &[DenseStage::Recurrent(r), DenseStage::Fc(head)],
        &plan(0.3, pes),
        &[Activation::Identity],
        false,
    )
    .unwrap()
}

fn input(steps: usize, n: usize) -> Vec<f32> {
    // A third of the inputs zero, so the LNZD skips some.
    (0..steps * n)
        .map(|k| {
            if k % 3 == 0 {
                0.0
            } else {
                ((k * 37 % 101) as f32 / 101.0 - 0.5) * 1.6
            }
        })
        .collect()
}

fn cfg(pes: usize) -> SimConfig {
    SimConfig {
        pes,
        ..SimConfig::default()
    }
}

/// Cycles of one layer simulated alone on one vector.
fn alone(layer: &eie::EieLayer, x: &[f32], pes: usize) -> u64 {
    let m = Model::new(vec![layer.clone()]).unwrap();
    let r = Simulator::new(&m, &cfg(pes), Precision::F32)
        .unwrap()
        .run(x)
        .unwrap();
    assert_eq!(r.layers.len(), 1);
    r.cycles
}

#[test]
fn step_cycles_are_the_sum_of_the_products_and_the_cell_update() {
    let (hidden, inputs, pes, steps) = (16, 8, 4, 3);
    let m = model(CellKind::Lstm, hidden, inputs, pes);
    let x = input(steps, inputs);
    let r = simulate_sequence(&m, &x, steps, &cfg(pes), Precision::F32).unwrap();
    // The CPU engine's hidden states, step by step, as the inputs of the parts.
    let Stage::Recurrent(rec) = &m.stages()[0] else {
        panic!("the first stage is the LSTM")
    };
    let Stage::Fc(fc) = &m.stages()[1] else {
        panic!("the second stage is the classifier")
    };
    let lstm_only = SequenceModel::new(vec![m.stages()[0].clone()]).unwrap();
    let e = SequenceEngine::new(lstm_only, Precision::F32).unwrap();
    let hs = e.run(&x, steps, &mut e.zero_state()).unwrap();
    assert_eq!(r.step_cycles.len(), steps);
    let cell = cell_update_cycles(CellKind::Lstm, hidden, pes);
    assert_eq!(cell, (hidden / pes) as u64 + 10);
    for t in 0..steps {
        let h_prev = if t == 0 {
            vec![0.0; hidden]
        } else {
            hs[(t - 1) * hidden..t * hidden].to_vec()
        };
        let h = &hs[t * hidden..(t + 1) * hidden];
        let parts = alone(rec.ih(), &x[t * inputs..(t + 1) * inputs], pes)
            + alone(rec.hh(), &h_prev, pes)
            + cell
            + alone(fc, h, pes);
        assert_eq!(r.step_cycles[t], parts, "step {t}");
    }
    // Step 0 broadcasts no h (all zero), so the W_hh pass is shorter than later steps'.
    assert!(r.step_cycles[0] < r.step_cycles[1], "{:?}", r.step_cycles);
    assert_eq!(r.cycles, r.step_cycles.iter().sum::<u64>());
    let stage = &r.stages[0];
    assert_eq!(stage.kind, "lstm");
    assert_eq!(stage.cell_update_cycles_per_step, cell);
    assert_eq!(
        stage.cycles,
        stage.matrices.iter().map(|l| l.cycles).sum::<u64>() + steps as u64 * cell
    );
    assert!(r.load_balance_efficiency > 0.0 && r.load_balance_efficiency <= 1.0);
}

#[test]
fn simulated_outputs_equal_the_cpu_engine() {
    for kind in [CellKind::Lstm, CellKind::Gru] {
        let (hidden, inputs, pes, steps) = (24, 10, 6, 5);
        let m = model(kind, hidden, inputs, pes);
        let x = input(steps, inputs);
        for precision in [Precision::F32, Precision::Fixed16] {
            let r = simulate_sequence(&m, &x, steps, &cfg(pes), precision).unwrap();
            let e = SequenceEngine::new(m.clone(), precision).unwrap();
            let want = e.run(&x, steps, &mut e.zero_state()).unwrap();
            assert_eq!(r.output, want, "{kind:?} {precision:?}");
        }
    }
    let m = model(CellKind::Gru, 24, 10, 6);
    let r = simulate_sequence(&m, &input(2, 10), 2, &cfg(3), Precision::F32).unwrap();
    assert_eq!(
        r.stages[0].cell_update_cycles_per_step,
        8 + GRU_CELL_LATENCY - 1
    );
}

#[test]
fn pe_counts_not_dividing_the_hidden_size_and_bad_inputs_are_refused() {
    let m = model(CellKind::Lstm, 16, 8, 4);
    let x = input(2, 8);
    let e = simulate_sequence(&m, &x, 2, &cfg(3), Precision::F32).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    let e = simulate_sequence(&m, &x, 3, &cfg(4), Precision::F32).unwrap_err();
    assert!(matches!(e, Error::Shape(_)), "{e}");
    let e = simulate_sequence(&m, &x, 2, &cfg(4), Precision::F16).unwrap_err();
    assert!(
        matches!(&e, Error::UnsupportedPrecision { precision, .. } if precision == "f16"),
        "{e}"
    );
}

/// An LSTM whose units on PE 0 (of 8) carry 4× larger weights in both matrices.
fn skewed(hidden: usize, inputs: usize) -> DenseRecurrent {
    let scale = |mut d: DenseLayer| {
        let cols = d.cols;
        for (k, w) in d.weights.iter_mut().enumerate() {
            if (k / cols) % hidden % 8 == 0 {
                *w *= 4.0;
            }
        }
        d
    };
    DenseRecurrent::new(
        "lstm".into(),
        CellKind::Lstm,
        scale(eie::synth::dense_layer(
            "w_ih",
            4 * hidden,
            inputs,
            true,
            21,
        )),
        scale(eie::synth::dense_layer(
            "w_hh",
            4 * hidden,
            hidden,
            true,
            22,
        )),
    )
    .unwrap()
}

#[test]
fn balanced_pruning_raises_the_recurrent_load_balance_efficiency() {
    let (hidden, inputs, steps) = (64, 48, 4);
    let stages = [DenseStage::Recurrent(skewed(hidden, inputs))];
    let p = plan(0.1, 8);
    let plain = compress_stages(&stages, &p, &[], false).unwrap();
    let balanced = compress_stages(&stages, &p, &[], true).unwrap();
    let x: Vec<f32> = (0..steps * inputs)
        .map(|k| 0.25 + (k % 7) as f32 / 10.0)
        .collect();
    let run = |m: &SequenceModel| simulate_sequence(m, &x, steps, &cfg(8), Precision::F32).unwrap();
    let (rp, rb) = (run(&plain), run(&balanced));
    eprintln!(
        "LSTM load-balance efficiency: magnitude pruning {:.3} ({:.0} cycles/step), \
         balanced {:.3} ({:.0} cycles/step)",
        rp.load_balance_efficiency,
        rp.cycles_per_step,
        rb.load_balance_efficiency,
        rb.cycles_per_step
    );
    assert!(
        rb.load_balance_efficiency > 0.85,
        "{}",
        rb.load_balance_efficiency
    );
    assert!(
        rb.load_balance_efficiency > rp.load_balance_efficiency + 0.2,
        "{} vs {}",
        rb.load_balance_efficiency,
        rp.load_balance_efficiency
    );
    assert!(rb.cycles < rp.cycles);
    for m in rb.stages[0].matrices.iter() {
        assert!(
            m.load_balance_efficiency > 0.8,
            "{}: {}",
            m.name,
            m.load_balance_efficiency
        );
    }
}
